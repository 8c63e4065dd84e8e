//! `hostrouter run | crd | render`.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use futures::FutureExt;
use futures::future::Shared;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use crate::api::HostRouter;
use crate::controller;
use crate::error::{Error, Result};
use crate::leader::{self, Elector};
use crate::metrics::Metrics;
use crate::offline;
use crate::render::{DEFAULT_COMPRESS_PROXY_ABOVE_BYTES, GLOO_VERSION, Settings, Tenancy, naming};
use crate::server::{self, Health, Role};

#[derive(Parser, Debug)]
#[command(
    name = "hostrouter",
    version,
    about = "Routes every Service of the selected namespaces by Host header through a Gloo-programmed Envoy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run(RunArgs),
    /// Print the HostRouter CustomResourceDefinition as YAML.
    Crd,
    /// Print the objects the operator would write for one HostRouter, offline.
    Render(RenderArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    settings: SettingsArgs,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "HOSTROUTER_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    http_address: SocketAddr,

    #[command(flatten)]
    leader: LeaderArgs,

    /// How long to finish in-flight work after SIGTERM before exiting anyway (keep it below the
    /// pod's terminationGracePeriodSeconds). A reconcile waiting on an API server that does not
    /// answer would otherwise hold the process for minutes.
    #[arg(long, env = "HOSTROUTER_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,

    /// Log format.
    #[arg(long, env = "HOSTROUTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info,hostrouter=debug`).
    #[arg(long, env = "HOSTROUTER_LOG", default_value = "info")]
    log_level: String,
}

#[derive(clap::Args, Debug)]
struct LeaderArgs {
    /// Elect a leader among the replicas with a coordination.k8s.io Lease: only the holder
    /// reconciles; the others stand by and take over when it stops or fails to renew.
    #[arg(
        long,
        env = "HOSTROUTER_LEADER_ELECT",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true"
    )]
    leader_elect: bool,

    /// Namespace of the Lease [default: $POD_NAMESPACE, else the kubeconfig's or in-cluster
    /// namespace].
    #[arg(long, env = "HOSTROUTER_LEADER_ELECT_NAMESPACE")]
    leader_elect_namespace: Option<String>,

    /// Name of the Lease. Replicas with the same Lease form one group.
    #[arg(
        long,
        env = "HOSTROUTER_LEADER_ELECT_LEASE_NAME",
        default_value = "hostrouter"
    )]
    leader_elect_lease_name: String,

    /// How long standbys honour a Lease that stopped being renewed.
    #[arg(long, env = "HOSTROUTER_LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    leader_elect_lease_duration: Duration,

    /// How long the leader keeps trying to renew before it stops reconciling and exits.
    #[arg(long, env = "HOSTROUTER_LEADER_ELECT_RENEW_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    leader_elect_renew_deadline: Duration,

    /// Time between attempts to acquire or renew the Lease.
    #[arg(long, env = "HOSTROUTER_LEADER_ELECT_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    leader_elect_retry_period: Duration,
}

impl LeaderArgs {
    /// The election settings, or `None` when leader election is off.
    fn config(&self, client: &kube::Client) -> Result<Option<leader::Config>> {
        if !self.leader_elect {
            return Ok(None);
        }
        let namespace = self
            .leader_elect_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let config = leader::Config {
            namespace,
            name: self.leader_elect_lease_name.clone(),
            identity: identity(),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        };
        config.validate()?;
        Ok(Some(config))
    }
}

/// This replica's name among the candidates: the pod name, else host name and process id.
fn identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "hostrouter".to_owned());
    format!("{host}_{}", std::process::id())
}

#[derive(clap::Args, Debug)]
struct SettingsArgs {
    /// Gloo's namespace: its write namespace, where Proxies are written unless a HostRouter
    /// sets spec.proxyNamespace.
    #[arg(long, env = "HOSTROUTER_GLOO_NAMESPACE", default_value = "gloo-system")]
    gloo_namespace: String,

    /// Host of Gloo's xDS server as Envoy resolves it [default: gloo.<gloo-namespace>.svc.cluster.local].
    #[arg(long, env = "HOSTROUTER_GLOO_XDS_ADDRESS")]
    gloo_xds_address: Option<String>,

