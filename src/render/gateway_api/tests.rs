use k8s_openapi::api::core::v1::{Namespace, Service};
use serde_json::json;

use crate::api::HostRouter;
use crate::api::backend::{BackendSpec, BackendType, GatewayApiBackend, GatewayReference};
use crate::api::routing::{HostsSpec, PathsSpec};
use crate::render::naming::{EXPOSE_LABEL, HOSTNAMES_ANNOTATION};
use crate::render::{ClusterView, Rendered, RoutedService, Settings, render};
use crate::testing;

fn gateway_api_router(backend: GatewayApiBackend) -> HostRouter {
    let mut r = testing::router("edge", "apps", "apps");
    r.spec.backend = Some(BackendSpec {
        type_: BackendType::GatewayApi,
        gateway_api: Some(backend),
    });
    r
}

fn owned() -> GatewayApiBackend {
    GatewayApiBackend {
        gateway_class_name: Some("eg".into()),
        gateway: None,
    }
}

fn namespaces() -> Vec<Namespace> {
    vec![testing::namespace(
        "shop",
        &[("routed", "yes"), (EXPOSE_LABEL, "true")],
    )]
}

fn rendered(router: &HostRouter, services: &[Service]) -> Rendered {
    let namespaces = namespaces();
    let view = ClusterView {
        namespaces: namespaces.iter().collect(),
        services: RoutedService::all(services),
        tls_secrets: Vec::new(),
    };
    render(router, &view, &Settings::default()).unwrap()
}

fn names(r: &Rendered) -> Vec<String> {
    r.gateway_api()
        .unwrap()
        .http_routes
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap(),
                o.metadata.name.as_deref().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_gloo_router_renders_no_gateway_api_object_and_the_reverse() {
    let services = [testing::service("shop", "cart", &[(80, "", "")], 1)];
    let gloo = rendered(&testing::router("edge", "apps", "apps"), &services);
    assert!(gloo.gloo().is_some() && gloo.gateway_api().is_none());
    let gw = rendered(&gateway_api_router(owned()), &services);
    assert!(gw.gloo().is_none());
    let values = gw.to_values().unwrap();
    let kinds: Vec<&str> = values.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Gateway", "HTTPRoute"]);
}

#[test]
fn one_http_route_per_service_port_in_the_services_namespace() {
    let services = [
        testing::service("shop", "cart", &[(80, "", ""), (9090, "", "")], 1),
        testing::service("shop", "pay", &[(8080, "", "")], 2),
    ];
    let r = rendered(&gateway_api_router(owned()), &services);
    assert_eq!(
        names(&r),
        [
            "shop/apps-cart-80-http",
            "shop/apps-cart-9090-http",
            "shop/apps-pay-8080-http"
        ]
    );
    let route = &r.gateway_api().unwrap().http_routes[0];
    assert_eq!(
        route.data["spec"],
        json!({
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "edge", "name": "apps", "sectionName": "http"}],
            "hostnames": ["shop-cart-80"],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"group": "", "kind": "Service", "name": "cart", "port": 80, "weight": 1}],
            }],
        })
    );
    // Cross-namespace: no owner reference, the router named in an annotation.
    assert!(route.metadata.owner_references.is_none());
    assert_eq!(
        route.metadata.annotations.as_ref().unwrap()["hostrouter.io/router"],
        "edge/apps"
    );
}

#[test]
fn an_existing_gateway_gets_routes_by_port_and_no_gateway_is_written() {
    let services = [testing::service("shop", "cart", &[(80, "", "")], 1)];
    let router = gateway_api_router(GatewayApiBackend {
        gateway_class_name: None,
        gateway: Some(GatewayReference {
            namespace: Some("infra".into()),
            name: "shared".into(),
        }),
    });
    let r = rendered(&router, &services);
    let objects = r.gateway_api().unwrap();
    assert!(objects.gateway.is_none());
    assert_eq!(
        objects.http_routes[0].data["spec"]["parentRefs"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "infra", "name": "shared", "port": 8080}])
    );
}

#[test]
fn more_than_sixteen_hostnames_are_spread_over_several_http_routes() {
    let mut svc = testing::service("shop", "cart", &[(80, "", "")], 1);
    let extra: Vec<String> = (0..20).map(|i| format!("h{i:02}.example.com")).collect();
    svc.metadata.annotations = Some([(HOSTNAMES_ANNOTATION.to_owned(), extra.join(","))].into());
    let mut router = gateway_api_router(owned());
    router.spec.hosts = Some(HostsSpec {
        template: None,
        allowed_suffixes: vec!["example.com".into()],
    });
    let r = rendered(&router, &[svc]);
    assert_eq!(
        names(&r),
        ["shop/apps-cart-80-http", "shop/apps-cart-80-http-2"]
    );
    let routes = &r.gateway_api().unwrap().http_routes;
    let count = |i: usize| {
        routes[i].data["spec"]["hostnames"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!((count(0), count(1)), (16, 5));
    assert_eq!(
        routes[0].data["spec"]["rules"],
        routes[1].data["spec"]["rules"]
    );
}

#[test]
fn path_routing_without_a_host_matches_every_hostname() {
    let services = [testing::service("shop", "cart", &[(80, "", "")], 1)];
    let mut router = gateway_api_router(owned());
    router.spec.paths = Some(PathsSpec {
        host: None,
        template: None,
    });
    let r = rendered(&router, &services);
    let paths = r
        .gateway_api()
        .unwrap()
        .http_routes
        .iter()
        .find(|o| o.metadata.name.as_deref() == Some("apps-cart-80-paths-http"))
        .unwrap();
    assert!(paths.data["spec"].get("hostnames").is_none());
    assert_eq!(
        paths.data["spec"]["rules"][0]["filters"],
        json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}])
    );
}
