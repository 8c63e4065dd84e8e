//! Routes people can use, asked with the real `curl` of any backend that serves the route table
//! (Gloo with the operator's Envoy, in `gloo`; Envoy Gateway's Envoy Pods, in `gateway_api`):
//! hostnames from a
//! template (with and without `:port` in Host), a multi-port Service on its primary port, extra
//! hostnames under the allowed suffixes, TLS chosen by SNI from `kubernetes.io/tls` Secrets
//! (checked by `curl --cacert` against a CA made for the trial), a Secret that is missing, of
//! another type or malformed never taking plain HTTP down, certificate rotation without an
//! Envoy restart, the HTTP→HTTPS redirect with its ACME exception, and path prefixes stripped.
//!
//! Each body writes its expectations as a table of [`Case`]s and runs against a [`RouteLab`]:
//! the same bodies, the same cases, for both backends.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use hostrouter_e2e::backends::{Backend, PETS_JSON, RECEIVED_PATH_HEADER, apply_service};
use hostrouter_e2e::curl::{self, Reply, Request};
use hostrouter_e2e::operator::Operator;
use hostrouter_e2e::pki::TestCa;
use hostrouter_e2e::resources::{apply_secret, apply_tls_secret, routers, wait_event};
use hostrouter_e2e::{Progress, TestContext, wait_until};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

use crate::timing::{median, secs, time_until};
use crate::world::condition;

/// How long a change may take to reach Envoy, or a verdict to reach the HostRouter.
const CONVERGE: Duration = Duration::from_secs(60);

/// What a route body needs of a backend's lab: where the Services go, the router, where Envoy
/// listens, and how to tell an Envoy restart.
pub trait RouteLab {
    fn client(&self) -> &Client;
    /// The namespace of the routed Services.
    fn app(&self) -> &str;
    /// The router's namespace (its TLS Secrets live there).
    fn edge(&self) -> &str;
    fn router(&self) -> &str;
    fn operator(&self) -> &Operator;
    /// The address curl connects to.
    fn address(&self) -> &str;
    fn listener_port(&self) -> u16;
    /// The port a body gives `spec.tls.port`.
    fn https_port(&self) -> u16;
    /// The address backends bind.
    fn backend_ip(&self) -> IpAddr;
    /// The backend's verdict condition and its reason when accepted.
    fn accepted(&self) -> (&'static str, &'static str);
    /// Fails when a part of the lab stopped.
    fn ensure_running(&self) -> Result<()>;
    /// What identifies the running Envoys (changes when one restarts).
    fn envoys(&self) -> impl Future<Output = Result<String>>;
    /// Merges `spec` into the router's spec (a JSON merge patch).
    fn patch_router(&self, spec: Value) -> impl Future<Output = Result<()>>;
}
/// The DNS suffix of the trials' hostnames.
const APPS: &str = "apps.example.test";

/// One request, and what must come back.
#[derive(Clone, Debug)]
struct Case {
    what: String,
    https: bool,
    /// The hostname in the URL (SNI, and Host unless `bare_host`).
    host: String,
    /// Send `Host: <host>` without the port curl would add.
    bare_host: bool,
    path: String,
    /// The CA to verify HTTPS with.
    ca: Option<PathBuf>,
    expect: Expect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// 200 from `backend`, which received `path`; with `body` when set.
    Answer {
        backend: String,
        path: String,
        body: Option<String>,
    },
    /// A 301 to exactly this Location.
    Redirect(String),
    /// No route: 404.
    NotFound,
}

impl Case {
    fn http(what: &str, host: &str, path: &str, expect: Expect) -> Self {
        Self {
            what: what.to_owned(),
            https: false,
            host: host.to_owned(),
            bare_host: false,
            path: path.to_owned(),
            ca: None,
            expect,
        }
    }

    fn https(what: &str, host: &str, path: &str, ca: &Path, expect: Expect) -> Self {
        Self {
            https: true,
            ca: Some(ca.to_owned()),
            ..Self::http(what, host, path, expect)
        }
    }

    fn bare(mut self) -> Self {
        self.bare_host = true;
        self
    }

