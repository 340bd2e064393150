//! An SMTP server with TLS and AUTH variants, for the tests Postfix cannot
//! serve (it has no SASL here): `smtpd.py` next to this file, an aiosmtpd
//! server run with `/usr/bin/python3` (Debian's python3-aiosmtpd 1.4).
//!
//! # What the server does
//!
//! * Listens on `127.0.0.1:<port>` (a free port the server picks itself)
//!   and, if possible, on `[::1]` with the same port ([`SmtpServer::addr_v6`]).
//!   Greets with `220 mx.outbox.test ESMTP outbox aiosmtpd test server`.
//! * Accepts any sender and any recipient, records every message
//!   ([`SmtpServer::messages`], [`SmtpServer::wait_for_messages`]) and
//!   answers `250 2.0.0 OK: queued`. Advertises SIZE (32 MiB), 8BITMIME,
//!   SMTPUTF8, HELP; no PIPELINING, no CHUNKING, no DSN.
//! * TLS, by [`Mode`]: none; STARTTLS (advertised until TLS is on); or
//!   implicit TLS (the greeting comes after the handshake). The certificate
//!   is [`TestPki::server_cert`] unless [`Builder::cert`] names another pair
//!   (e.g. [`TestPki::wrong_host_cert`]). The server does not ask for
//!   client certificates. It remembers the SNI name the client sent.
//! * AUTH with the mechanisms given to [`Builder::auth`], advertised in that
//!   order (`250-AUTH SCRAM-SHA-256 PLAIN`). Implemented: `PLAIN`, `LOGIN`,
//!   `CRAM-MD5`, `SCRAM-SHA-256` (RFC 5802/7677: i=4096, random salt and
//!   nonce, no channel binding; the server-final `v=...` comes in a 334 that
//!   the client answers with an empty line, then 235; the password is
//!   SASLprep'ed, i.e. NFKC-normalised), `XOAUTH2` (the bearer token must be
//!   the user's password; on failure a 334 with a base64 JSON error, which
//!   the client answers with an empty line, then 535). Any other name is
//!   only advertised (using it gets 504). Mechanism names in `AUTH` are
//!   case-insensitive; initial responses are accepted (`=` for empty)
//!   except for CRAM-MD5.
//! * Replies: success `235 2.7.0 Authentication successful`; wrong user or
//!   password `535 5.7.8 Authentication credentials invalid`; malformed
//!   exchange or bad base64 `501 5.5.2 ...`; client cancelled with `*`:
//!   `501 5.7.0 Auth aborted`; unknown mechanism `504 5.5.4`; AUTH twice
//!   `503`; AUTH before TLS when [`Builder::auth_require_tls`] (the
//!   default): `538 5.7.11 Encryption required ...` (and AUTH is not
//!   advertised before TLS); no mechanisms configured: AUTH not advertised,
//!   `502 5.5.1`. [`Builder::auth_required`]: MAIL/RCPT/DATA before AUTH
//!   get `530 5.7.0 Authentication required`. [`Builder::require_starttls`]:
//!   anything but EHLO/NOOP/QUIT/STARTTLS before STARTTLS gets
//!   `530 Must issue a STARTTLS command first`.
//! * After STARTTLS, the session starts over (not authenticated, EHLO
//!   needed), as RFC 3207 says.
//! * For every AUTH exchange that got as far as a user name or a verdict,
//!   an [`AuthAttempt`] ([`SmtpServer::auth_attempts`]).
//! * Logs every command (AUTH arguments masked) and event to
//!   [`SmtpServer::log`].
//!
//! # Use
//!
//! ```ignore
//! let server = SmtpServer::builder()
//!     .starttls()                        // Mode::StartTls, test PKI cert
//!     .auth(&["SCRAM-SHA-256", "PLAIN"])
//!     .users(&[("alice", "pässwörd")])
//!     .start();
//! // ... outbox sends via server.addr(), trusting TestPki::shared().ca_cert() ...
//! let msgs = server.wait_for_messages(1, Duration::from_secs(10));
//! assert_eq!(msgs[0].auth_user.as_deref(), Some("alice"));
//! assert_eq!(msgs[0].mechanism.as_deref(), Some("SCRAM-SHA-256"));
//! assert!(msgs[0].tls);
//! ```
//!
//! Each server is a child process with its own temporary directory; it is
//! killed and the directory removed on drop. If the test process dies
//! without dropping it, the server notices (its parent is gone) within
//! 0.2 s, exits and removes its directory.

