//! What the Gateway API implementation says about a router's objects, read from their status.
//! Pure: the reconcile hands in the objects as written or cached.
//!
//! A condition counts only when its `observedGeneration` is the object's current generation:
//! an older one is the implementation's verdict on a spec that is gone.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::DynamicObject;

use crate::api::gateway::{GatewayStatus, HttpRouteStatus, ParentReference};

/// One condition of the implementation, as it stands for the current spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// No condition of that type for the current generation (not yet, or never: no
    /// implementation serves the Gateway's class).
    NotReported,
    Reported {
        status: bool,
        reason: String,
        message: String,
    },
}

impl Judgement {
    pub fn is_true(&self) -> bool {
        matches!(self, Self::Reported { status: true, .. })
    }
}

/// The Gateway's `Accepted` and `Programmed`; `None` when there is no Gateway (an existing one
/// the router names is missing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayVerdict {
    pub name: String,
    pub accepted: Judgement,
    pub programmed: Judgement,
}

/// An HTTPRoute the implementation did not accept, or whose backend it could not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `<namespace>/<name>` of the HTTPRoute.
    pub route: String,
    /// `Accepted` or `ResolvedRefs`.
    pub condition: &'static str,
    pub reason: String,
    pub message: String,
}

/// The HTTPRoutes' verdicts, for the listeners they attach to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutesVerdict {
    pub total: usize,
    /// Without both conditions reported for the current generation.
    pub not_reported: usize,
    /// Sorted by HTTPRoute, then condition.
    pub refused: Vec<Refusal>,
}

pub fn gateway(gateway: &DynamicObject) -> GatewayVerdict {
    let status: GatewayStatus = gateway
        .data
        .get("status")
        .and_then(read)
        .unwrap_or_default();
    let generation = gateway.metadata.generation;
    GatewayVerdict {
        name: format!(
            "{}/{}",
            gateway.namespace().unwrap_or_default(),
            gateway.name_any()
        ),
        accepted: judge(&status.conditions, "Accepted", generation),
        programmed: judge(&status.conditions, "Programmed", generation),
    }
}

pub fn routes(routes: &[Arc<DynamicObject>]) -> RoutesVerdict {
    let mut out = RoutesVerdict {
        total: routes.len(),
        ..Default::default()
    };
    for route in routes {
        let name = format!(
            "{}/{}",
            route.namespace().unwrap_or_default(),
            route.name_any()
        );
        let generation = route.metadata.generation;
        // Only the parents of the spec: this runs for every HTTPRoute of a router on each of its
        // reconciles.
        let parents: Vec<ParentReference> = route
            .data
            .get("spec")
            .and_then(|s| s.get("parentRefs"))
            .and_then(read)
            .unwrap_or_default();
        let status: HttpRouteStatus = route.data.get("status").and_then(read).unwrap_or_default();
        let mut reported = true;
        for parent in &parents {
            let conditions = status
                .parents
                .iter()
                .find(|p| same_parent(&p.parent_ref, parent, route.namespace().as_deref()))
                .map(|p| p.conditions.as_slice())
                .unwrap_or_default();
            for condition in ["Accepted", "ResolvedRefs"] {
                match judge(conditions, condition, generation) {
                    Judgement::NotReported => reported = false,
                    Judgement::Reported { status: true, .. } => {}
                    Judgement::Reported {
                        reason, message, ..
                    } => out.refused.push(Refusal {
                        route: name.clone(),
                        condition,
                        reason,
                        message,
                    }),
                }
            }
        }
        if !reported {
            out.not_reported += 1;
        }
    }
    out.refused
        .sort_by(|a, b| (&a.route, a.condition).cmp(&(&b.route, b.condition)));
    out.refused.dedup();
    out
}

/// `value` read as a `T` where it is one, without copying it first.
fn read<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Option<T> {
    T::deserialize(value).ok()
}

