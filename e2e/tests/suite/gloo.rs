//! Gloo in the loop: a HostRouter makes requests route by Host header through the Proxy the
//! operator writes, through a real Gloo v1.22.1 (out of cluster), through a real Envoy 1.40
//! started from the generated Deployment and ConfigMap, to local backends.
//!
//! Each trial runs its own Gloo (Settings in a namespace of its own, watching only the trial's
//! namespaces), operator, Envoy and backends. A Gloo per trial costs its startup (about 10 s,
//! overlapped with the operator's) but keeps trials independent: trial-specific Settings (the
//! rejection trial, discovery) cannot leak into other trials, and Gloo never writes statuses
//! on the Proxies of the operator trials, which run at the same time. Backends bind an address
//! from 198.51.100.0/24 added to `lo` for the trial (the API server refuses loopback addresses
//! in Endpoints).

use hostrouter_e2e::resources::routers;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hostrouter_e2e::gloo::{
    self, Backend, Gloo, GlooConfig, LoopbackAlias, PETS_JSON, apply_backend_service,
    delete_backend_service, envoy_command, gloo_status, proxy_resource, upstream_resource,
    wait_http,
};
use hostrouter_e2e::http;
use hostrouter_e2e::namespace::unique_name;
use hostrouter_e2e::net::free_ports;
use hostrouter_e2e::operator::{Operator, TRIAL_LABEL};
use hostrouter_e2e::{Process, Progress, Suite, TestContext, TestNamespace, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use libtest_mimic::Trial;
use serde_json::json;

/// How long the chain may take to route a request the first time (Gloo translation included).
const FIRST_ROUTE: Duration = Duration::from_secs(90);
/// How long a change may take to reach Envoy, or a verdict to reach the HostRouter.
const CONVERGE: Duration = Duration::from_secs(30);

/// The lab's backends: Service name, Service port, a path that answers 200.
const BACKENDS: [(&str, u16, &str); 2] = [("petstore", 8080, "/api/pets"), ("inventory", 80, "/")];

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

/// What differs between the trials' setups.
#[derive(Default)]
struct Options {
    /// `Kube` (default) or `Upstream`.
    destination: Option<&'static str>,
    discovery: bool,
    operator_args: Vec<&'static str>,
}

/// One trial's world: namespaces, backends, Gloo, operator, HostRouter and Envoy.
struct Lab {
    client: Client,
    app: TestNamespace,
    edge: TestNamespace,
    gloo: Gloo,
    operator: Operator,
    envoy: Process,
    proxy_name: String,
    router: &'static str,
    listener: String,
    admin: String,
    backends: Vec<Backend>,
    // Dropped last: removes the backends' address from lo.
    alias: LoopbackAlias,
}

impl Lab {
    async fn new(cx: &TestContext, options: Options) -> Result<Self> {
        let alias = LoopbackAlias::add(gloo::unique_backend_ip())?;
        let client = cx.client();
        let shard = unique_name("g");
        let app = cx
            .namespace([("e2e.hostrouter.io/routed", shard.as_str())])
            .await?;
        // Gloo's namespace: Settings, the gloo Service, the Proxy, the HostRouter and its
        // ConfigMap/Deployment/Service, and (with discovery) the Upstreams.
        let edge = cx.namespace([]).await?;

        let mut backends = Vec::new();
        for (name, port, _) in BACKENDS {
            let b = Backend::start(name, alias.ip().into(), 0).await?;
            apply_backend_service(&client, app.name(), name, port.into(), b.address()).await?;
            backends.push(b);
        }

        let config = GlooConfig::new(edge.name())?
            .watch([edge.name(), app.name()])
            .with_discovery(options.discovery);
        let mut args: Vec<String> = config.operator_args();
        args.extend(options.operator_args.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (gloo, operator) =
            tokio::try_join!(Gloo::start(cx, config), Operator::start(cx, &shard, &args))?;
        eprintln!(
            "{}: Gloo serves xDS {:.1?} after start",
            cx.name(),
            gloo.startup
        );

        let ports = free_ports(2)?;
        let (listener_port, admin_port) = (ports[0], ports[1]);
        let proxy_name = format!("gl-{}", &shard[shard.len().saturating_sub(6)..]);
        let router = "edge";
        let manifest = json!({
            "apiVersion": "hostrouter.io/v1alpha1",
            "kind": "HostRouter",
            "metadata": {"name": router, "namespace": edge.name(), "labels": {TRIAL_LABEL: shard}},
            "spec": {
                "proxyName": proxy_name,
                "listener": {"port": listener_port, "bindAddress": "127.0.0.1"},
                "namespaceSelector": {"matchLabels": {"e2e.hostrouter.io/routed": shard}},
                "destination": options.destination.unwrap_or("Kube"),
                "envoy": {"adminPort": admin_port},
                "service": {"type": "ClusterIP"},
            }
        });
        let obj: DynamicObject = serde_json::from_value(manifest)?;
        routers(&client, edge.name())
            .create(&PostParams::default(), &obj)
            .await
            .context("creating the HostRouter")?;

        // Envoy, as the generated Deployment runs it, once the operator wrote it.
        let deployments = Api::<Deployment>::namespaced(client.clone(), edge.name());
        wait_until(
            "the operator to write the Envoy Deployment",
            CONVERGE,
            || async {
                operator.process().ensure_running()?;
                Ok(match deployments.get_opt(&proxy_name).await? {
                    Some(d) => Progress::Done(d),
                    None => Progress::Pending("no Deployment yet".into()),
                })
            },
        )
        .await?;
        let envoy = envoy_command(
            &client,
            edge.name(),
            &proxy_name,
            &cx.log_dir().join("envoy-pod"),
            cx.log_dir(),
            u32::from(admin_port),
        )
        .await?
        .spawn()?;
        eprintln!("{}: {}", cx.name(), envoy.command_line());

        let lab = Self {
            client,
            app,
            edge,
            gloo,
            operator,
            envoy,
            proxy_name,
            router,
            listener: format!("127.0.0.1:{listener_port}"),
            admin: format!("127.0.0.1:{admin_port}"),
            backends,
            alias,
        };
        let began = Instant::now();
        lab.wait_backends(FIRST_ROUTE).await?;
        eprintln!(
            "{}: both backends answer 200 through Envoy {:.1?} after Envoy started",
            cx.name(),
            began.elapsed()
        );
        Ok(lab)
    }

    /// Waits until both backends answer 200 through Envoy. Each becomes routable on its own
    /// (with discovery, once its Upstream is written and Gloo has its endpoints).
    async fn wait_backends(&self, timeout: Duration) -> Result<()> {
        for (service, port, path) in BACKENDS {
            let host = self.host(service, port);
            wait_http(&self.listener, &host, path, 200, timeout, &self.envoy).await?;
        }
        Ok(())
    }

    /// `<app namespace>-<service>-<port>`.
    fn host(&self, service: &str, port: u16) -> String {
        format!("{}-{service}-{port}", self.app.name())
    }

    async fn get(&self, host: &str, path: &str) -> Result<http::Response> {
        self.envoy.ensure_running()?;
        http::get(&self.listener, host, path).await
    }

    async fn proxy(&self) -> Result<DynamicObject> {
        Api::<DynamicObject>::namespaced_with(
            self.client.clone(),
            self.edge.name(),
            &proxy_resource(),
        )
        .get(&self.proxy_name)
        .await
        .context("reading the Proxy")
    }

    /// `(status, reason, message)` of the HostRouter's condition `type_`.
    async fn condition(&self, type_: &str) -> Result<(String, String, String)> {
        let hr = routers(&self.client, self.edge.name())
            .get(self.router)
            .await?;
        let cond = hr.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_)
            .with_context(|| format!("no condition {type_} in {}", hr.data["status"]))?;
        let s = |k: &str| cond[k].as_str().unwrap_or_default().to_owned();
        Ok((s("status"), s("reason"), s("message")))
    }

    async fn wait_condition(
        &self,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> Result<(String, String, String)> {
        wait_until(
            &format!("HostRouter {type_}={status} ({reason})"),
            CONVERGE,
            || async {
                self.operator.process().ensure_running()?;
                self.gloo.ensure_running()?;
                let got = self.condition(type_).await?;
                Ok(if got.0 == status && got.1 == reason {
                    Progress::Done(got)
                } else {
                    Progress::pending(got)
                })
            },
        )
        .await
    }

    /// The petstore's JSON, the second Service's name and a 404 for an unknown host; Gloo
    /// accepted the Proxy (its own status) and Envoy rejected no xDS update.
    async fn check_routing(&self) -> Result<()> {
        let pets = self.get(&self.host("petstore", 8080), "/api/pets").await?;
        ensure!(
            pets.status == 200 && pets.body == PETS_JSON,
            "petstore: {} {:?}",
            pets.status,
            pets.body
        );
        let inventory = self.get(&self.host("inventory", 80), "/").await?;
        ensure!(
            inventory.status == 200 && inventory.body == "inventory",
            "inventory: {} {:?}",
            inventory.status,
            inventory.body
        );
        let unknown = self.get("nobody-here-80", "/api/pets").await?;
        ensure!(
            unknown.status == 404,
            "unknown host: {} {:?}",
            unknown.status,
            unknown.body
        );

        let gloo = gloo_status(&self.proxy().await?, self.edge.name());
        ensure!(
            gloo["state"] == "Accepted" && gloo["reportedBy"] == "gloo",
            "Gloo's status on the Proxy: {gloo}"
        );
        self.wait_condition("ProxyAccepted", "True", "Accepted")
            .await?;
        self.envoy_accepted_every_update().await
    }

    async fn envoy_accepted_every_update(&self) -> Result<()> {
        let stats = http::get(
            &self.admin,
            "admin",
            "/stats?filter=update_(rejected|success)",
        )
        .await?
        .body;
        let rejected: Vec<&str> = stats
            .lines()
            .filter(|l| l.contains("update_rejected") && !l.ends_with(": 0"))
            .collect();
        ensure!(
            rejected.is_empty(),
            "Envoy rejected xDS updates: {rejected:?}\n{stats}"
        );
        Ok(())
    }

    /// Deletes the HostRouter while the operator runs (its finalizer), then the namespaces.
    async fn finish(self) -> Result<()> {
        routers(&self.client, self.edge.name())
            .delete(self.router, &DeleteParams::default())
            .await?;
        let proxies = Api::<DynamicObject>::namespaced_with(
            self.client.clone(),
            self.edge.name(),
            &proxy_resource(),
        );
        wait_until("the Proxy to be deleted", CONVERGE, || async {
            Ok(match proxies.get_opt(&self.proxy_name).await? {
                None => Progress::Done(()),
                Some(_) => Progress::Pending("Proxy still there".into()),
            })
        })
        .await?;
        let Self {
            app,
            edge,
            envoy,
            alias,
            backends,
            gloo,
            operator,
            ..
        } = self;
        drop((envoy, operator, gloo, backends));
        app.delete().await?;
        edge.delete().await?;
        drop(alias);
        Ok(())
    }
}

/// Polls every 50 ms until `check` holds; returns how long that took.
async fn time_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let began = Instant::now();
    let mut last = String::new();
    while began.elapsed() < timeout {
        match check().await {
            Ok(true) => return Ok(began.elapsed()),
            Ok(false) => {}
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what} {last}")
}

fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn secs(values: &[Duration]) -> String {
    values
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
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
/// still routes: it reads our compressed form.
async fn routes_compressed(cx: &TestContext) -> Result<()> {
    let lab = Lab::new(
        cx,
        Options {
            operator_args: vec!["--compress-proxy-above-bytes", "1"],
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
    lab.check_routing().await?;
    lab.finish().await
}
