//! The configuration file: a `[default]` table and named `[account.NAME]` tables.
//!
//! Found at `$OUTBOX_CONFIG`, else `$XDG_CONFIG_HOME/outbox/config.toml` (by default
//! `~/.config/outbox/config.toml`), else `/etc/outbox/config.toml`. An account takes
//! every key it does not set from `[default]`. Unknown keys and bad values are errors
//! that name the file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::envelope::{Address, Mailbox};
use crate::error::Error;
use crate::log::Target;
use crate::smtp::auth::Secret;
use crate::smtp::tls::TlsMode;

/// One account's settings; every key is optional. `Debug` is safe: [`Secret`] hides
/// itself.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// `HOST`, `HOST:PORT` or `[IPv6]:PORT`.
    #[serde(default, deserialize_with = "server")]
    pub server: Option<String>,
    #[serde(default, deserialize_with = "port")]
    pub port: Option<u16>,
    #[serde(default, deserialize_with = "tls")]
    pub tls: Option<TlsMode>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_insecure: Option<bool>,
    #[serde(default, deserialize_with = "auth")]
    pub auth: Option<String>,
    #[serde(default, deserialize_with = "user")]
    pub user: Option<String>,
    pub password_command: Option<String>,
    #[serde(default, deserialize_with = "password")]
    pub password: Option<Secret>,
    #[serde(default, deserialize_with = "from")]
    pub from: Option<Mailbox>,
    #[serde(default, deserialize_with = "ehlo_name")]
    pub ehlo_name: Option<String>,
    #[serde(default, deserialize_with = "timeout")]
    pub timeout: Option<f64>,
    /// Speak LMTP (RFC 2033) to the server, as `--lmtp` does: for the sendmail face
    /// and the queue's flush too.
    pub lmtp: Option<bool>,
    /// Keep a message that cannot be delivered now in the queue (the compose face;
    /// the sendmail face always does).
    pub queue: Option<bool>,
    pub queue_dir: Option<PathBuf>,
    /// Days a queued message is retried before it is moved to `failed`.
    #[serde(default, deserialize_with = "lifetime")]
    pub queue_lifetime: Option<f64>,
    /// Where the log goes: `syslog`, `stderr`, `none` or a file's absolute path (see
    /// [`Target::parse`]); checked here, resolved in the settings.
    #[serde(default, deserialize_with = "log_place")]
    pub log: Option<String>,
    /// The syslog socket, when not /dev/log.
    #[serde(default, deserialize_with = "syslog_socket")]
    pub syslog_socket: Option<PathBuf>,
    /// Who is told of failed messages from the null sender, and gets bounce copies.
    #[serde(default, deserialize_with = "bounce_to")]
    pub bounce_to: Option<Address>,
    /// Whether `bounce_to` gets a copy of every bounce.
    pub bounce_copy: Option<bool>,
    /// A client certificate and its key (PEM), for a relay that authenticates by
    /// certificate.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The server's certificate, pinned: `sha256:HEX`.
    pub tls_fingerprint: Option<String>,
    /// System mode: the largest message a user may submit, in bytes.
    pub max_message_size: Option<u64>,
    /// System mode: how many messages one user may have queued at once.
    pub max_queued_per_user: Option<u64>,
    /// System mode: how many bytes one user may have queued at once.
    pub max_queued_bytes_per_user: Option<u64>,
}

/// Keys that only `[default]` may hold: the queue, its flush and the log are one per
/// user, and a flush goes by `[default]`, so an account's own would never be seen.
const DEFAULT_ONLY: &[&str] = &[
    "queue_dir",
    "queue_lifetime",
    "log",
    "syslog_socket",
    "bounce_to",
    "bounce_copy",
    "max_message_size",
    "max_queued_per_user",
    "max_queued_bytes_per_user",
];

