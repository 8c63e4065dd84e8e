//! API types: HostRouter (ours) and the parts of Gloo's Proxy we write and read.

pub mod backend;
pub mod crd;
pub mod envoy;
pub mod gateway;
pub mod gloo;
pub mod hostrouter;
pub mod routing;
pub mod selector;
pub mod service;

pub use hostrouter::{HostRouter, HostRouterSpec, HostRouterStatus};
