//! The operator on the real control plane: what it writes, how it follows the cluster, how it
//! cleans up, and what it refuses. Each trial runs its own operator process (under the chart's
//! ServiceAccount) scoped to the trial's HostRouters, and its own namespaces.

use hostrouter_e2e::resources::{proxies as proxy_api, routers, wait_event};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hostrouter_e2e::operator::{Operator, TRIAL_LABEL};
use hostrouter_e2e::toolchain::{tool, vars};
use hostrouter_e2e::{Progress, Suite, TestContext, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use libtest_mimic::Trial;

use crate::world::{CONVERGE, World, apply_service, condition};
use serde_json::{Value, json};

/// How fast a change in the cluster must reach the Proxy.
const PROPAGATION: Duration = Duration::from_secs(2);
/// How long the real garbage collector may take.
const GC_TIMEOUT: Duration = Duration::from_secs(90);

pub fn trials(suite: &Suite) -> Vec<Trial> {
    vec![
        suite.trial(
            "operator::routes_every_tcp_port_of_selected_namespaces",
            |cx| async move { routes_selected_namespaces(&cx).await },
        ),
        suite.trial(
            "operator::follows_services_and_namespace_labels",
            |cx| async move { follows_the_cluster(&cx).await },
        ),
        suite.trial("operator::reverts_drift", |cx| async move {
            reverts_drift(&cx).await
        }),
        suite.trial(
            "operator::deletion_removes_all_four_objects",
            |cx| async move { deletion_cleans_up(&cx).await },
        ),
        suite.trial(
            "operator::proxy_name_conflict_hands_over",
            |cx| async move { proxy_name_conflict(&cx).await },
        ),
        suite.trial(
            "operator::rejects_invalid_specs_at_admission",
            |cx| async move { rejects_invalid_specs(&cx).await },
        ),
        suite.trial(
            "operator::restart_with_nothing_changed_writes_nothing",
            |cx| async move { restart_writes_nothing(&cx).await },
        ),
        suite.trial(
            "operator::generated_config_passes_envoy_and_gloo_schemas",
            |cx| async move { generated_config_is_valid(&cx).await },
        ),
        suite.trial(
            "operator::duplicate_domains_are_dropped_and_reported",
            |cx| async move { duplicate_domains(&cx).await },
        ),
        suite.trial(
            "operator::foreign_object_with_our_name_is_left_alone",
            |cx| async move { foreign_object(&cx).await },
        ),
        suite.trial(
            "operator::orphaned_proxy_is_deleted_and_other_shards_are_left_alone",
            |cx| async move { orphaned_proxies(&cx).await },
        ),
        suite.trial(
            "operator::recovers_when_gloos_crd_appears",
            |cx| async move { missing_gloo_crd(&cx).await },
        ),
    ]
}

/// Scenario 1: the Proxy holds exactly the TCP ports of the selected namespaces' Services; the
/// four objects exist with the right owners and labels; status, printer columns and metrics
/// say so; `hostrouter render` agrees with what was written.
async fn routes_selected_namespaces(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    w.create_router(ns, "edge", &w.proxy_name).await?;
    w.wait_domains(
        "the Proxy to hold the selected Service ports",
        w.expected_domains(&[]),
        CONVERGE,
    )
    .await?;
    w.wait_condition(ns, "edge", "Programmed", "True", "Programmed")
        .await?;

    // Status: conditions and counts.
    let hr = routers(&w.client, ns).get("edge").await?;
    let status = &hr.data["status"];
    ensure!(
        status["namespaces"] == 2 && status["services"] == 2,
        "counts: {status}"
    );
    ensure!(
        status["virtualHosts"] == 3 && status["droppedHosts"] == 0,
        "counts: {status}"
    );
    ensure!(
        status["proxyRef"] == json!({"namespace": w.gloo.name(), "name": w.proxy_name}),
        "proxyRef: {status}"
    );
    ensure!(
        status["observedGeneration"] == hr.metadata.generation.unwrap_or_default(),
        "observedGeneration: {status}"
    );
    let accepted = w.condition(ns, "edge", "Accepted").await?;
    ensure!(accepted.0 == "True", "Accepted: {accepted:?}");
    let gloo = w.condition(ns, "edge", "ProxyAccepted").await?;
    ensure!(
        gloo.0 == "Unknown" && gloo.1 == "GlooNotReported" && gloo.2.contains("persistProxySpec"),
        "ProxyAccepted: {gloo:?}"
    );
    let envoy = w.condition(ns, "edge", "EnvoyAvailable").await?;
    ensure!(
        envoy.0 == "False" && envoy.1 == "Unavailable",
        "EnvoyAvailable: {envoy:?}"
    );
    let ready = w.condition(ns, "edge", "Ready").await?;
    ensure!(ready.0 == "False", "Ready: {ready:?}");

    // The four objects: names, owners, labels.
    let uid = hr.uid().context("router uid")?;
    let cm: ConfigMap = Api::namespaced(w.client.clone(), ns)
        .get(&format!("{}-envoy-bootstrap", w.proxy_name))
        .await?;
    let svc: Service = Api::namespaced(w.client.clone(), ns)
        .get(&w.proxy_name)
        .await?;
    let dep: Deployment = Api::namespaced(w.client.clone(), ns)
        .get(&w.proxy_name)
        .await?;
    for (kind, refs, labels) in [
        ("ConfigMap", cm.owner_references(), cm.labels()),
        ("Service", svc.owner_references(), svc.labels()),
        ("Deployment", dep.owner_references(), dep.labels()),
    ] {
        ensure!(
            refs.len() == 1
                && refs[0].uid == uid
                && refs[0].controller == Some(true)
                && refs[0].kind == "HostRouter",
            "{kind} owner references: {refs:?}"
        );
        ensure!(
            labels.get("hostrouter.io/router-uid") == Some(&uid),
            "{kind} labels: {labels:?}"
        );
    }
    let proxy = proxy_api(&w.client, w.gloo.name())
        .get(&w.proxy_name)
        .await?;
    ensure!(
        proxy.owner_references().is_empty(),
        "the Proxy lives in another namespace and must have no owner reference"
    );
    ensure!(
        proxy.labels().get("hostrouter.io/router-uid") == Some(&uid),
        "Proxy labels: {:?}",
        proxy.labels()
    );
    ensure!(
        hr.finalizers()
            .iter()
            .any(|f| f == "hostrouter.io/proxy-cleanup"),
        "finalizer: {:?}",
        hr.finalizers()
    );
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let pod_labels = dep
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    ensure!(
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "Service selector {selector:?} vs pod labels {pod_labels:?}"
    );

    // kubectl get hr shows the columns.
    let table = cx.cluster().kubectl(["get", "hr", "-n", ns]).await?;
    ensure!(
        table.contains("PROXY") && table.contains("HOSTS") && table.contains("READY"),
        "kubectl get hr:\n{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("edge"))
        .context("no row for edge")?;
    let cols: Vec<&str> = row.split_whitespace().collect();
    ensure!(
        cols[1] == w.proxy_name && cols[2] == "8080" && cols[3] == "3" && cols[4] == "False",
        "row: {row}"
    );

    // Gloo's verdict (written here as Gloo writes it) and an available Deployment make it Ready.
    let status_patch = json!({"status": {"statuses": {w.gloo.name(): {"state": "Accepted", "reportedBy": "gloo"}}}});
    proxy_api(&w.client, w.gloo.name())
        .patch(
            &w.proxy_name,
            &PatchParams::default(),
            &Patch::Merge(&status_patch),
        )
        .await?;
    let dep_status = json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}});
    Api::<Deployment>::namespaced(w.client.clone(), ns)
        .patch_status(
            &w.proxy_name,
            &PatchParams::default(),
            &Patch::Merge(&dep_status),
        )
        .await?;
    w.wait_condition(ns, "edge", "Ready", "True", "Ready")
        .await?;

    // Metrics: bounded series for this router.
    let m = w.operator.metrics().await?;
    let get = |name: &str, labels: &[(&str, &str)]| {
        hostrouter_e2e::http::metric(&m, name, labels).unwrap_or(0.0)
    };
    ensure!(
        get(
            "hostrouter_virtual_hosts",
            &[("namespace", ns), ("name", "edge")]
        ) == 3.0,
        "virtual hosts metric:\n{m}"
    );
    ensure!(
        get(
            "hostrouter_routers",
            &[("condition", "Ready"), ("status", "True")]
        ) == 1.0,
        "routers metric:\n{m}"
    );
    ensure!(
        get(
            "hostrouter_object_writes_total",
            &[("kind", "Proxy"), ("operation", "apply")]
        ) >= 1.0,
        "writes metric:\n{m}"
    );
    ensure!(
        get(
            "controller_runtime_reconcile_total",
            &[("result", "success")]
        ) >= 1.0,
        "reconcile metric:\n{m}"
    );
    ensure!(
        m.contains("controller_runtime_reconcile_time_seconds_bucket"),
        "histogram missing:\n{m}"
    );

    // `hostrouter render` offline, from the live router and cluster, gives the same objects.
    let dir = cx.log_dir();
    let router_yaml = cx
        .cluster()
        .kubectl(["get", "hr", "edge", "-n", ns, "-o", "yaml"])
        .await?;
    let cluster_yaml = cx
        .cluster()
        .kubectl(["get", "ns,svc", "-A", "-o", "yaml"])
        .await?;
    std::fs::write(dir.join("router.yaml"), router_yaml)?;
    std::fs::write(dir.join("cluster.yaml"), cluster_yaml)?;
    let out = hostrouter_e2e::cli::ToolCommand::new(tool(vars::HOSTROUTER_BIN)?)
        .args(["render", "-f"])
        .arg(dir.join("router.yaml"))
        .arg("--cluster")
        .arg(dir.join("cluster.yaml"))
        .args(["--gloo-namespace", w.gloo.name()])
        .arg("--router-selector")
        .arg(format!("{TRIAL_LABEL}={}", w.shard))
        .run()
        .await?;
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).map_err(anyhow::Error::from))
        .collect::<Result<_>>()?;
    ensure!(docs.len() == 4, "render printed {} objects", docs.len());
    let live_proxy = serde_json::to_value(&proxy)?;
    ensure!(
        docs[0]["spec"] == live_proxy["spec"],
        "render's Proxy spec differs from the live one"
    );
    let hash = |v: &Value| v["metadata"]["annotations"]["hostrouter.io/applied-hash"].clone();
    ensure!(
        hash(&docs[0]) == hash(&live_proxy),
        "applied hash of the Proxy differs"
    );
    ensure!(
        hash(&docs[1]) == hash(&serde_json::to_value(&cm)?),
        "applied hash of the ConfigMap differs"
    );
    ensure!(
        hash(&docs[3]) == hash(&serde_json::to_value(&dep)?),
        "applied hash of the Deployment differs"
    );
    Ok(())
}

