//! A private, real Postfix instance on loopback, for integration tests.
//!
//! # What the server does
//!
//! * Listens on `127.0.0.1:<port>` (and `[::1]:<port>` when the host has
//!   IPv6 loopback, see [`Postfix::addr_v6`]); the port is picked at random.
//! * Accepts mail for any `<local-part>@example.test` ([`DOMAIN`]) and
//!   delivers it with Postfix's own `virtual(8)` agent into one Maildir,
//!   [`Postfix::maildir`]. Messages are told apart by the `Delivered-To:`
//!   header Postfix adds; [`Postfix::wait_for_messages`] and
//!   [`Postfix::messages_now`] do that for you. Each recipient of a message
//!   gets its own copy.
//! * `RCPT TO:<reject-...@...>` gets `550 5.1.1`, `RCPT TO:<defer-...@...>`
//!   gets `450 4.2.0`; any other domain gets `554 5.7.1 Relay access denied`.
//! * Refuses bare LF anywhere (`smtpd_forbid_bare_newline = reject`), even
//!   from loopback: a client that sends one gets `550 5.5.2 ... bare <LF>`.
//! * Drops clients that pipeline where RFC 2920 does not allow it, e.g.
//!   before the greeting (`smtpd_forbid_unauth_pipelining = yes`, the
//!   default of newer Postfix versions).
//! * Advertises PIPELINING, SIZE (50 MiB by default, see
//!   [`Builder::message_size_limit`]), 8BITMIME, SMTPUTF8 (not with
//!   [`Builder::smtputf8`]`(false)`), DSN,
//!   ENHANCEDSTATUSCODES, CHUNKING (plus VRFY, ETRN); no AUTH, and no
//!   STARTTLS unless built with [`Builder::tls`]. So [`Postfix::shared`] is
//!   the server for "STARTTLS required but not offered".
//! * Does not add, drop or rewrite headers (the client is treated as remote;
//!   even `Bcc:` is kept), so the delivered message is exactly what the
//!   client sent, with LF line endings,
//!   dot-stuffing undone and a leading block of trace headers
//!   (`Return-Path`, `X-Original-To`, `Delivered-To`, `Received`); see
//!   [`strip_trace_headers`].
//! * Does no DNS lookups and never sends mail anywhere else.
//! * Logs to a file: [`Postfix::maillog`].
//!
//! # Use
//!
//! Most tests use the instance shared by the whole test binary, with a
//! recipient local part of their own (local parts are matched ASCII
//! case-insensitively; `unique_name("reject")` gives a rejected one):
//!
//! ```ignore
//! let pf = Postfix::shared();
//! let local = unique_name("compose");       // e.g. "compose-3"
//! let to = rcpt(&local);                    // "compose-3@example.test"
//! // ... make outbox send to `to` via `pf.addr()` ...
//! let msgs = pf.wait_for_messages(&local, 1, Duration::from_secs(20));
//! let body = strip_trace_headers(&msgs[0]); // compare with crlf_to_lf(sent)
//! ```
//!
//! A test that needs its own server (other settings, or stopping and
//! starting it) uses [`Postfix::builder`] / [`Postfix::start`] and gets an
//! instance that is removed when dropped.
//!
//! # TLS
//!
//! [`Postfix::shared_tls`] is a second shared instance (same behaviour
//! otherwise, its own Maildir) with the test PKI's server certificate
//! ([`super::tls::TestPki::server_cert`]: `localhost`, `mx.outbox.test`,
//! `127.0.0.1`, `::1`), which
//!
//! * offers STARTTLS on [`Postfix::addr`] (`smtpd_tls_security_level =
//!   may`: TLS optional, mail without it is accepted too), and
//! * speaks implicit TLS (port-465 style, `smtpd_tls_wrappermode`) on
//!   [`Postfix::wrapper_addr`], where TLS is mandatory.
//!
//! It records the TLS protocol and cipher in the `Received:` header it
//! adds (`smtpd_tls_received_header`); [`received_tls`] reads it back, so a
//! test can check that a message really went over TLS. Private instances
//! get the same with [`Builder::tls`] / [`Builder::tls_test_pki`] and
//! [`Builder::wrapper_port`]; `.main_cf("smtpd_tls_security_level",
//! "encrypt")` makes STARTTLS mandatory on the main listener (MAIL before
//! it gets `530 5.7.0 Must issue a STARTTLS command first`). Postfix here
//! has no SASL: for AUTH, use [`super::aiosmtpd::SmtpServer`].
//!
//! # How it runs
//!
//! Everything lives in a temporary directory: `etc/` (a generated `main.cf`
//! and `master.cf`; nothing from `/etc/postfix` is used except the
//! `dynamicmaps.cf` Postfix itself reads), `queue/`, `data/`, `mail/`,
//! `maillog`, `master.log`. The `master(8)` daemon runs in the foreground
//! (`master -c DIR/etc -s`), started as root (directly, or with `sudo -n`
//! when the tests do not run as root). A small shell watchdog started with
//! it stops master (which takes its children along) as soon as the test
//! process is gone, even if it was killed or exited without running
//! destructors (the shared instance lives in a `static`), and then removes
//! the directory. [`Postfix::stop`] and `Drop` stop it explicitly and wait
//! until all its processes are gone.

