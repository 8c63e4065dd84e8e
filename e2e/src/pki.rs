//! Credentials of the local control plane: the service-account signing key pair and the
//! static admin token.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

/// User name of the admin token (member of `system:masters`).
pub const ADMIN_USER: &str = "hostrouter-e2e-admin";

/// The service-account token signing key pair, as PEM files.
#[derive(Debug, Clone)]
pub struct ServiceAccountKeys {
    /// RSA private key (PKCS#8 PEM).
    pub private_key: PathBuf,
    /// Its public key (SPKI PEM).
    pub public_key: PathBuf,
}

/// Generates an RSA key pair in `dir` with the `openssl` command.
pub async fn generate_service_account_keys(dir: &Path) -> Result<ServiceAccountKeys> {
    let keys = ServiceAccountKeys {
        private_key: dir.join("sa.key"),
        public_key: dir.join("sa.pub"),
    };
    openssl(&[
        "genpkey".as_ref(),
        "-algorithm".as_ref(),
        "RSA".as_ref(),
        "-pkeyopt".as_ref(),
        "rsa_keygen_bits:2048".as_ref(),
        "-out".as_ref(),
        keys.private_key.as_os_str(),
    ])
    .await?;
    openssl(&[
        "pkey".as_ref(),
        "-in".as_ref(),
        keys.private_key.as_os_str(),
        "-pubout".as_ref(),
        "-out".as_ref(),
        keys.public_key.as_os_str(),
    ])
    .await?;
    Ok(keys)
}

async fn openssl(args: &[&std::ffi::OsStr]) -> Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .await
        .context("running openssl (is it installed?)")?;
    if !output.status.success() {
        bail!(
            "openssl {:?} failed ({}): {}",
            args,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A random token: 32 hex digits from the kernel's random source.
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    let mut urandom = fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    std::io::Read::read_exact(&mut urandom, &mut bytes).context("reading /dev/urandom")?;
    Ok(bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Writes kube-apiserver's `--token-auth-file` granting `token` to [`ADMIN_USER`] in
/// `system:masters`.
pub fn write_token_file(path: &Path, token: &str) -> Result<()> {
    fs::write(
        path,
        format!("{token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n"),
    )
    .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hex_and_differ() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