    async fn ask(&self, lab: &impl RouteLab) -> Result<Reply> {
        let (scheme, port) = if self.https {
            ("https", lab.https_port())
        } else {
            ("http", lab.listener_port())
        };
        curl::send(&Request {
            scheme,
            host: &self.host,
            port,
            path: &self.path,
            address: lab.address(),
            host_header: self.bare_host.then_some(self.host.as_str()),
            ca: self.ca.as_deref(),
        })
        .await
    }

    /// `Ok(())` when the reply is the expected one, else what came back instead.
    fn judge(&self, reply: &Reply) -> Result<(), String> {
        let ok = match &self.expect {
            Expect::Answer {
                backend,
                path,
                body,
            } => {
                reply.status == 200
                    && reply.header("x-backend") == Some(backend.as_str())
                    && reply.header(RECEIVED_PATH_HEADER) == Some(path.as_str())
                    && body.as_ref().is_none_or(|b| *b == reply.body)
            }
            Expect::Redirect(location) => {
                reply.status == 301 && reply.header("location") == Some(location.as_str())
            }
            Expect::NotFound => reply.status == 404,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} {} (backend {:?}, received path {:?}, location {:?}) {:?}",
                reply.status,
                self.what,
                reply.header("x-backend"),
                reply.header(RECEIVED_PATH_HEADER),
                reply.header("location"),
                reply.body.chars().take(200).collect::<String>()
            ))
        }
    }
}

fn answer(backend: &str, path: &str) -> Expect {
    Expect::Answer {
        backend: backend.to_owned(),
        path: path.to_owned(),
        body: None,
    }
}

fn pets(path: &str) -> Expect {
    Expect::Answer {
        backend: "petstore".to_owned(),
        path: path.to_owned(),
        body: Some(PETS_JSON.to_owned()),
    }
}

