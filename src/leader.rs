//! Leader election on a `coordination.k8s.io` Lease, so that several replicas can run and
//! exactly one of them reconciles. The others wait as standbys and take over when the leader
//! releases the Lease (a clean shutdown) or stops renewing it (a crash, a partition).
//!
//! Expiry is judged the way client-go judges it: by how long ago, on this process' own
//! monotonic clock, the Lease record last changed, never by comparing another host's
//! timestamps with ours. A leader that cannot renew within `renew_deadline` (shorter than the
//! lease duration) gives up before anyone else may take the Lease.
//!
//! [`step`] decides from the Lease alone; [`Elector`] reads and writes it.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tracing::{debug, info, warn};

use crate::error::{Error, Result, is_conflict};

/// Where the Lease is and how it is held.
#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    /// Unique among the candidates: the pod name, or host name and process id.
    pub identity: String,
    /// How long a Lease that stopped changing is honoured before a standby takes it.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Config {
    /// Rejects timings under which two leaders could overlap.
    pub fn validate(&self) -> Result<()> {
        // The Lease records whole seconds, and standbys honour what it records.
        if self.lease_duration.subsec_nanos() != 0 {
            return Err(Error::Config(format!(
                "--leader-elect-lease-duration ({:?}) must be a whole number of seconds",
                self.lease_duration
            )));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(Error::Config(format!(
                "--leader-elect-renew-deadline ({:?}) must be shorter than --leader-elect-lease-duration ({:?})",
                self.renew_deadline, self.lease_duration
            )));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(Error::Config(format!(
                "--leader-elect-retry-period ({:?}) must be shorter than --leader-elect-renew-deadline ({:?})",
                self.retry_period, self.renew_deadline
            )));
        }
        if self.lease_duration < Duration::from_secs(1) {
            return Err(Error::Config(
                "--leader-elect-lease-duration must be at least 1s".into(),
            ));
        }
        Ok(())
    }
}

/// What a candidate does about the Lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Write the Lease with this spec: it is free, expired, or already ours.
    Take(LeaseSpec),
    /// Another candidate holds a live Lease.
    Wait { holder: String },
}

/// Decides what `me` does, given the current Lease spec (`None`: no Lease yet) and whether it
/// has expired by the local clock.
pub fn step(
    current: Option<&LeaseSpec>,
    me: &str,
    expired: bool,
    now: &MicroTime,
    lease_duration: Duration,
) -> Step {
    let holder = current
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    if let Some(holder) = holder.filter(|h| *h != me && !expired) {
        return Step::Wait {
            holder: holder.to_owned(),
        };
    }
    let ours = holder == Some(me);
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    Step::Take(LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(seconds(lease_duration)),
        acquire_time: if ours {
            current.and_then(|s| s.acquire_time.clone())
        } else {
            Some(now.clone())
        },
        renew_time: Some(now.clone()),
        lease_transitions: Some(match current {
            Some(_) if !ours => transitions.saturating_add(1),
            _ => transitions,
        }),
        ..Default::default()
    })
}

/// The spec that hands the Lease over at once: no holder, and a one-second duration for
/// candidates that have not seen the change yet.
pub fn released(current: &LeaseSpec, now: &MicroTime) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(now.clone()),
        ..current.clone()
    }
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// What one attempt found.
#[derive(Debug)]
enum Attempt {
    /// This candidate holds the Lease now.
    Leading,
    /// Another candidate holds a live Lease.
    HeldBy(String),
    /// The write lost a race with another writer: nothing is known until the next look.
    Raced,
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    config: Config,
    /// The Lease spec last seen, and when (locally) it last changed.
    observed: Option<(LeaseSpec, Instant)>,
}

impl Elector {
    pub fn new(client: kube::Client, config: Config) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Returns once this candidate holds the Lease. Calls `on_standby` each time it finds
    /// another candidate leading.
    pub async fn acquire(&mut self, on_standby: impl Fn()) {
        let mut waiting_for = None;
        let mut last_error = None;
        loop {
            // Bounded like a renewal: a request that hangs must not park the candidate.
            match self.attempt(self.config.renew_deadline).await {
                Ok(Attempt::Leading) => {
                    info!(lease = %self.lease(), identity = %self.config.identity, "became the leader");
                    return;
                }
                Ok(Attempt::HeldBy(holder)) => {
                    on_standby();
                    if waiting_for.as_ref() != Some(&holder) {
                        info!(lease = %self.lease(), %holder, "standing by: another replica leads");
                        waiting_for = Some(holder);
                    }
                }
                Ok(Attempt::Raced) => {}
                Err(error) => {
                    // Once per distinct error: a lasting one (say, missing RBAC) is not repeated
                    // every retry period.
                    let message = error.to_string();
                    if last_error.as_ref() != Some(&message) {
                        warn!(lease = %self.lease(), %error, "could not acquire the lease; retrying");
                        last_error = Some(message);
                    } else {
                        debug!(lease = %self.lease(), %error, "could not acquire the lease");
                    }
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the Lease every retry period; returns when leadership is lost: another
    /// candidate holds the Lease, or it was not renewed within the renew deadline. Every
    /// attempt is bounded by what is left of the deadline, so a hung request cannot keep a
    /// former leader running past it.
    pub async fn hold(&mut self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let left = self.config.renew_deadline.saturating_sub(renewed.elapsed());
            match self.attempt(left).await {
                Ok(Attempt::Leading) => {
                    renewed = Instant::now();
                    continue;
                }
                Ok(Attempt::HeldBy(holder)) => {
                    warn!(lease = %self.lease(), %holder, "another replica holds the lease; no longer the leader");
                    return;
                }
                // Our own write raced another; look again until the deadline.
                Ok(Attempt::Raced) => {}
                Err(error) => warn!(lease = %self.lease(), %error, "could not renew the lease"),
            }
            if renewed.elapsed() >= self.config.renew_deadline {
                warn!(lease = %self.lease(), deadline = ?self.config.renew_deadline, "could not renew the lease in time; no longer the leader");
                return;
            }
        }
    }

    /// One attempt to acquire or renew, given up after `limit`.
    async fn attempt(&mut self, limit: Duration) -> Result<Attempt> {
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                what: format!("acquiring or renewing Lease {}", self.lease()),
                after: limit,
            }),
        }
    }

