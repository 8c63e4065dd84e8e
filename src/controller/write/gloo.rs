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
use crate::controller::finalizer;
use crate::error::{Error, Result, is_missing_resource_type};
use crate::metrics::WriteOp;
use crate::render::gloo::Objects;
use crate::render::naming::{APPLIED_HASH_ANNOTATION, FIELD_MANAGER};

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

    // Then write what differs.
    converge(router, ctx, cm).await?;
    converge(router, ctx, svc).await?;
    hand_replicas_over(ctx, &dep).await?;
    let dep = converge(router, ctx, dep).await?;
    envoy = envoy_state(Some(&dep));
    if let Some(hpa) = hpa {
        converge(router, ctx, hpa).await?;
    }
    if let Some(pdb) = pdb {
        converge(router, ctx, pdb).await?;
    }
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

/// Before the Deployment is applied without `spec.replicas` (an autoscaler sets it), another
/// field manager applies the current count. Otherwise server-side apply would remove the
/// field the operator owned, the API server would default it to 1, and the edge would shrink
/// to one pod until the autoscaler scales it up again. Done whenever the Deployment is about
/// to change (its applied hash differs) under an autoscaler: cheap, and right whatever the
/// operator applied before. The autoscaler's own scale updates take the field from both.
async fn hand_replicas_over(ctx: &Context, dep: &Planned<'_, Deployment>) -> Result<()> {
    let Some(current) = dep.current.as_deref() else {
        return Ok(());
    };
    let stamp = |d: &Deployment| d.annotations().get(APPLIED_HASH_ANNOTATION).cloned();
    let (Some(replicas), None) = (current.spec.replicas, dep.desired.spec.replicas) else {
        return Ok(());
    };
    if stamp(current) == stamp(dep.desired) {
        return Ok(());
    }
    let name = current.name_any();
    let keep = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    dep.api
        .patch(
            &name,
            &PatchParams::apply(REPLICAS_HANDOVER_MANAGER),
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
    Ok(())
}
