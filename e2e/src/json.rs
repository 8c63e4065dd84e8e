//! Comparing what should be written with what is: every field of `expected` must be in
//! `actual` with the same value. Objects may hold more keys (the API server's defaults);
//! lists must have the same length and match element by element. Written independently of
//! the operator's own comparison, so that a bug there cannot hide here.

use serde_json::Value;

/// The JSON path of the first field where `actual` does not hold `expected`, with both values.
pub fn first_difference(expected: &Value, actual: &Value) -> Option<String> {
    walk(expected, actual, String::new())
}

fn walk(expected: &Value, actual: &Value, path: String) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().find_map(|(k, ev)| match a.get(k) {
            Some(av) => walk(ev, av, format!("{path}.{k}")),
            None => Some(format!("{path}.{k}: missing (expected {})", short(ev))),
        }),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (ev, av))| walk(ev, av, format!("{path}[{i}]"))),
        (e, a) if e == a => None,
        (e, a) => Some(format!("{path}: expected {}, found {}", short(e), short(a))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}…", &s[..s.floor_char_boundary(200)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_may_be_added_but_nothing_may_differ() {
        let expected = json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "a"}}});
        let defaulted = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "a"}, "type": "ClusterIP"}});
        assert_eq!(first_difference(&expected, &defaulted), None);
        let changed = json!({"spec": {"ports": [{"port": 81}], "selector": {"app": "a"}}});
        assert_eq!(
            first_difference(&expected, &changed).as_deref(),
            Some(".spec.ports[0].port: expected 80, found 81")
        );
        let longer =
            json!({"spec": {"ports": [{"port": 80}, {"port": 81}], "selector": {"app": "a"}}});
        assert!(first_difference(&expected, &longer).is_some());
        let missing = json!({"spec": {"ports": [{"port": 80}]}});
        assert!(
            first_difference(&expected, &missing)
                .unwrap()
                .contains("missing")
        );
    }
}
