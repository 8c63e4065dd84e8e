//! The backend-neutral route table: what the edge must do, before any backend's vocabulary.
//!
//! `build` turns a router and the cluster view into listeners → virtual hosts → routes
//! (match, rewrite, redirect, destination) plus the TLS certificates of each listener, and
//! reports what it had to leave out on the way. A backend (today Gloo, see `render::gloo`)
//! only translates this table; it decides nothing about what is routed.
//!
//! - [`service`]: what routing reads of a Service (its ports, primary port, extra hostnames),
//!   computed once per Service change;
//! - [`select`]: which Services of which namespaces are routed;
//! - [`names`]: templates, the hostname rule, allowed extra hostnames;
//! - `asks`: which names a Service asks for; `claims`: who gets a name (the oldest who asks);
//! - [`Memo`]: the table kept between renders, updated with the Services that changed;
//! - [`certificates`]: which certificate serves which SNI names;
//! - `build`: the assembly: listeners, path routing, redirect.

mod asks;
mod build;
pub mod certificates;
mod claims;
mod memo;
pub mod names;
pub mod select;
pub mod service;

use std::borrow::Cow;
use std::sync::Arc;

pub use build::{Input, build};
pub use claims::claiming_order;
pub use memo::{Memo, sharing_key};

/// Name of the plain-HTTP listener (also the Envoy container's and Service's port name).
pub const HTTP: &str = "http";
/// Name of the HTTPS listener (also the Envoy container's and Service's port name).
pub const HTTPS: &str = "https";
/// Where ACME HTTP-01 challenges are answered; never redirected to HTTPS.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge";
/// The domain of a virtual host that answers every Host no other virtual host claims.
pub const ANY_HOST: &str = "*";

/// Everything the edge serves for one router.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// The plain-HTTP listener first, then the HTTPS listener when there is one.
    pub listeners: Vec<Listener>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// [`HTTP`] or [`HTTPS`].
    pub name: &'static str,
    pub bind_address: String,
    pub port: u16,
    /// Route `Host: name:port` like `Host: name`.
    pub strip_host_port: bool,
    /// Certificates by SNI; empty for plain HTTP.
    pub certificates: Vec<Certificate>,
    /// Sorted by name; shared with the render that produced them (see [`Memo`]).
    pub virtual_hosts: Vec<Arc<VirtualHost>>,
}

/// A certificate from a `kubernetes.io/tls` Secret and the SNI names it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub secret_namespace: String,
    pub secret_name: String,
    /// Sorted; no name is served by two certificates of a listener.
    pub server_names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualHost {
    /// Hostnames it answers (or [`ANY_HOST`]); unique across the listener. Never empty: the
    /// first names the virtual host.
    pub domains: Vec<String>,
    /// Tried in order; the first that matches answers.
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub path: PathPrefix,
    pub action: Action,
}

impl VirtualHost {
    /// Unique in the listener: its first domain.
    pub fn name(&self) -> &str {
        self.domains.first().map_or("", String::as_str)
    }
}

/// Matches a path that equals the prefix or continues it after a '/' (`/a/b` matches `/a/b`
/// and `/a/b/c`, not `/a/bc`); `/` matches every path. The Gateway API's `PathPrefix`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PathPrefix(pub Cow<'static, str>);

impl PathPrefix {
    pub fn root() -> Self {
        Self(Cow::Borrowed("/"))
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the request to a Service port, the matched prefix replaced by `replace_prefix`
    /// when set.
    Forward {
        backend: Backend,
        replace_prefix: Option<String>,
    },
    /// Answer with a permanent redirect (301) to the same host and path over HTTPS, on
    /// `port` (`None`: the scheme's default, 443), query kept.
    RedirectToHttps { port: Option<u16> },
}

/// A Service port in the cluster (its names shared with the Service's record).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub namespace: Arc<str>,
    pub service: Arc<str>,
    pub port: u16,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// What `build` found on the way: counts for the status, and what it left out and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Namespaces the namespace selector matched that the router may publish.
    pub namespaces: usize,
    /// Namespaces the selector matched that the router may not publish (the tenancy rule,
    /// `select::publishes`), sorted.
    pub namespaces_without_consent: Vec<String>,
    /// Services that are reachable through at least one virtual host or path.
    pub services: usize,
    /// Names and Services left out, sorted.
    pub dropped: Vec<Dropped>,
    /// Certificates of `spec.tls` that are not used, in spec order.
    pub certificate_problems: Vec<certificates::Problem>,
}

/// A hostname or path left out of the table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dropped {
    /// `<namespace>/<service>`, or `<namespace>/<service>:<port>` when the name was for a port.
    pub source: String,
    /// The hostname, path prefix or annotation value left out.
    pub name: String,
    pub reason: DropReason,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (source, name) = (&self.source, &self.name);
        match &self.reason {
            DropReason::Duplicate { kept } => write!(f, "{source} {name} (kept by {kept})"),
            DropReason::Invalid(why) => write!(f, "{source} {name} ({why})"),
            DropReason::NotAllowed => write!(f, "{source} {name}"),
            DropReason::PortNotFound => {
                write!(f, "{source} names port {name:?}, which it does not have")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// An older Service (or the router's own `spec.paths.host`) has the name: `kept` says which.
    Duplicate { kept: String },
    /// The generated name is not a valid hostname or path prefix: why.
    Invalid(String),
    /// An extra hostname outside the router's `spec.hosts.allowedSuffixes`.
    NotAllowed,
    /// The `hostrouter.io/port` annotation names no TCP port of the Service.
    PortNotFound,
}

impl DropReason {
    /// The reason of the Warning Event that names what was left out for this reason.
    pub fn event_reason(&self) -> &'static str {
        match self {
            Self::Duplicate { .. } => "DuplicateHost",
            Self::Invalid(_) => "InvalidHostname",
            Self::NotAllowed => "HostnameNotAllowed",
            Self::PortNotFound => "PortNotFound",
        }
    }
}

#[cfg(test)]
mod tests;
