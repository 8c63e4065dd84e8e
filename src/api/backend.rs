//! `spec.backend`: which edge implementation serves a router's routes.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which edge implementation serves the routes, and how the operator reaches it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.type == 'GatewayAPI' ? has(self.gatewayAPI) : !has(self.gatewayAPI)").message("backend.gatewayAPI is set exactly when backend.type is GatewayAPI"),
)]
#[serde(rename_all = "camelCase")]
pub struct BackendSpec {
    /// `Gloo` (the default when `backend` is unset): the operator writes a Gloo Proxy and runs
    /// Envoy itself (a Deployment, its bootstrap ConfigMap and a Service). `GatewayAPI`: the
    /// operator writes Kubernetes Gateway API objects (`gateway.networking.k8s.io/v1`): one
    /// HTTPRoute per routed Service port in the Service's own namespace, and a Gateway unless
    /// it attaches to an existing one; the Gateway API implementation (Envoy Gateway, kgateway,
    /// Istio, ...) runs the proxies, so `envoy`, `service`, `proxyNamespace`, `destination`
    /// and `listener.bindAddress` do not apply and are refused.
    #[serde(rename = "type")]
    pub type_: BackendType,

    /// The Gateway the routes attach to. Required with `type: GatewayAPI`, refused otherwise.
    #[serde(
        default,
        rename = "gatewayAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayApiBackend>,
}

/// The edge implementation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackendType {
    /// A Gloo Proxy, served by Gloo to the Envoy Deployment the operator runs.
    #[default]
    Gloo,
    /// Gateway API objects, served by any conformant implementation.
    #[serde(rename = "GatewayAPI")]
    GatewayApi,
}

impl BackendType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gloo => "Gloo",
            Self::GatewayApi => "GatewayAPI",
        }
    }
}

/// Where the HTTPRoutes attach: a Gateway the router owns, or an existing one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.gatewayClassName) != has(self.gateway)").message("set exactly one of gatewayAPI.gatewayClassName (the router owns a Gateway) and gatewayAPI.gateway (the router attaches to an existing Gateway)"),
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiBackend {
    /// The router owns a Gateway named `proxyName` in its own namespace, of this
    /// GatewayClass: a listener `http` on `listener.port` (and `https` on `tls.port`,
    /// terminating TLS with the certificates of `spec.tls`), admitting routes from the
    /// namespaces `namespaceSelector` selects. The GatewayClass's implementation provisions
    /// the proxies (Envoy Gateway's class is usually `eg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub gateway_class_name: Option<String>,

    /// An existing Gateway (a platform team's shared one) that the HTTPRoutes attach to, on its
    /// listeners on `listener.port`. Its owner controls its listeners, certificates and which
    /// namespaces may attach (`allowedRoutes`): `tls` is refused with it. The router writes
    /// only HTTPRoutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayReference>,
}

/// A Gateway by namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayReference {
    /// The Gateway's namespace. Defaults to the HostRouter's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,

    /// The Gateway's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}
