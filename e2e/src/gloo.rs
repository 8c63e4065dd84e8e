//! Gloo in the loop: Gloo v1.22's control plane out of cluster, Envoy started from the objects
//! the operator generates, and local HTTP backends reachable through Kubernetes Endpoints.
//!
//! - [`GlooConfig`]: the `Settings`, the selectorless `gloo` Service Gloo insists on, and the
//!   command lines of `gloo` and (optionally) `discovery`; [`Gloo::start`] runs them for a
//!   trial and waits until xDS accepts connections.
//! - [`envoy_command`]: Envoy exactly as the generated Deployment runs it (its command line,
//!   with `$(POD_NAME)`/`$(POD_NAMESPACE)` expanded and the bootstrap ConfigMap written to a
//!   local file), plus `--base-id` so that several Envoys can share the machine.
//! - [`Backend`]: a tiny HTTP server (the petstore answers `GET /api/pets`), and
//!   [`apply_backend_service`]: a selectorless Service plus core/v1 Endpoints pointing at it.
//! - [`LoopbackAlias`]: the API server refuses loopback addresses in Endpoints, so backends
//!   bind a documentation address (198.51.100.0/24, RFC 5737) added to `lo` for the run.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::http::{self, Response};
use crate::net::{LOOPBACK, free_ports};
use crate::process::{Process, ProcessBuilder};
use crate::suite::TestContext;
use crate::toolchain::{tool, vars};
use crate::wait::{Progress, wait_until};

/// What the petstore answers on `GET /api/pets`.
pub const PETS_JSON: &str =
    r#"[{"id":1,"name":"Dog","status":"available"},{"id":2,"name":"Cat","status":"pending"}]"#;
/// Field manager of everything this module applies.
pub const FIELD_MANAGER: &str = "hostrouter-e2e";
/// Gloo's liveness port: hard-coded in Gloo, bound on every interface. A second Gloo on the
/// machine only logs a warning when it is taken.
pub const GLOO_HEALTHZ_PORT: u16 = 8765;
/// How long Gloo may take to serve xDS (about 10 s on a fresh API server).
pub const GLOO_STARTUP: Duration = Duration::from_secs(90);

// ------------------------------------------------------------------------------------------
// Gloo

/// One Gloo control plane: where it lives, what it watches, and the ports it binds.
#[derive(Clone, Debug)]
pub struct GlooConfig {
    /// Gloo's namespace: `POD_NAMESPACE`, where the Settings and the `gloo` Service live, its
    /// write (discovery) namespace, and the key of the statuses it writes.
    pub namespace: String,
    /// Namespaces Gloo reads Proxies, Upstreams, Services and Endpoints from; empty = all.
    pub watch_namespaces: Vec<String>,
    /// Run Gloo's `discovery` (UDS: an Upstream per Service port, in `namespace`).
    pub discovery: bool,
    /// Merged into the Settings' `spec` (objects merge key by key).
    pub extra_settings: Value,
    pub xds_port: u16,
    pub rest_xds_port: u16,
    pub validation_port: u16,
    pub proxy_debug_port: u16,
}

impl GlooConfig {
    /// A Gloo in `namespace` on free loopback ports, watching every namespace.
    pub fn new(namespace: impl Into<String>) -> Result<Self> {
        let ports = free_ports(4)?;
        Ok(Self {
            namespace: namespace.into(),
            watch_namespaces: Vec::new(),
            discovery: false,
            extra_settings: json!({}),
            xds_port: ports[0],
            rest_xds_port: ports[1],
            validation_port: ports[2],
            proxy_debug_port: ports[3],
        })
    }

    /// Watch only these namespaces (Gloo adds its own).
    pub fn watch(mut self, namespaces: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.watch_namespaces = namespaces.into_iter().map(Into::into).collect();
        self
    }

    /// Also run `discovery`.
    pub fn with_discovery(mut self, on: bool) -> Self {
        self.discovery = on;
        self
    }

    /// Merges `extra` into the Settings' spec.
    pub fn settings_patch(mut self, extra: Value) -> Self {
        merge(&mut self.extra_settings, extra);
        self
    }

