//! The HostRouter's status, computed from what the reconcile observed. Pure.
//!
//! Conditions follow `metav1.Condition`: `lastTransitionTime` moves only when a condition's
//! status flips, so rewriting the same facts changes nothing and writes nothing.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::gateway_verdict::{GatewayVerdict, Judgement, RoutesVerdict};
use crate::api::HostRouterStatus;
use crate::api::gloo::Verdict;
use crate::api::hostrouter::ProxyRef;
use crate::render::routes::certificates::Problem;

/// The conditions of a HostRouter, in the order they are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// The spec is valid and the proxy name is this router's.
    Accepted,
    /// The generated objects are written and match the spec.
    Programmed,
    /// Every certificate Secret of `spec.tls` can be served.
    ResolvedRefs,
    /// Gloo accepted the Proxy.
    ProxyAccepted,
    /// The Envoy Deployment has an available replica.
    EnvoyAvailable,
    /// Gateway API: the implementation accepted the Gateway and every HTTPRoute, with their
    /// backends resolved.
    RoutesAccepted,
    /// Gateway API: the implementation programmed the Gateway (its proxies serve it).
    GatewayProgrammed,
    /// All of the above.
    Ready,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::Programmed => "Programmed",
            Self::ResolvedRefs => "ResolvedRefs",
            Self::ProxyAccepted => "ProxyAccepted",
            Self::EnvoyAvailable => "EnvoyAvailable",
            Self::RoutesAccepted => "RoutesAccepted",
            Self::GatewayProgrammed => "GatewayProgrammed",
            Self::Ready => "Ready",
        }
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `metav1.Condition`'s status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// Condition reasons. Each is a README troubleshooting entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Accepted,
    ProxyNameConflict,
    InvalidSpec,
    NotAccepted,
    Programmed,
    GlooCrdMissing,
    ProxyNamespaceMissing,
    ApplyFailed,
    ResolvedRefs,
    InvalidCertificateRef,
    NoProxy,
    GlooNotReported,
    GlooPending,
    GlooAccepted,
    GlooWarning,
    GlooRejected,
    Available,
    Unavailable,
    ScaledToZero,
    DeploymentMissing,
    GatewayApiCrdMissing,
    NoRoutes,
    NotReported,
    GatewayNotFound,
    RoutesAccepted,
    Ready,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted | Self::GlooAccepted => "Accepted",
            Self::ProxyNameConflict => "ProxyNameConflict",
            Self::InvalidSpec => "InvalidSpec",
            Self::NotAccepted => "NotAccepted",
            Self::Programmed => "Programmed",
            Self::GlooCrdMissing => "GlooCRDMissing",
            Self::ProxyNamespaceMissing => "ProxyNamespaceMissing",
            Self::ApplyFailed => "ApplyFailed",
            Self::ResolvedRefs => "ResolvedRefs",
            Self::InvalidCertificateRef => "InvalidCertificateRef",
            Self::NoProxy => "NoProxy",
            Self::GlooNotReported => "GlooNotReported",
            Self::GlooPending => "Pending",
            Self::GlooWarning => "AcceptedWithWarnings",
            Self::GlooRejected => "Rejected",
            Self::Available => "Available",
            Self::Unavailable => "Unavailable",
            Self::ScaledToZero => "ScaledToZero",
            Self::DeploymentMissing => "DeploymentMissing",
            Self::GatewayApiCrdMissing => "GatewayAPICRDMissing",
            Self::NoRoutes => "NoRoutes",
            Self::NotReported => "NotReported",
            Self::GatewayNotFound => "GatewayNotFound",
            Self::RoutesAccepted => "Accepted",
            Self::Ready => "Ready",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the router may act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acceptance {
    Accepted,
    Rejected { reason: Reason, message: String },
}

/// Whether the generated objects were written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Programming {
    Programmed,
    Failed { reason: Reason, message: String },
}

