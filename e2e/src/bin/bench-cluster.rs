//! `bench-cluster`: how the operator (its release build) does at cluster scale, against the real
//! local control plane of the e2e suite (etcd, kube-apiserver, kube-controller-manager).
//!
//! For each size (`<services>x<namespaces>`, default `10000x1000,50000x1000`), on a fresh
//! control plane: the floor (a small PATCH's round trip), one Service created → the Gloo Proxy
//! holds its virtual host (observed by a watch), bursts of Services with one and with several
//! HostRouters (Proxy and HostRouter writes until converged, time to converge, create time
//! against a cluster without operator), writes while idle and after a restart, the operator's
//! peak RSS and CPU, the Proxy's size, and Gloo and Envoy picking up the last host. It prints
//! a table per size and writes `e2e/bench/cluster-results.md`. It measures; it asserts nothing.
//!
//! Run it through `make bench-cluster` (which builds the release operator and exports the
//! toolchain); `bench-cluster --help` lists the knobs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use hostrouter_e2e::backends::{Backend, apply_endpoints};
use hostrouter_e2e::bench::{
    self, Action, OperatorMetrics, Recorder, Report, fmt_bytes, fmt_duration, fmt_durations,
    percentile, proc_usage, signed_secs,
};
use hostrouter_e2e::envoy::envoy_command;
use hostrouter_e2e::gloo::{GlooConfig, proxy_resource};
use hostrouter_e2e::loopback::{LoopbackAlias, unique_backend_ip};
use hostrouter_e2e::net::{LOOPBACK, free_port, free_ports};
use hostrouter_e2e::process::{Process, ProcessBuilder};
use hostrouter_e2e::resources::{proxies, routers};
use hostrouter_e2e::toolchain::{project_crds, tool, vars, workspace_root};
use hostrouter_e2e::{ControlPlane, ControlPlaneOptions, http};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const USAGE: &str = "usage: bench-cluster [options]

  --sizes LIST            sizes to run, <services>x<namespaces>, comma-separated
                          [env BENCH_SIZES; default 10000x1000,50000x1000]
  --idle-secs N           idle period counted for writes [env BENCH_IDLE_SECS; default 300]
  --samples N             one-Service samples, and floor PATCHes [env BENCH_SAMPLES; default 50]
  --sample-gap-ms N       pause before each one-Service sample, so that each is a lone change
                          and not coalesced with the one before (the operator's default
                          --coalesce-window is 1s) [env BENCH_SAMPLE_GAP_MS; default 1500]
  --coalesce-delay-ms N   the operator's --coalesce-delay, in ms: how long a lone change is held
                          to see whether others follow; subtracted from the one-Service time
                          where that is compared with the floor [env BENCH_COALESCE_DELAY_MS;
                          default 20, the operator's default]
  --burst N               Services per burst [env BENCH_BURST; default 1000]
  --burst-reps N          bursts whose create time is measured, with and without the
                          operator; the medians are compared (their spread is wide on two
                          cores) [env BENCH_BURST_REPS; default 5]
  --concurrency N         creates in flight [env BENCH_CONCURRENCY; default 64]
  --routers N             HostRouters of the second burst [env BENCH_ROUTERS; default 5]
  --restart-settle-secs N after a restart, how long writes are counted [default 60]
  --size-timeout-mins N   give up a size after this long, keeping what was measured
                          [env BENCH_SIZE_TIMEOUT_MINS; default 40]
  --cluster-ip            the benchmark's Services get ClusterIPs [env BENCH_CLUSTER_IP=1];
                          default: headless (clusterIP: None), see the results file for why
  --no-gloo               leave out Gloo and Envoy (part 6)
  --results PATH          results file [env BENCH_RESULTS; default e2e/bench/cluster-results.md]

The operator logs at env BENCH_OPERATOR_LOG (default info; e.g. info,hostrouter=debug).

The binaries come from the e2e suite's environment (`make -s env`); HOSTROUTER_BIN should be
the release build (`make bench-cluster` sees to it).";

/// Gloo's namespace, where the operator writes the Proxies.
const GLOO_NAMESPACE: &str = "gloo-system";
/// Where the HostRouters (and their Envoy Deployments, Services, ConfigMaps) live.
const EDGE_NAMESPACE: &str = "bench-edge";
/// The label the routers' namespaceSelector matches.
const ROUTED_LABEL: &str = "bench.hostrouter.io/routed";
/// The label on the routers that the operator's `--router-selector` matches.
const ROUTER_LABEL: &str = "bench.hostrouter.io/bench";
/// A namespace's consent to be published by a router elsewhere.
const EXPOSE_LABEL: &str = "hostrouter.io/expose";
/// The port every benchmark Service has (named `http`).
const SERVICE_PORT: i32 = 80;
/// How long without a Proxy or HostRouter event counts as settled.
const QUIET: Duration = Duration::from_secs(5);
/// Longest wait for any one convergence.
const CONVERGE_LIMIT: Duration = Duration::from_secs(20 * 60);
/// The comment after which the results file keeps hand-written text across runs.
const KEEP_MARKER: &str = "<!-- Text below this line is written by hand and kept when the benchmark rewrites this file. -->";

fn started() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("[{:>8.1}s] {}", started().elapsed().as_secs_f64(), format!($($arg)*))
    };
}

#[derive(Clone, Copy, Debug)]
struct Size {
    services: usize,
    namespaces: usize,
}

impl Size {
    fn label(&self) -> String {
        format!("{}x{}", self.services, self.namespaces)
    }
}

#[derive(Clone, Debug)]
struct Args {
    sizes: Vec<Size>,
    idle: Duration,
    samples: usize,
    /// Pause before each one-Service sample.
    sample_gap: Duration,
    /// The operator's `--coalesce-delay`.
    coalesce_delay: Duration,
    burst: usize,
    /// Bursts whose create time is measured, per setting (the median is reported).
    burst_reps: usize,
    concurrency: usize,
    routers: usize,
    restart_settle: Duration,
    size_timeout: Duration,
    /// The benchmark's Services get ClusterIPs (else they are headless).
    cluster_ip: bool,
    gloo: bool,
    results: PathBuf,
}

fn parse_sizes(text: &str) -> Result<Vec<Size>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (svc, ns) = s
                .trim()
                .split_once('x')
                .with_context(|| format!("size {s:?} is not <services>x<namespaces>"))?;
            let size = Size {
                services: svc.parse().with_context(|| format!("size {s:?}"))?,
                namespaces: ns.parse().with_context(|| format!("size {s:?}"))?,
            };
            anyhow::ensure!(
                size.namespaces > 0 && size.services >= size.namespaces,
                "size {s:?}: at least one namespace and one Service per namespace"
            );
            Ok(size)
        })
        .collect()
}

