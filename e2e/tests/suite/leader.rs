//! Leader election between two replicas of the operator, with the chart's Lease permissions.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::operator::{CHART_NAMESPACE, Operator};
use hostrouter_e2e::{Progress, Suite, TestContext, wait_until};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams};
use libtest_mimic::Trial;
use serde_json::json;

use crate::world::{CONVERGE, World, apply_service};

/// Short timings, so that a crashed leader is replaced within seconds, with room for API
/// calls that stall for a second or two on a busy machine.
const LEASE_DURATION: Duration = Duration::from_secs(6);
/// How early a standby may take a crashed leader's Lease, by this test's clock: the standby
/// saw the last renewal up to about two retry periods (500 ms each) before the kill.
const OBSERVATION_SLACK: Duration = Duration::from_secs(1);

pub fn trials(suite: &Suite) -> Vec<Trial> {
    vec![suite.trial(
        "leader::one_replica_writes_and_a_standby_takes_over",
        |cx| async move { hands_over(&cx).await },
    )]
}

/// Two replicas share a Lease: only the leader reconciles; a leader that shuts down hands over
/// at once, a killed one once its Lease has expired (not before); the new leader keeps the
/// Proxy current; a leader whose Lease is taken from it stops and exits.
async fn hands_over(cx: &TestContext) -> Result<()> {
    let lease_name = hostrouter_e2e::namespace::unique_name("lease");
    let election = [
        "--leader-elect",
        "--leader-elect-namespace",
        CHART_NAMESPACE,
        "--leader-elect-lease-name",
        &lease_name,
        "--leader-elect-lease-duration",
        "6s",
        "--leader-elect-renew-deadline",
        "4s",
        "--leader-elect-retry-period",
        "500ms",
    ];
    let mut w = World::new(cx, &election).await?;
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), CHART_NAMESPACE);
    wait_leader(&w.operator, &leases, &lease_name).await?;

    let mut args = vec!["--gloo-namespace", w.gloo.name()];
    args.extend_from_slice(&election);
    let mut standby = Operator::start_as(cx, "hostrouter-standby", &w.shard, &args).await?;
    ensure!(
        standby.metric("hostrouter_leader", &[]).await? == 0.0,
        "the second replica must stand by while the first holds the Lease"
    );

    let ns = w.app.name().to_owned();
    w.create_router(&ns, "edge", &w.proxy_name).await?;
    w.wait_condition(&ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    let standby_work = standby.writes().await?
        + standby
            .metric(
                "controller_runtime_reconcile_total",
                &[("result", "success")],
            )
            .await?;
    ensure!(
        standby_work == 0.0,
        "the standby reconciled or wrote ({standby_work})"
    );

    // A clean shutdown releases the Lease: the standby takes over within a few retry periods.
    let stopped = Instant::now();
    w.operator.stop().await?;
    wait_leader(&standby, &leases, &lease_name).await?;
    let handover = stopped.elapsed();
    println!(
        "leader::one_replica_writes_and_a_standby_takes_over: handover after SIGTERM {handover:.2?}"
    );
    ensure!(
        w.operator.process().logs().contains("released the lease"),
        "the stopped leader did not release the Lease: {}",
        w.operator.process().log_tail(5)
    );
    ensure!(
        handover < LEASE_DURATION - OBSERVATION_SLACK,
        "a released Lease should be taken at once, not after it expires ({handover:?})"
    );
    apply_service(&w.client, &ns, "added", &[("http", 80, "TCP")], None).await?;
    let added = format!("{ns}-added-80");
    w.wait_domains(
        "the new leader to add a virtual host",
        w.expected_domains(std::slice::from_ref(&added)),
        CONVERGE,
    )
    .await?;

    // The first replica comes back as a standby; the leader is killed without releasing the
    // Lease: the standby honours the Lease until it expires, then takes over.
    w.operator.resume(cx).await?;
    ensure!(
        w.operator.metric("hostrouter_leader", &[]).await? == 0.0,
        "the restarted replica must stand by"
    );
    let killed = Instant::now();
    standby.kill().await?;
    wait_leader(&w.operator, &leases, &lease_name).await?;
    let takeover = killed.elapsed();
    println!(
        "leader::one_replica_writes_and_a_standby_takes_over: takeover after SIGKILL {takeover:.2?} (lease {LEASE_DURATION:?})"
    );
    ensure!(
        takeover >= LEASE_DURATION - OBSERVATION_SLACK,
        "the standby took a live Lease after {takeover:?}"
    );
    Api::<Service>::namespaced(w.client.clone(), &ns)
        .delete("added", &Default::default())
        .await?;
    w.wait_domains(
        "the new leader to remove the virtual host",
        w.expected_domains(&[]),
        CONVERGE,
    )
    .await?;

    // Someone else takes the Lease: the leader stops reconciling and exits with an error.
    let intruder = json!({"spec": {"holderIdentity": "intruder", "renewTime": now()}});
    leases
        .patch(
            &lease_name,
            &PatchParams::default(),
            &Patch::Merge(&intruder),
        )
        .await?;
    let process = w.operator.process_mut();
    let status = tokio::time::timeout(CONVERGE, process.wait())
        .await
        .context("the leader kept running after its Lease was taken")??;
    ensure!(
        !status.success(),
        "a leader that lost its Lease must exit with an error, got {status}"
    );
    ensure!(
        process.logs().contains("lost the leader Lease"),
        "the log should say why: {}",
        process.log_tail(5)
    );
    Ok(())
}

/// Waits until `operator` says it leads and the Lease names its process.
async fn wait_leader(operator: &Operator, leases: &Api<Lease>, lease: &str) -> Result<()> {
    let suffix = format!("_{}", operator.process().pid());
    wait_until("the replica to lead", CONVERGE, || async {
        let leading = operator.metric("hostrouter_leader", &[]).await?;
        let holder = leases
            .get_opt(lease)
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity);
        Ok(
            if leading == 1.0 && holder.as_deref().is_some_and(|h| h.ends_with(&suffix)) {
                Progress::Done(())
            } else {
                Progress::Pending(format!("hostrouter_leader={leading} holder={holder:?}"))
            },
        )
    })
    .await
}

/// The current time as the API server's MicroTime.
fn now() -> serde_json::Value {
    json!(MicroTime(k8s_openapi::jiff::Timestamp::now()))
}