use super::TempDir;
use super::tls::TestPki;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The Python interpreter with python3-aiosmtpd (not a pyenv one on PATH).
pub const PYTHON: &str = "/usr/bin/python3";
/// The server's name in its greeting and EHLO reply.
pub const HOSTNAME: &str = "mx.outbox.test";
/// The mechanisms `smtpd.py` implements.
pub const MECHANISMS: [&str; 5] = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2"];

const SCRIPT: &str = include_str!("smtpd.py");
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// How the server uses TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No TLS at all; STARTTLS is not advertised (454 if tried).
    Plain,
    /// Plain connection, STARTTLS advertised and available.
    StartTls,
    /// TLS from the first byte (port-465 style, RFC 8314).
    Implicit,
}

/// Settings for a new server; [`Builder::start`] starts it.
#[derive(Clone, Debug)]
pub struct Builder {
    mode: Mode,
    cert: Option<(PathBuf, PathBuf)>,
    mechanisms: Vec<String>,
    users: Vec<(String, String)>,
    auth_require_tls: bool,
    require_starttls: bool,
    auth_required: bool,
    ipv6: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            mode: Mode::Plain,
            cert: None,
            mechanisms: Vec::new(),
            users: Vec::new(),
            auth_require_tls: true,
            require_starttls: false,
            auth_required: false,
            ipv6: true,
        }
    }
}

impl Builder {
    /// TLS mode (default [`Mode::Plain`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Shorthand for `.mode(Mode::StartTls)`.
    pub fn starttls(self) -> Self {
        self.mode(Mode::StartTls)
    }

    /// Shorthand for `.mode(Mode::Implicit)`.
    pub fn implicit_tls(self) -> Self {
        self.mode(Mode::Implicit)
    }

    /// Certificate and key (PEM) to serve instead of the test PKI's
    /// server pair.
    pub fn cert(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.cert = Some((cert.as_ref().to_path_buf(), key.as_ref().to_path_buf()));
        self
    }

    /// AUTH mechanisms to advertise, in this order (default: none, no AUTH).
    pub fn auth(mut self, mechanisms: &[&str]) -> Self {
        self.mechanisms = mechanisms.iter().map(|m| m.to_string()).collect();
        self
    }

    /// Accounts (user, password); passwords may be any UTF-8. For XOAUTH2
    /// the password is the bearer token.
    pub fn users(mut self, users: &[(&str, &str)]) -> Self {
        self.users
            .extend(users.iter().map(|(u, p)| (u.to_string(), p.to_string())));
        self
    }

    /// One more account.
    pub fn user(self, user: &str, password: &str) -> Self {
        self.users(&[(user, password)])
    }

    /// Offer and accept AUTH only over TLS (default: true, like real
    /// servers). Irrelevant in [`Mode::Implicit`].
    pub fn auth_require_tls(mut self, yes: bool) -> Self {
        self.auth_require_tls = yes;
        self
    }

    /// Refuse mail before STARTTLS (530); only with [`Mode::StartTls`].
    pub fn require_starttls(mut self, yes: bool) -> Self {
        self.require_starttls = yes;
        self
    }

    /// Refuse MAIL/RCPT/DATA before a successful AUTH (530 5.7.0).
    pub fn auth_required(mut self, yes: bool) -> Self {
        self.auth_required = yes;
        self
    }

    /// Also listen on `[::1]` (same port) if possible (default: true).
    pub fn ipv6(mut self, yes: bool) -> Self {
        self.ipv6 = yes;
        self
    }

    /// Start the server; panics (with its log) if it does not come up.
    pub fn start(self) -> SmtpServer {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start the server, or describe why it did not come up.
    pub fn try_start(self) -> Result<SmtpServer, String> {
        SmtpServer::create(self)
    }
}

/// One message the server accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The reverse path, without `<>` (empty for the null sender).
    pub mail_from: String,
    /// `MAIL FROM` parameters as sent, e.g. `["SIZE=123", "BODY=8BITMIME"]`.
    pub mail_options: Vec<String>,
    /// The recipients, in order, without `<>`.
    pub rcpt_tos: Vec<String>,
    /// The message exactly as received: CRLF line endings, dot-stuffing
    /// undone, ending with the CRLF before the final `.`.
    pub data: Vec<u8>,
    /// The authenticated user, if the session authenticated.
    pub auth_user: Option<String>,
    /// The mechanism that authenticated it, e.g. `"SCRAM-SHA-256"`.
    pub mechanism: Option<String>,
    /// Whether the session was encrypted (STARTTLS or implicit).
    pub tls: bool,
    /// e.g. `"TLSv1.3"`.
    pub tls_version: Option<String>,
    /// The SNI name the client sent in its TLS handshake, if any.
    pub sni: Option<String>,
    /// The argument of the last EHLO/HELO.
    pub helo: String,
}

