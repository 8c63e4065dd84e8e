//! The route table, built from small clusters: which names each Service gets, what is left out
//! and why, and the listeners TLS and the redirect produce.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names::Template;
use super::*;
use crate::api::HostRouter;
use crate::api::routing::{CertificateRef, HostsSpec, PathsSpec, TlsSpec};
use crate::render::RoutedService;
use crate::render::naming::{HOSTNAMES_ANNOTATION, PORT_ANNOTATION};
use crate::render::tls_secret::{TlsSecret, TlsSecretState};
use crate::render::{ClusterView, RenderError};

/// A Service created at `created` (seconds) with `ports` as (number, name).
fn service(ns: &str, name: &str, ports: &[(i32, &str)], created: i64) -> Service {
    let ports: Vec<(i32, &str, &str)> = ports.iter().map(|(p, n)| (*p, *n, "")).collect();
    crate::testing::service(ns, name, &ports, created)
}

fn annotated(mut svc: Service, key: &str, value: &str) -> Service {
    svc.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.into(), value.into());
    svc
}

/// The tests' routers live in "edge" and publish "shop" and "pets": a platform team's.
fn trusting_edge() -> crate::render::Tenancy {
    let mut t = crate::render::Tenancy::default();
    t.trusted_namespaces.insert("edge".into());
    t
}

fn router() -> HostRouter {
    crate::testing::router("edge", "apps", "apps")
}

fn with_template(template: &str, suffixes: &[&str]) -> HostRouter {
    let mut r = router();
    r.spec.hosts = Some(HostsSpec {
        template: Some(template.into()),
        allowed_suffixes: suffixes.iter().map(|s| s.to_string()).collect(),
    });
    r
}

fn usable(ns: &str, name: &str, dns: &[&str]) -> TlsSecret {
    TlsSecret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        state: TlsSecretState::Usable {
            dns_names: dns.iter().map(|d| d.to_string()).collect(),
        },
    }
}

fn tls(secrets: &[&str], redirect: bool, port: Option<i32>) -> TlsSpec {
    TlsSpec {
        port,
        certificates: secrets
            .iter()
            .map(|s| CertificateRef {
                secret_name: s.to_string(),
            })
            .collect(),
        redirect_http: redirect,
    }
}

/// The table of `services`, built from scratch. Every table on the way is also built from
/// the memo of the one before, and must be the same: Services added one by one (in the given
/// order and in reverse), then taken away one by one.
fn run(
    router: &HostRouter,
    services: &[Service],
    secrets: &[TlsSecret],
) -> Result<(RouteTable, Findings), RenderError> {
    let fresh =
        |services: &[Service]| build_with(router, services, secrets, &mut super::Memo::default());
    for order in [services.to_vec(), services.iter().rev().cloned().collect()] {
        let mut memo = super::Memo::default();
        let growing = (0..=order.len()).map(|k| &order[..k]);
        let shrinking = (0..order.len()).map(|k| &order[k + 1..]);
        for some in growing.chain(shrinking) {
            assert_eq!(
                build_with(router, some, secrets, &mut memo),
                fresh(some),
                "built from the last table's memo, {} Services",
                some.len()
            );
        }
    }
    fresh(services)
}

fn build_with(
    router: &HostRouter,
    services: &[Service],
    secrets: &[TlsSecret],
    memo: &mut super::Memo,
) -> Result<(RouteTable, Findings), RenderError> {
    let routed = [("routed", "yes")];
    let namespaces = [
        crate::testing::namespace("shop", &routed),
        crate::testing::namespace("pets", &routed),
    ];
    let view = ClusterView {
        namespaces: namespaces.iter().collect(),
        services: RoutedService::all(services),
        tls_secrets: secrets.iter().collect(),
    };
    let spec = &router.spec;
    let selector = spec.namespace_selector.compile().unwrap();
    let host_template = Template::parse(
        spec.hosts
            .as_ref()
            .map_or(crate::api::routing::DEFAULT_HOST_TEMPLATE, |h| h.template()),
    )
    .unwrap();
    let path_template = spec
        .paths
        .as_ref()
        .map(|p| Template::parse(p.template()).unwrap());
    build(
        &Input {
            router_namespace: "edge",
            spec,
            tenancy: &trusting_edge(),
            namespace_selector: &selector,
            service_selector: None,
            host_template: &host_template,
            path_template: path_template.as_ref(),
        },
        &view,
        memo,
    )
}

