//! What routing reads of a Service, computed once when the Service changes: the controller
//! keeps one [`RoutedService`] per routable Service (fed by the Service watch), and a render
//! reads these instead of parsing every Service's ports and annotations again.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::jiff::Timestamp;

use super::claims::claiming_order;
use crate::render::naming::{
    EXCLUDE_ANNOTATION, HOSTNAMES_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PORT_ANNOTATION,
};

/// A Service that gets routes, reduced to what routing reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedService {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// `None` for an object without one (offline input): it sorts after dated ones.
    pub created: Option<Timestamp>,
    /// For a router's service selector.
    pub labels: Option<BTreeMap<String, String>>,
    /// The distinct plain-HTTP-capable TCP ports by number, ascending; not those that speak
    /// TLS (`appProtocol: https`, or a name `https` or `https-*`).
    pub ports: Box<[NamedPort]>,
    /// The number of the port reached when a template names no port: the one the
    /// `hostrouter.io/port` annotation names, else the port named `http`, else the lowest;
    /// `Err` carries the annotation's value when it names no TCP port.
    pub primary: Result<Option<u16>, Box<str>>,
    /// The names in the `hostrouter.io/hostnames` annotation: comma-separated, trimmed,
    /// lowercased, in order, without repeats.
    pub extra_hostnames: Box<[Box<str>]>,
}

/// A TCP port of a Service, as the record keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub number: u16,
    /// `None` for an unnamed port (allowed when the Service has one port).
    pub name: Option<Box<str>>,
}

/// A TCP port of a Service, borrowed from its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port<'a> {
    pub number: u16,
    pub name: Option<&'a str>,
}

impl RoutedService {
    /// The record of `svc`, or `None` when it gets no routes from any router: an ExternalName
    /// Service, one excluded by the `hostrouter.io/exclude: "true"` annotation, an Envoy
    /// Service HostRouter generated (routing the edge to itself would loop), or an object
    /// without a name or namespace.
    pub fn of(svc: &Service) -> Option<Self> {
        let meta = &svc.metadata;
        let namespace = meta.namespace.as_deref()?;
        let name = meta.name.as_deref()?;
        let external = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        let excluded = annotation(svc, EXCLUDE_ANNOTATION).is_some_and(is_true);
        let generated = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .map(String::as_str)
            == Some(MANAGED_BY_VALUE);
        if external || excluded || generated {
            return None;
        }
        let ports = tcp_ports(svc);
        let primary = primary_port(annotation(svc, PORT_ANNOTATION), &ports);
        Some(Self {
            namespace: namespace.into(),
            name: name.into(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            labels: meta.labels.clone().filter(|l| !l.is_empty()),
            ports,
            primary,
            extra_hostnames: extra_hostnames(annotation(svc, HOSTNAMES_ANNOTATION)),
        })
    }

    /// The records of the routable ones of `services`, as a cluster view holds them.
    pub fn all<'a>(services: impl IntoIterator<Item = &'a Service>) -> Records {
        Records::new(
            services
                .into_iter()
                .filter_map(Self::of)
                .map(Arc::new)
                .collect(),
        )
    }

    /// The TCP ports, ascending by number.
    pub fn ports(&self) -> impl Iterator<Item = Port<'_>> + Clone {
        self.ports.iter().map(|p| Port {
            number: p.number,
            name: p.name.as_deref(),
        })
    }

    /// The port reached when a template names no port; `Err` with the annotation's value when
    /// the `hostrouter.io/port` annotation names no TCP port of the Service.
    pub fn primary_port(&self) -> Result<Option<Port<'_>>, &str> {
        match &self.primary {
            Ok(number) => Ok(number.and_then(|n| self.ports().find(|p| p.number == n))),
            Err(value) => Err(value),
        }
    }
}

/// Records of routed Services in claiming order (see [`claiming_order`]), shared: kept sorted
/// where they are kept (the Service watch's cache, one insert or removal per change), handed
/// to a render without a copy, and compared with the records of the last render by identity.
#[derive(Clone, Debug, Default)]
pub struct Records(Arc<Vec<Arc<RoutedService>>>);