use super::tls::TestPki;
use super::{TempDir, free_port};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The mail domain the server delivers locally.
pub const DOMAIN: &str = "example.test";
/// The server's `myhostname` (in its greeting and `Received:` headers).
pub const HOSTNAME: &str = "mx.outbox.test";
/// Default `message_size_limit` (advertised as `SIZE`): 50 MiB.
pub const DEFAULT_MESSAGE_SIZE_LIMIT: u64 = 50 * 1024 * 1024;

const DAEMON_DIRECTORY: &str = "/usr/lib/postfix/sbin";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);
const PORT_ATTEMPTS: usize = 5;

/// `local_part@example.test`.
pub fn rcpt(local_part: &str) -> String {
    format!("{local_part}@{DOMAIN}")
}

/// Remove the leading block of trace headers Postfix prepends on delivery
/// (`Return-Path`, `X-Original-To`, `Delivered-To`, `Received`, in any order
/// and number, with their continuation lines), so the rest can be compared
/// with what the client sent (after [`super::crlf_to_lf`]: Maildir files use
/// LF line endings). Stops at the first other header, so a client's own
/// `Received:` headers further down stay.
pub fn strip_trace_headers(raw: &[u8]) -> Vec<u8> {
    const TRACE: [&str; 4] = ["return-path", "x-original-to", "delivered-to", "received"];
    let mut pos = 0;
    while pos < raw.len() {
        let line_end = |from: usize| {
            raw[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(raw.len(), |i| from + i + 1)
        };
        let Some(colon) = raw[pos..].iter().position(|&b| b == b':') else {
            break;
        };
        let name = &raw[pos..pos + colon];
        let is_trace = TRACE
            .iter()
            .any(|t| name.eq_ignore_ascii_case(t.as_bytes()));
        if !is_trace || name.contains(&b'\n') {
            break;
        }
        // Skip the field and its continuation lines.
        let mut next = line_end(pos);
        while next < raw.len() && (raw[next] == b' ' || raw[next] == b'\t') {
            next = line_end(next);
        }
        pos = next;
    }
    raw[pos..].to_vec()
}

/// The TLS details Postfix recorded in the first `Received:` header of a
/// delivered message (`smtpd_tls_received_header`, set by
/// [`Builder::tls`]), e.g. `"TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
/// (256/256 bits) key-exchange X25519 ..."`; `None` if that header says
/// the message did not come over TLS.
pub fn received_tls(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let header_end = text.find("\n\n").unwrap_or(text.len());
    // Unfold, then take the first Received field.
    let unfolded = text[..header_end]
        .replace("\r\n", "\n")
        .replace("\n ", " ")
        .replace("\n\t", " ");
    let received = unfolded.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("received").then_some(value)
    })?;
    let start = received.find("(using ")? + "(using ".len();
    let mut depth = 1;
    for (i, c) in received[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let words: Vec<&str> = received[start..start + i].split_whitespace().collect();
                    return Some(words.join(" "));
                }
            }
            _ => {}
        }
    }
    None
}

/// Settings for a new instance; [`Builder::start`] starts it.
#[derive(Clone, Debug)]
pub struct Builder {
    message_size_limit: u64,
    port: Option<u16>,
    ipv6: bool,
    main_cf: Vec<(String, String)>,
    /// Certificate and key file.
    tls: Option<(PathBuf, PathBuf)>,
    wrapper: bool,
    smtputf8: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            message_size_limit: DEFAULT_MESSAGE_SIZE_LIMIT,
            port: None,
            ipv6: true,
            main_cf: Vec::new(),
            tls: None,
            wrapper: false,
            smtputf8: true,
        }
    }
}

impl Builder {
    /// `message_size_limit` in bytes (advertised in EHLO as `SIZE`).
    pub fn message_size_limit(mut self, bytes: u64) -> Self {
        self.message_size_limit = bytes;
        self
    }

    /// Listen on this port instead of a random free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Also listen on `[::1]` if possible (default: true).
    pub fn ipv6(mut self, enable: bool) -> Self {
        self.ipv6 = enable;
        self
    }

    /// Set any `main.cf` parameter, overriding the generated value (e.g.
    /// `.main_cf("smtpd_discard_ehlo_keywords", "chunking")`). `{dir}` in
    /// the value is replaced by the instance directory.
    pub fn main_cf(mut self, key: &str, value: &str) -> Self {
        self.main_cf.push((key.to_string(), value.to_string()));
        self
    }

    /// `smtputf8_enable` (default: true). Off, Postfix neither offers SMTPUTF8 nor
    /// takes it on MAIL, and delivers the message as it comes, header and all.
    pub fn smtputf8(mut self, enable: bool) -> Self {
        self.smtputf8 = enable;
        self
    }

