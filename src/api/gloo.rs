//! The parts of Gloo's `gloo.solo.io/v1` `Proxy` that HostRouter writes and reads.
//!
//! Gloo ignores fields it does not know, so a misspelled field here would silently become wrong
//! routing. The shapes are therefore typed, serialised with Gloo's exact JSON names, and checked
//! against Gloo's full Proxy schema (v1.11) in the tests and the e2e suite.

use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

pub const GROUP: &str = "gloo.solo.io";
pub const VERSION: &str = "v1";
pub const KIND: &str = "Proxy";
pub const PLURAL: &str = "proxies";

/// Annotation that tells Gloo to read `spec.compressedSpec` instead of the plain spec.
pub const COMPRESS_ANNOTATION: &str = "gloo.solo.io/compress";

/// The API resource of Gloo's Proxy, for dynamic clients.
pub fn proxy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// `spec` of a Gloo Proxy, as HostRouter writes it: a view that borrows its strings from the
/// route table, made only to be serialised.
///
/// The fields of these types are declared in the order of their JSON names, so that serialising
/// them directly gives the same bytes as serialising their `serde_json::Value` (whose maps are
/// sorted): the Proxy is encoded without building a `Value` of it first (see
/// `render::gloo::proxy`; a test keeps the two equal).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec<'a> {
    pub listeners: Vec<Listener<'a>>,
}

/// The fields' order is the order of a compressed spec's JSON (a plain spec is stored with
/// sorted keys): the virtual hosts come first, so that routers with the same routes on other
/// ports write the same text up to their ends and share its compressed pieces.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Listener<'a> {
    pub http_listener: HttpListener<'a>,
    pub bind_address: &'a str,
    pub bind_port: u32,
    pub name: &'a str,
    /// TLS: one filter chain per entry, chosen by SNI. Empty for plain HTTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssl_configurations: Vec<SslConfiguration<'a>>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpListener<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<HttpListenerOptions>,
    pub virtual_hosts: Vec<VirtualHost<'a>>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpListenerOptions {
    pub http_connection_manager_settings: HttpConnectionManagerSettings,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpConnectionManagerSettings {
    /// Envoy's `strip_any_host_port`: `Host: a:8080` is routed (and redirected) as `Host: a`.
    pub strip_any_host_port: bool,
}

/// `ssl.proto` `SslConfig`: a certificate from a Kubernetes TLS Secret, for some SNI names.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SslConfiguration<'a> {
    /// Without it, a Secret that also carries `ca.crt` (cert-manager writes one) would make
    /// Gloo require client certificates.
    pub one_way_tls: bool,
    pub secret_ref: ResourceRef<'a>,
    pub sni_domains: &'a [String],
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHost<'a> {
    pub domains: &'a [String],
    pub name: &'a str,
    pub routes: Vec<Route<'a>>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Route<'a> {
    /// A route matches when any matcher does.
    pub matchers: Vec<Matcher<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<RouteOptions<'a>>,
    /// `redirectAction` or `routeAction`, after `options`.
    #[serde(flatten)]
    pub action: Action<'a>,
}

/// Exactly one of the fields is set.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum Matcher<'a> {
    /// Paths starting with this.
    Prefix(Cow<'a, str>),
    /// Exactly this path (the query string aside).
    Exact(&'a str),
}

/// What a route does; exactly one of the fields is set.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum Action<'a> {
    RouteAction(RouteAction<'a>),
    RedirectAction(RedirectAction),
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteAction<'a> {
    pub single: Destination<'a>,
}

/// `proxy.proto` `RedirectAction`.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedirectAction {
    pub https_redirect: bool,
    /// The port in `Location`; unset keeps the scheme's default (added in Gloo 1.17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_redirect: Option<u32>,
    /// `MOVED_PERMANENTLY` (301), `FOUND`, `SEE_OTHER`, `TEMPORARY_REDIRECT`, `PERMANENT_REDIRECT`.
    pub response_code: &'static str,
}

