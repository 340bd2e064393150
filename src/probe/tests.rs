//! The probe's judgement and its three renderings, on reports made by hand.

use std::io;
use std::time::Duration;

use super::*;
use crate::error::Error;

/// 2026-12-02 00:00:00 UTC.
const NOW: i64 = 1_796_169_600;

fn ext(keyword: &str, params: &[&str]) -> Extension {
    Extension {
        keyword: keyword.into(),
        params: params.iter().map(|p| p.to_string()).collect(),
    }
}

fn offered(extensions: Vec<Extension>) -> Offered {
    Offered {
        name: "mx.example.test".into(),
        helo: false,
        extensions,
    }
}

fn postfix_clear() -> Offered {
    offered(vec![
        ext("PIPELINING", &[]),
        ext("SIZE", &["10240000"]),
        ext("VRFY", &[]),
        ext("STARTTLS", &[]),
        ext("8BITMIME", &[]),
        ext("CHUNKING", &[]),
    ])
}

fn postfix_tls() -> Offered {
    offered(vec![
        ext("PIPELINING", &[]),
        ext("SIZE", &["10240000"]),
        ext("VRFY", &[]),
        ext("AUTH", &["PLAIN", "LOGIN"]),
        ext("8BITMIME", &[]),
        ext("CHUNKING", &[]),
    ])
}

fn leaf(days_left: i64) -> Certificate {
    Certificate {
        subject: "CN=mx.example.test".into(),
        issuer: "CN=Example CA".into(),
        dns_names: vec!["mx.example.test".into()],
        ip_addresses: vec!["192.0.2.25".into()],
        not_before: NOW - 60 * DAY,
        not_after: NOW + days_left * DAY + 3600,
        sha256: "AB:CD".into(),
    }
}

fn tls(errors: Vec<VerifyError>) -> TlsReport {
    TlsReport {
        began: Began::StartTls,
        version: "TLSv1.3".into(),
        cipher: "TLS_AES_256_GCM_SHA384".into(),
        chain: vec![leaf(80)],
        errors,
        name: "mx.example.test".into(),
        pinned: None,
        checked: true,
    }
}