    /// The operator flags that point it (and the Envoys it configures) at this Gloo:
    /// `--gloo-namespace`, `--gloo-xds-address 127.0.0.1`, `--gloo-xds-port`.
    pub fn operator_args(&self) -> Vec<String> {
        vec![
            "--gloo-namespace".into(),
            self.namespace.clone(),
            "--gloo-xds-address".into(),
            LOOPBACK.to_string(),
            "--gloo-xds-port".into(),
            self.xds_port.to_string(),
        ]
    }

    /// The `Settings` object (`<namespace>/default`).
    ///
    /// Must-haves found in the lab (see the e2e README): `kubernetesConfigSource` (Proxies from
    /// CRDs), `gateway.persistProxySpec` (else the Proxy client is in memory and our Proxy CR
    /// is ignored) and `gloo.removeUnusedFilters` (else Envoy 1.40 NACKs the listener, which
    /// would carry `io.solo.transformation`).
    pub fn settings(&self) -> Value {
        let bind = |port: u16| format!("{LOOPBACK}:{port}");
        let mut spec = json!({
            "discoveryNamespace": self.namespace,
            "kubernetesConfigSource": {},
            "kubernetesSecretSource": {},
            "kubernetesArtifactSource": {},
            "gloo": {
                "xdsBindAddr": bind(self.xds_port),
                "restXdsBindAddr": bind(self.rest_xds_port),
                "validationBindAddr": bind(self.validation_port),
                "proxyDebugBindAddr": bind(self.proxy_debug_port),
                "removeUnusedFilters": true,
            },
            "gateway": {"persistProxySpec": true, "enableGatewayController": false},
            "discovery": {"fdsMode": "DISABLED", "udsOptions": {"enabled": self.discovery}},
        });
        if !self.watch_namespaces.is_empty() {
            spec["watchNamespaces"] = json!(self.watch_namespaces);
        }
        merge(&mut spec, self.extra_settings.clone());
        json!({
            "apiVersion": "gloo.solo.io/v1",
            "kind": "Settings",
            "metadata": {"name": "default", "namespace": self.namespace},
            "spec": spec,
        })
    }

    /// The Service Gloo looks up at start (label `gloo=gloo` in `POD_NAMESPACE`, port
    /// `grpc-xds`) and exits without. Selectorless: nothing backs it.
    pub fn service(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "gloo", "namespace": self.namespace, "labels": {"gloo": "gloo"}},
            "spec": {"ports": [{"name": "grpc-xds", "port": self.xds_port, "protocol": "TCP"}]},
        })
    }

    /// Applies the Settings and the `gloo` Service (the namespace must exist).
    pub async fn install(&self, client: &Client) -> Result<()> {
        apply_dynamic(
            client,
            &settings_resource(),
            &self.namespace,
            self.settings(),
        )
        .await
        .context("applying Gloo's Settings")?;
        let svc: Service = serde_json::from_value(self.service())?;
        Api::<Service>::namespaced(client.clone(), &self.namespace)
            .patch("gloo", &apply_params(), &Patch::Apply(&svc))
            .await
            .context("applying the gloo Service")?;
        Ok(())
    }

    fn command(
        &self,
        name: &str,
        program: PathBuf,
        kubeconfig: &Path,
        log_dir: &Path,
    ) -> ProcessBuilder {
        ProcessBuilder::new(name, program, log_dir)
            .arg("-kubeconfig")
            .arg(kubeconfig)
            .args(["-namespace", &self.namespace, "-name", "default"])
            .env("POD_NAMESPACE", &self.namespace)
            // No Lease: statuses are written at once, also right after a restart.
            .env("DISABLE_LEADER_ELECTION", "true")
    }

    /// `gloo` (from `$GLOO`).
    pub fn gloo_command(&self, kubeconfig: &Path, log_dir: &Path) -> Result<ProcessBuilder> {
        Ok(self.command("gloo", tool(vars::GLOO)?, kubeconfig, log_dir))
    }

    /// `discovery` (from `$GLOO_DISCOVERY`).
    pub fn discovery_command(&self, kubeconfig: &Path, log_dir: &Path) -> Result<ProcessBuilder> {
        Ok(self.command(
            "gloo-discovery",
            tool(vars::GLOO_DISCOVERY)?,
            kubeconfig,
            log_dir,
        ))
    }

    /// Waits until Gloo's xDS port accepts connections; fails at once if `gloo` exits.
    pub async fn wait_xds(&self, gloo: &impl Running) -> Result<()> {
        let address = SocketAddr::from((LOOPBACK, self.xds_port));
        wait_until(
            "Gloo's xDS port to accept connections",
            GLOO_STARTUP,
            || async {
                if let Err(e) = gloo.check_running() {
                    return Ok(Progress::Abort(format!("{e:#}")));
                }
                Ok(match TcpStream::connect(address).await {
                    Ok(_) => Progress::Done(()),
                    Err(e) => Progress::Pending(format!("{address}: {e}")),
                })
            },
        )
        .await
    }
}

