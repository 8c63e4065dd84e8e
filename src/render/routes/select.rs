//! Which Services of which namespaces are routed, oldest first.

use std::collections::BTreeSet;

use kube::core::Selector;

use std::collections::HashSet;

use super::service::RoutedService;
use crate::api::selector;
use crate::render::naming::EXPOSE_LABEL;
use crate::render::{ClusterView, Tenancy};

/// The tenancy rule: whether a router in `router_namespace` may publish the Services of the
/// namespace `namespace` (with `labels`), whatever its selector says. Its own namespace, yes
/// (unless protected); a namespace that consents (label `hostrouter.io/expose: "true"`), yes;
/// any other namespace only for a router in a trusted namespace, and a protected namespace
/// (the system's, the operator's) never without its consent.
pub fn publishes(
    router_namespace: &str,
    namespace: &str,
    labels: Option<&std::collections::BTreeMap<String, String>>,
    tenancy: &Tenancy,
) -> bool {
    let consents = labels
        .and_then(|l| l.get(EXPOSE_LABEL))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if consents {
        return true;
    }
    if tenancy.protected_namespaces.contains(namespace) {
        return false;
    }
    namespace == router_namespace || tenancy.trusted_namespaces.contains(router_namespace)
}

/// The namespaces a router selects, split by the tenancy rule ([`publishes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespaces<'a> {
    /// Selected and published.
    pub published: BTreeSet<&'a str>,
    /// Selected, but not the router's to publish: sorted.
    pub without_consent: Vec<&'a str>,
}

/// The namespaces `namespace_selector` matches, split by the tenancy rule.
pub fn namespaces<'a>(
    namespace_selector: &Selector,
    router_namespace: &str,
    tenancy: &Tenancy,
    view: &ClusterView<'a>,
) -> Namespaces<'a> {
    let mut out = Namespaces::default();
    for ns in &view.namespaces {
        let labels = ns.metadata.labels.as_ref();
        let Some(name) = ns.metadata.name.as_deref() else {
            continue;
        };
        if !selector::matches(namespace_selector, labels) {
            continue;
        }
        if publishes(router_namespace, name, labels, tenancy) {
            out.published.insert(name);
        } else {
            out.without_consent.push(name);
        }
    }
    out.without_consent.sort_unstable();
    out
}

/// Whether the router routes a Service: one of the `selected` namespaces, matched by the
/// service selector when there is one.
pub fn selects<'a>(
    selected: &'a BTreeSet<&str>,
    service_selector: Option<&'a Selector>,
) -> impl Fn(&RoutedService) -> bool + 'a {
    let selected: HashSet<&str> = selected.iter().copied().collect();
    move |svc| {
        selected.contains(&*svc.namespace)
            && service_selector.is_none_or(|s| selector::matches(s, svc.labels.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::selector::LabelSelector;
    use crate::testing::{namespace as ns, service as svc};

    fn team() -> Selector {
        LabelSelector {
            match_labels: [("team".to_string(), "a".to_string())].into(),
            ..Default::default()
        }
        .compile()
        .unwrap()
    }

    /// The Services of the view the router selects, in the view's (claiming) order.
    fn selected_services<'v>(
        selected: &BTreeSet<&str>,
        service_selector: Option<&Selector>,
        view: &'v ClusterView<'_>,
    ) -> Vec<&'v Arc<RoutedService>> {
        let selects = selects(selected, service_selector);
        view.services.iter().filter(|svc| selects(svc)).collect()
    }

    fn names(selected: &[&Arc<RoutedService>]) -> Vec<String> {
        selected
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect()
    }

    #[test]
    fn services_of_selected_namespaces_oldest_first() {
        let namespaces = [ns("one", &[("team", "a")]), ns("other", &[("team", "b")])];
        let services = [
            svc("one", "young", &[(80, "", "")], 20),
            svc("one", "old", &[(80, "", "")], 10),
            svc("other", "hidden", &[(80, "", "")], 1),
        ];
        let view = ClusterView {
            namespaces: namespaces.iter().collect(),
            services: RoutedService::all(&services),
            ..Default::default()
        };
        let ns = super::namespaces(&team(), "one", &Tenancy::default(), &view);
        assert_eq!(ns.published, ["one"].into());
        let selected = selected_services(&ns.published, None, &view);
        assert_eq!(names(&selected), ["one/old", "one/young"]);
    }

    #[test]
    fn a_router_publishes_its_own_namespace_and_those_that_consent() {
        let all = LabelSelector::default().compile().unwrap();
        let namespaces = [
            ns("tenant", &[]),
            ns("neighbour", &[]),
            ns("shop", &[(EXPOSE_LABEL, "true")]),
            ns("kube-system", &[]),
            ns("hostrouter-system", &[]),
            ns("kube-public", &[(EXPOSE_LABEL, "true")]),
        ];
        let view = ClusterView {
            namespaces: namespaces.iter().collect(),
            ..Default::default()
        };
        let mut tenancy = Tenancy::default();
        tenancy
            .protected_namespaces
            .insert("hostrouter-system".into());
        let tenant = super::namespaces(&all, "tenant", &tenancy, &view);
        assert_eq!(tenant.published, ["kube-public", "shop", "tenant"].into());
        assert_eq!(
            tenant.without_consent,
            ["hostrouter-system", "kube-system", "neighbour"]
        );
        // A platform team's router: everything but the protected namespaces.
        tenancy.trusted_namespaces.insert("edge".into());
        let platform = super::namespaces(&all, "edge", &tenancy, &view);
        assert_eq!(
            platform.published,
            ["kube-public", "neighbour", "shop", "tenant"].into()
        );
        assert_eq!(
            platform.without_consent,
            ["hostrouter-system", "kube-system"]
        );
        // A router in a protected namespace does not publish even its own without consent.
        let system = super::namespaces(&all, "kube-system", &tenancy, &view);
        assert!(!system.published.contains("kube-system"));
    }

    #[test]
    fn services_the_service_selector_leaves_out_are_not_routed() {
        let namespaces = [ns("one", &[("team", "a")])];
        let keep = svc("one", "keep", &[(80, "", "")], 1);
        let mut private = svc("one", "private", &[(80, "", "")], 1);
        private.metadata.labels = Some([("expose".to_string(), "no".to_string())].into());
        let services = [keep, private];
        let view = ClusterView {
            namespaces: namespaces.iter().collect(),
            services: RoutedService::all(&services),
            ..Default::default()
        };
        let one: BTreeSet<&str> = ["one"].into();
        let all = selected_services(&one, None, &view);
        assert_eq!(names(&all), ["one/keep", "one/private"]);
        let not_private = LabelSelector {
            match_expressions: vec![crate::api::selector::LabelSelectorRequirement {
                key: "expose".into(),
                operator: crate::api::selector::LabelSelectorOperator::NotIn,
                values: vec!["no".into()],
            }],
            ..Default::default()
        }
        .compile()
        .unwrap();
        let some = selected_services(&one, Some(&not_private), &view);
        assert_eq!(names(&some), ["one/keep"]);
    }
}
