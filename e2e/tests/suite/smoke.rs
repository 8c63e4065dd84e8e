//! Smoke trials of the harness itself: the control plane is the real thing (version,
//! storage, CRDs, garbage collector, namespace controller, RBAC) and the tools run.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::cli::ToolCommand;
use hostrouter_e2e::kubeconfig::client_from;
use hostrouter_e2e::toolchain::{tool, vars};
use hostrouter_e2e::{Progress, Suite, TestContext, wait_until};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, PostParams,
};
use kube::{Api, Client, ResourceExt};
use libtest_mimic::Trial;
use serde_json::json;

/// The Kubernetes release `make toolchain` builds.
const KUBERNETES_VERSION: &str = "v1.37.2";
/// The Envoy release `make toolchain` installs.
const ENVOY_VERSION: &str = "1.40.";
/// How long the garbage collector and namespace controller may take.
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(60);

pub fn trials(suite: &Suite) -> Vec<Trial> {
    vec![
        suite.trial("smoke::api_server_version", |cx| async move {
            api_server_version(&cx).await
        }),
        suite.trial("smoke::configmap_round_trip", |cx| async move {
            configmap_round_trip(&cx).await
        }),
        suite.trial("smoke::custom_resource_round_trip", |cx| async move {
            custom_resource_round_trip(&cx).await
        }),
        suite.trial(
            "smoke::gc_collects_dependents_of_configmap",
            |cx| async move { gc_configmap_owner(&cx).await },
        ),
        suite.trial(
            "smoke::gc_collects_dependents_of_custom_resource",
            |cx| async move { gc_custom_resource_owner(&cx).await },
        ),
        suite.trial("smoke::namespace_controller_finalizes", |cx| async move {
            namespace_controller_finalizes(&cx).await
        }),
        suite.trial(
            "smoke::service_account_kubeconfig_obeys_rbac",
            |cx| async move { service_account_rbac(&cx).await },
        ),
        suite.trial("smoke::helm_talks_to_the_cluster", |cx| async move {
            helm_talks_to_the_cluster(&cx).await
        }),
        suite.local_trial("smoke::envoy_runs", envoy_runs),
    ]
}

async fn api_server_version(cx: &TestContext) -> Result<()> {
    let info = cx.client().apiserver_version().await?;
    ensure!(
        info.git_version == KUBERNETES_VERSION,
        "API server reports {}, expected {KUBERNETES_VERSION}",
        info.git_version
    );
    let raw = cx.cluster().kubectl(["get", "--raw", "/version"]).await?;
    ensure!(raw.contains(KUBERNETES_VERSION), "kubectl saw {raw}");
    Ok(())
}

async fn configmap_round_trip(cx: &TestContext) -> Result<()> {
    let ns = cx.namespace([]).await?;
    let api: Api<ConfigMap> = Api::namespaced(cx.client(), ns.name());
    let data = BTreeMap::from([("greeting".to_owned(), "hello, world".to_owned())]);
    api.create(
        &PostParams::default(),
        &configmap("round-trip", data.clone(), None),
    )
    .await?;
    let read = api.get("round-trip").await?;
    ensure!(
        read.data.as_ref() == Some(&data),
        "read back {:?}",
        read.data
    );
    ensure!(read.uid().is_some(), "no uid assigned");
    ns.delete().await
}

fn widgets() -> ApiResource {
    let gvk = GroupVersionKind::gvk("smoke.e2e.hostrouter.io", "v1", "Widget");
    ApiResource::from_gvk_with_plural(&gvk, "widgets")
}

async fn custom_resource_round_trip(cx: &TestContext) -> Result<()> {
    let ns = cx.namespace([]).await?;
    let resource = widgets();
    let api: Api<DynamicObject> = Api::namespaced_with(cx.client(), ns.name(), &resource);
    let widget =
        DynamicObject::new("w1", &resource).data(json!({"spec": {"size": 3, "color": "red"}}));
    api.create(&PostParams::default(), &widget).await?;
    let read = api.get("w1").await?;
    ensure!(
        read.data["spec"] == json!({"size": 3, "color": "red"}),
        "read back {}",
        read.data
    );
    // The schema is enforced: the CRD is served as installed, not as a free-form blob.
    let invalid = DynamicObject::new("w2", &resource).data(json!({"spec": {"size": 0}}));
    match api.create(&PostParams::default(), &invalid).await {
        Err(kube::Error::Api(status)) if status.code == 422 => {}
        other => anyhow::bail!("a Widget of size 0 was not rejected as invalid: {other:?}"),
    }
    let listed = api.list(&ListParams::default()).await?;
    ensure!(
        listed.items.len() == 1,
        "listed {} widgets",
        listed.items.len()
    );
    ns.delete().await
}

async fn gc_configmap_owner(cx: &TestContext) -> Result<()> {
    let ns = cx.namespace([]).await?;
    let api: Api<ConfigMap> = Api::namespaced(cx.client(), ns.name());
    let owner = api
        .create(
            &PostParams::default(),
            &configmap("owner", BTreeMap::new(), None),
        )
        .await?;
    let reference = owner_reference("v1", "ConfigMap", &owner.metadata)?;
    expect_dependent_collected(cx, ns.name(), reference, || async {
        api.delete("owner", &DeleteParams::background()).await?;
        Ok(())
    })
    .await?;
    ns.delete().await
}

async fn gc_custom_resource_owner(cx: &TestContext) -> Result<()> {
    let ns = cx.namespace([]).await?;
    let resource = widgets();
    let widgets: Api<DynamicObject> = Api::namespaced_with(cx.client(), ns.name(), &resource);
    let owner = widgets
        .create(
            &PostParams::default(),
            &DynamicObject::new("owner", &resource).data(json!({"spec": {"size": 1}})),
        )
        .await?;
    let reference = owner_reference("smoke.e2e.hostrouter.io/v1", "Widget", &owner.metadata)?;
    expect_dependent_collected(cx, ns.name(), reference, || async {
        widgets.delete("owner", &DeleteParams::background()).await?;
        Ok(())
    })
    .await?;
    ns.delete().await
}