/// Scenario 2: Services and namespace labels reach the Proxy within 2 s.
async fn follows_the_cluster(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    w.create_router(w.app.name(), "edge", &w.proxy_name).await?;
    w.wait_domains("the initial Proxy", w.expected_domains(&[]), CONVERGE)
        .await?;
    let reconciles_before = w
        .operator
        .metric(
            "controller_runtime_reconcile_total",
            &[("result", "success")],
        )
        .await?;

    apply_service(
        &w.client,
        w.shop.name(),
        "orders",
        &[("http", 8081, "TCP")],
        None,
    )
    .await?;
    let added = format!("{}-orders-8081", w.shop.name());
    let t = w
        .wait_domains(
            "a new Service to be routed",
            w.expected_domains(std::slice::from_ref(&added)),
            PROPAGATION,
        )
        .await?;
    eprintln!("service added -> Proxy updated in {t:?}");

    Api::<Service>::namespaced(w.client.clone(), w.shop.name())
        .delete("orders", &DeleteParams::default())
        .await?;
    let t = w
        .wait_domains(
            "a deleted Service to be dropped",
            w.expected_domains(&[]),
            PROPAGATION,
        )
        .await?;
    eprintln!("service deleted -> Proxy updated in {t:?}");

    let (k, v) = w.select_label();
    let relabel = json!({"metadata": {"labels": {k: v}}});
    let namespaces: Api<Namespace> = Api::all(w.client.clone());
    namespaces
        .patch(
            w.other.name(),
            &PatchParams::default(),
            &Patch::Merge(&relabel),
        )
        .await?;
    let hidden = format!("{}-hidden-80", w.other.name());
    let t = w
        .wait_domains(
            "a relabelled namespace to be selected",
            w.expected_domains(&[hidden]),
            PROPAGATION,
        )
        .await?;
    eprintln!("namespace selected -> Proxy updated in {t:?}");

    let unlabel = json!({"metadata": {"labels": {k: null}}});
    namespaces
        .patch(
            w.other.name(),
            &PatchParams::default(),
            &Patch::Merge(&unlabel),
        )
        .await?;
    let t = w
        .wait_domains(
            "an unlabelled namespace to be dropped",
            w.expected_domains(&[]),
            PROPAGATION,
        )
        .await?;
    eprintln!("namespace deselected -> Proxy updated in {t:?}");

    // A namespace relabel that changes no router's selection reconciles nothing.
    let settled = w
        .operator
        .metric(
            "controller_runtime_reconcile_total",
            &[("result", "success")],
        )
        .await?;
    ensure!(
        settled > reconciles_before,
        "changes must have been reconciled"
    );
    namespaces
        .patch(
            w.other.name(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"colour": "blue"}}})),
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = w
        .operator
        .metric(
            "controller_runtime_reconcile_total",
            &[("result", "success")],
        )
        .await?;
    ensure!(
        after == settled,
        "an irrelevant relabel caused {} reconciles",
        after - settled
    );
    Ok(())
}

