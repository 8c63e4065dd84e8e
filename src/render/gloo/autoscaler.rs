//! The HorizontalPodAutoscaler of the Envoy Deployment (`spec.envoy.autoscaling`).

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};

use crate::api::envoy::Autoscaling;
use crate::render::Identity;

/// Scales the Deployment named like the proxy on the targets of `autoscaling`.
pub fn autoscaler(id: &Identity<'_>, autoscaling: &Autoscaling) -> HorizontalPodAutoscaler {
    let utilization = |resource: &str, percent: i32| MetricSpec {
        type_: "Resource".to_owned(),
        resource: Some(ResourceMetricSource {
            name: resource.to_owned(),
            target: MetricTarget {
                type_: "Utilization".to_owned(),
                average_utilization: Some(percent),
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    let metrics = [
        ("cpu", autoscaling.cpu_utilization()),
        ("memory", autoscaling.memory_utilization),
    ]
    .into_iter()
    .filter_map(|(resource, target)| target.map(|t| utilization(resource, t)))
    .collect();
    HorizontalPodAutoscaler {
        metadata: id.local_meta(id.proxy.name.clone()),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: id.proxy.name.clone(),
            },
            min_replicas: Some(autoscaling.min_replicas()),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(metrics),
            behavior: None,
        },
        ..Default::default()
    }
}
