//! The Gloo backend: the route table as a Gloo `Proxy`, and the Envoy fleet that asks Gloo for
//! it. One file per object:
//! - [`proxy`]: the Proxy, in Gloo's write namespace;
//! - [`configmap`]: Envoy's bootstrap (ADS to Gloo's xDS, keyed by the proxy's role);
//! - [`deployment`]: Envoy, with the bootstrap mounted;
//! - [`service`]: the listener ports in front of the Envoy pods.

pub mod configmap;
pub mod deployment;
pub mod proxy;
pub mod service;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::DynamicObject;

use super::{Identity, RenderError, RouteTable, Settings, stamp};
use crate::api::HostRouterSpec;

/// The objects of the Gloo backend, stamped with their applied hash.
#[derive(Clone, Debug)]
pub struct Objects {
    pub proxy: DynamicObject,
    pub proxy_compressed: bool,
    pub config_map: ConfigMap,
    /// SHA-256 of the Envoy bootstrap (also on the pod template).
    pub bootstrap_sha256: String,
    pub deployment: Deployment,
    pub service: Service,
}

pub fn objects(
    id: &Identity<'_>,
    spec: &HostRouterSpec,
    table: &RouteTable,
    settings: &Settings,
) -> Result<Objects, RenderError> {
    let (mut proxy, proxy_compressed) = proxy::proxy(id, table, spec.destination, settings)?;
    let (mut config_map, bootstrap_sha256) = configmap::config_map(id, spec, settings)?;
    let mut deployment = deployment::deployment(id, spec, settings, &bootstrap_sha256);
    let mut service = service::service(id, spec);
    stamp(&mut proxy)?;
    stamp(&mut config_map)?;
    stamp(&mut deployment)?;
    stamp(&mut service)?;
    Ok(Objects {
        proxy,
        proxy_compressed,
        config_map,
        bootstrap_sha256,
        deployment,
        service,
    })
}
