//! The ConfigMap holding Envoy's bootstrap: ADS over gRPC to Gloo, keyed by the proxy's role.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::HostRouterSpec;
use crate::render::naming::{BOOTSTRAP_KEY, bootstrap_config_map_name};
use crate::render::{Identity, RenderError, Settings};

/// Name of the static cluster that reaches Gloo's xDS server.
pub const XDS_CLUSTER: &str = "gloo_xds";

/// The ConfigMap and the SHA-256 (hex) of the bootstrap it carries.
pub fn config_map(
    id: &Identity<'_>,
    spec: &HostRouterSpec,
    settings: &Settings,
) -> Result<(ConfigMap, String), RenderError> {
    let bootstrap = bootstrap_yaml(id, spec, settings)?;
    let hash = format!("{:x}", Sha256::digest(bootstrap.as_bytes()));
    let cm = ConfigMap {
        metadata: id.local_meta(bootstrap_config_map_name(&id.proxy.name)),
        data: Some(BTreeMap::from([(BOOTSTRAP_KEY.to_owned(), bootstrap)])),
        ..Default::default()
    };
    Ok((cm, hash))
}

/// Envoy's bootstrap as YAML. Envoy's node id is set per pod on the command line; the role in
/// the node metadata is what Gloo keys its configuration by.
pub fn bootstrap_yaml(
    id: &Identity<'_>,
    spec: &HostRouterSpec,
    settings: &Settings,
) -> Result<String, RenderError> {
    serde_yaml::to_string(&bootstrap(id, spec, settings))
        .map_err(|e| RenderError::serialize("Envoy bootstrap", e))
}

fn bootstrap(id: &Identity<'_>, spec: &HostRouterSpec, settings: &Settings) -> Value {
    let ads = json!({ "ads": {}, "resource_api_version": "V3" });
    json!({
        "node": {
            "id": id.proxy.name,
            "cluster": id.proxy.name,
            "metadata": { "role": format!("{}~{}", id.proxy.namespace, id.proxy.name) },
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                // Back to Gloo within 4 s of its return (Envoy's default backs off to 30 s);
                // meanwhile Envoy serves the last configuration it was given.
                "grpc_services": [{ "envoy_grpc": {
                    "cluster_name": XDS_CLUSTER,
                    "retry_policy": { "retry_back_off": { "base_interval": "0.25s", "max_interval": "4s" } },
                } }],
                "set_node_on_first_message_only": true,
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [{
                "name": XDS_CLUSTER,
                "type": "STRICT_DNS",
                "dns_lookup_family": "V4_PREFERRED",
                "connect_timeout": "5s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} },
                    },
                },
                "load_assignment": {
                    "cluster_name": XDS_CLUSTER,
                    "endpoints": [{
                        "lb_endpoints": [{
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": settings.xds_address,
                                        "port_value": settings.xds_port,
                                    },
                                },
                            },
                        }],
                    }],
                },
            }],
        },
        "admin": {
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": spec.admin_port() } },
        },
    })
}
