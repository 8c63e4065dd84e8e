//! One reconcile: decide the claim, render, write what differs, delete what is left over,
//! report. The decisions are made by the pure modules (`claims`, `render`, `status`); the
//! reconcile reads caches and hands the writing to `write`, `cleanup` and `report`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, warn};

use super::claims::{self, Claim};
use super::cleanup;
use super::context::Context;
use super::gateway_verdict;
use super::report;
use super::status::{
    Acceptance, BackendFacts, CertificateFacts, EnvoyState, Facts, Fleet, GatewayApiFacts,
    Programming, Reason,
};
use super::write::{self, BackendWrite, GatewayApiWrite, ProxyWrite};
use crate::api::HostRouter;
use crate::api::backend::BackendType;
use crate::api::gloo::{self, Verdict};
use crate::error::{Error, Result};
use crate::metrics::ReconcileResult;
use crate::render::routes::certificates::{Problem, ProblemKind};
use crate::render::{self, ClusterView, Rendered, gateway_api, routes};

/// How soon to look again while the watch caches are still listing.
const INPUTS_RETRY: Duration = Duration::from_millis(200);
/// How often a healthy router is looked at again even without events.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon to look again while something outside the operator's watches blocks the router:
/// Gloo's Proxy CRD is missing, an object the operator did not write holds a name it needs, or
/// a certificate Secret cannot be served.
const BLOCKED_RETRY: Duration = Duration::from_secs(10);

pub async fn reconcile(router: Arc<HostRouter>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx.metrics.reconcile_started();
    // Never render from a partial view of the cluster. Checked without awaiting: a reconcile
    // parked on the caches' readiness future was seen never to wake up (kube-runtime's
    // readiness signal shared with `/readyz`), so look again shortly instead.
    if !ctx.stores.inputs_ready() {
        timer.finish(ReconcileResult::Requeue);
        return Ok(Action::requeue(INPUTS_RETRY));
    }
    let result = reconcile_router(&router, &ctx).await;
    let key = ObjectRef::from_obj(router.as_ref());
    match &result {
        Ok(_) => {
            ctx.backoff_reset(&key);
            timer.finish(ReconcileResult::Success);
        }
        Err(error) => {
            warn!(router = %key, %error, "reconcile failed");
            timer.finish(ReconcileResult::Error);
        }
    }
    result
}

/// Retries a failed router with exponential backoff, per router.
pub fn error_policy(router: Arc<HostRouter>, _error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.backoff_next(&ObjectRef::from_obj(router.as_ref())))
}

