//! The development cluster behind `make demo`: a control plane left running in the
//! background, whose processes and kubeconfig are recorded in
//! `<dir>/state.json` so that `down` ends exactly those processes.
//!
//! The directory is `$DEV_CLUSTER_DIR`, else `$CACHE/dev-cluster`, else
//! `~/.cache/hostrouter/dev-cluster`.
//!
//! On top of the cluster, [`DevCluster::demo_up`] starts the demo's processes — Gloo, the
//! operator, the petstore backend and Envoy — detached, and records them (and the address it
//! added to `lo`) in `<dir>/demo.json`; [`DevCluster::down`] stops those first.

use crate::resources::routers;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backends;
use crate::control_plane::{ControlPlane, ControlPlaneOptions, DetachedControlPlane, helm_with};
use crate::envoy;
use crate::gloo::{self, GlooConfig};
use crate::kubeconfig::client_from;
use crate::loopback::{self, LoopbackAlias};
use crate::net::{LOOPBACK, free_port};
use crate::node::network::HOST_IP;
use crate::node::workloads::{apply_petstore, install_operator, wait_pets, wait_router_ready};
use crate::node::{DetachedNodeCluster, NodeCluster, envoy_gateway};
use crate::process::Running;
use crate::process::{DEFAULT_GRACE, DetachedProcess, ProcessBuilder};
use crate::toolchain::{tool, vars, workspace_root};
use crate::wait::{Progress, wait_until};

/// Environment variable naming the dev cluster's directory.
pub const DIR_VAR: &str = "DEV_CLUSTER_DIR";
/// The state file inside the directory.
pub const STATE_FILE: &str = "state.json";
/// The demo's state file inside the directory.
pub const DEMO_FILE: &str = "demo.json";
/// Gloo's namespace in the demo (the operator's default).
pub const DEMO_GLOO_NAMESPACE: &str = "gloo-system";
/// The address the demo's backends bind, added to `lo` (TEST-NET-2, RFC 5737).
pub const DEMO_BACKEND_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// The sample HostRouter the demo applies, and what it is called.
pub const DEMO_ROUTER_FILE: &str = "config/samples/hostrouter_v1alpha1_hostrouter.yaml";
/// The node's record inside the directory, when the cluster has a node.
pub const NODE_FILE: &str = "node.json";
/// Why the cluster has no node, when it has none.
pub const NO_NODE_FILE: &str = "no-node.txt";
/// Set to `0` to run the demo's Envoy as a local process even where a node can start.
pub const DEMO_NODE_VAR: &str = "HOSTROUTER_DEMO_NODE";
/// Set to `gateway-api` to add, on a node, the sample router on the Gateway API backend served
/// by Envoy Gateway.
pub const DEMO_BACKEND_VAR: &str = "HOSTROUTER_DEMO_BACKEND";
/// The sample HostRouter on the Gateway API backend.
pub const DEMO_GATEWAY_ROUTER_FILE: &str = "config/samples/hostrouter_gateway_api.yaml";

/// The demo's processes and what it changed on the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demo {
    /// Gloo, the operator, the backend and Envoy, in start order.
    pub processes: Vec<DetachedProcess>,
    /// The address added to `lo`, if the demo added it (removed by `down`).
    pub loopback_address: Option<Ipv4Addr>,
    /// Envoy's listener (`127.0.0.1:<port>`).
    pub listener: String,
    /// The Host header that reaches the petstore.
    pub petstore_host: String,
    /// Whether `demo-up` finished (the petstore answered through Envoy).
    #[serde(default)]
    pub ready: bool,
    /// Whether the operator, Envoy and the petstore run as Pods on the node (`listener` is then
    /// the Envoy Service's ClusterIP).
    #[serde(default)]
    pub on_node: bool,
    /// With `HOSTROUTER_DEMO_BACKEND=gateway-api` on a node: the Gateway of the sample router on
    /// the Gateway API backend (`<address>:<port>`), served by Envoy Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_listener: Option<String>,
}

/// The dev cluster's directory (see the module documentation).
pub fn default_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(DIR_VAR) {
        return Ok(dir.into());
    }
    if let Some(cache) = std::env::var_os("CACHE") {
        return Ok(Path::new(&cache).join("dev-cluster"));
    }
    let home =
        std::env::var_os("HOME").context("neither DEV_CLUSTER_DIR, CACHE nor HOME is set")?;
    Ok(Path::new(&home).join(".cache/hostrouter/dev-cluster"))
}

