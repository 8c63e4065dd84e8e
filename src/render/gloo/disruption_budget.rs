//! The PodDisruptionBudget of the Envoy pods (`spec.envoy.disruptionBudget`).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::envoy::DisruptionBudget;
use crate::render::Identity;
use crate::render::naming::selector_labels;

/// Limits voluntary disruptions of the Envoy pods as `budget` says. Pods that are not ready
/// may always be evicted (`unhealthyPodEvictionPolicy: AlwaysAllow`): a broken Envoy pod
/// serves nothing, and must not block a node drain.
pub fn disruption_budget(id: &Identity<'_>, budget: &DisruptionBudget) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: id.local_meta(id.proxy.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&id.proxy.name)),
                ..Default::default()
            }),
            min_available: budget.min_available.clone(),
            max_unavailable: budget.max_unavailable.clone(),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
        }),
        ..Default::default()
    }
}
