//! Which watches fail, since when and why: for `/readyz`, the `hostrouter_watch_healthy`
//! gauge and one log line per outage rather than one per retry.
//!
//! A watch that fails retries with backoff, so while the API server is away its errors keep
//! coming at least every [`WatchBackoff::MAX`](super::watches::WatchBackoff). A watch that
//! resumes where it left off says nothing when nothing changed meanwhile, so a watch counts as
//! failing only while its last error is recent: [`WatchHealth::expire`] declares recovered
//! those that have been quiet for longer than [`QUIET`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a failing watch must go without an error to count as working again: twice the
/// longest wait between retries.
pub const QUIET: Duration = Duration::from_secs(8);

#[derive(Clone, Debug)]
struct Failing {
    since: Instant,
    last: Instant,
    error: String,
}

/// The failing watches by kind, shared by the watch tasks and the HTTP server.
#[derive(Clone, Default)]
pub struct WatchHealth(Arc<Mutex<BTreeMap<&'static str, Failing>>>);

/// A watch failing for a while, as `/readyz` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outage {
    pub kind: &'static str,
    pub lasted: Duration,
    pub error: String,
}

impl WatchHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Failing>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the watch of `kind` failed with `error` at `now`; `true` when it was
    /// working until now (a new outage).
    pub fn failed(&self, kind: &'static str, error: String, now: Instant) -> bool {
        let mut failing = self.lock();
        match failing.get_mut(kind) {
            Some(f) => {
                f.last = now;
                f.error = error;
                false
            }
            None => {
                failing.insert(
                    kind,
                    Failing {
                        since: now,
                        last: now,
                        error,
                    },
                );
                true
            }
        }
    }

    /// Records that the watch of `kind` delivered an event; `true` when it was failing.
    pub fn recovered(&self, kind: &'static str) -> bool {
        self.lock().remove(kind).is_some()
    }

    /// Declares recovered, and returns, the failing watches without an error for [`QUIET`].
    pub fn expire(&self, now: Instant) -> Vec<&'static str> {
        let mut failing = self.lock();
        let quiet: Vec<&'static str> = failing
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.last) > QUIET)
            .map(|(kind, _)| *kind)
            .collect();
        for kind in &quiet {
            failing.remove(kind);
        }
        quiet
    }

    /// The watches failing for longer than `grace` at `now`, sorted by kind.
    pub fn outages(&self, grace: Duration, now: Instant) -> Vec<Outage> {
        self.lock()
            .iter()
            .map(|(kind, f)| Outage {
                kind,
                lasted: now.saturating_duration_since(f.since),
                error: f.error.clone(),
            })
            .filter(|o| o.lasted > grace)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn an_outage_is_new_once_and_reported_after_the_grace() {
        let h = WatchHealth::default();
        let t0 = Instant::now();
        assert!(h.failed("Service", "refused".into(), t0));
        assert!(!h.failed("Service", "reset".into(), t0 + 4 * S));
        assert_eq!(h.outages(5 * S, t0 + 4 * S), []);
        let outages = h.outages(5 * S, t0 + 6 * S);
        assert_eq!(
            outages,
            [Outage {
                kind: "Service",
                lasted: 6 * S,
                error: "reset".into()
            }]
        );
    }

    #[test]
    fn an_event_ends_an_outage_at_once() {
        let h = WatchHealth::default();
        let t0 = Instant::now();
        h.failed("Namespace", "refused".into(), t0);
        assert!(h.recovered("Namespace"));
        assert!(!h.recovered("Namespace"), "recovered once");
        assert_eq!(h.outages(Duration::ZERO, t0 + 10 * S), []);
    }

    #[test]
    fn a_watch_quiet_after_its_errors_recovers_once_quiet_long_enough() {
        let h = WatchHealth::default();
        let t0 = Instant::now();
        h.failed("HostRouter", "refused".into(), t0);
        h.failed("Secret", "refused".into(), t0 + 4 * S);
        assert_eq!(h.expire(t0 + QUIET), Vec::<&str>::new());
        assert_eq!(h.expire(t0 + QUIET + S), ["HostRouter"]);
        assert_eq!(h.outages(Duration::ZERO, t0 + QUIET + S).len(), 1);
        assert_eq!(h.expire(t0 + QUIET + 5 * S), ["Secret"]);
        assert_eq!(h.outages(Duration::ZERO, t0 + QUIET + 5 * S), []);
    }
}
