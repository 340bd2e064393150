//! System mode for a test: a spool set up as `outbox system setup` makes it, the
//! service (`outbox serve`) as a child with a guard that kills it, and commands run
//! as other users.
//!
//! * [`System::new`] makes, under a fresh 0755 directory in `/tmp`, the spool
//!   (`outbox::spool::Spool::create`, as root) for a service user of its own (a
//!   numeric uid/gid from [`service_ids`], with no passwd entry, so that tests run at
//!   once), the service's configuration (0600, the service's), a directory for the
//!   service's log, and a log file any submitter may append to.
//! * [`System::serve`] starts `outbox serve` as root (it becomes the spool's owner
//!   itself) and waits until it is ready for signals; [`Service`] signals, waits for
//!   and kills it, and kills it when dropped.
//! * [`System::submitter`] is `outbox` (or any program) run as another user with
//!   `setpriv`, with `OUTBOX_SPOOL` set, `OUTBOX_CONFIG` unset and a `HOME` without a
//!   configuration: a submitter in system mode. [`System::admin`] is root's `outbox`
//!   in system mode (`queue list` and the like).
//! * [`wait_until`] polls with a deadline; [`seq_numbers`] reads back what arrived.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use outbox::spool::{Owner, Spool};

use super::outbox_log::{LogLine, parse_file};
use super::{Cmd, TempDir, TestEnv};

/// The uid and gid of `nobody` on Debian.
pub const NOBODY: User = User {
    uid: 65534,
    gid: 65534,
};
/// How long the service may take to start and be ready for signals.
const READY: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);
/// What `outbox serve` says on standard error once its signals are handled.
const READY_LINE: &str = "serving the spool";

/// Service uids handed out in this test process: 64100, 64101, ...
static NEXT_SERVICE: AtomicU32 = AtomicU32::new(0);

/// A user and group id to run something as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// A user with no passwd entry, uid and gid `id` (such as 64002).
    pub fn numeric(id: u32) -> User {
        User { uid: id, gid: id }
    }
}

/// A service uid and gid of its own for each call (64100 + n), so that tests that
/// run at once never share one.
pub fn service_ids() -> User {
    User::numeric(64100 + NEXT_SERVICE.fetch_add(1, Ordering::Relaxed))
}

/// A spool set up for system mode, and all a test needs around it; removed when
/// dropped (drop the [`Service`] first: declare it after).
#[derive(Debug)]
pub struct System {
    /// Holds every file below; 0755, as every parent of a spool must be.
    base: TempDir,
    env: TestEnv,
    service: User,
}