    /// Port of Gloo's xDS server.
    #[arg(long, env = "HOSTROUTER_GLOO_XDS_PORT", default_value_t = 9977)]
    gloo_xds_port: u16,

    /// Envoy image for HostRouters that do not set spec.envoy.image.
    #[arg(long, env = "HOSTROUTER_ENVOY_IMAGE", default_value_t = format!("quay.io/solo-io/gloo-envoy-wrapper:{GLOO_VERSION}"))]
    envoy_image: String,

    /// Proxies whose JSON spec is larger are written compressed (Gloo's `gloo.solo.io/compress`):
    /// far below etcd's object size limit, and far cheaper for the API server to store than a
    /// plain spec of hundreds of virtual hosts. Smaller plain Proxies stay readable.
    #[arg(long, env = "HOSTROUTER_COMPRESS_PROXY_ABOVE_BYTES", default_value_t = DEFAULT_COMPRESS_PROXY_ABOVE_BYTES)]
    compress_proxy_above_bytes: usize,

    /// A compressed Proxy is compressed in pieces that the next write reuses; on average one
    /// virtual host in this many starts a piece. Smaller: less compressed again when a Service
    /// changes, but each piece adds a block header: at 512 the Proxy is as small as compressed
    /// in one pass, at 128 2 % larger, at 16 about a quarter larger, at 1 three times larger.
    #[arg(long, env = "HOSTROUTER_COMPRESS_PIECE_HOSTS", default_value_t = crate::render::gloo::compressed_spec::CUT_EVERY)]
    compress_piece_hosts: NonZeroU64,

    /// Namespaces whose HostRouters may publish every namespace their selector matches (a
    /// platform team's), comma-separated. Routers elsewhere publish only their own namespace and
    /// namespaces labelled `hostrouter.io/expose=true`.
    #[arg(long, env = "HOSTROUTER_TRUSTED_NAMESPACES", value_delimiter = ',')]
    trusted_namespaces: Vec<String>,

    /// Namespaces no HostRouter publishes unless they are labelled `hostrouter.io/expose=true`,
    /// comma-separated. The operator's own namespace ($POD_NAMESPACE) is always added.
    #[arg(
        long,
        env = "HOSTROUTER_PROTECTED_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system,kube-public,kube-node-lease"
    )]
    protected_namespaces: Vec<String>,

    /// Manage only the HostRouters matching this label selector (e.g. `shard=a`), to split
    /// routers between operator instances. Routers that compete for a proxy name must be
    /// managed by the same instance. Default: every HostRouter.
    #[arg(long, env = "HOSTROUTER_ROUTER_SELECTOR")]
    router_selector: Option<String>,

    /// At most one reconcile of a router per window: a change after a quiet window is
    /// reconciled after a short delay (`--coalesce-delay`), changes that follow within the
    /// window together at its end. Longer windows mean fewer writes of a large Proxy during a
    /// deploy storm, and a wait of up to one window for changes during one. `0s` reconciles
    /// every change at once.
    #[arg(long, env = "HOSTROUTER_COALESCE_WINDOW", default_value = "1s", value_parser = humantime::parse_duration)]
    coalesce_window: Duration,

    /// How long a change after a quiet window is held to see whether others follow. Alone, it
    /// is reconciled after this delay; followed by another within it, the changes are a storm
    /// (a deploy, `kubectl apply` of many Services) reconciled together a window after the
    /// first, so no write lands in the middle of a storm shorter than the window. `0s`
    /// reconciles a storm's first change at once, and writes each Proxy once more per storm. A
    /// delay longer than the window counts as the window.
    #[arg(long, env = "HOSTROUTER_COALESCE_DELAY", default_value = "20ms", value_parser = humantime::parse_duration)]
    coalesce_delay: Duration,
}

