//! The working directory of one control plane: etcd data, certificates, kubeconfigs and
//! the logs of every process, which are copied to `target/e2e-logs/<run>` when kept.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::toolchain::target_dir;

/// Environment variable overriding where kept logs go (default `target/e2e-logs`).
pub const LOGS_DIR_VAR: &str = "E2E_LOGS_DIR";

/// A run directory; a temporary one is removed by [`RunDir::remove`].
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
    temporary: bool,
}

impl RunDir {
    /// A new directory under the system temp dir, named `<prefix>-<time>-<pid>`.
    pub fn temporary(prefix: &str) -> Result<Self> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let base = std::env::temp_dir();
        for attempt in 0u32.. {
            let path = base.join(format!("{prefix}-{secs}-{}-{attempt}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(Self {
                        path,
                        temporary: true,
                    });
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(err).with_context(|| format!("creating {}", path.display()));
                }
            }
        }
        unreachable!("an unbounded range always yields another attempt")
    }

    /// A persistent directory at `path` (created if missing), never removed by
    /// [`RunDir::remove`].
    pub fn persistent(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path,
            temporary: false,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<run dir>/<name>`, created.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.path.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Where process logs go: `<run dir>/logs`.
    pub fn logs_dir(&self) -> PathBuf {
        self.path.join("logs")
    }

    /// Copies the logs to `$E2E_LOGS_DIR/<run>` (default `target/e2e-logs/<run>`) and
    /// returns that directory.
    pub fn keep_logs(&self) -> Result<PathBuf> {
        let archive = std::env::var_os(LOGS_DIR_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("e2e-logs"));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_owned())
            .unwrap_or_else(|| "run".into());
        let dest = archive.join(name);
        copy_dir(&self.logs_dir(), &dest)
            .with_context(|| format!("copying logs to {}", dest.display()))?;
        Ok(dest)
    }

    /// Removes the directory if it is temporary.
    pub fn remove(&self) -> Result<()> {
        if self.temporary && self.path.exists() {
            fs::remove_dir_all(&self.path)
                .with_context(|| format!("removing {}", self.path.display()))?;
        }
        Ok(())
    }
}

/// Copies the tree `from` into `to` (files and directories only).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    if !from.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_dirs_are_distinct_and_removed() {
        let a = RunDir::temporary("hostrouter-e2e-unit").unwrap();
        let b = RunDir::temporary("hostrouter-e2e-unit").unwrap();
        assert_ne!(a.path(), b.path());
        a.remove().unwrap();
        b.remove().unwrap();
        assert!(!a.path().exists());
    }

    #[test]
    fn keep_logs_copies_the_tree() {
        let run = RunDir::temporary("hostrouter-e2e-unit").unwrap();
        let logs = run.subdir("logs/trials/x").unwrap();
        fs::write(logs.join("op.log"), "hello").unwrap();
        let kept = run.keep_logs().unwrap();
        assert_eq!(
            fs::read_to_string(kept.join("trials/x/op.log")).unwrap(),
            "hello"
        );
        fs::remove_dir_all(kept).unwrap();
        run.remove().unwrap();
    }
}
