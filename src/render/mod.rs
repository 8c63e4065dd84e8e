//! The sans-IO core: `render(router, cluster view, settings)` returns the objects the operator
//! must keep true and the facts its status reports. Pure and deterministic: the same inputs, in
//! any order, give byte-identical output.
//!
//! The pipeline, in the order a request meets it:
//! 1. [`routes`]: which Services are routed, under which names, with which certificates: the
//!    backend-neutral route table (listeners → virtual hosts → routes);
//! 2. a backend translates the table: [`gloo`] into a Gloo Proxy and the Envoy fleet that asks
//!    Gloo for it (bootstrap ConfigMap, Deployment, Service); [`gateway_api`] into a Gateway and
//!    HTTPRoutes, served by a Gateway API implementation that runs its own fleet.
//!
//! [`naming`] holds every name and label; [`tls_secret`] what is known of a TLS Secret.

pub mod gateway_api;
pub mod gloo;
pub mod naming;
pub mod routes;
pub mod tls_secret;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::HostRouter;
use crate::api::hostrouter::ProxyRef;
use routes::names::Template;
pub use routes::service::RoutedService;
pub use routes::{Findings, RouteTable};
use tls_secret::TlsSecret;

/// The part of the cluster a render looks at.
#[derive(Clone, Debug, Default)]
pub struct ClusterView<'a> {
    pub namespaces: Vec<&'a Namespace>,
    /// The routable Services (see [`RoutedService::of`]).
    pub services: routes::service::Records,
    /// At least the TLS Secrets the router's `spec.tls` names (others are ignored).
    pub tls_secrets: Vec<&'a TlsSecret>,
}

/// Operator-wide settings that shape the generated objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Gloo's write namespace: where Proxies go unless a router names another.
    pub gloo_namespace: String,
    /// Host of Gloo's xDS server, as Envoy resolves it.
    pub xds_address: String,
    pub xds_port: u16,
    /// Envoy image when a router does not name one.
    pub envoy_image: String,
    /// Proxies whose JSON spec is larger than this are written in Gloo's compressed form.
    pub compress_proxy_above_bytes: usize,
    /// On average one virtual host in this many starts a piece of a compressed Proxy (see
    /// [`gloo::compressed_spec`]).
    pub compress_piece_hosts: std::num::NonZeroU64,
    /// Value of the [`naming::SHARD_LABEL`] on the Proxies this operator instance writes (see
    /// [`naming::shard`]); `None` for an instance that manages every HostRouter.
    pub shard: Option<String>,
    /// Which namespaces a router may publish.
    pub tenancy: Tenancy,
}

/// Which namespaces a router may publish, whatever its namespace selector says (see
/// [`routes::select::publishes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenancy {
    /// Routers in these namespaces (a platform team's) may publish every namespace their
    /// selector matches, but the protected ones.
    pub trusted_namespaces: std::collections::BTreeSet<String>,
    /// Published only when they consent themselves, by any router: the system's namespaces and
    /// the operator's own.
    pub protected_namespaces: std::collections::BTreeSet<String>,
}

/// The namespaces Kubernetes itself uses, protected by default.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

impl Default for Tenancy {
    fn default() -> Self {
        Self {
            trusted_namespaces: Default::default(),
            protected_namespaces: SYSTEM_NAMESPACES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Gloo release whose Proxy API and Envoy image HostRouter is built and tested against.
pub const GLOO_VERSION: &str = "1.22.1";
/// Proxies whose JSON spec is larger than this are written compressed by default: about 64
/// virtual hosts. A plain Proxy stays readable (`kubectl get proxy -o yaml`), but the API
/// server's server-side apply merges its list items one by one: at 1,000 Services a plain
/// Proxy took 76 ms to store against 2.4 ms compressed (see the README's performance section).
pub const DEFAULT_COMPRESS_PROXY_ABOVE_BYTES: usize = 16 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Self {
            gloo_namespace: "gloo-system".to_owned(),
            xds_address: "gloo.gloo-system.svc.cluster.local".to_owned(),
            xds_port: 9977,
            envoy_image: format!("quay.io/solo-io/gloo-envoy-wrapper:{GLOO_VERSION}"),
            compress_proxy_above_bytes: DEFAULT_COMPRESS_PROXY_ABOVE_BYTES,
            compress_piece_hosts: gloo::compressed_spec::CUT_EVERY,
            shard: None,
            tenancy: Tenancy::default(),
        }
    }
}

/// Everything the operator writes for one router, and what it found on the way.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The backend's objects.
    pub objects: Objects,
    /// The route table the objects were translated from.
    pub table: RouteTable,
    pub findings: Findings,
    /// The name the router claims among routers (`spec.proxyName`, in Gloo's namespace).
    pub proxy_ref: ProxyRef,
}

