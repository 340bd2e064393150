//! What the probe found, each in one line, with how much it matters: the findings of
//! the report, of `--json`, and the status of `--check`.

use serde::Serialize;

use super::{Offered, Probe, TlsReport, Trust, date, plural};
use crate::smtp::tls::TlsMode;

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth knowing; nothing wrong.
    Note,
    /// Wrong, or soon to be, but mail goes.
    Warning,
    /// Mail from outbox with these settings would not go, or goes unprotected where it
    /// should not.
    Problem,
}

impl Level {
    pub fn word(self) -> &'static str {
        match self {
            Level::Note => "note",
            Level::Warning => "warning",
            Level::Problem => "problem",
        }
    }
}

/// One thing the probe found, said in one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

impl Probe {
    /// What the probe found, in the order of the report.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut say = |level, text: String| out.push(Finding { level, text });
        if let Some(f) = &self.failure {
            say(Level::Problem, f.message.clone());
        }
        if self.clear.iter().chain(&self.under_tls).any(|o| o.helo) {
            say(
                Level::Warning,
                "the server refused EHLO and took HELO: it offers no extension (no \
                 STARTTLS, SIZE or 8BITMIME)"
                    .into(),
            );
        }
        self.tls_findings(&mut say);
        self.auth_findings(&mut say);
        if let Some(tls) = &self.tls {
            certificate_findings(self, tls, &mut say);
        }
        out
    }

    fn tls_findings(&self, say: &mut impl FnMut(Level, String)) {
        let offered = self.clear.as_ref().is_some_and(|c| c.has("STARTTLS"));
        if self.mode == TlsMode::None {
            let what = match offered {
                true => "STARTTLS is offered but not used (--tls none)",
                false => "TLS is not tried (--tls none), and STARTTLS is not offered",
            };
            say(Level::Note, what.into());
        } else if self.tls.is_none() && self.failure.is_none() {
            let why = match self.mode {
                TlsMode::Auto => "outbox sends in clear only to this machine",
                _ => "these settings ask for TLS",
            };
            match self.tls_required() {
                true => say(
                    Level::Problem,
                    format!(
                        "STARTTLS is not offered, and {why}: outbox would not send (exit 69; \
                         --tls none sends in clear)"
                    ),
                ),
                false => say(
                    Level::Warning,
                    "STARTTLS is not offered: mail to this server goes in clear".into(),
                ),
            }
        }
        if self.under_tls.as_ref().is_some_and(|o| o.has("STARTTLS")) {
            say(
                Level::Warning,
                "the server offers STARTTLS again under TLS, which RFC 3207 §4.2 forbids".into(),
            );
        }
    }

    fn auth_findings(&self, say: &mut impl FnMut(Level, String)) {
        let clear = self.clear.as_ref().map(Offered::auth).unwrap_or_default();
        let tls = self
            .under_tls
            .as_ref()
            .map(Offered::auth)
            .unwrap_or_default();
        if !clear.is_empty() && !self.loopback {
            say(
                Level::Warning,
                format!(
                    "AUTH is offered in clear ({}): a password sent before STARTTLS can be \
                     read on the way (outbox never sends one so)",
                    clear.join(" ")
                ),
            );
        }
        if clear.is_empty() && !tls.is_empty() && self.clear.is_some() {
            say(
                Level::Note,
                "AUTH is offered only after STARTTLS, as it should be".into(),
            );
        }
    }
}

fn certificate_findings(probe: &Probe, tls: &TlsReport, say: &mut impl FnMut(Level, String)) {
    match tls.trust() {
        Trust::Trusted => {}
        Trust::Pinned => say(
            Level::Note,
            "the certificate is accepted by its pinned fingerprint (its issuer and names \
             are not checked)"
                .into(),
        ),
        Trust::Unchecked => {
            let mut text = "the certificate is not checked (--tls-insecure)".to_owned();
            let mut reasons = tls.chain_reasons();
            if !tls.name_matches() {
                reasons.push(format!("it is not for {}", tls.name));
            }
            if !reasons.is_empty() {
                text.push_str(&format!("; it would be refused: {}", reasons.join("; ")));
            }
            say(Level::Note, text);
        }
        Trust::Refused(reasons) => say(
            Level::Problem,
            format!(
                "the certificate would be refused (exit 77): {}",
                reasons.join("; ")
            ),
        ),
    }
    let (Some(days), Some(leaf)) = (probe.days_left(), tls.chain.first()) else {
        return;
    };
    let t = probe.thresholds;
    if leaf.not_after < probe.now {
        say(
            Level::Problem,
            format!("the certificate expired on {}", date(leaf.not_after)),
        );
    } else if days < i64::from(t.critical_days) {
        say(
            Level::Problem,
            format!(
                "the certificate expires in {} (critical under {})",
                plural(days, "day"),
                t.critical_days
            ),
        );
    } else if days < i64::from(t.warn_days) {
        say(
            Level::Warning,
            format!(
                "the certificate expires in {} (warning under {})",
                plural(days, "day"),
                t.warn_days
            ),
        );
    }
}
