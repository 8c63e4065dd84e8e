//! `hostrouter render`: the objects the operator would write, computed offline from files.

use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use serde::Deserialize;
use serde_json::Value;

use crate::api::HostRouter;
use crate::error::{Error, Result};
use crate::render::tls_secret::{self, TlsSecret};
use crate::render::{self, ClusterView, Settings};

/// Renders the router in `router_path` against the Namespaces, Services and TLS Secrets in
/// `cluster_path`, as a YAML stream: Proxy, ConfigMap, Service, Deployment. A summary goes to
/// stderr.
pub fn render_files(
    router_path: &Path,
    cluster_path: Option<&Path>,
    settings: &Settings,
) -> Result<String> {
    let router_docs = documents(&read(router_path)?, router_path)?;
    let [router_doc] = router_docs.as_slice() else {
        return Err(parse_err(
            router_path,
            format!(
                "expected one HostRouter, found {} documents",
                router_docs.len()
            ),
        ));
    };
    // What admission would refuse is refused here too, with the same rules.
    crate::admission::validate(router_doc).map_err(|errors| {
        parse_err(
            router_path,
            format!(
                "the HostRouter would be rejected at admission:\n  {}",
                errors.join("\n  ")
            ),
        )
    })?;
    let router: HostRouter = serde_json::from_value(router_doc.clone())
        .map_err(|e| parse_err(router_path, e.to_string()))?;
    if router.metadata.uid.is_none() {
        eprintln!(
            "note: {} has no metadata.uid, so the objects below carry no owner references and no {} label; the operator adds both. `kubectl get hostrouter <name> -o yaml` gives a manifest that renders exactly what the operator writes",
            router_path.display(),
            crate::render::naming::ROUTER_UID_LABEL
        );
    }

    let cluster = match cluster_path {
        Some(p) => cluster_objects(&read(p)?, p)?,
        None => Cluster::default(),
    };
    let view = ClusterView {
        namespaces: cluster.namespaces.iter().collect(),
        services: crate::render::RoutedService::all(&cluster.services),
        tls_secrets: cluster.tls_secrets.iter().collect(),
    };
    let rendered = render::render(&router, &view, settings)?;
    let f = &rendered.findings;
    eprintln!(
        "{} namespaces, {} services, {} virtual hosts, {} names left out{}",
        f.namespaces,
        f.services,
        rendered.virtual_hosts(),
        f.dropped.len(),
        if rendered.gloo().is_some_and(|o| o.proxy_compressed) {
            " (Proxy spec compressed)"
        } else {
            ""
        }
    );
    for d in &f.dropped {
        eprintln!("left out ({}): {d}", d.reason.event_reason());
    }
    for p in &f.certificate_problems {
        eprintln!("certificate not served: {p}");
    }
    let objects = rendered.to_values()?;
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object).map_err(|e| Error::Parse {
            what: "output".into(),
            message: e.to_string(),
        })?);
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn parse_err(path: &Path, message: String) -> Error {
    Error::Parse {
        what: path.display().to_string(),
        message,
    }
}

/// The non-empty documents of a YAML stream, `kind: List` items flattened.
fn documents(text: &str, path: &Path) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| parse_err(path, e.to_string()))?;
        match value {
            Value::Null => {}
            Value::Object(ref o)
                if o.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List")) =>
            {
                docs.extend(
                    o.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            v => docs.push(v),
        }
    }
    Ok(docs)
}

fn parse<T: serde::de::DeserializeOwned>(doc: Value, path: &Path) -> Result<T> {
    serde_json::from_value(doc).map_err(|e| parse_err(path, e.to_string()))
}

/// The objects of a cluster file that a render reads.
#[derive(Default)]
struct Cluster {
    namespaces: Vec<Namespace>,
    services: Vec<Service>,
    /// Secrets, checked and reduced as the operator's cache holds them.
    tls_secrets: Vec<TlsSecret>,
}

fn cluster_objects(text: &str, path: &Path) -> Result<Cluster> {
    let mut cluster = Cluster::default();
    for doc in documents(text, path)? {
        match doc.get("kind").and_then(Value::as_str) {
            Some("Namespace") => cluster.namespaces.push(parse(doc, path)?),
            Some("Service") => cluster.services.push(parse(doc, path)?),
            Some("Secret") => {
                let secret: Secret = parse(doc, path)?;
                cluster.tls_secrets.push(tls_secret::summarize(&secret));
            }
            // Other kinds do not affect the render.
            _ => {}
        }
    }
    // A cluster holds one object per kind, namespace and name; a file with two would render
    // by whichever came first.
    let mut seen = std::collections::BTreeSet::new();
    let identities = cluster
        .namespaces
        .iter()
        .map(|n| ("Namespace", None, &n.metadata.name))
        .chain(
            cluster
                .services
                .iter()
                .map(|s| ("Service", s.metadata.namespace.as_ref(), &s.metadata.name)),
        )
        .chain(
            cluster
                .tls_secrets
                .iter()
                .map(|s| ("Secret", s.metadata.namespace.as_ref(), &s.metadata.name)),
        );
    for (kind, namespace, name) in identities {
        if !seen.insert((kind, namespace, name)) {
            return Err(parse_err(
                path,
                format!(
                    "two {kind}s named {}{}",
                    namespace.map(|n| format!("{n}/")).unwrap_or_default(),
                    name.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_objects_of_one_name_are_an_error() {
        let text = "{kind: Service, apiVersion: v1, metadata: {name: s, namespace: a}}\n---\n\
                    {kind: Service, apiVersion: v1, metadata: {name: s, namespace: a}}\n";
        let e = cluster_objects(text, Path::new("x")).err().unwrap();
        assert!(e.to_string().contains("two Services named a/s"), "{e}");
    }

    #[test]
    fn lists_and_streams_are_flattened_and_other_kinds_ignored() {
        let text = "kind: List\nitems:\n- {kind: Namespace, apiVersion: v1, metadata: {name: a}}\n---\n\
                    {kind: Service, apiVersion: v1, metadata: {name: s, namespace: a}, spec: {ports: [{port: 80}]}}\n---\n\
                    {kind: Pod, apiVersion: v1, metadata: {name: p}}\n";
        let c = cluster_objects(text, Path::new("x")).unwrap();
        assert_eq!(
            (c.namespaces.len(), c.services.len(), c.tls_secrets.len()),
            (1, 1, 0)
        );
    }
}
