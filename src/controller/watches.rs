//! The watches: each keeps a cache (see [`Stores`]) current and sends the routers an event
//! affects (see `triggers`) to the controller. One function per watched kind.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, store::Writer};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector as reflect, watcher as watch};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::apply::Namespaced;
use super::context::{Context, Stores};
use super::triggers;
use crate::api::HostRouter;
use crate::api::{gateway, gloo};
use crate::error::is_missing_resource_type;
use crate::render::naming::managed_selector;
use crate::render::tls_secret::{self, TLS_SECRET_TYPE, TlsSecret};

type Labels = Option<BTreeMap<String, String>>;
/// Where the watches send the routers to reconcile.
pub type Queue = UnboundedSender<ObjectRef<HostRouter>>;

/// The write halves of the caches in [`Stores`].
pub struct Writers {
    routers: Writer<HostRouter>,
    namespaces: Writer<Namespace>,
    services: Writer<Service>,
    config_maps: Writer<ConfigMap>,
    deployments: Writer<Deployment>,
    autoscalers: Writer<HorizontalPodAutoscaler>,
    disruption_budgets: Writer<PodDisruptionBudget>,
    proxies: Writer<DynamicObject>,
    tls_secrets: Writer<TlsSecret>,
    gateways: Writer<DynamicObject>,
    http_routes: Writer<DynamicObject>,
}

/// Empty caches, and the writers the watches fill them with.
pub fn stores() -> (Stores, Writers) {
    let (routers, routers_w) = reflector::store::<HostRouter>();
    let (namespaces, namespaces_w) = reflector::store::<Namespace>();
    let (services, services_w) = reflector::store::<Service>();
    let (config_maps, config_maps_w) = reflector::store::<ConfigMap>();
    let (deployments, deployments_w) = reflector::store::<Deployment>();
    let (autoscalers, autoscalers_w) = reflector::store::<HorizontalPodAutoscaler>();
    let (disruption_budgets, disruption_budgets_w) = reflector::store::<PodDisruptionBudget>();
    let (tls_secrets, tls_secrets_w) = reflector::store::<TlsSecret>();
    let proxies_w = Writer::new(gloo::proxy_resource());
    let gateways_w = Writer::new(gateway::gateway_resource());
    let http_routes_w = Writer::new(gateway::http_route_resource());
    let stores = Stores {
        routers,
        namespaces,
        services,
        routed_services: Default::default(),
        config_maps,
        deployments,
        autoscalers,
        disruption_budgets,
        proxies: proxies_w.as_reader(),
        tls_secrets,
        gateways: gateways_w.as_reader(),
        http_routes: http_routes_w.as_reader(),
        watches: Default::default(),
    };
    let writers = Writers {
        routers: routers_w,
        namespaces: namespaces_w,
        services: services_w,
        config_maps: config_maps_w,
        deployments: deployments_w,
        autoscalers: autoscalers_w,
        disruption_budgets: disruption_budgets_w,
        proxies: proxies_w,
        tls_secrets: tls_secrets_w,
        gateways: gateways_w,
        http_routes: http_routes_w,
    };
    (stores, writers)
}

