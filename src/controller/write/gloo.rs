//! The Gloo backend's objects: the Envoy ConfigMap, Service and Deployment in the router's
//! namespace, then the Proxy in Gloo's.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;

use super::{
    BackendWrite, Planned, ProxyWrite, Written, annotated_conflict, converge, envoy_state, plan,
};
use crate::api::HostRouter;
use crate::api::gloo;
use crate::api::hostrouter::ProxyRef;
use crate::controller::apply;
use crate::controller::context::Context;
use crate::controller::{cleanup, finalizer};
use crate::error::{Error, Result, is_missing_resource_type};
use crate::metrics::WriteOp;
use crate::render::gloo::Objects;
use crate::render::naming::{FIELD_MANAGER, REPLICAS_FROM_ANNOTATION};

/// Looks at the Envoy ConfigMap, Service and Deployment and at the Proxy; writes them unless
/// one is held by another.
pub(super) async fn write(
    router: &HostRouter,
    ctx: &Context,
    r: &Objects,
    proxy_ref: &ProxyRef,
) -> Result<Written> {
    let s = &ctx.stores;
    let mut envoy = envoy_state(
        s.deployments
            .get(&ObjectRef::from_obj(&r.deployment))
            .as_deref(),
    );
    let uid = router.uid().unwrap_or_default();
    let owned_by_me = |refs: &[OwnerReference]| {
        refs.iter()
            .any(|o| o.controller == Some(true) && o.uid == uid)
    };

    // Look at everything first.
    let cm = plan(router, ctx, "ConfigMap", &r.config_map, &s.config_maps).await?;
    let svc = plan(router, ctx, "Service", &r.service, &s.services).await?;
    let dep = plan(router, ctx, "Deployment", &r.deployment, &s.deployments).await?;
    let hpa = match &r.autoscaler {
        Some(hpa) => Some(plan(router, ctx, "HorizontalPodAutoscaler", hpa, &s.autoscalers).await?),
        None => None,
    };
    let pdb = match &r.disruption_budget {
        Some(pdb) => Some(
            plan(
                router,
                ctx,
                "PodDisruptionBudget",
                pdb,
                &s.disruption_budgets,
            )
            .await?,
        ),
        None => None,
    };
    let proxy_namespace = ObjectRef::new(&proxy_ref.namespace);
    let proxy_body = gloo::awaiting_verdict(
        &r.proxy,
        &proxy_ref.namespace,
        FIELD_MANAGER,
        Timestamp::now(),
    );
    let proxy = if s.namespaces.get(&proxy_namespace).is_some() {
        plan_proxy(ctx, &proxy_body).await?
    } else {
        Err(ProxyWrite::NamespaceMissing)
    };
    let proxy_conflict = match proxy.as_ref().ok().and_then(|p| p.current.as_deref()) {
        Some(current) => annotated_conflict(router, ctx, "Proxy", current).await?,
        None => None,
    };
    let conflicts = [
        cm.conflict(|o| owned_by_me(o.owner_references())),
        svc.conflict(|o| owned_by_me(o.owner_references())),
        dep.conflict(|o| owned_by_me(o.owner_references())),
        hpa.as_ref()
            .and_then(|p| p.conflict(|o| owned_by_me(o.owner_references()))),
        pdb.as_ref()
            .and_then(|p| p.conflict(|o| owned_by_me(o.owner_references()))),
        proxy_conflict,
    ];
    if let Some(conflict) = conflicts.into_iter().flatten().next() {
        return Ok(Written {
            conflict: Some(conflict),
            backend: BackendWrite::Gloo {
                proxy: ProxyWrite::NotWritten,
                envoy,
            },
        });
    }

    // Then write what differs: the Envoy fleet, the Proxy, and last the fleet's optional
    // objects, so that a refusal of those never holds the routes back.
    converge(router, ctx, cm).await?;
    converge(router, ctx, svc).await?;
    if r.autoscaler.is_none() {
        // Before the Deployment takes its own count again: an autoscaler left running would
        // set it back.
        if let Some(hpa) = s.autoscalers.get(
            &ObjectRef::new(&r.deployment.name_any())
                .within(&r.deployment.namespace().unwrap_or_default()),
        ) {
            cleanup::delete_labelled(
                router,
                ctx,
                "HorizontalPodAutoscaler",
                hpa.as_ref(),
                apply::Same::Object,
            )
            .await?;
        }
    }
    let dep = hand_replicas_over(ctx, dep).await?;
    let dep = converge(router, ctx, dep).await?;
    envoy = envoy_state(Some(&dep));
    let proxy = match proxy {
        Err(missing) => missing,
        Ok(proxy) => {
            // The Proxy lives in Gloo's namespace: the finalizer, not an owner reference,
            // removes it with the router.
            finalizer::ensure(router, ctx).await?;
            let written = converge(router, ctx, proxy).await?;
            ProxyWrite::Written(gloo::verdict_at(
                &written,
                &proxy_ref.namespace,
                FIELD_MANAGER,
                Timestamp::now(),
            ))
        }
    };
    if let Some(hpa) = hpa {
        converge(router, ctx, hpa).await?;
    }
    if let Some(pdb) = pdb {
        converge(router, ctx, pdb).await?;
    }
    Ok(Written {
        conflict: None,
        backend: BackendWrite::Gloo { proxy, envoy },
    })
}

