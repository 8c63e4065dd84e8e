//! The finalizer that removes a router's Proxy (in another namespace, so no owner reference
//! can) before the router goes. Both patches are JSON patches guarded by a `test`, so a
//! reconcile working from a stale cache can neither add the finalizer twice nor remove another.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::context::Context;
use crate::api::HostRouter;
use crate::error::{Error, Result};
use crate::metrics::WriteOp;
use crate::render::naming::FINALIZER;

/// Adds the finalizer unless the router has it. Guarded by the resourceVersion: when the cache
/// is stale (the finalizer may already be there) the patch fails and the retry sees the truth.
pub async fn ensure(router: &HostRouter, ctx: &Context) -> Result<()> {
    let finalizers = router.finalizers();
    if finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let add = if finalizers.is_empty() {
        json!({ "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] })
    } else {
        json!({ "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER })
    };
    let patch = json!([
        { "op": "test", "path": "/metadata/resourceVersion", "value": router.resource_version() },
        add
    ]);
    patch_router(router, ctx, patch).await
}

/// Removes the finalizer, if it is still where the router had it.
pub async fn remove(router: &HostRouter, ctx: &Context) -> Result<()> {
    let Some(index) = router.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch = json!([
        { "op": "test", "path": path, "value": FINALIZER },
        { "op": "remove", "path": path }
    ]);
    patch_router(router, ctx, patch).await
}

async fn patch_router(router: &HostRouter, ctx: &Context, patch: serde_json::Value) -> Result<()> {
    let ns = router.namespace().unwrap_or_default();
    let name = router.name_any();
    let api: Api<HostRouter> = Api::namespaced(ctx.client.clone(), &ns);
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|source| Error::Serialize {
            kind: "finalizer patch",
            source,
        })?;
    match api
        .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => {
            ctx.metrics.write("HostRouter", WriteOp::Finalizer);
            Ok(())
        }
        // Already gone: nothing left to guard.
        Err(e) if crate::error::is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::api(
            "updating finalizers of",
            "HostRouter",
            &ns,
            &name,
            e,
        )),
    }
}
