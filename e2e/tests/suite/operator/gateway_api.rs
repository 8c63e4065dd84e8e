//! The Gateway API backend's objects on the real API server (the Gateway API's own CRDs, with
//! their schema and CEL rules), before any implementation judges them: a Gateway and one
//! HTTPRoute per Service port in the Service's namespace; a change of one Service writes one
//! HTTPRoute; the status says nobody has judged them yet; switching to Gloo and back leaves
//! nothing of the other backend; deleting the router removes every HTTPRoute and the Gateway.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, ensure};
use hostrouter_e2e::resources::{gateways, http_routes, proxies as proxy_api, routers};
use hostrouter_e2e::{Progress, TestContext, wait_until};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::GC_TIMEOUT;
use crate::world::{CONVERGE, World, apply_service, managed_objects};

/// How long the reconciles one change triggers may take to settle.
const SETTLE: Duration = Duration::from_secs(2);
/// A GatewayClass no implementation serves.
const CLASS: &str = "nobody-serves-this";

pub(super) async fn writes_switches_and_cleans_up(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let (app, shop, other) = (w.app.name(), w.shop.name(), w.other.name());
    let p = w.proxy_name.clone();
    let hr = routers(&w.client, app);
    let mut manifest = w.router_manifest(app, "edge", &p);
    let spec = manifest["spec"].as_object_mut().expect("a spec");
    // The Service in front of Envoy is the implementation's.
    spec.remove("service");
    let gloo_spec = Value::Object(spec.clone());
    spec.insert(
        "backend".into(),
        json!({"type": "GatewayAPI", "gatewayAPI": {"gatewayClassName": CLASS}}),
    );
    let gateway_api_spec = Value::Object(spec.clone());
    let apply = |spec: &Value| {
        let mut m = manifest.clone();
        m["spec"] = spec.clone();
        m
    };
    let pp = PatchParams::apply("e2e").force();
    hr.patch("edge", &pp, &Patch::Apply(&apply(&gateway_api_spec)))
        .await?;

    // One HTTPRoute per Service port of the selected namespaces, in its namespace.
    let expected = |extra: &[(&str, String)]| -> BTreeSet<(String, String)> {
        let mut names: BTreeSet<(String, String)> = [
            (app.to_owned(), format!("{p}-petstore-8080-http")),
            (shop.to_owned(), format!("{p}-cart-80-http")),
            (shop.to_owned(), format!("{p}-cart-9090-http")),
        ]
        .into();
        names.extend(extra.iter().map(|(ns, n)| (ns.to_string(), n.clone())));
        names
    };
    wait_routes(&w, &[app, shop, other], expected(&[])).await?;
    let cart = http_routes(&w.client, shop)
        .get(&format!("{p}-cart-80-http"))
        .await?;
    ensure!(
        cart.data["spec"]["hostnames"] == json!([format!("{shop}-cart-80")])
            && cart.data["spec"]["rules"][0]["backendRefs"][0]["name"] == "cart"
            && cart.data["spec"]["parentRefs"][0]
                == json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": app, "name": p, "sectionName": "http"}),
        "the HTTPRoute of cart:80 as stored: {}",
        cart.data["spec"]
    );
    let gateway = gateways(&w.client, app).get(&p).await?;
    ensure!(
        gateway.data["spec"]["gatewayClassName"] == CLASS
            && gateway.data["spec"]["listeners"][0]["port"] == 8080
            && gateway.data["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["selector"]
                == json!({"matchLabels": {w.select_label().0: w.select_label().1}}),
        "the Gateway as stored: {}",
        gateway.data["spec"]
    );
    // Nobody serves the class: written, but not judged.
    w.wait_condition(app, "edge", "Programmed", "True", "Programmed")
        .await?;
    w.wait_condition(app, "edge", "RoutesAccepted", "Unknown", "NotReported")
        .await?;
    w.wait_condition(app, "edge", "GatewayProgrammed", "Unknown", "NotReported")
        .await?;
    w.wait_condition(app, "edge", "Ready", "False", "NotReported")
        .await?;

    // A new Service is one HTTPRoute written, whatever else is routed.
    let before = w.operator.writes_of("HTTPRoute", "apply").await?;
    apply_service(&w.client, shop, "pay", &[("http", 8080, "TCP")], None).await?;
    wait_routes(
        &w,
        &[app, shop, other],
        expected(&[(shop, format!("{p}-pay-8080-http"))]),
    )
    .await?;
    // Let the reconciles the new Service triggered settle.
    tokio::time::sleep(SETTLE).await;
    let writes = w.operator.writes_of("HTTPRoute", "apply").await? - before;
    ensure!(
        writes == 1.0,
        "one Service added: {writes} HTTPRoutes applied, want 1"
    );

    // To Gloo: the Gateway API objects go, Gloo's come.
    let mut on_gloo = gloo_spec.clone();
    on_gloo["service"] = json!({"type": "ClusterIP"});
    hr.patch("edge", &pp, &Patch::Apply(&apply(&on_gloo)))
        .await?;
    wait_until(
        "Gloo's objects written, the Gateway API's deleted",
        CONVERGE,
        || async {
            let routes = route_names(&w, &[app, shop, other]).await?;
            let gateway = gateways(&w.client, app).get_opt(&p).await?.is_some();
            let managed = managed_objects(&w.client, app, w.gloo.name()).await?;
            Ok(if routes.is_empty() && !gateway && managed.len() == 4 {
                Progress::Done(())
            } else {
                Progress::pending(format!(
                    "HTTPRoutes {routes:?}, Gateway {gateway}, Gloo's objects {managed:?}"
                ))
            })
        },
    )
    .await?;
    // And back: Gloo's go (the Proxy by the operator, the rest by the operator too: they are
    // no longer wanted).
    hr.patch("edge", &pp, &Patch::Apply(&apply(&gateway_api_spec)))
        .await?;
    wait_until(
        "the Gateway API objects written, Gloo's deleted",
        CONVERGE,
        || async {
            let routes = route_names(&w, &[app, shop, other]).await?.len();
            let gateway = gateways(&w.client, app).get_opt(&p).await?.is_some();
            let managed = managed_objects(&w.client, app, w.gloo.name()).await?;
            Ok(if routes == 4 && gateway && managed.is_empty() {
                Progress::Done(())
            } else {
                Progress::pending(format!(
                    "{routes} HTTPRoutes, Gateway {gateway}, Gloo's objects {managed:?}"
                ))
            })
        },
    )
    .await?;

    // Deleting the router: the finalizer removes every HTTPRoute, the garbage collector the
    // Gateway.
    hr.delete("edge", &DeleteParams::default()).await?;
    wait_until("the router and its HTTPRoutes gone", CONVERGE, || async {
        let routes = route_names(&w, &[app, shop, other]).await?;
        let router = hr.get_opt("edge").await?.is_some();
        Ok(if routes.is_empty() && !router {
            Progress::Done(())
        } else {
            Progress::pending(format!("router {router}, HTTPRoutes {routes:?}"))
        })
    })
    .await?;
    wait_until(
        "the garbage collector to delete the Gateway",
        GC_TIMEOUT,
        || async {
            Ok(match gateways(&w.client, app).get_opt(&p).await? {
                None => Progress::Done(()),
                Some(g) => Progress::pending(g.metadata.owner_references),
            })
        },
    )
    .await?;
    ensure!(
        proxy_api(&w.client, w.gloo.name())
            .get_opt(&p)
            .await?
            .is_none(),
        "a Proxy was left"
    );
    Ok(())
}

/// `(namespace, name)` of the HTTPRoutes the operator wrote in `namespaces`.
async fn route_names(w: &World, namespaces: &[&str]) -> Result<BTreeSet<(String, String)>> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=hostrouter");
    let mut out = BTreeSet::new();
    for ns in namespaces {
        for r in http_routes(&w.client, ns).list(&lp).await?.items {
            out.insert((ns.to_string(), r.metadata.name.unwrap_or_default()));
        }
    }
    Ok(out)
}

async fn wait_routes(
    w: &World,
    namespaces: &[&str],
    expected: BTreeSet<(String, String)>,
) -> Result<()> {
    wait_until("the HTTPRoutes", CONVERGE, || async {
        let got = route_names(w, namespaces).await?;
        Ok(if got == expected {
            Progress::Done(())
        } else {
            Progress::pending(format!("{got:?}, want {expected:?}"))
        })
    })
    .await
}
