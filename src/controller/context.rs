//! What every reconcile shares: the client, the watch caches, settings, metrics and events.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use tracing::debug;

use super::echoes::{OwnWrites, Seen};
use super::events::Events;
use super::watches::Queue;
use crate::api::HostRouter;
use crate::metrics::Metrics;
use crate::render::naming;
use crate::render::tls_secret::TlsSecret;
use crate::render::{self, Settings};

/// One line of a Warning about names left out: the Event reason, and the line.
pub type DroppedLine = (&'static str, String);

/// Read-only caches of everything reconcile reads. Filled by watches; reconcile never lists.
#[derive(Clone)]
pub struct Stores {
    pub routers: Store<HostRouter>,
    pub namespaces: Store<Namespace>,
    /// The Envoy Services the operator writes, whole.
    pub services: Store<Service>,
    /// Every routable Service, as routing reads it. It has no readiness of its own: the Service
    /// watch updates it before `services`, which is ready once the first listing completed.
    pub routed_services: super::routed_services::RoutedServices,
    /// ConfigMaps labelled as written by the operator.
    pub config_maps: Store<ConfigMap>,
    /// Deployments labelled as written by the operator.
    pub deployments: Store<Deployment>,
    /// HorizontalPodAutoscalers labelled as written by the operator.
    pub autoscalers: Store<HorizontalPodAutoscaler>,
    /// PodDisruptionBudgets labelled as written by the operator.
    pub disruption_budgets: Store<PodDisruptionBudget>,
    /// Gloo Proxies labelled as written by the operator. Not ready while Gloo's CRD is missing.
    pub proxies: Store<DynamicObject>,
    /// Secrets of type `kubernetes.io/tls`, reduced to what routing needs (no private keys).
    pub tls_secrets: Store<TlsSecret>,
    /// Every Gateway: those the routers own and those they attach to (for their status). Not
    /// ready while the Gateway API CRDs are missing.
    pub gateways: Store<DynamicObject>,
    /// HTTPRoutes labelled as written by the operator. Not ready while the Gateway API CRDs
    /// are missing.
    pub http_routes: Store<DynamicObject>,
    /// Which watches fail right now.
    pub watches: super::watch_health::WatchHealth,
}

impl Stores {
    /// Whether a cache has completed its first listing.
    fn ready<K: Resource + Clone + 'static>(store: &Store<K>) -> bool
    where
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        store
            .wait_until_ready()
            .now_or_never()
            .is_some_and(|r| r.is_ok())
    }

    /// Whether every input cache has completed its first listing (for `/readyz`).
    pub fn inputs_ready(&self) -> bool {
        Self::ready(&self.routers)
            && Self::ready(&self.namespaces)
            && Self::ready(&self.services)
            && Self::ready(&self.config_maps)
            && Self::ready(&self.deployments)
            && Self::ready(&self.autoscalers)
            && Self::ready(&self.disruption_budgets)
            && Self::ready(&self.tls_secrets)
    }

    /// The Proxy cache is complete (false while Gloo's CRD is missing).
    pub fn proxies_ready(&self) -> bool {
        Self::ready(&self.proxies)
    }

    /// The Gateway and HTTPRoute caches are complete (false while the Gateway API CRDs are
    /// missing).
    pub fn gateway_api_ready(&self) -> bool {
        Self::ready(&self.gateways) && Self::ready(&self.http_routes)
    }
}

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub stores: Stores,
    pub metrics: Arc<Metrics>,
    events: Events,
    /// Per router: the names left out that were last reported in Events, so a Warning is
    /// emitted when the set changes, not on every reconcile.
    reported_dropped: Mutex<HashMap<ObjectRef<HostRouter>, BTreeSet<DroppedLine>>>,
    /// Per router: consecutive failed reconciles, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<HostRouter>, u32>>,
    /// The operator's writes whose echo its watches have not shown yet (see [`echoes`]).
    own_writes: Mutex<OwnWrites<WriteKey, ObjectRef<HostRouter>>>,
    /// Where a change that reaches a router goes (the coalescer, then the controller).
    queue: Queue,
    /// What the next renders may reuse of the last ones (see [`Memos`]).
    memos: Mutex<Memos>,
    /// Renders running at once (see [`RENDERS_AT_ONCE`]).
    renders: tokio::sync::Semaphore,
}

