//! What every child the harness runs is made of: a program, its arguments and environment.
//! [`crate::process::ProcessBuilder`] (long-running) and [`crate::cli::ToolCommand`] (run to
//! completion) both build on [`CommandSpec`] and share its builder methods.

use std::ffi::{OsStr, OsString};

use tokio::process::Command;

/// Program, arguments and environment changes (the rest of the environment is inherited).
#[derive(Debug, Clone)]
pub struct CommandSpec {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    removed_envs: Vec<OsString>,
}

impl CommandSpec {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            removed_envs: Vec::new(),
        }
    }

    pub fn push_arg(&mut self, arg: &OsStr) {
        self.args.push(arg.to_owned());
    }

    pub fn set_env(&mut self, key: &OsStr, value: &OsStr) {
        self.envs.push((key.to_owned(), value.to_owned()));
    }

    pub fn remove_env(&mut self, key: &OsStr) {
        self.removed_envs.push(key.to_owned());
    }

    /// The command line, for logs and messages.
    pub fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A command with the program, arguments and environment set; stdio and the rest are the
    /// caller's.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        for key in &self.removed_envs {
            command.env_remove(key);
        }
        command
    }
}

/// The builder methods of a type with a `spec: CommandSpec` field: `arg`, `args`, `env`,
/// `env_remove` and `command_line`.
macro_rules! command_spec_builder {
    () => {
        /// Appends one argument.
        pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
            self.spec.push_arg(arg.as_ref());
            self
        }

        /// Appends arguments.
        pub fn args<I, S>(mut self, args: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: AsRef<std::ffi::OsStr>,
        {
            for arg in args {
                self.spec.push_arg(arg.as_ref());
            }
            self
        }

        /// Sets an environment variable (the rest of the environment is inherited).
        pub fn env(
            mut self,
            key: impl AsRef<std::ffi::OsStr>,
            value: impl AsRef<std::ffi::OsStr>,
        ) -> Self {
            self.spec.set_env(key.as_ref(), value.as_ref());
            self
        }

        /// Does not pass this variable of the harness's environment on.
        pub fn env_remove(mut self, key: impl AsRef<std::ffi::OsStr>) -> Self {
            self.spec.remove_env(key.as_ref());
            self
        }

        /// The command line, for logs and messages.
        pub fn command_line(&self) -> String {
            self.spec.command_line()
        }
    };
}
pub(crate) use command_spec_builder;
