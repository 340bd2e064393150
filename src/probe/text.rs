//! The probe's report for a person: one field a line, the certificates each in a
//! block, the findings last.

use std::fmt::Write;
use std::time::Duration;

use super::{Began, Certificate, Extension, Offered, Probe, TlsReport, date, days_between, plural};
use crate::smtp::tls::TlsMode;

/// The extensions the report names, offered or not, in this order; the others the
/// server offers follow as they come (AUTH and STARTTLS have lines of their own).
const NAMED: [&str; 8] = [
    "SIZE",
    "PIPELINING",
    "CHUNKING",
    "8BITMIME",
    "SMTPUTF8",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "REQUIRETLS",
];

/// The whole report, ending with a newline.
pub fn text(probe: &Probe) -> String {
    let mut out = String::new();
    let peer = probe
        .peer
        .as_ref()
        .filter(|p| **p != probe.server)
        .map_or_else(String::new, |p| format!(" ({p})"));
    field(&mut out, "server", &format!("{}{peer}", probe.server));
    for (i, line) in probe.greeting.iter().enumerate() {
        let label = if i == 0 { "greeting" } else { "" };
        field(&mut out, label, &format!("220 {line}"));
    }
    if let Some(clear) = &probe.clear {
        field(&mut out, "in clear", &offered(clear));
    }
    if let Some(tls) = &probe.under_tls {
        field(&mut out, "under TLS", &offered(tls));
    }
    if let (Some(clear), Some(tls)) = (&probe.clear, &probe.under_tls) {
        field(&mut out, "TLS changed", &changes(clear, tls));
    }
    if let Some(last) = probe.last_offered() {
        field(&mut out, "extensions", &named(last));
        field(&mut out, "AUTH", &auth(probe, last));
    }
    field(&mut out, "TLS", &tls_line(probe));
    if let Some(tls) = &probe.tls {
        field(&mut out, "trusted", &trusted(tls));
        field(&mut out, "name", &name(tls));
        for (i, cert) in tls.chain.iter().enumerate() {
            certificate(&mut out, probe.now, i, tls.chain.len(), cert);
        }
    }
    field(&mut out, "timings", &timings(probe));
    let findings = probe.findings();
    if findings.is_empty() {
        field(&mut out, "findings", "none");
    } else {
        out.push_str("findings:\n");
        for f in findings {
            let _ = writeln!(out, "  {}: {}", f.level.word(), f.text);
        }
    }
    out
}

fn field(out: &mut String, label: &str, value: &str) {
    let label = match label {
        "" => String::new(),
        l => format!("{l}:"),
    };
    let _ = writeln!(out, "{label:<13}{value}");
}

fn extension(e: &Extension) -> String {
    match e.params.is_empty() {
        true => e.keyword.clone(),
        false => format!("{} {}", e.keyword, e.params.join(" ")),
    }
}

/// `mx.example.com offers PIPELINING, SIZE 10240000, STARTTLS`.
fn offered(o: &Offered) -> String {
    let what = match (o.helo, o.extensions.is_empty()) {
        (true, _) => "took HELO, not EHLO: no extension".to_owned(),
        (false, true) => "offers no extension".to_owned(),
        (false, false) => {
            let all: Vec<String> = o.extensions.iter().map(extension).collect();
            format!("offers {}", all.join(", "))
        }
    };
    format!("{} {what}", o.name)
}

/// What TLS changed in the offer: keywords added and removed, parameters changed.
fn changes(clear: &Offered, tls: &Offered) -> String {
    let mut parts = Vec::new();
    let added: Vec<String> = tls
        .extensions
        .iter()
        .filter(|e| !clear.has(&e.keyword))
        .map(extension)
        .collect();
    if !added.is_empty() {
        parts.push(format!("added {}", added.join(", ")));
    }
    let removed: Vec<&str> = clear
        .extensions
        .iter()
        .filter(|e| !tls.has(&e.keyword))
        .map(|e| e.keyword.as_str())
        .collect();
    if !removed.is_empty() {
        parts.push(format!("removed {}", removed.join(", ")));
    }
    for e in &tls.extensions {
        if let Some(before) = clear.get(&e.keyword)
            && before.params != e.params
        {
            parts.push(format!("{} became {}", extension(before), extension(e)));
        }
    }
    match parts.is_empty() {
        true => "nothing".to_owned(),
        false => parts.join("; "),
    }
}

