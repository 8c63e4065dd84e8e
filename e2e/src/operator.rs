//! Running the operator under test: the real `hostrouter` binary as a process, under the
//! identity the Helm chart gives it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use tokio::sync::OnceCell;

use crate::control_plane::ControlPlane;
use crate::http;
use crate::net::free_port;
use crate::process::Process;
use crate::suite::TestContext;
use crate::toolchain::{tool, vars, workspace_root};
use crate::wait::{Progress, wait_until};

/// Namespace and release the chart is installed as.
pub const CHART_NAMESPACE: &str = "hostrouter-system";
pub const CHART_RELEASE: &str = "hostrouter";
/// The ServiceAccount the chart creates for the operator.
pub const CHART_SERVICE_ACCOUNT: &str = "hostrouter";
/// Label the suite puts on a trial's HostRouters; each trial's operator manages only those.
pub const TRIAL_LABEL: &str = "e2e.hostrouter.io/trial";

static CHART: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();

/// `helm install` of the chart (release [`CHART_RELEASE`] in [`CHART_NAMESPACE`], created when
/// missing); returns a kubeconfig holding a token of the chart's ServiceAccount.
pub async fn install_chart(cluster: &ControlPlane) -> Result<PathBuf> {
    let chart = chart_dir();
    cluster
        .helm([
            "install",
            CHART_RELEASE,
            chart.to_str().context("chart path is not UTF-8")?,
            "--namespace",
            CHART_NAMESPACE,
            "--create-namespace",
        ])
        .await
        .context("helm install of the chart")?;
    cluster
        .service_account_kubeconfig(CHART_NAMESPACE, CHART_SERVICE_ACCOUNT)
        .await
}

/// The chart's directory in the repository.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/hostrouter")
}

/// Installs the chart once per run (its operator Deployment never starts: there is no
/// kubelet) and returns a kubeconfig holding a token of the chart's ServiceAccount, so the
/// operator runs with exactly the chart's RBAC.
pub async fn chart_identity(cluster: &ControlPlane) -> Result<PathBuf> {
    let result = CHART
        .get_or_init(|| async { install_chart(cluster).await.map_err(|e| format!("{e:#}")) })
        .await;
    result
        .clone()
        .map_err(|e| anyhow::anyhow!("installing the chart failed: {e}"))
}

/// One running operator, scoped to the HostRouters labelled `e2e.hostrouter.io/trial=<shard>`.
pub struct Operator {
    name: String,
    process: Process,
    http_address: String,
    shard: String,
    extra_args: Vec<String>,
    kubeconfig: PathBuf,
}

impl Operator {
    /// Starts the operator for this trial under the chart's identity and waits for `/readyz`.
    pub async fn start(cx: &TestContext, shard: &str, extra_args: &[&str]) -> Result<Self> {
        Self::start_as(cx, "hostrouter", shard, extra_args).await
    }

    /// Like [`Operator::start`], logging to `<name>.log`: for a second replica in one trial.
    pub async fn start_as(
        cx: &TestContext,
        name: &str,
        shard: &str,
        extra_args: &[&str],
    ) -> Result<Self> {
        let kubeconfig = chart_identity(cx.cluster()).await?;
        Self::start_with(cx, name, shard, extra_args, kubeconfig).await
    }

    /// Like [`Operator::start_as`], with `kubeconfig` (say, one that reaches the API server
    /// through a [`crate::relay::Relay`]).
    pub async fn start_with(
        cx: &TestContext,
        name: &str,
        shard: &str,
        extra_args: &[&str],
        kubeconfig: PathBuf,
    ) -> Result<Self> {
        let op = Self::launch(cx, name, shard, extra_args, kubeconfig)?;
        op.wait_ready().await?;
        Ok(op)
    }

    /// Like [`Operator::start_with`], without waiting until it is ready.
    pub fn launch(
        cx: &TestContext,
        name: &str,
        shard: &str,
        extra_args: &[&str],
        kubeconfig: PathBuf,
    ) -> Result<Self> {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let process = spawn(cx, name, &kubeconfig, shard, &extra_args, None)?;
        Ok(Self {
            name: name.into(),
            http_address: process.1,
            process: process.0,
            shard: shard.into(),
            extra_args,
            kubeconfig,
        })
    }

    /// Stops the operator (SIGTERM) and starts it again with the same arguments.
    pub async fn restart(&mut self, cx: &TestContext) -> Result<()> {
        self.stop().await?;
        self.resume(cx).await
    }

