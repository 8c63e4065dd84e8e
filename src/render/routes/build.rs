//! Assembles the route table of one router from the cluster view.
//!
//! Names are claimed oldest Service first: a hostname (from the template or from a Service's
//! `hostrouter.io/hostnames` annotation) or a path prefix goes to the first Service that asks
//! for it, so a new Service can never take traffic from an existing one. The router's own
//! `spec.paths.host` is claimed before any Service.

use std::collections::{BTreeMap, HashMap};

use kube::core::Selector;

use super::names::{self, Template, Values};
use super::select;
use super::service::{Port, RoutedService};
use super::{
    ACME_CHALLENGE_PREFIX, ANY_HOST, Action, Backend, DropReason, Dropped, Findings, HTTP, HTTPS,
    Listener, PathPrefix, Route, RouteTable, VirtualHost, certificates,
};
use crate::api::HostRouterSpec;
use crate::render::{ClusterView, RenderError, Tenancy};

/// What `build` needs besides the cluster view: the router's spec, its namespace, and its
/// selectors and templates, compiled.
pub struct Input<'a> {
    pub router_namespace: &'a str,
    pub spec: &'a HostRouterSpec,
    pub tenancy: &'a Tenancy,
    pub namespace_selector: &'a Selector,
    pub service_selector: Option<&'a Selector>,
    pub host_template: &'a Template,
    pub path_template: Option<&'a Template>,
}

/// Builds the route table, and what was left out on the way.
pub fn build(
    input: &Input<'_>,
    view: &ClusterView<'_>,
) -> Result<(RouteTable, Findings), RenderError> {
    let spec = input.spec;
    let namespaces = select::namespaces(
        input.namespace_selector,
        input.router_namespace,
        input.tenancy,
        view,
    );
    let services = select::services(&namespaces.published, input.service_selector, view);

    let mut names = Names {
        domains: HashMap::with_capacity(services.len()),
        hosts: HashMap::with_capacity(services.len()),
        ..Names::default()
    };
    if let Some(host) = spec.paths.as_ref().and_then(|p| p.host.as_deref()) {
        names.domains.insert(host.to_owned(), Holder::PathsHost);
    }
    // A Service is reachable when it got at least one name.
    let mut routed_services = 0;
    for svc in &services {
        let claimed = names.claimed;
        names.add_service(input, svc);
        if names.claimed > claimed {
            routed_services += 1;
        }
    }
    let Names {
        hosts,
        paths,
        mut dropped,
        ..
    } = names;

    let mut virtual_hosts: Vec<VirtualHost> = hosts
        .into_iter()
        .filter_map(|(port, domains)| host_virtual_host(port.backend(), domains))
        .collect();
    if let Some(paths_spec) = &spec.paths
        && !paths.is_empty()
    {
        let domain = paths_spec
            .host
            .clone()
            .unwrap_or_else(|| ANY_HOST.to_owned());
        virtual_hosts.push(path_virtual_host(domain, paths));
    }
    // The order of a hash map is not; names are unique in a listener.
    virtual_hosts.sort_unstable_by(|a, b| a.name.cmp(&b.name));

    // A router that uses none of the routing fields renders exactly as before.
    let strip_host_port = spec.hosts.is_some() || spec.paths.is_some() || spec.tls.is_some();
    let mut http = Listener {
        name: HTTP,
        bind_address: spec.listener.bind_address.clone(),
        port: port("spec.listener.port", spec.listener.port)?,
        strip_host_port,
        certificates: Vec::new(),
        virtual_hosts,
    };
    let mut listeners = Vec::new();
    let mut certificate_problems = Vec::new();
    if let Some(tls) = &spec.tls {
        let (certificates, problems) = certificates::resolve(tls, input.router_namespace, view);
        certificate_problems = problems;
        // Without a usable certificate there is nothing to serve HTTPS with, and nothing to
        // redirect to: plain HTTP keeps routing.
        if !certificates.is_empty() {
            let https_port = port("spec.tls.port", tls.port())?;
            let https = Listener {
                name: HTTPS,
                bind_address: spec.listener.bind_address.clone(),
                port: https_port,
                strip_host_port,
                certificates,
                virtual_hosts: http.virtual_hosts.clone(),
            };
            if tls.redirect_http {
                http.virtual_hosts = http
                    .virtual_hosts
                    .iter()
                    .map(|vh| redirecting(vh, https_port))
                    .collect();
            }
            listeners.push(https);
        }
    }
    listeners.insert(0, http);

    dropped.sort_by(|a, b| (&a.name, &a.source).cmp(&(&b.name, &b.source)));
    let findings = Findings {
        namespaces: namespaces.published.len(),
        namespaces_without_consent: namespaces
            .without_consent
            .iter()
            .map(|n| n.to_string())
            .collect(),
        services: routed_services,
        dropped,
        certificate_problems,
    };
    Ok((RouteTable { listeners }, findings))
}

