//! Which HostRouters an event affects. Each function maps one changed object to the routers
//! that must be reconciled; none of them does IO.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::claims::overlaps;
use crate::api::HostRouter;
use crate::api::selector;
use crate::render::naming::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, ROUTER_ANNOTATION};
use crate::render::routes::select::publishes;
use crate::render::{Settings, Tenancy};

type Labels = BTreeMap<String, String>;

/// Whether `router` routes the Services of the namespace `namespace` with `labels`: its
/// selector matches, and the tenancy rule lets it publish the namespace.
fn routes(
    router: &HostRouter,
    namespace: &str,
    labels: Option<&Labels>,
    tenancy: &Tenancy,
) -> bool {
    // A selector the API server accepted but that does not compile is reported by the render;
    // such a router is reconciled on its own events only.
    router
        .spec
        .namespace_selector
        .compile()
        .is_ok_and(|s| selector::matches(&s, labels))
        && publishes(
            router.metadata.namespace.as_deref().unwrap_or_default(),
            namespace,
            labels,
            tenancy,
        )
}

/// Routers that route the namespace `namespace` with `labels`: those a Service in it can
/// contribute to.
pub fn routers_selecting(
    routers: &[Arc<HostRouter>],
    namespace: &str,
    labels: Option<&Labels>,
    tenancy: &Tenancy,
) -> Vec<ObjectRef<HostRouter>> {
    routers
        .iter()
        .filter(|r| routes(r, namespace, labels, tenancy))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// A namespace's labels before and after a change (`None`: it did not exist, or no longer
/// does).
pub struct NamespaceChange<'a> {
    pub name: &'a str,
    pub old: Option<&'a Labels>,
    pub new: Option<&'a Labels>,
    pub existed: bool,
    pub exists: bool,
}

