//! Cluster DNS for the lab's node, the part Pods need: `A` records for
//! `<service>.<namespace>.svc.cluster.local` (with or without the final dot) answered from the
//! API server's Services. Nothing else is answered and nothing is forwarded: every other name
//! is NXDOMAIN, and queries of other types get an empty answer. The kubelet points Pods at it
//! (`clusterDNS`); Envoy Gateway's Envoy Pods find its xDS server this way.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::Api;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// Seconds a record may be cached.
const TTL: u32 = 5;

/// The running server; stops when dropped.
pub struct ClusterDns {
    task: JoinHandle<()>,
    pub address: SocketAddr,
}

impl Drop for ClusterDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ClusterDns {
    /// Serves on `address` (UDP), looking Services up through `client`.
    pub async fn start(address: SocketAddr, client: Client) -> Result<Self> {
        let socket = Arc::new(
            UdpSocket::bind(address)
                .await
                .with_context(|| format!("binding the lab's DNS server to {address}"))?,
        );
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let Some(query) = Query::parse(&buf[..len]) else {
                    continue;
                };
                let ip = match query.service() {
                    Some((ns, name)) if query.qtype == TYPE_A => {
                        cluster_ip(&client, ns, name).await
                    }
                    _ => None,
                };
                // A Service's name asked for another type exists, without records of it.
                let exists = query.service().is_some() && query.qtype != TYPE_A;
                let reply = query.answer(ip, exists);
                let _ = socket.send_to(&reply, peer).await;
            }
        });
        Ok(Self { task, address })
    }
}

async fn cluster_ip(client: &Client, ns: &str, name: &str) -> Option<Ipv4Addr> {
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??;
    svc.spec?.cluster_ip?.parse().ok()
}

const TYPE_A: u16 = 1;

/// The one question of a query, and what the answer repeats of it.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    id: u16,
    recursion_desired: bool,
    /// Lowercase, labels joined by '.', without the final dot.
    name: String,
    qtype: u16,
    /// The question section as received.
    question: Vec<u8>,
}

impl Query {
    fn parse(msg: &[u8]) -> Option<Self> {
        let id = u16::from_be_bytes([*msg.first()?, *msg.get(1)?]);
        let flags = msg.get(2)?;
        let qdcount = u16::from_be_bytes([*msg.get(4)?, *msg.get(5)?]);
        // A query (QR 0), standard opcode, one question.
        if flags & 0x80 != 0 || (flags >> 3) & 0x0f != 0 || qdcount != 1 {
            return None;
        }
        let mut at = 12;
        let mut labels = Vec::new();
        loop {
            let len = usize::from(*msg.get(at)?);
            at += 1;
            if len == 0 {
                break;
            }
            // No compression in a question.
            if len > 63 {
                return None;
            }
            labels.push(
                std::str::from_utf8(msg.get(at..at + len)?)
                    .ok()?
                    .to_ascii_lowercase(),
            );
            at += len;
        }
        let qtype = u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]);
        let question = msg.get(12..at + 4)?.to_vec();
        Some(Self {
            id,
            recursion_desired: flags & 0x01 != 0,
            name: labels.join("."),
            qtype,
            question,
        })
    }

    /// `(namespace, service)` when the name is a Service's.
    fn service(&self) -> Option<(&str, &str)> {
        let rest = self
            .name
            .strip_suffix(CLUSTER_DOMAIN)?
            .strip_suffix(".svc.")?;
        let (name, ns) = rest.split_once('.')?;
        (!name.is_empty() && !ns.is_empty() && !ns.contains('.')).then_some((ns, name))
    }

    /// The reply: `ip` as the one `A` record; without it, an empty answer for a name that
    /// exists (`known`), else NXDOMAIN.
    fn answer(&self, ip: Option<Ipv4Addr>, known: bool) -> Vec<u8> {
        let rcode = if ip.is_some() || known { 0 } else { 3 };
        let mut out = Vec::with_capacity(64);
        out.extend(self.id.to_be_bytes());
        // QR, AA, and RD as asked.
        out.push(0x84 | u8::from(self.recursion_desired));
        out.push(rcode);
        out.extend(1u16.to_be_bytes());
        out.extend(u16::from(ip.is_some()).to_be_bytes());
        out.extend([0, 0, 0, 0]);
        out.extend(&self.question);
        if let Some(ip) = ip {
            // The name by a pointer to the question (offset 12).
            out.extend([0xc0, 0x0c]);
            out.extend(TYPE_A.to_be_bytes());
            out.extend(1u16.to_be_bytes());
            out.extend(TTL.to_be_bytes());
            out.extend(4u16.to_be_bytes());
            out.extend(ip.octets());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend(id.to_be_bytes());
        m.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.trim_end_matches('.').split('.') {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.push(0);
        m.extend(qtype.to_be_bytes());
        m.extend(1u16.to_be_bytes());
        m
    }

    #[test]
    fn a_service_name_with_or_without_the_final_dot_is_a_service() {
        for name in [
            "envoy-gateway.envoy-gateway-system.svc.cluster.local.",
            "Envoy-Gateway.envoy-gateway-system.svc.cluster.local",
        ] {
            let q = Query::parse(&query(7, name, TYPE_A)).unwrap();
            assert_eq!(q.service(), Some(("envoy-gateway-system", "envoy-gateway")));
        }
        let other = Query::parse(&query(7, "example.com", TYPE_A)).unwrap();
        assert_eq!(other.service(), None);
        let pod = Query::parse(&query(7, "a.b.c.svc.cluster.local", TYPE_A)).unwrap();
        assert_eq!(pod.service(), None);
    }

    #[test]
    fn the_answer_carries_the_record_and_repeats_the_question() {
        let msg = query(0xbeef, "web.apps.svc.cluster.local", TYPE_A);
        let q = Query::parse(&msg).unwrap();
        let reply = q.answer(Some(Ipv4Addr::new(10, 96, 0, 7)), true);
        assert_eq!(&reply[..2], &[0xbe, 0xef]);
        assert_eq!(reply[2] & 0x80, 0x80, "a response");
        assert_eq!(reply[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&reply[6..8], &[0, 1], "one answer");
        assert_eq!(&reply[12..msg.len()], &msg[12..]);
        assert_eq!(&reply[reply.len() - 4..], &[10, 96, 0, 7]);
        let nx = Query::parse(&query(1, "example.com", TYPE_A))
            .unwrap()
            .answer(None, false);
        assert_eq!(nx[3] & 0x0f, 3, "NXDOMAIN");
        let aaaa = Query::parse(&query(1, "web.apps.svc.cluster.local", 28))
            .unwrap()
            .answer(None, true);
        assert_eq!(
            (aaaa[3] & 0x0f, &aaaa[6..8]),
            (0, &[0u8, 0][..]),
            "empty answer"
        );
    }
}
