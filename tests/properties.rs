//! Properties of the pure core, over generated input: arbitrary names, labels, ports, protocols,
//! annotations, selectors, templates and timestamps. Render never panics, its output does not
//! depend on the order of its input, every generated object name and hostname is valid, and no
//! listener has a duplicate domain; selectors, names, claims and status keep their promises.
//!
//! `make test` runs each property `PROPTEST_CASES` times (proptest's default, 256); `make fuzz`
//! runs them over a million cases in all (see the Makefile).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hostrouter::api::HostRouter;
use hostrouter::api::hostrouter::{Destination, ProxyRef};
use hostrouter::api::routing::{CertificateRef, HostsSpec, PathsSpec, TlsSpec};
use hostrouter::api::selector::{LabelSelector, LabelSelectorOperator, LabelSelectorRequirement};
use hostrouter::controller::claims::{self, Claim};
use hostrouter::controller::status::{
    self, Acceptance, BackendFacts, EnvoyState, Facts, Programming,
};
use hostrouter::render::routes::names::hostname_problem;
use hostrouter::render::tls_secret::{TlsSecret, TlsSecretState};
use hostrouter::render::{
    ClusterView, Memo, RoutedService, Settings, naming, render, render_with, routes,
};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use proptest::sample::select;

/// DNS labels, short and at the 63-character limit, sharing prefixes so that names collide.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]{1,3}(-[a-c]{1,2})?",
        1 => "[a-z][a-z0-9-]{60}[a-z0-9]",
    ]
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        select(vec!["team", "routed", "hostrouter.io/expose", "tier"]).prop_map(str::to_owned),
        select(vec!["a", "b", "true", ""]).prop_map(str::to_owned),
        0..3,
    )
}

