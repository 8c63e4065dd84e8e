//! Timing what a trial measures: poll until something holds, and the median of the samples.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Polls every 50 ms until `check` holds; returns how long that took.
pub async fn time_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let began = Instant::now();
    let mut last = String::new();
    while began.elapsed() < timeout {
        match check().await {
            Ok(true) => return Ok(began.elapsed()),
            Ok(false) => {}
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what} {last}")
}

pub fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

pub fn secs(values: &[Duration]) -> String {
    values
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}
