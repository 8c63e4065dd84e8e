//! The Gloo Proxy: the route table, translated into Gloo's vocabulary. Decides nothing about
//! what is routed; see `render::routes`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde_json::json;
use serde_json::value::RawValue;

use crate::api::gloo::{
    self, Destination, HttpConnectionManagerSettings, HttpListener, HttpListenerOptions,
    KubeDestination, Matcher, ProxySpec, RedirectAction, ResourceRef, RouteAction, RouteOptions,
    SslConfiguration,
};
use crate::api::hostrouter;
use crate::render::naming::{self, ROUTER_ANNOTATION, SHARD_LABEL};
use crate::render::routes::{self, Action, Backend, PathPrefix, RouteTable};
use crate::render::{Identity, RenderError, Settings};

use super::compressed_spec;

/// The Proxy, whether its spec was compressed, and how many virtual hosts were encoded (the
/// others were encoded by an earlier render, see [`routes::Encoded`]). `pieces` holds the
/// compressed pieces of the router's previous Proxy (see [`compressed_spec`]); they change the
/// time taken, not the output.
pub fn proxy(
    id: &Identity<'_>,
    table: &RouteTable,
    destination: hostrouter::Destination,
    settings: &Settings,
    pieces: &mut compressed_spec::Pieces,
) -> Result<(DynamicObject, bool, usize), RenderError> {
    let translate = Translate {
        destination,
        proxy_namespace: &id.proxy.namespace,
    };
    let mut encoded_hosts = 0;
    let mut listeners = Vec::with_capacity(table.listeners.len());
    for l in &table.listeners {
        let mut hosts = Vec::with_capacity(l.virtual_hosts.len());
        for vh in &l.virtual_hosts {
            let (text, now) = vh.encoded.get_or_encode(|| {
                serde_json::value::to_raw_value(&translate.virtual_host(vh))
                    .map_err(|e| RenderError::serialize("Proxy", e))
            })?;
            encoded_hosts += usize::from(now);
            hosts.push(text);
        }
        listeners.push(translate.listener(l, hosts));
    }
    let proxy_spec = ProxySpec { listeners };
    let mut annotations = BTreeMap::from([(ROUTER_ANNOTATION.to_owned(), id.router_key())]);
    // The same bytes as the spec's `Value` would give (see `ProxySpec`), without building it:
    // at 10,000 virtual hosts building, encoding and dropping a `Value` was most of the render.
    // Sized like the last spec: growing the buffer by doubling copied it and held up to three
    // times its size at once.
    let mut encoded = Vec::with_capacity(pieces.text_len() + pieces.text_len() / 64);
    serde_json::to_writer(&mut encoded, &proxy_spec)
        .map_err(|e| RenderError::serialize("Proxy", e))?;
    drop(proxy_spec);
    let (spec_value, compressed) = if encoded.len() > settings.compress_proxy_above_bytes {
        annotations.insert(gloo::COMPRESS_ANNOTATION.to_owned(), "true".to_owned());
        let zlib = compressed_spec::zlib(&encoded, settings.compress_piece_hosts, pieces)?;
        let base64 = base64::engine::general_purpose::STANDARD.encode(zlib);
        (json!({ "compressedSpec": base64 }), true)
    } else {
        *pieces = compressed_spec::Pieces::uncompressed(encoded.len());
        let plain =
            serde_json::from_slice(&encoded).map_err(|e| RenderError::serialize("Proxy", e))?;
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
    Ok((obj, compressed, encoded_hosts))
}

/// Route table → Gloo, for one router: a view of the table in Gloo's shapes that borrows its
/// strings.
struct Translate<'a> {
    destination: hostrouter::Destination,
    proxy_namespace: &'a str,
}

impl<'a> Translate<'a> {
    /// The listener, its virtual hosts already encoded (`hosts`, in the listener's order).
    fn listener<'l>(
        &self,
        l: &'l routes::Listener,
        hosts: Vec<&'l RawValue>,
    ) -> gloo::Listener<'l> {
        gloo::Listener {
            name: l.name,
            bind_address: &l.bind_address,
            bind_port: u32::from(l.port),
            http_listener: HttpListener {
                virtual_hosts: hosts,
                options: l.strip_host_port.then_some(HttpListenerOptions {
                    http_connection_manager_settings: HttpConnectionManagerSettings {
                        strip_any_host_port: true,
                    },
                }),
            },
            ssl_configurations: l
                .certificates
                .iter()
                .map(|c| SslConfiguration {
                    secret_ref: ResourceRef {
                        name: Cow::Borrowed(&c.secret_name),
                        namespace: &c.secret_namespace,
                    },
                    sni_domains: &c.server_names,
                    one_way_tls: true,
                })
                .collect(),
        }
    }

    fn virtual_host<'v>(&self, vh: &'v routes::VirtualHost) -> gloo::VirtualHost<'v>
    where
        'a: 'v,
    {
        gloo::VirtualHost {
            name: vh.name(),
            domains: &vh.domains,
            routes: vh.routes.iter().map(|r| self.route(r)).collect(),
        }
    }

    fn route(&self, r: &'a routes::Route) -> gloo::Route<'a> {
        let (action, options) = match &r.action {
            Action::Forward {
                backend,
                replace_prefix,
            } => (
                gloo::Action::RouteAction(RouteAction {
                    single: self.destination(backend),
                }),
                replace_prefix
                    .as_deref()
                    .map(|p| RouteOptions { prefix_rewrite: p }),
            ),
            Action::RedirectToHttps { port } => (
                gloo::Action::RedirectAction(RedirectAction {
                    https_redirect: true,
                    port_redirect: port.map(u32::from),
                    response_code: gloo::MOVED_PERMANENTLY,
                }),
                None,
            ),
        };
        gloo::Route {
            matchers: matchers(&r.path),
            action,
            options,
        }
    }

    fn destination(&self, b: &'a Backend) -> Destination<'a> {
        match self.destination {
            hostrouter::Destination::Kube => Destination::Kube(KubeDestination {
                ref_: ResourceRef {
                    name: Cow::Borrowed(&b.service),
                    namespace: &b.namespace,
                },
                port: u32::from(b.port),
            }),
            hostrouter::Destination::Upstream => Destination::Upstream(ResourceRef {
                name: Cow::Owned(naming::gloo_upstream_name(&b.namespace, &b.service, b.port)),
                namespace: self.proxy_namespace,
            }),
        }
    }
}

/// Gloo has no segment-aware prefix: `/a/b` becomes the exact path `/a/b` or the prefix `/a/b/`
/// (a rewrite then replaces either with its value); `/` stays one prefix.
fn matchers(path: &PathPrefix) -> Vec<Matcher<'_>> {
    if path.is_root() {
        vec![Matcher::Prefix(Cow::Borrowed(&path.0))]
    } else {
        vec![
            Matcher::Exact(&path.0),
            Matcher::Prefix(Cow::Owned(format!("{}/", path.0))),
        ]
    }
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
