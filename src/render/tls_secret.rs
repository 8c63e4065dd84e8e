//! What the operator knows of a `kubernetes.io/tls` Secret: whether its certificate and key
//! can be served, and the DNS names of the certificate. Never the private key: [`summarize`]
//! reads `tls.crt` and `tls.key` once, checks them, and keeps only this summary.
//!
//! The check is the one Gloo makes before it serves a Secret (Go's `tls.X509KeyPair`: PEM
//! certificates, a PEM private key, and a key that belongs to the first certificate); a
//! Secret failing it would make Gloo reject the whole Proxy, so the operator leaves such a
//! certificate out instead.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The Secret type cert-manager writes and Gloo serves.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
pub const CERT_KEY: &str = "tls.crt";
pub const PRIVATE_KEY_KEY: &str = "tls.key";

/// A Secret as the operator caches it.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsSecret {
    /// Name, namespace, uid and resourceVersion only.
    pub metadata: ObjectMeta,
    pub state: TlsSecretState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSecretState {
    /// The certificate and key can be served; the certificate's DNS subjectAltNames, sorted.
    Usable { dns_names: Vec<String> },
    /// The Secret's type is not `kubernetes.io/tls`: its type.
    WrongType(String),
    /// Why the certificate or key cannot be served.
    Invalid(String),
}

/// Checks a Secret's certificate and key and keeps what routing needs.
pub fn summarize(secret: &Secret) -> TlsSecret {
    let metadata = ObjectMeta {
        name: secret.metadata.name.clone(),
        namespace: secret.metadata.namespace.clone(),
        uid: secret.metadata.uid.clone(),
        resource_version: secret.metadata.resource_version.clone(),
        ..Default::default()
    };
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    let state = if type_ != TLS_SECRET_TYPE {
        TlsSecretState::WrongType(type_.to_owned())
    } else {
        let data = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.as_slice())
                .unwrap_or_default()
        };
        match check(data(CERT_KEY), data(PRIVATE_KEY_KEY)) {
            Ok(dns_names) => TlsSecretState::Usable { dns_names },
            Err(why) => TlsSecretState::Invalid(why),
        }
    };
    TlsSecret { metadata, state }
}

/// The DNS names of a usable certificate and key pair, or why they cannot be served.
fn check(cert_pem: &[u8], key_pem: &[u8]) -> Result<Vec<String>, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{CERT_KEY} is not PEM: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{CERT_KEY} holds no PEM certificate"))?;
    let parsed = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("{CERT_KEY}: the first certificate is not valid X.509 ({e:?})"))?;
    let mut dns_names: Vec<String> = parsed
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();
    dns_names.sort();
    dns_names.dedup();
    if dns_names.is_empty() {
        return Err(format!(
            "the certificate in {CERT_KEY} has no DNS names in its subjectAltName"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("{PRIVATE_KEY_KEY} holds no PEM private key: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{PRIVATE_KEY_KEY} is not a usable private key: {e}"))?;
    rustls::sign::CertifiedKey::new(chain, signer)
        .keys_match()
        .map_err(|e| {
            format!(
                "the key in {PRIVATE_KEY_KEY} does not belong to the certificate in {CERT_KEY}: {e}"
            )
        })?;
    Ok(dns_names)
}

/// So that summaries can live in a watch cache, keyed like the Secrets they describe.
impl kube::Resource for TlsSecret {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Secret".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "secrets".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    /// A Secret of `type_` with a certificate for `names` and its key (or another key when
    /// `matching_key` is false), generated for the test.
    pub fn tls_secret(namespace: &str, name: &str, names: &[&str], matching_key: bool) -> Secret {
        let (cert, key) = certificate(names);
        let key = if matching_key {
            key
        } else {
            certificate(names).1
        };
        secret(
            namespace,
            name,
            TLS_SECRET_TYPE,
            cert.as_bytes(),
            key.as_bytes(),
        )
    }

    /// A self-signed certificate and its key, as PEM.
    pub fn certificate(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    pub fn secret(namespace: &str, name: &str, type_: &str, cert: &[u8], key: &[u8]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                uid: Some(format!("uid-{name}")),
                annotations: Some([("note".to_string(), "dropped".to_string())].into()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some(
                [
                    (CERT_KEY.to_string(), ByteString(cert.to_vec())),
                    (PRIVATE_KEY_KEY.to_string(), ByteString(key.to_vec())),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_pair_keeps_its_dns_names_and_nothing_else() {
        let s = summarize(&tls_secret(
            "edge",
            "wild",
            &["*.apps.example.com", "apps.example.com"],
            true,
        ));
        assert_eq!(
            s.state,
            TlsSecretState::Usable {
                dns_names: vec!["*.apps.example.com".into(), "apps.example.com".into()]
            }
        );
        assert_eq!(s.metadata.name.as_deref(), Some("wild"));
        assert_eq!(s.metadata.uid.as_deref(), Some("uid-wild"));
        assert_eq!(s.metadata.annotations, None, "only identity is kept");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let s = summarize(&tls_secret("edge", "mixed", &["a.example.com"], false));
        let TlsSecretState::Invalid(why) = s.state else {
            panic!("{:?}", s.state)
        };
        assert!(why.contains("does not belong"), "{why}");
    }

    #[test]
    fn garbage_wrong_types_and_missing_keys_are_refused() {
        let (cert, key) = certificate(&["a.example.com"]);
        let cases = [
            (
                TLS_SECRET_TYPE,
                b"not a cert".as_slice(),
                key.as_bytes(),
                "no PEM certificate",
            ),
            (
                TLS_SECRET_TYPE,
                cert.as_bytes(),
                b"".as_slice(),
                "no PEM private key",
            ),
            (
                TLS_SECRET_TYPE,
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".as_slice(),
                key.as_bytes(),
                "is not valid X.509",
            ),
        ];
        for (type_, c, k, expected) in cases {
            let s = summarize(&secret("edge", "bad", type_, c, k));
            match s.state {
                TlsSecretState::Invalid(why) => assert!(why.contains(expected), "{why}"),
                other => panic!("{other:?}"),
            }
        }
        let opaque = summarize(&secret(
            "edge",
            "o",
            "Opaque",
            cert.as_bytes(),
            key.as_bytes(),
        ));
        assert_eq!(opaque.state, TlsSecretState::WrongType("Opaque".into()));
    }
}
