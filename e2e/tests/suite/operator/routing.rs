//! What the operator writes for the selected Services, how it follows the cluster, and
//! duplicate domains.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::operator::TRIAL_LABEL;
use hostrouter_e2e::resources::{proxies as proxy_api, routers, wait_event};
use hostrouter_e2e::toolchain::{tool, vars};
use hostrouter_e2e::{Progress, TestContext, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::PROPAGATION;
use crate::world::{CONVERGE, World, apply_service};

/// Scenario 1: the Proxy holds exactly the TCP ports of the selected namespaces' Services; the
/// four objects exist with the right owners and labels; status, printer columns and metrics
/// say so; `hostrouter render` agrees with what was written.
pub(super) async fn routes_selected_namespaces(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    w.create_edge().await?;
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
    // No Gloo runs: not judged yet, then (after 10 s) not reported, with what to check.
    let gloo = w.condition(ns, "edge", "ProxyAccepted").await?;
    ensure!(
        gloo.0 == "Unknown" && ["Pending", "GlooNotReported"].contains(&gloo.1.as_str()),
        "ProxyAccepted: {gloo:?}"
    );
    w.wait_condition(ns, "edge", "ProxyAccepted", "Unknown", "GlooNotReported")
        .await?;
    let gloo = w.condition(ns, "edge", "ProxyAccepted").await?;
    ensure!(
        gloo.2.contains("persistProxySpec"),
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

    // Metrics: bounded series for this router. The routers gauge reads the operator's cache of
    // HostRouters, which shows the status it wrote one watch event after the API server does.
    let routers_ready = [("condition", "Ready"), ("status", "True")];
    let m = wait_until("the routers metric to count it Ready", CONVERGE, || async {
        let m = w.operator.metrics().await?;
        Ok(
            match hostrouter_e2e::http::metric(&m, "hostrouter_routers", &routers_ready) {
                Some(1.0) => Progress::Done(m),
                n => Progress::pending(n),
            },
        )
    })
    .await?;
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
pub(super) async fn follows_the_cluster(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    w.create_edge().await?;
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
    // Selected, and consenting to a router of another namespace.
    let relabel = json!({"metadata": {"labels": {k: v, crate::world::EXPOSE_LABEL: "true"}}});
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

    // A namespace relabel that changes no router's selection reconciles nothing. Counted once
    // the router has no timed reconcile ahead: without Gloo, ProxyAccepted turns NotReported
    // by a reconcile 10 s after the last Proxy write.
    w.wait_condition(
        w.app.name(),
        "edge",
        "ProxyAccepted",
        "Unknown",
        "GlooNotReported",
    )
    .await?;
    let settled = w.operator.settled_reconciles().await?;
    ensure!(
        settled > reconciles_before,
        "changes must have been reconciled"
    );
    let settled = Reconciles::of(&w).await?;
    namespaces
        .patch(
            w.other.name(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"colour": "blue"}}})),
        )
        .await?;
    no_reconcile_follows(&w, settled, "an irrelevant relabel").await?;

    // Nor does a change of a routed Service that routing does not read (an annotation of
    // another tool's): the operator compares what routing reads of it, not its version.
    let services = Api::<Service>::namespaced(w.client.clone(), w.shop.name());
    let noted = json!({"metadata": {"annotations": {"example.com/owner": "team-b"}}});
    services
        .patch("cart", &PatchParams::default(), &Patch::Merge(&noted))
        .await?;
    no_reconcile_follows(&w, settled, "an annotation routing does not read").await?;
    // While one it reads reaches the Proxy: excluded, cart leaves it.
    let excluded = json!({"metadata": {"annotations": {"hostrouter.io/exclude": "true"}}});
    services
        .patch("cart", &PatchParams::default(), &Patch::Merge(&excluded))
        .await?;
    let cart = format!("{}-cart-", w.shop.name());
    let without_cart: BTreeSet<String> = w
        .expected_domains(&[])
        .into_iter()
        .filter(|d| !d.starts_with(&cart))
        .collect();
    let t = w
        .wait_domains(
            "an excluded Service to be dropped",
            without_cart.clone(),
            PROPAGATION,
        )
        .await?;
    eprintln!("Service excluded -> Proxy updated in {t:?}");
    // A Service labelled as one the operator writes is not routed (routing the edge to itself
    // would loop): the routers of its namespace hear of it, though it is now "ours".
    let petstore = format!("{}-petstore-8080", w.app.name());
    Api::<Service>::namespaced(w.client.clone(), w.app.name())
        .patch(
            "petstore",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "hostrouter"}}}),
            ),
        )
        .await?;
    let t = w
        .wait_domains(
            "a Service labelled as the operator's to be dropped",
            without_cart
                .into_iter()
                .filter(|d| *d != petstore)
                .collect(),
            PROPAGATION,
        )
        .await?;
    eprintln!("Service labelled as the operator's -> Proxy updated in {t:?}");
    Ok(())
}

/// Fails when the operator reconciles within 2 s of `change`: its counts of successful and
/// failed reconciles must stay at `settled`.
async fn no_reconcile_follows(w: &World, settled: Reconciles, change: &str) -> Result<()> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = Reconciles::of(w).await?;
    ensure!(
        after == settled,
        "{change} caused reconciles: {settled:?} -> {after:?}"
    );
    Ok(())
}

/// The operator's reconciles so far, by result.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Reconciles {
    succeeded: f64,
    failed: f64,
}

impl Reconciles {
    async fn of(w: &World) -> Result<Self> {
        const TOTAL: &str = "controller_runtime_reconcile_total";
        Ok(Self {
            succeeded: w.operator.metric(TOTAL, &[("result", "success")]).await?,
            failed: w.operator.metric(TOTAL, &[("result", "error")]).await?,
        })
    }
}

/// Two Service ports that produce the same domain: the older Service keeps it, the other is
/// counted in status and named in a Warning Event.
pub(super) async fn duplicate_domains(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    // `<app>` + `dup-web` and `<app>-dup` + `web` both give `<app>-dup-web-80`.
    apply_service(&w.client, ns, "dup-web", &[("http", 80, "TCP")], None).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let twin = format!("{ns}-dup");
    let namespaces: Api<Namespace> = Api::all(w.client.clone());
    let (k, v) = w.select_label();
    let twin_ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": twin, "labels": {k: v, crate::world::EXPOSE_LABEL: "true", "hostrouter-e2e": "true"}}}),
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
