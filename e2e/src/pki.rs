//! Credentials: the local control plane's service-account signing key pair and static admin
//! token, and a test certificate authority for the trials' TLS.

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

/// A certificate authority made for one trial (EC P-256, with the `openssl` command): its
/// certificate is what `curl --cacert` trusts.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate (PEM).
    pub cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

/// A server certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name`, its files in `dir` (created).
    pub async fn new(dir: &Path, name: &str) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = Self {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            dir: dir.to_owned(),
        };
        let subject = format!("/CN={name} (hostrouter e2e test CA)");
        openssl(&[
            "req".as_ref(),
            "-x509".as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:P-256".as_ref(),
            "-nodes".as_ref(),
            "-days".as_ref(),
            "2".as_ref(),
            "-subj".as_ref(),
            subject.as_ref(),
            "-addext".as_ref(),
            "basicConstraints=critical,CA:TRUE".as_ref(),
            "-addext".as_ref(),
            "keyUsage=critical,keyCertSign,cRLSign".as_ref(),
            "-keyout".as_ref(),
            ca.key.as_os_str(),
            "-out".as_ref(),
            ca.cert.as_os_str(),
        ])
        .await?;
        Ok(ca)
    }

    /// A server certificate for `dns_names` (the first is also its common name), signed by
    /// this CA; `stem` names its files.
    pub async fn issue(&self, stem: &str, dns_names: &[&str]) -> Result<Issued> {
        let first = dns_names
            .first()
            .context("a certificate needs a DNS name")?;
        let key = self.dir.join(format!("{stem}.key"));
        let csr = self.dir.join(format!("{stem}.csr"));
        let cert = self.dir.join(format!("{stem}.crt"));
        let ext = self.dir.join(format!("{stem}.ext"));
        let sans: Vec<String> = dns_names.iter().map(|n| format!("DNS:{n}")).collect();
        fs::write(
            &ext,
            format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
                sans.join(",")
            ),
        )?;
        let subject = format!("/CN={first}");
        openssl(&[
            "req".as_ref(),
            "-new".as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:P-256".as_ref(),
            "-nodes".as_ref(),
            "-subj".as_ref(),
            subject.as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            csr.as_os_str(),
        ])
        .await?;
        openssl(&[
            "x509".as_ref(),
            "-req".as_ref(),
            "-in".as_ref(),
            csr.as_os_str(),
            "-CA".as_ref(),
            self.cert.as_os_str(),
            "-CAkey".as_ref(),
            self.key.as_os_str(),
            "-CAcreateserial".as_ref(),
            "-days".as_ref(),
            "2".as_ref(),
            "-extfile".as_ref(),
            ext.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
        ])
        .await?;
        let read =
            |p: &Path| fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        Ok(Issued {
            cert_pem: read(&cert)?,
            key_pem: read(&key)?,
        })
    }
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