impl System {
    /// A spool for a new service user whose configuration is `[default]` with
    /// `server` and a 10 s `timeout`, then the lines `more`.
    pub fn new(server: &str, more: &str) -> System {
        let base = TempDir::new_in(Path::new("/tmp"), "outbox-sys");
        set_mode(base.path(), 0o755);
        let service = service_ids();
        let system = System {
            base,
            env: TestEnv::new(),
            service,
        };
        Spool::at(system.root())
            .create(
                Owner {
                    uid: service.uid,
                    gid: service.gid,
                },
                None,
            )
            .unwrap_or_else(|e| panic!("cannot set up the spool {}: {e}", system.root().display()));
        for dir in ["etc", "service"] {
            let path = system.base.join(dir);
            fs::create_dir(&path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
            set_mode(&path, 0o755);
        }
        chown(&system.base.join("service"), service);
        let submit_log = system.submit_log();
        write(&submit_log, b"");
        // Any submitter appends its refusals here.
        set_mode(&submit_log, 0o666);
        system.configure(server, more);
        system
    }

    /// The spool's root.
    pub fn root(&self) -> PathBuf {
        self.base.join("spool")
    }

    pub fn spool(&self) -> Spool {
        Spool::at(self.root())
    }

    pub fn maildrop(&self) -> PathBuf {
        self.root().join("maildrop")
    }

    pub fn bad(&self) -> PathBuf {
        self.root().join("bad")
    }

    /// The service's user and group.
    pub fn service_user(&self) -> User {
        self.service
    }

    /// The service's configuration file (0600, the service's).
    pub fn config(&self) -> PathBuf {
        self.base.join("etc/config.toml")
    }

    /// The service's log (`--log`).
    pub fn log(&self) -> PathBuf {
        self.base.join("service/outbox.log")
    }

    /// The submitters' log (`OUTBOX_LOG`), 0666.
    pub fn submit_log(&self) -> PathBuf {
        self.base.join("submit.log")
    }

    /// A directory every user may write in, for files a test makes as another user.
    pub fn scratch(&self) -> PathBuf {
        let path = self.base.join("scratch");
        if !path.exists() {
            fs::create_dir(&path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
            set_mode(&path, 0o1777);
        }
        path
    }

    /// (Re)writes the service's configuration, 0600 and the service's.
    pub fn configure(&self, server: &str, more: &str) {
        let path = self.config();
        let tmp = self.base.join("etc/.config.toml.tmp");
        write(
            &tmp,
            format!("[default]\nserver = \"{server}\"\ntimeout = 10\n{more}").as_bytes(),
        );
        set_mode(&tmp, 0o600);
        chown(&tmp, self.service);
        // Replaced whole: a service reading it on SIGHUP never sees half of it.
        fs::rename(&tmp, &path).unwrap_or_else(|e| {
            panic!("cannot rename {} to {}: {e}", tmp.display(), path.display())
        });
    }

    /// `outbox serve --log LOG` for this spool, as root, not started.
    pub fn serve_cmd(&self, extra: &[&str]) -> Cmd {
        let mut cmd = self.env.cmd();
        cmd.arg("serve");
        self.serve_args(&mut cmd, extra);
        cmd
    }

    fn serve_args(&self, cmd: &mut Cmd, extra: &[&str]) {
        cmd.arg("--log")
            .arg(self.log())
            .args(extra)
            .env("OUTBOX_SPOOL", self.root())
            .env("OUTBOX_CONFIG", self.config())
            .env_remove("OUTBOX_LOG")
            .current_dir("/");
    }

    /// Starts `outbox serve` as root (it becomes the spool's owner) and waits until it
    /// handles its signals.
    #[track_caller]
    pub fn serve(&self) -> Service {
        self.start_service(self.serve_cmd(&[]))
    }

    /// As [`System::serve`], with more arguments (`-v`).
    #[track_caller]
    pub fn serve_with(&self, extra: &[&str]) -> Service {
        self.start_service(self.serve_cmd(extra))
    }

    /// As [`System::serve`], started as the spool's owner (`setpriv`, no other
    /// group), as a unit with `User=outbox` runs it.
    #[track_caller]
    pub fn serve_as_owner(&self) -> Service {
        let mut cmd = self.as_user(self.service, env!("CARGO_BIN_EXE_outbox"));
        cmd.arg("serve");
        self.serve_args(&mut cmd, &[]);
        self.start_service(cmd)
    }

    #[track_caller]
    fn start_service(&self, cmd: Cmd) -> Service {
        let stderr = self
            .base
            .join(format!("serve-{}.err", super::unique_name("run")));
        let file = fs::File::create(&stderr)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr.display()));
        let mut service = Service {
            child: Some(cmd.spawn_with_stderr(file)),
            stderr,
            cmdline: cmd.cmdline(),
        };
        let deadline = Instant::now() + READY;
        while !service.stderr().contains(READY_LINE) {
            if let Some(status) = service.try_wait() {
                panic!(
                    "`outbox serve` exited ({status}) before it was ready\n{}",
                    service.report()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "`outbox serve` not ready after {READY:?}\n{}",
                    service.report()
                );
            }
            thread::sleep(POLL);
        }
        service
    }

    /// `program ARGS` run as `user` with `setpriv` (no supplementary group), in system
    /// mode: `OUTBOX_SPOOL` set, `OUTBOX_CONFIG` and the XDG directories unset, `HOME`
    /// `/nonexistent`, the log to [`System::submit_log`].
    pub fn as_user(&self, user: User, program: impl AsRef<Path>) -> Cmd {
        let mut cmd = self.env.command("/usr/bin/setpriv");
        cmd.arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(program.as_ref());
        cmd.env("OUTBOX_SPOOL", self.root())
            .env("OUTBOX_LOG", self.submit_log())
            .env("HOME", "/nonexistent")
            .env_remove("OUTBOX_CONFIG")
            .current_dir("/");
        for var in [
            "XDG_CONFIG_HOME",
            "XDG_STATE_HOME",
            "XDG_CACHE_HOME",
            "XDG_DATA_HOME",
        ] {
            cmd.env_remove(var);
        }
        let name = if user == NOBODY {
            "nobody".to_owned()
        } else {
            format!("u{}", user.uid)
        };
        cmd.env("USER", &name).env("LOGNAME", &name);
        cmd
    }

    /// The `outbox` binary run as `user` in system mode.
    pub fn submitter(&self, user: User) -> Cmd {
        self.as_user(user, env!("CARGO_BIN_EXE_outbox"))
    }

    /// `outbox sendmail ARGS` as `user`, with `message` on standard input.
    pub fn sendmail(&self, user: User, args: &[&str], message: &[u8]) -> super::Output {
        let mut cmd = self.submitter(user);
        cmd.arg("sendmail").args(args).stdin(message.to_vec());
        cmd.run()
    }

    /// `sh -c SCRIPT sh ARGS` as `user`, in the spool's root: for what a hostile user
    /// does by hand in `maildrop/`.
    pub fn shell(&self, user: User, script: &str, args: &[&str]) -> super::Output {
        let mut cmd = self.as_user(user, "/bin/sh");
        cmd.args(["-c", script, "sh"])
            .args(args)
            .current_dir(self.root());
        cmd.run()
    }