/// One AUTH exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthAttempt {
    pub mechanism: String,
    /// The user name the client gave (if it got that far).
    pub user: Option<String>,
    pub success: bool,
    /// Whether the session was encrypted.
    pub tls: bool,
}

/// A running server; see the module documentation. Killed on drop.
#[derive(Debug)]
pub struct SmtpServer {
    dir: TempDir,
    child: Child,
    port: u16,
    port_v6: Option<u16>,
    mode: Mode,
}

impl SmtpServer {
    /// Settings for a new server.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `"[::1]:PORT"` if the server also listens on IPv6 loopback.
    pub fn addr_v6(&self) -> Option<String> {
        self.port_v6.map(|p| format!("[::1]:{p}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Process id of the server (a `python3`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's directory (config, log, records).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far (its stderr).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir().join("log")).unwrap_or_default()).into_owned()
    }

    /// Every message accepted so far, oldest first. Does not wait.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        read_records(&self.dir().join("messages"))
            .into_iter()
            .map(|r| ReceivedMessage {
                mail_from: r.text("mail_from"),
                mail_options: r.texts("mail_option"),
                rcpt_tos: r.texts("rcpt_to"),
                data: r.get("data").cloned().unwrap_or_default(),
                auth_user: r.opt_text("auth_user"),
                mechanism: r.opt_text("mechanism"),
                tls: r.flag("tls"),
                tls_version: r.opt_text("tls_version"),
                sni: r.opt_text("sni"),
                helo: r.text("helo"),
            })
            .collect()
    }

    /// Wait until exactly `count` messages were accepted and return them.
    /// Panics, with the log, on timeout or if more than `count` arrived.
    #[track_caller]
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.messages();
            if msgs.len() > count {
                panic!(
                    "expected {count} message(s), but {} arrived:\n{msgs:#?}\n--- server log ---\n{}",
                    msgs.len(),
                    self.log()
                );
            }
            if msgs.len() == count {
                return msgs;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {count} message(s); got {}\n--- server log ---\n{}",
                    msgs.len(),
                    self.log()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Every AUTH exchange so far, oldest first. Does not wait: an attempt
    /// is recorded before the reply to it is sent.
    pub fn auth_attempts(&self) -> Vec<AuthAttempt> {
        read_records(&self.dir().join("auth"))
            .into_iter()
            .map(|r| AuthAttempt {
                mechanism: r.text("mechanism"),
                user: r.opt_text("user"),
                success: r.flag("success"),
                tls: r.flag("tls"),
            })
            .collect()
    }

    fn create(settings: Builder) -> Result<SmtpServer, String> {
        if !Path::new(PYTHON).exists() {
            return Err(format!(
                "{PYTHON} is missing; run scripts/test.sh, which installs python3-aiosmtpd"
            ));
        }
        let (cert, key) = match (&settings.cert, settings.mode) {
            (Some(pair), _) => (Some(pair.0.clone()), Some(pair.1.clone())),
            (None, Mode::Plain) => (None, None),
            (None, _) => {
                let pki = TestPki::shared();
                (
                    Some(pki.server_cert().to_path_buf()),
                    Some(pki.server_key().to_path_buf()),
                )
            }
        };
        let dir = TempDir::new("outbox-smtpd");
        let script = dir.join("smtpd.py");
        fs::write(&script, SCRIPT)
            .map_err(|e| format!("cannot write {}: {e}", script.display()))?;

        let mut json = String::from("{");
        let path = |p: &Path| json_str(&p.to_string_lossy());
        let _ = write!(json, "\"dir\": {}", path(dir.path()));
        let mode = match settings.mode {
            Mode::Plain => "plain",
            Mode::StartTls => "starttls",
            Mode::Implicit => "implicit",
        };
        let _ = write!(json, ", \"mode\": \"{mode}\"");
        if let (Some(c), Some(k)) = (&cert, &key) {
            let _ = write!(json, ", \"cert\": {}, \"key\": {}", path(c), path(k));
        }
        let mechs: Vec<String> = settings.mechanisms.iter().map(|m| json_str(m)).collect();
        let _ = write!(json, ", \"mechanisms\": [{}]", mechs.join(", "));
        let users: Vec<String> = settings
            .users
            .iter()
            .map(|(u, p)| format!("{}: {}", json_str(u), json_str(p)))
            .collect();
        let _ = write!(json, ", \"users\": {{{}}}", users.join(", "));
        let _ = write!(
            json,
            ", \"auth_require_tls\": {}, \"require_starttls\": {}, \"auth_required\": {}, \
             \"hostname\": \"{HOSTNAME}\", \"ipv6\": {}, \"parent_pid\": {}}}",
            settings.auth_require_tls,
            settings.require_starttls,
            settings.auth_required,
            settings.ipv6,
            std::process::id()
        );
        let config = dir.join("config.json");
        fs::write(&config, json).map_err(|e| format!("cannot write {}: {e}", config.display()))?;

        let log_path = dir.join("log");
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot dup {}: {e}", log_path.display()))?;
        let child = Command::new(PYTHON)
            .arg("-u")
            .arg(&script)
            .arg(&config)
            .current_dir(dir.path())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {PYTHON}: {e}"))?;
        let mut server = SmtpServer {
            dir,
            child,
            port: 0,
            port_v6: None,
            mode: settings.mode,
        };
        match server.wait_ready() {
            Ok(()) => {
                eprintln!(
                    "[aiosmtpd] test server ({mode}) in {} listening on {}{}",
                    server.dir().display(),
                    server.addr(),
                    server
                        .addr_v6()
                        .map(|a| format!(" and {a}"))
                        .unwrap_or_default()
                );
                Ok(server)
            }
            Err(e) => Err(format!(
                "the aiosmtpd test server did not start: {e}\n--- server log ---\n{}",
                server.log()
            )),
        }
    }

    /// Wait for the `ready` file (written after the server answered its
    /// own probe, after a TLS handshake in implicit mode), then, for the
    /// plain-text modes, read a 220 ourselves.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let ready = self.dir().join("ready");
        let ports = loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| format!("cannot wait for the server: {e}"))?
            {
                return Err(format!("the server exited early ({status})"));
            }
            if let Ok(text) = fs::read_to_string(&ready) {
                break text;
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready within {STARTUP_TIMEOUT:?}"));
            }
            thread::sleep(POLL);
        };
        let mut words = ports.split_whitespace().map(|w| w.parse::<u16>());
        match (words.next(), words.next()) {
            (Some(Ok(p4)), Some(Ok(p6))) => {
                self.port = p4;
                self.port_v6 = (p6 != 0).then_some(p6);
            }
            _ => return Err(format!("bad ready file: {ports:?}")),
        }
        if self.mode != Mode::Implicit {
            let greeting = greeting(&self.addr()).map_err(|e| format!("no greeting: {e}"))?;
            if !greeting.starts_with("220 ") {
                return Err(format!("unexpected greeting {greeting:?}"));
            }
        }
        Ok(())
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // TempDir's Drop removes the directory.
    }
}

