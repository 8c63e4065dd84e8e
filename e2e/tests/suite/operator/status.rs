//! Status and Events that tell the truth: a Proxy namespace that does not exist yet is said
//! plainly and its creation noticed at once; counts describe the Proxy that exists; a failed
//! update of the Deployment does not claim the Deployment is missing; messages carry the API
//! server's words, not debug dumps of its answer. Events are published for routers of any
//! name, for what is news (objects created, someone else's change reverted), not for the
//! routine updates of a burst of Services.

use std::time::Instant;

use anyhow::{Result, ensure};
use hostrouter_e2e::resources::{proxies as proxy_api, routers};
use hostrouter_e2e::{Progress, Suite, TestContext, wait_until};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use libtest_mimic::Trial;
use serde_json::json;

use crate::world::{CONVERGE, World};

pub fn trials(suite: &Suite) -> Vec<Trial> {
    vec![
        suite.trial(
            "operator::status_tells_the_truth_about_what_exists",
            |cx| async move { truthful_status(&cx).await },
        ),
        suite.trial(
            "operator::events_say_what_matters_for_any_router_name",
            |cx| async move { events_that_matter(&cx).await },
        ),
    ]
}

/// Fails when a condition message carries a debug dump of the API server's answer.
fn plain(message: &str) -> Result<()> {
    ensure!(
        !message.contains("Status {")
            && !message.contains("ListMeta")
            && !message.contains("Some("),
        "a debug dump in a status message: {message}"
    );
    Ok(())
}

async fn truthful_status(cx: &TestContext) -> Result<()> {
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    let late = format!("{}-late", w.gloo.name());
    let mut manifest = w.router_manifest(ns, "edge", &w.proxy_name);
    manifest["spec"]["proxyNamespace"] = json!(late);
    let obj: DynamicObject = serde_json::from_value(manifest)?;
    routers(&w.client, ns)
        .create(&PostParams::default(), &obj)
        .await?;

    // The Proxy's namespace does not exist: said plainly, and no Proxy is counted.
    w.wait_condition(ns, "edge", "Programmed", "False", "ProxyNamespaceMissing")
        .await?;
    let programmed = w.condition(ns, "edge", "Programmed").await?;
    ensure!(
        programmed.2.contains(&format!("Namespace {late}"))
            && programmed.2.contains("does not exist"),
        "Programmed: {programmed:?}"
    );
    plain(&programmed.2)?;
    let accepted = w.condition(ns, "edge", "ProxyAccepted").await?;
    ensure!(
        accepted.0 == "Unknown" && accepted.1 == "NoProxy",
        "ProxyAccepted while no Proxy exists: {accepted:?}"
    );
    let hr = routers(&w.client, ns).get("edge").await?;
    ensure!(
        hr.data["status"]["virtualHosts"] == 0,
        "virtualHosts while no Proxy exists: {}",
        hr.data["status"]
    );

    // The namespace appears: the Proxy follows within seconds, not on a backoff timer.
    let namespaces: Api<Namespace> = Api::all(w.client.clone());
    let began = Instant::now();
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": late, "labels": {"hostrouter-e2e": "true"}}}),
            )?,
        )
        .await?;
    let result = async {
        w.wait_condition(ns, "edge", "Programmed", "True", "Programmed")
            .await?;
        let took = began.elapsed();
        proxy_api(&w.client, &late).get(&w.proxy_name).await?;
        eprintln!(
            "{}: Proxy namespace created → Proxy written in {took:.2?}",
            cx.name()
        );
        ensure!(
            took.as_secs_f64() < 5.0,
            "the new namespace was noticed only after {took:.1?}"
        );

        // Updates of the Envoy Deployment refused by an admission policy: the failure is said in
        // the API server's words, and the Deployment is not called missing.
        let policy = format!("{}-freeze", w.shard);
        freeze_deployments(&w, &policy, ns).await?;
        let frozen = async {
            routers(&w.client, ns)
                .patch(
                    "edge",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"envoy": {"replicas": 2}}})),
                )
                .await?;
            w.wait_condition(ns, "edge", "Programmed", "False", "ApplyFailed")
                .await?;
            let failed = w.condition(ns, "edge", "Programmed").await?;
            ensure!(
                failed.2.contains("frozen by the e2e trial"),
                "Programmed: {failed:?}"
            );
            plain(&failed.2)?;
            let envoy = w.condition(ns, "edge", "EnvoyAvailable").await?;
            ensure!(
                envoy.1 != "DeploymentMissing",
                "EnvoyAvailable says the Deployment is missing while it exists: {envoy:?}"
            );
            eprintln!("{}: {failed:?}; {envoy:?}", cx.name());
            anyhow::Ok(())
        }
        .await;
        unfreeze(&w, &policy).await?;
        frozen?;
        w.wait_condition(ns, "edge", "Programmed", "True", "Programmed")
            .await
    }
    .await;
    let _ = namespaces.delete(&late, &DeleteParams::default()).await;
    result
}