/// The objects of the router's backend.
#[derive(Clone, Debug)]
pub enum Objects {
    Gloo(Box<gloo::Objects>),
    GatewayApi(Box<gateway_api::Objects>),
}

impl Rendered {
    /// Virtual hosts of the plain-HTTP listener (the HTTPS listener has the same ones).
    pub fn virtual_hosts(&self) -> usize {
        self.table
            .listeners
            .first()
            .map_or(0, |l| l.virtual_hosts.len())
    }

    /// The Gloo backend's objects, when the router uses it.
    pub fn gloo(&self) -> Option<&gloo::Objects> {
        match &self.objects {
            Objects::Gloo(o) => Some(o),
            Objects::GatewayApi(_) => None,
        }
    }

    /// The Gateway API backend's objects, when the router uses it.
    pub fn gateway_api(&self) -> Option<&gateway_api::Objects> {
        match &self.objects {
            Objects::GatewayApi(o) => Some(o),
            Objects::Gloo(_) => None,
        }
    }

    /// Every object, in the order `hostrouter render` prints them: Gloo's Proxy, ConfigMap,
    /// Service, Deployment, and the HorizontalPodAutoscaler and PodDisruptionBudget when set; or the Gateway, then the HTTPRoutes by namespace and name.
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>, RenderError> {
        let value = |kind, v: Result<serde_json::Value, serde_json::Error>| {
            v.map_err(|e| RenderError::serialize(kind, e))
        };
        match &self.objects {
            Objects::Gloo(o) => {
                let mut values = vec![
                    value("Proxy", serde_json::to_value(&o.proxy))?,
                    value("ConfigMap", serde_json::to_value(&o.config_map))?,
                    value("Service", serde_json::to_value(&o.service))?,
                    value("Deployment", serde_json::to_value(&o.deployment))?,
                ];
                if let Some(hpa) = &o.autoscaler {
                    values.push(value("HorizontalPodAutoscaler", serde_json::to_value(hpa))?);
                }
                if let Some(pdb) = &o.disruption_budget {
                    values.push(value("PodDisruptionBudget", serde_json::to_value(pdb))?);
                }
                Ok(values)
            }
            Objects::GatewayApi(o) => o
                .gateway
                .iter()
                .map(|g| value("Gateway", serde_json::to_value(g)))
                .chain(
                    o.http_routes
                        .iter()
                        .map(|r| value("HTTPRoute", serde_json::to_value(r))),
                )
                .collect(),
        }
    }
}

