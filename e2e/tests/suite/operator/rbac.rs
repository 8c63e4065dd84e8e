//! The chart's RBAC is the least that works: every verb of every rule of its ClusterRole and
//! leader-election Role is needed. With the chart's rules as they are, an exercise of
//! everything the operator does passes without a single `forbidden`; with any one verb
//! removed, the operator reports `cannot <verb> resource "<resource>"` for exactly that verb.
//! A verb whose removal goes unnoticed fails the trial: it should not be in the chart.
//!
//! The exercise: a router whose Proxy name is held by another shard's Proxy for a router that
//! is gone (the operator asks the API server: `get` HostRouters), with a TLS certificate
//! (Secrets); drift of the Proxy reverted twice (an Event, then its series: `create`, `patch`
//! Events); the Envoy Deployment deleted and written again; a certificate Secret of the wrong
//! type named (the Secret's metadata is read: `get` Secrets); the proxy name changed (the old
//! objects deleted); an autoscaler and a disruption budget for its Envoy fleet, written and then
//! deleted with their fields; the router moved to the Gateway API backend (its Gateway and HTTPRoute
//! written, Gloo's objects deleted), an HTTPRoute's drift reverted, and back to Gloo (the
//! Gateway and HTTPRoute deleted); the router deleted (the finalizer deletes the Proxy); leader election
//! throughout (the Lease created, read, and renewed at least once). Runs on a control plane of
//! its own with the OwnerReferencesPermissionEnforcement admission plugin on, as OpenShift runs
//! it: owner references with `blockOwnerDeletion` would need `update hostrouters/finalizers`;
//! the operator's have none.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use hostrouter_e2e::operator::{Operator, chart_dir};
use hostrouter_e2e::pki::TestCa;
use hostrouter_e2e::resources::{
    apply_secret, apply_tls_secret, gateways, http_routes, proxies as proxy_api, routers,
};
use hostrouter_e2e::toolchain::project_crds;
use hostrouter_e2e::{ControlPlane, ControlPlaneOptions, Progress, TestContext, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Runs with one verb removed at a time, this many at once.
const PARALLEL: usize = 6;
/// How long each step of the exercise may take.
const STEP: Duration = Duration::from_secs(20);
const RBAC_NS: &str = "rbac";
const EDGE: &str = "edge";
const APPS: &str = "apps";
const GLOO: &str = "gloo";

/// One verb on one resource, granted by the ClusterRole or by the leader-election Role.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    namespaced: bool,
    group: String,
    resource: String,
    verb: String,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {} ({group})", self.verb, self.resource)
    }
}

impl Permission {
    /// Whether a log line holds the API server's refusal of this verb (quoted plainly by the
    /// operator's own messages, escaped in kube-runtime's debug output).
    fn refused_in(&self, line: &str) -> bool {
        let (v, r, g) = (&self.verb, &self.resource, &self.group);
        line.contains(&format!("cannot {v} resource \"{r}\" in API group \"{g}\""))
            || line.contains(&format!(
                "cannot {v} resource \\\"{r}\\\" in API group \\\"{g}\\\""
            ))
    }
}

/// The chart's rules: the ClusterRole's and the leader-election Role's.
struct Rules {
    cluster: Vec<Value>,
    lease: Vec<Value>,
}

