//! Kubeconfig files for the local control plane, and clients built from them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

/// Name of the cluster and context in every kubeconfig the harness writes.
pub const CONTEXT: &str = "hostrouter-e2e";

/// What a token kubeconfig holds.
#[derive(Debug, Clone, Copy)]
pub struct TokenKubeconfig<'a> {
    /// `https://127.0.0.1:<port>`.
    pub server: &'a str,
    /// PEM of the certificate(s) that sign the API server's serving certificate.
    pub ca_pem: &'a [u8],
    /// Name of the user entry (informational).
    pub user: &'a str,
    /// Bearer token.
    pub token: &'a str,
}

impl TokenKubeconfig<'_> {
    /// The kubeconfig as YAML.
    pub fn render(&self) -> Result<String> {
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": CONTEXT,
                "cluster": {
                    "server": self.server,
                    "certificate-authority-data": STANDARD.encode(self.ca_pem),
                },
            }],
            "users": [{ "name": self.user, "user": { "token": self.token } }],
            "contexts": [{
                "name": CONTEXT,
                "context": { "cluster": CONTEXT, "user": self.user },
            }],
            "current-context": CONTEXT,
        });
        Ok(serde_yaml::to_string(&config)?)
    }

    /// Writes the kubeconfig to `path`, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<()> {
        let yaml = self.render()?;
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(yaml.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// A client for the cluster and user of the kubeconfig at `path`.
pub async fn client_from(path: &Path) -> Result<Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    Client::try_from(config).context("building a client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_loadable_kubeconfig() {
        let yaml = TokenKubeconfig {
            server: "https://127.0.0.1:6443",
            ca_pem: b"-----BEGIN CERTIFICATE-----\n",
            user: "admin",
            token: "abc",
        }
        .render()
        .unwrap();
        let parsed = Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some(CONTEXT));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert!(cluster.certificate_authority_data.is_some());
    }
}
