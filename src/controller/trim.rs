//! What the caches keep of the objects they hold in numbers: a Service the operator only routes
//! is reduced to the fields routing reads. On a cluster of 10,000 Services most of a Service's
//! bytes are fields routing never reads (its status, its cluster IPs, and above all the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation, a copy of the whole manifest).
//! The Envoy Services the operator writes are kept whole: their drift is compared field by
//! field.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Prefix of the annotations routing reads (`hostrouter.io/exclude`, `/port`, `/hostnames`).
const OUR_ANNOTATIONS: &str = "hostrouter.io/";

/// `svc` with only what routing reads: name, namespace, labels, the `hostrouter.io/`
/// annotations, the creation time (the older Service keeps a contested name), the type, and
/// each port's name, number, protocol and application protocol.
pub fn routed_service(svc: Service) -> Service {
    let meta = svc.metadata;
    let annotations = meta.annotations.map(|a| {
        a.into_iter()
            .filter(|(k, _)| k.starts_with(OUR_ANNOTATIONS))
            .collect()
    });
    let spec = svc.spec.map(|s| ServiceSpec {
        type_: s.type_,
        ports: s.ports.map(|ports| {
            ports
                .into_iter()
                .map(|p| ServicePort {
                    name: p.name,
                    port: p.port,
                    protocol: p.protocol,
                    app_protocol: p.app_protocol,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    });
    Service {
        metadata: ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            resource_version: meta.resource_version,
            creation_timestamp: meta.creation_timestamp,
            labels: meta.labels,
            annotations,
            ..Default::default()
        },
        spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HostRouter;
    use crate::render::{ClusterView, Settings, render};

    fn rendered(services: &[Service]) -> Vec<serde_json::Value> {
        let mut router: HostRouter = crate::testing::router("default", "edge", "edge");
        router.metadata.uid = Some("u".into());
        let ns = crate::testing::namespace("default", &[("routed", "yes")]);
        let view = ClusterView {
            namespaces: vec![&ns],
            services: services.iter().collect(),
            tls_secrets: Vec::new(),
        };
        render(&router, &view, &Settings::default())
            .unwrap()
            .to_values()
            .unwrap()
    }

    #[test]
    fn a_trimmed_service_routes_the_same() {
        let mut full = crate::testing::service(
            "default",
            "shop",
            &[(80, "http", ""), (443, "https", ""), (9090, "admin", "TCP")],
            1_700_000_000,
        );
        let annotations = full.metadata.annotations.get_or_insert_default();
        annotations.insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "x".repeat(4096),
        );
        annotations.insert("hostrouter.io/port".into(), "admin".into());
        let spec = full.spec.get_or_insert_default();
        spec.cluster_ip = Some("10.0.0.1".into());
        // An application protocol that speaks TLS keeps a port out of the routes.
        if let Some(p) = spec.ports.as_mut().and_then(|p| p.get_mut(2)) {
            p.app_protocol = Some("https".into());
        }
        let trimmed = routed_service(full.clone());
        let before = rendered(std::slice::from_ref(&full));
        assert_eq!(before, rendered(std::slice::from_ref(&trimmed)));
        // Routed: port 80; not 443 (named https) nor 9090 (appProtocol https).
        let proxy = before[0]["spec"].to_string();
        assert!(proxy.contains("default-shop-80"), "{proxy}");
        assert!(!proxy.contains("default-shop-443") && !proxy.contains("default-shop-9090"));
        let size = |s: &Service| serde_json::to_vec(s).unwrap().len();
        assert!(
            size(&trimmed) * 4 < size(&full),
            "{} -> {}",
            size(&full),
            size(&trimmed)
        );
        assert_eq!(trimmed.metadata.annotations.unwrap().len(), 1);
    }
}
