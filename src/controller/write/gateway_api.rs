//! The Gateway API backend's objects: the Gateway the router owns (in its namespace, owned
//! through an owner reference), then the HTTPRoutes (in the Services' namespaces, removed by
//! the finalizer). Only the HTTPRoutes that differ from the cache are written: a change of one
//! Service is one write, whatever the number of Services.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::ObjectRef;

use super::{BackendWrite, GatewayApiWrite, Planned, Written, annotated_conflict, converge};
use crate::api::HostRouter;
use crate::api::gateway::{gateway_resource, http_route_resource};
use crate::controller::apply;
use crate::controller::context::Context;
use crate::controller::finalizer;
use crate::error::{Error, Result, is_missing_resource_type};
use crate::render::gateway_api::{Objects, gateway_of};

pub(super) async fn write(router: &HostRouter, ctx: &Context, o: &Objects) -> Result<Written> {
    let not_written = |conflict: Option<String>, state| Written {
        conflict,
        backend: BackendWrite::GatewayApi(state),
    };
    let s = &ctx.stores;
    // Looked at from the caches once they are complete; before that (or without the CRDs)
    // from the API server, which also tells whether the CRDs are installed.
    let cached = s.gateway_api_ready();

    let gateway = match &o.gateway {
        Some(desired) => {
            let current = if cached {
                s.gateways
                    .get(&ObjectRef::from_obj_with(desired, gateway_resource()))
            } else {
                None
            };
            match look("Gateway", ctx, &gateway_resource(), desired, current).await? {
                Some(planned) => Some(planned),
                None => return Ok(not_written(None, GatewayApiWrite::CrdMissing)),
            }
        }
        None => None,
    };
    let mut routes = Vec::with_capacity(o.http_routes.len());
    for desired in &o.http_routes {
        let current = if cached {
            s.http_routes
                .get(&ObjectRef::from_obj_with(desired, http_route_resource()))
        } else {
            None
        };
        match look("HTTPRoute", ctx, &http_route_resource(), desired, current).await? {
            Some(planned) => routes.push(planned),
            None => return Ok(not_written(None, GatewayApiWrite::CrdMissing)),
        }
    }

    // A Gateway of this name that this router does not own, or an HTTPRoute written for
    // another router (or by someone else): nothing is written.
    let uid = router.uid().unwrap_or_default();
    let gateway_conflict = gateway.as_ref().and_then(|g| {
        g.conflict(|current| {
            current
                .owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == uid)
        })
    });
    if let Some(conflict) = gateway_conflict {
        return Ok(not_written(Some(conflict), GatewayApiWrite::NotWritten));
    }
    for planned in &routes {
        if let Some(current) = planned.current.as_deref()
            && let Some(conflict) = annotated_conflict(router, ctx, "HTTPRoute", current).await?
        {
            return Ok(not_written(Some(conflict), GatewayApiWrite::NotWritten));
        }
    }

    // The HTTPRoutes live in other namespaces: the finalizer, not an owner reference, removes
    // them with the router.
    if !routes.is_empty() {
        finalizer::ensure(router, ctx).await?;
    }
    let gateway = match gateway {
        Some(planned) => Some(converge(router, ctx, planned).await?),
        // An existing Gateway: read for its status (the watch sees every Gateway).
        None => gateway_of(router).and_then(|(ns, name)| {
            s.gateways
                .get(&ObjectRef::new_with(&name, gateway_resource()).within(&ns))
                .filter(|_| cached)
        }),
    };
    let mut written = Vec::with_capacity(routes.len());
    for planned in routes {
        written.push(converge(router, ctx, planned).await?);
    }
    Ok(Written {
        conflict: None,
        backend: BackendWrite::GatewayApi(GatewayApiWrite::Written {
            gateway,
            routes: written,
        }),
    })
}

/// One object and what its namespace holds under its name; `None` when its CRD is missing.
async fn look<'a>(
    kind: &'static str,
    ctx: &Context,
    resource: &ApiResource,
    desired: &'a DynamicObject,
    cached: Option<Arc<DynamicObject>>,
) -> Result<Option<Planned<'a, DynamicObject>>> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &desired.namespace().unwrap_or_default(),
        resource,
    );
    match apply::current(&api, kind, desired, cached).await {
        Ok(current) => Ok(Some(Planned {
            kind,
            api,
            desired,
            current,
        })),
        Err(Error::Api { source, .. }) if is_missing_resource_type(&source) => Ok(None),
        Err(e) => Err(e),
    }
}
