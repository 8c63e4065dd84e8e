use k8s_openapi::api::core::v1::{Namespace, Service};
use serde_json::{Value, json};

use super::*;
use crate::api::hostrouter::Destination;

fn router(destination: Destination) -> HostRouter {
    let mut r = crate::testing::router("default", "edge", "my-cool-proxy");
    r.spec.destination = destination;
    r.metadata.uid = Some("1b2c".into());
    r
}

/// A namespace; a routed one is selected by the test router and consents to being published.
fn namespace(name: &str, routed: bool) -> Namespace {
    let labels: &[(&str, &str)] = if routed {
        &[("routed", "yes"), (naming::EXPOSE_LABEL, "true")]
    } else {
        &[]
    };
    crate::testing::namespace(name, labels)
}

fn service(ns: &str, name: &str, ports: &[i32]) -> Service {
    let ports: Vec<(i32, &str, &str)> = ports.iter().map(|p| (*p, "", "")).collect();
    crate::testing::service(ns, name, &ports, 1_700_000_000)
}

struct Fixture {
    namespaces: Vec<Namespace>,
    services: Vec<Service>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            namespaces: vec![
                namespace("default", true),
                namespace("shop", true),
                namespace("private", false),
            ],
            services: vec![
                service("default", "petstore", &[8080]),
                service("shop", "cart", &[80, 9090]),
                service("private", "secret", &[80]),
            ],
        }
    }

    /// The fixture and `n` more Services (one port each) in its first routed namespace.
    fn with_services(n: i64) -> Self {
        let mut f = Self::new();
        let routed = f.namespaces[0].metadata.name.clone().unwrap_or_default();
        for i in 0..n {
            f.services.push(crate::testing::service(
                &routed,
                &format!("svc-{i}"),
                &[(80, "http", "")],
                100 + i,
            ));
        }
        f
    }

    fn view(&self) -> ClusterView<'_> {
        ClusterView {
            namespaces: self.namespaces.iter().collect(),
            services: RoutedService::all(&self.services),
            tls_secrets: Vec::new(),
        }
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> &'a str {
    &meta.annotations.as_ref().unwrap()[key]
}

fn into_gloo(r: Rendered) -> super::gloo::Objects {
    match r.objects {
        super::Objects::Gloo(o) => *o,
        super::Objects::GatewayApi(_) => panic!("a Gloo router"),
    }
}

fn to_yaml(r: &Rendered) -> String {
    [
        serde_yaml::to_string(&r.gloo().unwrap().proxy).unwrap(),
        serde_yaml::to_string(&r.gloo().unwrap().config_map).unwrap(),
        serde_yaml::to_string(&r.gloo().unwrap().service).unwrap(),
        serde_yaml::to_string(&r.gloo().unwrap().deployment).unwrap(),
    ]
    .join("---\n")
}

