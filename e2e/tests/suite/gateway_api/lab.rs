//! The Gateway API lab: a control plane with a real node, Envoy Gateway installed from its
//! chart, the operator (under the chart's identity, as a local process), and backends on this
//! machine behind selectorless Services. Envoy Gateway's Envoy Pods on the node reach them
//! through the node's veth; this machine reaches a Gateway at its address (the Envoy Service's
//! ClusterIP, routed into the node).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hostrouter_e2e::backends::{Backend, apply_backend_service};
use hostrouter_e2e::loopback::{self, LoopbackAlias};
use hostrouter_e2e::node::dns::ClusterDns;
use hostrouter_e2e::node::network::HOST_IP;
use hostrouter_e2e::node::{NodeCluster, envoy_gateway};
use hostrouter_e2e::operator::{Operator, TRIAL_LABEL, install_chart};
use hostrouter_e2e::resources::{gateways, routers};
use hostrouter_e2e::toolchain::{project_crds, tool, vars};
use hostrouter_e2e::{ControlPlaneOptions, Progress, TestContext, wait_until};
use kube::Client;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

/// Envoy Gateway, its Envoy Pods: images unpack, Pods start, probes pass.
pub const PODS: Duration = Duration::from_secs(240);
/// How long a change may take to reach Envoy through Envoy Gateway.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// The node cluster with Envoy Gateway and the operator.
pub struct GatewayLab {
    pub cluster: NodeCluster,
    _dns: ClusterDns,
    pub operator: Operator,
    pub client: Client,
    pub shard: String,
    // Dropped last: removes the backends' address from lo.
    pub alias: LoopbackAlias,
}

impl GatewayLab {
    pub async fn start(cx: &TestContext) -> Result<Self> {
        let began = Instant::now();
        let images = [
            tool(vars::PAUSE_IMAGE_TAR)?,
            tool(vars::ENVOY_IMAGE_TAR)?,
            tool(vars::ENVOY_GATEWAY_IMAGE_TAR)?,
        ];
        let options = ControlPlaneOptions::from_env()?
            .crds(project_crds()?)
            .crds([tool(vars::ENVOY_GATEWAY_CRDS_DIR)?]);
        let cluster = NodeCluster::start(options, &images).await?;
        eprintln!(
            "{}: node Ready {:.1?} after start",
            cx.name(),
            began.elapsed()
        );
        let client = cluster.cluster().client();
        // Cluster DNS, for the Envoy Pods to find Envoy Gateway's xDS server.
        let dns = ClusterDns::start(SocketAddr::from((HOST_IP, 53)), client.clone()).await?;
        envoy_gateway::install(cluster.cluster(), PODS).await?;
        eprintln!(
            "{}: Envoy Gateway runs and accepted GatewayClass {} {:.1?} after start",
            cx.name(),
            envoy_gateway::CLASS,
            began.elapsed()
        );
        let shard = hostrouter_e2e::namespace::unique_name("ga");
        let kubeconfig = install_chart(cluster.cluster()).await?;
        let operator = Operator::start_with(cx, "hostrouter", &shard, &[], kubeconfig).await?;
        let alias = LoopbackAlias::add(loopback::unique_backend_ip())?;
        Ok(Self {
            cluster,
            _dns: dns,
            operator,
            client,
            shard,
            alias,
        })
    }

    /// The address backends bind.
    pub fn backend_ip(&self) -> Ipv4Addr {
        self.alias.ip()
    }

    /// A namespace of this cluster with `labels`.
    pub async fn namespace(&self, name: &str, labels: Value) -> Result<()> {
        crate::world::create_namespace(&self.client, name, labels).await
    }

    /// A backend on this machine behind Service `<ns>/<name>` port `port`.
    pub async fn backend(&self, ns: &str, name: &str, port: i32) -> Result<Backend> {
        let b = Backend::start(name, self.backend_ip().into(), 0).await?;
        apply_backend_service(&self.client, ns, name, port, b.address()).await?;
        Ok(b)
    }

    /// Applies HostRouter `<ns>/<name>` on the Gateway API backend (its own Gateway of the
    /// lab's class) with `spec` merged in.
    pub async fn apply_router(&self, ns: &str, name: &str, spec: Value) -> Result<()> {
        let mut manifest = json!({
            "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
            "metadata": {"name": name, "namespace": ns, "labels": {TRIAL_LABEL: self.shard}},
            "spec": {
                "proxyName": name,
                "listener": {"port": 8080},
                "backend": {"type": "GatewayAPI", "gatewayAPI": {"gatewayClassName": envoy_gateway::CLASS}},
            },
        });
        for (k, v) in spec.as_object().into_iter().flatten() {
            manifest["spec"][k] = v.clone();
        }
        let obj: DynamicObject = serde_json::from_value(manifest)?;
        routers(&self.client, ns)
            .patch(
                name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("applying HostRouter {ns}/{name}"))?;
        Ok(())
    }

    /// The address of Gateway `<ns>/<name>` once Envoy Gateway has given it one.
    pub async fn gateway_address(&self, ns: &str, name: &str) -> Result<String> {
        let api = gateways(&self.client, ns);
        wait_until(
            &format!("Gateway {ns}/{name} to get an address"),
            PODS,
            || async {
                self.cluster.node().ensure_running()?;
                let gw = api.get_opt(name).await?;
                let address = gw.as_ref().and_then(|g| {
                    g.data["status"]["addresses"][0]["value"]
                        .as_str()
                        .map(String::from)
                });
                Ok(match address {
                    Some(a) => Progress::Done(a),
                    None => Progress::pending(gw.map(|g| g.data["status"].clone())),
                })
            },
        )
        .await
    }

    /// Stops the node cluster (keeping logs on failure) and checks that nothing is left.
    pub async fn stop(mut self, failed: bool) -> Result<()> {
        drop(self.operator);
        if let Some(dir) = self.cluster.stop(failed).await? {
            eprintln!("Gateway API lab logs kept in {}", dir.display());
        }
        let left = self.cluster.leftovers();
        anyhow::ensure!(
            left.is_empty(),
            "the node left behind:\n  {}",
            left.join("\n  ")
        );
        Ok(())
    }
}
