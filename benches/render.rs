//! Render throughput and memory at scale, and how many objects one Service change rewrites on
//! each backend. Prints numbers; asserts nothing about speed.
//!
//! `cargo bench --bench render` (or `make bench`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hostrouter::api::HostRouter;
use hostrouter::render::{ClusterView, Memo, RoutedService, Settings, render, render_with};
use k8s_openapi::api::core::v1::{Namespace, Service};

/// Counts live and peak heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn cluster(namespaces: usize, services_per_ns: usize) -> (Vec<Namespace>, Vec<Service>) {
    let ns: Vec<Namespace> = (0..namespaces)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                // Consents to being published by the router, which lives in `default`.
                "metadata": {"name": format!("team-{i}"), "labels": {"routed": "yes", "hostrouter.io/expose": "true"}}
            }))
            .expect("namespace")
        })
        .collect();
    let svcs = (0..namespaces * services_per_ns)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "metadata": {
                    "name": format!("svc-{}", i % services_per_ns),
                    "namespace": format!("team-{}", i / services_per_ns),
                    "creationTimestamp": "2026-01-01T00:00:00Z"
                },
                "spec": {"ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]}
            }))
            .expect("service")
        })
        .collect();
    (ns, svcs)
}

fn router() -> HostRouter {
    serde_yaml::from_str(
        "apiVersion: hostrouter.io/v1alpha1\nkind: HostRouter\nmetadata: {name: edge, namespace: default, uid: u}\n\
         spec: {proxyName: edge, listener: {port: 8080}, namespaceSelector: {matchLabels: {routed: 'yes'}}}\n",
    )
    .expect("router")
}

fn gateway_api_router() -> HostRouter {
    let mut r = router();
    r.spec.backend = Some(
        serde_json::from_value(
            serde_json::json!({"type": "GatewayAPI", "gatewayAPI": {"gatewayClassName": "eg"}}),
        )
        .expect("backend"),
    );
    r
}

/// Every rendered object by `kind namespace/name`, with its applied hash: what the operator
/// compares with the cache before writing.
fn stamps(router: &HostRouter, view: &ClusterView<'_>) -> BTreeMap<String, (String, usize)> {
    let out = render(router, view, &Settings::default()).expect("render");
    out.to_values()
        .expect("serialise")
        .into_iter()
        .map(|v| {
            let key = format!(
                "{} {}/{}",
                v["kind"].as_str().unwrap_or_default(),
                v["metadata"]["namespace"].as_str().unwrap_or_default(),
                v["metadata"]["name"].as_str().unwrap_or_default()
            );
            let hash = v["metadata"]["annotations"]["hostrouter.io/applied-hash"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let bytes = serde_json::to_vec(&v).map(|b| b.len()).unwrap_or_default();
            (key, (hash, bytes))
        })
        .collect()
}

fn view<'a>(ns: &'a [Namespace], svcs: &'a [Service]) -> ClusterView<'a> {
    ClusterView {
        namespaces: ns.iter().collect(),
        services: RoutedService::all(svcs),
        tls_secrets: Vec::new(),
    }
}

/// Objects created, changed or deleted between two renders, and the bytes written.
fn writes(
    before: &BTreeMap<String, (String, usize)>,
    after: &BTreeMap<String, (String, usize)>,
) -> (usize, usize) {
    let mut count = 0;
    let mut bytes = 0;
    for (key, (hash, size)) in after {
        if before.get(key).map(|(h, _)| h) != Some(hash) {
            count += 1;
            bytes += size;
        }
    }
    count += before.keys().filter(|k| !after.contains_key(*k)).count();
    (count, bytes)
}

/// One Service (two ports) added to a cluster of `services`: objects the operator writes on
/// each backend (only those whose rendered content changed), the bytes it sends, and the time
/// to render: from scratch, and with the memo of the render before the change (as the operator
/// does; the output is the same).
fn writes_per_service_change() {
    println!();
    println!(
        "{:>10} {:>10} {:>8} {:>12} {:>10} {:>12} {:>12} {:>12}",
        "services", "backend", "objects", "writes", "bytes", "render", "with memo", "memo heap"
    );
    for (namespaces, per_ns) in [(10, 100), (100, 100), (500, 100)] {
        let (ns, mut svcs) = cluster(namespaces, per_ns);
        let extra: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "added", "namespace": "team-0", "creationTimestamp": "2026-02-01T00:00:00Z"},
            "spec": {"ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]}
        }))
        .expect("service");
        let services = svcs.len();
        for (name, router) in [("Gloo", router()), ("GatewayAPI", gateway_api_router())] {
            if name == "GatewayAPI" && services > 10_000 {
                continue;
            }
            let settings = Settings::default();
            let before = stamps(&router, &view(&ns, &svcs));
            let (mut cold, mut warm) = (Vec::new(), Vec::new());
            let mut memo_heap = 0;
            for _ in 0..5 {
                // The watch's records: one per Service, kept as Services change.
                let records = view(&ns, &svcs);
                let base = LIVE.load(Ordering::Relaxed);
                let mut memo = Memo::default();
                render_with(&router, &records, &settings, &mut memo).expect("render");
                // What the memo keeps between renders (the records are the watch's).
                memo_heap = LIVE.load(Ordering::Relaxed).saturating_sub(base);
                let mut added = records.clone();
                for record in RoutedService::all([&extra]).iter() {
                    added.services.insert(record.clone());
                }
                let start = Instant::now();
                render(&router, &added, &settings).expect("render");
                cold.push(start.elapsed());
                let start = Instant::now();
                render_with(&router, &added, &settings, &mut memo).expect("render");
                warm.push(start.elapsed());
            }
            let (cold, warm) = (median(cold), median(warm));
            svcs.push(extra.clone());
            let after = stamps(&router, &view(&ns, &svcs));
            svcs.pop();
            let (count, bytes) = writes(&before, &after);
            println!(
                "{:>10} {:>10} {:>8} {:>12} {:>10} {:>12.2?} {:>12.2?} {:>8.1} MiB",
                services,
                name,
                after.len(),
                count,
                bytes,
                cold,
                warm,
                memo_heap as f64 / (1024.0 * 1024.0)
            );
        }
    }
}

