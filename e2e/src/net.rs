//! Loopback ports for the servers the harness starts.

use std::net::{Ipv4Addr, TcpListener};

use anyhow::{Context, Result};

/// The address every server started by the harness binds to.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before it is returned, so another process could take it before
/// the server that should bind it does; the kernel hands out ephemeral ports in a cycle,
/// which makes that unlikely within one run.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((LOOPBACK, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
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
}
