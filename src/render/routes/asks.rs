//! What one Service asks of a router: the names it asks for, in the order it asks, each with
//! the reason it can never have it (whoever else asks) when there is one.
//!
//! A Service asks, in this order: the template hostname of each chosen port (every port when
//! the template names a port, else the primary port), the extra hostnames of its
//! `hostrouter.io/hostnames` annotation (for the primary port), then the path prefix of each
//! chosen port. Who gets a valid name is decided among all who ask for it (see `claims`).

use super::names::{self, Template, Values};
use super::service::{Port, RoutedService};
use super::{DropReason, Dropped};
use crate::render::routes::Input;

/// The namespace of names an ask is in: hostnames and path prefixes never meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A hostname from the router's host template.
    Template,
    /// A hostname from the Service's `hostrouter.io/hostnames` annotation.
    Extra,
    /// A path prefix from the router's path template.
    Prefix,
}

impl Kind {
    pub fn is_hostname(self) -> bool {
        matches!(self, Kind::Template | Kind::Extra)
    }
}

/// One name a Service port asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub kind: Kind,
    pub name: String,
    pub port: u16,
    /// Why the name can never be given (`Invalid`, `NotAllowed`); `None` for a valid name.
    pub problem: Option<DropReason>,
}

/// Everything a Service asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asks {
    /// The `hostrouter.io/port` annotation's value when it names no TCP port of the Service.
    pub port_not_found: Option<String>,
    /// In the order the Service asks; a name's position is its rank among the Service's asks.
    pub names: Vec<Ask>,
}

/// What `svc` asks of the router that `input` describes.
pub fn of(input: &Input<'_>, svc: &RoutedService) -> Asks {
    let (primary, port_not_found) = match svc.primary_port() {
        Ok(p) => (p, None),
        Err(value) => (None, Some(value.to_owned())),
    };
    let chosen = |template: &Template| -> Vec<Port<'_>> {
        if template.per_port() {
            svc.ports().collect()
        } else {
            primary.into_iter().collect()
        }
    };
    let mut names = Vec::new();
    for port in chosen(input.host_template) {
        let name = input.host_template.render(&values(svc, port));
        let problem = names::hostname_problem(&name, false).map(DropReason::Invalid);
        names.push(Ask {
            kind: Kind::Template,
            name,
            port: port.number,
            problem,
        });
    }
    if let Some(port) = primary {
        let suffixes = input
            .spec
            .hosts
            .as_ref()
            .map(|h| h.allowed_suffixes.as_slice())
            .unwrap_or_default();
        for name in svc.extra_hostnames.iter().map(|n| &**n) {
            let problem = if let Some(why) = names::hostname_problem(name, true) {
                Some(DropReason::Invalid(why))
            } else if !names::allowed(name, suffixes) {
                Some(DropReason::NotAllowed)
            } else {
                None
            };
            names.push(Ask {
                kind: Kind::Extra,
                name: name.to_owned(),
                port: port.number,
                problem,
            });
        }
    }
    if let Some(template) = input.path_template {
        for port in chosen(template) {
            let name = template.render(&values(svc, port));
            let problem = names::path_problem(&name).map(DropReason::Invalid);
            names.push(Ask {
                kind: Kind::Prefix,
                name,
                port: port.number,
                problem,
            });
        }
    }
    Asks {
        port_not_found,
        names,
    }
}

impl Asks {
    /// The drop of the port annotation that names no port, sourced `<namespace>/<service>`.
    pub fn port_not_found(&self, svc: &RoutedService) -> Option<Dropped> {
        self.port_not_found.as_ref().map(|value| Dropped {
            source: format!("{}/{}", svc.namespace, svc.name),
            name: value.clone(),
            reason: DropReason::PortNotFound,
        })
    }
}

fn values<'a>(svc: &'a RoutedService, port: Port<'a>) -> Values<'a> {
    Values {
        namespace: &svc.namespace,
        service: &svc.name,
        port: port.number,
        port_name: port.name,
    }
}