/// A process the harness can ask whether it still runs.
pub trait Running {
    fn check_running(&self) -> Result<()>;
}

impl Running for Process {
    fn check_running(&self) -> Result<()> {
        self.ensure_running()
    }
}

impl Running for crate::process::DetachedProcess {
    fn check_running(&self) -> Result<()> {
        ensure!(
            self.is_running(),
            "{} (pid {}) exited; see {}",
            self.name,
            self.pid,
            self.log_path.display()
        );
        Ok(())
    }
}

/// A Gloo running for one trial; its processes are killed when it is dropped.
pub struct Gloo {
    pub config: GlooConfig,
    pub process: Process,
    pub discovery: Option<Process>,
    /// From starting `gloo` to xDS accepting connections.
    pub startup: Duration,
}

impl Gloo {
    /// Installs the Settings and Service, starts `gloo` (and `discovery`), and waits for xDS.
    pub async fn start(cx: &TestContext, config: GlooConfig) -> Result<Self> {
        config.install(&cx.client()).await?;
        let kubeconfig = cx.cluster().kubeconfig_path();
        let began = Instant::now();
        let process = config.gloo_command(kubeconfig, cx.log_dir())?.spawn()?;
        let discovery = if config.discovery {
            Some(
                config
                    .discovery_command(kubeconfig, cx.log_dir())?
                    .spawn()?,
            )
        } else {
            None
        };
        config.wait_xds(&process).await?;
        let startup = began.elapsed();
        tracing::info!(namespace = %config.namespace, "Gloo serves xDS after {startup:.1?}");
        Ok(Self {
            config,
            process,
            discovery,
            startup,
        })
    }

    /// Fails if `gloo` or `discovery` exited.
    pub fn ensure_running(&self) -> Result<()> {
        self.process.ensure_running()?;
        if let Some(d) = &self.discovery {
            d.ensure_running()?;
        }
        Ok(())
    }
}

/// `gloo.solo.io/v1` Settings.
pub fn settings_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gloo.solo.io", "v1", "Settings"),
        "settings",
    )
}

/// `gloo.solo.io/v1` Upstream.
pub fn upstream_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gloo.solo.io", "v1", "Upstream"),
        "upstreams",
    )
}

/// `gloo.solo.io/v1` Proxy.
pub fn proxy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gloo.solo.io", "v1", "Proxy"),
        "proxies",
    )
}

/// `status.statuses.<gloo namespace>` of a Proxy as Gloo wrote it (`Null` if it has not).
pub fn gloo_status(proxy: &DynamicObject, gloo_namespace: &str) -> Value {
    proxy.data["status"]["statuses"][gloo_namespace].clone()
}