/// Starts every watch but the routers' own as background tasks, and returns the routers'
/// stream for the controller to drive. `janitor` is woken when a Proxy listing completes or
/// a router leaves the cache.
pub fn start(
    ctx: &Arc<Context>,
    writers: Writers,
    router_selector: Option<&str>,
    queue: &Queue,
    janitor: &Arc<Notify>,
    tasks: &mut Tasks,
) -> impl Stream<Item = Result<HostRouter, watcher::Error>> + Send + 'static {
    let w = writers;
    tasks.add(namespaces(ctx, w.namespaces, queue));
    tasks.add(services(ctx, w.services, queue));
    tasks.add(owned("ConfigMap", ctx, w.config_maps, queue));
    tasks.add(owned("Deployment", ctx, w.deployments, queue));
    tasks.add(owned_by_spec(
        "HorizontalPodAutoscaler",
        ctx,
        w.autoscalers,
        queue,
    ));
    tasks.add(owned_by_spec(
        "PodDisruptionBudget",
        ctx,
        w.disruption_budgets,
        queue,
    ));
    let proxy = gloo::proxy_resource();
    tasks.add(annotated(
        "Proxy",
        &proxy,
        ctx,
        w.proxies,
        queue,
        janitor.clone(),
    ));
    tasks.add(tls_secrets(ctx, w.tls_secrets, queue));
    tasks.add(gateways(ctx, w.gateways, queue));
    let route = gateway::http_route_resource();
    tasks.add(annotated(
        HTTP_ROUTE,
        &route,
        ctx,
        w.http_routes,
        queue,
        janitor.clone(),
    ));
    tasks.add(expire_outages(ctx));
    router_stream(ctx, w.routers, router_selector, queue, janitor.clone())
}

fn all() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// Only what the operator labelled as written by it.
fn managed() -> watcher::Config {
    all().labels(&managed_selector())
}

/// Namespaces: a relabel reaches the routers whose selection it changes; a namespace that
/// appears or goes reaches the routers whose Proxy goes there.
fn namespaces(ctx: &Arc<Context>, writer: Writer<Namespace>, queue: &Queue) -> JoinHandle<()> {
    // The labels each namespace had, to tell which routers a relabel affects. A (re)listing
    // starts it afresh, so namespaces deleted while the watch was down are forgotten.
    let previous_labels: Arc<Mutex<BTreeMap<String, Labels>>> = Arc::default();
    let forget = previous_labels.clone();
    let stream =
        mirrored(Api::<Namespace>::all(ctx.client.clone()), all(), writer).inspect(move |event| {
            if matches!(event, Ok(Event::Init)) {
                forget.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
        });
    let settings = ctx.settings.clone();
    spawn_triggers(
        "Namespace",
        stream,
        ctx,
        queue,
        move |routers, ns, change| {
            let name = ns.name_any();
            let mut prev = previous_labels.lock().unwrap_or_else(|p| p.into_inner());
            let old = prev.get(&name).cloned();
            let new = ns.metadata.labels.clone();
            if change == Change::Deleted {
                prev.remove(&name);
            } else {
                prev.insert(name.clone(), new.clone());
            }
            let tenancy = &settings.tenancy;
            let labels_were = old.clone().flatten();
            let (existed, exists) = match (change, &old) {
                (Change::Listed, _) => return Vec::new(),
                (Change::Deleted, _) => (true, false),
                (Change::Applied, None) => (false, true),
                (Change::Applied, Some(_)) => (true, true),
            };
            let c = triggers::NamespaceChange {
                name: &name,
                old: labels_were.as_ref(),
                new: if exists { new.as_ref() } else { None },
                existed,
                exists,
            };
            let mut affected = triggers::namespace_changed(routers, &c, tenancy);
            if existed != exists {
                affected.extend(triggers::routers_writing_to(routers, &name, &settings));
            }
            affected
        },
    )
}

/// Services: a change of what routing reads of a Service (its record, see
/// [`RoutedServices::apply`](super::routed_services::RoutedServices::apply)) reaches the routers
/// selecting its namespace; any change of an Envoy Service the operator writes, or of one that
/// stopped being its, reaches its owner. Routed Services are cached as compact records, the
/// operator's own Services whole.
fn services(ctx: &Arc<Context>, mut writer: Writer<Service>, queue: &Queue) -> JoinHandle<()> {
    let namespaces = ctx.stores.namespaces.clone();
    let tenancy = ctx.settings.tenancy.clone();
    let routed = ctx.stores.routed_services.clone();
    let own = writer.as_reader();
    // What the event being mapped changed: set below, read by the mapper of the same event (the
    // stream is polled by one task, one event at a time).
    let last = Arc::new(Mutex::new(ServiceChange::default()));
    let seen = last.clone();
    let api = Api::<Service>::all(ctx.client.clone());
    let stream = strip(retrying(watch(api, all()))).inspect(move |event| {
        let Ok(event) = event else { return };
        // The records first: the whole cache is ready at the first `InitDone` it sees, and
        // renders wait for it, so the records must be complete by then.
        let routing = routed.apply(event);
        let was_ours = match event {
            Event::Apply(svc) | Event::Delete(svc) => own.get(&ObjectRef::from_obj(svc)).is_some(),
            _ => false,
        };
        match to_whole_cache(event, was_ours) {
            WholeCache::Forward => writer.apply_watcher_event(event),
            WholeCache::Remove(svc) => writer.apply_watcher_event(&Event::Delete(svc.clone())),
            WholeCache::Skip => {}
        }
        let ours = match event {
            Event::Apply(svc) | Event::Delete(svc) => triggers::is_managed(svc) || was_ours,
            _ => false,
        };
        *seen.lock().unwrap_or_else(|p| p.into_inner()) = ServiceChange { routing, ours };
    });
    spawn_triggers(
        "Service",
        stream,
        ctx,
        queue,
        move |routers, svc, change| {
            if change == Change::Listed {
                return Vec::new();
            }
            let ServiceChange { routing, ours } = *last.lock().unwrap_or_else(|p| p.into_inner());
            let mut targets: Vec<ObjectRef<HostRouter>> = Vec::new();
            if ours {
                targets.extend(triggers::owner(svc));
            }
            if routing {
                let name = svc.namespace().unwrap_or_default();
                let ns = namespaces.get(&ObjectRef::new(&name));
                targets.extend(triggers::routers_selecting(
                    routers,
                    &name,
                    ns.as_ref().and_then(|n| n.metadata.labels.as_ref()),
                    &tenancy,
                ));
            }
            targets
        },
    )
}

/// What a Service event changed: the Service's record (what routing reads), and whether the
/// Service is, or was until this event, one the operator writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ServiceChange {
    routing: bool,
    ours: bool,
}