/// Why a router cannot be rendered. Reported in status; never retried until the spec changes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{field} is invalid: {message}")]
    InvalidSelector {
        field: &'static str,
        message: String,
    },
    #[error("{field} is invalid: {message}")]
    InvalidTemplate {
        field: &'static str,
        message: String,
    },
    #[error("{field} is {value}, not a port number (1-65535)")]
    InvalidPort { field: &'static str, value: i32 },
    #[error("the HostRouter has no {0}")]
    MissingMetadata(&'static str),
    #[error("serialising the {kind}: {message}")]
    Serialize { kind: &'static str, message: String },
    #[error("two {kind}s would be named {name}; please report this as a bug")]
    DuplicateName { kind: &'static str, name: String },
}

impl RenderError {
    pub fn serialize(kind: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Serialize {
            kind,
            message: e.to_string(),
        }
    }
}

/// The Proxy a router claims: `spec.proxyNamespace` (or Gloo's namespace) and `spec.proxyName`.
pub fn proxy_ref(router: &HostRouter, settings: &Settings) -> ProxyRef {
    ProxyRef {
        namespace: router
            .spec
            .proxy_namespace
            .clone()
            .unwrap_or_else(|| settings.gloo_namespace.clone()),
        name: router.spec.proxy_name.clone(),
    }
}

/// What a render may reuse from the same router's previous render. It changes how long a render
/// takes, never what it returns: `render_with` gives the same output with an empty memo.
#[derive(Clone, Debug, Default)]
pub struct Memo {
    /// The settings of the render that left the memo: with others, it starts over (what the
    /// compressed pieces hold depends on them).
    pub settings: Option<Settings>,
    /// What routers with the same route table may share (see [`routes::sharing_key`]).
    pub shared: Shared,
    /// The compressed pieces of the router's last Proxy spec.
    pub proxy_pieces: gloo::compressed_spec::Pieces,
}

/// The part of a [`Memo`] that routers with the same route table may share (the operator
/// hands it from one to the next): the table, and the compressed pieces of the last Proxy
/// rendered from it.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    /// The last route table (see [`routes::Memo`]).
    pub routes: routes::Memo,
    /// The compressed pieces of the last Proxy spec of any router with this table.
    pub proxy_pieces: gloo::compressed_spec::Pieces,
}

/// Renders a router from scratch.
pub fn render(
    router: &HostRouter,
    view: &ClusterView<'_>,
    settings: &Settings,
) -> Result<Rendered, RenderError> {
    render_with(router, view, settings, &mut Memo::default())
}

/// Renders a router, reusing what `memo` holds of its previous render and leaving in it what
/// the next render may reuse.
pub fn render_with(
    router: &HostRouter,
    view: &ClusterView<'_>,
    settings: &Settings,
    memo: &mut Memo,
) -> Result<Rendered, RenderError> {
    if memo.settings.as_ref() != Some(settings) {
        *memo = Memo {
            settings: Some(settings.clone()),
            ..Memo::default()
        };
    }
    let namespace = router
        .metadata
        .namespace
        .as_deref()
        .ok_or(RenderError::MissingMetadata("namespace"))?;
    let name = router
        .metadata
        .name
        .as_deref()
        .ok_or(RenderError::MissingMetadata("name"))?;
    let spec = &router.spec;
    let namespace_selector =
        spec.namespace_selector
            .compile()
            .map_err(|message| RenderError::InvalidSelector {
                field: "spec.namespaceSelector",
                message,
            })?;
    let service_selector = spec
        .service_selector
        .as_ref()
        .map(|s| s.compile())
        .transpose()
        .map_err(|message| RenderError::InvalidSelector {
            field: "spec.serviceSelector",
            message,
        })?;
    let template = |field, text: &str| {
        Template::parse(text).map_err(|message| RenderError::InvalidTemplate { field, message })
    };
    let host_template = template(
        "spec.hosts.template",
        spec.hosts
            .as_ref()
            .map_or(crate::api::routing::DEFAULT_HOST_TEMPLATE, |h| h.template()),
    )?;
    let path_template = spec
        .paths
        .as_ref()
        .map(|p| template("spec.paths.template", p.template()))
        .transpose()?;

    let (table, findings) = routes::build(
        &routes::Input {
            router_namespace: namespace,
            spec,
            tenancy: &settings.tenancy,
            namespace_selector: &namespace_selector,
            service_selector: service_selector.as_ref(),
            host_template: &host_template,
            path_template: path_template.as_ref(),
        },
        view,
        &mut memo.shared.routes,
    )?;

    let proxy = proxy_ref(router, settings);
    let id = Identity {
        router_namespace: namespace,
        router_name: name,
        labels: naming::common_labels(&proxy.name, router.uid().as_deref()),
        owner: router.controller_owner_ref(&()),
        proxy: proxy.clone(),
    };
    let objects = match spec.gateway_api() {
        None => Objects::Gloo(Box::new(gloo::objects(
            &id,
            spec,
            &table,
            settings,
            gloo::compressed_spec::Known {
                own: &mut memo.proxy_pieces,
                shared: &mut memo.shared.proxy_pieces,
            },
        )?)),
        Some(backend) => {
            // No Proxy: nothing of a former Gloo router's pieces will be reused.
            memo.proxy_pieces = Default::default();
            Objects::GatewayApi(Box::new(gateway_api::objects(
                &id, spec, backend, &table, settings,
            )?))
        }
    };
    Ok(Rendered {
        objects,
        table,
        findings,
        proxy_ref: proxy,
    })
}

/// Sets [`naming::APPLIED_HASH_ANNOTATION`] to the SHA-256 of the object as rendered.
fn stamp<K: Resource + serde::Serialize>(obj: &mut K) -> Result<(), RenderError> {
    let hash = serde_json::to_vec(obj)
        .map(|bytes| format!("{:x}", Sha256::digest(bytes)))
        .map_err(|e| RenderError::serialize("object to hash", e))?;
    obj.meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(
            naming::APPLIED_HASH_ANNOTATION.to_owned(),
            hash.get(..16).unwrap_or(&hash).to_owned(),
        );
    Ok(())
}

/// `obj` with [`stamp`] applied.
fn stamped<K: Resource + serde::Serialize>(mut obj: K) -> Result<K, RenderError> {
    stamp(&mut obj)?;
    Ok(obj)
}

/// Who a generated object belongs to, and the labels it carries (built by [`render`]).
pub struct Identity<'a> {
    pub router_namespace: &'a str,
    pub router_name: &'a str,
    pub proxy: ProxyRef,
    pub labels: BTreeMap<String, String>,
    pub owner: Option<OwnerReference>,
}

impl Identity<'_> {
    /// `<namespace>/<name>` of the router.
    pub fn router_key(&self) -> String {
        format!("{}/{}", self.router_namespace, self.router_name)
    }

    /// Metadata of an object in the router's namespace, owned by the router.
    pub fn local_meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.router_namespace.to_owned()),
            labels: Some(self.labels.clone()),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests;