/// Scenario 3: edits and deletions by someone else are reverted.
async fn reverts_drift(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    w.create_router(ns, "edge", &w.proxy_name).await?;
    w.wait_condition(ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), ns);
    let cm_name = format!("{}-envoy-bootstrap", w.proxy_name);
    let old_uid = cms.get(&cm_name).await?.uid();
    cms.delete(&cm_name, &DeleteParams::default()).await?;
    wait_until(
        "the deleted ConfigMap to be recreated",
        CONVERGE,
        || async {
            let cm = cms.get_opt(&cm_name).await?;
            Ok(match cm {
                Some(cm) if cm.uid() != old_uid => Progress::Done(()),
                other => Progress::pending(other.map(|c| c.uid())),
            })
        },
    )
    .await?;

    let deps: Api<Deployment> = Api::namespaced(w.client.clone(), ns);
    let image = |d: &Deployment| {
        d.spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
    };
    let original = image(&deps.get(&w.proxy_name).await?);
    let edit = json!({"spec": {"template": {"spec": {"containers": [{"name": "envoy", "image": "example.com/not-envoy:1"}]}}}});
    deps.patch(
        &w.proxy_name,
        &PatchParams::default(),
        &Patch::Strategic(&edit),
    )
    .await?;
    wait_until(
        "the edited Deployment image to be reverted",
        CONVERGE,
        || async {
            let now = image(&deps.get(&w.proxy_name).await?);
            Ok(if now == original {
                Progress::Done(())
            } else {
                Progress::pending(now)
            })
        },
    )
    .await?;

    let proxies = proxy_api(&w.client, w.gloo.name());
    proxies
        .delete(&w.proxy_name, &DeleteParams::default())
        .await?;
    w.wait_domains(
        "the deleted Proxy to be recreated",
        w.expected_domains(&[]),
        CONVERGE,
    )
    .await?;
    let svcs: Api<Service> = Api::namespaced(w.client.clone(), ns);
    svcs.delete(&w.proxy_name, &DeleteParams::default()).await?;
    wait_until("the deleted Service to be recreated", CONVERGE, || async {
        Ok(match svcs.get_opt(&w.proxy_name).await? {
            Some(s) if s.metadata.deletion_timestamp.is_none() => Progress::Done(()),
            other => Progress::pending(other.map(|s| s.metadata.deletion_timestamp)),
        })
    })
    .await?;
    Ok(())
}

