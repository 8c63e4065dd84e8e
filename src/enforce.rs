//! What the operator owns in the objects it writes, beyond the fields it sets: additions made by
//! someone else that change what the edge does are found here and undone.
//!
//! Server-side apply alone cannot undo them. Entries added to a list that is merged by key
//! (a sidecar in `containers`, a port in a Service) and fields the operator never sets
//! (`hostNetwork`) are owned by whoever added them, so re-applying leaves them in place; and
//! [`crate::diff::is_subset`] rightly ignores them when deciding whether to apply, since most
//! additions are the API server's defaults. This module names the places where an addition is
//! never a default and always matters, per kind:
//!
//! | kind | enforced |
//! | --- | --- |
//! | Proxy | the whole `spec`: exactly what the operator rendered |
//! | Service | `spec.selector` exactly; `spec.ports` only the operator's (by name) |
//! | Deployment | pod template: only the operator's `containers` and `volumes` (by name), no `initContainers`/`ephemeralContainers`, no `hostNetwork`/`hostPID`/`hostIPC`/`shareProcessNamespace`, no `serviceAccountName`, no `privileged` or added capabilities in the operator's containers |
//! | ConfigMap | `data` exactly |
//!
//! [`fixes`] is pure: it compares JSON and returns JSON-pointer removals (for a JSON patch) and
//! whether the object must be applied again.

use serde_json::Value;

/// What it takes to make an object the operator's again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fixes {
    /// JSON pointers of additions to remove, in an order that keeps every later pointer valid
    /// (list indices descending).
    pub removals: Vec<String>,
    /// An enforced field differs in a way that re-applying repairs (an atomic list or map
    /// that someone replaced).
    pub reapply: bool,
}

impl Fixes {
    pub fn is_empty(&self) -> bool {
        self.removals.is_empty() && !self.reapply
    }
}

/// Pod-level fields that grant the pod the node's namespaces or another identity: never set by
/// the operator, never allowed.
const POD_FORBIDDEN: [&str; 7] = [
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "serviceAccountName",
    "serviceAccount",
    "initContainers",
];
/// Also never allowed: ephemeral containers live in a subresource of Pods, but a template
/// could carry them.
const POD_FORBIDDEN_LISTS: [&str; 1] = ["ephemeralContainers"];

/// The removals and re-application that make `actual` (a `kind` the operator wrote) hold only
/// what `desired` says in the enforced places.
pub fn fixes(kind: &str, desired: &Value, actual: &Value) -> Fixes {
    let mut f = Fixes::default();
    match kind {
        "Proxy" => exact(&desired["spec"], &actual["spec"], "/spec", &mut f),
        "ConfigMap" => exact(&desired["data"], &actual["data"], "/data", &mut f),
        "Service" => {
            exact(
                &desired["spec"]["selector"],
                &actual["spec"]["selector"],
                "/spec/selector",
                &mut f,
            );
            keyed(
                &desired["spec"]["ports"],
                &actual["spec"]["ports"],
                "/spec/ports",
                "name",
                &mut f,
            );
        }
        "Deployment" => {
            let (d, a) = (
                &desired["spec"]["template"]["spec"],
                &actual["spec"]["template"]["spec"],
            );
            let pod = "/spec/template/spec";
            keyed(
                &d["containers"],
                &a["containers"],
                &format!("{pod}/containers"),
                "name",
                &mut f,
            );
            keyed(
                &d["volumes"],
                &a["volumes"],
                &format!("{pod}/volumes"),
                "name",
                &mut f,
            );
            for field in POD_FORBIDDEN.iter().chain(&POD_FORBIDDEN_LISTS) {
                if d.get(*field).is_none() && a.get(*field).is_some_and(truthy) {
                    f.removals.push(format!("{pod}/{field}"));
                }
            }
            // In the operator's own containers: no privilege.
            for (i, c) in a["containers"].as_array().into_iter().flatten().enumerate() {
                let ours = d["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|dc| dc.get("name").is_some() && dc.get("name") == c.get("name"));
                if !ours {
                    continue;
                }
                let sc = &c["securityContext"];
                let at = format!("{pod}/containers/{i}/securityContext");
                if sc.get("privileged").is_some_and(truthy) {
                    f.removals.push(format!("{at}/privileged"));
                }
                if sc["capabilities"].get("add").is_some() {
                    f.removals.push(format!("{at}/capabilities/add"));
                }
            }
        }
        _ => {}
    }
    order(&mut f.removals);
    f
}

/// Whether a value says something: not null, false, empty or zero (a field left at its
/// default is not an addition).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
    }
}

/// `actual` must be `desired`: keys only `actual` has are removed (through nested objects), any
/// other difference is repaired by applying again.
fn exact(desired: &Value, actual: &Value, at: &str, f: &mut Fixes) {
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => {
            for (k, av) in a {
                let here = format!("{at}/{}", escape(k));
                match d.get(k) {
                    None if !av.is_null() => f.removals.push(here),
                    None => {}
                    Some(dv) => exact(dv, av, &here, f),
                }
            }
            if d.iter().any(|(k, dv)| !a.contains_key(k) && !dv.is_null()) {
                f.reapply = true;
            }
        }
        (Value::Null, Value::Null) => {}
        (d, a) if same(d, a) => {}
        _ => f.reapply = true,
    }
}

/// Elements of the list `actual` whose `key` no element of `desired` has are removed.
fn keyed(desired: &Value, actual: &Value, at: &str, key: &str, f: &mut Fixes) {
    let wanted: Vec<&Value> = desired
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.get(key))
        .collect();
    for (i, a) in actual.as_array().into_iter().flatten().enumerate() {
        if !a.get(key).is_some_and(|k| wanted.contains(&k)) {
            f.removals.push(format!("{at}/{i}"));
        }
    }
}

