//! Restarts, shutdowns and late arrivals: a restart with nothing changed writes nothing;
//! SIGTERM is bounded while the API server is silent; Gloo's CRD installed after the router.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::operator::Operator;
use hostrouter_e2e::resources::{proxies as proxy_api, routers};
use hostrouter_e2e::toolchain::{tool, vars};
use hostrouter_e2e::{Progress, TestContext, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::world::{CONVERGE, World, condition};

/// Scenario 7: a restarted operator that finds everything in place writes nothing.
pub(super) async fn restart_writes_nothing(cx: &TestContext) -> Result<()> {
    let mut w = World::new(cx, &[]).await?;
    let ns = w.app.name().to_owned();
    w.create_router(&ns, "edge", &w.proxy_name).await?;
    w.wait_condition(&ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    // Let the status settle (a second pass sees the applied objects in the cache).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let versions = resource_versions(&w, &ns).await?;
    w.operator.restart(cx).await?;
    wait_until(
        "the restarted operator to reconcile the router",
        2 * CONVERGE,
        || async {
            let n = w
                .operator
                .metric(
                    "controller_runtime_reconcile_total",
                    &[("result", "success")],
                )
                .await?;
            Ok(if n >= 1.0 {
                Progress::Done(())
            } else {
                Progress::pending(n)
            })
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = w.operator.writes().await?;
    let after = resource_versions(&w, &ns).await?;
    ensure!(
        writes == 0.0,
        "the restarted operator wrote {writes} times:\n{}",
        w.operator.metrics().await?
    );
    ensure!(
        versions == after,
        "resourceVersions changed:\nbefore {versions:?}\nafter  {after:?}"
    );
    Ok(())
}

pub(super) async fn resource_versions(w: &World, ns: &str) -> Result<Vec<(String, String)>> {
    let rv = |kind: &str, o: Option<String>| (kind.to_owned(), o.unwrap_or_default());
    Ok(vec![
        rv(
            "HostRouter",
            routers(&w.client, ns).get("edge").await?.resource_version(),
        ),
        rv(
            "Proxy",
            proxy_api(&w.client, w.gloo.name())
                .get(&w.proxy_name)
                .await?
                .resource_version(),
        ),
        rv(
            "ConfigMap",
            Api::<ConfigMap>::namespaced(w.client.clone(), ns)
                .get(&format!("{}-envoy-bootstrap", w.proxy_name))
                .await?
                .resource_version(),
        ),
        rv(
            "Service",
            Api::<Service>::namespaced(w.client.clone(), ns)
                .get(&w.proxy_name)
                .await?
                .resource_version(),
        ),
        rv(
            "Deployment",
            Api::<Deployment>::namespaced(w.client.clone(), ns)
                .get(&w.proxy_name)
                .await?
                .resource_version(),
        ),
    ])
}

/// Without Gloo's Proxy CRD the router says so and keeps retrying; once the CRD is installed
/// the Proxy is written, without a restart. Runs on a control plane of its own that has only
/// HostRouter's CRD.
pub(super) async fn missing_gloo_crd(cx: &TestContext) -> Result<()> {
    let own_crds = hostrouter_e2e::toolchain::workspace_root().join("crds");
    let cluster = hostrouter_e2e::ControlPlane::start(
        hostrouter_e2e::ControlPlaneOptions::from_env()?.crd(own_crds),
    )
    .await?;
    let result = async {
        let client = cluster.client();
        let address = format!("127.0.0.1:{}", hostrouter_e2e::net::free_port()?);
        let operator = cx
            .process("hostrouter-no-gloo", tool(vars::HOSTROUTER_BIN)?)
            .args(["run", "--http-address", &address])
            .env("KUBECONFIG", cluster.kubeconfig_path())
            .env("NO_COLOR", "1")
            .spawn()?;
        let router = json!({
            "apiVersion": "hostrouter.io/v1alpha1", "kind": "HostRouter",
            "metadata": {"name": "edge", "namespace": "default"},
            "spec": {"proxyName": "edge", "listener": {"port": 8080}, "namespaceSelector": {}},
        });
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "gloo-system"}}))?,
            )
            .await?;
        routers(&client, "default")
            .create(&PostParams::default(), &serde_json::from_value(router)?)
            .await?;
        let wait = |status: &'static str, reason: &'static str| {
            let client = client.clone();
            let operator = &operator;
            async move {
                wait_until(
                    &format!("Programmed={status} ({reason})"),
                    CONVERGE,
                    || async {
                        if !operator.is_running() {
                            return Ok(Progress::Abort("the operator exited".into()));
                        }
                        let got = condition(&client, "default", "edge", "Programmed").await?;
                        Ok(if got.0 == status && got.1 == reason {
                            Progress::Done(got.2)
                        } else {
                            Progress::pending(got)
                        })
                    },
                )
                .await
            }
        };
        let message = wait("False", "GlooCRDMissing").await?;
        ensure!(
            message.contains("proxies.gloo.solo.io"),
            "message: {message}"
        );
        let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
        ensure!(
            deps.get_opt("edge").await?.is_some(),
            "the namespaced objects are written without Gloo"
        );
        // The status is written before the reconcile that wrote it ends and is counted.
        wait_until(
            "a missing CRD is a reported state, not a failed reconcile",
            Duration::from_secs(10),
            || async {
                let metrics = hostrouter_e2e::http::get(&address, "operator", "/metrics")
                    .await?
                    .body;
                let successes = hostrouter_e2e::http::metric(
                    &metrics,
                    "controller_runtime_reconcile_total",
                    &[("result", "success")],
                )
                .unwrap_or(0.0);
                Ok(if successes >= 1.0 {
                    Progress::Done(())
                } else {
                    Progress::pending(metrics)
                })
            },
        )
        .await?;

        cluster
            .install_crds(&[tool(vars::GLOO_CRDS_DIR)?.join("gloo.solo.io_v1_Proxy.yaml")])
            .await?;
        wait("True", "Programmed").await?;
        let proxy = proxy_api(&client, "gloo-system").get_opt("edge").await?;
        ensure!(proxy.is_some(), "the Proxy exists once the CRD does");
        operator.ensure_running()?;
        anyhow::Ok(())
    }
    .await;
    let stopped = cluster.stop(result.is_err()).await;
    result?;
    stopped.map(|_| ())
}

