//! A real node for the lab: containerd (with runc and the CNI bridge), the kubelet and
//! kube-proxy, in a network namespace of their own ([`network`]), registered with a control
//! plane started for it ([`NodeCluster`]: kube-scheduler, ServiceAccount tokens, the
//! controllers Pods need). Images come from tarballs imported into containerd: no registry is
//! reachable.
//!
//! Teardown leaves nothing behind: the kubelet and kube-proxy stopped by pid, every container
//! killed and deleted through containerd, containerd stopped, every mount under the node's
//! directory unmounted, the network namespace (bridge, routes, iptables rules) deleted.

pub mod config;
pub mod dns;
pub mod envoy_gateway;
pub mod network;
pub mod teardown;
pub mod workloads;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::Client;
use kube::api::Api;

use crate::control_plane::{ControlPlane, ControlPlaneOptions, SERVICE_CLUSTER_IP_RANGE};
use serde::{Deserialize, Serialize};

use crate::process::{DetachedProcess, Process, ProcessBuilder};
use crate::toolchain::{tool, vars};
use crate::wait::{Progress, wait_until};
use network::{HOST_IP, NODE_IP, NodeNetwork};

/// The node's name.
pub const NODE_NAME: &str = "hostrouter-lab";

/// The node's addresses are fixed: one node at a time per machine. Trials that start one hold
/// this for as long as it runs.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    NODE.lock().await
}
/// How long the node may take to become Ready.
const NODE_READY: Duration = Duration::from_secs(120);
/// The controllers a node's Pods need, besides the garbage collector and the namespace
/// controller: Deployments and ReplicaSets make Pods, Endpoints and EndpointSlices follow them
/// (Gloo reads Endpoints, kube-proxy EndpointSlices), every namespace gets its `default`
/// ServiceAccount and the CA its Pods trust the API server with, and the node loses its
/// `not-ready` taint once Ready (node lifecycle), and Jobs run to completion (Envoy Gateway's
/// certificate generator is one); the Endpoints the lab writes for backends on this machine are
/// mirrored to EndpointSlices (Envoy Gateway reads those).
const NODE_CONTROLLERS: [&str; 12] = [
    "node-lifecycle-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    "job-controller",
    "endpointslice-mirroring-controller",
];

/// The programs a node runs, from the toolchain.
#[derive(Clone, Debug)]
pub struct NodeTools {
    pub kubelet: PathBuf,
    pub kube_proxy: PathBuf,
    pub containerd_dir: PathBuf,
    pub runc: PathBuf,
    pub cni_bin_dir: PathBuf,
    /// Unpacked Debian packages: iptables and conntrack, and the libraries they load.
    pub debs_root: PathBuf,
}

impl NodeTools {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            kubelet: tool(vars::KUBELET)?,
            kube_proxy: tool(vars::KUBE_PROXY)?,
            containerd_dir: tool(vars::CONTAINERD_DIR)?,
            runc: tool(vars::RUNC)?,
            cni_bin_dir: tool(vars::CNI_BIN_DIR)?,
            debs_root: tool(vars::NODE_DEBS_ROOT)?,
        })
    }

    fn ctr(&self) -> PathBuf {
        self.containerd_dir.join("ctr")
    }

    /// The libraries of the unpacked packages (`LD_LIBRARY_PATH`; `xtables` holds iptables'
    /// extensions).
    fn debs_lib(&self) -> PathBuf {
        self.debs_root.join("usr/lib/x86_64-linux-gnu")
    }
}

/// Why a node cannot run on this machine, found before anything is started.
pub fn unavailable() -> Option<String> {
    if let Err(e) = NodeTools::from_env() {
        return Some(format!("{e:#}"));
    }
    if !nix_is_root() {
        return Some("the node needs root (network namespaces, mounts, cgroups)".into());
    }
    if !Path::new("/sys/fs/cgroup/memory").is_dir()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        return Some("no cgroup hierarchy at /sys/fs/cgroup".into());
    }
    None
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A control plane with one real node.
pub struct NodeCluster {
    // Fields drop in order: the node's processes first, the network last.
    node: Node,
    cluster: ControlPlane,
    network: NodeNetwork,
}

