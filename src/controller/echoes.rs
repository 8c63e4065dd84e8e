//! Telling the echo of the operator's own write from anybody else's change.
//!
//! A watch shows every write, the operator's own included. The echo of a write needs no
//! reconcile (the reconcile that wrote it is done with it), so the watches drop it; any other
//! change (drift, a status, a verdict) must reach the router. An echo is known by the version
//! the write returned. While the write is in flight that version is not known yet, and an
//! event carrying the write's applied hash may be its echo, or a change by somebody else to an
//! object that still carries the hash of an earlier write (a status update of the Envoy
//! Deployment, Gloo's verdict on the Proxy). Such an event is held as a suspect, with the
//! routers it reaches: when the write returns, a suspect of another version (or any suspect,
//! when nothing was written) was somebody else's change, and its routers are to be reconciled
//! after all.
//!
//! Pure bookkeeping; [`super::context::Context`] keeps one behind a lock.

use std::collections::HashMap;
use std::hash::Hash;

/// The operator's writes whose echo the watches have not shown yet, by object.
#[derive(Debug)]
pub struct OwnWrites<K, R> {
    writes: HashMap<K, OwnWrite<R>>,
}

#[derive(Debug)]
struct OwnWrite<R> {
    /// The applied hash the written object carries.
    stamp: Option<String>,
    /// Its version, once the write returned.
    version: Option<String>,
    /// The events held as possible echoes while the write was in flight: their versions, and
    /// the routers each reaches.
    suspects: Vec<(Option<String>, Vec<R>)>,
}

/// A watch event of an object, as far as echoes go.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    pub version: Option<&'a str>,
    /// The applied hash the object carries.
    pub stamp: Option<&'a str>,
}