/// Who holds a name: the router's own `spec.paths.host`, or a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Holder<'a> {
    PathsHost,
    Port(PortRef<'a>),
}

/// A Service port, borrowed from the cluster view (a [`Backend`] without its allocations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PortRef<'a> {
    namespace: &'a str,
    service: &'a str,
    port: u16,
}

impl PortRef<'_> {
    fn backend(&self) -> Backend {
        Backend {
            namespace: self.namespace.to_owned(),
            service: self.service.to_owned(),
            port: self.port,
        }
    }
}

impl std::fmt::Display for Holder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PathsHost => f.write_str("spec.paths.host"),
            // As `Backend` displays itself.
            Self::Port(p) => write!(f, "{}/{}:{}", p.namespace, p.service, p.port),
        }
    }
}

/// Names claimed so far, and the names each Service port got.
#[derive(Default)]
struct Names<'a> {
    /// Hostname → who has it (for the "kept" of a duplicate).
    domains: HashMap<String, Holder<'a>>,
    /// Path prefix → who has it.
    prefixes: HashMap<String, Holder<'a>>,
    /// Per Service port: its template hostname (if it got it), then its extra hostnames.
    hosts: HashMap<PortRef<'a>, (Option<String>, Vec<String>)>,
    /// Path prefix → Service port.
    paths: BTreeMap<String, PortRef<'a>>,
    dropped: Vec<Dropped>,
    /// Names given so far.
    claimed: usize,
}

impl<'a> Names<'a> {
    fn add_service(&mut self, input: &Input<'_>, svc: &'a RoutedService) {
        let primary = match svc.primary_port() {
            Ok(p) => p,
            Err(value) => {
                self.dropped.push(Dropped {
                    source: format!("{}/{}", svc.namespace, svc.name),
                    name: value.to_owned(),
                    reason: DropReason::PortNotFound,
                });
                None
            }
        };
        let chosen = |template: &Template| -> Vec<Port<'a>> {
            if template.per_port() {
                svc.ports().collect()
            } else {
                primary.into_iter().collect()
            }
        };

        for port in chosen(input.host_template) {
            let holder = holder(svc, port);
            let domain = input.host_template.render(&values(svc, port));
            if let Some(why) = names::hostname_problem(&domain, false) {
                self.drop(holder, domain, DropReason::Invalid(why));
                continue;
            }
            match claim(&mut self.domains, &domain, holder) {
                Ok(()) => {
                    self.claimed += 1;
                    self.hosts.entry(holder).or_default().0 = Some(domain);
                }
                Err(kept) => self.drop(holder, domain, DropReason::Duplicate { kept }),
            }
        }

        if let Some(port) = primary {
            let holder = holder(svc, port);
            let suffixes = input
                .spec
                .hosts
                .as_ref()
                .map(|h| h.allowed_suffixes.as_slice())
                .unwrap_or_default();
            for name in svc.extra_hostnames.iter().map(|n| &**n) {
                let reason = if let Some(why) = names::hostname_problem(name, true) {
                    DropReason::Invalid(why)
                } else if !names::allowed(name, suffixes) {
                    DropReason::NotAllowed
                } else if self.domains.get(name) == Some(&Holder::Port(holder)) {
                    // The Service's own template name, or listed twice.
                    continue;
                } else {
                    match claim(&mut self.domains, name, holder) {
                        Ok(()) => {
                            self.claimed += 1;
                            self.hosts
                                .entry(holder)
                                .or_default()
                                .1
                                .push(name.to_owned());
                            continue;
                        }
                        Err(kept) => DropReason::Duplicate { kept },
                    }
                };
                self.drop(holder, name.to_owned(), reason);
            }
        }