impl SettingsArgs {
    /// The settings, once `--router-selector` is known to be a label selector.
    fn settings(&self) -> Result<Settings> {
        if let Some(selector) = &self.router_selector {
            crate::api::selector::check_selector_string(selector)
                .map_err(|e| Error::Config(format!("--router-selector: {e}")))?;
        }
        Ok(Settings {
            gloo_namespace: self.gloo_namespace.clone(),
            xds_address: self
                .gloo_xds_address
                .clone()
                .unwrap_or_else(|| format!("gloo.{}.svc.cluster.local", self.gloo_namespace)),
            xds_port: self.gloo_xds_port,
            envoy_image: self.envoy_image.clone(),
            compress_proxy_above_bytes: self.compress_proxy_above_bytes,
            compress_piece_hosts: self.compress_piece_hosts,
            shard: self.router_selector.as_deref().map(naming::shard),
            tenancy: Tenancy {
                trusted_namespaces: self
                    .trusted_namespaces
                    .iter()
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .collect(),
                protected_namespaces: self
                    .protected_namespaces
                    .iter()
                    .map(|n| n.trim().to_owned())
                    .chain(std::env::var("POD_NAMESPACE").ok())
                    .filter(|n| !n.is_empty())
                    .collect(),
            },
        })
    }
}

#[derive(clap::Args, Debug)]
struct RenderArgs {
    /// The HostRouter manifest (YAML).
    #[arg(short = 'f', long = "filename")]
    router: PathBuf,