fn namespace() -> impl Strategy<Value = Namespace> {
    (label(), labels()).prop_map(|(name, labels)| Namespace {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn port() -> impl Strategy<Value = ServicePort> {
    (
        prop_oneof![Just(80), Just(8080), Just(443), 1..70000i32, -5..5i32],
        prop::option::of(select(vec![
            "http", "https", "admin", "grpc", "https-x", "",
        ])),
        prop::option::of(select(vec!["TCP", "UDP", "SCTP"])),
        prop::option::of(select(vec!["https", "http", "h2c"])),
    )
        .prop_map(|(port, name, protocol, app)| ServicePort {
            port,
            name: name.map(str::to_owned),
            protocol: protocol.map(str::to_owned),
            app_protocol: app.map(str::to_owned),
            ..Default::default()
        })
}

fn service(namespaces: Vec<String>) -> impl Strategy<Value = Service> {
    (
        select(namespaces),
        label(),
        prop::collection::vec(port(), 0..4),
        prop::option::of(0..5i64),
        prop::option::of(select(vec![
            "shop.example.com",
            "a.example.com, b.example.com,a.example.com",
            "*.x.example.com",
            "*.example.com",
            "login.example.org",
            "Bad_Name",
            "",
        ])),
        prop::option::of(select(vec!["http", "80", "9999", "admin"])),
        prop::option::of(select(vec!["ExternalName", "ClusterIP"])),
        any::<bool>(),
    )
        .prop_map(
            |(ns, name, ports, created, hostnames, primary, type_, excluded)| {
                let mut annotations = BTreeMap::new();
                if let Some(h) = hostnames {
                    annotations.insert(naming::HOSTNAMES_ANNOTATION.to_owned(), h.to_owned());
                }
                if let Some(p) = primary {
                    annotations.insert(naming::PORT_ANNOTATION.to_owned(), p.to_owned());
                }
                if excluded {
                    annotations.insert(naming::EXCLUDE_ANNOTATION.to_owned(), "true".to_owned());
                }
                Service {
                    metadata: ObjectMeta {
                        name: Some(name),
                        namespace: Some(ns),
                        // Few distinct timestamps: ties decided by namespace and name.
                        creation_timestamp: created
                            .map(|s| Time(Timestamp::from_second(1_700_000_000 + s).unwrap())),
                        annotations: Some(annotations),
                        ..Default::default()
                    },
                    spec: Some(ServiceSpec {
                        ports: Some(ports),
                        type_: type_.map(str::to_owned),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            },
        )
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    (
        prop::collection::btree_map(
            select(vec!["team", "routed", "tier"]).prop_map(str::to_owned),
            select(vec!["a", "b", ""]).prop_map(str::to_owned),
            0..2,
        ),
        prop::collection::vec(
            (
                select(vec!["team", "tier", "routed"]),
                select(vec![
                    LabelSelectorOperator::In,
                    LabelSelectorOperator::NotIn,
                    LabelSelectorOperator::Exists,
                    LabelSelectorOperator::DoesNotExist,
                ]),
                prop::collection::vec(select(vec!["a", "b"]).prop_map(str::to_owned), 1..3),
            )
                .prop_map(|(key, operator, values)| LabelSelectorRequirement {
                    key: key.to_owned(),
                    values: match operator {
                        LabelSelectorOperator::In | LabelSelectorOperator::NotIn => values,
                        _ => Vec::new(),
                    },
                    operator,
                }),
            0..2,
        ),
    )
        .prop_map(|(match_labels, match_expressions)| LabelSelector {
            match_labels,
            match_expressions,
        })
}

fn router(namespaces: Vec<String>) -> impl Strategy<Value = HostRouter> {
    (
        select(namespaces),
        selector(),
        prop::option::of(select(vec![
            "{namespace}-{service}-{port}",
            "{service}.{namespace}.apps.example.com",
            "{service}-{portName}.{namespace}.example.com",
            "{service}.example.com",
            "{service}",
        ])),
        prop::option::of((
            prop::option::of(select(vec!["apps.example.com", "shop.example.com"])),
            prop::option::of(select(vec![
                "/{namespace}/{service}",
                "/{service}",
                "/{service}/{port}",
            ])),
        )),
        prop::option::of((
            prop::collection::vec(select(vec!["wild", "shop", "gone", "bad"]), 1..4),
            any::<bool>(),
        )),
        select(vec![8080, 80, 9000]),
    )
        .prop_map(|(ns, namespace_selector, template, paths, tls, listener)| {
            let mut r = HostRouter::new(
                "edge",
                serde_json::from_value(serde_json::json!({
                    "proxyName": "edge",
                    "listener": {"port": listener},
                    "namespaceSelector": {},
                }))
                .unwrap(),
            );
            r.metadata.namespace = Some(ns);
            r.metadata.uid = Some("uid-1".into());
            r.spec.namespace_selector = namespace_selector;
            r.spec.hosts = template.map(|t| HostsSpec {
                template: Some(t.to_owned()),
                allowed_suffixes: vec!["example.com".into()],
            });
            r.spec.paths = paths.map(|(host, template)| PathsSpec {
                host: host.map(str::to_owned),
                template: template.map(str::to_owned),
            });
            r.spec.tls = tls.map(|(names, redirect)| {
                let mut unique: Vec<&str> = Vec::new();
                for n in names {
                    if !unique.contains(&n) {
                        unique.push(n);
                    }
                }
                TlsSpec {
                    port: Some(8443),
                    certificates: unique
                        .into_iter()
                        .map(|n| CertificateRef {
                            secret_name: n.into(),
                        })
                        .collect(),
                    redirect_http: redirect,
                }
            });
            r
        })
}

fn secrets(router_namespace: &str) -> Vec<TlsSecret> {
    let secret = |name: &str, state| TlsSecret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(router_namespace.into()),
            ..Default::default()
        },
        state,
    };
    vec![
        secret(
            "wild",
            TlsSecretState::Usable {
                dns_names: vec!["*.apps.example.com".into(), "shop.example.com".into()],
            },
        ),
        secret(
            "shop",
            TlsSecretState::Usable {
                dns_names: vec!["shop.example.com".into()],
            },
        ),
        secret("bad", TlsSecretState::Invalid("no key".into())),
    ]
}

/// The distinct names of `namespaces`, sorted.
fn names_of(namespaces: &[Namespace]) -> Vec<String> {
    let mut names: Vec<String> = namespaces
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A cluster and a router in one of its namespaces.
fn world() -> impl Strategy<Value = (Vec<Namespace>, Vec<Service>, HostRouter)> {
    prop::collection::vec(namespace(), 1..5).prop_flat_map(|namespaces| {
        let names = names_of(&namespaces);
        (
            Just(namespaces),
            prop::collection::vec(service(names.clone()), 0..12).prop_map(unique),
            router(names),
        )
    })
}

/// A world, Services that later replace or join its Services, and a second router.
#[allow(clippy::type_complexity)]
fn worlds() -> impl Strategy<
    Value = (
        Vec<Namespace>,
        Vec<Service>,
        Vec<Service>,
        HostRouter,
        HostRouter,
    ),
> {
    world().prop_flat_map(|(namespaces, services, router)| {
        let names = names_of(&namespaces);
        (
            Just(namespaces),
            Just(services),
            prop::collection::vec(service(names.clone()), 0..6).prop_map(unique),
            Just(router),
            self::router(names),
        )
    })
}

/// One object per namespace and name, as in a cluster (the first of each wins).
fn unique(services: Vec<Service>) -> Vec<Service> {
    let mut seen = BTreeSet::new();
    services
        .into_iter()
        .filter(|s| seen.insert((s.metadata.namespace.clone(), s.metadata.name.clone())))
        .collect()
}

/// Settings that compress every Proxy, one piece per virtual host: every piece and every
/// dictionary is exercised.
fn one_piece_per_host() -> Settings {
    Settings {
        compress_proxy_above_bytes: 0,
        compress_piece_hosts: std::num::NonZeroU64::MIN,
        ..Settings::default()
    }
}

/// `later`, then the Services of `some` that none of `later` replaces (same namespace and
/// name).
fn with_later<'a>(some: &[&'a Service], later: &'a [Service]) -> Vec<&'a Service> {
    let replaced: BTreeSet<_> = later
        .iter()
        .map(|s| (&s.metadata.namespace, &s.metadata.name))
        .collect();
    let mut out: Vec<&Service> = later.iter().collect();
    out.extend(
        some.iter()
            .filter(|s| !replaced.contains(&(&s.metadata.namespace, &s.metadata.name))),
    );
    out
}

/// Render's output as one YAML text.
fn yaml(r: &hostrouter::render::Rendered) -> String {
    [
        serde_yaml::to_string(&r.gloo().unwrap().proxy).unwrap(),
        serde_yaml::to_string(&r.gloo().unwrap().config_map).unwrap(),
        serde_yaml::to_string(&r.gloo().unwrap().service).unwrap(),
        serde_yaml::to_string(&r.gloo().unwrap().deployment).unwrap(),
    ]
    .join("---\n")
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

proptest! {
    #[test]
    fn render_is_total_deterministic_and_order_independent((namespaces, services, router) in world()) {
        let settings = Settings::default();
        let router_ns = router.metadata.namespace.clone().unwrap();
        let tls = secrets(&router_ns);
        let view = ClusterView {
            namespaces: namespaces.iter().collect(),
            services: RoutedService::all(&services),
            tls_secrets: tls.iter().collect(),
        };
        let Ok(first) = render(&router, &view, &settings) else {
            // Generated selectors and templates are valid: render must not refuse them.
            prop_assert!(false, "render refused a valid router");
            unreachable!()
        };
        let mut reversed = view.clone();
        reversed.namespaces.reverse();
        reversed.services = RoutedService::all(services.iter().rev());
        reversed.tls_secrets.reverse();
        let second = render(&router, &reversed, &settings).unwrap();
        prop_assert_eq!(yaml(&first), yaml(&second));

        // Every generated object name is a valid Kubernetes name.
        for name in [&first.gloo().unwrap().config_map.metadata.name, &first.gloo().unwrap().service.metadata.name, &first.gloo().unwrap().deployment.metadata.name, &first.gloo().unwrap().proxy.metadata.name] {
            let name = name.as_deref().unwrap_or_default();
            prop_assert!(is_dns_subdomain(name), "object name {name:?}");
        }
        // No listener has a duplicate domain, and every domain follows the hostname rule.
        for listener in &first.table.listeners {
            let mut seen = BTreeSet::new();
            for vh in &listener.virtual_hosts {
                for d in &vh.domains {
                    prop_assert!(seen.insert(d.clone()), "duplicate domain {d}");
                    if d != "*" {
                        prop_assert_eq!(hostname_problem(d, true), None, "domain {}", d);
                    }
                }
                let prefixes: BTreeSet<&str> = vh.routes.iter().map(|r| &*r.path.0).collect();
                prop_assert_eq!(prefixes.len(), vh.routes.len(), "duplicate route in {}", vh.name());
            }
            // SNI names are served by one certificate each.
            let mut sni = BTreeSet::new();
            for c in &listener.certificates {
                for n in &c.server_names {
                    prop_assert!(sni.insert(n.clone()), "SNI name {n} served twice");
                }
            }
        }
        // Counts agree with what is there.
        prop_assert!(first.findings.services <= services.len());
    }

    /// What a render reuses of the last one changes nothing: through a sequence of clusters
    /// (some Services gone, others changed under the same name, new ones, every list in
    /// another order, then a router with another spec), each render with the memo of the one
    /// before gives the route table, the findings and the bytes of a fresh render. Compressed
    /// always, one piece per virtual host, so that every piece and every dictionary is
    /// exercised.
    #[test]
    fn a_render_with_the_last_renders_memo_is_a_fresh_render(
        (namespaces, services, later, router, other_router) in worlds(),
        keep in prop::collection::vec(any::<bool>(), 12),
    ) {
        let settings = one_piece_per_host();
        fn view<'a>(namespaces: &'a [Namespace], services: &[&'a Service]) -> ClusterView<'a> {
            ClusterView {
                namespaces: namespaces.iter().collect(),
                services: RoutedService::all(services.iter().copied()),
                tls_secrets: Vec::new(),
            }
        }
        let all: Vec<&Service> = services.iter().collect();
        let mut some: Vec<&Service> = services
            .iter()
            .zip(&keep)
            .filter_map(|(s, k)| k.then_some(s))
            .collect();
        some.reverse();
        // The later Services replace those of the same namespace and name.
        let changed = with_later(&some, &later);
        let steps = [
            (&router, &all),
            (&router, &some),
            (&router, &changed),
            (&router, &all),
            (&other_router, &changed),
        ];
        for first in 0..steps.len() {
            let mut memo = Memo::default();
            for (router, services) in &steps[first..] {
                let warm = render_with(router, &view(&namespaces, services), &settings, &mut memo).unwrap();
                let fresh = render(router, &view(&namespaces, services), &settings).unwrap();
                prop_assert_eq!(&warm.table, &fresh.table);
                prop_assert_eq!(&warm.findings, &fresh.findings);
                prop_assert_eq!(yaml(&warm), yaml(&fresh));
            }
        }
    }

    /// Routers that build the same route table (they differ in the Proxy's name, the listener,
    /// Envoy's replicas, how backends are named) share one route memo and the last compressed
    /// pieces, as the operator keeps them: every render gives the output of a fresh one, each
    /// router of a step reuses the first one's virtual hosts, and one whose virtual hosts are
    /// the same text (not another destination form) reuses its pieces too.
    #[test]
    fn routers_with_one_route_spec_share_a_route_memo(
        (namespaces, services, later, router, _) in worlds(),
        keep in prop::collection::vec(any::<bool>(), 12),
    ) {
        let settings = one_piece_per_host();
        let mut twin = router.clone();
        twin.metadata.name = Some("twin".into());
        twin.spec.proxy_name = "twin".into();
        twin.spec.listener.port += 1;
        twin.spec.envoy.replicas = Some(3);
        let mut cousin = twin.clone();
        cousin.metadata.name = Some("cousin".into());
        cousin.spec.proxy_name = "cousin".into();
        cousin.spec.destination = match router.spec.destination {
            Destination::Kube => Destination::Upstream,
            Destination::Upstream => Destination::Kube,
        };
        for other in [&twin, &cousin] {
            prop_assert_eq!(
                routes::sharing_key("default", &router.spec),
                routes::sharing_key("default", &other.spec)
            );
        }
        let all: Vec<&Service> = services.iter().collect();
        let kept: Vec<&Service> = services.iter().zip(&keep).filter_map(|(s, k)| k.then_some(s)).collect();
        let some = with_later(&kept, &later);
        let routers = [&router, &twin, &cousin];
        let mut memos = [Memo::default(), Memo::default(), Memo::default()];
        let mut shared = hostrouter::render::Shared::default();
        for services in [&all, &some, &all] {
            let view = ClusterView {
                namespaces: namespaces.iter().collect(),
                services: RoutedService::all(services.iter().copied()),
                tls_secrets: Vec::new(),
            };
            let mut hosts = Vec::new();
            for (r, memo) in routers.iter().zip(memos.iter_mut()) {
                // Handed from one to the next as the operator does (`Context::take_memo`).
                memo.shared = std::mem::take(&mut shared);
                memo.settings = Some(settings.clone());
                let warm = render_with(r, &view, &settings, memo).unwrap();
                shared = std::mem::take(&mut memo.shared);
                prop_assert_eq!(yaml(&warm), yaml(&render(r, &view, &settings).unwrap()));
                hosts.push(warm.table.listeners[0].virtual_hosts.clone());
                if std::ptr::eq(*r, &twin) {
                    // Only what differs: per listener, the piece that ends with its port and
                    // the piece after it.
                    prop_assert!(
                        memo.proxy_pieces.compressed() <= 2 * warm.table.listeners.len(),
                        "{} of {} pieces compressed again",
                        memo.proxy_pieces.compressed(),
                        memo.proxy_pieces.len()
                    );
                }
            }
            for other in &hosts[1..] {
                prop_assert!(hosts[0].iter().zip(other).all(|(a, b)| Arc::ptr_eq(a, b)));
            }
        }
    }

    #[test]
    fn gloo_upstream_names_are_dns_labels(ns in label(), svc in label(), port in 1u16..) {
        let name = naming::gloo_upstream_name(&ns, &svc, port);
        prop_assert!(is_dns_label(&name), "{name:?}");
    }

    #[test]
    fn selectors_compile_and_match_the_same_labels_the_same_way(sel in selector(), labels in labels()) {
        let compiled = sel.compile().expect("a generated selector compiles");
        let a = hostrouter::api::selector::matches(&compiled, Some(&labels));
        let again = sel.compile().unwrap();
        prop_assert_eq!(a, hostrouter::api::selector::matches(&again, Some(&labels)));
        if sel == LabelSelector::default() {
            prop_assert!(a, "the empty selector selects everything");
        }
    }

    #[test]
    fn claims_give_each_name_at_most_one_winner_whatever_the_order(
        routers in prop::collection::vec(
            (select(vec!["a", "b"]), select(vec!["r1", "r2", "r3"]), select(vec!["p", "q"]), prop::option::of(select(vec!["g1", "g2"])), 0..3i64, any::<bool>()),
            1..7,
        )
    ) {
        let settings = Settings::default();
        let mut all: Vec<HostRouter> = Vec::new();
        for (ns, name, proxy, proxy_ns, created, deleting) in routers {
            if all.iter().any(|r| r.metadata.namespace.as_deref() == Some(ns) && r.metadata.name.as_deref() == Some(name)) {
                continue;
            }
            let mut r = HostRouter::new(name, serde_json::from_value(serde_json::json!({
                "proxyName": proxy, "listener": {"port": 8080}, "namespaceSelector": {},
            })).unwrap());
            r.metadata.namespace = Some(ns.into());
            r.spec.proxy_namespace = proxy_ns.map(str::to_owned);
            r.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1_700_000_000 + created).unwrap()));
            if deleting {
                r.metadata.deletion_timestamp = r.metadata.creation_timestamp.clone();
            }
            all.push(r);
        }
        let winners = |routers: &[HostRouter]| -> BTreeSet<(String, String)> {
            routers.iter()
                .filter(|r| claims::is_live(r) && claims::claim(r, routers, &settings) == Claim::Won)
                .map(|r| (r.metadata.namespace.clone().unwrap(), r.metadata.name.clone().unwrap()))
                .collect()
        };
        let forward = winners(&all);
        let mut reversed = all.clone();
        reversed.reverse();
        prop_assert_eq!(&forward, &winners(&reversed));
        // No two winners write objects with the same names.
        let won: Vec<&HostRouter> = all.iter().filter(|r| forward.contains(&(r.metadata.namespace.clone().unwrap(), r.metadata.name.clone().unwrap()))).collect();
        for (i, a) in won.iter().enumerate() {
            for b in &won[i + 1..] {
                prop_assert!(!claims::overlaps(a, b, &settings), "two winners collide");
            }
        }
    }

    #[test]
    fn status_is_stable_for_the_same_facts(
        generation in prop::option::of(0i64..1000),
        accepted in any::<bool>(),
        available in 0i32..3,
        virtual_hosts in 0usize..100_000,
        t1 in 0i64..1_000_000,
        t2 in 0i64..1_000_000,
    ) {
        let facts = Facts {
            generation,
            acceptance: if accepted { Acceptance::Accepted } else { Acceptance::Rejected { reason: status::Reason::ProxyNameConflict, message: "older".into() } },
            programming: Programming::Programmed,
            certificates: None,
            backend: BackendFacts::Gloo { verdict: None, envoy: EnvoyState::Observed { desired: 2, available } },
            fleet: status::Fleet::default(),
            proxy_ref: ProxyRef { namespace: "g".into(), name: "p".into() },
            namespaces: 1,
            namespaces_without_consent: 0,
            services: 1,
            virtual_hosts,
            dropped_hosts: 0,
        };
        let at = |s| Time(Timestamp::from_second(s).unwrap());
        let first = status::compute(&facts, None, &at(t1));
        let again = status::compute(&facts, Some(&first), &at(t2));
        prop_assert_eq!(&first, &again, "the same facts later change nothing");
        let types: BTreeSet<&str> = first.conditions.iter().map(|c| c.type_.as_str()).collect();
        prop_assert_eq!(types.len(), first.conditions.len(), "condition types are unique");
    }
}
