//! Lifecycle churn: HostRouters created and deleted over and over, some deleted before the
//! operator wrote anything, some while the operator runs, some while it is stopped (SIGTERM)
//! or killed (SIGKILL). Afterwards no router is left with a finalizer and nothing the operator
//! wrote is left behind.
//!
//! Each round creates [`PER_ROUND`] routers; two are deleted at once, the rest once their Proxy
//! is written, half of those with the operator running and half with it down. The number of
//! cycles is `E2E_CHURN_CYCLES` (100 by default).

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::resources::{proxies as proxy_api, routers};
use hostrouter_e2e::{Progress, TestContext, wait_until};
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};

use crate::world::{CONVERGE, World, managed_objects};

const PER_ROUND: usize = 10;

/// How a router of a cycle is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Deletion {
    /// Right after its creation, racing the operator's first write.
    AtOnce,
    /// Once its Proxy is written, with the operator running.
    OperatorRunning,
    /// Once its Proxy is written, with the operator stopped (SIGTERM) or killed (SIGKILL).
    OperatorStopped,
    OperatorKilled,
}

pub(super) async fn create_delete_cycles(cx: &TestContext) -> Result<()> {
    let cycles: usize = match std::env::var("E2E_CHURN_CYCLES") {
        Ok(v) => v.parse().context("E2E_CHURN_CYCLES")?,
        Err(_) => 100,
    };
    let mut w = World::new(cx, &[]).await?;
    let ns = w.app.name().to_owned();
    let api = routers(&w.client, &ns);
    let proxies = proxy_api(&w.client, w.gloo.name());
    let mut done: BTreeMap<Deletion, usize> = BTreeMap::new();
    let rounds = cycles.div_ceil(PER_ROUND);
    for round in 0..rounds {
        let n = PER_ROUND.min(cycles - round * PER_ROUND);
        let names: Vec<String> = (0..n).map(|i| format!("c{round}-{i}")).collect();
        let proxy_name = |name: &str| format!("{}-{name}", w.proxy_name);
        for name in &names {
            let obj: DynamicObject =
                serde_json::from_value(w.router_manifest(&ns, name, &proxy_name(name)))?;
            api.create(&PostParams::default(), &obj)
                .await
                .with_context(|| format!("creating HostRouter {name}"))?;
        }
        let (at_once, rest) = names.split_at(2.min(n));
        for name in at_once {
            api.delete(name, &DeleteParams::default()).await?;
            *done.entry(Deletion::AtOnce).or_default() += 1;
        }
        for name in rest {
            let proxy = proxy_name(name);
            wait_until(&format!("Proxy {proxy}"), CONVERGE, || async {
                w.operator.process().ensure_running()?;
                Ok(match proxies.get_opt(&proxy).await? {
                    Some(_) => Progress::Done(()),
                    None => Progress::pending("not yet"),
                })
            })
            .await?;
        }
        let (running, down) = rest.split_at(rest.len() / 2);
        for name in running {
            api.delete(name, &DeleteParams::default()).await?;
            *done.entry(Deletion::OperatorRunning).or_default() += 1;
        }
        let how = if round % 2 == 0 {
            w.operator.stop().await?;
            Deletion::OperatorStopped
        } else {
            w.operator.kill().await?;
            Deletion::OperatorKilled
        };
        for name in down {
            api.delete(name, &DeleteParams::default()).await?;
            *done.entry(how).or_default() += 1;
        }
        w.operator.resume(cx).await?;
    }

    // Every router gone (no finalizer stuck), nothing the operator wrote left behind.
    let left = wait_until(
        "every router and everything written for them to be gone",
        2 * CONVERGE,
        || async {
            w.operator.process().ensure_running()?;
            let routers = api.list(&ListParams::default()).await?.items.len();
            let objects = managed_objects(&w.client, &ns, w.gloo.name()).await?.len();
            Ok(if routers == 0 && objects == 0 {
                Progress::Done((routers, objects))
            } else {
                Progress::pending(format!("{routers} routers, {objects} objects"))
            })
        },
    )
    .await?;
    let total: usize = done.values().sum();
    eprintln!(
        "{}: {total} create/delete cycles ({done:?}): {} routers and {} objects left",
        cx.name(),
        left.0,
        left.1
    );
    ensure!(total == cycles, "{total} of {cycles} cycles ran");
    Ok(())
}
