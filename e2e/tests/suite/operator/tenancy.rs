//! Tenancy: whoever may create a HostRouter in one namespace cannot publish the Services of the
//! others. A router publishes its own namespace and those that consent (label
//! `hostrouter.io/expose=true`); a router in a namespace the operator trusts
//! (`--trusted-namespaces`) publishes any namespace its selector matches, but the protected
//! ones (`kube-system`, ...) only with their consent.

use std::collections::BTreeSet;

use anyhow::Result;
use hostrouter_e2e::operator::{Operator, TRIAL_LABEL};
use hostrouter_e2e::resources::{proxies as proxy_api, routers, wait_event};
use hostrouter_e2e::{Progress, Suite, TestContext, wait_until};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use libtest_mimic::Trial;
use serde_json::json;

use crate::world::{CONVERGE, EXPOSE_LABEL, World, apply_service};

pub fn trials(suite: &Suite) -> Vec<Trial> {
    vec![suite.trial(
        "operator::a_tenant_cannot_publish_other_namespaces",
        |cx| async move { tenants(&cx).await },
    )]
}

/// The domains of the Proxy `name` in `namespace` (empty while it does not exist).
async fn domains(w: &World, proxy_namespace: &str, name: &str) -> Result<BTreeSet<String>> {
    let Some(proxy) = proxy_api(&w.client, proxy_namespace).get_opt(name).await? else {
        return Ok(BTreeSet::new());
    };
    Ok(
        proxy.data["spec"]["listeners"][0]["httpListener"]["virtualHosts"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|vh| vh["domains"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect(),
    )
}

/// Waits until the Proxy has every domain of `present` and none of `absent`.
async fn wait_published(
    w: &World,
    proxy: &str,
    present: &[&str],
    absent: &[&str],
    what: &str,
) -> Result<()> {
    let gloo = w.gloo.name().to_owned();
    wait_until(what, CONVERGE, || async {
        let d = domains(w, &gloo, proxy).await?;
        let ok = present.iter().all(|p| d.contains(*p)) && absent.iter().all(|a| !d.contains(*a));
        Ok(if ok {
            Progress::Done(())
        } else {
            Progress::pending(json!({
                "missing": present.iter().filter(|p| !d.contains(**p)).collect::<Vec<_>>(),
                "published although they must not be": absent.iter().filter(|a| d.contains(**a)).collect::<Vec<_>>(),
            }))
        })
    })
    .await
}

async fn tenants(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let client = w.client.clone();
    let app = w.app.name().to_owned();
    // A namespace that never consented, and kube-system: each with a Service worth stealing.
    let private = cx.namespace([]).await?;
    apply_service(
        &client,
        private.name(),
        "secret",
        &[("http", 80, "TCP")],
        None,
    )
    .await?;
    let system_service = format!("{}-api", w.shard);
    apply_service(
        &client,
        "kube-system",
        &system_service,
        &[("http", 80, "TCP")],
        None,
    )
    .await?;
    let result = async {
        let stolen = format!("{}-secret-80", private.name());
        let system = format!("kube-system-{system_service}-80");
        let own = format!("{app}-petstore-8080");
        let consenting = format!("{}-cart-80", w.shop.name());

        // The attack: a router in the tenant's namespace selecting every namespace.
        let mut manifest = w.router_manifest(&app, "greedy", &w.proxy_name);
        manifest["spec"]["namespaceSelector"] = json!({});
        let obj: DynamicObject = serde_json::from_value(manifest)?;
        routers(&client, &app)
            .create(&PostParams::default(), &obj)
            .await?;
        wait_published(
            &w,
            &w.proxy_name,
            &[&own, &consenting],
            &[&stolen, &system],
            "the greedy router to publish only its own and consenting namespaces",
        )
        .await?;
        // The status follows the writes.
        wait_until(
            "the status to count the namespaces without consent",
            CONVERGE,
            || async {
                let hr = routers(&client, &app).get("greedy").await?;
                let status = &hr.data["status"];
                Ok(match status["namespacesWithoutConsent"].as_i64() {
                    Some(n) if n >= 2 => Progress::Done(()),
                    _ => Progress::pending(format!("status {status}")),
                })
            },
        )
        .await?;
        wait_event(
            &client,
            &app,
            "greedy",
            "NamespaceWithoutConsent",
            private.name(),
        )
        .await?;
        wait_event(
            &client,
            &app,
            "greedy",
            "NamespaceWithoutConsent",
            "kube-system",
        )
        .await?;

        // Consent given, then taken back: followed within seconds.
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let label =
            |v: serde_json::Value| Patch::Merge(json!({"metadata": {"labels": {EXPOSE_LABEL: v}}}));
        namespaces
            .patch(
                private.name(),
                &PatchParams::default(),
                &label(json!("true")),
            )
            .await?;
        wait_published(
            &w,
            &w.proxy_name,
            &[&stolen],
            &[&system],
            "consent to be followed",
        )
        .await?;
        namespaces
            .patch(private.name(), &PatchParams::default(), &label(json!(null)))
            .await?;
        wait_published(
            &w,
            &w.proxy_name,
            &[],
            &[&stolen],
            "withdrawn consent to be followed",
        )
        .await?;

        // A platform team's namespace, trusted by its own operator: it publishes the private
        // namespace without consent, and still not kube-system.
        let platform = cx.namespace([]).await?;
        let platform_shard = format!("{}-p", w.shard);
        let gloo = w.gloo.name().to_owned();
        let _trusting = Operator::start(
            cx,
            &platform_shard,
            &[
                "--gloo-namespace",
                &gloo,
                "--trusted-namespaces",
                platform.name(),
            ],
        )
        .await?;
        let platform_proxy = format!("{}-p", w.proxy_name);
        let mut manifest = w.router_manifest(platform.name(), "platform", &platform_proxy);
        manifest["metadata"]["labels"] = json!({TRIAL_LABEL: platform_shard});
        manifest["spec"]["namespaceSelector"] = json!({"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "In",
            "values": [private.name(), "kube-system"],
        }]});
        let obj: DynamicObject = serde_json::from_value(manifest)?;
        routers(&client, platform.name())
            .create(&PostParams::default(), &obj)
            .await?;
        wait_published(
            &w,
            &platform_proxy,
            &[&stolen],
            &[&system],
            "the trusted router to publish the private namespace but not kube-system",
        )
        .await?;
        routers(&client, platform.name())
            .delete("platform", &DeleteParams::default())
            .await?;
        anyhow::Ok(())
    }
    .await;
    let _ = Api::<Service>::namespaced(client.clone(), "kube-system")
        .delete(&system_service, &DeleteParams::default())
        .await;
    result
}
