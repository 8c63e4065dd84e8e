//! The Gateway a router owns: its listeners (HTTP, and HTTPS with the route table's
//! certificates), admitting routes from the namespaces the router selects.

use kube::api::DynamicObject;
use serde_json::json;

use crate::api::HostRouterSpec;
use crate::api::gateway::{
    AllowedRoutes, GatewayListener, GatewaySpec, GatewayTls, RouteNamespaces, SecretReference,
    gateway_resource,
};
use crate::render::routes::{HTTPS, Listener, RouteTable};
use crate::render::{Identity, RenderError};

pub fn gateway(
    id: &Identity<'_>,
    spec: &HostRouterSpec,
    class: &str,
    table: &RouteTable,
) -> Result<DynamicObject, RenderError> {
    let allowed_routes = AllowedRoutes {
        namespaces: RouteNamespaces {
            from: "Selector".to_owned(),
            selector: spec.namespace_selector.clone(),
        },
    };
    let gateway_spec = GatewaySpec {
        gateway_class_name: class.to_owned(),
        listeners: table
            .listeners
            .iter()
            .map(|l| listener(l, &allowed_routes))
            .collect(),
    };
    let mut obj = DynamicObject::new(&id.proxy.name, &gateway_resource());
    obj.metadata = id.local_meta(id.proxy.name.clone());
    obj.data = json!({
        "spec": serde_json::to_value(&gateway_spec).map_err(|e| RenderError::serialize("Gateway", e))?,
    });
    Ok(obj)
}

fn listener(l: &Listener, allowed_routes: &AllowedRoutes) -> GatewayListener {
    let tls = (l.name == HTTPS).then(|| GatewayTls {
        mode: "Terminate".to_owned(),
        certificate_refs: l
            .certificates
            .iter()
            .map(|c| SecretReference {
                group: String::new(),
                kind: "Secret".to_owned(),
                name: c.secret_name.clone(),
            })
            .collect(),
    });
    GatewayListener {
        name: l.name.to_owned(),
        protocol: if tls.is_some() { "HTTPS" } else { "HTTP" }.to_owned(),
        port: l.port,
        tls,
        allowed_routes: allowed_routes.clone(),
    }
}
