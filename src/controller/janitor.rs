//! Proxies and HTTPRoutes whose HostRouter is gone. The finalizer removes a router's Proxy and
//! HTTPRoutes in the normal case; this sweep catches what the finalizer cannot: a router
//! deleted after someone removed the finalizer, or deleted while no operator was running to
//! see it. Objects in the router's namespace need no sweep: their owner references hand them to
//! the garbage collector.
//!
//! [`plan`] decides from the caches alone; [`sweep`] carries the plan out. An instance started
//! with `--router-selector` sweeps only the Proxies carrying its shard label. A Proxy whose
//! router is not in this operator's cache may still belong to a router that moved to another
//! instance, so it is deleted only after the API server confirms that no HostRouter of that
//! name exists.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::apply;
use super::claims::is_live;
use super::context::Context;
use super::ownership;
use super::triggers::{annotated_router, is_managed};
use crate::api::HostRouter;
use crate::api::gateway;
use crate::api::hostrouter::ProxyRef;
use crate::error::{Error, Result};
use crate::render::naming::{INSTANCE_LABEL, ROUTER_UID_LABEL, SHARD_LABEL};
use crate::render::{self, Settings};

/// How often the whole Proxy cache is swept even without a trigger.
const PERIOD: Duration = Duration::from_secs(300);
/// Triggers that arrive together are served by one sweep.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// How soon to look again while the caches are still listing, or after a failed sweep (then
/// doubling up to [`PERIOD`]).
const RETRY: Duration = Duration::from_secs(2);

/// What to do about one Proxy the operator wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A router in the cache wants this Proxy; reconciling it adopts or cleans up the Proxy.
    Reconcile(ObjectRef<HostRouter>),
    /// The router it was written for is in the cache with another UID (deleted and created
    /// again) and does not want this Proxy.
    Delete,
    /// The router it was written for is not in the cache: delete the Proxy unless the API
    /// server still has a HostRouter of that name.
    DeleteIfRouterGone(ObjectRef<HostRouter>),
}

/// The kinds the janitor sweeps: written in another namespace than their router's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swept {
    Proxy,
    HttpRoute,
}

impl Swept {
    fn kind(self) -> &'static str {
        match self {
            Self::Proxy => "Proxy",
            Self::HttpRoute => "HTTPRoute",
        }
    }

    /// The name a router claims for the object (see `claims`): a Proxy's own; for an HTTPRoute
    /// the proxy name in its instance label, as a router on the Gateway API claims it.
    fn claimed_name(self, obj: &DynamicObject, settings: &Settings) -> Option<ProxyRef> {
        match self {
            Self::Proxy => Some(ProxyRef {
                namespace: obj.namespace().unwrap_or_default(),
                name: obj.name_any(),
            }),
            Self::HttpRoute => obj.labels().get(INSTANCE_LABEL).map(|name| ProxyRef {
                namespace: settings.gloo_namespace.clone(),
                name: name.clone(),
            }),
        }
    }

    /// Whether `router` could want an object of this kind under `name`.
    fn wanted_by(self, router: &HostRouter, name: &ProxyRef, settings: &Settings) -> bool {
        let on_gateway_api = router.spec.gateway_api().is_some();
        let backend_matches = match self {
            Self::Proxy => !on_gateway_api,
            Self::HttpRoute => on_gateway_api,
        };
        backend_matches && &render::proxy_ref(router, settings) == name
    }
}

/// Decides, from the caches, which Proxies or HTTPRoutes (`swept`) may be orphans. Those whose
/// router is in the cache and may still want them, or is being finalized, are not listed.
pub fn plan(
    objects: &[Arc<DynamicObject>],
    swept: Swept,
    routers: &[Arc<HostRouter>],
    settings: &Settings,
) -> Vec<(Arc<DynamicObject>, Decision)> {
    // Each operator instance sweeps only what it wrote: another shard's orphans are its own.
    let shard = settings.shard.as_deref();
    let ours = |p: &DynamicObject| {
        is_managed(p) && p.labels().get(SHARD_LABEL).map(String::as_str) == shard
    };
    // Indexed once: a sweep looks at every Proxy.
    let by_key: HashMap<ObjectRef<HostRouter>, &HostRouter> = routers
        .iter()
        .map(|r| (ObjectRef::from_obj(r.as_ref()), r.as_ref()))
        .collect();
    // Per Proxy name, the router that wins it: the one answer `ownership` gives everywhere.
    let claimants = ownership::owners(routers, settings);
    let mut out = Vec::new();
    for proxy in objects.iter().filter(|p| ours(p.as_ref())) {
        // Without the annotation the object cannot be tied to a router: leave it.
        let Some(owner) = annotated_router(proxy.as_ref()) else {
            continue;
        };
        let Some(this) = swept.claimed_name(proxy, settings) else {
            continue;
        };
        let uid = proxy.labels().get(ROUTER_UID_LABEL);
        let wants = |r: &HostRouter| swept.wanted_by(r, &this, settings);
        let owner_router = by_key.get(&owner).copied();
        let decision = match owner_router {
            // Being deleted: its finalizer takes the Proxy with it.
            Some(r) if !is_live(r) => continue,
            Some(r) if r.uid().as_ref() == uid => {
                if wants(r) {
                    continue;
                }
                // Renamed away: its own reconcile deletes what it no longer wants.
                Decision::Reconcile(owner)
            }
            _ => match claimants.get(&this).filter(|c| wants(c)) {
                Some(claimant) => Decision::Reconcile(ObjectRef::from_obj(*claimant)),
                None if owner_router.is_some() => Decision::Delete,
                None => Decision::DeleteIfRouterGone(owner),
            },
        };
        out.push((proxy.clone(), decision));
    }
    out
}

