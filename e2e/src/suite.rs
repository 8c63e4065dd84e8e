//! The test runner: one control plane shared by every trial of a `cargo test` run.
//!
//! A `harness = false` test target builds a [`Suite`], collects [`Trial`]s from its
//! modules and calls [`Suite::run`]:
//!
//! ```no_run
//! use hostrouter_e2e::{ControlPlaneOptions, Suite, TestContext};
//! use libtest_mimic::Trial;
//!
//! fn trials(suite: &Suite) -> Vec<Trial> {
//!     vec![suite.trial("demo::lists_namespaces", |cx: TestContext| async move {
//!         let out = cx.cluster().kubectl(["get", "namespaces"]).await?;
//!         anyhow::ensure!(out.contains("default"), "{out}");
//!         Ok(())
//!     })]
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let suite = Suite::new(ControlPlaneOptions::from_env).expect("runtime");
//!     let trials = trials(&suite);
//!     suite.run(trials)
//! }
//! ```
//!
//! The control plane starts when the first trial needs it (not for `--list`), trials run
//! in parallel on libtest-mimic's threads (4 unless `--test-threads` says otherwise),
//! each on a shared Tokio runtime, and the control plane is stopped at the end. When a
//! trial fails, its message ends with the tails of the logs it produced, and all logs
//! are kept in `target/e2e-logs/<run>` (also when `E2E_KEEP_LOGS=1`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use kube::Client;
use libtest_mimic::{Arguments, Failed, Trial};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::OnceCell;

use crate::control_plane::{ControlPlane, ControlPlaneOptions};
use crate::namespace::{TestNamespace, sanitize};
use crate::process::{ProcessBuilder, tail};

/// Environment variable: keep the logs even when every trial passed.
pub const KEEP_LOGS_VAR: &str = "E2E_KEEP_LOGS";
/// Environment variable: per-trial time limit in seconds (default 300).
pub const TRIAL_TIMEOUT_VAR: &str = "E2E_TRIAL_TIMEOUT_SECS";
/// Trials run at once unless `--test-threads` is given.
pub const DEFAULT_TEST_THREADS: usize = 4;
/// Lines of each log appended to a failing trial's message.
const LOG_TAIL_LINES: usize = 30;

type OptionsFn = Box<dyn FnOnce() -> Result<ControlPlaneOptions> + Send>;

/// State shared by every trial.
struct Shared {
    options: Mutex<Option<OptionsFn>>,
    cluster: OnceCell<Result<Arc<ControlPlane>, String>>,
    trial_timeout: Duration,
}

impl Shared {
    /// The control plane, started on first use.
    async fn cluster(&self) -> Result<Arc<ControlPlane>> {
        let started = self
            .cluster
            .get_or_init(|| async {
                let options = self
                    .options
                    .lock()
                    .map_err(|_| "options lock poisoned".to_owned())?
                    .take()
                    .ok_or_else(|| "control plane options already used".to_owned())?;
                let began = Instant::now();
                eprintln!("e2e: starting the control plane");
                let cluster = async { ControlPlane::start(options()?).await }
                    .await
                    .map_err(|err| format!("{err:#}"))?;
                eprintln!(
                    "e2e: control plane ready in {:.1?} at {} (kubeconfig {})",
                    began.elapsed(),
                    cluster.server_url(),
                    cluster.kubeconfig_path().display()
                );
                Ok(Arc::new(cluster))
            })
            .await;
        started
            .clone()
            .map_err(|err| anyhow!("the control plane did not start: {err}"))
    }
}

/// A set of trials sharing one Tokio runtime and one lazily started control plane.
pub struct Suite {
    runtime: Runtime,
    shared: Arc<Shared>,
}

