//! The Envoy fleet a platform team runs (`spec.envoy.autoscaling`, `disruptionBudget`, `pod`,
//! and the Service's knobs), on a control plane of its own that runs the controllers these
//! objects meet in a cluster: deployment and replicaset (a pod-template change is a new
//! ReplicaSet), horizontalpodautoscaling (the real autoscaler sets the replica count) and
//! disruption. The operator runs with the chart's identity.
//!
//! The production sample (`config/samples/hostrouter_production.yaml`) is applied with a fixed
//! replica count first, then with its autoscaler: the Deployment's count passes to the
//! autoscaler without a drop to 1, the autoscaler raises it to its minimum, and a count set by
//! someone else is not reverted, not even when the operator rewrites the Deployment. Every
//! object holds exactly what `hostrouter render` prints for the router, and that output passes
//! kubernetes-validate --strict for Kubernetes 1.37. A pod annotation change rolls the pods (a
//! new pod-template hash); a Service annotation change does not. Drift of the autoscaler and
//! the budget is reverted; removing `autoscaling` deletes the autoscaler and restores
//! `envoy.replicas`; removing `disruptionBudget` deletes the budget. Kubernetes' refusal to
//! change a LoadBalancer's class is met at admission.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use hostrouter_e2e::cli::ToolCommand;
use hostrouter_e2e::json::first_difference;
use hostrouter_e2e::operator::{Operator, TRIAL_LABEL, install_chart};
use hostrouter_e2e::resources::routers;
use hostrouter_e2e::toolchain::{project_crds, tool, vars, workspace_root};
use hostrouter_e2e::{ControlPlane, ControlPlaneOptions, Progress, TestContext, wait_until};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::world::{create_namespace, wait_condition_on};

const EDGE: &str = "edge";
const APPS: &str = "apps";
const GLOO: &str = "gloo-system";
/// The sample's proxy name: the Deployment, Service, autoscaler and budget are all named so.
const PROXY: &str = "edge";
/// How long the operator and the controllers may take for one step.
const STEP: Duration = Duration::from_secs(60);
/// Long enough for the operator to have reverted a change if it were going to.
const SETTLE: Duration = Duration::from_secs(3);

pub(super) async fn production_fleet(cx: &TestContext) -> Result<()> {
    let mut options = ControlPlaneOptions::from_env()?.crds(project_crds()?);
    options.controllers = [
        "garbagecollector",
        "namespace",
        "deployment",
        "replicaset",
        "horizontalpodautoscaling",
        "disruption",
    ]
    .map(String::from)
    .to_vec();
    let cluster = ControlPlane::start(options).await?;
    let result = check(cx, &cluster).await;
    cluster.stop_after(cx.name(), result).await
}