impl Account {
    /// This account over `base`: each key set here wins.
    fn over(self, base: &Account) -> Account {
        let base = base.clone();
        Account {
            server: self.server.or(base.server),
            port: self.port.or(base.port),
            tls: self.tls.or(base.tls),
            tls_ca_file: self.tls_ca_file.or(base.tls_ca_file),
            tls_insecure: self.tls_insecure.or(base.tls_insecure),
            auth: self.auth.or(base.auth),
            user: self.user.or(base.user),
            password_command: self.password_command.or(base.password_command),
            password: self.password.or(base.password),
            from: self.from.or(base.from),
            ehlo_name: self.ehlo_name.or(base.ehlo_name),
            timeout: self.timeout.or(base.timeout),
            lmtp: self.lmtp.or(base.lmtp),
            queue: self.queue.or(base.queue),
            queue_dir: self.queue_dir.or(base.queue_dir),
            queue_lifetime: self.queue_lifetime.or(base.queue_lifetime),
            log: self.log.or(base.log),
            syslog_socket: self.syslog_socket.or(base.syslog_socket),
            bounce_to: self.bounce_to.or(base.bounce_to),
            bounce_copy: self.bounce_copy.or(base.bounce_copy),
            tls_cert: self.tls_cert.or(base.tls_cert),
            tls_key: self.tls_key.or(base.tls_key),
            tls_fingerprint: self.tls_fingerprint.or(base.tls_fingerprint),
            max_message_size: self.max_message_size.or(base.max_message_size),
            max_queued_per_user: self.max_queued_per_user.or(base.max_queued_per_user),
            max_queued_bytes_per_user: self
                .max_queued_bytes_per_user
                .or(base.max_queued_bytes_per_user),
        }
    }

    /// The first key this account sets of those only `[default]` may hold.
    fn default_only_key(&self) -> Option<&'static str> {
        let set = [
            self.queue_dir.is_some(),
            self.queue_lifetime.is_some(),
            self.log.is_some(),
            self.syslog_socket.is_some(),
            self.bounce_to.is_some(),
            self.bounce_copy.is_some(),
            self.max_message_size.is_some(),
            self.max_queued_per_user.is_some(),
            self.max_queued_bytes_per_user.is_some(),
        ];
        DEFAULT_ONLY
            .iter()
            .zip(set)
            .find_map(|(key, set)| set.then_some(*key))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    default: Account,
    #[serde(default)]
    account: BTreeMap<String, Account>,
    #[serde(default)]
    aliases: BTreeMap<String, Aliases>,
}

/// The addresses a local name stands for: `root = "admin@example.com, ops@example.com"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Aliases(pub Vec<Address>);

impl<'de> Deserialize<'de> for Aliases {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Aliases, D::Error> {
        let text = String::deserialize(d)?;
        let list = Mailbox::parse_list(&text).map_err(serde::de::Error::custom)?;
        if list.is_empty() {
            return Err(serde::de::Error::custom(
                "an alias needs at least one address",
            ));
        }
        Ok(Aliases(list.into_iter().map(|m| m.address).collect()))
    }
}

/// A loaded configuration file.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    default: Account,
    accounts: BTreeMap<String, Account>,
    aliases: BTreeMap<String, Aliases>,
    /// Things worth saying that do not stop the run (a password readable by others).
    pub warnings: Vec<String>,
}

/// The machine's configuration: root's and, in system mode, the service's alone.
pub const SYSTEM_PATH: &str = "/etc/outbox/config.toml";

