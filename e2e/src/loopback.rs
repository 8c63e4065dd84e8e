//! Addresses for backends. kube-apiserver refuses loopback addresses (127.0.0.0/8) in
//! Endpoints, and Gloo Edge routes `kube` destinations only through Endpoints, so backends bind
//! a documentation address (198.51.100.0/24, RFC 5737) added to `lo` for the run: reachable
//! from this machine only.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// Addresses for backends come from TEST-NET-2 (198.51.100.0/24, RFC 5737): never routed, and
/// not the machine's own eth0 address. `.10`-`.199` only: the lab's node uses `.224/27`
/// (see [`crate::node::network`]).
pub const BACKEND_NET: [u8; 3] = [198, 51, 100];

/// A TEST-NET-2 address unlikely to be in use by another run: picked from this process's pid
/// and a counter.
pub fn unique_backend_ip() -> Ipv4Addr {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let host = 10 + (std::process::id().wrapping_mul(7).wrapping_add(n)) % 190;
    let [a, b, c] = BACKEND_NET;
    Ipv4Addr::new(a, b, c, u8::try_from(host).unwrap_or(10))
}

/// An address added to `lo` (as `<ip>/32`) and removed again when dropped — unless it was
/// already there, in which case it is used and left alone.
///
/// kube-apiserver refuses loopback addresses (127.0.0.0/8) in Endpoints, and Gloo Edge routes
/// `kube` destinations only through Endpoints; an extra address on `lo` keeps backends
/// reachable from this machine only.
#[derive(Debug)]
pub struct LoopbackAlias {
    ip: Ipv4Addr,
    owned: bool,
}

impl LoopbackAlias {
    /// `ip addr add <ip>/32 dev lo` (needs root or CAP_NET_ADMIN).
    pub fn add(ip: Ipv4Addr) -> Result<Self> {
        let owned = add_loopback_address(ip)?;
        Ok(Self { ip, owned })
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Leaves the address on `lo`; returns it and whether this handle had added it.
    pub fn keep(mut self) -> (Ipv4Addr, bool) {
        let owned = std::mem::replace(&mut self.owned, false);
        (self.ip, owned)
    }
}

impl Drop for LoopbackAlias {
    fn drop(&mut self) {
        if self.owned
            && let Err(e) = remove_loopback_address(self.ip)
        {
            tracing::warn!("{e:#}");
        }
    }
}

/// Adds `<ip>/32` to `lo`. Returns false if it was already there.
pub fn add_loopback_address(ip: Ipv4Addr) -> Result<bool> {
    let out = std::process::Command::new("ip")
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .context("running `ip addr add` (iproute2 is needed to give backends an address)")?;
    if out.status.success() {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("File exists") {
        tracing::warn!("{ip} is already on lo: using it, and leaving it there");
        return Ok(false);
    }
    bail!(
        "`ip addr add {ip}/32 dev lo` failed ({}): {}. Backends need a non-loopback address \
         because kube-apiserver refuses 127.0.0.0/8 in Endpoints; run as root (or with \
         CAP_NET_ADMIN)",
        out.status,
        stderr.trim()
    )
}

/// Removes `<ip>/32` from `lo` (no error if it is not there).
pub fn remove_loopback_address(ip: Ipv4Addr) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(["addr", "del", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .context("running `ip addr del`")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || stderr.contains("Cannot assign requested address") {
        Ok(())
    } else {
        bail!("`ip addr del {ip}/32 dev lo` failed: {}", stderr.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_addresses_are_test_net_2() {
        let ip = unique_backend_ip();
        assert_eq!(ip.octets()[..3], BACKEND_NET);
        assert!((10..200).contains(&ip.octets()[3]));
    }
}
