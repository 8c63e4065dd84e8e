//! Writes: server-side apply with one field manager, only when the object differs from what
//! the cache shows; deletes with preconditions, so an object someone else just replaced is
//! never removed.

use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::api::gloo;
use crate::diff::is_subset;
use crate::enforce;
use crate::error::{Error, Result, is_missing_resource_type};
use crate::metrics::{Metrics, WriteOp};
use crate::render::naming::FIELD_MANAGER;

/// A namespaced Kubernetes kind the operator writes in a router's namespace and caches.
pub trait Namespaced:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Namespaced for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// What [`converge`] did.
#[derive(Clone, Debug)]
pub enum Outcome<K> {
    /// The object already matched; nothing was written.
    Unchanged(Arc<K>),
    Created(K),
    /// Written; `reverted` when additions made by someone else were removed first (see
    /// [`crate::enforce`]).
    Updated {
        object: K,
        reverted: bool,
    },
}

impl<K> Outcome<K> {
    /// `Created` or `Updated`, for Events.
    pub fn verb(&self) -> Option<&'static str> {
        match self {
            Self::Created(_) => Some("Created"),
            Self::Updated { .. } => Some("Updated"),
            Self::Unchanged(_) => None,
        }
    }
}

/// The object named like `desired` as it is now: `observed` (the cache's copy) when the cache
/// has one, else the API server's. The cache may lag behind our own writes and does not hold
/// objects we did not write, so nothing is created without asking the API server first.
pub async fn current<K>(
    api: &Api<K>,
    kind: &'static str,
    desired: &K,
    observed: Option<Arc<K>>,
) -> Result<Option<Arc<K>>>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    if observed.is_some() {
        return Ok(observed);
    }
    let name = desired.name_any();
    api.get_opt(&name)
        .await
        .map(|o| o.map(Arc::new))
        .map_err(|e| {
            Error::api(
                "reading",
                kind,
                &desired.namespace().unwrap_or_default(),
                &name,
                e,
            )
        })
}

/// Makes `desired` true through `api`, unless `current` (from [`current`], already checked to
/// be ours) says it all already: first removes what someone else added where the operator owns
/// the object (a JSON patch guarded by the resourceVersion), then applies with server-side
/// apply if a field differs.
pub async fn converge<K>(
    api: &Api<K>,
    metrics: &Metrics,
    kind: &'static str,
    desired: &K,
    current: Option<Arc<K>>,
) -> Result<Outcome<K>>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.name_any();
    let namespace = desired.namespace().unwrap_or_default();
    let serialize =
        |o: &K| serde_json::to_value(o).map_err(|source| Error::Serialize { kind, source });
    let mut reverted = false;
    if let Some(mut now) = current.clone() {
        let desired_json = serialize(desired)?;
        let mut now_json = serialize(&now)?;
        let fixes = enforce::fixes(kind, &desired_json, &now_json);
        if !fixes.removals.is_empty() {
            let mut ops = vec![json!({
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": now.resource_version(),
            })];
            ops.extend(
                fixes
                    .removals
                    .iter()
                    .map(|path| json!({"op": "remove", "path": path})),
            );
            let patch: json_patch::Patch = serde_json::from_value(json!(ops))
                .map_err(|source| Error::Serialize { kind, source })?;
            let patched = api
                .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
                .await
                .map_err(|e| {
                    Error::api("removing what others added to", kind, &namespace, &name, e)
                })?;
            metrics.write(kind, WriteOp::Revert);
            reverted = true;
            now_json = serialize(&patched)?;
            now = Arc::new(patched);
        }
        if !fixes.reapply && holds(&desired_json, &now_json) {
            return Ok(if reverted {
                Outcome::Updated {
                    object: now.as_ref().clone(),
                    reverted,
                }
            } else {
                Outcome::Unchanged(now)
            });
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = api
        .patch(&name, &params, &Patch::Apply(desired))
        .await
        .map_err(|e| Error::api("applying", kind, &namespace, &name, e))?;
    metrics.write(kind, WriteOp::Apply);
    Ok(if current.is_some() {
        Outcome::Updated {
            object: written,
            reverted,
        }
    } else {
        Outcome::Created(written)
    })
}

/// Whether the object as it is (`now`) holds everything `desired` says, but its `status`: a
/// status the operator writes (the Proxy's, see [`gloo::awaiting_verdict`]) goes with a
/// change of the rest, and is another party's to replace afterwards.
fn holds(desired: &serde_json::Value, now: &serde_json::Value) -> bool {
    match desired.as_object() {
        Some(fields) if fields.contains_key("status") => {
            let mut without = fields.clone();
            without.remove("status");
            is_subset(&serde_json::Value::Object(without), now)
        }
        _ => is_subset(desired, now),
    }
}

/// Deletes a Gloo Proxy with [`delete_exact`]. Without Gloo's Proxy CRD there is no Proxy to
/// delete: `false`, like a Proxy that is already gone.
pub async fn delete_proxy(
    client: &Client,
    metrics: &Metrics,
    proxy: &DynamicObject,
) -> Result<bool> {
    let ns = proxy.namespace().unwrap_or_default();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &gloo::proxy_resource());
    match delete_exact(&api, metrics, "Proxy", proxy).await {
        Err(Error::Api { source, .. }) if is_missing_resource_type(&source) => Ok(false),
        result => result,
    }
}

/// Deletes `obj` if it is still the same object at the same version.
pub async fn delete_exact<K>(
    api: &Api<K>,
    metrics: &Metrics,
    kind: &'static str,
    obj: &K,
) -> Result<bool>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    delete_if(api, metrics, kind, obj, Same::Version).await
}

/// How much of `obj` a delete requires to be unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Same {
    /// The same object at the same version: nobody changed it since we looked.
    Version,
    /// The same object (uid), at any version: for objects whose status changes all the time
    /// (an autoscaler's, a disruption budget's), where a version precondition would rarely
    /// hold.
    Object,
}

/// Deletes `obj` if it is still the same object (and version, per `same`).
pub async fn delete_if<K>(
    api: &Api<K>,
    metrics: &Metrics,
    kind: &'static str,
    obj: &K,
    same: Same,
) -> Result<bool>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let name = obj.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: obj.uid(),
            resource_version: match same {
                Same::Version => obj.resource_version(),
                Same::Object => None,
            },
        }),
        ..DeleteParams::background()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            metrics.write(kind, WriteOp::Delete);
            Ok(true)
        }
        // Gone already, or replaced since we looked: nothing of ours to delete.
        Err(e) if crate::error::is_not_found(&e) || crate::error::is_conflict(&e) => Ok(false),
        Err(e) => Err(Error::api(
            "deleting",
            kind,
            &obj.namespace().unwrap_or_default(),
            &name,
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_written_with_the_spec_is_not_written_again_once_replaced() {
        let desired =
            json!({"spec": {"a": 1}, "status": {"statuses": {"gloo": {"state": "Pending"}}}});
        let judged =
            json!({"spec": {"a": 1}, "status": {"statuses": {"gloo": {"state": "Accepted"}}}});
        assert!(holds(&desired, &judged));
        let changed =
            json!({"spec": {"a": 2}, "status": {"statuses": {"gloo": {"state": "Accepted"}}}});
        assert!(!holds(&desired, &changed));
        assert!(!holds(
            &json!({"data": {"k": "v"}}),
            &json!({"data": {"k": "w"}})
        ));
    }
}
