//! The routing part of a HostRouter's spec: hostnames (`spec.hosts`), path-prefix routing
//! (`spec.paths`) and TLS (`spec.tls`). Every field is optional: a router that sets none of
//! them routes exactly as before, by `<namespace>-<service>-<port>` over plain HTTP.
//!
//! What the schema can check is checked here, at admission, with messages that name the
//! field; what only the cluster can tell (a generated name that is too long, a Secret that is
//! missing) is reported in the router's status and Events.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The hostname template of routers that do not set one: today's `<namespace>-<service>-<port>`.
pub const DEFAULT_HOST_TEMPLATE: &str = "{namespace}-{service}-{port}";
/// The path template of `spec.paths` when it sets none.
pub const DEFAULT_PATH_TEMPLATE: &str = "/{namespace}/{service}";
/// The HTTPS port when `spec.tls.port` is not set.
pub const DEFAULT_HTTPS_PORT: i32 = 8443;

/// A DNS name: lowercase labels of letters, digits and '-', starting and ending with a letter
/// or digit, at most 63 characters each, joined by '.'.
pub const DNS_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";

// The CEL rules below check templates the way `render::template` parses them; keep the two in
// step (a unit test renders the CRD and compares).

/// What a hostname template may contain.
const HOST_TEMPLATE_RULE: &str =
    r"self.matches('^([a-z0-9.-]|[{](namespace|service|port|portName)[}])+$')";
/// What a path template may contain: segments of unreserved characters and variables.
const PATH_TEMPLATE_RULE: &str =
    r"self.matches('^(/([a-z0-9._~-]|[{](namespace|service|port|portName)[}])+)+$')";
/// The longest name a template can produce: namespaces and Services have at most 63
/// characters, port names 15 and port numbers 5.
const HOST_TEMPLATE_LENGTH_RULE: &str = "self.replace('{namespace}', '123456789012345678901234567890123456789012345678901234567890123').replace('{service}', '123456789012345678901234567890123456789012345678901234567890123').replace('{portName}', '123456789012345').replace('{port}', '12345').size() <= 253";

/// How each routed Service is named, and which extra names Services may ask for.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostsSpec {
    /// Template of the hostname (the Host header, and the DNS name clients resolve) of each
    /// routed Service port. Variables: `{namespace}`, `{service}`, `{port}` (the port number)
    /// and `{portName}` (the port's name, or its number when it has none); everything else is
    /// taken literally. Example: `{service}.{namespace}.apps.example.com`.
    ///
    /// With `{port}` or `{portName}` every TCP port of a Service gets its own hostname.
    /// Without them each Service gets one hostname, for its primary port: the port named by
    /// the Service's `hostrouter.io/port` annotation (a number or a name), else the port named
    /// `http`, else its lowest TCP port; the other ports are not routed by this router.
    ///
    /// A generated name with a '.' must be a valid DNS name (labels of at most 63 characters);
    /// one that is not is left out, counted in `status.droppedHosts` and named in an
    /// `InvalidHostname` Warning Event. A name without a '.' is only a Host header.
    /// Defaults to `{namespace}-{service}-{port}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(
        validation = Rule::new(HOST_TEMPLATE_RULE).message("template may contain only lowercase letters, digits, '.', '-' and the variables {namespace}, {service}, {port} and {portName}"),
        validation = Rule::new("self.contains('{service}')").message("template must contain {service}, or every Service of a namespace would get the same hostname"),
        validation = Rule::new("!self.startsWith('.') && !self.endsWith('.') && !self.contains('..')").message("template must not start or end with '.', nor contain '..'"),
        validation = Rule::new(HOST_TEMPLATE_LENGTH_RULE).message("template can produce names longer than 253 characters (namespaces and Services may have 63 characters, port names 15)"),
    )]
    pub template: Option<String>,

    /// DNS suffixes under which Services may ask for extra hostnames with the annotation
    /// `hostrouter.io/hostnames: "shop.example.com, www.shop.example.com"`. A name is allowed
    /// when it lies strictly under one of these suffixes (`shop.example.com` is under
    /// `example.com`; `example.com` itself is not). A wildcard `*.<name>` is allowed when
    /// `<name>` is, so no Service can claim `*.example.com` for itself. Names that are not
    /// allowed are left out, counted in `status.droppedHosts` and named in a
    /// `HostnameNotAllowed` Warning Event. Empty (the default): no extra hostnames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 253), regex(pattern = DNS_NAME_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub allowed_suffixes: Vec<String>,
}