impl NodeCluster {
    /// Makes the node's network, starts a control plane for it (`options` with the node's
    /// address and controllers: the API server binds this machine's end of the veth), then
    /// containerd (importing `images`), the kubelet and kube-proxy; waits until the node is
    /// Ready.
    pub async fn start(mut options: ControlPlaneOptions, images: &[PathBuf]) -> Result<Self> {
        let tools = NodeTools::from_env()?;
        let network = NodeNetwork::create(SERVICE_CLUSTER_IP_RANGE)?;
        options.node_address = Some(HOST_IP);
        options.controllers = NODE_CONTROLLERS.map(String::from).to_vec();
        let cluster = ControlPlane::start(options).await?;
        let detached = cluster.is_detached();
        match Node::start(&cluster, &network, tools, images, detached).await {
            Ok(node) => Ok(Self {
                node,
                cluster,
                network,
            }),
            Err(e) => {
                if let Some(dir) = cluster.stop(true).await.ok().flatten() {
                    tracing::warn!("node control plane logs kept in {}", dir.display());
                }
                Err(e)
            }
        }
    }

    pub fn cluster(&self) -> &ControlPlane {
        &self.cluster
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The node's network namespace.
    pub fn network(&self) -> &NodeNetwork {
        &self.network
    }

    /// Stops the node, then the control plane (keeping its logs when `keep_logs`), and removes
    /// the network.
    pub async fn stop(&mut self, keep_logs: bool) -> Result<Option<PathBuf>> {
        self.node.stop().await?;
        let logs = self.cluster.stop(keep_logs).await?;
        self.network.remove()?;
        Ok(logs)
    }

    /// What of the node is still on this machine ([`teardown::leftovers`]): nothing once
    /// [`NodeCluster::stop`] has returned.
    pub fn leftovers(&self) -> Vec<String> {
        teardown::leftovers(&self.node.dir, self.network.record(), &self.node.tools)
    }

    /// Leaves everything running beyond this handle (and this program), for `make demo`: what
    /// [`DetachedNodeCluster::stop`] needs to end it. Needs a control plane started detached.
    pub fn detach(self) -> Result<DetachedNodeCluster> {
        let Self {
            node,
            cluster,
            network,
        } = self;
        Ok(DetachedNodeCluster {
            node: node.detach()?,
            network: network.detach(),
            cluster: cluster.detach()?,
        })
    }
}

/// A [`NodeCluster`] left running, as recorded by `make demo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedNodeCluster {
    pub node: DetachedNode,
    pub network: network::NetworkRecord,
    pub cluster: crate::control_plane::DetachedControlPlane,
}

impl DetachedNodeCluster {
    /// Stops the node (containers included), the control plane, and removes the network; then
    /// fails if anything of the node is still there ([`teardown::leftovers`]).
    pub async fn stop(&self) -> Result<()> {
        self.node.stop().await?;
        self.cluster.stop().await?;
        self.network.remove()?;
        let left = teardown::leftovers(&self.node.dir, &self.network, &NodeTools::from_env()?);
        if !left.is_empty() {
            bail!("the node left behind:\n  {}", left.join("\n  "));
        }
        Ok(())
    }
}

/// The node's processes left running, and how to reach its containerd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedNode {
    pub dir: PathBuf,
    pub ctr: PathBuf,
    /// containerd, the kubelet, kube-proxy, in start order.
    pub processes: Vec<DetachedProcess>,
}

impl DetachedNode {
    pub async fn stop(&self) -> Result<()> {
        let [containerd, rest @ ..] = self.processes.as_slice() else {
            return unmount_under(&self.dir);
        };
        for p in rest.iter().rev() {
            p.stop(Duration::from_secs(10)).await?;
        }
        if containerd.is_running() {
            remove_containers(&self.ctr, &self.dir).await;
        }
        containerd.stop(Duration::from_secs(10)).await?;
        unmount_under(&self.dir)
    }
}

/// The node's processes.
pub struct Node {
    dir: PathBuf,
    tools: NodeTools,
    containerd: Option<Process>,
    kubelet: Option<Process>,
    kube_proxy: Option<Process>,
    stopped: bool,
}

