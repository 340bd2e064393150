//! `outbox probe`: what a server offers and how it protects the connection, found
//! without sending mail — the greeting, the EHLO keywords in clear and under TLS, the
//! TLS version and cipher, the certificate chain as the server sent it (trusted? for
//! the name connected to? how many days left?), the time of each step, and findings
//! that say what is wrong or worth knowing, each in one line.
//!
//! [`probe`] runs the session (`run`, with the TLS inspection in `inspect`); the
//! [`Probe`] it returns is plain data, judged here ([`Probe::findings`],
//! [`Probe::exit_code`]) and shown by `text` (for a person), `json` (`--json`) and
//! `check` (a monitoring plugin's status line and exit code), all pure.

mod check;
mod findings;
mod inspect;
mod json;
mod run;
#[cfg(test)]
mod tests;
mod text;

use std::time::Duration;

use serde::Serialize;

use crate::exit;
use crate::smtp::extension::Capabilities;
use crate::smtp::reply::sanitize;
use crate::smtp::tls::TlsMode;

pub use check::{Status, check_failure, check_report};
pub use findings::{Finding, Level};
pub use json::{json, json_failure};
pub use run::probe;
pub use text::text;

/// The days left on the server's certificate under which a finding is a warning,
/// and a problem (`--warn-days`, `--critical-days`): 30 days, a month to renew (and
/// the time Let's Encrypt's clients renew at); 7, a week before mail stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    pub warn_days: u32,
    pub critical_days: u32,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            warn_days: 30,
            critical_days: 7,
        }
    }
}

/// One EHLO keyword and its parameters, as the server announced them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Extension {
    pub keyword: String,
    pub params: Vec<String>,
}

/// What the server said to EHLO (or HELO, when it refused EHLO).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Offered {
    /// The name the server gave on the first line of its reply.
    pub name: String,
    /// The server refused EHLO and took HELO: no extension at all (RFC 5321 §4.1.4).
    pub helo: bool,
    pub extensions: Vec<Extension>,
}

impl Offered {
    /// What `capabilities` hold, sanitised (it comes from the network).
    pub fn of(capabilities: &Capabilities) -> Offered {
        let extensions = capabilities
            .keywords()
            .map(|k| Extension {
                keyword: sanitize(k),
                params: capabilities
                    .params(k)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| sanitize(p))
                    .collect(),
            })
            .collect();
        Offered {
            name: sanitize(&capabilities.domain),
            helo: false,
            extensions,
        }
    }

    pub fn get(&self, keyword: &str) -> Option<&Extension> {
        self.extensions
            .iter()
            .find(|e| e.keyword.eq_ignore_ascii_case(keyword))
    }

    pub fn has(&self, keyword: &str) -> bool {
        self.get(keyword).is_some()
    }

    /// The SASL mechanisms offered (RFC 4954 §3).
    pub fn auth(&self) -> Vec<String> {
        self.get("AUTH").map_or_else(Vec::new, |e| e.params.clone())
    }
}

/// How TLS began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Began {
    /// From the first byte (RFC 8314 §3.3), as on port 465.
    Implicit,
    /// After STARTTLS (RFC 3207).
    StartTls,
}

/// One certificate of the chain the server sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Certificate {
    pub subject: String,
    pub issuer: String,
    /// The DNS names of the subject alternative names.
    pub dns_names: Vec<String>,
    /// The IP addresses of the subject alternative names.
    pub ip_addresses: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The SHA-256 fingerprint of the DER, as `openssl x509 -fingerprint -sha256`
    /// prints it (`AB:CD:…`).
    pub sha256: String,
}

/// One error OpenSSL's verification found, at `depth` in the chain (0: the server's
/// own certificate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyError {
    pub depth: u32,
    /// OpenSSL's `X509_V_ERR_*` number.
    pub code: i32,
    /// OpenSSL's text for it: "unable to get local issuer certificate".
    pub text: String,
}