/// Server-side apply of a JSON manifest of any kind.
pub async fn apply_dynamic(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    manifest: Value,
) -> Result<DynamicObject> {
    let name = manifest["metadata"]["name"]
        .as_str()
        .context("manifest without metadata.name")?
        .to_owned();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    api.patch(&name, &apply_params(), &Patch::Apply(&manifest))
        .await
        .with_context(|| format!("applying {} {namespace}/{name}", resource.kind))
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// JSON merge: objects merge key by key, anything else replaces.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

// ------------------------------------------------------------------------------------------
// Envoy

/// Where the kubelet would expand `$(VAR)`s: the Deployment's env, resolved as for one pod.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Envoy for the proxy `proxy_name`, run exactly as the generated Deployment `<ns>/<proxy_name>`
/// runs it: its command line (binary replaced by `$ENVOY`, `$(POD_NAME)` and `$(POD_NAMESPACE)`
/// expanded for a pod `<proxy_name>-local`) with the bootstrap ConfigMap it mounts written to
/// `<work_dir>/<mount path>`, plus `--base-id <base_id>`.
///
/// Fails unless the Deployment runs exactly one container whose config comes from one
/// ConfigMap volume.
pub async fn envoy_command(
    client: &Client,
    namespace: &str,
    proxy_name: &str,
    work_dir: &Path,
    log_dir: &Path,
    base_id: u32,
) -> Result<ProcessBuilder> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(proxy_name)
        .await
        .with_context(|| format!("reading Deployment {namespace}/{proxy_name}"))?;
    let pod = deployment
        .spec
        .template
        .spec
        .as_ref()
        .context("Deployment without a pod template")?;
    let [container] = pod.containers.as_slice() else {
        bail!(
            "expected one container in {proxy_name}, found {}",
            pod.containers.len()
        );
    };
    let pod_name = format!("{proxy_name}-local");
    let mut env = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let value = match (
            &var.value,
            var.value_from.as_ref().and_then(|f| f.field_ref.as_ref()),
        ) {
            (Some(v), _) => v.clone(),
            (None, Some(f)) if f.field_path == "metadata.name" => pod_name.clone(),
            (None, Some(f)) if f.field_path == "metadata.namespace" => namespace.to_owned(),
            _ => bail!("cannot resolve env {} of {proxy_name}", var.name),
        };
        env.insert(var.name.clone(), value);
    }

    // The bootstrap: each ConfigMap volume's keys, written where the container mounts it.
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .with_context(|| format!("no volume {}", mount.name))?;
        let cm_name = &volume
            .config_map
            .as_ref()
            .with_context(|| format!("volume {} is not a ConfigMap", mount.name))?
            .name;
        let cm = config_maps
            .get(cm_name)
            .await
            .with_context(|| format!("reading ConfigMap {namespace}/{cm_name}"))?;
        let local = work_dir.join(mount.mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&local)?;
        for (key, data) in cm.data.iter().flatten() {
            std::fs::write(local.join(key), data)?;
        }
        mounts.push((mount.mount_path.clone(), local));
    }

    let mut args: Vec<String> = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .cloned()
        .collect();
    args.extend(container.args.iter().flatten().cloned());
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            let a = expand(a, &env);
            match mounts.iter().find(|(m, _)| a.starts_with(m.as_str())) {
                Some((m, local)) => format!("{}{}", local.display(), &a[m.len()..]),
                None => a,
            }
        })
        .collect();
    Ok(ProcessBuilder::new("envoy", tool(vars::ENVOY)?, log_dir)
        .args(&args)
        .args(["--base-id", &base_id.to_string()]))
}

/// Waits until `GET <path>` with `Host: <host>` at `address` answers `status`, and returns it.
pub async fn wait_http(
    address: &str,
    host: &str,
    path: &str,
    status: u16,
    timeout: Duration,
    envoy: &impl Running,
) -> Result<Response> {
    let what = format!("GET {path} Host: {host} at {address} to answer {status}");
    wait_until(&what, timeout, || async {
        if let Err(e) = envoy.check_running() {
            return Ok(Progress::Abort(format!("{e:#}")));
        }
        let r = http::get(address, host, path).await?;
        Ok(if r.status == status {
            Progress::Done(r)
        } else {
            Progress::Pending(format!("{} {}", r.status, r.body.trim()))
        })
    })
    .await
}

// ------------------------------------------------------------------------------------------
// Backends

/// A tiny HTTP/1.1 server on a tokio task: the petstore answers `GET /api/pets` with
/// [`PETS_JSON`]; every other request (and every request to another backend) gets the
/// backend's name. Stops when dropped.
pub struct Backend {
    name: String,
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Binds `ip:port` (0: any free port) and serves.
    pub async fn start(name: &str, ip: IpAddr, port: u16) -> Result<Self> {
        let listener = TcpListener::bind((ip, port))
            .await
            .with_context(|| format!("binding backend {name} to {ip}:{port}"))?;
        let address = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, name.to_owned()));
        Ok(Self {
            name: name.to_owned(),
            address,
            task,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `name`'s answers on `listener` forever.
pub async fn serve(listener: TcpListener, name: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &name).await {
                tracing::debug!("backend {name}: {e:#}");
            }
        });
    }
}