/// What `up` did.
#[derive(Debug)]
pub enum Up {
    /// A cluster recorded in the directory was already running.
    AlreadyUp(DetachedControlPlane),
    /// A new cluster was started.
    Started(DetachedControlPlane),
}

/// What `status` found.
#[derive(Debug)]
pub struct Status {
    /// The recorded cluster.
    pub cluster: DetachedControlPlane,
    /// Each process's name, pid and whether it runs (the control plane's, then the node's).
    pub processes: Vec<(String, u32, bool)>,
    /// The API server's `/readyz`, or why it could not be read.
    pub readyz: Result<String, String>,
    /// Number of CRDs served, if the API server answered.
    pub crds: Option<usize>,
}

/// The dev cluster recorded in one directory.
#[derive(Debug, Clone)]
pub struct DevCluster {
    dir: PathBuf,
}

impl DevCluster {
    /// The dev cluster of `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the admin kubeconfig is (once up).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The recorded cluster, if any.
    pub fn state(&self) -> Result<Option<DetachedControlPlane>> {
        read_record(&self.state_path())
    }

    /// The recorded node, if the cluster has one.
    pub fn node(&self) -> Result<Option<DetachedNodeCluster>> {
        read_record(&self.dir.join(NODE_FILE))
    }

    /// Why the recorded cluster has no node, if it has none.
    pub fn why_no_node(&self) -> Option<String> {
        fs::read_to_string(self.dir.join(NO_NODE_FILE)).ok()
    }

    /// Starts the cluster unless the recorded one is running. A partly running one
    /// (some process died) is stopped and replaced. With a node where one can start here
    /// (and `HOSTROUTER_DEMO_NODE` is not `0`): the control plane of [`NodeCluster`] and its
    /// node, importing `images`; where it cannot, a plain control plane, and the reason is
    /// recorded ([`DevCluster::why_no_node`]).
    pub async fn up(&self, options: ControlPlaneOptions, images: &[PathBuf]) -> Result<Up> {
        if let Some(state) = self.state()? {
            let node_runs = self
                .node()?
                .is_none_or(|n| n.node.processes.iter().all(|p| p.is_running()));
            if node_runs && state.processes.iter().all(|p| p.is_running()) {
                return Ok(Up::AlreadyUp(state));
            }
            tracing::warn!("the recorded dev cluster is only partly running: replacing it");
            self.stop_recorded().await?;
        }
        self.remove_dir()?;
        let options = ControlPlaneOptions {
            run_dir: Some(self.dir.clone()),
            detached: true,
            ..options
        };
        let why_not = if std::env::var(DEMO_NODE_VAR).as_deref() == Ok("0") {
            Some(format!("{DEMO_NODE_VAR}=0"))
        } else {
            crate::node::unavailable()
        };
        let why_not = match why_not {
            Some(reason) => reason,
            None => match NodeCluster::start(options.clone(), images).await {
                Ok(lab) => {
                    let lab = lab.detach()?;
                    fs::write(self.dir.join(NODE_FILE), serde_json::to_vec_pretty(&lab)?)?;
                    self.write_state(&lab.cluster)?;
                    return Ok(Up::Started(lab.cluster));
                }
                Err(e) => format!("{e:#}"),
            },
        };
        eprintln!("no node here ({why_not}): Envoy will run as a local process");
        self.remove_dir()?;
        let detached = ControlPlane::start(options).await?.detach()?;
        self.write_state(&detached)?;
        fs::write(self.dir.join(NO_NODE_FILE), &why_not)?;
        Ok(Up::Started(detached))
    }