/// SIGTERM ends the process within `--shutdown-timeout` even when the API server stops
/// answering in the middle of the work (a relay in front of it holds every byte): the
/// in-flight reconcile is abandoned rather than awaited for minutes. The router names a TLS
/// Secret that does not exist, so it is reconciled every 10 s: one reconcile is surely waiting
/// on the silent API server when the signal comes.
pub(super) async fn bounded_shutdown(cx: &TestContext) -> Result<()> {
    use hostrouter_e2e::operator::chart_identity;
    use hostrouter_e2e::relay::{Relay, kubeconfig_via};
    use nix::sys::signal::Signal;
    use std::time::Instant;

    let mut w = World::new(cx, &[]).await?;
    let ns = w.app.name().to_owned();
    let mut manifest = w.router_manifest(&ns, "edge", &w.proxy_name);
    manifest["spec"]["tls"] = json!({"certificates": [{"secretName": "never-issued"}]});
    let obj: kube::api::DynamicObject = serde_json::from_value(manifest)?;
    routers(&w.client, &ns)
        .create(&PostParams::default(), &obj)
        .await?;
    w.wait_condition(&ns, "edge", "Programmed", "True", "Programmed")
        .await?;
    // Hand the router to an operator that reaches the API server through the relay.
    w.operator.stop().await?;
    let server: std::net::SocketAddr = cx
        .cluster()
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .context("the API server's address")?;
    let relay = Relay::start(server).await?;
    let kubeconfig = kubeconfig_via(
        &chart_identity(cx.cluster()).await?,
        relay.address(),
        cx.log_dir(),
    )?;
    let gloo_namespace = w.gloo.name().to_owned();
    let mut relayed = Operator::start_with(
        cx,
        "hostrouter-relayed",
        &w.shard,
        &[
            "--gloo-namespace",
            &gloo_namespace,
            "--shutdown-timeout",
            "3s",
        ],
        kubeconfig,
    )
    .await?;
    // The API server goes silent; within 10 s a reconcile is waiting on it.
    relay.freeze(true);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let began = Instant::now();
    relayed.process().signal(Signal::SIGTERM)?;
    let status = tokio::time::timeout(Duration::from_secs(15), relayed.process_mut().wait())
        .await
        .context(
            "the operator did not exit within 15 s of SIGTERM while the API server was silent",
        )??;
    let took = began.elapsed();
    eprintln!(
        "{}: SIGTERM with a silent API server → exited {status} after {took:.2?}",
        cx.name()
    );
    ensure!(
        took < Duration::from_secs(6),
        "exited only after {took:.1?} (--shutdown-timeout 3s)"
    );
    relay.freeze(false);
    Ok(())
}
