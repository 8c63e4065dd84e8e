//! `spec.envoy`: the Envoy fleet the operator runs for the Gloo backend: its image, size,
//! autoscaling, disruption budget and pod placement.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::selector::{LABEL_VALUE_PATTERN, qualified_keys_rule};

/// The Envoy Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.autoscaling) || (has(self.autoscaling.memoryUtilization) && !has(self.autoscaling.cpuUtilization)) || (has(self.resources) && has(self.resources.requests) && has(self.resources.requests.cpu))").message("envoy.autoscaling scales on CPU (cpuUtilization, 80 when no target is set), which is measured against envoy.resources.requests.cpu: set it"),
    validation = Rule::new("!has(self.autoscaling) || !has(self.autoscaling.memoryUtilization) || (has(self.resources) && has(self.resources.requests) && has(self.resources.requests.memory))").message("envoy.autoscaling.memoryUtilization is measured against envoy.resources.requests.memory: set it"),
)]
pub struct EnvoySpec {
    /// Envoy container image. Defaults to the operator's `--envoy-image`, Gloo's envoy wrapper
    /// for the supported Gloo release. The image must have Envoy at `/usr/local/bin/envoy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(format!("self.matches(r'{IMAGE_PATTERN}')")).message("image must be a container image reference, such as quay.io/solo-io/gloo-envoy-wrapper:1.22.1 or registry.example.com:5000/envoy@sha256:<64 hex digits>"))]
    pub image: Option<String>,

    /// Number of Envoy pods. Defaults to 1. Not used while `autoscaling` is set; removing
    /// `autoscaling` sets the Deployment back to this number (1 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// CPU and memory requests and limits of the Envoy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,

    /// Port of Envoy's admin interface, bound to 127.0.0.1 inside the pod. Defaults to 19000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: Option<i32>,

    /// Scales the Envoy pods between `minReplicas` and `maxReplicas` on CPU (and optionally
    /// memory) use, with a HorizontalPodAutoscaler of the same name. The autoscaler then owns
    /// the Deployment's replica count: `replicas` applies again once `autoscaling` is removed.
    /// Unset: a fixed `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// Keeps Envoy pods up during voluntary disruptions (node drains, cluster upgrades), with a
    /// PodDisruptionBudget of the same name. Unset: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<DisruptionBudget>,

    /// Metadata, placement and environment of the Envoy pods. A change here rolls the pods.
    #[serde(default, skip_serializing_if = "PodOptions::is_empty")]
    pub pod: PodOptions,
}

/// A container image reference: `[registry[:port]/]path[:tag][@digest]` (the grammar of the
/// distribution project's `reference` package).
pub const IMAGE_PATTERN: &str = r"^((([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(:[0-9]+)?|\[[0-9a-fA-F:]+\](:[0-9]+)?)/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$";

/// Requests and limits of the Envoy container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(requests_within_limits()).message("resources.requests must not exceed resources.limits for the same resource"))]
pub struct Resources {
    /// What the container is guaranteed, e.g. `{cpu: 100m, memory: 64Mi}`.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub requests: ResourceList,

    /// The most the container may use, e.g. `{cpu: "1", memory: 256Mi}`.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub limits: ResourceList,
}

/// Amounts of CPU, memory and ephemeral storage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct ResourceList {
    /// CPU, in cores: `500m`, `1`, `2.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_schema")]
    #[x_kube(validation = Rule::new(QUANTITY).message("cpu must be a quantity, such as 500m or 2"))]
    pub cpu: Option<Quantity>,

    /// Memory, in bytes: `128Mi`, `1Gi`, `500M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_schema")]
    #[x_kube(validation = Rule::new(QUANTITY).message("memory must be a quantity, such as 128Mi or 1Gi"))]
    pub memory: Option<Quantity>,

    /// Local ephemeral storage, in bytes: `1Gi`.
    #[serde(
        default,
        rename = "ephemeral-storage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "quantity_schema")]
    #[x_kube(validation = Rule::new(QUANTITY).message("ephemeral-storage must be a quantity, such as 1Gi"))]
    pub ephemeral_storage: Option<Quantity>,
}

