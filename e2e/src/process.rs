//! Long-running child processes: the control plane, the operator, Envoy, Gloo.
//!
//! Each child writes stdout and stderr to `<log dir>/<name>.log`. A [`Process`] is
//! killed by its pid when dropped; [`Process::stop`] ends it gracefully (SIGTERM, then
//! SIGKILL after a grace period). A detached process ([`ProcessBuilder::detached`]) runs
//! in its own process group and can outlive the harness through [`Process::detach`].

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::command::{CommandSpec, command_spec_builder};
use tokio::process::Child;
use tokio::time::{Instant, sleep, timeout};

/// How long [`Process::stop`] and [`DetachedProcess::stop`] wait after SIGTERM.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Describes a child process to start; see [`ProcessBuilder::spawn`].
#[derive(Debug, Clone)]
pub struct ProcessBuilder {
    name: String,
    spec: CommandSpec,
    current_dir: Option<PathBuf>,
    log_dir: PathBuf,
    detached: bool,
}

impl ProcessBuilder {
    /// A process called `name` (used for its log file, `<log_dir>/<name>.log`, and in
    /// messages) running `program`.
    pub fn new(
        name: impl Into<String>,
        program: impl AsRef<OsStr>,
        log_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            name: name.into(),
            spec: CommandSpec::new(program),
            current_dir: None,
            log_dir: log_dir.into(),
            detached: false,
        }
    }

    command_spec_builder!();

    /// Runs the process in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Starts the process in a process group of its own, so that a Ctrl-C to the
    /// harness does not reach it and [`Process::detach`] can leave it running.
    pub fn detached(mut self, detached: bool) -> Self {
        self.detached = detached;
        self
    }

    /// Starts the process. Must be called within a Tokio runtime.
    pub fn spawn(self) -> Result<Process> {
        fs::create_dir_all(&self.log_dir)
            .with_context(|| format!("creating log directory {}", self.log_dir.display()))?;
        let log_path = self.log_dir.join(format!("{}.log", self.name));
        let command_line = self.command_line();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        writeln!(log, "$ {command_line}")?;
        let stderr = log.try_clone()?;

        let mut command = self.spec.command();
        command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .kill_on_drop(!self.detached);
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        if self.detached {
            command.process_group(0);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}: {command_line}", self.name))?;
        let pid = child
            .id()
            .with_context(|| format!("{} exited before its pid was read", self.name))?;
        let start_ticks = proc_stat(pid).map(|s| s.start_ticks).unwrap_or_default();
        tracing::debug!(name = %self.name, pid, "started {command_line}");
        Ok(Process {
            name: self.name,
            pid,
            start_ticks,
            log_path,
            command_line,
            child: Some(child),
        })
    }
}

/// A running child process; killed (SIGKILL, by pid) when dropped unless detached.
#[derive(Debug)]
pub struct Process {
    name: String,
    pid: u32,
    start_ticks: u64,
    log_path: PathBuf,
    command_line: String,
    child: Option<Child>,
}

impl Process {
    /// Shorthand for [`ProcessBuilder::new`].
    pub fn builder(
        name: impl Into<String>,
        program: impl AsRef<OsStr>,
        log_dir: impl Into<PathBuf>,
    ) -> ProcessBuilder {
        ProcessBuilder::new(name, program, log_dir)
    }

    /// The name given to the builder.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The file holding the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The command line it was started with.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Whether the process is still running (it has not exited, even if not yet reaped).
    pub fn is_running(&self) -> bool {
        self.child.is_some() && is_alive(self.pid, self.start_ticks)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    /// Fails with the tail of the log if the process is no longer running.
    pub fn ensure_running(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        bail!(
            "{} (pid {}) exited; last lines of {}:\n{}",
            self.name,
            self.pid,
            self.log_path.display(),
            self.log_tail(40)
        )
    }

    /// Sends `signal` to the process if it is still running.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        if self.is_running() {
            send(self.pid, signal)
                .with_context(|| format!("sending {signal} to {} ({})", self.name, self.pid))?;
        }
        Ok(())
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .with_context(|| format!("{} is detached", self.name))?;
        Ok(child.wait().await?)
    }

    /// Ends the process: SIGTERM, then SIGKILL if it is still running after `grace`.
    /// Returns its exit status (`None` if it was detached).
    pub async fn stop(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        send(self.pid, Signal::SIGTERM)
            .with_context(|| format!("sending SIGTERM to {} ({})", self.name, self.pid))?;
        let status = match timeout(grace, child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                tracing::warn!(name = %self.name, pid = self.pid, "still running {grace:?} after SIGTERM; killing");
                child.start_kill()?;
                child.wait().await?
            }
        };
        tracing::debug!(name = %self.name, pid = self.pid, %status, "stopped");
        Ok(Some(status))
    }

    /// Kills the process (SIGKILL) and waits up to `timeout` for it to exit, blocking the
    /// thread: for `Drop` implementations, which cannot await.
    pub fn kill_blocking(&mut self, timeout: Duration) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        let _ = child.start_kill();
        let deadline = std::time::Instant::now() + timeout;
        while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process has logged so far.
    pub fn logs(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|err| format!("(cannot read {}: {err})", self.log_path.display()))
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.logs(), lines)
    }

    /// Leaves the process running beyond this handle (and this program) and returns what
    /// is needed to find and stop it later. Only meaningful for detached processes.
    pub fn detach(mut self) -> DetachedProcess {
        // A detached child was spawned without kill_on_drop: dropping it leaves it running.
        drop(self.child.take());
        DetachedProcess {
            name: self.name.clone(),
            pid: self.pid,
            start_ticks: self.start_ticks,
            log_path: self.log_path.clone(),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && matches!(child.try_wait(), Ok(None))
        {
            tracing::debug!(name = %self.name, pid = self.pid, "killing on drop");
            // Kills by pid through the child handle; Tokio reaps it in the background.
            let _ = child.start_kill();
        }
    }
}