/// Numbers compare by value (`8080` and `8080.0`); everything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (x, y) => x == y,
    }
}

/// RFC 6901: `~` is `~0`, `/` is `~1`.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Orders removals so that each pointer still names what it was made for when its turn comes:
/// by path segments, descending, list indices compared as numbers. Later elements of a list go
/// before earlier ones, and what lies inside an element before the element itself.
fn order(removals: &mut [String]) {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    enum Segment<'a> {
        Index(usize),
        Name(&'a str),
    }
    fn segments(p: &str) -> Vec<Segment<'_>> {
        p.split('/')
            .map(|s| match s.parse() {
                Ok(i) => Segment::Index(i),
                Err(_) => Segment::Name(s),
            })
            .collect()
    }
    removals.sort_by(|a, b| segments(b).cmp(&segments(a)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_proxy_is_exactly_what_was_rendered() {
        let desired = json!({"spec": {"listeners": [{"name": "http", "bindPort": 8080}]}});
        assert!(fixes("Proxy", &desired, &desired).is_empty());
        // A catch-all virtual host or a whole listener: the atomic list is replaced by applying.
        let added = json!({"spec": {"listeners": [{"name": "http", "bindPort": 8080}, {"name": "evil", "bindPort": 80}]}});
        assert_eq!(
            fixes("Proxy", &desired, &added),
            Fixes {
                removals: vec![],
                reapply: true
            }
        );
        // A field beside ours is removed.
        let beside = json!({"spec": {"listeners": [{"name": "http", "bindPort": 8080.0}], "compressedSpec": "x"}});
        assert_eq!(
            fixes("Proxy", &desired, &beside).removals,
            ["/spec/compressedSpec"]
        );
        assert!(!fixes("Proxy", &desired, &beside).reapply, "8080.0 is 8080");
    }

    #[test]
    fn a_service_selects_only_the_envoy_pods_and_has_only_its_ports() {
        let desired = json!({"spec": {"selector": {"app": "envoy"}, "ports": [{"name": "http", "port": 80}]}});
        let actual = json!({"spec": {
            "selector": {"app": "envoy", "nothing/matches": "this"},
            "ports": [{"name": "ssh", "port": 22}, {"name": "http", "port": 80}, {"name": "debug", "port": 9}],
            "clusterIP": "10.0.0.1",
        }});
        let f = fixes("Service", &desired, &actual);
        assert_eq!(
            f.removals,
            [
                "/spec/selector/nothing~1matches",
                "/spec/ports/2",
                "/spec/ports/0"
            ]
        );
        assert!(
            !f.reapply,
            "defaults such as clusterIP are not the operator's concern"
        );
        let replaced = json!({"spec": {"selector": {"app": "other"}, "ports": [{"name": "http", "port": 80}]}});
        assert!(fixes("Service", &desired, &replaced).reapply);
    }

    #[test]
    fn a_deployment_runs_only_envoy_without_privileges() {
        let desired = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "envoy", "image": "e"}],
            "volumes": [{"name": "bootstrap"}],
        }}}});
        let defaulted = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "envoy", "image": "e", "terminationMessagePath": "/dev/termination-log"}],
            "volumes": [{"name": "bootstrap"}],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "hostNetwork": false,
        }}}});
        assert!(
            fixes("Deployment", &desired, &defaulted).is_empty(),
            "defaults are not additions"
        );
        let hostile = json!({"spec": {"template": {"spec": {
            "containers": [
                {"name": "envoy", "image": "e", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}},
                {"name": "sidecar", "image": "x"},
            ],
            "initContainers": [{"name": "init", "image": "x"}],
            "volumes": [{"name": "bootstrap"}, {"name": "host", "hostPath": {"path": "/"}}],
            "hostNetwork": true, "hostPID": true, "serviceAccountName": "admin",
        }}}});
        let mut f = fixes("Deployment", &desired, &hostile).removals;
        f.sort();
        assert_eq!(
            f,
            [
                "/spec/template/spec/containers/0/securityContext/capabilities/add",
                "/spec/template/spec/containers/0/securityContext/privileged",
                "/spec/template/spec/containers/1",
                "/spec/template/spec/hostNetwork",
                "/spec/template/spec/hostPID",
                "/spec/template/spec/initContainers",
                "/spec/template/spec/serviceAccountName",
                "/spec/template/spec/volumes/1",
            ]
        );
    }

    #[test]
    fn removals_never_shift_the_ones_after_them() {
        // A sidecar before envoy, and a privileged envoy: envoy's field goes before the sidecar.
        let desired = json!({"spec": {"template": {"spec": {"containers": [{"name": "envoy"}]}}}});
        let actual = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar"}, {"name": "side2"},
            {"name": "envoy", "securityContext": {"privileged": true}},
        ]}}}});
        assert_eq!(
            fixes("Deployment", &desired, &actual).removals,
            [
                "/spec/template/spec/containers/2/securityContext/privileged",
                "/spec/template/spec/containers/1",
                "/spec/template/spec/containers/0",
            ]
        );
    }

    #[test]
    fn the_bootstrap_holds_only_the_bootstrap() {
        let desired = json!({"data": {"envoy.yaml": "a"}});
        let actual = json!({"data": {"envoy.yaml": "a", "extra.yaml": "b"}});
        assert_eq!(
            fixes("ConfigMap", &desired, &actual).removals,
            ["/data/extra.yaml"]
        );
        assert!(fixes("ConfigMap", &desired, &json!({"data": {"envoy.yaml": "b"}})).reapply);
    }
}
