//! Backends: a tiny HTTP server per Service (the petstore answers `GET /api/pets`), and
//! selectorless Services with core/v1 Endpoints pointing at them (Gloo Edge reads Endpoints,
//! not EndpointSlices).

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::gloo::apply_params;

/// The response header in which backends echo the path they received.
pub const RECEIVED_PATH_HEADER: &str = "x-received-path";

/// What the petstore answers on `GET /api/pets`.
pub const PETS_JSON: &str =
    r#"[{"id":1,"name":"Dog","status":"available"},{"id":2,"name":"Cat","status":"pending"}]"#;

/// A tiny HTTP/1.1 server on a tokio task: the petstore answers `GET /api/pets` with
/// [`PETS_JSON`]; every other request (and every request to another backend) gets the
/// backend's name. Every answer names the backend in `x-backend` and echoes the request's
/// path (query included) in [`RECEIVED_PATH_HEADER`]. Stops when dropped.
pub struct Backend {
    name: String,
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Binds `ip:port` (0: any free port) and serves.
    pub async fn start(name: &str, ip: IpAddr, port: u16) -> Result<Self> {
        let listener = TcpListener::bind((ip, port))
            .await
            .with_context(|| format!("binding backend {name} to {ip}:{port}"))?;
        let address = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, name.to_owned()));
        Ok(Self {
            name: name.to_owned(),
            address,
            task,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `name`'s answers on `listener` forever.
pub async fn serve(listener: TcpListener, name: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &name).await {
                tracing::debug!("backend {name}: {e:#}");
            }
        });
    }
}

/// The body and content type `name` answers `path` with.
pub fn answer(name: &str, path: &str) -> (&'static str, String) {
    if name == "petstore" && path.split('?').next() == Some("/api/pets") {
        ("application/json", PETS_JSON.to_owned())
    } else {
        ("text/plain", name.to_owned())
    }
}

async fn connection(mut stream: TcpStream, name: &str) -> Result<()> {
    let mut buf = Vec::new();
    loop {
        // Read one request head (and skip its body, if it declares one).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.lines();
        let path = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_owned();
        let mut body_len = 0usize;
        let mut close = false;
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => body_len = v.trim().parse().unwrap_or(0),
                "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        while buf.len() < end + body_len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..end + body_len);

        let (content_type, body) = answer(name, &path);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-backend: {name}\r\n{RECEIVED_PATH_HEADER}: {path}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" },
        );
        stream.write_all(response.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

/// A selectorless Service `<namespace>/<name>` with one TCP port `http`/`port`, and core/v1
/// Endpoints pointing at `backend` (Gloo Edge reads Endpoints, not EndpointSlices).
pub async fn apply_backend_service(
    client: &Client,
    namespace: &str,
    name: &str,
    port: i32,
    backend: SocketAddr,
) -> Result<()> {
    apply_service(
        client,
        namespace,
        name,
        &[("http", port, backend)],
        &Value::Null,
    )
    .await
}

/// A selectorless Service `<namespace>/<name>` with one TCP port per `(name, port, backend)`,
/// the given annotations (a JSON object, or null), and core/v1 Endpoints sending each port to
/// its backend.
pub async fn apply_service(
    client: &Client,
    namespace: &str,
    name: &str,
    ports: &[(&str, i32, SocketAddr)],
    annotations: &Value,
) -> Result<()> {
    let service_ports: Vec<Value> = ports
        .iter()
        .map(|(port_name, port, _)| json!({"name": port_name, "port": port, "protocol": "TCP"}))
        .collect();
    let mut metadata = json!({"name": name, "namespace": namespace});
    if annotations.is_object() {
        metadata["annotations"] = annotations.clone();
    }
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"ports": service_ports},
    }))?;
    Api::<Service>::namespaced(client.clone(), namespace)
        .patch(name, &apply_params(), &Patch::Apply(&service))
        .await
        .with_context(|| format!("applying Service {namespace}/{name}"))?;
    let endpoints: Vec<(&str, SocketAddr)> = ports
        .iter()
        .map(|(port_name, _, backend)| (*port_name, *backend))
        .collect();
    apply_endpoints(client, namespace, name, &endpoints).await
}

/// core/v1 Endpoints `<namespace>/<name>`: one address per named port.
pub async fn apply_endpoints(
    client: &Client,
    namespace: &str,
    name: &str,
    ports: &[(&str, SocketAddr)],
) -> Result<()> {
    let subsets: Vec<Value> = ports
        .iter()
        .map(|(port_name, addr)| {
            json!({
                "addresses": [{"ip": addr.ip().to_string()}],
                "ports": [{"name": port_name, "port": addr.port(), "protocol": "TCP"}],
            })
        })
        .collect();
    let endpoints: Endpoints = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace},
        "subsets": subsets,
    }))?;
    Api::<Endpoints>::namespaced(client.clone(), namespace)
        .patch(name, &apply_params(), &Patch::Apply(&endpoints))
        .await
        .with_context(|| format!("applying Endpoints {namespace}/{name}"))?;
    Ok(())
}

/// Deletes the Service and the Endpoints `<namespace>/<name>`.
pub async fn delete_backend_service(client: &Client, namespace: &str, name: &str) -> Result<()> {
    Api::<Service>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
        .with_context(|| format!("deleting Service {namespace}/{name}"))?;
    match Api::<Endpoints>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting Endpoints {namespace}/{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http;
    use crate::net::LOOPBACK;

    #[tokio::test]
    async fn backends_answer_pets_and_their_name() {
        let pets = Backend::start("petstore", IpAddr::V4(LOOPBACK), 0)
            .await
            .unwrap();
        let other = Backend::start("orders", IpAddr::V4(LOOPBACK), 0)
            .await
            .unwrap();
        let r = http::get(&pets.address().to_string(), "x", "/api/pets")
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, PETS_JSON));
        let r = http::get(&other.address().to_string(), "x", "/api/pets")
            .await
            .unwrap();
        assert_eq!(r.body, "orders");
    }
}