/// What a Service event does to the cache of the operator's own Services.
#[derive(Debug, PartialEq)]
enum WholeCache<'a> {
    /// Applied as it is: it concerns one of the operator's Services, or the listing itself.
    Forward,
    /// The Service stopped being one of the operator's (its labels changed): out of the cache.
    Remove(&'a Service),
    /// Not one of the operator's Services, and never was.
    Skip,
}

/// How a Service event reaches the cache of the operator's own Services; `was_ours` says
/// whether the cache holds the Service.
fn to_whole_cache(event: &Event<Service>, was_ours: bool) -> WholeCache<'_> {
    match event {
        Event::Apply(svc) | Event::InitApply(svc) | Event::Delete(svc)
            if triggers::is_managed(svc) =>
        {
            WholeCache::Forward
        }
        Event::Apply(svc) | Event::Delete(svc) if was_ours => WholeCache::Remove(svc),
        Event::Apply(_) | Event::InitApply(_) | Event::Delete(_) => WholeCache::Skip,
        Event::Init | Event::InitDone => WholeCache::Forward,
    }
}

/// Objects the operator writes in a router's namespace: a change reaches their owner.
fn owned<K: Namespaced>(
    kind: &'static str,
    ctx: &Arc<Context>,
    writer: Writer<K>,
    queue: &Queue,
) -> JoinHandle<()> {
    let stream = mirrored(Api::<K>::all(ctx.client.clone()), managed(), writer);
    spawn_triggers(kind, stream, ctx, queue, |_, o, _| {
        triggers::owner(o).into_iter().collect()
    })
}

