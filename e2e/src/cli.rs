//! Running command-line tools (kubectl, helm, envoy --version, ...) to completion.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;

use crate::command::{CommandSpec, command_spec_builder};

/// Default limit on how long a tool may run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// A command to run to completion, capturing its output.
#[derive(Debug, Clone)]
pub struct ToolCommand {
    spec: CommandSpec,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl ToolCommand {
    /// `program` with no arguments.
    pub fn new(program: impl AsRef<Path>) -> Self {
        Self {
            spec: CommandSpec::new(program.as_ref()),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    command_spec_builder!();

    /// Feeds `input` to the command's stdin.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Overrides [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the command and returns its output, whatever its exit status.
    pub async fn output(&self) -> Result<Output> {
        let line = self.command_line();
        let mut child = self
            .spec
            .command()
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting `{line}`"))?;
        if let (Some(input), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            pipe.write_all(input)
                .await
                .with_context(|| format!("writing stdin of `{line}`"))?;
        }
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(output) => output.with_context(|| format!("running `{line}`")),
            Err(_) => bail!("`{line}` did not finish within {:?}", self.timeout),
        }
    }

    /// Runs the command and returns whether it succeeded, with its stdout and stderr
    /// together (for tools that report on either).
    pub async fn status_and_text(&self) -> Result<(bool, String)> {
        let output = self.output().await?;
        Ok((
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ))
    }

    /// Runs the command and returns its stdout; a non-zero exit is an error that shows
    /// stderr and stdout.
    pub async fn run(&self) -> Result<String> {
        let output = self.output().await?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "`{}` failed ({}):\n{}{}",
                self.command_line(),
                output.status,
                String::from_utf8_lossy(&output.stderr),
                stdout
            );
        }
        Ok(stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_stdout_and_feeds_stdin() {
        let out = ToolCommand::new("sh")
            .args(["-c", "cat; echo \" $GREETING\""])
            .env("GREETING", "world")
            .stdin("hello")
            .run()
            .await
            .unwrap();
        assert_eq!(out, "hello world\n");
    }

    #[tokio::test]
    async fn failure_shows_stderr() {
        let err = ToolCommand::new("sh")
            .args(["-c", "echo broken >&2; exit 3"])
            .run()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
    }

    #[tokio::test]
    async fn timeout_is_enforced() {
        let err = ToolCommand::new("sleep")
            .arg("10")
            .timeout(Duration::from_millis(200))
            .run()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not finish"), "{err}");
    }
}
