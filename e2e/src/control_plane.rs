//! A real, local Kubernetes control plane: etcd, kube-apiserver and
//! kube-controller-manager (garbage collector and namespace controller), all bound to
//! 127.0.0.1 on free ports.
//!
//! Start-up order matters: the CRDs given in the options are installed once the API
//! server is ready and *before* kube-controller-manager starts, so that its garbage
//! collector knows their types from its first discovery.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::cli::ToolCommand;
use crate::kubeconfig::{TokenKubeconfig, client_from};
use crate::net::free_ports;
use crate::pki::{
    ADMIN_USER, ServiceAccountKeys, generate_service_account_keys, random_token, write_token_file,
};
use crate::process::{DEFAULT_GRACE, DetachedProcess, Process, ProcessBuilder};
use crate::rundir::RunDir;
use crate::toolchain::{self, ControlPlaneBinaries, vars};
use crate::wait::{Progress, wait_until};

/// The issuer of service-account tokens (the in-cluster default).
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The Service IP range (no Service gets an IP that routes anywhere: there are no nodes).
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/16";
/// Lifetime of the tokens written by [`ControlPlane::service_account_kubeconfig`].
pub const SERVICE_ACCOUNT_TOKEN_SECONDS: i64 = 24 * 60 * 60;

/// How to start a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// The etcd, kube-apiserver and kube-controller-manager binaries.
    pub binaries: ControlPlaneBinaries,
    /// CRD manifests (files or directories of `*.yaml`) installed before
    /// kube-controller-manager starts.
    pub crds: Vec<PathBuf>,
    /// Namespaces created once the API server is ready.
    pub namespaces: Vec<String>,
    /// kube-controller-manager's `--controllers`.
    pub controllers: Vec<String>,
    /// More kube-apiserver flags (say, `--enable-admission-plugins=...`).
    pub apiserver_args: Vec<String>,
    /// For a control plane with a node: the address the API server binds and advertises (its
    /// `kubernetes` Service's endpoint and a name in its certificate: this machine's end of the
    /// node's veth, which the node and its Pods reach), with the ServiceAccount admission (Pods
    /// get tokens) and kube-scheduler. `None`: 127.0.0.1, no ServiceAccount admission, no
    /// scheduler.
    pub node_address: Option<std::net::Ipv4Addr>,
    /// Where to keep state; `None` for a fresh temporary directory removed by
    /// [`ControlPlane::stop`].
    pub run_dir: Option<PathBuf>,
    /// Start the processes in their own process groups so that they can outlive the
    /// harness (see [`ControlPlane::detach`]).
    pub detached: bool,
    /// Limit on each start-up phase (etcd, API server, controller manager).
    pub startup_timeout: Duration,
}

impl ControlPlaneOptions {
    /// Defaults for `binaries`: no CRDs, no extra namespaces, the garbage collector and
    /// the namespace controller, a temporary run directory.
    pub fn new(binaries: ControlPlaneBinaries) -> Self {
        Self {
            binaries,
            crds: Vec::new(),
            namespaces: Vec::new(),
            controllers: vec!["garbagecollector".into(), "namespace".into()],
            apiserver_args: Vec::new(),
            node_address: None,
            run_dir: None,
            detached: false,
            startup_timeout: Duration::from_secs(90),
        }
    }

    /// [`ControlPlaneOptions::new`] with the binaries named by the environment.
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(ControlPlaneBinaries::from_env()?))
    }

    /// Adds a CRD file or directory.
    pub fn crd(mut self, path: impl Into<PathBuf>) -> Self {
        self.crds.push(path.into());
        self
    }

    /// The address the API server binds and advertises: the node's end of the veth, or
    /// 127.0.0.1.
    fn address(&self) -> std::net::Ipv4Addr {
        self.node_address.unwrap_or(std::net::Ipv4Addr::LOCALHOST)
    }

    /// Adds CRD files or directories.
    pub fn crds<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        self.crds.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Adds a namespace to create.
    pub fn namespace(mut self, name: impl Into<String>) -> Self {
        self.namespaces.push(name.into());
        self
    }
}

