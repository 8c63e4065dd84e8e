//! One Gloo trial's world: namespaces, backends, Gloo, the operator, a HostRouter and Envoy.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hostrouter_e2e::backends::{Backend, PETS_JSON, apply_backend_service};
use hostrouter_e2e::envoy::{envoy_command, wait_http};
use hostrouter_e2e::gloo::{Gloo, GlooConfig, gloo_status, proxy_resource};
use hostrouter_e2e::http;
use hostrouter_e2e::loopback::{self, LoopbackAlias};
use hostrouter_e2e::namespace::unique_name;
use hostrouter_e2e::net::free_ports;
use hostrouter_e2e::operator::{Operator, TRIAL_LABEL};
use hostrouter_e2e::resources::routers;
use hostrouter_e2e::{Process, Progress, TestContext, TestNamespace, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// How long the chain may take to route a request the first time (Gloo translation included).
pub const FIRST_ROUTE: Duration = Duration::from_secs(90);
/// How long a change may take to reach Envoy, or a verdict to reach the HostRouter.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// The lab's backends: Service name, Service port, a path that answers 200.
const BACKENDS: [(&str, u16, &str); 2] = [("petstore", 8080, "/api/pets"), ("inventory", 80, "/")];

/// What differs between the trials' setups.
#[derive(Default)]
pub struct Options {
    /// `Kube` (default) or `Upstream`.
    pub destination: Option<&'static str>,
    pub discovery: bool,
    pub operator_args: Vec<&'static str>,
}

/// One trial's world: namespaces, backends, Gloo, operator, HostRouter and Envoy.
pub struct Lab {
    pub client: Client,
    pub app: TestNamespace,
    pub edge: TestNamespace,
    pub gloo: Gloo,
    pub operator: Operator,
    pub envoy: Process,
    pub proxy_name: String,
    pub router: &'static str,
    /// `127.0.0.1:<port>` of the plain-HTTP listener.
    pub listener: String,
    pub listener_port: u16,
    /// A free port for the HTTPS listener, when a trial adds `spec.tls`.
    pub https_port: u16,
    pub admin: String,
    pub backends: Vec<Backend>,
    // Dropped last: removes the backends' address from lo.
    pub alias: LoopbackAlias,
}

impl Lab {
    pub async fn new(cx: &TestContext, options: Options) -> Result<Self> {
        let alias = LoopbackAlias::add(loopback::unique_backend_ip())?;
        let client = cx.client();
        let shard = unique_name("g");
        let app = cx
            // Consents to being published by the router, which lives in `edge`.
            .namespace([
                ("e2e.hostrouter.io/routed", shard.as_str()),
                (crate::world::EXPOSE_LABEL, "true"),
            ])
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

        let ports = free_ports(3)?;
        let (listener_port, admin_port, https_port) = (ports[0], ports[1], ports[2]);
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
            listener_port,
            https_port,
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
    pub async fn wait_backends(&self, timeout: Duration) -> Result<()> {
        for (service, port, path) in BACKENDS {
            let host = self.host(service, port);
            wait_http(&self.listener, &host, path, 200, timeout, &self.envoy).await?;
        }
        Ok(())
    }

    /// `<app namespace>-<service>-<port>`.
    pub fn host(&self, service: &str, port: u16) -> String {
        format!("{}-{service}-{port}", self.app.name())
    }

    pub async fn get(&self, host: &str, path: &str) -> Result<http::Response> {
        self.envoy.ensure_running()?;
        http::get(&self.listener, host, path).await
    }

    pub async fn proxy(&self) -> Result<DynamicObject> {
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
    pub async fn condition(&self, type_: &str) -> Result<(String, String, String)> {
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

    pub async fn wait_condition(
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
    pub async fn check_routing(&self) -> Result<()> {
        self.check_petstore().await?;
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

    /// The petstore answers its JSON through Envoy.
    pub async fn check_petstore(&self) -> Result<()> {
        let pets = self.get(&self.host("petstore", 8080), "/api/pets").await?;
        ensure!(
            pets.status == 200 && pets.body == PETS_JSON,
            "petstore: {} {:?}",
            pets.status,
            pets.body
        );
        Ok(())
    }

    pub async fn envoy_accepted_every_update(&self) -> Result<()> {
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

    /// Merges `spec` into the HostRouter's spec (a JSON merge patch: `null` removes a field).
    pub async fn patch_router(&self, spec: Value) -> Result<()> {
        routers(&self.client, self.edge.name())
            .patch(
                self.router,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .context("patching the HostRouter")?;
        Ok(())
    }

    /// Deletes the HostRouter while the operator runs (its finalizer), then the namespaces.
    pub async fn finish(self) -> Result<()> {
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