/// Routers whose routing of a namespace changed with `change`: their selector's verdict, or
/// the namespace's consent, differs.
pub fn namespace_changed(
    routers: &[Arc<HostRouter>],
    change: &NamespaceChange<'_>,
    tenancy: &Tenancy,
) -> Vec<ObjectRef<HostRouter>> {
    let c = change;
    routers
        .iter()
        .filter(|r| {
            (c.existed && routes(r, c.name, c.old, tenancy))
                != (c.exists && routes(r, c.name, c.new, tenancy))
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Routers whose Proxy goes to `namespace` (`spec.proxyNamespace`, or Gloo's): a router waits
/// for that namespace to exist before it writes its Proxy.
pub fn routers_writing_to(
    routers: &[Arc<HostRouter>],
    namespace: &str,
    settings: &Settings,
) -> Vec<ObjectRef<HostRouter>> {
    routers
        .iter()
        .filter(|r| crate::render::proxy_ref(r, settings).namespace == namespace)
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Routers whose `spec.tls` names `secret` (a Secret in their own namespace).
pub fn routers_using_secret<K: kube::Resource>(
    routers: &[Arc<HostRouter>],
    secret: &K,
) -> Vec<ObjectRef<HostRouter>> {
    let (Some(namespace), Some(name)) = (&secret.meta().namespace, &secret.meta().name) else {
        return Vec::new();
    };
    routers
        .iter()
        .filter(|r| r.metadata.namespace.as_ref() == Some(namespace))
        .filter(|r| {
            r.spec
                .tls
                .iter()
                .flat_map(|t| &t.certificates)
                .any(|c| &c.secret_name == name)
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Routers whose HTTPRoutes attach to `gateway` (their own, or one they name).
pub fn routers_using_gateway<K: kube::Resource>(
    routers: &[Arc<HostRouter>],
    gateway: &K,
) -> Vec<ObjectRef<HostRouter>> {
    let (Some(namespace), Some(name)) = (&gateway.meta().namespace, &gateway.meta().name) else {
        return Vec::new();
    };
    routers
        .iter()
        .filter(|r| {
            crate::render::gateway_api::gateway_of(r)
                .is_some_and(|(ns, n)| &ns == namespace && &n == name)
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// A hash of what a reconcile of `router` depends on: its spec (through the generation), its
/// labels and annotations, and whether it is being deleted. Not its status, which the
/// operator writes itself, nor its finalizers.
pub fn router_fingerprint(router: &HostRouter) -> u64 {
    use std::hash::{Hash, Hasher};
    let meta = &router.metadata;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        meta.uid.as_deref(),
        meta.generation,
        meta.deletion_timestamp.is_some(),
        &meta.labels,
        &meta.annotations,
    )
        .hash(&mut h);
    h.finish()
}

/// A hash of what the operator writes in an object: everything but its status and the
/// metadata the API server maintains. Equal prints: nothing the operator cares about changed.
/// `None` when the object cannot be serialised (then every change counts).
pub fn written_fingerprint<K: kube::Resource + serde::Serialize>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut value = serde_json::to_value(obj).ok()?;
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for volatile in ["resourceVersion", "managedFields", "generation"] {
            meta.remove(volatile);
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.to_string().hash(&mut h);
    Some(h.finish())
}

/// The router that controls an object through its owner reference.
pub fn owner<K: kube::Resource>(obj: &K) -> Option<ObjectRef<HostRouter>> {
    let namespace = obj.meta().namespace.as_deref()?;
    obj.owner_references()
        .iter()
        .find(|o| {
            o.controller == Some(true)
                && o.kind == "HostRouter"
                && o.api_version.starts_with("hostrouter.io/")
        })
        .map(|o| ObjectRef::new(&o.name).within(namespace))
}

/// The router named in a generated object's `hostrouter.io/router` annotation (Proxies live in
/// another namespace, so they carry no owner reference).
pub fn annotated_router<K: kube::Resource>(obj: &K) -> Option<ObjectRef<HostRouter>> {
    let key = obj.annotations().get(ROUTER_ANNOTATION)?;
    let (namespace, name) = key.split_once('/')?;
    Some(ObjectRef::new(name).within(namespace))
}

/// Whether the operator wrote `obj`.
pub fn is_managed<K: kube::Resource>(obj: &K) -> bool {
    obj.labels()
        .get(MANAGED_BY_LABEL)
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

/// Routers that compete with `router` for the same names, now or before its last change
/// (`previous`), so that a rename or a deletion hands over at once.
pub fn competitors(
    routers: &[Arc<HostRouter>],
    router: &HostRouter,
    previous: Option<&HostRouter>,
    settings: &Settings,
) -> Vec<ObjectRef<HostRouter>> {
    let me = ObjectRef::from_obj(router);
    routers
        .iter()
        .filter(|other| ObjectRef::from_obj(other.as_ref()) != me)
        .filter(|other| {
            overlaps(router, other, settings)
                || previous.is_some_and(|p| overlaps(p, other, settings))
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::selector::LabelSelector;
    use crate::testing::router;
    use kube::Resource;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names(refs: Vec<ObjectRef<HostRouter>>) -> Vec<String> {
        let mut v: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        v.sort();
        v
    }

    /// The test routers live in namespace "a"; "a" trusts itself, as a platform team's would.
    fn trusting() -> Tenancy {
        let mut t = Tenancy::default();
        t.trusted_namespaces.insert("a".into());
        t
    }

    fn change<'a>(
        old: Option<&'a Labels>,
        new: Option<&'a Labels>,
        existed: bool,
        exists: bool,
    ) -> NamespaceChange<'a> {
        NamespaceChange {
            name: "ns",
            old,
            new,
            existed,
            exists,
        }
    }

    fn routers() -> Vec<Arc<HostRouter>> {
        let routed = router("a", "routed", "p1");
        let mut all = router("a", "all", "p2");
        all.spec.namespace_selector = LabelSelector::default();
        let mut team = router("a", "team", "p3");
        team.spec.namespace_selector.match_labels = labels(&[("team", "x")]);
        vec![Arc::new(routed), Arc::new(all), Arc::new(team)]
    }

    #[test]
    fn a_service_event_reaches_routers_selecting_its_namespace() {
        let rs = routers();
        let t = trusting();
        assert_eq!(
            names(routers_selecting(
                &rs,
                "ns",
                Some(&labels(&[("routed", "yes")])),
                &t
            )),
            ["all", "routed"]
        );
        assert_eq!(
            names(routers_selecting(
                &rs,
                "ns",
                Some(&labels(&[("team", "x")])),
                &t
            )),
            ["all", "team"]
        );
        assert_eq!(names(routers_selecting(&rs, "ns", None, &t)), ["all"]);
        // Without trust, another namespace is routed only when it consents.
        let untrusted = Tenancy::default();
        assert!(routers_selecting(&rs, "ns", None, &untrusted).is_empty());
        let consenting = labels(&[("hostrouter.io/expose", "true")]);
        assert_eq!(
            names(routers_selecting(&rs, "ns", Some(&consenting), &untrusted)),
            ["all"]
        );
    }

    #[test]
    fn a_relabel_reaches_only_routers_whose_selection_changed() {
        let rs = routers();
        let t = trusting();
        let old = labels(&[("routed", "yes")]);
        let new = labels(&[("team", "x")]);
        assert_eq!(
            names(namespace_changed(
                &rs,
                &change(Some(&old), Some(&new), true, true),
                &t
            )),
            ["routed", "team"]
        );
        // An unrelated label change affects nobody.
        let same = labels(&[("routed", "yes"), ("colour", "blue")]);
        assert!(
            namespace_changed(&rs, &change(Some(&old), Some(&same), true, true), &t).is_empty()
        );
        // A deleted namespace affects every router that selected it.
        assert_eq!(
            names(namespace_changed(
                &rs,
                &change(Some(&old), None, true, false),
                &t
            )),
            ["all", "routed"]
        );
        // A new namespace affects every router that selects it.
        assert_eq!(
            names(namespace_changed(
                &rs,
                &change(None, Some(&new), false, true),
                &t
            )),
            ["all", "team"]
        );
        // Consent given: the routers that select the namespace, untrusted as they are.
        let untrusted = Tenancy::default();
        let consenting = labels(&[("routed", "yes"), ("hostrouter.io/expose", "true")]);
        assert_eq!(
            names(namespace_changed(
                &rs,
                &change(Some(&old), Some(&consenting), true, true),
                &untrusted
            )),
            ["all", "routed"]
        );
    }

    #[test]
    fn generated_objects_lead_back_to_their_router() {
        let r = router("a", "edge", "p");
        let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
        cm.metadata.namespace = Some("a".into());
        cm.metadata.owner_references = r.controller_owner_ref(&()).map(|o| vec![o]);
        assert_eq!(owner(&cm), Some(ObjectRef::new("edge").within("a")));

        let mut proxy = k8s_openapi::api::core::v1::ConfigMap::default();
        proxy.metadata.annotations =
            Some([(ROUTER_ANNOTATION.to_string(), "a/edge".to_string())].into());
        assert_eq!(
            annotated_router(&proxy),
            Some(ObjectRef::new("edge").within("a"))
        );
    }

    #[test]
    fn a_new_namespace_reaches_the_routers_waiting_to_write_their_proxy_there() {
        let s = Settings::default();
        let mut elsewhere = router("a", "elsewhere", "p9");
        elsewhere.spec.proxy_namespace = Some("gloo-2".into());
        let mut rs = routers();
        rs.push(Arc::new(elsewhere));
        assert_eq!(names(routers_writing_to(&rs, "gloo-2", &s)), ["elsewhere"]);
        assert_eq!(
            names(routers_writing_to(&rs, "gloo-system", &s)),
            ["all", "routed", "team"]
        );
    }

    #[test]
    fn a_rename_reaches_the_old_and_the_new_competitors() {
        let s = Settings::default();
        let before = router("a", "mover", "p1");
        let mut after = before.clone();
        after.spec.proxy_name = "p3".into();
        let rs = routers();
        assert_eq!(
            names(competitors(&rs, &after, Some(&before), &s)),
            ["routed", "team"]
        );
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::written_fingerprint;
    use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};

    #[test]
    fn a_routers_status_and_finalizers_do_not_change_its_print() {
        use super::router_fingerprint;
        let mut r = crate::testing::router("a", "edge", "edge");
        r.metadata.generation = Some(1);
        let first = router_fingerprint(&r);
        r.status = Some(Default::default());
        r.metadata.finalizers = Some(vec!["hostrouter.io/proxy-cleanup".into()]);
        r.metadata.resource_version = Some("7".into());
        assert_eq!(router_fingerprint(&r), first);
        r.metadata.generation = Some(2);
        assert_ne!(router_fingerprint(&r), first, "a spec change");
        r.metadata.generation = Some(1);
        r.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert_ne!(router_fingerprint(&r), first, "deletion");
    }

    #[test]
    fn only_what_the_operator_writes_changes_the_print() {
        let mut pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "edge", "namespace": "a", "resourceVersion": "1", "labels": {"x": "1"}},
            "spec": {"minAvailable": 1},
        }))
        .unwrap();
        let first = written_fingerprint(&pdb);
        pdb.status = Some(PodDisruptionBudgetStatus {
            current_healthy: Some(3),
            ..Default::default()
        });
        pdb.metadata.resource_version = Some("2".into());
        assert_eq!(written_fingerprint(&pdb), first, "status and version only");
        pdb.metadata.labels = Some([("x".to_string(), "2".to_string())].into());
        assert_ne!(written_fingerprint(&pdb), first, "a label");
    }
}
