//! Helpers of the cluster-scale benchmark (`src/bin/bench-cluster.rs`): what a process costs
//! (CPU seconds and peak RSS from `/proc`), a recorder of watch events on Proxies and
//! HostRouters (with the first time each virtual-host domain was seen in each Proxy, reading
//! Gloo's compressed form too), the operator's `/metrics` counters, percentiles, and the
//! markdown tables the benchmark prints.
//!
//! It measures; it asserts nothing about speed.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use serde_json::Value;
use tokio::sync::watch;

// --- Processes ------------------------------------------------------------------------

/// What a process has cost so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcUsage {
    /// User plus system CPU time (`utime + stime` of `/proc/<pid>/stat`).
    pub cpu_secs: f64,
    /// Peak resident set (`VmHWM` of `/proc/<pid>/status`).
    pub rss_peak_bytes: u64,
    /// Resident set now (`VmRSS`).
    pub rss_bytes: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when it cannot be read).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU time and memory of `pid`.
pub fn proc_usage(pid: u32) -> Result<ProcUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let cpu_secs = parse_cpu_ticks(&stat)
        .with_context(|| format!("parsing /proc/{pid}/stat: {stat}"))? as f64
        / clock_ticks();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(ProcUsage {
        cpu_secs,
        rss_peak_bytes: status_kib(&status, "VmHWM:").unwrap_or(0) * 1024,
        rss_bytes: status_kib(&status, "VmRSS:").unwrap_or(0) * 1024,
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the parenthesised command name start with field 3 (the state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmHWM:   123 kB`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// --- Proxies ----------------------------------------------------------------------------

/// The virtual-host domains of a Gloo Proxy, plain or in Gloo's compressed form
/// (`spec.compressedSpec`: base64 of zlib-compressed JSON).
pub fn proxy_domains(proxy: &DynamicObject) -> Result<Vec<String>> {
    let spec = &proxy.data["spec"];
    if let Some(compressed) = spec.get("compressedSpec").and_then(Value::as_str) {
        let json = decompress(compressed)?;
        return scan_domains(&json);
    }
    let mut out = Vec::new();
    for listener in spec["listeners"].as_array().into_iter().flatten() {
        for vh in listener["httpListener"]["virtualHosts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for d in vh["domains"].as_array().into_iter().flatten() {
                if let Some(d) = d.as_str() {
                    out.push(d.to_owned());
                }
            }
        }
    }
    Ok(out)
}

/// The JSON text of a compressed Proxy spec.
pub fn decompress(encoded: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .context("compressedSpec is not base64")?;
    let mut json = String::new();
    flate2::read::ZlibDecoder::new(bytes.as_slice())
        .read_to_string(&mut json)
        .context("compressedSpec is not zlib-compressed UTF-8")?;
    Ok(json)
}

/// Every `"domains":[...]` array of a Proxy spec's JSON text, without building the whole
/// document (a spec of 50,000 virtual hosts is megabytes of JSON; only the domains matter).
fn scan_domains(json: &str) -> Result<Vec<String>> {
    const KEY: &str = "\"domains\":";
    let mut out = Vec::new();
    let mut rest = json;
    while let Some(i) = rest.find(KEY) {
        let after = rest[i + KEY.len()..].trim_start();
        let end = after
            .find(']')
            .context("a domains array without its closing bracket")?;
        let domains: Vec<String> = serde_json::from_str(&after[..=end])
            .with_context(|| format!("parsing domains {}", &after[..=end]))?;
        out.extend(domains);
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// Whether Gloo (not the operator's "awaiting verdict" entry) says Accepted on `proxy` for
/// the Gloo installation of `gloo_namespace`.
pub fn gloo_accepted(proxy: &DynamicObject, gloo_namespace: &str) -> bool {
    let status = &proxy.data["status"]["statuses"][gloo_namespace];
    match &status["state"] {
        Value::Number(n) => n.as_i64() == Some(1),
        Value::String(s) => s == "Accepted",
        _ => false,
    }
}

// --- Watch recorder ---------------------------------------------------------------------

/// What a watch delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Present in a (re)list: not a write seen as it happened.
    Listed,
    Added,
    Modified,
    Deleted,
}

/// One observed watch event.
#[derive(Clone, Debug)]
pub struct Observed {
    /// When this program received it.
    pub at: Instant,
    /// `Proxy` or `HostRouter`.
    pub kind: &'static str,
    pub name: String,
    pub action: Action,
    /// Size of the object's JSON (as this program serialises what it received).
    pub bytes: usize,
    /// For Proxies: Gloo's verdict on this version is Accepted.
    pub accepted: bool,
}

#[derive(Default)]
struct State {
    events: Vec<Observed>,
    /// Proxy name → domain → when it was first seen in that Proxy.
    first_seen: HashMap<String, HashMap<String, Instant>>,
    /// Proxies received and not yet read for their domains (see [`Recorder::observe`]).
    undecoded: Vec<(Instant, DynamicObject)>,
    relists: u32,
    errors: Vec<String>,
}

/// Records the watch events of Proxies and HostRouters, as they arrive.
pub struct Recorder {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    gloo_namespace: String,
}

impl Recorder {
    /// A recorder reading Gloo verdicts of the installation in `gloo_namespace`.
    pub fn new(gloo_namespace: &str) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
            gloo_namespace: gloo_namespace.to_owned(),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| anyhow::anyhow!("the recorder's lock is poisoned"))
    }

    /// Records an event. A Proxy's domains are read only when someone asks for them
    /// ([`Recorder::decode`]): inflating and scanning megabytes of spec per event, as it
    /// arrives, would take the CPU of the creates being timed (the same burst without the
    /// operator has no Proxy events to read). The time a domain was first seen is the time
    /// its event arrived either way.
    fn observe(&self, at: Instant, kind: &'static str, obj: DynamicObject, action: Action) {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let bytes = serde_json::to_vec(&obj).map(|v| v.len()).unwrap_or(0);
        let is_proxy = kind == "Proxy";
        let accepted = is_proxy && gloo_accepted(&obj, &self.gloo_namespace);
        let Ok(mut st) = self.lock() else {
            return;
        };
        if is_proxy && action != Action::Deleted {
            st.undecoded.push((at, obj));
        }
        st.events.push(Observed {
            at,
            kind,
            name,
            action,
            bytes,
            accepted,
        });
        drop(st);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Reads the domains of the Proxies received since the last call, in the order they
    /// arrived.
    fn decode(st: &mut State) {
        for (at, obj) in std::mem::take(&mut st.undecoded) {
            let name = obj.metadata.name.clone().unwrap_or_default();
            match proxy_domains(&obj) {
                Ok(domains) => {
                    let seen = st.first_seen.entry(name).or_default();
                    for d in domains {
                        seen.entry(d).or_insert(at);
                    }
                }
                Err(e) => st.errors.push(format!("Proxy {name}: {e:#}")),
            }
        }
    }

    /// Starts watching `api` (of `kind`) in the background; events are recorded until the
    /// returned task is aborted. A failed watch is listed and watched again.
    pub fn spawn_watch(
        self: &Arc<Self>,
        kind: &'static str,
        api: Api<DynamicObject>,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.watch_once(kind, &api).await {
                    tracing::warn!("watch of {kind}: {e:#}; listing again");
                    if let Ok(mut st) = me.lock() {
                        st.errors.push(format!("watch of {kind}: {e:#}"));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if let Ok(mut st) = me.lock() {
                    st.relists += 1;
                }
            }
        })
    }

    /// One list, then watches from its resourceVersion until the watch fails or expires.
    async fn watch_once(&self, kind: &'static str, api: &Api<DynamicObject>) -> Result<()> {
        let list = api
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing {kind}"))?;
        let now = Instant::now();
        for obj in &list.items {
            self.observe(now, kind, obj.clone(), Action::Listed);
        }
        let mut version = list
            .metadata
            .resource_version
            .context("a list without resourceVersion")?;
        loop {
            let params = WatchParams::default().timeout(290);
            let stream = api
                .watch(&params, &version)
                .await
                .with_context(|| format!("watching {kind}"))?;
            let mut stream = stream.boxed();
            while let Some(event) = stream.try_next().await? {
                let at = Instant::now();
                let (obj, action) = match event {
                    WatchEvent::Added(o) => (o, Action::Added),
                    WatchEvent::Modified(o) => (o, Action::Modified),
                    WatchEvent::Deleted(o) => (o, Action::Deleted),
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(status) => {
                        bail!("watch error {}: {}", status.code, status.message)
                    }
                };
                if let Some(v) = &obj.metadata.resource_version {
                    version.clone_from(v);
                }
                self.observe(at, kind, obj, action);
            }
        }
    }

    /// Waits until Proxy `proxy` has held every one of `hosts`; returns when the last of them
    /// first appeared in it (as received by this program).
    pub async fn wait_hosts(
        &self,
        proxy: &str,
        hosts: &[String],
        timeout: Duration,
    ) -> Result<Instant> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let missing = {
                let mut st = self.lock()?;
                Self::decode(&mut st);
                let seen = st.first_seen.get(proxy);
                let mut latest: Option<Instant> = None;
                let mut missing = Vec::new();
                for h in hosts {
                    match seen.and_then(|s| s.get(h)) {
                        Some(t) => latest = Some(latest.map_or(*t, |l| l.max(*t))),
                        None => missing.push(h),
                    }
                }
                if missing.is_empty() {
                    return latest.context("no hosts to wait for");
                }
                format!(
                    "{} of {} hosts missing (first: {})",
                    missing.len(),
                    hosts.len(),
                    missing[0]
                )
            };
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                bail!("timed out after {timeout:?} waiting for Proxy {proxy}: {missing}");
            }
        }
    }

    /// Waits for the first event of Proxy `proxy` received at or after `after` that carries
    /// Gloo's Accepted; returns when it was received.
    pub async fn wait_accepted(
        &self,
        proxy: &str,
        after: Instant,
        timeout: Duration,
    ) -> Result<Instant> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let st = self.lock()?;
                if let Some(e) = st
                    .events
                    .iter()
                    .find(|e| e.kind == "Proxy" && e.name == proxy && e.at >= after && e.accepted)
                {
                    return Ok(e.at);
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                bail!("timed out after {timeout:?} waiting for Gloo to accept Proxy {proxy}");
            }
        }
    }

    /// Waits until no event has arrived for `quiet` (counting from now at the earliest).
    pub async fn wait_quiet(&self, quiet: Duration, timeout: Duration) -> Result<()> {
        let began = Instant::now();
        loop {
            let last = self
                .lock()?
                .events
                .last()
                .map_or(began, |e| e.at.max(began));
            let now = Instant::now();
            if now.duration_since(last) >= quiet {
                return Ok(());
            }
            if now.duration_since(began) >= timeout {
                bail!("still seeing writes after {timeout:?} (waiting for {quiet:?} without any)");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Events of `kind` (of one object when `name` is given) with one of `actions`, received
    /// in `[from, to]`: their number and the sum of their sizes.
    pub fn count(
        &self,
        kind: &str,
        name: Option<&str>,
        actions: &[Action],
        from: Instant,
        to: Instant,
    ) -> Result<(u64, u64)> {
        let st = self.lock()?;
        let mut n = 0;
        let mut bytes = 0;
        for e in st.events.iter().filter(|e| {
            e.kind == kind
                && actions.contains(&e.action)
                && name.is_none_or(|n| n == e.name)
                && e.at >= from
                && e.at <= to
        }) {
            n += 1;
            bytes += e.bytes as u64;
        }
        Ok((n, bytes))
    }

    /// How often the watches were listed again (1 per kind at start), and their errors.
    pub fn health(&self) -> Result<(u32, Vec<String>)> {
        let st = self.lock()?;
        Ok((st.relists, st.errors.clone()))
    }

    /// Number of distinct domains seen so far in Proxy `proxy`.
    pub fn domains_seen(&self, proxy: &str) -> Result<usize> {
        let mut st = self.lock()?;
        Self::decode(&mut st);
        Ok(st.first_seen.get(proxy).map_or(0, HashMap::len))
    }
}

// --- The operator's metrics -------------------------------------------------------------

/// The operator's counters that the benchmark reads from `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperatorMetrics {
    /// `hostrouter_object_writes_total` by (kind, operation).
    pub writes: BTreeMap<(String, String), f64>,
    /// `controller_runtime_reconcile_time_seconds` count and sum.
    pub reconciles: f64,
    pub reconcile_secs: f64,
    /// `controller_runtime_reconcile_time_seconds_bucket` by upper bound (cumulative).
    pub reconcile_buckets: Vec<(String, f64)>,
}

impl OperatorMetrics {
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let label = |key: &str| {
                labels.split(',').find_map(|kv| {
                    kv.strip_prefix(&format!("{key}=\""))
                        .map(|v| v.trim_end_matches('"').to_owned())
                })
            };
            match name {
                "hostrouter_object_writes_total" => {
                    let key = (
                        label("kind").unwrap_or_default(),
                        label("operation").unwrap_or_default(),
                    );
                    *out.writes.entry(key).or_default() += value;
                }
                "controller_runtime_reconcile_time_seconds_count" => out.reconciles += value,
                "controller_runtime_reconcile_time_seconds_sum" => out.reconcile_secs += value,
                "controller_runtime_reconcile_time_seconds_bucket" => {
                    out.reconcile_buckets
                        .push((label("le").unwrap_or_default(), value));
                }
                _ => {}
            }
        }
        out
    }

    /// Sum of every write.
    pub fn total_writes(&self) -> f64 {
        self.writes.values().sum()
    }

    /// Writes of one kind (every operation).
    pub fn writes_of(&self, kind: &str) -> f64 {
        self.writes
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, v)| v)
            .sum()
    }

    /// `self - before`, counter by counter.
    pub fn since(&self, before: &Self) -> Self {
        let mut writes = self.writes.clone();
        for (k, v) in &before.writes {
            *writes.entry(k.clone()).or_default() -= v;
        }
        writes.retain(|_, v| *v != 0.0);
        let buckets = self
            .reconcile_buckets
            .iter()
            .map(|(le, v)| {
                let b = before
                    .reconcile_buckets
                    .iter()
                    .find(|(l, _)| l == le)
                    .map_or(0.0, |(_, v)| *v);
                (le.clone(), v - b)
            })
            .collect();
        Self {
            writes,
            reconciles: self.reconciles - before.reconciles,
            reconcile_secs: self.reconcile_secs - before.reconcile_secs,
            reconcile_buckets: buckets,
        }
    }

    /// `kind/operation=n` for each write, e.g. `Proxy/apply=3, HostRouter/status=2`.
    pub fn writes_summary(&self) -> String {
        let parts: Vec<String> = self
            .writes
            .iter()
            .filter(|(_, v)| **v != 0.0)
            .map(|((k, op), v)| format!("{k}/{op}={v}"))
            .collect();
        if parts.is_empty() {
            return "0".into();
        }
        format!("{} ({})", self.total_writes(), parts.join(", "))
    }

    /// The upper bound of the bucket holding quantile `q` of the reconcile durations.
    pub fn reconcile_quantile_bound(&self, q: f64) -> Option<String> {
        let total = self.reconciles;
        if total <= 0.0 {
            return None;
        }
        self.reconcile_buckets
            .iter()
            .find(|(_, v)| *v >= q * total)
            .map(|(le, _)| le.clone())
    }
}

