//! One reconcile: decide the claim, render, write what differs, delete what is left over,
//! report. The decisions are made by the pure modules (`claims`, `render`, `status`); this
//! file only reads caches, writes, and reports.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, info, warn};

use super::apply::{self, Outcome};
use super::claims::{self, Claim};
use super::context::Context;
use super::status::{self, Acceptance, EnvoyState, Facts, Programming, reason};
use super::triggers::{annotated_router, is_managed};
use crate::api::gloo::{self, Verdict};
use crate::api::{HostRouter, HostRouterStatus};
use crate::error::{Error, Result, is_missing_resource_type};
use crate::metrics::{ReconcileResult, WriteOp};
use crate::render::naming::{FIELD_MANAGER, FINALIZER, ROUTER_UID_LABEL};
use crate::render::{self, ClusterView, Rendered};

/// How soon to look again while the watch caches are still listing.
const INPUTS_RETRY: Duration = Duration::from_millis(200);
/// How often a healthy router is looked at again even without events.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon to look again while something outside the operator's watches blocks the router:
/// Gloo's Proxy CRD is missing, or an object the operator did not write holds a name it needs.
const BLOCKED_RETRY: Duration = Duration::from_secs(10);

pub async fn reconcile(router: Arc<HostRouter>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx.metrics.reconcile_started();
    // Never render from a partial view of the cluster. Checked without awaiting: a reconcile
    // parked on the caches' readiness future was seen never to wake up (kube-runtime's
    // readiness signal shared with `/readyz`), so look again shortly instead.
    if !ctx.stores.inputs_ready() {
        timer.finish(ReconcileResult::Requeue);
        return Ok(Action::requeue(INPUTS_RETRY));
    }
    let result = reconcile_router(&router, &ctx).await;
    let key = ObjectRef::from_obj(router.as_ref());
    match &result {
        Ok(_) => {
            ctx.backoff_reset(&key);
            timer.finish(ReconcileResult::Success);
        }
        Err(error) => {
            warn!(router = %key, %error, "reconcile failed");
            timer.finish(ReconcileResult::Error);
        }
    }
    result
}

/// Retries a failed router with exponential backoff, per router.
pub fn error_policy(router: Arc<HostRouter>, _error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.backoff_next(&ObjectRef::from_obj(router.as_ref())))
}

async fn reconcile_router(router: &HostRouter, ctx: &Context) -> Result<Action> {
    debug!(generation = router.metadata.generation, "reconciling");
    if router.metadata.deletion_timestamp.is_some() {
        return finalize(router, ctx).await;
    }
    let routers = ctx.stores.routers.state();
    let claim = claims::claim(router, routers.iter().map(|r| r.as_ref()), &ctx.settings);
    let proxy_ref = render::proxy_ref(router, &ctx.settings);
    let mut facts = Facts {
        generation: router.metadata.generation,
        acceptance: Acceptance::Accepted,
        programming: Programming::Programmed,
        verdict: None,
        envoy: EnvoyState::Missing,
        proxy_ref,
        namespaces: 0,
        services: 0,
        virtual_hosts: 0,
        dropped_hosts: 0,
    };
    if let Claim::Lost {
        reason: message, ..
    } = claim
    {
        facts.acceptance = Acceptance::Rejected {
            reason: reason::PROXY_NAME_CONFLICT,
            message,
        };
        // A router that lost its names keeps nothing it wrote under them.
        delete_leftovers(router, ctx, None).await?;
        write_status(router, ctx, &facts).await?;
        return Ok(Action::await_change());
    }

    let namespaces = ctx.stores.namespaces.state();
    let services = ctx.stores.services.state();
    let view = ClusterView {
        namespaces: namespaces.iter().map(|n| n.as_ref()).collect(),
        services: services.iter().map(|s| s.as_ref()).collect(),
    };
    let rendered = match render::render(router, &view, &ctx.settings) {
        Ok(r) => r,
        Err(e) => {
            facts.acceptance = Acceptance::Rejected {
                reason: reason::INVALID_SPEC,
                message: e.to_string(),
            };
            write_status(router, ctx, &facts).await?;
            return Ok(Action::await_change());
        }
    };
    facts.namespaces = rendered.hosts.namespaces;
    facts.services = rendered.hosts.services;
    facts.virtual_hosts = rendered.hosts.hosts.len();
    facts.dropped_hosts = rendered.hosts.dropped.len();
    report_duplicates(router, ctx, &rendered).await;

    let written = write_objects(router, ctx, &rendered).await;
    let mut action = Action::requeue(RESYNC);
    let mut failure = None;
    match written {
        Ok(w) => {
            if let Some(conflict) = w.conflict {
                facts.acceptance = Acceptance::Rejected {
                    reason: reason::PROXY_NAME_CONFLICT,
                    message: conflict,
                };
                // The object in the way is not watched (it is not labelled as ours).
                action = Action::requeue(BLOCKED_RETRY);
            }
            facts.verdict = w.verdict;
            facts.envoy = w.envoy;
            if w.gloo_crd_missing {
                facts.programming = Programming::Failed {
                    reason: reason::GLOO_CRD_MISSING,
                    message: "Gloo's Proxy CRD (proxies.gloo.solo.io) is not installed. Install Gloo; the Proxy is written as soon as the CRD exists".into(),
                };
                action = Action::requeue(BLOCKED_RETRY);
            } else if facts.acceptance == Acceptance::Accepted {
                delete_leftovers(router, ctx, Some(&rendered)).await?;
            }
        }
        Err(e) => {
            facts.programming = Programming::Failed {
                reason: reason::APPLY_FAILED,
                message: e.to_string(),
            };
            failure = Some(e);
        }
    }
    write_status(router, ctx, &facts).await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(action),
    }
}

