//! The Service in front of the Envoy pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Identity;
use super::deployment::LISTENER_PORT_NAME;
use super::naming::selector_labels;
use crate::api::HostRouterSpec;

pub fn service(id: &Identity<'_>, spec: &HostRouterSpec) -> Service {
    let mut metadata = id.local_meta(id.proxy.name.clone());
    if !spec.service.annotations.is_empty() {
        metadata.annotations = Some(spec.service.annotations.clone());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(spec.service.type_.as_str().to_owned()),
            selector: Some(selector_labels(&id.proxy.name)),
            ports: Some(vec![ServicePort {
                name: Some(LISTENER_PORT_NAME.to_owned()),
                port: spec.listener.port,
                target_port: Some(IntOrString::String(LISTENER_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