fn parse_args(argv: &[String]) -> Result<Option<Args>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let num = |v: &str, what: &str| -> Result<u64> {
        v.parse()
            .with_context(|| format!("{what}: {v:?} is not a number"))
    };
    let mut args = Args {
        sizes: parse_sizes(&env("BENCH_SIZES").unwrap_or("10000x1000,50000x1000".into()))?,
        idle: Duration::from_secs(num(
            &env("BENCH_IDLE_SECS").unwrap_or("300".into()),
            "BENCH_IDLE_SECS",
        )?),
        samples: num(
            &env("BENCH_SAMPLES").unwrap_or("50".into()),
            "BENCH_SAMPLES",
        )? as usize,
        sample_gap: Duration::from_millis(num(
            &env("BENCH_SAMPLE_GAP_MS").unwrap_or("1500".into()),
            "BENCH_SAMPLE_GAP_MS",
        )?),
        coalesce_delay: Duration::from_millis(num(
            &env("BENCH_COALESCE_DELAY_MS").unwrap_or("20".into()),
            "BENCH_COALESCE_DELAY_MS",
        )?),
        burst: num(&env("BENCH_BURST").unwrap_or("1000".into()), "BENCH_BURST")? as usize,
        burst_reps: num(
            &env("BENCH_BURST_REPS").unwrap_or("5".into()),
            "BENCH_BURST_REPS",
        )? as usize,
        concurrency: num(
            &env("BENCH_CONCURRENCY").unwrap_or("64".into()),
            "BENCH_CONCURRENCY",
        )? as usize,
        routers: num(&env("BENCH_ROUTERS").unwrap_or("5".into()), "BENCH_ROUTERS")? as usize,
        restart_settle: Duration::from_secs(60),
        size_timeout: Duration::from_secs(
            60 * num(
                &env("BENCH_SIZE_TIMEOUT_MINS").unwrap_or("40".into()),
                "BENCH_SIZE_TIMEOUT_MINS",
            )?,
        ),
        cluster_ip: env("BENCH_CLUSTER_IP").is_some_and(|v| v == "1" || v == "true"),
        gloo: true,
        results: env("BENCH_RESULTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("e2e/bench/cluster-results.md")),
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value"))
                .cloned()
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--sizes" => args.sizes = parse_sizes(&value()?)?,
            "--idle-secs" => args.idle = Duration::from_secs(num(&value()?, flag)?),
            "--samples" => args.samples = num(&value()?, flag)? as usize,
            "--sample-gap-ms" => args.sample_gap = Duration::from_millis(num(&value()?, flag)?),
            "--coalesce-delay-ms" => {
                args.coalesce_delay = Duration::from_millis(num(&value()?, flag)?)
            }
            "--burst" => args.burst = num(&value()?, flag)? as usize,
            "--burst-reps" => args.burst_reps = num(&value()?, flag)? as usize,
            "--concurrency" => args.concurrency = num(&value()?, flag)? as usize,
            "--routers" => args.routers = num(&value()?, flag)? as usize,
            "--restart-settle-secs" => {
                args.restart_settle = Duration::from_secs(num(&value()?, flag)?)
            }
            "--size-timeout-mins" => {
                args.size_timeout = Duration::from_secs(60 * num(&value()?, flag)?)
            }
            "--cluster-ip" => args.cluster_ip = true,
            "--no-gloo" => args.gloo = false,
            "--results" => args.results = PathBuf::from(value()?),
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    anyhow::ensure!(!args.sizes.is_empty(), "no sizes to run");
    anyhow::ensure!(
        args.samples > 0
            && args.burst > 0
            && args.burst_reps > 0
            && args.concurrency > 0
            && args.routers > 0,
        "--samples, --burst, --burst-reps, --concurrency and --routers must be positive"
    );
    Ok(Some(args))
}

#[tokio::main]
async fn main() -> ExitCode {
    hostrouter_e2e::init_logging();
    started();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("bench-cluster: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-cluster: {err:#}");
            ExitCode::FAILURE
        }
    }
}

type SharedReport = Arc<Mutex<Report>>;