fn virtual_hosts(r: &Rendered) -> Vec<Value> {
    r.gloo().unwrap().proxy.data["spec"]["listeners"][0]["httpListener"]["virtualHosts"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn proxy_has_one_virtual_host_per_selected_service_port() {
    let f = Fixture::new();
    let r = render(&router(Destination::Kube), &f.view(), &Settings::default()).unwrap();
    let vhs = virtual_hosts(&r);
    let names: Vec<&str> = vhs.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["default-petstore-8080", "shop-cart-80", "shop-cart-9090"]
    );
    assert_eq!(
        vhs[0],
        json!({
            "name": "default-petstore-8080",
            "domains": ["default-petstore-8080"],
            "routes": [{
                "matchers": [{"prefix": "/"}],
                "routeAction": {"single": {"kube": {"ref": {"name": "petstore", "namespace": "default"}, "port": 8080}}},
            }],
        })
    );
    let listener = &r.gloo().unwrap().proxy.data["spec"]["listeners"][0];
    assert_eq!(
        (
            listener["bindAddress"].as_str(),
            listener["bindPort"].as_u64()
        ),
        (Some("::"), Some(8080))
    );
    assert_eq!(
        (
            r.findings.namespaces,
            r.findings.services,
            r.virtual_hosts()
        ),
        (2, 2, 3)
    );
}

#[test]
fn upstream_destination_names_gloos_discovered_upstream_in_proxy_namespace() {
    let f = Fixture::new();
    let r = render(
        &router(Destination::Upstream),
        &f.view(),
        &Settings::default(),
    )
    .unwrap();
    assert_eq!(
        virtual_hosts(&r)[0]["routes"][0]["routeAction"],
        json!({"single": {"upstream": {"name": "default-petstore-8080", "namespace": "gloo-system"}}})
    );
}

#[test]
fn output_is_byte_stable_whatever_the_input_order() {
    let f = Fixture::new();
    let settings = Settings::default();
    let first = to_yaml(&render(&router(Destination::Kube), &f.view(), &settings).unwrap());
    let mut reversed = f.view();
    reversed.namespaces.reverse();
    reversed.services = RoutedService::all(f.services.iter().rev());
    let second = to_yaml(&render(&router(Destination::Kube), &reversed, &settings).unwrap());
    assert_eq!(first, second);
}

#[test]
fn local_objects_are_owned_by_the_router_and_the_proxy_is_labelled() {
    let f = Fixture::new();
    let r = render(&router(Destination::Kube), &f.view(), &Settings::default()).unwrap();
    for meta in [
        &r.gloo().unwrap().config_map.metadata,
        &r.gloo().unwrap().service.metadata,
        &r.gloo().unwrap().deployment.metadata,
    ] {
        assert_eq!(meta.namespace.as_deref(), Some("default"));
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (
                owners[0].kind.as_str(),
                owners[0].name.as_str(),
                owners[0].uid.as_str()
            ),
            ("HostRouter", "edge", "1b2c")
        );
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(
            meta.labels.as_ref().unwrap()[naming::ROUTER_UID_LABEL],
            "1b2c"
        );
    }
    assert_eq!(
        r.gloo().unwrap().config_map.metadata.name.as_deref(),
        Some("my-cool-proxy-envoy-bootstrap")
    );
    assert_eq!(
        r.gloo().unwrap().deployment.metadata.name.as_deref(),
        Some("my-cool-proxy")
    );
    assert_eq!(
        r.gloo().unwrap().service.metadata.name.as_deref(),
        Some("my-cool-proxy")
    );
    // The Proxy lives in Gloo's namespace: no owner reference, labels and an annotation instead.
    assert_eq!(
        r.gloo().unwrap().proxy.metadata.namespace.as_deref(),
        Some("gloo-system")
    );
    assert!(r.gloo().unwrap().proxy.metadata.owner_references.is_none());
    assert_eq!(
        r.gloo().unwrap().proxy.metadata.labels.as_ref().unwrap()[naming::MANAGED_BY_LABEL],
        "hostrouter"
    );
    assert_eq!(
        annotation(&r.gloo().unwrap().proxy.metadata, naming::ROUTER_ANNOTATION),
        "default/edge"
    );
}

#[test]
fn service_selects_exactly_the_deployments_pods() {
    let f = Fixture::new();
    let r = render(&router(Destination::Kube), &f.view(), &Settings::default()).unwrap();
    let dep = &r.gloo().unwrap().deployment.spec;
    let pod_labels = dep
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    let service = r.gloo().unwrap().service.spec.as_ref().unwrap();
    let selector = service.selector.as_ref().unwrap();
    assert_eq!(Some(selector), dep.selector.match_labels.as_ref());
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    assert_eq!(selector[naming::INSTANCE_LABEL], "my-cool-proxy");
    let port = &service.ports.as_ref().unwrap()[0];
    assert_eq!(port.port, 8080);
    assert_eq!(
        r.gloo()
            .unwrap()
            .service
            .spec
            .as_ref()
            .unwrap()
            .type_
            .as_deref(),
        Some("LoadBalancer")
    );
}

#[test]
fn deployment_is_restricted_and_carries_the_bootstrap_hash() {
    let f = Fixture::new();
    let r = render(&router(Destination::Kube), &f.view(), &Settings::default()).unwrap();
    let pod = r
        .gloo()
        .unwrap()
        .deployment
        .spec
        .template
        .spec
        .as_ref()
        .unwrap();
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert!(psc.sysctls.is_none(), "port 8080 needs no sysctl");
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
    assert!(c.readiness_probe.is_some());
    let env: Vec<&str> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE"]);
    let hash = &r
        .gloo()
        .unwrap()
        .deployment
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[naming::BOOTSTRAP_HASH_ANNOTATION];
    assert_eq!(hash, &r.gloo().unwrap().bootstrap_sha256);
    assert_eq!(
        c.image.as_deref(),
        Some("quay.io/solo-io/gloo-envoy-wrapper:1.22.1")
    );
}

