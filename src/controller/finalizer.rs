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
    match add_patch(router.finalizers(), router.resource_version()) {
        Some(patch) => patch_router(router, ctx, patch).await,
        None => Ok(()),
    }
}

/// The JSON patch that adds the finalizer to a router whose finalizers and resourceVersion are
/// those seen; `None` when it is there already. Always guarded by the resourceVersion: a router
/// seen from a stale cache may already have it.
fn add_patch(finalizers: &[String], resource_version: Option<String>) -> Option<serde_json::Value> {
    if finalizers.iter().any(|f| f == FINALIZER) {
        return None;
    }
    let add = if finalizers.is_empty() {
        json!({ "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] })
    } else {
        json!({ "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER })
    };
    Some(json!([
        { "op": "test", "path": "/metadata/resourceVersion", "value": resource_version },
        add
    ]))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_is_added_only_to_the_version_seen() {
        let others = vec!["example.com/keep".to_owned()];
        for finalizers in [vec![], others] {
            let patch = add_patch(&finalizers, Some("41".into())).unwrap();
            assert_eq!(
                patch[0],
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": "41"}),
                "with finalizers {finalizers:?}"
            );
            assert_eq!(patch[1]["op"], "add");
        }
        assert_eq!(add_patch(&[FINALIZER.to_owned()], Some("41".into())), None);
    }
}