/// Like [`owned`], for objects whose status nobody reads and which change it all the time (an
/// autoscaler every sync, a budget with each pod's readiness): only a change of what the
/// operator writes (the spec, labels, annotations, owners) or a deletion reaches the owner.
fn owned_by_spec<K: Namespaced>(
    kind: &'static str,
    ctx: &Arc<Context>,
    writer: Writer<K>,
    queue: &Queue,
) -> JoinHandle<()> {
    let stream = mirrored(Api::<K>::all(ctx.client.clone()), managed(), writer);
    let seen = Prints::default();
    spawn_triggers(kind, stream, ctx, queue, move |_, o, change| {
        let news = match change {
            Change::Deleted => {
                seen.forget(o);
                true
            }
            Change::Applied | Change::Listed => match triggers::written_fingerprint(o) {
                Some(print) => seen.changed(o, print),
                None => true,
            },
        };
        if news {
            triggers::owner(o).into_iter().collect()
        } else {
            Vec::new()
        }
    })
}

/// Objects the operator writes in other namespaces than their router's (Proxies, HTTPRoutes):
/// the backend's verdict and drift reach the router named in the annotation. While the CRD of
/// `resource` is missing this watch retries with backoff and its cache stays not ready. Each
/// completed listing may show objects whose router went away meanwhile: it wakes the janitor.
fn annotated(
    kind: &'static str,
    resource: &ApiResource,
    ctx: &Arc<Context>,
    writer: Writer<DynamicObject>,
    queue: &Queue,
    janitor: Arc<Notify>,
) -> JoinHandle<()> {
    let api = Api::<DynamicObject>::all_with(ctx.client.clone(), resource);
    let stream = reflect(writer, strip(retrying(watch(api, managed())))).inspect(move |event| {
        if matches!(event, Ok(Event::InitDone)) {
            janitor.notify_one();
        }
    });
    spawn_triggers(kind, stream, ctx, queue, |_, o, _| {
        triggers::annotated_router(o).into_iter().collect()
    })
}

/// Gateways, all of them (few, and a router may attach to one it did not write): a change
/// (its status above all) reaches the routers whose Gateway it is. While the Gateway API CRDs
/// are missing this watch retries quietly (the API is optional) and its cache stays not ready.
fn gateways(ctx: &Arc<Context>, writer: Writer<DynamicObject>, queue: &Queue) -> JoinHandle<()> {
    let api = Api::<DynamicObject>::all_with(ctx.client.clone(), &gateway::gateway_resource());
    let stream = reflect(writer, strip(retrying(watch(api, all()))));
    spawn_triggers(GATEWAY, stream, ctx, queue, |routers, gw, _| {
        triggers::routers_using_gateway(routers, gw)
    })
}

/// Watch names of the Gateway API, whose CRDs a cluster may not have: a watch that fails only
/// because they are missing is not an outage.
const GATEWAY: &str = "Gateway";
const HTTP_ROUTE: &str = "HTTPRoute";
const OPTIONAL: [&str; 2] = [GATEWAY, HTTP_ROUTE];

/// Secrets of type `kubernetes.io/tls` only (a field selector: the API server sends no other
/// Secret), each reduced to [`TlsSecret`] on arrival so that no private key stays in memory. A
/// change reaches the routers whose `spec.tls` names the Secret.
fn tls_secrets(ctx: &Arc<Context>, writer: Writer<TlsSecret>, queue: &Queue) -> JoinHandle<()> {
    let config = all().fields(&format!("type={TLS_SECRET_TYPE}"));
    let stream = retrying(watch(Api::<Secret>::all(ctx.client.clone()), config)).map_ok(summarized);
    spawn_triggers(
        "Secret",
        reflect(writer, stream),
        ctx,
        queue,
        |routers, secret, _| triggers::routers_using_secret(routers, secret),
    )
}

fn summarized(event: Event<Secret>) -> Event<TlsSecret> {
    match event {
        Event::Apply(s) => Event::Apply(tls_secret::summarize(&s)),
        Event::Delete(s) => Event::Delete(tls_secret::summarize(&s)),
        Event::InitApply(s) => Event::InitApply(tls_secret::summarize(&s)),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    }
}

