//! Writing a router's objects. Every object is looked at before any is written: if one of the
//! names is held by an object this router did not write, nothing is written at all (an Envoy
//! Deployment must never mount somebody else's ConfigMap). One file per backend:
//! - [`gloo`]: the Envoy ConfigMap, Service and Deployment, then the Proxy;
//! - [`gateway_api`]: the Gateway the router owns, then its HTTPRoutes, only those that
//!   differ.
//!
//! This file holds what both share: looking at an object, the conflict rule, applying.

mod gateway_api;
mod gloo;

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, info};

use super::apply::{self, Namespaced, Outcome};
use super::context::Context;
use super::ownership::{self, MayWrite};
use super::status::EnvoyState;
use super::triggers::{annotated_router, is_managed};
use crate::api::HostRouter;
use crate::api::gloo::Verdict;
use crate::error::{Error, Result};
use crate::render::naming;
use crate::render::{Objects, Rendered};

/// What writing the objects found.
pub struct Written {
    /// An object of one of the names exists and is not this router's: nothing was written.
    pub conflict: Option<String>,
    pub backend: BackendWrite,
}

/// What became of each backend's objects.
pub enum BackendWrite {
    Gloo {
        proxy: ProxyWrite,
        envoy: EnvoyState,
    },
    GatewayApi(GatewayApiWrite),
}

/// What became of the Proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyWrite {
    /// Written (or already right), and Gloo's verdict on it: `Pending` right after a write,
    /// since the status the object still carries is Gloo's verdict on the previous spec.
    Written(Verdict),
    /// Gloo's Proxy CRD is not installed: the namespaced objects were written, the Proxy not.
    CrdMissing,
    /// The Proxy's namespace does not exist: the namespaced objects were written, the Proxy not.
    NamespaceMissing,
    /// Nothing was written (a conflict).
    NotWritten,
}

/// What became of the Gateway API objects.
#[derive(Clone, Debug)]
pub enum GatewayApiWrite {
    /// Written (or already right): the Gateway the routes attach to as it is now (`None`: an
    /// existing Gateway the router names is not there), and every HTTPRoute as it is now.
    Written {
        gateway: Option<Arc<DynamicObject>>,
        routes: Vec<Arc<DynamicObject>>,
    },
    /// The Gateway API CRDs are not installed: nothing was written.
    CrdMissing,
    /// Nothing was written (a conflict).
    NotWritten,
}

pub async fn write_objects(router: &HostRouter, ctx: &Context, r: &Rendered) -> Result<Written> {
    match &r.objects {
        Objects::Gloo(o) => gloo::write(router, ctx, o, &r.proxy_ref).await,
        Objects::GatewayApi(o) => gateway_api::write(router, ctx, o).await,
    }
}

/// An object to write, with what the cluster has under its name.
struct Planned<'a, K> {
    kind: &'static str,
    api: Api<K>,
    desired: &'a K,
    current: Option<Arc<K>>,
}

/// The Envoy Deployment as observed (`Missing` when there is none).
pub fn envoy_state(dep: Option<&Deployment>) -> EnvoyState {
    match dep {
        None => EnvoyState::Missing,
        Some(dep) => EnvoyState::Observed {
            desired: dep.spec.replicas.unwrap_or(1),
            available: dep
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0),
        },
    }
}

/// A namespaced object of the router, and what its namespace holds under that name.
async fn plan<'a, K>(
    router: &HostRouter,
    ctx: &Context,
    kind: &'static str,
    desired: &'a K,
    store: &Store<K>,
) -> Result<Planned<'a, K>>
where
    K: Namespaced,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &router.namespace().unwrap_or_default());
    let current = apply::current(
        &api,
        kind,
        desired,
        store.get(&ObjectRef::from_obj(desired)),
    )
    .await?;
    Ok(Planned {
        kind,
        api,
        desired,
        current,
    })
}