/// Scenario 4: deleting the router removes the Proxy (finalizer) and the namespaced objects
/// (the real garbage collector).
async fn deletion_cleans_up(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    w.create_router(ns, "edge", &w.proxy_name).await?;
    w.wait_condition(ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    routers(&w.client, ns)
        .delete("edge", &DeleteParams::default())
        .await?;
    let proxies = proxy_api(&w.client, w.gloo.name());
    wait_until(
        "the Proxy to be deleted by the finalizer",
        CONVERGE,
        || async {
            Ok(match proxies.get_opt(&w.proxy_name).await? {
                None => Progress::Done(()),
                Some(p) => Progress::pending(p.metadata.deletion_timestamp),
            })
        },
    )
    .await?;
    wait_until("the HostRouter to be gone", CONVERGE, || async {
        Ok(match routers(&w.client, ns).get_opt("edge").await? {
            None => Progress::Done(()),
            Some(r) => Progress::pending(r.finalizers().to_vec()),
        })
    })
    .await?;
    let cm_name = format!("{}-envoy-bootstrap", w.proxy_name);
    wait_until(
        "the garbage collector to delete the ConfigMap, Service and Deployment",
        GC_TIMEOUT,
        || async {
            let cm = Api::<ConfigMap>::namespaced(w.client.clone(), ns)
                .get_opt(&cm_name)
                .await?
                .is_some();
            let svc = Api::<Service>::namespaced(w.client.clone(), ns)
                .get_opt(&w.proxy_name)
                .await?
                .is_some();
            let dep = Api::<Deployment>::namespaced(w.client.clone(), ns)
                .get_opt(&w.proxy_name)
                .await?
                .is_some();
            Ok(if !(cm || svc || dep) {
                Progress::Done(())
            } else {
                Progress::Pending(format!("configmap={cm} service={svc} deployment={dep}"))
            })
        },
    )
    .await?;
    let deletes = w.operator.writes_of("Deployment", "delete").await?;
    ensure!(
        deletes == 0.0,
        "the operator deleted the Deployment itself ({deletes}); the garbage collector should"
    );
    Ok(())
}

/// Scenario 5: the older router keeps the proxy; the younger reports the conflict, writes
/// nothing, and takes over when the older goes.
async fn proxy_name_conflict(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let (older, younger) = (w.app.name(), w.shop.name());
    w.create_router(older, "first", &w.proxy_name).await?;
    w.wait_condition(older, "first", "Programmed", "True", "Programmed")
        .await?;
    // creationTimestamp has a resolution of one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    w.create_router(younger, "second", &w.proxy_name).await?;
    w.wait_condition(younger, "second", "Accepted", "False", "ProxyNameConflict")
        .await?;
    let (_, _, message) = w.condition(younger, "second", "Accepted").await?;
    ensure!(
        message.contains(&format!("{older}/first")),
        "the conflict should name the winner: {message}"
    );
    let deps: Api<Deployment> = Api::namespaced(w.client.clone(), younger);
    ensure!(
        deps.get_opt(&w.proxy_name).await?.is_none(),
        "the losing router must write nothing"
    );
    let proxy = proxy_api(&w.client, w.gloo.name())
        .get(&w.proxy_name)
        .await?;
    ensure!(
        proxy.annotations().get("hostrouter.io/router") == Some(&format!("{older}/first")),
        "{:?}",
        proxy.annotations()
    );

    routers(&w.client, older)
        .delete("first", &DeleteParams::default())
        .await?;
    w.wait_condition(younger, "second", "Accepted", "True", "Accepted")
        .await?;
    w.wait_condition(younger, "second", "Programmed", "True", "Programmed")
        .await?;
    wait_until(
        "the Proxy to belong to the younger router",
        CONVERGE,
        || async {
            let p = proxy_api(&w.client, w.gloo.name())
                .get_opt(&w.proxy_name)
                .await?;
            let owner = p
                .as_ref()
                .and_then(|p| p.annotations().get("hostrouter.io/router").cloned());
            Ok(if owner == Some(format!("{younger}/second")) {
                Progress::Done(())
            } else {
                Progress::pending(owner)
            })
        },
    )
    .await?;
    ensure!(
        deps.get_opt(&w.proxy_name).await?.is_some(),
        "the new owner writes its Deployment"
    );
    Ok(())
}

/// Scenario 6: invalid specs never reach the operator.
async fn rejects_invalid_specs(cx: &TestContext) -> Result<()> {
    let ns = cx.namespace([]).await?;
    let valid = json!({
        "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
        "metadata": {"name": "probe", "namespace": ns.name()},
        "spec": {"proxyName": "edge", "listener": {"port": 8080}, "namespaceSelector": {}},
    });
    let api = routers(&cx.client(), ns.name());
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let obj: DynamicObject = serde_json::from_value(valid.clone())?;
    api.create(&params, &obj)
        .await
        .context("the valid baseline must be accepted")?;
    // Every routing field set, and valid: the rules below must not reject what they should let
    // through.
    let mut routed = valid.clone();
    routed["spec"]["hosts"] = json!({
        "template": "{service}.{namespace}.{portName}-{port}.apps.example.com",
        "allowedSuffixes": ["example.com", "example.org"],
    });
    routed["spec"]["paths"] =
        json!({"host": "apps.example.com", "template": "/{namespace}/{service}/{port}"});
    routed["spec"]["listener"] = json!({"port": 8080, "bindAddress": "::ffff:127.0.0.1"});
    routed["spec"]["envoy"] = json!({
        "adminPort": 80,
        "image": "registry.example.com:5000/team/envoy:1.40",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1, "memory": "128Mi"}},
    });
    routed["spec"]["service"] =
        json!({"annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}});
    // A prefix of 4 labels of 60 characters: 243 characters, within the limit.
    let long_prefix = vec!["a".repeat(60); 4].join(".");
    routed["spec"]["namespaceSelector"] =
        json!({"matchExpressions": [{"key": format!("{long_prefix}/team"), "operator": "Exists"}]});
    routed["spec"]["tls"] = json!({
        "port": 443,
        "certificates": [{"secretName": "wildcard-apps"}, {"secretName": "shop.example.com"}],
        "redirectHttp": true,
    });
    let obj: DynamicObject = serde_json::from_value(routed)?;
    api.create(&params, &obj)
        .await
        .context("a valid router with hosts, paths and tls must be accepted")?;

    let long_name = "a".repeat(41);
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "port 0",
            json!({"listener": {"port": 0}}),
            &["spec.listener.port"],
        ),
        (
            "port 65536",
            json!({"listener": {"port": 65536}}),
            &["spec.listener.port"],
        ),
        (
            "uppercase proxy name",
            json!({"proxyName": "Edge"}),
            &["spec.proxyName"],
        ),
        (
            "proxy name with underscore",
            json!({"proxyName": "my_proxy"}),
            &["spec.proxyName"],
        ),
        (
            "too long proxy name",
            json!({"proxyName": long_name}),
            &["spec.proxyName"],
        ),
        (
            "missing namespace selector",
            json!({"namespaceSelector": null}),
            &["namespaceSelector"],
        ),
        (
            "In without values",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}),
            &["values must be non-empty"],
        ),
        (
            "Exists with values",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["x"]}]}}),
            &["must be empty for Exists"],
        ),
        (
            "unknown operator",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Like"}]}}),
            &["operator"],
        ),
        (
            "bad matchLabels key",
            json!({"namespaceSelector": {"matchLabels": {"-bad key": "x"}}}),
            &["matchLabels keys must be valid label keys"],
        ),
        (
            "bad matchLabels value",
            json!({"serviceSelector": {"matchLabels": {"team": "not a value!"}}}),
            &["serviceSelector.matchLabels"],
        ),
        (
            "bind address not an IP",
            json!({"listener": {"port": 8080, "bindAddress": "localhost"}}),
            &["bindAddress must be an IPv4 or IPv6 address"],
        ),
        (
            "listener on the admin port",
            json!({"listener": {"port": 19000}}),
            &["listener.port must differ from envoy.adminPort"],
        ),
        (
            "unknown destination",
            json!({"destination": "Cluster"}),
            &["spec.destination"],
        ),
        (
            "negative replicas",
            json!({"envoy": {"replicas": -1}}),
            &["spec.envoy.replicas"],
        ),
        (
            "a CPU limit that is not a quantity",
            json!({"envoy": {"resources": {"limits": {"cpu": "abc"}}}}),
            &["spec.envoy.resources.limits.cpu", "cpu must be a quantity"],
        ),
        (
            "requests above limits",
            json!({"envoy": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}}}),
            &[
                "spec.envoy.resources",
                "resources.requests must not exceed resources.limits",
            ],
        ),
        (
            "a Service annotation key that is not a key",
            json!({"service": {"annotations": {"bad key!": "x"}}}),
            &[
                "spec.service.annotations",
                "annotation keys must be qualified names",
            ],
        ),
        (
            "an image with spaces",
            json!({"envoy": {"image": "envoy proxy:1.40"}}),
            &[
                "spec.envoy.image",
                "image must be a container image reference",
            ],
        ),
        (
            "a selector key whose prefix is longer than 253",
            json!({"namespaceSelector": {"matchExpressions": [{"key": format!("{}/team", vec!["a".repeat(60); 5].join(".")), "operator": "Exists"}]}}),
            &[
                "spec.namespaceSelector.matchExpressions[0].key",
                "prefix before '/' must have at most 253 characters",
            ],
        ),
        (
            "a matchLabels key whose prefix is longer than 253",
            json!({"serviceSelector": {"matchLabels": {format!("{}/team", vec!["a".repeat(60); 5].join(".")): "x"}}}),
            &[
                "spec.serviceSelector.matchLabels",
                "prefix of at most 253 characters",
            ],
        ),
        (
            "a bind address that is a name",
            json!({"listener": {"port": 8080, "bindAddress": "::ffff:not-an-ip"}}),
            &[
                "spec.listener.bindAddress",
                "bindAddress must be an IPv4 or IPv6 address",
            ],
        ),
        (
            "template with an unknown variable",
            json!({"hosts": {"template": "{svc}.example.com"}}),
            &[
                "spec.hosts.template",
                "template may contain only lowercase letters",
            ],
        ),
        (
            "template with uppercase letters",
            json!({"hosts": {"template": "{service}.Example.com"}}),
            &["spec.hosts.template", "template may contain only"],
        ),
        (
            "template with a character no DNS name has",
            json!({"hosts": {"template": "{service}_{namespace}.example.com"}}),
            &["spec.hosts.template", "template may contain only"],
        ),
        (
            "template without {service}",
            json!({"hosts": {"template": "{namespace}.example.com"}}),
            &["spec.hosts.template", "template must contain {service}"],
        ),
        (
            "template with an empty label",
            json!({"hosts": {"template": "{service}..example.com"}}),
            &[
                "spec.hosts.template",
                "template must not start or end with '.'",
            ],
        ),
        (
            "template that can exceed 253 characters",
            json!({"hosts": {"template": format!("{{service}}.{{namespace}}.{}.example.com", vec!["x".repeat(60); 2].join("."))}}),
            &[
                "spec.hosts.template",
                "template can produce names longer than 253 characters",
            ],
        ),
        (
            "allowed suffix that is not a DNS name",
            json!({"hosts": {"allowedSuffixes": ["*.example.com"]}}),
            &["spec.hosts.allowedSuffixes[0]"],
        ),
        (
            "path template without a leading slash",
            json!({"paths": {"template": "{namespace}/{service}"}}),
            &[
                "spec.paths.template",
                "template must be '/'-separated segments",
            ],
        ),
        (
            "path template with a trailing slash",
            json!({"paths": {"template": "/{service}/"}}),
            &[
                "spec.paths.template",
                "template must be '/'-separated segments",
            ],
        ),
        (
            "path host that is not a DNS name",
            json!({"paths": {"host": "Apps.Example.com"}}),
            &["spec.paths.host"],
        ),
        (
            "tls without certificates",
            json!({"tls": {"certificates": []}}),
            &["spec.tls.certificates"],
        ),
        (
            "tls certificate without a Secret name",
            json!({"tls": {"certificates": [{}]}}),
            &["spec.tls.certificates[0].secretName"],
        ),
        (
            "tls certificate named twice",
            json!({"tls": {"certificates": [{"secretName": "a"}, {"secretName": "a"}]}}),
            &["spec.tls.certificates[1]: Duplicate value"],
        ),
        (
            "tls on the listener's port",
            json!({"tls": {"port": 8080, "certificates": [{"secretName": "a"}]}}),
            &["tls.port (default 8443) must differ from listener.port"],
        ),
        (
            "tls on the admin port",
            json!({"tls": {"port": 19000, "certificates": [{"secretName": "a"}]}}),
            &["tls.port (default 8443) must differ from envoy.adminPort"],
        ),
        (
            "tls port 70000",
            json!({"tls": {"port": 70000, "certificates": [{"secretName": "a"}]}}),
            &["spec.tls.port"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, spec_patch, expected) in &cases {
        let mut manifest = valid.clone();
        for (k, v) in spec_patch.as_object().into_iter().flatten() {
            manifest["spec"][k] = v.clone();
        }
        if manifest["spec"]["namespaceSelector"].is_null() {
            manifest["spec"]
                .as_object_mut()
                .map(|s| s.remove("namespaceSelector"));
        }
        let obj: DynamicObject = serde_json::from_value(manifest)?;
        match api.create(&params, &obj).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status))
                if status.code == 422 && expected.iter().all(|e| status.message.contains(e)) =>
            {
                eprintln!("{what}: {}", status.message);
            }
            Err(e) => failures.push(format!(
                "{what}: expected a 422 mentioning {expected:?}, got {e}"
            )),
        }
    }
    if !failures.is_empty() {
        bail!(
            "invalid specs were not rejected as expected:\n{}",
            failures.join("\n")
        );
    }
    // kubectl shows the same readable message.
    let bad = json!({"apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter", "metadata": {"name": "bad", "namespace": ns.name()},
        "spec": {"proxyName": "edge", "listener": {"port": 0}, "namespaceSelector": {}}});
    let out = cx
        .cluster()
        .kubectl_command()?
        .args(["apply", "--dry-run=server", "-f", "-"])
        .stdin(bad.to_string())
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("spec.listener.port"),
        "kubectl apply of port 0: {stderr}"
    );
    Ok(())
}