/// HostRouters: the controller's own stream. A change also reaches the routers competing for
/// the same names; a router that leaves the cache is forgotten and wakes the janitor. Its
/// errors stay here: recorded in the watch health, not passed to the controller.
fn router_stream(
    ctx: &Arc<Context>,
    writer: Writer<HostRouter>,
    router_selector: Option<&str>,
    queue: &Queue,
    janitor: Arc<Notify>,
) -> impl Stream<Item = Result<HostRouter, watcher::Error>> + Send + 'static {
    let previous: Mutex<HashMap<ObjectRef<HostRouter>, Arc<HostRouter>>> = Mutex::default();
    let seen = Prints::default();
    let queue = queue.clone();
    let ctx = ctx.clone();
    let config = match router_selector {
        Some(selector) => all().labels(selector),
        None => all(),
    };
    mirrored(Api::<HostRouter>::all(ctx.client.clone()), config, writer)
        .inspect(move |event| {
            let event = match event {
                Ok(event) => {
                    if delivers(event) {
                        watch_works(&ctx, "HostRouter");
                    }
                    event
                }
                Err(error) => {
                    watch_fails(&ctx, "HostRouter", error);
                    return;
                }
            };
            let (router, deleted) = match event {
                Event::Apply(r) | Event::InitApply(r) => (r, false),
                Event::Delete(r) => (r, true),
                // Routers deleted while the watch was down are not seen as deletions: forget
                // what is remembered about them, and look for their Proxies.
                Event::InitDone => {
                    let present = ctx
                        .stores
                        .routers
                        .state()
                        .iter()
                        .map(|r| ObjectRef::from_obj(r.as_ref()))
                        .collect();
                    ctx.forget_all_but(&present);
                    previous
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .retain(|k, _| present.contains(k));
                    janitor.notify_one();
                    return;
                }
                Event::Init => return,
            };
            let key = ObjectRef::from_obj(router);
            let mut prev = previous.lock().unwrap_or_else(|p| p.into_inner());
            let before = if deleted {
                // Gone without (or after) its finalizer: forget it, and look for its Proxy.
                ctx.forget(&key);
                janitor.notify_one();
                prev.remove(&key)
            } else {
                prev.insert(key, Arc::new(router.clone()))
            };
            let all = ctx.stores.routers.state();
            for r in triggers::competitors(&all, router, before.as_deref(), &ctx.settings) {
                let _ = queue.unbounded_send(r);
            }
        })
        .touched_objects()
        // Failures are recorded above and the watch retries by itself; the controller only
        // needs the routers (kube-runtime's applier would hold reconciles behind an error it
        // has not yet passed on).
        .filter(|event| futures::future::ready(event.is_ok()))
        // A status write (ours, after every reconcile that changed it) or a finalizer patch is
        // no reason to reconcile again: at 10,000 Services that is a render for nothing.
        .filter(move |event| {
            let news = match event {
                Ok(router) => seen.changed(router, triggers::router_fingerprint(router)),
                Err(_) => false,
            };
            futures::future::ready(news)
        })
}

/// The last fingerprint seen of each object (see `triggers::router_fingerprint`,
/// `triggers::written_fingerprint`), to tell news from changes nobody acts on.
struct Prints<K: Resource<DynamicType = ()>>(Mutex<HashMap<ObjectRef<K>, u64>>);

impl<K: Resource<DynamicType = ()>> Default for Prints<K> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<K: Resource<DynamicType = ()>> Prints<K> {
    /// Records `print` for `obj`: whether it differs from the one seen before.
    fn changed(&self, obj: &K, print: u64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(ObjectRef::from_obj(obj), print) != Some(print)
    }

    fn forget(&self, obj: &K) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.remove(&ObjectRef::from_obj(obj));
    }
}

