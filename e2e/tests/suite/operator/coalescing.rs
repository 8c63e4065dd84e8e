//! Coalescing on the real control plane: a lone Service waits for the delay and no longer; a
//! storm of Services reaches the Proxy in one write, a window after its first change.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::future::try_join_all;
use hostrouter_e2e::operator::TRIAL_LABEL;
use hostrouter_e2e::resources::routers;
use hostrouter_e2e::{Suite, TestContext};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use libtest_mimic::Trial;
use serde_json::json;

use crate::world::{CONVERGE, World, apply_service};

/// The operator's `--coalesce-window` in this trial: long enough to tell a storm's one write
/// at the window's end from a write at its start.
const WINDOW: Duration = Duration::from_secs(3);
/// Its `--coalesce-delay`: long enough that the creates of a storm, sent at once, reach the
/// operator within it on a loaded machine.
const DELAY: Duration = Duration::from_millis(600);
/// Services created at once.
const STORM: usize = 20;

pub fn trials(suite: &Suite) -> Vec<Trial> {
    vec![suite.trial(
        "operator::a_storm_of_services_is_one_proxy_write_and_a_lone_one_waits_only_the_delay",
        |cx| async move { storm_and_lone_change(&cx).await },
    )]
}

async fn storm_and_lone_change(cx: &TestContext) -> Result<()> {
    let window = format!("{}ms", WINDOW.as_millis());
    let delay = format!("{}ms", DELAY.as_millis());
    let w = World::new(
        cx,
        &["--coalesce-window", &window, "--coalesce-delay", &delay],
    )
    .await?;
    w.create_edge().await?;
    let mut routed = Vec::new();

    // A lone Service: routed once the delay is over, well within a window, in one write.
    let (lone_took, lone) = create_after_a_quiet_window(&w, &["lone"], &mut routed).await?;
    ensure!(
        lone_took >= DELAY,
        "a lone Service reached the Proxy {lone_took:?} after its create, before the delay ({DELAY:?})"
    );
    ensure!(
        lone_took < WINDOW,
        "a lone Service reached the Proxy {lone_took:?} after its create: held as a storm"
    );
    ensure!(lone == 1.0, "{lone} Proxy writes for a lone Service");

    // A storm: every Service in the first write, a window after the first create, and no
    // other write.
    let names: Vec<String> = (0..STORM).map(|i| format!("storm-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (took, storm) = create_after_a_quiet_window(&w, &names, &mut routed).await?;
    ensure!(
        took >= WINDOW,
        "a storm reached the Proxy {took:?} after its first create, before the window's end ({WINDOW:?})"
    );
    ensure!(
        storm == 1.0,
        "{storm} Proxy writes for a storm of {STORM} Services"
    );
    // Objects written for a router this operator does not manage (another shard's) reach no
    // router here: a burst of changes to one leaves nothing waiting in the coalescer.
    held_for_nothing_when_another_shards_object_changes(&w).await?;

    eprintln!(
        "{}: a lone Service routed after {lone_took:?}; a storm of {STORM} in {storm} write after {took:?}",
        cx.name()
    );
    Ok(())
}

/// After a quiet window, creates the Services `names` (one port each) in `app` at once: how
/// long until the Proxy holds them (and `routed`, to which they are added), and how many
/// Proxy writes that took, counted once the operator is quiet (it counts a write when the API
/// server answers, after the Proxy changed).
async fn create_after_a_quiet_window(
    w: &World,
    names: &[&str],
    routed: &mut Vec<String>,
) -> Result<(Duration, f64)> {
    let ns = w.app.name();
    tokio::time::sleep(WINDOW).await;
    let writes = w.operator.writes_of("Proxy", "apply").await?;
    let start = Instant::now();
    try_join_all(
        names
            .iter()
            .map(|name| apply_service(&w.client, ns, name, &[("http", 80, "TCP")], None)),
    )
    .await?;
    routed.extend(names.iter().map(|name| format!("{ns}-{name}-80")));
    w.wait_domains(
        &format!("{} new Service(s) in the Proxy", names.len()),
        w.expected_domains(routed),
        CONVERGE,
    )
    .await?;
    let took = start.elapsed();
    w.operator.settled_reconciles().await?;
    let written = w.operator.writes_of("Proxy", "apply").await? - writes;
    Ok((took, written))
}

/// A router of another shard (not this operator's), and a ConfigMap it owns labelled as the
/// operator's: changes to it are seen by this operator's watch, and hold no reconcile.
async fn held_for_nothing_when_another_shards_object_changes(w: &World) -> Result<()> {
    let ns = w.app.name();
    let mut manifest = w.router_manifest(ns, "foreign", "foreign-proxy");
    manifest["metadata"]["labels"] = json!({TRIAL_LABEL: "another-shard"});
    let foreign = routers(&w.client, ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value::<DynamicObject>(manifest)?,
        )
        .await
        .context("creating another shard's HostRouter")?;
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "foreign-envoy",
            "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "hostrouter"},
            "ownerReferences": [{
                "apiVersion": "hostrouter.io/v1alpha1",
                "kind": "HostRouter",
                "name": "foreign",
                "uid": foreign.uid().context("the router's uid")?,
                "controller": true,
            }],
        },
        "data": {"change": "0"},
    }))?;
    let config_maps: Api<ConfigMap> = Api::namespaced(w.client.clone(), ns);
    config_maps
        .create(&PostParams::default(), &config_map)
        .await?;
    for i in 1..=3 {
        config_maps
            .patch(
                "foreign-envoy",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"change": i.to_string()}})),
            )
            .await?;
    }
    // Within the delay and the window after the changes: a router key held for them would
    // still be waiting.
    tokio::time::sleep(DELAY / 2).await;
    let held = w
        .operator
        .metric("hostrouter_reconcile_queue_depth", &[])
        .await?;
    ensure!(
        held == 0.0,
        "{held} reconciles held after changes to another shard's objects"
    );
    Ok(())
}