/// A ValidatingAdmissionPolicy (and its binding) refusing every update of a Deployment in
/// `namespace`; waits until it refuses.
async fn freeze_deployments(w: &World, name: &str, namespace: &str) -> Result<()> {
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["UPDATE"], "resources": ["deployments"],
            }]},
            "validations": [{"expression": "false", "message": "updates of this Deployment are frozen by the e2e trial"}],
        },
    }))?;
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }))?;
    Api::<ValidatingAdmissionPolicy>::all(w.client.clone())
        .create(&PostParams::default(), &policy)
        .await?;
    Api::<ValidatingAdmissionPolicyBinding>::all(w.client.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    // The policy takes effect once the API server has compiled it: probe with a dry run.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(w.client.clone(), namespace);
    let probe = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    wait_until(
        "the admission policy to refuse updates",
        CONVERGE,
        || async {
            let r = deployments
                .patch(
                    &w.proxy_name,
                    &probe,
                    &Patch::Merge(json!({"metadata": {"labels": {"probe": "x"}}})),
                )
                .await;
            Ok(match r {
                Err(kube::Error::Api(s)) if s.message.contains("frozen") => Progress::Done(()),
                other => Progress::pending(format!("{:?}", other.map(|_| "accepted"))),
            })
        },
    )
    .await
}

async fn unfreeze(w: &World, name: &str) -> Result<()> {
    Api::<ValidatingAdmissionPolicyBinding>::all(w.client.clone())
        .delete(name, &DeleteParams::default())
        .await?;
    Api::<ValidatingAdmissionPolicy>::all(w.client.clone())
        .delete(name, &DeleteParams::default())
        .await?;
    Ok(())
}

async fn events_that_matter(cx: &TestContext) -> Result<()> {
    use hostrouter_e2e::resources::{events, wait_event};
    let w = World::new(cx, &[]).await?;
    let ns = w.app.name();
    // The longest name a HostRouter can have.
    let name = format!("edge-{}", "x".repeat(248));
    w.create_router(ns, &name, &w.proxy_name).await?;
    w.wait_condition(ns, &name, "Programmed", "True", "Programmed")
        .await?;
    wait_event(&w.client, ns, &name, "Created", "Proxy").await?;

    // A burst of Services: the Proxy is rewritten, and no Event says so.
    for i in 0..20 {
        crate::world::apply_service(
            &w.client,
            ns,
            &format!("burst-{i}"),
            &[("http", 80, "TCP")],
            None,
        )
        .await?;
    }
    let expected: Vec<String> = (0..20).map(|i| format!("{ns}-burst-{i}-80")).collect();
    w.wait_domains(
        "the burst of Services in the Proxy",
        w.expected_domains(&expected),
        CONVERGE,
    )
    .await?;
    let updates = w.operator.writes_of("Proxy", "apply").await?;
    let all = events(&w.client, ns, &name).await?;
    let noise: Vec<_> = all
        .iter()
        .filter(|(_, reason, _)| reason == "Updated")
        .collect();
    ensure!(
        noise.is_empty(),
        "routine Proxy updates ({updates} applies) made Events: {noise:?}"
    );
    eprintln!(
        "{}: {updates} Proxy applies, {} Events in all: {:?}",
        cx.name(),
        all.len(),
        all.iter().map(|(_, r, _)| r.as_str()).collect::<Vec<_>>()
    );

    // Someone else's change is reverted, and that is news.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(w.client.clone(), ns);
    deployments
        .patch(
            &w.proxy_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "envoy", "image": "evil:1"}]}}}})),
        )
        .await?;
    wait_event(&w.client, ns, &name, "DriftReverted", "Deployment").await?;
    Ok(())
}
