//! One route body's world on the Gateway API lab: a namespace of Services (petstore and
//! inventory on this machine), a namespace for the router, and a HostRouter on the Gateway API
//! backend whose own Gateway Envoy Gateway serves; the body asks the Gateway's address.

use std::future::Future;
use std::net::IpAddr;

use anyhow::Result;
use hostrouter_e2e::backends::Backend;
use hostrouter_e2e::namespace::unique_name;
use hostrouter_e2e::node::envoy_gateway;
use hostrouter_e2e::node::workloads::wait_router_ready;
use hostrouter_e2e::operator::Operator;
use hostrouter_e2e::resources::routers;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::lab::{GatewayLab, PODS};
use crate::routes::RouteLab;
use crate::world::EXPOSE_LABEL;

/// The HTTPS port the bodies give `spec.tls.port`: the Gateway's listener.
const HTTPS_PORT: u16 = 8443;
const HTTP_PORT: u16 = 8080;

pub struct Site<'a> {
    lab: &'a GatewayLab,
    /// The router's name and proxy name (unique among routers), and its Gateway's name.
    router: String,
    app: String,
    edge: String,
    address: String,
    _backends: Vec<Backend>,
}

impl<'a> Site<'a> {
    /// The namespaces, the backends, the router; returns once the router is Ready (its Gateway
    /// programmed, its routes accepted).
    pub async fn new(lab: &'a GatewayLab) -> Result<Self> {
        let shard = unique_name("site");
        let (app, edge) = (format!("{shard}-app"), format!("{shard}-edge"));
        lab.namespace(
            &app,
            json!({"e2e.hostrouter.io/routed": shard, EXPOSE_LABEL: "true"}),
        )
        .await?;
        lab.namespace(&edge, json!({})).await?;
        let backends = vec![
            lab.backend(&app, "petstore", 8080).await?,
            lab.backend(&app, "inventory", 80).await?,
        ];
        lab.apply_router(
            &edge,
            &shard,
            json!({
                "namespaceSelector": {"matchLabels": {"e2e.hostrouter.io/routed": shard}},
                "listener": {"port": HTTP_PORT},
            }),
        )
        .await?;
        let address = lab.gateway_address(&edge, &shard).await?;
        wait_router_ready(&lab.client, &edge, &shard, PODS, || {
            lab.cluster.node().ensure_running()
        })
        .await?;
        Ok(Self {
            lab,
            router: shard,
            app,
            edge,
            address,
            _backends: backends,
        })
    }
}

impl RouteLab for Site<'_> {
    fn client(&self) -> &Client {
        &self.lab.client
    }

    fn app(&self) -> &str {
        &self.app
    }

    fn edge(&self) -> &str {
        &self.edge
    }

    fn router(&self) -> &str {
        &self.router
    }

    fn operator(&self) -> &Operator {
        &self.lab.operator
    }

    fn address(&self) -> &str {
        &self.address
    }

    fn listener_port(&self) -> u16 {
        HTTP_PORT
    }

    fn https_port(&self) -> u16 {
        HTTPS_PORT
    }

    fn backend_ip(&self) -> IpAddr {
        self.lab.backend_ip().into()
    }

    fn accepted(&self) -> (&'static str, &'static str) {
        ("RoutesAccepted", "Accepted")
    }

    fn ensure_running(&self) -> Result<()> {
        self.lab.cluster.node().ensure_running()
    }

    /// The Envoy Pods Envoy Gateway runs for this router's Gateway.
    async fn envoys(&self) -> Result<String> {
        let selector = format!(
            "gateway.envoyproxy.io/owning-gateway-namespace={},gateway.envoyproxy.io/owning-gateway-name={}",
            self.edge, self.router
        );
        let pods = Api::<Pod>::namespaced(self.lab.client.clone(), envoy_gateway::NAMESPACE)
            .list(&ListParams::default().labels(&selector))
            .await?;
        let mut names: Vec<String> = pods
            .items
            .into_iter()
            .filter_map(|p| p.metadata.uid)
            .collect();
        names.sort();
        Ok(names.join(","))
    }

    fn patch_router(&self, spec: Value) -> impl Future<Output = Result<()>> {
        let api = routers(&self.lab.client, &self.edge);
        let router = self.router.clone();
        async move {
            api.patch(
                &router,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await?;
            Ok(())
        }
    }
}
