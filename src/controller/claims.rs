//! Who owns a proxy name. Pure: decided from the HostRouters alone.
//!
//! Two routers claim the same Proxy when they name the same Proxy (`proxyNamespace/proxyName`),
//! or when they live in the same namespace and use the same `proxyName` (their Deployment,
//! Service and ConfigMap would collide). The oldest claimant wins; a router being deleted claims
//! nothing, so the next oldest takes over while the winner's finalizer runs.

use std::cmp::Ordering;

use kube::ResourceExt;

use crate::api::HostRouter;
use crate::render::{Settings, proxy_ref};

/// Whether `router` may write its objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    Won,
    /// Another, older router claims the same names: `<namespace>/<name>` of the winner.
    Lost {
        winner: String,
        reason: String,
    },
}

/// `true` when the two routers would write objects with the same name.
pub fn overlaps(a: &HostRouter, b: &HostRouter, settings: &Settings) -> bool {
    a.spec.proxy_name == b.spec.proxy_name
        && (proxy_ref(a, settings).namespace == proxy_ref(b, settings).namespace
            || a.namespace() == b.namespace())
}

/// Age order: creationTimestamp, then namespace, then name. Older sorts first.
pub fn age_order(a: &HostRouter, b: &HostRouter) -> Ordering {
    let ts = |r: &HostRouter| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
    // A router without a timestamp (not yet persisted) is the youngest.
    let key = |r: &HostRouter| (ts(r).is_none(), ts(r), r.namespace(), r.name_any());
    key(a).cmp(&key(b))
}

pub fn is_live(r: &HostRouter) -> bool {
    r.metadata.deletion_timestamp.is_none()
}

/// Decides `router`'s claim among `all` routers (which may include `router` itself).
pub fn claim<'a>(
    router: &HostRouter,
    all: impl IntoIterator<Item = &'a HostRouter>,
    settings: &Settings,
) -> Claim {
    let me = (router.namespace(), router.name_any());
    let winner = all
        .into_iter()
        .filter(|other| (other.namespace(), other.name_any()) != me)
        .filter(|other| is_live(other) && overlaps(router, other, settings))
        .filter(|other| age_order(other, router) == Ordering::Less)
        .min_by(|a, b| age_order(a, b));
    match winner {
        None => Claim::Won,
        Some(w) => {
            let key = format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any());
            let same_proxy = proxy_ref(w, settings) == proxy_ref(router, settings);
            let what = if same_proxy {
                let p = proxy_ref(router, settings);
                format!("Proxy {}/{}", p.namespace, p.name)
            } else {
                format!(
                    "the Envoy objects named {:?} in namespace {}",
                    router.spec.proxy_name,
                    router.namespace().unwrap_or_default()
                )
            };
            Claim::Lost {
                reason: format!(
                    "HostRouter {key} is older and already claims {what}; this router takes over when {key} is deleted or renames its proxy"
                ),
                winner: key,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::router;

    fn aged(ns: &str, name: &str, proxy: &str, secs: i64) -> HostRouter {
        let mut r = router(ns, name, proxy);
        r.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
        ));
        r
    }

    #[test]
    fn the_oldest_router_wins_and_ties_break_by_namespace_then_name() {
        let s = Settings::default();
        let old = aged("a", "old", "edge", 10);
        let young = aged("b", "young", "edge", 20);
        let all = [old.clone(), young.clone()];
        assert_eq!(claim(&old, &all, &s), Claim::Won);
        assert!(matches!(claim(&young, &all, &s), Claim::Lost { winner, .. } if winner == "a/old"));

        let twin = aged("a", "twin", "edge", 10);
        let all = [old.clone(), twin.clone()];
        assert_eq!(claim(&old, &all, &s), Claim::Won);
        assert!(matches!(claim(&twin, &all, &s), Claim::Lost { winner, .. } if winner == "a/old"));
    }

    #[test]
    fn a_router_being_deleted_hands_over() {
        let s = Settings::default();
        let mut old = aged("a", "old", "edge", 10);
        let young = aged("b", "young", "edge", 20);
        old.metadata.deletion_timestamp = young.metadata.creation_timestamp.clone();
        assert_eq!(claim(&young, &[old, young.clone()], &s), Claim::Won);
    }

    #[test]
    fn different_proxy_namespaces_only_collide_within_one_router_namespace() {
        let s = Settings::default();
        let old = aged("a", "old", "edge", 10);
        let mut elsewhere = aged("b", "young", "edge", 20);
        elsewhere.spec.proxy_namespace = Some("other-gloo".into());
        assert_eq!(
            claim(&elsewhere, &[old.clone(), elsewhere.clone()], &s),
            Claim::Won
        );

        let mut same_ns = aged("a", "young", "edge", 20);
        same_ns.spec.proxy_namespace = Some("other-gloo".into());
        assert!(matches!(
            claim(&same_ns, &[old, same_ns.clone()], &s),
            Claim::Lost { .. }
        ));
    }

    #[test]
    fn different_proxy_names_never_collide() {
        let s = Settings::default();
        let a = aged("a", "one", "edge", 10);
        let b = aged("a", "two", "edge-2", 20);
        assert_eq!(claim(&b, &[a, b.clone()], &s), Claim::Won);
    }
}