/// The Proxy and what Gloo's namespace holds under its name; `Err(CrdMissing)` when Gloo's Proxy
/// CRD is missing.
async fn plan_proxy<'a>(
    ctx: &Context,
    proxy: &'a DynamicObject,
) -> Result<Result<Planned<'a, DynamicObject>, ProxyWrite>> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &proxy.namespace().unwrap_or_default(),
        &gloo::proxy_resource(),
    );
    let cached = if ctx.stores.proxies_ready() {
        ctx.stores
            .proxies
            .get(&ObjectRef::from_obj_with(proxy, gloo::proxy_resource()))
    } else {
        None
    };
    match apply::current(&api, "Proxy", proxy, cached).await {
        Ok(current) => Ok(Ok(Planned {
            kind: "Proxy",
            api,
            desired: proxy,
            current,
        })),
        Err(Error::Api { source, .. }) if is_missing_resource_type(&source) => {
            Ok(Err(ProxyWrite::CrdMissing))
        }
        Err(e) => Err(e),
    }
}

/// Field manager that keeps `spec.replicas` of an Envoy Deployment while it passes from the
/// operator to an autoscaler.
const REPLICAS_HANDOVER_MANAGER: &str = "hostrouter-replicas-handover";

/// Hands the Deployment's replica count to its new autoscaler, once: when the Deployment is
/// about to be applied without `spec.replicas` for the first time (the desired object carries
/// [`REPLICAS_FROM_ANNOTATION`], the current one not yet). Server-side apply would otherwise
/// remove the field the operator owned, the API server would default it to 1, and the edge
/// would shrink to one pod until the autoscaler acts. Another field manager applies the count
/// first (at least 1: an autoscaler leaves a target at 0 alone), guarded by the
/// resourceVersion; the operator's apply then leaves the field to it, and the autoscaler's
/// updates (into its range first of all) take it over. Returns the plan with the Deployment as
/// it now is.
async fn hand_replicas_over<'a>(
    ctx: &Context,
    mut dep: Planned<'a, Deployment>,
) -> Result<Planned<'a, Deployment>> {
    let marked = |d: &Deployment| d.annotations().contains_key(REPLICAS_FROM_ANNOTATION);
    let Some(current) = dep.current.as_deref() else {
        return Ok(dep);
    };
    let (Some(replicas), false, true) =
        (current.spec.replicas, marked(current), marked(dep.desired))
    else {
        return Ok(dep);
    };
    let name = current.name_any();
    let keep = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "resourceVersion": current.resource_version()},
        "spec": {"replicas": replicas.max(1)},
    });
    let handed = dep
        .api
        .patch(
            &name,
            &PatchParams::apply(REPLICAS_HANDOVER_MANAGER).force(),
            &Patch::Apply(&keep),
        )
        .await
        .map_err(|e| {
            Error::api(
                "handing the replica count over to the autoscaler of",
                "Deployment",
                &current.namespace().unwrap_or_default(),
                &name,
                e,
            )
        })?;
    ctx.metrics.write("Deployment", WriteOp::Apply);
    dep.current = Some(std::sync::Arc::new(handed));
    Ok(dep)
}