impl ResourceList {
    fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// `(resource name, quantity)` of the amounts set.
    fn entries(&self) -> Vec<(&'static str, &Quantity)> {
        [
            ("cpu", &self.cpu),
            ("memory", &self.memory),
            ("ephemeral-storage", &self.ephemeral_storage),
        ]
        .into_iter()
        .filter_map(|(name, q)| q.as_ref().map(|q| (name, q)))
        .collect()
    }
}

/// CEL: the value is a quantity.
const QUANTITY: &str = "isQuantity(string(self))";
/// CEL: each request that has a limit is at most that limit. A value that is not a quantity
/// fails its own rule instead. (CEL spells `ephemeral-storage` `ephemeral__dash__storage`.)
fn requests_within_limits() -> String {
    let within = |r: &str| {
        let (req, lim) = (format!("self.requests.{r}"), format!("self.limits.{r}"));
        format!(
            "(!has({req}) || !has({lim}) || !isQuantity(string({req})) || !isQuantity(string({lim})) || quantity(string({req})).compareTo(quantity(string({lim}))) <= 0)"
        )
    };
    format!(
        "!has(self.requests) || !has(self.limits) || ({} && {} && {})",
        within("cpu"),
        within("memory"),
        within("ephemeral__dash__storage")
    )
}

fn quantity_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 32}],
    })
}

/// A resource quantity as written (`500m`, `128Mi`, or a plain number).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    /// A string, or a number (the API server keeps `cpu: 1` as a number).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Self(s)),
            serde_json::Value::Number(n) => Ok(Self(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "a quantity must be a string or a number, not {other}"
            ))),
        }
    }
}

impl Resources {
    /// As the container's `resources`.
    pub fn to_requirements(&self) -> ResourceRequirements {
        let convert = |list: &ResourceList| {
            (!list.is_empty()).then(|| {
                list.entries()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), K8sQuantity(v.0.clone())))
                    .collect()
            })
        };
        ResourceRequirements {
            requests: convert(&self.requests),
            limits: convert(&self.limits),
            ..Default::default()
        }
    }
}

/// CEL: the map `self` has no key the operator sets on the pods: `hostrouter.io/…` keys and
/// the `app.kubernetes.io/` labels that select them.
pub fn reserved_keys_rule() -> String {
    format!(
        "self.all(k, !k.startsWith('hostrouter.io/') && !({}))",
        RESERVED_LABELS
            .iter()
            .map(|l| format!("k == '{l}'"))
            .collect::<Vec<_>>()
            .join(" || ")
    )
}

/// The labels the operator puts on every object it writes (and selects the pods by).
const RESERVED_LABELS: [&str; 3] = [
    crate::render::naming::MANAGED_BY_LABEL,
    crate::render::naming::NAME_LABEL,
    crate::render::naming::INSTANCE_LABEL,
];

/// Scaling the Envoy pods with a HorizontalPodAutoscaler (`autoscaling/v2`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas").message("envoy.autoscaling.minReplicas must not exceed envoy.autoscaling.maxReplicas"))]
pub struct Autoscaling {
    /// Fewest Envoy pods. Defaults to 1; 2 or more keeps the edge up while a pod restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: Option<i32>,

    /// Most Envoy pods.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Average CPU use to keep the pods at, in percent of the container's CPU request
    /// (`envoy.resources.requests.cpu`, which must then be set). Defaults to 80 when
    /// `memoryUtilization` is not set either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub cpu_utilization: Option<i32>,

    /// Average memory use to keep the pods at, in percent of the container's memory request
    /// (`envoy.resources.requests.memory`, which must then be set). Unset: memory is not
    /// watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub memory_utilization: Option<i32>,
}

/// Default CPU target of the autoscaler, in percent (also Kubernetes' default).
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;