    /// Offer STARTTLS with this certificate and key (PEM): sets
    /// `smtpd_tls_cert_file`, `smtpd_tls_key_file`,
    /// `smtpd_tls_security_level = may` (override with
    /// [`Builder::main_cf`], e.g. `encrypt`), `smtpd_tls_received_header =
    /// yes` and `smtpd_tls_loglevel = 1`.
    pub fn tls(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.tls = Some((cert.as_ref().to_path_buf(), key.as_ref().to_path_buf()));
        self
    }

    /// [`Builder::tls`] with the test PKI's server certificate.
    pub fn tls_test_pki(self) -> Self {
        let pki = TestPki::shared();
        self.tls(pki.server_cert(), pki.server_key())
    }

    /// Add a second listener on another random port that speaks implicit
    /// TLS (`smtpd_tls_wrappermode = yes`, `smtpd_tls_security_level =
    /// encrypt`), like port 465; see [`Postfix::wrapper_addr`]. Needs
    /// [`Builder::tls`].
    pub fn wrapper_port(mut self) -> Self {
        self.wrapper = true;
        self
    }

    /// Start the instance; panics (with the logs) if it does not come up.
    pub fn start(self) -> Postfix {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start the instance, or describe why it did not come up.
    pub fn try_start(self) -> Result<Postfix, String> {
        Postfix::create(self)
    }
}

/// A running (or stopped) private Postfix; see the module documentation.
#[derive(Debug)]
pub struct Postfix {
    dir: TempDir,
    settings: Builder,
    privilege: Privilege,
    /// uid/gid that `virtual(8)` delivers as.
    delivery_ids: (u32, u32),
    port: u16,
    /// Port of the implicit-TLS listener, if any.
    wrapper_port: Option<u16>,
    ipv6: bool,
    /// Unique word in the SMTP greeting, so we know we talk to our server.
    token: String,
    master: Option<Master>,
    /// Maildir file name -> value of its first `Delivered-To:` header.
    delivered_to: Mutex<HashMap<OsString, String>>,
}

#[derive(Debug)]
struct Master {
    /// `master` itself (root) or the `sudo` running it.
    child: Child,
    /// pid of `master`, which is also its process group id.
    pid: u32,
}

static SHARED: OnceLock<Result<Postfix, String>> = OnceLock::new();
static SHARED_TLS: OnceLock<Result<Postfix, String>> = OnceLock::new();

impl Postfix {
    /// The instance shared by all tests of this test binary, started on
    /// first use with the default settings. Use a recipient local part of
    /// your own (see [`super::unique_name`]) so tests do not see each
    /// other's mail. It is never dropped; the watchdog stops it and removes
    /// its files when the test process exits.
    pub fn shared() -> &'static Postfix {
        match SHARED.get_or_init(|| Builder::default().try_start()) {
            Ok(pf) => pf,
            Err(e) => panic!("the shared Postfix instance could not be started:\n{e}"),
        }
    }

