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