impl Autoscaling {
    pub fn min_replicas(&self) -> i32 {
        self.min_replicas.unwrap_or(1)
    }

    /// The CPU target in effect: the one set, or the default when no target is set.
    pub fn cpu_utilization(&self) -> Option<i32> {
        match (self.cpu_utilization, self.memory_utilization) {
            (None, None) => Some(DEFAULT_CPU_UTILIZATION),
            (cpu, _) => cpu,
        }
    }
}

/// How many Envoy pods a voluntary disruption must leave, as a PodDisruptionBudget
/// (`policy/v1`). Exactly one of `minAvailable` and `maxUnavailable`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.minAvailable) != has(self.maxUnavailable)").message("envoy.disruptionBudget needs exactly one of minAvailable and maxUnavailable"))]
pub struct DisruptionBudget {
    /// Pods that must stay available: a number (`1`) or a percentage of the desired pods
    /// (`50%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pods_or_percent")]
    pub min_available: Option<IntOrString>,

    /// Pods that may be unavailable at once: a number (`1`) or a percentage of the desired
    /// pods (`25%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pods_or_percent")]
    pub max_unavailable: Option<IntOrString>,
}

/// A count of pods (a 32-bit integer ≥ 0) or a percentage (`0%`–`100%`), as a
/// PodDisruptionBudget takes them: a number in a string (`"5"`) is refused.
fn pods_or_percent(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // `minimum`/`maximum` apply to a number only, `pattern` to a string only.
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "minimum": 0,
        "maximum": i32::MAX,
        "pattern": "^(100|[1-9]?[0-9])%$",
    })
}

/// The Envoy pods: metadata, placement and environment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOptions {
    /// Annotations on the pods (e.g. for a service mesh or a log collector). Keys under
    /// `hostrouter.io/` are the operator's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(
        validation = Rule::new(qualified_keys_rule()).message("envoy.pod.annotations keys must be qualified names: an optional DNS-subdomain prefix of at most 253 characters and '/', then a name of at most 63 alphanumerics, '-', '_' or '.'"),
        validation = Rule::new(reserved_keys_rule()).message("envoy.pod.annotations must not set hostrouter.io/ keys: the operator sets them")
    )]
    pub annotations: BTreeMap<String, String>,

    /// Labels on the pods, next to those the operator selects them by
    /// (`app.kubernetes.io/name`, `app.kubernetes.io/instance`, `app.kubernetes.io/managed-by`
    /// and `hostrouter.io/…`), which cannot be set here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN}
    ))]
    #[x_kube(
        validation = Rule::new(qualified_keys_rule()).message("envoy.pod.labels keys must be valid label keys: an optional DNS-subdomain prefix of at most 253 characters and '/', then a name of at most 63 alphanumerics, '-', '_' or '.'"),
        validation = Rule::new(reserved_keys_rule()).message("envoy.pod.labels must not set the labels the operator selects the pods by (app.kubernetes.io/name, app.kubernetes.io/instance, app.kubernetes.io/managed-by) nor hostrouter.io/ keys")
    )]
    pub labels: BTreeMap<String, String>,

    /// Nodes the pods may run on, by node label, e.g. `{node-role.example.com/edge: "true"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN}
    ))]
    #[x_kube(validation = Rule::new(qualified_keys_rule()).message("envoy.pod.nodeSelector keys must be valid label keys"))]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the pods tolerate, e.g. nodes dedicated to the edge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(TOLERATIONS_RULE).message("envoy.pod.tolerations: operator must be Exists or Equal, effect NoSchedule, PreferNoSchedule or NoExecute; Exists takes no value, an empty key needs Exists, tolerationSeconds needs NoExecute"))]
    pub tolerations: Vec<Toleration>,

    /// Node and pod affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How the pods spread across zones and nodes. Unset, with more than one pod (`replicas`
    /// or `autoscaling.maxReplicas` above 1): at most one pod more in any zone
    /// (`topology.kubernetes.io/zone`) and on any node (`kubernetes.io/hostname`) than in
    /// another, as a preference (`ScheduleAnyway`), so that a cluster with one zone or few
    /// nodes still runs every pod. `[]`: no spread. Crossing from one possible pod to more (or
    /// back) adds (or removes) the default, which changes the pod template: the pods roll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new(SPREAD_RULE).message("envoy.pod.topologySpreadConstraints: maxSkew must be at least 1, whenUnsatisfiable DoNotSchedule or ScheduleAnyway, and minDomains at least 1 and only with DoNotSchedule"))]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,

    /// PriorityClass of the pods (one the cluster defines), e.g. a class for the edge that ranks
    /// above ordinary workloads so that it is not preempted by them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub priority_class_name: Option<String>,

    /// Extra environment variables of the Envoy container. `POD_NAME` and `POD_NAMESPACE` are
    /// the operator's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    #[x_kube(validation = Rule::new("self.all(e, e.name != 'POD_NAME' && e.name != 'POD_NAMESPACE')").message("envoy.pod.env must not set POD_NAME or POD_NAMESPACE: the operator sets them"))]
    pub env: Vec<EnvVar>,
}

