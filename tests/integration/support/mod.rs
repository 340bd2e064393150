//! Helpers shared by all integration tests.
//!
//! * [`outbox`] / [`TestEnv`] / [`Cmd`] / [`Output`]: run the built `outbox`
//!   binary in an isolated environment and assert on its result.
//! * [`postfix::Postfix`]: a private, real Postfix on loopback that delivers
//!   mail for `@example.test` into a Maildir the tests can read.
//! * [`smtp::SmtpClient`]: a minimal raw SMTP client for poking a server
//!   directly (used by the Postfix smoke tests).
//! * [`tls::TestPki`]: test CAs and server certificates (good, wrong host,
//!   untrusted issuer, expired, self-signed), made with `openssl` at test
//!   time. [`postfix::Postfix::shared_tls`] serves them with STARTTLS and
//!   implicit TLS.
//! * [`aiosmtpd::SmtpServer`]: an aiosmtpd server (Python) for AUTH (PLAIN,
//!   LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2) with or without STARTTLS or
//!   implicit TLS, recording who authenticated how.
//! * [`pty::Terminal`]: `outbox` at a pseudo-terminal, as a person would type
//!   at it (the `expectrl` dev-dependency).
//! * [`pyclient::smtp_client`]: Python's smtplib as an independent client,
//!   for testing those servers without `outbox`.
//! * [`face::Face`]: one user of the sendmail face and the queue, with a
//!   configuration and a queue of their own.
//! * [`dsn::Dsn`]: a delivered bounce (RFC 3464 report) read back.
//! * [`syslog::SyslogSink`]: a private `/dev/log` (a datagram socket in a
//!   temporary directory); [`outbox_log::LogLine`] parses what outbox logs
//!   there or to a file.
//! * [`system::System`]: system mode: a spool set up for a service user of the
//!   test's own, `outbox serve` under a guard that kills it, and commands run as
//!   other users (`nobody`, numeric uids) with `setpriv`.
//! * [`TempDir`], [`free_port`], [`unique_name`], [`crlf_to_lf`]: small
//!   utilities.
//!
//! Everything here is std-only (the servers and certificates come from
//! Postfix, `/usr/bin/python3` with aiosmtpd, and the `openssl` command),
//! except [`dsn`], which reads MIME with the mail-parser dev-dependency, and
//! [`pty`].

// Not every test module uses every helper; that is expected for a library of
// test helpers, so unused items must not fail `clippy -D warnings`.
#![allow(dead_code)]

pub mod aiosmtpd;
pub mod dsn;
pub mod face;
pub mod fake;
pub mod outbox_log;
pub mod postfix;
pub mod pty;
pub mod pyclient;
pub mod smtp;
pub mod syslog;
pub mod system;
pub mod tls;

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs, thread};

/// Default time limit for one run of the `outbox` binary.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name that is unique within this test process, e.g. `unique_name("compose")`
/// gives `compose-7`. Handy for Maildir local parts on the shared Postfix
/// (`postfix::Postfix::shared()`), which all tests of the binary share.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
/// the port, close). Another process may grab it before you bind it again,
/// so callers that can should retry with a new port on `AddrInUse`.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read local address of 127.0.0.1:0 listener: {e}"))
        .port()
}

/// Replace every CRLF by LF (bare CR and bare LF are left alone). Maildir
/// files written by Postfix use LF line endings, while SMTP uses CRLF.
pub fn crlf_to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// A directory that is removed (recursively) when dropped. Std-only
/// replacement for the `tempfile` crate.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh directory under [`std::env::temp_dir()`], named
    /// `<prefix>-<pid>-<counter>-<time>`.
    pub fn new(prefix: &str) -> TempDir {
        TempDir::new_in(&env::temp_dir(), prefix)
    }

    /// A fresh directory under `base` (which must exist).
    pub fn new_in(base: &Path, prefix: &str) -> TempDir {
        let pid = std::process::id();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() % 1_000_000_000)
                .unwrap_or(0);
            let path = base.join(format!("{prefix}-{pid}-{n}-{t}"));
            match fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create temporary directory {}: {e}", path.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "warning: cannot remove temporary directory {}: {e}",
                self.path.display()
            ),
        }
    }
}

