//! Assembles the route table of one router from the cluster view: the Services' virtual hosts
//! and path prefixes (kept up to date by the [`Memo`], see `claims` for who gets a name), the
//! path-routing virtual host, the listeners, certificates and the redirect to HTTPS.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::core::Selector;

use super::memo::Memo;
use super::names::Template;
use super::select;
use super::{
    ACME_CHALLENGE_PREFIX, ANY_HOST, Action, Backend, Findings, HTTP, HTTPS, Listener, PathPrefix,
    Route, RouteTable, VirtualHost, certificates,
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

/// Builds the route table, and what was left out on the way, reusing what `memo` holds of the
/// router's last table and leaving this one in it.
pub fn build(
    input: &Input<'_>,
    view: &ClusterView<'_>,
    memo: &mut Memo,
) -> Result<(RouteTable, Findings), RenderError> {
    let spec = input.spec;
    let namespaces = select::namespaces(
        input.namespace_selector,
        input.router_namespace,
        input.tenancy,
        view,
    );
    let selects = select::selects(&namespaces.published, input.service_selector);
    let table = memo.update(input, &namespaces.published, &view.services, selects);
    let (routed, dropped) = (table.routed, table.dropped.to_vec());
    let mut virtual_hosts: Vec<Arc<VirtualHost>> = table.virtual_hosts.to_vec();
    if let Some(paths_spec) = &spec.paths {
        let domain = paths_spec
            .host
            .clone()
            .unwrap_or_else(|| ANY_HOST.to_owned());
        if let Some(vh) = memo.path_host(|paths| path_virtual_host(domain, paths)) {
            // Names are unique in a listener.
            let at = virtual_hosts.partition_point(|v| v.name() < vh.name());
            virtual_hosts.insert(at, vh);
        }
    }

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
                http.virtual_hosts =
                    memo.redirecting(&http.virtual_hosts, |vh| redirecting(vh, https_port));
            }
            listeners.push(https);
        }
    }
    listeners.insert(0, http);

    let findings = Findings {
        namespaces: namespaces.published.len(),
        namespaces_without_consent: namespaces
            .without_consent
            .iter()
            .map(|n| n.to_string())
            .collect(),
        services: routed,
        dropped,
        certificate_problems,
    };
    Ok((RouteTable { listeners }, findings))
}

/// The virtual host of path routing: one route per prefix, longest first, each stripping its
/// prefix.
fn path_virtual_host(domain: String, paths: &BTreeMap<String, Backend>) -> VirtualHost {
    let mut routes: Vec<Route> = paths
        .iter()
        .map(|(prefix, backend)| Route {
            path: PathPrefix(prefix.clone().into()),
            action: Action::Forward {
                backend: backend.clone(),
                replace_prefix: Some("/".to_owned()),
            },
        })
        .collect();
    routes.sort_by(|a, b| {
        (std::cmp::Reverse(a.path.0.len()), &a.path)
            .cmp(&(std::cmp::Reverse(b.path.0.len()), &b.path))
    });
    VirtualHost {
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
            path: PathPrefix(ACME_CHALLENGE_PREFIX.into()),
            action: r.action.clone(),
        });
    let redirect = Route {
        path: PathPrefix::root(),
        action: Action::RedirectToHttps {
            port: (https_port != 443).then_some(https_port),
        },
    };
    VirtualHost {
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