/// Renders are CPU-bound and, on a large cluster, hold megabytes while they run (a route
/// table of 10,000 virtual hosts and its JSON): one at a time bounds the operator's memory to
/// one render's, where parallel renders would only share the same cores. Writes and status
/// updates of other routers still overlap with it.
const RENDERS_AT_ONCE: usize = 1;

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        stores: Stores,
        metrics: Arc<Metrics>,
        reporter: Reporter,
        queue: Queue,
    ) -> Self {
        Self {
            events: Events::new(client.clone(), reporter),
            client,
            settings,
            stores,
            metrics,
            reported_dropped: Mutex::default(),
            failures: Mutex::default(),
            own_writes: Mutex::default(),
            queue,
            memos: Mutex::default(),
            renders: tokio::sync::Semaphore::new(RENDERS_AT_ONCE),
        }
    }

    /// Publishes an Event about `router` (see [`Events`]): best effort, never fails the
    /// reconcile.
    pub async fn event(
        &self,
        router: &HostRouter,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.events
            .publish(router, type_, reason, action, note)
            .await;
    }

    /// Records the names left out of `router`'s routes and returns the Event reasons whose
    /// lines differ from the ones last recorded, or `None` when nothing is news.
    /// `known_count` is the count in the router's status: after a restart, an unchanged count
    /// is not news.
    pub fn dropped_changed(
        &self,
        router: &ObjectRef<HostRouter>,
        now: &BTreeSet<DroppedLine>,
        known_count: usize,
    ) -> Option<Vec<&'static str>> {
        let mut seen = self
            .reported_dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let changed = changed_reasons(seen.get(router), now, known_count);
        if now.is_empty() {
            seen.remove(router);
        } else {
            seen.insert(router.clone(), now.clone());
        }
        (!changed.is_empty()).then_some(changed)
    }

    /// Delay before retrying a router that failed: 500 ms, doubling per consecutive failure,
    /// at most 5 minutes.
    pub fn backoff_next(&self, router: &ObjectRef<HostRouter>) -> Duration {
        let n = match self.failures.lock() {
            Ok(mut f) => {
                let n = f.entry(router.clone()).or_default();
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        backoff(n)
    }

    pub fn backoff_reset(&self, router: &ObjectRef<HostRouter>) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(router);
        }
    }

    /// Drops what is remembered about routers that are no longer there (say, deleted while the
    /// watch was down): after a listing, only `present` are kept.
    pub fn forget_all_but(&self, present: &HashSet<ObjectRef<HostRouter>>) {
        if let Ok(mut seen) = self.reported_dropped.lock() {
            seen.retain(|k, _| present.contains(k));
        }
        if let Ok(mut f) = self.failures.lock() {
            f.retain(|k, _| present.contains(k));
        }
        self.memos().retain(|k| present.contains(k));
    }

    /// Waits for a turn to render (see [`RENDERS_AT_ONCE`]); the turn ends when the permit is
    /// dropped. `None` only if the semaphore were closed, which it never is.
    pub async fn render_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.renders.acquire().await.ok()
    }

    /// Takes the render memo of `router`, whose route table is shared by the routers with its
    /// `table` key ([`render::routes::sharing_key`]); [`Context::keep_memo`] gives it back. A
    /// router is never reconciled twice at once, and renders take turns, so nothing else
    /// wants it meanwhile.
    pub fn take_memo(&self, router: &ObjectRef<HostRouter>, table: &str) -> render::Memo {
        self.memos().take(router, table, &self.settings)
    }

    /// Gives the memo back, unless the router is gone meanwhile (deleted while it waited for
    /// its turn to render): then `forget` has run and nothing would remove it again.
    pub fn keep_memo(&self, router: ObjectRef<HostRouter>, table: String, memo: render::Memo) {
        let mut memos = self.memos();
        if self.stores.routers.get(&router).is_some() {
            memos.keep(router, table, memo);
        }
    }

    fn memos(&self) -> std::sync::MutexGuard<'_, Memos> {
        self.memos.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The operator is about to write `desired` (of `kind`): until the write returns, a watch
    /// event of that object carrying the same applied hash may be its echo.
    pub fn writing<K: Resource>(&self, kind: &'static str, desired: &K) {
        if let Some(key) = write_key(kind, desired) {
            let stamp = naming::applied_hash(desired.meta()).map(str::to_owned);
            self.own_writes().writing(key, stamp);
        }
    }

    /// The write of `desired` (of `kind`) ended: `written` is the object as the API server
    /// returned it (its echo has that version), `None` when nothing was written. An event held
    /// as a possible echo meanwhile that was somebody else's change reaches its routers now.
    pub fn written<K: Resource>(&self, kind: &'static str, desired: &K, written: Option<&K>) {
        let Some(key) = write_key(kind, desired) else {
            return;
        };
        let version = written.and_then(|w| w.meta().resource_version.clone());
        let again = self.own_writes().written(key, version);
        for router in again {
            debug!(%router, kind, "a change by somebody else came during a write");
            // Closed only when the controller stops.
            let _ = self.queue.unbounded_send(router);
        }
    }

    /// Whether `obj` (of `kind`), as a watch delivers it, is the echo of the operator's own
    /// write: nothing to reconcile, since the write was a reconcile's outcome. Drift, a
    /// verdict or anything else written after it has another version.
    ///
    /// `routers` are those the event reaches, reconciled after all if it turns out not to be.
    pub fn is_own_echo<K: Resource>(
        &self,
        kind: &'static str,
        obj: &K,
        routers: &[ObjectRef<HostRouter>],
    ) -> bool {
        let Some(key) = write_key(kind, obj) else {
            return false;
        };
        let meta = obj.meta();
        let seen = Seen {
            version: meta.resource_version.as_deref(),
            stamp: naming::applied_hash(meta),
        };
        self.own_writes().is_echo(&key, seen, routers)
    }

    fn own_writes(&self) -> std::sync::MutexGuard<'_, OwnWrites<WriteKey, ObjectRef<HostRouter>>> {
        self.own_writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops what is remembered about a router that is going away.
    pub fn forget(&self, router: &ObjectRef<HostRouter>) {
        if let Ok(mut seen) = self.reported_dropped.lock() {
            seen.remove(router);
        }
        self.memos().retain(|k| k != router);
        self.backoff_reset(router);
    }
}