    /// A second shared instance, with TLS: the test PKI's server
    /// certificate, STARTTLS offered (optional) on [`Postfix::addr`] and
    /// implicit TLS on [`Postfix::wrapper_addr`] (see the module
    /// documentation). Otherwise like [`Postfix::shared`].
    pub fn shared_tls() -> &'static Postfix {
        let started =
            SHARED_TLS.get_or_init(|| Builder::default().tls_test_pki().wrapper_port().try_start());
        match started {
            Ok(pf) => pf,
            Err(e) => panic!("the shared TLS Postfix instance could not be started:\n{e}"),
        }
    }

    /// A new private instance with default settings.
    pub fn start() -> Postfix {
        Builder::default().start()
    }

    /// Settings for a new private instance.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `"[::1]:PORT"` if the server also listens on IPv6 loopback.
    pub fn addr_v6(&self) -> Option<String> {
        self.ipv6.then(|| format!("[::1]:{}", self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:PORT"` of the implicit-TLS listener, if the instance
    /// has one ([`Builder::wrapper_port`], [`Postfix::shared_tls`]).
    pub fn wrapper_addr(&self) -> Option<String> {
        self.wrapper_port.map(|p| format!("127.0.0.1:{p}"))
    }

    /// `"[::1]:PORT"` of the implicit-TLS listener, if there is one and the
    /// server listens on IPv6 loopback.
    pub fn wrapper_addr_v6(&self) -> Option<String> {
        self.wrapper_port
            .filter(|_| self.ipv6)
            .map(|p| format!("[::1]:{p}"))
    }

    pub fn wrapper_port(&self) -> Option<u16> {
        self.wrapper_port
    }

    /// Whether STARTTLS is offered (the instance was built with
    /// [`Builder::tls`]).
    pub fn has_tls(&self) -> bool {
        self.settings.tls.is_some()
    }

    /// The instance directory (config, queue, Maildir, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Maildir all mail for `@example.test` is delivered to.
    pub fn maildir(&self) -> PathBuf {
        self.dir().join("mail").join(DOMAIN)
    }

    /// Whether `master` is running (it is, unless [`Postfix::stop`] was called).
    pub fn is_running(&self) -> bool {
        self.master.is_some()
    }

    /// The whole mail log so far.
    pub fn maillog(&self) -> String {
        let path = self.dir().join("maillog");
        match fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                match privileged(self.privilege, "cat").arg(&path).output() {
                    Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
                    Err(e) => format!("<cannot read {}: {e}>", path.display()),
                }
            }
            Err(e) => format!("<cannot read {}: {e}>", path.display()),
        }
    }

    /// The last `lines` lines of the mail log.
    pub fn maillog_tail(&self, lines: usize) -> String {
        let log = self.maillog();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The raw bytes (LF line endings, trace headers included) of every
    /// message delivered so far to `local_part@example.test`, oldest first.
    /// Does not wait; use it to assert that nothing arrived.
    pub fn messages_now(&self, local_part: &str) -> Vec<Vec<u8>> {
        let want = rcpt(local_part);
        let mut found: Vec<(u64, u64, OsString, PathBuf)> = Vec::new();
        for (name, path, to) in self.scan_maildir() {
            if to.eq_ignore_ascii_case(&want) {
                let (secs, usecs) = maildir_time(&name);
                found.push((secs, usecs, name, path));
            }
        }
        found.sort();
        found
            .into_iter()
            .map(|(_, _, _, path)| {
                fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            })
            .collect()
    }

    /// Wait until exactly `count` messages for `local_part@example.test` are
    /// in the Maildir and return them like [`Postfix::messages_now`]. Panics,
    /// with the end of the mail log, on timeout or if more than `count`
    /// arrived.
    #[track_caller]
    pub fn wait_for_messages(
        &self,
        local_part: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.messages_now(local_part);
            if msgs.len() == count {
                return msgs;
            }
            if msgs.len() > count {
                panic!(
                    "expected {count} message(s) for {}, found {}\n{}",
                    rcpt(local_part),
                    msgs.len(),
                    self.diagnostics()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {count} message(s) for {}; found {}\n{}",
                    rcpt(local_part),
                    msgs.len(),
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the server (master and all its processes); files are kept and
    /// [`Postfix::start_again`] brings it back on the same port. Not
    /// available on the shared instance.
    pub fn stop(&mut self) {
        self.stop_master()
            .unwrap_or_else(|e| panic!("cannot stop Postfix: {e}\n{}", self.diagnostics()));
    }

    /// Start a stopped server again, on the same port, with the same queue
    /// and Maildir.
    pub fn start_again(&mut self) {
        assert!(
            !self.is_running(),
            "start_again: Postfix is already running"
        );
        self.spawn_and_wait()
            .unwrap_or_else(|e| panic!("cannot start Postfix again: {e}"));
    }

    /// Mail log tail plus who has mail, for failure messages.
    fn diagnostics(&self) -> String {
        let mut rcpts: Vec<String> = self
            .scan_maildir()
            .into_iter()
            .map(|(_, _, to)| to)
            .collect();
        rcpts.sort();
        rcpts.dedup();
        format!(
            "instance: {} (port {})\nMaildir {} holds mail for: {:?}\n--- maillog (last 60 lines) ---\n{}\n--- master.log ---\n{}\n--- end ---",
            self.dir().display(),
            self.port,
            self.maildir().display(),
            rcpts,
            self.maillog_tail(60),
            fs::read_to_string(self.dir().join("master.log")).unwrap_or_default(),
        )
    }

    /// (file name, path, Delivered-To) of every message in new/ and cur/.
    fn scan_maildir(&self) -> Vec<(OsString, PathBuf, String)> {
        let mut cache = self
            .delivered_to
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.maildir().join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => panic!("cannot list Maildir {}: {e}", dir.display()),
            };
            for entry in entries {
                let entry =
                    entry.unwrap_or_else(|e| panic!("cannot list Maildir {}: {e}", dir.display()));
                let name = entry.file_name();
                let path = entry.path();
                let to = match cache.get(&name) {
                    Some(to) => to.clone(),
                    None => {
                        let to = first_delivered_to(&path);
                        cache.insert(name.clone(), to.clone());
                        to
                    }
                };
                out.push((name, path, to));
            }
        }
        out
    }

    fn create(settings: Builder) -> Result<Postfix, String> {
        if settings.wrapper && settings.tls.is_none() {
            return Err("Postfix: wrapper_port() needs tls(cert, key)".into());
        }
        let master = Path::new(DAEMON_DIRECTORY).join("master");
        if !master.exists() {
            return Err(format!(
                "Postfix is not installed ({} is missing). Run scripts/test.sh, \
                 which installs it, or: apt-get install postfix",
                master.display()
            ));
        }
        let privilege = detect_privilege()?;
        let delivery_ids = match privilege {
            Privilege::Root => passwd_ids("nobody").unwrap_or((65534, 65534)),
            Privilege::Sudo => current_ids(),
        };
        let dir = TempDir::new_in(&instance_base_dir(), "outbox-pf");
        let token = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut pf = Postfix {
            dir,
            settings,
            privilege,
            delivery_ids,
            port: 0,
            wrapper_port: None,
            ipv6: false,
            token,
            master: None,
            delivered_to: Mutex::new(HashMap::new()),
        };
        pf.prepare_dirs()?;

        let mut last_err = String::new();
        for _ in 0..PORT_ATTEMPTS {
            pf.port = pf.settings.port.unwrap_or_else(free_port);
            pf.wrapper_port = pf.settings.wrapper.then(|| {
                loop {
                    let p = free_port();
                    if p != pf.port {
                        break p;
                    }
                }
            });
            pf.ipv6 = pf.settings.ipv6
                && ipv6_port_free(pf.port)
                && pf.wrapper_port.is_none_or(ipv6_port_free);
            pf.write_main_cf()?;
            pf.write_master_cf()?;
            match pf.spawn_and_wait() {
                Ok(()) => {
                    eprintln!(
                        "[postfix] test instance in {} listening on {}{}{}",
                        pf.dir().display(),
                        pf.addr(),
                        pf.addr_v6()
                            .map(|a| format!(" and {a}"))
                            .unwrap_or_default(),
                        pf.wrapper_addr()
                            .map(|a| format!(", implicit TLS on {a}"))
                            .unwrap_or_default()
                    );
                    return Ok(pf);
                }
                Err(e) => {
                    // master reports early fatal errors (like a failed bind)
                    // only to syslog, so check the port ourselves.
                    let in_use = !port_free(pf.port, pf.ipv6)
                        || pf.wrapper_port.is_some_and(|p| !port_free(p, pf.ipv6));
                    last_err = if in_use {
                        format!(
                            "port {}{} is in use by another process\n{e}",
                            pf.port,
                            pf.wrapper_port
                                .map(|p| format!(" or {p}"))
                                .unwrap_or_default()
                        )
                    } else {
                        e
                    };
                    if !in_use || pf.settings.port.is_some() {
                        break;
                    }
                    // Lost a race for the port; clear the logs and retry.
                    let _ = fs::write(pf.dir().join("maillog"), "");
                }
            }
        }
        Err(last_err)
    }

    /// Queue and data directories (owned by root/postfix as Postfix
    /// requires), Maildir base (owned by the delivery user), log files.
    fn prepare_dirs(&self) -> Result<(), String> {
        let dir = self.dir();
        set_mode(dir, 0o755)?;
        let etc = dir.join("etc");
        fs::create_dir(&etc).map_err(|e| format!("cannot create {}: {e}", etc.display()))?;
        set_mode(&etc, 0o755)?;
        write_file(
            &etc.join("access"),
            "/^reject-/ 550 5.1.1 rejected for testing\n\
             /^defer-/ 450 4.2.0 deferred for testing\n",
        )?;

        let mail = dir.join("mail");
        fs::create_dir(&mail).map_err(|e| format!("cannot create {}: {e}", mail.display()))?;
        set_mode(&mail, 0o755)?;
        if self.privilege == Privilege::Root {
            let (uid, gid) = self.delivery_ids;
            std::os::unix::fs::chown(&mail, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {} to {uid}:{gid}: {e}", mail.display()))?;
        }
        // Created by us (readable by us) before postlogd appends to it.
        write_file(&dir.join("maillog"), "")?;
        set_mode(&dir.join("maillog"), 0o644)?;

        let script = r#"
            set -eu
            q=$1 d=$2
            install -d -o root -m 755 "$q" "$q/pid"
            for s in active bounce corrupt defer deferred flush hold incoming private saved trace; do
                install -d -o postfix -m 700 "$q/$s"
            done
            install -d -o postfix -g postdrop -m 730 "$q/maildrop"
            install -d -o postfix -g postdrop -m 710 "$q/public"
            install -d -o postfix -m 700 "$d"
        "#;
        let out = privileged(self.privilege, "/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("outbox-postfix-setup")
            .arg(dir.join("queue"))
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run the Postfix directory setup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "Postfix directory setup failed ({}); is the `postfix` user/`postdrop` group there?\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    fn write_main_cf(&self) -> Result<(), String> {
        let d = self.dir().display().to_string();
        let (uid, gid) = self.delivery_ids;
        let mut params: Vec<(String, String)> = vec![
            ("compatibility_level", "3.6".into()),
            ("queue_directory", format!("{d}/queue")),
            ("data_directory", format!("{d}/data")),
            ("myhostname", HOSTNAME.into()),
            ("mydomain", "outbox.test".into()),
            ("myorigin", "$myhostname".into()),
            ("mydestination", "".into()),
            ("relay_domains", "".into()),
            ("inet_interfaces", "loopback-only".into()),
            (
                "inet_protocols",
                if self.ipv6 { "ipv4, ipv6" } else { "ipv4" }.into(),
            ),
            (
                "mynetworks",
                if self.ipv6 {
                    "127.0.0.0/8 [::1]/128"
                } else {
                    "127.0.0.0/8"
                }
                .into(),
            ),
            (
                "smtpd_banner",
                format!("$myhostname ESMTP outbox test server {}", self.token),
            ),
            // Mail for example.test goes to one Maildir via virtual(8).
            // (A per-recipient regexp map would need "$1" substitution,
            // which virtual(8) refuses for security reasons.)
            ("virtual_mailbox_domains", DOMAIN.into()),
            ("virtual_mailbox_base", format!("{d}/mail")),
            ("virtual_mailbox_maps", format!("static:{DOMAIN}/")),
            ("virtual_uid_maps", format!("static:{uid}")),
            ("virtual_gid_maps", format!("static:{gid}")),
            ("virtual_minimum_uid", uid.clamp(1, 100).to_string()),
            ("virtual_mailbox_limit", "0".into()),
            ("mailbox_size_limit", "0".into()),
            (
                "message_size_limit",
                self.settings.message_size_limit.to_string(),
            ),
            // Nothing leaves this server.
            (
                "local_transport",
                "error:local delivery is disabled on this test server".into(),
            ),
            (
                "default_transport",
                "error:outbound mail is disabled on this test server".into(),
            ),
            (
                "relay_transport",
                "error:outbound mail is disabled on this test server".into(),
            ),
            ("alias_maps", "".into()),
            ("alias_database", "".into()),
            ("local_recipient_maps", "".into()),
            ("notify_classes", "".into()),
            // Recipient policy.
            (
                "smtpd_relay_restrictions",
                "reject_unauth_destination".into(),
            ),
            (
                "smtpd_recipient_restrictions",
                format!("check_recipient_access regexp:{d}/etc/access, reject_unauth_destination"),
            ),
            // Strictness: refuse bare LF from everyone (the default exempts
            // $mynetworks, i.e. us), and refuse pipelining abuse.
            ("smtpd_forbid_bare_newline", "reject".into()),
            ("smtpd_forbid_bare_newline_exclusions", "".into()),
            ("smtpd_forbid_unauth_pipelining", "yes".into()),
            (
                "smtputf8_enable",
                if self.settings.smtputf8 { "yes" } else { "no" }.into(),
            ),
            // Treat the client as remote: do not add Date/Message-ID/From
            // or rewrite addresses, so tests see what the client sent.
            ("local_header_rewrite_clients", "".into()),
            // Keep Bcc (and Resent-Bcc, Content-Length, Return-Path): a
            // client that leaks Bcc must be caught by the tests.
            ("message_drop_headers", "".into()),
            ("remote_header_rewrite_domain", "".into()),
            ("append_dot_mydomain", "no".into()),
            // No DNS, no delays.
            ("smtpd_peername_lookup", "no".into()),
            ("smtp_dns_support_level", "disabled".into()),
            ("smtp_host_lookup", "native".into()),
            ("lmtp_host_lookup", "native".into()),
            ("smtpd_error_sleep_time", "0".into()),
            ("in_flow_delay", "0".into()),
            // Logging to a file (needs the postlog service in master.cf).
            ("maillog_file", format!("{d}/maillog")),
            ("maillog_file_prefixes", d.clone()),
            ("biff", "no".into()),
            ("readme_directory", "no".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some((cert, key)) = &self.settings.tls {
            for (k, v) in [
                ("smtpd_tls_cert_file", cert.display().to_string()),
                ("smtpd_tls_key_file", key.display().to_string()),
                ("smtpd_tls_security_level", "may".into()),
                ("smtpd_tls_received_header", "yes".into()),
                ("smtpd_tls_loglevel", "1".into()),
            ] {
                params.push((k.to_string(), v));
            }
        }
        for (k, v) in &self.settings.main_cf {
            let v = v.replace("{dir}", &d);
            match params.iter_mut().find(|(pk, _)| pk == k) {
                Some(p) => p.1 = v,
                None => params.push((k.clone(), v)),
            }
        }
        let mut text = String::from("# Generated by the outbox integration tests.\n");
        for (k, v) in params {
            text.push_str(&format!("{k} = {v}\n"));
        }
        write_file(&self.dir().join("etc/main.cf"), &text)
    }

    fn write_master_cf(&self) -> Result<(), String> {
        let mut text = String::from(
            "# Generated by the outbox integration tests. No chroot, no port 25.\n\
             # service type  private unpriv  chroot  wakeup  maxproc command\n",
        );
        text.push_str(&format!("127.0.0.1:{} inet n - n - - smtpd\n", self.port));
        if self.ipv6 {
            text.push_str(&format!("[::1]:{} inet n - n - - smtpd\n", self.port));
        }
        if let Some(port) = self.wrapper_port {
            let wrapper = " inet n - n - - smtpd\n  \
                           -o smtpd_tls_wrappermode=yes\n  \
                           -o smtpd_tls_security_level=encrypt\n";
            text.push_str(&format!("127.0.0.1:{port}{wrapper}"));
            if self.ipv6 {
                text.push_str(&format!("[::1]:{port}{wrapper}"));
            }
        }
        text.push_str(
            "pickup     unix  n - n 60    1 pickup\n\
             cleanup    unix  n - n -     0 cleanup\n\
             qmgr       unix  n - n 300   1 qmgr\n\
             tlsmgr     unix  - - n 1000? 1 tlsmgr\n\
             rewrite    unix  - - n -     - trivial-rewrite\n\
             bounce     unix  - - n -     0 bounce\n\
             defer      unix  - - n -     0 bounce\n\
             trace      unix  - - n -     0 bounce\n\
             verify     unix  - - n -     1 verify\n\
             flush      unix  n - n 1000? 0 flush\n\
             proxymap   unix  - - n -     - proxymap\n\
             proxywrite unix  - - n -     1 proxymap\n\
             smtp       unix  - - n -     - smtp\n\
             relay      unix  - - n -     - smtp\n\
             showq      unix  n - n -     - showq\n\
             error      unix  - - n -     - error\n\
             retry      unix  - - n -     - error\n\
             discard    unix  - - n -     - discard\n\
             local      unix  - n n -     - local\n\
             virtual    unix  - n n -     - virtual\n\
             lmtp       unix  - - n -     - lmtp\n\
             anvil      unix  - - n -     1 anvil\n\
             scache     unix  - - n -     1 scache\n\
             postlog    unix-dgram n - n - 1 postlogd\n",
        );
        write_file(&self.dir().join("etc/master.cf"), &text)
    }

    /// Start master under the watchdog and wait for a 220 from our port.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let dir = self.dir().to_path_buf();
        let stop_file = dir.join("stop");
        match fs::remove_file(&stop_file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", stop_file.display())),
        }
        let log_path = dir.join("master.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot dup {}: {e}", log_path.display()))?;
        let child = privileged(self.privilege, "/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("outbox-postfix-watchdog")
            .arg(Path::new(DAEMON_DIRECTORY).join("master"))
            .arg(dir.join("etc"))
            .arg(std::process::id().to_string())
            .arg(&stop_file)
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start Postfix master: {e}"))?;
        let pid = child.id();
        self.master = Some(Master { child, pid });

        let result = self.wait_ready();
        if let Err(e) = result {
            let logs = self.diagnostics();
            let _ = self.stop_master();
            return Err(format!(
                "Postfix did not start on {}: {e}\n{logs}",
                self.addr()
            ));
        }
        // In sudo mode our child is sudo; master wrote its pid to a file.
        let pid_file = dir.join("queue/pid/master.pid");
        if let Some(m) = self.master.as_mut()
            && let Some(pid) = fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        {
            m.pid = pid;
        }
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr: SocketAddr = self
            .addr()
            .parse()
            .map_err(|e| format!("bad address {}: {e}", self.addr()))?;
        loop {
            if let Some(m) = self.master.as_mut() {
                match m.child.try_wait() {
                    Ok(Some(status)) => return Err(format!("master exited early ({status})")),
                    Ok(None) => {}
                    Err(e) => return Err(format!("cannot wait for master: {e}")),
                }
            }
            if let Ok(greeting) = probe_greeting(addr) {
                if greeting.starts_with("220 ") && greeting.contains(&self.token) {
                    return Ok(());
                }
                return Err(format!(
                    "another server answered on port {}: {greeting:?}",
                    self.port
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("no SMTP greeting within {STARTUP_TIMEOUT:?}"));
            }
            thread::sleep(POLL);
        }
    }

    fn stop_master(&mut self) -> Result<(), String> {
        let Some(mut m) = self.master.take() else {
            return Ok(());
        };
        let stop_file = self.dir().join("stop");
        // The watchdog sees this, sends SIGTERM to master, and master
        // passes it on to its process group.
        write_file(&stop_file, "")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut errors = Vec::new();
        loop {
            match m.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
                Ok(None) => {
                    errors.push(format!("master (pid {}) ignored the stop request", m.pid));
                    kill_hard(self.privilege, &[m.pid]);
                    let _ = m.child.kill();
                    let _ = m.child.wait();
                    break;
                }
                Err(e) => {
                    errors.push(format!("cannot wait for master: {e}"));
                    break;
                }
            }
        }
        // Wait for the daemons master started (its process group).
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let left = live_processes_in_group(m.pid);
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                kill_hard(self.privilege, &left);
                errors.push(format!(
                    "Postfix processes {left:?} outlived master; killed them"
                ));
                break;
            }
            thread::sleep(POLL);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if let Err(e) = self.stop_master() {
            eprintln!("warning: stopping Postfix in {}: {e}", self.dir().display());
        }
        if self.privilege == Privilege::Sudo {
            // The queue belongs to root and postfix.
            let _ = privileged(self.privilege, "rm")
                .arg("-rf")
                .arg(self.dir())
                .status();
        }
        // TempDir's Drop removes whatever is left.
    }
}

/// Runs as `sh -c WATCHDOG name master config_dir test_pid stop_file dir`.
/// Starts a watcher in the background, then becomes master (same pid, so
/// `$$` in the watcher is master's pid). The watcher ignores terminal
/// signals and polls: once the test process is gone or the stop file
/// exists, it sends SIGTERM to master (which terminates its process group).
/// If the test process is gone, nobody else will clean up, so it also
/// removes the instance directory.
const WATCHDOG: &str = r#"
master=$1 config=$2 parent=$3 stop_file=$4 dir=$5
(
    trap '' HUP INT QUIT TERM PIPE
    while kill -0 "$parent" 2>/dev/null && [ ! -e "$stop_file" ]; do
        sleep 0.2
    done
    kill -TERM "$$" 2>/dev/null
    if [ ! -e "$stop_file" ]; then
        i=0
        while kill -0 "$$" 2>/dev/null && [ "$i" -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        sleep 1
        rm -rf -- "$dir" 2>/dev/null || { sleep 2; rm -rf -- "$dir"; }
    fi
) </dev/null >/dev/null 2>&1 &
exec "$master" -c "$config" -s
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Privilege {
    /// We are root and run Postfix commands directly.
    Root,
    /// We run Postfix commands with `sudo -n`.
    Sudo,
}

fn detect_privilege() -> Result<Privilege, String> {
    if proc_status_ids("Uid:").1 == 0 {
        return Ok(Privilege::Root);
    }
    let sudo_ok = Command::new("sudo")
        .args(["-n", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if sudo_ok {
        Ok(Privilege::Sudo)
    } else {
        Err(
            "the Postfix test server must be started as root: run the tests as root \
             or make passwordless `sudo -n` available"
                .into(),
        )
    }
}

fn privileged(privilege: Privilege, program: impl AsRef<OsStr>) -> Command {
    match privilege {
        Privilege::Root => Command::new(program),
        Privilege::Sudo => {
            let mut c = Command::new("sudo");
            c.arg("-n").arg("--").arg(program);
            c
        }
    }
}

/// (real, effective) id from a `Uid:`/`Gid:` line of /proc/self/status.
fn proc_status_ids(field: &str) -> (u32, u32) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?;
            let mut ids = rest.split_whitespace().map(|s| s.parse::<u32>().ok());
            Some((ids.next()??, ids.next()??))
        })
        .unwrap_or_else(|| panic!("cannot read {field} from /proc/self/status"))
}

/// Real uid and gid of this process.
fn current_ids() -> (u32, u32) {
    (proc_status_ids("Uid:").0, proc_status_ids("Gid:").0)
}

/// uid and gid of `user` from /etc/passwd.
fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Where instance directories go: the temp dir, unless Postfix daemons
/// (running as `postfix`) could not reach it or its UNIX socket paths would
/// be too long; then /tmp.
fn instance_base_dir() -> PathBuf {
    let tmp = std::env::temp_dir();
    let traversable = tmp
        .ancestors()
        .all(|p| fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    // e.g. DIR/queue/private/proxywrite must fit in sun_path (108 bytes).
    let short = tmp.as_os_str().len() + 60 < 100;
    if traversable && short {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

fn ipv6_port_free(port: u16) -> bool {
    TcpListener::bind(("::1", port)).is_ok()
}

fn port_free(port: u16, ipv6: bool) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && (!ipv6 || ipv6_port_free(port))
}

/// Connect, read the greeting line, say QUIT.
fn probe_greeting(addr: SocketAddr) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no greeting"));
    }
    let _ = s.write_all(b"QUIT\r\n");
    let _ = reader.read_line(&mut String::new());
    Ok(line.trim_end().to_string())
}

/// Value of the first `Delivered-To:` header in the header block of `path`
/// (empty if none).
fn first_delivered_to(path: &Path) -> String {
    let file = File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut reader = BufReader::new(file.take(1 << 20));
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return String::new(),
            Ok(_) => {}
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        }
        if line == b"\n" || line == b"\r\n" {
            return String::new();
        }
        let text = String::from_utf8_lossy(&line);
        if let Some((name, value)) = text.split_once(':')
            && name.eq_ignore_ascii_case("delivered-to")
        {
            return value.trim().to_string();
        }
    }
}

/// Seconds and microseconds from a Postfix Maildir file name
/// (`<secs>.V<dev>I<inode>M<usecs>.<host>`), for sorting by arrival.
fn maildir_time(name: &OsStr) -> (u64, u64) {
    let name = name.to_string_lossy();
    let mut parts = name.split('.');
    let secs = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let usecs = parts
        .next()
        .and_then(|p| p.rsplit_once('M'))
        .and_then(|(_, u)| u.parse().ok())
        .unwrap_or(0);
    (secs, usecs)
}

/// Live (not zombie) processes whose process group is `pgid`.
fn live_processes_in_group(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..."; comm may contain spaces.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILL `pids` (with the shell's `kill`: procps may be missing).
fn kill_hard(privilege: Privilege, pids: &[u32]) {
    let mut c = privileged(privilege, "/bin/sh");
    c.args(["-c", r#"kill -KILL "$@""#, "kill"]);
    c.args(pids.iter().map(u32::to_string));
    let _ = c.stdin(Stdio::null()).stderr(Stdio::null()).status();
}

fn write_file(path: &Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}