/// The body and content type `name` answers `path` with.
pub fn answer(name: &str, path: &str) -> (&'static str, String) {
    if name == "petstore" && path.split('?').next() == Some("/api/pets") {
        ("application/json", PETS_JSON.to_owned())
    } else {
        ("text/plain", name.to_owned())
    }
}

async fn connection(mut stream: TcpStream, name: &str) -> Result<()> {
    let mut buf = Vec::new();
    loop {
        // Read one request head (and skip its body, if it declares one).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.lines();
        let path = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_owned();
        let mut body_len = 0usize;
        let mut close = false;
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => body_len = v.trim().parse().unwrap_or(0),
                "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        while buf.len() < end + body_len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..end + body_len);

        let (content_type, body) = answer(name, &path);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-backend: {name}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" },
        );
        stream.write_all(response.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

/// A selectorless Service `<namespace>/<name>` with one TCP port `http`/`port`, and core/v1
/// Endpoints pointing at `backend` (Gloo Edge reads Endpoints, not EndpointSlices).
pub async fn apply_backend_service(
    client: &Client,
    namespace: &str,
    name: &str,
    port: i32,
    backend: SocketAddr,
) -> Result<()> {
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    }))?;
    Api::<Service>::namespaced(client.clone(), namespace)
        .patch(name, &apply_params(), &Patch::Apply(&service))
        .await
        .with_context(|| format!("applying Service {namespace}/{name}"))?;
    apply_endpoints(client, namespace, name, &[("http", backend)]).await
}

/// core/v1 Endpoints `<namespace>/<name>`: one address per named port.
pub async fn apply_endpoints(
    client: &Client,
    namespace: &str,
    name: &str,
    ports: &[(&str, SocketAddr)],
) -> Result<()> {
    let subsets: Vec<Value> = ports
        .iter()
        .map(|(port_name, addr)| {
            json!({
                "addresses": [{"ip": addr.ip().to_string()}],
                "ports": [{"name": port_name, "port": addr.port(), "protocol": "TCP"}],
            })
        })
        .collect();
    let endpoints: Endpoints = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace},
        "subsets": subsets,
    }))?;
    Api::<Endpoints>::namespaced(client.clone(), namespace)
        .patch(name, &apply_params(), &Patch::Apply(&endpoints))
        .await
        .with_context(|| format!("applying Endpoints {namespace}/{name}"))?;
    Ok(())
}

/// Deletes the Service and the Endpoints `<namespace>/<name>`.
pub async fn delete_backend_service(client: &Client, namespace: &str, name: &str) -> Result<()> {
    Api::<Service>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
        .with_context(|| format!("deleting Service {namespace}/{name}"))?;
    match Api::<Endpoints>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting Endpoints {namespace}/{name}")),
    }
}

// ------------------------------------------------------------------------------------------
// Backend addresses

/// Addresses for backends come from TEST-NET-2 (198.51.100.0/24, RFC 5737): never routed, and
/// not the machine's own eth0 address.
pub const BACKEND_NET: [u8; 3] = [198, 51, 100];

/// A TEST-NET-2 address unlikely to be in use by another run: picked from this process's pid
/// and a counter.
pub fn unique_backend_ip() -> Ipv4Addr {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let host = 10 + (std::process::id().wrapping_mul(7).wrapping_add(n)) % 240;
    let [a, b, c] = BACKEND_NET;
    Ipv4Addr::new(a, b, c, u8::try_from(host).unwrap_or(10))
}

/// An address added to `lo` (as `<ip>/32`) and removed again when dropped — unless it was
/// already there, in which case it is used and left alone.
///
/// kube-apiserver refuses loopback addresses (127.0.0.0/8) in Endpoints, and Gloo Edge routes
/// `kube` destinations only through Endpoints; an extra address on `lo` keeps backends
/// reachable from this machine only.
#[derive(Debug)]
pub struct LoopbackAlias {
    ip: Ipv4Addr,
    owned: bool,
}