/// OpenSSL's `X509_V_ERR_HOSTNAME_MISMATCH` and `X509_V_ERR_IP_ADDRESS_MISMATCH`
/// (x509_vfy.h): the certificate does not name the host; anything else is about the
/// chain.
const NAME_ERRORS: [i32; 2] = [62, 64];

/// The TLS session and what the verification found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsReport {
    pub began: Began,
    pub version: String,
    pub cipher: String,
    /// As the server sent it, its own certificate first.
    pub chain: Vec<Certificate>,
    /// Every error found in verifying the chain against the trusted CAs (the system
    /// store and `--tls-ca-file`) and the name; none: trusted.
    pub errors: Vec<VerifyError>,
    /// The name the certificate must hold: the host connected to, a DNS name or an IP
    /// address.
    pub name: String,
    /// `--tls-fingerprint`, and whether the server's certificate has it.
    pub pinned: Option<Pin>,
    /// Whether outbox checks the certificate with these settings (not with
    /// `--tls-insecure`).
    pub checked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pin {
    /// `sha256:AB:CD:…`.
    pub fingerprint: String,
    pub matches: bool,
}

/// Whether outbox would accept the certificate, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Issued by a trusted CA, for the name connected to.
    Trusted,
    /// The pinned fingerprint, which stands for a CA and the name.
    Pinned,
    /// `--tls-insecure`: not checked.
    Unchecked,
    /// Refused: the reasons, each one line.
    Refused(Vec<String>),
}

impl TlsReport {
    /// Whether the certificate names the host connected to.
    pub fn name_matches(&self) -> bool {
        !self.errors.iter().any(|e| NAME_ERRORS.contains(&e.code))
    }

    /// The errors of the chain itself, the name aside.
    pub fn chain_errors(&self) -> impl Iterator<Item = &VerifyError> {
        self.errors
            .iter()
            .filter(|e| !NAME_ERRORS.contains(&e.code))
    }

    /// Whether the chain leads to a trusted CA, whatever it names.
    pub fn chain_trusted(&self) -> bool {
        self.chain_errors().next().is_none()
    }

    /// The chain's errors, one text each: `unable to get local issuer certificate`, or
    /// with the depth where it is not the server's own certificate.
    pub fn chain_reasons(&self) -> Vec<String> {
        let mut reasons: Vec<String> = Vec::new();
        for e in self.chain_errors() {
            let text = match e.depth {
                0 => e.text.clone(),
                d => format!("{} (certificate {} of the chain)", e.text, d + 1),
            };
            if !reasons.contains(&text) {
                reasons.push(text);
            }
        }
        reasons
    }

    /// What outbox would make of the certificate with these settings.
    pub fn trust(&self) -> Trust {
        if !self.checked {
            return Trust::Unchecked;
        }
        // Nothing was verified without a certificate (an anonymous cipher).
        if self.chain.is_empty() {
            return Trust::Refused(vec!["the server showed no certificate".into()]);
        }
        if let Some(pin) = &self.pinned {
            return match (pin.matches, self.chain.first()) {
                (true, _) => Trust::Pinned,
                (false, leaf) => Trust::Refused(vec![format!(
                    "its fingerprint is {}, not the pinned {}",
                    leaf.map_or_else(|| "none".to_owned(), |c| format!("sha256:{}", c.sha256)),
                    pin.fingerprint
                )]),
            };
        }
        let mut reasons = self.chain_reasons();
        if !self.name_matches() {
            reasons.push(format!("it is not for {}", self.name));
        }
        match reasons.is_empty() {
            true => Trust::Trusted,
            false => Trust::Refused(reasons),
        }
    }
}

/// A step of the probe, timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Connect,
    TlsHandshake,
    Greeting,
    /// EHLO (or HELO) in clear, or under implicit TLS.
    Ehlo,
    /// The STARTTLS command and its reply (the handshake is [`Step::TlsHandshake`]).
    StartTls,
    /// EHLO again under TLS after STARTTLS.
    EhloTls,
}