/// `(name, domains)` of each virtual host of the first listener.
fn hosts(table: &RouteTable) -> Vec<(String, Vec<String>)> {
    table.listeners[0]
        .virtual_hosts
        .iter()
        .map(|vh| (vh.name().to_owned(), vh.domains.clone()))
        .collect()
}

fn forward(ns: &str, svc: &str, port: u16, replace: Option<&str>) -> Action {
    Action::Forward {
        backend: Backend {
            namespace: ns.into(),
            service: svc.into(),
            port,
        },
        replace_prefix: replace.map(str::to_owned),
    }
}

fn dropped(f: &Findings) -> Vec<(String, String, DropReason)> {
    f.dropped
        .iter()
        .map(|d| (d.source.clone(), d.name.clone(), d.reason.clone()))
        .collect()
}

#[test]
fn without_routing_fields_every_port_gets_todays_name_and_ports_are_not_stripped() {
    let services = [service("shop", "cart", &[(80, "http"), (9090, "admin")], 1)];
    let (table, findings) = run(&router(), &services, &[]).unwrap();
    assert_eq!(table.listeners.len(), 1);
    assert!(!table.listeners[0].strip_host_port);
    assert_eq!(
        hosts(&table),
        [
            ("shop-cart-80".into(), vec!["shop-cart-80".to_string()]),
            ("shop-cart-9090".into(), vec!["shop-cart-9090".to_string()]),
        ]
    );
    assert_eq!((findings.namespaces, findings.services), (2, 1));
}

#[test]
fn a_template_without_port_routes_each_services_primary_port() {
    let services = [
        service("shop", "cart", &[(9090, "admin"), (80, "http")], 1),
        annotated(
            service("shop", "admin", &[(80, "http"), (9090, "admin")], 2),
            PORT_ANNOTATION,
            "9090",
        ),
        service("shop", "metrics", &[(9100, "prom"), (6060, "")], 3),
    ];
    let r = with_template("{service}.{namespace}.apps.example.test", &[]);
    let (table, findings) = run(&r, &services, &[]).unwrap();
    let listener = &table.listeners[0];
    assert!(
        listener.strip_host_port,
        "Host with a port routes like without"
    );
    let routes: Vec<(String, Action)> = listener
        .virtual_hosts
        .iter()
        .map(|vh| (vh.name().to_owned(), vh.routes[0].action.clone()))
        .collect();
    assert_eq!(
        routes,
        [
            (
                "admin.shop.apps.example.test".to_string(),
                forward("shop", "admin", 9090, None)
            ),
            (
                "cart.shop.apps.example.test".to_string(),
                forward("shop", "cart", 80, None)
            ),
            (
                "metrics.shop.apps.example.test".to_string(),
                forward("shop", "metrics", 6060, None)
            ),
        ]
    );
    assert!(findings.dropped.is_empty());
}

