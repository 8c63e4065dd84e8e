//! The Gloo Proxy: the route table, translated into Gloo's vocabulary. Decides nothing about
//! what is routed; see `render::routes`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::gloo::{
    self, Destination, HttpConnectionManagerSettings, HttpListener, HttpListenerOptions,
    KubeDestination, Matcher, ProxySpec, RedirectAction, ResourceRef, RouteAction, RouteOptions,
    SslConfiguration,
};
use crate::api::hostrouter;
use crate::render::naming::{self, ROUTER_ANNOTATION, SHARD_LABEL};
use crate::render::routes::{self, Action, Backend, PathPrefix, RouteTable, VirtualHost};
use crate::render::{Identity, RenderError, Settings};

use super::compressed_spec;

/// The Proxy, and whether its spec was compressed. `pieces` holds the compressed pieces of the
/// router's previous Proxy, and of the last Proxy of a router with the same route table (see
/// [`compressed_spec`]); they change the time taken, not the output.
///
/// A compressed spec is written piece by piece, and a piece is known by the virtual hosts it
/// holds (the route table's memo shares those that did not change) and the text around them:
/// only the pieces with a new virtual host are encoded and compressed again.
pub fn proxy(
    id: &Identity<'_>,
    table: &RouteTable,
    destination: hostrouter::Destination,
    settings: &Settings,
    pieces: compressed_spec::Known<'_>,
) -> Result<(DynamicObject, bool), RenderError> {
    let translate = Translate {
        destination,
        proxy_namespace: &id.proxy.namespace,
    };
    let serialize = |e| RenderError::serialize("Proxy", e);
    // The spec without its virtual hosts: the text around them.
    let skeleton = serde_json::to_vec(&ProxySpec {
        listeners: table
            .listeners
            .iter()
            .map(|l| translate.listener(l, false))
            .collect(),
    })
    .map_err(serialize)?;
    let parts = parts(&skeleton, table)?;
    let cuts = cuts(&parts, settings.compress_piece_hosts);
    let identities: Vec<[u8; 32]> = cuts
        .iter()
        .map(|c| identity(&translate, &parts[c.clone()]))
        .collect();
    let keys = compressed_spec::keys(&identities);
    let text = |i: usize| -> Result<Vec<u8>, RenderError> {
        let mut out = Vec::new();
        for part in &parts[cuts[i].clone()] {
            match part {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Host(vh) => serde_json::to_writer(&mut out, &translate.virtual_host(vh))
                    .map_err(serialize)?,
            }
        }
        Ok(out)
    };
    // The texts of the pieces not kept, and the length of the whole.
    let mut texts: Vec<Option<Vec<u8>>> = Vec::with_capacity(keys.len());
    let mut len = 0;
    for (i, key) in keys.iter().enumerate() {
        match pieces.len_of(key) {
            Some(kept) => {
                len += kept;
                texts.push(None);
            }
            None => {
                let t = text(i)?;
                len += t.len();
                texts.push(Some(t));
            }
        }
    }

    let mut annotations = BTreeMap::from([(ROUTER_ANNOTATION.to_owned(), id.router_key())]);
    let (spec_value, compressed) = if len > settings.compress_proxy_above_bytes {
        annotations.insert(gloo::COMPRESS_ANNOTATION.to_owned(), "true".to_owned());
        let holds = |i: usize| -> Vec<Arc<VirtualHost>> {
            parts[cuts[i].clone()]
                .iter()
                .filter_map(|p| match p {
                    Part::Host(vh) => Some(Arc::clone(vh)),
                    Part::Text(_) => None,
                })
                .collect()
        };
        let zlib = compressed_spec::zlib_of(
            &keys,
            |i| match texts.get_mut(i).and_then(Option::take) {
                Some(t) => Ok(t),
                None => text(i),
            },
            holds,
            pieces,
        )?;
        let base64 = base64::engine::general_purpose::STANDARD.encode(zlib);
        (json!({ "compressedSpec": base64 }), true)
    } else {
        // Small: written whole, as plain JSON.
        *pieces.own = compressed_spec::Pieces::uncompressed(len);
        let plain = serde_json::to_value(ProxySpec {
            listeners: table
                .listeners
                .iter()
                .map(|l| translate.listener(l, true))
                .collect(),
        })
        .map_err(serialize)?;
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
    Ok((obj, compressed))
}

/// Route table → Gloo, for one router: a view of the table in Gloo's shapes that borrows its
/// strings.
struct Translate<'a> {
    destination: hostrouter::Destination,
    proxy_namespace: &'a str,
}

