//! The world an operator trial runs in: namespaces selected and not, Services, an operator
//! scoped to the trial, and helpers to create HostRouters and read what the operator wrote.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hostrouter_e2e::operator::{Operator, TRIAL_LABEL};
use hostrouter_e2e::resources::{proxies as proxy_api, routers};
use hostrouter_e2e::{Progress, TestContext, TestNamespace, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The label by which a namespace consents to being published by routers of other namespaces.
pub const EXPOSE_LABEL: &str = "hostrouter.io/expose";

/// How long the operator may take to converge after start.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// A trial's cluster: two selected namespaces, one not selected, a namespace standing in for
/// Gloo's, Services in each, an operator, and one HostRouter.
pub struct World {
    pub shard: String,
    pub app: TestNamespace,
    pub shop: TestNamespace,
    pub other: TestNamespace,
    pub gloo: TestNamespace,
    pub operator: Operator,
    pub proxy_name: String,
    pub client: Client,
}

impl World {
    /// Label that selects the trial's namespaces.
    pub fn select_label(&self) -> (&'static str, &str) {
        ("e2e.hostrouter.io/routed", self.shard.as_str())
    }

    pub async fn new(cx: &TestContext, extra_args: &[&str]) -> Result<Self> {
        let shard = hostrouter_e2e::namespace::unique_name("t");
        let routed = ("e2e.hostrouter.io/routed", shard.as_str());
        // The router lives in `app`; `shop` consents to being published by it.
        let app = cx.namespace([routed]).await?;
        let shop = cx.namespace([routed, (EXPOSE_LABEL, "true")]).await?;
        let other = cx.namespace([]).await?;
        let gloo = cx.namespace([]).await?;
        let client = cx.client();
        apply_service(
            &client,
            app.name(),
            "petstore",
            &[("http", 8080, "TCP")],
            None,
        )
        .await?;
        apply_service(&client, app.name(), "dns", &[("dns", 53, "UDP")], None).await?;
        apply_service(
            &client,
            app.name(),
            "legacy",
            &[("http", 80, "TCP")],
            Some("true"),
        )
        .await?;
        apply_external_name(&client, app.name(), "external").await?;
        apply_service(
            &client,
            shop.name(),
            "cart",
            &[("http", 80, "TCP"), ("admin", 9090, "TCP")],
            None,
        )
        .await?;
        apply_service(
            &client,
            other.name(),
            "hidden",
            &[("http", 80, "TCP")],
            None,
        )
        .await?;
        let mut args = vec!["--gloo-namespace", gloo.name()];
        args.extend_from_slice(extra_args);
        let operator = Operator::start(cx, &shard, &args).await?;
        let proxy_name = format!("edge-{}", &shard[shard.len().saturating_sub(6)..]);
        Ok(Self {
            shard,
            app,
            shop,
            other,
            gloo,
            operator,
            proxy_name,
            client,
        })
    }

    pub fn router_manifest(&self, namespace: &str, name: &str, proxy_name: &str) -> Value {
        json!({
            "apiVersion": "hostrouter.io/v1alpha1",
            "kind": "HostRouter",
            "metadata": {"name": name, "namespace": namespace, "labels": {TRIAL_LABEL: self.shard}},
            "spec": {
                "proxyName": proxy_name,
                "listener": {"port": 8080},
                "namespaceSelector": {"matchLabels": {self.select_label().0: self.select_label().1}},
                "service": {"type": "ClusterIP"},
            }
        })
    }

    pub async fn create_router(&self, namespace: &str, name: &str, proxy_name: &str) -> Result<()> {
        let api = routers(&self.client, namespace);
        let obj: DynamicObject =
            serde_json::from_value(self.router_manifest(namespace, name, proxy_name))?;
        api.create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating HostRouter {namespace}/{name}"))?;
        Ok(())
    }

    /// Creates the router `edge` in `app`, writing the world's Proxy, and waits for the Proxy
    /// to hold the selected Service ports.
    pub async fn create_edge(&self) -> Result<()> {
        self.create_router(self.app.name(), "edge", &self.proxy_name)
            .await?;
        self.wait_domains(
            "the Proxy to hold the selected Service ports",
            self.expected_domains(&[]),
            CONVERGE,
        )
        .await?;
        Ok(())
    }

    /// The domains in the Proxy, once it exists.
    pub async fn domains(&self) -> Result<BTreeSet<String>> {
        let proxy = proxy_api(&self.client, self.gloo.name())
            .get(&self.proxy_name)
            .await?;
        Ok(domains_of(&proxy))
    }

    pub fn expected_domains(&self, extra: &[String]) -> BTreeSet<String> {
        let mut d: BTreeSet<String> = [
            format!("{}-petstore-8080", self.app.name()),
            format!("{}-cart-80", self.shop.name()),
            format!("{}-cart-9090", self.shop.name()),
        ]
        .into();
        d.extend(extra.iter().cloned());
        d
    }

    pub async fn wait_domains(
        &self,
        what: &str,
        expected: BTreeSet<String>,
        timeout: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        wait_until(what, timeout, || async {
            let got = self.domains().await?;
            Ok(if got == expected {
                Progress::Done(())
            } else {
                Progress::pending(got)
            })
        })
        .await
        .with_context(|| format!("expected {expected:?}"))?;
        Ok(start.elapsed())
    }

    pub async fn condition(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
    ) -> Result<(String, String, String)> {
        condition(&self.client, namespace, name, type_).await
    }

    pub async fn wait_condition(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> Result<()> {
        wait_condition_on(&self.client, namespace, name, type_, status, reason, None).await
    }
}

/// Waits until the router's condition `type_` has `status` and `reason`, and a message that
/// contains `message` when given.
pub async fn wait_condition_on(
    client: &Client,
    namespace: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
    message: Option<&str>,
) -> Result<()> {
    let what = format!("{namespace}/{name} {type_}={status} ({reason})");
    wait_until(&what, CONVERGE, || async {
        let got = condition(client, namespace, name, type_).await?;
        Ok(
            if got.0 == status && got.1 == reason && message.is_none_or(|m| got.2.contains(m)) {
                Progress::Done(())
            } else {
                Progress::pending(got)
            },
        )
    })
    .await
}

pub async fn condition(
    client: &Client,
    namespace: &str,
    name: &str,
    type_: &str,
) -> Result<(String, String, String)> {
    let hr = routers(client, namespace).get(name).await?;
    let conds = hr.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let c = conds
        .iter()
        .find(|c| c["type"] == type_)
        .with_context(|| format!("no {type_} condition yet; status is {}", hr.data["status"]))?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Ok((s("status"), s("reason"), s("message")))
}

fn domains_of(proxy: &DynamicObject) -> BTreeSet<String> {
    domains_per_listener(&proxy.data)
        .into_iter()
        .next()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Per listener of a Proxy (as JSON), every domain of every virtual host, in order.
pub fn domains_per_listener(proxy: &Value) -> Vec<Vec<String>> {
    proxy["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            l["httpListener"]["virtualHosts"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|vh| vh["domains"].as_array().cloned().unwrap_or_default())
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// Creates the namespace `name` with `labels` (a JSON object), on a control plane of a trial's
/// own (on the shared one, [`TestContext::namespace`] gives unique names).
pub async fn create_namespace(client: &Client, name: &str, labels: Value) -> Result<()> {
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?,
        )
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

pub async fn apply_service(
    client: &Client,
    ns: &str,
    name: &str,
    ports: &[(&str, i32, &str)],
    exclude: Option<&str>,
) -> Result<()> {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto}))
        .collect();
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": ports, "selector": {"app": name}},
    });
    if let Some(v) = exclude {
        svc["metadata"]["annotations"] = json!({"hostrouter.io/exclude": v});
    }
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&svc),
    )
    .await
    .with_context(|| format!("applying Service {ns}/{name}"))?;
    Ok(())
}