impl Node {
    async fn start(
        cluster: &ControlPlane,
        network: &NodeNetwork,
        tools: NodeTools,
        images: &[PathBuf],
        detached: bool,
    ) -> Result<Self> {
        let dir = cluster.run_dir().join("node");
        for sub in ["containerd", "cni/net.d", "cni/ipam", "kubelet", "bin"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let logs = cluster.logs_dir();
        std::fs::write(
            dir.join("containerd.toml"),
            config::containerd(&dir, &tools.runc, &tools.cni_bin_dir),
        )?;
        std::fs::write(dir.join("cni/net.d/10-lab.conflist"), config::cni(&dir))?;
        let path = search_path(&tools, &dir)?;

        let containerd = in_namespace(
            network,
            "containerd",
            &tools.containerd_dir.join("containerd"),
            &logs,
        )
        .arg("--config")
        .arg(dir.join("containerd.toml"))
        .env("PATH", &path)
        .detached(detached)
        .spawn()?;
        let mut node = Self {
            dir,
            tools,
            containerd: Some(containerd),
            kubelet: None,
            kube_proxy: None,
            stopped: false,
        };
        node.wait_containerd().await?;
        for image in images {
            node.import(image).await?;
        }

        // The admin kubeconfig: its server is this machine's end of the veth.
        let kubeconfig = cluster.kubeconfig_path().to_owned();
        // Containers' logs go with the other logs: kept when a trial fails.
        let pod_logs = cluster.logs_dir().join("pods");
        std::fs::create_dir_all(&pod_logs)?;
        std::fs::write(
            node.dir.join("kubelet.yaml"),
            config::kubelet(&node.dir, &pod_logs),
        )?;
        node.kubelet = Some(
            in_namespace(network, "kubelet", &node.tools.kubelet, &logs)
                .arg("--config")
                .arg(node.dir.join("kubelet.yaml"))
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--root-dir")
                .arg(node.dir.join("kubelet"))
                .arg("--cert-dir")
                .arg(node.dir.join("kubelet/pki"))
                .args(["--hostname-override", NODE_NAME])
                .args(["--node-ip", &NODE_IP.to_string()])
                .arg("--v=1")
                .env("PATH", &path)
                .detached(detached)
                .spawn()?,
        );
        std::fs::write(
            node.dir.join("kube-proxy.yaml"),
            config::kube_proxy(&kubeconfig),
        )?;
        let lib = node.tools.debs_lib();
        node.kube_proxy = Some(
            in_namespace(network, "kube-proxy", &node.tools.kube_proxy, &logs)
                .arg("--config")
                .arg(node.dir.join("kube-proxy.yaml"))
                .args(["--hostname-override", NODE_NAME])
                .arg("--v=1")
                .env("PATH", &path)
                .env("LD_LIBRARY_PATH", &lib)
                .env("XTABLES_LIBDIR", lib.join("xtables"))
                .detached(detached)
                .spawn()?,
        );
        node.wait_ready(&cluster.client()).await?;
        Ok(node)
    }

    /// The node's directory (containerd's root and state, the kubelet's root, configs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fails when one of the node's processes exited.
    pub fn ensure_running(&self) -> Result<()> {
        for p in [&self.containerd, &self.kubelet, &self.kube_proxy]
            .into_iter()
            .flatten()
        {
            p.ensure_running()?;
        }
        Ok(())
    }

    async fn wait_containerd(&self) -> Result<()> {
        wait_until("containerd to serve", Duration::from_secs(30), || async {
            self.ensure_running()?;
            Ok(match self.ctr(&["version"]).await {
                Ok(_) => Progress::Done(()),
                Err(e) => Progress::pending(format!("{e:#}")),
            })
        })
        .await
    }

    /// Imports a docker-archive tarball into containerd's Kubernetes namespace.
    pub async fn import(&self, tarball: &Path) -> Result<()> {
        let began = Instant::now();
        let path = tarball.to_str().context("image path is not UTF-8")?;
        self.ctr(&["images", "import", "--local", path])
            .await
            .with_context(|| format!("importing {path}"))?;
        tracing::info!("imported {path} in {:.1?}", began.elapsed());
        Ok(())
    }

    /// `ctr -n k8s.io <args>` against the node's containerd.
    pub async fn ctr(&self, args: &[&str]) -> Result<String> {
        let socket = self.dir.join("containerd/containerd.sock");
        ctr_at(&self.tools.ctr(), &socket, args).await
    }

    async fn wait_ready(&self, client: &Client) -> Result<()> {
        let nodes: Api<NodeObject> = Api::all(client.clone());
        wait_until(
            &format!("node {NODE_NAME} to be Ready"),
            NODE_READY,
            || async {
                self.ensure_running()?;
                let Some(node) = nodes.get_opt(NODE_NAME).await? else {
                    return Ok(Progress::pending("not registered"));
                };
                let ready = node
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.type_ == "Ready");
                Ok(match ready {
                    Some(c) if c.status == "True" => Progress::Done(()),
                    Some(c) => Progress::pending(format!(
                        "Ready={} {}",
                        c.status,
                        c.message.unwrap_or_default()
                    )),
                    None => Progress::pending("no Ready condition"),
                })
            },
        )
        .await
    }

