//! Who owns a Proxy: one answer, shared by the reconcile (may a router write over an existing
//! Proxy?) and the janitor (whose is a Proxy whose router went away?). Pure.
//!
//! - The **rightful owner** of a Proxy name is the router that wants it (`proxyNamespace` and
//!   `proxyName`) and wins its claim ([`claims::claim`]): the oldest live router among those
//!   that want the name *or* collide with them in their own namespace. At most one router is.
//! - A router writes over an existing Proxy only when that Proxy was written by HostRouter and
//!   its recorded router is this one, or is provably gone: absent from this instance's cache
//!   *and* (written by this instance, or absent from the API server too). A Proxy written by
//!   another operator instance (`--router-selector` shards) for a router that still exists is
//!   never taken.

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::ObjectRef;

use super::claims::{self, Claim};
use super::triggers::{annotated_router, is_managed};
use crate::api::HostRouter;
use crate::api::hostrouter::ProxyRef;
use crate::render::naming::SHARD_LABEL;
use crate::render::{self, Settings};

/// The rightful owner of every Proxy name some router among `routers` (this instance's view)
/// may write.
pub fn owners<'a>(
    routers: &'a [Arc<HostRouter>],
    settings: &Settings,
) -> HashMap<ProxyRef, &'a HostRouter> {
    routers
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| claims::is_live(r))
        .filter(|r| claims::claim(r, routers.iter().map(|o| o.as_ref()), settings) == Claim::Won)
        .map(|r| (render::proxy_ref(r, settings), r))
        .collect()
}

/// Whether `me` may write over the existing Proxy `proxy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MayWrite {
    /// Written for `me`.
    Yes,
    /// Written for a router that is gone: take it over.
    Adopt,
    /// Written for a router this instance does not see: only if the API server has no router of
    /// that name either (it may belong to another operator instance).
    IfGone(ObjectRef<HostRouter>),
    /// Not HostRouter's, or a live router's.
    No,
}

/// The decision for `me` about the existing Proxy `proxy`; `in_cache` says whether a router is
/// in this instance's cache, `shard` is this instance's shard label value.
pub fn may_write(
    proxy: &DynamicObject,
    me: &ObjectRef<HostRouter>,
    in_cache: impl Fn(&ObjectRef<HostRouter>) -> bool,
    shard: Option<&str>,
) -> MayWrite {
    if !is_managed(proxy) {
        return MayWrite::No;
    }
    let Some(owner) = annotated_router(proxy) else {
        // Written by HostRouter without naming its router (never since the annotation exists).
        return MayWrite::Adopt;
    };
    if &owner == me {
        return MayWrite::Yes;
    }
    if in_cache(&owner) {
        // A router this instance manages: it cleans up what it no longer wants.
        return MayWrite::No;
    }
    let written_here = proxy.labels().get(SHARD_LABEL).map(String::as_str) == shard;
    if written_here {
        MayWrite::Adopt
    } else {
        MayWrite::IfGone(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gloo;
    use crate::render::naming::{self, ROUTER_ANNOTATION, common_labels};
    use crate::testing::router;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn born(mut r: HostRouter, second: i64) -> Arc<HostRouter> {
        r.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(second).unwrap(),
        ));
        Arc::new(r)
    }

    fn gloo_edge() -> ProxyRef {
        ProxyRef {
            namespace: "gloo-system".into(),
            name: "edge".into(),
        }
    }

    #[test]
    fn the_owner_is_the_claimant_that_wins_its_claim() {
        let s = Settings::default();
        // `apps/old` uses proxy name "edge" with another proxy namespace: it collides with
        // `apps/young` (same namespace, same name) and wins, so young, the only router wanting
        // gloo-system/edge, does not own it.
        let mut old = router("apps", "old", "edge");
        old.spec.proxy_namespace = Some("gloo-2".into());
        let routers = [born(old, 100), born(router("apps", "young", "edge"), 200)];
        assert!(!owners(&routers, &s).contains_key(&gloo_edge()));
        // Without the collision, young owns it; with two wanting it, the older.
        let routers = [
            born(router("apps", "young", "edge"), 200),
            born(router("shop", "older", "edge"), 150),
        ];
        assert_eq!(
            owners(&routers, &s).get(&gloo_edge()).map(|r| r.name_any()),
            Some("older".to_owned())
        );
    }

    fn proxy_for(owner: &str, shard: Option<&str>) -> DynamicObject {
        let mut p = DynamicObject::new("edge", &gloo::proxy_resource()).within("gloo-system");
        let mut labels = common_labels("edge", Some("u1"));
        if let Some(s) = shard {
            labels.insert(SHARD_LABEL.into(), s.into());
        }
        p.metadata.labels = Some(labels);
        p.metadata.annotations = Some([(ROUTER_ANNOTATION.to_owned(), owner.to_owned())].into());
        p
    }

    #[test]
    fn a_proxy_of_another_instances_router_is_not_taken_without_asking() {
        let me = ObjectRef::new("edge").within("shop");
        let nobody = |_: &ObjectRef<HostRouter>| false;
        let shard_b = naming::shard("team=b");
        // Written by shard A for apps/edge, which shard B cannot see: ask the API server.
        let other = proxy_for("apps/edge", Some(&naming::shard("team=a")));
        assert_eq!(
            may_write(&other, &me, nobody, Some(&shard_b)),
            MayWrite::IfGone(ObjectRef::new("edge").within("apps"))
        );
        // Written by this instance for a router it no longer sees: gone.
        let mine = proxy_for("apps/edge", Some(&shard_b));
        assert_eq!(
            may_write(&mine, &me, nobody, Some(&shard_b)),
            MayWrite::Adopt
        );
        // Its own, and a live router's of this instance.
        assert_eq!(
            may_write(
                &proxy_for("shop/edge", Some(&shard_b)),
                &me,
                nobody,
                Some(&shard_b)
            ),
            MayWrite::Yes
        );
        assert_eq!(
            may_write(&mine, &me, |_| true, Some(&shard_b)),
            MayWrite::No
        );
        let mut foreign = mine.clone();
        foreign.metadata.labels = None;
        assert_eq!(
            may_write(&foreign, &me, nobody, Some(&shard_b)),
            MayWrite::No
        );
    }
}
