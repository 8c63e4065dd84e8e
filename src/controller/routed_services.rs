//! The cache of routed Services: one [`RoutedService`] record per routable Service, computed
//! once per Service change by the Service watch, so that a render reads compact records
//! instead of parsing every Service's ports and annotations again. (The Envoy Services the
//! operator writes are kept whole in `Stores::services`, for their drift.)

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Service;
use kube::runtime::watcher::Event;

use crate::render::RoutedService;
use crate::render::routes::service;

/// Records by namespace, then name.
type ByNamespace = HashMap<Arc<str>, HashMap<Arc<str>, Arc<RoutedService>>>;

/// The records of the routed Services, shared by the Service watch (which writes) and the
/// reconciles (which take a snapshot per render).
#[derive(Clone, Default)]
pub struct RoutedServices(Arc<RwLock<Records>>);

#[derive(Default)]
struct Records {
    current: ByNamespace,
    /// The same records in claiming order (oldest first, then namespace and name), kept
    /// sorted as they change and handed to renders as they are.
    ordered: service::Records,
    /// Filled by a (re)listing; replaces `current` when it completes, so that Services
    /// deleted while the watch was down leave.
    listing: Option<ByNamespace>,
}

impl RoutedServices {
    /// Applies a watch event. Returns whether it changed what routing reads: a change of a
    /// Service's status, spec fields other than its type and ports, or an annotation other than
    /// `hostrouter.io/`'s is no news; any label change is (a service selector may read it), and
    /// so is a Service that stops being routable or is deleted. A completed listing is always
    /// news (the watch may have missed deletions).
    pub fn apply(&self, event: &Event<Service>) -> bool {
        let mut records = self.0.write().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Apply(svc) => records.set(svc),
            Event::Delete(svc) => records.remove(svc),
            Event::Init => {
                records.listing = Some(ByNamespace::new());
                false
            }
            Event::InitApply(svc) => {
                if let (Some(listing), Some(record)) =
                    (records.listing.as_mut(), RoutedService::of(svc))
                {
                    insert(listing, Arc::new(record));
                }
                false
            }
            Event::InitDone => {
                if let Some(listing) = records.listing.take() {
                    records.ordered = service::Records::new(
                        listing.values().flat_map(|s| s.values().cloned()).collect(),
                    );
                    records.current = listing;
                }
                true
            }
        }
    }

    /// Every record, in claiming order: what a render's cluster view holds.
    pub fn snapshot(&self) -> service::Records {
        let records = self.0.read().unwrap_or_else(|p| p.into_inner());
        records.ordered.clone()
    }
}

impl Records {
    /// Keeps the record of `svc` (or forgets it when it is not routable): whether it changed.
    fn set(&mut self, svc: &Service) -> bool {
        let Some(record) = RoutedService::of(svc) else {
            return self.remove(svc);
        };
        let known = self
            .current
            .get(&*record.namespace)
            .and_then(|services| services.get(&*record.name));
        if known.is_some_and(|known| **known == record) {
            return false;
        }
        let record = Arc::new(record);
        if let Some(before) = insert(&mut self.current, record.clone()) {
            self.ordered.remove(&before);
        }
        self.ordered.insert(record);
        true
    }

    /// Forgets `svc`: whether it was known.
    fn remove(&mut self, svc: &Service) -> bool {
        let (Some(namespace), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
            return false;
        };
        let Some(services) = self.current.get_mut(namespace.as_str()) else {
            return false;
        };
        let removed = services.remove(name.as_str());
        if services.is_empty() {
            self.current.remove(namespace.as_str());
        }
        match removed {
            Some(record) => {
                self.ordered.remove(&record);
                true
            }
            None => false,
        }
    }
}

/// Keeps `record`; returns the one it replaces.
fn insert(records: &mut ByNamespace, record: Arc<RoutedService>) -> Option<Arc<RoutedService>> {
    let services = match records.get_mut(&*record.namespace) {
        Some(services) => services,
        None => records.entry(record.namespace.clone()).or_default(),
    };
    services.insert(record.name.clone(), record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::routes::claiming_order;
    use crate::testing::service;

    /// The snapshot's names, checked to be in claiming order.
    fn names(cache: &RoutedServices) -> Vec<String> {
        let snapshot: Vec<_> = cache.snapshot().iter().cloned().collect();
        assert!(
            snapshot.is_sorted_by(|a, b| claiming_order(a, b).is_lt()),
            "in claiming order"
        );
        snapshot
            .iter()
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .collect()
    }

    #[test]
    fn only_changes_of_what_routing_reads_are_news() {
        let cache = RoutedServices::default();
        let web = service("shop", "web", &[(80, "", "")], 1);
        assert!(cache.apply(&Event::Apply(web.clone())));
        assert!(!cache.apply(&Event::Apply(web.clone())), "the same record");
        let mut status_only = web.clone();
        status_only.metadata.resource_version = Some("7".into());
        status_only
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                "{}".into(),
            );
        assert!(!cache.apply(&Event::Apply(status_only)));
        let mut excluded = web.clone();
        excluded
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(
                crate::render::naming::EXCLUDE_ANNOTATION.into(),
                "true".into(),
            );
        assert!(
            cache.apply(&Event::Apply(excluded.clone())),
            "no longer routed"
        );
        assert!(names(&cache).is_empty());
        assert!(!cache.apply(&Event::Delete(excluded)), "was not routed");
        assert!(cache.apply(&Event::Apply(web.clone())));
        assert!(cache.apply(&Event::Delete(web)));
        assert!(names(&cache).is_empty());
    }

    #[test]
    fn a_relisting_replaces_the_records_when_it_completes() {
        let cache = RoutedServices::default();
        let gone = service("shop", "gone", &[(80, "", "")], 1);
        let kept = service("shop", "kept", &[(80, "", "")], 1);
        cache.apply(&Event::Apply(gone));
        cache.apply(&Event::Apply(kept.clone()));
        cache.apply(&Event::Init);
        cache.apply(&Event::InitApply(kept));
        cache.apply(&Event::InitApply(service(
            "pets",
            "new",
            &[(80, "", "")],
            2,
        )));
        // Until the listing completes, renders see the records as they were.
        assert_eq!(names(&cache), ["shop/gone", "shop/kept"]);
        assert!(cache.apply(&Event::InitDone));
        assert_eq!(names(&cache), ["shop/kept", "pets/new"]);
    }

    #[test]
    fn the_snapshot_stays_in_claiming_order_as_services_change() {
        let cache = RoutedServices::default();
        for (ns, name, created) in [("b", "x", 3), ("a", "y", 1), ("a", "x", 3), ("c", "z", 2)] {
            cache.apply(&Event::Apply(service(ns, name, &[(80, "", "")], created)));
        }
        assert_eq!(names(&cache), ["a/y", "c/z", "a/x", "b/x"]);
        // Changed in place (another port): the same place.
        cache.apply(&Event::Apply(service("c", "z", &[(81, "", "")], 2)));
        // Deleted and created again: the youngest now.
        cache.apply(&Event::Delete(service("a", "y", &[(80, "", "")], 1)));
        cache.apply(&Event::Apply(service("a", "y", &[(80, "", "")], 9)));
        assert_eq!(names(&cache), ["c/z", "a/x", "b/x", "a/y"]);
        let first = cache.snapshot().iter().next().cloned();
        assert_eq!(first.map(|r| r.ports[0].number), Some(81));
    }
}
