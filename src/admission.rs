//! Admission, offline: the checks the API server makes on a HostRouter, made by `hostrouter
//! render` before it renders, with the API server's kind of messages (`<field>: Invalid value:
//! <value>: <why>`). The rules are the CRD's own: its OpenAPI schema (types, patterns, lengths,
//! ranges, enums, required fields, list uniqueness), then its CEL rules, evaluated with the
//! Kubernetes CEL library (`kube::core::cel`, the kube-rs project's evaluator of
//! `x-kubernetes-validations`). As on the API server, CEL rules run only on a schema-valid
//! object.

use serde_json::Value;

/// The CRD's OpenAPI schema of `v1alpha1`, as JSON.
fn schema() -> Result<Value, String> {
    let crd = crate::api::crd::definition().map_err(|e| e.to_string())?;
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or("the CRD has no schema")?;
    serde_json::to_value(schema).map_err(|e| e.to_string())
}

/// Checks a HostRouter (as JSON) like admission would; the errors, one per line, otherwise.
pub fn validate(router: &Value) -> Result<(), Vec<String>> {
    let schema = schema().map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    // Admission sees the object under its kind's root; only spec is the user's to get wrong.
    if let Some(spec) = router.get("spec") {
        check(&schema["properties"]["spec"], spec, "spec", &mut errors);
    } else {
        errors.push("spec: Required value".to_owned());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    kube::core::cel::Validator::new()
        .validate(&schema, router, None)
        .map_err(|errs| {
            errs.into_iter()
                .map(|e| {
                    let field = if e.field_path.is_empty() {
                        "<root>".to_owned()
                    } else {
                        e.field_path.clone()
                    };
                    format!("{field}: Invalid value: {}", e.message)
                })
                .collect::<Vec<_>>()
        })
}

/// Checks `value` at `path` against the structural-schema subset the CRD uses.
fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && schema.get("type").is_some() {
            errors.push(format!(
                "{path}: Invalid value: \"null\": {path} in body must be of type {}",
                schema["type"].as_str().unwrap_or("object")
            ));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let ok_type = match (schema.get("type").and_then(Value::as_str), value) {
        (None, _) => true,
        (Some("object"), Value::Object(_)) => true,
        (Some("array"), Value::Array(_)) => true,
        (Some("string"), Value::String(_)) => true,
        (Some("string"), Value::Number(n)) if int_or_string => n.is_i64() || n.is_u64(),
        (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Some("number"), Value::Number(_)) => true,
        (Some("boolean"), Value::Bool(_)) => true,
        _ => false,
    };
    let int_or_string_ok =
        !int_or_string || matches!(value, Value::String(_)) || value.as_i64().is_some();
    if !ok_type || !int_or_string_ok {
        let want = schema["type"].as_str().unwrap_or("integer or string");
        errors.push(format!(
            "{path}: Invalid value: {}: {path} in body must be of type {want}",
            show(value)
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(show).collect();
        errors.push(format!(
            "{path}: Unsupported value: {}: supported values: {}",
            show(value),
            list.join(", ")
        ));
    }
    match value {
        Value::Object(map) => {
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(req) {
                    errors.push(format!("{path}.{req}: Required value"));
                }
            }
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                && map.len() as u64 > max
            {
                errors.push(format!(
                    "{path}: Too many: {}: must have at most {max} items",
                    map.len()
                ));
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in map {
                let child = format!("{path}.{k}");
                // Unknown fields are dropped by the API server (pruning), not refused.
                let field_schema = props
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                if let Some(s) = field_schema {
                    check(s, v, &child, errors);
                }
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && len < min
            {
                errors.push(format!(
                    "{path}: Invalid value: {len}: {path} in body should have at least {min} items"
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && len > max
            {
                errors.push(format!(
                    "{path}: Too many: {len}: must have at most {max} items"
                ));
            }
            for (i, item) in items.iter().enumerate() {
                if let Some(s) = schema.get("items") {
                    check(s, item, &format!("{path}[{i}]"), errors);
                }
                let earlier = &items[..i];
                let duplicate = match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => earlier.contains(item),
                    Some("map") => {
                        let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        earlier
                            .iter()
                            .any(|e| keys.iter().all(|k| e.get(k) == item.get(k)))
                    }
                    _ => false,
                };
                if duplicate {
                    errors.push(format!(
                        "{path}[{i}]: Duplicate value: {}",
                        serde_json::to_string(item).unwrap_or_default()
                    ));
                }
            }
        }
        Value::String(s) => {
            let chars = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && chars < min
            {
                errors.push(format!(
                    "{path}: Invalid value: {}: {path} in body should be at least {min} chars long",
                    show(value)
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && chars > max
            {
                errors.push(format!(
                    "{path}: Too long: may not be more than {max} bytes"
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if re.is_match(s) => {}
                    Ok(_) => errors.push(format!(
                        "{path}: Invalid value: {}: {path} in body should match '{pattern}'",
                        show(value)
                    )),
                    Err(e) => errors.push(format!("{path}: the schema's pattern is invalid: {e}")),
                }
            }
        }
        Value::Number(n) => {
            if let (Some(min), Some(v)) =
                (schema.get("minimum").and_then(Value::as_f64), n.as_f64())
                && v < min
            {
                errors.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be greater than or equal to {min}"
                ));
            }
            if let (Some(max), Some(v)) =
                (schema.get("maximum").and_then(Value::as_f64), n.as_f64())
                && v > max
            {
                errors.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be less than or equal to {max}"
                ));
            }
        }
        _ => {}
    }
    for alternative in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(alternative).and_then(Value::as_array) {
            let fits = options.iter().any(|o| {
                let mut e = Vec::new();
                check(o, value, path, &mut e);
                e.is_empty()
            });
            if !fits {
                errors.push(format!(
                    "{path}: Invalid value: {}: {path} in body must be one of the allowed forms",
                    show(value)
                ));
            }
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn router(spec: Value) -> Value {
        json!({
            "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
            "metadata": {"name": "edge", "namespace": "default"},
            "spec": spec,
        })
    }

    fn base() -> Value {
        json!({"proxyName": "edge", "listener": {"port": 8080}, "namespaceSelector": {}})
    }

    fn with(patch: Value) -> Value {
        let mut spec = base();
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        router(spec)
    }

    fn errors(patch: Value) -> String {
        validate(&with(patch)).unwrap_err().join("\n")
    }

    #[test]
    fn a_valid_router_passes_and_so_does_one_using_every_field() {
        validate(&router(base())).unwrap();
        validate(&with(json!({
            "hosts": {"template": "{service}.{namespace}.apps.example.com", "allowedSuffixes": ["example.com"]},
            "paths": {"host": "apps.example.com"},
            "tls": {"certificates": [{"secretName": "wild"}], "redirectHttp": true},
            "envoy": {"adminPort": 80, "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": 1}}},
            "listener": {"port": 8080, "bindAddress": "::ffff:10.0.0.1"},
        })))
        .unwrap();
    }

    #[test]
    fn schema_violations_name_the_field() {
        assert!(errors(json!({"proxyName": "Edge"})).contains(
            "spec.proxyName: Invalid value: \"Edge\": spec.proxyName in body should match"
        ));
        assert!(errors(json!({"listener": {"port": 70000}})).contains("spec.listener.port: Invalid value: 70000: spec.listener.port in body should be less than or equal to 65535"));
        assert!(errors(json!({"envoy": {"replicas": -5}})).contains("spec.envoy.replicas"));
        assert!(
            errors(json!({"destination": "Cluster"}))
                .contains("spec.destination: Unsupported value: \"Cluster\"")
        );
        assert!(
            errors(json!({"tls": {"certificates": [{"secretName": "a"}, {"secretName": "a"}]}}))
                .contains("spec.tls.certificates[1]: Duplicate value")
        );
        let mut missing = base();
        missing.as_object_mut().unwrap().remove("namespaceSelector");
        assert!(
            validate(&router(missing))
                .unwrap_err()
                .join("\n")
                .contains("spec.namespaceSelector: Required value")
        );
    }

    #[test]
    fn cel_rules_run_like_on_the_api_server() {
        let e = errors(json!({"listener": {"port": 8080, "bindAddress": "localhost"}}));
        assert!(
            e.contains("bindAddress must be an IPv4 or IPv6 address"),
            "{e}"
        );
        let e = errors(json!({"hosts": {"template": "{svc}.example.com"}}));
        assert!(e.contains("template may contain only"), "{e}");
        let e = errors(json!({"envoy": {"resources": {"limits": {"cpu": "abc"}}}}));
        assert!(e.contains("cpu must be a quantity"), "{e}");
        let e = errors(
            json!({"envoy": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Mi"}}}}),
        );
        assert!(e.contains("must not exceed"), "{e}");
        let e = errors(json!({"listener": {"port": 19000}}));
        assert!(
            e.contains("listener.port must differ from envoy.adminPort"),
            "{e}"
        );
    }

    fn gateway_api(extra: Value) -> Value {
        let mut patch =
            json!({"backend": {"type": "GatewayAPI", "gatewayAPI": {"gatewayClassName": "eg"}}});
        for (k, v) in extra.as_object().unwrap() {
            patch[k] = v.clone();
        }
        patch
    }

    #[test]
    fn the_gateway_api_backend_takes_what_applies_and_refuses_the_rest() {
        validate(&with(json!({"backend": {"type": "Gloo"}}))).unwrap();
        validate(&with(gateway_api(json!({
            "hosts": {"template": "{service}.{namespace}.apps.example.com", "allowedSuffixes": ["example.com"]},
            "paths": {"host": "apps.example.com"},
            "tls": {"certificates": [{"secretName": "wild"}], "redirectHttp": true},
            "listener": {"port": 8080, "bindAddress": "::"},
            "destination": "Kube",
            "service": {"type": "LoadBalancer"},
        }))))
        .unwrap();
        validate(&with(json!({"backend": {"type": "GatewayAPI", "gatewayAPI": {"gateway": {"namespace": "infra", "name": "shared"}}}}))).unwrap();

        let refused = [
            (
                json!({"backend": {"type": "GatewayAPI"}}),
                "backend.gatewayAPI is set exactly when backend.type is GatewayAPI",
            ),
            (
                json!({"backend": {"type": "Gloo", "gatewayAPI": {"gatewayClassName": "eg"}}}),
                "backend.gatewayAPI is set exactly when backend.type is GatewayAPI",
            ),
            (
                json!({"backend": {"type": "Istio"}}),
                "spec.backend.type: Unsupported value: \"Istio\"",
            ),
            (
                json!({"backend": {"type": "GatewayAPI", "gatewayAPI": {}}}),
                "set exactly one of gatewayAPI.gatewayClassName",
            ),
            (
                json!({"backend": {"type": "GatewayAPI", "gatewayAPI": {"gatewayClassName": "eg", "gateway": {"name": "shared"}}}}),
                "set exactly one of gatewayAPI.gatewayClassName",
            ),
            (
                gateway_api(json!({"proxyNamespace": "gloo-system"})),
                "proxyNamespace is where the Gloo Proxy goes",
            ),
            (
                gateway_api(json!({"destination": "Upstream"})),
                "destination Upstream names Gloo Upstreams",
            ),
            (
                gateway_api(json!({"listener": {"port": 8080, "bindAddress": "0.0.0.0"}})),
                "listener.bindAddress is Envoy's",
            ),
            (
                gateway_api(json!({"envoy": {"replicas": 2}})),
                "envoy configures the Envoy Deployment",
            ),
            (
                gateway_api(json!({"envoy": {"adminPort": 9901}})),
                "envoy configures the Envoy Deployment",
            ),
            (
                gateway_api(json!({"service": {"type": "ClusterIP"}})),
                "service configures the Service",
            ),
            (
                gateway_api(json!({"service": {"annotations": {"a": "b"}}})),
                "service configures the Service",
            ),
            (
                json!({
                    "backend": {"type": "GatewayAPI", "gatewayAPI": {"gateway": {"name": "shared"}}},
                    "tls": {"certificates": [{"secretName": "wild"}]},
                }),
                "tls does not apply to an existing Gateway",
            ),
        ];
        for (patch, message) in refused {
            let e = errors(patch.clone());
            assert!(e.contains(message), "{patch}: {e}");
        }
    }
}
