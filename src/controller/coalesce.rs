//! Coalescing: at most one reconcile of a router per window, however many changes reach it.
//!
//! A change that reaches a router that was not reconciled within the last window goes through
//! at once, so a lone change (a new Service) costs no delay. Changes that follow within the
//! window are merged into one reconcile at the window's end. A deploy storm of N Services over
//! T seconds then writes a router's Proxy about `T / window` times instead of up to N times, and
//! a change waits at most one window. See the README's performance section for the measured
//! trade-off.
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

/// When each key may next go through, and which keys wait for it.
#[derive(Debug)]
pub struct Coalescer<K> {
    window: Duration,
    /// When each key last went through (kept for one window).
    last: HashMap<K, Instant>,
    /// Keys held back, by the time they go through (and arrival, to keep equal times apart).
    held: BTreeMap<(Instant, u64), K>,
    held_at: HashMap<K, (Instant, u64)>,
    arrivals: u64,
}

impl<K: Clone + Eq + Hash> Coalescer<K> {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last: HashMap::new(),
            held: BTreeMap::new(),
            held_at: HashMap::new(),
            arrivals: 0,
        }
    }

    /// A change reached `key` at `now`: `true` when it goes through at once, `false` when it
    /// joins (or starts) the reconcile held for the window's end.
    pub fn request(&mut self, key: K, now: Instant) -> bool {
        if self.held_at.contains_key(&key) {
            return false;
        }
        match self.last.get(&key) {
            Some(at) if now < *at + self.window => {
                self.arrivals += 1;
                let slot = (*at + self.window, self.arrivals);
                self.held.insert(slot, key.clone());
                self.held_at.insert(key, slot);
                false
            }
            _ => {
                self.last.insert(key, now);
                true
            }
        }
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
        // Forget keys whose window is over: a change to them goes through at once anyway.
        let window = self.window;
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

/// Passes the keys of `requests` to `out`, coalesced per `window` (a zero window passes
/// everything at once). Ends when either side closes.
pub async fn run<K>(
    window: Duration,
    mut requests: UnboundedReceiver<K>,
    mut out: UnboundedSender<K>,
    metrics: Arc<Metrics>,
) where
    K: Clone + Eq + Hash + Send + 'static,
{
    let mut c = Coalescer::new(window);
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

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn a_lone_change_goes_through_at_once() {
        let t = Instant::now();
        let mut c = Coalescer::new(W);
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
        let mut c = Coalescer::new(W);
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
        let mut c = Coalescer::new(Duration::ZERO);
        for i in 0..10 {
            assert!(c.request("a", at(t, i)));
        }
        assert_eq!(c.held(), 0);
    }
}
