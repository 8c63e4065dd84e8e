//! The HostRouter's status, computed from what the reconcile observed. Pure.
//!
//! Conditions follow `metav1.Condition`: `lastTransitionTime` moves only when a condition's
//! status flips, so rewriting the same facts changes nothing and writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::HostRouterStatus;
use crate::api::gloo::Verdict;
use crate::api::hostrouter::ProxyRef;

pub const ACCEPTED: &str = "Accepted";
pub const PROGRAMMED: &str = "Programmed";
pub const PROXY_ACCEPTED: &str = "ProxyAccepted";
pub const ENVOY_AVAILABLE: &str = "EnvoyAvailable";
pub const READY: &str = "Ready";

/// Condition reasons. Each is a README troubleshooting entry.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const PROXY_NAME_CONFLICT: &str = "ProxyNameConflict";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const NOT_ACCEPTED: &str = "NotAccepted";
    pub const PROGRAMMED: &str = "Programmed";
    pub const GLOO_CRD_MISSING: &str = "GlooCRDMissing";
    pub const OBJECT_CONFLICT: &str = "ObjectConflict";
    pub const APPLY_FAILED: &str = "ApplyFailed";
    pub const GLOO_NOT_REPORTED: &str = "GlooNotReported";
    pub const GLOO_PENDING: &str = "Pending";
    pub const GLOO_ACCEPTED: &str = "Accepted";
    pub const GLOO_WARNING: &str = "AcceptedWithWarnings";
    pub const GLOO_REJECTED: &str = "Rejected";
    pub const AVAILABLE: &str = "Available";
    pub const UNAVAILABLE: &str = "Unavailable";
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    pub const DEPLOYMENT_MISSING: &str = "DeploymentMissing";
    pub const READY: &str = "Ready";
}

/// Whether the router may act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acceptance {
    Accepted,
    Rejected {
        reason: &'static str,
        message: String,
    },
}

/// Whether the generated objects were written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Programming {
    Programmed,
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// The Envoy Deployment as last observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvoyState {
    Missing,
    Observed { desired: i32, available: i32 },
}

/// Everything the status is computed from.
#[derive(Clone, Debug)]
pub struct Facts {
    pub generation: Option<i64>,
    pub acceptance: Acceptance,
    pub programming: Programming,
    /// Gloo's verdict on the Proxy; `None` when the Proxy is not ours to read.
    pub verdict: Option<Verdict>,
    pub envoy: EnvoyState,
    pub proxy_ref: ProxyRef,
    pub namespaces: usize,
    pub services: usize,
    pub virtual_hosts: usize,
    pub dropped_hosts: usize,
}

struct Cond {
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
    message: String,
}