/// A running control plane. Stop it with [`ControlPlane::stop`]; dropping it kills the
/// processes by pid and keeps their logs.
pub struct ControlPlane {
    run: RunDir,
    server: String,
    kubeconfig: PathBuf,
    client: Client,
    /// etcd, kube-apiserver, kube-controller-manager, in that order.
    processes: Mutex<Vec<Process>>,
    finished: AtomicBool,
    /// What [`ControlPlane::start_again`] needs to start a component as it was.
    options: ControlPlaneOptions,
    ports: Ports,
    keys: ServiceAccountKeys,
}

/// A component of the control plane that a fault trial kills and starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Etcd,
    ApiServer,
}

impl Component {
    fn index(self) -> usize {
        match self {
            Self::Etcd => 0,
            Self::ApiServer => 1,
        }
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("kubeconfig", &self.kubeconfig)
            .field("run_dir", &self.run.path())
            .finish_non_exhaustive()
    }
}

/// Ports of one control plane.
#[derive(Debug, Clone, Copy)]
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    controller_manager: u16,
}

/// What start-up produces besides the processes.
struct Booted {
    server: String,
    kubeconfig: PathBuf,
    client: Client,
    ports: Ports,
    keys: ServiceAccountKeys,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver, installs the CRDs, creates the namespaces, then
    /// starts kube-controller-manager, waiting for each to be ready. On failure every
    /// started process is stopped and the logs are kept (the error names where).
    pub async fn start(options: ControlPlaneOptions) -> Result<Self> {
        let run = match &options.run_dir {
            Some(dir) => RunDir::persistent(dir)?,
            None => RunDir::temporary("hostrouter-e2e")?,
        };
        let mut processes = Vec::new();
        match boot(&options, &run, &mut processes).await {
            Ok(booted) => Ok(Self {
                run,
                server: booted.server,
                kubeconfig: booted.kubeconfig,
                client: booted.client,
                processes: Mutex::new(processes),
                finished: AtomicBool::new(false),
                options,
                ports: booted.ports,
                keys: booted.keys,
            }),
            Err(err) => {
                for process in processes.iter_mut().rev() {
                    if let Err(stop_err) = process.stop(DEFAULT_GRACE).await {
                        tracing::warn!("stopping {}: {stop_err:#}", process.name());
                    }
                }
                let kept = match run.keep_logs() {
                    Ok(dir) => dir.display().to_string(),
                    Err(keep_err) => format!("not kept: {keep_err:#}"),
                };
                if let Err(remove_err) = run.remove() {
                    tracing::warn!("{remove_err:#}");
                }
                Err(err.context(format!("starting the control plane (logs: {kept})")))
            }
        }
    }

    /// An admin client (member of `system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin kubeconfig.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Whether its processes were started to outlive this program (see [`ControlPlane::detach`]).
    pub fn is_detached(&self) -> bool {
        self.options.detached
    }

    /// The API server's URL, `https://127.0.0.1:<port>` (the node's address with a node).
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// The run directory (etcd data, certificates, kubeconfigs, logs).
    pub fn run_dir(&self) -> &Path {
        self.run.path()
    }