#[test]
fn low_ports_get_the_unprivileged_port_sysctl() {
    let f = Fixture::new();
    let mut rt = router(Destination::Kube);
    rt.spec.listener.port = 80;
    let r = render(&rt, &f.view(), &Settings::default()).unwrap();
    let psc = into_gloo(r)
        .deployment
        .spec
        .template
        .spec
        .unwrap()
        .security_context
        .unwrap();
    assert_eq!(
        psc.sysctls.unwrap()[0].name,
        "net.ipv4.ip_unprivileged_port_start"
    );
}

#[test]
fn a_low_admin_port_gets_the_sysctl_too_and_a_high_one_does_not() {
    let f = Fixture::new();
    let mut rt = router(Destination::Kube);
    rt.spec.envoy.admin_port = Some(80);
    let r = render(&rt, &f.view(), &Settings::default()).unwrap();
    let sysctls = into_gloo(r)
        .deployment
        .spec
        .template
        .spec
        .unwrap()
        .security_context
        .unwrap()
        .sysctls;
    assert_eq!(
        sysctls.unwrap()[0].name,
        "net.ipv4.ip_unprivileged_port_start"
    );
    rt.spec.envoy.admin_port = Some(19001);
    let r = render(&rt, &f.view(), &Settings::default()).unwrap();
    assert!(
        into_gloo(r)
            .deployment
            .spec
            .template
            .spec
            .unwrap()
            .security_context
            .unwrap()
            .sysctls
            .is_none()
    );
}

