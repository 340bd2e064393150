//! `outbox probe --check`: the report as a monitoring plugin gives it (Nagios, Icinga,
//! Zabbix's and others' plugin API, as `check_smtp` does): one status line, `SMTP OK
//! - what | perfdata`, the findings as further lines, and the plugin's exit code.
//!
//! - OK: nothing wrong.
//! - WARNING: a warning finding — the certificate valid for fewer than `--warn-days`
//!   days; STARTTLS not offered by a server outbox may use in clear (loopback); AUTH
//!   offered in clear; HELO only; STARTTLS offered again under TLS.
//! - CRITICAL: a problem — the certificate would be refused (untrusted, not for the
//!   name, expired, not the pinned one), valid for fewer than `--critical-days` days;
//!   TLS required and not offered; STARTTLS refused, a failed handshake; the server not
//!   reached, silent, or refusing EHLO and HELO.
//! - UNKNOWN: the probe could not be made (a bad command line, configuration or CA
//!   file).

use super::text::millis;
use super::{Level, Probe};
use crate::error::Error;
use crate::exit;

/// A monitoring plugin's status, with its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The plugin's output for a probe that was made (ending with a newline), and its
/// status.
pub fn check_report(probe: &Probe) -> (String, Status) {
    let mut findings = probe.findings();
    // The worst first: the status line names what decides the status.
    findings.sort_by_key(|f| std::cmp::Reverse(f.level));
    let status = match findings.first().map(|f| f.level) {
        Some(Level::Problem) => Status::Critical,
        Some(Level::Warning) => Status::Warning,
        _ => Status::Ok,
    };
    let summary = match status {
        Status::Ok => ok_summary(probe),
        _ => findings
            .iter()
            .filter(|f| f.level >= Level::Warning)
            .map(|f| f.text.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    };
    let mut perfdata = format!("time={:.6}s;;;0", probe.total.as_secs_f64());
    if let Some(days) = probe.days_left() {
        let t = probe.thresholds;
        perfdata.push_str(&format!(
            " cert_days={days};{}:;{}:;0",
            t.warn_days, t.critical_days
        ));
    }
    let mut out = format!(
        "SMTP {} - {}: {summary} | {perfdata}\n",
        status.word(),
        probe.server
    );
    for f in findings {
        out.push_str(&format!("{}: {}\n", f.level.word(), f.text));
    }
    (out, status)
}

/// `TLSv1.3 after STARTTLS, certificate valid for 29 days, 5.1 ms`.
fn ok_summary(probe: &Probe) -> String {
    let mut parts = Vec::new();
    match &probe.tls {
        Some(tls) => parts.push(format!(
            "{} {}",
            tls.version,
            match tls.began {
                super::Began::StartTls => "after STARTTLS",
                super::Began::Implicit => "implicit",
            }
        )),
        None => parts.push("no TLS".to_owned()),
    }
    if let Some(days) = probe.days_left() {
        parts.push(format!(
            "certificate valid for {}",
            super::plural(days, "day")
        ));
    }
    parts.push(millis(probe.total));
    parts.join(", ")
}

/// The plugin's output for a probe that could not be made, and its status: UNKNOWN
/// when outbox could not try (command line, configuration, a file), CRITICAL when the
/// server could not be reached or would not talk.
pub fn check_failure(server: &str, error: &Error) -> (String, Status) {
    let status = match exit::code(error) {
        exit::USAGE | exit::CONFIG | exit::NOINPUT | exit::SOFTWARE | exit::IOERR => {
            Status::Unknown
        }
        _ => Status::Critical,
    };
    let message = error.to_string();
    let mut lines = message.lines();
    let first = lines.next().unwrap_or_default();
    // Most errors name the server already.
    let mut out = match first.contains(server) {
        true => format!("SMTP {} - {first}\n", status.word()),
        false => format!("SMTP {} - {server}: {first}\n", status.word()),
    };
    for line in lines {
        out.push_str(line.trim_start());
        out.push('\n');
    }
    (out, status)
}
