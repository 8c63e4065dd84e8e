//! Telling what a reconcile found: the status (written only when it changed) and Events for
//! the transitions that matter and for names left out of the route table.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::Context;
use super::status::{self, ConditionType, Facts};
use crate::api::{HostRouter, HostRouterStatus};
use crate::error::{Error, Result};
use crate::metrics::WriteOp;
use crate::render::naming::FIELD_MANAGER;
use crate::render::routes::Findings;

/// Writes the status computed from `facts`, only when it differs from the current one, and
/// emits an Event for each condition that changed status.
pub async fn write_status(router: &HostRouter, ctx: &Context, facts: &Facts) -> Result<()> {
    let previous = router.status.as_ref();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let next = status::compute(facts, previous, &now);
    if previous == Some(&next) {
        return Ok(());
    }
    let ns = router.namespace().unwrap_or_default();
    let name = router.name_any();
    let api: Api<HostRouter> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "apiVersion": HostRouter::api_version(&()),
        "kind": HostRouter::kind(&()),
        "status": next,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::api("writing status of", "HostRouter", &ns, &name, e))?;
    ctx.metrics.write("HostRouter", WriteOp::Status);
    announce_transitions(router, ctx, previous, &next).await;
    Ok(())
}

async fn announce_transitions(
    router: &HostRouter,
    ctx: &Context,
    previous: Option<&HostRouterStatus>,
    next: &HostRouterStatus,
) {
    for c in &next.conditions {
        let before = previous
            .into_iter()
            .flat_map(|p| p.conditions.iter())
            .find(|p| p.type_ == c.type_);
        let changed = before.is_none_or(|b| b.status != c.status);
        // First appearances are news only when something is wrong.
        let newsworthy = if before.is_none() {
            c.status == "False"
        } else {
            changed
        };
        // Ready=False repeats the condition that blocks it, which has its own Event.
        let repeats = c.type_ == ConditionType::Ready.as_str() && c.status == "False";
        if !newsworthy || repeats {
            continue;
        }
        let type_ = if c.status == "False" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = format!("{} is {}: {}", c.type_, c.status, c.message);
        ctx.event(router, type_, &c.reason, "Reconcile", note).await;
    }
}

/// The Event reason for namespaces a router selects but may not publish.
pub const NAMESPACE_WITHOUT_CONSENT: &str = "NamespaceWithoutConsent";

/// Emits one Warning per kind of problem whose set of names left out changed since the last
/// report (not on every reconcile): `DuplicateHost`, `InvalidHostname`, `HostnameNotAllowed`,
/// `PortNotFound`, `NamespaceWithoutConsent`.
pub async fn report_dropped(router: &HostRouter, ctx: &Context, findings: &Findings) {
    let lines: BTreeSet<(&'static str, String)> = findings
        .dropped
        .iter()
        .map(|d| (d.reason.event_reason(), d.to_string()))
        .chain(
            findings
                .namespaces_without_consent
                .iter()
                .map(|n| (NAMESPACE_WITHOUT_CONSENT, n.clone())),
        )
        .collect();
    let known = router.status.as_ref().map_or(0, |s| {
        usize::try_from(s.dropped_hosts).unwrap_or(0)
            + usize::try_from(s.namespaces_without_consent).unwrap_or(0)
    });
    let key = ObjectRef::from_obj(router);
    let Some(changed) = ctx.dropped_changed(&key, &lines, known) else {
        return;
    };
    for reason in changed {
        let list: Vec<&str> = lines
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, line)| line.as_str())
            .collect();
        if list.is_empty() {
            continue;
        }
        let (n, list) = (list.len(), list.join(", "));
        let note = match reason {
            "DuplicateHost" => {
                format!("{n} names left out because an older Service already has the name: {list}")
            }
            "InvalidHostname" => format!(
                "{n} names left out because the generated name is not a valid hostname or path: {list}"
            ),
            "HostnameNotAllowed" => format!(
                "{n} names refused because they are not under the router's spec.hosts.allowedSuffixes: {list}"
            ),
            NAMESPACE_WITHOUT_CONSENT => format!(
                "{n} namespaces match spec.namespaceSelector but are not published: a router publishes its own namespace and those labelled hostrouter.io/expose=true (a router in a trusted namespace publishes any but the protected ones): {list}"
            ),
            _ => format!(
                "{n} Services are not routed because their hostrouter.io/port annotation names no TCP port: {list}"
            ),
        };
        ctx.event(router, EventType::Warning, reason, "Render", note)
            .await;
    }
}
