//! The Gloo backend: the route table as a Gloo `Proxy`, and the Envoy fleet that asks Gloo for
//! it. One file per object:
//! - [`proxy`]: the Proxy, in Gloo's write namespace;
//! - [`configmap`]: Envoy's bootstrap (ADS to Gloo's xDS, keyed by the proxy's role);
//! - [`deployment`]: Envoy, with the bootstrap mounted;
//! - [`service`]: the listener ports in front of the Envoy pods;
//! - [`autoscaler`]: the HorizontalPodAutoscaler of the Deployment, with `envoy.autoscaling`;
//! - [`disruption_budget`]: the PodDisruptionBudget of the pods, with `envoy.disruptionBudget`.

pub mod autoscaler;
pub mod compressed_spec;
pub mod configmap;
pub mod deployment;
pub mod disruption_budget;
pub mod proxy;
pub mod service;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;

use super::{Identity, RenderError, RouteTable, Settings, stamp, stamped};
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
    /// With `envoy.autoscaling`.
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    /// With `envoy.disruptionBudget`.
    pub disruption_budget: Option<PodDisruptionBudget>,
}

pub fn objects(
    id: &Identity<'_>,
    spec: &HostRouterSpec,
    table: &RouteTable,
    settings: &Settings,
    pieces: compressed_spec::Known<'_>,
) -> Result<Objects, RenderError> {
    let (mut proxy, proxy_compressed) =
        proxy::proxy(id, table, spec.destination, settings, pieces)?;
    let (mut config_map, bootstrap_sha256) = configmap::config_map(id, spec, settings)?;
    let mut deployment = deployment::deployment(id, spec, settings, &bootstrap_sha256);
    let mut service = service::service(id, spec);
    stamp(&mut proxy)?;
    stamp(&mut config_map)?;
    stamp(&mut deployment)?;
    stamp(&mut service)?;
    let autoscaler = spec
        .envoy
        .autoscaling
        .as_ref()
        .map(|a| autoscaler::autoscaler(id, a))
        .map(stamped)
        .transpose()?;
    let disruption_budget = spec
        .envoy
        .disruption_budget
        .as_ref()
        .map(|b| disruption_budget::disruption_budget(id, b))
        .map(stamped)
        .transpose()?;
    Ok(Objects {
        proxy,
        proxy_compressed,
        config_map,
        bootstrap_sha256,
        deployment,
        service,
        autoscaler,
        disruption_budget,
    })
}