    /// The directory of the process logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.run.logs_dir()
    }

    /// `kubectl` as admin, ready to be given arguments, stdin or a timeout.
    pub fn kubectl_command(&self) -> Result<ToolCommand> {
        Ok(ToolCommand::new(toolchain::kubectl()?).env("KUBECONFIG", &self.kubeconfig))
    }

    /// Runs `kubectl <args>` as admin and returns its stdout.
    pub async fn kubectl<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.kubectl_command()?.args(args).run().await
    }

    /// `helm` (from `$HELM`) as admin, with its cache, config and data kept in the run
    /// directory.
    pub fn helm_command(&self) -> Result<ToolCommand> {
        helm_with(&self.kubeconfig, &self.run.subdir("helm")?)
    }

    /// Runs `helm <args>` as admin and returns its stdout.
    pub async fn helm<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.helm_command()?.args(args).run().await
    }

    /// Writes a kubeconfig that authenticates as the service account `namespace/name`
    /// (which must exist) with a 24-hour token from the TokenRequest API, and returns
    /// its path. Run the operator with it to exercise the RBAC the chart grants.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            metadata: ObjectMeta::default(),
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(SERVICE_ACCOUNT_TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            }),
            status: None,
        };
        let response = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| {
                format!("requesting a token for service account {namespace}/{name}")
            })?;
        let token = response
            .status
            .and_then(|status| status.token)
            .context("TokenRequest response has no token")?;
        let path = self
            .run
            .subdir("kubeconfigs")?
            .join(format!("{namespace}.{name}.kubeconfig"));
        let user = format!("system:serviceaccount:{namespace}:{name}");
        TokenKubeconfig {
            server: &self.server,
            ca_pem: &std::fs::read(self.ca_path())?,
            user: &user,
            token: &token,
        }
        .write(&path)?;
        Ok(path)
    }

    /// Installs more CRDs (and waits until Established). The garbage collector learns
    /// of types installed after start-up only at its next discovery (within 30 s).
    pub async fn install_crds(&self, paths: &[PathBuf]) -> Result<usize> {
        crate::crds::install_paths(&self.client, paths).await
    }

    /// Stops a control plane a trial started for itself once the trial is over, keeping (and
    /// naming) its logs when `result` is a failure; returns `result`.
    pub async fn stop_after<T>(&self, trial: &str, result: Result<T>) -> Result<T> {
        if let Some(dir) = self.stop(result.is_err()).await? {
            eprintln!("{trial}: control plane logs kept in {}", dir.display());
        }
        result
    }

    /// Kills a component (SIGKILL: no clean shutdown) and waits until it is gone.
    pub async fn kill(&self, component: Component) -> Result<()> {
        let mut processes = self.processes.lock().await;
        let process = processes
            .get_mut(component.index())
            .context("the control plane has no such process")?;
        process.signal(nix::sys::signal::Signal::SIGKILL)?;
        process.wait().await?;
        Ok(())
    }

    /// Starts a killed component again, as it was (same ports, data and certificates), and
    /// waits until it serves.
    pub async fn start_again(&self, component: Component) -> Result<()> {
        let mut processes = self.processes.lock().await;
        let i = component.index();
        let process = match component {
            Component::Etcd => start_etcd(&self.options, &self.run, self.ports)?,
            Component::ApiServer => {
                start_apiserver(&self.options, &self.run, self.ports, &self.keys)?
            }
        };
        *processes
            .get_mut(i)
            .context("the control plane has no such process")? = process;
        let timeout = self.options.startup_timeout;
        match component {
            Component::Etcd => {
                wait_for_port("etcd", &processes[i], self.ports.etcd_client, timeout).await
            }
            Component::ApiServer => {
                wait_for_health(
                    "kube-apiserver /readyz",
                    &processes[i],
                    &self.client,
                    "/readyz",
                    timeout,
                )
                .await
            }
        }
    }

    /// The name and pid of each control-plane process, in start order (etcd, kube-apiserver,
    /// kube-controller-manager): to read what they cost from `/proc`.
    pub async fn pids(&self) -> Vec<(String, u32)> {
        self.processes
            .lock()
            .await
            .iter()
            .map(|p| (p.name().to_owned(), p.pid()))
            .collect()
    }

    /// Fails with the log tail of the first control-plane process that has exited.
    pub async fn ensure_running(&self) -> Result<()> {
        for process in self.processes.lock().await.iter() {
            process.ensure_running()?;
        }
        Ok(())
    }

    /// Stops the processes (SIGTERM, then SIGKILL after a grace period), keeps the logs
    /// if `keep_logs` (returning where), and removes a temporary run directory.
    pub async fn stop(&self, keep_logs: bool) -> Result<Option<PathBuf>> {
        if self.finished.swap(true, Ordering::SeqCst) {
            return Ok(None);
        }
        let mut processes = self.processes.lock().await;
        let mut first_error = None;
        while let Some(mut process) = processes.pop() {
            if let Err(err) = process.stop(DEFAULT_GRACE).await {
                first_error.get_or_insert(err.context(format!("stopping {}", process.name())));
            }
        }
        let kept = if keep_logs {
            Some(self.run.keep_logs()?)
        } else {
            None
        };
        self.run.remove()?;
        match first_error {
            Some(err) => Err(err),
            None => Ok(kept),
        }
    }

    /// Leaves the processes running (they must have been started with
    /// [`ControlPlaneOptions::detached`]) and returns how to find them again.
    pub fn detach(self) -> Result<DetachedControlPlane> {
        self.finished.store(true, Ordering::SeqCst);
        let processes = std::mem::take(&mut *self.processes.try_lock()?);
        Ok(DetachedControlPlane {
            run_dir: self.run.path().to_owned(),
            server: self.server.clone(),
            kubeconfig: self.kubeconfig.clone(),
            processes: processes.into_iter().map(Process::detach).collect(),
        })
    }

    fn ca_path(&self) -> PathBuf {
        apiserver_cert(self.run.path())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        // Not stopped: a panic or an early return. Kill by pid, keep the logs.
        for mut process in self.processes.get_mut().drain(..).rev() {
            process.kill_blocking(Duration::from_secs(5));
        }
        match self.run.keep_logs() {
            Ok(dir) => eprintln!(
                "control plane dropped without stop(); logs kept in {}",
                dir.display()
            ),
            Err(err) => eprintln!("control plane dropped without stop(); logs not kept: {err:#}"),
        }
        if let Err(err) = self.run.remove() {
            eprintln!("{err:#}");
        }
    }
}

