//! Gloo v1.22's control plane out of cluster, for one trial: [`GlooConfig`] holds the
//! `Settings`, the selectorless `gloo` Service Gloo insists on, and the command lines of `gloo`
//! and (optionally) `discovery`; [`Gloo::start`] runs them and waits until xDS accepts
//! connections. Envoy, backends and their addresses live in [`crate::envoy`],
//! [`crate::backends`] and [`crate::loopback`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::net::{LOOPBACK, free_ports};
use crate::process::{Process, ProcessBuilder, Running};
use crate::suite::TestContext;
use crate::toolchain::{tool, vars};
use crate::wait::{Progress, wait_until};

/// Field manager of everything the harness applies.
pub const FIELD_MANAGER: &str = "hostrouter-e2e";
/// Gloo's liveness port: hard-coded in Gloo, bound on every interface. A second Gloo on the
/// machine only logs a warning when it is taken.
pub const GLOO_HEALTHZ_PORT: u16 = 8765;
/// How long Gloo may take to serve xDS (about 10 s on a fresh API server).
pub const GLOO_STARTUP: Duration = Duration::from_secs(90);

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
    /// The address Gloo's ports bind: loopback, or this machine's end of the lab node's veth
    /// (so that Envoy Pods reach xDS).
    pub address: std::net::Ipv4Addr,
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
            address: LOOPBACK,
        })
    }

    /// Bind Gloo's ports on `address` instead of loopback.
    pub fn at(mut self, address: std::net::Ipv4Addr) -> Self {
        self.address = address;
        self
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
    /// `--gloo-namespace`, `--gloo-xds-address <address>`, `--gloo-xds-port`.
    pub fn operator_args(&self) -> Vec<String> {
        vec![
            "--gloo-namespace".into(),
            self.namespace.clone(),
            "--gloo-xds-address".into(),
            self.address.to_string(),
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
        let bind = |port: u16| format!("{}:{port}", self.address);
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
        let address = SocketAddr::from((self.address, self.xds_port));
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

/// A Gloo running for one trial; its processes are killed when it is dropped.
pub struct Gloo {
    pub config: GlooConfig,
    pub process: Process,
    pub discovery: Option<Process>,
    /// From starting `gloo` to xDS accepting connections.
    pub startup: Duration,
    /// Killed on purpose by [`Gloo::kill`], until [`Gloo::start_again`].
    down: bool,
    /// What [`Gloo::start_again`] starts `gloo` with.
    kubeconfig: PathBuf,
    log_dir: PathBuf,
}

impl Gloo {
    /// Installs the Settings and Service, starts `gloo` (and `discovery`), and waits for xDS.
    pub async fn start(cx: &TestContext, config: GlooConfig) -> Result<Self> {
        Self::start_on(cx, cx.cluster(), config).await
    }

    /// [`Gloo::start`] against `cluster` (say, a control plane with a node).
    pub async fn start_on(
        cx: &TestContext,
        cluster: &crate::ControlPlane,
        config: GlooConfig,
    ) -> Result<Self> {
        config.install(&cluster.client()).await?;
        let kubeconfig = cluster.kubeconfig_path();
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
            down: false,
            kubeconfig: kubeconfig.to_owned(),
            log_dir: cx.log_dir().to_owned(),
        })
    }

    /// Kills `gloo` (SIGKILL: no clean shutdown) and waits until it is gone.
    pub async fn kill(&mut self) -> Result<()> {
        self.process.signal(nix::sys::signal::Signal::SIGKILL)?;
        self.process.wait().await?;
        self.down = true;
        Ok(())
    }

    /// Starts `gloo` again with the same Settings and ports (its log continues in the same
    /// file); returns how long until xDS accepted connections.
    pub async fn start_again(&mut self) -> Result<Duration> {
        let began = Instant::now();
        self.process = self
            .config
            .gloo_command(&self.kubeconfig, &self.log_dir)?
            .spawn()?;
        self.down = false;
        self.config.wait_xds(&self.process).await?;
        Ok(began.elapsed())
    }

    /// Fails if `gloo` or `discovery` exited (other than by [`Gloo::kill`]).
    pub fn ensure_running(&self) -> Result<()> {
        if !self.down {
            self.process.ensure_running()?;
        }
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

pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// JSON merge: objects merge key by key, anything else replaces.
pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
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
}
