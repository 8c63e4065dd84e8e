//! The HTTPRoutes: the route table's virtual hosts, split so that every HTTPRoute lives in the
//! namespace of the Service it routes to (same-namespace backends need no ReferenceGrant).
//!
//! For each listener and virtual host, the routes are grouped by the Service port they serve:
//! - a Service port's own virtual host (its hostnames, `/` to it; on a redirecting HTTP
//!   listener its ACME challenge path to it and `/` redirected) is one HTTPRoute
//!   `<proxyName>-<service>-<port>-<listener>` in the Service's namespace;
//! - the path-routing virtual host gives each Service port one HTTPRoute
//!   `<proxyName>-<service>-<port>-paths-<listener>` with its prefix, stripped;
//! - a virtual host that only redirects (path routing on a redirecting HTTP listener) is one
//!   HTTPRoute `<proxyName>-paths-<listener>` in the router's namespace.
//!
//! The Gateway API merges the rules of every HTTPRoute on a listener by hostname and picks the
//! longest matching path prefix, which is what the route table means. An HTTPRoute takes at
//! most 16 hostnames: a virtual host with more is split over `…-<listener>-2`, `-3`, ….

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde_json::json;

use super::Parents;
use crate::api::gateway::{
    BackendRef, HttpRouteFilter, HttpRouteMatch, HttpRouteRule, HttpRouteSpec, PathMatch,
    PathModifier, RequestRedirect, UrlRewrite, http_route_resource,
};
use crate::render::naming::{ROUTER_ANNOTATION, SHARD_LABEL};
use crate::render::routes::{ANY_HOST, Action, Backend, Route, RouteTable, VirtualHost};
use crate::render::{Identity, RenderError, Settings};

/// Most hostnames one HTTPRoute may list (the CRD's `maxItems`).
pub const MAX_HOSTNAMES: usize = 16;