impl Step {
    pub fn label(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::TlsHandshake => "TLS handshake",
            Step::Greeting => "greeting",
            Step::Ehlo => "EHLO",
            Step::StartTls => "STARTTLS",
            Step::EhloTls => "EHLO under TLS",
        }
    }

    /// The name for machines (`--json`).
    pub fn key(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::TlsHandshake => "tls_handshake",
            Step::Greeting => "greeting",
            Step::Ehlo => "ehlo",
            Step::StartTls => "starttls",
            Step::EhloTls => "ehlo_tls",
        }
    }
}

/// What stopped the probe after the greeting (STARTTLS refused, a failed handshake,
/// the connection lost): the report holds what came before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Where (`starttls`, `tls_handshake`, `ehlo`...).
    pub stage: &'static str,
    /// The error, in one line.
    pub message: String,
    /// The exit code the compose face would have for it.
    pub exit_code: u8,
}

/// What the probe found: plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The server as given, `host:port`.
    pub server: String,
    /// The address connected to.
    pub peer: Option<String>,
    /// Whether that address is this machine's.
    pub loopback: bool,
    pub mode: TlsMode,
    /// The greeting's lines (its code is 220).
    pub greeting: Vec<String>,
    /// The reply to EHLO in clear; `None` under implicit TLS.
    pub clear: Option<Offered>,
    /// The reply to EHLO under TLS; `None` without TLS.
    pub under_tls: Option<Offered>,
    pub tls: Option<TlsReport>,
    pub failure: Option<Failure>,
    /// Each step, in order, with its time.
    pub timings: Vec<(Step, Duration)>,
    /// From before connecting to after the last EHLO.
    pub total: Duration,
    /// When the certificate was looked at (Unix seconds): days left count from it.
    pub now: i64,
    pub thresholds: Thresholds,
}

const DAY: i64 = 24 * 60 * 60;

/// Whole days from `now` to `until`, rounded down (negative once past).
pub fn days_between(now: i64, until: i64) -> i64 {
    (until - now).div_euclid(DAY)
}

impl Probe {
    /// The EHLO reply that counts: under TLS where there is one.
    pub fn last_offered(&self) -> Option<&Offered> {
        self.under_tls.as_ref().or(self.clear.as_ref())
    }

    /// Whether outbox, with these settings, sends to this server only under TLS: the
    /// modes that ask for it, and `auto` to a server that is not on this machine.
    pub fn tls_required(&self) -> bool {
        match self.mode {
            TlsMode::StartTls | TlsMode::Implicit => true,
            TlsMode::Auto => !self.loopback,
            TlsMode::None => false,
        }
    }

    /// The days left on the server's own certificate.
    pub fn days_left(&self) -> Option<i64> {
        let leaf = self.tls.as_ref()?.chain.first()?;
        Some(days_between(self.now, leaf.not_after))
    }

    /// Whether a certificate was shown and outbox would refuse it.
    pub fn certificate_refused(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| matches!(t.trust(), Trust::Refused(_)))
    }

    /// Whether the server would be refused for offering no STARTTLS.
    fn lacks_required_tls(&self) -> bool {
        self.tls.is_none() && self.failure.is_none() && self.tls_required()
    }

    /// The exit code without `--check`: what the compose face would exit with for
    /// this server before any mail. 0 when it could send; the failure's code (75 for
    /// a 454 to STARTTLS, 76 for a failed handshake); 69 when TLS is required and not
    /// offered; 77 when the certificate would be refused.
    pub fn exit_code(&self) -> u8 {
        if let Some(f) = &self.failure {
            return f.exit_code;
        }
        if self.lacks_required_tls() {
            return exit::UNAVAILABLE;
        }
        if self.certificate_refused() {
            return exit::NOPERM;
        }
        exit::OK
    }
}

/// `2026-12-31 05:00:00 UTC` from Unix seconds.
pub fn date(unix: i64) -> String {
    match jiff::Timestamp::from_second(unix) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{unix} (Unix time)"),
    }
}

/// `1 day`, `9 days`.
pub(crate) fn plural(n: i64, word: &str) -> String {
    match n {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}
