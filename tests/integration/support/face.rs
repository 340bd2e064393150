//! One user of the sendmail face and the queue: a [`TestEnv`] with its own
//! configuration file (`outbox.toml`) and queue (`queue/`), and the commands
//! callers run: `outbox sendmail ...`, `sendmail ...` through a symlink,
//! `outbox queue ...`, and the compose face.

use super::{Cmd, Output, TestEnv, free_port};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// The `timeout` written into the configuration (seconds).
pub const TIMEOUT: u64 = 30;

/// A user of outbox, with a configuration and a queue of their own.
#[derive(Clone, Debug)]
pub struct Face {
    pub env: TestEnv,
    /// Leave `OUTBOX_LOG` unset, so the configuration's `log` (or the face's
    /// default) decides where the log goes; see [`Face::log_from_config`].
    log_from_config: bool,
}

impl Face {
    /// `config` is what follows `server = ...` and `timeout = ...` in `[default]`
    /// (more keys, then other tables).
    pub fn new(server: &str, config: &str) -> Face {
        let face = Face {
            env: TestEnv::new(),
            log_from_config: false,
        };
        face.configure(server, config);
        face
    }

    /// Commands run without the harness's `OUTBOX_LOG` (which sends the log to
    /// [`TestEnv::log_file`]), for tests of `log` and the faces' defaults.
    pub fn log_from_config(mut self) -> Face {
        self.log_from_config = true;
        self
    }

    /// (Re)writes the configuration file.
    pub fn configure(&self, server: &str, config: &str) {
        self.env.configure(server, TIMEOUT, config);
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.env.root().join("queue")
    }

    /// `program` in this environment, with the configuration and queue set.
    pub fn program(&self, program: impl AsRef<Path>) -> Cmd {
        let mut cmd = self.env.configured_command(program);
        if self.log_from_config {
            cmd.env_remove("OUTBOX_LOG");
        }
        cmd
    }

    /// The outbox binary, configured.
    pub fn outbox(&self) -> Cmd {
        self.program(env!("CARGO_BIN_EXE_outbox"))
    }

    /// A symlink `bin/<name>` to the outbox binary, made on first use.
    pub fn link(&self, name: &str) -> PathBuf {
        let dir = self.env.root().join("bin");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join(name);
        if fs::symlink_metadata(&path).is_err() {
            symlink(env!("CARGO_BIN_EXE_outbox"), &path)
                .unwrap_or_else(|e| panic!("cannot link {}: {e}", path.display()));
        }
        path
    }

    /// `outbox sendmail ARGS`, with `stdin`, not yet run.
    pub fn sendmail_cmd(&self, args: &[&str], stdin: &[u8]) -> Cmd {
        let mut cmd = self.outbox();
        cmd.arg("sendmail").args(args).stdin(stdin.to_vec());
        cmd
    }

    /// `outbox sendmail ARGS` with `stdin`.
    pub fn sendmail(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.sendmail_cmd(args, stdin).run()
    }

    /// `sendmail ARGS` through a symlink named `sendmail`, as callers of
    /// `/usr/sbin/sendmail` run it.
    pub fn sendmail_link(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = self.program(self.link("sendmail"));
        cmd.args(args).stdin(stdin.to_vec());
        cmd.run()
    }

    /// `outbox ARGS` (the compose face) with `stdin`.
    pub fn compose(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = self.outbox();
        cmd.args(args).stdin(stdin.to_vec());
        cmd.run()
    }

    /// `outbox queue ARGS`.
    pub fn queue(&self, args: &[&str]) -> Output {
        let mut cmd = self.outbox();
        cmd.arg("queue").args(args);
        cmd.run()
    }

    /// `outbox queue list --failed`, which must succeed.
    #[track_caller]
    pub fn failed_listing(&self) -> Output {
        let out = self.queue(&["list", "--failed"]);
        out.assert_success();
        out
    }

    /// The ids `outbox queue list` shows (readable entries only).
    #[track_caller]
    pub fn queued_ids(&self) -> Vec<String> {
        let out = self.queue(&["list"]);
        out.assert_success();
        entry_ids(&out.stdout_str())
    }
}

/// An address nobody listens on (connection refused), for queueing.
pub fn closed_server() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The ids of the entry lines of a `queue list` (or `mailq`) output.
pub fn entry_ids(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| !l.starts_with(' ') && l.contains(" bytes  attempts "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The indented lines under entry `id` of a `queue list` output, trimmed.
pub fn entry_details<'a>(listing: &'a str, id: &str) -> Vec<&'a str> {
    listing
        .lines()
        .skip_while(|l| !l.starts_with(id))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .map(str::trim)
        .collect()
}

/// The value of the `NAME: ` line under entry `id` (e.g. `to`, `bounce`).
pub fn entry_detail(listing: &str, id: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}: ");
    entry_details(listing, id)
        .into_iter()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}