fn judge(conditions: &[Condition], type_: &str, generation: Option<i64>) -> Judgement {
    match conditions.iter().find(|c| c.type_ == type_) {
        Some(c) if generation.is_none() || c.observed_generation == generation => {
            Judgement::Reported {
                status: c.status == "True",
                reason: c.reason.clone(),
                message: c.message.clone(),
            }
        }
        _ => Judgement::NotReported,
    }
}

/// Whether a parent in a status is the parent of the spec (an unset namespace is the route's).
fn same_parent(status: &ParentReference, spec: &ParentReference, route_ns: Option<&str>) -> bool {
    let ns = |p: &ParentReference| {
        if p.namespace.is_empty() {
            route_ns.unwrap_or_default().to_owned()
        } else {
            p.namespace.clone()
        }
    };
    status.name == spec.name
        && ns(status) == ns(spec)
        && status.section_name == spec.section_name
        && status.port == spec.port
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(ns: &str, name: &str, generation: i64, data: serde_json::Value) -> DynamicObject {
        let mut o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "generation": generation},
        }))
        .unwrap();
        o.data = data;
        o
    }

    fn condition(type_: &str, status: &str, reason: &str, generation: i64) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": reason, "message": format!("{type_} says {reason}"),
               "observedGeneration": generation, "lastTransitionTime": "2026-11-30T00:00:00Z"})
    }

    fn route(
        name: &str,
        generation: i64,
        conditions: Vec<serde_json::Value>,
    ) -> Arc<DynamicObject> {
        let parent = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "edge", "name": "edge", "sectionName": "http"});
        Arc::new(object(
            "apps",
            name,
            generation,
            json!({
                "spec": {"parentRefs": [parent], "rules": []},
                "status": {"parents": [{"parentRef": parent, "controllerName": "example.com/gw", "conditions": conditions}]},
            }),
        ))
    }

    #[test]
    fn routes_are_judged_for_their_parent_and_current_generation() {
        let accepted = route(
            "a",
            2,
            vec![
                condition("Accepted", "True", "Accepted", 2),
                condition("ResolvedRefs", "True", "ResolvedRefs", 2),
            ],
        );
        let stale = route(
            "b",
            3,
            vec![
                condition("Accepted", "True", "Accepted", 2),
                condition("ResolvedRefs", "True", "ResolvedRefs", 2),
            ],
        );
        let refused = route(
            "c",
            1,
            vec![
                condition("Accepted", "True", "Accepted", 1),
                condition("ResolvedRefs", "False", "BackendNotFound", 1),
            ],
        );
        let verdict = routes(&[accepted, stale, refused]);
        assert_eq!(verdict.total, 3);
        assert_eq!(verdict.not_reported, 1);
        assert_eq!(
            verdict.refused,
            vec![Refusal {
                route: "apps/c".into(),
                condition: "ResolvedRefs",
                reason: "BackendNotFound".into(),
                message: "ResolvedRefs says BackendNotFound".into(),
            }]
        );
    }

    #[test]
    fn a_status_for_another_parent_is_not_this_routes() {
        let mut r = (*route(
            "a",
            1,
            vec![condition("Accepted", "False", "NotAllowedByListeners", 1)],
        ))
        .clone();
        r.data["status"]["parents"][0]["parentRef"]["sectionName"] = json!("https");
        let verdict = routes(&[Arc::new(r)]);
        assert_eq!(verdict.not_reported, 1);
        assert!(verdict.refused.is_empty());
    }

    #[test]
    fn a_gateway_is_judged_by_its_conditions_for_its_generation() {
        let gw = object(
            "edge",
            "edge",
            4,
            json!({"status": {"conditions": [
                condition("Accepted", "True", "Accepted", 4),
                condition("Programmed", "False", "AddressNotAssigned", 3),
            ]}}),
        );
        let v = gateway(&gw);
        assert!(v.accepted.is_true());
        assert_eq!(v.programmed, Judgement::NotReported);
        assert_eq!(v.name, "edge/edge");
    }
}
