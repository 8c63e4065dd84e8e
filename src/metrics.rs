//! Prometheus metrics. Label values are bounded: controller name, result, kind, operation,
//! condition type and status are fixed sets; per-router series exist only while the router does.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::api::HostRouter;

pub const CONTROLLER: &str = "hostrouter";

pub struct Metrics {
    registry: Registry,
    reconcile_total: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_time: HistogramVec,
    writes: IntCounterVec,
    sweeps: IntCounterVec,
    leader: IntGauge,
    queue_depth: IntGauge,
    watch_healthy: IntGaugeVec,
    routers: Arc<OnceLock<Store<HostRouter>>>,
}

/// Result label of `controller_runtime_reconcile_total`.
#[derive(Clone, Copy, Debug)]
pub enum ReconcileResult {
    Success,
    Error,
    Requeue,
}

/// What a write did, for `hostrouter_object_writes_total{operation}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Server-side apply of a generated object.
    Apply,
    Delete,
    /// Server-side apply of a HostRouter's status.
    Status,
    /// Adding or removing the HostRouter's finalizer.
    Finalizer,
    /// Removing what someone else added to a generated object (a JSON patch).
    Revert,
}

impl WriteOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Delete => "delete",
            Self::Status => "status",
            Self::Finalizer => "finalizer",
            Self::Revert => "revert",
        }
    }
}

