//! Who gets a name: of everyone who asks for a hostname or a path prefix with a valid name,
//! the oldest. The router's own `spec.paths.host` comes before any Service; Services in the
//! order of [`claiming_order`]; the asks of one Service in the order it asks (see `asks`).
//! A new Service can therefore never take traffic from an existing one.
//!
//! The [`Index`] keeps, for every name, everyone who asks for it, so that a change of one
//! Service finds the few others whose names it touches without looking at the rest.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use super::asks::{Asks, Kind};
use super::service::RoutedService;
use super::{DropReason, Dropped};

/// The order in which Services claim names: oldest first, then by namespace and name (unique).
/// Objects without a timestamp (offline input) come after dated ones.
pub fn claiming_order(a: &RoutedService, b: &RoutedService) -> Ordering {
    (a.created.is_none(), a.created, &a.namespace, &a.name).cmp(&(
        b.created.is_none(),
        b.created,
        &b.namespace,
        &b.name,
    ))
}

/// One who asks for a name.
#[derive(Clone, Debug)]
pub enum Claimant {
    /// The router's own `spec.paths.host`: first in line.
    PathsHost,
    /// The `ask`-th ask of a Service, for its port `port`.
    Port {
        service: Arc<RoutedService>,
        port: u16,
        ask: u32,
    },
}

impl Claimant {
    fn order(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::PathsHost, Self::PathsHost) => Ordering::Equal,
            (Self::PathsHost, Self::Port { .. }) => Ordering::Less,
            (Self::Port { .. }, Self::PathsHost) => Ordering::Greater,
            (
                Self::Port {
                    service: a, ask: i, ..
                },
                Self::Port {
                    service: b, ask: j, ..
                },
            ) => claiming_order(a, b).then(i.cmp(j)),
        }
    }

    /// Whether this is the `ask`-th ask of `service`.
    fn is(&self, service: &RoutedService, ask: u32) -> bool {
        matches!(self, Self::Port { service: s, ask: i, .. } if std::ptr::eq(&**s, service) && *i == ask)
    }

    /// Whether this is a port of `service` numbered `port`.
    fn is_port(&self, service: &RoutedService, port: u16) -> bool {
        matches!(self, Self::Port { service: s, port: p, .. } if std::ptr::eq(&**s, service) && *p == port)
    }

    /// How a drop names who kept a name: `spec.paths.host`, or `<namespace>/<service>:<port>`.
    fn kept(&self) -> String {
        match self {
            Self::PathsHost => "spec.paths.host".to_owned(),
            Self::Port { service, port, .. } => {
                format!("{}/{}:{port}", service.namespace, service.name)
            }
        }
    }
}

/// Everyone in line for one name, the first has it. Most names have one.
#[derive(Clone, Debug)]
enum Line {
    One(Claimant),
    Many(Vec<Claimant>),
}

impl Line {
    fn as_slice(&self) -> &[Claimant] {
        match self {
            Line::One(c) => std::slice::from_ref(c),
            Line::Many(v) => v,
        }
    }

    /// Puts `claimant` in its place.
    fn join(&mut self, claimant: Claimant) {
        let mut line = match self {
            Line::One(first) => vec![first.clone()],
            Line::Many(v) => std::mem::take(v),
        };
        let at = line.partition_point(|c| c.order(&claimant) == Ordering::Less);
        line.insert(at, claimant);
        *self = Line::Many(line);
    }

    /// Takes out whoever `leaves` says; `false` when no one is left.
    fn leave(&mut self, leaves: impl Fn(&Claimant) -> bool) -> bool {
        match self {
            Line::One(c) => !leaves(c),
            Line::Many(v) => {
                v.retain(|c| !leaves(c));
                match v.len() {
                    0 => false,
                    1 => {
                        if let Some(c) = v.pop() {
                            *self = Line::One(c);
                        }
                        true
                    }
                    _ => true,
                }
            }
        }
    }
}

type Lines = HashMap<Box<str>, Line>;

/// Everyone who asks for each valid name, in line: the first has it.
#[derive(Clone, Debug, Default)]
pub struct Index {
    hostnames: Lines,
    prefixes: Lines,
}

impl Index {
    fn names(&self, kind: Kind) -> &Lines {
        if kind.is_hostname() {
            &self.hostnames
        } else {
            &self.prefixes
        }
    }

    fn names_mut(&mut self, kind: Kind) -> &mut Lines {
        if kind.is_hostname() {
            &mut self.hostnames
        } else {
            &mut self.prefixes
        }
    }

    /// Puts `claimant` in line for the hostname `name` (the router's `spec.paths.host`).
    pub fn ask_hostname(&mut self, name: &str, claimant: Claimant) {
        join(&mut self.hostnames, name, claimant);
    }

