//! What a stopped node may have left on this machine, looked for independently of how it was
//! stopped: a process of the node (its own, a containerd shim, a container), a mount under the
//! node's directory, its network namespace, veth or routes, a kube-proxy chain in this
//! machine's iptables.

use std::path::Path;

use anyhow::{Context, Result};

use super::NodeTools;
use super::network::{NODE_IP, NetworkRecord};

/// Everything of the node still present, one line each; empty when teardown was complete.
pub fn leftovers(dir: &Path, network: &NetworkRecord, tools: &NodeTools) -> Vec<String> {
    let mut found = processes_under(dir);
    found.extend(mounts_under(dir));
    if Path::new("/run/netns").join(&network.name).exists() {
        found.push(format!("network namespace {}", network.name));
    }
    if Path::new("/sys/class/net")
        .join(&network.host_link)
        .exists()
    {
        found.push(format!("interface {}", network.host_link));
    }
    found.extend(routes_via_node(network));
    found.extend(kube_proxy_chains(tools));
    found
}

/// Kills (SIGKILL) every process [`leftovers`] would name: the node's own, its containerd's
/// shims and their containers. For when containerd cannot be asked to (a trial dropped
/// without stopping its node).
pub fn kill_processes_under(dir: &Path) {
    for pid in process_ids_under(dir) {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Processes whose command line names the node's directory (containerd, kubelet, kube-proxy,
/// the shims), and their descendants (the containers, whose root is their image's).
fn processes_under(dir: &Path) -> Vec<String> {
    let table = process_table();
    process_ids_in(dir, &table)
        .into_iter()
        .map(|pid| {
            let cmdline = table.get(&pid).map(|(_, c)| c.as_str()).unwrap_or_default();
            format!("process {pid}: {cmdline}")
        })
        .collect()
}

fn process_ids_under(dir: &Path) -> Vec<u32> {
    process_ids_in(dir, &process_table())
}

/// pid → (parent, command line) of every process. A process may end while it is read: what
/// cannot be read is not there.
fn process_table() -> std::collections::BTreeMap<u32, (u32, String)> {
    let mut table = std::collections::BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Some(parent) = parent_pid(&entry.path()) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        table.insert(pid, (parent, cmdline.trim().to_owned()));
    }
    table
}

/// The pids in `table` whose command line names `dir`, or whose ancestor's does.
fn process_ids_in(dir: &Path, table: &std::collections::BTreeMap<u32, (u32, String)>) -> Vec<u32> {
    let dir_text = dir.to_string_lossy();
    let names_dir = |pid: u32| {
        table
            .get(&pid)
            .is_some_and(|(_, cmdline)| cmdline.contains(dir_text.as_ref()))
    };
    table
        .keys()
        .copied()
        .filter(|pid| {
            // Walk up to the first process; a cycle cannot happen, the bound is for safety.
            let mut at = *pid;
            for _ in 0..64 {
                if names_dir(at) {
                    return true;
                }
                match table.get(&at) {
                    Some((parent, _)) if *parent != 0 => at = *parent,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// The parent from `/proc/<pid>/stat` (the field after the parenthesised command name, which
/// may itself hold spaces and parentheses).
fn parent_pid(proc_dir: &Path) -> Option<u32> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    match mount_points_under(dir) {
        Ok(points) => points.into_iter().map(|p| format!("mount {p}")).collect(),
        Err(e) => vec![format!("{e:#}")],
    }
}

/// The mount points under `dir`, deepest first.
pub(super) fn mount_points_under(dir: &Path) -> Result<Vec<String>> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(String::from)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    Ok(points)
}

fn routes_via_node(network: &NetworkRecord) -> Vec<String> {
    let out = match std::process::Command::new("ip")
        .args(["-4", "route", "show"])
        .output()
    {
        Ok(out) if out.status.success() => out,
        Ok(out) => return vec![format!("`ip route show` failed: {}", out.status)],
        Err(e) => return vec![format!("`ip route show`: {e}")],
    };
    let via = format!("via {NODE_IP} ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.contains(&via)
                && network
                    .routes
                    .iter()
                    .any(|cidr| l.starts_with(cidr.as_str()))
        })
        .map(|l| format!("route {l}"))
        .collect()
}

/// kube-proxy runs inside the node's namespace, so its rules go with it; this checks that none
/// reached this machine's own tables.
fn kube_proxy_chains(tools: &NodeTools) -> Vec<String> {
    let lib = tools.debs_lib();
    let out = match std::process::Command::new(tools.debs_root.join("usr/sbin/xtables-nft-multi"))
        .arg("iptables-save")
        .env("LD_LIBRARY_PATH", &lib)
        .env("XTABLES_LIBDIR", lib.join("xtables"))
        .output()
    {
        Ok(out) if out.status.success() => out,
        Ok(out) => return vec![format!("iptables-save failed: {}", out.status)],
        Err(e) => return vec![format!("iptables-save: {e}")],
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(":KUBE-"))
        .map(|l| format!("iptables chain {l}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn a_process_naming_the_directory_and_its_children_are_found() {
        let dir = std::env::temp_dir().join(format!("teardown-test-{}", std::process::id()));
        // In a process group of its own, so that the shell and its child end together.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .arg(&dir)
            .process_group(0)
            .spawn()
            .expect("spawning sh");
        // Until the shell has started its child.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = processes_under(&dir);
        while found.len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            found = processes_under(&dir);
        }
        let group = nix::unistd::Pid::from_raw(shell.id() as i32);
        nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).expect("killing sh");
        shell.wait().expect("reaping sh");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|p| p.contains("sleep 30 &")), "{found:?}");
        assert!(found.iter().any(|p| p.ends_with(": sleep 30")), "{found:?}");
        let other = std::env::temp_dir().join("teardown-test-elsewhere");
        assert!(processes_under(&other).is_empty());
    }
}
