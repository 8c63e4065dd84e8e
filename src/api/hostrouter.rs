//! `hostrouter.io/v1alpha1` `HostRouter`: the one object a platform team writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backend::{BackendSpec, BackendType, GatewayApiBackend};
pub use super::envoy::{EnvoySpec, IMAGE_PATTERN, Resources};
use super::routing::{DEFAULT_HTTPS_PORT, HostsSpec, PathsSpec, TlsSpec};
use super::selector::LabelSelector;
pub use super::service::{ServiceSpec, ServiceType};

/// Longest accepted `proxyName`: the longest generated name (`<proxyName>-envoy-bootstrap`)
/// and the pods' generated names then stay within Kubernetes' limits.
pub const MAX_PROXY_NAME_LEN: usize = 40;

/// Envoy's admin port when `envoy.adminPort` is not set.
pub const DEFAULT_ADMIN_PORT: i32 = 19000;

/// Routes every Service port in the selected namespaces through an Envoy edge proxy programmed
/// by Gloo. Each TCP port of each selected Service becomes a virtual host whose domain is
/// `<namespace>-<service>-<port>`, so `curl -H 'Host: default-petstore-8080' <edge>/` reaches
/// port 8080 of Service `petstore` in namespace `default`. `spec.hosts` names them from a
/// template instead (`{service}.{namespace}.apps.example.com`), `spec.paths` also routes each
/// Service under a path prefix, and `spec.tls` adds HTTPS with an optional redirect.
///
/// The operator writes a Gloo Proxy (in the proxy namespace, Gloo's write namespace), and in the
/// HostRouter's own namespace a ConfigMap with the Envoy bootstrap, a Deployment running Envoy,
/// a Service exposing the listener and, when asked for, a HorizontalPodAutoscaler and a
/// PodDisruptionBudget. All of them are named after `spec.proxyName`.
// The derive repeats `type_` across print columns, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hostrouter.io",
    version = "v1alpha1",
    kind = "HostRouter",
    namespaced,
    shortname = "hr",
    category = "gloo",
    status = "HostRouterStatus",
    doc = "HostRouter routes every Service of the selected namespaces through an Envoy edge proxy programmed by Gloo: by hostname (`<namespace>-<service>-<port>`, or a template such as `{service}.{namespace}.apps.example.com`), optionally by path prefix, over HTTP and optionally HTTPS.",
    printcolumn(
        name = "Proxy",
        type_ = "string",
        json_path = ".spec.proxyName",
        description = "Name of the Gloo Proxy and of the Envoy Deployment and Service"
    ),
    printcolumn(
        name = "Port",
        type_ = "integer",
        json_path = ".spec.listener.port",
        description = "Port Envoy listens on"
    ),
    printcolumn(
        name = "Hosts",
        type_ = "integer",
        json_path = ".status.virtualHosts",
        description = "Virtual hosts in the Proxy"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the Proxy is accepted by Gloo and Envoy is available"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1,
        description = "Why the router is or is not ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new(format!("self.listener.port != (has(self.envoy) && has(self.envoy.adminPort) ? self.envoy.adminPort : {DEFAULT_ADMIN_PORT})")).message("listener.port must differ from envoy.adminPort (default 19000)"),
    validation = Rule::new(format!("!has(self.tls) || (has(self.tls.port) ? self.tls.port : {DEFAULT_HTTPS_PORT}) != self.listener.port")).message("tls.port (default 8443) must differ from listener.port"),
    validation = Rule::new(format!("!has(self.tls) || (has(self.tls.port) ? self.tls.port : {DEFAULT_HTTPS_PORT}) != (has(self.envoy) && has(self.envoy.adminPort) ? self.envoy.adminPort : {DEFAULT_ADMIN_PORT})")).message("tls.port (default 8443) must differ from envoy.adminPort (default 19000)"),
    validation = Rule::new(format!("{NOT_GATEWAY_API} || !has(self.proxyNamespace)")).message("proxyNamespace is where the Gloo Proxy goes: it does not apply with backend.type GatewayAPI"),
    validation = Rule::new(format!("{NOT_GATEWAY_API} || self.destination == 'Kube'")).message("destination Upstream names Gloo Upstreams: it does not apply with backend.type GatewayAPI"),
    validation = Rule::new(format!("{NOT_GATEWAY_API} || self.listener.bindAddress == '::'")).message("listener.bindAddress is Envoy's, which the Gateway API implementation runs: it does not apply with backend.type GatewayAPI"),
    validation = Rule::new(format!("{NOT_GATEWAY_API} || !has(self.envoy) || (!has(self.envoy.image) && !has(self.envoy.replicas) && !has(self.envoy.resources) && !has(self.envoy.adminPort) && !has(self.envoy.autoscaling) && !has(self.envoy.disruptionBudget) && !has(self.envoy.pod))")).message("envoy configures the Envoy Deployment the operator runs for Gloo; with backend.type GatewayAPI the implementation runs the proxies: configure them there (Envoy Gateway: an EnvoyProxy on the GatewayClass)"),
    validation = Rule::new(format!("{NOT_GATEWAY_API} || !has(self.service) || (self.service.type == 'LoadBalancer' && (!has(self.service.annotations) || size(self.service.annotations) == 0) && (!has(self.service.labels) || size(self.service.labels) == 0) && !has(self.service.loadBalancerClass) && !has(self.service.loadBalancerSourceRanges) && !has(self.service.externalTrafficPolicy))")).message("service configures the Service the operator writes for Gloo; with backend.type GatewayAPI the implementation writes it"),
    validation = Rule::new("!has(self.backend) || !has(self.backend.gatewayAPI) || !has(self.backend.gatewayAPI.gateway) || !has(self.tls)").message("tls does not apply to an existing Gateway (backend.gatewayAPI.gateway): its owner configures its listeners and certificates"),
    validation = Rule::new(format!("!({NOT_GATEWAY_API}) || !({OLD_NOT_GATEWAY_API}) || self.proxyName != oldSelf.proxyName || self.service.type != 'LoadBalancer' || oldSelf.service.type != 'LoadBalancer' || (has(self.service.loadBalancerClass) ? self.service.loadBalancerClass : '') == (has(oldSelf.service.loadBalancerClass) ? oldSelf.service.loadBalancerClass : '')")).message("service.loadBalancerClass cannot change while the Envoy Service stays a LoadBalancer (Kubernetes does not allow it): set service.type to ClusterIP or NodePort and let the operator apply it first, or change proxyName (a new Service)"),
)]
#[serde(rename_all = "camelCase")]
pub struct HostRouterSpec {
    /// Name of the Gloo Proxy this router writes. The Envoy Deployment, its Service, its
    /// autoscaler and disruption budget, and the bootstrap ConfigMap
    /// (`<proxyName>-envoy-bootstrap`) get the same name, and Envoy asks Gloo
    /// for its configuration as `<proxyNamespace>~<proxyName>`. Lowercase letters, digits and
    /// '-', starting with a letter, at most 40 characters.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub proxy_name: String,

