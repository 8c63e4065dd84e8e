//! Envoy Gateway on the lab's node, installed the documented way: its Helm chart runs the
//! control plane as a Pod (certificates from its certgen Job), and the Envoy fleet of each
//! Gateway becomes a Deployment of Pods that Envoy Gateway writes, running the lab's Envoy.
//!
//! The lab supplies images (imported into the node, never pulled: the chart's values name the
//! lab's) and cluster DNS ([`super::dns`], which must run: Envoy Pods reach Envoy Gateway's xDS
//! by its Service's name). The GatewayClass's `EnvoyProxy` names the lab's Envoy image and makes
//! the Envoy Service a ClusterIP, which gives the Gateway an address (and `Programmed=True`)
//! without a load balancer.

use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::workloads::ENVOY_IMAGE;
use crate::control_plane::ControlPlane;
use crate::resources::{envoy_proxies, gateway_classes};
use crate::toolchain::{tool, vars};
use crate::wait::{Progress, wait_until};

pub const NAMESPACE: &str = "envoy-gateway-system";
/// The GatewayClass the lab's routers name.
pub const CLASS: &str = "eg";
pub const CONTROLLER: &str = "gateway.envoyproxy.io/gatewayclass-controller";
const RELEASE: &str = "eg";
/// The EnvoyProxy of [`CLASS`].
const ENVOY_PROXY: &str = "lab";

/// Installs Envoy Gateway's chart into [`NAMESPACE`], then the GatewayClass [`CLASS`]; returns
/// once Envoy Gateway has accepted the class.
pub async fn install(cluster: &ControlPlane, within: Duration) -> Result<()> {
    install_with(cluster.helm_command()?, &cluster.client(), within).await
}

/// [`install`] with `helm` bound to the cluster `client` reaches (say, a detached one's).
pub async fn install_with(
    helm: crate::cli::ToolCommand,
    client: &kube::Client,
    within: Duration,
) -> Result<()> {
    let chart = tool(vars::ENVOY_GATEWAY_CHART_DIR)?;
    let timeout = format!("{}s", within.as_secs());
    helm.args([
        "install",
        RELEASE,
        chart.to_str().context("chart path is not UTF-8")?,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        // The lab cluster has the Gateway API CRDs and Envoy Gateway's own already.
        "--set",
        "crds.enabled=false",
        // A webhook that adds zone labels: the lab has one node and no zones.
        "--set",
        "topologyInjector.enabled=false",
        "--set",
        &format!("global.images.envoyProxy.image={ENVOY_IMAGE}"),
        "--set",
        "global.images.envoyProxy.pullPolicy=Never",
        "--wait",
        "--timeout",
        &timeout,
    ])
    .run()
    .await
    .context("helm install of Envoy Gateway's chart")?;

    let pp = PatchParams::apply("e2e").force();
    let envoy_proxy = json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyProxy",
        "metadata": {"name": ENVOY_PROXY, "namespace": NAMESPACE},
        "spec": {"provider": {"type": "Kubernetes", "kubernetes": {
            "envoyService": {"type": "ClusterIP"},
            "envoyDeployment": {"container": {"image": ENVOY_IMAGE}},
        }}},
    });
    envoy_proxies(client, NAMESPACE)
        .patch(ENVOY_PROXY, &pp, &Patch::Apply(&envoy_proxy))
        .await
        .context("applying the lab's EnvoyProxy")?;
    let class = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": CLASS},
        "spec": {
            "controllerName": CONTROLLER,
            "parametersRef": {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": ENVOY_PROXY, "namespace": NAMESPACE},
        },
    });
    let classes = gateway_classes(client);
    classes
        .patch(CLASS, &pp, &Patch::Apply(&class))
        .await
        .context("applying the GatewayClass")?;
    wait_until(
        "Envoy Gateway to accept the GatewayClass",
        within,
        || async {
            let c = classes.get(CLASS).await?;
            let accepted = c.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Accepted")
                .cloned();
            Ok(match accepted {
                Some(a) if a["status"] == "True" => Progress::Done(()),
                other => Progress::pending(format!("{other:?}")),
            })
        },
    )
    .await
}