async fn apply_external_name(client: &Client, ns: &str, name: &str) -> Result<()> {
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "ExternalName", "externalName": "example.com", "ports": [{"port": 443}]},
    });
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&svc),
    )
    .await?;
    Ok(())
}

/// `(kind, namespace, name)` of every object labelled as written by the operator in
/// `router_ns` (ConfigMaps, Services, Deployments) and `gloo_ns` (Proxies).
pub async fn managed_objects(
    client: &Client,
    router_ns: &str,
    gloo_ns: &str,
) -> Result<BTreeSet<(String, String, String)>> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=hostrouter");
    let mut all = BTreeSet::new();
    let mut add = |kind: &str, ns: &str, names: Vec<Option<String>>| {
        all.extend(
            names
                .into_iter()
                .flatten()
                .map(|n| (kind.to_owned(), ns.to_owned(), n)),
        );
    };
    let c = client.clone();
    let cms = Api::<ConfigMap>::namespaced(c.clone(), router_ns)
        .list(&lp)
        .await?;
    add(
        "ConfigMap",
        router_ns,
        cms.items.into_iter().map(|o| o.metadata.name).collect(),
    );
    let svcs = Api::<Service>::namespaced(c.clone(), router_ns)
        .list(&lp)
        .await?;
    add(
        "Service",
        router_ns,
        svcs.items.into_iter().map(|o| o.metadata.name).collect(),
    );
    let deps = Api::<Deployment>::namespaced(c.clone(), router_ns)
        .list(&lp)
        .await?;
    add(
        "Deployment",
        router_ns,
        deps.items.into_iter().map(|o| o.metadata.name).collect(),
    );
    let proxies = proxy_api(&c, gloo_ns).list(&lp).await?;
    add(
        "Proxy",
        gloo_ns,
        proxies.items.into_iter().map(|o| o.metadata.name).collect(),
    );
    Ok(all)
}
