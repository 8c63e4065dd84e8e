//! Which certificate serves which SNI names, and which certificates cannot be used.
//!
//! Each certificate serves the DNS names of its certificate, in the order of `spec.tls`; a name
//! an earlier certificate already serves is not served again (Envoy refuses a listener whose
//! filter chains match the same name twice, and Gloo would then reject the whole Proxy). A
//! Secret that is missing, of another type or unusable is left out and reported, so that it
//! never takes down routes that do not need it.

use std::collections::BTreeMap;
use std::fmt;

use super::Certificate;
use crate::api::routing::TlsSpec;
use crate::render::ClusterView;
use crate::render::tls_secret::TlsSecretState;

/// A certificate of `spec.tls` that is not used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The Secret's name (in the router's namespace).
    pub secret: String,
    pub kind: ProblemKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// No `kubernetes.io/tls` Secret of that name is known.
    NotFound,
    /// The Secret exists with another type (`None`: known from its metadata alone).
    WrongType(Option<String>),
    /// The certificate or key cannot be served: why.
    Invalid(String),
    /// Every name of the certificate is served by earlier certificates: which.
    Redundant(Vec<String>),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.secret;
        match &self.kind {
            ProblemKind::NotFound => write!(f, "Secret {s} does not exist"),
            ProblemKind::WrongType(Some(t)) => {
                write!(f, "Secret {s} has type {t}, not kubernetes.io/tls")
            }
            ProblemKind::WrongType(None) => {
                write!(f, "Secret {s} exists but is not of type kubernetes.io/tls")
            }
            ProblemKind::Invalid(why) => write!(f, "Secret {s} cannot be served: {why}"),
            ProblemKind::Redundant(by) => write!(
                f,
                "Secret {s} adds no name: each of its DNS names is served by {}",
                by.join(", ")
            ),
        }
    }
}

/// The certificates of the HTTPS listener, in spec order, and the problems of the others.
pub fn resolve(
    tls: &TlsSpec,
    namespace: &str,
    view: &ClusterView<'_>,
) -> (Vec<Certificate>, Vec<Problem>) {
    let mut served: BTreeMap<String, &str> = BTreeMap::new();
    let mut certificates = Vec::new();
    let mut problems = Vec::new();
    for reference in &tls.certificates {
        let name = reference.secret_name.as_str();
        let problem = |kind| Problem {
            secret: name.to_owned(),
            kind,
        };
        let found = view.tls_secrets.iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata.name.as_deref() == Some(name)
        });
        let dns_names = match found.map(|s| &s.state) {
            None => {
                problems.push(problem(ProblemKind::NotFound));
                continue;
            }
            Some(TlsSecretState::WrongType(t)) => {
                problems.push(problem(ProblemKind::WrongType(Some(t.clone()))));
                continue;
            }
            Some(TlsSecretState::Invalid(why)) => {
                problems.push(problem(ProblemKind::Invalid(why.clone())));
                continue;
            }
            Some(TlsSecretState::Usable { dns_names }) => dns_names,
        };
        let mut fresh = Vec::new();
        let mut taken_by = Vec::new();
        for dns in dns_names {
            match served.get(dns.as_str()) {
                Some(by) => taken_by.push((*by).to_owned()),
                None => fresh.push(dns.clone()),
            }
        }
        if fresh.is_empty() {
            taken_by.sort();
            taken_by.dedup();
            problems.push(problem(ProblemKind::Redundant(taken_by)));
            continue;
        }
        for dns in &fresh {
            served.insert(dns.clone(), name);
        }
        fresh.sort();
        certificates.push(Certificate {
            secret_namespace: namespace.to_owned(),
            secret_name: name.to_owned(),
            server_names: fresh,
        });
    }
    (certificates, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routing::CertificateRef;
    use crate::render::tls_secret::TlsSecret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cached(namespace: &str, name: &str, state: TlsSecretState) -> TlsSecret {
        TlsSecret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            state,
        }
    }

    fn usable(names: &[&str]) -> TlsSecretState {
        TlsSecretState::Usable {
            dns_names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn spec(names: &[&str]) -> TlsSpec {
        TlsSpec {
            port: None,
            certificates: names
                .iter()
                .map(|n| CertificateRef {
                    secret_name: n.to_string(),
                })
                .collect(),
            redirect_http: false,
        }
    }

    #[test]
    fn each_name_is_served_by_the_first_certificate_that_has_it() {
        let secrets = [
            cached(
                "edge",
                "wild",
                usable(&["*.apps.example.com", "apps.example.com"]),
            ),
            cached(
                "edge",
                "shop",
                usable(&["apps.example.com", "shop.example.com"]),
            ),
            cached("edge", "dup", usable(&["shop.example.com"])),
            cached("other", "elsewhere", usable(&["x.example.com"])),
        ];
        let view = ClusterView {
            tls_secrets: secrets.iter().collect(),
            ..Default::default()
        };
        let (certs, problems) =
            resolve(&spec(&["wild", "shop", "dup", "elsewhere"]), "edge", &view);
        let served: Vec<(&str, Vec<&str>)> = certs
            .iter()
            .map(|c| {
                (
                    c.secret_name.as_str(),
                    c.server_names.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            served,
            [
                ("wild", vec!["*.apps.example.com", "apps.example.com"]),
                ("shop", vec!["shop.example.com"]),
            ]
        );
        assert_eq!(
            problems,
            [
                Problem {
                    secret: "dup".into(),
                    kind: ProblemKind::Redundant(vec!["shop".into()])
                },
                Problem {
                    secret: "elsewhere".into(),
                    kind: ProblemKind::NotFound
                },
            ]
        );
    }

    #[test]
    fn unusable_secrets_are_reported_and_left_out() {
        let secrets = [
            cached("edge", "opaque", TlsSecretState::WrongType("Opaque".into())),
            cached("edge", "broken", TlsSecretState::Invalid("no key".into())),
        ];
        let view = ClusterView {
            tls_secrets: secrets.iter().collect(),
            ..Default::default()
        };
        let (certs, problems) = resolve(&spec(&["opaque", "broken", "gone"]), "edge", &view);
        assert!(certs.is_empty());
        let messages: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            messages,
            [
                "Secret opaque has type Opaque, not kubernetes.io/tls",
                "Secret broken cannot be served: no key",
                "Secret gone does not exist",
            ]
        );
    }
}
