//! Gloo killed and started again under a running Envoy and operator: Envoy keeps serving the
//! last configuration Gloo gave it, the operator keeps writing the Proxy and says that Gloo has
//! not judged it (`ProxyAccepted=Unknown`, `Pending`, then `GlooNotReported` after 10 s), and
//! once Gloo is back the change made meanwhile routes within seconds and `ProxyAccepted`
//! returns to True.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::backends::{Backend, apply_backend_service};
use hostrouter_e2e::{Progress, Suite, TestContext, wait_until};
use libtest_mimic::Trial;

use super::lab::{CONVERGE, Lab, Options};
use crate::timing::{median, secs, time_until};

/// How long Gloo stays away: long enough for Envoy's reconnection backoff to grow (Envoy's
/// default grows to 30 s; the bootstrap caps it at 4 s).
const GLOO_DOWN: Duration = Duration::from_secs(20);
/// How soon after Gloo's start the change made while it was away must route.
const AFTER_RETURN: Duration = Duration::from_secs(10);

pub fn trials(suite: &Suite) -> Vec<Trial> {
    vec![suite.trial(
        "gloo::envoy_keeps_serving_while_gloo_restarts",
        |cx| async move { gloo_restarts(&cx).await },
    )]
}

async fn gloo_restarts(cx: &TestContext) -> Result<()> {
    let rounds: usize = std::env::var("E2E_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut lab = Lab::new(cx, Options::default()).await?;
    lab.check_routing().await?;
    let envoy_pid = lab.envoy.pid();
    let late = Backend::start("late", lab.alias.ip().into(), 0).await?;
    let mut took = Vec::new();
    for round in 0..rounds {
        lab.gloo.kill().await?;
        let killed = Instant::now();

        // The last good configuration keeps serving.
        for _ in 0..10 {
            lab.check_petstore()
                .await
                .with_context(|| format!("round {round}: with Gloo down"))?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // A change while Gloo is away: in the Proxy, judged by nobody, not yet in Envoy.
        let name = format!("late{round}");
        let host = lab.host(&name, 80);
        apply_backend_service(&lab.client, lab.app.name(), &name, 80, late.address()).await?;
        wait_until(&format!("the Proxy to hold {host}"), CONVERGE, || async {
            lab.operator.process().ensure_running()?;
            let spec = lab.proxy().await?.data["spec"].to_string();
            Ok(if spec.contains(&format!("\"{host}\"")) {
                Progress::Done(())
            } else {
                Progress::pending("not yet")
            })
        })
        .await?;
        let (_, _, message) = lab
            .wait_condition("ProxyAccepted", "Unknown", "Pending")
            .await?;
        eprintln!(
            "{}: round {round}: Gloo down: ProxyAccepted=Unknown: {message}",
            cx.name()
        );
        // Silent for longer than the grace: Gloo is said not to report.
        lab.wait_condition("ProxyAccepted", "Unknown", "GlooNotReported")
            .await?;
        let unknown = lab.get(&host, "/").await?;
        ensure!(
            unknown.status == 404,
            "round {round}: {host} answered {} before Gloo returned",
            unknown.status
        );

        tokio::time::sleep(GLOO_DOWN.saturating_sub(killed.elapsed())).await;
        let began = Instant::now();
        let xds = lab.gloo.start_again().await?;
        time_until(&format!("{host} to answer 200"), AFTER_RETURN, || async {
            let r = lab.get(&host, "/").await?;
            Ok(r.status == 200 && r.body == "late")
        })
        .await?;
        let t = began.elapsed();
        eprintln!(
            "{}: round {round}: Gloo started again, serves xDS {xds:.1?} later; the change made while it was down routes {:.2}s after the start",
            cx.name(),
            t.as_secs_f64()
        );
        took.push(t);
        lab.check_routing().await?;
    }
    eprintln!(
        "{}: {rounds} Gloo restarts survived; Gloo started again → first 200 for the change made meanwhile: median {:.2}s of [{}] s",
        cx.name(),
        median(&took).as_secs_f64(),
        secs(&took)
    );
    ensure!(
        lab.envoy.pid() == envoy_pid && lab.envoy.is_running(),
        "Envoy was restarted"
    );
    drop(late);
    lab.finish().await
}
