//! The Service in front of the Envoy pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::deployment::listener_ports;
use crate::api::HostRouterSpec;
use crate::render::Identity;
use crate::render::naming::selector_labels;

pub fn service(id: &Identity<'_>, spec: &HostRouterSpec) -> Service {
    let wanted = &spec.service;
    let mut metadata = id.local_meta(id.proxy.name.clone());
    if !wanted.annotations.is_empty() {
        metadata.annotations = Some(wanted.annotations.clone());
    }
    // The operator's labels win (admission refuses them in `service.labels` anyway).
    let mut labels = wanted.labels.clone();
    labels.extend(id.labels.clone());
    metadata.labels = Some(labels);
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(wanted.type_.as_str().to_owned()),
            load_balancer_class: wanted.load_balancer_class.clone(),
            load_balancer_source_ranges: wanted.load_balancer_source_ranges.clone(),
            external_traffic_policy: wanted
                .external_traffic_policy
                .map(|p| p.as_str().to_owned()),
            selector: Some(selector_labels(&id.proxy.name)),
            ports: Some(
                listener_ports(spec)
                    .into_iter()
                    .map(|(name, port)| ServicePort {
                        name: Some(name.to_owned()),
                        port,
                        target_port: Some(IntOrString::String(name.to_owned())),
                        protocol: Some("TCP".to_owned()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}
