//! The node's own network: a network namespace joined to this machine by a veth pair.
//!
//! Everything the node does to networking happens inside the namespace: the Pods' bridge and
//! their routes, kube-proxy's iptables rules, the sysctls it sets. Deleting the namespace
//! removes all of it at once; this machine keeps only two routes, into the namespace, which go
//! with the veth pair.
//!
//! Addresses (TEST-NET-2, RFC 5737; the backends of other trials use `.10`-`.199`):
//!
//! | address | what |
//! | --- | --- |
//! | `198.51.100.225/30` | this machine's end of the veth: the API server binds it, Gloo's xDS too |
//! | `198.51.100.226/30` | the node's end: its InternalIP (the kubelet, kube-proxy) |
//! | `198.51.100.240/28` | the Pods, on the node's bridge (`.241` is the bridge) |
//! | the Service range | ClusterIPs: routed into the namespace, where kube-proxy DNATs them |

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// This machine's end of the veth pair.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 225);
/// The node's end: the node's InternalIP.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 226);
/// The Pods' subnet, on the node's bridge.
pub const POD_CIDR: &str = "198.51.100.240/28";
/// The bridge's address, the Pods' gateway.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 241);
/// Prefix of the namespaces and interfaces this harness makes.
const PREFIX: &str = "hrnode";

/// The namespace and the veth pair; removed when dropped (unless removed or detached before).
#[derive(Debug)]
pub struct NodeNetwork {
    record: NetworkRecord,
    /// Removed already, or left to the record: not removed when dropped.
    released: bool,
}

/// What [`NodeNetwork`] made, as a record that can remove it later (`make demo-down`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    pub host_link: String,
    /// Routes into the namespace, through the node's address.
    pub routes: Vec<String>,
}

impl NetworkRecord {
    /// Removes the routes, the veth pair and the namespace (what is gone already is skipped).
    pub fn remove(&self) -> Result<()> {
        for cidr in &self.routes {
            let _ = ip(&["route", "del", cidr, "via", &NODE_IP.to_string()]);
        }
        // Deleting one end of the veth pair deletes both.
        let _ = ip(&["link", "del", &self.host_link]);
        if std::path::Path::new("/run/netns").join(&self.name).exists() {
            ip(&["netns", "del", &self.name])?;
        }
        Ok(())
    }
}

impl NodeNetwork {
    /// Makes the namespace, the veth pair and the routes into the namespace for the Pods and
    /// `service_cidr`. Namespaces left by an earlier run of this harness whose process is gone
    /// are removed first (the addresses above can be used once only).
    pub fn create(service_cidr: &str) -> Result<Self> {
        remove_stale()?;
        let pid = std::process::id();
        let name = format!("{PREFIX}-{pid}");
        // Interface names have at most 15 bytes.
        let host_link = format!("hrh{}", pid % 1_000_000);
        let node_link = format!("hrn{}", pid % 1_000_000);
        ip(&["netns", "add", &name])?;
        let mut network = Self {
            record: NetworkRecord {
                name,
                host_link,
                routes: Vec::new(),
            },
            released: false,
        };
        let n = network.record.name.clone();
        let host_link = network.record.host_link.clone();
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &node_link, "netns", &n,
        ])?;
        ip(&["addr", "add", &format!("{HOST_IP}/30"), "dev", &host_link])?;
        ip(&["link", "set", &host_link, "up"])?;
        ip(&["-n", &n, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &n,
            "addr",
            "add",
            &format!("{NODE_IP}/30"),
            "dev",
            &node_link,
        ])?;
        ip(&["-n", &n, "link", "set", &node_link, "up"])?;
        ip(&[
            "-n",
            &n,
            "route",
            "add",
            "default",
            "via",
            &HOST_IP.to_string(),
        ])?;
        for cidr in [POD_CIDR, service_cidr] {
            ip(&["route", "add", cidr, "via", &NODE_IP.to_string()])?;
            network.record.routes.push(cidr.to_owned());
        }
        // The node routes between this machine and its Pods.
        network.sysctl("net.ipv4.ip_forward", "1")?;
        Ok(network)
    }

    /// The namespace's name (`ip netns`).
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The namespace's file, for `nsenter --net=`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.record.name)
    }

    /// What was made, to remove or check later.
    pub fn record(&self) -> &NetworkRecord {
        &self.record
    }

    /// Removes the network now (not again when dropped).
    pub fn remove(&mut self) -> Result<()> {
        self.released = true;
        self.record.remove()
    }

    /// Leaves the network in place beyond this handle; the record removes it later.
    pub fn detach(mut self) -> NetworkRecord {
        self.released = true;
        self.record.clone()
    }

    /// `nsenter --net=<namespace> --`: the prefix that runs a program inside the namespace
    /// (only the network namespace changes: the mounts, cgroups and /sys stay this machine's).
    pub fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".to_owned(),
            format!("--net={}", self.path().display()),
            "--".to_owned(),
        ]
    }

    /// Sets a sysctl of the namespace's network stack.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let mut args = self.enter();
        args.extend([
            "sysctl".to_owned(),
            "-qw".to_owned(),
            format!("{key}={value}"),
        ]);
        run(&args)
    }
}

impl Drop for NodeNetwork {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Err(e) = self.record.remove() {
            tracing::warn!("removing the node's network: {e:#}");
        }
    }
}

/// Removes the namespaces (and their veth pairs and routes) of earlier runs of this harness
/// whose process is gone.
fn remove_stale() -> Result<()> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&format!("{PREFIX}-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        tracing::warn!("removing the node network {name} of an earlier run (pid {pid} is gone)");
        let stale = NetworkRecord {
            name,
            host_link: format!("hrh{}", pid % 1_000_000),
            routes: vec![POD_CIDR.to_owned()],
        };
        // Routes of the Service range go with the veth pair.
        stale.remove()?;
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    let mut all = vec!["ip".to_owned()];
    all.extend(args.iter().map(|s| s.to_string()));
    run(&all)
}

fn run(args: &[String]) -> Result<()> {
    let out = Command::new(&args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {} (the node needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN)",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
