//! Loopback ports for the servers the harness starts.

use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::rng::Rng;

/// The address every server started by the harness binds to.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server the harness starts.
///
/// The port is released before it is returned, so something else could take it before the
/// server binds it. The kernel gives its ephemeral ports (`net.ipv4.ip_local_port_range`) to
/// every outgoing connection of every process on the machine, so a port chosen among them
/// (by binding port 0) can be taken by a client's connection meanwhile; this was seen to
/// fail a kube-controller-manager start in the suite. The ports handed out here come from
/// below that range, where the kernel picks none on its own, one after the other from a
/// point that differs per process, each checked by binding it.
pub fn free_port() -> Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `n` distinct free ports (see [`free_port`]).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let Some(range) = quiet_range() else {
        return ephemeral_ports(n);
    };
    let span = u32::from(range.end - range.start);
    let mut ports = Vec::with_capacity(n);
    // Never more tries than the range has ports.
    for _ in 0..span {
        if ports.len() == n {
            break;
        }
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = range.start + u16::try_from((start_offset(span) + step) % span)?;
        if TcpListener::bind((LOOPBACK, port)).is_ok() {
            ports.push(port);
        }
    }
    if ports.len() == n {
        Ok(ports)
    } else {
        ephemeral_ports(n)
    }
}

/// How many ports this process handed out so far.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The ports below the kernel's ephemeral range that the harness uses: the 10,000 below it
/// (below 30,000 at most, where Kubernetes' NodePorts begin), not under 1024; `None` when
/// there is no room.
fn quiet_range() -> Option<Range<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let low: u16 = text.split_whitespace().next()?.parse().ok()?;
    let end = low.min(30_000);
    let start = end.saturating_sub(10_000).max(1024);
    (end.saturating_sub(start) >= 1000).then_some(start..end)
}

/// Where this process starts in a range of `span` ports: apart from other processes that run
/// the harness at the same time.
fn start_offset(span: u32) -> u32 {
    static OFFSET: OnceLock<u32> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        (Rng::new(seed).next_u64() % u64::from(span.max(1))) as u32
    })
}

/// `n` distinct ports the kernel chose (binding port 0): the fallback.
fn ephemeral_ports(n: usize) -> Result<Vec<u16>> {
    // Hold every listener until all ports are chosen so that none repeats.
    let listeners = (0..n)
        .map(|_| TcpListener::bind((LOOPBACK, 0)).context("binding 127.0.0.1:0"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_ports(4).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        for port in ports {
            TcpListener::bind((LOOPBACK, port)).unwrap();
        }
    }

    #[test]
    fn ports_come_from_below_the_ephemeral_range() {
        let range = quiet_range().expect("this machine's ephemeral range starts high enough");
        for port in free_ports(3).unwrap() {
            assert!(range.contains(&port), "{port} not in {range:?}");
        }
        assert_ne!(free_port().unwrap(), free_port().unwrap());
    }
}