impl HostsSpec {
    /// The hostname template in effect.
    pub fn template(&self) -> &str {
        self.template.as_deref().unwrap_or(DEFAULT_HOST_TEMPLATE)
    }
}

/// Path-prefix routing: every routed Service also reachable under a path on one hostname.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathsSpec {
    /// The hostname the path routes are served on, e.g. `apps.example.com`. Unset: every
    /// Host that is not one of the Services' own hostnames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_NAME_PATTERN))]
    pub host: Option<String>,

    /// Template of each Service's path prefix. Variables as in `hosts.template`. The prefix is
    /// removed before the request reaches the Service: with the default `/{namespace}/{service}`,
    /// `/default/petstore/api/pets` reaches Service `default/petstore` as `/api/pets`, and
    /// `/default/petstore` as `/`; `/default/petstorefoo` is not petstore's. Without `{port}`
    /// or `{portName}` the prefix leads to the Service's primary port (see `hosts.template`).
    /// When two Services produce the same prefix the older Service keeps it; the other is
    /// counted in `status.droppedHosts` and named in a `DuplicateHost` Warning Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 512))]
    #[x_kube(
        validation = Rule::new(PATH_TEMPLATE_RULE).message("template must be '/'-separated segments of lowercase letters, digits, '.', '_', '~', '-' and the variables {namespace}, {service}, {port} and {portName}, with no trailing '/'"),
        validation = Rule::new("self.contains('{service}')").message("template must contain {service}, or every Service of a namespace would get the same path"),
    )]
    pub template: Option<String>,
}

impl PathsSpec {
    /// The path template in effect.
    pub fn template(&self) -> &str {
        self.template.as_deref().unwrap_or(DEFAULT_PATH_TEMPLATE)
    }
}

/// An HTTPS listener next to the plain one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// TCP port of the HTTPS listener and of the Service in front of Envoy. Defaults to 8443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// Certificates, as `kubernetes.io/tls` Secrets in the HostRouter's namespace (the kind
    /// cert-manager writes). Each serves the DNS names of its certificate (its
    /// subjectAltNames), chosen by the client's SNI; a name two certificates share is served by
    /// the first one listed. A Secret that is missing, not of type `kubernetes.io/tls`, or
    /// whose certificate or key cannot be used is left out and reported in the `ResolvedRefs`
    /// condition; routes that do not need it keep working. Without any usable certificate there
    /// is no HTTPS listener and no redirect.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["secretName"]))]
    pub certificates: Vec<CertificateRef>,

    /// Answer every plain-HTTP request with a permanent redirect (301) to the same host and
    /// path over HTTPS (with the HTTPS port when it is not 443), query kept, except paths
    /// under `/.well-known/acme-challenge/`, which keep reaching their Service so that ACME
    /// HTTP-01 challenges (cert-manager) still work. Only while the HTTPS listener has a usable
    /// certificate. Defaults to false: both listeners route.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redirect_http: bool,
}

impl TlsSpec {
    /// The HTTPS port in effect.
    pub fn port(&self) -> i32 {
        self.port.unwrap_or(DEFAULT_HTTPS_PORT)
    }
}

/// A certificate for the HTTPS listener.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRef {
    /// Name of a Secret of type `kubernetes.io/tls` in the HostRouter's namespace, with the
    /// certificate chain in `tls.crt` and its private key in `tls.key`.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_NAME_PATTERN))]
    pub secret_name: String,
}
