//! Polling a condition until it holds, with a deadline and a useful failure message.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::{Instant, sleep};

/// What one check of a [`wait_until`] condition observed.
#[derive(Debug)]
pub enum Progress<T> {
    /// The condition holds; waiting ends with this value.
    Done(T),
    /// Not yet; the string describes what was observed instead and is shown if the
    /// deadline passes.
    Pending(String),
    /// The condition can no longer hold (say, the process that should bring it about
    /// exited): waiting fails at once with this message.
    Abort(String),
}

impl<T> Progress<T> {
    /// `Pending` with the `Debug` rendering of what was observed.
    pub fn pending(observed: impl fmt::Debug) -> Self {
        Self::Pending(format!("{observed:?}"))
    }
}

/// How often a condition is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Checks `check` every 250 ms until it returns [`Progress::Done`], and returns its value.
///
/// An `Err` from `check` is treated as transient (the API server may be restarting, an
/// object may not exist yet): it is remembered as the last observation and polling goes
/// on. The error after `timeout` names `what` and shows the last observation;
/// [`Progress::Abort`] fails at once.
///
/// ```no_run
/// # use std::time::Duration;
/// # use hostrouter_e2e::{Progress, wait_until};
/// # async fn example(api: kube::Api<k8s_openapi::api::core::v1::ConfigMap>) -> anyhow::Result<()> {
/// let cm = wait_until("ConfigMap demo has key a", Duration::from_secs(30), || async {
///     let cm = api.get_opt("demo").await?;
///     Ok(match cm {
///         Some(cm) if cm.data.as_ref().is_some_and(|d| d.contains_key("a")) => Progress::Done(cm),
///         other => Progress::pending(other.map(|cm| cm.data)),
///     })
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Progress<T>>>,
{
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last;
    let mut checks = 0u32;
    loop {
        checks += 1;
        match check().await {
            Ok(Progress::Done(value)) => return Ok(value),
            Ok(Progress::Pending(observed)) => last = observed,
            Ok(Progress::Abort(reason)) => {
                bail!(
                    "gave up waiting for {what} after {:.1?}: {reason}",
                    started.elapsed()
                )
            }
            Err(err) => last = format!("error: {err:#}"),
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {:.1?} ({checks} checks) waiting for {what}; last observed: {last}",
                started.elapsed()
            );
        }
        sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_done() {
        let mut n = 0;
        let got = wait_until("n reaches 3", Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move {
                Ok(if n >= 3 {
                    Progress::Done(n)
                } else {
                    Progress::Pending(format!("n={n}"))
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn timeout_reports_the_last_observation() {
        let err = wait_until::<(), _, _>("never", Duration::from_millis(300), || async {
            Ok(Progress::Pending("still nothing".into()))
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("waiting for never"), "{err}");
        assert!(err.contains("last observed: still nothing"), "{err}");
    }

    #[tokio::test]
    async fn errors_are_retried_and_reported() {
        let err = wait_until::<(), _, _>("flaky", Duration::from_millis(300), || async {
            anyhow::bail!("connection refused")
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("error: connection refused"), "{err}");
    }

    #[tokio::test]
    async fn abort_fails_at_once() {
        let started = Instant::now();
        let err = wait_until::<(), _, _>("doomed", Duration::from_secs(30), || async {
            Ok(Progress::Abort("process exited".into()))
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.contains("process exited"), "{err}");
    }
}