    /// Namespace of the Gloo Proxy: Gloo's write namespace, where Gloo reads Proxies written by
    /// other controllers. Defaults to the operator's `--gloo-namespace` (usually `gloo-system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub proxy_namespace: Option<String>,

    /// Where Envoy accepts traffic.
    pub listener: Listener,

    /// Namespaces whose Services are routed, by namespace label. `{}` selects every namespace;
    /// `{matchLabels: {kubernetes.io/metadata.name: default}}` selects one namespace by name.
    pub namespace_selector: LabelSelector,

    /// Optionally narrows the routed Services by their labels. Unset routes every Service in the
    /// selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,

    /// How each route names its backend. `Kube` (default) points at the Kubernetes Service and
    /// needs no Gloo discovery. `Upstream` points at the Upstream that Gloo's discovery creates
    /// for the Service port (`<namespace>-<service>-<port>` in the proxy namespace), for when
    /// those Upstreams carry extra settings.
    #[serde(default)]
    pub destination: Destination,

    /// Hostnames: the template each routed Service port is named by, and the suffixes under
    /// which Services may ask for extra hostnames. Unset: `<namespace>-<service>-<port>`, no
    /// extra hostnames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<HostsSpec>,

    /// Path-prefix routing: each Service also reachable under a path prefix (stripped before
    /// the request reaches it) on one hostname. Unset: no path routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<PathsSpec>,

