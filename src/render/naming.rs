//! Names, labels and annotations of everything HostRouter generates.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use md5::{Digest, Md5};
use sha2::Sha256;

/// Field manager for every server-side apply.
pub const FIELD_MANAGER: &str = "hostrouter";

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "hostrouter";
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const NAME_VALUE: &str = "hostrouter-envoy";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// UID of the HostRouter that owns a generated object; used to find its orphans.
pub const ROUTER_UID_LABEL: &str = "hostrouter.io/router-uid";
/// `<namespace>/<name>` of the owning HostRouter, on the Proxy (which has no owner reference).
pub const ROUTER_ANNOTATION: &str = "hostrouter.io/router";
/// A namespace labelled with this set to "true" consents to being published by any router.
pub const EXPOSE_LABEL: &str = "hostrouter.io/expose";
/// A Service with this annotation set to "true" gets no virtual host.
pub const EXCLUDE_ANNOTATION: &str = "hostrouter.io/exclude";
/// The port (number or name) a Service is reached on when a template names no port.
pub const PORT_ANNOTATION: &str = "hostrouter.io/port";
/// Extra hostnames a Service asks for, comma-separated; allowed only under the router's
/// `spec.hosts.allowedSuffixes`.
pub const HOSTNAMES_ANNOTATION: &str = "hostrouter.io/hostnames";
/// SHA-256 of the Envoy bootstrap, on the pod template: a new bootstrap rolls the pods.
pub const BOOTSTRAP_HASH_ANNOTATION: &str = "hostrouter.io/bootstrap-sha256";
/// Annotation on every generated object: a hash of what the operator applied. A changed spec
/// changes the hash, so fields the operator stopped setting are removed by the next apply.
pub const APPLIED_HASH_ANNOTATION: &str = "hostrouter.io/applied-hash";
/// On an Envoy Deployment whose replica count is its HorizontalPodAutoscaler's: the operator
/// applies it without `spec.replicas` (and hands the count over once, when this appears).
pub const REPLICAS_FROM_ANNOTATION: &str = "hostrouter.io/replicas-from";
/// The value of [`REPLICAS_FROM_ANNOTATION`].
pub const REPLICAS_FROM_AUTOSCALER: &str = "HorizontalPodAutoscaler";
/// Finalizer that removes the Proxy, which lives in another namespace, before the router goes.
pub const FINALIZER: &str = "hostrouter.io/proxy-cleanup";

/// The [`APPLIED_HASH_ANNOTATION`] an object carries.
pub fn applied_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(APPLIED_HASH_ANNOTATION)
        .map(String::as_str)
}

/// Label selector (string form) of every object HostRouter generates.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")
}

/// Key of the Envoy bootstrap in the ConfigMap.
pub const BOOTSTRAP_KEY: &str = "envoy.yaml";

pub fn bootstrap_config_map_name(proxy_name: &str) -> String {
    format!("{proxy_name}-envoy-bootstrap")
}

/// The name Gloo gives the Upstream of a Service port (Gloo's `UpstreamName`, which applies
/// k8s-utils' `SanitizeNameV2`): some characters become '-', some are dropped, names longer
/// than 63 bytes become their first 31 bytes, '-', and the first 31 hex digits of their MD5,
/// and the result is lowercased.
pub fn gloo_upstream_name(namespace: &str, service: &str, port: u16) -> String {
    let name: String = format!("{namespace}-{service}-{port}")
        .chars()
        .filter_map(|c| match c {
            '*' | '/' | '.' | ':' | '_' | ' ' => Some('-'),
            '[' | ']' | '\n' | '"' | '\'' => None,
            c => Some(c),
        })
        .collect();
    let name = if name.len() > 63 {
        let hash = format!("{:x}", Md5::digest(name.as_bytes()));
        // Gloo cuts bytes, not characters; Kubernetes names are ASCII, so the cut is safe,
        // and a non-ASCII remainder is kept whole rather than split inside a character.
        let head = name.get(..31).unwrap_or(&name);
        format!("{head}-{}", &hash[..31])
    } else {
        name
    };
    name.to_lowercase()
}