/// Creates a ConfigMap owned through `reference`, runs `delete_owner`, and waits for the
/// garbage collector to remove the ConfigMap.
async fn expect_dependent_collected<F, Fut>(
    cx: &TestContext,
    namespace: &str,
    reference: OwnerReference,
    delete_owner: F,
) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let api: Api<ConfigMap> = Api::namespaced(cx.client(), namespace);
    let dependent = configmap("dependent", BTreeMap::new(), Some(reference));
    api.create(&PostParams::default(), &dependent).await?;
    // While the owner exists, the dependent stays.
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        api.get_opt("dependent").await?.is_some(),
        "dependent vanished while its owner existed"
    );
    delete_owner().await?;
    wait_until(
        "the garbage collector to delete the dependent ConfigMap",
        CONTROLLER_TIMEOUT,
        || async {
            Ok(match api.get_opt("dependent").await? {
                None => Progress::Done(()),
                Some(cm) => Progress::Pending(format!(
                    "still there (deletionTimestamp {:?}, owners {:?})",
                    cm.metadata.deletion_timestamp,
                    cm.owner_references()
                        .iter()
                        .map(|o| &o.name)
                        .collect::<Vec<_>>()
                )),
            })
        },
    )
    .await
}

async fn namespace_controller_finalizes(cx: &TestContext) -> Result<()> {
    let ns = cx.namespace([("purpose", "finalize")]).await?;
    let name = ns.name().to_owned();
    let configmaps: Api<ConfigMap> = Api::namespaced(cx.client(), &name);
    configmaps
        .create(
            &PostParams::default(),
            &configmap("content", BTreeMap::new(), None),
        )
        .await?;
    ns.delete().await?;
    let namespaces: Api<Namespace> = Api::all(cx.client());
    wait_until(
        &format!("namespace {name} to be finalized and removed"),
        CONTROLLER_TIMEOUT,
        || async {
            Ok(match namespaces.get_opt(&name).await? {
                None => Progress::Done(()),
                Some(ns) => Progress::pending(ns.status.and_then(|s| s.phase)),
            })
        },
    )
    .await
}

async fn service_account_rbac(cx: &TestContext) -> Result<()> {
    let ns = cx.namespace([]).await?;
    let client = cx.client();
    Api::<ServiceAccount>::namespaced(client.clone(), ns.name())
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: named("reader"),
                ..ServiceAccount::default()
            },
        )
        .await?;
    let kubeconfig = cx
        .cluster()
        .service_account_kubeconfig(ns.name(), "reader")
        .await?;
    let as_reader = client_from(&kubeconfig).await?;
    let readers_view: Api<ConfigMap> = Api::namespaced(as_reader.clone(), ns.name());
    match readers_view.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => anyhow::bail!("listing ConfigMaps without a role was not forbidden: {other:?}"),
    }
    grant_configmap_reading(&client, ns.name(), "reader").await?;
    wait_until(
        "the RoleBinding to take effect",
        Duration::from_secs(30),
        || async {
            Ok(match readers_view.list(&ListParams::default()).await {
                Ok(_) => Progress::Done(()),
                Err(err) => Progress::Pending(err.to_string()),
            })
        },
    )
    .await?;
    // kubectl with the same kubeconfig sees itself as the service account.
    let whoami = ToolCommand::new(hostrouter_e2e::toolchain::kubectl()?)
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .run()
        .await?;
    let expected = format!("system:serviceaccount:{}:reader", ns.name());
    ensure!(
        whoami == expected,
        "kubectl auth whoami says {whoami:?}, expected {expected:?}"
    );
    ns.delete().await
}

async fn grant_configmap_reading(client: &Client, namespace: &str, account: &str) -> Result<()> {
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &Role {
                metadata: named("configmap-reader"),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["configmaps".into()]),
                    verbs: vec!["get".into(), "list".into()],
                    ..PolicyRule::default()
                }]),
            },
        )
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: named("configmap-reader"),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "configmap-reader".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: account.into(),
                    namespace: Some(namespace.into()),
                    ..Subject::default()
                }]),
            },
        )
        .await?;
    Ok(())
}

async fn helm_talks_to_the_cluster(cx: &TestContext) -> Result<()> {
    let version = cx.cluster().helm(["version", "--short"]).await?;
    ensure!(version.starts_with("v4."), "helm version {version:?}");
    let ns = cx.namespace([]).await?;
    let releases = cx
        .cluster()
        .helm(["list", "--namespace", ns.name(), "--output", "json"])
        .await?;
    ensure!(releases.trim() == "[]", "unexpected releases: {releases}");
    ns.delete().await
}

async fn envoy_runs() -> Result<()> {
    let envoy = tool(vars::ENVOY)?;
    let version = ToolCommand::new(&envoy).arg("--version").run().await?;
    ensure!(
        version.contains(&format!("/{ENVOY_VERSION}")),
        "{} --version printed {version:?}, expected {ENVOY_VERSION}x",
        envoy.display()
    );
    Ok(())
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

fn configmap(
    name: &str,
    data: BTreeMap<String, String>,
    owner: Option<OwnerReference>,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            owner_references: owner.map(|o| vec![o]),
            ..named(name)
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

fn owner_reference(api_version: &str, kind: &str, owner: &ObjectMeta) -> Result<OwnerReference> {
    Ok(OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().context("owner has no name")?,
        uid: owner.uid.clone().context("owner has no uid")?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}