    fn remove_dir(&self) -> Result<()> {
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing stale {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// Stops what is recorded: the demo's processes, the node (with its control plane and
    /// network) or the control plane.
    async fn stop_recorded(&self) -> Result<bool> {
        if let Some(demo) = self.demo()? {
            stop_demo(&demo).await?;
        }
        if let Some(node) = self.node()? {
            node.stop().await?;
            return Ok(true);
        }
        let Some(state) = self.state()? else {
            return Ok(false);
        };
        state.stop().await?;
        Ok(true)
    }

    /// Stops the recorded processes (only those: pid and start time must match) — the
    /// demo's first, then the node's — removes the address the demo added to `lo` and the
    /// node's network, and removes the directory. Returns whether there was a recorded
    /// cluster.
    pub async fn down(&self) -> Result<bool> {
        if !self.stop_recorded().await? {
            return Ok(false);
        }
        fs::remove_dir_all(&self.dir)
            .with_context(|| format!("removing {}", self.dir.display()))?;
        Ok(true)
    }

    /// The recorded cluster and how it is doing, or `None` if there is none.
    pub async fn status(&self) -> Result<Option<Status>> {
        let Some(cluster) = self.state()? else {
            return Ok(None);
        };
        let node = self.node()?;
        let node_processes = node.iter().flat_map(|n| n.node.processes.iter());
        let processes = cluster
            .processes
            .iter()
            .chain(node_processes)
            .map(|p| (p.name.clone(), p.pid, p.is_running()))
            .collect();
        let (readyz, crds) = match client_from(&cluster.kubeconfig).await {
            Ok(client) => {
                let readyz = match http::Request::get("/readyz").body(Vec::new()) {
                    Ok(request) => client
                        .request_text(request)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(err) => Err(err.to_string()),
                };
                let crds = Api::<CustomResourceDefinition>::all(client)
                    .list_metadata(&ListParams::default())
                    .await
                    .ok()
                    .map(|list| list.items.len());
                (readyz, crds)
            }
            Err(err) => (Err(format!("{err:#}")), None),
        };
        Ok(Some(Status {
            cluster,
            processes,
            readyz,
            crds,
        }))
    }

    /// The recorded demo, if any.
    pub fn demo(&self) -> Result<Option<Demo>> {
        read_record(&self.dir.join(DEMO_FILE))
    }

    /// Starts the demo on the running cluster (no-op if it runs): Gloo in `gloo-system`
    /// (Settings and the `gloo` Service first), the operator, the petstore backend on
    /// [`DEMO_BACKEND_IP`] with Endpoints for `default/petstore` (the Service comes from
    /// `config/samples/demo-services.yaml`, applied before), the sample HostRouter bound to
    /// 127.0.0.1, and Envoy from the generated Deployment and ConfigMap. Waits until the
    /// petstore answers through Envoy. `backend_program` runs `<program> serve-backend <name>
    /// <ip:port>`.
    pub async fn demo_up(&self, backend_program: &Path) -> Result<(Demo, bool)> {
        let state = self
            .state()?
            .context("no dev cluster: run `dev-cluster up` first")?;
        let client = client_from(&state.kubeconfig).await?;
        if self.node()?.is_some() {
            return self.demo_up_on_node(&state, &client, backend_program).await;
        }
        // Gloo resolves a Service with a selector only to Endpoints addresses of running Pods
        // ("running pod not found with IP ..."); there is no kubelet here, so the petstore
        // Service of demo-services.yaml is made selectorless (on every run: re-applying the
        // file brings the selector back).
        Api::<Service>::namespaced(client.clone(), "default")
            .patch(
                "petstore",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"selector": null}})),
            )
            .await
            .context("removing the selector of Service default/petstore (apply config/samples/demo-services.yaml first)")?;
        if let Some(demo) = self.running_demo().await? {
            return Ok((demo, false));
        }
        let logs = self.dir.join("logs").join("demo");
        let mut demo = Demo::new(false);
        // Record every process as soon as it runs, so that `down` finds it if a later step fails.
        let started = async {
            // Gloo.
            Api::<Namespace>::all(client.clone())
                .patch(
                    DEMO_GLOO_NAMESPACE,
                    &PatchParams::apply(gloo::FIELD_MANAGER),
                    &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": DEMO_GLOO_NAMESPACE}})),
                )
                .await?;
            let config = GlooConfig::new(DEMO_GLOO_NAMESPACE)?;
            self.start_gloo(&config, &client, &state.kubeconfig, &logs, &mut demo)
                .await?;

            // The operator, with the admin kubeconfig, managing every HostRouter.
            let operator = ProcessBuilder::new("hostrouter", tool(vars::HOSTROUTER_BIN)?, &logs)
                .arg("run")
                .args(["--http-address", &format!("{LOOPBACK}:{}", free_port()?)])
                .args(config.operator_args())
                .env("KUBECONFIG", &state.kubeconfig)
                .env("NO_COLOR", "1")
                .detached(true)
                .spawn()?
                .detach();
            demo.processes.push(operator.clone());
            self.write_demo(&demo)?;

            // The petstore, on an address the API server accepts in Endpoints.
            let alias = LoopbackAlias::add(DEMO_BACKEND_IP)?;
            let (ip, owned) = alias.keep();
            demo.loopback_address = owned.then_some(ip);
            self.write_demo(&demo)?;
            let backend_port = TcpListener::bind((ip, 0))?.local_addr()?.port();
            let backend_addr = SocketAddr::from((ip, backend_port));
            let backend = ProcessBuilder::new("backend-petstore", backend_program, &logs)
                .args(["serve-backend", "petstore", &backend_addr.to_string()])
                .detached(true)
                .spawn()?
                .detach();
            demo.processes.push(backend.clone());
            self.write_demo(&demo)?;
            backends::apply_endpoints(&client, "default", "petstore", &[("http", backend_addr)])
                .await?;

            // The sample HostRouter, Envoy bound to 127.0.0.1.
            let router = demo_router()?;
            let listener_port = router["spec"]["listener"]["port"].as_u64().unwrap_or(8080);
            let admin_port = router["spec"]["envoy"]["adminPort"]
                .as_u64()
                .unwrap_or(19000);
            routers(&client, "default")
                .patch(
                    "my-cool-proxy",
                    &PatchParams::apply("dev-cluster").force(),
                    &Patch::Apply(&router),
                )
                .await
                .context("applying the sample HostRouter")?;
            let deployments = Api::<Deployment>::namespaced(client.clone(), "default");
            wait_until(
                "the operator to write Deployment default/my-cool-proxy",
                Duration::from_secs(60),
                || async {
                    if let Err(e) = operator.check_running() {
                        return Ok(Progress::Abort(format!("{e:#}")));
                    }
                    Ok(match deployments.get_opt("my-cool-proxy").await? {
                        Some(_) => Progress::Done(()),
                        None => Progress::Pending("no Deployment yet".into()),
                    })
                },
            )
            .await?;
            let envoy = envoy::envoy_command(
                &client,
                "default",
                "my-cool-proxy",
                &self.dir.join("envoy-pod"),
                &logs,
                u32::try_from(admin_port).unwrap_or(19000),
            )
            .await?
            .detached(true)
            .spawn()?
            .detach();
            demo.processes.push(envoy.clone());
            demo.listener = format!("{LOOPBACK}:{listener_port}");
            self.write_demo(&demo)?;
            envoy::wait_http(
                &demo.listener,
                &demo.petstore_host,
                "/api/pets",
                200,
                Duration::from_secs(90),
                &envoy,
            )
            .await?;
            anyhow::Ok(())
        }
        .await;
        self.finish_demo(demo, started)
    }

    /// The demo on the node: Gloo on this machine (xDS on its end of the node's veth), the
    /// petstore as a Pod behind Service `default/petstore`, the operator from the chart, and the
    /// sample HostRouter as it is, whose Envoy Pods answer on the Service's ClusterIP. Waits
    /// until the router is Ready and the petstore answers through the ClusterIP.
    async fn demo_up_on_node(
        &self,
        state: &DetachedControlPlane,
        client: &kube::Client,
        program: &Path,
    ) -> Result<(Demo, bool)> {
        if let Some(demo) = self.running_demo().await? {
            return Ok((demo, false));
        }
        let logs = self.dir.join("logs").join("demo");
        let mut demo = Demo::new(true);
        let started = async {
            let namespaces = Api::<Namespace>::all(client.clone());
            let restricted = json!({"pod-security.kubernetes.io/enforce": "restricted"});
            for (ns, labels) in [
                (DEMO_GLOO_NAMESPACE, json!({})),
                (crate::operator::CHART_NAMESPACE, restricted.clone()),
                ("default", restricted),
            ] {
                namespaces
                    .patch(
                        ns,
                        &PatchParams::apply("dev-cluster").force(),
                        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": ns, "labels": labels}})),
                    )
                    .await?;
            }
            let config = GlooConfig::new(DEMO_GLOO_NAMESPACE)?.at(HOST_IP);
            let gloo = self
                .start_gloo(&config, client, &state.kubeconfig, &logs, &mut demo)
                .await?;

            apply_petstore(client, "default").await?;
            install_operator(
                helm_with(&state.kubeconfig, &self.dir.join("helm"))?,
                DEMO_GLOO_NAMESPACE,
                config.xds_port,
            )
            .await?;
            let router = sample_router()?;
            routers(client, "default")
                .patch(
                    "my-cool-proxy",
                    &PatchParams::apply("dev-cluster").force(),
                    &Patch::Apply(&router),
                )
                .await
                .context("applying the sample HostRouter")?;
            let pods = Duration::from_secs(180);
            let alive = || gloo.check_running();
            wait_router_ready(client, "default", "my-cool-proxy", pods, alive).await?;
            let svc = Api::<Service>::namespaced(client.clone(), "default")
                .get("my-cool-proxy")
                .await?;
            let ip = svc
                .spec
                .and_then(|s| s.cluster_ip)
                .context("Service my-cool-proxy has no ClusterIP")?;
            let port = router["spec"]["listener"]["port"].as_u64().unwrap_or(8080);
            demo.listener = format!("{ip}:{port}");
            self.write_demo(&demo)?;
            wait_pets(&demo.listener, &demo.petstore_host, pods, alive).await?;
            if std::env::var(DEMO_BACKEND_VAR).as_deref() == Ok("gateway-api") {
                let listener = self
                    .demo_gateway_api(state, client, program, &logs, &mut demo)
                    .await?;
                wait_pets(&listener, &demo.petstore_host, pods, alive).await?;
                demo.gateway_listener = Some(listener);
            }
            anyhow::Ok(())
        }
        .await;
        self.finish_demo(demo, started)
    }

    /// Gloo for the demo: its Settings and Service, then Gloo itself, detached and recorded at
    /// once (so that `down` finds it should a later step fail); returns once it serves xDS.
    async fn start_gloo(
        &self,
        config: &GlooConfig,
        client: &kube::Client,
        kubeconfig: &Path,
        logs: &Path,
        demo: &mut Demo,
    ) -> Result<DetachedProcess> {
        config.install(client).await?;
        let gloo = config
            .gloo_command(kubeconfig, logs)?
            .detached(true)
            .spawn()?
            .detach();
        demo.processes.push(gloo.clone());
        self.write_demo(demo)?;
        config.wait_xds(&gloo).await?;
        Ok(gloo)
    }

    /// Ends `demo-up`: the demo is recorded as ready once `started` succeeded; on a failure, says
    /// where the processes started so far are recorded.
    fn finish_demo(&self, mut demo: Demo, started: Result<()>) -> Result<(Demo, bool)> {
        if let Err(err) = started {
            bail!(
                "{err:#}\nthe demo's processes so far are recorded in {}; `make demo-down` stops them",
                self.dir.join(DEMO_FILE).display()
            );
        }
        demo.ready = true;
        self.write_demo(&demo)?;
        Ok((demo, true))
    }

    fn write_demo(&self, demo: &Demo) -> Result<()> {
        let path = self.dir.join(DEMO_FILE);
        fs::write(&path, serde_json::to_vec_pretty(demo)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    fn write_state(&self, state: &DetachedControlPlane) -> Result<()> {
        let path = self.state_path();
        let temporary = path.with_extension("json.tmp");
        fs::write(&temporary, serde_json::to_vec_pretty(state)?)
            .with_context(|| format!("writing {}", temporary.display()))?;
        fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))
    }
}