/// Why this router may not write over `existing`, an object of `kind` in another namespace that
/// names its router in an annotation (a Proxy, an HTTPRoute; see [`ownership::may_write`]), or
/// `None` when it may.
async fn annotated_conflict(
    router: &HostRouter,
    ctx: &Context,
    kind: &str,
    existing: &DynamicObject,
) -> Result<Option<String>> {
    let me = ObjectRef::from_obj(router);
    let in_cache = |r: &ObjectRef<HostRouter>| ctx.stores.routers.get(r).is_some();
    let at = format!(
        "{}/{}",
        existing.namespace().unwrap_or_default(),
        existing.name_any()
    );
    let held_by = |owner: &ObjectRef<HostRouter>| {
        format!(
            "{kind} {at} is written by HostRouter {}/{}, which still exists (managed by another operator instance, or still releasing it); rename spec.proxyName or remove that router",
            owner.namespace.as_deref().unwrap_or_default(),
            owner.name
        )
    };
    Ok(
        match ownership::may_write(existing, &me, in_cache, ctx.settings.shard.as_deref()) {
            MayWrite::Yes | MayWrite::Adopt => None,
            MayWrite::No => Some(
                match annotated_router(existing).filter(|_| is_managed(existing)) {
                    Some(owner) => held_by(&owner),
                    None => format!(
                        "{kind} {at} already exists and was not created by HostRouter; rename spec.proxyName or remove the {kind}"
                    ),
                },
            ),
            MayWrite::IfGone(owner) => {
                let ns = owner.namespace.clone().unwrap_or_default();
                let api: Api<HostRouter> = Api::namespaced(ctx.client.clone(), &ns);
                let exists = api
                    .get_metadata_opt(&owner.name)
                    .await
                    .map_err(|e| Error::api("reading", "HostRouter", &ns, &owner.name, e))?
                    .is_some();
                exists.then(|| held_by(&owner))
            }
        },
    )
}

impl<K: Resource> Planned<'_, K> {
    /// The conflict message when the name is held by an object that is not ours.
    fn conflict(&self, is_ours: impl Fn(&K) -> bool) -> Option<String> {
        let current = self.current.as_ref()?;
        if is_ours(current) {
            return None;
        }
        let kind = self.kind;
        Some(format!(
            "{kind} {}/{} already exists and was not created by this HostRouter; rename spec.proxyName or remove the {kind}",
            current.namespace().unwrap_or_default(),
            current.name_any()
        ))
    }
}

/// Applies one planned object if it differs, and announces what changed.
async fn converge<K>(router: &HostRouter, ctx: &Context, p: Planned<'_, K>) -> Result<Arc<K>>
where
    K: Resource + Clone + Debug + serde::Serialize + DeserializeOwned,
{
    // What we applied last time, per the object's own stamp: when it equals what we apply now,
    // a difference was made by someone else.
    let desired_stamp = naming::applied_hash(p.desired.meta());
    let drifted = p.current.as_deref().is_some_and(|c| {
        let stamp = naming::applied_hash(c.meta());
        stamp.is_some() && stamp == desired_stamp
    });
    ctx.writing(p.kind, p.desired);
    let outcome = apply::converge(&p.api, &ctx.metrics, p.kind, p.desired, p.current).await;
    ctx.written(
        p.kind,
        p.desired,
        match &outcome {
            Ok(Outcome::Created(k) | Outcome::Updated { object: k, .. }) => Some(k),
            _ => None,
        },
    );
    let outcome = outcome?;
    let object = format!(
        "{}/{}",
        p.desired.namespace().unwrap_or_default(),
        p.desired.name_any()
    );
    let router_ref = ObjectRef::from_obj(router);
    // Events for what is news: an object created, or someone else's change reverted; not the
    // routine update that follows a change of the router or of the Services it routes.
    let event = match &outcome {
        Outcome::Created(_) => Some((
            EventType::Normal,
            "Created",
            format!("Created {} {object}", p.kind),
        )),
        Outcome::Updated { reverted, .. } if drifted || *reverted => Some((
            EventType::Warning,
            "DriftReverted",
            format!(
                "Reverted a change made outside HostRouter to {} {object}",
                p.kind
            ),
        )),
        Outcome::Updated { .. } => None,
        Outcome::Unchanged(_) => None,
    };
    match &event {
        Some((_, reason, _)) => info!(router = %router_ref, kind = p.kind, %object, "{reason}"),
        None if outcome.verb().is_some() => {
            debug!(router = %router_ref, kind = p.kind, %object, "updated")
        }
        None => {}
    }
    if let Some((type_, reason, note)) = event {
        ctx.event(router, type_, reason, "Apply", note).await;
    }
    Ok(match outcome {
        Outcome::Unchanged(k) => k,
        Outcome::Created(k) | Outcome::Updated { object: k, .. } => Arc::new(k),
    })
}