/// Connect, read the greeting line, say QUIT.
fn greeting(addr: &str) -> io::Result<String> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let _ = s.write_all(b"QUIT\r\n");
    let _ = reader.read_line(&mut String::new());
    Ok(line.trim_end().to_string())
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One record file: `KEY HEX` lines.
struct Record(Vec<(String, Vec<u8>)>);

impl Record {
    fn get(&self, key: &str) -> Option<&Vec<u8>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn opt_text(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn text(&self, key: &str) -> String {
        self.opt_text(key).unwrap_or_default()
    }

    fn texts(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v == b"1")
    }
}

/// All complete records in `dir`, in the order they were written.
fn read_records(dir: &Path) -> Vec<Record> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let path = dir.join(&n);
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            Record(
                text.lines()
                    .filter_map(|l| l.split_once(' '))
                    .map(|(k, hex)| (k.to_string(), unhex(hex, &path)))
                    .collect(),
            )
        })
        .collect()
}

fn unhex(hex: &str, path: &Path) -> Vec<u8> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => panic!("bad hex in {}", path.display()),
    };
    hex.as_bytes()
        .chunks(2)
        .map(|p| {
            assert!(p.len() == 2, "odd hex length in {}", path.display());
            digit(p[0]) << 4 | digit(p[1])
        })
        .collect()
}
