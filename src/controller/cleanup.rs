//! Deleting what a router no longer wants: objects left under old names, everything when the
//! router lost its claim, and the Proxy when the router is deleted (the finalizer). Deletes
//! carry preconditions, so an object someone else just replaced is never removed.

use std::collections::HashSet;
use std::sync::Arc;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tracing::{debug, info};

use super::apply::{self, Namespaced, Same};
use super::context::Context;
use super::finalizer;
use crate::api::HostRouter;
use crate::api::{gateway, gloo};
use crate::error::{Error, Result, is_missing_resource_type};
use crate::render::naming::{FINALIZER, ROUTER_UID_LABEL};
use crate::render::{self, Rendered};

/// Deletes objects labelled with this router that it no longer wants: everything when
/// `keep` is `None`, else everything `keep` does not list (so a router that moved to the
/// other backend loses the objects of the first).
pub async fn delete_leftovers(
    router: &HostRouter,
    ctx: &Context,
    keep: Option<&Rendered>,
) -> Result<()> {
    let s = &ctx.stores;
    let gloo = keep.and_then(Rendered::gloo);
    let gateway_api = keep.and_then(Rendered::gateway_api);
    sweep(
        router,
        ctx,
        &s.config_maps,
        "ConfigMap",
        gloo.map(|o| &o.config_map),
        Same::Version,
    )
    .await?;
    sweep(
        router,
        ctx,
        &s.services,
        "Service",
        gloo.map(|o| &o.service),
        Same::Version,
    )
    .await?;
    sweep(
        router,
        ctx,
        &s.deployments,
        "Deployment",
        gloo.map(|o| &o.deployment),
        Same::Version,
    )
    .await?;
    sweep(
        router,
        ctx,
        &s.autoscalers,
        "HorizontalPodAutoscaler",
        gloo.and_then(|o| o.autoscaler.as_ref()),
        Same::Object,
    )
    .await?;
    sweep(
        router,
        ctx,
        &s.disruption_budgets,
        "PodDisruptionBudget",
        gloo.and_then(|o| o.disruption_budget.as_ref()),
        Same::Object,
    )
    .await?;
    let proxy = gloo.map(|o| &o.proxy);
    delete_leftover_proxies(router, ctx, proxy).await?;
    if s.gateway_api_ready() {
        let gateway = gateway_api.and_then(|o| o.gateway.as_ref());
        let routes = gateway_api.map_or(&[][..], |o| o.http_routes.as_slice());
        sweep_dynamic(
            router,
            ctx,
            &s.gateways.state(),
            &GATEWAY,
            gateway.into_iter().collect(),
        )
        .await?;
        sweep_dynamic(
            router,
            ctx,
            &s.http_routes.state(),
            &HTTP_ROUTE,
            routes.iter().collect(),
        )
        .await?;
    }
    Ok(())
}

/// A kind the operator writes as a dynamic object, and how to reach it.
struct DynamicKind {
    kind: &'static str,
    resource: fn() -> ApiResource,
}

const GATEWAY: DynamicKind = DynamicKind {
    kind: "Gateway",
    resource: gateway::gateway_resource,
};
const HTTP_ROUTE: DynamicKind = DynamicKind {
    kind: "HTTPRoute",
    resource: gateway::http_route_resource,
};

/// Deletes the objects of `present` labelled for `router`, but those named in `keep`. Objects
/// of a CRD that is gone are gone too.
async fn sweep_dynamic(
    router: &HostRouter,
    ctx: &Context,
    present: &[Arc<DynamicObject>],
    kind: &DynamicKind,
    keep: Vec<&DynamicObject>,
) -> Result<()> {
    let named = |o: &DynamicObject| (o.namespace(), o.name_any());
    let keep: HashSet<_> = keep.into_iter().map(named).collect();
    for obj in present {
        if !labelled_for(router, obj.as_ref()) || keep.contains(&named(obj)) {
            continue;
        }
        let ns = obj.namespace().unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &(kind.resource)());
        let deleted = match apply::delete_exact(&api, &ctx.metrics, kind.kind, obj.as_ref()).await {
            Err(Error::Api { source, .. }) if is_missing_resource_type(&source) => false,
            result => result?,
        };
        if deleted {
            let note = format!("Deleted {} {ns}/{}", kind.kind, obj.name_any());
            ctx.event(router, EventType::Normal, "Deleted", "Cleanup", note)
                .await;
        }
    }
    Ok(())
}

/// Whether the operator wrote `obj` for `router`.
fn labelled_for(router: &HostRouter, obj: &impl Resource) -> bool {
    router.metadata.uid.as_deref().is_some_and(|uid| {
        obj.meta()
            .labels
            .as_ref()
            .and_then(|l| l.get(ROUTER_UID_LABEL))
            .map(String::as_str)
            == Some(uid)
    })
}

