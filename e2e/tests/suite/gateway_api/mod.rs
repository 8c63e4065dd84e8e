//! The Gateway API backend through a real implementation: Envoy Gateway v1.9.1 on the lab's
//! node (see [`lab`]), its Envoy Pods running Envoy 1.40.
//!
//! One trial, one node cluster (the node's addresses allow one at a time): the reference
//! scenario by hostname, a second Service, an unknown host, a Service added and deleted while
//! Envoy runs (timed, median of 10), the router's conditions from Envoy Gateway's verdicts, one
//! refusal by Envoy Gateway with its reason (then traffic through that shared Gateway once it
//! admits the routes), the router switched to Gloo and back (nothing of the other backend left,
//! routing again), the router deleted (HTTPRoutes, Gateway and Envoy Deployment gone); then the
//! route bodies the Gloo trials run
//! (`crate::routes`: hostname templates and extra hostnames, TLS by SNI with the redirect and
//! its ACME exception, path prefixes stripped), each on a router of its own ([`site`]).
//! `E2E_NODE=0` leaves it out (reported as ignored).

mod lab;
mod site;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use hostrouter_e2e::backends::{Backend, PETS_JSON};
use hostrouter_e2e::node::workloads::wait_router_ready;
use hostrouter_e2e::resources::{gateways, routers};
use hostrouter_e2e::{Progress, Suite, TestContext, http, wait_until};
use kube::api::{DeleteParams, Patch, PatchParams};
use libtest_mimic::Trial;
use serde_json::json;

use crate::routes;
use crate::timing::{median, secs, time_until};
use crate::world::EXPOSE_LABEL;
use lab::{CONVERGE, GatewayLab, PODS};
use site::Site;

pub fn trials(suite: &Suite) -> Vec<Trial> {
    let off = matches!(std::env::var("E2E_NODE").as_deref(), Ok("0" | "off"));
    vec![
        suite
            .long_trial(
                "gateway_api::routes_through_envoy_gateway",
                Duration::from_secs(900),
                |cx| async move { through_envoy_gateway(&cx).await },
            )
            .with_ignored_flag(off),
    ]
}

const APPS: &str = "apps";
const EDGE: &str = "edge";
/// How many Services are timed from apply to the first 200.
const TIMED: usize = 10;

async fn through_envoy_gateway(cx: &TestContext) -> Result<()> {
    let _node = hostrouter_e2e::node::exclusive().await;
    let lab = GatewayLab::start(cx).await?;
    let result = everything(cx, &lab).await;
    lab.stop(result.is_err()).await?;
    result
}

async fn everything(cx: &TestContext, lab: &GatewayLab) -> Result<()> {
    // The reference scenario's backends serve the refusal's shared Gateway too.
    let _backends = reference(cx, lab).await?;
    refusal(cx, lab).await?;
    switching(cx, lab).await?;
    deletion(cx, lab).await?;
    routes::hostname_template(cx, &Site::new(lab).await?).await?;
    routes::tls_and_redirect(cx, &Site::new(lab).await?).await?;
    routes::path_prefixes(cx, &Site::new(lab).await?).await
}