    /// Namespaces and Services to route, as a YAML stream or a `kind: List` (e.g. the output
    /// of `kubectl get ns,svc -A -o yaml`).
    #[arg(long)]
    cluster: Option<PathBuf>,

    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => crd_yaml().map(|yaml| print!("{yaml}")),
        Command::Render(args) => args.settings.settings().and_then(|settings| {
            offline::render_files(&args.router, args.cluster.as_deref(), &settings)
                .map(|out| print!("{out}"))
        }),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The CRD as YAML: what `crds/` and the chart hold.
pub fn crd_yaml() -> Result<String> {
    let crd = crate::api::crd::definition().map_err(|e| Error::Parse {
        what: "the CRD".into(),
        message: e.to_string(),
    })?;
    let yaml = serde_yaml::to_string(&crd).map_err(|e| Error::Parse {
        what: "the CRD".into(),
        message: e.to_string(),
    })?;
    Ok(format!(
        "# Generated by `hostrouter crd` (make crds). Do not edit.\n{yaml}"
    ))
}

/// kube's client logs every failed request at ERROR; the operator logs each failure it acts on
/// (a watch's outage once, a failed reconcile with its error), so those lines would only repeat
/// them, once per retry. A filter that names `kube_client` itself decides.
const QUIET_KUBE_CLIENT: &str = "kube_client::client::builder=off";

fn init_tracing(format: LogFormat, filter: &str) -> Result<()> {
    let directives = if filter.contains("kube_client") {
        filter.to_owned()
    } else {
        format!("{filter},{QUIET_KUBE_CLIENT}")
    };
    let filter = EnvFilter::try_new(&directives)
        .map_err(|e| Error::Config(format!("--log-level {filter:?}: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| Error::Config(format!("installing the logger: {e}")))
}

fn run(args: RunArgs) -> Result<()> {
    init_tracing(args.log_format, &args.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            path: "starting the async runtime".into(),
            source,
        })?;
    let timeout = args.shutdown_timeout;
    let result = runtime.block_on(async move {
        let shutdown = shutdown_signal().shared();
        let deadline = shutdown.clone().then(|()| tokio::time::sleep(timeout));
        tokio::select! {
            result = run_async(args, shutdown) => result,
            () = deadline => Err(Error::Timeout {
                what: "finishing in-flight work after the shutdown signal (--shutdown-timeout); exiting anyway".into(),
                after: timeout,
            }),
        }
    });
    // Whatever still waits on the network is abandoned, not awaited.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

async fn run_async(
    args: RunArgs,
    shutdown: Shared<impl Future<Output = ()> + Send + 'static>,
) -> Result<()> {
    let settings = args.settings.settings()?;
    info!(gloo_namespace = %settings.gloo_namespace, xds = %format!("{}:{}", settings.xds_address, settings.xds_port), version = env!("CARGO_PKG_VERSION"), "starting");
    let client = kube::Client::try_default()
        .await
        .map_err(|e| Error::Client(Box::new(e)))?;
    if let Some(selector) = &args.settings.router_selector {
        check_selector(&client, selector).await?;
    }
    let elector = args
        .leader
        .config(&client)?
        .map(|config| Elector::new(client.clone(), config));
    // Registration fails only for a programming error (a duplicate metric name).
    #[allow(clippy::expect_used)]
    let metrics = Arc::new(Metrics::new().expect("metrics register"));
    let health = Health::default();
    let _ = health.metrics.set(metrics.clone());
    if elector.is_some() {
        health.set_role(Role::Electing);
    }

    let server = tokio::spawn(server::serve(
        args.http_address,
        health.clone(),
        shutdown.clone(),
    ));
    let result = lead(client, settings, &args, elector, metrics, &health, shutdown).await;
    if result.is_err() {
        // Not a shutdown: the server would wait for a signal that is not coming.
        server.abort();
        return result;
    }
    let served = match server.await {
        Ok(served) => served,
        Err(e) => {
            error!(error = %e, "HTTP server task failed");
            Ok(())
        }
    };
    result.and(served)
}

/// Runs the controller until `shutdown`; with leader election, only while this replica holds
/// the Lease. The Lease is renewed until the controller has drained after a shutdown, then
/// released. Losing it drops the controller at once, in-flight writes included, and ends the
/// process with an error (its pod restarts as a standby).
async fn lead(
    client: kube::Client,
    settings: Settings,
    args: &RunArgs,
    elector: Option<Elector>,
    metrics: Arc<Metrics>,
    health: &Health,
    shutdown: Shared<impl Future<Output = ()> + Send + 'static>,
) -> Result<()> {
    let elector = match elector {
        None => None,
        Some(mut e) => {
            tokio::select! {
                () = e.acquire(|| health.set_role(Role::Standby)) => Some(e),
                () = shutdown.clone() => return Ok(()),
            }
        }
    };
    metrics.set_leader(true);
    health.set_role(Role::Leading);

    // Renews until the controller is done (`done`), or reports the loss (`lost`).
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let holding = elector.map(|mut e| {
        tokio::spawn(async move {
            tokio::select! {
                () = e.hold() => {
                    let _ = lost_tx.send(());
                    None
                }
                _ = done_rx => Some(e),
            }
        })
    });
    let lost = async {
        match lost_rx.await {
            Ok(()) => {}
            // No elector: leadership cannot be lost.
            Err(_) => std::future::pending().await,
        }
    };
    let stores_cell = health.stores.clone();
    let controller = controller::run(
        client,
        settings,
        args.settings.router_selector.as_deref(),
        controller::coalesce::Timing {
            window: args.settings.coalesce_window,
            delay: args.settings.coalesce_delay,
        },
        metrics.clone(),
        move |stores| {
            let _ = stores_cell.set(stores);
        },
        shutdown,
    );
    let kept = tokio::select! {
        () = controller => true,
        () = lost => false,
    };
    metrics.set_leader(false);
    let _ = done_tx.send(());
    let elector = match holding {
        None => return Ok(()),
        Some(task) => task.await.unwrap_or_else(|e| {
            error!(error = %e, "lease task failed");
            None
        }),
    };
    match elector {
        Some(mut e) if kept => {
            e.release().await;
            Ok(())
        }
        _ => Err(Error::LeadershipLost),
    }
}

/// Fails fast on a `--router-selector` the API server cannot parse, which would otherwise
/// leave the HostRouter watch retrying forever.
async fn check_selector(client: &kube::Client, selector: &str) -> Result<()> {
    let api: kube::Api<HostRouter> = kube::Api::all(client.clone());
    match api
        .list_metadata(&kube::api::ListParams::default().labels(selector).limit(1))
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 400 => Err(Error::Config(format!(
            "--router-selector {selector:?}: {}",
            status.message
        ))),
        // Anything else (including a missing CRD) is retried by the watches.
        _ => Ok(()),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    info!("shutting down");
}