    /// Root's `outbox` in system mode (as [`System::as_user`], but root: it becomes the
    /// service's user for the system queue).
    pub fn admin(&self) -> Cmd {
        let mut cmd = self.env.cmd();
        cmd.env("OUTBOX_SPOOL", self.root())
            .env("OUTBOX_LOG", self.submit_log())
            .env_remove("OUTBOX_CONFIG")
            .current_dir("/");
        cmd
    }

    /// Every line of the service's log so far (none when it has not written one).
    pub fn log_lines(&self) -> Vec<LogLine> {
        read_log(&self.log())
    }

    /// Every line of the submitters' log so far.
    pub fn submit_log_lines(&self) -> Vec<LogLine> {
        read_log(&self.submit_log())
    }

    /// The service's log lines with `status=STATUS`.
    pub fn log_with_status(&self, status: &str) -> Vec<LogLine> {
        self.log_lines()
            .into_iter()
            .filter(|l| l.get("status") == Some(status))
            .collect()
    }

    /// Waits until the service's log has at least `count` lines with `status=STATUS`
    /// and returns them; fails with the log and the service's stderr on timeout.
    #[track_caller]
    pub fn wait_for_status(
        &self,
        status: &str,
        count: usize,
        timeout: Duration,
        service: Option<&Service>,
    ) -> Vec<LogLine> {
        let found = poll(timeout, || {
            let lines = self.log_with_status(status);
            (lines.len() >= count).then_some(lines)
        });
        found.unwrap_or_else(|| {
            panic!(
                "fewer than {count} status={status} lines in the service's log after \
                 {timeout:?}\n--- log ---\n{}\n{}",
                fs::read_to_string(self.log()).unwrap_or_default(),
                service.map(Service::report).unwrap_or_default()
            )
        })
    }

    /// The usage the service published for `uid` in `users/<uid>` (`queued`,
    /// `bytes`), or `None` when there is no such file.
    pub fn published_usage(&self, uid: u32) -> Option<BTreeMap<String, u64>> {
        let text = fs::read_to_string(self.root().join("users").join(uid.to_string())).ok()?;
        Some(
            text.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    Some((k.trim().to_owned(), v.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// The names in a directory of the spool (as root, who may list them all), sorted.
    pub fn names_in(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|e| {
                e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }
}

/// A running `outbox serve`; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Service {
    child: Option<Child>,
    stderr: PathBuf,
    cmdline: String,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` (a no-op once the service has been reaped).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let Some(child) = &self.child else { return };
        let pid = rustix::process::Pid::from_raw(child.id() as i32)
            .unwrap_or_else(|| panic!("pid {} is not a process id", child.id()));
        // ESRCH: it exited meanwhile, which the caller finds out by waiting.
        let _ = rustix::process::kill_process(pid, signal);
    }

    /// Its exit status, if it has exited (reaped then).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot wait for `outbox serve`: {e}"))
    }

    /// Waits for it to exit, at most `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, || self.try_wait())
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What it wrote on standard error so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The command line and standard error, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "--- {} (pid {}) stderr ---\n{}--- end ---",
            self.cmdline,
            self.pid(),
            self.stderr()
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process that is killed and reaped when dropped (a helper a test starts,
/// which must not outlive a failed test).
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Calls `f` every 20 ms until it gives `Some`, for at most `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// As [`poll`], failing with `what` on timeout.
#[track_caller]
pub fn wait_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    match poll(timeout, f) {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// The value of the header `name` in each message (the first such field of its
/// header block), parsed as a number, and how many times each arrived.
pub fn seq_numbers(messages: &[Vec<u8>], name: &str) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for raw in messages {
        let text = String::from_utf8_lossy(raw);
        let head = text.split("\n\n").next().unwrap_or_default();
        let value = head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name)
                .then(|| v.trim().parse::<u64>().ok())?
        });
        if let Some(v) = value {
            *seen.entry(v).or_insert(0) += 1;
        }
    }
    seen
}

/// How many messages a Maildir holds (in `new/` and `cur/`), without reading them.
pub fn maildir_count(maildir: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .filter_map(|sub| fs::read_dir(maildir.join(sub)).ok())
        .map(|entries| entries.count())
        .sum()
}

/// Whether any file under `dir` (recursively) contains `needle`.
pub fn any_file_contains(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => any_file_contains(&path, needle),
            Ok(t) if t.is_file() => {
                fs::read(&path).is_ok_and(|data| data.windows(needle.len()).any(|w| w == needle))
            }
            _ => false,
        }
    })
}

/// The mode bits (`0o7777`) and owner of `path`, not following a symbolic link.
pub fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    let meta = fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("cannot examine {}: {e}", path.display()));
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

fn read_log(path: &Path) -> Vec<LogLine> {
    match fs::read_to_string(path) {
        Ok(text) => parse_file(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

fn chown(path: &Path, user: User) {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
}

fn write(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