/// CEL: tolerations Kubernetes accepts in a pod (its own validation, checked at admission so
/// that a router never reaches the API server with a Deployment it refuses).
const TOLERATIONS_RULE: &str = "self.all(t, (!has(t.operator) || t.operator == 'Exists' || t.operator == 'Equal') && (!has(t.effect) || t.effect == '' || t.effect == 'NoSchedule' || t.effect == 'PreferNoSchedule' || t.effect == 'NoExecute') && (!has(t.operator) || t.operator != 'Exists' || !has(t.value) || size(t.value) == 0) && ((has(t.key) && size(t.key) > 0) || (has(t.operator) && t.operator == 'Exists')) && (!has(t.tolerationSeconds) || (has(t.effect) && t.effect == 'NoExecute')))";

/// CEL: topology spread constraints Kubernetes accepts in a pod.
const SPREAD_RULE: &str = "self.all(c, c.maxSkew >= 1 && (c.whenUnsatisfiable == 'DoNotSchedule' || c.whenUnsatisfiable == 'ScheduleAnyway') && (!has(c.minDomains) || (c.minDomains >= 1 && c.whenUnsatisfiable == 'DoNotSchedule')))";

impl PodOptions {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_follow_the_distribution_grammar() {
        let pattern = regex::Regex::new(IMAGE_PATTERN).unwrap();
        let digest = "a".repeat(64);
        for good in [
            "envoyproxy/envoy:v1.40.0".to_owned(),
            "quay.io/solo-io/gloo-envoy-wrapper:1.22.1".to_owned(),
            "localhost:5000/envoy".to_owned(),
            "envoy".to_owned(),
            "hostrouter/envoy:local".to_owned(),
            format!("registry.example.com:5000/team/envoy@sha256:{digest}"),
            format!("envoy:1.40@sha256:{digest}"),
        ] {
            assert!(pattern.is_match(&good), "{good}");
        }
        for bad in [
            "envoy proxy",
            "Envoy",
            "quay.io/x:",
            ":tag",
            "quay.io//x",
            "envoy@sha256:short",
            " envoy",
        ] {
            assert!(!pattern.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn quantities_read_strings_and_numbers() {
        let r: Resources =
            serde_json::from_value(serde_json::json!({"limits": {"cpu": 1, "memory": "128Mi"}}))
                .unwrap();
        let k8s = r.to_requirements();
        let limits = k8s.limits.unwrap();
        assert_eq!(limits["cpu"].0, "1");
        assert_eq!(limits["memory"].0, "128Mi");
        assert!(k8s.requests.is_none());
        assert!(
            serde_json::from_value::<Resources>(serde_json::json!({"limits": {"cpu": []}}))
                .is_err()
        );
    }
}