fn with_report(report: &SharedReport, f: impl FnOnce(&mut Report)) {
    match report.lock() {
        Ok(mut r) => f(&mut r),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

fn snapshot_report(report: &SharedReport) -> Report {
    match report.lock() {
        Ok(r) => r.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

async fn run(args: &Args) -> Result<()> {
    let operator_bin = tool(vars::HOSTROUTER_BIN)?;
    if !operator_bin.to_string_lossy().contains("/release/") {
        say!(
            "warning: HOSTROUTER_BIN={} does not look like the release build",
            operator_bin.display()
        );
    }
    let machine = machine_info().await;
    say!("machine: {}", machine.join("; "));
    let run_id = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    );
    let mut done: Vec<(String, Report)> = Vec::new();
    let mut failed = false;
    for size in &args.sizes {
        let label = size.label();
        let report: SharedReport = Arc::default();
        let logs = hostrouter_e2e::toolchain::target_dir()
            .join("bench-cluster")
            .join(format!("{run_id}-{label}"));
        say!("=== size {label}: logs in {}", logs.display());
        with_report(&report, |r| {
            r.note(format!("load average at start: {}", loadavg()));
        });
        let outcome = bench_size(args, *size, &operator_bin, &logs, &report).await;
        with_report(&report, |r| {
            r.note(format!("load average at end: {}", loadavg()));
        });
        if let Err(err) = outcome {
            failed = true;
            say!("size {label} did not finish: {err:#}");
            with_report(&report, |r| {
                r.set("**did not finish**", format!("{err:#}").replace('\n', " "));
                r.note(format!("did not finish: {err:#}"));
            });
        }
        done.push((label.clone(), snapshot_report(&report)));
        let pending: Vec<(String, Report)> = args
            .sizes
            .iter()
            .skip(done.len())
            .map(|s| (s.label(), Report::default()))
            .collect();
        let all: Vec<(String, Report)> = done.iter().cloned().chain(pending).collect();
        println!("\n{}", bench::side_by_side(&all));
        write_results(args, &machine, &all)?;
        say!("results written to {}", args.results.display());
    }
    if failed {
        bail!("a size did not finish (see the results file)");
    }
    Ok(())
}

/// One size on a fresh control plane, stopped at the end whatever happened.
async fn bench_size(
    args: &Args,
    size: Size,
    operator_bin: &Path,
    logs: &Path,
    report: &SharedReport,
) -> Result<()> {
    let began = Instant::now();
    let cluster = ControlPlane::start(ControlPlaneOptions::from_env()?.crds(project_crds()?))
        .await
        .context("starting the control plane")?;
    say!(
        "control plane up in {:.1?} at {}",
        began.elapsed(),
        cluster.server_url()
    );
    let phase: Arc<Mutex<String>> = Arc::new(Mutex::new("setup".into()));
    let result = tokio::time::timeout(
        args.size_timeout,
        measure(args, size, &cluster, operator_bin, logs, report, &phase),
    )
    .await;
    let result = match result {
        Ok(r) => r,
        Err(_) => {
            let at = phase.lock().map(|p| p.clone()).unwrap_or_default();
            Err(anyhow::anyhow!(
                "stopped after {} minutes, during {at}",
                args.size_timeout.as_secs() / 60
            ))
        }
    };
    match cluster.stop(result.is_err()).await {
        Ok(Some(kept)) => say!("control plane logs kept in {}", kept.display()),
        Ok(None) => {}
        Err(e) => say!("stopping the control plane: {e:#}"),
    }
    result
}

/// The operator process and its HTTP address.
struct Operator {
    process: Process,
    address: String,
}

/// CPU seconds of the processes whose costs are tabled, at one moment.
#[derive(Clone, Debug)]
struct Snapshot {
    at: Instant,
    operator_pid: u32,
    /// operator, kube-apiserver, etcd, kube-controller-manager, this program.
    cpu: [f64; 5],
    /// The operator's resident set now and at its peak so far (VmRSS, VmHWM), bytes.
    operator_rss: (u64, u64),
    metrics: OperatorMetrics,
    /// The API server's request time by verb and resource.
    apiserver: std::collections::BTreeMap<String, (f64, f64)>,
}

const COST_COLUMNS: [&str; 13] = [
    "phase",
    "wall s",
    "operator CPU s",
    "operator RSS at end / peak so far",
    "kube-apiserver CPU s",
    "etcd CPU s",
    "kube-controller-manager CPU s",
    "bench (client+watch) CPU s",
    "reconciles",
    "mean reconcile",
    "p50 reconcile ≤",
    "p99 reconcile ≤",
    "kube-apiserver request time, top 3 (count, seconds)",
];

struct Bench<'a> {
    args: &'a Args,
    size: Size,
    client: Client,
    cluster: &'a ControlPlane,
    operator_bin: &'a Path,
    logs: &'a Path,
    report: &'a SharedReport,
    phase: &'a Arc<Mutex<String>>,
    recorder: Arc<Recorder>,
    gloo: GlooConfig,
    operator: Option<Operator>,
    /// Every routed Service host so far.
    hosts: Vec<String>,
    retries: Arc<AtomicU64>,
}

fn app_namespace(i: usize) -> String {
    format!("bench-{i:04}")
}

fn host(namespace: &str, service: &str) -> String {
    format!("{namespace}-{service}-{SERVICE_PORT}")
}

fn router_name(i: usize) -> String {
    if i == 0 {
        "bench-main".into()
    } else {
        format!("bench-r{i}")
    }
}

async fn measure(
    args: &Args,
    size: Size,
    cluster: &ControlPlane,
    operator_bin: &Path,
    logs: &Path,
    report: &SharedReport,
    phase: &Arc<Mutex<String>>,
) -> Result<()> {
    std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
    let client = cluster.client();
    let recorder = Recorder::new(GLOO_NAMESPACE);
    let mut b = Bench {
        args,
        size,
        client: client.clone(),
        cluster,
        operator_bin,
        logs,
        report,
        phase,
        recorder: recorder.clone(),
        gloo: GlooConfig::new(GLOO_NAMESPACE)?,
        operator: None,
        hosts: Vec::new(),
        retries: Arc::default(),
    };
    let watches = [
        recorder.spawn_watch("Proxy", proxies(&client, GLOO_NAMESPACE)),
        recorder.spawn_watch("HostRouter", routers(&client, EDGE_NAMESPACE)),
    ];
    let result = b.all_parts().await;
    for w in watches {
        w.abort();
    }
    if let Some(mut op) = b.operator.take() {
        let _ = op.process.stop(Duration::from_secs(10)).await;
    }
    let (relists, errors) = recorder.health()?;
    with_report(report, |r| {
        r.note(format!(
            "watch errors of the benchmark's Proxy and HostRouter watches (each followed by a \
             re-list; 0 means no event was missed): {relists}{}",
            errors
                .first()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default()
        ))
    });
    result
}

impl Bench<'_> {
    fn set(&self, label: impl Into<String>, value: impl Into<String>) {
        with_report(self.report, |r| r.set(label, value));
    }

    fn note(&self, note: impl Into<String>) {
        let note = note.into();
        say!("note: {note}");
        with_report(self.report, |r| r.note(note));
    }

    fn enter(&self, phase: &str) {
        say!("-- {phase}");
        if let Ok(mut p) = self.phase.lock() {
            *p = phase.to_owned();
        }
    }

    async fn all_parts(&mut self) -> Result<()> {
        let size = self.size;
        self.set(
            "Services / namespaces routed at operator start",
            format!("{} / {}", size.services, size.namespaces),
        );
        self.setup().await?;

        // Without an operator: populate, the floor, a burst.
        self.enter("populate");
        let before = self.snapshot().await;
        let population: Vec<(String, String)> = (0..size.services)
            .map(|i| (app_namespace(i % size.namespaces), format!("svc-{i:06}")))
            .collect();
        let stats = self.create_services(&population).await?;
        self.hosts
            .extend(population.iter().map(|(ns, name)| host(ns, name)));
        self.cost("populate (no operator)", &before).await;
        self.set(
            "populate: create time, no operator",
            format!(
                "{} ({:.0}/s)",
                fmt_duration(stats),
                size.services as f64 / stats.as_secs_f64()
            ),
        );

        self.floor_phase("no operator").await?;

        self.enter("burst without operator");
        let before = self.snapshot().await;
        let mut times = Vec::with_capacity(self.args.burst_reps);
        for rep in 0..self.args.burst_reps {
            let burst = self.burst_names(&format!("nb{rep}"));
            times.push(self.create_services(&burst).await?);
            self.delete_services(&burst).await?;
        }
        self.cost("burst, no operator", &before).await;
        let no_operator = percentile(&times, 0.5);
        self.set(
            format!(
                "burst of {}: create time, no operator (median of {})",
                self.args.burst, self.args.burst_reps
            ),
            format!(
                "{} of [{}]",
                fmt_duration(no_operator),
                fmt_durations(&times)
            ),
        );
        if !self.args.cluster_ip {
            // What the same burst costs when each Service gets a ClusterIP.
            let before = self.snapshot().await;
            let burst = self.burst_names("nc");
            let t = Instant::now();
            stream::iter(&burst)
                .map(|(ns, name)| {
                    create_service(
                        &self.client,
                        ns,
                        name,
                        ServiceKind::ClusterIp,
                        &self.retries,
                    )
                })
                .buffer_unordered(self.args.concurrency)
                .try_collect::<Vec<()>>()
                .await?;
            let took = t.elapsed();
            say!("created {} ClusterIP Services in {took:.1?}", burst.len());
            self.cost("burst of ClusterIP Services, no operator", &before)
                .await;
            self.set(
                format!(
                    "burst of {} ClusterIP Services: create time, no operator (few IPs allocated yet)",
                    self.args.burst
                ),
                fmt_duration(took),
            );
            self.delete_services(&burst).await?;
        }

        // The operator and one router.
        self.enter("initial sync");
        let before = self.snapshot().await;
        let t = Instant::now();
        self.start_operator().await?;
        let ready = t.elapsed();
        let before_router = Instant::now();
        let m0 = self.metrics().await?;
        self.create_router(0).await?;
        let synced = self
            .recorder
            .wait_hosts(&router_name(0), &self.hosts, CONVERGE_LIMIT)
            .await
            .context("waiting for the first Proxy to hold every Service")?;
        let m1 = self.metrics().await?;
        let (proxy_writes, _) = self.recorder.count(
            "Proxy",
            None,
            &[Action::Added, Action::Modified],
            before_router,
            synced,
        )?;
        self.set(
            "initial sync: operator start → ready; router created → Proxy holds all hosts",
            format!(
                "{} ; {} ({} Proxy ADDED+MODIFIED, operator writes {})",
                fmt_duration(ready),
                fmt_duration(synced.duration_since(before_router)),
                proxy_writes,
                m1.since(&m0).writes_summary()
            ),
        );
        self.quiet().await;
        self.cost("operator start + initial sync (1 router)", &before)
            .await;

        let floor = self.floor_phase("operator idle").await?;

        self.enter("one Service");
        let before = self.snapshot().await;
        let (one, one99) = self.one_service(floor).await?;
        self.quiet().await;
        self.cost("one Service × samples (1 router)", &before).await;

        self.enter("floor of a Proxy write");
        let (proxy_floor, proxy_floor99) = self.proxy_floor().await?;
        self.set(
            "floor of a Proxy write: server-side apply of a copy of the Proxy, p50 / p99",
            p50_p99(proxy_floor, proxy_floor99),
        );
        let delay = self.args.coalesce_delay;
        self.set(
            "… one Service → Proxy less the operator's delay (--coalesce-delay), p50 / p99 as multiples of it",
            multiples(
                (one.saturating_sub(delay), one99.saturating_sub(delay)),
                proxy_floor,
            ),
        );

        self.enter("burst, 1 router");
        let before = self.snapshot().await;
        self.burst_with_operator("b1", 1, no_operator).await?;
        self.cost("burst (1 router)", &before).await;

        self.enter("more routers");
        let before = self.snapshot().await;
        let t = Instant::now();
        for i in 1..self.args.routers {
            self.create_router(i).await?;
        }
        let mut last = t;
        for i in 1..self.args.routers {
            last = last.max(
                self.recorder
                    .wait_hosts(&router_name(i), &self.hosts, CONVERGE_LIMIT)
                    .await?,
            );
        }
        let (proxy_writes, _) =
            self.recorder
                .count("Proxy", None, &[Action::Added, Action::Modified], t, last)?;
        self.set(
            format!(
                "{} more routers created → their Proxies hold all hosts",
                self.args.routers - 1
            ),
            format!(
                "{} ({proxy_writes} Proxy ADDED+MODIFIED)",
                fmt_duration(last.duration_since(t))
            ),
        );
        self.quiet().await;
        self.cost(&format!("{} routers added", self.args.routers - 1), &before)
            .await;

        self.enter(&format!("burst, {} routers", self.args.routers));
        let before = self.snapshot().await;
        self.burst_with_operator("b5", self.args.routers, no_operator)
            .await?;
        self.cost(&format!("burst ({} routers)", self.args.routers), &before)
            .await;

        self.enter("idle");
        let before = self.snapshot().await;
        self.idle().await?;
        self.cost("idle", &before).await;

        self.proxy_sizes().await?;
        let usage = self.operator_usage()?;
        self.set(
            "operator peak RSS (VmHWM) / CPU seconds, start → end of idle",
            format!(
                "{} / {:.1} s",
                fmt_bytes(usage.rss_peak_bytes),
                usage.cpu_secs
            ),
        );

        self.enter("restart");
        let before = self.snapshot().await;
        self.restart().await?;
        self.cost("restart + settle", &before).await;

        if self.args.gloo {
            self.enter("Gloo and Envoy");
            let before = self.snapshot().await;
            self.gloo_and_envoy().await?;
            self.cost("Gloo + Envoy (4 routers deleted first)", &before)
                .await;
        }
        Ok(())
    }

    async fn setup(&mut self) -> Result<()> {
        self.enter("setup");
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for name in [GLOO_NAMESPACE, EDGE_NAMESPACE] {
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .with_context(|| format!("creating namespace {name}"))?;
        }
        let t = Instant::now();
        stream::iter(0..self.size.namespaces)
            .map(|i| {
                let namespaces = namespaces.clone();
                async move {
                    let name = app_namespace(i);
                    let ns = Namespace {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            labels: Some(
                                [
                                    (ROUTED_LABEL.to_owned(), "true".to_owned()),
                                    (EXPOSE_LABEL.to_owned(), "true".to_owned()),
                                ]
                                .into(),
                            ),
                            ..ObjectMeta::default()
                        },
                        ..Namespace::default()
                    };
                    namespaces
                        .create(&PostParams::default(), &ns)
                        .await
                        .with_context(|| format!("creating namespace {name}"))
                }
            })
            .buffer_unordered(self.args.concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        say!(
            "{} namespaces created in {:.1?}",
            self.size.namespaces,
            t.elapsed()
        );
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("bench-floor".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        Api::<ConfigMap>::namespaced(self.client.clone(), EDGE_NAMESPACE)
            .create(&PostParams::default(), &cm)
            .await
            .context("creating ConfigMap bench-floor")?;
        Ok(())
    }

    /// `--burst` Service names `<prefix>-NNNNNN`, spread over the namespaces.
    fn burst_names(&self, prefix: &str) -> Vec<(String, String)> {
        (0..self.args.burst)
            .map(|i| {
                (
                    app_namespace((i * 7) % self.size.namespaces),
                    format!("{prefix}-{i:06}"),
                )
            })
            .collect()
    }

    /// Creates the Services, `--concurrency` at a time; returns the time from the first
    /// request to the last answer.
    async fn create_services(&self, services: &[(String, String)]) -> Result<Duration> {
        let t = Instant::now();
        stream::iter(services)
            .map(|(ns, name)| self.create_service(ns, name))
            .buffer_unordered(self.args.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        let took = t.elapsed();
        say!(
            "created {} Services in {:.1?} ({} retries so far)",
            services.len(),
            took,
            self.retries.load(Ordering::Relaxed)
        );
        Ok(took)
    }

    async fn create_service(&self, ns: &str, name: &str) -> Result<()> {
        let kind = if self.args.cluster_ip {
            ServiceKind::ClusterIp
        } else {
            ServiceKind::Headless
        };
        create_service(&self.client, ns, name, kind, &self.retries).await
    }

    async fn delete_services(&self, services: &[(String, String)]) -> Result<()> {
        let t = Instant::now();
        stream::iter(services)
            .map(|(ns, name)| async move {
                Api::<Service>::namespaced(self.client.clone(), ns)
                    .delete(name, &DeleteParams::default())
                    .await
                    .with_context(|| format!("deleting Service {ns}/{name}"))
                    .map(|_| ())
            })
            .buffer_unordered(self.args.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        say!("deleted {} Services in {:.1?}", services.len(), t.elapsed());
        Ok(())
    }

    /// The floor measured and reported, `when` saying whether the operator runs: its p50.
    async fn floor_phase(&self, when: &str) -> Result<Duration> {
        self.enter(&format!("floor, {when}"));
        let (p50, p99) = self.floor().await?;
        self.set(
            format!("floor: small PATCH round trip p50 / p99, {when}"),
            p50_p99(p50, p99),
        );
        Ok(p50)
    }

    /// `--samples` small PATCHes (a label on a ConfigMap), one at a time: p50 and p99.
    async fn floor(&self) -> Result<(Duration, Duration)> {
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), EDGE_NAMESPACE);
        let n = self.args.samples.max(50);
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let patch = json!({"metadata": {"labels": {"bench-seq": i.to_string()}}});
            let t = Instant::now();
            api.patch(
                "bench-floor",
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .context("patching ConfigMap bench-floor")?;
            samples.push(t.elapsed());
        }
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        say!("floor over {n} PATCHes: p50 {p50:.1?}, p99 {p99:.1?}");
        Ok((p50, p99))
    }

    async fn start_operator(&mut self) -> Result<()> {
        let address = match &self.operator {
            Some(op) => op.address.clone(),
            None => format!("{LOOPBACK}:{}", free_port()?),
        };
        let process = ProcessBuilder::new("hostrouter", self.operator_bin, self.logs)
            .arg("run")
            .args(["--http-address", &address])
            .args(self.gloo.operator_args())
            .args(["--router-selector", &format!("{ROUTER_LABEL}=true")])
            .args([
                "--coalesce-delay",
                &format!("{}ms", self.args.coalesce_delay.as_millis()),
            ])
            .env("KUBECONFIG", self.cluster.kubeconfig_path())
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .env(
                "HOSTROUTER_LOG",
                std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .env("NO_COLOR", "1")
            .spawn()?;
        say!("operator started: {}", process.command_line());
        let op = Operator { process, address };
        let t = Instant::now();
        loop {
            op.process.ensure_running()?;
            if let Ok(r) = http::get(&op.address, "operator", "/readyz").await
                && r.status == 200
            {
                break;
            }
            if t.elapsed() > Duration::from_secs(300) {
                bail!("the operator is not ready after 5 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.operator = Some(op);
        Ok(())
    }

    fn operator(&self) -> Result<&Operator> {
        self.operator
            .as_ref()
            .context("the operator is not running")
    }

    async fn metrics(&self) -> Result<OperatorMetrics> {
        let op = self.operator()?;
        op.process.ensure_running()?;
        let r = http::get(&op.address, "operator", "/metrics").await?;
        anyhow::ensure!(r.status == 200, "/metrics answered {}", r.status);
        Ok(OperatorMetrics::parse(&r.body))
    }

    fn operator_usage(&self) -> Result<bench::ProcUsage> {
        proc_usage(self.operator()?.process.pid())
    }

    async fn snapshot(&self) -> Snapshot {
        let pids = self.cluster.pids().await;
        let cpu_of = |name: &str| {
            pids.iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, pid)| proc_usage(*pid).ok())
                .map_or(0.0, |u| u.cpu_secs)
        };
        let operator_pid = self.operator.as_ref().map_or(0, |o| o.process.pid());
        let operator = (operator_pid != 0)
            .then(|| proc_usage(operator_pid).ok())
            .flatten();
        let operator_cpu = operator.as_ref().map_or(0.0, |u| u.cpu_secs);
        let operator_rss = operator
            .as_ref()
            .map_or((0, 0), |u| (u.rss_bytes, u.rss_peak_bytes));
        let metrics = if self.operator.is_some() {
            self.metrics().await.unwrap_or_default()
        } else {
            OperatorMetrics::default()
        };
        let apiserver = match ::http::Request::get("/metrics").body(Vec::new()) {
            Ok(request) => self
                .client
                .request_text(request)
                .await
                .map(|text| bench::apiserver_request_time(&text))
                .unwrap_or_default(),
            Err(_) => Default::default(),
        };
        Snapshot {
            apiserver,
            at: Instant::now(),
            operator_pid,
            operator_rss,
            cpu: [
                operator_cpu,
                cpu_of("kube-apiserver"),
                cpu_of("etcd"),
                cpu_of("kube-controller-manager"),
                proc_usage(std::process::id()).map_or(0.0, |u| u.cpu_secs),
            ],
            metrics,
        }
    }

    /// Adds a row to the cost table: what each process spent since `before`.
    async fn cost(&self, phase: &str, before: &Snapshot) {
        let after = self.snapshot().await;
        let same_operator = before.operator_pid == after.operator_pid;
        let mut row = vec![
            phase.to_owned(),
            format!("{:.1}", after.at.duration_since(before.at).as_secs_f64()),
        ];
        for i in 0..5 {
            let spent = if i == 0 && !same_operator {
                // A new operator process: all it spent is in this phase.
                after.cpu[0]
            } else {
                after.cpu[i] - before.cpu[i]
            };
            row.push(format!("{spent:.1}"));
            if i == 0 {
                row.push(if after.operator_pid == 0 {
                    "–".into()
                } else {
                    let (now, peak) = after.operator_rss;
                    format!("{} / {}", fmt_bytes(now), fmt_bytes(peak))
                });
            }
        }
        let m = if same_operator {
            after.metrics.since(&before.metrics)
        } else {
            after.metrics.clone()
        };
        row.push(format!("{}", m.reconciles));
        row.push(if m.reconciles > 0.0 {
            fmt_duration(Duration::from_secs_f64(m.reconcile_secs / m.reconciles))
        } else {
            "–".into()
        });
        row.push(
            m.reconcile_quantile_bound(0.5)
                .map_or("–".into(), |b| format!("{b} s")),
        );
        row.push(
            m.reconcile_quantile_bound(0.99)
                .map_or("–".into(), |b| format!("{b} s")),
        );
        row.push(bench::top_requests(&before.apiserver, &after.apiserver, 3));
        say!("cost of {}: {}", phase, row[1..].join(" | "));
        with_report(self.report, |r| {
            r.cost_columns = COST_COLUMNS.iter().map(|s| s.to_string()).collect();
            r.costs.push(row);
        });
    }

    /// Waits until no Proxy or HostRouter event arrived for [`QUIET`]; notes it if that
    /// never happens.
    async fn quiet(&self) {
        if let Err(e) = self.recorder.wait_quiet(QUIET, CONVERGE_LIMIT).await {
            self.note(format!(
                "during {}: {e:#}",
                self.phase.lock().map(|p| p.clone()).unwrap_or_default()
            ));
        }
    }

    async fn create_router(&self, i: usize) -> Result<()> {
        let name = router_name(i);
        let ports = free_ports(2)?;
        let manifest = json!({
            "apiVersion": "hostrouter.io/v1alpha1",
            "kind": "HostRouter",
            "metadata": {"name": name, "namespace": EDGE_NAMESPACE, "labels": {ROUTER_LABEL: "true"}},
            "spec": {
                "proxyName": name,
                "listener": {"port": ports[0], "bindAddress": "127.0.0.1"},
                "namespaceSelector": {"matchLabels": {ROUTED_LABEL: "true"}},
                "envoy": {"adminPort": ports[1]},
                "service": {"type": "ClusterIP"},
            }
        });
        let obj: DynamicObject = serde_json::from_value(manifest)?;
        routers(&self.client, EDGE_NAMESPACE)
            .create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating HostRouter {name}"))?;
        Ok(())
    }

    /// `--samples` Services, one at a time: created → the main Proxy holds its host.
    /// One Service at a time → the Proxy holds its host: p50 and p99.
    async fn one_service(&mut self, floor: Duration) -> Result<(Duration, Duration)> {
        let proxy = router_name(0);
        let mut samples = Vec::with_capacity(self.args.samples);
        for i in 0..self.args.samples {
            let ns = app_namespace((i * 13) % self.size.namespaces);
            let name = format!("one-{i:04}");
            let h = host(&ns, &name);
            tokio::time::sleep(self.args.sample_gap).await;
            let t = Instant::now();
            self.create_service(&ns, &name).await?;
            let seen = self
                .recorder
                .wait_hosts(&proxy, std::slice::from_ref(&h), CONVERGE_LIMIT)
                .await?;
            samples.push(seen.saturating_duration_since(t));
            self.hosts.push(h);
        }
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        say!(
            "one Service → Proxy over {} samples: p50 {p50:.1?}, p99 {p99:.1?}",
            samples.len()
        );
        self.set(
            "one Service created → Proxy holds its host: p50 / p99",
            p50_p99(p50, p99),
        );
        self.set(
            "… p50 / p99 as multiples of the floor (operator idle)",
            multiples((p50, p99), floor),
        );
        Ok((p50, p99))
    }

    /// `--samples` (at least 50) server-side applies of a copy of router 0's Proxy, one at a
    /// time, each changing an annotation: the whole object sent, as the operator sends it. What
    /// the API server and etcd take to store a Proxy of this size, without the operator's part.
    /// The copy lives in the edge namespace, outside the operator's and Gloo's watches.
    async fn proxy_floor(&self) -> Result<(Duration, Duration)> {
        let original = proxies(&self.client, GLOO_NAMESPACE)
            .get(&router_name(0))
            .await
            .context("reading the Proxy to copy")?;
        let copies = proxies(&self.client, EDGE_NAMESPACE);
        let name = "bench-floor-proxy";
        let mut copy = DynamicObject::new(name, &proxy_resource()).within(EDGE_NAMESPACE);
        copy.data = json!({ "spec": original.data["spec"].clone() });
        let params = PatchParams::apply("bench-floor").force();
        let n = self.args.samples.max(50);
        let mut samples = Vec::with_capacity(n);
        // The first apply creates the copy and is not counted.
        for i in 0..=n {
            copy.metadata.annotations = Some([("bench-seq".to_owned(), i.to_string())].into());
            let t = Instant::now();
            copies
                .patch(name, &params, &Patch::Apply(&copy))
                .await
                .with_context(|| format!("applying Proxy {EDGE_NAMESPACE}/{name}"))?;
            if i > 0 {
                samples.push(t.elapsed());
            }
        }
        copies
            .delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting Proxy {EDGE_NAMESPACE}/{name}"))?;
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        say!("Proxy write floor over {n} applies: p50 {p50:.1?}, p99 {p99:.1?}");
        Ok((p50, p99))
    }

    /// A burst of `--burst` Services with `routers` routers selecting them all.
    async fn burst_with_operator(
        &mut self,
        prefix: &str,
        routers: usize,
        no_operator: Duration,
    ) -> Result<()> {
        let burst = self.burst_names(prefix);
        let hosts: Vec<String> = burst.iter().map(|(ns, n)| host(ns, n)).collect();
        let m0 = self.metrics().await?;
        let t0 = Instant::now();
        let created = self.create_services(&burst).await?;
        let last_create = t0 + created;
        let mut converged = last_create;
        for i in 0..routers {
            converged = converged.max(
                self.recorder
                    .wait_hosts(&router_name(i), &hosts, CONVERGE_LIMIT)
                    .await?,
            );
        }
        let m_converged = self.metrics().await?;
        self.quiet().await;
        let settled = Instant::now();
        let m_settled = self.metrics().await?;
        self.hosts.extend(hosts);
        let count =
            |kind: &str, to: Instant| self.recorder.count(kind, None, &[Action::Modified], t0, to);
        let (proxy_conv, bytes_conv) = count("Proxy", converged)?;
        let (proxy_all, bytes_all) = count("Proxy", settled)?;
        let (hr_conv, _) = count("HostRouter", converged)?;
        let (hr_all, _) = count("HostRouter", settled)?;
        let what = format!(
            "burst of {}, {routers} router{}",
            self.args.burst,
            if routers == 1 { "" } else { "s" }
        );
        self.set(
            format!("{what}: create time of the first burst (× no operator)"),
            format!(
                "{} ({:.2}×)",
                fmt_duration(created),
                created.as_secs_f64() / no_operator.as_secs_f64()
            ),
        );
        self.set(
            format!("{what}: last create → every Proxy holds all hosts"),
            format!("{:.2} s", signed_secs(last_create, converged)),
        );
        self.set(
            format!("{what}: Proxy MODIFIED until converged / until quiet"),
            format!(
                "{proxy_conv} / {proxy_all} ({} / {} written)",
                fmt_bytes(bytes_conv),
                fmt_bytes(bytes_all)
            ),
        );
        self.set(
            format!("{what}: operator writes until converged / until quiet"),
            format!(
                "{} / {}",
                m_converged.since(&m0).writes_summary(),
                m_settled.since(&m0).writes_summary()
            ),
        );
        self.set(
            format!("{what}: HostRouter MODIFIED until converged / until quiet"),
            format!("{hr_conv} / {hr_all}"),
        );

        // More bursts for the create time alone: each converges, then is deleted.
        let mut times = vec![created];
        for rep in 1..self.args.burst_reps {
            let burst = self.burst_names(&format!("{prefix}r{rep}"));
            let hosts: Vec<String> = burst.iter().map(|(ns, n)| host(ns, n)).collect();
            times.push(self.create_services(&burst).await?);
            for i in 0..routers {
                self.recorder
                    .wait_hosts(&router_name(i), &hosts, CONVERGE_LIMIT)
                    .await?;
            }
            self.quiet().await;
            self.delete_services(&burst).await?;
            self.quiet().await;
        }
        let median = percentile(&times, 0.5);
        self.set(
            format!(
                "{what}: create time, median of {} (× no operator)",
                times.len()
            ),
            format!(
                "{} of [{}] ({:.2}×)",
                fmt_duration(median),
                fmt_durations(&times),
                median.as_secs_f64() / no_operator.as_secs_f64()
            ),
        );
        Ok(())
    }

    /// Proxy and HostRouter MODIFIED events seen between `from` and `to`.
    fn modified(&self, from: Instant, to: Instant) -> Result<(u64, u64)> {
        let (proxies, _) = self
            .recorder
            .count("Proxy", None, &[Action::Modified], from, to)?;
        let (routers, _) =
            self.recorder
                .count("HostRouter", None, &[Action::Modified], from, to)?;
        Ok((proxies, routers))
    }

    async fn idle(&self) -> Result<()> {
        let m0 = self.metrics().await?;
        let t0 = Instant::now();
        say!("idle for {:?}", self.args.idle);
        tokio::time::sleep(self.args.idle).await;
        let t1 = Instant::now();
        let m1 = self.metrics().await?;
        let (p, h) = self.modified(t0, t1)?;
        self.set(
            format!(
                "idle {} s (no Gloo): Proxy / HostRouter MODIFIED; operator writes",
                self.args.idle.as_secs()
            ),
            format!("{p} / {h}; {}", m1.since(&m0).writes_summary()),
        );
        self.set(
            "… reconciles while idle (Gloo not running: verdicts go Pending → NotReported)",
            format!("{}", m1.since(&m0).reconciles),
        );
        Ok(())
    }

    /// The size of each Proxy as the API server returns it.
    async fn proxy_sizes(&self) -> Result<()> {
        let name = router_name(0);
        let path = format!("/apis/gloo.solo.io/v1/namespaces/{GLOO_NAMESPACE}/proxies/{name}");
        let request = ::http::Request::get(&path).body(Vec::new())?;
        let text = self
            .client
            .request_text(request)
            .await
            .with_context(|| format!("GET {path}"))?;
        let obj: DynamicObject = serde_json::from_str(&text)?;
        let compressed = obj
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("gloo.solo.io/compress"))
            .is_some_and(|v| v == "true");
        let spec_bytes = match obj.data["spec"]["compressedSpec"].as_str() {
            Some(c) => bench::decompress(c)?.len(),
            None => serde_json::to_vec(&obj.data["spec"])?.len(),
        };
        let domains = bench::proxy_domains(&obj)?.len();
        self.set(
            "Proxy as stored (JSON bytes per write); compressed?; spec JSON; virtual-host domains",
            format!(
                "{}; {}; {}; {domains}",
                fmt_bytes(text.len() as u64),
                if compressed { "yes" } else { "no" },
                fmt_bytes(spec_bytes as u64)
            ),
        );
        Ok(())
    }

    /// SIGTERM the operator, start it again, count what it writes in the settle period.
    async fn restart(&mut self) -> Result<()> {
        let t_stop = Instant::now();
        let mut op = self
            .operator
            .take()
            .context("the operator is not running")?;
        op.process.stop(Duration::from_secs(30)).await?;
        let stopped = t_stop.elapsed();
        self.operator = Some(op);
        let t = Instant::now();
        self.start_operator().await?;
        let ready = t.elapsed();
        say!(
            "restarted (stop {stopped:.1?}, ready {ready:.1?}); counting writes for {:?}",
            self.args.restart_settle
        );
        tokio::time::sleep(self.args.restart_settle).await;
        let t1 = Instant::now();
        let m = self.metrics().await?;
        let (p, h) = self.modified(t_stop, t1)?;
        self.set(
            "restart: SIGTERM → exited; start → ready",
            format!("{} ; {}", fmt_duration(stopped), fmt_duration(ready)),
        );
        self.set(
            format!(
                "restart + {} s: Proxy / HostRouter MODIFIED; operator writes",
                self.args.restart_settle.as_secs()
            ),
            format!("{p} / {h}; {}", m.writes_summary()),
        );
        let usage = self.operator_usage()?;
        self.set(
            "restarted operator: peak RSS / CPU seconds after settle",
            format!(
                "{} / {:.1} s",
                fmt_bytes(usage.rss_peak_bytes),
                usage.cpu_secs
            ),
        );
        Ok(())
    }

    /// Gloo (persisting Proxy specs) and Envoy for the main router; then one more Service,
    /// with Endpoints on a local backend: until the Proxy holds it, Gloo accepts, and Envoy
    /// answers from the backend.
    async fn gloo_and_envoy(&mut self) -> Result<()> {
        // Only the main Proxy: Gloo would translate every Proxy of its namespace.
        for i in 1..self.args.routers {
            routers(&self.client, EDGE_NAMESPACE)
                .delete(&router_name(i), &DeleteParams::default())
                .await
                .with_context(|| format!("deleting HostRouter {}", router_name(i)))?;
        }
        let proxy_api = proxies(&self.client, GLOO_NAMESPACE);
        let t = Instant::now();
        loop {
            let left = proxy_api
                .list_metadata(&Default::default())
                .await?
                .items
                .len();
            if left <= 1 {
                break;
            }
            if t.elapsed() > Duration::from_secs(300) {
                bail!("{left} Proxies still there 5 minutes after deleting the extra routers");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.quiet().await;
        let main = router_name(0);

        self.gloo.install(&self.client).await?;
        let t_gloo = Instant::now();
        let gloo = self
            .gloo
            .gloo_command(self.cluster.kubeconfig_path(), self.logs)?
            .spawn()?;
        self.gloo.wait_xds(&gloo).await?;
        let xds = t_gloo.elapsed();
        let accepted = self
            .recorder
            .wait_accepted(&main, t_gloo, CONVERGE_LIMIT)
            .await?;
        self.set(
            "Gloo: start → serves xDS; → Accepted on the largest Proxy",
            format!(
                "{} ; {}",
                fmt_duration(xds),
                fmt_duration(accepted.duration_since(t_gloo))
            ),
        );

        let port = {
            let router = routers(&self.client, EDGE_NAMESPACE).get(&main).await?;
            router.data["spec"]["listener"]["port"]
                .as_u64()
                .context("the main router has no listener port")?
        };
        let admin = free_port()?;
        let t_envoy = Instant::now();
        let envoy = envoy_command(
            &self.client,
            EDGE_NAMESPACE,
            &main,
            &self.logs.join("envoy-pod"),
            self.logs,
            u32::from(admin),
        )
        .await?
        .spawn()?;
        let listener = format!("{LOOPBACK}:{port}");
        let probe = self.hosts.last().context("no hosts routed")?.clone();
        // A routed host without endpoints answers 503 (no healthy upstream); unknown, 404.
        let routed = wait_answer(&listener, &probe, &envoy, |s, _| s != 404).await?;
        self.set(
            "Envoy: start → routes the last burst host (503 without endpoints)",
            format!("{} (answered {routed})", fmt_duration(t_envoy.elapsed())),
        );

        let alias = LoopbackAlias::add(unique_backend_ip())?;
        let backend = Backend::start("last", IpAddr::V4(alias.ip()), 0).await?;
        let ns = app_namespace(0);
        let t0 = Instant::now();
        create_service(
            &self.client,
            &ns,
            "last",
            ServiceKind::ClusterIp,
            &self.retries,
        )
        .await?;
        apply_endpoints(&self.client, &ns, "last", &[("http", backend.address())]).await?;
        let h = host(&ns, "last");
        let in_proxy = self
            .recorder
            .wait_hosts(&main, std::slice::from_ref(&h), CONVERGE_LIMIT)
            .await?;
        let accepted = self
            .recorder
            .wait_accepted(&main, in_proxy, CONVERGE_LIMIT)
            .await?;
        wait_answer(&listener, &h, &envoy, |s, body| s == 200 && body == "last").await?;
        let answered = Instant::now();
        self.set(
            "one more Service (+Endpoints) → Proxy holds it; → Gloo Accepted; → Envoy answers from the backend",
            format!(
                "{} ; {} ; {}",
                fmt_duration(in_proxy.duration_since(t0)),
                fmt_duration(accepted.duration_since(t0)),
                fmt_duration(answered.duration_since(t0))
            ),
        );
        // Idle again, now with Gloo reporting on the Proxy.
        self.quiet().await;
        let idle = self.args.idle.min(Duration::from_secs(60));
        let m0 = self.metrics().await?;
        let t1 = Instant::now();
        tokio::time::sleep(idle).await;
        let t2 = Instant::now();
        let m = self.metrics().await?.since(&m0);
        let (p, h) = self.modified(t1, t2)?;
        self.set(
            format!(
                "idle {} s with Gloo running: Proxy / HostRouter MODIFIED; operator writes; reconciles",
                idle.as_secs()
            ),
            format!("{p} / {h}; {}; {}", m.writes_summary(), m.reconciles),
        );
        let gloo_usage = proc_usage(gloo.pid())?;
        let envoy_usage = proc_usage(envoy.pid())?;
        self.set(
            "Gloo / Envoy: peak RSS, CPU seconds",
            format!(
                "{}, {:.1} s / {}, {:.1} s",
                fmt_bytes(gloo_usage.rss_peak_bytes),
                gloo_usage.cpu_secs,
                fmt_bytes(envoy_usage.rss_peak_bytes),
                envoy_usage.cpu_secs
            ),
        );
        drop(envoy);
        drop(gloo);
        drop(backend);
        drop(alias);
        Ok(())
    }
}

/// GETs `/` with `Host: host` at `listener` until `done(status, body)`; returns the status.
/// `1.0 ms / 2.7 ms`.
fn p50_p99(p50: Duration, p99: Duration) -> String {
    format!("{} / {}", fmt_duration(p50), fmt_duration(p99))
}

/// `p50 / p99` as multiples of `floor`: `5.5× / 8.9×`, or `45× / 74×` from 10 up.
fn multiples((p50, p99): (Duration, Duration), floor: Duration) -> String {
    let times = |d: Duration| {
        let x = d.as_secs_f64() / floor.as_secs_f64();
        if x < 10.0 {
            format!("{x:.1}×")
        } else {
            format!("{x:.0}×")
        }
    };
    format!("{} / {}", times(p50), times(p99))
}

async fn wait_answer(
    listener: &str,
    host: &str,
    envoy: &Process,
    done: impl Fn(u16, &str) -> bool,
) -> Result<u16> {
    let t = Instant::now();
    loop {
        envoy.ensure_running()?;
        let last = match http::get(listener, host, "/").await {
            Ok(r) if done(r.status, &r.body) => return Ok(r.status),
            Ok(r) => format!("{} {}", r.status, r.body.trim()),
            Err(e) => format!("{e:#}"),
        };
        if t.elapsed() > CONVERGE_LIMIT {
            bail!("Envoy at {listener} for Host {host}: still {last} after {CONVERGE_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a Service gets a ClusterIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServiceKind {
    ClusterIp,
    /// `clusterIP: None`: no address allocated.
    Headless,
}

/// Creates a selectorless ClusterIP Service `<ns>/<name>` with one port (`http`, 80),
/// retrying what the API server may answer under load (429, 5xx, lost connections).
async fn create_service(
    client: &Client,
    ns: &str,
    name: &str,
    kind: ServiceKind,
    retries: &AtomicU64,
) -> Result<()> {
    let mut spec = json!({
        "type": "ClusterIP",
        "ports": [{"name": "http", "port": SERVICE_PORT, "protocol": "TCP"}],
    });
    if kind == ServiceKind::Headless {
        spec["clusterIP"] = json!("None");
    }
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))?;
    let api = Api::<Service>::namespaced(client.clone(), ns);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match api.create(&PostParams::default(), &svc).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt > 1 => return Ok(()),
            Err(kube::Error::Api(s)) if ![429, 500, 502, 503, 504].contains(&s.code) => {
                bail!("creating Service {ns}/{name}: {} {}", s.code, s.message)
            }
            Err(e) if attempt >= 6 => {
                return Err(e).with_context(|| format!("creating Service {ns}/{name}"));
            }
            Err(e) => {
                retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("creating Service {ns}/{name}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

async fn command_output(program: &str, args: &[&str]) -> String {
    match tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => format!(
            "({program} failed: {})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("({program}: {e})"),
    }
}

/// What the results are worth comparing against: the machine, the date, the commit.
async fn machine_info() -> Vec<String> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let root = workspace_root().to_string_lossy().into_owned();
    let commit = command_output("git", &["-C", &root, "rev-parse", "--short=12", "HEAD"]).await;
    let dirty = !command_output(
        "git",
        &["-C", &root, "status", "--porcelain", "--untracked-files=no"],
    )
    .await
    .is_empty();
    vec![
        format!("nproc {cpus} ({cpu_model})"),
        format!("RAM {mem_gib}"),
        format!("kernel {kernel}"),
        format!(
            "date {}",
            command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).await
        ),
        format!(
            "git commit {commit}{}",
            if dirty {
                " (with uncommitted changes)"
            } else {
                ""
            }
        ),
    ]
}

fn write_results(args: &Args, machine: &[String], reports: &[(String, Report)]) -> Result<()> {
    let kept = std::fs::read_to_string(&args.results)
        .ok()
        .and_then(|old| old.split_once(KEEP_MARKER).map(|(_, tail)| tail.to_owned()))
        .unwrap_or_else(|| "\n".into());
    let binary = |var: &str| {
        tool(var)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("{e:#}"))
    };
    let mut out = String::new();
    out.push_str("# Cluster-scale benchmark: `make bench-cluster`\n\n");
    out.push_str(
        "Written by `e2e/src/bin/bench-cluster.rs` (issue 15, part 1: measurement only). \
         Each size runs on a fresh local control plane (etcd, kube-apiserver, \
         kube-controller-manager of the e2e suite, all on 127.0.0.1) with the release build \
         of the operator. Times are wall-clock times seen by the benchmark; a Proxy \"holds\" a \
         host when a WATCH event of the Proxy carries its virtual host (compressed specs are \
         decoded). It measures; it asserts nothing.\n\n",
    );
    out.push_str("## Machine\n\n");
    for m in machine {
        out.push_str(&format!("- {m}\n"));
    }
    out.push_str("\n## Settings\n\n");
    out.push_str(&format!(
        "- sizes: {}; burst {} Services, {} bursts per setting for the create time; {} one-Service \
         samples, {} ms apart (floors: {} PATCHes, {} Proxy applies); {} creates in flight; {} routers in the second burst; idle {} s; restart settle {} s; \
         operator coalescing window: {}; delay: {} ms (--coalesce-delay-ms)\n",
        args.sizes
            .iter()
            .map(Size::label)
            .collect::<Vec<_>>()
            .join(", "),
        args.burst,
        args.burst_reps,
        args.samples,
        args.sample_gap.as_millis(),
        args.samples.max(50),
        args.samples.max(50),
        args.concurrency,
        args.routers,
        args.idle.as_secs(),
        args.restart_settle.as_secs(),
        std::env::var("HOSTROUTER_COALESCE_WINDOW")
            .map(|w| format!("{w} (HOSTROUTER_COALESCE_WINDOW)"))
            .unwrap_or_else(|_| "the default, 1s".into()),
        args.coalesce_delay.as_millis(),
    ));
    out.push_str(&format!(
        "- kube-apiserver: the e2e suite's flags, unchanged: default --max-requests-inflight \
         (400) and --max-mutating-requests-inflight (200), --service-cluster-ip-range {} \
         (65,534 addresses: room for every Service of the largest size); the benchmark's \
         client is the admin user (system:masters: exempt from API Priority and Fairness)\n",
        hostrouter_e2e::control_plane::SERVICE_CLUSTER_IP_RANGE
    ));
    out.push_str(if args.cluster_ip {
        "- Services: selectorless ClusterIP Services with one port `http`/80 (`--cluster-ip`)\n"
    } else {
        "- Services: selectorless and **headless** (`clusterIP: None`), one port `http`/80; the \
         operator routes headless Services like any other (only ExternalName, excluded and its \
         own Envoy Services are skipped). Why not ClusterIP: kube-apiserver v1.37's ClusterIP \
         allocator lists every allocated IPAddress twice after each allocation (to update its \
         `allocated`/`available` metrics: `Used()` and `Free()` in \
         pkg/registry/core/service/ipallocator/ipallocator.go), so each create costs O(Services) \
         and creating 50,000 of them is quadratic — API-server time that has nothing to do with \
         the operator. The row \"burst of … ClusterIP Services\" shows that cost; the Service of \
         part 6 (\"one more Service\") is a ClusterIP Service\n"
    });
    out.push_str(&format!(
        "- operator: {} run --gloo-namespace {GLOO_NAMESPACE} --router-selector {ROUTER_LABEL}=true \
         --coalesce-delay {}ms \
         (admin kubeconfig, log level info); HostRouters in `{EDGE_NAMESPACE}` select the \
         benchmark namespaces by label, each namespace consents (`{EXPOSE_LABEL}=true`); \
         spec.service.type ClusterIP, destination Kube\n",
        binary(vars::HOSTROUTER_BIN),
        args.coalesce_delay.as_millis()
    ));
    out.push_str(&format!(
        "- Gloo: {} (Settings with gateway.persistProxySpec: true), started only for part 6; \
         Envoy: {}\n",
        binary(vars::GLOO),
        binary(vars::ENVOY)
    ));
    out.push_str("\n## Results\n\n");
    out.push_str(&bench::side_by_side(reports));
    for (label, report) in reports {
        if report.costs.is_empty() && report.notes.is_empty() {
            continue;
        }
        out.push_str(&format!("\n### Where time goes, per phase: {label}\n\n"));
        out.push_str(
            "CPU seconds spent by each process during each phase (utime+stime from /proc), \
             the operator's resident set at the phase's end and its peak so far (VmRSS, \
             VmHWM), and its reconciles in it (controller_runtime_reconcile_time_seconds; \
             the quantiles are histogram bucket bounds). Phases with the operator end with a \
             wait for 5 s without any Proxy or HostRouter event, which the wall time includes.\n\n",
        );
        out.push_str(&bench::costs_table(report));
        if !report.notes.is_empty() {
            out.push('\n');
            for n in &report.notes {
                out.push_str(&format!("- {}\n", n.replace('\n', " ")));
            }
        }
    }
    out.push_str(&format!("\n{KEEP_MARKER}"));
    out.push_str(&kept);
    if let Some(dir) = args.results.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.results, out)
        .with_context(|| format!("writing {}", args.results.display()))
}