/// The reference scenario through Envoy Gateway; returns its backends (they keep serving).
async fn reference(cx: &TestContext, lab: &GatewayLab) -> Result<Vec<Backend>> {
    let routed = json!({"e2e.hostrouter.io/routed": lab.shard, EXPOSE_LABEL: "true"});
    lab.namespace(APPS, routed).await?;
    lab.namespace(EDGE, json!({})).await?;
    let backends = vec![
        lab.backend(APPS, "petstore", 8080).await?,
        lab.backend(APPS, "inventory", 80).await?,
    ];
    let selector = json!({"matchLabels": {"e2e.hostrouter.io/routed": lab.shard}});
    lab.apply_router(EDGE, EDGE, json!({"namespaceSelector": selector}))
        .await?;
    let began = Instant::now();
    let address = format!("{}:8080", lab.gateway_address(EDGE, EDGE).await?);
    let alive = || lab.cluster.node().ensure_running();
    wait_router_ready(&lab.client, EDGE, EDGE, PODS, alive).await?;
    eprintln!(
        "{}: HostRouter Ready {:.1?} after it was applied; Gateway at {address}",
        cx.name(),
        began.elapsed()
    );

    let get = |host: &str, path: &str| {
        let (address, host, path) = (address.clone(), host.to_owned(), path.to_owned());
        async move { http::get(&address, &host, &path).await }
    };
    let pets = get("apps-petstore-8080", "/api/pets").await?;
    ensure!(
        pets.status == 200 && pets.body == PETS_JSON,
        "petstore through Envoy Gateway: {} {:?}",
        pets.status,
        pets.body
    );
    let inventory = get("apps-inventory-80", "/").await?;
    ensure!(
        inventory.status == 200 && inventory.body == "inventory",
        "inventory: {} {:?}",
        inventory.status,
        inventory.body
    );
    let unknown = get("nobody-here-80", "/api/pets").await?;
    ensure!(unknown.status == 404, "unknown host: {}", unknown.status);
    let status = routers(&lab.client, EDGE).get(EDGE).await?.data["status"].clone();
    eprintln!(
        "{}: curl -H 'Host: apps-petstore-8080' http://{address}/api/pets answered the pets; conditions: {}",
        cx.name(),
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{}={} ({})", c["type"], c["status"], c["reason"]))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Services added while Envoy runs: applied → first 200, then deleted → 404.
    let mut timings = Vec::new();
    for i in 0..TIMED {
        let name = format!("late-{i}");
        let host = format!("apps-{name}-80");
        let applied = Instant::now();
        let backend = lab.backend(APPS, &name, 80).await?;
        // Polled every 50 ms, as the Gloo trial measures it.
        time_until(&format!("{host} to answer"), CONVERGE, || async {
            let r = get(&host, "/").await?;
            Ok(r.status == 200 && r.body == name)
        })
        .await?;
        timings.push(applied.elapsed());
        kube::Api::<k8s_openapi::api::core::v1::Service>::namespaced(lab.client.clone(), APPS)
            .delete(&name, &DeleteParams::default())
            .await?;
        time_until(&format!("{host} to be gone"), CONVERGE, || async {
            Ok(get(&host, "/").await?.status == 404)
        })
        .await?;
        drop(backend);
    }
    eprintln!(
        "{}: Service applied → first 200 through Envoy Gateway: median {:.2}s (of {TIMED}: {})",
        cx.name(),
        median(&timings).as_secs_f64(),
        secs(&timings)
    );
    Ok(backends)
}

/// A router attached to a shared Gateway that admits routes from its own namespace only:
/// Envoy Gateway refuses the HTTPRoutes, and the router says so with Envoy Gateway's reason.
async fn refusal(cx: &TestContext, lab: &GatewayLab) -> Result<()> {
    let shared = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "shared", "namespace": EDGE},
        "spec": {
            "gatewayClassName": hostrouter_e2e::node::envoy_gateway::CLASS,
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 9080,
                           "allowedRoutes": {"namespaces": {"from": "Same"}}}],
        },
    });
    gateways(&lab.client, EDGE)
        .patch(
            "shared",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&shared),
        )
        .await?;
    let selector = json!({"matchLabels": {"e2e.hostrouter.io/routed": lab.shard}});
    lab.apply_router(
        EDGE,
        "attached",
        json!({
            "namespaceSelector": selector,
            "listener": {"port": 9080},
            "backend": {"type": "GatewayAPI", "gatewayAPI": {"gateway": {"name": "shared"}}},
        }),
    )
    .await?;
    let api = routers(&lab.client, EDGE);
    let condition = wait_until(
        "RoutesAccepted=False with Envoy Gateway's reason",
        Duration::from_secs(60),
        || async {
            let r = api.get("attached").await?;
            let c = r.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "RoutesAccepted")
                .cloned();
            Ok(match c {
                Some(c) if c["status"] == "False" && c["reason"] == "NotAllowedByListeners" => {
                    Progress::Done(c)
                }
                other => Progress::pending(format!("{other:?}")),
            })
        },
    )
    .await?;
    eprintln!(
        "{}: a router on a Gateway that admits only its own namespace: RoutesAccepted=False ({}): {}",
        cx.name(),
        condition["reason"],
        condition["message"]
    );

    // The platform team admits the routed namespaces: the same HTTPRoutes are accepted and the
    // shared Gateway routes them.
    let mut admitting = shared.clone();
    admitting["spec"]["listeners"][0]["allowedRoutes"] = json!({"namespaces": {"from": "All"}});
    gateways(&lab.client, EDGE)
        .patch(
            "shared",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&admitting),
        )
        .await?;
    wait_router_ready(&lab.client, EDGE, "attached", PODS, || {
        lab.cluster.node().ensure_running()
    })
    .await?;
    let address = format!("{}:9080", lab.gateway_address(EDGE, "shared").await?);
    wait_until("the shared Gateway to route the pets", CONVERGE, || async {
        let r = http::get(&address, "apps-petstore-8080", "/api/pets").await?;
        Ok(if r.status == 200 && r.body == PETS_JSON {
            Progress::Done(())
        } else {
            Progress::pending(format!("{} {:?}", r.status, r.body))
        })
    })
    .await?;
    eprintln!(
        "{}: once the shared Gateway admits every namespace, the attached router is Ready and {address} answers the pets",
        cx.name()
    );
    Ok(())
}