#[test]
fn extra_hostnames_only_under_allowed_suffixes_and_never_taken_from_an_older_service() {
    let services = [
        annotated(
            service("shop", "storefront", &[(80, "http")], 1),
            HOSTNAMES_ANNOTATION,
            "Shop.example.com, www.shop.example.com,shop.example.com",
        ),
        annotated(
            service("shop", "greedy", &[(80, "http")], 2),
            HOSTNAMES_ANNOTATION,
            "login.example.org, *.example.com, *.greedy.example.com, shop.example.com, bad_name.example.com",
        ),
    ];
    let r = with_template("{service}.{namespace}.apps.example.com", &["example.com"]);
    let (table, findings) = run(&r, &services, &[]).unwrap();
    assert_eq!(
        hosts(&table),
        [
            (
                "greedy.shop.apps.example.com".into(),
                vec![
                    "greedy.shop.apps.example.com".to_string(),
                    "*.greedy.example.com".to_string()
                ]
            ),
            (
                "storefront.shop.apps.example.com".into(),
                vec![
                    "storefront.shop.apps.example.com".to_string(),
                    "shop.example.com".to_string(),
                    "www.shop.example.com".to_string()
                ]
            ),
        ]
    );
    let got = dropped(&findings);
    let reasons: Vec<(&str, &DropReason)> = got.iter().map(|(_, n, r)| (n.as_str(), r)).collect();
    assert!(reasons.contains(&("login.example.org", &DropReason::NotAllowed)));
    assert!(reasons.contains(&("*.example.com", &DropReason::NotAllowed)));
    assert!(reasons.contains(&(
        "shop.example.com",
        &DropReason::Duplicate {
            kept: "shop/storefront:80".into()
        }
    )));
    assert!(
        reasons
            .iter()
            .any(|(n, r)| *n == "bad_name.example.com" && matches!(r, DropReason::Invalid(_)))
    );
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.iter().all(|(source, _, _)| source == "shop/greedy:80"));
}

#[test]
fn invalid_generated_names_and_missing_annotated_ports_are_left_out_and_said() {
    let long = "s".repeat(60);
    let services = [
        service("shop", &long, &[(8080, "http")], 1),
        annotated(
            service("shop", "broken", &[(80, "http")], 2),
            PORT_ANNOTATION,
            "grpc",
        ),
    ];
    let r = with_template("{service}-{port}.{namespace}.example.com", &[]);
    let (table, findings) = run(&r, &services, &[]).unwrap();
    // A per-port template does not need the primary port: broken keeps its name.
    assert_eq!(hosts(&table)[0].0, "broken-80.shop.example.com");
    let got = dropped(&findings);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0],
        (
            "shop/broken".into(),
            "grpc".into(),
            DropReason::PortNotFound
        )
    );
    assert!(matches!(&got[1].2, DropReason::Invalid(why) if why.contains("more than 63")));
    // Without a port in the template, the Service with a wrong annotation gets nothing.
    let r = with_template("{service}.{namespace}.example.com", &[]);
    let (table, _) = run(&r, &services[1..], &[]).unwrap();
    assert!(hosts(&table).is_empty());
}

#[test]
fn duplicate_domains_keep_the_oldest_service_whatever_the_input_order() {
    // "a-b" + "c" and "a" + "b-c" both give "a-b-c-80" with the default template.
    let older = service("shop", "x", &[(80, "")], 10);
    let newer = service("pets", "x", &[(80, "")], 20);
    let r = with_template("{service}.example.com", &[]);
    for services in [
        [older.clone(), newer.clone()],
        [newer.clone(), older.clone()],
    ] {
        let (table, findings) = run(&r, &services, &[]).unwrap();
        let vh = &table.listeners[0].virtual_hosts[0];
        assert_eq!(vh.routes[0].action, forward("shop", "x", 80, None));
        assert_eq!(
            dropped(&findings),
            [(
                "pets/x:80".into(),
                "x.example.com".into(),
                DropReason::Duplicate {
                    kept: "shop/x:80".into()
                }
            )]
        );
    }
}

#[test]
fn path_routes_strip_their_prefix_longest_first_on_their_host() {
    let services = [
        service("pets", "petstore", &[(8080, "http")], 1),
        service("pets", "petstorefoo", &[(80, "http")], 2),
        service("shop", "cart", &[(80, "http")], 3),
    ];
    let mut r = with_template("{service}.{namespace}.apps.example.com", &[]);
    r.spec.paths = Some(PathsSpec {
        host: Some("apps.example.com".into()),
        template: None,
    });
    let (table, findings) = run(&r, &services, &[]).unwrap();
    let vh = table.listeners[0]
        .virtual_hosts
        .iter()
        .find(|vh| vh.name() == "apps.example.com")
        .expect("the path host");
    let routes: Vec<(&str, Action)> = vh
        .routes
        .iter()
        .map(|r| (&*r.path.0, r.action.clone()))
        .collect();
    assert_eq!(
        routes,
        [
            (
                "/pets/petstorefoo",
                forward("pets", "petstorefoo", 80, Some("/"))
            ),
            (
                "/pets/petstore",
                forward("pets", "petstore", 8080, Some("/"))
            ),
            ("/shop/cart", forward("shop", "cart", 80, Some("/"))),
        ]
    );
    assert_eq!(table.listeners[0].virtual_hosts.len(), 4);
    assert!(findings.dropped.is_empty());
}

