//! Typed handles on the custom resources the suite reads and writes.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use crate::gloo::proxy_resource;

/// `hostrouter.io/v1alpha1` HostRouter.
pub fn hostrouter_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("hostrouter.io", "v1alpha1", "HostRouter"),
        "hostrouters",
    )
}

/// HostRouters in `ns`, untyped, so a test sees exactly what the API server stores.
pub fn routers(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &hostrouter_resource())
}

/// Gloo Proxies in `ns`.
pub fn proxies(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &proxy_resource())
}

/// A kind of the Gateway API (`gateway.networking.k8s.io/v1`).
fn gateway_api(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind),
        plural,
    )
}

/// Gateways in `ns`.
pub fn gateways(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &gateway_api("Gateway", "gateways"))
}

/// HTTPRoutes in `ns`.
pub fn http_routes(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &gateway_api("HTTPRoute", "httproutes"))
}

/// GatewayClasses (cluster-scoped).
pub fn gateway_classes(client: &Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &gateway_api("GatewayClass", "gatewayclasses"),
    )
}

/// Envoy Gateway's `gateway.envoyproxy.io/v1alpha1` EnvoyProxies in `ns`.
pub fn envoy_proxies(client: &Client, ns: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.envoyproxy.io", "v1alpha1", "EnvoyProxy"),
        "envoyproxies",
    );
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Applies a Secret `<ns>/<name>` of `type_` with `data` (key → text), server-side.
pub async fn apply_secret(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    data: &[(&str, &str)],
) -> anyhow::Result<()> {
    use anyhow::Context;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &crate::gloo::apply_params(),
            &kube::api::Patch::Apply(&secret),
        )
        .await
        .with_context(|| format!("applying Secret {ns}/{name}"))?;
    Ok(())
}

/// Applies a `kubernetes.io/tls` Secret holding `issued` (the kind cert-manager writes).
pub async fn apply_tls_secret(
    client: &Client,
    ns: &str,
    name: &str,
    issued: &crate::pki::Issued,
) -> anyhow::Result<()> {
    apply_secret(
        client,
        ns,
        name,
        "kubernetes.io/tls",
        &[("tls.crt", &issued.cert_pem), ("tls.key", &issued.key_pem)],
    )
    .await
}

/// `(type, reason, note)` of the Events regarding the object `name` in `namespace`.
pub async fn events(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&Default::default())
        .await?
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect())
}

/// Waits (up to 30 s) for an Event with `reason` regarding `namespace/name` whose note contains
/// `note_contains`.
pub async fn wait_event(
    client: &Client,
    namespace: &str,
    name: &str,
    reason: &str,
    note_contains: &str,
) -> anyhow::Result<()> {
    use crate::wait::{Progress, wait_until};
    let what = format!("a {reason} Event on {namespace}/{name} mentioning {note_contains:?}");
    wait_until(&what, std::time::Duration::from_secs(30), || async {
        let all = events(client, namespace, name).await?;
        Ok(
            if all
                .iter()
                .any(|(_, r, n)| r == reason && n.contains(note_contains))
            {
                Progress::Done(())
            } else {
                Progress::pending(all)
            },
        )
    })
    .await
}
