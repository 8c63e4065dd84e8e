//! Loading CustomResourceDefinitions from YAML and installing them.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::future::try_join_all;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

use crate::wait::{Progress, wait_until};

/// Field manager of the harness's server-side applies.
pub const FIELD_MANAGER: &str = "hostrouter-e2e";

/// How long a CRD may take to become Established.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// The YAML files named by `paths`: files as given, directories as their `*.yaml` and
/// `*.yml` files (not recursive), sorted by name.
pub fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut in_dir = fs::read_dir(path)
                .with_context(|| format!("listing {}", path.display()))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<std::io::Result<Vec<_>>>()?;
            in_dir.retain(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            });
            in_dir.sort();
            files.extend(in_dir);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            bail!("{} does not exist", path.display());
        }
    }
    Ok(files)
}

/// Every CRD in the (multi-document) YAML files named by `paths`; any other kind of
/// document is an error. The `status` stanza some generators write is dropped.
pub fn load(paths: &[PathBuf]) -> Result<Vec<CustomResourceDefinition>> {
    let mut crds = Vec::new();
    for file in yaml_files(paths)? {
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        crds.extend(parse(&text).with_context(|| format!("in {}", file.display()))?);
    }
    Ok(crds)
}

/// The CRDs in a multi-document YAML string.
pub fn parse(yaml: &str) -> Result<Vec<CustomResourceDefinition>> {
    let mut crds = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_json::Value::deserialize(document)
            .with_context(|| format!("parsing YAML document {}", index + 1))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind != "CustomResourceDefinition" {
            bail!(
                "document {} is a {kind:?}, not a CustomResourceDefinition",
                index + 1
            );
        }
        let mut crd: CustomResourceDefinition = serde_json::from_value(value)
            .with_context(|| format!("decoding CRD in document {}", index + 1))?;
        crd.status = None;
        crds.push(crd);
    }
    Ok(crds)
}

/// Applies `crds` (server-side, forcing ownership) and waits until each is Established.
pub async fn install(client: &Client, crds: &[CustomResourceDefinition]) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let (api, params) = (&api, &params);
    try_join_all(crds.iter().map(|crd| async move {
        let name = crd.name_any();
        api.patch(&name, params, &Patch::Apply(crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        wait_established(api, name).await
    }))
    .await?;
    Ok(())
}

/// Loads the CRDs named by `paths` and installs them; returns how many there were.
pub async fn install_paths(client: &Client, paths: &[PathBuf]) -> Result<usize> {
    let crds = load(paths)?;
    install(client, &crds).await?;
    Ok(crds.len())
}

async fn wait_established(api: &Api<CustomResourceDefinition>, name: String) -> Result<()> {
    wait_until(
        &format!("CRD {name} to be Established"),
        ESTABLISH_TIMEOUT,
        || async {
            let crd = api.get(&name).await?;
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            let established = conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(if established {
                Progress::Done(())
            } else {
                Progress::Pending(
                    conditions
                        .iter()
                        .map(|c| {
                            format!(
                                "{}={} ({})",
                                c.type_,
                                c.status,
                                c.message.as_deref().unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
        },
    )
    .await
}

/// Convenience for tests: the CRDs of one file.
pub fn load_file(path: &Path) -> Result<Vec<CustomResourceDefinition>> {
    load(&[path.to_path_buf()])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: widgets.example.com }
spec:
  group: example.com
  names: { kind: Widget, plural: widgets }
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } }
status: { acceptedNames: { kind: "", plural: "" }, conditions: [], storedVersions: [] }
---
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: gadgets.example.com }
spec:
  group: example.com
  names: { kind: Gadget, plural: gadgets }
  scope: Cluster
  versions: [{ name: v1, served: true, storage: true }]
"#;

    #[test]
    fn parses_multi_document_yaml_and_drops_status() {
        let crds = parse(TWO).unwrap();
        let names: Vec<_> = crds.iter().map(|c| c.name_any()).collect();
        assert_eq!(names, ["widgets.example.com", "gadgets.example.com"]);
        assert!(crds[0].status.is_none());
    }

    #[test]
    fn rejects_other_kinds() {
        let err = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap_err();
        assert!(err.to_string().contains("ConfigMap"), "{err}");
    }

    #[test]
    fn the_smoke_fixture_is_a_crd() {
        let crds = load_file(&crate::toolchain::fixture("smoke-crd.yaml")).unwrap();
        assert_eq!(crds.len(), 1);
    }
}
