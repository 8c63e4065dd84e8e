//! HostRouter: a Kubernetes operator that routes every Service of the selected namespaces by
//! Host header through an Envoy edge proxy programmed by Gloo.

pub mod admission;
pub mod api;
pub mod cli;
pub mod controller;
pub mod diff;
pub mod enforce;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod offline;
pub mod render;
pub mod server;
#[cfg(test)]
mod testing;