impl Config {
    /// The caller's own configuration file, if it has one: `$OUTBOX_CONFIG` (which
    /// need not exist yet: loading it then fails), else the one under
    /// `$XDG_CONFIG_HOME` or `~/.config` when it exists. Having one keeps a caller
    /// in personal mode on a machine set up for system mode.
    pub fn personal_path() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("OUTBOX_CONFIG").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("outbox/config.toml"))
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
    }

    /// The configuration file in its usual places, if there is one. `$OUTBOX_CONFIG`
    /// must name a file that exists.
    pub fn load_default() -> Result<Option<Config>, Error> {
        if let Some(path) = std::env::var_os("OUTBOX_CONFIG").filter(|p| !p.is_empty()) {
            return Config::load(Path::new(&path)).map(Some);
        }
        let candidates = Config::personal_path()
            .into_iter()
            .chain([PathBuf::from(SYSTEM_PATH)]);
        for path in candidates {
            match std::fs::File::open(&path) {
                Ok(_) => return Config::load(&path).map(Some),
                // A system-wide file kept from other users (it may hold root's password)
                // is not theirs to use: they go on without it, warned.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    let mut config = Config::empty(&path);
                    config.warnings.push(format!(
                        "{} cannot be read ({e}); going on without it",
                        path.display()
                    ));
                    return Ok(Some(config));
                }
                Err(_) => {}
            }
        }
        Ok(None)
    }

    /// This configuration with `dir` as the queue, whatever the file says: the system
    /// queue is the spool's, for every account.
    pub fn with_queue_dir(mut self, dir: PathBuf) -> Config {
        self.default.queue_dir = Some(dir);
        self
    }

    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the configuration {}: {e}",
                path.display()
            ))
        })?;
        let mut config = Config::parse(&text, path)?;
        if config.holds_password() && readable_by_others(path) {
            config.warnings.push(format!(
                "{} holds a password and can be read by other users: chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
        Ok(config)
    }

    /// A configuration that sets nothing, as if `path` were empty.
    pub fn empty(path: &Path) -> Config {
        Config {
            path: path.to_owned(),
            default: Account::default(),
            accounts: BTreeMap::new(),
            aliases: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Parses the text of a configuration file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        let file: File = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end();
            let Some(span) = e.span() else {
                return Error::Config(format!("{}: {message}", path.display()));
            };
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            // The key of the offending line, when it is a `key = value` line.
            let line_text = text.lines().nth(line - 1).unwrap_or_default();
            let key = line_text
                .split_once('=')
                .map(|(k, _)| k.trim())
                .filter(|k| !k.is_empty() && !k.starts_with('['));
            let message = redact_secrets(message, text, line);
            Error::Config(match key {
                Some(key) => format!("{}:{line}: {key}: {message}", path.display()),
                None => format!("{}:{line}: {message}", path.display()),
            })
        })?;
        // The queue is one per user: an account of its own would hold mail that no
        // flush (which reads [default]) ever finds; the log and bounce keys likewise.
        for (name, account) in &file.account {
            if let Some(key) = account.default_only_key() {
                let at = match key_line(text, name, key) {
                    Some(line) => format!("{}:{line}", path.display()),
                    None => path.display().to_string(),
                };
                return Err(Error::Config(format!(
                    "{at}: {key}: [account.{name}] cannot set {key}: it belongs in [default] \
                     (as {}), which the queue's flush goes by",
                    DEFAULT_ONLY.join(", ")
                )));
            }
        }
        Ok(Config {
            path: path.to_owned(),
            default: file.default,
            accounts: file.account,
            aliases: file.aliases,
            warnings: Vec::new(),
        })
    }

    /// The settings to use: the account named by `-A`, else the one whose `from` is
    /// `from` (the address given with `-f`), else `[default]` alone.
    pub fn account(&self, name: Option<&str>, from: Option<&str>) -> Result<Account, Error> {
        if let Some(name) = name {
            let account = self.accounts.get(name).ok_or_else(|| {
                Error::Config(format!(
                    "no account {name:?} in {} (it has: {})",
                    self.path.display(),
                    self.names()
                ))
            })?;
            return Ok(account.clone().over(&self.default));
        }
        if let Some(from) = from {
            let matching: Vec<&String> = self
                .accounts
                .iter()
                .filter(|(_, a)| {
                    a.from
                        .as_ref()
                        .is_some_and(|m| m.address.as_str().eq_ignore_ascii_case(from))
                })
                .map(|(n, _)| n)
                .collect();
            match matching.as_slice() {
                [] => {}
                [one] => return Ok(self.accounts[*one].clone().over(&self.default)),
                many => {
                    return Err(Error::Config(format!(
                        "accounts {} in {} all send from {from}: choose one with -A",
                        many.iter()
                            .map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        self.path.display()
                    )));
                }
            }
        }
        Ok(self.default.clone())
    }

    /// The `[aliases]` table: local names and the addresses they stand for; the name
    /// `default` takes every local name that has no entry of its own.
    pub fn aliases(&self) -> &BTreeMap<String, Aliases> {
        &self.aliases
    }

    fn names(&self) -> String {
        if self.accounts.is_empty() {
            return "no accounts".to_owned();
        }
        self.accounts.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    fn holds_password(&self) -> bool {
        self.default.password.is_some() || self.accounts.values().any(|a| a.password.is_some())
    }
}

/// The line of `text` that sets `key` in the table `[account.NAME]`, when it is set
/// there on a `key = value` line.
fn key_line(text: &str, name: &str, key: &str) -> Option<usize> {
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.split(']').next().unwrap_or_default();
            let header: String = header
                .chars()
                .filter(|c| !matches!(c, ' ' | '\t' | '"' | '\''))
                .collect();
            inside = header == format!("account.{name}");
        } else if inside
            && let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches(['"', '\'']) == key
        {
            return Some(i + 1);
        }
    }
    None
}

