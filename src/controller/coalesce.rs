//! Coalescing: at most one reconcile of a router per window, however many changes reach it.
//!
//! A change that reaches a router not reconciled within the last window is held for a short
//! delay. When no other change reaches the router meanwhile (a lone change: a new Service) it
//! goes through then. When another does, the changes are a storm (a deploy, `kubectl apply` of
//! many Services) and go through together at the end of a window from the first one: no
//! reconcile, and no write of a large Proxy, lands in the middle of a storm shorter than the
//! window, and the changes of one are reconciled within a window of its first change, as
//! before. Changes that follow a reconcile within the window are merged into one reconcile at
//! the window's end. A deploy storm of N Services over T seconds then writes a router's Proxy
//! about `T / window` times instead of up to N times. See the README's performance section for
//! the measured trade-off.
//!
//! Why not a debounce (a change goes through once the router has been quiet for a while): the
//! watch events of a storm of creates reach the operator with gaps of 20 to 60 ms between them
//! on a busy API server (measured at 10,000 Services), so any debounce short enough for a lone
//! change ends in the middle of a storm.
//!
//! [`Coalescer`] is the pure rule (time is passed in); [`run`] drives it between the watches'
//! queue and the controller.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::{SinkExt, StreamExt};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// How long changes are held back (`--coalesce-window`, `--coalesce-delay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// At most one reconcile of a router per window.
    pub window: Duration,
    /// How long a change after a quiet window is held to see whether others follow; at most
    /// the window.
    pub delay: Duration,
}

/// A key held back.
#[derive(Clone, Copy, Debug)]
struct Hold {
    /// When it goes through, and its arrival (to keep equal times apart).
    slot: (Instant, u64),
    /// While a first change waits for the delay: when a window from it ends, which is when
    /// it goes through if another change follows. `None` once it waits for a window's end.
    storm_until: Option<Instant>,
}

/// When each key may next go through, and which keys wait for it.
#[derive(Debug)]
pub struct Coalescer<K> {
    timing: Timing,
    /// When each key last went through (kept for one window).
    last: HashMap<K, Instant>,
    /// Keys held back, by the time they go through.
    held: BTreeMap<(Instant, u64), K>,
    held_at: HashMap<K, Hold>,
    arrivals: u64,
}

impl<K: Clone + Eq + Hash> Coalescer<K> {
    pub fn new(timing: Timing) -> Self {
        Self {
            timing: Timing {
                window: timing.window,
                delay: timing.delay.min(timing.window),
            },
            last: HashMap::new(),
            held: BTreeMap::new(),
            held_at: HashMap::new(),
            arrivals: 0,
        }
    }

    /// A change reached `key` at `now`: `true` when it goes through at once, `false` when it
    /// joins (or starts) the reconcile held for later.
    pub fn request(&mut self, key: K, now: Instant) -> bool {
        let Timing { window, delay } = self.timing;
        if let Some(hold) = self.held_at.get(&key).copied() {
            // A second change during the delay: a storm, reconciled at the window's end. One
            // after the delay (its timer is late) joins the change about to go through.
            if let Some(until) = hold.storm_until
                && now < hold.slot.0
            {
                self.held.remove(&hold.slot);
                self.hold(key, until, None);
            }
            return false;
        }
        match self.last.get(&key) {
            Some(at) if now < *at + window => {
                let at = *at + window;
                self.hold(key, at, None);
                false
            }
            _ if delay.is_zero() => {
                // With no window there is nothing to remember (and nothing would forget it).
                if !window.is_zero() {
                    self.last.insert(key, now);
                }
                true
            }
            _ => {
                self.hold(key, now + delay, Some(now + window));
                false
            }
        }
    }

    fn hold(&mut self, key: K, at: Instant, storm_until: Option<Instant>) {
        self.arrivals += 1;
        let slot = (at, self.arrivals);
        self.held.insert(slot, key.clone());
        self.held_at.insert(key, Hold { slot, storm_until });
    }

    /// The held keys whose time has come at `now`; each counts as gone through at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<K> {
        let mut out = Vec::new();
        while let Some(((at, _), _)) = self.held.first_key_value() {
            if *at > now {
                break;
            }
            let Some((_, key)) = self.held.pop_first() else {
                break;
            };
            self.held_at.remove(&key);
            self.last.insert(key.clone(), now);
            out.push(key);
        }
        // Forget keys whose window is over: a change to them is a first change again.
        let window = self.timing.window;
        self.last.retain(|_, at| now < *at + window);
        out
    }

    /// When the next held key goes through.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.first_key_value().map(|((at, _), _)| *at)
    }

    /// Keys held back now.
    pub fn held(&self) -> usize {
        self.held_at.len()
    }
}