/// A control plane left running by [`ControlPlane::detach`] (the dev cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedControlPlane {
    /// Its run directory.
    pub run_dir: PathBuf,
    /// The API server's URL.
    pub server: String,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Its processes, in start order.
    pub processes: Vec<DetachedProcess>,
}

impl DetachedControlPlane {
    /// Stops every process still running, last started first.
    pub async fn stop(&self) -> Result<()> {
        for process in self.processes.iter().rev() {
            process
                .stop(DEFAULT_GRACE)
                .await
                .with_context(|| format!("stopping {}", process.name))?;
        }
        Ok(())
    }
}

/// `helm` (from `$HELM`) with `kubeconfig`, its cache, config and data kept in `home`.
pub fn helm_with(kubeconfig: &Path, home: &Path) -> Result<ToolCommand> {
    Ok(ToolCommand::new(toolchain::tool(vars::HELM)?)
        .env("KUBECONFIG", kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data")))
}

/// kube-apiserver's self-signed serving certificate (with the CA that signs it), which
/// it generates in its `--cert-dir`.
fn apiserver_cert(run_dir: &Path) -> PathBuf {
    run_dir.join("pki/apiserver/apiserver.crt")
}

async fn boot(
    options: &ControlPlaneOptions,
    run: &RunDir,
    processes: &mut Vec<Process>,
) -> Result<Booted> {
    // Read the CRDs first: a broken manifest should fail before anything starts.
    let crds = crate::crds::load(&options.crds)?;
    let [etcd_client, etcd_peer, apiserver, controller_manager] = free_ports(4)?[..] else {
        unreachable!("free_ports(4) returns four ports")
    };
    let ports = Ports {
        etcd_client,
        etcd_peer,
        apiserver,
        controller_manager,
    };
    let pki = run.subdir("pki")?;
    let keys = generate_service_account_keys(&pki).await?;
    let token = random_token()?;
    write_token_file(&pki.join("tokens.csv"), &token)?;

    processes.push(start_etcd(options, run, ports)?);
    wait_for_port(
        "etcd",
        &processes[0],
        ports.etcd_client,
        options.startup_timeout,
    )
    .await?;

    processes.push(start_apiserver(options, run, ports, &keys)?);
    let server = format!("https://{}:{}", options.address(), ports.apiserver);
    let kubeconfig = run.path().join("kubeconfig");
    let ca_pem = wait_for_file(
        &processes[1],
        &apiserver_cert(run.path()),
        options.startup_timeout,
    )
    .await?;
    TokenKubeconfig {
        server: &server,
        ca_pem: &ca_pem,
        user: ADMIN_USER,
        token: &token,
    }
    .write(&kubeconfig)?;
    let client = client_from(&kubeconfig).await?;
    wait_for_health(
        "kube-apiserver /readyz",
        &processes[1],
        &client,
        "/readyz",
        options.startup_timeout,
    )
    .await?;
    wait_for_namespace(&client, "default", options.startup_timeout).await?;

    crate::crds::install(&client, &crds).await?;
    tracing::info!("installed {} CRDs", crds.len());
    for namespace in &options.namespaces {
        create_namespace(&client, namespace).await?;
    }

    processes.push(start_controller_manager(options, run, ports, &kubeconfig)?);
    let health_client =
        insecure_client(&format!("https://127.0.0.1:{}", ports.controller_manager))?;
    wait_for_health(
        "kube-controller-manager /healthz",
        &processes[2],
        &health_client,
        "/healthz",
        options.startup_timeout,
    )
    .await?;

    if options.node_address.is_some() {
        let port = free_ports(1)?[0];
        processes.push(start_scheduler(options, run, port, &kubeconfig)?);
        let health_client = insecure_client(&format!("https://127.0.0.1:{port}"))?;
        wait_for_health(
            "kube-scheduler /healthz",
            &processes[3],
            &health_client,
            "/healthz",
            options.startup_timeout,
        )
        .await?;
    }

    Ok(Booted {
        server,
        kubeconfig,
        client,
        ports,
        keys,
    })
}

fn start_etcd(options: &ControlPlaneOptions, run: &RunDir, ports: Ports) -> Result<Process> {
    let client_url = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer_url = format!("http://127.0.0.1:{}", ports.etcd_peer);
    ProcessBuilder::new("etcd", &options.binaries.etcd, run.logs_dir())
        .detached(options.detached)
        .args([
            "--name=e2e".to_owned(),
            format!("--data-dir={}", run.path().join("etcd").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=e2e={peer_url}"),
            "--unsafe-no-fsync".to_owned(),
            "--log-level=warn".to_owned(),
        ])
        .spawn()
}

fn start_apiserver(
    options: &ControlPlaneOptions,
    run: &RunDir,
    ports: Ports,
    keys: &ServiceAccountKeys,
) -> Result<Process> {
    let pki = run.path().join("pki");
    ProcessBuilder::new(
        "kube-apiserver",
        &options.binaries.kube_apiserver,
        run.logs_dir(),
    )
    .detached(options.detached)
    .args([
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        format!("--bind-address={}", options.address()),
        format!("--advertise-address={}", options.address()),
        format!("--secure-port={}", ports.apiserver),
        format!("--cert-dir={}", pki.join("apiserver").display()),
        format!("--token-auth-file={}", pki.join("tokens.csv").display()),
        "--authorization-mode=RBAC".to_owned(),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        format!("--service-account-key-file={}", keys.public_key.display()),
        format!(
            "--service-account-signing-key-file={}",
            keys.private_key.display()
        ),
        format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
        "--allow-privileged=true".to_owned(),
        "--profiling=false".to_owned(),
    ])
    .args(match options.node_address {
        // The `kubernetes` Service's endpoint is the advertised address, where the node's
        // relay listens; Pods get ServiceAccount tokens.
        Some(_) => vec!["--endpoint-reconciler-type=lease".to_owned()],
        // No kubelets and a loopback advertise address: nothing to reconcile the `kubernetes`
        // Service's endpoints to, and no Pod ever runs.
        None => vec![
            "--endpoint-reconciler-type=none".to_owned(),
            "--disable-admission-plugins=ServiceAccount".to_owned(),
        ],
    })
    .args(&options.apiserver_args)
    .spawn()
}

fn start_controller_manager(
    options: &ControlPlaneOptions,
    run: &RunDir,
    ports: Ports,
    kubeconfig: &Path,
) -> Result<Process> {
    ProcessBuilder::new(
        "kube-controller-manager",
        &options.binaries.kube_controller_manager,
        run.logs_dir(),
    )
    .detached(options.detached)
    .args(component_args(kubeconfig))
    .args([
        format!("--controllers={}", options.controllers.join(",")),
        "--leader-elect=false".to_owned(),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={}", ports.controller_manager),
        format!(
            "--cert-dir={}",
            run.path().join("pki/controller-manager").display()
        ),
        "--use-service-account-credentials=false".to_owned(),
        // For the kube-root-ca.crt ConfigMap of every namespace: the CA Pods trust the API
        // server with.
        format!("--root-ca-file={}", apiserver_cert(run.path()).display()),
        "--profiling=false".to_owned(),
    ])
    .spawn()
}

fn start_scheduler(
    options: &ControlPlaneOptions,
    run: &RunDir,
    port: u16,
    kubeconfig: &Path,
) -> Result<Process> {
    ProcessBuilder::new(
        "kube-scheduler",
        &options.binaries.kube_scheduler()?,
        run.logs_dir(),
    )
    .detached(options.detached)
    .args(component_args(kubeconfig))
    .args([
        "--leader-elect=false".to_owned(),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        "--profiling=false".to_owned(),
    ])
    .spawn()
}

/// The API server access of kube-controller-manager and kube-scheduler: `kubeconfig` for
/// everything; their own endpoints only serve health checks, so no client CA to look up.
fn component_args(kubeconfig: &Path) -> [String; 4] {
    let kubeconfig = kubeconfig.display();
    [
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--authentication-skip-lookup=true".to_owned(),
    ]
}

/// A client for a component's own HTTPS endpoint: self-signed certificate, anonymous.
fn insecure_client(url: &str) -> Result<Client> {
    let mut config = kube::Config::new(url.parse().with_context(|| format!("parsing {url}"))?);
    config.accept_invalid_certs = true;
    Client::try_from(config).context("building a client")
}

async fn wait_for_port(what: &str, process: &Process, port: u16, timeout: Duration) -> Result<()> {
    wait_until(
        &format!("{what} to listen on 127.0.0.1:{port}"),
        timeout,
        || async {
            if let Err(err) = process.ensure_running() {
                return Ok(Progress::Abort(format!("{err:#}")));
            }
            Ok(match TcpStream::connect(("127.0.0.1", port)).await {
                Ok(_) => Progress::Done(()),
                Err(err) => Progress::Pending(err.to_string()),
            })
        },
    )
    .await
}

async fn wait_for_file(process: &Process, path: &Path, timeout: Duration) -> Result<Vec<u8>> {
    wait_until(
        &format!("{} to write {}", process.name(), path.display()),
        timeout,
        || async {
            if let Err(err) = process.ensure_running() {
                return Ok(Progress::Abort(format!("{err:#}")));
            }
            Ok(match tokio::fs::read(path).await {
                Ok(pem) if pem.ends_with(b"-----END CERTIFICATE-----\n") => Progress::Done(pem),
                Ok(_) => Progress::Pending("partly written".into()),
                Err(err) => Progress::Pending(err.to_string()),
            })
        },
    )
    .await
}

async fn wait_for_health(
    what: &str,
    process: &Process,
    client: &Client,
    path: &str,
    timeout: Duration,
) -> Result<()> {
    wait_until(what, timeout, || async {
        if let Err(err) = process.ensure_running() {
            return Ok(Progress::Abort(format!("{err:#}")));
        }
        let request = http::Request::get(path).body(Vec::new())?;
        let body = client.request_text(request).await?;
        Ok(if body.trim() == "ok" {
            Progress::Done(())
        } else {
            Progress::Pending(body)
        })
    })
    .await
}

async fn wait_for_namespace(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    wait_until(&format!("namespace {name} to exist"), timeout, || async {
        Ok(match api.get_opt(name).await? {
            Some(_) => Progress::Done(()),
            None => Progress::Pending("not found".into()),
        })
    })
    .await
}

/// Creates namespace `name` unless it exists.
async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}