/// Deletes the cached objects of one kind labelled for `router`, except `keep`, if still
/// `same` (see [`Same`]).
async fn sweep<K>(
    router: &HostRouter,
    ctx: &Context,
    store: &Store<K>,
    kind: &'static str,
    keep: Option<&K>,
    same: Same,
) -> Result<()>
where
    K: Namespaced,
{
    let keep = keep.map(ObjectRef::from_obj);
    // The label first: a cache may hold objects of other routers.
    for obj in store.state() {
        if labelled_for(router, obj.as_ref())
            && keep.as_ref() != Some(&ObjectRef::from_obj(obj.as_ref()))
        {
            delete_labelled(router, ctx, kind, obj.as_ref(), same).await?;
        }
    }
    Ok(())
}

/// Deletes `obj` (of `kind`, as cached) if it is labelled for `router` and still `same`, with
/// an Event.
pub async fn delete_labelled<K: Namespaced>(
    router: &HostRouter,
    ctx: &Context,
    kind: &'static str,
    obj: &K,
    same: Same,
) -> Result<()> {
    if !labelled_for(router, obj) {
        return Ok(());
    }
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    if apply::delete_if(&api, &ctx.metrics, kind, obj, same).await? {
        let note = format!("Deleted {kind} {ns}/{}", obj.name_any());
        ctx.event(router, EventType::Normal, "Deleted", "Cleanup", note)
            .await;
    }
    Ok(())
}

/// Deletes Proxies labelled for this router other than `keep`.
async fn delete_leftover_proxies(
    router: &HostRouter,
    ctx: &Context,
    keep: Option<&DynamicObject>,
) -> Result<()> {
    if !ctx.stores.proxies_ready() {
        return Ok(());
    }
    let named = |o: &DynamicObject| (o.namespace(), o.name_any());
    for proxy in ctx.stores.proxies.state() {
        let wanted = keep.is_some_and(|k| named(k) == named(&proxy));
        if !wanted && labelled_for(router, proxy.as_ref()) {
            delete_proxy(router, ctx, &proxy).await?;
        }
    }
    Ok(())
}

async fn delete_proxy(router: &HostRouter, ctx: &Context, proxy: &DynamicObject) -> Result<()> {
    if apply::delete_proxy(&ctx.client, &ctx.metrics, proxy).await? {
        let proxy = format!(
            "{}/{}",
            proxy.namespace().unwrap_or_default(),
            proxy.name_any()
        );
        info!(%proxy, "deleted Proxy");
        let note = format!("Deleted Proxy {proxy}");
        ctx.event(router, EventType::Normal, "Deleted", "Cleanup", note)
            .await;
    }
    Ok(())
}

/// The HTTPRoutes labelled for `router`: from the cache when it is complete, else from the
/// API server (none without the Gateway API CRDs).
async fn labelled_http_routes(
    router: &HostRouter,
    ctx: &Context,
) -> Result<Vec<Arc<DynamicObject>>> {
    if ctx.stores.gateway_api_ready() {
        return Ok(ctx.stores.http_routes.state());
    }
    let uid = router.uid().unwrap_or_default();
    let api: Api<DynamicObject> =
        Api::all_with(ctx.client.clone(), &gateway::http_route_resource());
    let params = ListParams::default().labels(&format!("{ROUTER_UID_LABEL}={uid}"));
    match api.list(&params).await {
        Ok(list) => Ok(list.items.into_iter().map(Arc::new).collect()),
        Err(e) if is_missing_resource_type(&e) => Ok(Vec::new()),
        Err(e) => Err(Error::api("listing", "HTTPRoute", "", "", e)),
    }
}

/// The router is being deleted: remove its Proxy and HTTPRoutes (the objects in its namespace
/// follow through their owner references and the garbage collector), then release the
/// finalizer.
pub async fn finalize(router: &HostRouter, ctx: &Context) -> Result<Action> {
    let key = ObjectRef::from_obj(router);
    ctx.forget(&key);
    if !router.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let uid = router.uid().unwrap_or_default();
    let p = render::proxy_ref(router, &ctx.settings);
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &p.namespace, &gloo::proxy_resource());
    // Read the Proxy from the API server: the cache may be empty while Gloo's CRD is missing.
    let current = match api.get_opt(&p.name).await {
        Ok(current) => current,
        Err(e) if is_missing_resource_type(&e) => None,
        Err(e) => return Err(Error::api("reading", "Proxy", &p.namespace, &p.name, e)),
    };
    if let Some(proxy) = current.filter(|p| p.labels().get(ROUTER_UID_LABEL) == Some(&uid)) {
        delete_proxy(router, ctx, &proxy).await?;
    }
    // Proxies left under earlier names.
    delete_leftover_proxies(router, ctx, None).await?;
    // The HTTPRoutes, in the Services' namespaces. The objects in the router's namespace (a
    // Gateway, the Envoy ConfigMap, Service and Deployment) are left to the garbage
    // collector, which follows their owner references.
    let routes = labelled_http_routes(router, ctx).await?;
    sweep_dynamic(router, ctx, &routes, &HTTP_ROUTE, Vec::new()).await?;
    finalizer::remove(router, ctx).await?;
    debug!(router = %key, "finalized");
    Ok(Action::await_change())
}