    /// Puts the valid asks of `service` in line.
    pub fn add(&mut self, service: &Arc<RoutedService>, asks: &Asks) {
        for (i, ask) in asks.names.iter().enumerate() {
            if ask.problem.is_some() {
                continue;
            }
            let claimant = Claimant::Port {
                service: service.clone(),
                port: ask.port,
                ask: ask_number(i),
            };
            join(self.names_mut(ask.kind), &ask.name, claimant);
        }
    }

    /// Takes the asks of `service` (as `asks` lists them) out of line.
    pub fn remove(&mut self, service: &RoutedService, asks: &Asks) {
        for (i, ask) in asks.names.iter().enumerate() {
            if ask.problem.is_some() {
                continue;
            }
            let names = self.names_mut(ask.kind);
            if let Some(line) = names.get_mut(ask.name.as_str())
                && !line.leave(|c| c.is(service, ask_number(i)))
            {
                names.remove(ask.name.as_str());
            }
        }
    }

    /// The Services in line for `name`.
    pub fn askers(&self, kind: Kind, name: &str) -> impl Iterator<Item = &Arc<RoutedService>> {
        self.names(kind)
            .get(name)
            .into_iter()
            .flat_map(Line::as_slice)
            .filter_map(|c| match c {
                Claimant::PathsHost => None,
                Claimant::Port { service, .. } => Some(service),
            })
    }

    fn first(&self, kind: Kind, name: &str) -> Option<&Claimant> {
        self.names(kind)
            .get(name)
            .and_then(|line| line.as_slice().first())
    }
}

fn join(lines: &mut Lines, name: &str, claimant: Claimant) {
    match lines.get_mut(name) {
        Some(line) => line.join(claimant),
        None => {
            lines.insert(name.into(), Line::One(claimant));
        }
    }
}

/// The position of an ask among a Service's asks (a Service asks for a few names).
fn ask_number(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// What one Service gets, with the index as it stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What it asked for and did not get, in the order it asked.
    pub dropped: Vec<Dropped>,
    /// Per port that got a hostname, by port number: the domains of its virtual host, its
    /// template hostname (when it got it) first, then the extra hostnames it got, sorted. The
    /// first names the virtual host.
    pub hostnames: Vec<(u16, Vec<String>)>,
    /// The path prefixes it got, with the port each reaches.
    pub prefixes: Vec<(String, u16)>,
}

impl Outcome {
    /// Whether the Service is reachable: it got at least one name.
    pub fn routed(&self) -> bool {
        !self.hostnames.is_empty() || !self.prefixes.is_empty()
    }
}

/// What `service` gets of what it asks (`asks`), given who else asks (`index`, which holds
/// its valid asks).
pub fn outcome(service: &RoutedService, asks: &Asks, index: &Index) -> Outcome {
    let mut out = Outcome::default();
    // Per port: its template hostname, its extra hostnames.
    let mut hostnames: Vec<(u16, Option<String>, Vec<String>)> = Vec::new();
    out.dropped.extend(asks.port_not_found(service));
    for (i, ask) in asks.names.iter().enumerate() {
        let drop = |reason| Dropped {
            source: format!("{}/{}:{}", service.namespace, service.name, ask.port),
            name: ask.name.clone(),
            reason,
        };
        if let Some(problem) = &ask.problem {
            out.dropped.push(drop(problem.clone()));
            continue;
        }
        let Some(first) = index.first(ask.kind, &ask.name) else {
            // Not in line: the index was not given this Service's asks.
            continue;
        };
        if first.is(service, ask_number(i)) {
            match ask.kind {
                Kind::Prefix => out.prefixes.push((ask.name.clone(), ask.port)),
                Kind::Template | Kind::Extra => {
                    let at = match hostnames.iter().position(|h| h.0 == ask.port) {
                        Some(at) => at,
                        None => {
                            hostnames.push((ask.port, None, Vec::new()));
                            hostnames.len() - 1
                        }
                    };
                    if ask.kind == Kind::Template {
                        hostnames[at].1 = Some(ask.name.clone());
                    } else {
                        hostnames[at].2.push(ask.name.clone());
                    }
                }
            }
        } else if ask.kind == Kind::Extra && first.is_port(service, ask.port) {
            // The port's own template hostname, listed again: nothing to report.
        } else {
            out.dropped
                .push(drop(DropReason::Duplicate { kept: first.kept() }));
        }
    }
    hostnames.sort_by_key(|h| h.0);
    out.hostnames = hostnames
        .into_iter()
        .map(|(port, template, mut extra)| {
            extra.sort();
            (port, template.into_iter().chain(extra).collect())
        })
        .collect();
    out
}
