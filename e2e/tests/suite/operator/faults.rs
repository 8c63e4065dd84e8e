//! The control plane fails under a running operator, which is not restarted: kube-apiserver is
//! killed and started again on its port, etcd is killed and started again, and the API server
//! is unreachable for 60 s (a relay in front of it closes every connection and refuses new
//! ones). After each, a change made while the part was away is in the Proxy within seconds;
//! meanwhile `/readyz` and `hostrouter_watch_healthy` say what is happening. Runs on a control
//! plane of its own, since it breaks it.
//!
//! The repetitions per fault come from `E2E_FAULT_ROUNDS` (1 in `make test`, more in
//! `make soak`); the trial prints the time to converge after each fault and the median.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::relay::{Relay, kubeconfig_via};
use hostrouter_e2e::resources::{proxies as proxy_api, routers};
use hostrouter_e2e::toolchain::{project_crds, tool, vars};
use hostrouter_e2e::{
    Component, ControlPlane, ControlPlaneOptions, Process, Progress, TestContext, http, wait_until,
};

use kube::Client;
use kube::api::PostParams;
use serde_json::json;

use crate::world::apply_service;

/// How long the API server stays unreachable.
const OUTAGE: Duration = Duration::from_secs(60);
/// How soon after a part's return a change made meanwhile must be in the Proxy: a watch
/// retries at least every 4 s (measured: 1-5 s; 15-22 s when an error of the routers' watch
/// held the controller's queue, and kube's default backoff alone allows 30 s).
const RECOVERY: Duration = Duration::from_secs(10);
const NS: &str = "apps";
const GLOO: &str = "gloo-system";