#[test]
fn bootstrap_targets_gloos_xds_with_the_proxy_role_and_changes_roll_the_pods() {
    let f = Fixture::new();
    let settings = Settings::default();
    let r = render(&router(Destination::Kube), &f.view(), &settings).unwrap();
    let yaml = &r.gloo().unwrap().config_map.data.as_ref().unwrap()[naming::BOOTSTRAP_KEY];
    let boot: Value = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(
        boot["node"]["metadata"]["role"],
        "gloo-system~my-cool-proxy"
    );
    let addr = &boot["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        [0]["endpoint"]["address"]["socket_address"];
    assert_eq!(
        addr,
        &json!({"address": "gloo.gloo-system.svc.cluster.local", "port_value": 9977})
    );
    assert_eq!(
        boot["dynamic_resources"]["ads_config"]["transport_api_version"],
        "V3"
    );
    assert_eq!(
        boot["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );

    let moved = Settings {
        xds_address: "gloo.other.svc".into(),
        ..settings
    };
    let r2 = render(&router(Destination::Kube), &f.view(), &moved).unwrap();
    assert_ne!(
        r.gloo().unwrap().bootstrap_sha256,
        r2.gloo().unwrap().bootstrap_sha256
    );
}

#[test]
fn large_proxies_are_compressed_in_gloos_format() {
    let f = Fixture::new();
    let plain = render(&router(Destination::Kube), &f.view(), &Settings::default()).unwrap();
    let small = Settings {
        compress_proxy_above_bytes: 10,
        ..Settings::default()
    };
    let r = render(&router(Destination::Kube), &f.view(), &small).unwrap();
    assert!(r.gloo().unwrap().proxy_compressed && !plain.gloo().unwrap().proxy_compressed);
    assert_eq!(
        annotation(
            &r.gloo().unwrap().proxy.metadata,
            crate::api::gloo::COMPRESS_ANNOTATION
        ),
        "true"
    );
    let spec = &r.gloo().unwrap().proxy.data["spec"];
    assert!(spec.get("listeners").is_none());
    let restored = gloo::proxy::decompress(spec["compressedSpec"].as_str().unwrap()).unwrap();
    assert_eq!(restored, plain.gloo().unwrap().proxy.data["spec"]);
}

/// A rendered Proxy of many hosts is cut into pieces, and one more Service compresses at most
/// two pieces again.
#[test]
fn a_rendered_compressed_proxy_is_cut_into_pieces_that_the_next_render_reuses() {
    let mut f = Fixture::with_services(300);
    let routed = f.namespaces[0].metadata.name.clone().unwrap();
    let settings = Settings {
        compress_proxy_above_bytes: 0,
        compress_piece_hosts: std::num::NonZeroU64::new(16).unwrap(),
        ..Settings::default()
    };
    let router = router(Destination::Kube);
    let mut memo = crate::render::Memo::default();
    render_with(&router, &f.view(), &settings, &mut memo).unwrap();
    assert!(
        memo.proxy_pieces.len() > 4,
        "{} pieces",
        memo.proxy_pieces.len()
    );
    f.services.push(crate::testing::service(
        &routed,
        "late",
        &[(80, "http", "")],
        999,
    ));
    let warm = render_with(&router, &f.view(), &settings, &mut memo).unwrap();
    assert!(memo.proxy_pieces.compressed() <= 2);
    let fresh = render(&router, &f.view(), &settings).unwrap();
    assert_eq!(
        warm.gloo().unwrap().proxy.data,
        fresh.gloo().unwrap().proxy.data
    );
}

#[test]
fn proxy_namespace_and_name_come_from_the_spec() {
    let f = Fixture::new();
    let mut rt = router(Destination::Kube);
    rt.spec.proxy_namespace = Some("gloo".into());
    let r = render(&rt, &f.view(), &Settings::default()).unwrap();
    assert_eq!(
        r.proxy_ref,
        ProxyRef {
            namespace: "gloo".into(),
            name: "my-cool-proxy".into()
        }
    );
    assert_eq!(
        r.gloo().unwrap().proxy.metadata.namespace.as_deref(),
        Some("gloo")
    );
}

#[test]
fn a_router_without_namespace_is_an_error_not_a_panic() {
    let f = Fixture::new();
    let mut rt = router(Destination::Kube);
    rt.metadata.namespace = None;
    assert_eq!(
        render(&rt, &f.view(), &Settings::default()).unwrap_err(),
        RenderError::MissingMetadata("namespace")
    );
}

#[test]
fn a_sharded_instance_labels_its_proxies_and_nothing_else() {
    let f = Fixture::new();
    let shard_label = |r: &Rendered| {
        r.gloo()
            .unwrap()
            .proxy
            .labels()
            .get(naming::SHARD_LABEL)
            .cloned()
    };
    let all = render(&router(Destination::Kube), &f.view(), &Settings::default()).unwrap();
    assert_eq!(shard_label(&all), None);
    let sharded = Settings {
        shard: Some(naming::shard("team=a")),
        ..Settings::default()
    };
    let r = render(&router(Destination::Kube), &f.view(), &sharded).unwrap();
    assert_eq!(shard_label(&r), Some(naming::shard("team=a")));
    assert_ne!(naming::shard("team=a"), naming::shard("team=b"));
    // The namespaced objects are collected by their owner reference, not swept.
    assert!(
        !r.gloo()
            .unwrap()
            .deployment
            .labels()
            .contains_key(naming::SHARD_LABEL)
    );
    assert_eq!(r.gloo().unwrap().deployment, all.gloo().unwrap().deployment);
}

/// The router of [`router`] with `envoy` replaced, rendered against the fixture.
fn with_envoy(envoy: Value) -> super::gloo::Objects {
    let mut r = router(Destination::Kube);
    r.spec.envoy = serde_json::from_value(envoy).unwrap();
    let f = Fixture::new();
    into_gloo(render(&r, &f.view(), &Settings::default()).unwrap())
}

fn spread_keys(o: &super::gloo::Objects) -> Vec<String> {
    let pod = o.deployment.spec.template.spec.as_ref().unwrap();
    pod.topology_spread_constraints
        .iter()
        .flatten()
        .map(|c| c.topology_key.clone())
        .collect()
}

#[test]
fn more_than_one_pod_spreads_across_zones_and_nodes_unless_told_otherwise() {
    assert!(spread_keys(&with_envoy(json!({}))).is_empty(), "one pod");
    let zones_then_nodes = ["topology.kubernetes.io/zone", "kubernetes.io/hostname"];
    assert_eq!(
        spread_keys(&with_envoy(json!({"replicas": 2}))),
        zones_then_nodes
    );
    assert_eq!(
        spread_keys(&with_envoy(json!({
            "resources": {"requests": {"cpu": "1"}},
            "autoscaling": {"maxReplicas": 4},
        }))),
        zones_then_nodes,
        "an autoscaler may add pods"
    );
    assert!(
        spread_keys(&with_envoy(
            json!({"replicas": 3, "pod": {"topologySpreadConstraints": []}})
        ))
        .is_empty(),
        "[] turns the spread off"
    );
}

#[test]
fn an_autoscaler_owns_the_replica_count() {
    let fixed = with_envoy(json!({"replicas": 3}));
    assert_eq!(fixed.deployment.spec.replicas, Some(3));
    assert!(fixed.autoscaler.is_none() && fixed.disruption_budget.is_none());
    let scaled = with_envoy(json!({
        "replicas": 3,
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "memoryUtilization": 75},
        "disruptionBudget": {"maxUnavailable": "50%"},
    }));
    assert_eq!(scaled.deployment.spec.replicas, None);
    let hpa = serde_json::to_value(scaled.autoscaler.unwrap()).unwrap();
    assert_eq!(
        hpa["spec"],
        json!({
            "minReplicas": 2, "maxReplicas": 5,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "my-cool-proxy"},
            // A memory target alone: no default CPU target.
            "metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 75}}}],
        })
    );
    let pdb = serde_json::to_value(scaled.disruption_budget.unwrap()).unwrap();
    assert_eq!(pdb["spec"]["maxUnavailable"], "50%");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        serde_json::to_value(naming::selector_labels("my-cool-proxy")).unwrap()
    );
}