impl Metrics {
    /// Registers the metrics; fails only on a programming error (a duplicate or bad name).
    /// The per-router gauges appear once [`Metrics::observe_routers`] is called.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let routers = Arc::new(OnceLock::new());
        let reconcile_total = IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_total",
                "Total number of reconciliations per controller",
            ),
            &["controller", "result"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_errors_total",
                "Total number of reconciliation errors per controller",
            ),
            &["controller"],
        )?;
        let reconcile_time = HistogramVec::new(
            HistogramOpts::new(
                "controller_runtime_reconcile_time_seconds",
                "Length of time per reconciliation per controller",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["controller"],
        )?;
        let writes = IntCounterVec::new(
            Opts::new(
                "hostrouter_object_writes_total",
                "Writes to the Kubernetes API by object kind and operation (apply, delete, status, finalizer)",
            ),
            &["kind", "operation"],
        )?;
        let sweeps = IntCounterVec::new(
            Opts::new(
                "hostrouter_orphan_sweeps_total",
                "Sweeps for Proxies whose HostRouter no longer exists, by result (success, error)",
            ),
            &["result"],
        )?;
        let leader = IntGauge::new(
            "hostrouter_leader",
            "1 while this replica reconciles (it holds the leader Lease, or leader election is off); 0 on a standby",
        )?;
        let watch_healthy = IntGaugeVec::new(
            Opts::new(
                "hostrouter_watch_healthy",
                "1 while the watch of a kind delivers events, 0 while it fails and retries (say, the API server is unreachable)",
            ),
            &["kind"],
        )?;
        let queue_depth = IntGauge::new(
            "hostrouter_reconcile_queue_depth",
            "Routers whose reconcile is held back to coalesce changes (see --coalesce-window and --coalesce-delay)",
        )?;
        registry.register(Box::new(watch_healthy.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(reconcile_total.clone()))?;
        registry.register(Box::new(sweeps.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_time.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(RouterCollector::new(routers.clone())?))?;
        // The process' own resource use (process_resident_memory_bytes, process_cpu_seconds_total,
        // open file descriptors...), read from /proc: the prometheus crate has it on Linux only.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // Initialise the result series so that rate() works from the first scrape.
        for result in ["success", "error", "requeue"] {
            reconcile_total.with_label_values(&[CONTROLLER, result]);
        }
        reconcile_errors.with_label_values(&[CONTROLLER]);
        for result in ["success", "error"] {
            sweeps.with_label_values(&[result]);
        }
        // And every write series, so that "no writes" reads as 0, not as a missing series.
        for kind in ["Proxy", "ConfigMap", "Service", "Deployment"] {
            for op in [WriteOp::Apply, WriteOp::Delete] {
                writes.with_label_values(&[kind, op.as_str()]);
            }
        }
        for op in [WriteOp::Status, WriteOp::Finalizer] {
            writes.with_label_values(&["HostRouter", op.as_str()]);
        }
        Ok(Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            writes,
            sweeps,
            leader,
            queue_depth,
            watch_healthy,
            routers,
        })
    }

    /// Publishes the per-router gauges from this cache (once; later calls are ignored).
    pub fn observe_routers(&self, routers: Store<HostRouter>) {
        let _ = self.routers.set(routers);
    }

    /// Whether this replica is the one reconciling.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Routers held back by coalescing.
    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Whether the watch of `kind` works.
    pub fn set_watch_healthy(&self, kind: &str, healthy: bool) {
        self.watch_healthy
            .with_label_values(&[kind])
            .set(i64::from(healthy));
    }

    /// Counts a finished orphan sweep.
    pub fn swept(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.sweeps.with_label_values(&[result]).inc();
    }

    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    pub fn write(&self, kind: &str, op: WriteOp) {
        self.writes.with_label_values(&[kind, op.as_str()]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Measures one reconcile; records its result when finished.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl ReconcileTimer<'_> {
    pub fn finish(self, result: ReconcileResult) {
        let m = self.metrics;
        m.reconcile_time
            .with_label_values(&[CONTROLLER])
            .observe(self.start.elapsed().as_secs_f64());
        let label = match result {
            ReconcileResult::Success => "success",
            ReconcileResult::Error => "error",
            ReconcileResult::Requeue => "requeue",
        };
        m.reconcile_total
            .with_label_values(&[CONTROLLER, label])
            .inc();
        if matches!(result, ReconcileResult::Error) {
            m.reconcile_errors.with_label_values(&[CONTROLLER]).inc();
        }
    }
}

/// Gauges computed at scrape time from the HostRouters' status, so that a deleted router's
/// series disappear with it.
struct RouterCollector {
    routers: Arc<OnceLock<Store<HostRouter>>>,
    descs: Vec<Desc>,
}

const ROUTERS: &str = "hostrouter_routers";
const VIRTUAL_HOSTS: &str = "hostrouter_virtual_hosts";
const DROPPED_HOSTS: &str = "hostrouter_dropped_hosts";

impl RouterCollector {
    fn new(routers: Arc<OnceLock<Store<HostRouter>>>) -> Result<Self, prometheus::Error> {
        let descs = Self::gauges()?
            .iter()
            .flat_map(|g| g.desc().into_iter().cloned())
            .collect();
        Ok(Self { routers, descs })
    }

    fn gauges() -> Result<[IntGaugeVec; 3], prometheus::Error> {
        Ok([
            IntGaugeVec::new(
                Opts::new(ROUTERS, "HostRouters by condition type and status"),
                &["condition", "status"],
            )?,
            IntGaugeVec::new(
                Opts::new(VIRTUAL_HOSTS, "Virtual hosts in a HostRouter's Proxy"),
                &["namespace", "name"],
            )?,
            IntGaugeVec::new(
                Opts::new(
                    DROPPED_HOSTS,
                    "Service ports left out of a HostRouter's Proxy because of a duplicate domain",
                ),
                &["namespace", "name"],
            )?,
        ])
    }
}

impl Collector for RouterCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok([by_condition, hosts, dropped]) = Self::gauges() else {
            return Vec::new();
        };
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        let routers = self.routers.get().map(Store::state).unwrap_or_default();
        for router in routers {
            let ns = router.namespace().unwrap_or_default();
            let name = router.name_any();
            let status = router.status.clone().unwrap_or_default();
            hosts
                .with_label_values(&[&ns, &name])
                .set(i64::from(status.virtual_hosts));
            dropped
                .with_label_values(&[&ns, &name])
                .set(i64::from(status.dropped_hosts));
            for c in &status.conditions {
                *counts
                    .entry((c.type_.clone(), c.status.clone()))
                    .or_default() += 1;
            }
        }
        for ((condition, status), n) in counts {
            by_condition
                .with_label_values(&[&condition, &status])
                .set(n);
        }
        [by_condition, hosts, dropped]
            .iter()
            .flat_map(Collector::collect)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn queue_depth_is_exported_from_the_start_and_follows_set() {
        let m = Metrics::new().unwrap();
        let text = m.render().unwrap();
        assert_eq!(
            sample(&text, "hostrouter_reconcile_queue_depth"),
            Some(0.0),
            "{text}"
        );
        m.set_queue_depth(7);
        let text = m.render().unwrap();
        assert_eq!(
            sample(&text, "hostrouter_reconcile_queue_depth"),
            Some(7.0),
            "{text}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exported_on_linux() {
        let text = Metrics::new().unwrap().render().unwrap();
        let rss = sample(&text, "process_resident_memory_bytes").unwrap_or(0.0);
        assert!(rss > 0.0, "{text}");
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter"),
            "{text}"
        );
    }
}