impl Rules {
    async fn from_chart(cluster: &ControlPlane) -> Result<Self> {
        let chart = chart_dir();
        let chart = chart.to_str().context("chart path is not UTF-8")?;
        let rules = |yaml: &str, kind: &str| -> Result<Vec<Value>> {
            let doc = serde_yaml::Deserializer::from_str(yaml)
                .map(|d| serde::Deserialize::deserialize(d).map_err(anyhow::Error::from))
                .collect::<Result<Vec<Value>>>()?
                .into_iter()
                .find(|d| d["kind"] == kind)
                .with_context(|| format!("no {kind} in the chart"))?;
            Ok(doc["rules"].as_array().cloned().unwrap_or_default())
        };
        let template = |file: &'static str| {
            cluster.helm([
                "template",
                "hostrouter",
                chart,
                "--namespace",
                RBAC_NS,
                "--show-only",
                file,
            ])
        };
        Ok(Self {
            cluster: rules(
                &template("templates/clusterrole.yaml").await?,
                "ClusterRole",
            )?,
            lease: rules(
                &template("templates/leader-election-rbac.yaml").await?,
                "Role",
            )?,
        })
    }

    /// Every verb of every rule, one by one.
    fn permissions(&self) -> Result<Vec<Permission>> {
        let mut all = Vec::new();
        for (namespaced, rules) in [(false, &self.cluster), (true, &self.lease)] {
            for rule in rules {
                let strings = |key: &str| -> Vec<String> {
                    rule[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                };
                let groups = strings("apiGroups");
                ensure!(groups.len() == 1, "a rule with several API groups: {rule}");
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        ensure!(
                            verb != "*" && resource != "*",
                            "a wildcard in the chart's RBAC: {rule}"
                        );
                        all.push(Permission {
                            namespaced,
                            group: groups[0].clone(),
                            resource: resource.clone(),
                            verb,
                        });
                    }
                }
            }
        }
        Ok(all)
    }

    /// The rules without `p`.
    fn without(&self, p: &Permission) -> Self {
        let strip = |rules: &[Value], namespaced: bool| -> Vec<Value> {
            rules
                .iter()
                .flat_map(|rule| {
                    if namespaced != p.namespaced || rule["apiGroups"][0] != p.group.as_str() {
                        return vec![rule.clone()];
                    }
                    let resources: Vec<&Value> =
                        rule["resources"].as_array().into_iter().flatten().collect();
                    if !resources.iter().any(|r| *r == p.resource.as_str()) {
                        return vec![rule.clone()];
                    }
                    // The other resources keep every verb; this one loses `p.verb`.
                    let mut out = Vec::new();
                    let others: Vec<&Value> = resources
                        .iter()
                        .copied()
                        .filter(|r| *r != p.resource.as_str())
                        .collect();
                    if !others.is_empty() {
                        let mut r = rule.clone();
                        r["resources"] = json!(others);
                        out.push(r);
                    }
                    let verbs: Vec<&Value> = rule["verbs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|v| *v != p.verb.as_str())
                        .collect();
                    if !verbs.is_empty() {
                        let mut r = rule.clone();
                        r["resources"] = json!([p.resource]);
                        r["verbs"] = json!(verbs);
                        out.push(r);
                    }
                    out
                })
                .collect()
        };
        Self {
            cluster: strip(&self.cluster, false),
            lease: strip(&self.lease, true),
        }
    }

    /// A ServiceAccount `name` bound to these rules; returns a kubeconfig holding its token.
    async fn grant(&self, cluster: &ControlPlane, name: &str) -> Result<std::path::PathBuf> {
        let c = cluster.client();
        let pp = PatchParams::apply("e2e").force();
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": RBAC_NS}});
        Api::<ServiceAccount>::namespaced(c.clone(), RBAC_NS)
            .patch(name, &pp, &Patch::Apply(&sa))
            .await?;
        let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": RBAC_NS}]);
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": self.cluster});
        Api::<ClusterRole>::all(c.clone())
            .patch(name, &pp, &Patch::Apply(&role))
            .await?;
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}, "subjects": subject});
        Api::<ClusterRoleBinding>::all(c.clone())
            .patch(name, &pp, &Patch::Apply(&binding))
            .await?;
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": RBAC_NS}, "rules": self.lease});
        Api::<Role>::namespaced(c.clone(), RBAC_NS)
            .patch(name, &pp, &Patch::Apply(&role))
            .await?;
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": RBAC_NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}, "subjects": subject});
        Api::<RoleBinding>::namespaced(c.clone(), RBAC_NS)
            .patch(name, &pp, &Patch::Apply(&binding))
            .await?;
        cluster.service_account_kubeconfig(RBAC_NS, name).await
    }
}