impl<K: Eq + Hash, R: Clone + PartialEq> Default for OwnWrites<K, R> {
    fn default() -> Self {
        Self {
            writes: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash, R: Clone + PartialEq> OwnWrites<K, R> {
    /// The operator is about to write `key` carrying `stamp` (it may turn out that nothing
    /// needs writing).
    pub fn writing(&mut self, key: K, stamp: Option<String>) {
        self.writes.insert(
            key,
            OwnWrite {
                stamp,
                version: None,
                suspects: Vec::new(),
            },
        );
    }

    /// Whether the event `seen` of `key`, which reaches `routers`, is to be dropped as the echo
    /// of a write (or held as a suspect until the write in flight returns).
    pub fn is_echo(&mut self, key: &K, seen: Seen<'_>, routers: &[R]) -> bool {
        let Some(write) = self.writes.get_mut(key) else {
            return false;
        };
        match &write.version {
            Some(version) => {
                let echo = seen.version == Some(version.as_str());
                if echo {
                    self.writes.remove(key);
                }
                echo
            }
            None => {
                let suspect = write.stamp.is_some() && seen.stamp == write.stamp.as_deref();
                if suspect {
                    write
                        .suspects
                        .push((seen.version.map(str::to_owned), routers.to_vec()));
                }
                suspect
            }
        }
    }

    /// The write of `key` returned: `version` is the version the API server gave it, `None`
    /// when nothing was written (unchanged, or the write failed). Returns the routers to
    /// reconcile after all: those of the events held as suspects meanwhile that were somebody
    /// else's change.
    pub fn written(&mut self, key: K, version: Option<String>) -> Vec<R> {
        let Some(write) = self.writes.remove(&key) else {
            return Vec::new();
        };
        let mut echoed = false;
        let mut again = Vec::new();
        for (seen, routers) in write.suspects {
            if version.is_some() && seen == version {
                echoed = true;
            } else {
                for r in routers {
                    if !again.contains(&r) {
                        again.push(r);
                    }
                }
            }
        }
        if version.is_some() && !echoed {
            // The echo is still to come.
            self.writes.insert(
                key,
                OwnWrite {
                    stamp: write.stamp,
                    version,
                    suspects: Vec::new(),
                },
            );
        }
        again
    }

    /// Writes whose echo is still expected.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.writes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Writes = OwnWrites<&'static str, &'static str>;

    const NONE: Vec<&str> = Vec::new();

    fn seen<'a>(version: &'a str, stamp: &'a str) -> Seen<'a> {
        Seen {
            version: Some(version),
            stamp: Some(stamp),
        }
    }

    fn writing(w: &mut Writes, stamp: &str) {
        w.writing("dep", Some(stamp.to_owned()));
    }

    /// An event of the Envoy Deployment that reaches its router.
    fn event(w: &mut Writes, version: &str, stamp: &str) -> bool {
        w.is_echo(&"dep", seen(version, stamp), &["edge"])
    }

    #[test]
    fn the_echo_after_the_write_returned_is_dropped_once() {
        let mut w = Writes::default();
        writing(&mut w, "h2");
        assert_eq!(w.written("dep", Some("7".into())), NONE);
        assert!(!event(&mut w, "6", "h1"), "an older version");
        assert!(event(&mut w, "7", "h2"));
        assert_eq!(w.pending(), 0);
        assert!(!event(&mut w, "8", "h2"), "a later change");
    }

    #[test]
    fn the_echo_before_the_write_returned_is_dropped() {
        let mut w = Writes::default();
        writing(&mut w, "h2");
        assert!(event(&mut w, "7", "h2"));
        assert_eq!(w.written("dep", Some("7".into())), NONE);
        assert_eq!(w.pending(), 0, "the echo was seen: nothing left to expect");
    }

    #[test]
    fn a_change_by_somebody_else_while_nothing_is_written_reaches_the_router() {
        // The Envoy Deployment's status changes while a reconcile finds the Deployment right:
        // it still carries the stamp of the last write.
        let mut w = Writes::default();
        writing(&mut w, "h1");
        assert!(event(&mut w, "9", "h1"), "held as a suspect");
        assert_eq!(w.written("dep", None), ["edge"]);
        assert_eq!(w.pending(), 0);
        assert!(!event(&mut w, "10", "h1"));
    }

    #[test]
    fn a_change_by_somebody_else_before_the_echo_reaches_the_router() {
        let mut w = Writes::default();
        writing(&mut w, "h1");
        assert!(event(&mut w, "8", "h1"), "held as a suspect");
        assert!(event(&mut w, "9", "h1"), "the echo");
        assert_eq!(w.written("dep", Some("9".into())), ["edge"]);
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn a_change_by_somebody_else_reaches_every_router_it_reaches() {
        // A Gateway one router writes and another attaches to: its status changes while the
        // first writes it.
        let mut w = Writes::default();
        writing(&mut w, "h1");
        assert!(w.is_echo(&"dep", seen("8", "h1"), &["edge", "other"]));
        assert!(
            w.is_echo(&"dep", seen("9", "h1"), &[]),
            "reaches none (a status nobody reads)"
        );
        assert_eq!(w.written("dep", Some("11".into())), ["edge", "other"]);
    }

    #[test]
    fn a_suspect_of_another_version_leaves_the_echo_expected() {
        let mut w = Writes::default();
        writing(&mut w, "h1");
        assert!(event(&mut w, "8", "h1"));
        assert_eq!(w.written("dep", Some("9".into())), ["edge"]);
        assert!(event(&mut w, "9", "h1"), "the echo, later");
    }

    #[test]
    fn an_event_of_another_stamp_is_never_an_echo() {
        let mut w = Writes::default();
        writing(&mut w, "h2");
        assert!(!event(&mut w, "8", "h1"));
        assert!(!w.is_echo(&"other", seen("8", "h2"), &["edge"]));
        w.writing("cm", None);
        assert!(
            !w.is_echo(
                &"cm",
                Seen {
                    version: Some("3"),
                    stamp: None
                },
                &["edge"]
            ),
            "an object without a stamp is never taken for a write in flight"
        );
        assert_eq!(w.written("dep", None), NONE);
    }
}
