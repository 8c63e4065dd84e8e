//! Builders shared by the unit tests.

use crate::api::HostRouter;
use crate::api::hostrouter::{Destination, HostRouterSpec, Listener};
use crate::api::selector::LabelSelector;

/// A router `ns/name` for proxy `proxy` on port 8080 selecting namespaces labelled `routed=yes`.
pub fn router(ns: &str, name: &str, proxy: &str) -> HostRouter {
    let mut r = HostRouter::new(
        name,
        HostRouterSpec {
            proxy_name: proxy.into(),
            proxy_namespace: None,
            listener: Listener {
                port: 8080,
                bind_address: "::".into(),
            },
            namespace_selector: LabelSelector {
                match_labels: [("routed".to_string(), "yes".to_string())].into(),
                ..Default::default()
            },
            service_selector: None,
            hosts: None,
            paths: None,
            tls: None,
            destination: Destination::Kube,
            envoy: Default::default(),
            service: Default::default(),
            backend: None,
        },
    );
    r.metadata.namespace = Some(ns.into());
    r.metadata.uid = Some(format!("uid-{ns}-{name}"));
    r
}

/// A Namespace with `labels`.
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Namespace {
    k8s_openapi::api::core::v1::Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A Service created `created` seconds after the epoch, with `ports` as (number, name,
/// protocol); an empty name or protocol is left unset.
pub fn service(
    ns: &str,
    name: &str,
    ports: &[(i32, &str, &str)],
    created: i64,
) -> k8s_openapi::api::core::v1::Service {
    use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Service {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            creation_timestamp: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(created).expect("a valid timestamp"),
            )),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(
                ports
                    .iter()
                    .map(|(port, port_name, protocol)| ServicePort {
                        port: *port,
                        name: text(port_name),
                        protocol: text(protocol),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}
