//! The Gloo Proxy: one HTTP listener, one virtual host per Service port.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use flate2::Compression;
use flate2::write::ZlibEncoder;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde_json::json;

use super::hosts::Host;
use super::{Identity, Settings};
use crate::api::gloo::{
    self, Destination, HttpListener, KubeDestination, Listener, Matcher, ProxySpec, ResourceRef,
    Route, RouteAction, VirtualHost,
};
use crate::api::hostrouter::{self, HostRouterSpec};
use crate::render::naming::{self, ROUTER_ANNOTATION, SHARD_LABEL};

/// Name of the single listener in the Proxy.
pub const LISTENER_NAME: &str = "http";

/// The Proxy, and whether its spec was compressed.
pub fn proxy(
    id: &Identity<'_>,
    spec: &HostRouterSpec,
    hosts: &[Host],
    settings: &Settings,
) -> (DynamicObject, bool) {
    let proxy_spec = ProxySpec {
        listeners: vec![Listener {
            name: LISTENER_NAME.to_owned(),
            bind_address: spec.listener.bind_address.clone(),
            bind_port: port(spec.listener.port),
            http_listener: HttpListener {
                virtual_hosts: hosts
                    .iter()
                    .map(|h| virtual_host(h, spec.destination, &id.proxy.namespace))
                    .collect(),
            },
        }],
    };
    // Serialising these plain structs cannot fail; fall back to Null to stay panic-free.
    let plain = serde_json::to_value(&proxy_spec).unwrap_or_default();

    let mut annotations = BTreeMap::from([(ROUTER_ANNOTATION.to_owned(), id.router_key())]);
    let encoded = serde_json::to_vec(&plain).unwrap_or_default();
    let (spec_value, compressed) = if encoded.len() > settings.compress_proxy_above_bytes {
        annotations.insert(gloo::COMPRESS_ANNOTATION.to_owned(), "true".to_owned());
        (json!({ "compressedSpec": compress(&encoded) }), true)
    } else {
        (plain, false)
    };

    let mut obj =
        DynamicObject::new(&id.proxy.name, &gloo::proxy_resource()).within(&id.proxy.namespace);
    let mut labels = id.labels.clone();
    if let Some(shard) = &settings.shard {
        labels.insert(SHARD_LABEL.to_owned(), shard.clone());
    }
    obj.metadata = ObjectMeta {
        annotations: Some(annotations),
        labels: Some(labels),
        ..obj.metadata
    };
    obj.data = json!({ "spec": spec_value });
    (obj, compressed)
}

fn virtual_host(
    host: &Host,
    destination: hostrouter::Destination,
    proxy_namespace: &str,
) -> VirtualHost {
    let single = match destination {
        hostrouter::Destination::Kube => Destination::Kube(KubeDestination {
            ref_: ResourceRef {
                name: host.service.clone(),
                namespace: host.namespace.clone(),
            },
            port: port(host.port),
        }),
        hostrouter::Destination::Upstream => Destination::Upstream(ResourceRef {
            name: naming::gloo_upstream_name(&host.namespace, &host.service, host.port),
            namespace: proxy_namespace.to_owned(),
        }),
    };
    VirtualHost {
        name: host.domain.clone(),
        domains: vec![host.domain.clone()],
        routes: vec![Route {
            matchers: vec![Matcher {
                prefix: "/".to_owned(),
            }],
            route_action: RouteAction { single },
        }],
    }
}

/// Ports are validated to 1..=65535 by the schema and by Kubernetes.
fn port(p: i32) -> u32 {
    u32::try_from(p).unwrap_or_default()
}

/// Gloo's compressed form: base64 of the zlib-compressed JSON spec.
fn compress(json: &[u8]) -> String {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let bytes = enc
        .write_all(json)
        .and_then(|()| enc.finish())
        .unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Inverse of the compressed form, for reading a Proxy back (tests and `hostrouter render`).
pub fn decompress(encoded: &str) -> Result<serde_json::Value, String> {
    use std::io::Read;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("compressedSpec is not base64: {e}"))?;
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(bytes.as_slice())
        .read_to_end(&mut json)
        .map_err(|e| format!("compressedSpec is not zlib: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("compressedSpec is not JSON: {e}"))
}