/// The Event reasons whose lines differ between `previous` (`None`: nothing remembered, as
/// after a restart, when only a count different from `known_count` is news) and `now`.
fn changed_reasons(
    previous: Option<&BTreeSet<DroppedLine>>,
    now: &BTreeSet<DroppedLine>,
    known_count: usize,
) -> Vec<&'static str> {
    let reasons: BTreeSet<&'static str> = now.iter().map(|(r, _)| *r).collect();
    let lines = |set: &BTreeSet<DroppedLine>, reason: &str| -> Vec<String> {
        set.iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, l)| l.clone())
            .collect()
    };
    match previous {
        Some(previous) => reasons
            .into_iter()
            .filter(|r| lines(previous, r) != lines(now, r))
            .collect(),
        None if now.len() != known_count => reasons.into_iter().collect(),
        None => Vec::new(),
    }
}

fn backoff(failures: u32) -> Duration {
    const MAX: Duration = Duration::from_secs(300);
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_millis(500).saturating_mul(1 << exp).min(MAX)
}

/// What renders may reuse of the last ones: per router, its render memo (the compressed
/// pieces of its Proxy) and the key of its route table; per key, one route table memo, shared
/// by the routers that build equal tables (five routers selecting the same namespaces keep one
/// table, and the first to render after a change does the work for all).
#[derive(Default)]
struct Memos {
    routers: HashMap<ObjectRef<HostRouter>, (String, render::Memo)>,
    tables: HashMap<String, render::Shared>,
}

