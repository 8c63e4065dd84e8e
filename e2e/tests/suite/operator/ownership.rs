//! Who owns what: drift reverted, deletion cleans up, proxy-name conflicts, foreign objects,
//! orphaned Proxies.

use std::time::Duration;

use anyhow::{Result, ensure};
use hostrouter_e2e::operator::{Operator, TRIAL_LABEL};
use hostrouter_e2e::resources::{proxies as proxy_api, routers, wait_event};
use hostrouter_e2e::{Progress, TestContext, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::GC_TIMEOUT;
use crate::world::{CONVERGE, World};

/// Scenario 3: edits and deletions by someone else are reverted.
pub(super) async fn reverts_drift(cx: &TestContext) -> Result<()> {
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

/// Issue 12's hostile additions, each of which server-side apply alone leaves in place: a
/// catch-all virtual host and a whole listener in the Proxy, a Service selector that matches
/// nothing and an extra port, a sidecar, a hostPath volume and `hostNetwork` in the Envoy
/// Deployment, a key in the bootstrap ConfigMap. All are undone on the next reconcile, and
/// again after a restart of the operator; each undoing is a `DriftReverted` Warning.
pub(super) async fn reverts_additions(cx: &TestContext) -> Result<()> {
    let mut w = World::new(cx, &[]).await?;
    let ns = w.app.name().to_owned();
    w.create_router(&ns, "edge", &w.proxy_name).await?;
    w.wait_condition(&ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    let proxies = proxy_api(&w.client, w.gloo.name());
    let rendered_spec = proxies.get(&w.proxy_name).await?.data["spec"].clone();
    let svcs: Api<Service> = Api::namespaced(w.client.clone(), &ns);
    let deps: Api<Deployment> = Api::namespaced(w.client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), &ns);
    let cm_name = format!("{}-envoy-bootstrap", w.proxy_name);
    let rendered_selector = svcs.get(&w.proxy_name).await?.spec.and_then(|s| s.selector);

    // Every hostile change, as someone else's writes.
    let attack = |w: &World| {
        let (proxies, svcs, deps, cms) = (proxies.clone(), svcs.clone(), deps.clone(), cms.clone());
        let (proxy_name, cm_name) = (w.proxy_name.clone(), cm_name.clone());
        async move {
            let json_patch =
                |ops: Value| -> Result<Patch<()>> { Ok(Patch::Json(serde_json::from_value(ops)?)) };
            let catch_all = json!({"name": "evil", "domains": ["*"], "routes": [{"matchers": [{"prefix": "/"}],
                "routeAction": {"single": {"kube": {"ref": {"name": "kubernetes", "namespace": "default"}, "port": 443}}}}]});
            proxies
                .patch(&proxy_name, &PatchParams::default(), &json_patch(json!([
                    {"op": "add", "path": "/spec/listeners/0/httpListener/virtualHosts/-", "value": catch_all},
                    {"op": "add", "path": "/spec/listeners/-", "value": {"name": "evil", "bindAddress": "::", "bindPort": 9999, "httpListener": {"virtualHosts": []}}},
                ]))?)
                .await?;
            svcs.patch(
                &proxy_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {
                    "selector": {"nothing": "matches"},
                }})),
            )
            .await?;
            svcs.patch(
                &proxy_name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {
                    "ports": [{"name": "ssh", "port": 22, "targetPort": 22}],
                }})),
            )
            .await?;
            deps.patch(
                &proxy_name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"spec": {
                    "hostNetwork": true,
                    "containers": [{"name": "sidecar", "image": "example.com/sidecar:1"}],
                    "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
                }}}})),
            )
            .await?;
            cms.patch(
                &cm_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"extra.yaml": "x"}})),
            )
            .await?;
            anyhow::Ok(())
        }
    };
    let undone = || async {
        let proxy = proxies.get(&w.proxy_name).await?;
        let svc = svcs.get(&w.proxy_name).await?;
        let dep = deps.get(&w.proxy_name).await?;
        let cm = cms.get(&cm_name).await?;
        let pod = dep.spec.template.spec.clone().unwrap_or_default();
        let containers: Vec<String> = pod.containers.iter().map(|c| c.name.clone()).collect();
        let volumes: Vec<String> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.clone())
            .collect();
        let ports: Vec<String> = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.name)
            .collect();
        let keys: Vec<String> = cm.data.unwrap_or_default().into_keys().collect();
        let state = json!({
            "proxy spec as rendered": proxy.data["spec"] == rendered_spec,
            "selector": svc.spec.as_ref().and_then(|s| s.selector.clone()),
            "ports": ports,
            "containers": containers,
            "volumes": volumes,
            "hostNetwork": pod.host_network,
            "bootstrap keys": keys,
        });
        let ok = proxy.data["spec"] == rendered_spec
            && svc.spec.as_ref().and_then(|s| s.selector.clone()) == rendered_selector
            && ports == ["http"]
            && containers == ["envoy"]
            && volumes == ["bootstrap"]
            && !pod.host_network.unwrap_or(false)
            && keys == ["envoy.yaml"];
        anyhow::Ok(if ok {
            Progress::Done(())
        } else {
            Progress::pending(state)
        })
    };

    attack(&w).await?;
    wait_until("every hostile addition to be undone", CONVERGE, undone).await?;
    let reverts = w.operator.writes_of("Deployment", "revert").await?;
    ensure!(reverts >= 1.0, "no revert counted: {reverts}");
    wait_event(&w.client, &ns, "edge", "DriftReverted", "Deployment").await?;
    w.wait_condition(&ns, "edge", "Programmed", "True", "Programmed")
        .await?;

    // While the operator is down, the same again: undone when it is back.
    w.operator.stop().await?;
    attack(&w).await?;
    w.operator.resume(cx).await?;
    wait_until(
        "the additions made while the operator was down to be undone",
        CONVERGE,
        undone,
    )
    .await?;
    Ok(())
}