// --- The API server's metrics ----------------------------------------------------------

/// `apiserver_request_duration_seconds` count and sum by `VERB resource[/subresource]`, of
/// the requests that end (watches and other long-running requests left out).
pub fn apiserver_request_time(text: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (is_count, rest) =
            if let Some(r) = line.strip_prefix("apiserver_request_duration_seconds_count{") {
                (true, r)
            } else if let Some(r) = line.strip_prefix("apiserver_request_duration_seconds_sum{") {
                (false, r)
            } else {
                continue;
            };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"'))
                .unwrap_or_default()
        };
        let verb = label("verb");
        if matches!(verb, "WATCH" | "WATCHLIST" | "CONNECT") {
            continue;
        }
        let subresource = label("subresource");
        let key = if subresource.is_empty() {
            format!("{verb} {}", label("resource"))
        } else {
            format!("{verb} {}/{subresource}", label("resource"))
        };
        let slot = out.entry(key).or_default();
        if is_count {
            slot.0 += value;
        } else {
            slot.1 += value;
        }
    }
    out
}

/// The `top` request kinds by time spent between two [`apiserver_request_time`] readings:
/// `PATCH proxies 12× 1.2 s`.
pub fn top_requests(
    before: &BTreeMap<String, (f64, f64)>,
    after: &BTreeMap<String, (f64, f64)>,
    top: usize,
) -> String {
    let mut spent: Vec<(String, f64, f64)> = after
        .iter()
        .map(|(k, (n, s))| {
            let (n0, s0) = before.get(k).copied().unwrap_or_default();
            (k.clone(), n - n0, s - s0)
        })
        .filter(|(_, n, _)| *n > 0.0)
        .collect();
    spent.sort_by(|a, b| b.2.total_cmp(&a.2));
    if spent.is_empty() {
        return "–".into();
    }
    spent
        .iter()
        .take(top)
        .map(|(k, n, s)| format!("{k} {n}× {s:.1} s"))
        .collect::<Vec<_>>()
        .join("; ")
}