/// Keys whose values are secrets: never shown, in an error either.
const SECRET_KEYS: &[&str] = &["password"];

/// `message` (the parser's, about line `line` of `text`) with every secret value of
/// the file taken out. The password's own check never quotes it, and toml's messages
/// name no values today; this keeps it so whatever a parser may say. A value on the
/// line of the error is always taken out; elsewhere, one of three characters or more
/// (a shorter one would take out unrelated words).
fn redact_secrets(message: &str, text: &str, line: usize) -> String {
    let mut message = message.to_owned();
    for (n, value) in secret_values(text) {
        if message.contains(&value) && (n == line || value.chars().count() >= 3) {
            message = message.replace(&value, "<redacted>");
        }
    }
    message
}

/// The values of secret keys in `text`, with their line numbers, as written and
/// without their quotes: `key = value` lines and inline tables alike.
fn secret_values(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line_text) in text.lines().enumerate() {
        for key in SECRET_KEYS {
            let mut rest = line_text;
            while let Some(at) = rest.find(key) {
                rest = &rest[at + key.len()..];
                let Some(value) = rest
                    .trim_start_matches(['"', '\'', ' ', '\t'])
                    .strip_prefix('=')
                else {
                    continue;
                };
                let value = first_value(value);
                if !value.is_empty() {
                    out.push((i + 1, value.to_owned()));
                }
            }
        }
    }
    out
}

/// The value at the start of `text`: what is inside its quotes, or a bare word up to
/// white space, a comment or the end of an inline table's entry.
fn first_value(text: &str) -> &str {
    let text = text.trim_start();
    match text.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let inner = &text[1..];
            inner.find(quote).map_or(inner, |end| &inner[..end])
        }
        _ => text
            .split(|c: char| c.is_whitespace() || matches!(c, '#' | ',' | '}'))
            .next()
            .unwrap_or(text),
    }
}

fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

fn server<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    crate::smtp::transport::ServerAddr::parse(&text).map_err(serde::de::Error::custom)?;
    Ok(Some(text))
}

fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    match u16::deserialize(d)? {
        0 => Err(serde::de::Error::custom("the port must be from 1 to 65535")),
        p => Ok(Some(p)),
    }
}

fn auth<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    if !text.eq_ignore_ascii_case("auto")
        && crate::smtp::auth::Mechanism::from_name(&text).is_none()
    {
        return Err(serde::de::Error::custom(format!(
            "unknown mechanism {text:?}: use {}",
            crate::smtp::auth::MECHANISM_CHOICES
        )));
    }
    Ok(Some(text))
}

fn tls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<TlsMode>, D::Error> {
    let text = String::deserialize(d)?;
    TlsMode::parse(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown TLS mode {text:?}: use auto, starttls, implicit or none"
        ))
    })
}