    /// Stops kube-proxy and the kubelet, kills and deletes every container, stops containerd
    /// and unmounts what is mounted under the node's directory.
    pub async fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        for p in [self.kube_proxy.as_mut(), self.kubelet.as_mut()]
            .into_iter()
            .flatten()
        {
            p.stop(Duration::from_secs(10)).await?;
        }
        remove_containers(&self.tools.ctr(), &self.dir).await;
        if let Some(c) = self.containerd.as_mut() {
            c.stop(Duration::from_secs(10)).await?;
        }
        unmount_under(&self.dir)
    }

    /// Leaves the node's processes running (they must have been started detached).
    fn detach(mut self) -> Result<DetachedNode> {
        self.stopped = true;
        let processes = [
            self.containerd.take(),
            self.kubelet.take(),
            self.kube_proxy.take(),
        ]
        .into_iter()
        .flatten()
        .map(Process::detach)
        .collect();
        Ok(DetachedNode {
            dir: self.dir.clone(),
            ctr: self.tools.ctr(),
            processes,
        })
    }
}

/// Kills and deletes every container of the node's containerd (`ctr` at `<dir>`'s socket).
async fn remove_containers(ctr: &Path, dir: &Path) {
    let socket = dir.join("containerd/containerd.sock");
    let tasks = ctr_at(ctr, &socket, &["tasks", "ls", "--quiet"])
        .await
        .unwrap_or_default();
    for task in tasks.split_whitespace() {
        let _ = ctr_at(
            ctr,
            &socket,
            &["tasks", "kill", "--signal", "SIGKILL", task],
        )
        .await;
    }
    for task in tasks.split_whitespace() {
        let _ = wait_until("a container to stop", Duration::from_secs(10), || async {
            Ok(
                match ctr_at(ctr, &socket, &["tasks", "delete", task]).await {
                    Ok(_) => Progress::Done(()),
                    Err(e) if format!("{e:#}").contains("not found") => Progress::Done(()),
                    Err(e) => Progress::pending(format!("{e:#}")),
                },
            )
        })
        .await;
    }
    let containers = ctr_at(ctr, &socket, &["containers", "ls", "--quiet"])
        .await
        .unwrap_or_default();
    for c in containers.split_whitespace() {
        let _ = ctr_at(ctr, &socket, &["containers", "delete", c]).await;
    }
}

/// `ctr --address <socket> --namespace k8s.io <args>`.
async fn ctr_at(ctr: &Path, socket: &Path, args: &[&str]) -> Result<String> {
    crate::cli::ToolCommand::new(ctr)
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io"])
        .args(args.iter().copied())
        .run()
        .await
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        // Without a runtime to talk to containerd: processes by pid, then the mounts.
        for p in [
            self.kube_proxy.as_mut(),
            self.kubelet.as_mut(),
            self.containerd.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            p.kill_blocking(Duration::from_secs(5));
        }
        // Without containerd, its shims and containers are ended by pid.
        teardown::kill_processes_under(&self.dir);
        if let Err(e) = unmount_under(&self.dir) {
            tracing::warn!("{e:#}");
        }
    }
}

/// A process run inside the node's network namespace.
fn in_namespace(network: &NodeNetwork, name: &str, program: &Path, logs: &Path) -> ProcessBuilder {
    let enter = network.enter();
    ProcessBuilder::new(name, &enter[0], logs)
        .args(enter[1..].iter())
        .arg(program)
}

/// `PATH` for the node's processes: iptables and conntrack from the unpacked packages (named
/// as kube-proxy calls them), containerd's shim, runc, then this machine's.
fn search_path(tools: &NodeTools, dir: &Path) -> Result<String> {
    let bin = dir.join("bin");
    let sbin = tools.debs_root.join("usr/sbin");
    for name in [
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    ] {
        let link = bin.join(name);
        if !link.exists() {
            std::os::unix::fs::symlink(sbin.join("xtables-nft-multi"), &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
    }
    let runc_dir = tools.runc.parent().context("runc has no directory")?;
    let host = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    Ok(format!(
        "{}:{}:{}:{}:{host}",
        bin.display(),
        sbin.display(),
        tools.containerd_dir.display(),
        runc_dir.display()
    ))
}

/// Unmounts every mount point under `dir`, deepest first.
fn unmount_under(dir: &Path) -> Result<()> {
    let mut failed = Vec::new();
    for p in teardown::mount_points_under(dir)? {
        let out = std::process::Command::new("umount").arg(&p).output()?;
        if !out.status.success() {
            let lazy = std::process::Command::new("umount")
                .args(["-l", &p])
                .output()?;
            if !lazy.status.success() {
                failed.push(format!(
                    "{p}: {}",
                    String::from_utf8_lossy(&lazy.stderr).trim()
                ));
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not unmount: {}", failed.join("; "));
    }
    Ok(())
}