/// The compressed Proxy's piece size (`--compress-piece-hosts`): the bytes of the Proxy and
/// the time to render one Service added with the memo of the render before, for 50,000
/// Services with two ports (100,000 virtual hosts) and 5,000 with two.
fn piece_sizes() {
    println!();
    println!(
        "{:>10} {:>12} {:>12} {:>12}",
        "services", "piece hosts", "proxy bytes", "with memo"
    );
    for (namespaces, per_ns) in [(50, 100), (500, 100)] {
        let (ns, svcs) = cluster(namespaces, per_ns);
        let router = router();
        let extra: Vec<Service> = (0..5)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("added-{i}"), "namespace": format!("team-{}", i * 7 % namespaces), "creationTimestamp": "2026-02-01T00:00:00Z"},
                    "spec": {"ports": [{"name": "http", "port": 8080}]}
                }))
                .expect("service")
            })
            .collect();
        for cut in [512, 256, 128, 64, 32] {
            let settings = Settings {
                compress_piece_hosts: std::num::NonZeroU64::new(cut).expect("not zero"),
                ..Settings::default()
            };
            let mut records = view(&ns, &svcs);
            let mut memo = Memo::default();
            let out = render_with(&router, &records, &settings, &mut memo).expect("render");
            let bytes = serde_json::to_vec(&out.gloo().expect("a Gloo router").proxy)
                .map(|v| v.len())
                .unwrap_or_default();
            let mut warm = Vec::new();
            for svc in &extra {
                for record in RoutedService::all([svc]).iter() {
                    records.services.insert(record.clone());
                }
                let start = Instant::now();
                render_with(&router, &records, &settings, &mut memo).expect("render");
                warm.push(start.elapsed());
            }
            println!(
                "{:>10} {:>12} {:>12} {:>12.2?}",
                svcs.len(),
                cut,
                bytes,
                median(warm)
            );
        }
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let settings = Settings::default();
    let router = router();
    println!(
        "{:>10} {:>8} {:>12} {:>12} {:>14} {:>12}",
        "services", "vhosts", "median", "p90", "peak heap", "proxy bytes"
    );
    for (namespaces, per_ns) in [(10, 10), (100, 50), (200, 100), (500, 100)] {
        let (ns, svcs) = cluster(namespaces, per_ns);
        let view = ClusterView {
            namespaces: ns.iter().collect(),
            services: RoutedService::all(&svcs),
            tls_secrets: Vec::new(),
        };
        let iterations = if svcs.len() > 20_000 { 5 } else { 20 };
        let mut times: Vec<Duration> = Vec::with_capacity(iterations);
        let mut peak = 0;
        let mut vhosts = 0;
        let mut bytes = 0;
        for _ in 0..iterations {
            let base = LIVE.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            let start = Instant::now();
            let out = render(&router, &view, &settings).expect("render");
            times.push(start.elapsed());
            peak = PEAK.load(Ordering::Relaxed) - base;
            vhosts = out.virtual_hosts();
            bytes = serde_json::to_vec(&out.gloo().expect("a Gloo router").proxy)
                .map(|v| v.len())
                .unwrap_or_default();
        }
        times.sort();
        println!(
            "{:>10} {:>8} {:>12.2?} {:>12.2?} {:>11.1} MiB {:>12}",
            svcs.len(),
            vhosts,
            times[times.len() / 2],
            times[times.len() * 9 / 10],
            peak as f64 / (1024.0 * 1024.0),
            bytes
        );
    }
    writes_per_service_change();
    piece_sizes();
}