// --- Numbers ----------------------------------------------------------------------------

/// The `q` quantile (0–1) of `values` by nearest rank; zero for no values.
pub fn percentile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `1.234 s`, or `12.3 ms` below a second.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// Durations as `336.3 ms, 1.02 s`, in order.
pub fn fmt_durations(ds: &[Duration]) -> String {
    ds.iter()
        .map(|d| fmt_duration(*d))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `b - a` in seconds, negative when `b` came first.
pub fn signed_secs(a: Instant, b: Instant) -> f64 {
    if b >= a {
        b.duration_since(a).as_secs_f64()
    } else {
        -a.duration_since(b).as_secs_f64()
    }
}

/// Bytes as `12.3 MiB`, `456 KiB` or `789 B`.
pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

// --- Reports ----------------------------------------------------------------------------

/// Rows of one size's results, in the order they were measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rows: Vec<(String, String)>,
    /// Phase name, wall seconds, then one CPU-seconds column per process (see
    /// [`Report::cost_columns`]), then reconciles and their mean duration.
    pub costs: Vec<Vec<String>>,
    pub cost_columns: Vec<String>,
    /// Free-form notes (what happened, why something was not measured).
    pub notes: Vec<String>,
}

impl Report {
    /// Sets (or replaces) a row.
    pub fn set(&mut self, label: impl Into<String>, value: impl Into<String>) {
        let label = label.into();
        let value = value.into();
        match self.rows.iter_mut().find(|(l, _)| *l == label) {
            Some(row) => row.1 = value,
            None => self.rows.push((label, value)),
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

/// A markdown table with one column per report, rows in order of first appearance.
pub fn side_by_side(reports: &[(String, Report)]) -> String {
    let mut labels: Vec<&str> = Vec::new();
    for (_, r) in reports {
        for (l, _) in &r.rows {
            if !labels.contains(&l.as_str()) {
                labels.push(l);
            }
        }
    }
    let mut out = String::from("| measurement |");
    for (name, _) in reports {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str("\n|---|");
    for _ in reports {
        out.push_str("---|");
    }
    out.push('\n');
    for label in labels {
        out.push_str(&format!("| {label} |"));
        for (_, r) in reports {
            let v = r
                .rows
                .iter()
                .find(|(l, _)| l == label)
                .map_or("–", |(_, v)| v.as_str());
            out.push_str(&format!(" {v} |"));
        }
        out.push('\n');
    }
    out
}

/// A markdown table of one report's per-phase costs.
pub fn costs_table(report: &Report) -> String {
    if report.costs.is_empty() {
        return String::new();
    }
    let mut out = format!("| {} |\n|", report.cost_columns.join(" | "));
    for _ in &report.cost_columns {
        out.push_str("---|");
    }
    out.push('\n');
    for row in &report.costs {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_cpu_ticks_after_odd_command_names() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 500 300 0 0 20 0 12 0 987654 1 2";
        assert_eq!(parse_cpu_ticks(stat), Some(800));
        assert_eq!(
            status_kib("Name:\tx\nVmHWM:\t  2048 kB\n", "VmHWM:"),
            Some(2048)
        );
    }

    #[test]
    fn own_usage_is_readable() {
        let u = proc_usage(std::process::id()).unwrap();
        assert!(u.rss_peak_bytes > 0 && u.rss_peak_bytes >= u.rss_bytes);
    }

    #[test]
    fn domains_of_plain_and_compressed_proxies() {
        let spec = serde_json::json!({"listeners": [{"httpListener": {"virtualHosts": [
            {"name": "a", "domains": ["a-s-80"], "routes": []},
            {"name": "b", "domains": ["b-s-80", "b-t-81"], "routes": [{"matchers": [{"prefix": "/"}]}]},
        ]}}]});
        let mut plain = DynamicObject::new("p", &crate::gloo::proxy_resource());
        plain.data = serde_json::json!({"spec": spec});
        let want = vec!["a-s-80", "b-s-80", "b-t-81"];
        assert_eq!(proxy_domains(&plain).unwrap(), want);

        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(serde_json::to_string(&spec).unwrap().as_bytes())
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(enc.finish().unwrap());
        let mut compressed = plain.clone();
        compressed.data = serde_json::json!({"spec": {"compressedSpec": b64}});
        assert_eq!(proxy_domains(&compressed).unwrap(), want);
    }

    #[test]
    fn gloo_verdicts_are_read_by_number_or_name() {
        let mut p = DynamicObject::new("p", &crate::gloo::proxy_resource());
        p.data = serde_json::json!({"status": {"statuses": {"g": {"state": 1}}}});
        assert!(gloo_accepted(&p, "g"));
        assert!(!gloo_accepted(&p, "other"));
        p.data = serde_json::json!({"status": {"statuses": {"g": {"state": "Pending"}}}});
        assert!(!gloo_accepted(&p, "g"));
    }

    #[test]
    fn metrics_are_summed_and_subtracted() {
        let a = OperatorMetrics::parse(
            "# HELP x\nhostrouter_object_writes_total{kind=\"Proxy\",operation=\"apply\"} 3\n\
             hostrouter_object_writes_total{kind=\"HostRouter\",operation=\"status\"} 1\n\
             controller_runtime_reconcile_time_seconds_bucket{controller=\"hostrouter\",le=\"0.1\"} 1\n\
             controller_runtime_reconcile_time_seconds_bucket{controller=\"hostrouter\",le=\"1\"} 4\n\
             controller_runtime_reconcile_time_seconds_sum{controller=\"hostrouter\"} 2.5\n\
             controller_runtime_reconcile_time_seconds_count{controller=\"hostrouter\"} 4\n",
        );
        assert_eq!(a.total_writes(), 4.0);
        assert_eq!(a.writes_of("Proxy"), 3.0);
        assert_eq!((a.reconciles, a.reconcile_secs), (4.0, 2.5));
        assert_eq!(a.reconcile_quantile_bound(0.5).as_deref(), Some("1"));
        let d = a.since(&OperatorMetrics::parse(
            "hostrouter_object_writes_total{kind=\"Proxy\",operation=\"apply\"} 1\n",
        ));
        assert_eq!(d.writes_summary(), "3 (HostRouter/status=1, Proxy/apply=2)");
    }

    #[test]
    fn apiserver_request_time_by_verb_and_resource() {
        let text = "apiserver_request_duration_seconds_sum{component=\"apiserver\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 2.5\n\
                    apiserver_request_duration_seconds_count{component=\"apiserver\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 10\n\
                    apiserver_request_duration_seconds_sum{resource=\"hostrouters\",subresource=\"status\",verb=\"APPLY\"} 1\n\
                    apiserver_request_duration_seconds_count{resource=\"hostrouters\",subresource=\"status\",verb=\"APPLY\"} 4\n\
                    apiserver_request_duration_seconds_sum{resource=\"services\",subresource=\"\",verb=\"WATCH\"} 99\n";
        let after = apiserver_request_time(text);
        assert_eq!(after.get("POST services"), Some(&(10.0, 2.5)));
        assert_eq!(after.get("APPLY hostrouters/status"), Some(&(4.0, 1.0)));
        assert!(!after.contains_key("WATCH services"));
        assert_eq!(
            top_requests(&BTreeMap::new(), &after, 1),
            "POST services 10× 2.5 s"
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn tables_line_up_rows_by_label() {
        let mut a = Report::default();
        a.set("x", "1");
        a.set("y", "2");
        let mut b = Report::default();
        b.set("y", "3");
        let t = side_by_side(&[("A".into(), a), ("B".into(), b)]);
        assert_eq!(
            t,
            "| measurement | A | B |\n|---|---|---|\n| x | 1 | – |\n| y | 2 | 3 |\n"
        );
    }
}
