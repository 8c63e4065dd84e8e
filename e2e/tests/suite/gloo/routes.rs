//! The route bodies of [`crate::routes`] through Gloo: each trial its own [`Lab`] (Gloo, the
//! operator, Envoy run as its generated Deployment would), then the body, then what only this
//! backend can show (Envoy rejected no xDS update; the router's deletion removes the Proxy).

use std::future::Future;
use std::net::IpAddr;

use anyhow::Result;
use hostrouter_e2e::Suite;
use hostrouter_e2e::operator::Operator;
use kube::Client;
use libtest_mimic::Trial;
use serde_json::Value;

use super::lab::{Lab, Options};
use crate::routes::{self, RouteLab};

pub fn trials(suite: &Suite) -> Vec<Trial> {
    vec![
        suite.trial(
            "gloo::routes_by_hostname_template_and_extra_hostnames",
            |cx| async move {
                let lab = Lab::new(&cx, Options::default()).await?;
                routes::hostname_template(&cx, &lab).await?;
                finish(lab).await
            },
        ),
        suite.trial(
            "gloo::serves_tls_by_sni_and_redirects_http",
            |cx| async move {
                let lab = Lab::new(&cx, Options::default()).await?;
                routes::tls_and_redirect(&cx, &lab).await?;
                finish(lab).await
            },
        ),
        suite.trial("gloo::routes_by_path_prefix_stripped", |cx| async move {
            let lab = Lab::new(&cx, Options::default()).await?;
            routes::path_prefixes(&cx, &lab).await?;
            finish(lab).await
        }),
    ]
}

/// What only this backend shows: Envoy rejected no xDS update; the router's deletion removes
/// its Proxy.
async fn finish(lab: Lab) -> Result<()> {
    lab.envoy_accepted_every_update().await?;
    lab.finish().await
}

impl RouteLab for Lab {
    fn client(&self) -> &Client {
        &self.client
    }

    fn app(&self) -> &str {
        self.app.name()
    }

    fn edge(&self) -> &str {
        self.edge.name()
    }

    fn router(&self) -> &str {
        self.router
    }

    fn operator(&self) -> &Operator {
        &self.operator
    }

    fn address(&self) -> &str {
        "127.0.0.1"
    }

    fn listener_port(&self) -> u16 {
        self.listener_port
    }

    fn https_port(&self) -> u16 {
        self.https_port
    }

    fn backend_ip(&self) -> IpAddr {
        self.alias.ip().into()
    }

    fn accepted(&self) -> (&'static str, &'static str) {
        ("ProxyAccepted", "Accepted")
    }

    fn ensure_running(&self) -> Result<()> {
        self.envoy.ensure_running()
    }

    async fn envoys(&self) -> Result<String> {
        Ok(self.envoy.pid().to_string())
    }

    fn patch_router(&self, spec: Value) -> impl Future<Output = Result<()>> {
        Lab::patch_router(self, spec)
    }
}