fn error(depth: u32, code: i32, text: &str) -> VerifyError {
    VerifyError {
        depth,
        code,
        text: text.into(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_micros(n * 100)
}

/// A Postfix that offers STARTTLS, and AUTH only under it, with a trusted
/// certificate for its name, valid 80 more days.
fn probe() -> Probe {
    Probe {
        server: "mx.example.test:25".into(),
        peer: Some("192.0.2.25:25".into()),
        loopback: false,
        mode: TlsMode::Auto,
        greeting: vec!["mx.example.test ESMTP Postfix".into()],
        clear: Some(postfix_clear()),
        under_tls: Some(postfix_tls()),
        tls: Some(tls(Vec::new())),
        failure: None,
        timings: vec![
            (Step::Connect, ms(12)),
            (Step::Greeting, ms(5)),
            (Step::Ehlo, ms(3)),
            (Step::StartTls, ms(2)),
            (Step::TlsHandshake, ms(41)),
            (Step::EhloTls, ms(4)),
        ],
        total: ms(67),
        now: NOW,
        thresholds: Thresholds::default(),
    }
}

#[test]
fn the_text_report_of_a_server_with_starttls_and_a_good_certificate() {
    assert_eq!(
        text(&probe()),
        "\
server:      mx.example.test:25 (192.0.2.25:25)
greeting:    220 mx.example.test ESMTP Postfix
in clear:    mx.example.test offers PIPELINING, SIZE 10240000, VRFY, STARTTLS, 8BITMIME, CHUNKING
under TLS:   mx.example.test offers PIPELINING, SIZE 10240000, VRFY, AUTH PLAIN LOGIN, 8BITMIME, CHUNKING
TLS changed: added AUTH PLAIN LOGIN; removed STARTTLS
extensions:  SIZE 10240000 (9.8 MiB), PIPELINING, CHUNKING, 8BITMIME; not offered: SMTPUTF8, DSN, ENHANCEDSTATUSCODES, REQUIRETLS; others: VRFY
AUTH:        PLAIN LOGIN (only under TLS)
TLS:         TLSv1.3, TLS_AES_256_GCM_SHA384, after STARTTLS
trusted:     yes, by a trusted CA
name:        mx.example.test: matches the certificate
certificate 1 of 1 (the server's):
  subject:     CN=mx.example.test
  issuer:      CN=Example CA
  names:       DNS:mx.example.test, IP:192.0.2.25
  not before:  2026-10-03 00:00:00 UTC
  not after:   2027-02-20 01:00:00 UTC (80 days left)
  SHA-256:     AB:CD
timings:     connect 1.2 ms, greeting 0.5 ms, EHLO 0.3 ms, STARTTLS 0.2 ms, TLS handshake 4.1 ms, EHLO under TLS 0.4 ms; total 6.7 ms
findings:
  note: AUTH is offered only after STARTTLS, as it should be
"
    );
    assert_eq!(probe().exit_code(), 0);
}

#[test]
fn an_untrusted_certificate_for_another_name_is_a_problem_and_77() {
    let mut p = probe();
    p.clear = Some(offered(vec![ext("STARTTLS", &[]), ext("AUTH", &["PLAIN"])]));
    p.under_tls = Some(offered(vec![ext("AUTH", &["PLAIN"])]));
    p.tls = Some(TlsReport {
        chain: vec![
            Certificate {
                dns_names: vec!["other.example.test".into()],
                ip_addresses: Vec::new(),
                ..leaf(80)
            },
            Certificate {
                subject: "CN=Example CA".into(),
                issuer: "CN=Example Root".into(),
                dns_names: Vec::new(),
                ip_addresses: Vec::new(),
                ..leaf(400)
            },
        ],
        ..tls(vec![
            error(1, 20, "unable to get local issuer certificate"),
            error(0, 62, "hostname mismatch"),
        ])
    });
    let text = text(&p);
    let from = |label: &str| &text[text.find(label).unwrap()..];
    assert!(
        from("AUTH:").starts_with("AUTH:        PLAIN (in clear too)\n"),
        "{text}"
    );
    assert!(
        from("trusted:").starts_with(
            "trusted:     no: unable to get local issuer certificate (certificate 2 of the \
             chain)\n\
             name:        mx.example.test: does not match (the certificate is for \
             DNS:other.example.test)\n\
             certificate 1 of 2 (the server's):\n"
        ),
        "{text}"
    );
    assert!(
        from("certificate 2 of 2:").starts_with(
            "certificate 2 of 2:\n  subject:     CN=Example CA\n  issuer:      CN=Example Root\n  \
             names:       no name\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with(
            "findings:\n  \
             warning: AUTH is offered in clear (PLAIN): a password sent before STARTTLS can be \
             read on the way (outbox never sends one so)\n  \
             problem: the certificate would be refused (exit 77): unable to get local issuer \
             certificate (certificate 2 of the chain); it is not for mx.example.test\n"
        ),
        "{text}"
    );
    assert_eq!(p.exit_code(), 77);
}

#[test]
fn a_server_without_starttls_is_a_warning_on_loopback_and_a_problem_elsewhere() {
    let mut p = probe();
    p.clear = Some(offered(vec![ext("PIPELINING", &[]), ext("SIZE", &[])]));
    p.under_tls = None;
    p.tls = None;
    p.timings.truncate(3);
    p.loopback = true;
    let text = text(&p);
    assert!(
        text.contains(
            "in clear:    mx.example.test offers PIPELINING, SIZE\n\
             extensions:  SIZE (no fixed limit), PIPELINING; not offered: CHUNKING, 8BITMIME, \
             SMTPUTF8, DSN, ENHANCEDSTATUSCODES, REQUIRETLS\n\
             AUTH:        none offered\n\
             TLS:         none: STARTTLS not offered\n\
             timings:     connect 1.2 ms, greeting 0.5 ms, EHLO 0.3 ms; total 6.7 ms\n\
             findings:\n  \
             warning: STARTTLS is not offered: mail to this server goes in clear\n"
        ),
        "{text}"
    );
    assert_eq!(p.exit_code(), 0);
    p.loopback = false;
    assert_eq!(
        p.findings(),
        [Finding {
            level: Level::Problem,
            text: "STARTTLS is not offered, and outbox sends in clear only to this machine: \
                   outbox would not send (exit 69; --tls none sends in clear)"
                .into()
        }]
    );
    assert_eq!(p.exit_code(), 69);
    p.mode = TlsMode::None;
    assert_eq!(p.exit_code(), 0);
    assert!(text_of_tls(&p).starts_with("TLS:         none: not tried (--tls none)\n"));
    assert_eq!(
        p.findings()[0].text,
        "TLS is not tried (--tls none), and STARTTLS is not offered"
    );
}

fn text_of_tls(p: &Probe) -> String {
    let text = text(p);
    text[text.find("TLS:").unwrap()..].to_owned()
}

#[test]
fn helo_only_says_so() {
    let mut p = probe();
    p.clear = Some(Offered {
        helo: true,
        ..offered(Vec::new())
    });
    p.under_tls = None;
    p.tls = None;
    p.loopback = true;
    let text = text(&p);
    assert!(
        text.contains(
            "in clear:    mx.example.test took HELO, not EHLO: no extension\n\
             extensions:  none (HELO)\n"
        ),
        "{text}"
    );
    assert_eq!(
        p.findings()[0].text,
        "the server refused EHLO and took HELO: it offers no extension (no STARTTLS, SIZE or \
         8BITMIME)"
    );
}

#[test]
fn a_failure_after_the_greeting_keeps_what_came_before_and_its_code() {
    let mut p = probe();
    p.under_tls = None;
    p.tls = None;
    p.failure = Some(Failure {
        stage: "starttls",
        message: "the server refused STARTTLS: 454 4.7.0 TLS not available".into(),
        exit_code: 75,
    });
    assert!(text_of_tls(&p).starts_with("TLS:         none: failed (see the findings)\n"));
    assert_eq!(
        p.findings()[0],
        Finding {
            level: Level::Problem,
            text: "the server refused STARTTLS: 454 4.7.0 TLS not available".into()
        }
    );
    assert_eq!(p.exit_code(), 75);
    let (check, status) = check_report(&p);
    assert_eq!(status, Status::Critical);
    assert!(check.starts_with(
        "SMTP CRITICAL - mx.example.test:25: the server refused STARTTLS: 454 4.7.0 TLS not \
         available | time=0.006700s;;;0\n"
    ));
}

#[test]
fn days_left_make_warnings_then_problems_then_expiry() {
    let at = |days: i64| {
        let mut p = probe();
        p.tls = Some(TlsReport {
            chain: vec![leaf(days)],
            ..tls(Vec::new())
        });
        let found: Vec<String> = p
            .findings()
            .into_iter()
            .filter(|f| f.level > Level::Note)
            .map(|f| format!("{}: {}", f.level.word(), f.text))
            .collect();
        (found, check_report(&p).1)
    };
    assert_eq!(at(30), (vec![], Status::Ok));
    assert_eq!(
        at(29),
        (
            vec!["warning: the certificate expires in 29 days (warning under 30)".to_owned()],
            Status::Warning
        )
    );
    assert_eq!(
        at(6),
        (
            vec!["problem: the certificate expires in 6 days (critical under 7)".to_owned()],
            Status::Critical
        )
    );
    assert_eq!(
        at(-2),
        (
            vec!["problem: the certificate expired on 2026-11-30 01:00:00 UTC".to_owned()],
            Status::Critical
        )
    );
    assert_eq!(days_between(NOW, NOW + DAY - 1), 0);
    assert_eq!(days_between(NOW, NOW - 1), -1);
    assert_eq!(date(NOW), "2026-12-02 00:00:00 UTC");
}

#[test]
fn a_pinned_fingerprint_stands_for_the_ca_and_the_name() {
    let untrusted = || {
        tls(vec![
            error(0, 18, "self-signed certificate"),
            error(0, 62, "hostname mismatch"),
        ])
    };
    let mut p = probe();
    p.tls = Some(TlsReport {
        pinned: Some(Pin {
            fingerprint: "sha256:AB:CD".into(),
            matches: true,
        }),
        ..untrusted()
    });
    assert_eq!(p.exit_code(), 0);
    assert!(
        text(&p).contains("trusted:     yes, by the pinned fingerprint sha256:AB:CD\n"),
        "{}",
        text(&p)
    );
    p.tls = Some(TlsReport {
        pinned: Some(Pin {
            fingerprint: "sha256:12:34".into(),
            matches: false,
        }),
        ..untrusted()
    });
    assert_eq!(p.exit_code(), 77);
    assert_eq!(
        p.tls.as_ref().unwrap().trust(),
        Trust::Refused(vec![
            "its fingerprint is sha256:AB:CD, not the pinned sha256:12:34".into()
        ])
    );
    p.tls = Some(TlsReport {
        chain: Vec::new(),
        ..tls(Vec::new())
    });
    assert_eq!(
        p.tls.as_ref().unwrap().trust(),
        Trust::Refused(vec!["the server showed no certificate".into()])
    );
    // --tls-insecure: shown, not held against the server.
    p.tls = Some(TlsReport {
        checked: false,
        ..untrusted()
    });
    assert_eq!(p.exit_code(), 0);
    assert!(
        p.findings().contains(&Finding {
            level: Level::Note,
            text: "the certificate is not checked (--tls-insecure); it would be refused: \
               self-signed certificate; it is not for mx.example.test"
                .into()
        })
    );
}

#[test]
fn the_check_line_is_the_plugins_with_perfdata() {
    let (out, status) = check_report(&probe());
    assert_eq!(status, Status::Ok);
    assert_eq!(status.code(), 0);
    assert_eq!(
        out,
        "SMTP OK - mx.example.test:25: TLSv1.3 after STARTTLS, certificate valid for 80 \
         days, 6.7 ms | time=0.006700s;;;0 cert_days=80;30:;7:;0\n\
         note: AUTH is offered only after STARTTLS, as it should be\n"
    );
    let mut p = probe();
    p.thresholds = Thresholds {
        warn_days: 90,
        critical_days: 14,
    };
    p.clear = Some(offered(vec![ext("STARTTLS", &[]), ext("AUTH", &["LOGIN"])]));
    let (out, status) = check_report(&p);
    assert_eq!(status, Status::Warning);
    assert_eq!(status.code(), 1);
    assert_eq!(
        out,
        "SMTP WARNING - mx.example.test:25: AUTH is offered in clear (LOGIN): a password sent \
         before STARTTLS can be read on the way (outbox never sends one so); the certificate \
         expires in 80 days (warning under 90) | time=0.006700s;;;0 cert_days=80;90:;14:;0\n\
         warning: AUTH is offered in clear (LOGIN): a password sent before STARTTLS can be read \
         on the way (outbox never sends one so)\n\
         warning: the certificate expires in 80 days (warning under 90)\n"
    );
}

#[test]
fn a_probe_that_could_not_be_made_is_critical_or_unknown() {
    let refused = Error::Connect {
        server: "mx.example.test:25".into(),
        source: io::Error::from(io::ErrorKind::ConnectionRefused),
    };
    let (out, status) = check_failure("mx.example.test:25", &refused);
    assert_eq!(status, Status::Critical);
    assert_eq!(
        out,
        "SMTP CRITICAL - cannot connect to mx.example.test:25: connection refused\n"
    );
    let timeout = Error::Timeout {
        stage: crate::error::Stage::Greeting,
        after: Duration::from_secs(30),
    };
    let (out, _) = check_failure("mx.example.test:25", &timeout);
    assert_eq!(
        out,
        "SMTP CRITICAL - mx.example.test:25: timed out after 30s waiting for the server (at \
         greeting)\n"
    );
    let (out, status) = check_failure("x:25", &Error::Config("no such account".into()));
    assert_eq!(
        (out.as_str(), status),
        ("SMTP UNKNOWN - x:25: no such account\n", Status::Unknown)
    );
    assert_eq!(Status::Unknown.code(), 3);
}

#[test]
fn the_json_report_holds_the_facts_of_the_text() {
    let mut p = probe();
    p.tls = Some(tls(vec![error(0, 62, "hostname mismatch")]));
    let v = json(&p, p.exit_code());
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 77);
    assert_eq!(v["server"], "mx.example.test:25");
    assert_eq!(v["peer"], "192.0.2.25:25");
    assert_eq!(v["greeting"][0], "mx.example.test ESMTP Postfix");
    assert_eq!(v["ehlo_clear"]["extensions"][3]["keyword"], "STARTTLS");
    assert_eq!(v["ehlo_tls"]["extensions"][3]["params"][1], "LOGIN");
    assert_eq!(v["auth"], serde_json::json!(["PLAIN", "LOGIN"]));
    assert_eq!(v["size"], 10_240_000);
    let tls = &v["tls"];
    assert_eq!(tls["began"], "starttls");
    assert_eq!(tls["chain_trusted"], true);
    assert_eq!(tls["name_matches"], false);
    assert_eq!(tls["accepted"], false);
    assert_eq!(
        tls["refused_because"],
        serde_json::json!(["it is not for mx.example.test"])
    );
    assert_eq!(tls["errors"][0]["code"], 62);
    assert_eq!(tls["days_left"], 80);
    let leaf = &tls["certificates"][0];
    assert_eq!(leaf["sha256"], "AB:CD");
    assert_eq!(leaf["not_after"], NOW + 80 * DAY + 3600);
    assert_eq!(leaf["not_after_utc"], "2027-02-20 01:00:00 UTC");
    assert_eq!(leaf["days_left"], 80);
    assert_eq!(v["timings_ms"]["tls_handshake"], 4.1);
    assert_eq!(v["timings_ms"]["total"], 6.7);
    assert_eq!(v["thresholds"]["warn_days"], 30);
    assert_eq!(v["findings"][1]["level"], "problem");
    let failure = json_failure("x:25", &Error::Config("bad".into()), 78);
    assert_eq!(
        failure,
        serde_json::json!({
            "ok": false, "exit_code": 78, "server": "x:25",
            "error": {"message": "bad", "stage": null}
        })
    );
}