fn cond(
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
    message: impl Into<String>,
) -> Cond {
    Cond {
        type_,
        status,
        reason,
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
            let last = previous_conditions.iter().find(|p| p.type_ == c.type_);
            let last_transition_time = match last {
                Some(p) if p.status == c.status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: c.type_.to_owned(),
                status: c.status.to_owned(),
                reason: c.reason.to_owned(),
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

fn conditions(f: &Facts) -> Vec<Cond> {
    let proxy = format!("{}/{}", f.proxy_ref.namespace, f.proxy_ref.name);
    let accepted = match &f.acceptance {
        Acceptance::Accepted => cond(
            ACCEPTED,
            "True",
            reason::ACCEPTED,
            format!("This router owns Proxy {proxy}"),
        ),
        Acceptance::Rejected { reason, message } => {
            cond(ACCEPTED, "False", reason, message.clone())
        }
    };
    let not_accepted = |type_| {
        cond(
            type_,
            "Unknown",
            reason::NOT_ACCEPTED,
            "The router is not accepted; see the Accepted condition",
        )
    };
    if accepted.status != "True" {
        let programmed = cond(
            PROGRAMMED,
            "False",
            reason::NOT_ACCEPTED,
            "Nothing is written while the router is not accepted",
        );
        let ready = cond(READY, "False", accepted.reason, accepted.message.clone());
        return vec![
            accepted,
            programmed,
            not_accepted(PROXY_ACCEPTED),
            not_accepted(ENVOY_AVAILABLE),
            ready,
        ];
    }
    let programmed = match &f.programming {
        Programming::Programmed => cond(
            PROGRAMMED,
            "True",
            reason::PROGRAMMED,
            format!(
                "Proxy {proxy} ({} virtual hosts), Envoy ConfigMap, Service and Deployment are up to date",
                f.virtual_hosts
            ),
        ),
        Programming::Failed { reason, message } => {
            cond(PROGRAMMED, "False", reason, message.clone())
        }
    };
    let proxy_accepted = match &f.verdict {
        None | Some(Verdict::NotReported) => cond(
            PROXY_ACCEPTED,
            "Unknown",
            reason::GLOO_NOT_REPORTED,
            format!(
                "Gloo has not reported on Proxy {proxy} yet. Check that Gloo runs with {} as its write namespace and that its Settings have gateway.persistProxySpec: true",
                f.proxy_ref.namespace
            ),
        ),
        Some(Verdict::Pending) => cond(
            PROXY_ACCEPTED,
            "Unknown",
            reason::GLOO_PENDING,
            format!("Gloo is processing Proxy {proxy}"),
        ),
        Some(Verdict::Accepted) => cond(
            PROXY_ACCEPTED,
            "True",
            reason::GLOO_ACCEPTED,
            format!("Gloo accepted Proxy {proxy}"),
        ),
        Some(Verdict::Warning(w)) => cond(
            PROXY_ACCEPTED,
            "True",
            reason::GLOO_WARNING,
            format!("Gloo accepted Proxy {proxy} with warnings: {w}"),
        ),
        Some(Verdict::Rejected(r)) => cond(
            PROXY_ACCEPTED,
            "False",
            reason::GLOO_REJECTED,
            format!("Gloo rejected Proxy {proxy}: {r}"),
        ),
    };
    let envoy = match f.envoy {
        EnvoyState::Missing => cond(
            ENVOY_AVAILABLE,
            "False",
            reason::DEPLOYMENT_MISSING,
            "The Envoy Deployment does not exist yet",
        ),
        EnvoyState::Observed { desired: 0, .. } => cond(
            ENVOY_AVAILABLE,
            "False",
            reason::SCALED_TO_ZERO,
            "spec.envoy.replicas is 0",
        ),
        EnvoyState::Observed { desired, available } if available > 0 => cond(
            ENVOY_AVAILABLE,
            "True",
            reason::AVAILABLE,
            format!("{available} of {desired} Envoy replicas are available"),
        ),
        EnvoyState::Observed { desired, .. } => cond(
            ENVOY_AVAILABLE,
            "False",
            reason::UNAVAILABLE,
            format!("0 of {desired} Envoy replicas are available"),
        ),
    };
    let ready = match [&programmed, &proxy_accepted, &envoy]
        .into_iter()
        .find(|c| c.status != "True")
    {
        None => cond(
            READY,
            "True",
            reason::READY,
            format!(
                "Envoy serves {} virtual hosts from Proxy {proxy}",
                f.virtual_hosts
            ),
        ),
        Some(blocker) => cond(
            READY,
            "False",
            blocker.reason,
            format!("{}: {}", blocker.type_, blocker.message),
        ),
    };
    vec![accepted, programmed, proxy_accepted, envoy, ready]
}

/// The status of `type_` in `status`, if present.
pub fn condition_status<'a>(
    status: Option<&'a HostRouterStatus>,
    type_: &str,
) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
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
            verdict: Some(Verdict::Accepted),
            envoy: EnvoyState::Observed {
                desired: 2,
                available: 1,
            },
            proxy_ref: ProxyRef {
                namespace: "gloo-system".into(),
                name: "edge".into(),
            },
            namespaces: 2,
            services: 3,
            virtual_hosts: 4,
            dropped_hosts: 1,
        }
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn get<'a>(s: &'a HostRouterStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn all_true_is_ready_and_counts_are_reported() {
        let s = compute(&facts(), None, &at(1));
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(s.conditions.len(), 5);
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
        rejected.verdict = Some(Verdict::Rejected("duplicate domain".into()));
        let flipped = compute(&rejected, Some(&first), &at(3));
        let pa = get(&flipped, PROXY_ACCEPTED);
        assert_eq!(
            (pa.status.as_str(), pa.reason.as_str()),
            ("False", reason::GLOO_REJECTED)
        );
        assert!(pa.message.contains("duplicate domain"));
        assert_eq!(pa.last_transition_time, at(3));
        assert_eq!(get(&flipped, PROGRAMMED).last_transition_time, at(1));
        let ready = get(&flipped, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason::GLOO_REJECTED)
        );
    }

    #[test]
    fn a_conflicting_router_reports_why_and_claims_no_proxy() {
        let mut f = facts();
        f.acceptance = Acceptance::Rejected {
            reason: reason::PROXY_NAME_CONFLICT,
            message: "older router a/b".into(),
        };
        let s = compute(&f, None, &at(1));
        assert_eq!(get(&s, ACCEPTED).reason, reason::PROXY_NAME_CONFLICT);
        assert_eq!(get(&s, READY).reason, reason::PROXY_NAME_CONFLICT);
        assert_eq!(get(&s, PROGRAMMED).status, "False");
        assert_eq!(s.proxy_ref, None);
    }

    #[test]
    fn unreported_proxy_explains_persist_proxy_spec() {
        let mut f = facts();
        f.verdict = Some(Verdict::NotReported);
        let s = compute(&f, None, &at(1));
        let pa = get(&s, PROXY_ACCEPTED);
        assert_eq!(pa.status, "Unknown");
        assert!(pa.message.contains("persistProxySpec"), "{}", pa.message);
    }

    #[test]
    fn envoy_availability_comes_from_the_deployment() {
        let mut f = facts();
        f.envoy = EnvoyState::Observed {
            desired: 2,
            available: 0,
        };
        assert_eq!(
            get(&compute(&f, None, &at(1)), ENVOY_AVAILABLE).reason,
            reason::UNAVAILABLE
        );
        f.envoy = EnvoyState::Observed {
            desired: 0,
            available: 0,
        };
        assert_eq!(
            get(&compute(&f, None, &at(1)), ENVOY_AVAILABLE).reason,
            reason::SCALED_TO_ZERO
        );
        f.envoy = EnvoyState::Missing;
        assert_eq!(
            get(&compute(&f, None, &at(1)), READY).reason,
            reason::DEPLOYMENT_MISSING
        );
    }
}