/// Waits until every case holds (routes reach Envoy on their own schedule), then asks each
/// once more and prints what it saw.
async fn expect_all(cx: &TestContext, lab: &impl RouteLab, cases: &[Case]) -> Result<()> {
    wait_until("every route case to hold", CONVERGE, || async {
        lab.ensure_running()?;
        let mut failing = Vec::new();
        for case in cases {
            match case.ask(lab).await {
                Ok(reply) => {
                    if let Err(e) = case.judge(&reply) {
                        failing.push(e);
                    }
                }
                Err(e) => failing.push(format!("{}: {e:#}", case.what)),
            }
        }
        Ok(if failing.is_empty() {
            Progress::Done(())
        } else {
            Progress::pending(failing)
        })
    })
    .await?;
    for case in cases {
        let reply = case.ask(lab).await?;
        eprintln!(
            "{}: {}: {} {}",
            cx.name(),
            case.what,
            reply.status,
            reply
                .header("location")
                .or(reply.header(RECEIVED_PATH_HEADER))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// A backend per `(Service port name, port)`, and the Service sending each port to its own.
async fn multi_port_service(
    lab: &impl RouteLab,
    name: &str,
    ports: &[(&str, i32)],
    annotations: Value,
) -> Result<Vec<Backend>> {
    let mut backends = Vec::new();
    let mut wiring: Vec<(&str, i32, SocketAddr)> = Vec::new();
    for (port_name, port) in ports {
        let b = Backend::start(&format!("{name}-{port_name}"), lab.backend_ip(), 0).await?;
        wiring.push((port_name, *port, b.address()));
        backends.push(b);
    }
    apply_service(lab.client(), lab.app(), name, &wiring, &annotations).await?;
    Ok(backends)
}

/// A Service with one `http` port and its backend.
async fn service(
    lab: &impl RouteLab,
    name: &str,
    port: i32,
    annotations: Value,
) -> Result<Backend> {
    let b = Backend::start(name, lab.backend_ip(), 0).await?;
    apply_service(
        lab.client(),
        lab.app(),
        name,
        &[("http", port, b.address())],
        &annotations,
    )
    .await?;
    Ok(b)
}

/// `<service>.<app namespace>.<suffix>`.
fn host(lab: &impl RouteLab, service: &str, suffix: &str) -> String {
    format!("{service}.{}.{suffix}", lab.app())
}

/// Done-when 1 and 5 of the routes issue: hostnames from a template, with and without a port
/// in Host; a multi-port Service answers on its primary port; an allowed extra hostname
/// routes, a disallowed one is refused, counted and named in a Warning Event. Prints the
/// time from a changed template to the first 200 on the new hostname (median of 10).
pub async fn hostname_template(cx: &TestContext, lab: &impl RouteLab) -> Result<()> {
    let _multi =
        multi_port_service(lab, "multi", &[("admin", 9090), ("http", 80)], Value::Null).await?;
    let _shop = service(
        lab,
        "storefront",
        80,
        json!({"hostrouter.io/hostnames": "shop.example.test, login.other.test"}),
    )
    .await?;
    lab.patch_router(json!({"hosts": {
        "template": format!("{{service}}.{{namespace}}.{APPS}"),
        "allowedSuffixes": ["example.test"],
    }}))
    .await?;

    let petstore = host(lab, "petstore", APPS);
    let cases = [
        Case::http(
            "template host with :port",
            &petstore,
            "/api/pets",
            pets("/api/pets"),
        ),
        Case::http(
            "template host without port",
            &petstore,
            "/api/pets",
            pets("/api/pets"),
        )
        .bare(),
        Case::http(
            "multi-port Service on its primary port",
            &host(lab, "multi", APPS),
            "/",
            answer("multi-http", "/"),
        ),
        Case::http(
            "allowed extra hostname",
            "shop.example.test",
            "/",
            answer("storefront", "/"),
        ),
        Case::http(
            "extra hostname outside the allowed suffixes",
            "login.other.test",
            "/",
            Expect::NotFound,
        ),
        Case::http(
            "the old name is gone",
            &format!("{}-petstore-8080", lab.app()),
            "/api/pets",
            Expect::NotFound,
        ),
    ];
    expect_all(cx, lab, &cases).await?;

    wait_until(
        "droppedHosts to count the refused hostname",
        CONVERGE,
        || async {
            let hr = routers(lab.client(), lab.edge()).get(lab.router()).await?;
            let dropped = &hr.data["status"]["droppedHosts"];
            Ok(if dropped == 1 {
                Progress::Done(())
            } else {
                Progress::pending(&hr.data["status"])
            })
        },
    )
    .await?;
    wait_event(
        lab.client(),
        lab.edge(),
        lab.router(),
        "HostnameNotAllowed",
        &format!("{}/storefront:80 login.other.test", lab.app()),
    )
    .await?;
    let counted = lab
        .operator()
        .metric(
            "hostrouter_dropped_hosts",
            &[("namespace", lab.edge()), ("name", lab.router())],
        )
        .await?;
    ensure!(counted == 1.0, "hostrouter_dropped_hosts = {counted}");

    // A changed template, applied: how long until the new hostname answers.
    let envoys = lab.envoys().await?;
    let mut took = Vec::new();
    for i in 0..10 {
        let suffix = format!("t{i}.example.test");
        let new_host = host(lab, "petstore", &suffix);
        let began = Instant::now();
        lab.patch_router(
            json!({"hosts": {"template": format!("{{service}}.{{namespace}}.{suffix}")}}),
        )
        .await?;
        time_until(&format!("{new_host} to answer 200"), CONVERGE, || async {
            let case = Case::http("new template", &new_host, "/api/pets", pets("/api/pets"));
            Ok(case.ask(lab).await?.status == 200)
        })
        .await?;
        took.push(began.elapsed());
    }
    let report = format!(
        "{}: template changed → first 200 on the new hostname: median {:.2}s of [{}] s",
        cx.name(),
        median(&took).as_secs_f64(),
        secs(&took)
    );
    eprintln!("{report}");
    std::fs::write(cx.log_dir().join("timings.txt"), &report)?;
    ensure!(lab.envoys().await? == envoys, "Envoy was restarted");
    Ok(())
}

/// Done-when 2 and 3: TLS from `kubernetes.io/tls` Secrets chosen by SNI, verified by curl
/// against the trial's CA; a missing, wrongly typed or malformed Secret never takes down plain
/// HTTP (or the Proxy) and the status says why; rotation without restarting Envoy; the 301
/// redirect with the exact Location, and ACME challenges not redirected.
pub async fn tls_and_redirect(cx: &TestContext, lab: &impl RouteLab) -> Result<()> {
    let pki = cx.log_dir().join("pki");
    let ca = TestCa::new(&pki, "first-ca").await?;
    let next_ca = TestCa::new(&pki, "second-ca").await?;
    let _shop = service(
        lab,
        "storefront",
        80,
        json!({"hostrouter.io/hostnames": "shop.example.test"}),
    )
    .await?;
    let petstore = host(lab, "petstore", APPS);
    let wildcard = format!("*.{}.{APPS}", lab.app());
    let edge = lab.edge();

    // The router names certificates that are not there yet.
    lab.patch_router(json!({
        "hosts": {"template": format!("{{service}}.{{namespace}}.{APPS}"), "allowedSuffixes": ["example.test"]},
        "tls": {
            "port": lab.https_port(),
            "certificates": [{"secretName": "wildcard"}, {"secretName": "shop"}],
            "redirectHttp": true,
        },
    }))
    .await?;
    let plain = [Case::http(
        "plain HTTP while no certificate is usable",
        &petstore,
        "/api/pets?x=1",
        pets("/api/pets?x=1"),
    )];
    expect_all(cx, lab, &plain).await?;
    let why = wait_resolved_refs(lab, "False", "Secret wildcard does not exist").await?;
    ensure!(
        why.contains("plain HTTP is served instead of redirected"),
        "ResolvedRefs: {why}"
    );
    eprintln!("{}: missing Secrets: {why}", cx.name());

    // A Secret of another type under the name: told apart from a missing one.
    apply_secret(
        lab.client(),
        edge,
        "wildcard",
        "Opaque",
        &[("tls.crt", "x")],
    )
    .await?;
    wait_resolved_refs(
        lab,
        "False",
        "Secret wildcard exists but is not of type kubernetes.io/tls",
    )
    .await?;
    Api::<Secret>::namespaced(lab.client().clone(), edge)
        .delete("wildcard", &DeleteParams::default())
        .await?;

    // The wildcard certificate arrives; the shop's Secret is malformed. HTTPS serves the
    // wildcard, HTTP redirects, and Gloo still accepts the Proxy: the malformed Secret was
    // left out rather than handed to Gloo.
    apply_tls_secret(
        lab.client(),
        edge,
        "wildcard",
        &ca.issue("wildcard", &[&wildcard]).await?,
    )
    .await?;
    apply_secret(
        lab.client(),
        edge,
        "shop",
        "kubernetes.io/tls",
        &[
            (
                "tls.crt",
                "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            ),
            ("tls.key", "garbage"),
        ],
    )
    .await?;
    let location = format!("https://{petstore}:{}/api/pets?x=1", lab.https_port());
    let served = [
        Case::https(
            "HTTPS by SNI, wildcard certificate",
            &petstore,
            "/api/pets",
            &ca.cert,
            pets("/api/pets"),
        ),
        Case::https(
            "HTTPS without a port in Host",
            &petstore,
            "/api/pets",
            &ca.cert,
            pets("/api/pets"),
        )
        .bare(),
        Case::http(
            "HTTP redirected, query kept",
            &petstore,
            "/api/pets?x=1",
            Expect::Redirect(location.clone()),
        ),
        Case::http(
            "HTTP redirected, Host without port",
            &petstore,
            "/api/pets?x=1",
            Expect::Redirect(location),
        )
        .bare(),
        Case::http(
            "ACME challenge not redirected",
            &petstore,
            "/.well-known/acme-challenge/t",
            answer("petstore", "/.well-known/acme-challenge/t"),
        ),
    ];
    expect_all(cx, lab, &served).await?;
    let why = wait_resolved_refs(lab, "False", "Secret shop cannot be served").await?;
    eprintln!("{}: malformed Secret: {why}", cx.name());
    let (accepted, reason) = lab.accepted();
    wait_condition(lab, accepted, "True", reason).await?;

    // The shop's certificate fixed: its extra hostname is served with its own certificate.
    apply_tls_secret(
        lab.client(),
        edge,
        "shop",
        &ca.issue("shop", &["shop.example.test"]).await?,
    )
    .await?;
    let shop = [Case::https(
        "extra hostname with its own certificate",
        "shop.example.test",
        "/",
        &ca.cert,
        answer("storefront", "/"),
    )];
    expect_all(cx, lab, &shop).await?;
    wait_resolved_refs(
        lab,
        "True",
        "All 2 certificate Secrets of spec.tls are served",
    )
    .await?;

    // Rotation: the wildcard Secret now holds a certificate of another CA. Once served, it
    // verifies against the new CA only; Envoy is the same process.
    let envoys = lab.envoys().await?;
    let began = Instant::now();
    apply_tls_secret(
        lab.client(),
        edge,
        "wildcard",
        &next_ca.issue("wildcard-next", &[&wildcard]).await?,
    )
    .await?;
    let rotated = [Case::https(
        "rotated certificate",
        &petstore,
        "/api/pets",
        &next_ca.cert,
        pets("/api/pets"),
    )];
    expect_all(cx, lab, &rotated).await?;
    eprintln!(
        "{}: rotated certificate served {:.1?} after the Secret changed",
        cx.name(),
        began.elapsed()
    );
    let old = Case::https(
        "old CA",
        &petstore,
        "/api/pets",
        &ca.cert,
        pets("/api/pets"),
    );
    match old.ask(lab).await {
        Ok(reply) => bail!("the old CA still verifies the served certificate: {reply:?}"),
        Err(e) => ensure!(
            format!("{e:#}").contains("certificate"),
            "expected a certificate error, got {e:#}"
        ),
    }
    ensure!(lab.envoys().await? == envoys, "Envoy was restarted");
    Ok(())
}

/// Waits until the router's condition `type_` has `status` and `reason`.
async fn wait_condition(
    lab: &impl RouteLab,
    type_: &str,
    status: &str,
    reason: &str,
) -> Result<()> {
    wait_until(
        &format!("HostRouter {type_}={status} ({reason})"),
        CONVERGE,
        || async {
            lab.ensure_running()?;
            let got = condition(lab.client(), lab.edge(), lab.router(), type_).await?;
            Ok(if got.0 == status && got.1 == reason {
                Progress::Done(())
            } else {
                Progress::pending(got)
            })
        },
    )
    .await
}

/// Waits until the router's `ResolvedRefs` condition has `status` and a message containing
/// `contains`; returns the message.
async fn wait_resolved_refs(lab: &impl RouteLab, status: &str, contains: &str) -> Result<String> {
    wait_until(
        &format!("ResolvedRefs={status} saying {contains:?}"),
        CONVERGE,
        || async {
            let got = condition(lab.client(), lab.edge(), lab.router(), "ResolvedRefs").await?;
            Ok(if got.0 == status && got.2.contains(contains) {
                Progress::Done(got.2)
            } else {
                Progress::pending(got)
            })
        },
    )
    .await
}

/// Done-when 4: on `apps.example.test`, `/<namespace>/petstore/...` reaches petstore with the
/// prefix stripped, `/<namespace>/petstore` reaches it as `/`, and `/<namespace>/petstorefoo/x`
/// is not petstore's; host routing keeps working next to it.
pub async fn path_prefixes(cx: &TestContext, lab: &impl RouteLab) -> Result<()> {
    lab.patch_router(json!({"paths": {"host": APPS}})).await?;
    let ns = lab.app();
    let cases = [
        Case::http(
            "prefix stripped",
            APPS,
            &format!("/{ns}/petstore/api/pets"),
            pets("/api/pets"),
        ),
        Case::http(
            "prefix stripped, query kept",
            APPS,
            &format!("/{ns}/petstore/api/pets?x=1"),
            pets("/api/pets?x=1"),
        ),
        Case::http(
            "the prefix alone is /",
            APPS,
            &format!("/{ns}/petstore"),
            answer("petstore", "/"),
        ),
        Case::http(
            "the prefix and a slash is /",
            APPS,
            &format!("/{ns}/petstore/"),
            answer("petstore", "/"),
        ),
        Case::http(
            "a longer segment is not petstore",
            APPS,
            &format!("/{ns}/petstorefoo/x"),
            Expect::NotFound,
        ),
        Case::http(
            "another Service under its own prefix",
            APPS,
            &format!("/{ns}/inventory/items"),
            answer("inventory", "/items"),
        ),
        Case::http(
            "host routing next to it",
            &format!("{ns}-inventory-80"),
            "/items",
            answer("inventory", "/items"),
        ),
    ];
    expect_all(cx, lab, &cases).await
}
