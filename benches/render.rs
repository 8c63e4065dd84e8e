//! Render throughput and memory at scale. Prints numbers; asserts nothing about speed.
//!
//! `cargo bench --bench render` (or `make bench`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hostrouter::api::HostRouter;
use hostrouter::render::{ClusterView, Settings, render};
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
                "metadata": {"name": format!("team-{i}"), "labels": {"routed": "yes"}}
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
            services: svcs.iter().collect(),
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
}