        if let Some(template) = input.path_template {
            for port in chosen(template) {
                let holder = holder(svc, port);
                let prefix = template.render(&values(svc, port));
                if let Some(why) = names::path_problem(&prefix) {
                    self.drop(holder, prefix, DropReason::Invalid(why));
                    continue;
                }
                match claim(&mut self.prefixes, &prefix, holder) {
                    Ok(()) => {
                        self.claimed += 1;
                        self.paths.insert(prefix, holder);
                    }
                    Err(kept) => self.drop(holder, prefix, DropReason::Duplicate { kept }),
                }
            }
        }
    }

    fn drop(&mut self, holder: PortRef<'_>, name: String, reason: DropReason) {
        self.dropped.push(Dropped {
            source: Holder::Port(holder).to_string(),
            name,
            reason,
        });
    }
}

/// Gives `name` to `holder` unless someone has it: then `Err` says who.
fn claim<'a>(
    claims: &mut HashMap<String, Holder<'a>>,
    name: &str,
    holder: PortRef<'a>,
) -> Result<(), String> {
    match claims.get(name) {
        Some(kept) => Err(kept.to_string()),
        None => {
            claims.insert(name.to_owned(), Holder::Port(holder));
            Ok(())
        }
    }
}

fn holder<'a>(svc: &'a RoutedService, port: Port<'_>) -> PortRef<'a> {
    PortRef {
        namespace: &svc.namespace,
        service: &svc.name,
        port: port.number,
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

/// A Service port's virtual host: its template hostname first, then its extra hostnames; one
/// route for every path. `None` when it got no name at all.
fn host_virtual_host(
    backend: Backend,
    (template, mut extra): (Option<String>, Vec<String>),
) -> Option<VirtualHost> {
    extra.sort();
    let domains: Vec<String> = template.into_iter().chain(extra).collect();
    let name = domains.first()?.clone();
    Some(VirtualHost {
        name,
        domains,
        routes: vec![Route {
            path: PathPrefix::root(),
            action: Action::Forward {
                backend,
                replace_prefix: None,
            },
        }],
    })
}

/// The virtual host of path routing: one route per prefix, longest first, each stripping its
/// prefix.
fn path_virtual_host(domain: String, paths: BTreeMap<String, PortRef<'_>>) -> VirtualHost {
    let mut routes: Vec<Route> = paths
        .into_iter()
        .map(|(prefix, port)| Route {
            path: PathPrefix(prefix),
            action: Action::Forward {
                backend: port.backend(),
                replace_prefix: Some("/".to_owned()),
            },
        })
        .collect();
    routes.sort_by(|a, b| {
        (std::cmp::Reverse(a.path.0.len()), &a.path)
            .cmp(&(std::cmp::Reverse(b.path.0.len()), &b.path))
    });
    VirtualHost {
        name: domain.clone(),
        domains: vec![domain],
        routes,
    }
}

/// The plain-HTTP version of a virtual host when HTTP redirects to HTTPS: ACME challenges
/// still reach the Service that answers the whole host, everything else is redirected.
fn redirecting(vh: &VirtualHost, https_port: u16) -> VirtualHost {
    let acme = vh
        .routes
        .iter()
        .filter(|r| r.path.is_root() && matches!(r.action, Action::Forward { .. }))
        .map(|r| Route {
            path: PathPrefix(ACME_CHALLENGE_PREFIX.to_owned()),
            action: r.action.clone(),
        });
    let redirect = Route {
        path: PathPrefix::root(),
        action: Action::RedirectToHttps {
            port: (https_port != 443).then_some(https_port),
        },
    };
    VirtualHost {
        name: vh.name.clone(),
        domains: vh.domains.clone(),
        routes: acme.chain([redirect]).collect(),
    }
}

/// A port from the spec (1–65535 by the schema; checked again for objects stored before it).
fn port(field: &'static str, value: i32) -> Result<u16, RenderError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p > 0)
        .ok_or(RenderError::InvalidPort { field, value })
}