fn user<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    if !crate::smtp::auth::valid_user(&text) {
        return Err(serde::de::Error::custom(
            "the user name is empty or holds a control character",
        ));
    }
    Ok(Some(text))
}

fn ehlo_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    crate::smtp::command::Command::ehlo(&text).map_err(serde::de::Error::custom)?;
    Ok(Some(text))
}

fn lifetime<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let days = f64::deserialize(d)?;
    if !(days > 0.0 && days <= 365.0) {
        return Err(serde::de::Error::custom(
            "the queue lifetime must be from 0 to 365 days",
        ));
    }
    Ok(Some(days))
}

fn log_place<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    Target::parse(&text, None).map_err(serde::de::Error::custom)?;
    Ok(Some(text))
}

fn syslog_socket<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let text = String::deserialize(d)?;
    if !text.starts_with('/') || text.contains('\0') {
        return Err(serde::de::Error::custom(format!(
            "{text:?} is not a socket: give its absolute path, such as /dev/log"
        )));
    }
    Ok(Some(PathBuf::from(text)))
}

/// One address (`admin@example.com`, or with a name: `Admin <admin@example.com>`).
fn bounce_to<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
    let text = String::deserialize(d)?;
    Mailbox::parse(&text)
        .map(|m| Some(m.address))
        .map_err(serde::de::Error::custom)
}

/// The password, as a string. serde's own type error quotes the value (`invalid
/// type: integer `123456789``), which is the secret itself: this one does not.
fn password<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Text(String),
        Other(serde::de::IgnoredAny),
    }
    match Text::deserialize(d)? {
        Text::Text(text) => Ok(Some(Secret::new(text))),
        Text::Other(_) => Err(serde::de::Error::custom(
            "the password must be a string in quotes (its value is not shown)",
        )),
    }
}