/// How a failing watch retries: 250 ms, doubling to at most 4 s, from the start again once it
/// works. kube's default waits up to 30 s, so a change made while the API server was away
/// could wait that long after its return; a watch per kind retrying every 4 s is a light load.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(4);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl WatchBackoff {
    /// Starts over from the first pause.
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// A watch whose objects are mirrored into `writer`'s cache, without managed fields.
fn mirrored<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    reflect(writer, strip(retrying(watch(api, config))))
}

/// `stream` with a pause of [`WatchBackoff`] after each error. The pause starts over only once
/// the watch delivers: not on `Init`, which the watcher emits before each listing attempt, so
/// that a relisting that keeps failing (the API server away) backs off instead of retrying every
/// 250 ms. (kube's `StreamBackoff` resets on any event, `Init` included.)
fn retrying<K: Send + 'static>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static {
    let state = (Box::pin(stream), WatchBackoff::default(), None::<Duration>);
    futures::stream::unfold(state, |(mut stream, mut backoff, pause)| async move {
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        let item = stream.next().await?;
        let pause = match &item {
            Err(_) => backoff.next(),
            Ok(Event::Init) => None,
            Ok(_) => {
                backoff.reset();
                None
            }
        };
        Some((item, (stream, backoff, pause)))
    })
}

fn strip<K: Resource + Clone + Send + 'static>(
    s: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static {
    s.modify(|o| o.managed_fields_mut().clear())
}

/// How an object reached a trigger mapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Applied,
    Deleted,
    /// Part of a (re)listing.
    Listed,
}

/// Drives `stream` (keeping its cache current) and sends the routers that `affected` names for
/// each changed object. After a (re)listing every router is reconciled, since deletions during
/// a watch gap are not seen as events.
fn spawn_triggers<K, S>(
    kind: &'static str,
    stream: S,
    ctx: &Arc<Context>,
    queue: &Queue,
    affected: impl Fn(&[Arc<HostRouter>], &K, Change) -> Vec<ObjectRef<HostRouter>> + Send + 'static,
) -> JoinHandle<()>
where
    K: Resource + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    let tx = queue.clone();
    let routers = ctx.stores.routers.clone();
    let ctx = ctx.clone();
    // Only the routers this operator manages: an object written for a router of another
    // instance (another shard) names that router, which nothing here reconciles; sent on, it
    // would only wait in the coalescer.
    let managed = {
        let routers = routers.clone();
        move |mut targets: Vec<ObjectRef<HostRouter>>| {
            targets.retain(|r| routers.get(r).is_some());
            targets
        }
    };
    tokio::spawn(async move {
        ctx.metrics.set_watch_healthy(kind, true);
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if event.as_ref().is_ok_and(delivers) {
                watch_works(&ctx, kind);
            }
            let targets = match event {
                Ok(Event::Apply(o)) => {
                    let targets = managed(affected(&routers.state(), &o, Change::Applied));
                    // The echo of our own write: the reconcile that wrote it is done.
                    if ctx.is_own_echo(kind, &o, &targets) {
                        Vec::new()
                    } else {
                        targets
                    }
                }
                Ok(Event::Delete(o)) => managed(affected(&routers.state(), &o, Change::Deleted)),
                // The mapper sees listed objects (to remember their state); reconciling waits
                // for the listing to finish.
                Ok(Event::InitApply(o)) => {
                    affected(&routers.state(), &o, Change::Listed);
                    Vec::new()
                }
                Ok(Event::InitDone) => routers
                    .state()
                    .iter()
                    .map(|r| ObjectRef::from_obj(r.as_ref()))
                    .collect(),
                Ok(Event::Init) => Vec::new(),
                Err(error) => {
                    watch_fails(&ctx, kind, &error);
                    Vec::new()
                }
            };
            for router in targets {
                if tx.unbounded_send(router).is_err() {
                    return;
                }
            }
        }
    })
}