/// Switching the reference router to Gloo and back while Envoy Gateway serves it: on Gloo, no
/// Gateway API object of it is left (Envoy Gateway removes its Envoy Deployment) and Gloo's
/// four objects are written; back on the Gateway API, Gloo's four are gone and the pets route
/// through a Gateway again.
async fn switching(cx: &TestContext, lab: &GatewayLab) -> Result<()> {
    // Gloo's write namespace, so that the Proxy can be written (Gloo itself does not run here).
    lab.namespace("gloo-system", json!({})).await?;
    let selector = json!({"matchLabels": {"e2e.hostrouter.io/routed": lab.shard}});
    let on_gloo = json!({
        "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
        "metadata": {"name": EDGE, "namespace": EDGE, "labels": {hostrouter_e2e::operator::TRIAL_LABEL: lab.shard}},
        "spec": {"proxyName": EDGE, "listener": {"port": 8080}, "namespaceSelector": selector, "service": {"type": "ClusterIP"}},
    });
    routers(&lab.client, EDGE)
        .patch(
            EDGE,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&on_gloo),
        )
        .await?;
    wait_until("the router on Gloo, nothing of the Gateway API left", CONVERGE, || async {
        let (routes, gateway, envoys) = gateway_api_objects(lab).await?;
        let (config_map, proxy) = gloo_objects(lab).await?;
        let gloo = config_map && proxy;
        Ok(if routes == 0 && !gateway && envoys == 0 && gloo {
            Progress::Done(())
        } else {
            Progress::pending(format!("{routes} HTTPRoutes, Gateway {gateway}, {envoys} Envoy Deployments, Gloo's objects {gloo}"))
        })
    })
    .await?;
    lab.apply_router(EDGE, EDGE, json!({"namespaceSelector": selector}))
        .await?;
    let address = format!("{}:8080", lab.gateway_address(EDGE, EDGE).await?);
    wait_until(
        "the router back on the Gateway API, nothing of Gloo left",
        PODS,
        || async {
            let (config_map, proxy) = gloo_objects(lab).await?;
            let gloo_left = config_map || proxy;
            let pets = http::get(&address, "apps-petstore-8080", "/api/pets").await;
            let routed = pets
                .as_ref()
                .is_ok_and(|r| r.status == 200 && r.body == PETS_JSON);
            Ok(if !gloo_left && routed {
                Progress::Done(())
            } else {
                Progress::pending(format!(
                    "Gloo's objects left {gloo_left}, pets {:?}",
                    pets.map(|r| r.status)
                ))
            })
        },
    )
    .await?;
    eprintln!(
        "{}: Gateway API → Gloo → Gateway API: nothing of the other backend left each time; the pets route through Envoy Gateway again",
        cx.name()
    );
    Ok(())
}

/// Whether the reference router's Gloo bootstrap ConfigMap and Proxy exist.
async fn gloo_objects(lab: &GatewayLab) -> Result<(bool, bool)> {
    let config_map =
        kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(lab.client.clone(), EDGE)
            .get_opt(&format!("{EDGE}-envoy-bootstrap"))
            .await?
            .is_some();
    let proxy = hostrouter_e2e::resources::proxies(&lab.client, "gloo-system")
        .get_opt(EDGE)
        .await?
        .is_some();
    Ok((config_map, proxy))
}

/// The reference router's HTTPRoutes, whether its Gateway exists, and Envoy Gateway's Envoy
/// Deployments for that Gateway.
async fn gateway_api_objects(lab: &GatewayLab) -> Result<(usize, bool, usize)> {
    let lp = kube::api::ListParams::default()
        .labels("app.kubernetes.io/instance=edge,app.kubernetes.io/managed-by=hostrouter");
    let routes = hostrouter_e2e::resources::http_routes(&lab.client, APPS)
        .list(&lp)
        .await?
        .items
        .len();
    let gateway = gateways(&lab.client, EDGE).get_opt(EDGE).await?.is_some();
    let selector = format!(
        "gateway.envoyproxy.io/owning-gateway-namespace={EDGE},gateway.envoyproxy.io/owning-gateway-name={EDGE}"
    );
    let envoys = kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
        lab.client.clone(),
        hostrouter_e2e::node::envoy_gateway::NAMESPACE,
    )
    .list(&kube::api::ListParams::default().labels(&selector))
    .await?
    .items
    .len();
    Ok((routes, gateway, envoys))
}

/// Deleting a router while Envoy Gateway serves it: every HTTPRoute goes (the finalizer), the
/// Gateway goes (the garbage collector), and Envoy Gateway removes its Envoy Deployment.
async fn deletion(cx: &TestContext, lab: &GatewayLab) -> Result<()> {
    routers(&lab.client, EDGE)
        .delete(EDGE, &DeleteParams::default())
        .await?;
    let began = Instant::now();
    wait_until(
        "the HTTPRoutes, the Gateway and its Envoy Deployment to go",
        Duration::from_secs(120),
        || async {
            let (routes, gateway, envoys) = gateway_api_objects(lab).await?;
            Ok(if routes == 0 && !gateway && envoys == 0 {
                Progress::Done(())
            } else {
                Progress::pending(format!(
                    "{routes} HTTPRoutes, Gateway {gateway}, {envoys} Envoy Deployments"
                ))
            })
        },
    )
    .await?;
    eprintln!(
        "{}: router deleted: its HTTPRoutes, Gateway and Envoy Deployment gone in {:.1?}",
        cx.name(),
        began.elapsed()
    );
    Ok(())
}