/// Stops the demo's processes (last started first) and removes the address it added to `lo`.
async fn stop_demo(demo: &Demo) -> Result<()> {
    for process in demo.processes.iter().rev() {
        process
            .stop(DEFAULT_GRACE)
            .await
            .with_context(|| format!("stopping {}", process.name))?;
    }
    if let Some(ip) = demo.loopback_address {
        loopback::remove_loopback_address(ip)?;
    }
    Ok(())
}

/// The sample HostRouter, as the file says.
impl Demo {
    /// A demo about to start, nothing running yet.
    fn new(on_node: bool) -> Self {
        Self {
            processes: Vec::new(),
            loopback_address: None,
            listener: String::new(),
            petstore_host: "default-petstore-8080".into(),
            ready: false,
            on_node,
            gateway_listener: None,
        }
    }
}

impl DevCluster {
    /// The recorded demo when all of it runs and the petstore answers through it; one that is
    /// only partly running is stopped and forgotten.
    async fn running_demo(&self) -> Result<Option<Demo>> {
        let Some(demo) = self.demo()? else {
            return Ok(None);
        };
        if demo.ready && demo.processes.iter().all(|p| p.is_running()) {
            let alive = || demo.processes.iter().try_for_each(|p| p.check_running());
            wait_pets(
                &demo.listener,
                &demo.petstore_host,
                Duration::from_secs(30),
                alive,
            )
            .await?;
            return Ok(Some(demo));
        }
        tracing::warn!("the recorded demo is not (fully) running: replacing it");
        stop_demo(&demo).await?;
        fs::remove_file(self.dir.join(DEMO_FILE))?;
        Ok(None)
    }

