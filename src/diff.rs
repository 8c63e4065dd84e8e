//! Decides whether an object already says what we would apply, so a reconcile that would change
//! nothing writes nothing.
//!
//! `desired` is what we apply; `actual` is the object as the API server returns it, with
//! defaults filled in and fields owned by others. The object is up to date when every field of
//! `desired` is present in `actual` with the same value:
//! - maps: each desired key must match; extra keys in `actual` are someone else's or defaults;
//! - lists of objects that all carry a `name` (containers, ports, env, volumes) or `uid` (owner
//!   references) are matched by that key, as server-side apply merges them;
//! - other lists must have the same length and match element by element;
//! - an empty or zero desired value matches a missing one (the API server drops them);
//! - resource quantities match by value (`500m` equals `0.5`).

use serde_json::Value;

/// True when applying `desired` would not change `actual`.
pub fn is_subset(desired: &Value, actual: &Value) -> bool {
    subset(desired, actual, None)
}

fn subset(desired: &Value, actual: &Value, key: Option<&str>) -> bool {
    match (desired, actual) {
        (d, Value::Null) => is_empty(d),
        (Value::Object(d), Value::Object(a)) => d.iter().all(|(k, dv)| match a.get(k) {
            Some(av) => subset(dv, av, Some(k)),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(a)) => match merge_key(d) {
            Some(mk) => d.iter().all(|dv| {
                a.iter()
                    .find(|av| av.get(mk).is_some() && av.get(mk) == dv.get(mk))
                    .is_some_and(|av| subset(dv, av, None))
            }),
            None => d.len() == a.len() && d.iter().zip(a).all(|(dv, av)| subset(dv, av, None)),
        },
        (Value::String(d), Value::String(a)) => d == a || (in_resources(key) && quantity_eq(d, a)),
        (Value::Number(d), Value::Number(a)) => d.as_f64() == a.as_f64(),
        (d, a) => d == a,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

/// The key server-side apply merges a list of objects by, when every element has it.
fn merge_key(items: &[Value]) -> Option<&'static str> {
    ["uid", "name"].into_iter().find(|k| {
        !items.is_empty()
            && items
                .iter()
                .all(|i| i.get(*k).is_some_and(Value::is_string))
    })
}

/// Keys under `resources` (`limits`, `requests`) hold quantities: their map keys are the
/// resource names, so the string values are reached with the resource name as `key`.
fn in_resources(key: Option<&str>) -> bool {
    matches!(key, Some("cpu" | "memory" | "ephemeral-storage"))
        || key.is_some_and(|k| k.starts_with("hugepages-"))
}

/// Compares two Kubernetes quantities by value.
fn quantity_eq(a: &str, b: &str) -> bool {
    match (parse_quantity(a), parse_quantity(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

fn parse_quantity(q: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let q = q.trim();
    for (suffix, mult) in SUFFIXES {
        if let Some(num) = q.strip_suffix(suffix) {
            return num.parse::<f64>().ok().map(|n| n * mult);
        }
    }
    q.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_foreign_fields_in_actual_do_not_count_as_drift() {
        let desired = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "envoy", "image": "e:1"}]}}}});
        let actual = json!({
            "spec": {"replicas": 1, "progressDeadlineSeconds": 600, "template": {"spec": {
                "dnsPolicy": "ClusterFirst",
                "containers": [{"name": "envoy", "image": "e:1", "terminationMessagePath": "/dev/termination-log"}],
            }}},
            "status": {"replicas": 1},
        });
        assert!(is_subset(&desired, &actual));
    }

    #[test]
    fn an_edited_field_is_drift() {
        let desired = json!({"spec": {"template": {"spec": {"containers": [{"name": "envoy", "image": "e:1"}]}}}});
        let actual = json!({"spec": {"template": {"spec": {"containers": [{"name": "envoy", "image": "evil:2"}]}}}});
        assert!(!is_subset(&desired, &actual));
        let missing = json!({"spec": {}});
        assert!(!is_subset(&desired, &missing));
    }

    #[test]
    fn named_lists_match_by_name_and_tolerate_foreign_entries() {
        let desired = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        let reordered_with_extra = json!({"env": [{"name": "X", "value": "x"}, {"name": "B", "value": "2"}, {"name": "A", "value": "1"}]});
        assert!(is_subset(&desired, &reordered_with_extra));
        let changed = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]});
        assert!(!is_subset(&desired, &changed));
    }

    #[test]
    fn owner_references_match_by_uid() {
        let desired = json!({"ownerReferences": [{"uid": "u1", "name": "r", "controller": true}]});
        let actual = json!({"ownerReferences": [{"uid": "u0", "name": "other"}, {"uid": "u1", "name": "r", "controller": true}]});
        assert!(is_subset(&desired, &actual));
    }

    #[test]
    fn positional_lists_must_match_exactly() {
        assert!(is_subset(
            &json!({"args": ["-c", "x"]}),
            &json!({"args": ["-c", "x"]})
        ));
        assert!(!is_subset(
            &json!({"args": ["-c", "x"]}),
            &json!({"args": ["-c", "x", "y"]})
        ));
        assert!(!is_subset(
            &json!({"args": ["-c", "x"]}),
            &json!({"args": ["x", "-c"]})
        ));
        assert!(!is_subset(
            &json!({"domains": ["a"]}),
            &json!({"domains": []})
        ));
    }

    #[test]
    fn empty_desired_values_match_missing_ones() {
        assert!(is_subset(
            &json!({"a": {}, "b": [], "c": "", "d": false, "e": null}),
            &json!({})
        ));
        assert!(!is_subset(&json!({"a": {"k": "v"}}), &json!({})));
        assert!(!is_subset(&json!({"d": true}), &json!({})));
    }

    #[test]
    fn quantities_compare_by_value_only_under_resources() {
        let desired = json!({"resources": {"limits": {"cpu": "0.5", "memory": "128Mi"}}});
        let actual = json!({"resources": {"limits": {"cpu": "500m", "memory": "134217728"}}});
        assert!(is_subset(&desired, &actual));
        assert!(!is_subset(
            &json!({"resources": {"limits": {"cpu": "1"}}}),
            &json!({"resources": {"limits": {"cpu": "500m"}}})
        ));
        // Elsewhere strings compare exactly.
        assert!(!is_subset(&json!({"image": "1.0"}), &json!({"image": "1"})));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(is_subset(&json!({"port": 8080}), &json!({"port": 8080.0})));
        assert!(!is_subset(&json!({"port": 8080}), &json!({"port": "8080"})));
    }
}
