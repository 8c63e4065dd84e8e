//! `dev-cluster up|demo-up|down|status|kubeconfig`: a local control plane that keeps running
//! in the background, and the demo on top of it, for `make demo`.
//!
//! `up` installs Gloo's CRDs (`$GLOO_CRDS_DIR`) and the repository's `crds/` (when it
//! exists); the binaries come from the same environment variables as the e2e suite.
//! `demo-up` starts Gloo, the operator, the petstore backend (this program's
//! `serve-backend`) and Envoy, detached; `down` stops them and the cluster.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use hostrouter_e2e::ControlPlaneOptions;
use hostrouter_e2e::dev_cluster::{DevCluster, Up, default_dir};
use std::path::PathBuf;

use hostrouter_e2e::node::NODE_NAME;
use hostrouter_e2e::process::DetachedProcess;
use hostrouter_e2e::toolchain::{project_crds, tool, vars};

const USAGE: &str = "usage: dev-cluster <up|demo-up|down|status|kubeconfig|demo-url|node>

  up          start the control plane in the background (no-op if it runs), with a node
              where one can start here (HOSTROUTER_DEMO_NODE=0: without)
  demo-up     start the demo for the sample HostRouter, in the background (needs `up`;
              no-op if it runs): with a node, Gloo here and the operator, Envoy and the
              petstore as Pods; without, Gloo, the operator, the petstore and Envoy here
  down        stop the recorded processes (the demo's too), remove the address the demo
              added to lo, and remove the cluster's directory
  status      show the recorded processes and whether the API server is ready
  kubeconfig  print the path of the admin kubeconfig
  demo-url [gateway]
              print the URL the demo's Envoy answers on (with `gateway`: the Gateway API
              sample's Gateway, served by Envoy Gateway; exit 1 when there is none)
  node        print the node's name (exit 0), or why there is none (exit 1)
  serve-backend <name> <ip:port>
              run a demo backend in the foreground (the petstore answers /api/pets)
  serve-dns <ip:port>
              the lab's cluster DNS in the foreground (Services of the KUBECONFIG cluster)";

#[tokio::main]
async fn main() -> ExitCode {
    hostrouter_e2e::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dev-cluster: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<ExitCode> {
    if let [command, name, address] = args
        && command == "serve-backend"
    {
        let address: std::net::SocketAddr = address
            .parse()
            .with_context(|| format!("address {address:?}"))?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;
        println!("backend {name} serving on {address}");
        hostrouter_e2e::backends::serve(listener, name.clone()).await;
        return Ok(ExitCode::SUCCESS);
    }
    if let [command, address] = args
        && command == "serve-dns"
    {
        let address: std::net::SocketAddr = address
            .parse()
            .with_context(|| format!("address {address:?}"))?;
        let client = kube::Client::try_default()
            .await
            .context("a client from KUBECONFIG")?;
        let _dns = hostrouter_e2e::node::dns::ClusterDns::start(address, client).await?;
        println!("cluster DNS serving on {address}");
        std::future::pending::<()>().await;
        return Ok(ExitCode::SUCCESS);
    }
    if let [command, which] = args
        && command == "demo-url"
        && which == "gateway"
    {
        let cluster = DevCluster::new(default_dir()?);
        return Ok(match cluster.demo()?.and_then(|d| d.gateway_listener) {
            Some(listener) => {
                println!("http://{listener}");
                ExitCode::SUCCESS
            }
            None => ExitCode::FAILURE,
        });
    }
    let [command] = args else {
        bail!("{USAGE}");
    };
    let cluster = DevCluster::new(default_dir()?);
    match command.as_str() {
        "up" => up(&cluster).await,
        "demo-up" => demo_up(&cluster).await,
        "down" => {
            if cluster.down().await? {
                println!("dev cluster stopped; removed {}", cluster.dir().display());
            } else {
                println!("no dev cluster recorded in {}", cluster.dir().display());
            }
            Ok(ExitCode::SUCCESS)
        }
        "status" => status(&cluster).await,
        "kubeconfig" => {
            println!("{}", cluster.kubeconfig_path().display());
            Ok(ExitCode::SUCCESS)
        }
        "demo-url" => {
            let demo = cluster
                .demo()?
                .context("no demo recorded: run `demo-up` first")?;
            println!("http://{}", demo.listener);
            Ok(ExitCode::SUCCESS)
        }
        "node" => Ok(match (cluster.node()?, cluster.why_no_node()) {
            (Some(_), _) => {
                println!("{NODE_NAME}");
                ExitCode::SUCCESS
            }
            (None, why) => {
                println!("no node: {}", why.unwrap_or_else(|| "no cluster".into()));
                ExitCode::FAILURE
            }
        }),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

async fn up(cluster: &DevCluster) -> Result<ExitCode> {
    // Envoy Gateway's CRDs where the toolchain has them (`make demo BACKEND=gateway-api`);
    // CRDs must be there before the controller manager starts.
    let options = ControlPlaneOptions::from_env()?
        .crds(project_crds()?)
        .crds(tool(vars::ENVOY_GATEWAY_CRDS_DIR).ok());
    // The images a node imports; where one is missing there is no node (the reason is said).
    let images: Vec<PathBuf> = [
        vars::PAUSE_IMAGE_TAR,
        vars::ENVOY_IMAGE_TAR,
        vars::OPERATOR_IMAGE_TAR,
        vars::ENVOY_GATEWAY_IMAGE_TAR,
    ]
    .into_iter()
    .filter_map(|v| tool(v).ok())
    .collect();
    let state = match cluster.up(options, &images).await? {
        Up::AlreadyUp(state) => {
            println!("dev cluster is already up at {}", state.server);
            state
        }
        Up::Started(state) => {
            println!("dev cluster is up at {}", state.server);
            state
        }
    };
    print_processes(&state.processes);
    match (cluster.node()?, cluster.why_no_node()) {
        (Some(node), _) => {
            println!("  with node {NODE_NAME}:");
            print_processes(&node.node.processes);
        }
        (None, Some(why)) => println!("  no node ({why}): Envoy runs as a local process"),
        (None, None) => {}
    }
    println!();
    println!("  export KUBECONFIG={}", state.kubeconfig.display());
    println!("  stop it with: make demo-down");
    Ok(ExitCode::SUCCESS)
}

async fn demo_up(cluster: &DevCluster) -> Result<ExitCode> {
    let program = std::env::current_exe().context("locating this program")?;
    let (demo, started) = cluster.demo_up(&program).await?;
    println!(
        "demo {}: Envoy listens on {}",
        if started { "is up" } else { "was already up" },
        demo.listener
    );
    print_processes(&demo.processes);
    if let Some(ip) = demo.loopback_address {
        println!("  added {ip}/32 to lo for the backends (removed by `make demo-down`)");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_processes(processes: &[DetachedProcess]) {
    for process in processes {
        println!(
            "  {:<24} pid {:<8} log {}",
            process.name,
            process.pid,
            process.log_path.display()
        );
    }
}

async fn status(cluster: &DevCluster) -> Result<ExitCode> {
    let Some(status) = cluster.status().await? else {
        println!("no dev cluster recorded in {}", cluster.dir().display());
        return Ok(ExitCode::FAILURE);
    };
    println!("dev cluster at {}", status.cluster.server);
    let mut healthy = true;
    for (name, pid, running) in &status.processes {
        healthy &= running;
        let state = if *running { "running" } else { "NOT RUNNING" };
        println!("  {name:<24} pid {pid:<8} {state}");
    }
    if let Some(demo) = cluster.demo()? {
        println!("  demo (Envoy on {}):", demo.listener);
        for p in &demo.processes {
            let running = p.is_running();
            healthy &= running;
            let state = if running { "running" } else { "NOT RUNNING" };
            println!("    {:<22} pid {:<8} {state}", p.name, p.pid);
        }
    }
    match &status.readyz {
        Ok(body) => println!("  /readyz: {}", body.trim()),
        Err(err) => {
            healthy = false;
            println!("  /readyz: unreachable: {err}");
        }
    }
    if let Some(crds) = status.crds {
        println!("  CRDs served: {crds}");
    }
    println!("  KUBECONFIG={}", status.cluster.kubeconfig.display());
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
