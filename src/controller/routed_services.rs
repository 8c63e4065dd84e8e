//! The cache of routed Services: one [`RoutedService`] record per routable Service, computed
//! once per Service change by the Service watch, so that a render reads compact records
//! instead of parsing every Service's ports and annotations again. (The Envoy Services the
//! operator writes are kept whole in `Stores::services`, for their drift.)

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Service;
use kube::runtime::watcher::Event;

use crate::render::RoutedService;

/// Records by namespace, then name.
type ByNamespace = HashMap<Arc<str>, HashMap<Arc<str>, Arc<RoutedService>>>;

/// The records of the routed Services, shared by the Service watch (which writes) and the
/// reconciles (which take a snapshot per render).
#[derive(Clone, Default)]
pub struct RoutedServices(Arc<RwLock<Records>>);

#[derive(Default)]
struct Records {
    current: ByNamespace,
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
                    insert(listing, record);
                }
                false
            }
            Event::InitDone => {
                if let Some(listing) = records.listing.take() {
                    records.current = listing;
                }
                true
            }
        }
    }

    /// Every record, in no particular order: what a render's cluster view holds.
    pub fn snapshot(&self) -> Vec<Arc<RoutedService>> {
        let records = self.0.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(records.current.values().map(HashMap::len).sum());
        for services in records.current.values() {
            out.extend(services.values().cloned());
        }
        out
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
        insert(&mut self.current, record);
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
        let removed = services.remove(name.as_str()).is_some();
        if services.is_empty() {
            self.current.remove(namespace.as_str());
        }
        removed
    }
}

fn insert(records: &mut ByNamespace, record: RoutedService) {
    let services = match records.get_mut(&*record.namespace) {
        Some(services) => services,
        None => records.entry(record.namespace.clone()).or_default(),
    };
    services.insert(record.name.clone(), Arc::new(record));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::service;

    fn names(cache: &RoutedServices) -> Vec<String> {
        let mut names: Vec<String> = cache
            .snapshot()
            .iter()
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .collect();
        names.sort();
        names
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
        assert_eq!(names(&cache), ["pets/new", "shop/kept"]);
    }
}