/// A process left running by [`Process::detach`], identified by pid and start time so
/// that a recycled pid is never signalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedProcess {
    /// The name it was started under.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// Its log file.
    pub log_path: PathBuf,
}

impl DetachedProcess {
    /// Whether this very process (not a later one with the same pid) is running.
    pub fn is_running(&self) -> bool {
        is_alive(self.pid, self.start_ticks)
    }

    /// Ends the process: SIGTERM, then SIGKILL if it is still running after `grace`.
    /// Does nothing if it is no longer running.
    pub async fn stop(&self, grace: Duration) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        send(self.pid, Signal::SIGTERM)
            .with_context(|| format!("sending SIGTERM to {} ({})", self.name, self.pid))?;
        let deadline = Instant::now() + grace;
        while self.is_running() {
            if Instant::now() >= deadline {
                tracing::warn!(name = %self.name, pid = self.pid, "still running {grace:?} after SIGTERM; killing");
                if self.is_running() {
                    send(self.pid, Signal::SIGKILL)?;
                }
                break;
            }
            sleep(Duration::from_millis(100)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.is_running() && Instant::now() < deadline {
            sleep(Duration::from_millis(50)).await;
        }
        if self.is_running() {
            bail!(
                "{} (pid {}) is still running after SIGKILL",
                self.name,
                self.pid
            );
        }
        Ok(())
    }
}

fn send(pid: u32, signal: Signal) -> Result<()> {
    let pid = i32::try_from(pid).context("pid out of range")?;
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// What `/proc/<pid>/stat` tells about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    state: char,
    start_ticks: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_proc_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `/proc/<pid>/stat`: fields after the parenthesised command name (which may
/// itself hold spaces and parentheses) start with field 3, the state; field 22 is the
/// start time.
fn parse_proc_stat(stat: &str) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// Whether `pid` runs (not a zombie) and, when `start_ticks` is known, started then.
fn is_alive(pid: u32, start_ticks: u64) -> bool {
    match proc_stat(pid) {
        Some(stat) => {
            !matches!(stat.state, 'Z' | 'X' | 'x')
                && (start_ticks == 0 || stat.start_ticks == start_ticks)
        }
        None => false,
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A process the harness can ask whether it still runs.
pub trait Running {
    fn check_running(&self) -> Result<()>;
}

impl Running for Process {
    fn check_running(&self) -> Result<()> {
        self.ensure_running()
    }
}

impl Running for DetachedProcess {
    fn check_running(&self) -> Result<()> {
        anyhow::ensure!(
            self.is_running(),
            "{} (pid {}) exited; see {}",
            self.name,
            self.pid,
            self.log_path.display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_odd_command_names() {
        let stat = "4242 (kube (api) server) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 12 0 987654 123 456";
        assert_eq!(
            parse_proc_stat(stat),
            Some(ProcStat {
                state: 'S',
                start_ticks: 987654
            })
        );
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id();
        let stat = proc_stat(me).unwrap();
        assert!(is_alive(me, stat.start_ticks));
        assert!(!is_alive(me, stat.start_ticks + 1));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[tokio::test]
    async fn stop_terminates_and_logs_are_kept() {
        let dir =
            std::env::temp_dir().join(format!("hostrouter-e2e-process-{}", std::process::id()));
        let mut process = ProcessBuilder::new("sleeper", "sh", &dir)
            .args(["-c", "echo started; exec sleep 60"])
            .spawn()
            .unwrap();
        assert!(process.is_running());
        let pid = process.pid();
        let status = process.stop(Duration::from_secs(5)).await.unwrap().unwrap();
        assert!(!status.success());
        assert!(!is_alive(pid, 0));
        assert!(process.logs().contains("started"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn drop_kills_the_process() {
        let dir = std::env::temp_dir().join(format!("hostrouter-e2e-drop-{}", std::process::id()));
        let process = ProcessBuilder::new("sleeper", "sleep", &dir)
            .arg("60")
            .spawn()
            .unwrap();
        let (pid, ticks) = (process.pid(), process.start_ticks);
        drop(process);
        crate::wait_until("killed sleeper to exit", Duration::from_secs(5), || async {
            Ok(if is_alive(pid, ticks) {
                crate::Progress::Pending("alive".into())
            } else {
                crate::Progress::Done(())
            })
        })
        .await
        .unwrap();
        fs::remove_dir_all(dir).unwrap();
    }
}