    /// Kills the operator (SIGKILL): no clean shutdown, nothing released.
    pub async fn kill(&mut self) -> Result<()> {
        self.process.signal(Signal::SIGKILL)?;
        self.process.wait().await?;
        Ok(())
    }

    /// Stops the operator (SIGTERM); [`Operator::resume`] starts it again.
    pub async fn stop(&mut self) -> Result<()> {
        self.process.stop(Duration::from_secs(10)).await?;
        Ok(())
    }

    /// Starts a stopped operator again, with the same arguments and HTTP address.
    pub async fn resume(&mut self, cx: &TestContext) -> Result<()> {
        self.relaunch(cx)?;
        self.wait_ready().await
    }

    /// Starts a stopped operator again without waiting until it is ready.
    pub fn relaunch(&mut self, cx: &TestContext) -> Result<()> {
        let (process, address) = spawn(
            cx,
            &self.name,
            &self.kubeconfig,
            &self.shard,
            &self.extra_args,
            Some(&self.http_address),
        )?;
        self.process = process;
        self.http_address = address;
        Ok(())
    }

    /// The label value that puts a HostRouter under this operator.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    pub fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    /// The current `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        self.process.ensure_running()?;
        let r = http::get(&self.http_address, "operator", "/metrics").await?;
        if r.status != 200 {
            bail!("/metrics answered {}: {}", r.status, r.body);
        }
        Ok(r.body)
    }

    /// One sample of `/metrics` (0 when the series does not exist).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(http::metric(&self.metrics().await?, name, labels).unwrap_or(0.0))
    }

    /// `hostrouter_object_writes_total` for one kind and operation.
    pub async fn writes_of(&self, kind: &str, operation: &str) -> Result<f64> {
        self.metric(
            "hostrouter_object_writes_total",
            &[("kind", kind), ("operation", operation)],
        )
        .await
    }

    /// Sum of `hostrouter_object_writes_total` over every kind and operation.
    pub async fn writes(&self) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("hostrouter_object_writes_total{"))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum())
    }

    /// Successful reconciles so far, once the operator is quiet: no reconcile held back for
    /// coalescing (`hostrouter_reconcile_queue_depth` 0) and the count unchanged for longer
    /// than the default coalescing window. A count read right after a change would miss the
    /// reconcile the coalescer still holds.
    pub async fn settled_reconciles(&self) -> Result<f64> {
        const QUIET: Duration = Duration::from_millis(1500);
        let count = || {
            self.metric(
                "controller_runtime_reconcile_total",
                &[("result", "success")],
            )
        };
        wait_until(
            "the operator to be quiet",
            Duration::from_secs(30),
            || async {
                let before = count().await?;
                tokio::time::sleep(QUIET).await;
                let held = self.metric("hostrouter_reconcile_queue_depth", &[]).await?;
                let after = count().await?;
                Ok(if held == 0.0 && after == before {
                    Progress::Done(after)
                } else {
                    Progress::pending(format!("{held} held, {before} -> {after} reconciles"))
                })
            },
        )
        .await
    }

    pub async fn wait_ready(&self) -> Result<()> {
        wait_until(
            "the operator to report ready on /readyz",
            Duration::from_secs(60),
            || async {
                self.process.ensure_running()?;
                match http::get(&self.http_address, "operator", "/readyz").await {
                    Ok(r) if r.status == 200 => Ok(Progress::Done(())),
                    Ok(r) => Ok(Progress::Pending(format!("{} {}", r.status, r.body.trim()))),
                    Err(e) => Ok(Progress::Pending(format!("{e:#}"))),
                }
            },
        )
        .await
    }
}

fn spawn(
    cx: &TestContext,
    name: &str,
    kubeconfig: &Path,
    shard: &str,
    extra_args: &[String],
    address: Option<&str>,
) -> Result<(Process, String)> {
    let address = match address {
        Some(a) => a.to_owned(),
        None => format!("127.0.0.1:{}", free_port()?),
    };
    let process = cx
        .process(name, tool(vars::HOSTROUTER_BIN)?)
        .arg("run")
        .arg("--http-address")
        .arg(&address)
        .arg("--router-selector")
        .arg(format!("{TRIAL_LABEL}={shard}"))
        .args(extra_args)
        .env("KUBECONFIG", kubeconfig)
        // Leader-election identities and Event reporters come from these; the harness's own
        // environment (a CI pod, say) must not leak into them.
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .env("HOSTROUTER_LOG", "info,hostrouter=debug,kube_runtime=debug")
        .env("NO_COLOR", "1")
        .spawn()?;
    Ok((process, address))
}