/// The Envoy Deployment as last observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvoyState {
    Missing,
    Observed { desired: i32, available: i32 },
}

/// The certificates of `spec.tls`, as the render resolved them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Certificates `spec.tls` lists.
    pub referenced: usize,
    /// Those that are not served, and why.
    pub problems: Vec<Problem>,
    /// Whether the HTTPS listener exists (at least one certificate is served).
    pub https: bool,
    /// Whether `spec.tls.redirectHttp` is set.
    pub redirect: bool,
}

/// The optional objects of the Envoy fleet (Gloo backend), as the spec asks for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fleet {
    /// `(minReplicas, maxReplicas)` of the HorizontalPodAutoscaler, with `envoy.autoscaling`.
    pub autoscaling: Option<(i32, i32)>,
    /// Whether a PodDisruptionBudget is written (`envoy.disruptionBudget`).
    pub disruption_budget: bool,
}

impl Fleet {
    pub fn of(spec: &crate::api::HostRouterSpec) -> Self {
        Self {
            autoscaling: spec
                .envoy
                .autoscaling
                .as_ref()
                .map(|a| (a.min_replicas(), a.max_replicas)),
            disruption_budget: spec.envoy.disruption_budget.is_some(),
        }
    }

    /// The Gloo backend's objects in the router's namespace, for a message:
    /// "Envoy ConfigMap, Service and Deployment".
    fn objects(&self) -> String {
        let mut names = vec!["Envoy ConfigMap", "Service", "Deployment"];
        if self.autoscaling.is_some() {
            names.push("HorizontalPodAutoscaler");
        }
        if self.disruption_budget {
            names.push("PodDisruptionBudget");
        }
        match names.split_last() {
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

/// Everything the status is computed from.
#[derive(Clone, Debug)]
pub struct Facts {
    pub generation: Option<i64>,
    pub acceptance: Acceptance,
    pub programming: Programming,
    /// `None` without `spec.tls`.
    pub certificates: Option<CertificateFacts>,
    /// What the backend says.
    pub backend: BackendFacts,
    /// The Envoy fleet's optional objects (Gloo backend).
    pub fleet: Fleet,
    pub proxy_ref: ProxyRef,
    pub namespaces: usize,
    pub namespaces_without_consent: usize,
    pub services: usize,
    pub virtual_hosts: usize,
    pub dropped_hosts: usize,
}

/// What the backend says about the objects written for the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendFacts {
    Gloo {
        /// Gloo's verdict on the Proxy; `None` when no Proxy was written.
        verdict: Option<Verdict>,
        envoy: EnvoyState,
    },
    GatewayApi(GatewayApiFacts),
}

impl BackendFacts {
    /// Whether the backend's objects were written (the Proxy, or the Gateway API objects).
    pub fn written(&self) -> bool {
        match self {
            Self::Gloo { verdict, .. } => verdict.is_some(),
            Self::GatewayApi(f) => f.written,
        }
    }
}

/// The Gateway API implementation's verdicts, read back from the objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayApiFacts {
    /// Whether the objects were written (then the verdicts below are theirs).
    pub written: bool,
    /// `namespace/name` of the Gateway the routes attach to.
    pub gateway_name: String,
    /// `None`: there is no such Gateway (an existing one the router names is missing).
    pub gateway: Option<GatewayVerdict>,
    pub routes: RoutesVerdict,
}

/// A condition's reason: one of ours, or the one the backend reported.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ReasonText {
    Ours(Reason),
    Reported(String),
}

impl ReasonText {
    fn as_str(&self) -> &str {
        match self {
            Self::Ours(r) => r.as_str(),
            Self::Reported(r) => r,
        }
    }
}

impl From<Reason> for ReasonText {
    fn from(r: Reason) -> Self {
        Self::Ours(r)
    }
}

struct Cond {
    type_: ConditionType,
    status: ConditionStatus,
    reason: ReasonText,
    message: String,
}