/// The response code of HostRouter's redirects: 301, understood by every client.
pub const MOVED_PERMANENTLY: &str = "MOVED_PERMANENTLY";

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteOptions<'a> {
    /// Replaces the matched prefix (or exact path) before the request is forwarded.
    pub prefix_rewrite: &'a str,
}

/// Exactly one of the fields is set.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum Destination<'a> {
    /// A Kubernetes Service port, resolved by Gloo without discovery.
    Kube(KubeDestination<'a>),
    /// A Gloo Upstream.
    Upstream(ResourceRef<'a>),
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubeDestination<'a> {
    pub port: u32,
    #[serde(rename = "ref")]
    pub ref_: ResourceRef<'a>,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ResourceRef<'a> {
    /// Borrowed, or made for the reference (an Upstream's name).
    pub name: Cow<'a, str>,
    pub namespace: &'a str,
}

/// Gloo's verdict on a Proxy, from `status.statuses.<gloo namespace>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Gloo has not written a status for this Proxy (yet).
    NotReported,
    Pending,
    Accepted,
    Warning(String),
    Rejected(String),
}

/// Reads the status Gloo wrote on a Proxy. Gloo writes `state` as a number (0 Pending,
/// 1 Accepted, 2 Rejected, 3 Warning); the names are accepted too.
pub fn verdict(proxy: &DynamicObject, gloo_namespace: &str) -> Verdict {
    let Some(status) = proxy
        .data
        .get("status")
        .and_then(|s| s.get("statuses"))
        .and_then(|s| s.get(gloo_namespace))
    else {
        return Verdict::NotReported;
    };
    let reason = status
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned();
    match status.get("state") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(1) => Verdict::Accepted,
            Some(2) => Verdict::Rejected(reason),
            Some(3) => Verdict::Warning(reason),
            _ => Verdict::Pending,
        },
        Some(Value::String(s)) => match s.as_str() {
            "Accepted" => Verdict::Accepted,
            "Rejected" => Verdict::Rejected(reason),
            "Warning" => Verdict::Warning(reason),
            _ => Verdict::Pending,
        },
        // protojson omits the zero value: a status without `state` is Pending.
        _ => Verdict::Pending,
    }
}

/// How long Gloo may take to report on a spec the operator wrote before `ProxyAccepted` says
/// Gloo is not reporting (rather than that it has not reported yet).
pub const REPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `proxy` as the operator writes it: with its status for Gloo's namespace set to `Pending`,
/// reported by `writer` at `now`.
///
/// Gloo writes its verdict only when it differs from the status the Proxy carries, so without
/// this a new spec that Gloo accepts like the previous one would never be reported on, and the
/// old `Accepted` could not be told from a verdict on the new spec (Gloo away, say). Written in
/// the same request as the spec, it says "not judged yet" until Gloo replaces it (Gloo replaces
/// its whole entry, so nothing of this one stays behind). The time is in `reason`, the one
/// free-text field of Gloo's status, so that Gloo reads the entry like one of its own.
pub fn awaiting_verdict(
    proxy: &DynamicObject,
    gloo_namespace: &str,
    writer: &str,
    now: Timestamp,
) -> DynamicObject {
    let mut body = proxy.clone();
    if let Some(data) = body.data.as_object_mut() {
        data.insert(
            "status".to_owned(),
            serde_json::json!({ "statuses": { gloo_namespace: {
                "state": "Pending",
                "reportedBy": writer,
                "reason": format!("{WRITTEN_AT}{now}"),
            }}}),
        );
    }
    body
}

const WRITTEN_AT: &str = "spec written, not yet judged by Gloo; written at ";