/// Label on a Proxy naming the operator instance (shard) that wrote it, so that each instance
/// sweeps only the orphans it left. Absent for an instance that manages every HostRouter.
pub const SHARD_LABEL: &str = "hostrouter.io/shard";

/// The [`SHARD_LABEL`] value of an instance started with `--router-selector <selector>`: a
/// hash, since selectors are not valid label values.
pub fn shard(router_selector: &str) -> String {
    let hash = format!("{:x}", Sha256::digest(router_selector.as_bytes()));
    hash[..16].to_owned()
}

/// Labels on every object generated for a router's proxy.
pub fn common_labels(proxy_name: &str, router_uid: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = selector_labels(proxy_name);
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    if let Some(uid) = router_uid {
        labels.insert(ROUTER_UID_LABEL.into(), uid.into());
    }
    labels
}

/// Labels that select the Envoy pods of one proxy (unique within a namespace).
pub fn selector_labels(proxy_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), NAME_VALUE.to_owned()),
        (INSTANCE_LABEL.to_owned(), proxy_name.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_name_matches_gloo_for_ordinary_names() {
        assert_eq!(
            gloo_upstream_name("default", "petstore", 8080),
            "default-petstore-8080"
        );
    }

    #[test]
    fn upstream_name_sanitises_like_gloo() {
        assert_eq!(gloo_upstream_name("a.b", "c_d", 80), "a-b-c-d-80");
        assert_eq!(gloo_upstream_name("A", "[x]'\"", 1), "a-x-1");
        assert_eq!(gloo_upstream_name("ns", "s:v*c/x y", 9), "ns-s-v-c-x-y-9");
    }

    #[test]
    fn long_upstream_names_are_shortened_with_an_md5_suffix() {
        let ns = "n".repeat(40);
        let svc = "s".repeat(40);
        let full = format!("{ns}-{svc}-8080");
        let got = gloo_upstream_name(&ns, &svc, 8080);
        // Gloo: first 31 bytes, '-', first 31 hex digits of md5(full name).
        let hash = format!("{:x}", Md5::digest(full.as_bytes()));
        assert_eq!(got, format!("{}-{}", &full[..31], &hash[..31]));
        assert_eq!(got.len(), 63);
        // A name of exactly 63 bytes is kept as it is.
        let ns63 = "n".repeat(63 - "-s-1".len());
        assert_eq!(gloo_upstream_name(&ns63, "s", 1), format!("{ns63}-s-1"));
    }

    /// Outputs of Gloo's own `kubeutils.SanitizeNameV2` (k8s-utils v0.13.0, the version Gloo
    /// v1.22.1 uses), produced by a Go program calling it on `<namespace>-<service>-<port>`.
    #[test]
    fn vectors_from_gloos_go_implementation() {
        let a64 = "a".repeat(64);
        let n40 = "n".repeat(40);
        let s40 = "s".repeat(40);
        let cases = [
            ("default", "petstore", 8080, "default-petstore-8080"),
            (
                a64.as_str(),
                "svc",
                80,
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-9c0a1410cfee2e6aa9fd8065574d933",
            ),
            (
                n40.as_str(),
                s40.as_str(),
                8080,
                "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn-1379b93cb6c72722331d2ef4809e865",
            ),
            (
                "team-payments-production",
                "checkout-api-gateway-v2",
                65535,
                "team-payments-production-checkout-api-gateway-v2-65535",
            ),
            ("A.B", "c_d", 1, "a-b-c-d-1"),
        ];
        for (ns, svc, port, want) in cases {
            assert_eq!(gloo_upstream_name(ns, svc, port), want, "{ns}/{svc}:{port}");
        }
    }
}
