//! The route table of a router, kept between renders and brought up to date with only the
//! Services that changed: their names, and those of the few others that ask for the same names
//! (see `claims`), are worked out again; every other virtual host is the one of the last
//! render, shared. A memo built for other inputs (the router's spec, the tenancy settings, the
//! namespaces it publishes) is started over. Starting from an empty memo is the full render:
//! there is one way to build a table.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::asks::{self, Asks, Kind};
use super::claims::{self, Claimant, Index, Outcome, claiming_order};
use super::service::{Records, RoutedService};
use super::{Action, Backend, Dropped, Input, PathPrefix, Route, VirtualHost};
use crate::api::HostRouterSpec;
use crate::api::envoy::EnvoySpec;
use crate::api::hostrouter::{Destination, Listener};
use crate::api::service::ServiceSpec;
use crate::render::Tenancy;

/// What the next render of a router may reuse of its route table. It changes how long a render
/// takes, never what it returns.
#[derive(Clone, Debug, Default)]
pub struct Memo {
    /// The inputs other than the Services that the state below was built from.
    basis: Option<Basis>,
    /// Every routable Service of the cluster view the table was last brought up to date with.
    seen: Records,
    /// The routed Services (those `seen` that the router selects), in claiming order.
    services: Records,
    index: Index,
    /// The virtual hosts of Service ports, sorted by name.
    virtual_hosts: Vec<Arc<VirtualHost>>,
    /// Path prefix → the Service port it reaches.
    paths: BTreeMap<String, Backend>,
    /// The virtual host of path routing, made from `paths` (`None` when not yet or when they
    /// changed since).
    path_host: Option<Arc<VirtualHost>>,
    /// What was left out, sorted by name and source (ties in claiming order).
    dropped: Vec<Dropped>,
    /// Services that got at least one name.
    routed: usize,
    /// The plain-HTTP version of each virtual host when HTTP redirects to HTTPS, by the
    /// address of the virtual host it was made from (held, so that the address is not reused).
    redirects: HashMap<usize, (Arc<VirtualHost>, Arc<VirtualHost>)>,
}

#[derive(Clone, Debug, PartialEq)]
struct Basis {
    router_namespace: String,
    /// The router's [`route_spec`].
    spec: HostRouterSpec,
    tenancy: Tenancy,
    namespaces: BTreeSet<String>,
}

/// The part of a router's spec its route table is made from: the spec without the fields that
/// shape only other objects (the Proxy's name and namespace, the listener, how a backend is
/// named, Envoy, its Service, the edge implementation). A field added to the spec counts
/// until it is listed here. Routers of one namespace with equal route specs build equal
/// tables, so they may share one memo (see [`sharing_key`]).
pub fn route_spec(spec: &HostRouterSpec) -> HostRouterSpec {
    HostRouterSpec {
        proxy_name: String::new(),
        proxy_namespace: None,
        listener: Listener {
            port: 0,
            bind_address: String::new(),
        },
        destination: Destination::default(),
        envoy: EnvoySpec::default(),
        service: ServiceSpec::default(),
        backend: None,
        ..spec.clone()
    }
}

/// A key equal for routers that may share a route memo: their namespace and [`route_spec`].
/// A memo handed to a router built for other inputs starts over, so the key only decides how
/// much is reused, never what is rendered.
pub fn sharing_key(router_namespace: &str, spec: &HostRouterSpec) -> Result<String, String> {
    serde_json::to_string(&(router_namespace, route_spec(spec))).map_err(|e| e.to_string())
}

/// The part of the table that comes from the Services.
pub struct Table<'m> {
    /// The virtual hosts of Service ports, sorted by name.
    pub virtual_hosts: &'m [Arc<VirtualHost>],
    /// Path prefix → the Service port it reaches.
    pub paths: &'m BTreeMap<String, Backend>,
    pub dropped: &'m [Dropped],
    pub routed: usize,
}

