//! What the lab's node runs for the trials and the demo: a backend as a Pod, and the operator
//! from the chart.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::network::HOST_IP;
use crate::backends::PETS_JSON;
use crate::http;
use crate::operator::{CHART_NAMESPACE, CHART_RELEASE, chart_dir};
use crate::resources::routers;
use crate::wait::{Progress, wait_until};

/// The Envoy image the node imports (`ENVOY_IMAGE_TAR`).
pub const ENVOY_IMAGE: &str = "hostrouter.local/envoy:1.40.0";
/// The operator image the node imports (`OPERATOR_IMAGE_TAR`, `make operator-image`).
pub const OPERATOR_IMAGE: &str = "hostrouter.local/hostrouter";
pub const OPERATOR_TAG: &str = "e2e";

/// A backend as a Pod: Envoy answering `/api/pets` with the pets, behind Service `petstore`.
pub async fn apply_petstore(client: &Client, namespace: &str) -> Result<()> {
    let bootstrap = format!(
        r#"static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 0.0.0.0, port_value: 8080}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: petstore
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /api/pets}}
                direct_response: {{status: 200, body: {{inline_string: '{PETS_JSON}'}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    );
    let pp = PatchParams::apply("e2e").force();
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "petstore", "namespace": namespace},
        "data": {"envoy.yaml": bootstrap},
    });
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch("petstore", &pp, &Patch::Apply(&cm))
        .await?;
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "petstore", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "petstore"}},
            "template": {
                "metadata": {"labels": {"app": "petstore"}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 10101, "runAsGroup": 10101, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "petstore",
                        "image": ENVOY_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["/usr/local/bin/envoy", "--config-path", "/etc/petstore/envoy.yaml", "--disable-hot-restart", "--log-level", "warn"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/api/pets", "port": 8080}, "periodSeconds": 2},
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/petstore"}],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "petstore"}}],
                },
            },
        },
    });
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch("petstore", &pp, &Patch::Apply(&deployment))
        .await?;
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "petstore", "namespace": namespace},
        "spec": {"selector": {"app": "petstore"}, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]},
    });
    Api::<Service>::namespaced(client.clone(), namespace)
        .patch("petstore", &pp, &Patch::Apply(&svc))
        .await?;
    Ok(())
}

/// `helm install` of the chart into [`CHART_NAMESPACE`] (which must exist), with the operator
/// image imported into the node and Gloo's xDS on this machine's end of the veth. `helm` is
/// bound to the cluster (say, [`crate::ControlPlane::helm_command`]).
pub async fn install_operator(
    helm: crate::cli::ToolCommand,
    gloo_namespace: &str,
    xds_port: u16,
) -> Result<()> {
    let chart = chart_dir();
    helm.args([
        "install",
        CHART_RELEASE,
        chart.to_str().context("chart path is not UTF-8")?,
        "--namespace",
        CHART_NAMESPACE,
        "--set",
        &format!("image.repository={OPERATOR_IMAGE}"),
        "--set",
        &format!("image.tag={OPERATOR_TAG}"),
        "--set",
        "image.pullPolicy=Never",
        "--set",
        &format!("gloo.namespace={gloo_namespace}"),
        "--set",
        &format!("gloo.xdsAddress={HOST_IP}"),
        "--set",
        &format!("gloo.xdsPort={xds_port}"),
        "--set",
        &format!("envoy.image={ENVOY_IMAGE}"),
    ])
    .run()
    .await
    .context("helm install of the chart")?;
    Ok(())
}

/// Waits until HostRouter `namespace/name` says `Ready=True` (which needs Envoy Pods available:
/// `EnvoyAvailable=True` on Gloo, `GatewayProgrammed=True` on the Gateway API); `alive` fails
/// when a part it needs has stopped.
pub async fn wait_router_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    within: Duration,
    alive: impl Fn() -> Result<()>,
) -> Result<()> {
    let api = routers(client, namespace);
    wait_until(
        &format!("HostRouter {namespace}/{name} Ready=True"),
        within,
        || async {
            alive()?;
            let r = api.get(name).await?;
            let conds = r.data["status"]["conditions"].clone();
            let conds = conds.as_array().cloned().unwrap_or_default();
            let ready = conds
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            Ok(if ready {
                Progress::Done(())
            } else {
                let not_true: Vec<String> = conds
                    .iter()
                    .filter(|c| c["status"] != "True")
                    .map(|c| {
                        format!(
                            "{}={} ({}: {})",
                            c["type"], c["status"], c["reason"], c["message"]
                        )
                    })
                    .collect();
                Progress::pending(not_true.join("; "))
            })
        },
    )
    .await
}

/// Waits until `address` answers `GET /api/pets` with the pets for Host `host`.
pub async fn wait_pets(
    address: &str,
    host: &str,
    within: Duration,
    alive: impl Fn() -> Result<()>,
) -> Result<()> {
    wait_until(
        &format!("{address} to answer the pets for {host}"),
        within,
        || async {
            alive()?;
            Ok(match http::get(address, host, "/api/pets").await {
                Ok(r) if r.status == 200 && r.body == PETS_JSON => Progress::Done(()),
                Ok(r) => Progress::pending(format!("{} {}", r.status, r.body)),
                Err(e) => Progress::pending(format!("{e:#}")),
            })
        },
    )
    .await
}
