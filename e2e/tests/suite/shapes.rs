//! Gloo v1.11's full-schema Proxy CRD, installed under a group of its own, as an oracle for
//! the shape of the Proxies HostRouter writes (Gloo itself ignores unknown fields).

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
