//! The reference behaviour through Gloo: routing by `<namespace>-<service>-<port>`, following
//! Services, Gloo's verdict, discovered Upstreams, and the compressed Proxy.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::TestContext;
use hostrouter_e2e::backends::{Backend, apply_backend_service, delete_backend_service};
use hostrouter_e2e::bench::proxy_domains;
use hostrouter_e2e::gloo::{gloo_status, upstream_resource};
use kube::api::{Api, DynamicObject};
use serde_json::json;

use hostrouter_e2e::Suite;
use libtest_mimic::Trial;

use super::lab::{CONVERGE, Lab, Options};
use crate::timing::{median, secs, time_until};

pub fn trials(suite: &Suite) -> Vec<Trial> {
    vec![
        suite.trial("gloo::routes_by_host_to_kube_services", |cx| async move {
            routes_by_host(&cx).await
        }),
        suite.trial(
            "gloo::follows_services_without_restarting_envoy",
            |cx| async move { follows_services(&cx).await },
        ),
        suite.trial(
            "gloo::proxy_accepted_follows_gloos_verdict",
            |cx| async move { proxy_accepted_follows_gloo(&cx).await },
        ),
        suite.trial("gloo::routes_to_discovered_upstreams", |cx| async move {
            routes_to_upstreams(&cx).await
        }),
        suite.trial(
            "gloo::routes_with_a_compressed_proxy_spec",
            |cx| async move { routes_compressed(&cx).await },
        ),
    ]
}

/// (a) Host header → Service, through Proxy, Gloo and Envoy; unknown hosts get 404.
async fn routes_by_host(cx: &TestContext) -> Result<()> {
    let lab = Lab::new(cx, Options::default()).await?;
    lab.check_routing().await?;
    let proxy = lab.proxy().await?;
    let dest = &proxy.data["spec"]["listeners"][0]["httpListener"]["virtualHosts"][0]["routes"][0]
        ["routeAction"]["single"];
    ensure!(dest.get("kube").is_some(), "destination: {dest}");
    lab.finish().await
}

/// (b) A Service added after Envoy started routes within seconds, a deleted one stops routing;
/// Envoy is never restarted. Prints the median of 10 "apply → first 200" measurements.
async fn follows_services(cx: &TestContext) -> Result<()> {
    let lab = Lab::new(cx, Options::default()).await?;
    let late = Backend::start("late", lab.alias.ip().into(), 0).await?;
    let envoy_pid = lab.envoy.pid();
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let name = format!("late{i}");
        let host = lab.host(&name, 80);
        let began = Instant::now();
        apply_backend_service(&lab.client, lab.app.name(), &name, 80, late.address()).await?;
        time_until(&format!("{host} to answer 200"), CONVERGE, || async {
            let r = lab.get(&host, "/").await?;
            Ok(r.status == 200 && r.body == "late")
        })
        .await?;
        added.push(began.elapsed());

        let began = Instant::now();
        delete_backend_service(&lab.client, lab.app.name(), &name).await?;
        time_until(&format!("{host} to stop routing"), CONVERGE, || async {
            Ok(lab.get(&host, "/").await?.status != 200)
        })
        .await?;
        removed.push(began.elapsed());
    }
    let report = format!(
        "{}: new Service + Endpoints applied → first 200 through Envoy: median {:.2}s of [{}] s\n\
         {}: Service + Endpoints deleted → first non-200: median {:.2}s of [{}] s",
        cx.name(),
        median(&added).as_secs_f64(),
        secs(&added),
        cx.name(),
        median(&removed).as_secs_f64(),
        secs(&removed),
    );
    eprintln!("{report}");
    std::fs::write(cx.log_dir().join("timings.txt"), &report)?;
    let after = lab.get(&lab.host("late0", 80), "/").await?;
    ensure!(
        after.status == 404,
        "deleted host: {} {:?}",
        after.status,
        after.body
    );
    ensure!(
        lab.envoy.pid() == envoy_pid && lab.envoy.is_running(),
        "Envoy was restarted"
    );
    lab.envoy_accepted_every_update().await?;
    drop(late);
    lab.finish().await
}

