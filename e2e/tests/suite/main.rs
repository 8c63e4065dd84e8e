//! The end-to-end suite: every trial runs against one real control plane started for
//! this `cargo test` run (see `hostrouter_e2e::suite`).
//!
//! To add an area, write a module with `pub fn trials(suite: &Suite) -> Vec<Trial>` and
//! list it in `main` below.

mod gateway_api;
mod gloo;
mod leader;
mod node;
mod operator;
mod routes;
mod shapes;
mod smoke;
mod timing;
mod world;

use std::process::ExitCode;

use hostrouter_e2e::toolchain::{fixture, project_crds};
use hostrouter_e2e::{ControlPlaneOptions, Suite};

fn main() -> ExitCode {
    let suite = match Suite::new(|| {
        Ok(ControlPlaneOptions::from_env()?
            .crd(fixture("smoke-crd.yaml"))
            .crds(project_crds()?))
    }) {
        Ok(suite) => suite,
        Err(err) => {
            eprintln!("e2e: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let trials = [
        smoke::trials(&suite),
        operator::trials(&suite),
        leader::trials(&suite),
        gloo::trials(&suite),
        gateway_api::trials(&suite),
        node::trials(&suite),
    ]
    .into_iter()
    .flatten()
    .collect();
    suite.run(trials)
}
