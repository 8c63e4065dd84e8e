//! A TCP relay in front of the API server that a trial can freeze or cut. Frozen: connections
//! stay open but nothing passes either way, as when the API server hangs or the network drops
//! packets. Cut: every connection is closed and new ones are refused, as when the API server is
//! unreachable. The operator is pointed at it with a kubeconfig whose server is the relay
//! ([`kubeconfig_via`]); TLS passes through untouched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::net::LOOPBACK;

/// A relay on 127.0.0.1 to `target`; stops when dropped.
pub struct Relay {
    address: SocketAddr,
    frozen: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Result<Self> {
        Self::start_at(SocketAddr::from((LOOPBACK, 0)), target).await
    }

    /// A relay listening on `address` (port 0: any free port).
    pub async fn start_at(address: SocketAddr, target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(address)
            .await
            .context("binding the relay")?;
        let address = listener.local_addr()?;
        let frozen = Arc::new(AtomicBool::new(false));
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        let flag = frozen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if *cut_rx.borrow() {
                    // Refused: closed at once.
                    drop(client);
                    continue;
                }
                let flag = flag.clone();
                let cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        relay(client, server, flag, cut_rx).await;
                    }
                });
            }
        });
        Ok(Self {
            address,
            frozen,
            cut,
            task,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops (`true`) or resumes (`false`) all traffic, on open and new connections alike.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    /// Closes every connection and refuses new ones (`true`), or accepts them again (`false`).
    pub fn cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    frozen: Arc<AtomicBool>,
    mut cut: tokio::sync::watch::Receiver<bool>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pump(cr, sw, frozen.clone()));
    let down = tokio::spawn(pump(sr, cw, frozen));
    let (abort_up, abort_down) = (up.abort_handle(), down.abort_handle());
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.wait_for(|cut| *cut) => {
            // Dropping both halves of each side closes the connections.
            abort_up.abort();
            abort_down.abort();
        }
    }
}

/// Copies `from` to `to`, holding every chunk while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A copy of the kubeconfig at `path` whose server is `https://<address>`, written to `dir`.
pub fn kubeconfig_via(path: &Path, address: SocketAddr, dir: &Path) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let clusters = config["clusters"]
        .as_sequence_mut()
        .context("a kubeconfig without clusters")?;
    for cluster in clusters {
        cluster["cluster"]["server"] = serde_yaml::Value::String(format!("https://{address}"));
    }
    let out = dir.join(format!("kubeconfig-via-{}", address.port()));
    std::fs::write(&out, serde_yaml::to_string(&config)?)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_and_freezes() {
        let echo = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let relay = Relay::start(target).await.unwrap();
        let mut c = TcpStream::connect(relay.address()).await.unwrap();
        let mut b = [0u8; 4];
        c.write_all(b"ping").await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        relay.freeze(true);
        c.write_all(b"pong").await.unwrap();
        let stalled = tokio::time::timeout(Duration::from_millis(300), c.read_exact(&mut b)).await;
        assert!(stalled.is_err(), "nothing passes while frozen");
        relay.freeze(false);
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"pong");
        relay.cut(true);
        let closed = tokio::time::timeout(Duration::from_secs(2), c.read(&mut b)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "a cut closes open connections"
        );
        let mut refused = TcpStream::connect(relay.address()).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(2), refused.read(&mut b)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "and refuses new ones"
        );
        relay.cut(false);
        let mut again = TcpStream::connect(relay.address()).await.unwrap();
        again.write_all(b"back").await.unwrap();
        again.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"back");
    }
}