impl<'a> Translate<'a> {
    /// The listener, with its virtual hosts or (`hosts` false) an empty list in their place.
    fn listener(&self, l: &'a routes::Listener, hosts: bool) -> gloo::Listener<'a> {
        gloo::Listener {
            name: l.name,
            bind_address: &l.bind_address,
            bind_port: u32::from(l.port),
            http_listener: HttpListener {
                virtual_hosts: match hosts {
                    true => l
                        .virtual_hosts
                        .iter()
                        .map(|vh| self.virtual_host(vh))
                        .collect(),
                    false => Vec::new(),
                },
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

    fn virtual_host(&self, vh: &'a routes::VirtualHost) -> gloo::VirtualHost<'a> {
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

/// A part of the spec's JSON: text, or a virtual host (encoded when its piece is).
enum Part<'a> {
    Text(&'a [u8]),
    Host(&'a Arc<VirtualHost>),
}

/// Where each listener's virtual hosts go in the spec without them (`skeleton`).
const HOSTS_OPEN: &[u8] = b"\"virtualHosts\":[";

/// The spec's JSON as text and virtual hosts in order: `skeleton` (the spec with empty lists
/// of virtual hosts, one per listener, in the table's order) with each list filled.
fn parts<'a>(skeleton: &'a [u8], table: &'a RouteTable) -> Result<Vec<Part<'a>>, RenderError> {
    let mut out = Vec::with_capacity(
        2 * table
            .listeners
            .iter()
            .map(|l| l.virtual_hosts.len())
            .sum::<usize>()
            + 2,
    );
    let mut opens = memchr::memmem::find_iter(skeleton, HOSTS_OPEN);
    let mut from = 0;
    for l in &table.listeners {
        // A listener's empty list is the first `"virtualHosts":[` after the last: no string
        // of the spec holds a quote unescaped.
        let at = opens
            .next()
            .filter(|&at| at >= from)
            .map(|at| at + HOSTS_OPEN.len())
            .ok_or_else(|| RenderError::serialize("Proxy", "a listener without virtualHosts"))?;
        out.push(Part::Text(&skeleton[from..at]));
        for (i, vh) in l.virtual_hosts.iter().enumerate() {
            if i > 0 {
                out.push(Part::Text(b","));
            }
            out.push(Part::Host(vh));
        }
        from = at;
    }
    out.push(Part::Text(&skeleton[from..]));
    Ok(out)
}

/// The pieces of `parts`, as ranges: a piece starts before a virtual host that is not the first
/// of its list and whose name [`compressed_spec::cuts_before`] chooses, as the text-based cut
/// before `},{"domains":["<name>`.
fn cuts(parts: &[Part<'_>], cut_every: std::num::NonZeroU64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, part) in parts.iter().enumerate() {
        if let Part::Host(vh) = part
            && i > 0
            && matches!(parts[i - 1], Part::Text(b","))
            && compressed_spec::cuts_before(vh.name().as_bytes(), cut_every)
        {
            out.push(start..i);
            start = i;
        }
    }
    out.push(start..parts.len());
    out
}

/// What identifies a piece's text: how virtual hosts are translated (the same virtual host is
/// other text with another destination form or Proxy namespace), its text parts, and the
/// addresses of its virtual hosts (each kept alive by the piece, see `compressed_spec`).
fn identity(translate: &Translate<'_>, parts: &[Part<'_>]) -> [u8; 32] {
    let mut h = Sha256::new();
    let destination: u8 = match translate.destination {
        hostrouter::Destination::Kube => 0,
        hostrouter::Destination::Upstream => 1,
    };
    h.update([destination]);
    h.update((translate.proxy_namespace.len() as u64).to_le_bytes());
    h.update(translate.proxy_namespace.as_bytes());
    for part in parts {
        match part {
            Part::Text(t) => {
                h.update([0]);
                h.update((t.len() as u64).to_le_bytes());
                h.update(t);
            }
            Part::Host(vh) => {
                h.update([1]);
                h.update((Arc::as_ptr(vh) as usize as u64).to_le_bytes());
            }
        }
    }
    h.finalize().into()
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
