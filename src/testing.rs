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
        },
    );
    r.metadata.namespace = Some(ns.into());
    r.metadata.uid = Some(format!("uid-{ns}-{name}"));
    r
}
