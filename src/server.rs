//! The operator's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::controller::Stores;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// What the endpoints read. The stores appear once the controller has built them.
#[derive(Clone, Default)]
pub struct Health {
    pub metrics: Arc<OnceLock<Arc<Metrics>>>,
    pub stores: Arc<OnceLock<Stores>>,
    role: Arc<AtomicU8>,
}

/// Where this replica stands in leader election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Reconciling (the leader, or leader election is off).
    Leading = 0,
    /// Has not yet found out who leads.
    Electing = 1,
    /// Another replica holds the Lease.
    Standby = 2,
}

impl Health {
    pub fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
    }

    fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            1 => Role::Electing,
            2 => Role::Standby,
            _ => Role::Leading,
        }
    }
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    address: SocketAddr,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| Error::Io {
            path: format!("listening on {address}"),
            source,
        })?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Io {
            path: format!("serving on {address}"),
            source,
        })
}

async fn metrics(State(h): State<Health>) -> impl IntoResponse {
    let Some(m) = h.metrics.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned()).into_response();
    };
    match m.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// How long a watch may fail before `/readyz` says so (a relisting is a blip, not an outage).
const WATCH_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Ready once every watch the reconcile depends on has listed its objects, and while no watch
/// has been failing for more than a few seconds (the API server unreachable, say: the body says
/// which and why). A standby is ready once it has seen who leads: it serves its purpose by
/// waiting, and a rolling update must be able to start the new replica while the old one still
/// leads.
async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    match h.role() {
        Role::Standby => (
            StatusCode::OK,
            "standby: another replica holds the leader Lease\n".to_owned(),
        ),
        Role::Electing => (
            StatusCode::SERVICE_UNAVAILABLE,
            "electing a leader\n".to_owned(),
        ),
        Role::Leading => match h.stores.get() {
            Some(s) if s.inputs_ready() => {
                let outages = s.watches.outages(WATCH_GRACE, std::time::Instant::now());
                if outages.is_empty() {
                    (StatusCode::OK, "ok\n".to_owned())
                } else {
                    let lines: Vec<String> = outages
                        .iter()
                        .map(|o| {
                            format!(
                                "watch of {} failing for {}s: {}",
                                o.kind,
                                o.lasted.as_secs(),
                                o.error
                            )
                        })
                        .collect();
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{}\n", lines.join("\n")),
                    )
                }
            }
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                "waiting for the watch caches\n".to_owned(),
            ),
        },
    }
}
