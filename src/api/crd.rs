//! The HostRouter CRD as installed: kube's generated definition, with every 32-bit integer
//! bounded. The API server does not enforce `format: int32` on custom resources, so without
//! bounds it would store a `maxSkew` or an affinity `weight` of 3,000,000,000 that the
//! operator's types cannot read, and one such router would stop the watch of every router.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use super::HostRouter;

/// The CRD `hostrouter crd` prints and the chart installs.
pub fn definition() -> Result<CustomResourceDefinition, serde_json::Error> {
    let mut crd = serde_json::to_value(HostRouter::crd())?;
    bound_int32(&mut crd);
    serde_json::from_value(crd)
}

/// Adds `minimum`/`maximum` of an `i32` to every `format: int32` schema without them.
fn bound_int32(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str) == Some("int32") {
                map.entry("minimum").or_insert(i32::MIN.into());
                map.entry("maximum").or_insert(i32::MAX.into());
            }
            map.values_mut().for_each(bound_int32);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_int32),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_int32_is_bounded() {
        let crd = serde_json::to_value(definition().unwrap()).unwrap();
        let mut unbounded = Vec::new();
        let mut found = 0;
        fn walk(v: &Value, path: String, found: &mut usize, unbounded: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if m.get("format").and_then(Value::as_str) == Some("int32") {
                        *found += 1;
                        if !m.contains_key("minimum") || !m.contains_key("maximum") {
                            unbounded.push(path.clone());
                        }
                    }
                    for (k, c) in m {
                        walk(c, format!("{path}.{k}"), found, unbounded);
                    }
                }
                Value::Array(a) => {
                    for (i, c) in a.iter().enumerate() {
                        walk(c, format!("{path}[{i}]"), found, unbounded);
                    }
                }
                _ => {}
            }
        }
        walk(&crd, String::new(), &mut found, &mut unbounded);
        // The affinity weights, the spread's maxSkew and minDomains, ports, counts...
        assert!(found > 10, "{found} int32 fields");
        assert!(unbounded.is_empty(), "{unbounded:?}");
        // Ranges the types set themselves are kept.
        let port = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["listener"]["properties"]["port"];
        assert_eq!(
            (port["minimum"].as_f64(), port["maximum"].as_f64()),
            (Some(1.0), Some(65535.0))
        );
    }
}