impl Memo {
    /// Brings the table up to date with the routable Services `all`, of which the router
    /// routes those `selects` says (given the `namespaces` it publishes). Only the records that
    /// are not those of the last update are looked at.
    pub fn update(
        &mut self,
        input: &Input<'_>,
        namespaces: &BTreeSet<&str>,
        all: &Records,
        selects: impl Fn(&RoutedService) -> bool,
    ) -> Table<'_> {
        let spec = route_spec(input.spec);
        let basis_now = |b: &Basis| {
            b.router_namespace == input.router_namespace
                && b.spec == spec
                && b.tenancy == *input.tenancy
                && b.namespaces.len() == namespaces.len()
                && b.namespaces.iter().zip(namespaces).all(|(a, b)| a == b)
        };
        if !self.basis.as_ref().is_some_and(basis_now) {
            *self = Memo {
                basis: Some(Basis {
                    router_namespace: input.router_namespace.to_owned(),
                    spec,
                    tenancy: input.tenancy.clone(),
                    namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
                }),
                ..Memo::default()
            };
            if let Some(host) = input.spec.paths.as_ref().and_then(|p| p.host.as_deref()) {
                self.index.ask_hostname(host, Claimant::PathsHost);
            }
        }
        let (removed, added) = self.changes(all, selects);
        if !removed.is_empty() || !added.is_empty() {
            self.apply(input, &removed, &added);
        }
        Table {
            virtual_hosts: &self.virtual_hosts,
            paths: &self.paths,
            dropped: &self.dropped,
            routed: self.routed,
        }
    }

    /// The virtual host of path routing that `make` makes of the paths; made again only when
    /// they changed. `None` without paths.
    pub fn path_host(
        &mut self,
        make: impl FnOnce(&BTreeMap<String, Backend>) -> VirtualHost,
    ) -> Option<Arc<VirtualHost>> {
        if self.paths.is_empty() {
            self.path_host = None;
            return None;
        }
        let paths = &self.paths;
        Some(
            self.path_host
                .get_or_insert_with(|| Arc::new(make(paths)))
                .clone(),
        )
    }

    /// The virtual hosts `make` turns `hosts` into, made again only for virtual hosts that are
    /// not those of the last call (the others are shared, so that what a backend made of them
    /// can be reused too). `make` must depend on the memo's inputs alone (its spec).
    pub fn redirecting(
        &mut self,
        hosts: &[Arc<VirtualHost>],
        make: impl Fn(&VirtualHost) -> VirtualHost,
    ) -> Vec<Arc<VirtualHost>> {
        let mut last = std::mem::take(&mut self.redirects);
        let mut out = Vec::with_capacity(hosts.len());
        for vh in hosts {
            let key = Arc::as_ptr(vh) as usize;
            let entry = last
                .remove(&key)
                .unwrap_or_else(|| (vh.clone(), Arc::new(make(vh))));
            out.push(entry.1.clone());
            self.redirects.insert(key, entry);
        }
        out
    }

    /// The routed Services that left or changed (their former records) and those that came or
    /// changed (their new records), with `all` kept as the records seen. A record equal to
    /// the one held counts as no change.
    fn changes(
        &mut self,
        all: &Records,
        selects: impl Fn(&RoutedService) -> bool,
    ) -> (Vec<Arc<RoutedService>>, Vec<Arc<RoutedService>>) {
        if self.seen.same(all) {
            return (Vec::new(), Vec::new());
        }
        let (mut gone, mut came) = (Vec::new(), Vec::new());
        let mut old = self.seen.iter().peekable();
        for new in all.iter() {
            // Most records are the very ones seen last time: compared by address only.
            if old.next_if(|o| Arc::ptr_eq(o, new)).is_some() {
                continue;
            }
            while let Some(before) = old.next_if(|o| claiming_order(o, new).is_lt()) {
                gone.push(before);
            }
            match old.next_if(|o| claiming_order(o, new).is_eq()) {
                Some(before) if **before == **new => {}
                Some(before) => {
                    gone.push(before);
                    came.push(new);
                }
                None => came.push(new),
            }
        }
        gone.extend(old);
        let mut removed = Vec::new();
        for record in gone.into_iter().filter(|r| selects(r)) {
            // The record held may be an equal one of an earlier view.
            removed.extend(self.services.remove(record));
        }
        let added: Vec<Arc<RoutedService>> =
            came.into_iter().filter(|r| selects(r)).cloned().collect();
        for record in &added {
            self.services.insert(record.clone());
        }
        self.seen = all.clone();
        (removed, added)
    }

    /// Takes out what `removed` got, puts in `added`, and works out again what every Service
    /// that asks for one of their names gets.
    fn apply(
        &mut self,
        input: &Input<'_>,
        removed: &[Arc<RoutedService>],
        added: &[Arc<RoutedService>],
    ) {
        let asked = |services: &[Arc<RoutedService>]| -> Vec<Asked> {
            services
                .iter()
                .map(|s| (s.clone(), asks::of(input, s)))
                .collect()
        };
        let (removed, added) = (asked(removed), asked(added));
        let touched: HashSet<(Kind, &str)> = removed
            .iter()
            .chain(&added)
            .flat_map(|(_, asks)| &asks.names)
            .filter(|a| a.problem.is_none())
            .map(|a| (hostname_or_prefix(a.kind), a.name.as_str()))
            .collect();
        let changed: HashSet<*const RoutedService> = removed
            .iter()
            .chain(&added)
            .map(|(s, _)| Arc::as_ptr(s))
            .collect();

        // Before: what `removed` got, and the others in line for a touched name.
        let others = self.others_in_line(input, &touched, &changed);
        let before: Vec<Outcome> = removed
            .iter()
            .chain(&others)
            .map(|(svc, asks)| claims::outcome(svc, asks, &self.index))
            .collect();
        for (svc, asks) in &removed {
            self.index.remove(svc, asks);
        }
        for (svc, asks) in &added {
            self.index.add(svc, asks);
        }
        // After: what `added` gets, and the same others.
        let mut after: Vec<(&RoutedService, Outcome)> = added
            .iter()
            .chain(&others)
            .map(|(svc, asks)| (&**svc, claims::outcome(svc, asks, &self.index)))
            .collect();
        // Drops of one source are all of one Service: put in claiming order, a stable sort
        // by name and source gives the order of the full table.
        after.sort_by(|a, b| claiming_order(a.0, b.0));

        let mut gone_hosts: HashSet<String> = HashSet::new();
        let mut gone_drops: HashMap<&Dropped, usize> = HashMap::new();
        for outcome in &before {
            self.routed -= usize::from(outcome.routed());
            for (_, domains) in &outcome.hostnames {
                // A virtual host's name is its first domain.
                gone_hosts.extend(domains.first().cloned());
            }
            for (prefix, _) in &outcome.prefixes {
                self.paths.remove(prefix);
                self.path_host = None;
            }
            for d in &outcome.dropped {
                *gone_drops.entry(d).or_default() += 1;
            }
        }
        let mut new_hosts = Vec::new();
        let mut new_drops = Vec::new();
        for (svc, outcome) in after {
            self.routed += usize::from(outcome.routed());
            for (port, domains) in outcome.hostnames {
                new_hosts.push(Arc::new(VirtualHost {
                    domains,
                    routes: vec![Route {
                        path: PathPrefix::root(),
                        action: Action::Forward {
                            backend: backend(svc, port),
                            replace_prefix: None,
                        },
                    }],
                }));
            }
            for (prefix, port) in outcome.prefixes {
                self.paths.insert(prefix, backend(svc, port));
                self.path_host = None;
            }
            new_drops.extend(outcome.dropped);
        }
        new_hosts.sort_unstable_by(|a, b| a.name().cmp(b.name()));
        new_drops.sort_by(|a, b| (&a.name, &a.source).cmp(&(&b.name, &b.source)));

        let kept_hosts = std::mem::take(&mut self.virtual_hosts)
            .into_iter()
            .filter(|vh| !gone_hosts.contains(vh.name()));
        self.virtual_hosts = merge(kept_hosts, new_hosts, |a, b| a.name() < b.name());
        let kept_drops: Vec<Dropped> = std::mem::take(&mut self.dropped)
            .into_iter()
            .filter(|d| match gone_drops.get_mut(d) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            })
            .collect();
        self.dropped = merge(kept_drops.into_iter(), new_drops, |a, b| {
            (&a.name, &a.source) <= (&b.name, &b.source)
        });
    }

    /// The Services other than `changed` in line for one of the `touched` names, each once,
    /// with what they ask.
    fn others_in_line(
        &self,
        input: &Input<'_>,
        touched: &HashSet<(Kind, &str)>,
        changed: &HashSet<*const RoutedService>,
    ) -> Vec<Asked> {
        let mut seen: HashSet<*const RoutedService> = HashSet::new();
        let mut out = Vec::new();
        for (kind, name) in touched {
            for svc in self.index.askers(*kind, name) {
                let ptr = Arc::as_ptr(svc);
                if !changed.contains(&ptr) && seen.insert(ptr) {
                    out.push((svc.clone(), asks::of(input, svc)));
                }
            }
        }
        out
    }
}

/// A Service and what it asks for.
type Asked = (Arc<RoutedService>, Asks);

/// Hostnames of both kinds share one line per name.
fn hostname_or_prefix(kind: Kind) -> Kind {
    if kind.is_hostname() {
        Kind::Template
    } else {
        Kind::Prefix
    }
}

fn backend(svc: &RoutedService, port: u16) -> Backend {
    Backend {
        namespace: svc.namespace.clone(),
        service: svc.name.clone(),
        port,
    }
}

/// Merges two sorted sequences; `first(a, b)`: whether `a` of the first goes before `b`.
fn merge<T>(a: impl Iterator<Item = T>, b: Vec<T>, first: impl Fn(&T, &T) -> bool) -> Vec<T> {
    let mut a = a.peekable();
    let mut out = Vec::with_capacity(a.size_hint().0 + b.len());
    for item in b {
        while let Some(x) = a.next_if(|x| first(x, &item)) {
            out.push(x);
        }
        out.push(item);
    }
    out.extend(a);
    out
}