/// How a sweep ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The input caches are still listing: nothing was done.
    NotReady,
    /// Gloo's Proxy CRD is missing, so there is nothing to sweep. The Proxy cache's first
    /// listing wakes the janitor again.
    NoProxies,
    /// Every orphan found is gone.
    Clean,
    /// An orphan changed or vanished while being deleted: look again once the cache caught up.
    Again,
}

/// Sweeps when `wake` is notified (a router left the cache, the Proxy cache was listed) and
/// every [`PERIOD`]. Runs until the controller stops.
pub async fn run(ctx: Arc<Context>, wake: Arc<Notify>, tx: UnboundedSender<ObjectRef<HostRouter>>) {
    loop {
        tokio::select! {
            () = wake.notified() => tokio::time::sleep(DEBOUNCE).await,
            () = tokio::time::sleep(PERIOD) => {}
        }
        let mut backoff = RETRY;
        loop {
            let wait = match sweep(&ctx, &tx).await {
                Ok(Outcome::Clean) => {
                    ctx.metrics.swept(true);
                    break;
                }
                Ok(Outcome::NoProxies) => break,
                Ok(Outcome::Again) => {
                    ctx.metrics.swept(true);
                    RETRY
                }
                Ok(Outcome::NotReady) => {
                    debug!("caches still listing; sweeping orphaned Proxies shortly");
                    RETRY
                }
                Err(error) => {
                    ctx.metrics.swept(false);
                    warn!(%error, retry_in = ?backoff, "sweeping orphaned Proxies failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(PERIOD);
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// One sweep. An object that cannot be deleted does not keep the others: the sweep goes on and
/// reports the first error at the end.
async fn sweep(ctx: &Context, tx: &UnboundedSender<ObjectRef<HostRouter>>) -> Result<Outcome> {
    let stores = &ctx.stores;
    if !stores.inputs_ready() {
        return Ok(Outcome::NotReady);
    }
    let routers = stores.routers.state();
    let mut decisions = Vec::new();
    if stores.proxies_ready() {
        let found = plan(
            &stores.proxies.state(),
            Swept::Proxy,
            &routers,
            &ctx.settings,
        );
        decisions.extend(found.into_iter().map(|(o, d)| (Swept::Proxy, o, d)));
    }
    if stores.gateway_api_ready() {
        let routes = stores.http_routes.state();
        let found = plan(&routes, Swept::HttpRoute, &routers, &ctx.settings);
        decisions.extend(found.into_iter().map(|(o, d)| (Swept::HttpRoute, o, d)));
    }
    if !stores.proxies_ready() && !stores.gateway_api_ready() {
        return Ok(Outcome::NoProxies);
    }
    let mut existing: Option<HashSet<ObjectRef<HostRouter>>> = None;
    let mut outcome = Outcome::Clean;
    let mut first_error = None;
    for (swept, object, decision) in decisions {
        let delete = match decision {
            Decision::Reconcile(router) => {
                let _ = tx.unbounded_send(router);
                false
            }
            Decision::Delete => true,
            Decision::DeleteIfRouterGone(router) => {
                if existing.is_none() {
                    existing = Some(all_routers(ctx).await?);
                }
                existing.as_ref().is_some_and(|e| !e.contains(&router))
            }
        };
        if !delete {
            continue;
        }
        match delete_orphan(ctx, swept, &object).await {
            Ok(true) => {}
            Ok(false) => outcome = Outcome::Again,
            Err(error) => {
                warn!(%error, kind = swept.kind(), "could not delete an orphan");
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(outcome),
    }
}

/// Every HostRouter in the cluster, including those other operator instances manage: one
/// metadata-only list.
async fn all_routers(ctx: &Context) -> Result<HashSet<ObjectRef<HostRouter>>> {
    let api: Api<HostRouter> = Api::all(ctx.client.clone());
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| Error::api("listing", "HostRouter", "", "", e))?;
    Ok(list
        .items
        .iter()
        .map(|m| {
            ObjectRef::new(&m.name_any()).within(m.meta().namespace.as_deref().unwrap_or_default())
        })
        .collect())
}

/// Deletes `object` if it is unchanged; `false` when it changed or vanished meanwhile.
async fn delete_orphan(ctx: &Context, swept: Swept, object: &DynamicObject) -> Result<bool> {
    let deleted = match swept {
        Swept::Proxy => apply::delete_proxy(&ctx.client, &ctx.metrics, object).await?,
        Swept::HttpRoute => {
            let api: Api<DynamicObject> = Api::namespaced_with(
                ctx.client.clone(),
                &object.namespace().unwrap_or_default(),
                &gateway::http_route_resource(),
            );
            apply::delete_exact(&api, &ctx.metrics, "HTTPRoute", object).await?
        }
    };
    if deleted {
        let router = annotated_router(object).map(|r| r.to_string());
        let at = format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        );
        info!(kind = swept.kind(), object = %at, ?router, "deleted an object of a HostRouter that no longer exists");
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gloo;
    use crate::render::naming::{self, ROUTER_ANNOTATION, common_labels};
    use crate::testing::router;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// Proxy `gloo-system/edge`, written for router `apps/edge` with UID `u1`.
    fn edge_proxy() -> DynamicObject {
        let mut p = DynamicObject::new("edge", &gloo::proxy_resource()).within("gloo-system");
        p.metadata.labels = Some(common_labels("edge", Some("u1")));
        p.metadata.annotations =
            Some([(ROUTER_ANNOTATION.to_owned(), "apps/edge".to_owned())].into());
        p
    }

    fn with_uid(mut r: HostRouter, uid: &str) -> Arc<HostRouter> {
        r.metadata.uid = Some(uid.into());
        Arc::new(r)
    }

    /// The decision about `proxy`, if any.
    fn decide_on(proxy: DynamicObject, routers: &[Arc<HostRouter>]) -> Option<Decision> {
        let decisions = plan(
            &[Arc::new(proxy)],
            Swept::Proxy,
            routers,
            &Settings::default(),
        );
        assert!(decisions.len() <= 1, "{decisions:?}");
        decisions.into_iter().next().map(|(_, d)| d)
    }

    fn decide(routers: &[Arc<HostRouter>]) -> Option<Decision> {
        decide_on(edge_proxy(), routers)
    }

    fn reconcile(ns: &str) -> Option<Decision> {
        Some(Decision::Reconcile(ObjectRef::new("edge").within(ns)))
    }

    #[test]
    fn a_proxy_its_router_still_wants_is_left_alone() {
        assert_eq!(
            decide(&[with_uid(router("apps", "edge", "edge"), "u1")]),
            None
        );
    }

    #[test]
    fn a_proxy_of_a_router_missing_from_the_cache_is_checked_against_the_api() {
        let owner = ObjectRef::new("edge").within("apps");
        assert_eq!(decide(&[]), Some(Decision::DeleteIfRouterGone(owner)));
    }

    #[test]
    fn a_router_created_again_under_the_same_name_adopts_or_deletes() {
        // Same proxy name: the new router adopts the Proxy.
        let again = with_uid(router("apps", "edge", "edge"), "u2");
        assert_eq!(decide(&[again]), reconcile("apps"));
        // Another proxy name: the old Proxy is nobody's.
        let renamed = with_uid(router("apps", "edge", "other"), "u2");
        assert_eq!(decide(&[renamed]), Some(Decision::Delete));
    }

    #[test]
    fn another_router_claiming_the_name_takes_it_over() {
        let heir = with_uid(router("shop", "edge", "edge"), "u9");
        assert_eq!(decide(&[heir]), reconcile("shop"));
    }

    #[test]
    fn of_several_claimants_the_oldest_takes_it_over() {
        let born = |r: HostRouter, second: i64| {
            let mut r = r;
            r.metadata.creation_timestamp = Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(second).unwrap(),
            ));
            with_uid(r, "u9")
        };
        let young = born(router("apps", "young", "edge"), 200);
        let old = born(router("shop", "old", "edge"), 100);
        let expected = Some(Decision::Reconcile(ObjectRef::new("old").within("shop")));
        assert_eq!(decide(&[young.clone(), old.clone()]), expected);
        assert_eq!(decide(&[old, young]), expected);
    }

    #[test]
    fn a_claimant_that_loses_its_claim_does_not_keep_an_orphan_alive() {
        // `shop/edge` wants gloo-system/edge, but loses its claim to the older `shop/first`,
        // which uses the same proxy name with another proxy namespace. The orphan is nobody's.
        let born = |mut r: HostRouter, second: i64, uid: &str| {
            r.metadata.creation_timestamp = Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(second).unwrap(),
            ));
            with_uid(r, uid)
        };
        let mut first = router("shop", "first", "edge");
        first.spec.proxy_namespace = Some("gloo-2".into());
        let loser = born(router("shop", "edge", "edge"), 200, "u8");
        let owner = ObjectRef::new("edge").within("apps");
        assert_eq!(
            decide(&[born(first, 100, "u7"), loser]),
            Some(Decision::DeleteIfRouterGone(owner))
        );
    }

    #[test]
    fn a_renamed_router_cleans_up_after_itself() {
        let renamed = with_uid(router("apps", "edge", "new-name"), "u1");
        assert_eq!(decide(&[renamed]), reconcile("apps"));
    }

    #[test]
    fn a_router_being_deleted_is_left_to_its_finalizer() {
        let mut r = router("apps", "edge", "new-name");
        r.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(decide(&[with_uid(r, "u1")]), None);
    }

    #[test]
    fn each_shard_sweeps_only_its_own_proxies() {
        let mut sharded = edge_proxy();
        sharded
            .labels_mut()
            .insert(SHARD_LABEL.into(), naming::shard("team=a"));
        let owner = ObjectRef::new("edge").within("apps");
        let gone = Some(Decision::DeleteIfRouterGone(owner));
        // An instance for every router leaves shard "team=a"'s Proxy alone, and the other
        // way round.
        assert_eq!(decide_on(sharded.clone(), &[]), None);
        let team_a = Settings {
            shard: Some(naming::shard("team=a")),
            ..Settings::default()
        };
        let plan_a = |p: DynamicObject| {
            plan(&[Arc::new(p)], Swept::Proxy, &[], &team_a)
                .into_iter()
                .next()
                .map(|(_, d)| d)
        };
        assert_eq!(plan_a(sharded), gone);
        assert_eq!(plan_a(edge_proxy()), None);
    }

    #[test]
    fn proxies_without_our_label_or_annotation_are_ignored() {
        let mut foreign = edge_proxy();
        foreign.metadata.labels = None;
        assert_eq!(decide_on(foreign, &[]), None);
        let mut unannotated = edge_proxy();
        unannotated.metadata.annotations = None;
        assert_eq!(decide_on(unannotated, &[]), None);
    }

    /// HTTPRoute `shop/edge-cart-80-http`, written for router `apps/edge` (proxy name `edge`)
    /// with UID `u1`.
    fn edge_route() -> DynamicObject {
        let mut r =
            DynamicObject::new("edge-cart-80-http", &gateway::http_route_resource()).within("shop");
        r.metadata.labels = Some(common_labels("edge", Some("u1")));
        r.metadata.annotations =
            Some([(ROUTER_ANNOTATION.to_owned(), "apps/edge".to_owned())].into());
        r
    }

    fn on_gateway_api(mut r: HostRouter) -> HostRouter {
        r.spec.backend = Some(crate::api::backend::BackendSpec {
            type_: crate::api::backend::BackendType::GatewayApi,
            gateway_api: Some(crate::api::backend::GatewayApiBackend {
                gateway_class_name: Some("eg".into()),
                gateway: None,
            }),
        });
        r
    }

    fn decide_route(routers: &[Arc<HostRouter>]) -> Option<Decision> {
        let decisions = plan(
            &[Arc::new(edge_route())],
            Swept::HttpRoute,
            routers,
            &Settings::default(),
        );
        decisions.into_iter().next().map(|(_, d)| d)
    }

    #[test]
    fn http_routes_are_swept_like_proxies_by_their_routers_backend() {
        let owner = ObjectRef::new("edge").within("apps");
        // Its router, on the Gateway API: its reconcile keeps what it wants.
        let live = with_uid(on_gateway_api(router("apps", "edge", "edge")), "u1");
        assert_eq!(decide_route(&[live]), None);
        // Its router moved to Gloo: its own reconcile deletes the HTTPRoute.
        let on_gloo = with_uid(router("apps", "edge", "edge"), "u1");
        assert_eq!(decide_route(&[on_gloo]), reconcile("apps"));
        // Gone: deleted once the API server confirms.
        assert_eq!(decide_route(&[]), Some(Decision::DeleteIfRouterGone(owner)));
        // Another router on the Gateway API claims the proxy name: it takes the routes over.
        let heir = with_uid(on_gateway_api(router("shop", "edge", "edge")), "u9");
        assert_eq!(decide_route(&[heir]), reconcile("shop"));
        // A Gloo router of that proxy name does not want HTTPRoutes.
        let gloo_heir = with_uid(router("shop", "edge", "edge"), "u9");
        assert_eq!(
            decide_route(&[gloo_heir]),
            Some(Decision::DeleteIfRouterGone(
                ObjectRef::new("edge").within("apps")
            ))
        );
    }
}