/// An isolated environment for running `outbox`: a temporary directory with
/// `home/`, `config/`, `state/`, `cache/` and `data/` below it. Commands made
/// with [`TestEnv::cmd`] get `HOME`, `XDG_CONFIG_HOME`, `XDG_STATE_HOME`,
/// `XDG_CACHE_HOME` and `XDG_DATA_HOME` pointing there, `USER`/`LOGNAME` set
/// to `tester`, no `OUTBOX_*` variables but `OUTBOX_LOG` (the log goes to
/// [`TestEnv::log_file`], not to the machine's syslog; remove it with
/// `env_remove("OUTBOX_LOG")` to test the configuration's `log`) and `OUTBOX_SPOOL`
/// (a system spool that does not exist, so personal mode), and the root as working
/// directory.
///
/// Cloning is cheap and shares the directory; it is removed when the last
/// clone (including the `Cmd`s made from it) is dropped.
#[derive(Clone, Debug)]
pub struct TestEnv {
    inner: Arc<EnvDirs>,
}

#[derive(Debug)]
struct EnvDirs {
    root: TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let root = TempDir::new("outbox-test");
        for sub in ["home", "config", "state", "cache", "data"] {
            let p = root.join(sub);
            fs::create_dir(&p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        }
        TestEnv {
            inner: Arc::new(EnvDirs { root }),
        }
    }

