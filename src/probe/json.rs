//! `outbox probe --json`: the report as one JSON object, with the same facts as the
//! text: the greeting, each EHLO reply, TLS and the chain with its verdicts, the
//! timings in milliseconds, the findings and the exit code.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Certificate, Failure, Finding, Offered, Probe, Thresholds, TlsReport, Trust};
use crate::error::Error;
use crate::report::millis;

#[derive(Serialize)]
struct Json<'a> {
    ok: bool,
    exit_code: u8,
    server: &'a str,
    peer: Option<&'a str>,
    loopback: bool,
    greeting: &'a [String],
    ehlo_clear: Option<&'a Offered>,
    ehlo_tls: Option<&'a Offered>,
    /// The SASL mechanisms of the last EHLO.
    auth: Vec<String>,
    /// The SIZE limit in bytes: `null` without SIZE, 0 for no fixed limit.
    size: Option<u64>,
    tls: Option<TlsJson<'a>>,
    failure: Option<&'a Failure>,
    timings_ms: Map<String, Value>,
    thresholds: Thresholds,
    findings: Vec<Finding>,
}

#[derive(Serialize)]
struct TlsJson<'a> {
    #[serde(flatten)]
    report: &'a TlsReport,
    /// Whether the chain leads to a trusted CA.
    chain_trusted: bool,
    name_matches: bool,
    /// Whether outbox would accept the certificate with these settings.
    accepted: bool,
    /// Why not, when it would not.
    refused_because: Vec<String>,
    /// The days left on the server's own certificate.
    days_left: Option<i64>,
    certificates: Vec<CertJson<'a>>,
}

#[derive(Serialize)]
struct CertJson<'a> {
    #[serde(flatten)]
    cert: &'a Certificate,
    not_before_utc: String,
    not_after_utc: String,
    days_left: i64,
}

/// The report, with the exit code the run ends with.
pub fn json(probe: &Probe, exit_code: u8) -> Value {
    let tls = probe.tls.as_ref().map(|t| {
        let refused = match t.trust() {
            Trust::Refused(why) => why,
            _ => Vec::new(),
        };
        TlsJson {
            report: t,
            chain_trusted: t.chain_trusted(),
            name_matches: t.name_matches(),
            accepted: refused.is_empty(),
            refused_because: refused,
            days_left: probe.days_left(),
            certificates: t
                .chain
                .iter()
                .map(|c| CertJson {
                    cert: c,
                    not_before_utc: super::date(c.not_before),
                    not_after_utc: super::date(c.not_after),
                    days_left: super::days_between(probe.now, c.not_after),
                })
                .collect(),
        }
    });
    let last = probe.last_offered();
    let size = last.and_then(|o| o.get("SIZE")).map(|e| {
        e.params
            .first()
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0)
    });
    let mut timings = Map::new();
    for (step, took) in &probe.timings {
        timings.insert(step.key().to_owned(), millis(*took));
    }
    timings.insert("total".into(), millis(probe.total));
    let json = Json {
        ok: exit_code == 0,
        exit_code,
        server: &probe.server,
        peer: probe.peer.as_deref(),
        loopback: probe.loopback,
        greeting: &probe.greeting,
        ehlo_clear: probe.clear.as_ref(),
        ehlo_tls: probe.under_tls.as_ref(),
        auth: last.map(Offered::auth).unwrap_or_default(),
        size,
        tls,
        failure: probe.failure.as_ref(),
        timings_ms: timings,
        thresholds: probe.thresholds,
        findings: probe.findings(),
    };
    serde_json::to_value(json).unwrap_or_else(|e| Value::String(e.to_string()))
}

/// A probe that found nothing to report: the server, the error and the exit code.
pub fn json_failure(server: &str, error: &Error, exit_code: u8) -> Value {
    serde_json::json!({
        "ok": false,
        "exit_code": exit_code,
        "server": server,
        "error": {
            "message": error.to_string(),
            "stage": error.stage().map(|s| s.key()),
        },
    })
}