#[test]
fn the_path_host_is_the_routers_and_without_one_paths_answer_any_host() {
    let services = [
        // Generates the path host itself with this template.
        service("apps", "x", &[(80, "http")], 1),
        service("shop", "cart", &[(80, "http")], 2),
    ];
    let mut r = with_template("{namespace}.example.com", &[]);
    r.spec.hosts.as_mut().unwrap().template = Some("{service}.example.com".into());
    r.spec.paths = Some(PathsSpec {
        host: Some("cart.example.com".into()),
        template: Some("/{service}".into()),
    });
    let (table, findings) = run(&r, &services[1..], &[]).unwrap();
    assert_eq!(
        dropped(&findings),
        [(
            "shop/cart:80".into(),
            "cart.example.com".into(),
            DropReason::Duplicate {
                kept: "spec.paths.host".into()
            }
        )]
    );
    assert_eq!(
        hosts(&table),
        [(
            "cart.example.com".into(),
            vec!["cart.example.com".to_string()]
        )]
    );
    r.spec.paths.as_mut().unwrap().host = None;
    let (table, _) = run(&r, &services[1..], &[]).unwrap();
    assert_eq!(table.listeners[0].virtual_hosts[0].domains, [ANY_HOST]);
}

#[test]
fn tls_adds_an_https_listener_and_the_redirect_keeps_acme_challenges() {
    let services = [service("shop", "cart", &[(80, "http")], 1)];
    let mut r = with_template("{service}.{namespace}.apps.example.com", &[]);
    r.spec.tls = Some(tls(&["wild", "missing"], true, None));
    let secrets = [usable("edge", "wild", &["*.shop.apps.example.com"])];
    let (table, findings) = run(&r, &services, &secrets).unwrap();
    assert_eq!(table.listeners.len(), 2);
    let (http, https) = (&table.listeners[0], &table.listeners[1]);
    assert_eq!((http.name, https.name, https.port), (HTTP, HTTPS, 8443));
    assert_eq!(
        https.certificates,
        [Certificate {
            secret_namespace: "edge".into(),
            secret_name: "wild".into(),
            server_names: vec!["*.shop.apps.example.com".into()],
        }]
    );
    assert_eq!(
        https.virtual_hosts[0].routes,
        [Route {
            path: PathPrefix::root(),
            action: forward("shop", "cart", 80, None)
        }]
    );
    assert_eq!(
        http.virtual_hosts[0].routes,
        [
            Route {
                path: PathPrefix(ACME_CHALLENGE_PREFIX.into()),
                action: forward("shop", "cart", 80, None)
            },
            Route {
                path: PathPrefix::root(),
                action: Action::RedirectToHttps { port: Some(8443) }
            },
        ]
    );
    assert_eq!(findings.certificate_problems.len(), 1);

    // On 443 the Location carries no port.
    r.spec.tls = Some(tls(&["wild"], true, Some(443)));
    let (table, _) = run(&r, &services, &secrets).unwrap();
    assert_eq!(
        table.listeners[0].virtual_hosts[0].routes[1].action,
        Action::RedirectToHttps { port: None }
    );
}

#[test]
fn without_a_usable_certificate_plain_http_keeps_routing() {
    let services = [service("shop", "cart", &[(80, "http")], 1)];
    let mut r = with_template("{service}.{namespace}.apps.example.com", &[]);
    r.spec.tls = Some(tls(&["missing"], true, None));
    let (table, findings) = run(&r, &services, &[]).unwrap();
    assert_eq!(table.listeners.len(), 1, "no HTTPS listener");
    assert_eq!(
        table.listeners[0].virtual_hosts[0].routes[0].action,
        forward("shop", "cart", 80, None),
        "no redirect to a listener that does not exist"
    );
    assert_eq!(findings.certificate_problems[0].secret, "missing");
}