#[test]
fn pod_and_service_options_never_replace_the_operators_own() {
    let o = with_envoy(json!({
        "pod": {
            "labels": {"team": "edge"},
            "annotations": {"a.example.com/x": "1"},
            "env": [{"name": "EXTRA", "value": "1"}],
        },
    }));
    let template = &o.deployment.spec.template;
    let labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(labels["team"], "edge");
    for (k, v) in naming::selector_labels("my-cool-proxy") {
        assert_eq!(labels[&k], v);
    }
    let annotations = template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert!(annotations.contains_key(naming::BOOTSTRAP_HASH_ANNOTATION));
    assert_eq!(annotations["a.example.com/x"], "1");
    let env: Vec<&str> = template.spec.as_ref().unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "EXTRA"]);
}

#[test]
fn other_settings_start_the_memo_over() {
    let f = Fixture::new();
    let router = router(Destination::Upstream);
    let mut memo = crate::render::Memo::default();
    render_with(&router, &f.view(), &Settings::default(), &mut memo).unwrap();
    let other = Settings {
        gloo_namespace: "edge-gloo".into(),
        ..Settings::default()
    };
    let warm = render_with(&router, &f.view(), &other, &mut memo).unwrap();
    let fresh = render(&router, &f.view(), &other).unwrap();
    assert_eq!(to_yaml(&warm), to_yaml(&fresh));
    assert!(to_yaml(&warm).contains("edge-gloo"));
}

/// A compressed Proxy is built from pieces known by their virtual hosts; its bytes are those of
/// the text-based reference (the spec's JSON cut where `compressed_spec::zlib` cuts it), so
/// that a Proxy written by an earlier version is not rewritten. With TLS (two listeners) the
/// pieces also span the text between the listeners.
#[test]
fn a_compressed_proxy_has_the_bytes_of_the_text_based_reference() {
    use base64::Engine;
    use std::io::Read;
    let f = Fixture::with_services(200);
    let cut = std::num::NonZeroU64::new(8).unwrap();
    let settings = Settings {
        compress_proxy_above_bytes: 0,
        compress_piece_hosts: cut,
        ..Settings::default()
    };
    let secret = crate::render::tls_secret::TlsSecret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("edge-tls".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        state: crate::render::tls_secret::TlsSecretState::Usable {
            dns_names: vec!["*.example.com".into()],
        },
    };
    let mut tls = router(Destination::Kube);
    tls.spec.tls = Some(crate::api::routing::TlsSpec {
        port: Some(8443),
        certificates: vec![crate::api::routing::CertificateRef {
            secret_name: "edge-tls".into(),
        }],
        redirect_http: true,
    });
    for router in [router(Destination::Kube), tls] {
        let mut view = f.view();
        view.tls_secrets = vec![&secret];
        let mut memo = crate::render::Memo::default();
        for round in 0..2 {
            let r = render_with(&router, &view, &settings, &mut memo).unwrap();
            let encoded = r.gloo().unwrap().proxy.data["spec"]["compressedSpec"]
                .as_str()
                .unwrap()
                .to_owned();
            let zlib = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            let mut text = Vec::new();
            flate2::read::ZlibDecoder::new(zlib.as_slice())
                .read_to_end(&mut text)
                .unwrap();
            let reference = gloo::compressed_spec::zlib(
                &text,
                cut,
                &mut gloo::compressed_spec::Pieces::default(),
            )
            .unwrap();
            assert!(
                zlib == reference,
                "round {round}: other bytes than the reference"
            );
            assert!(
                memo.proxy_pieces.len() > 10,
                "{} pieces",
                memo.proxy_pieces.len()
            );
        }
        // The second round reused every piece.
        assert_eq!(memo.proxy_pieces.compressed(), 0);
    }
}