impl Memos {
    fn take(
        &mut self,
        router: &ObjectRef<HostRouter>,
        table: &str,
        settings: &render::Settings,
    ) -> render::Memo {
        let mut memo = self
            .routers
            .remove(router)
            .map(|(_, memo)| memo)
            .unwrap_or_default();
        if let Some(shared) = self.tables.remove(table) {
            // Every kept table was made with the operator's settings: a router rendering for
            // the first time may start from it.
            memo.settings = Some(settings.clone());
            memo.shared = shared;
        } else {
            memo.shared = render::Shared::default();
        }
        memo
    }

    fn keep(&mut self, router: ObjectRef<HostRouter>, table: String, mut memo: render::Memo) {
        self.tables
            .insert(table.clone(), std::mem::take(&mut memo.shared));
        self.routers.insert(router, (table, memo));
        self.sweep();
    }

    /// Keeps the memos of the routers `keep` says, and the tables they use.
    fn retain(&mut self, keep: impl Fn(&ObjectRef<HostRouter>) -> bool) {
        self.routers.retain(|k, _| keep(k));
        self.sweep();
    }

    /// Drops the tables no router uses.
    fn sweep(&mut self) {
        let used: HashSet<&String> = self.routers.values().map(|(t, _)| t).collect();
        self.tables.retain(|t, _| used.contains(t));
    }
}

/// An object the operator writes: kind, namespace, name.
type WriteKey = (&'static str, String, String);

fn write_key<K: Resource>(kind: &'static str, obj: &K) -> Option<WriteKey> {
    let meta = obj.meta();
    Some((
        kind,
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routers_with_one_table_key_share_one_table_until_none_uses_it() {
        let (a, b) = (
            ObjectRef::new("a").within("ns"),
            ObjectRef::new("b").within("ns"),
        );
        let settings = Settings::default();
        let mut memos = Memos::default();
        let first = memos.take(&a, "t", &settings);
        assert!(first.settings.is_none(), "nothing kept yet");
        memos.keep(a.clone(), "t".into(), first);
        let shared = memos.take(&b, "t", &settings);
        assert_eq!(
            shared.settings.as_ref(),
            Some(&settings),
            "b's first render starts from a's table"
        );
        assert!(memos.tables.is_empty(), "taken");
        memos.keep(b.clone(), "t".into(), shared);
        assert_eq!(memos.tables.len(), 1);
        // b moves to another table: "t" stays for a.
        let moved = memos.take(&b, "u", &settings);
        memos.keep(b.clone(), "u".into(), moved);
        assert_eq!(memos.tables.len(), 2);
        memos.retain(|r| *r != a);
        assert_eq!(memos.tables.keys().collect::<Vec<_>>(), ["u"]);
        memos.retain(|_| false);
        assert!(memos.tables.is_empty() && memos.routers.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }

    #[test]
    fn dropped_names_are_news_only_when_their_set_changes() {
        let one: BTreeSet<DroppedLine> =
            [("DuplicateHost", "a/b:80 x (kept by c/d:80)".into())].into();
        // After a restart, the count in the status is already known.
        assert!(changed_reasons(None, &one, 1).is_empty());
        assert_eq!(changed_reasons(None, &one, 0), ["DuplicateHost"]);
        let mut two = one.clone();
        two.insert(("HostnameNotAllowed", "a/b:80 login.example.com".into()));
        assert_eq!(changed_reasons(Some(&one), &two, 1), ["HostnameNotAllowed"]);
        assert!(changed_reasons(Some(&two), &two, 2).is_empty());
        assert!(
            changed_reasons(Some(&two), &BTreeSet::new(), 2).is_empty(),
            "names coming back is no Warning"
        );
    }
}
