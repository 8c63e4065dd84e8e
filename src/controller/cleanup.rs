//! Deleting what a router no longer wants: objects left under old names, everything when the
//! router lost its claim, and the Proxy when the router is deleted (the finalizer). Deletes
//! carry preconditions, so an object someone else just replaced is never removed.

use kube::api::{Api, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tracing::{debug, info};

use super::apply::{self, Namespaced};
use super::context::Context;
use super::finalizer;
use crate::api::HostRouter;
use crate::api::gloo;
use crate::error::{Error, Result, is_missing_resource_type};
use crate::render::naming::{FINALIZER, ROUTER_UID_LABEL};
use crate::render::{self, Rendered};

/// Deletes objects labelled with this router that it no longer wants: everything when
/// `keep` is `None`, else everything not named in `keep`.
pub async fn delete_leftovers(
    router: &HostRouter,
    ctx: &Context,
    keep: Option<&Rendered>,
) -> Result<()> {
    let s = &ctx.stores;
    sweep(
        router,
        ctx,
        &s.config_maps,
        "ConfigMap",
        keep.map(|r| &r.config_map),
    )
    .await?;
    sweep(
        router,
        ctx,
        &s.services,
        "Service",
        keep.map(|r| &r.service),
    )
    .await?;
    sweep(
        router,
        ctx,
        &s.deployments,
        "Deployment",
        keep.map(|r| &r.deployment),
    )
    .await?;
    delete_leftover_proxies(router, ctx, keep).await
}

/// Whether the operator wrote `obj` for `router`.
fn labelled_for(router: &HostRouter, obj: &impl Resource) -> bool {
    router
        .uid()
        .is_some_and(|uid| obj.labels().get(ROUTER_UID_LABEL) == Some(&uid))
}

/// Deletes the cached objects of one kind labelled for `router`, except `keep`.
async fn sweep<K>(
    router: &HostRouter,
    ctx: &Context,
    store: &Store<K>,
    kind: &'static str,
    keep: Option<&K>,
) -> Result<()>
where
    K: Namespaced,
{
    let keep = keep.map(ObjectRef::from_obj);
    for obj in store.state() {
        if !labelled_for(router, obj.as_ref())
            || keep.as_ref() == Some(&ObjectRef::from_obj(obj.as_ref()))
        {
            continue;
        }
        let ns = obj.namespace().unwrap_or_default();
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        if apply::delete_exact(&api, &ctx.metrics, kind, obj.as_ref()).await? {
            let note = format!("Deleted {kind} {ns}/{}", obj.name_any());
            ctx.event(router, EventType::Normal, "Deleted", "Cleanup", note)
                .await;
        }
    }
    Ok(())
}

/// Deletes Proxies labelled for this router other than the one in `keep`.
async fn delete_leftover_proxies(
    router: &HostRouter,
    ctx: &Context,
    keep: Option<&Rendered>,
) -> Result<()> {
    if !ctx.stores.proxies_ready() {
        return Ok(());
    }
    for proxy in ctx.stores.proxies.state() {
        let wanted = keep.is_some_and(|r| {
            proxy.name_any() == r.proxy_ref.name
                && proxy.namespace().as_deref() == Some(r.proxy_ref.namespace.as_str())
        });
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

/// The router is being deleted: remove its Proxy (the namespaced objects follow through their
/// owner references and the garbage collector), then release the finalizer.
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
    // Proxies left under earlier names. The namespaced objects are left to the garbage
    // collector, which follows their owner references.
    delete_leftover_proxies(router, ctx, None).await?;
    finalizer::remove(router, ctx).await?;
    debug!(router = %key, "finalized");
    Ok(Action::await_change())
}
