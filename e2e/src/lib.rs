//! End-to-end harness for HostRouter.
//!
//! It runs a real, local Kubernetes control plane — etcd, kube-apiserver and
//! kube-controller-manager built from their upstream sources by `make toolchain` — and
//! offers the helpers the scenarios are written with:
//!
//! - [`ControlPlane`]: start/stop the control plane, an admin [`kube::Client`], `kubectl`
//!   and `helm` bound to it, and kubeconfigs for service accounts (to run the operator
//!   under the chart's RBAC).
//! - [`Process`]: a long-running child (the operator, Envoy, Gloo) logging to a file and
//!   killed by pid when dropped.
//! - [`wait_until`]: poll a condition with a deadline and a failure message that shows the
//!   last observed state.
//! - [`TestNamespace`]: a uniquely named namespace deleted at the end.
//! - [`suite`]: the libtest-mimic runner that shares one control plane per test run.
//!
//! Binary locations come from environment variables set by `make e2e`; see [`toolchain`].

pub mod backends;
pub mod bench;
pub mod cli;
pub mod command;
pub mod control_plane;
pub mod crds;
pub mod curl;
pub mod dev_cluster;
pub mod envoy;
pub mod gloo;
pub mod http;
pub mod json;
pub mod kubeconfig;
pub mod loopback;
pub mod namespace;
pub mod net;
pub mod node;
pub mod operator;
pub mod pki;
pub mod process;
pub mod promql;
pub mod relay;
pub mod resources;
pub mod rng;
pub mod rundir;
pub mod suite;
pub mod toolchain;
pub mod wait;

pub use control_plane::{Component, ControlPlane, ControlPlaneOptions};

/// The `tracing` filter used when `RUST_LOG` is unset: the harness's progress, and no
/// kube-client errors for the requests that readiness polling expects to fail.
pub const DEFAULT_LOG_FILTER: &str = "warn,hostrouter_e2e=info,kube_client=off";

/// Logging of the harness's programs to stderr: `RUST_LOG`, else [`DEFAULT_LOG_FILTER`].
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG_FILTER.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
pub use namespace::TestNamespace;
pub use process::{Process, ProcessBuilder};
pub use suite::{Suite, TestContext};
pub use wait::{Progress, wait_until};