impl Records {
    /// The records, put in claiming order.
    pub fn new(mut records: Vec<Arc<RoutedService>>) -> Self {
        records.sort_unstable_by(|a, b| claiming_order(a, b));
        Self(Arc::new(records))
    }

    /// Adds a record in its place (copies the list if a render holds it).
    pub fn insert(&mut self, record: Arc<RoutedService>) {
        let records = Arc::make_mut(&mut self.0);
        let at = records.partition_point(|r| claiming_order(r, &record).is_lt());
        records.insert(at, record);
    }

    /// Takes out the record of the Service `record` is one of (same namespace, name and
    /// creation time), and returns it.
    pub fn remove(&mut self, record: &RoutedService) -> Option<Arc<RoutedService>> {
        let at = self.position(record)?;
        Some(Arc::make_mut(&mut self.0).remove(at))
    }

    /// Where the record of the Service `record` is one of lies.
    fn position(&self, record: &RoutedService) -> Option<usize> {
        let at = self
            .0
            .partition_point(|r| claiming_order(r, record).is_lt());
        self.0
            .get(at)
            .is_some_and(|r| claiming_order(r, record).is_eq())
            .then_some(at)
    }

    /// Whether both are the very same records (a copy of a handle, not equal contents).
    pub fn same(&self, other: &Records) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Arc<RoutedService>> {
        self.0.iter()
    }
}

fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn is_true(value: &str) -> bool {
    value.eq_ignore_ascii_case("true")
}

/// The distinct plain-HTTP-capable TCP ports of a Service by number (an unset protocol means
/// TCP), ascending. Skipped: numbers outside 1–65535 (which the API server refuses), and ports
/// that speak TLS ([`speaks_tls`]): Envoy would send them plain HTTP.
fn tcp_ports(svc: &Service) -> Box<[NamedPort]> {
    let mut ports: Vec<NamedPort> = Vec::new();
    for p in svc.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
        let tcp = p.protocol.as_deref().is_none_or(|proto| proto == "TCP") && !speaks_tls(p);
        let Some(number) = u16::try_from(p.port).ok().filter(|n| *n > 0) else {
            continue;
        };
        if tcp && !ports.iter().any(|known| known.number == number) {
            ports.push(NamedPort {
                number,
                name: p.name.as_deref().filter(|n| !n.is_empty()).map(Into::into),
            });
        }
    }
    ports.sort_by_key(|p| p.number);
    ports.into_boxed_slice()
}

/// Whether a Service port expects TLS from its clients: `appProtocol: https`, or (without an
/// `appProtocol`) a name `https` or `https-*`, the convention Istio and the API server's own
/// `default/kubernetes` Service follow. HostRouter routes plain HTTP to its backends, so such
/// ports are not routed rather than sent requests they would refuse.
fn speaks_tls(port: &ServicePort) -> bool {
    match port.app_protocol.as_deref() {
        Some(app) => app.eq_ignore_ascii_case("https"),
        None => port
            .name
            .as_deref()
            .is_some_and(|n| n == "https" || n.starts_with("https-")),
    }
}

/// The port a Service is reached on when a template names no port: the one its
/// `hostrouter.io/port` annotation names (a number or a name), else the port named `http`,
/// else the lowest TCP port. `Err` carries the annotation's value when it names no TCP port:
/// the Service asked for a port it does not have, and routing another would surprise it.
fn primary_port(annotation: Option<&str>, ports: &[NamedPort]) -> Result<Option<u16>, Box<str>> {
    if let Some(wanted) = annotation.map(str::trim) {
        return ports
            .iter()
            .find(|p| p.name.as_deref() == Some(wanted) || p.number.to_string() == wanted)
            .map(|p| Some(p.number))
            .ok_or_else(|| wanted.into());
    }
    Ok(ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .or_else(|| ports.first())
        .map(|p| p.number))
}