/// The production sample, in the trial's namespaces, selected for this trial's operator.
fn sample(shard: &str) -> Result<Value> {
    let path = workspace_root().join("config/samples/hostrouter_production.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut router: Value = serde_yaml::from_str(&text)?;
    router["metadata"]["namespace"] = json!(EDGE);
    router["metadata"]["labels"] = json!({TRIAL_LABEL: shard});
    router["spec"]["namespaceSelector"] =
        json!({"matchLabels": {"kubernetes.io/metadata.name": APPS}});
    ensure!(
        router["spec"]["envoy"]["autoscaling"]["minReplicas"] == 3
            && router["spec"]["envoy"]["replicas"] == 3,
        "the sample changed: this trial expects minReplicas 3 and replicas 3"
    );
    // A fixed count below the autoscaler's minimum, to see the autoscaler raise it.
    router["spec"]["envoy"]["replicas"] = json!(2);
    Ok(router)
}

async fn check(cx: &TestContext, cluster: &ControlPlane) -> Result<()> {
    let client = cluster.client();
    create_namespace(&client, EDGE, json!({})).await?;
    create_namespace(&client, APPS, json!({"hostrouter.io/expose": "true"})).await?;
    create_namespace(&client, GLOO, json!({})).await?;
    crate::world::apply_service(&client, APPS, "web", &[("http", 80, "TCP")], None).await?;
    let priority = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "edge-critical"}, "value": 1000000});
    cluster
        .kubectl_command()?
        .args(["apply", "-f", "-"])
        .stdin(priority.to_string())
        .run()
        .await?;
    let kubeconfig = install_chart(cluster).await?;
    let shard = hostrouter_e2e::namespace::unique_name("f");
    let operator = Operator::start_with(
        cx,
        "hostrouter",
        &shard,
        &["--gloo-namespace", GLOO],
        kubeconfig,
    )
    .await?;
    let f = Fleet::new(&client);
    let full = sample(&shard)?;
    let mut fixed = full.clone();
    if let Some(envoy) = fixed["spec"]["envoy"].as_object_mut() {
        envoy.remove("autoscaling");
    }

    // A fixed count first: no autoscaler, the budget and the Service's knobs.
    f.apply(&fixed).await?;
    f.wait_replicas(2, "the fixed count").await?;
    wait_until("the budget written", STEP, || async {
        Ok(match f.budgets.get_opt(PROXY).await? {
            Some(_) => Progress::Done(()),
            None => Progress::pending("no PodDisruptionBudget"),
        })
    })
    .await?;
    ensure!(
        f.autoscalers.get_opt(PROXY).await?.is_none(),
        "an autoscaler without spec.envoy.autoscaling"
    );

    // With the autoscaler: every value the Deployment's count takes on the way is recorded,
    // from the fixed count on.
    let counts = f.record_replicas();
    let counts_seen = || counts.seen.lock().map(|c| c.clone()).unwrap_or_default();
    wait_until("the recorder to see the fixed count", STEP, || async {
        let seen = counts_seen();
        Ok(if seen == [2] {
            Progress::Done(())
        } else {
            Progress::pending(format!("counts {seen:?}"))
        })
    })
    .await?;
    f.apply(&full).await?;
    f.wait_replicas(3, "the autoscaler's minimum").await?;
    let seen = counts_seen();
    ensure!(
        seen == [2, 3],
        "the replica count should go from 2 to the autoscaler's minimum 3 and nowhere else (no drop to 1 while the autoscaler takes it over, no watch gap): {seen:?}"
    );
    let owner = f.replicas_manager().await?;
    ensure!(
        owner.iter().any(|m| m == "kube-controller-manager")
            && !owner.iter().any(|m| m == "hostrouter"),
        "spec.replicas should be the autoscaler's (kube-controller-manager), not the operator's: managed by {owner:?}"
    );
    eprintln!("{}: replica counts on the way: {seen:?}", cx.name());
    wait_condition_on(
        &client,
        EDGE,
        PROXY,
        "Programmed",
        "True",
        "Programmed",
        Some("Envoy ConfigMap, Service, Deployment, HorizontalPodAutoscaler and PodDisruptionBudget are up to date"),
    )
    .await?;

    // Exactly what `hostrouter render` prints, which is valid Kubernetes 1.37.
    let rendered = f.render_stored_router(cx).await?;
    wait_until("every object as rendered", STEP, || async {
        for doc in &rendered {
            let kind = doc["kind"].as_str().unwrap_or_default();
            let Some(live) = f.live(kind).await? else {
                return Ok(Progress::pending(format!("{kind} missing")));
            };
            if let Some(diff) = first_difference(doc, &live) {
                return Ok(Progress::pending(format!("{kind}: {diff}")));
            }
        }
        Ok(Progress::Done(()))
    })
    .await?;
    validate(cx, &rendered).await?;

    // A count someone else sets stays, also when the operator writes the Deployment again
    // (a pod annotation change, which rolls the pods).
    let before = f.template_hashes().await?;
    ensure!(before.len() == 1, "ReplicaSets before: {before:?}");
    cluster
        .kubectl(["-n", EDGE, "scale", "deployment", PROXY, "--replicas=4"])
        .await?;
    let mut annotated = full.clone();
    annotated["spec"]["envoy"]["pod"]["annotations"]["example.com/revision"] = json!("2");
    f.apply(&annotated).await?;
    let after = wait_until(
        "a new ReplicaSet for the new pod template",
        STEP,
        || async {
            let hashes = f.template_hashes().await?;
            Ok(if hashes.len() > before.len() {
                Progress::Done(hashes)
            } else {
                Progress::pending(format!("pod-template hashes {hashes:?}"))
            })
        },
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    let replicas = f.replicas().await?;
    ensure!(
        replicas == Some(4),
        "the count set by someone else was changed to {replicas:?} when the pod template changed"
    );
    // Nor did writing the Deployment fail on the way (a conflict over the count, say).
    let log = std::fs::read_to_string(operator.process().log_path())?;
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reconcile failed"))
        .collect();
    ensure!(failures.is_empty(), "reconciles failed: {failures:#?}");
    eprintln!("{}: pod-template hashes {before:?} -> {after:?}", cx.name());

    // A Service annotation change changes the Service only.
    let generation = f.deployments.get(PROXY).await?.metadata.generation;
    let mut relabelled = annotated.clone();
    relabelled["spec"]["service"]["annotations"]["example.com/owner"] = json!("platform");
    f.apply(&relabelled).await?;
    wait_until("the Service annotated", STEP, || async {
        let svc = f.services.get(PROXY).await?;
        Ok(
            match svc
                .metadata
                .annotations
                .unwrap_or_default()
                .get("example.com/owner")
            {
                Some(_) => Progress::Done(()),
                None => Progress::pending("not yet"),
            },
        )
    })
    .await?;
    tokio::time::sleep(SETTLE).await;
    let now = f.template_hashes().await?;
    let generation_now = f.deployments.get(PROXY).await?.metadata.generation;
    ensure!(
        now == after && generation_now == generation,
        "a Service annotation changed the Deployment: hashes {after:?} -> {now:?}, generation {generation:?} -> {generation_now:?}"
    );

    // Drift of the autoscaler is reverted; a deleted budget is written again.
    let drift = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": PROXY}, "spec": {"maxReplicas": 20}});
    f.autoscalers
        .patch(
            PROXY,
            &PatchParams::apply("someone").force(),
            &Patch::Apply(&drift),
        )
        .await?;
    let budget_uid = f.budgets.get(PROXY).await?.metadata.uid;
    f.budgets.delete(PROXY, &DeleteParams::default()).await?;
    wait_until("the drift reverted, the budget back", STEP, || async {
        let max = f.autoscalers.get(PROXY).await?.spec.max_replicas;
        let budget = f.budgets.get_opt(PROXY).await?.and_then(|b| b.metadata.uid);
        Ok(if max == 12 && budget.is_some() && budget != budget_uid {
            Progress::Done(())
        } else {
            Progress::pending(format!("maxReplicas {max}, budget {budget:?}"))
        })
    })
    .await?;

    // Without `autoscaling`: no autoscaler, and `envoy.replicas` again.
    let mut unscaled = relabelled.clone();
    if let Some(envoy) = unscaled["spec"]["envoy"].as_object_mut() {
        envoy.remove("autoscaling");
    }
    f.apply(&unscaled).await?;
    f.wait_replicas(2, "spec.envoy.replicas restored").await?;
    wait_until("the autoscaler deleted", STEP, || async {
        Ok(match f.autoscalers.get_opt(PROXY).await? {
            None => Progress::Done(()),
            Some(_) => Progress::pending("still there"),
        })
    })
    .await?;

    // Without `disruptionBudget`: no budget.
    let mut unbudgeted = unscaled.clone();
    if let Some(envoy) = unbudgeted["spec"]["envoy"].as_object_mut() {
        envoy.remove("disruptionBudget");
    }
    f.apply(&unbudgeted).await?;
    wait_until("the budget deleted", STEP, || async {
        Ok(match f.budgets.get_opt(PROXY).await? {
            None => Progress::Done(()),
            Some(_) => Progress::pending("still there"),
        })
    })
    .await?;

    // Kubernetes does not let a LoadBalancer change its class: neither does admission.
    let mut reclassed = unbudgeted.clone();
    reclassed["spec"]["service"]["loadBalancerClass"] = json!("example.com/other-lb");
    match f.try_apply(&reclassed).await {
        Err(kube::Error::Api(s))
            if s.code == 422 && s.message.contains("loadBalancerClass cannot change") => {}
        other => bail!("changing the load balancer class: {other:?}"),
    }
    operator.process().ensure_running()?;
    Ok(())
}