/// Scenario 7: a restarted operator that finds everything in place writes nothing.
async fn restart_writes_nothing(cx: &TestContext) -> Result<()> {
    let mut w = World::new(cx, &[]).await?;
    let ns = w.app.name().to_owned();
    w.create_router(&ns, "edge", &w.proxy_name).await?;
    w.wait_condition(&ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    // Let the status settle (a second pass sees the applied objects in the cache).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let versions = resource_versions(&w, &ns).await?;
    w.operator.restart(cx).await?;
    wait_until(
        "the restarted operator to reconcile the router",
        2 * CONVERGE,
        || async {
            let n = w
                .operator
                .metric(
                    "controller_runtime_reconcile_total",
                    &[("result", "success")],
                )
                .await?;
            Ok(if n >= 1.0 {
                Progress::Done(())
            } else {
                Progress::pending(n)
            })
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = w.operator.writes().await?;
    let after = resource_versions(&w, &ns).await?;
    ensure!(
        writes == 0.0,
        "the restarted operator wrote {writes} times:\n{}",
        w.operator.metrics().await?
    );
    ensure!(
        versions == after,
        "resourceVersions changed:\nbefore {versions:?}\nafter  {after:?}"
    );
    Ok(())
}

async fn resource_versions(w: &World, ns: &str) -> Result<Vec<(String, String)>> {
    let rv = |kind: &str, o: Option<String>| (kind.to_owned(), o.unwrap_or_default());
    Ok(vec![
        rv(
            "HostRouter",
            routers(&w.client, ns).get("edge").await?.resource_version(),
        ),
        rv(
            "Proxy",
            proxy_api(&w.client, w.gloo.name())
                .get(&w.proxy_name)
                .await?
                .resource_version(),
        ),
        rv(
            "ConfigMap",
            Api::<ConfigMap>::namespaced(w.client.clone(), ns)
                .get(&format!("{}-envoy-bootstrap", w.proxy_name))
                .await?
                .resource_version(),
        ),
        rv(
            "Service",
            Api::<Service>::namespaced(w.client.clone(), ns)
                .get(&w.proxy_name)
                .await?
                .resource_version(),
        ),
        rv(
            "Deployment",
            Api::<Deployment>::namespaced(w.client.clone(), ns)
                .get(&w.proxy_name)
                .await?
                .resource_version(),
        ),
    ])
}

/// Scenario 8: the bootstrap passes the real Envoy's validation; the Proxy of a router that
/// uses every routing field (template and extra hostnames, paths, TLS with the redirect) is
/// accepted by Gloo's v1.22 CRD with strict field validation (the listener level is typed
/// there), and its routes validate strictly against Gloo v1.11's full schema.
async fn generated_config_is_valid(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    let ca = hostrouter_e2e::pki::TestCa::new(&cx.log_dir().join("pki"), "shape-ca").await?;
    let cert = ca.issue("wildcard", &["*.apps.example.test"]).await?;
    hostrouter_e2e::resources::apply_tls_secret(&w.client, ns, "wildcard", &cert).await?;
    let mut manifest = w.router_manifest(ns, "edge", &w.proxy_name);
    manifest["spec"]["hosts"] = json!({"template": "{service}.{namespace}.apps.example.test", "allowedSuffixes": ["example.test"]});
    manifest["spec"]["paths"] = json!({"host": "apps.example.test"});
    manifest["spec"]["tls"] =
        json!({"certificates": [{"secretName": "wildcard"}], "redirectHttp": true});
    let obj: DynamicObject = serde_json::from_value(manifest)?;
    routers(&w.client, ns)
        .create(&PostParams::default(), &obj)
        .await?;
    w.wait_condition(ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    let cm: ConfigMap = Api::namespaced(w.client.clone(), ns)
        .get(&format!("{}-envoy-bootstrap", w.proxy_name))
        .await?;
    let bootstrap = cm
        .data
        .as_ref()
        .and_then(|d| d.get("envoy.yaml"))
        .context("no envoy.yaml in the ConfigMap")?;
    let path = cx.log_dir().join("envoy.yaml");
    std::fs::write(&path, bootstrap)?;
    let out = hostrouter_e2e::cli::ToolCommand::new(tool(vars::ENVOY)?)
        .args(["--mode", "validate", "-c"])
        .arg(&path)
        .args([
            "--service-node",
            "validate",
            "--service-cluster",
            "validate",
        ])
        .output()
        .await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success() && text.contains("OK"),
        "envoy --mode validate failed:\n{text}"
    );

    let proxy = proxy_api(&w.client, w.gloo.name())
        .get(&w.proxy_name)
        .await?;
    let spec = &proxy.data["spec"];
    let listeners = spec["listeners"].as_array().context("no listeners")?;
    ensure!(
        listeners.len() == 2
            && listeners[1]["sslConfigurations"][0]["secretRef"]["name"] == "wildcard",
        "expected an HTTPS listener serving the wildcard Secret: {spec}"
    );
    let redirects = spec.to_string().contains("portRedirect");
    let rewrites = spec.to_string().contains("prefixRewrite");
    ensure!(
        redirects && rewrites,
        "expected redirects and rewrites in {spec}"
    );

    // Gloo v1.22's own CRD types the listener level: strict validation catches a misspelling there.
    let strict = PatchParams::apply("e2e").validation(kube::api::ValidationDirective::Strict);
    let real = proxy_api(&w.client, w.gloo.name());
    let copy_name = format!("{}-shape", w.proxy_name);
    let real_copy = json!({
        "apiVersion": "gloo.solo.io/v1", "kind": "Proxy",
        "metadata": {"name": copy_name, "namespace": w.gloo.name()},
        "spec": spec,
    });
    real.patch(&copy_name, &strict, &Patch::Apply(&real_copy))
        .await
        .context("the generated Proxy does not validate strictly against Gloo v1.22's Proxy CRD")?;
    let mut misspelt = real_copy.clone();
    misspelt["spec"]["listeners"][1]["sslConfigurations"][0]["secretRefs"] = json!({});
    ensure!(
        real.patch(&copy_name, &strict, &Patch::Apply(&misspelt))
            .await
            .is_err(),
        "Gloo v1.22's CRD accepted a misspelled sslConfigurations field; the check would prove nothing"
    );
    real.delete(&copy_name, &Default::default()).await?;

    let shape = crate::shapes::v111_proxy(cx).await?;
    let copy = json!({
        "apiVersion": shape.api_version, "kind": "Proxy",
        "metadata": {"name": w.proxy_name, "namespace": w.gloo.name()},
        "spec": proxy.data["spec"],
    });
    let api: Api<DynamicObject> = Api::namespaced_with(w.client.clone(), w.gloo.name(), &shape);
    let params = PatchParams::apply("e2e").validation(kube::api::ValidationDirective::Strict);
    api.patch(&w.proxy_name, &params, &Patch::Apply(&copy))
        .await
        .context("the generated Proxy does not validate against Gloo v1.11's full Proxy schema")?;

    // And the check can fail: a misspelled field is rejected.
    let mut broken = copy.clone();
    broken["spec"]["listeners"][0]["httpListener"]["virtualHosts"][0]["routes"][0]["matchers"][0] =
        json!({"prefx": "/"});
    let rejected = api
        .patch(&w.proxy_name, &params, &Patch::Apply(&broken))
        .await;
    ensure!(
        rejected.is_err(),
        "the v1.11 schema accepted a misspelled matcher; the shape check would prove nothing"
    );
    Ok(())
}

/// Two Service ports that produce the same domain: the older Service keeps it, the other is
/// counted in status and named in a Warning Event.
async fn duplicate_domains(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    // `<app>` + `dup-web` and `<app>-dup` + `web` both give `<app>-dup-web-80`.
    apply_service(&w.client, ns, "dup-web", &[("http", 80, "TCP")], None).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let twin = format!("{ns}-dup");
    let namespaces: Api<Namespace> = Api::all(w.client.clone());
    let (k, v) = w.select_label();
    let twin_ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": twin, "labels": {k: v, "hostrouter-e2e": "true"}}}),
    )?;
    namespaces.create(&PostParams::default(), &twin_ns).await?;
    let result = async {
        apply_service(&w.client, &twin, "web", &[("http", 80, "TCP")], None).await?;
        w.create_router(ns, "edge", &w.proxy_name).await?;
        let domain = format!("{twin}-web-80");
        w.wait_domains(
            "the duplicate domain to appear once",
            w.expected_domains(std::slice::from_ref(&domain)),
            CONVERGE,
        )
        .await?;
        let proxy = proxy_api(&w.client, w.gloo.name())
            .get(&w.proxy_name)
            .await?;
        let vhosts = proxy.data["spec"]["listeners"][0]["httpListener"]["virtualHosts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let kept = vhosts
            .iter()
            .find(|vh| vh["name"] == domain.as_str())
            .context("virtual host missing")?;
        let target = &kept["routes"][0]["routeAction"]["single"]["kube"]["ref"];
        ensure!(
            target == &json!({"name": "dup-web", "namespace": ns}),
            "the older Service must keep the domain: {target}"
        );
        wait_until("droppedHosts to be 1", CONVERGE, || async {
            let hr = routers(&w.client, ns).get("edge").await?;
            let st = &hr.data["status"];
            Ok(if st["droppedHosts"] == 1 && st["virtualHosts"] == 4 {
                Progress::Done(())
            } else {
                Progress::pending(st.clone())
            })
        })
        .await?;
        wait_event(
            &w.client,
            ns,
            "edge",
            "DuplicateHost",
            &format!("{twin}/web:80"),
        )
        .await?;
        let dropped = w
            .operator
            .metric(
                "hostrouter_dropped_hosts",
                &[("namespace", ns), ("name", "edge")],
            )
            .await?;
        ensure!(dropped == 1.0, "hostrouter_dropped_hosts = {dropped}");
        anyhow::Ok(())
    }
    .await;
    let _ = namespaces.delete(&twin, &DeleteParams::default()).await;
    result
}

/// An object that already has a generated object's name and is not ours is never taken over:
/// the router reports the conflict and proceeds once the object is gone. Also checks the
/// Events of a normal start.
async fn foreign_object(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    let foreign: Deployment = serde_json::from_value(json!({
        "metadata": {"name": w.proxy_name, "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "mine"}},
                 "template": {"metadata": {"labels": {"app": "mine"}}, "spec": {"containers": [{"name": "c", "image": "example.com/mine:1"}]}}}
    }))?;
    let deps: Api<Deployment> = Api::namespaced(w.client.clone(), ns);
    deps.create(&PostParams::default(), &foreign).await?;
    w.create_router(ns, "edge", &w.proxy_name).await?;
    w.wait_condition(ns, "edge", "Accepted", "False", "ProxyNameConflict")
        .await?;
    let (_, _, message) = w.condition(ns, "edge", "Accepted").await?;
    ensure!(
        message.contains(&format!("Deployment {ns}/{}", w.proxy_name)),
        "message: {message}"
    );
    let image = deps
        .get(&w.proxy_name)
        .await?
        .spec
        .template
        .spec
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()));
    ensure!(
        image.as_deref() == Some("example.com/mine:1"),
        "the foreign Deployment was changed: {image:?}"
    );
    ensure!(
        proxy_api(&w.client, w.gloo.name())
            .get_opt(&w.proxy_name)
            .await?
            .is_none(),
        "no Proxy may be written while the names conflict"
    );
    wait_event(&w.client, ns, "edge", "ProxyNameConflict", "Deployment").await?;

    deps.delete(&w.proxy_name, &DeleteParams::default()).await?;
    w.wait_condition(ns, "edge", "Accepted", "True", "Accepted")
        .await?;
    w.wait_condition(ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    for kind in ["ConfigMap", "Service", "Deployment", "Proxy"] {
        wait_event(&w.client, ns, "edge", "Created", kind).await?;
    }
    Ok(())
}

/// A Proxy whose router vanished without its finalizer (removed by hand while the operator
/// was down) is deleted once the operator is back; the Proxy of a router that moved to another
/// operator instance (`--router-selector`) is kept.
async fn orphaned_proxies(cx: &TestContext) -> Result<()> {
    let mut w = World::new(cx, &[]).await?;
    let ns = w.app.name().to_owned();
    let moved_proxy = format!("{}-m", w.proxy_name);
    w.create_router(&ns, "edge", &w.proxy_name).await?;
    w.create_router(&ns, "moved", &moved_proxy).await?;
    for name in ["edge", "moved"] {
        w.wait_condition(&ns, name, "Programmed", "True", "Programmed")
            .await?;
    }
    let api = routers(&w.client, &ns);
    let proxies = proxy_api(&w.client, w.gloo.name());

    // "moved" leaves this operator's shard: to this operator it is as if it were deleted.
    // The sweep after start has finished; the next one comes from the relabel alone.
    let before = sweeps_above(&w.operator, 0.0).await?;
    let relabel = json!({"metadata": {"labels": {TRIAL_LABEL: "another-operator"}}});
    api.patch("moved", &PatchParams::default(), &Patch::Merge(&relabel))
        .await?;
    sweeps_above(&w.operator, before).await?;
    ensure!(
        proxies.get_opt(&moved_proxy).await?.is_some(),
        "the Proxy of a router another operator manages was deleted"
    );

    // "edge" is deleted without its finalizer while the operator is down.
    w.operator.stop().await?;
    let no_finalizers = json!({"metadata": {"finalizers": null}});
    api.patch(
        "edge",
        &PatchParams::default(),
        &Patch::Merge(&no_finalizers),
    )
    .await?;
    api.delete("edge", &DeleteParams::default()).await?;
    ensure!(
        api.get_opt("edge").await?.is_none(),
        "the router should be gone at once without its finalizer"
    );
    ensure!(
        proxies.get_opt(&w.proxy_name).await?.is_some(),
        "nothing but the operator deletes the Proxy"
    );
    w.operator.resume(cx).await?;
    wait_until("the orphaned Proxy to be deleted", CONVERGE, || async {
        Ok(match proxies.get_opt(&w.proxy_name).await? {
            None => Progress::Done(()),
            Some(p) => Progress::pending(p.annotations().clone()),
        })
    })
    .await?;
    // The sweep that deleted it also decided about "moved": wait for it to finish.
    sweeps_above(&w.operator, 0.0).await?;
    let deletes = w.operator.writes_of("Proxy", "delete").await?;
    ensure!(deletes == 1.0, "Proxy deletes: {deletes}");
    ensure!(
        proxies.get_opt(&moved_proxy).await?.is_some(),
        "the restarted operator deleted the Proxy of a router another operator manages"
    );
    // No operator manages "moved" any more: release it so its namespace can go.
    api.patch(
        "moved",
        &PatchParams::default(),
        &Patch::Merge(&no_finalizers),
    )
    .await?;
    Ok(())
}

/// Waits until the operator has finished more than `count` orphan sweeps; returns how many.
async fn sweeps_above(operator: &Operator, count: f64) -> Result<f64> {
    wait_until("an orphan sweep to finish", CONVERGE, || async {
        let n = operator
            .metric("hostrouter_orphan_sweeps_total", &[("result", "success")])
            .await?;
        Ok(if n > count {
            Progress::Done(n)
        } else {
            Progress::pending(n)
        })
    })
    .await
}

/// Without Gloo's Proxy CRD the router says so and keeps retrying; once the CRD is installed
/// the Proxy is written, without a restart. Runs on a control plane of its own that has only
/// HostRouter's CRD.
async fn missing_gloo_crd(cx: &TestContext) -> Result<()> {
    let own_crds = hostrouter_e2e::toolchain::workspace_root().join("crds");
    let cluster = hostrouter_e2e::ControlPlane::start(
        hostrouter_e2e::ControlPlaneOptions::from_env()?.crd(own_crds),
    )
    .await?;
    let result = async {
        let client = cluster.client();
        let address = format!("127.0.0.1:{}", hostrouter_e2e::net::free_port()?);
        let operator = cx
            .process("hostrouter-no-gloo", tool(vars::HOSTROUTER_BIN)?)
            .args(["run", "--http-address", &address])
            .env("KUBECONFIG", cluster.kubeconfig_path())
            .env("NO_COLOR", "1")
            .spawn()?;
        let router = json!({
            "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
            "metadata": {"name": "edge", "namespace": "default"},
            "spec": {"proxyName": "edge", "listener": {"port": 8080}, "namespaceSelector": {}},
        });
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "gloo-system"}}))?,
            )
            .await?;
        routers(&client, "default")
            .create(&PostParams::default(), &serde_json::from_value(router)?)
            .await?;
        let wait = |status: &'static str, reason: &'static str| {
            let client = client.clone();
            let operator = &operator;
            async move {
                wait_until(
                    &format!("Programmed={status} ({reason})"),
                    CONVERGE,
                    || async {
                        if !operator.is_running() {
                            return Ok(Progress::Abort("the operator exited".into()));
                        }
                        let got = condition(&client, "default", "edge", "Programmed").await?;
                        Ok(if got.0 == status && got.1 == reason {
                            Progress::Done(got.2)
                        } else {
                            Progress::pending(got)
                        })
                    },
                )
                .await
            }
        };
        let message = wait("False", "GlooCRDMissing").await?;
        ensure!(
            message.contains("proxies.gloo.solo.io"),
            "message: {message}"
        );
        let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
        ensure!(
            deps.get_opt("edge").await?.is_some(),
            "the namespaced objects are written without Gloo"
        );
        let errors = hostrouter_e2e::http::get(&address, "operator", "/metrics")
            .await?
            .body;
        ensure!(
            hostrouter_e2e::http::metric(
                &errors,
                "controller_runtime_reconcile_total",
                &[("result", "success")]
            )
            .unwrap_or(0.0)
                >= 1.0,
            "a missing CRD is a reported state, not a failed reconcile:\n{errors}"
        );

        cluster
            .install_crds(&[tool(vars::GLOO_CRDS_DIR)?.join("gloo.solo.io_v1_Proxy.yaml")])
            .await?;
        wait("True", "Programmed").await?;
        let proxy = proxy_api(&client, "gloo-system").get_opt("edge").await?;
        ensure!(proxy.is_some(), "the Proxy exists once the CRD does");
        operator.ensure_running()?;
        anyhow::Ok(())
    }
    .await;
    let stopped = cluster.stop(result.is_err()).await;
    result?;
    stopped.map(|_| ())
}