/// Passes the keys of `requests` to `out`, coalesced per `timing` (a zero window passes
/// everything at once). Ends when either side closes.
pub async fn run<K>(
    timing: Timing,
    mut requests: UnboundedReceiver<K>,
    mut out: UnboundedSender<K>,
    metrics: Arc<Metrics>,
) where
    K: Clone + Eq + Hash + Send + 'static,
{
    let mut c = Coalescer::new(timing);
    loop {
        let next = c.next_due();
        let woken = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            request = requests.next() => {
                let Some(key) = request else { return };
                if c.request(key.clone(), Instant::now()) && out.send(key).await.is_err() {
                    return;
                }
            }
            () = woken => {
                for key in c.due(Instant::now()) {
                    if out.send(key).await.is_err() {
                        return;
                    }
                }
            }
        }
        metrics.set_queue_depth(c.held());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(500);
    const D: Duration = Duration::from_millis(20);

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn window(window: Duration) -> Timing {
        Timing {
            window,
            delay: Duration::ZERO,
        }
    }

    fn delayed() -> Timing {
        Timing {
            window: W,
            delay: D,
        }
    }

    /// Drives `c` from `from` to `to` in steps of 1 ms, counting the keys that go through.
    fn run_until<K: Clone + Eq + Hash>(c: &mut Coalescer<K>, from: Instant, to: Instant) -> usize {
        let mut through = 0;
        let mut now = from;
        while now <= to {
            through += c.due(now).len();
            now += Duration::from_millis(1);
        }
        through
    }

    #[test]
    fn with_no_delay_a_lone_change_goes_through_at_once() {
        let t = Instant::now();
        let mut c = Coalescer::new(window(W));
        assert!(c.request("a", t));
        // Another key is not held back by the first.
        assert!(c.request("b", at(t, 10)));
        // After the window, at once again.
        assert!(c.due(at(t, 600)).is_empty());
        assert!(c.request("a", at(t, 600)));
    }

    #[test]
    fn a_storm_is_one_reconcile_per_window() {
        let t = Instant::now();
        let mut c = Coalescer::new(window(W));
        assert!(c.request("a", t));
        // 100 changes over 2 s: only the first goes through at once.
        let mut through = 1;
        let mut now = t;
        for i in 1..=100 {
            now = at(t, i * 20);
            for _ in c.due(now) {
                through += 1;
            }
            if c.request("a", now) {
                through += 1;
            }
        }
        // The last change is held, and goes through within a window.
        assert_eq!(c.held(), 1);
        let last = c.next_due().unwrap();
        assert!(last <= now + W);
        through += c.due(last).len();
        assert_eq!(c.held(), 0);
        // Once at the start, then once per window: 2 s / 500 ms.
        assert!((4..=6).contains(&through), "{through} reconciles");
    }

    #[test]
    fn a_zero_window_holds_nothing() {
        let t = Instant::now();
        let mut c = Coalescer::new(Timing {
            window: Duration::ZERO,
            delay: D,
        });
        for i in 0..10 {
            assert!(c.request("a", at(t, i)));
        }
        assert_eq!(c.held(), 0);
        assert!(c.last.is_empty(), "nothing to remember without a window");
    }

    #[test]
    fn a_lone_change_waits_for_the_delay() {
        let t = Instant::now();
        let mut c = Coalescer::new(delayed());
        assert!(!c.request("a", t));
        assert_eq!(c.next_due(), Some(t + D));
        assert!(c.due(at(t, 19)).is_empty());
        assert_eq!(c.due(at(t, 20)), vec!["a"]);
        assert_eq!(c.held(), 0);
        // Another key waits for its own delay, not for the first key's window.
        assert!(!c.request("b", at(t, 30)));
        assert_eq!(c.next_due(), Some(at(t, 50)));
        // After the window, a change waits for the delay again.
        assert_eq!(c.due(at(t, 600)), vec!["b"]);
        assert!(!c.request("a", at(t, 600)));
        assert_eq!(c.next_due(), Some(at(t, 620)));
    }

    #[test]
    fn a_storm_shorter_than_the_window_goes_through_once_at_its_end() {
        let t = Instant::now();
        let mut c = Coalescer::new(delayed());
        // 300 changes over 450 ms, with gaps longer than the delay: nothing goes through
        // while they come.
        for i in 0..300 {
            let now = at(t, i + if i > 100 { 150 } else { 0 });
            assert!(c.due(now).is_empty(), "{i}");
            assert!(!c.request("a", now));
        }
        // Once, a window after the first change.
        assert_eq!(c.next_due(), Some(t + W));
        assert_eq!(run_until(&mut c, at(t, 450), at(t, 2000)), 1);
    }

    #[test]
    fn a_storm_longer_than_the_window_goes_through_once_per_window() {
        let t = Instant::now();
        let mut c = Coalescer::new(delayed());
        // Changes every 5 ms for 2 s.
        let mut through = 0;
        for i in 0..400 {
            let now = at(t, i * 5);
            through += c.due(now).len();
            assert!(!c.request("a", now));
            if i == 99 {
                // At 495 ms nothing has gone through; at 500 ms (one window) the first does.
                assert_eq!(through, 0);
            }
            if i == 100 {
                assert_eq!(through, 1);
            }
        }
        through += run_until(&mut c, at(t, 2000), at(t, 4000));
        // At 0.5, 1.0, 1.5 and 2.0 s (the changes of the last window).
        assert_eq!(through, 4);
    }

    #[test]
    fn a_change_after_the_delay_joins_the_one_going_through() {
        let t = Instant::now();
        let mut c = Coalescer::new(delayed());
        assert!(!c.request("a", t));
        // The timer is late: a change at 25 ms, before the one of 0 ms went through, is no
        // storm.
        assert!(!c.request("a", at(t, 25)));
        assert_eq!(c.next_due(), Some(t + D));
        assert_eq!(c.due(at(t, 26)), vec!["a"]);
        assert_eq!(c.held(), 0);
    }

    #[test]
    fn keys_are_held_apart() {
        let t = Instant::now();
        let mut c = Coalescer::new(delayed());
        // A storm of "a", a lone change of "b" in the middle of it.
        assert!(!c.request("a", t));
        assert!(!c.request("a", at(t, 5)));
        assert!(!c.request("b", at(t, 10)));
        assert_eq!(c.held(), 2);
        assert_eq!(c.due(at(t, 30)), vec!["b"]);
        assert!(c.due(at(t, 499)).is_empty());
        assert_eq!(c.due(at(t, 500)), vec!["a"]);
        // Each remembers its own last reconcile: "b" is held to 530 ms, "a" to 1 s.
        assert!(!c.request("a", at(t, 510)));
        assert!(!c.request("b", at(t, 510)));
        assert_eq!(c.due(at(t, 530)), vec!["b"]);
        assert_eq!(c.due(at(t, 1000)), vec!["a"]);
    }

    #[test]
    fn a_delay_longer_than_the_window_is_the_window() {
        let t = Instant::now();
        let mut c = Coalescer::new(Timing {
            window: W,
            delay: W * 3,
        });
        assert!(!c.request("a", t));
        assert_eq!(c.next_due(), Some(t + W));
        // A second change changes nothing: the storm goes through at the same time.
        assert!(!c.request("a", at(t, 100)));
        assert_eq!(c.next_due(), Some(t + W));
        assert_eq!(c.due(t + W), vec!["a"]);
    }
}

#[cfg(test)]
mod stress {
    use super::*;

    #[test]
    fn random_requests_are_always_released() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for timing in [
            (500, 20),
            (500, 0),
            (0, 20),
            (100, 100),
            (100, 300),
            (3000, 600),
        ] {
            let t = Instant::now();
            let mut c = Coalescer::new(Timing {
                window: Duration::from_millis(timing.0),
                delay: Duration::from_millis(timing.1),
            });
            let mut now = t;
            for _ in 0..20_000 {
                now += Duration::from_micros(next() % 50_000);
                if next() % 3 == 0 {
                    c.due(now);
                }
                let key = next() % 4;
                c.request(key, now);
                assert_eq!(c.held.len(), c.held_at.len(), "{timing:?}");
                for (k, h) in &c.held_at {
                    assert_eq!(c.held.get(&h.slot), Some(k), "{timing:?}");
                }
                if let Some(due) = c.next_due() {
                    assert!(
                        due <= now + Duration::from_millis(timing.0.max(timing.1)),
                        "{timing:?}"
                    );
                }
            }
        }
    }
}