/// The names of a `hostrouter.io/hostnames` annotation: comma-separated, trimmed, lowercased,
/// in order, without repeats.
fn extra_hostnames(listed: Option<&str>) -> Box<[Box<str>]> {
    let mut out: Vec<Box<str>> = Vec::new();
    for name in listed.into_iter().flat_map(|v| v.split(',')) {
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() && !out.iter().any(|known| **known == *name) {
            out.push(name.into());
        }
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::service as svc;

    fn with_annotation(mut s: Service, key: &str, value: &str) -> Service {
        s.metadata
            .annotations
            .get_or_insert_default()
            .insert(key.to_owned(), value.to_owned());
        s
    }

    #[test]
    fn external_name_excluded_and_generated_services_get_no_record() {
        let mut external = svc("one", "ext", &[(80, "", "")], 1);
        external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        let excluded = with_annotation(
            svc("one", "skip", &[(80, "", "")], 1),
            EXCLUDE_ANNOTATION,
            "True",
        );
        let kept = with_annotation(
            svc("one", "keep", &[(80, "", "")], 1),
            EXCLUDE_ANNOTATION,
            "false",
        );
        let mut generated = svc("one", "edge", &[(8080, "", "")], 1);
        generated.metadata.labels =
            Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into());
        let records = RoutedService::all([&external, &excluded, &kept, &generated]);
        let names: Vec<&str> = records.iter().map(|r| &*r.name).collect();
        assert_eq!(names, ["keep"]);
    }

    #[test]
    fn tcp_ports_are_distinct_and_ascending() {
        let s = svc(
            "a",
            "dns",
            &[
                (53, "dns-udp", "UDP"),
                (9153, "metrics", ""),
                (53, "dns", "TCP"),
                (7, "x", "SCTP"),
            ],
            1,
        );
        let r = RoutedService::of(&s).unwrap();
        let ports: Vec<(u16, Option<&str>)> = r.ports().map(|p| (p.number, p.name)).collect();
        assert_eq!(ports, [(53, Some("dns")), (9153, Some("metrics"))]);
    }

    #[test]
    fn ports_that_speak_tls_are_not_routed_as_plain_http() {
        let mut s = svc(
            "default",
            "kubernetes",
            &[
                (443, "https", ""),
                (8443, "https-admin", ""),
                (8080, "web", ""),
                (9443, "grpc", ""),
            ],
            1,
        );
        if let Some(ports) = s.spec.as_mut().and_then(|s| s.ports.as_mut()) {
            ports[3].app_protocol = Some("HTTPS".into());
            ports[2].app_protocol = Some("http".into());
        }
        let routed: Vec<u16> = RoutedService::of(&s)
            .unwrap()
            .ports()
            .map(|p| p.number)
            .collect();
        assert_eq!(routed, [8080]);
    }

    #[test]
    fn primary_port_annotation_then_http_then_lowest() {
        let s = svc(
            "a",
            "web",
            &[(9090, "admin", ""), (8080, "http", ""), (80, "", "")],
            1,
        );
        let pick = |s: &Service| {
            let r = RoutedService::of(s).unwrap();
            r.primary_port()
                .map(|p| p.map(|p| p.number))
                .map_err(str::to_owned)
        };
        assert_eq!(pick(&s), Ok(Some(8080)));
        let annotated = |v: &str| with_annotation(s.clone(), PORT_ANNOTATION, v);
        assert_eq!(pick(&annotated("admin")), Ok(Some(9090)));
        assert_eq!(pick(&annotated(" 80 ")), Ok(Some(80)));
        assert_eq!(pick(&annotated("grpc")), Err("grpc".to_string()));
        let lowest = svc("a", "web", &[(9090, "admin", ""), (8081, "metrics", "")], 1);
        assert_eq!(pick(&lowest), Ok(Some(8081)));
        let none = svc("a", "dns", &[(53, "dns", "UDP")], 1);
        assert_eq!(pick(&none), Ok(None));
    }

    #[test]
    fn extra_hostnames_are_trimmed_lowercased_and_unique_in_order() {
        let s = with_annotation(
            svc("a", "web", &[(80, "", "")], 1),
            HOSTNAMES_ANNOTATION,
            " Shop.example.com,,www.example.com , shop.example.com",
        );
        let r = RoutedService::of(&s).unwrap();
        let names: Vec<&str> = r.extra_hostnames.iter().map(|n| &**n).collect();
        assert_eq!(names, ["shop.example.com", "www.example.com"]);
    }
}
