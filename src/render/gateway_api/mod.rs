//! The Gateway API backend: the route table as `gateway.networking.k8s.io/v1` objects, served
//! by whichever implementation runs the Gateway. One file per object:
//! - [`gateway`]: the Gateway the router owns (none when it attaches to an existing one);
//! - [`http_route`]: the HTTPRoutes, each in the namespace of the Service it routes to.
//!
//! Nothing of the Envoy fleet is written: the implementation provisions it.

pub mod gateway;
pub mod http_route;

use kube::api::DynamicObject;

use super::{Identity, RenderError, RouteTable, Settings, stamp};
use crate::api::backend::GatewayApiBackend;
use crate::api::gateway::{GATEWAY_KIND, GROUP, ParentReference};
use crate::api::routing::DEFAULT_HTTPS_PORT;
use crate::api::{HostRouter, HostRouterSpec};

/// The objects of the Gateway API backend, stamped with their applied hash.
#[derive(Clone, Debug)]
pub struct Objects {
    /// The Gateway the router owns, when it owns one.
    pub gateway: Option<DynamicObject>,
    /// Sorted by namespace, then name.
    pub http_routes: Vec<DynamicObject>,
}

pub fn objects(
    id: &Identity<'_>,
    spec: &HostRouterSpec,
    backend: &GatewayApiBackend,
    table: &RouteTable,
    settings: &Settings,
) -> Result<Objects, RenderError> {
    let parents = Parents::of(id, spec, backend);
    let mut gateway = backend
        .gateway_class_name
        .as_deref()
        .map(|class| gateway::gateway(id, spec, class, table))
        .transpose()?;
    let mut http_routes = http_route::http_routes(id, table, &parents, settings)?;
    if let Some(gateway) = gateway.as_mut() {
        stamp(gateway)?;
    }
    for route in &mut http_routes {
        stamp(route)?;
    }
    Ok(Objects {
        gateway,
        http_routes,
    })
}

/// The Gateway a router's HTTPRoutes attach to, as `(namespace, name)`: its own (`proxyName`
/// in its namespace) or the existing one it names; `None` for a router on another backend.
pub fn gateway_of(router: &HostRouter) -> Option<(String, String)> {
    let backend = router.spec.gateway_api()?;
    let namespace = router.metadata.namespace.clone()?;
    Some(match &backend.gateway {
        Some(existing) => (
            existing.namespace.clone().unwrap_or(namespace),
            existing.name.clone(),
        ),
        None => (namespace, router.spec.proxy_name.clone()),
    })
}

/// Where the HTTPRoutes of each listener attach.
pub struct Parents {
    pub http: ParentReference,
    pub https: ParentReference,
}

impl Parents {
    fn of(id: &Identity<'_>, spec: &HostRouterSpec, backend: &GatewayApiBackend) -> Self {
        let gateway = |namespace: &str, name: &str| ParentReference {
            group: GROUP.to_owned(),
            kind: GATEWAY_KIND.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            section_name: None,
            port: None,
        };
        match &backend.gateway {
            // An existing Gateway: its listeners on the router's ports.
            Some(existing) => {
                let parent = gateway(
                    existing.namespace.as_deref().unwrap_or(id.router_namespace),
                    &existing.name,
                );
                let on_port = |port: i32| ParentReference {
                    port: u16::try_from(port).ok(),
                    ..parent.clone()
                };
                Self {
                    http: on_port(spec.listener.port),
                    https: on_port(spec.tls.as_ref().map_or(DEFAULT_HTTPS_PORT, |t| t.port())),
                }
            }
            // The router's own Gateway: its listeners by name.
            None => {
                let parent = gateway(id.router_namespace, &id.proxy.name);
                let section = |name: &str| ParentReference {
                    section_name: Some(name.to_owned()),
                    ..parent.clone()
                };
                Self {
                    http: section(super::routes::HTTP),
                    https: section(super::routes::HTTPS),
                }
            }
        }
    }

    fn for_listener(&self, listener: &str) -> &ParentReference {
        if listener == super::routes::HTTPS {
            &self.https
        } else {
            &self.http
        }
    }
}

#[cfg(test)]
mod tests;
