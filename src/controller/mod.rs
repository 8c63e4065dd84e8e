//! The controller: watches feed caches and triggers; reconcile makes each HostRouter's objects
//! true. The pipeline of one change, file by file:
//! - [`watches`]: a watched object changes; its cache is updated;
//! - [`triggers`]: which routers that change affects (pure);
//! - [`reconcile`]: for one router, [`claims`] decides who owns the names, `render` computes
//!   the objects, `write` applies what differs, `cleanup` deletes what is no longer wanted,
//!   `report` writes the [`status`] and Events;
//! - [`janitor`]: Proxies whose router vanished without its finalizer.

mod apply;
pub mod claims;
mod cleanup;
pub mod coalesce;
mod context;
mod echoes;
mod events;
mod finalizer;
pub mod gateway_verdict;
mod janitor;
mod ownership;
mod reconcile;
mod report;
mod routed_services;
pub mod status;
pub mod triggers;
mod watch_health;
mod watches;
mod write;

use std::sync::Arc;

use futures::channel::mpsc::unbounded;
use futures::{StreamExt, future};
use kube::Client;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tracing::info;

pub use context::{Context, Stores};

use crate::api::HostRouter;
use crate::metrics::{CONTROLLER, Metrics};
use crate::render::Settings;

/// Reconciles at most this many routers at once.
const CONCURRENCY: u16 = 8;

/// Runs the controller until `shutdown` resolves.
/// `router_selector` (label selector syntax) limits the HostRouters this instance manages, so
/// that several operators can split a cluster; routers that compete for a proxy name must be
/// managed by the same instance.
pub async fn run(
    client: Client,
    settings: Settings,
    router_selector: Option<&str>,
    coalesce: coalesce::Timing,
    metrics: Arc<Metrics>,
    on_stores: impl FnOnce(Stores),
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (stores, writers) = watches::stores();
    on_stores(stores.clone());
    metrics.observe_routers(stores.routers.clone());
    let reporter = Reporter {
        controller: CONTROLLER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    // Changes reach the routers through the coalescer (see `coalesce`).
    let (queue, changes) = unbounded::<ObjectRef<HostRouter>>();
    let ctx = Arc::new(Context::new(
        client,
        settings,
        stores.clone(),
        metrics,
        reporter,
        queue.clone(),
    ));
    let (coalesced, requested) = unbounded::<ObjectRef<HostRouter>>();
    let janitor_wake = Arc::new(Notify::new());
    // Dropped when this function returns: nothing of this run keeps writing afterwards.
    let mut tasks = watches::Tasks::default();
    let router_stream = watches::start(
        &ctx,
        writers,
        router_selector,
        &queue,
        &janitor_wake,
        &mut tasks,
    );
    tasks.add(tokio::spawn(janitor::run(ctx.clone(), janitor_wake, queue)));
    tasks.add(tokio::spawn(coalesce::run(
        coalesce,
        changes,
        coalesced,
        ctx.metrics.clone(),
    )));

    info!("controller started");
    Controller::for_stream(router_stream, stores.routers)
        .with_config(ControllerConfig::default().concurrency(CONCURRENCY))
        .reconcile_on(requested)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|_| future::ready(()))
        .await;
    info!("controller stopped");
}
