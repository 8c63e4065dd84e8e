//! Crashes during churn: while Services and namespaces are created, relabelled and deleted and
//! HostRouters are created, edited and deleted, the operator is killed (SIGKILL) at random
//! moments and started again. Once the churn stops, every object the operator writes equals
//! what `hostrouter render` computes from the final cluster (every field render gives, with the
//! same value; the Proxy's spec exactly), no managed object is left without its router, no
//! Proxy holds a domain twice, and deleting the routers leaves no finalizer stuck.
//!
//! The schedule (which step, which object, when to kill) comes from a seed printed at the
//! start: `E2E_CRASH_SEED=<seed>` replays a run. `E2E_CRASH_KILLS` sets the number of kills
//! (3 in `make test`, 20 in `make soak`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::cli::ToolCommand;
use hostrouter_e2e::json::first_difference;
use hostrouter_e2e::namespace::unique_name;
use hostrouter_e2e::operator::{Operator, TRIAL_LABEL};
use hostrouter_e2e::resources::{proxies as proxy_api, routers};
use hostrouter_e2e::rng::Rng;
use hostrouter_e2e::toolchain::{tool, vars};
use hostrouter_e2e::{Progress, TestContext, TestNamespace, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::world::{EXPOSE_LABEL, apply_service, domains_per_listener, managed_objects};

/// How long the cluster may take to match render once the churn stops.
const SETTLE: Duration = Duration::from_secs(45);
const ROUTED: &str = "e2e.hostrouter.io/routed";
const ROUTER_NAMES: [&str; 3] = ["r0", "r1", "r2"];
const SERVICE_NAMES: [&str; 4] = ["a", "b", "c", "d"];
const PORTS: [(&str, i32, &str); 4] = [
    ("http", 80, "TCP"),
    ("web", 8080, "TCP"),
    ("admin", 9090, "TCP"),
    ("dns", 53, "UDP"),
];
/// At most this many app namespaces at a time.
const MAX_APPS: usize = 4;

pub(super) async fn crash_during_churn(cx: &TestContext) -> Result<()> {
    let seed = Rng::seed_from_env("E2E_CRASH_SEED")?;
    let kills: usize = match std::env::var("E2E_CRASH_KILLS") {
        Ok(v) => v.parse().context("E2E_CRASH_KILLS")?,
        Err(_) => 3,
    };
    eprintln!(
        "{}: seed {seed}, {kills} kills (replay: E2E_CRASH_SEED={seed})",
        cx.name()
    );
    let mut rng = Rng::new(seed);
    let shard = unique_name("k");
    let edge = cx.namespace([]).await?;
    let gloo = cx.namespace([]).await?;
    let settings = vec![
        "--gloo-namespace".to_owned(),
        gloo.name().to_owned(),
        "--router-selector".to_owned(),
        format!("{TRIAL_LABEL}={shard}"),
    ];
    let mut operator = Operator::start(cx, &shard, &["--gloo-namespace", gloo.name()]).await?;
    let mut churn = Churn {
        cx,
        client: cx.client(),
        shard: shard.clone(),
        edge,
        apps: Vec::new(),
        steps: BTreeMap::new(),
    };
    for _ in 0..2 {
        churn.add_namespace(&mut rng).await?;
    }
    for name in &ROUTER_NAMES[..2] {
        churn.apply_router(name, &mut rng).await?;
    }

    // Churn, with a kill at a random moment of each slot of 3 s; the operator stays down for up
    // to 1.5 s each time. The last kill comes after the churn: a few more changes are made
    // while the operator is down, and none after it is back.
    const SLOT: Duration = Duration::from_secs(3);
    let during = kills.saturating_sub(1);
    let length = Duration::from_secs(3) + SLOT * during as u32;
    let began = Instant::now();
    let mut kill_at: Vec<Duration> = (0..during)
        .rev()
        .map(|i| SLOT * i as u32 + rng.between(Duration::ZERO, SLOT / 2))
        .collect();
    let mut restart_at: Option<Instant> = None;
    let mut killed = 0;
    while began.elapsed() < length || restart_at.is_some() || !kill_at.is_empty() {
        if restart_at.is_none() && kill_at.last().is_some_and(|t| began.elapsed() >= *t) {
            kill_at.pop();
            operator.kill().await?;
            killed += 1;
            restart_at =
                Some(Instant::now() + rng.between(Duration::ZERO, Duration::from_millis(1500)));
        }
        if restart_at.is_some_and(|t| Instant::now() >= t) {
            operator.relaunch(cx)?;
            restart_at = None;
        }
        churn.step(&mut rng).await?;
        tokio::time::sleep(rng.between(Duration::from_millis(20), Duration::from_millis(250)))
            .await;
    }
    if kills > 0 {
        operator.kill().await?;
        killed += 1;
        for _ in 0..8 + rng.below(9) {
            churn.step(&mut rng).await?;
        }
        operator.relaunch(cx)?;
    }
    operator.wait_ready().await?;
    eprintln!(
        "{}: churn over after {:.1?}: {killed} kills, steps {:?}",
        cx.name(),
        began.elapsed(),
        churn.steps
    );

    let settled = Instant::now();
    let summary = wait_until(
        "every object the operator writes to match `hostrouter render`",
        SETTLE,
        || async {
            operator.process().ensure_running()?;
            churn.matches_render(gloo.name(), &settings).await
        },
    )
    .await?;
    eprintln!(
        "{}: {killed} kills survived; converged {:.1?} after the churn: {summary}",
        cx.name(),
        settled.elapsed()
    );

    // Deleting every router leaves nothing behind and no finalizer stuck.
    let api = routers(&churn.client, churn.edge.name());
    for name in ROUTER_NAMES {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    wait_until(
        "the routers and everything they wrote to be gone",
        SETTLE,
        || async {
            operator.process().ensure_running()?;
            let left = managed_objects(&churn.client, churn.edge.name(), gloo.name()).await?;
            let routers = api.list(&ListParams::default()).await?.items.len();
            Ok(if left.is_empty() && routers == 0 {
                Progress::Done(())
            } else {
                Progress::pending(format!("{routers} routers; objects {left:?}"))
            })
        },
    )
    .await?;
    ensure!(killed == kills, "{killed} of {kills} kills happened");
    Ok(())
}

/// The trial's changing world.
struct Churn<'a> {
    cx: &'a TestContext,
    client: Client,
    shard: String,
    edge: TestNamespace,
    apps: Vec<TestNamespace>,
    /// How many times each kind of step ran.
    steps: BTreeMap<&'static str, usize>,
}

impl Churn<'_> {
    async fn step(&mut self, rng: &mut Rng) -> Result<()> {
        let step = match rng.below(14) {
            0..=3 => self.apply_service(rng).await?,
            4 | 5 => self.delete_service(rng).await?,
            6 | 7 => self.relabel_namespace(rng).await?,
            8 if self.apps.len() < MAX_APPS => self.add_namespace(rng).await?,
            8 | 9 if self.apps.len() > 1 => self.delete_namespace(rng).await?,
            12 => self.delete_router(rng).await?,
            _ => {
                let name = *rng.pick(&ROUTER_NAMES);
                self.apply_router(name, rng).await?
            }
        };
        *self.steps.entry(step).or_default() += 1;
        Ok(())
    }

    fn app(&self, rng: &mut Rng) -> &str {
        self.apps[rng.below(self.apps.len())].name()
    }

    async fn apply_service(&mut self, rng: &mut Rng) -> Result<&'static str> {
        let ns = self.app(rng).to_owned();
        let first = rng.below(PORTS.len());
        let mut ports = vec![PORTS[first]];
        if rng.chance(0.4) {
            let second = PORTS[(first + 1 + rng.below(PORTS.len() - 1)) % PORTS.len()];
            ports.push(second);
        }
        let name = *rng.pick(&SERVICE_NAMES);
        match apply_service(&self.client, &ns, name, &ports, None).await {
            Ok(()) => Ok("apply Service"),
            // The namespace is being deleted.
            Err(e) if format!("{e:#}").contains("being terminated") => {
                Ok("apply Service (refused)")
            }
            Err(e) => Err(e),
        }
    }

    async fn delete_service(&mut self, rng: &mut Rng) -> Result<&'static str> {
        let ns = self.app(rng).to_owned();
        let name = *rng.pick(&SERVICE_NAMES);
        let api: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        let _ = api.delete(name, &DeleteParams::default()).await;
        Ok("delete Service")
    }

    /// Toggles whether a namespace is selected, or whether it consents to being published.
    async fn relabel_namespace(&mut self, rng: &mut Rng) -> Result<&'static str> {
        let ns = self.app(rng).to_owned();
        let api: Api<Namespace> = Api::all(self.client.clone());
        let current = api.get(&ns).await?.metadata.labels.unwrap_or_default();
        let key = if rng.chance(0.5) {
            ROUTED
        } else {
            EXPOSE_LABEL
        };
        let value = match current.get(key) {
            Some(_) => Value::Null,
            None if key == ROUTED => json!(self.shard),
            None => json!("true"),
        };
        api.patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
        )
        .await?;
        Ok("relabel namespace")
    }

    async fn add_namespace(&mut self, rng: &mut Rng) -> Result<&'static str> {
        let ns = self
            .cx
            .namespace([(ROUTED, self.shard.as_str()), (EXPOSE_LABEL, "true")])
            .await?;
        for name in &SERVICE_NAMES[..1 + rng.below(SERVICE_NAMES.len())] {
            apply_service(&self.client, ns.name(), name, &[*rng.pick(&PORTS)], None).await?;
        }
        self.apps.push(ns);
        Ok("create namespace")
    }

    async fn delete_namespace(&mut self, rng: &mut Rng) -> Result<&'static str> {
        let ns = self.apps.remove(rng.below(self.apps.len()));
        ns.delete().await?;
        Ok("delete namespace")
    }

    /// Creates or edits a router: listener port, hostname template and path routing vary.
    async fn apply_router(&mut self, name: &str, rng: &mut Rng) -> Result<&'static str> {
        let mut spec = json!({
            "proxyName": format!("{name}-{}", &self.shard[self.shard.len().saturating_sub(6)..]),
            "listener": {"port": *rng.pick(&[8080, 8081])},
            "namespaceSelector": {"matchLabels": {ROUTED: self.shard}},
            "service": {"type": "ClusterIP"},
        });
        match rng.below(3) {
            0 => {}
            1 => spec["hosts"] = json!({"template": "{service}-{port}.{namespace}.example.test"}),
            _ => spec["paths"] = json!({"host": "api.example.test"}),
        }
        let router = json!({
            "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
            "metadata": {"name": name, "namespace": self.edge.name(), "labels": {TRIAL_LABEL: self.shard}},
            "spec": spec,
        });
        routers(&self.client, self.edge.name())
            .patch(
                name,
                &PatchParams::apply("e2e-churn").force(),
                &Patch::Apply(&router),
            )
            .await
            .with_context(|| format!("applying HostRouter {name}"))?;
        Ok("apply HostRouter")
    }

    async fn delete_router(&mut self, rng: &mut Rng) -> Result<&'static str> {
        let name = *rng.pick(&ROUTER_NAMES);
        let _ = routers(&self.client, self.edge.name())
            .delete(name, &DeleteParams::default())
            .await;
        Ok("delete HostRouter")
    }

    /// `Done` when every router's objects are what `hostrouter render` gives for the cluster as
    /// it is, and nothing else is managed; else what differs.
    async fn matches_render(&self, gloo: &str, settings: &[String]) -> Result<Progress<String>> {
        let routers = routers(&self.client, self.edge.name())
            .list(&ListParams::default().labels(&format!("{TRIAL_LABEL}={}", self.shard)))
            .await?
            .items;
        if let Some(r) = routers
            .iter()
            .find(|r| r.metadata.deletion_timestamp.is_some())
        {
            return Ok(Progress::pending(format!(
                "HostRouter {} is still being deleted",
                r.metadata.name.as_deref().unwrap_or_default()
            )));
        }
        let dir = self.cx.log_dir();
        let cluster = self
            .cx
            .cluster()
            .kubectl(["get", "ns,svc", "-A", "-o", "yaml"])
            .await?;
        std::fs::write(dir.join("crash-cluster.yaml"), cluster)?;
        let mut expected = BTreeSet::new();
        let mut virtual_hosts = 0;
        for router in &routers {
            let name = router.metadata.name.clone().unwrap_or_default();
            let path = dir.join(format!("crash-router-{name}.yaml"));
            std::fs::write(&path, serde_yaml::to_string(router)?)?;
            let out = ToolCommand::new(tool(vars::HOSTROUTER_BIN)?)
                .arg("render")
                .arg("-f")
                .arg(&path)
                .arg("--cluster")
                .arg(dir.join("crash-cluster.yaml"))
                .args(settings)
                .run()
                .await
                .with_context(|| format!("rendering HostRouter {name}"))?;
            let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&out)
                .map(|d| serde::Deserialize::deserialize(d).map_err(anyhow::Error::from))
                .collect::<Result<_>>()?;
            ensure!(
                docs.len() == 4,
                "render printed {} objects for {name}",
                docs.len()
            );
            for doc in &docs {
                let (kind, ns, object) = identity(doc);
                let Some(live) = self.live(&kind, &ns, &object).await? else {
                    return Ok(Progress::pending(format!(
                        "{kind} {ns}/{object} of {name} missing"
                    )));
                };
                if let Some(diff) = first_difference(doc, &live) {
                    return Ok(Progress::pending(format!(
                        "{kind} {ns}/{object} of {name}: {diff}"
                    )));
                }
                if kind == "Proxy" {
                    if doc["spec"] != live["spec"] {
                        return Ok(Progress::pending(format!(
                            "Proxy {object}: spec holds more than render gives"
                        )));
                    }
                    for domains in domains_per_listener(&live) {
                        let unique: BTreeSet<&String> = domains.iter().collect();
                        ensure!(
                            unique.len() == domains.len(),
                            "Proxy {object} holds a domain twice in a listener: {domains:?}"
                        );
                        virtual_hosts += domains.len();
                    }
                }
                expected.insert((kind, ns, object));
            }
        }
        let managed = managed_objects(&self.client, self.edge.name(), gloo).await?;
        if let Some(orphan) = managed.difference(&expected).next() {
            return Ok(Progress::pending(format!("orphan: {orphan:?}")));
        }
        Ok(Progress::Done(format!(
            "{} routers, {} objects, {virtual_hosts} domains",
            routers.len(),
            expected.len()
        )))
    }

    async fn live(&self, kind: &str, ns: &str, name: &str) -> Result<Option<Value>> {
        let c = self.client.clone();
        Ok(match kind {
            "Proxy" => proxy_api(&c, ns)
                .get_opt(name)
                .await?
                .map(serde_json::to_value)
                .transpose()?,
            "ConfigMap" => Api::<ConfigMap>::namespaced(c, ns)
                .get_opt(name)
                .await?
                .map(serde_json::to_value)
                .transpose()?,
            "Service" => Api::<Service>::namespaced(c, ns)
                .get_opt(name)
                .await?
                .map(serde_json::to_value)
                .transpose()?,
            "Deployment" => Api::<Deployment>::namespaced(c, ns)
                .get_opt(name)
                .await?
                .map(serde_json::to_value)
                .transpose()?,
            other => anyhow::bail!("render printed an unexpected kind {other}"),
        })
    }
}

fn identity(doc: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        s(&doc["kind"]),
        s(&doc["metadata"]["namespace"]),
        s(&doc["metadata"]["name"]),
    )
}
