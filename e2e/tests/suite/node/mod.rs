//! A real node: the operator and its Envoy fleet run as Pods under a real kubelet
//! (`hostrouter_e2e::node`), on a control plane of their own.
//!
//! One trial walks the whole path a user takes: the chart installed with helm runs the operator
//! as a Pod with in-cluster config (its `/readyz` and `/metrics` read through the Pod); a
//! HostRouter makes an Envoy Deployment whose Pods run from the generated ConfigMap, get their
//! configuration from Gloo and route to a backend Pod; the Envoy Service's ClusterIP answers
//! through kube-proxy; `EnvoyAvailable` and `Ready` turn True; a bootstrap change rolls the
//! Envoy Pods. Every namespace with Pods enforces PodSecurity `restricted`. Stopping the node
//! leaves no process, mount, network namespace, interface, route or iptables chain of it.
//!
//! `E2E_NODE=0` leaves the trial out (reported as ignored, never as passed).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::gloo::{Gloo, GlooConfig};
use hostrouter_e2e::node::NodeCluster;
use hostrouter_e2e::node::network::HOST_IP;
use hostrouter_e2e::node::workloads::{
    apply_petstore, install_operator, wait_pets, wait_router_ready,
};
use hostrouter_e2e::operator::{CHART_NAMESPACE, CHART_RELEASE};
use hostrouter_e2e::resources::routers;
use hostrouter_e2e::toolchain::{project_crds, tool, vars};
use hostrouter_e2e::{ControlPlaneOptions, Progress, Suite, TestContext, http, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use libtest_mimic::Trial;
use serde_json::json;

use crate::world::create_namespace;

const EDGE: &str = "edge";
const APPS: &str = "apps";
const GLOO_NS: &str = "gloo-system";
/// Pods start, images unpack, probes pass.
const PODS: Duration = Duration::from_secs(180);
const RESTRICTED: [(&str, &str); 2] = [
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/warn", "restricted"),
];

pub fn trials(suite: &Suite) -> Vec<Trial> {
    let off = matches!(std::env::var("E2E_NODE").as_deref(), Ok("0" | "off"));
    vec![
        suite
            .trial("node::operator_and_envoy_run_as_pods", |cx| async move {
                on_a_node(&cx).await
            })
            .with_ignored_flag(off),
    ]
}

async fn on_a_node(cx: &TestContext) -> Result<()> {
    let _node = hostrouter_e2e::node::exclusive().await;
    let began = Instant::now();
    let images = [
        tool(vars::PAUSE_IMAGE_TAR)?,
        tool(vars::ENVOY_IMAGE_TAR)?,
        tool(vars::OPERATOR_IMAGE_TAR)?,
    ];
    let mut lab = NodeCluster::start(
        ControlPlaneOptions::from_env()?.crds(project_crds()?),
        &images,
    )
    .await?;
    eprintln!(
        "{}: node Ready {:.1?} after start",
        cx.name(),
        began.elapsed()
    );
    let result = walk(cx, &lab).await;
    if let Some(dir) = lab.stop(result.is_err()).await? {
        eprintln!("{}: node cluster logs kept in {}", cx.name(), dir.display());
    }
    result?;
    // Teardown leaves nothing: no process, mount, namespace, interface, route or iptables
    // chain of the node.
    let left = lab.leftovers();
    ensure!(
        left.is_empty(),
        "the node left behind:\n  {}",
        left.join("\n  ")
    );
    eprintln!("{}: teardown left nothing behind", cx.name());
    Ok(())
}

async fn walk(cx: &TestContext, lab: &NodeCluster) -> Result<()> {
    let cluster = lab.cluster();
    let client = cluster.client();
    let restricted = || {
        let mut labels = json!({});
        for (k, v) in RESTRICTED {
            labels[k] = json!(v);
        }
        labels
    };
    create_namespace(&client, CHART_NAMESPACE, restricted()).await?;
    create_namespace(&client, EDGE, restricted()).await?;
    let mut apps = restricted();
    apps["hostrouter.io/expose"] = json!("true");
    create_namespace(&client, APPS, apps).await?;
    create_namespace(&client, GLOO_NS, json!({})).await?;

    // Gloo on this machine, its xDS on the node's side of the veth, for the Envoy Pods.
    let gloo = GlooConfig::new(GLOO_NS)?
        .at(HOST_IP)
        .watch([GLOO_NS, EDGE, APPS]);
    let xds_port = gloo.xds_port;
    let gloo = Gloo::start_on(cx, cluster, gloo).await?;

    apply_petstore(&client, APPS).await?;

    // The chart, with the operator image imported into the node.
    install_operator(cluster.helm_command()?, GLOO_NS, xds_port).await?;
    let operator = ready_pod(lab, &client, CHART_NAMESPACE, CHART_RELEASE).await?;
    let operator_ip = pod_ip(&operator)?;
    let readyz = http::get(&format!("{operator_ip}:8080"), "operator", "/readyz").await?;
    ensure!(
        readyz.status == 200,
        "the operator Pod's /readyz: {} {}",
        readyz.status,
        readyz.body
    );
    let metrics = http::get(&format!("{operator_ip}:8080"), "operator", "/metrics").await?;
    ensure!(
        metrics.body.contains("hostrouter_leader 1"),
        "the operator Pod leads and says so in /metrics:\n{}",
        metrics.body
    );
    eprintln!(
        "{}: the operator runs as Pod {} ({operator_ip}): /readyz {}",
        cx.name(),
        operator.metadata.name.as_deref().unwrap_or_default(),
        readyz.body.trim()
    );

    // The reference scenario, with Envoy as Pods.
    let router = json!({
        "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
        "metadata": {"name": "edge", "namespace": EDGE},
        "spec": {
            "proxyName": "edge",
            "listener": {"port": 8080},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": APPS}},
            "service": {"type": "ClusterIP"},
        },
    });
    routers(&client, EDGE)
        .patch(
            "edge",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&router),
        )
        .await?;
    wait_router_ready(&client, EDGE, "edge", PODS, || lab.node().ensure_running()).await?;
    let svc = Api::<Service>::namespaced(client.clone(), EDGE)
        .get("edge")
        .await?;
    let cluster_ip = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the Envoy Service has no ClusterIP")?;
    let address = format!("{cluster_ip}:8080");
    let host = format!("{APPS}-petstore-8080");
    wait_pets(&address, &host, PODS, || {
        lab.node().ensure_running()?;
        gloo.ensure_running()
    })
    .await?;
    eprintln!(
        "{}: curl -H 'Host: {host}' http://{address}/api/pets answered the pets through the Service's ClusterIP",
        cx.name()
    );
    let pods = cluster.kubectl(["get", "pods", "-A", "-o", "wide"]).await?;
    let hr = cluster.kubectl(["get", "hr", "-A"]).await?;
    eprintln!(
        "{}:\n$ kubectl get pods -A -o wide\n{pods}\n$ kubectl get hr -A\n{hr}",
        cx.name()
    );
    ensure!(
        hr.contains("True"),
        "kubectl get hr does not say READY True:\n{hr}"
    );

    // A bootstrap change rolls the Envoy Pods.
    let before = envoy_pods(&client).await?;
    routers(&client, EDGE)
        .patch(
            "edge",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"envoy": {"adminPort": 19002}}})),
        )
        .await?;
    let rolled = Instant::now();
    wait_until("the Envoy Pods to roll", PODS, || async {
        lab.node().ensure_running()?;
        let now = envoy_pods(&client).await?;
        let fresh = !now.is_empty() && now.iter().all(|p| !before.contains(p));
        Ok(if fresh && deployment_available(&client).await? {
            Progress::Done(())
        } else {
            Progress::pending(format!("before {before:?}, now {now:?}"))
        })
    })
    .await?;
    wait_router_ready(&client, EDGE, "edge", PODS, || lab.node().ensure_running()).await?;
    wait_pets(&address, &host, PODS, || {
        lab.node().ensure_running()?;
        gloo.ensure_running()
    })
    .await?;
    eprintln!(
        "{}: a bootstrap change rolled the Envoy Pods in {:.1?}: {before:?} → {:?}",
        cx.name(),
        rolled.elapsed(),
        envoy_pods(&client).await?
    );
    drop(gloo);
    Ok(())
}