pub(super) async fn every_verb_is_needed(cx: &TestContext) -> Result<()> {
    let mut options = ControlPlaneOptions::from_env()?.crds(project_crds()?);
    options
        .apiserver_args
        .push("--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into());
    let cluster = ControlPlane::start(options).await?;
    let result = check(cx, &cluster).await;
    cluster.stop_after(cx.name(), result).await
}

async fn check(cx: &TestContext, cluster: &ControlPlane) -> Result<()> {
    let client = cluster.client();
    setup(cx, &client).await?;
    let rules = Rules::from_chart(cluster).await?;
    let permissions = rules.permissions()?;

    // The chart's rules as they are: everything works, nothing is refused.
    let kubeconfig = rules.grant(cluster, "full").await?;
    let outcome = run(cx, &client, "full", kubeconfig, None).await?;
    let Outcome::Passed(log) = outcome else {
        bail!("with the chart's rules as they are: {outcome}");
    };
    ensure!(
        !log.contains("forbidden"),
        "with the chart's rules as they are, something was refused:\n{}",
        log.lines()
            .filter(|l| l.contains("forbidden"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // What the chart's identity may do, as the API server sees it (the chart's rules and the
    // defaults every account has): no write outside its own kinds, Secrets read only.
    for ns in [RBAC_NS, EDGE] {
        let grants = grants(cluster, "full", ns).await?;
        let report: Vec<String> = grants
            .iter()
            .map(|(r, v)| format!("{r} [{}]", v.join(" ")))
            .collect();
        eprintln!(
            "{}: in namespace {ns} the chart's identity may: {}",
            cx.name(),
            report.join(", ")
        );
        for (resource, verbs) in &grants {
            let writes: Vec<&String> = verbs
                .iter()
                .filter(|v| !READS.contains(&v.as_str()))
                .collect();
            let allowed = WRITABLE.contains(&resource.as_str())
                || (ns == RBAC_NS && resource == "leases.coordination.k8s.io");
            ensure!(
                writes.is_empty() || allowed,
                "in namespace {ns} the chart's identity may {writes:?} {resource}"
            );
        }
        ensure!(
            !grants
                .iter()
                .any(|(r, v)| r == "*" || v.iter().any(|v| v == "*")),
            "a wildcard grant: {grants:?}"
        );
    }

    // One verb removed at a time.
    type Run<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = (Permission, Result<Outcome>)> + Send + 'a>,
    >;
    let runs: Vec<Run<'_>> = permissions
        .iter()
        .enumerate()
        .map(|(i, p)| Box::pin(without(cx, cluster, &rules, i, p)) as Run<'_>)
        .collect();
    let outcomes: Vec<(Permission, Result<Outcome>)> = futures::stream::iter(runs)
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut table = BTreeMap::new();
    let mut unneeded = Vec::new();
    for (p, outcome) in outcomes {
        match outcome? {
            Outcome::Refused { step, line } => {
                table.insert(p, (step, line));
            }
            other => unneeded.push(format!("{p}: {other}")),
        }
    }
    let report: Vec<String> = table
        .iter()
        .map(|(p, (step, _))| format!("  {p:<45} needed by: {step}"))
        .collect();
    eprintln!(
        "{}: {} verbs in the chart's RBAC, each needed:\n{}",
        cx.name(),
        table.len(),
        report.join("\n")
    );
    ensure!(
        unneeded.is_empty(),
        "verbs in the chart's RBAC the operator does not need (remove them):\n{}",
        unneeded.join("\n")
    );
    Ok(())
}

/// Verbs that write nothing.
const READS: [&str; 3] = ["get", "list", "watch"];
/// What the operator writes (and the reviews every account may ask for about itself).
const WRITABLE: [&str; 15] = [
    "hostrouters.hostrouter.io",
    "hostrouters.hostrouter.io/status",
    "services",
    "configmaps",
    "deployments.apps",
    "horizontalpodautoscalers.autoscaling",
    "poddisruptionbudgets.policy",
    "proxies.gloo.solo.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "events.events.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectreviews.authentication.k8s.io/status",
];

/// `kubectl auth can-i --list` for the ServiceAccount `account` in namespace `ns`: the verbs
/// per resource.
async fn grants(
    cluster: &ControlPlane,
    account: &str,
    ns: &str,
) -> Result<Vec<(String, Vec<String>)>> {
    let out = cluster
        .kubectl([
            "auth",
            "can-i",
            "--list",
            "--namespace",
            ns,
            &format!("--as=system:serviceaccount:{RBAC_NS}:{account}"),
        ])
        .await?;
    let mut grants = Vec::new();
    for line in out.lines().skip(1) {
        let Some(resource) = line.split_whitespace().next() else {
            continue;
        };
        // Non-resource URLs (`/api`, `/healthz`) have no resource column.
        if resource.starts_with('[') {
            continue;
        }
        let verbs = line
            .rsplit_once('[')
            .map(|(_, v)| v.trim_end_matches(']'))
            .unwrap_or_default();
        grants.push((
            resource.to_owned(),
            verbs.split_whitespace().map(str::to_owned).collect(),
        ));
    }
    ensure!(
        !grants.is_empty(),
        "kubectl auth can-i --list printed nothing useful:\n{out}"
    );
    Ok(grants)
}

/// The exercise under the chart's rules without `p`.
async fn without(
    cx: &TestContext,
    cluster: &ControlPlane,
    rules: &Rules,
    i: usize,
    p: &Permission,
) -> (Permission, Result<Outcome>) {
    let name = format!("without-{i}");
    let outcome = async {
        let kubeconfig = rules.without(p).grant(cluster, &name).await?;
        run(cx, &cluster.client(), &name, kubeconfig, Some(p)).await
    }
    .await;
    (p.clone(), outcome)
}

async fn setup(cx: &TestContext, client: &Client) -> Result<()> {
    for (ns, labels) in [
        (RBAC_NS, json!({})),
        (EDGE, json!({})),
        (APPS, json!({"hostrouter.io/expose": "true"})),
        (GLOO, json!({})),
    ] {
        crate::world::create_namespace(client, ns, labels).await?;
    }
    crate::world::apply_service(client, APPS, "web", &[("http", 80, "TCP")], None).await?;
    let ca = TestCa::new(cx.log_dir(), "rbac").await?;
    let issued = ca.issue("web", &["web.apps.example.test"]).await?;
    apply_tls_secret(client, EDGE, "cert", &issued).await?;
    apply_secret(client, EDGE, "notls", "Opaque", &[("k", "v")]).await?;
    Ok(())
}

/// How a run ended.
enum Outcome {
    /// The exercise passed; the operator's log.
    Passed(String),
    /// The operator reported the refusal looked for, at this step of the exercise.
    Refused { step: String, line: String },
    /// The exercise failed without the refusal looked for.
    FailedOtherwise(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passed(_) => write!(f, "the exercise passed without it"),
            Self::Refused { step, line } => write!(f, "refused at {step}: {line}"),
            Self::FailedOtherwise(e) => write!(f, "the exercise failed, but not on this verb: {e}"),
        }
    }
}

/// The operator under `kubeconfig`, and the exercise; with `missing`, stops as soon as the
/// operator reports its refusal.
async fn run(
    cx: &TestContext,
    client: &Client,
    name: &str,
    kubeconfig: std::path::PathBuf,
    missing: Option<&Permission>,
) -> Result<Outcome> {
    let shard = hostrouter_e2e::namespace::unique_name("r");
    let lease = format!("lease-{name}");
    let operator = Operator::launch(
        cx,
        &format!("hostrouter-{name}"),
        &shard,
        &[
            "--gloo-namespace",
            GLOO,
            "--leader-elect",
            "--leader-elect-namespace",
            RBAC_NS,
            "--leader-elect-lease-name",
            &lease,
        ],
        kubeconfig,
    )?;
    let step = std::sync::Mutex::new(String::from("start"));
    let exercise = exercise(client, name, &shard, &step);
    let log = || std::fs::read_to_string(operator.process().log_path()).unwrap_or_default();
    let Some(p) = missing else {
        exercise.await?;
        return Ok(Outcome::Passed(log()));
    };
    let found = |log: &str| {
        log.lines()
            .find(|l| p.refused_in(l))
            .map(|l| l.chars().take(400).collect::<String>())
    };
    let watch = async {
        loop {
            if let Some(line) = found(&log()) {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let current = || step.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(tokio::select! {
        line = watch => Outcome::Refused { step: current(), line },
        result = exercise => match (result, found(&log())) {
            (_, Some(line)) => Outcome::Refused { step: current(), line },
            (Ok(()), None) => Outcome::Passed(log()),
            (Err(e), None) => Outcome::FailedOtherwise(format!("{e:#}")),
        },
    })
}

/// Everything the operator does, step by step; `step` names the step under way.
async fn exercise(
    client: &Client,
    name: &str,
    shard: &str,
    step: &std::sync::Mutex<String>,
) -> Result<()> {
    let at = |s: &str| {
        if let Ok(mut g) = step.lock() {
            *g = s.to_owned();
        }
    };
    let router = format!("r-{name}");
    let (old, new) = (format!("p-{name}"), format!("q-{name}"));
    let proxies = proxy_api(client, GLOO);
    let hr = routers(client, EDGE);
    let pp = PatchParams::apply("e2e").force();

    at("taking over a gone router's Proxy held by another shard");
    let foreign = json!({
        "apiVersion": "gloo.solo.io/v1", "kind": "Proxy",
        "metadata": {"name": old, "namespace": GLOO,
            "labels": {"app.kubernetes.io/managed-by": "hostrouter", "hostrouter.io/shard": "elsewhere"},
            "annotations": {"hostrouter.io/router": format!("{EDGE}/gone-{name}")}},
        "spec": {"listeners": []},
    });
    proxies.patch(&old, &pp, &Patch::Apply(&foreign)).await?;
    let spec = |proxy: &str, certificates: Value| {
        json!({
            "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
            "metadata": {"name": router, "namespace": EDGE, "labels": {hostrouter_e2e::operator::TRIAL_LABEL: shard}},
            "spec": {
                "proxyName": proxy,
                "listener": {"port": 8080},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": APPS}},
                "hosts": {"template": "{service}.{namespace}.example.test"},
                "tls": {"port": 8443, "certificates": certificates},
            },
        })
    };
    hr.patch(
        &router,
        &pp,
        &Patch::Apply(&spec(&old, json!([{"secretName": "cert"}]))),
    )
    .await?;
    let uid = wait_for(STEP, "the Proxy taken over", || async {
        let Some(r) = hr.get_opt(&router).await? else {
            return Ok(None);
        };
        let uid = r.metadata.uid.clone().unwrap_or_default();
        let taken = proxies.get_opt(&old).await?.is_some_and(|p| {
            p.metadata
                .labels
                .unwrap_or_default()
                .get("hostrouter.io/router-uid")
                == Some(&uid)
        });
        Ok(taken.then_some(uid))
    })
    .await?;

    at("writing the ConfigMap, Service and Deployment, the finalizer and the status");
    wait_for(STEP, "the router's objects and status", || async {
        let r = hr.get(&router).await?;
        let finalized = r
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f.starts_with("hostrouter.io/"));
        let programmed = r.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Programmed" && c["status"] == "True");
        let objects = objects_exist(client, &old).await?;
        Ok((finalized && programmed && objects).then_some(()))
    })
    .await?;

    at("reverting drift of the Proxy twice (an Event and its series)");
    for _ in 0..2 {
        let mut drifted = proxies.get(&old).await?;
        drifted.data["spec"]["listeners"][0]["useProxyProto"] = json!(true);
        proxies
            .replace(&old, &PostParams::default(), &drifted)
            .await?;
        wait_for(STEP, "the drift reverted", || async {
            let p = proxies.get(&old).await?;
            Ok(p.data["spec"]["listeners"][0]
                .get("useProxyProto")
                .is_none()
                .then_some(()))
        })
        .await?;
    }
    let events: Api<Event> = Api::namespaced(client.clone(), EDGE);
    wait_for(STEP, "a DriftReverted Event with a series", || async {
        let list = events.list(&ListParams::default()).await?;
        let series = list.items.iter().any(|e| {
            e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid.as_str())
                && e.reason.as_deref() == Some("DriftReverted")
                && e.series.as_ref().is_some_and(|s| s.count >= 2)
        });
        Ok(series.then_some(()))
    })
    .await?;

    at("writing the Envoy Deployment again after its deletion");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), EDGE);
    let before = deployments.get(&old).await?.metadata.uid;
    deployments.delete(&old, &DeleteParams::default()).await?;
    wait_for(STEP, "the Deployment written again", || async {
        let d = deployments.get_opt(&old).await?;
        Ok(d.is_some_and(|d| d.metadata.uid != before).then_some(()))
    })
    .await?;

    at("reading the metadata of a certificate Secret of the wrong type");
    hr.patch(
        &router,
        &pp,
        &Patch::Apply(&spec(
            &old,
            json!([{"secretName": "cert"}, {"secretName": "notls"}]),
        )),
    )
    .await?;
    wait_for(
        STEP,
        "the status to name the Secret of the wrong type",
        || async {
            let r = hr.get(&router).await?;
            Ok(r.data["status"].to_string().contains("notls").then_some(()))
        },
    )
    .await?;

    at("deleting the objects of the old proxy name after a rename");
    hr.patch(
        &router,
        &pp,
        &Patch::Apply(&spec(&new, json!([{"secretName": "cert"}]))),
    )
    .await?;
    wait_for(STEP, "the old objects gone and the new written", || async {
        let old_gone = !objects_any(client, &old).await? && proxies.get_opt(&old).await?.is_none();
        let new_there =
            objects_exist(client, &new).await? && proxies.get_opt(&new).await?.is_some();
        Ok((old_gone && new_there).then_some(()))
    })
    .await?;

    at("the Envoy fleet's HorizontalPodAutoscaler and PodDisruptionBudget, then without them");
    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), EDGE);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), EDGE);
    let mut fleet = spec(&new, json!([{"secretName": "cert"}]));
    fleet["spec"]["envoy"] = json!({
        "resources": {"requests": {"cpu": "100m"}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
        "disruptionBudget": {"maxUnavailable": 1},
    });
    hr.patch(&router, &pp, &Patch::Apply(&fleet)).await?;
    wait_for(STEP, "the autoscaler and the budget written", || async {
        let written =
            autoscalers.get_opt(&new).await?.is_some() && budgets.get_opt(&new).await?.is_some();
        Ok(written.then_some(()))
    })
    .await?;
    hr.patch(
        &router,
        &pp,
        &Patch::Apply(&spec(&new, json!([{"secretName": "cert"}]))),
    )
    .await?;
    wait_for(STEP, "the autoscaler and the budget deleted", || async {
        let gone =
            autoscalers.get_opt(&new).await?.is_none() && budgets.get_opt(&new).await?.is_none();
        Ok(gone.then_some(()))
    })
    .await?;

    at("moving to the Gateway API: its own Gateway and the HTTPRoutes");
    let gateways = gateways(client, EDGE);
    let http_routes = http_routes(client, APPS);
    let mut on_gateway_api = spec(&new, json!([{"secretName": "cert"}]));
    on_gateway_api["spec"]["backend"] =
        json!({"type": "GatewayAPI", "gatewayAPI": {"gatewayClassName": "rbac"}});
    hr.patch(&router, &pp, &Patch::Apply(&on_gateway_api))
        .await?;
    let route = format!("{new}-web-80-http");
    wait_for(
        STEP,
        "the Gateway and the HTTPRoute, Gloo's objects gone",
        || async {
            let written = gateways.get_opt(&new).await?.is_some()
                && http_routes.get_opt(&route).await?.is_some();
            let gloo_gone =
                !objects_any(client, &new).await? && proxies.get_opt(&new).await?.is_none();
            Ok((written && gloo_gone).then_some(()))
        },
    )
    .await?;

    at("reverting drift of an HTTPRoute");
    let mut drifted = http_routes.get(&route).await?;
    drifted.data["spec"]["hostnames"] = json!(["taken.example.test"]);
    http_routes
        .replace(&route, &PostParams::default(), &drifted)
        .await?;
    wait_for(STEP, "the HTTPRoute's drift reverted", || async {
        let r = http_routes.get(&route).await?;
        Ok((r.data["spec"]["hostnames"] != json!(["taken.example.test"])).then_some(()))
    })
    .await?;

    at("deleting the Gateway and the HTTPRoutes when moving back to Gloo");
    hr.patch(
        &router,
        &pp,
        &Patch::Apply(&spec(&new, json!([{"secretName": "cert"}]))),
    )
    .await?;
    wait_for(
        STEP,
        "the Gateway API objects gone, Gloo's back",
        || async {
            let gone = gateways.get_opt(&new).await?.is_none()
                && http_routes.get_opt(&route).await?.is_none();
            let back = objects_exist(client, &new).await? && proxies.get_opt(&new).await?.is_some();
            Ok((gone && back).then_some(()))
        },
    )
    .await?;

    at("deleting the Proxy and removing the finalizer when the router is deleted");
    hr.delete(&router, &DeleteParams::default()).await?;
    wait_for(STEP, "the router and its Proxy gone", || async {
        let gone = hr.get_opt(&router).await?.is_none() && proxies.get_opt(&new).await?.is_none();
        Ok(gone.then_some(()))
    })
    .await?;
    at("renewing the leader Lease");
    let leases: Api<Lease> = Api::namespaced(client.clone(), RBAC_NS);
    let lease = format!("lease-{name}");
    wait_for(STEP, "the Lease renewed", || async {
        let spec = leases.get_opt(&lease).await?.and_then(|l| l.spec);
        let renewed =
            spec.is_some_and(|s| s.renew_time.is_some() && s.renew_time != s.acquire_time);
        Ok(renewed.then_some(()))
    })
    .await?;
    at("done");
    Ok(())
}