    /// An HTTPS listener with certificates from `kubernetes.io/tls` Secrets, and optionally a
    /// redirect of plain HTTP to it. Unset: plain HTTP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// The Envoy Deployment.
    #[serde(default)]
    pub envoy: EnvoySpec,

    /// The Service in front of Envoy.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Which edge implementation serves the routes: `Gloo` (unset) or the Kubernetes
    /// `GatewayAPI`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendSpec>,
}

/// CEL: the router does not use the Gateway API backend.
const NOT_GATEWAY_API: &str = "!has(self.backend) || self.backend.type != 'GatewayAPI'";
/// CEL, in a transition rule: the router did not use the Gateway API backend before.
const OLD_NOT_GATEWAY_API: &str = "!has(oldSelf.backend) || oldSelf.backend.type != 'GatewayAPI'";

impl HostRouterSpec {
    /// The backend in effect.
    pub fn backend_type(&self) -> BackendType {
        self.backend.as_ref().map_or(BackendType::Gloo, |b| b.type_)
    }

    /// The Gateway API backend's settings, when the router uses it.
    pub fn gateway_api(&self) -> Option<&GatewayApiBackend> {
        self.backend
            .as_ref()
            .filter(|b| b.type_ == BackendType::GatewayApi)
            .and_then(|b| b.gateway_api.as_ref())
    }
}

/// Where Envoy accepts traffic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// TCP port Envoy listens on for HTTP, and the port of the Service in front of it.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Address Envoy binds the listener to. `::` (default) accepts IPv4 and IPv6 on all
    /// interfaces.
    #[serde(default = "default_bind_address")]
    #[x_kube(validation = Rule::new("isIP(self) || (self.startsWith('::ffff:') && isIP(self.substring(7)))").message("bindAddress must be an IPv4 or IPv6 address, such as 0.0.0.0, :: or ::ffff:10.0.0.1"))]
    #[schemars(length(max = 45))]
    pub bind_address: String,
}

fn default_bind_address() -> String {
    "::".to_owned()
}

/// How a route names its backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Destination {
    /// Gloo's `kube` destination: the Service and port, resolved by Gloo without discovery.
    #[default]
    Kube,
    /// Gloo's `upstream` destination: the Upstream Gloo's discovery creates for the Service port.
    Upstream,
}

/// What the operator observed and did for this HostRouter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostRouterStatus {
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Accepted`, `Programmed`, `ResolvedRefs`, `ProxyAccepted`, `EnvoyAvailable` and `Ready`.
    /// `Ready` is True when all the others are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]), length(max = 8))]
    pub conditions: Vec<Condition>,

    /// The Gloo Proxy this router writes (set once the router is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_ref: Option<ProxyRef>,

    /// Number of namespaces the namespace selector matches whose Services this router
    /// publishes.
    #[serde(default)]
    pub namespaces: i32,

    /// Number of namespaces the namespace selector matches whose Services this router may not
    /// publish: a router publishes its own namespace and those labelled
    /// `hostrouter.io/expose=true`, unless it lives in a namespace the operator trusts, and
    /// never a protected namespace (the system's, the operator's) without that label. A
    /// `NamespaceWithoutConsent` Warning Event names them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub namespaces_without_consent: i32,

    /// Number of Services that contribute at least one virtual host.
    #[serde(default)]
    pub services: i32,

    /// Number of virtual hosts in the Proxy.
    #[serde(default)]
    pub virtual_hosts: i32,

    /// Number of names left out of the routes: hostnames or path prefixes another (older)
    /// Service already has, generated names that are not valid, extra hostnames outside
    /// `spec.hosts.allowedSuffixes`, and `hostrouter.io/port` annotations naming no port. A
    /// Warning Event (`DuplicateHost`, `InvalidHostname`, `HostnameNotAllowed`, `PortNotFound`)
    /// names them.
    #[serde(default)]
    pub dropped_hosts: i32,
}

/// Namespace and name of a Gloo Proxy.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, KubeSchema,
)]
pub struct ProxyRef {
    /// Namespace of the Proxy.
    pub namespace: String,
    /// Name of the Proxy.
    pub name: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl HostRouterSpec {
    pub fn admin_port(&self) -> i32 {
        self.envoy.admin_port.unwrap_or(DEFAULT_ADMIN_PORT)
    }

    pub fn replicas(&self) -> i32 {
        self.envoy.replicas.unwrap_or(1)
    }
}
