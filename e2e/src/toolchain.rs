//! Locations of the external binaries and files the harness drives.
//!
//! `make e2e` (and `make demo`) export one environment variable per tool, pointing into
//! the toolchain cache that `make toolchain` fills; the names are in [`vars`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

/// Names of the environment variables that locate the toolchain.
pub mod vars {
    /// The operator binary under test (`target/debug/hostrouter`).
    pub const HOSTROUTER_BIN: &str = "HOSTROUTER_BIN";
    /// kube-apiserver, built from k8s.io/kubernetes.
    pub const KUBE_APISERVER: &str = "KUBE_APISERVER";
    /// kube-controller-manager, built from k8s.io/kubernetes.
    pub const KUBE_CONTROLLER_MANAGER: &str = "KUBE_CONTROLLER_MANAGER";
    /// etcd server.
    pub const ETCD: &str = "ETCD";
    /// kubectl; when unset, `kubectl` is looked up on `PATH`.
    pub const KUBECTL: &str = "KUBECTL";
    /// helm.
    pub const HELM: &str = "HELM";
    /// Envoy.
    pub const ENVOY: &str = "ENVOY";
    /// Gloo's control plane (`projects/gloo/cmd`).
    pub const GLOO: &str = "GLOO";
    /// Gloo's discovery (`projects/discovery/cmd`).
    pub const GLOO_DISCOVERY: &str = "GLOO_DISCOVERY";
    /// Directory of Gloo's CRD manifests (the version that is built).
    pub const GLOO_CRDS_DIR: &str = "GLOO_CRDS_DIR";
    pub const GATEWAY_API_CRDS_DIR: &str = "GATEWAY_API_CRDS_DIR";
    pub const ENVOY_GATEWAY: &str = "ENVOY_GATEWAY";
    pub const ENVOY_GATEWAY_IMAGE_TAR: &str = "ENVOY_GATEWAY_IMAGE_TAR";
    pub const ENVOY_GATEWAY_CHART_DIR: &str = "ENVOY_GATEWAY_CHART_DIR";
    pub const ENVOY_GATEWAY_CRDS_DIR: &str = "ENVOY_GATEWAY_CRDS_DIR";
    /// Directory holding Gloo v1.11's full-schema Proxy CRD, when it could be fetched.
    pub const GLOO_V111_CRDS_DIR: &str = "GLOO_V111_CRDS_DIR";
    /// The `kubernetes-validate` command (in a virtualenv).
    pub const KUBERNETES_VALIDATE: &str = "KUBERNETES_VALIDATE";
    /// The lab's node: kubelet, kube-scheduler and kube-proxy, built from k8s.io/kubernetes.
    pub const KUBELET: &str = "KUBELET";
    pub const KUBE_SCHEDULER: &str = "KUBE_SCHEDULER";
    pub const KUBE_PROXY: &str = "KUBE_PROXY";
    /// Directory of `containerd`, `containerd-shim-runc-v2` and `ctr`.
    pub const CONTAINERD_DIR: &str = "CONTAINERD_DIR";
    /// runc, built with seccomp.
    pub const RUNC: &str = "RUNC";
    /// Directory of the CNI plugins (bridge, host-local, loopback, portmap).
    pub const CNI_BIN_DIR: &str = "CNI_BIN_DIR";
    /// Root of the unpacked Debian packages: iptables and conntrack for kube-proxy.
    pub const NODE_DEBS_ROOT: &str = "NODE_DEBS_ROOT";
    /// Images the node imports (docker-archive tarballs): the Pod sandbox, Envoy, the operator.
    pub const PAUSE_IMAGE_TAR: &str = "PAUSE_IMAGE_TAR";
    pub const ENVOY_IMAGE_TAR: &str = "ENVOY_IMAGE_TAR";
    pub const OPERATOR_IMAGE_TAR: &str = "OPERATOR_IMAGE_TAR";
    /// Prometheus' promtool (from Debian's prometheus package, unpacked): lints `/metrics` and
    /// parses the Grafana dashboard's queries.
    pub const PROMTOOL: &str = "PROMTOOL";
}

/// The path named by the environment variable `var`, checked to exist.
pub fn tool(var: &str) -> Result<PathBuf> {
    let value = std::env::var_os(var).with_context(|| {
        format!("{var} is not set: run the suite through `make e2e`, which builds the toolchain and exports its paths")
    })?;
    let path = PathBuf::from(value);
    ensure!(
        path.exists(),
        "{var}={} does not exist: run `make toolchain`",
        path.display()
    );
    Ok(path)
}

/// The kubectl to run: `$KUBECTL`, or `kubectl` from `PATH`.
pub fn kubectl() -> Result<PathBuf> {
    match std::env::var_os(vars::KUBECTL) {
        Some(_) => tool(vars::KUBECTL),
        None => Ok(PathBuf::from("kubectl")),
    }
}

/// The binaries a [`crate::ControlPlane`] runs.
#[derive(Clone, Debug)]
pub struct ControlPlaneBinaries {
    /// etcd server.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
}

impl ControlPlaneBinaries {
    /// kube-scheduler, for a control plane with a node (`KUBE_SCHEDULER`).
    pub fn kube_scheduler(&self) -> Result<PathBuf> {
        tool(vars::KUBE_SCHEDULER)
    }
}

impl ControlPlaneBinaries {
    /// Reads `ETCD`, `KUBE_APISERVER` and `KUBE_CONTROLLER_MANAGER`.
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            etcd: tool(vars::ETCD)?,
            kube_apiserver: tool(vars::KUBE_APISERVER)?,
            kube_controller_manager: tool(vars::KUBE_CONTROLLER_MANAGER)?,
        })
    }
}

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir)
}

/// The cargo target directory: `$CARGO_TARGET_DIR`, or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// A fixture file shipped in `e2e/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The CRDs every cluster of this project gets: Gloo's (`$GLOO_CRDS_DIR`), the Gateway API's
/// standard channel (`$GATEWAY_API_CRDS_DIR`) and the repository's own `crds/` directory when
/// it exists.
pub fn project_crds() -> Result<Vec<PathBuf>> {
    let mut crds = vec![
        tool(vars::GLOO_CRDS_DIR)?,
        tool(vars::GATEWAY_API_CRDS_DIR)?,
    ];
    let own = workspace_root().join("crds");
    if own.is_dir() {
        crds.push(own);
    } else {
        tracing::warn!(
            "{} does not exist yet: installing Gloo's CRDs only",
            own.display()
        );
    }
    Ok(crds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn missing_tool_variable_names_the_variable() {
        let err = tool("HOSTROUTER_E2E_SURELY_UNSET_VARIABLE").unwrap_err();
        assert!(
            err.to_string()
                .contains("HOSTROUTER_E2E_SURELY_UNSET_VARIABLE")
        );
    }
}
