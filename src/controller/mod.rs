//! The controller: watches feed caches and triggers; reconcile makes each HostRouter's objects
//! true. See `reconcile` for one pass, `triggers` for which events reach which router.

mod apply;
pub mod claims;
mod context;
mod janitor;
mod reconcile;
pub mod status;
pub mod triggers;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt, future};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector as reflect, watcher as watch};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use context::{Context, Stores};

use crate::api::HostRouter;
use crate::api::gloo;
use crate::metrics::{CONTROLLER, Metrics};
use crate::render::Settings;
use crate::render::naming::managed_selector;

/// Reconciles at most this many routers at once.
const CONCURRENCY: u16 = 8;

type Labels = Option<BTreeMap<String, String>>;

/// Runs the controller until `shutdown` resolves.
/// `router_selector` (label selector syntax) limits the HostRouters this instance manages, so
/// that several operators can split a cluster; routers that compete for a proxy name must be
/// managed by the same instance.
pub async fn run(
    client: Client,
    settings: Settings,
    router_selector: Option<&str>,
    metrics: Arc<Metrics>,
    on_stores: impl FnOnce(Stores),
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let managed = watcher::Config::default()
        .labels(&managed_selector())
        .any_semantic();
    let all = watcher::Config::default().any_semantic();

    let (routers, router_writer) = reflector::store::<HostRouter>();
    let (namespaces, ns_writer) = reflector::store::<Namespace>();
    let (services, svc_writer) = reflector::store::<Service>();
    let (config_maps, cm_writer) = reflector::store::<ConfigMap>();
    let (deployments, dep_writer) = reflector::store::<Deployment>();
    let proxy_writer = Writer::new(gloo::proxy_resource());
    let proxies = proxy_writer.as_reader();
    let stores = Stores {
        routers: routers.clone(),
        namespaces,
        services,
        config_maps,
        deployments,
        proxies,
    };
    on_stores(stores.clone());

    let (tx, rx) = unbounded::<ObjectRef<HostRouter>>();
    metrics.observe_routers(routers.clone());
    let reporter = Reporter {
        controller: CONTROLLER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings.clone(),
        stores.clone(),
        metrics,
        reporter,
    ));

    let mut tasks = Tasks::default();

    // Namespaces: a relabel reaches the routers whose selection it changes.
    let previous_labels: Mutex<BTreeMap<String, Labels>> = Mutex::default();
    let ns_stream = mirrored(
        Api::<Namespace>::all(client.clone()),
        all.clone(),
        ns_writer,
    );
    tasks.add(spawn_triggers(
        "Namespace",
        ns_stream,
        tx.clone(),
        routers.clone(),
        move |routers, ns, change| {
            let name = ns.name_any();
            let mut prev = previous_labels.lock().unwrap_or_else(|p| p.into_inner());
            let old = prev.get(&name).cloned();
            let new = ns.metadata.labels.clone();
            if change == Change::Deleted {
                prev.remove(&name);
            } else {
                prev.insert(name, new.clone());
            }
            match (change, old) {
                (Change::Listed, _) => Vec::new(),
                (Change::Deleted, old) => {
                    triggers::namespace_changed(routers, old.flatten().as_ref(), None, true, false)
                }
                (Change::Applied, None) => {
                    triggers::namespace_changed(routers, None, new.as_ref(), false, true)
                }
                (Change::Applied, Some(old)) => {
                    triggers::namespace_changed(routers, old.as_ref(), new.as_ref(), true, true)
                }
            }
        },
    ));

    // Services: any change reaches the routers selecting the Service's namespace; the Envoy
    // Services the operator writes reach their owner.
    let ns_store = stores.namespaces.clone();
    let svc_stream = mirrored(Api::<Service>::all(client.clone()), all.clone(), svc_writer);
    tasks.add(spawn_triggers(
        "Service",
        svc_stream,
        tx.clone(),
        routers.clone(),
        move |routers, svc, _| {
            if triggers::is_managed(svc) {
                return triggers::owner(svc).into_iter().collect();
            }
            let ns = ns_store.get(&ObjectRef::new(&svc.namespace().unwrap_or_default()));
            triggers::routers_selecting(
                routers,
                ns.as_ref().and_then(|n| n.metadata.labels.as_ref()),
            )
        },
    ));

    let cm_stream = mirrored(
        Api::<ConfigMap>::all(client.clone()),
        managed.clone(),
        cm_writer,
    );
    tasks.add(spawn_triggers(
        "ConfigMap",
        cm_stream,
        tx.clone(),
        routers.clone(),
        |_, o, _| triggers::owner(o).into_iter().collect(),
    ));
    let dep_stream = mirrored(
        Api::<Deployment>::all(client.clone()),
        managed.clone(),
        dep_writer,
    );
    tasks.add(spawn_triggers(
        "Deployment",
        dep_stream,
        tx.clone(),
        routers.clone(),
        |_, o, _| triggers::owner(o).into_iter().collect(),
    ));
    // Proxies: Gloo's verdict and drift reach the router named in the annotation. While
    // Gloo's CRD is missing this watch retries with backoff and its cache stays not ready.
    let proxy_api = Api::<DynamicObject>::all_with(client.clone(), &gloo::proxy_resource());
    // Each completed listing may show Proxies whose router went away meanwhile.
    let janitor_wake = Arc::new(Notify::new());
    let wake = janitor_wake.clone();
    let proxy_stream = reflect(
        proxy_writer,
        strip(watch(proxy_api, managed).default_backoff()),
    )
    .inspect(move |event| {
        if matches!(event, Ok(Event::InitDone)) {
            wake.notify_one();
        }
    });
    tasks.add(spawn_triggers(
        "Proxy",
        proxy_stream,
        tx.clone(),
        routers.clone(),
        |_, o, _| triggers::annotated_router(o).into_iter().collect(),
    ));

    // HostRouters: the controller's own stream; a change also reaches the routers competing
    // for the same names.
    let previous: Mutex<HashMap<ObjectRef<HostRouter>, Arc<HostRouter>>> = Mutex::default();
    let claims_tx = tx.clone();
    let claim_store = routers.clone();
    let router_ctx = ctx.clone();
    let wake = janitor_wake.clone();
    let router_config = match router_selector {
        Some(selector) => all.labels(selector),
        None => all,
    };
    let router_stream = mirrored(
        Api::<HostRouter>::all(client.clone()),
        router_config,
        router_writer,
    )
    .inspect(move |event| {
        let Ok(event) = event else { return };
        let (router, deleted) = match event {
            Event::Apply(r) | Event::InitApply(r) => (r, false),
            Event::Delete(r) => (r, true),
            // Routers deleted while the watch was down are not seen as deletions.
            Event::InitDone => {
                wake.notify_one();
                return;
            }
            Event::Init => return,
        };
        let key = ObjectRef::from_obj(router);
        let mut prev = previous.lock().unwrap_or_else(|p| p.into_inner());
        let before = if deleted {
            // Gone without (or after) its finalizer: forget it, and look for its Proxy.
            router_ctx.forget(&key);
            wake.notify_one();
            prev.remove(&key)
        } else {
            prev.insert(key, Arc::new(router.clone()))
        };
        let all = claim_store.state();
        for r in triggers::competitors(&all, router, before.as_deref(), &settings) {
            let _ = claims_tx.unbounded_send(r);
        }
    })
    .touched_objects();
    tasks.add(tokio::spawn(janitor::run(ctx.clone(), janitor_wake, tx)));

    let config = ControllerConfig::default().concurrency(CONCURRENCY);
    info!("controller started");
    Controller::for_stream(router_stream, routers)
        .with_config(config)
        .reconcile_on(rx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|_| future::ready(()))
        .await;
    info!("controller stopped");
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
    reflect(writer, strip(watch(api, config).default_backoff()))
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
    tx: UnboundedSender<ObjectRef<HostRouter>>,
    routers: Store<HostRouter>,
    affected: impl Fn(&[Arc<HostRouter>], &K, Change) -> Vec<ObjectRef<HostRouter>> + Send + 'static,
) -> JoinHandle<()>
where
    K: Resource + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut failing = false;
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let targets = match event {
                Ok(Event::Apply(o)) => affected(&routers.state(), &o, Change::Applied),
                Ok(Event::Delete(o)) => affected(&routers.state(), &o, Change::Deleted),
                // The mapper sees listed objects (to remember their state); reconciling waits
                // for the listing to finish.
                Ok(Event::InitApply(o)) => {
                    affected(&routers.state(), &o, Change::Listed);
                    Vec::new()
                }
                Ok(Event::InitDone) => {
                    if failing {
                        info!(kind, "watch recovered");
                        failing = false;
                    }
                    routers
                        .state()
                        .iter()
                        .map(|r| ObjectRef::from_obj(r.as_ref()))
                        .collect()
                }
                Ok(Event::Init) => Vec::new(),
                Err(error) => {
                    if !failing {
                        warn!(kind, %error, "watch failed; retrying with backoff");
                        failing = true;
                    }
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

/// Background tasks of one controller run, aborted when the run ends or is dropped (say,
/// when leadership is lost), so that nothing of it keeps writing.
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn add(&mut self, task: JoinHandle<()>) {
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
