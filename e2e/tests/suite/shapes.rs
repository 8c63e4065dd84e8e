//! Gloo v1.11's full-schema Proxy CRD, installed under a group of its own, as an oracle for
//! the shape of the Proxies HostRouter writes (Gloo itself ignores unknown fields).
//!
//! Two fields HostRouter writes are newer than v1.11 and are added to the oracle, each checked
//! against Gloo v1.22's protos: `RedirectAction.portRedirect` (`proxy.proto`, field 7, a
//! `google.protobuf.UInt32Value`, since v1.17) and `SslConfig.oneWayTls` (`ssl/ssl.proto`,
//! field 8, a `google.protobuf.BoolValue`; typed in v1.22's own Proxy CRD too).

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use hostrouter_e2e::TestContext;
use hostrouter_e2e::crds;
use hostrouter_e2e::toolchain::{tool, vars};
use kube::api::{ApiResource, GroupVersionKind};
use tokio::sync::OnceCell;

/// The group the v1.11 Proxy schema is served under, so it cannot clash with Gloo's.
const SHAPE_GROUP: &str = "v111.shapes.hostrouter.test";

static INSTALLED: OnceCell<Result<ApiResource, String>> = OnceCell::const_new();

/// Installs the schema once per run and returns its resource.
pub async fn v111_proxy(cx: &TestContext) -> Result<ApiResource> {
    let result = INSTALLED
        .get_or_init(|| async {
            let install = async {
                let file: PathBuf =
                    tool(vars::GLOO_V111_CRDS_DIR)?.join("gloo.solo.io_v1_Proxy.yaml");
                let mut loaded = crds::load(std::slice::from_ref(&file))?;
                let mut crd = loaded
                    .pop()
                    .with_context(|| format!("no CRD in {}", file.display()))?;
                crd.metadata.name = Some(format!("{}.{SHAPE_GROUP}", crd.spec.names.plural));
                let mut schema = serde_json::to_value(&crd.spec.versions)?;
                let added = add_newer_fields(&mut schema);
                anyhow::ensure!(
                    added.0 > 0 && added.1 > 0,
                    "the v1.11 schema has no redirectAction or sslConfigurations to extend: {added:?}"
                );
                crd.spec.versions = serde_json::from_value(schema)?;
                crd.spec.group = SHAPE_GROUP.to_owned();
                let version = crd
                    .spec
                    .versions
                    .first()
                    .map(|v| v.name.clone())
                    .context("CRD has no version")?;
                let plural = crd.spec.names.plural.clone();
                crds::install(&cx.client(), &[crd]).await?;
                anyhow::Ok(ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk(SHAPE_GROUP, &version, "Proxy"),
                    &plural,
                ))
            };
            install.await.map_err(|e| format!("{e:#}"))
        })
        .await;
    result
        .clone()
        .map_err(|e| anyhow!("installing Gloo v1.11's Proxy schema: {e}"))
}

/// Adds `portRedirect` to every `redirectAction` and `oneWayTls` to every `sslConfigurations`
/// item of the schema; returns how many of each were extended.
fn add_newer_fields(schema: &mut serde_json::Value) -> (usize, usize) {
    use serde_json::{Value, json};
    let mut counts = (0, 0);
    fn walk(v: &mut Value, counts: &mut (usize, usize)) {
        match v {
            Value::Object(map) => {
                if let Some(props) = map
                    .get_mut("redirectAction")
                    .and_then(|r| r.get_mut("properties"))
                    .and_then(Value::as_object_mut)
                    && props.contains_key("httpsRedirect")
                {
                    props.insert(
                        "portRedirect".into(),
                        json!({"type": "integer", "minimum": 0, "maximum": 4294967295u64, "nullable": true}),
                    );
                    counts.0 += 1;
                }
                if let Some(props) = map
                    .get_mut("sslConfigurations")
                    .and_then(|s| s.get_mut("items"))
                    .and_then(|i| i.get_mut("properties"))
                    .and_then(Value::as_object_mut)
                {
                    props.insert(
                        "oneWayTls".into(),
                        json!({"type": "boolean", "nullable": true}),
                    );
                    counts.1 += 1;
                }
                for child in map.values_mut() {
                    walk(child, counts);
                }
            }
            Value::Array(items) => {
                for child in items {
                    walk(child, counts);
                }
            }
            _ => {}
        }
    }
    walk(schema, &mut counts);
    counts
}