/// Scenario 4: deleting the router removes the Proxy (finalizer) and the namespaced objects
/// (the real garbage collector).
pub(super) async fn deletion_cleans_up(cx: &TestContext) -> Result<()> {
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
pub(super) async fn proxy_name_conflict(cx: &TestContext) -> Result<()> {
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

/// An object that already has a generated object's name and is not ours is never taken over:
/// the router reports the conflict and proceeds once the object is gone. Also checks the
/// Events of a normal start.
pub(super) async fn foreign_object(cx: &TestContext) -> Result<()> {
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
    nothing_written_around(&w, ns).await?;
    wait_event(&w.client, ns, "edge", "ProxyNameConflict", "Deployment").await?;

    deps.delete(&w.proxy_name, &DeleteParams::default()).await?;
    w.wait_condition(ns, "edge", "Accepted", "True", "Accepted")
        .await?;
    w.wait_condition(ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    for kind in ["ConfigMap", "Service", "Deployment", "Proxy"] {
        wait_event(&w.client, ns, "edge", "Created", kind).await?;
    }

    // The same with somebody else's ConfigMap under the bootstrap's name: no Deployment may
    // mount it, and no Service or Proxy may be written beside it.
    let ns = w.shop.name();
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), ns);
    let cm_name = format!("{}-2-envoy-bootstrap", w.proxy_name);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": cm_name, "namespace": ns}, "data": {"envoy.yaml": "theirs"}}))?,
    )
    .await?;
    w.create_router(ns, "second", &format!("{}-2", w.proxy_name))
        .await?;
    w.wait_condition(ns, "second", "Accepted", "False", "ProxyNameConflict")
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deps: Api<Deployment> = Api::namespaced(w.client.clone(), ns);
    let svcs: Api<Service> = Api::namespaced(w.client.clone(), ns);
    let second = format!("{}-2", w.proxy_name);
    ensure!(
        deps.get_opt(&second).await?.is_none() && svcs.get_opt(&second).await?.is_none(),
        "a Deployment or Service was written beside somebody else's ConfigMap"
    );
    ensure!(
        proxy_api(&w.client, w.gloo.name())
            .get_opt(&second)
            .await?
            .is_none(),
        "a Proxy was written beside somebody else's ConfigMap"
    );
    Ok(())
}

/// While the router conflicts, none of the other generated names holds an object it wrote.
async fn nothing_written_around(w: &World, ns: &str) -> Result<()> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), ns);
    let svcs: Api<Service> = Api::namespaced(w.client.clone(), ns);
    let cm = cms
        .get_opt(&format!("{}-envoy-bootstrap", w.proxy_name))
        .await?;
    let svc = svcs.get_opt(&w.proxy_name).await?;
    ensure!(
        cm.is_none() && svc.is_none(),
        "objects were written around the conflicting Deployment: ConfigMap {}, Service {}",
        cm.is_some(),
        svc.is_some()
    );
    Ok(())
}

/// Two operator instances (shards) whose routers want the same Proxy: the second never takes
/// the first's Proxy while the first router exists (it asks the API server, since it cannot
/// see that router), reports the conflict, and takes over once the first router is gone.
pub(super) async fn shards_do_not_steal(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let app = w.app.name();
    w.create_router(app, "edge", &w.proxy_name).await?;
    w.wait_condition(app, "edge", "Programmed", "True", "Programmed")
        .await?;
    let proxies = proxy_api(&w.client, w.gloo.name());
    let before = proxies.get(&w.proxy_name).await?;

    let other_shard = format!("{}-b", w.shard);
    let gloo = w.gloo.name().to_owned();
    let _other = Operator::start(cx, &other_shard, &["--gloo-namespace", &gloo]).await?;
    let shop = w.shop.name();
    let mut manifest = w.router_manifest(shop, "edge", &w.proxy_name);
    manifest["metadata"]["labels"] = json!({TRIAL_LABEL: other_shard});
    let obj: DynamicObject = serde_json::from_value(manifest)?;
    routers(&w.client, shop)
        .create(&PostParams::default(), &obj)
        .await?;
    w.wait_condition(shop, "edge", "Accepted", "False", "ProxyNameConflict")
        .await?;
    let (_, _, message) = w.condition(shop, "edge", "Accepted").await?;
    ensure!(
        message.contains(&format!("HostRouter {app}/edge")),
        "message: {message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = proxies.get(&w.proxy_name).await?;
    ensure!(
        after.metadata.resource_version == before.metadata.resource_version,
        "the other shard wrote the Proxy of a router it cannot see: {:?}",
        after.metadata.annotations
    );

    // The first router goes (its finalizer removes the Proxy): the second takes over.
    routers(&w.client, app)
        .delete("edge", &DeleteParams::default())
        .await?;
    w.wait_condition(shop, "edge", "Programmed", "True", "Programmed")
        .await?;
    let taken = proxies.get(&w.proxy_name).await?;
    ensure!(
        taken
            .annotations()
            .get("hostrouter.io/router")
            .map(String::as_str)
            == Some(format!("{shop}/edge").as_str()),
        "the Proxy's router after the hand-over: {:?}",
        taken.metadata.annotations
    );
    Ok(())
}

/// A Proxy whose router vanished without its finalizer (removed by hand while the operator
/// was down) is deleted once the operator is back; the Proxy of a router that moved to another
/// operator instance (`--router-selector`) is kept.
pub(super) async fn orphaned_proxies(cx: &TestContext) -> Result<()> {
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
pub(super) async fn sweeps_above(operator: &Operator, count: f64) -> Result<f64> {
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