/// Every HTTPRoute of the table, sorted by namespace, then name.
pub fn http_routes(
    id: &Identity<'_>,
    table: &RouteTable,
    parents: &Parents,
    settings: &Settings,
) -> Result<Vec<DynamicObject>, RenderError> {
    let mut labels = id.labels.clone();
    if let Some(shard) = &settings.shard {
        labels.insert(SHARD_LABEL.to_owned(), shard.clone());
    }
    let mut out = Vec::new();
    for listener in &table.listeners {
        let parent = parents.for_listener(listener.name);
        for vh in &listener.virtual_hosts {
            for (owner, routes) in groups(vh) {
                let (namespace, base) = match &owner {
                    Owner::Host(b) => (&*b.namespace, stem(id, b)),
                    Owner::Path(b) => (&*b.namespace, format!("{}-paths", stem(id, b))),
                    Owner::Router => (id.router_namespace, format!("{}-paths", id.proxy.name)),
                };
                let base = format!("{base}-{}", listener.name);
                let rules: Vec<HttpRouteRule> = routes.iter().map(|r| rule(r)).collect();
                for (i, hostnames) in hostname_chunks(vh).into_iter().enumerate() {
                    let name = if i == 0 {
                        base.clone()
                    } else {
                        format!("{base}-{}", i + 1)
                    };
                    let spec = HttpRouteSpec {
                        parent_refs: vec![parent.clone()],
                        hostnames,
                        rules: rules.clone(),
                    };
                    out.push(object(id, &labels, namespace, name, &spec)?);
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    // The names are unique by construction (a Service port's, with a suffix per listener and
    // purpose); two objects of one name would be one write undoing the other.
    if let Some(pair) = out.windows(2).find(|w| {
        (&w[0].metadata.namespace, &w[0].metadata.name)
            == (&w[1].metadata.namespace, &w[1].metadata.name)
    }) {
        return Err(RenderError::DuplicateName {
            kind: "HTTPRoute",
            name: format!(
                "{}/{}",
                pair[0].metadata.namespace.as_deref().unwrap_or_default(),
                pair[0].metadata.name.as_deref().unwrap_or_default()
            ),
        });
    }
    Ok(out)
}

/// Whose HTTPRoute a route goes into.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    /// The Service port whose own virtual host this is.
    Host(Backend),
    /// A Service port reached by path prefix on a shared virtual host.
    Path(Backend),
    /// Nobody's: a redirect on a virtual host no Service owns.
    Router,
}

/// The routes of a virtual host by owner. A route that forwards without rewriting belongs to
/// the Service port whose own virtual host this is (its `/`, or its ACME challenge path while
/// `/` redirects); one that strips a prefix to the Service port it reaches by path; a
/// redirect goes with the virtual host's Service port, or to the router when no Service owns
/// the virtual host.
fn groups(vh: &VirtualHost) -> BTreeMap<Owner, Vec<&Route>> {
    let home = vh.routes.iter().find_map(|r| match &r.action {
        Action::Forward {
            backend,
            replace_prefix: None,
        } => Some(backend),
        _ => None,
    });
    let mut groups: BTreeMap<Owner, Vec<&Route>> = BTreeMap::new();
    for route in &vh.routes {
        let owner = match &route.action {
            Action::Forward {
                backend,
                replace_prefix: None,
            } => Owner::Host(backend.clone()),
            Action::Forward { backend, .. } => Owner::Path(backend.clone()),
            Action::RedirectToHttps { .. } => match home {
                Some(home) => Owner::Host(home.clone()),
                None => Owner::Router,
            },
        };
        groups.entry(owner).or_default().push(route);
    }
    groups
}

/// `<proxyName>-<service>-<port>`.
fn stem(id: &Identity<'_>, b: &Backend) -> String {
    format!("{}-{}-{}", id.proxy.name, b.service, b.port)
}

/// The virtual host's hostnames, at most [`MAX_HOSTNAMES`] per HTTPRoute; one empty list (every
/// hostname) for the virtual host that answers any Host.
fn hostname_chunks(vh: &VirtualHost) -> Vec<Vec<String>> {
    if vh.domains.iter().any(|d| d == ANY_HOST) {
        return vec![Vec::new()];
    }
    vh.domains
        .chunks(MAX_HOSTNAMES)
        .map(|c| c.to_vec())
        .collect()
}

fn rule(route: &Route) -> HttpRouteRule {
    let matches = vec![HttpRouteMatch {
        path: PathMatch {
            type_: "PathPrefix".to_owned(),
            value: route.path.0.to_string(),
        },
    }];
    match &route.action {
        Action::Forward {
            backend,
            replace_prefix,
        } => HttpRouteRule {
            matches,
            filters: replace_prefix
                .iter()
                .map(|prefix| HttpRouteFilter {
                    type_: "URLRewrite".to_owned(),
                    request_redirect: None,
                    url_rewrite: Some(UrlRewrite {
                        path: PathModifier {
                            type_: "ReplacePrefixMatch".to_owned(),
                            replace_prefix_match: prefix.clone(),
                        },
                    }),
                })
                .collect(),
            backend_refs: vec![BackendRef {
                group: String::new(),
                kind: "Service".to_owned(),
                name: backend.service.to_string(),
                port: backend.port,
                weight: 1,
            }],
        },
        Action::RedirectToHttps { port } => HttpRouteRule {
            matches,
            filters: vec![HttpRouteFilter {
                type_: "RequestRedirect".to_owned(),
                request_redirect: Some(RequestRedirect {
                    scheme: "https".to_owned(),
                    port: *port,
                    status_code: 301,
                }),
                url_rewrite: None,
            }],
            backend_refs: Vec::new(),
        },
    }
}

fn object(
    id: &Identity<'_>,
    labels: &BTreeMap<String, String>,
    namespace: &str,
    name: String,
    spec: &HttpRouteSpec,
) -> Result<DynamicObject, RenderError> {
    let mut obj = DynamicObject::new(&name, &http_route_resource()).within(namespace);
    // In another namespace than the router's: no owner reference (the finalizer removes it),
    // the router named in an annotation, as on a Gloo Proxy.
    obj.metadata = ObjectMeta {
        labels: Some(labels.clone()),
        annotations: Some(BTreeMap::from([(
            ROUTER_ANNOTATION.to_owned(),
            id.router_key(),
        )])),
        ..obj.metadata
    };
    obj.data = json!({
        "spec": serde_json::to_value(spec).map_err(|e| RenderError::serialize("HTTPRoute", e))?,
    });
    Ok(obj)
}