    /// Gives the Lease up so that a standby takes over at once (on a clean shutdown). Bounded
    /// by the renew deadline: an unreachable API server must not hold up the shutdown, and the
    /// Lease then simply expires.
    pub async fn release(&mut self) {
        let deadline = self.config.renew_deadline;
        if tokio::time::timeout(deadline, self.try_release())
            .await
            .is_err()
        {
            warn!(lease = %self.lease(), ?deadline, "could not release the lease in time; it will expire");
        }
    }

    async fn try_release(&mut self) {
        let lease = match self.api.get_opt(&self.config.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(error) => {
                warn!(lease = %self.lease(), %error, "could not release the lease");
                return;
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let released = Lease {
            spec: Some(released(&spec, &now())),
            ..lease
        };
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &released)
            .await
        {
            Ok(_) => info!(lease = %self.lease(), "released the lease"),
            Err(error) => warn!(lease = %self.lease(), %error, "could not release the lease"),
        }
    }

    /// Reads the Lease and, unless another candidate holds it, writes it with this candidate
    /// as holder.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt> {
        let Config { name, identity, .. } = &self.config;
        let api_err = |action, e| Error::api(action, "Lease", &self.config.namespace, name, e);
        let current = self
            .api
            .get_opt(name)
            .await
            .map_err(|e| api_err("reading", e))?;
        let local_now = Instant::now();
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        let expired = match (&spec, &mut self.observed) {
            (None, _) => true,
            (Some(spec), Some((seen, since))) if seen == spec => {
                let duration = spec
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(self.config.lease_duration, Duration::from_secs);
                local_now.duration_since(*since) >= duration
            }
            (Some(spec), observed) => {
                *observed = Some((spec.clone(), local_now));
                false
            }
        };
        let desired = match step(
            spec.as_ref(),
            identity,
            expired,
            &now(),
            self.config.lease_duration,
        ) {
            Step::Wait { holder } => return Ok(Attempt::HeldBy(holder)),
            Step::Take(desired) => desired,
        };
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(desired.clone()),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            // Guarded by the resourceVersion read above: of two candidates racing for an
            // expired Lease, one write fails with a conflict.
            Some(lease) => {
                let lease = Lease {
                    spec: Some(desired.clone()),
                    ..lease
                };
                self.api.replace(name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(_) => {
                self.observed = Some((desired, Instant::now()));
                Ok(Attempt::Leading)
            }
            // Someone else wrote first (a create race is a 409 too); look again next period.
            Err(e) if is_conflict(&e) => {
                debug!(lease = %self.lease(), "another write to the lease came first");
                Ok(Attempt::Raced)
            }
            Err(e) => Err(api_err("writing", e)),
        }
    }

    fn lease(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    fn at(seconds: i64) -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn held_by(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(at(100)),
            renew_time: Some(at(110)),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    fn taken(step: Step) -> LeaseSpec {
        match step {
            Step::Take(spec) => spec,
            Step::Wait { holder } => panic!("expected to take the lease, {holder} holds it"),
        }
    }

    #[test]
    fn no_lease_is_created_with_us_as_holder() {
        let spec = taken(step(None, "a", true, &at(200), LEASE));
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.acquire_time, Some(at(200)));
        assert_eq!(spec.renew_time, Some(at(200)));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn a_live_lease_of_another_is_waited_for() {
        assert_eq!(
            step(Some(&held_by("b")), "a", false, &at(200), LEASE),
            Step::Wait { holder: "b".into() }
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_counted() {
        let spec = taken(step(Some(&held_by("b")), "a", true, &at(200), LEASE));
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.acquire_time, Some(at(200)));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn our_own_lease_is_renewed_without_a_transition() {
        let spec = taken(step(Some(&held_by("a")), "a", false, &at(200), LEASE));
        assert_eq!(spec.acquire_time, Some(at(100)));
        assert_eq!(spec.renew_time, Some(at(200)));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let free = released(&held_by("b"), &at(150));
        assert_eq!(free.holder_identity, None);
        assert_eq!(free.lease_duration_seconds, Some(1));
        let spec = taken(step(Some(&free), "a", false, &at(151), LEASE));
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn timings_that_could_overlap_two_leaders_are_rejected() {
        let config = |lease, renew, retry| Config {
            namespace: "ns".into(),
            name: "hostrouter".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
        };
        assert!(config(15, 10, 2).validate().is_ok());
        assert!(config(10, 10, 2).validate().is_err());
        assert!(config(15, 10, 10).validate().is_err());
        let mut sub_second = config(15, 10, 2);
        sub_second.lease_duration = Duration::from_millis(2500);
        sub_second.renew_deadline = Duration::from_secs(2);
        assert!(sub_second.validate().is_err());
    }
}