impl Suite {
    /// A suite whose control plane is started with the options `options` returns.
    /// Also sets up `tracing` output to stderr (filter: `RUST_LOG`, default `info` for
    /// the harness).
    pub fn new(
        options: impl FnOnce() -> Result<ControlPlaneOptions> + Send + 'static,
    ) -> Result<Self> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| crate::DEFAULT_LOG_FILTER.into()),
            )
            .with_writer(std::io::stderr)
            .try_init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .context("building the Tokio runtime")?;
        let trial_timeout = match std::env::var(TRIAL_TIMEOUT_VAR) {
            Ok(secs) => Duration::from_secs(
                secs.parse()
                    .with_context(|| format!("{TRIAL_TIMEOUT_VAR}={secs:?}"))?,
            ),
            Err(_) => Duration::from_secs(300),
        };
        Ok(Self {
            runtime,
            shared: Arc::new(Shared {
                options: Mutex::new(Some(Box::new(options))),
                cluster: OnceCell::new(),
                trial_timeout,
            }),
        })
    }

    /// The runtime the trials run on.
    pub fn handle(&self) -> Handle {
        self.runtime.handle().clone()
    }

    /// A trial that gets the shared control plane through its [`TestContext`].
    pub fn trial<F, Fut>(&self, name: impl Into<String>, body: F) -> Trial
    where
        F: FnOnce(TestContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.long_trial(name, Duration::ZERO, body)
    }

    /// A [`Suite::trial`] given at least `at_least` (say, one that starts a node and a Gateway
    /// API implementation), or the suite's timeout when that is longer.
    pub fn long_trial<F, Fut>(&self, name: impl Into<String>, at_least: Duration, body: F) -> Trial
    where
        F: FnOnce(TestContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let name = name.into();
        let shared = self.shared.clone();
        let handle = self.handle();
        Trial::test(name.clone(), move || {
            let timeout = shared.trial_timeout.max(at_least);
            run_on(&handle, async move {
                let cluster = shared.cluster().await?;
                let cx = TestContext::new(name.clone(), cluster)?;
                let log_dir = cx.log_dir.clone();
                let outcome = match tokio::time::timeout(timeout, body(cx)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(anyhow!(
                        "trial timed out after {timeout:?} (set {TRIAL_TIMEOUT_VAR} to change)"
                    )),
                };
                // The cause again after the logs: a CI log that keeps only its tail shows it.
                outcome.map_err(|err| {
                    anyhow!("{err:#}{}\n--- {name} failed: {err:#}", log_tails(&log_dir))
                })
            })
        })
    }

    /// A trial that needs no control plane (say, checking that a binary runs).
    pub fn local_trial<F, Fut>(&self, name: impl Into<String>, body: F) -> Trial
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let handle = self.handle();
        let timeout = self.shared.trial_timeout;
        Trial::test(name, move || {
            run_on(&handle, async move {
                tokio::time::timeout(timeout, body())
                    .await
                    .map_err(|_| anyhow!("trial timed out after {timeout:?}"))?
            })
        })
    }

    /// Runs `trials` as the command line asks (filters, `--list`, `--test-threads`,
    /// ...), stops the control plane, and returns the exit code.
    pub fn run(self, trials: Vec<Trial>) -> ExitCode {
        let mut args = Arguments::from_args();
        if args.test_threads.is_none() {
            args.test_threads = Some(DEFAULT_TEST_THREADS);
        }
        let conclusion = libtest_mimic::run(&args, trials);
        if let Some(Ok(cluster)) = self.shared.cluster.get() {
            let keep = conclusion.has_failed() || std::env::var_os(KEEP_LOGS_VAR).is_some();
            match self.runtime.block_on(cluster.stop(keep)) {
                Ok(Some(dir)) => eprintln!("e2e: logs kept in {}", dir.display()),
                Ok(None) => {}
                Err(err) => {
                    eprintln!("e2e: stopping the control plane: {err:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        conclusion.exit_code()
    }
}

/// Runs `future` on the runtime from a libtest-mimic thread; a panic fails the trial.
fn run_on(
    handle: &Handle,
    future: impl Future<Output = Result<()>> + Send + 'static,
) -> Result<(), Failed> {
    match handle.block_on(handle.spawn(future)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!("{err:#}").into()),
        Err(join) if join.is_panic() => {
            let payload = join.into_panic();
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "(non-string panic payload)".to_owned());
            Err(format!("panicked: {message}").into())
        }
        Err(join) => Err(format!("trial task failed: {join}").into()),
    }
}

/// The tails of every `*.log` under `dir`, for a failure message.
fn log_tails(dir: &Path) -> String {
    let mut files = Vec::new();
    collect_logs(dir, &mut files);
    files.sort();
    let mut out = String::new();
    for file in files {
        let text = std::fs::read(&file)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        out.push_str(&format!(
            "\n--- last {LOG_TAIL_LINES} lines of {} ---\n{}",
            file.display(),
            tail(&text, LOG_TAIL_LINES)
        ));
    }
    out
}

fn collect_logs(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_logs(&path, files);
        } else if path.extension().is_some_and(|e| e == "log") {
            files.push(path);
        }
    }
}

/// What a trial gets: the shared control plane and a log directory of its own.
#[derive(Clone)]
pub struct TestContext {
    name: String,
    cluster: Arc<ControlPlane>,
    log_dir: PathBuf,
}

impl TestContext {
    fn new(name: String, cluster: Arc<ControlPlane>) -> Result<Self> {
        let log_dir = cluster.logs_dir().join("trials").join(sanitize(&name));
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        Ok(Self {
            name,
            cluster,
            log_dir,
        })
    }

    /// The trial's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shared control plane.
    pub fn cluster(&self) -> &ControlPlane {
        &self.cluster
    }

    /// An admin client.
    pub fn client(&self) -> Client {
        self.cluster.client()
    }

    /// This trial's log directory (kept with the others when the run fails).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// A new namespace named after the trial, labelled with `labels`.
    pub async fn namespace<'a>(
        &self,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TestNamespace> {
        let prefix = self.name.rsplit("::").next().unwrap_or(&self.name);
        TestNamespace::create(&self.cluster.client(), prefix, labels).await
    }

    /// A process whose log goes to this trial's log directory (and so into the failure
    /// message): `cx.process("operator", bin).args([...]).env(...).spawn()?`.
    pub fn process(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> ProcessBuilder {
        ProcessBuilder::new(name, program, &self.log_dir)
    }
}
