//! Requests with the real `curl`: name resolution pinned with `--resolve`, TLS verified against a
//! chosen CA with `--cacert`, nothing followed, every header kept.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use tokio::process::Command;

/// One response as curl saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request to make with curl.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The hostname in the URL: curl's SNI, and the Host header unless `host_header` is set.
    pub host: &'a str,
    /// The port in the URL (curl puts it in the Host header).
    pub port: u16,
    pub path: &'a str,
    /// Where `host` resolves to.
    pub address: &'a str,
    /// A Host header instead of curl's `<host>:<port>`.
    pub host_header: Option<&'a str>,
    /// The CA bundle to verify the server with (https).
    pub ca: Option<&'a Path>,
}

impl Request<'_> {
    pub fn url(&self) -> String {
        format!("{}://{}:{}{}", self.scheme, self.host, self.port, self.path)
    }
}

/// Sends `request` with curl. A transport or TLS failure is an error that carries curl's
/// message (e.g. "SSL certificate problem: unable to get local issuer certificate").
pub async fn send(request: &Request<'_>) -> Result<Reply> {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--include", "--max-time", "10"])
        .arg("--resolve")
        .arg(format!(
            "{}:{}:{}",
            request.host, request.port, request.address
        ));
    if let Some(h) = request.host_header {
        cmd.arg("--header").arg(format!("Host: {h}"));
    }
    if let Some(ca) = request.ca {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.arg(request.url());
    let out = cmd
        .output()
        .await
        .context("running curl (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "curl {} failed ({}): {}",
            request.url(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&String::from_utf8_lossy(&out.stdout)).with_context(|| format!("curl {}", request.url()))
}

fn parse(text: &str) -> Result<Reply> {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {text:?}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_headers_and_body() {
        let r = parse("HTTP/1.1 301 Moved Permanently\r\nLocation: https://a:8443/x?y=1\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(r.status, 301);
        assert_eq!(r.header("location"), Some("https://a:8443/x?y=1"));
        assert_eq!(r.body, "");
    }
}