    /// The Gateway API path of the demo: the lab's cluster DNS (this program's `serve-dns`,
    /// detached), Envoy Gateway from its chart, and the sample router on the Gateway API
    /// backend; returns its Gateway's `<address>:<port>` once the router is Ready.
    async fn demo_gateway_api(
        &self,
        state: &DetachedControlPlane,
        client: &kube::Client,
        program: &Path,
        logs: &Path,
        demo: &mut Demo,
    ) -> Result<String> {
        let dns = ProcessBuilder::new("cluster-dns", program, logs)
            .arg("serve-dns")
            .arg(format!("{HOST_IP}:53"))
            .env("KUBECONFIG", &state.kubeconfig)
            .detached(true)
            .spawn()?
            .detach();
        demo.processes.push(dns.clone());
        self.write_demo(demo)?;
        let pods = Duration::from_secs(240);
        envoy_gateway::install_with(
            helm_with(&state.kubeconfig, &self.dir.join("helm"))?,
            client,
            pods,
        )
        .await?;
        let path = workspace_root().join(DEMO_GATEWAY_ROUTER_FILE);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let router: serde_json::Value = serde_yaml::from_str(&text)?;
        let name = router["metadata"]["name"]
            .as_str()
            .context("the Gateway API sample has no name")?
            .to_owned();
        routers(client, "default")
            .patch(
                &name,
                &PatchParams::apply("dev-cluster").force(),
                &Patch::Apply(&router),
            )
            .await
            .context("applying the Gateway API sample HostRouter")?;
        wait_router_ready(client, "default", &name, pods, || dns.check_running()).await?;
        let gateway = crate::resources::gateways(client, "default")
            .get(&name)
            .await?;
        let address = gateway.data["status"]["addresses"][0]["value"]
            .as_str()
            .context("the Gateway has no address")?;
        let port = router["spec"]["listener"]["port"].as_u64().unwrap_or(8080);
        Ok(format!("{address}:{port}"))
    }
}