    /// The root of the environment; also the working directory of commands.
    pub fn root(&self) -> &Path {
        self.inner.root.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    /// Where outbox's log goes (`OUTBOX_LOG`) unless a test says otherwise.
    pub fn log_file(&self) -> PathBuf {
        self.root().join("outbox.log")
    }

    pub fn config_home(&self) -> PathBuf {
        self.root().join("config")
    }

    pub fn state_home(&self) -> PathBuf {
        self.root().join("state")
    }

    pub fn cache_home(&self) -> PathBuf {
        self.root().join("cache")
    }

    pub fn data_home(&self) -> PathBuf {
        self.root().join("data")
    }

    /// Write `contents` to `rel` (relative to [`TestEnv::root`], or absolute),
    /// creating parent directories. Returns the full path.
    pub fn write_file(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root().join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Read a file (relative to [`TestEnv::root`], or absolute).
    pub fn read_file(&self, rel: impl AsRef<Path>) -> Vec<u8> {
        let path = self.root().join(rel);
        fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// Writes the configuration file `outbox.toml`: `[default]` with `server` and
    /// `timeout` (seconds), then the lines `more` (keys, then other tables such as
    /// `[aliases]`). Returns its path.
    pub fn configure(&self, server: &str, timeout: u64, more: &str) -> PathBuf {
        self.write_file(
            "outbox.toml",
            format!("[default]\nserver = \"{server}\"\ntimeout = {timeout}\n{more}"),
        )
    }

    /// As [`TestEnv::configured_command`], for the `outbox` binary.
    pub fn configured_cmd(&self) -> Cmd {
        self.configured_command(env!("CARGO_BIN_EXE_outbox"))
    }

    /// `program` in this environment, with the configuration file `outbox.toml` (see
    /// [`TestEnv::configure`]) and the queue `queue/` of its own.
    pub fn configured_command(&self, program: impl AsRef<Path>) -> Cmd {
        let mut cmd = self.command(program);
        cmd.env("OUTBOX_CONFIG", self.root().join("outbox.toml"))
            .env("OUTBOX_QUEUE_DIR", self.root().join("queue"));
        cmd
    }

    /// A command for the `outbox` binary in this environment.
    pub fn cmd(&self) -> Cmd {
        self.command(env!("CARGO_BIN_EXE_outbox"))
    }

    /// A command for any program, in this environment (same isolation).
    pub fn command(&self, program: impl AsRef<Path>) -> Cmd {
        Cmd {
            env: self.clone(),
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            envs: Vec::new(),
            stdin: None,
            current_dir: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// `outbox` in a fresh [`TestEnv`]. Use `TestEnv::new()` + `.cmd()` instead
/// when several commands must share one environment.
pub fn outbox() -> Cmd {
    TestEnv::new().cmd()
}

/// A builder for one run of the `outbox` binary (see [`TestEnv`] for the
/// environment it runs in). Modelled on ripgrep's `TestCommand`.
#[derive(Debug)]
pub struct Cmd {
    env: TestEnv,
    program: PathBuf,
    args: Vec<OsString>,
    /// `None` value: remove the variable.
    envs: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    current_dir: Option<PathBuf>,
    timeout: Duration,
}

impl Cmd {
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Bytes fed to the child's stdin (default: empty stdin, i.e. EOF).
    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Set an environment variable (applied after the isolation defaults,
    /// so it can override them, and can set `OUTBOX_*` variables).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.envs
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    /// Working directory (default: [`TestEnv::root`]).
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Kill the child and report a timeout after this long (default 60 s).
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = timeout;
        self
    }

    /// The environment this command runs in.
    pub fn test_env(&self) -> &TestEnv {
        &self.env
    }

    /// The command line as a shell would read it (user-set variables first).
    pub fn cmdline(&self) -> String {
        let mut s = String::new();
        let removed: Vec<_> = self.envs.iter().filter(|(_, v)| v.is_none()).collect();
        if !removed.is_empty() {
            s.push_str("env ");
            for (k, _) in removed {
                let _ = write!(s, "-u {} ", shell_quote(k));
            }
        }
        for (k, v) in &self.envs {
            if let Some(v) = v {
                let _ = write!(s, "{}={} ", k.to_string_lossy(), shell_quote(v));
            }
        }
        s.push_str(&shell_quote(self.program.as_os_str()));
        for a in &self.args {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s
    }

    fn build(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, _) in env::vars_os() {
            if k.to_string_lossy().starts_with("OUTBOX_") {
                c.env_remove(&k);
            }
        }
        c.env("HOME", self.env.home())
            .env("XDG_CONFIG_HOME", self.env.config_home())
            .env("XDG_STATE_HOME", self.env.state_home())
            .env("XDG_CACHE_HOME", self.env.cache_home())
            .env("XDG_DATA_HOME", self.env.data_home())
            .env("USER", "tester")
            .env("LOGNAME", "tester")
            .env("OUTBOX_LOG", self.env.log_file())
            // No test meets the machine's own system spool by chance: system mode is
            // what a test sets up and names.
            .env("OUTBOX_SPOOL", self.env.root().join("no-system-spool"));
        for (k, v) in &self.envs {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.current_dir(self.current_dir.as_deref().unwrap_or(self.env.root()));
        c
    }

    /// The command as it would run, for a harness of its own (a pseudo-terminal,
    /// [`pty::Terminal`]).
    pub fn std_command(&self) -> Command {
        self.build()
    }

    /// Start the command and return at once, for tests that signal or race the
    /// child. Standard input, output and error are `/dev/null`; the caller must
    /// wait for (or kill) the child.
    pub fn spawn(&self) -> std::process::Child {
        let cmdline = self.cmdline();
        self.build()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{cmdline}`: {e}"))
    }

    /// As [`Cmd::spawn`], with standard error going to `stderr` (a file the test
    /// reads afterwards, so a failure can say why).
    pub fn spawn_with_stderr(&self, stderr: fs::File) -> std::process::Child {
        let cmdline = self.cmdline();
        self.build()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{cmdline}`: {e}"))
    }

    /// Run to completion (or until the timeout, then kill it) and collect
    /// the result. Never panics because of the child's behaviour; use the
    /// `assert_*` methods of [`Output`].
    pub fn run(&self) -> Output {
        self.run_with(None, None)
    }

    /// As [`Cmd::run`], with standard output and error going where given (a file
    /// such as `/dev/full`, a pipe whose reader is closed) instead of to pipes the
    /// harness reads; what goes there is not in the [`Output`].
    pub fn run_with(&self, stdout: Option<Stdio>, stderr: Option<Stdio>) -> Output {
        let cmdline = self.cmdline();
        let (read_out, read_err) = (stdout.is_none(), stderr.is_none());
        let mut child = self
            .build()
            .stdin(Stdio::piped())
            .stdout(stdout.unwrap_or_else(Stdio::piped))
            .stderr(stderr.unwrap_or_else(Stdio::piped))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{cmdline}`: {e}"));

        let mut stdin = child.stdin.take().expect("child stdin is piped");
        let input = self.stdin.clone().unwrap_or_default();
        let writer = thread::spawn(move || {
            // A child that exits without reading all of stdin gives EPIPE;
            // that is the child's business, not an error of the harness.
            let _ = stdin.write_all(&input);
        });
        let out = child.stdout.take().filter(|_| read_out);
        let err = child.stderr.take().filter(|_| read_err);
        let out_reader = thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut out) = out {
                let _ = out.read_to_end(&mut buf);
            }
            buf
        });
        let err_reader = thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut err) = err {
                let _ = err.read_to_end(&mut buf);
            }
            buf
        });

        let deadline = Instant::now() + self.timeout;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    let _ = child.kill();
                    break child
                        .wait()
                        .unwrap_or_else(|e| panic!("cannot wait for `{cmdline}`: {e}"));
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("cannot wait for `{cmdline}`: {e}"),
            }
        };
        let _ = writer.join();
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        Output {
            status: status.code(),
            signal: status.signal(),
            timed_out,
            stdout,
            stderr,
            cmdline,
        }
    }
}

/// The result of [`Cmd::run`].
#[derive(Clone, Debug)]
pub struct Output {
    /// Exit code; `None` if the child was killed by a signal (or timed out).
    pub status: Option<i32>,
    /// The signal that killed the child, if any.
    pub signal: Option<i32>,
    /// The child ran longer than the timeout and was killed.
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The command line, for messages.
    pub cmdline: String,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard output as the one JSON object `--json` prints; the test fails with
    /// the run's report if it is not one.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout_str().trim())
            .unwrap_or_else(|e| self.fail(&format!("stdout is not one JSON object: {e}")))
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Everything known about the run, for failure messages.
    pub fn report(&self) -> String {
        let status = match (self.status, self.signal, self.timed_out) {
            (_, _, true) => "killed after timeout".to_string(),
            (Some(c), _, _) => format!("exit code {c}"),
            (None, Some(s), _) => format!("killed by signal {s}"),
            (None, None, _) => "unknown".to_string(),
        };
        format!(
            "command: {}\nstatus: {status}\n--- stdout ({} bytes) ---\n{}\n--- stderr ({} bytes) ---\n{}\n--- end ---",
            self.cmdline,
            self.stdout.len(),
            self.stdout_str(),
            self.stderr.len(),
            self.stderr_str(),
        )
    }

    /// Panic with `msg` and the full [`Output::report`].
    #[track_caller]
    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.report())
    }

    /// Assert the child exited (no signal, no timeout) with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        if self.timed_out || self.status != Some(code) {
            self.fail(&format!("expected exit code {code}"));
        }
        self
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// Assert the child exited with a non-zero code (not a signal/timeout).
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        match self.status {
            Some(c) if c != 0 && !self.timed_out => self,
            _ => self.fail("expected a non-zero exit code"),
        }
    }

    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        if !self.stdout_str().contains(needle) {
            self.fail(&format!("expected stdout to contain {needle:?}"));
        }
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        if !self.stderr_str().contains(needle) {
            self.fail(&format!("expected stderr to contain {needle:?}"));
        }
        self
    }

    /// The first line on standard error that starts with `prefix`, such as a
    /// transcript's `"> MAIL FROM:"`; fails with the report when there is none.
    #[track_caller]
    pub fn stderr_line(&self, prefix: &str) -> String {
        let stderr = self.stderr_str();
        match stderr.lines().find(|l| l.starts_with(prefix)) {
            Some(line) => line.to_owned(),
            None => self.fail(&format!("no line starting with {prefix:?} on stderr")),
        }
    }

    #[track_caller]
    pub fn assert_stdout_empty(&self) -> &Self {
        if !self.stdout.is_empty() {
            self.fail("expected empty stdout");
        }
        self
    }

    #[track_caller]
    pub fn assert_stderr_empty(&self) -> &Self {
        if !self.stderr.is_empty() {
            self.fail("expected empty stderr");
        }
        self
    }
}

/// Quote for display in a POSIX shell.
pub fn shell_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./=:@%+,-".contains(&b));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
