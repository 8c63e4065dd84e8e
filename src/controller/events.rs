//! Events on HostRouters (`events.k8s.io/v1`), published by the operator itself rather than by
//! kube's `Recorder`, for two reasons: kube's Recorder merges Events by reason and keeps the first
//! note (hiding, say, which object was created), and it names Events `<object name>.<hex>`,
//! which is not a valid name for an object whose name is long. Here an Event is one
//! `(router, type, reason, note)`: a repeat within [`SERIES_TTL`] adds to its series (the
//! Event's `series.count`) instead of creating another, and names are cut to fit.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{EventType, Reporter};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use crate::api::HostRouter;

/// How long a repeated Event adds to the series of the first instead of being created anew.
pub const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// Event notes are limited to 1 kB.
const MAX_NOTE: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    regarding: String,
    type_: &'static str,
    reason: String,
    note: String,
}

/// Publishes Events about HostRouters. Best effort: a failure is logged, never fails a
/// reconcile.
pub struct Events {
    client: Client,
    reporter: Reporter,
    recent: Mutex<HashMap<Key, Event>>,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            recent: Mutex::default(),
        }
    }

    pub async fn publish(
        &self,
        router: &HostRouter,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let now = Timestamp::now();
        let type_ = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let note = truncate_note(note);
        let key = Key {
            regarding: router.uid().unwrap_or_else(|| {
                format!(
                    "{}/{}",
                    router.namespace().unwrap_or_default(),
                    router.name_any()
                )
            }),
            type_,
            reason: reason.to_owned(),
            note: note.clone(),
        };
        let repeat = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|_, e| last_seen(e).is_some_and(|t| t + SERIES_TTL > now));
            recent.get(&key).cloned()
        };
        let namespace = router.namespace().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let result = match repeat {
            Some(mut event) => {
                let count = event.series.as_ref().map_or(2, |s| s.count + 1);
                event.series = Some(EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                });
                let patch = serde_json::json!({ "series": event.series });
                api.patch(
                    &event.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map(|_| event)
            }
            None => {
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(event_name(&router.name_any(), now)),
                        namespace: Some(namespace.clone()),
                        ..Default::default()
                    },
                    event_time: Some(MicroTime(now)),
                    action: Some(action.to_owned()),
                    reason: Some(reason.to_owned()),
                    note: Some(note),
                    regarding: Some(router.object_ref(&())),
                    reporting_controller: Some(self.reporter.controller.clone()),
                    reporting_instance: Some(
                        self.reporter
                            .instance
                            .clone()
                            .unwrap_or_else(|| self.reporter.controller.clone()),
                    ),
                    type_: Some(type_.to_owned()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &event).await
            }
        };
        match result {
            Ok(event) => {
                self.recent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, event);
            }
            Err(error) => warn!(%error, reason, "could not publish an Event"),
        }
    }
}

fn last_seen(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
}

/// `<name>.<nanoseconds in hex>`, with `name` cut so that the whole stays a valid object name
/// (at most 253 characters, the cut not ending in '.' or '-').
pub fn event_name(regarding: &str, now: Timestamp) -> String {
    let suffix = format!("{:x}", now.as_nanosecond());
    let room = 253 - 1 - suffix.len();
    let mut prefix = regarding
        .get(..room.min(regarding.len()))
        .unwrap_or(regarding);
    prefix = prefix.trim_end_matches(['.', '-']);
    format!("{prefix}.{suffix}")
}

fn truncate_note(mut note: String) -> String {
    if note.len() > MAX_NOTE {
        let mut end = MAX_NOTE - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_fit_whatever_the_routers_name() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(
            event_name("edge", now),
            format!("edge.{:x}", now.as_nanosecond())
        );
        let long = format!("{}-x", "a".repeat(250));
        let name = event_name(&long, now);
        assert!(name.len() <= 253, "{} characters", name.len());
        assert!(name.starts_with("aaaa"));
        // A cut that would end in '-' or '.' drops it.
        let dashy = format!("{}-{}", "b".repeat(235), "c".repeat(20));
        let name = event_name(&dashy, now);
        assert!(!name.contains("-."), "{name}");
    }

    #[test]
    fn notes_are_cut_to_the_events_api_limit() {
        let note = truncate_note("é".repeat(800));
        assert!(note.len() <= 1000 && note.ends_with("..."));
    }
}
