//! The development cluster behind `make demo`: a control plane left running in the
//! background, whose processes and kubeconfig are recorded in
//! `<dir>/state.json` so that `down` ends exactly those processes.
//!
//! The directory is `$DEV_CLUSTER_DIR`, else `$CACHE/dev-cluster`, else
//! `~/.cache/hostrouter/dev-cluster`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;

use crate::control_plane::{ControlPlane, ControlPlaneOptions, DetachedControlPlane};
use crate::kubeconfig::client_from;

/// Environment variable naming the dev cluster's directory.
pub const DIR_VAR: &str = "DEV_CLUSTER_DIR";
/// The state file inside the directory.
pub const STATE_FILE: &str = "state.json";

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
    /// Each process's name, pid and whether it runs.
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
        let path = self.state_path();
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))?,
            )),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Starts the cluster unless the recorded one is running. A partly running one
    /// (some process died) is stopped and replaced.
    pub async fn up(&self, options: ControlPlaneOptions) -> Result<Up> {
        if let Some(state) = self.state()? {
            if state.processes.iter().all(|p| p.is_running()) {
                return Ok(Up::AlreadyUp(state));
            }
            tracing::warn!("the recorded dev cluster is only partly running: replacing it");
            state.stop().await?;
        }
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing stale {}", self.dir.display()))?;
        }
        let options = ControlPlaneOptions {
            run_dir: Some(self.dir.clone()),
            detached: true,
            ..options
        };
        let detached = ControlPlane::start(options).await?.detach()?;
        self.write_state(&detached)?;
        Ok(Up::Started(detached))
    }

    /// Stops the recorded processes (only those: pid and start time must match) and
    /// removes the directory. Returns whether there was a recorded cluster.
    pub async fn down(&self) -> Result<bool> {
        let Some(state) = self.state()? else {
            return Ok(false);
        };
        state.stop().await?;
        fs::remove_dir_all(&self.dir)
            .with_context(|| format!("removing {}", self.dir.display()))?;
        Ok(true)
    }

    /// The recorded cluster and how it is doing, or `None` if there is none.
    pub async fn status(&self) -> Result<Option<Status>> {
        let Some(cluster) = self.state()? else {
            return Ok(None);
        };
        let processes = cluster
            .processes
            .iter()
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

    fn write_state(&self, state: &DetachedControlPlane) -> Result<()> {
        let path = self.state_path();
        let temporary = path.with_extension("json.tmp");
        fs::write(&temporary, serde_json::to_vec_pretty(state)?)
            .with_context(|| format!("writing {}", temporary.display()))?;
        fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))
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
