//! `spec.service`: the Service the operator puts in front of the Envoy pods (Gloo backend).

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::envoy::reserved_keys_rule;
use super::selector::{
    LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, prefix_length_rule, qualified_keys_rule,
};

/// The Service in front of Envoy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'LoadBalancer' || (!has(self.loadBalancerClass) && !has(self.loadBalancerSourceRanges))").message("service.loadBalancerClass and service.loadBalancerSourceRanges apply only to service.type LoadBalancer"),
    validation = Rule::new("self.type != 'ClusterIP' || !has(self.externalTrafficPolicy)").message("service.externalTrafficPolicy applies only to service.type LoadBalancer or NodePort"),
)]
pub struct ServiceSpec {
    /// Service type: `LoadBalancer` (default), `NodePort` or `ClusterIP`.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,

    /// Annotations for the Service, e.g. to configure a cloud load balancer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(qualified_keys_rule()).message("annotation keys must be qualified names: an optional DNS-subdomain prefix of at most 253 characters and '/', then a name of at most 63 alphanumerics, '-', '_' or '.'"))]
    pub annotations: BTreeMap<String, String>,

    /// Labels for the Service, next to the operator's (`app.kubernetes.io/…` and
    /// `hostrouter.io/…`, which cannot be set here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN}
    ))]
    #[x_kube(
        validation = Rule::new(qualified_keys_rule()).message("service.labels keys must be valid label keys: an optional DNS-subdomain prefix of at most 253 characters and '/', then a name of at most 63 alphanumerics, '-', '_' or '.'"),
        validation = Rule::new(reserved_keys_rule()).message("service.labels must not set the operator's labels (app.kubernetes.io/name, app.kubernetes.io/instance, app.kubernetes.io/managed-by) nor hostrouter.io/ keys")
    )]
    pub labels: BTreeMap<String, String>,

    /// Which load balancer implementation serves the Service (`type: LoadBalancer` only), e.g.
    /// `service.k8s.aws/nlb`. Unset: the cluster's default. Kubernetes does not allow changing
    /// it while the Service is a LoadBalancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 316))]
    #[x_kube(validation = Rule::new(format!("self.matches(r'{LABEL_KEY_PATTERN}') && {}", prefix_length_rule("self"))).message("service.loadBalancerClass must be a qualified name, such as example.com/internal-lb"))]
    pub load_balancer_class: Option<String>,

    /// Client addresses the cloud load balancer accepts (`type: LoadBalancer` only), as CIDRs,
    /// e.g. `[203.0.113.0/24]`. Unset: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(r, isCIDR(r))").message("service.loadBalancerSourceRanges must be CIDRs, such as 10.0.0.0/8 or 2001:db8::/32"))]
    pub load_balancer_source_ranges: Option<Vec<String>>,

    /// How external traffic reaches the pods (`type: LoadBalancer` or `NodePort`): `Cluster`
    /// (any node forwards it; the client address is lost) or `Local` (only nodes running an
    /// Envoy pod accept it, keeping the client address). Unset: Kubernetes' default, `Cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<TrafficPolicy>,
}

/// `spec.externalTrafficPolicy` of a Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TrafficPolicy {
    /// Any node accepts the traffic and forwards it to a pod.
    Cluster,
    /// Only nodes with a pod accept the traffic; the client's address is kept.
    Local,
}

impl TrafficPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cluster => "Cluster",
            Self::Local => "Local",
        }
    }
}

/// Kubernetes Service type of the Envoy Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Exposed by the cloud's load balancer.
    #[default]
    LoadBalancer,
    /// Exposed on a port of every node.
    NodePort,
    /// Reachable inside the cluster only.
    ClusterIP,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadBalancer => "LoadBalancer",
            Self::NodePort => "NodePort",
            Self::ClusterIP => "ClusterIP",
        }
    }
}
