//! The real PodSecurity admission at `restricted`: the Envoy Pods the operator's Deployments
//! make, and the operator's own Pods from the chart, are admitted in namespaces labelled
//! `pod-security.kubernetes.io/enforce=restricted`. The Pods are made by the real Deployment
//! and ReplicaSet controllers of a control plane of the trial's own (there is no kubelet: the
//! Pods stay Pending, but exist only once admitted). A Pod template without a security context
//! in the same namespace is refused, which shows that the admission is at work.

use std::time::Duration;

use anyhow::{Result, ensure};
use hostrouter_e2e::operator::{
    CHART_NAMESPACE, CHART_RELEASE, Operator, TRIAL_LABEL, install_chart,
};
use hostrouter_e2e::resources::routers;
use hostrouter_e2e::toolchain::project_crds;
use hostrouter_e2e::{ControlPlane, ControlPlaneOptions, Progress, TestContext, wait_until};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

const RESTRICTED: [(&str, &str); 2] = [
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/warn", "restricted"),
];
const ADMITTED: Duration = Duration::from_secs(60);

pub(super) async fn restricted_pods(cx: &TestContext) -> Result<()> {
    let mut options = ControlPlaneOptions::from_env()?.crds(project_crds()?);
    options.controllers = ["garbagecollector", "namespace", "deployment", "replicaset"]
        .map(String::from)
        .to_vec();
    let cluster = ControlPlane::start(options).await?;
    let result = check(cx, &cluster).await;
    cluster.stop_after(cx.name(), result).await
}

async fn check(cx: &TestContext, cluster: &ControlPlane) -> Result<()> {
    let client = cluster.client();
    for ns in ["edge", "apps", "gloo-system", CHART_NAMESPACE] {
        let mut labels = json!({});
        if ns != "gloo-system" {
            for (k, v) in RESTRICTED {
                labels[k] = json!(v);
            }
        }
        if ns == "apps" {
            labels["hostrouter.io/expose"] = json!("true");
        }
        crate::world::create_namespace(&client, ns, labels).await?;
    }
    crate::world::apply_service(&client, "apps", "web", &[("http", 80, "TCP")], None).await?;

    // The chart, into a namespace labelled restricted; the operator runs with its identity.
    let kubeconfig = install_chart(cluster).await?;

    // The Envoy Pods: one router on an unprivileged port, one on port 80 (the Deployment then
    // sets the sysctl `net.ipv4.ip_unprivileged_port_start`, which restricted allows).
    let shard = hostrouter_e2e::namespace::unique_name("p");
    let operator = Operator::start_with(cx, "hostrouter", &shard, &[], kubeconfig).await?;
    for (name, port) in [("high", 8080), ("low", 80)] {
        let router = json!({
            "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
            "metadata": {"name": name, "namespace": "edge", "labels": {TRIAL_LABEL: shard}},
            "spec": {
                "proxyName": name,
                "listener": {"port": port},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}},
            },
        });
        routers(&client, "edge")
            .patch(
                name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&router),
            )
            .await?;
    }

    let mut admitted = Vec::new();
    for (ns, deployment) in [
        ("edge", "high"),
        ("edge", "low"),
        (CHART_NAMESPACE, CHART_RELEASE),
    ] {
        operator.process().ensure_running()?;
        let pod = admitted_pod(&client, ns, deployment).await?;
        admitted.push(format!("{ns}/{pod}"));
    }
    eprintln!(
        "{}: admitted at restricted: {}",
        cx.name(),
        admitted.join(", ")
    );

    // The admission is at work: a Pod template without a security context is refused.
    let plain = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "plain", "namespace": "edge"},
        "spec": {
            "selector": {"matchLabels": {"app": "plain"}},
            "template": {
                "metadata": {"labels": {"app": "plain"}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/plain"}]},
            },
        },
    });
    Api::<Deployment>::namespaced(client.clone(), "edge")
        .patch(
            "plain",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&plain),
        )
        .await?;
    let refusal = wait_until("the plain Pod to be refused", ADMITTED, || async {
        Ok(match replica_failure(&client, "edge", "plain").await? {
            Some(message) => Progress::Done(message),
            None => Progress::pending("no ReplicaFailure yet"),
        })
    })
    .await?;
    ensure!(
        refusal.contains("violates PodSecurity \"restricted"),
        "the plain Pod was refused for another reason: {refusal}"
    );
    Ok(())
}

/// Waits until the Deployment's ReplicaSet has made a Pod, and returns its name; fails at once
/// with the ReplicaSet's message when the Pod was refused.
async fn admitted_pod(client: &Client, ns: &str, deployment: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_until(
        &format!("a Pod of Deployment {ns}/{deployment}"),
        ADMITTED,
        || async {
            if let Some(message) = replica_failure(client, ns, deployment).await? {
                return Ok(Progress::Abort(format!(
                    "the Pod of {ns}/{deployment} was refused: {message}"
                )));
            }
            let owned = pods
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find(|p| {
                    p.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(&format!("{deployment}-")))
                });
            Ok(match owned {
                Some(p) => Progress::Done(p.metadata.name.unwrap_or_default()),
                None => Progress::pending("no Pod yet"),
            })
        },
    )
    .await
}

/// The `ReplicaFailure` message of the Deployment's ReplicaSet, if any.
async fn replica_failure(client: &Client, ns: &str, deployment: &str) -> Result<Option<String>> {
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    Ok(sets
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Deployment" && o.name == deployment)
        })
        .flat_map(|rs| rs.status.and_then(|s| s.conditions).unwrap_or_default())
        .find(|c| {
            c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True")
        })
        .map(|c| c.message.unwrap_or_default()))
}