/// Gloo's verdict on the Proxy at `now`: a status the operator wrote with the spec
/// ([`awaiting_verdict`]) is `Pending` for [`REPORT_GRACE`], then `NotReported` (Gloo is not
/// processing this Proxy: down, watching another namespace, or not persisting Proxy specs).
pub fn verdict_at(
    proxy: &DynamicObject,
    gloo_namespace: &str,
    writer: &str,
    now: Timestamp,
) -> Verdict {
    let ours = proxy.data["status"]["statuses"][gloo_namespace]
        .get("reportedBy")
        .is_some_and(|r| r == writer);
    if !ours {
        return verdict(proxy, gloo_namespace);
    }
    let written = proxy.data["status"]["statuses"][gloo_namespace]["reason"]
        .as_str()
        .and_then(|r| r.strip_prefix(WRITTEN_AT))
        .and_then(|t| t.parse::<Timestamp>().ok());
    match written {
        Some(t) if now.duration_since(t).unsigned_abs() <= REPORT_GRACE => Verdict::Pending,
        _ => Verdict::NotReported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_proxy_as_written_awaits_gloos_verdict_for_a_while() {
        let mut p = proxy_with_status(
            json!({"statuses": {"gloo-system": {"state": 1}, "other": {"state": 1}}}),
        );
        p.data["spec"] = json!({"listeners": []});
        let t0: Timestamp = "2026-11-30T04:00:00Z".parse().unwrap();
        let written = awaiting_verdict(&p, "gloo-system", "hostrouter", t0);
        assert_eq!(written.data["spec"], p.data["spec"]);
        let at = |o: &DynamicObject, secs: i64| {
            let now = t0 + k8s_openapi::jiff::SignedDuration::from_secs(secs);
            verdict_at(o, "gloo-system", "hostrouter", now)
        };
        assert_eq!(at(&written, 0), Verdict::Pending);
        assert_eq!(at(&written, 10), Verdict::Pending);
        assert_eq!(at(&written, 11), Verdict::NotReported);
        // Gloo's own entry is read as it is.
        assert_eq!(at(&p, 99), Verdict::Accepted);
    }

    fn proxy_with_status(status: Value) -> DynamicObject {
        let mut p = DynamicObject::new("p", &proxy_resource());
        p.data = json!({ "spec": {}, "status": status });
        p
    }

    #[test]
    fn destinations_serialise_with_gloo_field_names() {
        let kube = Destination::Kube(KubeDestination {
            ref_: ResourceRef {
                name: "petstore".into(),
                namespace: "default",
            },
            port: 8080,
        });
        assert_eq!(
            serde_json::to_value(&kube).unwrap(),
            json!({"kube": {"ref": {"name": "petstore", "namespace": "default"}, "port": 8080}})
        );
        let up = Destination::Upstream(ResourceRef {
            name: "default-petstore-8080".into(),
            namespace: "gloo-system",
        });
        assert_eq!(
            serde_json::to_value(&up).unwrap(),
            json!({"upstream": {"name": "default-petstore-8080", "namespace": "gloo-system"}})
        );
    }

    #[test]
    fn verdict_reads_numeric_and_named_states() {
        let ns = "gloo-system";
        assert_eq!(
            verdict(&proxy_with_status(json!({})), ns),
            Verdict::NotReported
        );
        let st = |s: Value| proxy_with_status(json!({"statuses": {"gloo-system": s}}));
        assert_eq!(
            verdict(&st(json!({"state": 1, "reportedBy": "gloo"})), ns),
            Verdict::Accepted
        );
        assert_eq!(
            verdict(&st(json!({"reportedBy": "gloo"})), ns),
            Verdict::Pending
        );
        assert_eq!(
            verdict(&st(json!({"state": 2, "reason": "bad route\n"})), ns),
            Verdict::Rejected("bad route".into())
        );
        assert_eq!(
            verdict(&st(json!({"state": "Warning", "reason": "w"})), ns),
            Verdict::Warning("w".into())
        );
        // A status from another Gloo installation is not ours to read.
        assert_eq!(
            verdict(
                &proxy_with_status(json!({"statuses": {"other": {"state": 1}}})),
                ns
            ),
            Verdict::NotReported
        );
    }
}