async fn reconcile_router(router: &HostRouter, ctx: &Context) -> Result<Action> {
    debug!(generation = router.metadata.generation, "reconciling");
    if router.metadata.deletion_timestamp.is_some() {
        return cleanup::finalize(router, ctx).await;
    }
    let routers = ctx.stores.routers.state();
    let claim = claims::claim(router, routers.iter().map(|r| r.as_ref()), &ctx.settings);
    let proxy_ref = render::proxy_ref(router, &ctx.settings);
    let mut facts = Facts {
        generation: router.metadata.generation,
        acceptance: Acceptance::Accepted,
        programming: Programming::Programmed,
        certificates: None,
        backend: nothing_written(router),
        fleet: Fleet::of(&router.spec),
        proxy_ref,
        namespaces: 0,
        namespaces_without_consent: 0,
        services: 0,
        virtual_hosts: 0,
        dropped_hosts: 0,
    };
    if let Claim::Lost {
        reason: message, ..
    } = claim
    {
        facts.acceptance = Acceptance::Rejected {
            reason: Reason::ProxyNameConflict,
            message,
        };
        // A router that lost its names keeps nothing it wrote under them.
        cleanup::delete_leftovers(router, ctx, None).await?;
        report::write_status(router, ctx, &facts).await?;
        return Ok(Action::await_change());
    }

    let turn = ctx.render_turn().await;
    let rendered = render_router(router, ctx);
    drop(turn);
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => {
            facts.acceptance = Acceptance::Rejected {
                reason: Reason::InvalidSpec,
                message: e.to_string(),
            };
            report::write_status(router, ctx, &facts).await?;
            return Ok(Action::await_change());
        }
    };
    let findings = &rendered.findings;
    facts.namespaces = findings.namespaces;
    facts.namespaces_without_consent = findings.namespaces_without_consent.len();
    facts.services = findings.services;
    facts.virtual_hosts = rendered.virtual_hosts();
    facts.dropped_hosts = findings.dropped.len();
    facts.certificates = match &router.spec.tls {
        None => None,
        Some(tls) => Some(CertificateFacts {
            referenced: tls.certificates.len(),
            problems: explain(router, ctx, &findings.certificate_problems).await?,
            https: rendered.table.listeners.len() > 1,
            redirect: tls.redirect_http,
        }),
    };
    report::report_dropped(router, ctx, findings).await;

    let written = write::write_objects(router, ctx, &rendered).await;
    // A Secret of another type is not watched (the watch sees kubernetes.io/tls Secrets only):
    // look again soon while a certificate cannot be served.
    let mut action = if findings.certificate_problems.is_empty() {
        Action::requeue(RESYNC)
    } else {
        Action::requeue(BLOCKED_RETRY)
    };
    let mut failure = None;
    match written {
        Ok(w) => {
            if let Some(conflict) = w.conflict {
                facts.acceptance = Acceptance::Rejected {
                    reason: Reason::ProxyNameConflict,
                    message: conflict,
                };
                // The object in the way is not watched (it is not labelled as ours).
                action = Action::requeue(BLOCKED_RETRY);
            }
            match w.backend {
                BackendWrite::Gloo { proxy, envoy } => {
                    let verdict = match proxy {
                        ProxyWrite::Written(verdict) => {
                            // Gloo's report is a Proxy event; should none come, the verdict
                            // turns to "not reported" once the grace is over.
                            if verdict == Verdict::Pending {
                                action =
                                    Action::requeue(gloo::REPORT_GRACE + Duration::from_secs(1));
                            }
                            Some(verdict)
                        }
                        ProxyWrite::CrdMissing => {
                            facts.programming = Programming::Failed {
                                reason: Reason::GlooCrdMissing,
                                message: "Gloo's Proxy CRD (proxies.gloo.solo.io) is not installed. Install Gloo; the Proxy is written as soon as the CRD exists".into(),
                            };
                            action = Action::requeue(BLOCKED_RETRY);
                            None
                        }
                        // Noticed at once when the namespace appears (the namespace watch).
                        ProxyWrite::NamespaceMissing => {
                            facts.programming = Programming::Failed {
                                reason: Reason::ProxyNamespaceMissing,
                                message: format!(
                                    "Namespace {} (spec.proxyNamespace, Gloo's write namespace) does not exist; the Proxy is written as soon as it does. The Envoy ConfigMap, Service and Deployment are written meanwhile",
                                    facts.proxy_ref.namespace
                                ),
                            };
                            None
                        }
                        ProxyWrite::NotWritten => None,
                    };
                    facts.backend = BackendFacts::Gloo { verdict, envoy };
                }
                BackendWrite::GatewayApi(state) => {
                    let mut g = gateway_api_facts(router);
                    match state {
                        GatewayApiWrite::Written { gateway, routes } => {
                            g.written = true;
                            g.gateway = gateway.as_deref().map(gateway_verdict::gateway);
                            g.routes = gateway_verdict::routes(&routes);
                        }
                        GatewayApiWrite::CrdMissing => {
                            facts.programming = Programming::Failed {
                                reason: Reason::GatewayApiCrdMissing,
                                message: "The Gateway API CRDs (gateways and httproutes.gateway.networking.k8s.io) are not installed. Install them and a Gateway API implementation; the objects are written as soon as the CRDs exist".into(),
                            };
                            action = Action::requeue(BLOCKED_RETRY);
                        }
                        GatewayApiWrite::NotWritten => {}
                    }
                    facts.backend = BackendFacts::GatewayApi(g);
                }
            }
            if facts.acceptance == Acceptance::Accepted && facts.backend.written() {
                cleanup::delete_leftovers(router, ctx, Some(&rendered)).await?;
            }
        }
        Err(e) => {
            if let Some(o) = rendered.gloo() {
                facts.backend = BackendFacts::Gloo {
                    verdict: None,
                    envoy: write::envoy_state(
                        ctx.stores
                            .deployments
                            .get(&ObjectRef::from_obj(&o.deployment))
                            .as_deref(),
                    ),
                };
            }
            facts.programming = Programming::Failed {
                reason: Reason::ApplyFailed,
                message: e.to_string(),
            };
            failure = Some(e);
        }
    }
    // The counts describe the objects that exist, not those that could not be written.
    if !facts.backend.written() {
        facts.virtual_hosts = 0;
    }
    let reported = report::write_status(router, ctx, &facts).await;
    match (failure, reported) {
        // The write's failure is the one to retry and to see; the status could not tell it.
        (Some(e), Err(status_error)) => {
            warn!(router = %ObjectRef::from_obj(router), error = %status_error, "could not report the failure in status either");
            Err(e)
        }
        (Some(e), Ok(())) => Err(e),
        (None, Err(status_error)) => Err(status_error),
        (None, Ok(())) => Ok(action),
    }
}