fn cond(
    type_: ConditionType,
    status: ConditionStatus,
    reason: impl Into<ReasonText>,
    message: impl Into<String>,
) -> Cond {
    Cond {
        type_,
        status,
        reason: reason.into(),
        message: message.into(),
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Computes the status from `facts`, keeping each condition's `lastTransitionTime` from
/// `previous` unless its status changed (then it is `now`).
pub fn compute(facts: &Facts, previous: Option<&HostRouterStatus>, now: &Time) -> HostRouterStatus {
    let conditions = conditions(facts);
    let previous_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let conditions = conditions
        .into_iter()
        .map(|c| {
            let last = previous_conditions
                .iter()
                .find(|p| p.type_ == c.type_.as_str());
            let last_transition_time = match last {
                Some(p) if p.status == c.status.as_str() => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: c.type_.as_str().to_owned(),
                status: c.status.as_str().to_owned(),
                reason: c.reason.as_str().to_owned(),
                message: truncate(c.message, 32 * 1024),
                observed_generation: facts.generation,
                last_transition_time,
            }
        })
        .collect();
    let accepted = facts.acceptance == Acceptance::Accepted;
    HostRouterStatus {
        observed_generation: facts.generation,
        conditions,
        proxy_ref: accepted.then(|| facts.proxy_ref.clone()),
        namespaces: count(facts.namespaces),
        namespaces_without_consent: count(facts.namespaces_without_consent),
        services: count(facts.services),
        virtual_hosts: count(facts.virtual_hosts),
        dropped_hosts: count(facts.dropped_hosts),
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

use ConditionStatus::{False, True, Unknown};
use ConditionType::*;

fn conditions(f: &Facts) -> Vec<Cond> {
    let proxy = format!("{}/{}", f.proxy_ref.namespace, f.proxy_ref.name);
    let accepted = match &f.acceptance {
        Acceptance::Accepted => cond(
            Accepted,
            True,
            Reason::Accepted,
            format!("This router owns Proxy {proxy}"),
        ),
        Acceptance::Rejected { reason, message } => cond(Accepted, False, *reason, message.clone()),
    };
    let not_accepted = |type_| {
        cond(
            type_,
            Unknown,
            Reason::NotAccepted,
            "The router is not accepted; see the Accepted condition",
        )
    };
    if accepted.status != True {
        let programmed = cond(
            Programmed,
            False,
            Reason::NotAccepted,
            "Nothing is written while the router is not accepted",
        );
        let ready = cond(
            Ready,
            False,
            accepted.reason.clone(),
            accepted.message.clone(),
        );
        let (judged, serving) = match f.backend {
            BackendFacts::Gloo { .. } => (ProxyAccepted, EnvoyAvailable),
            BackendFacts::GatewayApi(_) => (RoutesAccepted, GatewayProgrammed),
        };
        return vec![
            accepted,
            programmed,
            not_accepted(ResolvedRefs),
            not_accepted(judged),
            not_accepted(serving),
            ready,
        ];
    }
    let programmed = match &f.programming {
        Programming::Programmed => cond(
            Programmed,
            True,
            Reason::Programmed,
            match &f.backend {
                BackendFacts::Gloo { .. } => format!(
                    "Proxy {proxy} ({} virtual hosts), {} are up to date",
                    f.virtual_hosts,
                    f.fleet.objects()
                ),
                BackendFacts::GatewayApi(g) => format!(
                    "{} HTTPRoutes ({} virtual hosts) on Gateway {} are up to date",
                    g.routes.total, f.virtual_hosts, g.gateway_name
                ),
            },
        ),
        Programming::Failed { reason, message } => {
            cond(Programmed, False, *reason, message.clone())
        }
    };
    let resolved = resolved_refs(f.certificates.as_ref());
    let (judged, serving) = match &f.backend {
        BackendFacts::Gloo { verdict, envoy } => (
            proxy_accepted(verdict.as_ref(), &f.proxy_ref),
            envoy_available(*envoy, f.fleet.autoscaling),
        ),
        BackendFacts::GatewayApi(g) => (routes_accepted(g), gateway_programmed(g)),
    };
    let ready = match [&programmed, &resolved, &judged, &serving]
        .into_iter()
        .find(|c| c.status != True)
    {
        None => cond(
            Ready,
            True,
            Reason::Ready,
            match &f.backend {
                BackendFacts::Gloo { .. } => format!(
                    "Envoy serves {} virtual hosts from Proxy {proxy}",
                    f.virtual_hosts
                ),
                BackendFacts::GatewayApi(g) => format!(
                    "Gateway {} serves {} virtual hosts from {} HTTPRoutes",
                    g.gateway_name, f.virtual_hosts, g.routes.total
                ),
            },
        ),
        Some(blocker) => cond(
            Ready,
            False,
            blocker.reason.clone(),
            format!("{}: {}", blocker.type_, blocker.message),
        ),
    };
    vec![accepted, programmed, resolved, judged, serving, ready]
}

/// `ProxyAccepted`: Gloo's verdict on the Proxy.
fn proxy_accepted(verdict: Option<&Verdict>, proxy_ref: &ProxyRef) -> Cond {
    let proxy = format!("{}/{}", proxy_ref.namespace, proxy_ref.name);
    match verdict {
        None => cond(
            ProxyAccepted,
            Unknown,
            Reason::NoProxy,
            format!("Proxy {proxy} is not written, so Gloo cannot judge it; see Programmed"),
        ),
        Some(Verdict::NotReported) => cond(
            ProxyAccepted,
            Unknown,
            Reason::GlooNotReported,
            format!(
                "Gloo has not reported on Proxy {proxy} yet. Check that Gloo runs with {} as its write namespace and that its Settings have gateway.persistProxySpec: true",
                proxy_ref.namespace
            ),
        ),
        Some(Verdict::Pending) => cond(
            ProxyAccepted,
            Unknown,
            Reason::GlooPending,
            format!("Gloo has not reported on the latest spec of Proxy {proxy} yet"),
        ),
        Some(Verdict::Accepted) => cond(
            ProxyAccepted,
            True,
            Reason::GlooAccepted,
            format!("Gloo accepted Proxy {proxy}"),
        ),
        Some(Verdict::Warning(w)) => cond(
            ProxyAccepted,
            True,
            Reason::GlooWarning,
            format!("Gloo accepted Proxy {proxy} with warnings: {w}"),
        ),
        Some(Verdict::Rejected(r)) => cond(
            ProxyAccepted,
            False,
            Reason::GlooRejected,
            format!("Gloo rejected Proxy {proxy}: {r}"),
        ),
    }
}

/// `EnvoyAvailable`: the Envoy Deployment the operator runs for Gloo.
fn envoy_available(envoy: EnvoyState, autoscaling: Option<(i32, i32)>) -> Cond {
    let by = match autoscaling {
        Some((min, max)) => format!(" (the HorizontalPodAutoscaler keeps {min} to {max})"),
        None => String::new(),
    };
    match envoy {
        EnvoyState::Missing => cond(
            EnvoyAvailable,
            False,
            Reason::DeploymentMissing,
            "The Envoy Deployment does not exist yet",
        ),
        EnvoyState::Observed { desired: 0, .. } => cond(
            EnvoyAvailable,
            False,
            Reason::ScaledToZero,
            "spec.envoy.replicas is 0",
        ),
        EnvoyState::Observed { desired, available } if available > 0 => cond(
            EnvoyAvailable,
            True,
            Reason::Available,
            format!("{available} of {desired} Envoy replicas are available{by}"),
        ),
        EnvoyState::Observed { desired, .. } => cond(
            EnvoyAvailable,
            False,
            Reason::Unavailable,
            format!("0 of {desired} Envoy replicas are available{by}"),
        ),
    }
}

/// `RoutesAccepted`: the implementation's verdict on the Gateway and on every HTTPRoute, with
/// its own reason and message for the first refusal.
fn routes_accepted(g: &GatewayApiFacts) -> Cond {
    let gw = &g.gateway_name;
    if !g.written {
        return cond(
            RoutesAccepted,
            Unknown,
            Reason::NoRoutes,
            "The Gateway API objects are not written, so nothing can judge them; see Programmed",
        );
    }
    let Some(gateway) = &g.gateway else {
        return cond(
            RoutesAccepted,
            False,
            Reason::GatewayNotFound,
            format!("Gateway {gw} does not exist; the HTTPRoutes attach to it once it does"),
        );
    };
    match &gateway.accepted {
        Judgement::NotReported => {
            return cond(
                RoutesAccepted,
                Unknown,
                Reason::NotReported,
                format!(
                    "No Gateway API implementation has reported on Gateway {gw} yet. Check that a controller serves its GatewayClass"
                ),
            );
        }
        Judgement::Reported {
            status: false,
            reason,
            message,
        } => {
            return cond(
                RoutesAccepted,
                False,
                ReasonText::Reported(reason.clone()),
                format!("Gateway {gw} is not accepted: {message}"),
            );
        }
        Judgement::Reported { .. } => {}
    }
    let r = &g.routes;
    if let Some(first) = r.refused.first() {
        let routes: std::collections::BTreeSet<&str> =
            r.refused.iter().map(|x| x.route.as_str()).collect();
        return cond(
            RoutesAccepted,
            False,
            ReasonText::Reported(first.reason.clone()),
            format!(
                "{} of {} HTTPRoutes are not accepted or not resolved; first: HTTPRoute {} {}=False: {}",
                routes.len(),
                r.total,
                first.route,
                first.condition,
                first.message
            ),
        );
    }
    if r.not_reported > 0 {
        return cond(
            RoutesAccepted,
            Unknown,
            Reason::NotReported,
            format!(
                "{} of {} HTTPRoutes have no verdict for their latest spec yet",
                r.not_reported, r.total
            ),
        );
    }
    cond(
        RoutesAccepted,
        True,
        Reason::RoutesAccepted,
        format!(
            "Gateway {gw} and all {} HTTPRoutes are accepted, their backends resolved",
            r.total
        ),
    )
}

/// `GatewayProgrammed`: the Gateway's `Programmed`, as the implementation reports it.
fn gateway_programmed(g: &GatewayApiFacts) -> Cond {
    let gw = &g.gateway_name;
    if !g.written {
        return cond(
            GatewayProgrammed,
            Unknown,
            Reason::NoRoutes,
            "The Gateway API objects are not written; see Programmed",
        );
    }
    match g.gateway.as_ref().map(|v| &v.programmed) {
        None => cond(
            GatewayProgrammed,
            False,
            Reason::GatewayNotFound,
            format!("Gateway {gw} does not exist"),
        ),
        Some(Judgement::NotReported) => cond(
            GatewayProgrammed,
            Unknown,
            Reason::NotReported,
            format!(
                "No Gateway API implementation has reported whether Gateway {gw} is programmed"
            ),
        ),
        Some(Judgement::Reported {
            status,
            reason,
            message,
        }) => cond(
            GatewayProgrammed,
            if *status { True } else { False },
            ReasonText::Reported(reason.clone()),
            format!("Gateway {gw}: {message}"),
        ),
    }
}

/// `ResolvedRefs`: whether every certificate of `spec.tls` is served, and if not, what the
/// edge does meanwhile.
fn resolved_refs(certificates: Option<&CertificateFacts>) -> Cond {
    let Some(c) = certificates else {
        return cond(
            ResolvedRefs,
            True,
            Reason::ResolvedRefs,
            "No certificates to resolve (no spec.tls)",
        );
    };
    if c.problems.is_empty() {
        return cond(
            ResolvedRefs,
            True,
            Reason::ResolvedRefs,
            format!(
                "All {} certificate Secrets of spec.tls are served",
                c.referenced
            ),
        );
    }
    let problems: Vec<String> = c.problems.iter().map(|p| p.to_string()).collect();
    let consequence = if c.https {
        "the HTTPS listener serves the other certificates"
    } else if c.redirect {
        "there is no HTTPS listener, and plain HTTP is served instead of redirected"
    } else {
        "there is no HTTPS listener; plain HTTP routes as before"
    };
    cond(
        ResolvedRefs,
        False,
        Reason::InvalidCertificateRef,
        format!(
            "{} of {} certificate Secrets cannot be served ({}); {consequence}",
            c.problems.len(),
            c.referenced,
            problems.join("; ")
        ),
    )
}

/// The status of `type_` in `status`, if present.
pub fn condition_status(
    status: Option<&HostRouterStatus>,
    type_: ConditionType,
) -> Option<&Condition> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == type_.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn facts() -> Facts {
        Facts {
            generation: Some(3),
            acceptance: Acceptance::Accepted,
            programming: Programming::Programmed,
            certificates: None,
            backend: gloo(
                Verdict::Accepted,
                EnvoyState::Observed {
                    desired: 2,
                    available: 1,
                },
            ),
            fleet: Fleet::default(),
            proxy_ref: ProxyRef {
                namespace: "gloo-system".into(),
                name: "edge".into(),
            },
            namespaces: 2,
            namespaces_without_consent: 0,
            services: 3,
            virtual_hosts: 4,
            dropped_hosts: 1,
        }
    }

    fn gloo(verdict: Verdict, envoy: EnvoyState) -> BackendFacts {
        BackendFacts::Gloo {
            verdict: Some(verdict),
            envoy,
        }
    }

    const AVAILABLE: EnvoyState = EnvoyState::Observed {
        desired: 2,
        available: 1,
    };

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn get(s: &HostRouterStatus, t: ConditionType) -> &Condition {
        condition_status(Some(s), t).unwrap()
    }

    #[test]
    fn all_true_is_ready_and_counts_are_reported() {
        let s = compute(&facts(), None, &at(1));
        assert_eq!(get(&s, Ready).status, "True");
        assert_eq!(s.conditions.len(), 6);
        assert_eq!(
            (s.namespaces, s.services, s.virtual_hosts, s.dropped_hosts),
            (2, 3, 4, 1)
        );
        assert_eq!(s.observed_generation, Some(3));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let first = compute(&facts(), None, &at(1));
        let same = compute(&facts(), Some(&first), &at(2));
        assert_eq!(first, same, "recomputing the same facts changes nothing");

        let mut rejected = facts();
        rejected.backend = gloo(Verdict::Rejected("duplicate domain".into()), AVAILABLE);
        let flipped = compute(&rejected, Some(&first), &at(3));
        let pa = get(&flipped, ProxyAccepted);
        assert_eq!(
            (pa.status.as_str(), pa.reason.as_str()),
            ("False", Reason::GlooRejected.as_str())
        );
        assert!(pa.message.contains("duplicate domain"));
        assert_eq!(pa.last_transition_time, at(3));
        assert_eq!(get(&flipped, Programmed).last_transition_time, at(1));
        let ready = get(&flipped, Ready);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", Reason::GlooRejected.as_str())
        );
    }

    #[test]
    fn a_conflicting_router_reports_why_and_claims_no_proxy() {
        let mut f = facts();
        f.acceptance = Acceptance::Rejected {
            reason: Reason::ProxyNameConflict,
            message: "older router a/b".into(),
        };
        let s = compute(&f, None, &at(1));
        assert_eq!(get(&s, Accepted).reason, Reason::ProxyNameConflict.as_str());
        assert_eq!(get(&s, Ready).reason, Reason::ProxyNameConflict.as_str());
        assert_eq!(get(&s, Programmed).status, "False");
        assert_eq!(s.proxy_ref, None);
    }

    #[test]
    fn unreported_proxy_explains_persist_proxy_spec() {
        let mut f = facts();
        f.backend = gloo(Verdict::NotReported, AVAILABLE);
        let s = compute(&f, None, &at(1));
        let pa = get(&s, ProxyAccepted);
        assert_eq!(pa.status, "Unknown");
        assert!(pa.message.contains("persistProxySpec"), "{}", pa.message);
    }

    #[test]
    fn envoy_availability_comes_from_the_deployment() {
        let mut f = facts();
        f.backend = gloo(
            Verdict::Accepted,
            EnvoyState::Observed {
                desired: 2,
                available: 0,
            },
        );
        assert_eq!(
            get(&compute(&f, None, &at(1)), EnvoyAvailable).reason,
            Reason::Unavailable.as_str()
        );
        f.backend = gloo(
            Verdict::Accepted,
            EnvoyState::Observed {
                desired: 0,
                available: 0,
            },
        );
        assert_eq!(
            get(&compute(&f, None, &at(1)), EnvoyAvailable).reason,
            Reason::ScaledToZero.as_str()
        );
        f.backend = gloo(Verdict::Accepted, EnvoyState::Missing);
        assert_eq!(
            get(&compute(&f, None, &at(1)), Ready).reason,
            Reason::DeploymentMissing.as_str()
        );
    }

    #[test]
    fn a_certificate_that_cannot_be_served_says_what_the_edge_does_instead() {
        use crate::render::routes::certificates::{Problem, ProblemKind};
        let mut f = facts();
        let s = compute(&f, None, &at(1));
        assert_eq!(get(&s, ResolvedRefs).status, "True");
        f.certificates = Some(CertificateFacts {
            referenced: 2,
            problems: vec![Problem {
                secret: "gone".into(),
                kind: ProblemKind::NotFound,
            }],
            https: false,
            redirect: true,
        });
        let s = compute(&f, None, &at(1));
        let rr = get(&s, ResolvedRefs);
        assert_eq!(
            (rr.status.as_str(), rr.reason.as_str()),
            ("False", "InvalidCertificateRef")
        );
        assert!(
            rr.message.contains("Secret gone does not exist"),
            "{}",
            rr.message
        );
        assert!(
            rr.message.contains("served instead of redirected"),
            "{}",
            rr.message
        );
        assert_eq!(get(&s, Ready).reason, "InvalidCertificateRef");
        f.certificates = Some(CertificateFacts {
            referenced: 2,
            problems: vec![],
            https: true,
            redirect: true,
        });
        let s = compute(&f, None, &at(1));
        assert_eq!(get(&s, ResolvedRefs).status, "True");
        assert_eq!(get(&s, Ready).status, "True");
    }

    #[test]
    fn the_fleets_optional_objects_are_named_in_the_status() {
        let mut f = facts();
        let programmed = |f: &Facts| get(&compute(f, None, &at(1)), Programmed).message.clone();
        assert!(
            programmed(&f).ends_with("Envoy ConfigMap, Service and Deployment are up to date"),
            "{}",
            programmed(&f)
        );
        f.fleet = Fleet {
            autoscaling: Some((2, 5)),
            disruption_budget: true,
        };
        assert!(
            programmed(&f).ends_with(
                "Envoy ConfigMap, Service, Deployment, HorizontalPodAutoscaler and PodDisruptionBudget are up to date"
            ),
            "{}",
            programmed(&f)
        );
        assert_eq!(
            get(&compute(&f, None, &at(1)), EnvoyAvailable)
                .message
                .clone(),
            "1 of 2 Envoy replicas are available (the HorizontalPodAutoscaler keeps 2 to 5)"
        );
    }
}