pub(super) async fn control_plane_faults(cx: &TestContext) -> Result<()> {
    let rounds: usize = std::env::var("E2E_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let cluster =
        ControlPlane::start(ControlPlaneOptions::from_env()?.crds(project_crds()?)).await?;
    let result = faults(cx, &cluster, rounds).await;
    cluster.stop_after(cx.name(), result).await
}

/// The operator, reaching the API server through `relay`.
struct Subject {
    process: Process,
    http: String,
}

impl Subject {
    async fn readyz(&self) -> Result<(u16, String)> {
        self.process.ensure_running()?;
        let r = http::get(&self.http, "operator", "/readyz").await?;
        Ok((r.status, r.body))
    }

    async fn watch_healthy(&self, kind: &str) -> Result<f64> {
        let m = http::get(&self.http, "operator", "/metrics").await?.body;
        http::metric(&m, "hostrouter_watch_healthy", &[("kind", kind)])
            .context("no hostrouter_watch_healthy series")
    }
}

async fn faults(cx: &TestContext, cluster: &ControlPlane, rounds: usize) -> Result<()> {
    let client = cluster.client();
    for ns in [NS, GLOO] {
        crate::world::create_namespace(&client, ns, json!({})).await?;
    }
    let server: std::net::SocketAddr = cluster
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .context("the API server's address")?;
    let relay = Relay::start(server).await?;
    let kubeconfig = kubeconfig_via(cluster.kubeconfig_path(), relay.address(), cx.log_dir())?;
    let http = format!("127.0.0.1:{}", hostrouter_e2e::net::free_port()?);
    let process = cx
        .process("hostrouter-faults", tool(vars::HOSTROUTER_BIN)?)
        .args(["run", "--http-address", &http, "--gloo-namespace", GLOO])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOSTROUTER_LOG", "info,hostrouter=debug")
        .env("NO_COLOR", "1")
        .spawn()?;
    let subject = Subject { process, http };

    apply_service(&client, NS, "s0", &[("http", 80, "TCP")], None).await?;
    let router = json!({
        "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
        "metadata": {"name": "edge", "namespace": NS},
        "spec": {"proxyName": "edge", "listener": {"port": 8080}, "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}}},
    });
    routers(&client, NS)
        .create(&PostParams::default(), &serde_json::from_value(router)?)
        .await?;
    wait_host(&client, &subject, "apps-s0-80", RECOVERY).await?;
    wait_ready(&subject, 200, "ok").await?;

    let mut times: Vec<(String, Duration)> = Vec::new();
    let mut n = 0;
    for round in 0..rounds {
        for component in [Component::ApiServer, Component::Etcd] {
            n += 1;
            cluster.kill(component).await?;
            if component == Component::ApiServer {
                // Every watch fails: /readyz says so once it has lasted a few seconds.
                wait_ready(&subject, 503, "failing").await?;
                ensure!(
                    subject.watch_healthy("Service").await? == 0.0,
                    "hostrouter_watch_healthy{{kind=\"Service\"}} should be 0 while the API server is down"
                );
            } else {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            cluster.start_again(component).await?;
            // A change made right after the return.
            let host = format!("apps-s{n}-80");
            let began = Instant::now();
            apply_service(&client, NS, &format!("s{n}"), &[("http", 80, "TCP")], None).await?;
            wait_host(&client, &subject, &host, RECOVERY).await?;
            let took = began.elapsed();
            eprintln!(
                "{}: round {round}: {component:?} killed and back: change in the Proxy {took:.2?} later",
                cx.name()
            );
            times.push((format!("{component:?}"), took));
            wait_ready(&subject, 200, "ok").await?;
        }

        // Unreachable for a minute; a change made meanwhile.
        n += 1;
        relay.cut(true);
        wait_ready(&subject, 503, "failing").await?;
        apply_service(&client, NS, &format!("s{n}"), &[("http", 80, "TCP")], None).await?;
        tokio::time::sleep(OUTAGE.saturating_sub(Duration::from_secs(6))).await;
        let (_, body) = subject.readyz().await?;
        eprintln!("{}: /readyz during the outage: {}", cx.name(), body.trim());
        relay.cut(false);
        let began = Instant::now();
        wait_host(&client, &subject, &format!("apps-s{n}-80"), RECOVERY).await?;
        let took = began.elapsed();
        eprintln!(
            "{}: round {round}: API server unreachable for {OUTAGE:?}: change made meanwhile in the Proxy {took:.2?} after its return",
            cx.name()
        );
        times.push(("Unreachable".into(), took));
        wait_ready(&subject, 200, "ok").await?;
    }
    for kind in ["ApiServer", "Etcd", "Unreachable"] {
        let mut t: Vec<Duration> = times
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, d)| *d)
            .collect();
        t.sort();
        eprintln!(
            "{}: {kind}: {} faults survived, median time to converge {:.2?}",
            cx.name(),
            t.len(),
            t[t.len() / 2]
        );
    }

    // Each watch logged each outage once, not on every retry.
    let log = std::fs::read_to_string(subject.process.log_path())?;
    let mut per_watch: BTreeMap<&str, usize> = BTreeMap::new();
    for line in log.lines() {
        if line.contains("watch failed; retrying with backoff") {
            let kind = line
                .split_once("kind=\"")
                .and_then(|(_, rest)| rest.split('"').next())
                .unwrap_or("?");
            *per_watch.entry(kind).or_default() += 1;
        }
    }
    let failures: usize = per_watch.values().sum();
    ensure!(
        per_watch.values().all(|n| *n <= times.len()),
        "watch-failure lines per watch {per_watch:?} for {} faults: the log spams",
        times.len()
    );
    let loud = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    eprintln!(
        "{}: {failures} watch-failure lines ({} watches), {loud} warnings and errors in all, for {} faults",
        cx.name(),
        per_watch.len(),
        times.len()
    );
    // Besides one line per watch, a few per fault (failed reconciles and status writes).
    ensure!(
        loud <= (per_watch.len() + 12) * times.len(),
        "{loud} warnings and errors for {} faults: the log spams",
        times.len()
    );
    Ok(())
}

/// Waits until the Proxy holds the domain `host`.
async fn wait_host(client: &Client, subject: &Subject, host: &str, within: Duration) -> Result<()> {
    let proxies = proxy_api(client, GLOO);
    wait_until(&format!("the Proxy to hold {host}"), within, || async {
        subject.process.ensure_running()?;
        let Some(p) = proxies.get_opt("edge").await? else {
            return Ok(Progress::pending("no Proxy"));
        };
        let text = p.data["spec"].to_string();
        Ok(if text.contains(&format!("\"{host}\"")) {
            Progress::Done(())
        } else {
            Progress::pending(text.len())
        })
    })
    .await
}

/// Waits until `/readyz` answers `status` with a body containing `says`.
async fn wait_ready(subject: &Subject, status: u16, says: &str) -> Result<()> {
    wait_until(
        &format!("/readyz to answer {status} ({says})"),
        Duration::from_secs(30),
        || async {
            let (got, body) = subject.readyz().await?;
            Ok(if got == status && body.contains(says) {
                Progress::Done(())
            } else {
                Progress::pending(format!("{got} {}", body.trim()))
            })
        },
    )
    .await
}