/// (c) ProxyAccepted mirrors Gloo's own verdict: True while Gloo accepts the Proxy, False with
/// Gloo's reason when Gloo rejects it, True again once the cause is gone.
///
/// The cause is cluster state, not an edit of the Proxy (the operator would revert that): Gloo's
/// Settings turn on external auth (`spec.extauth`) without naming the auth server, and Gloo then
/// fails every HTTP listener it translates ("no extauth server reference configured"), which
/// rejects the Proxy. Nothing in a HostRouter spec reaches a Gloo error: the operator drops
/// duplicate domains, the CRD validates bindAddress with isIP, there is one listener (no port
/// clash), and a missing Service, Upstream or rate-limit/auth server Upstream is only a warning.
async fn proxy_accepted_follows_gloo(cx: &TestContext) -> Result<()> {
    let lab = Lab::new(cx, Options::default()).await?;
    let accepted = lab
        .wait_condition("ProxyAccepted", "True", "Accepted")
        .await?;
    let gloo = gloo_status(&lab.proxy().await?, lab.edge.name());
    ensure!(
        gloo["state"] == "Accepted" && gloo["reportedBy"] == "gloo",
        "Gloo's status: {gloo}"
    );
    eprintln!("{}: ProxyAccepted {accepted:?}", cx.name());

    // External auth switched on in Gloo's Settings, without an auth server: Gloo rejects.
    let broken = lab
        .gloo
        .config
        .clone()
        .settings_patch(json!({"extauth": {"requestTimeout": "1s"}}));
    broken.install(&lab.client).await?;
    let began = Instant::now();
    let rejected = lab
        .wait_condition("ProxyAccepted", "False", "Rejected")
        .await?;
    let gloo = gloo_status(&lab.proxy().await?, lab.edge.name());
    let reason = gloo["reason"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_owned();
    ensure!(
        gloo["state"] == "Rejected" && gloo["reportedBy"] == "gloo" && !reason.is_empty(),
        "Gloo's status: {gloo}"
    );
    ensure!(
        rejected.2.contains(&reason),
        "the condition's message {:?} lacks Gloo's reason {reason:?}",
        rejected.2
    );
    ensure!(
        rejected
            .2
            .contains("no extauth server reference configured"),
        "message: {}",
        rejected.2
    );
    let ready = lab.condition("Ready").await?;
    ensure!(ready.0 == "False", "Ready while Gloo rejects: {ready:?}");
    eprintln!(
        "{}: {:.1?} after the Settings change: ProxyAccepted=False Rejected: {}",
        cx.name(),
        began.elapsed(),
        rejected.2
    );
    // Gloo keeps serving the last configuration it accepted.
    let pets = lab.get(&lab.host("petstore", 8080), "/api/pets").await?;
    eprintln!(
        "{}: while rejected, petstore answers {} through Envoy",
        cx.name(),
        pets.status
    );

    // The Settings fixed again: accepted, and routing.
    lab.gloo.config.install(&lab.client).await?;
    lab.wait_condition("ProxyAccepted", "True", "Accepted")
        .await?;
    lab.wait_backends(CONVERGE).await?;
    lab.check_routing().await?;
    lab.finish().await
}

/// (d) `destination: Upstream` with Gloo's discovery writing the Upstreams.
async fn routes_to_upstreams(cx: &TestContext) -> Result<()> {
    let lab = Lab::new(
        cx,
        Options {
            destination: Some("Upstream"),
            discovery: true,
            ..Options::default()
        },
    )
    .await?;
    lab.check_routing().await?;
    let proxy = lab.proxy().await?;
    let dest = &proxy.data["spec"]["listeners"][0]["httpListener"]["virtualHosts"][0]["routes"][0]
        ["routeAction"]["single"];
    ensure!(
        dest["upstream"]["namespace"] == lab.edge.name(),
        "destination: {dest}"
    );
    let upstreams = Api::<DynamicObject>::namespaced_with(
        lab.client.clone(),
        lab.edge.name(),
        &upstream_resource(),
    );
    let petstore = upstreams
        .get(&format!("{}-petstore-8080", lab.app.name()))
        .await
        .context("the Upstream discovery should have written")?;
    ensure!(
        petstore.data["spec"]["kube"]["serviceName"] == "petstore",
        "Upstream: {}",
        petstore.data
    );
    lab.finish().await
}

/// (e) With `--compress-proxy-above-bytes 1` the Proxy carries only `compressedSpec`, and Gloo
/// still routes: it reads our compressed form. With `--compress-piece-hosts 1` every virtual
/// host is a piece of its own, compressed with the text before it as its dictionary: Gloo reads
/// the joined stream, also after a new Service, when the pieces of the others are reused.
async fn routes_compressed(cx: &TestContext) -> Result<()> {
    let lab = Lab::new(
        cx,
        Options {
            operator_args: vec![
                "--compress-proxy-above-bytes",
                "1",
                "--compress-piece-hosts",
                "1",
            ],
            ..Options::default()
        },
    )
    .await?;
    let proxy = lab.proxy().await?;
    let annotations = proxy.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        annotations.get("gloo.solo.io/compress").map(String::as_str) == Some("true"),
        "annotations: {annotations:?}"
    );
    let spec = proxy.data["spec"]
        .as_object()
        .context("Proxy without spec")?;
    ensure!(
        spec.len() == 1 && spec.contains_key("compressedSpec"),
        "spec keys: {:?}",
        spec.keys().collect::<Vec<_>>()
    );
    let domains = proxy_domains(&proxy)?;
    ensure!(domains.len() >= 2, "one piece only: {domains:?}");
    lab.check_routing().await?;

    // One more Service: a new Proxy whose other pieces are those of the last one.
    let late = Backend::start("late", lab.alias.ip().into(), 0).await?;
    apply_backend_service(&lab.client, lab.app.name(), "late", 80, late.address()).await?;
    let host = lab.host("late", 80);
    time_until(&format!("{host} to answer 200"), CONVERGE, || async {
        let r = lab.get(&host, "/").await?;
        Ok(r.status == 200 && r.body == "late")
    })
    .await?;
    let after = proxy_domains(&lab.proxy().await?)?;
    ensure!(
        after.len() == domains.len() + 1 && after.contains(&host),
        "domains before {domains:?}, after {after:?}"
    );
    lab.check_routing().await?;
    drop(late);
    lab.finish().await
}
