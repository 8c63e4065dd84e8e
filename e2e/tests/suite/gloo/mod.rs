//! Gloo in the loop: a HostRouter makes requests route by Host header through the Proxy the
//! operator writes, through a real Gloo v1.22.1 (out of cluster), through a real Envoy 1.40
//! started from the generated Deployment and ConfigMap, to local backends.
//!
//! Each trial runs its own Gloo (Settings in a namespace of its own, watching only the trial's
//! namespaces), operator, Envoy and backends. A Gloo per trial costs its startup (about 10 s,
//! overlapped with the operator's) but keeps trials independent: trial-specific Settings (the
//! rejection trial, discovery) cannot leak into other trials, and Gloo never writes statuses
//! on the Proxies of the operator trials, which run at the same time. Backends bind an address
//! from 198.51.100.0/24 added to `lo` for the trial (the API server refuses loopback addresses
//! in Endpoints).

//!
//! - [`lab`]: the world of one trial;
//! - [`basics`]: the reference behaviour (Host `<namespace>-<service>-<port>`);
//! - [`routes`]: the route bodies of `crate::routes` (hostname templates, extra hostnames, TLS
//!   with the redirect, path prefixes) through Gloo;
//! - [`faults`]: Gloo killed and started again.

mod basics;
mod faults;
mod lab;
mod routes;

use hostrouter_e2e::Suite;
use libtest_mimic::Trial;

pub fn trials(suite: &Suite) -> Vec<Trial> {
    [
        basics::trials(suite),
        routes::trials(suite),
        faults::trials(suite),
    ]
    .into_iter()
    .flatten()
    .collect()
}