/// The replica counts a watch has seen; the watch stops when this is dropped (it would retry
/// for ever once the trial's control plane is gone).
struct Recorder {
    seen: Arc<Mutex<Vec<i32>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Handles on the fleet's objects in the router's namespace.
struct Fleet {
    routers: Api<DynamicObject>,
    deployments: Api<Deployment>,
    services: Api<Service>,
    autoscalers: Api<HorizontalPodAutoscaler>,
    budgets: Api<PodDisruptionBudget>,
    replica_sets: Api<ReplicaSet>,
    config_maps: Api<ConfigMap>,
}

impl Fleet {
    fn new(client: &Client) -> Self {
        let api = || client.clone();
        Self {
            routers: routers(client, EDGE),
            deployments: Api::namespaced(api(), EDGE),
            services: Api::namespaced(api(), EDGE),
            autoscalers: Api::namespaced(api(), EDGE),
            budgets: Api::namespaced(api(), EDGE),
            replica_sets: Api::namespaced(api(), EDGE),
            config_maps: Api::namespaced(api(), EDGE),
        }
    }

    async fn try_apply(&self, router: &Value) -> kube::Result<DynamicObject> {
        self.routers
            .patch(
                PROXY,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(router),
            )
            .await
    }

    async fn apply(&self, router: &Value) -> Result<()> {
        self.try_apply(router)
            .await
            .context("applying the router")?;
        Ok(())
    }