/// Whether the ConfigMap, Service and Deployment of `proxy` all exist in the router namespace.
async fn objects_exist(client: &Client, proxy: &str) -> Result<bool> {
    Ok(objects(client, proxy).await?.iter().all(|e| *e))
}

/// Whether any of the ConfigMap, Service and Deployment of `proxy` exists.
async fn objects_any(client: &Client, proxy: &str) -> Result<bool> {
    Ok(objects(client, proxy).await?.iter().any(|e| *e))
}

async fn objects(client: &Client, proxy: &str) -> Result<[bool; 3]> {
    let c = client.clone();
    Ok([
        Api::<ConfigMap>::namespaced(c.clone(), EDGE)
            .get_opt(&format!("{proxy}-envoy-bootstrap"))
            .await?
            .is_some(),
        Api::<Service>::namespaced(c.clone(), EDGE)
            .get_opt(proxy)
            .await?
            .is_some(),
        Api::<Deployment>::namespaced(c, EDGE)
            .get_opt(proxy)
            .await?
            .is_some(),
    ])
}

/// Polls `check` until it gives a value, for at most `within`.
async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    wait_until(what, within, || {
        let f = check();
        async move {
            Ok(match f.await? {
                Some(v) => Progress::Done(v),
                None => Progress::pending("not yet"),
            })
        }
    })
    .await
}