/// Waits until a Pod of Deployment `deployment` is Ready; returns it.
async fn ready_pod(lab: &NodeCluster, client: &Client, ns: &str, deployment: &str) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_until(
        &format!("a Ready Pod of {ns}/{deployment}"),
        PODS,
        || async {
            lab.node().ensure_running()?;
            let list = pods.list(&ListParams::default()).await?;
            let mine: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| {
                    p.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(&format!("{deployment}-")))
                })
                .collect();
            let ready = mine.iter().find(|p| is_ready(p)).cloned();
            Ok(match ready {
                Some(p) => Progress::Done(p),
                None => Progress::pending(
                    mine.iter()
                        .map(|p| {
                            format!(
                                "{}: {:?}",
                                p.metadata.name.as_deref().unwrap_or_default(),
                                p.status.as_ref().map(|s| (
                                    &s.phase,
                                    &s.conditions,
                                    &s.container_statuses
                                ))
                            )
                        })
                        .collect::<Vec<_>>(),
                ),
            })
        },
    )
    .await
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(p: &Pod) -> Result<String> {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("the Pod has no IP")
}

/// The names of the Envoy Pods of router `edge`.
async fn envoy_pods(client: &Client) -> Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), EDGE);
    Ok(pods
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=hostrouter"))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect())
}

async fn deployment_available(client: &Client) -> Result<bool> {
    let d = Api::<Deployment>::namespaced(client.clone(), EDGE)
        .get("edge")
        .await?;
    let s = d.status.unwrap_or_default();
    Ok(s.updated_replicas == s.replicas
        && s.available_replicas == s.replicas
        && s.replicas.unwrap_or(0) > 0)
}