    async fn replicas(&self) -> Result<Option<i32>> {
        Ok(self
            .deployments
            .get_opt(PROXY)
            .await?
            .and_then(|d| d.spec.replicas))
    }

    async fn wait_replicas(&self, want: i32, what: &str) -> Result<()> {
        wait_until(&format!("{want} replicas ({what})"), STEP, || async {
            let now = self.replicas().await?;
            Ok(if now == Some(want) {
                Progress::Done(())
            } else {
                Progress::pending(format!("replicas {now:?}"))
            })
        })
        .await
    }

    /// Every `spec.replicas` the Deployment takes from now on, as a watch sees it. The watch
    /// ends with the returned recorder.
    fn record_replicas(&self) -> Recorder {
        let seen: Arc<Mutex<Vec<i32>>> = Arc::default();
        let sink = seen.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={PROXY}"));
        let stream = watcher(self.deployments.clone(), config)
            .default_backoff()
            .applied_objects();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                // A failed watch relists; a count it missed meanwhile would go unseen: say so
                // in the record (-1), which then fails the check.
                let n = match event {
                    Ok(d) => d.spec.replicas,
                    Err(_) => Some(-1),
                };
                if let (Some(n), Ok(mut seen)) = (n, sink.lock())
                    && seen.last() != Some(&n)
                {
                    seen.push(n);
                }
            }
        });
        Recorder { seen, task }
    }

    /// The field managers of the Deployment's `spec.replicas`.
    async fn replicas_manager(&self) -> Result<Vec<String>> {
        let d = self.deployments.get(PROXY).await?;
        Ok(d.metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter(|m| {
                m.fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
            })
            .filter_map(|m| m.manager)
            .collect())
    }

    /// The `pod-template-hash` of each ReplicaSet of the Envoy Deployment.
    async fn template_hashes(&self) -> Result<BTreeSet<String>> {
        let params = ListParams::default().labels(&format!("app.kubernetes.io/instance={PROXY}"));
        Ok(self
            .replica_sets
            .list(&params)
            .await?
            .items
            .into_iter()
            .filter_map(|rs| rs.metadata.labels?.get("pod-template-hash").cloned())
            .collect())
    }

    /// `hostrouter render` of the router as stored (its uid included): the objects of its
    /// namespace (the Proxy is Gloo's CRD, checked elsewhere).
    async fn render_stored_router(&self, cx: &TestContext) -> Result<Vec<Value>> {
        let mut stored = serde_json::to_value(self.routers.get(PROXY).await?)?;
        if let Some(meta) = stored["metadata"].as_object_mut() {
            meta.remove("managedFields");
        }
        let path = cx.log_dir().join("fleet-router.yaml");
        std::fs::write(&path, serde_yaml::to_string(&stored)?)?;
        let out = ToolCommand::new(tool(vars::HOSTROUTER_BIN)?)
            .arg("render")
            .arg("-f")
            .arg(&path)
            .args(["--gloo-namespace", GLOO])
            .run()
            .await
            .context("hostrouter render of the stored router")?;
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&out)
            .map(|d| serde::Deserialize::deserialize(d).map_err(anyhow::Error::from))
            .collect::<Result<_>>()?;
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        ensure!(
            kinds
                == [
                    "Proxy",
                    "ConfigMap",
                    "Service",
                    "Deployment",
                    "HorizontalPodAutoscaler",
                    "PodDisruptionBudget"
                ],
            "render printed {kinds:?}"
        );
        Ok(docs.into_iter().filter(|d| d["kind"] != "Proxy").collect())
    }

    /// The object of `kind` named like the proxy, as stored.
    async fn live(&self, kind: &str) -> Result<Option<Value>> {
        let name = match kind {
            "ConfigMap" => format!("{PROXY}-envoy-bootstrap"),
            _ => PROXY.to_owned(),
        };
        let value = match kind {
            "ConfigMap" => to_value(self.config_maps.get_opt(&name).await?)?,
            "Service" => to_value(self.services.get_opt(&name).await?)?,
            "Deployment" => to_value(self.deployments.get_opt(&name).await?)?,
            "HorizontalPodAutoscaler" => to_value(self.autoscalers.get_opt(&name).await?)?,
            "PodDisruptionBudget" => to_value(self.budgets.get_opt(&name).await?)?,
            other => bail!("render printed an unexpected kind {other}"),
        };
        Ok(value)
    }
}

fn to_value<T: serde::Serialize>(o: Option<T>) -> Result<Option<Value>> {
    Ok(o.map(serde_json::to_value).transpose()?)
}

/// kubernetes-validate --strict, for Kubernetes 1.37, of `docs`.
async fn validate(cx: &TestContext, docs: &[Value]) -> Result<()> {
    let path = cx.log_dir().join("fleet-rendered.yaml");
    let yaml = docs
        .iter()
        .map(serde_yaml::to_string)
        .collect::<Result<Vec<_>, _>>()?
        .join("---\n");
    std::fs::write(&path, yaml)?;
    let (valid, text) = ToolCommand::new(tool(vars::KUBERNETES_VALIDATE)?)
        .args(["--strict", "--kubernetes-version", "1.37.0"])
        .arg(&path)
        .status_and_text()
        .await?;
    ensure!(
        valid && !text.contains("WARN") && !text.contains("ERROR"),
        "kubernetes-validate refused the rendered fleet:\n{text}"
    );
    eprintln!("{}: kubernetes-validate 1.37: {}", cx.name(), text.trim());
    Ok(())
}