/// What writing the objects found.
struct Written {
    /// An object of the same name exists and is not ours.
    conflict: Option<String>,
    gloo_crd_missing: bool,
    verdict: Option<Verdict>,
    envoy: EnvoyState,
}

async fn write_objects(router: &HostRouter, ctx: &Context, r: &Rendered) -> Result<Written> {
    let m = ctx.metrics.as_ref();
    let mut out = Written {
        conflict: None,
        gloo_crd_missing: false,
        verdict: None,
        envoy: EnvoyState::Missing,
    };
    let s = &ctx.stores;
    let cm = ensure_owned(router, ctx, "ConfigMap", &r.config_map, &s.config_maps).await?;
    let svc = ensure_owned(router, ctx, "Service", &r.service, &s.services).await?;
    let dep = ensure_owned(router, ctx, "Deployment", &r.deployment, &s.deployments).await?;
    for outcome in [cm.conflict(), svc.conflict(), dep.conflict()]
        .into_iter()
        .flatten()
    {
        out.conflict.get_or_insert(outcome);
    }
    if let Some(d) = dep.object() {
        out.envoy = EnvoyState::Observed {
            desired: d.spec.replicas.unwrap_or(1),
            available: d
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0),
        };
    }
    if out.conflict.is_some() {
        return Ok(out);
    }

    // The Proxy: in Gloo's namespace, protected by the finalizer instead of an owner reference.
    ensure_finalizer(router, ctx).await?;
    let proxies: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &r.proxy_ref.namespace,
        &gloo::proxy_resource(),
    );
    let me = ObjectRef::from_obj(router);
    let routers = &ctx.stores.routers;
    let is_ours = |p: &DynamicObject| {
        is_managed(p)
            && match annotated_router(p) {
                Some(owner) if owner == me => true,
                // Left behind by a router that no longer exists: adopt it.
                Some(owner) => routers.get(&owner).is_none(),
                None => true,
            }
    };
    let observed = if ctx.stores.proxies_ready() {
        ctx.stores
            .proxies
            .get(&ObjectRef::from_obj_with(&r.proxy, gloo::proxy_resource()))
    } else {
        None
    };
    match apply::ensure(&proxies, m, "Proxy", &r.proxy, observed, is_ours).await {
        Ok(Outcome::Conflict(c)) => out.conflict = Some(c),
        Ok(outcome) => {
            announce(router, ctx, "Proxy", &r.proxy, &outcome).await;
            out.verdict = outcome
                .object()
                .map(|p| gloo::verdict(p, &r.proxy_ref.namespace));
        }
        Err(Error::Api { source, .. }) if is_missing_resource_type(&source) => {
            out.gloo_crd_missing = true
        }
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// Applies one of the router's namespaced objects (owned through a controller reference) and
/// announces what changed.
async fn ensure_owned<K>(
    router: &HostRouter,
    ctx: &Context,
    kind: &'static str,
    desired: &K,
    store: &Store<K>,
) -> Result<Outcome<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + serde::Serialize
        + DeserializeOwned
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let uid = router.uid().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &router.namespace().unwrap_or_default());
    let outcome = apply::ensure(
        &api,
        &ctx.metrics,
        kind,
        desired,
        cached(store, desired),
        |o| o.owned_by(&uid),
    )
    .await?;
    announce(router, ctx, kind, desired, &outcome).await;
    Ok(outcome)
}