/// Every 2 s, declares recovered the failing watches that have been quiet for a while: a
/// watch that resumes where it left off delivers nothing when nothing changed meanwhile.
fn expire_outages(ctx: &Arc<Context>) -> JoinHandle<()> {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for kind in ctx.stores.watches.expire(Instant::now()) {
                info!(kind, "watch recovered");
                ctx.metrics.set_watch_healthy(kind, true);
            }
        }
    })
}

/// Whether an event shows the watch working: any but `Init`, which comes before each listing
/// attempt, also one that then fails.
fn delivers<K>(event: &Event<K>) -> bool {
    !matches!(event, Event::Init)
}

/// Records that the watch of `kind` delivers events again (logged once per outage).
fn watch_works(ctx: &Context, kind: &'static str) {
    if ctx.stores.watches.recovered(kind) {
        info!(kind, "watch recovered");
        ctx.metrics.set_watch_healthy(kind, true);
    }
}

/// Records that the watch of `kind` failed (logged once per outage; it retries with backoff).
/// An optional API that is not installed is no failure.
fn watch_fails(ctx: &Context, kind: &'static str, error: &watcher::Error) {
    if OPTIONAL.contains(&kind) && resource_type_missing(error) {
        return;
    }
    if ctx
        .stores
        .watches
        .failed(kind, error.to_string(), Instant::now())
    {
        warn!(kind, %error, "watch failed; retrying with backoff");
        ctx.metrics.set_watch_healthy(kind, false);
    }
}

/// Whether a watch failed because the API server does not serve its resource type.
fn resource_type_missing(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => is_missing_resource_type(e),
        watcher::Error::WatchError(status) => status.code == 404,
        watcher::Error::NoResourceVersion => false,
    }
}

/// Background tasks of one controller run, aborted when the run ends or is dropped (say,
/// when leadership is lost), so that nothing of it keeps writing.
#[derive(Default)]
pub struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    pub fn add(&mut self, task: JoinHandle<()>) {
        self.0.push(task);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_relisting_that_keeps_failing_backs_off_and_an_event_starts_it_over() {
        use tokio::time::Instant;
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::Init),
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::Init),
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::Init),
            Ok(Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::<()>::Init),
        ]);
        let began = Instant::now();
        let mut at = Vec::new();
        let mut stream = std::pin::pin!(retrying(events));
        while let Some(item) = stream.next().await {
            if matches!(item, Ok(Event::Init)) {
                at.push(began.elapsed().as_millis());
            }
        }
        // 250, 500, 1000 ms after the failures: `Init` does not start the pauses over; after
        // `InitDone` (the watch works) the next failure waits 250 ms again.
        assert_eq!(at, [0, 250, 750, 1750, 2000]);
    }

    #[test]
    fn only_the_operators_own_services_reach_the_whole_cache() {
        use crate::render::naming::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
        let routed = crate::testing::service("shop", "web", &[(80, "", "")], 1);
        let mut envoy = crate::testing::service("edge", "edge", &[(8080, "", "")], 1);
        envoy.metadata.labels =
            Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into());
        for event in [
            Event::Apply(envoy.clone()),
            Event::InitApply(envoy.clone()),
            Event::Delete(envoy.clone()),
            Event::Init,
            Event::InitDone,
        ] {
            assert_eq!(
                to_whole_cache(&event, false),
                WholeCache::Forward,
                "{event:?}"
            );
        }
        for event in [
            Event::Apply(routed.clone()),
            Event::InitApply(routed.clone()),
            Event::Delete(routed.clone()),
        ] {
            assert_eq!(to_whole_cache(&event, false), WholeCache::Skip, "{event:?}");
        }
        // An Envoy Service whose label was removed leaves the cache.
        let event = Event::Apply(routed.clone());
        assert_eq!(to_whole_cache(&event, true), WholeCache::Remove(&routed));
    }

    #[test]
    fn a_failing_watch_retries_within_four_seconds_and_starts_over_once_it_works() {
        let mut b = WatchBackoff::default();
        let waits: Vec<u128> = b.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(250)));
    }
}