/// The backend's facts before anything is written.
fn nothing_written(router: &HostRouter) -> BackendFacts {
    match router.spec.backend_type() {
        BackendType::Gloo => BackendFacts::Gloo {
            verdict: None,
            envoy: EnvoyState::Missing,
        },
        BackendType::GatewayApi => BackendFacts::GatewayApi(gateway_api_facts(router)),
    }
}

/// The Gateway API facts of a router before its objects' verdicts are read.
fn gateway_api_facts(router: &HostRouter) -> GatewayApiFacts {
    let (ns, name) = gateway_api::gateway_of(router).unwrap_or_default();
    GatewayApiFacts {
        written: false,
        gateway_name: format!("{ns}/{name}"),
        gateway: None,
        routes: Default::default(),
    }
}

/// Renders the router from the caches: the namespaces, the Services, and the TLS Secrets its
/// `spec.tls` names.
fn render_router(router: &HostRouter, ctx: &Context) -> Result<Rendered, render::RenderError> {
    let namespaces = ctx.stores.namespaces.state();
    let secret_namespace = router.namespace().unwrap_or_default();
    let secrets: Vec<_> = router
        .spec
        .tls
        .iter()
        .flat_map(|tls| &tls.certificates)
        .filter_map(|c| {
            ctx.stores
                .tls_secrets
                .get(&ObjectRef::new(&c.secret_name).within(&secret_namespace))
        })
        .collect();
    let view = ClusterView {
        namespaces: namespaces.iter().map(|n| n.as_ref()).collect(),
        services: ctx.stores.routed_services.snapshot(),
        tls_secrets: secrets.iter().map(|s| s.as_ref()).collect(),
    };
    let key = ObjectRef::from_obj(router);
    // Routers that build equal route tables share one (a key that cannot be made: their own).
    let table =
        routes::sharing_key(&secret_namespace, &router.spec).unwrap_or_else(|_| key.to_string());
    let mut memo = ctx.take_memo(&key, &table);
    let rendered = render::render_with(router, &view, &ctx.settings, &mut memo);
    ctx.keep_memo(key, table, memo);
    rendered
}

/// The certificate problems, with "not found" told apart from "of another type": the cache
/// holds only `kubernetes.io/tls` Secrets, so a Secret missing from it is looked up by its
/// metadata alone (never its data).
async fn explain(router: &HostRouter, ctx: &Context, problems: &[Problem]) -> Result<Vec<Problem>> {
    let namespace = router.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut out = Vec::with_capacity(problems.len());
    for p in problems {
        let mut p = p.clone();
        if p.kind == ProblemKind::NotFound {
            let found = api.get_metadata_opt(&p.secret).await.map_err(|e| {
                Error::api("reading metadata of", "Secret", &namespace, &p.secret, e)
            })?;
            if found.is_some() {
                p.kind = ProblemKind::WrongType(None);
            }
        }
        out.push(p);
    }
    Ok(out)
}