fn from<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Mailbox>, D::Error> {
    let text = String::deserialize(d)?;
    Mailbox::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A time in seconds: a number, or one with the unit `s` or `m` (`30s`, `2m`), as
/// `--timeout` and the configuration's `timeout` take it. The range is checked apart.
pub fn parse_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = match text.strip_suffix('m') {
        Some(n) => (n, 60.0),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    // f64's parser also takes "inf" and "NaN": a time is digits and a point.
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// A number of seconds, or a string with a unit (`"30s"`, `"2m"`), as `--timeout`.
fn timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(f64),
        Text(String),
    }
    const FORMS: &str = "give a number of seconds, or a string with a unit: \"30s\", \"2m\"";
    let secs = match Seconds::deserialize(d) {
        Ok(Seconds::Number(n)) => n,
        Ok(Seconds::Text(text)) => parse_seconds(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a time: {FORMS}")))?,
        Err(_) => return Err(serde::de::Error::custom(FORMS)),
    };
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(serde::de::Error::custom(
            "the timeout must be from 0.001 to 86400 seconds",
        ));
    }
    Ok(Some(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[default]
from = "Me <me@example.test>"
timeout = 30

[account.work]
server = "smtp.work.example.test:587"
tls = "starttls"
user = "me@work.example.test"
password_command = "pass show work"
from = "Me <me@work.example.test>"

[account.home]
server = "smtp.home.example.test"
port = 465
tls = "implicit"
user = "me"
password = "hunter2-secret"
"#;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new("/etc/outbox/config.toml"))
    }

    fn config_error(text: &str) -> String {
        match parse(text) {
            Err(Error::Config(message)) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn accounts_take_what_they_do_not_set_from_default() {
        let c = parse(EXAMPLE).unwrap();
        let work = c.account(Some("work"), None).unwrap();
        assert_eq!(work.server.as_deref(), Some("smtp.work.example.test:587"));
        assert_eq!(work.tls, Some(TlsMode::StartTls));
        assert_eq!(work.timeout, Some(30.0));
        assert_eq!(work.from.unwrap().address.as_str(), "me@work.example.test");
        let home = c.account(Some("home"), None).unwrap();
        assert_eq!(home.port, Some(465));
        assert_eq!(home.from.unwrap().address.as_str(), "me@example.test");
        assert_eq!(home.password.unwrap().expose(), "hunter2-secret");
    }

    #[test]
    fn from_picks_the_account() {
        let c = parse(EXAMPLE).unwrap();
        let a = c.account(None, Some("ME@work.example.test")).unwrap();
        assert_eq!(a.user.as_deref(), Some("me@work.example.test"));
        let d = c.account(None, Some("nobody@example.test")).unwrap();
        assert_eq!(d.server, None);
        assert_eq!(d.timeout, Some(30.0));
        assert!(
            matches!(c.account(Some("nope"), None), Err(Error::Config(m)) if m.contains("work"))
        );
    }

    #[test]
    fn two_accounts_with_one_from_need_a_choice() {
        let c = parse(
            "[account.a]\nfrom = \"x@example.test\"\n[account.b]\nfrom = \"x@example.test\"\n",
        )
        .unwrap();
        assert!(
            matches!(c.account(None, Some("x@example.test")), Err(Error::Config(m)) if m.contains("-A"))
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let m = config_error("[default]\nserver = \"mx.example.test\"\nsevrer = \"typo\"\n");
        assert!(m.starts_with("/etc/outbox/config.toml:3:"), "{m}");
        assert!(m.contains("sevrer"), "{m}");
        let m = config_error("[account.x]\n\ntls = \"sometimes\"\n");
        assert!(m.starts_with("/etc/outbox/config.toml:3:"), "{m}");
        assert!(m.contains("sometimes"), "{m}");
        let m = config_error("[default]\nuser = 5\n");
        assert!(m.starts_with("/etc/outbox/config.toml:2: user:"), "{m}");
        let m = config_error("[default]\nehlo_name = \"two words\"\n");
        assert!(
            m.starts_with("/etc/outbox/config.toml:2: ehlo_name:"),
            "{m}"
        );
        assert!(parse("[default]\ntls = \"STARTTLS\"\n").is_ok());
        for (text, secs) in [
            ("\"5s\"", 5.0),
            ("\"2m\"", 120.0),
            ("\"7\"", 7.0),
            ("2.5", 2.5),
        ] {
            let c = parse(&format!("[default]\ntimeout = {text}\n")).unwrap();
            assert_eq!(c.account(None, None).unwrap().timeout, Some(secs), "{text}");
        }
        let m = config_error("[default]\ntimeout = \"soon\"\n");
        assert!(m.starts_with("/etc/outbox/config.toml:2: timeout:"), "{m}");
        assert!(m.contains("\"30s\""), "{m}");
        for (text, line) in [
            ("[default]\nport = 0\n", 2),
            ("[default]\nuser = \"\"\n", 2),
            ("[default]\nport = 70000\n", 2),
            ("[default]\ntimeout = -1\n", 2),
            ("[default]\nfrom = \"not an address\"\n", 2),
            ("[default]\nserver = \"host:notaport\"\n", 2),
            ("[default]\nauth = \"magic\"\n", 2),
            ("[nothing]\n", 1),
            ("[default\n", 1),
        ] {
            let m = config_error(text);
            assert!(
                m.starts_with(&format!("/etc/outbox/config.toml:{line}:")),
                "{text:?}: {m}"
            );
        }
    }

    #[test]
    fn aliases_and_queue_keys() {
        let c = parse(
            "[default]\nqueue = true\nqueue_dir = \"/tmp/q\"\nqueue_lifetime = 2.5\n\n\
             [aliases]\nroot = \"admin@example.test, Ops <ops@example.test>\"\n\
             default = \"catchall@example.test\"\n",
        )
        .unwrap();
        let a = c.account(None, None).unwrap();
        assert_eq!(a.queue, Some(true));
        assert_eq!(a.queue_lifetime, Some(2.5));
        let root: Vec<&str> = c.aliases()["root"].0.iter().map(|a| a.as_str()).collect();
        assert_eq!(root, ["admin@example.test", "ops@example.test"]);
        let m = config_error("[aliases]\nroot = \"not an address\"\n");
        assert!(m.starts_with("/etc/outbox/config.toml:2: root:"), "{m}");
        let m = config_error("[account.a]\nqueue_dir = \"/tmp/q\"\n");
        assert!(
            m.starts_with("/etc/outbox/config.toml:2: queue_dir:"),
            "{m}"
        );
        assert!(m.contains("belongs in [default]"), "{m}");
        let m = config_error("[default]\nqueue_lifetime = 0\n");
        assert!(m.contains("queue_lifetime"), "{m}");
    }

    #[test]
    fn log_and_bounce_keys() {
        let c = parse(
            "[default]\nlog = \"/var/log/outbox.log\"\nsyslog_socket = \"/run/log\"\n\
             bounce_to = \"Admin <admin@example.test>\"\nbounce_copy = true\n\
             [account.a]\nserver = \"mx.example.test\"\n",
        )
        .unwrap();
        for account in [
            c.account(None, None).unwrap(),
            c.account(Some("a"), None).unwrap(),
        ] {
            assert_eq!(account.log.as_deref(), Some("/var/log/outbox.log"));
            assert_eq!(account.syslog_socket, Some(PathBuf::from("/run/log")));
            assert_eq!(
                account.bounce_to,
                Some(Address::new("admin@example.test").unwrap())
            );
            assert_eq!(account.bounce_copy, Some(true));
        }
        for value in ["syslog", "stderr", "none", "/tmp/x.log"] {
            let c = parse(&format!("[default]\nlog = \"{value}\"\n")).unwrap();
            assert_eq!(c.account(None, None).unwrap().log.as_deref(), Some(value));
        }
        let c = parse("[default]\nbounce_to = \"root\"\nbounce_copy = false\n").unwrap();
        let d = c.account(None, None).unwrap();
        assert_eq!(d.bounce_to, Some(Address::new("root").unwrap()));
        assert_eq!(d.bounce_copy, Some(false));
        let d = parse("[default]\n").unwrap().account(None, None).unwrap();
        assert_eq!(
            (d.log, d.syslog_socket, d.bounce_to, d.bounce_copy),
            (None, None, None, None)
        );
    }

    #[test]
    fn bad_log_and_bounce_values_name_the_key_and_line() {
        for (text, start, says) in [
            (
                "[default]\n\nlog = \"outbox.log\"\n",
                "/etc/outbox/config.toml:3: log:",
                "give syslog, stderr, none or the absolute path of a file",
            ),
            (
                "[default]\nlog = 1\n",
                "/etc/outbox/config.toml:2: log:",
                "string",
            ),
            (
                "[default]\nsyslog_socket = \"dev/log\"\n",
                "/etc/outbox/config.toml:2: syslog_socket:",
                "give its absolute path",
            ),
            (
                "[default]\nbounce_to = \"not an address\"\n",
                "/etc/outbox/config.toml:2: bounce_to:",
                "invalid address",
            ),
            (
                "[default]\nbounce_to = \"<>\"\n",
                "/etc/outbox/config.toml:2: bounce_to:",
                "",
            ),
            (
                "[default]\nbounce_to = \"a@example.test, b@example.test\"\n",
                "/etc/outbox/config.toml:2: bounce_to:",
                "",
            ),
            (
                "[default]\nbounce_copy = \"yes\"\n",
                "/etc/outbox/config.toml:2: bounce_copy:",
                "bool",
            ),
        ] {
            let m = config_error(text);
            assert!(m.starts_with(start), "{text:?}: {m}");
            assert!(m.contains(says), "{text:?}: {m}");
        }
    }

    #[test]
    fn an_account_cannot_set_what_belongs_in_default() {
        for (key, value) in [
            ("log", "\"none\""),
            ("syslog_socket", "\"/run/log\""),
            ("bounce_to", "\"admin@example.test\""),
            ("bounce_copy", "true"),
            ("queue_lifetime", "3"),
            ("max_queued_per_user", "10"),
        ] {
            let text = format!(
                "[default]\nlog = \"syslog\"\n\n[account.\"work\"]\nserver = \"mx.example.test\"\n\
                 {key} = {value}\n"
            );
            assert_eq!(
                config_error(&text),
                format!(
                    "/etc/outbox/config.toml:6: {key}: [account.work] cannot set {key}: it \
                     belongs in [default] (as queue_dir, queue_lifetime, log, syslog_socket, \
                     bounce_to, bounce_copy, max_message_size, max_queued_per_user, \
                     max_queued_bytes_per_user), which the queue's flush goes by"
                )
            );
        }
        // Set some other way than on a line of its table, it is refused all the same.
        let m = config_error("[account]\nwork.bounce_copy = true\n");
        assert!(
            m.starts_with("/etc/outbox/config.toml: bounce_copy: [account.work]"),
            "{m}"
        );
    }

    #[test]
    fn a_password_of_the_wrong_type_or_form_is_never_shown_in_the_error() {
        let secret = "123456789";
        for (text, line) in [
            ("[default]\npassword = 123456789\n", 2),
            ("[default]\npassword = 123456789.5\n", 2),
            ("[default]\npassword = [\"123456789\"]\n", 2),
            ("[default]\npassword = { v = \"123456789\" }\n", 2),
            ("[default]\npassword = 1234-05-27T07:32:00Z\n", 2),
            ("[account.a]\nuser = \"me\"\npassword = 123456789\n", 3),
            ("default.password = 123456789\n", 1),
            ("[default]\npassword = 123456789 true\n", 2),
            ("[default]\npassword = 123456789abc\n", 2),
            ("[default]\npassword = \"123456789\n", 2),
            ("[default]\npassword = \"1234\\q56789\"\n", 2),
            ("[default]\npassword = '123456789' '123456789'\n", 2),
            (
                "[default]\npassword = \"123456789\"\npassword = \"123456789\"\n",
                3,
            ),
            (
                "[account.a]\npassword = \"123456789\"\ntimeout = \"123456789\"\n",
                3,
            ),
        ] {
            let m = config_error(text);
            assert!(
                m.starts_with(&format!("/etc/outbox/config.toml:{line}:")),
                "{text:?}: {m}"
            );
            assert!(!m.contains(secret), "{text:?}: {m}");
            assert!(!m.contains("12345"), "{text:?}: {m}");
        }
        let m = config_error("[default]\npassword = 123456789\n");
        assert!(m.contains("password must be a string"), "{m}");
    }

    #[test]
    fn secret_values_are_found_in_lines_and_inline_tables() {
        let found = secret_values(
            "[default]\npassword = \"s3cret\" # note\naccount.a = { user = \"u\", password = 'p4ss' }\n",
        );
        let values: Vec<&str> = found.iter().map(|(_, v)| v.as_str()).collect();
        assert!(values.contains(&"s3cret"), "{found:?}");
        assert!(values.contains(&"p4ss"), "{found:?}");
        assert_eq!(
            redact_secrets("got `p4ss`", "x = { password = 'p4ss' }", 5),
            "got `<redacted>`"
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = parse(EXAMPLE).unwrap();
        let shown = format!("{c:?} {:?}", c.account(Some("home"), None).unwrap());
        assert!(!shown.contains("hunter2-secret"), "{shown}");
    }

    #[test]
    fn a_password_readable_by_others_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("outbox-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = Config::load(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let closed = Config::load(&path).unwrap();
        std::fs::write(&path, "[default]\nuser = \"me\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let no_password = Config::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(open.warnings.len(), 1, "{:?}", open.warnings);
        assert!(open.warnings[0].contains("chmod 600"));
        assert!(closed.warnings.is_empty());
        assert!(no_password.warnings.is_empty());
    }
}