impl LoopbackAlias {
    /// `ip addr add <ip>/32 dev lo` (needs root or CAP_NET_ADMIN).
    pub fn add(ip: Ipv4Addr) -> Result<Self> {
        let owned = add_loopback_address(ip)?;
        Ok(Self { ip, owned })
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Leaves the address on `lo`; returns it and whether this handle had added it.
    pub fn keep(mut self) -> (Ipv4Addr, bool) {
        let owned = std::mem::replace(&mut self.owned, false);
        (self.ip, owned)
    }
}

impl Drop for LoopbackAlias {
    fn drop(&mut self) {
        if self.owned
            && let Err(e) = remove_loopback_address(self.ip)
        {
            tracing::warn!("{e:#}");
        }
    }
}

/// Adds `<ip>/32` to `lo`. Returns false if it was already there.
pub fn add_loopback_address(ip: Ipv4Addr) -> Result<bool> {
    let out = std::process::Command::new("ip")
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .context("running `ip addr add` (iproute2 is needed to give backends an address)")?;
    if out.status.success() {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("File exists") {
        tracing::warn!("{ip} is already on lo: using it, and leaving it there");
        return Ok(false);
    }
    bail!(
        "`ip addr add {ip}/32 dev lo` failed ({}): {}. Backends need a non-loopback address \
         because kube-apiserver refuses 127.0.0.0/8 in Endpoints; run as root (or with \
         CAP_NET_ADMIN)",
        out.status,
        stderr.trim()
    )
}

/// Removes `<ip>/32` from `lo` (no error if it is not there).
pub fn remove_loopback_address(ip: Ipv4Addr) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(["addr", "del", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .context("running `ip addr del`")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || stderr.contains("Cannot assign requested address") {
        Ok(())
    } else {
        bail!("`ip addr del {ip}/32 dev lo` failed: {}", stderr.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_deep() {
        let mut a = json!({"gloo": {"x": 1, "y": 2}, "z": [1]});
        merge(&mut a, json!({"gloo": {"y": 3}, "z": [2], "w": true}));
        assert_eq!(a, json!({"gloo": {"x": 1, "y": 3}, "z": [2], "w": true}));
    }

    #[test]
    fn settings_carry_the_must_haves() {
        let c = GlooConfig::new("g")
            .unwrap()
            .watch(["g", "app"])
            .settings_patch(json!({"gloo": {"invalidConfigPolicy": {}}}));
        let s = c.settings();
        assert_eq!(s["spec"]["gateway"]["persistProxySpec"], true);
        assert_eq!(s["spec"]["gloo"]["removeUnusedFilters"], true);
        assert_eq!(s["spec"]["gloo"]["invalidConfigPolicy"], json!({}));
        assert_eq!(s["spec"]["watchNamespaces"], json!(["g", "app"]));
        assert_eq!(
            s["spec"]["gloo"]["xdsBindAddr"],
            format!("127.0.0.1:{}", c.xds_port)
        );
    }

    #[test]
    fn expands_kubelet_variables() {
        let env = BTreeMap::from([
            ("POD_NAME".to_owned(), "p".to_owned()),
            ("POD_NAMESPACE".to_owned(), "ns".to_owned()),
        ]);
        assert_eq!(expand("$(POD_NAME).$(POD_NAMESPACE)", &env), "p.ns");
    }

    #[test]
    fn backend_addresses_are_test_net_2() {
        let ip = unique_backend_ip();
        assert_eq!(ip.octets()[..3], BACKEND_NET);
        assert!(ip.octets()[3] >= 10);
    }

    #[tokio::test]
    async fn backends_answer_pets_and_their_name() {
        let pets = Backend::start("petstore", IpAddr::V4(LOOPBACK), 0)
            .await
            .unwrap();
        let other = Backend::start("orders", IpAddr::V4(LOOPBACK), 0)
            .await
            .unwrap();
        let r = http::get(&pets.address().to_string(), "x", "/api/pets")
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, PETS_JSON));
        let r = http::get(&other.address().to_string(), "x", "/api/pets")
            .await
            .unwrap();
        assert_eq!(r.body, "orders");
    }
}