/// The named extensions, offered and not, then the others.
fn named(o: &Offered) -> String {
    if o.helo {
        return "none (HELO)".to_owned();
    }
    let mut yes = Vec::new();
    let mut no = Vec::new();
    for keyword in NAMED {
        match o.get(keyword) {
            Some(e) if keyword == "SIZE" => yes.push(size(e)),
            Some(e) => yes.push(extension(e)),
            None => no.push(keyword),
        }
    }
    let others: Vec<String> = o
        .extensions
        .iter()
        .filter(|e| {
            !NAMED.iter().any(|n| e.keyword.eq_ignore_ascii_case(n))
                && !["AUTH", "STARTTLS"].contains(&e.keyword.as_str())
        })
        .map(extension)
        .collect();
    let mut parts = Vec::new();
    if !yes.is_empty() {
        parts.push(yes.join(", "));
    }
    if !no.is_empty() {
        parts.push(format!("not offered: {}", no.join(", ")));
    }
    if !others.is_empty() {
        parts.push(format!("others: {}", others.join(", ")));
    }
    parts.join("; ")
}

/// `SIZE 10240000 (9.8 MiB)`; `SIZE (no fixed limit)` without a number or with 0
/// (RFC 1870 §4).
fn size(e: &Extension) -> String {
    match e.params.first().and_then(|p| p.parse::<u64>().ok()) {
        Some(n) if n > 0 => format!("SIZE {n} ({:.1} MiB)", n as f64 / 1_048_576.0),
        _ => "SIZE (no fixed limit)".to_owned(),
    }
}

fn auth(probe: &Probe, last: &Offered) -> String {
    let mechanisms = last.auth();
    if mechanisms.is_empty() {
        return "none offered".to_owned();
    }
    let clear = probe.clear.as_ref().map(Offered::auth).unwrap_or_default();
    let place = match (&probe.clear, &probe.under_tls) {
        (Some(_), Some(_)) if clear.is_empty() => " (only under TLS)",
        (Some(_), Some(_)) => " (in clear too)",
        (Some(_), None) => " (in clear)",
        _ => "",
    };
    format!("{}{place}", mechanisms.join(" "))
}

fn tls_line(probe: &Probe) -> String {
    let Some(tls) = &probe.tls else {
        let why = match (probe.mode, &probe.failure) {
            (TlsMode::None, _) => "not tried (--tls none)",
            (_, Some(_)) => "failed (see the findings)",
            _ => "STARTTLS not offered",
        };
        return format!("none: {why}");
    };
    let began = match tls.began {
        Began::StartTls => "after STARTTLS",
        Began::Implicit => "implicit (from the first byte)",
    };
    format!("{}, {}, {began}", tls.version, tls.cipher)
}

fn trusted(tls: &TlsReport) -> String {
    let unchecked = match tls.checked {
        true => "",
        false => " (not checked: --tls-insecure)",
    };
    let verdict = match &tls.pinned {
        Some(pin) if pin.matches => format!("yes, by the pinned fingerprint {}", pin.fingerprint),
        Some(pin) => format!("no: not the pinned fingerprint {}", pin.fingerprint),
        None if tls.chain_trusted() => "yes, by a trusted CA".to_owned(),
        None => format!("no: {}", tls.chain_reasons().join("; ")),
    };
    format!("{verdict}{unchecked}")
}

fn name(tls: &TlsReport) -> String {
    if tls.name_matches() {
        return format!("{}: matches the certificate", tls.name);
    }
    let names = tls.chain.first().map(names).unwrap_or_default();
    format!(
        "{}: does not match (the certificate is for {names})",
        tls.name
    )
}

/// `DNS:mx.example.com, IP:192.0.2.25`, or `none`.
fn names(cert: &Certificate) -> String {
    let dns = cert.dns_names.iter().map(|n| format!("DNS:{n}"));
    let ips = cert.ip_addresses.iter().map(|n| format!("IP:{n}"));
    let all: Vec<String> = dns.chain(ips).collect();
    match all.is_empty() {
        true => "no name".to_owned(),
        false => all.join(", "),
    }
}

fn certificate(out: &mut String, now: i64, i: usize, of: usize, cert: &Certificate) {
    let whose = if i == 0 { " (the server's)" } else { "" };
    let _ = writeln!(out, "certificate {} of {of}{whose}:", i + 1);
    let left = match cert.not_after < now {
        true => "expired".to_owned(),
        false => format!("{} left", plural(days_between(now, cert.not_after), "day")),
    };
    for (label, value) in [
        ("subject", cert.subject.clone()),
        ("issuer", cert.issuer.clone()),
        ("names", names(cert)),
        ("not before", date(cert.not_before)),
        ("not after", format!("{} ({left})", date(cert.not_after))),
        ("SHA-256", cert.sha256.clone()),
    ] {
        let _ = writeln!(out, "  {:<13}{value}", format!("{label}:"));
    }
}

fn timings(probe: &Probe) -> String {
    let steps: Vec<String> = probe
        .timings
        .iter()
        .map(|(step, took)| format!("{} {}", step.label(), millis(*took)))
        .collect();
    format!("{}; total {}", steps.join(", "), millis(probe.total))
}

/// `1.2 ms`.
pub(super) fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