fn sample_router() -> Result<serde_json::Value> {
    let path = workspace_root().join(DEMO_ROUTER_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_yaml::from_str(&text)?)
}

/// The sample HostRouter, bound to 127.0.0.1 (the demo's Envoy runs on this machine), on port
/// 8080 unless 127.0.0.1:8080 is taken (then a free port), with an admin port of 19000 unless
/// that is taken.
fn demo_router() -> Result<serde_json::Value> {
    let mut router = sample_router()?;
    let free_or = |port: u16| -> Result<u16> {
        match TcpListener::bind((LOOPBACK, port)) {
            Ok(_) => Ok(port),
            Err(_) => {
                let other = free_port()?;
                eprintln!("127.0.0.1:{port} is taken: using port {other} instead");
                Ok(other)
            }
        }
    };
    let listener = router["spec"]["listener"]["port"].as_u64().unwrap_or(8080);
    router["spec"]["listener"]["port"] = json!(free_or(u16::try_from(listener)?)?);
    router["spec"]["listener"]["bindAddress"] = json!("127.0.0.1");
    router["spec"]["envoy"]["adminPort"] = json!(free_or(19000)?);
    Ok(router)
}

/// A JSON record written by `up`/`demo-up`, or `None` when there is none.
fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::DetachedProcess;

    #[tokio::test]
    async fn state_round_trips_and_down_without_state_is_a_no_op() {
        let dir = crate::rundir::RunDir::temporary("hostrouter-e2e-devcluster").unwrap();
        let cluster = DevCluster::new(dir.path().join("dev"));
        assert!(cluster.state().unwrap().is_none());
        assert!(!cluster.down().await.unwrap());

        fs::create_dir_all(cluster.dir()).unwrap();
        let state = DetachedControlPlane {
            run_dir: cluster.dir().to_owned(),
            server: "https://127.0.0.1:1".into(),
            kubeconfig: cluster.kubeconfig_path(),
            processes: vec![DetachedProcess {
                name: "gone".into(),
                pid: u32::MAX - 1,
                start_ticks: 1,
                log_path: "/dev/null".into(),
            }],
        };
        cluster.write_state(&state).unwrap();
        assert_eq!(cluster.state().unwrap(), Some(state));
        assert!(cluster.down().await.unwrap());
        assert!(!cluster.dir().exists());
        dir.remove().unwrap();
    }
}