/// Logs and emits an Event for an object that was created or updated.
async fn announce<K: Resource>(
    router: &HostRouter,
    ctx: &Context,
    kind: &str,
    desired: &K,
    outcome: &Outcome<K>,
) {
    let Some(verb) = outcome.verb() else { return };
    let object = format!(
        "{}/{}",
        desired.namespace().unwrap_or_default(),
        desired.name_any()
    );
    info!(router = %ObjectRef::from_obj(router), kind, %object, "{verb}");
    ctx.event(
        router,
        EventType::Normal,
        verb,
        "Apply",
        format!("{verb} {kind} {object}"),
    )
    .await;
}

/// Objects that may carry a controller owner reference to a router.
trait OwnedBy {
    fn owned_by(&self, uid: &str) -> bool;
}

impl<K: Resource> OwnedBy for K {
    fn owned_by(&self, uid: &str) -> bool {
        self.owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.uid == uid)
    }
}

impl<K> Outcome<K> {
    fn conflict(&self) -> Option<String> {
        match self {
            Outcome::Conflict(c) => Some(c.clone()),
            _ => None,
        }
    }
}

/// The cached object with the name of `desired`.
fn cached<K>(store: &Store<K>, desired: &K) -> Option<Arc<K>>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    store.get(&ObjectRef::from_obj(desired))
}

/// Emits a Warning when the set of duplicate domains changes.
async fn report_duplicates(router: &HostRouter, ctx: &Context, r: &Rendered) {
    let dropped: BTreeSet<String> = r
        .hosts
        .dropped
        .iter()
        .map(|d| {
            format!(
                "{}/{}:{} (kept {})",
                d.host.namespace, d.host.service, d.host.port, d.kept
            )
        })
        .collect();
    let known = router
        .status
        .as_ref()
        .map_or(0, |s| usize::try_from(s.dropped_hosts).unwrap_or(0));
    let key = ObjectRef::from_obj(router);
    if !ctx.duplicates_changed(&key, dropped.clone(), known) || dropped.is_empty() {
        return;
    }
    let list: Vec<&str> = dropped.iter().map(String::as_str).collect();
    let note = format!(
        "{} Service ports left out because their domain is already used: {}",
        dropped.len(),
        list.join(", ")
    );
    ctx.event(router, EventType::Warning, "DuplicateHost", "Render", note)
        .await;
}

/// Deletes objects labelled with this router that it no longer wants: everything when
/// `keep` is `None`, else everything not named in `keep`.
async fn delete_leftovers(
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
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
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
async fn finalize(router: &HostRouter, ctx: &Context) -> Result<Action> {
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
    remove_finalizer(router, ctx).await?;
    debug!(router = %key, "finalized");
    Ok(Action::await_change())
}

async fn ensure_finalizer(router: &HostRouter, ctx: &Context) -> Result<()> {
    let finalizers = router.finalizers();
    if finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    // Guarded by the resourceVersion, so a concurrent change of the list is never overwritten.
    let patch = if finalizers.is_empty() {
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": router.resource_version() },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] }
        ])
    } else {
        json!([{ "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER }])
    };
    patch_router(router, ctx, patch).await
}

async fn remove_finalizer(router: &HostRouter, ctx: &Context) -> Result<()> {
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

/// Writes the status computed from `facts`, only when it differs from the current one, and
/// emits an Event for each condition that changed status.
async fn write_status(router: &HostRouter, ctx: &Context, facts: &Facts) -> Result<()> {
    let previous = router.status.as_ref();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let next = status::compute(facts, previous, &now);
    if previous == Some(&next) {
        return Ok(());
    }
    let ns = router.namespace().unwrap_or_default();
    let name = router.name_any();
    let api: Api<HostRouter> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "apiVersion": HostRouter::api_version(&()),
        "kind": HostRouter::kind(&()),
        "status": next,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::api("writing status of", "HostRouter", &ns, &name, e))?;
    ctx.metrics.write("HostRouter", WriteOp::Status);
    announce_transitions(router, ctx, previous, &next).await;
    Ok(())
}

async fn announce_transitions(
    router: &HostRouter,
    ctx: &Context,
    previous: Option<&HostRouterStatus>,
    next: &HostRouterStatus,
) {
    for c in &next.conditions {
        let before = status::condition_status(previous, &c.type_);
        let changed = before.is_none_or(|b| b.status != c.status);
        // First appearances are news only when something is wrong.
        let newsworthy = if before.is_none() {
            c.status == "False"
        } else {
            changed
        };
        if !newsworthy || c.type_ == status::READY && c.status == "False" {
            continue;
        }
        let type_ = if c.status == "False" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = format!("{} is {}: {}", c.type_, c.status, c.message);
        ctx.event(router, type_, &c.reason, "Reconcile", note).await;
    }
}
