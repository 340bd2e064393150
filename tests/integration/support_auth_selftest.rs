//! Self-tests of the aiosmtpd test server (`support::aiosmtpd`), driven by
//! a raw socket and by Python's smtplib (`support::pyclient`), without
//! `outbox`.

use crate::support::Output;
use crate::support::aiosmtpd::{AuthAttempt, HOSTNAME, MECHANISMS, Mode, SmtpServer};
use crate::support::pyclient::{smtp_client, step, steps};
use crate::support::smtp::SmtpClient;
use crate::support::tls::{TestPki, WRONG_HOST_NAME};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const ALICE_PW: &str = "p\u{e4}ss w\u{f6}rd \u{65e5}\u{672c}";
const INVALID: &str = "535 5.7.8 Authentication credentials invalid";
const OK: &str = "235 2.7.0 Authentication successful";

fn ca() -> &'static str {
    TestPki::shared().ca_cert().to_str().unwrap()
}

fn auth_server(mode: Mode) -> SmtpServer {
    SmtpServer::builder()
        .mode(mode)
        .auth(&MECHANISMS)
        .users(&[("alice", ALICE_PW), ("bob", "hunter2")])
        .start()
}

/// Python client over STARTTLS (verified, SNI `localhost`) with `extra`
/// arguments.
fn client(server: &SmtpServer, extra: &[&str]) -> Output {
    let tls = match server.mode() {
        Mode::Plain => "none",
        Mode::StartTls => "starttls",
        Mode::Implicit => "implicit",
    };
    let addr = server.addr();
    let mut args = vec![
        addr.as_str(),
        "--tls",
        tls,
        "--cafile",
        ca(),
        "--servername",
        "localhost",
    ];
    args.extend_from_slice(extra);
    smtp_client(&args)
}

#[track_caller]
fn assert_step(out: &Output, key: &str, want: &str) {
    let got = step(out, key);
    assert!(
        got.as_deref().is_some_and(|g| g.starts_with(want)),
        "expected {key}: {want}..., got {got:?}\n{}",
        out.report()
    );
}

#[test]
fn plain_mode_records_messages_exactly() {
    let server = SmtpServer::builder().start();
    assert_eq!(server.mode(), Mode::Plain);
    let (mut c, greeting) = SmtpClient::connect_greeted(server.addr());
    assert!(greeting.text().starts_with(HOSTNAME), "{greeting}");
    let ehlo = c.expect("EHLO client.test", 250);
    let keywords = ehlo.ehlo_keywords();
    for k in ["STARTTLS", "AUTH"] {
        assert!(!keywords.iter().any(|w| w == k), "{k} in {ehlo}");
    }
    c.expect("STARTTLS", 454);
    c.expect("AUTH PLAIN AGEAYg==", 502);
    let message = b"Subject: x\r\n\r\n.leading dot\r\nlast\r\n";
    let reply = c.send_message("s@client.test", &["a@x.test", "b@y.test"], message);
    assert_eq!(reply.code, 250, "{reply}");
    c.expect("MAIL FROM:<> SIZE=10 BODY=8BITMIME", 250);
    c.expect("RCPT TO:<c@x.test>", 250);
    c.expect("RSET", 250);
    c.expect("QUIT", 221);

    let msgs = server.wait_for_messages(1, WAIT);
    let m = &msgs[0];
    assert_eq!(m.mail_from, "s@client.test");
    assert_eq!(m.rcpt_tos, ["a@x.test", "b@y.test"]);
    assert_eq!(m.data, message);
    assert_eq!(m.helo, "client.test");
    assert!(!m.tls && m.tls_version.is_none() && m.sni.is_none());
    assert_eq!(
        (m.auth_user.as_deref(), m.mechanism.as_deref()),
        (None, None)
    );
    assert!(server.auth_attempts().is_empty());
    assert!(server.log().contains("message from <s@client.test>"));

    // MAIL parameters are recorded.
    let (mut c, _) = SmtpClient::connect_greeted(server.addr());
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<> SIZE=10 BODY=8BITMIME", 250);
    c.expect("RCPT TO:<c@x.test>", 250);
    c.expect("DATA", 354);
    c.send_raw(b"x\r\n.\r\n");
    assert_eq!(c.read_reply().code, 250);
    let msgs = server.wait_for_messages(2, WAIT);
    assert_eq!(msgs[1].mail_from, "");
    assert_eq!(msgs[1].mail_options, ["SIZE=10", "BODY=8BITMIME"]);
    assert_eq!(msgs[1].data, b"x\r\n");
}

#[test]
fn auth_is_offered_only_after_starttls() {
    let server = auth_server(Mode::StartTls);
    let (mut c, _) = SmtpClient::connect_greeted(server.addr());
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(
        ehlo.ehlo_keywords().iter().any(|k| k == "STARTTLS"),
        "{ehlo}"
    );
    assert_eq!(ehlo.ehlo_param("AUTH"), None, "{ehlo}");
    let reply = c.command("AUTH PLAIN AGJvYgBodW50ZXIy");
    assert_eq!(reply.code, 538, "{reply}");
    // Mail without AUTH or TLS is still accepted (nothing required).
    assert_eq!(
        c.send_message("s@client.test", &["r@x.test"], b"x\r\n")
            .code,
        250
    );
    c.expect("QUIT", 221);

    let out = client(&server, &[]);
    out.assert_success();
    let ehlos = steps(&out, "ehlo");
    assert_eq!(ehlos.len(), 2, "{}", out.report());
    assert!(
        ehlos[0].contains("STARTTLS") && !ehlos[0].contains("AUTH"),
        "{}",
        out.report()
    );
    assert!(
        !ehlos[1].contains("STARTTLS") && ehlos[1].contains("AUTH"),
        "{}",
        out.report()
    );
    // Advertised in the configured order.
    assert_step(
        &out,
        "ehlo-auth",
        "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256 XOAUTH2",
    );
    assert_step(&out, "tls", "TLSv1.3");
    let msgs = server.wait_for_messages(1, WAIT);
    assert!(!msgs[0].tls);
    assert!(server.auth_attempts().is_empty());
}

#[test]
fn every_mechanism_authenticates_over_starttls() {
    let server = auth_server(Mode::StartTls);
    for (i, mech) in MECHANISMS.iter().enumerate() {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let password = if user == "alice" { ALICE_PW } else { "hunter2" };
        let subject = format!("Subject: {mech}\n\nvia {mech}\n");
        let out = client(
            &server,
            &[
                "--auth",
                mech,
                "--user",
                user,
                "--password",
                password,
                "--from",
                "s@client.test",
                "--to",
                "r@x.test",
                "--data",
                &subject,
            ],
        );
        out.assert_success();
        assert_step(&out, "auth", OK);
        assert_step(&out, "data", "250 ");
        if *mech == "SCRAM-SHA-256" {
            // The server proved it knows the password too.
            assert_step(&out, "scram-server-signature", "ok");
        }
    }
    let msgs = server.wait_for_messages(MECHANISMS.len(), WAIT);
    for (i, (m, mech)) in msgs.iter().zip(MECHANISMS).enumerate() {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        assert_eq!(m.mechanism.as_deref(), Some(mech), "{m:#?}");
        assert_eq!(m.auth_user.as_deref(), Some(user), "{m:#?}");
        assert!(m.tls, "{m:#?}");
        assert_eq!(m.tls_version.as_deref(), Some("TLSv1.3"));
        assert_eq!(m.sni.as_deref(), Some("localhost"));
        assert_eq!(
            m.data,
            format!("Subject: {mech}\r\n\r\nvia {mech}\r\n").as_bytes()
        );
    }
    let attempts = server.auth_attempts();
    assert_eq!(attempts.len(), MECHANISMS.len(), "{attempts:#?}");
    assert!(attempts.iter().all(|a| a.success && a.tls), "{attempts:#?}");
}

#[test]
fn mechanisms_also_work_without_initial_response() {
    let server = auth_server(Mode::StartTls);
    for mech in ["PLAIN", "LOGIN", "SCRAM-SHA-256", "XOAUTH2"] {
        let out = client(
            &server,
            &[
                "--auth",
                mech,
                "--user",
                "alice",
                "--password",
                ALICE_PW,
                "--no-initial-response",
            ],
        );
        out.assert_success();
        assert_step(&out, "auth", OK);
        let first = steps(&out, "auth-step");
        assert!(!first.is_empty(), "{}", out.report());
        if mech == "LOGIN" {
            assert_eq!(first[..2], ["334 Username:", "334 Password:"]);
        }
    }
}

#[test]
fn wrong_credentials_get_535() {
    let server = auth_server(Mode::StartTls);
    for mech in MECHANISMS {
        for (user, password) in [
            ("alice", "wrong"),
            ("nobody", ALICE_PW),
            ("alice", "P\u{c4}SS"),
        ] {
            let out = client(
                &server,
                &["--auth", mech, "--user", user, "--password", password],
            );
            out.assert_success();
            assert_step(&out, "auth", INVALID);
            if mech == "XOAUTH2" {
                let error = step(&out, "auth-step").unwrap_or_default();
                assert!(
                    error.starts_with("334 {") && error.contains("\"status\": \"401\""),
                    "{}",
                    out.report()
                );
            }
        }
    }
    let attempts = server.auth_attempts();
    assert_eq!(attempts.len(), MECHANISMS.len() * 3);
    assert!(attempts.iter().all(|a| !a.success && a.tls));
    assert_eq!(
        attempts[0],
        AuthAttempt {
            mechanism: "PLAIN".into(),
            user: Some("alice".into()),
            success: false,
            tls: true
        }
    );
}

#[test]
fn smtplib_login_interoperates() {
    let server = SmtpServer::builder()
        .starttls()
        .auth(&["PLAIN", "LOGIN", "CRAM-MD5"])
        .user("bob", "hunter2")
        .start();
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        let out = client(
            &server,
            &[
                "--smtplib",
                "--auth",
                mech,
                "--user",
                "bob",
                "--password",
                "hunter2",
            ],
        );
        out.assert_success();
        assert_step(&out, "auth", OK);
        let out = client(
            &server,
            &[
                "--smtplib",
                "--auth",
                mech,
                "--user",
                "bob",
                "--password",
                "nope",
            ],
        );
        out.assert_success();
        assert_step(&out, "auth", INVALID);
    }
    let mechs: Vec<_> = server
        .auth_attempts()
        .into_iter()
        .map(|a| (a.mechanism, a.success))
        .collect();
    assert_eq!(
        mechs,
        [
            ("PLAIN".into(), true),
            ("PLAIN".into(), false),
            ("LOGIN".into(), true),
            ("LOGIN".into(), false),
            ("CRAM-MD5".into(), true),
            ("CRAM-MD5".into(), false)
        ]
    );
}

#[test]
fn auth_protocol_details() {
    // Plain text AUTH allowed, so a raw socket can drive it.
    let server = SmtpServer::builder()
        .auth(&["XOAUTH2", "GSSAPI", "plain"])
        .user("bob", "hunter2")
        .auth_require_tls(false)
        .auth_required(true)
        .start();
    let (mut c, _) = SmtpClient::connect_greeted(server.addr());
    let ehlo = c.expect("EHLO client.test", 250);
    assert_eq!(
        ehlo.ehlo_param("AUTH").as_deref(),
        Some("XOAUTH2 GSSAPI PLAIN")
    );
    // auth_required
    let reply = c.command("MAIL FROM:<s@client.test>");
    assert_eq!(reply.code, 530, "{reply}");
    assert!(reply.text().contains("5.7.0"), "{reply}");
    // Advertised only.
    assert_eq!(c.command("AUTH GSSAPI").code, 504);
    assert_eq!(c.command("AUTH CRAM-MD5").code, 504);
    // Bad base64, malformed, cancelled.
    assert_eq!(c.command("AUTH PLAIN !!!").code, 501);
    assert_eq!(c.command("AUTH XOAUTH2 eA==").code, 501);
    assert_eq!(c.command("AUTH PLAIN").code, 334);
    let reply = c.command("*");
    assert_eq!(reply.code, 501, "{reply}");
    // Case-insensitive mechanism name; "=" is an empty initial response.
    assert_eq!(c.command("AUTH XOAUTH2 =").code, 501);
    let reply = c.command("AUTH plain AGJvYgBodW50ZXJ6"); // \0bob\0hunterz
    assert_eq!(reply.to_string(), INVALID);
    let reply = c.command("AUTH plain AGJvYgBodW50ZXIy"); // \0bob\0hunter2
    assert_eq!(reply.to_string(), OK);
    assert_eq!(c.command("AUTH PLAIN AGJvYgBodW50ZXIy").code, 503);
    let reply = c.send_message("s@client.test", &["r@x.test"], b"x\r\n");
    assert_eq!(reply.code, 250, "{reply}");
    // After RSET and a new EHLO the session stays authenticated.
    c.expect("RSET", 250);
    c.expect("QUIT", 221);
    let msgs = server.wait_for_messages(1, WAIT);
    assert_eq!(msgs[0].auth_user.as_deref(), Some("bob"));
    assert_eq!(msgs[0].mechanism.as_deref(), Some("PLAIN"));
    assert!(!msgs[0].tls);
    let attempts = server.auth_attempts();
    assert!(
        attempts.last().is_some_and(|a| a.success && !a.tls),
        "{attempts:#?}"
    );
}

#[test]
fn xoauth2_error_exchange_on_the_wire() {
    let server = SmtpServer::builder()
        .auth(&["XOAUTH2"])
        .user("bob", "token-1")
        .auth_require_tls(false)
        .start();
    let (mut c, _) = SmtpClient::connect_greeted(server.addr());
    c.expect("EHLO client.test", 250);
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let reply = c.command(&format!(
        "AUTH XOAUTH2 {}",
        b64("user=bob\x01auth=Bearer token-2\x01\x01")
    ));
    assert_eq!(reply.code, 334, "{reply}");
    let reply = c.command("");
    assert_eq!(reply.to_string(), INVALID);
    let reply = c.command(&format!(
        "AUTH XOAUTH2 {}",
        b64("user=bob\x01auth=Bearer token-1\x01\x01")
    ));
    assert_eq!(reply.to_string(), OK);
    c.expect("QUIT", 221);
}

#[test]
fn require_starttls_refuses_mail_in_clear() {
    let server = SmtpServer::builder()
        .starttls()
        .require_starttls(true)
        .start();
    let (mut c, _) = SmtpClient::connect_greeted(server.addr());
    c.expect("EHLO client.test", 250);
    let reply = c.command("MAIL FROM:<s@client.test>");
    assert_eq!(reply.code, 530, "{reply}");
    c.expect("QUIT", 221);
    let out = client(
        &server,
        &["--from", "s@client.test", "--to", "r@x.test", "--data", "x"],
    );
    out.assert_success();
    assert_step(&out, "data", "250");
    assert!(server.wait_for_messages(1, WAIT)[0].tls);
}

#[test]
fn implicit_tls_greets_only_after_the_handshake() {
    let server = auth_server(Mode::Implicit);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut buf = [0u8; 64];
    if let Ok(n) = s.read(&mut buf) {
        assert!(
            !buf[..n].starts_with(b"220"),
            "plain greeting in implicit mode"
        );
    }
    drop(s);

    let out = client(
        &server,
        &[
            "--auth",
            "SCRAM-SHA-256",
            "--user",
            "alice",
            "--password",
            ALICE_PW,
            "--from",
            "s@client.test",
            "--to",
            "r@x.test",
            "--data",
            "Subject: implicit\n\nx\n",
        ],
    );
    out.assert_success();
    assert_step(&out, "greeting", &format!("220 {HOSTNAME}"));
    assert_step(&out, "tls", "TLSv1.3");
    // AUTH is offered at once (the session is TLS), STARTTLS is not.
    let ehlo = step(&out, "ehlo").unwrap();
    assert!(
        ehlo.contains("AUTH") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert_step(&out, "auth", OK);
    let msgs = server.wait_for_messages(1, WAIT);
    assert!(msgs[0].tls);
    assert_eq!(msgs[0].mechanism.as_deref(), Some("SCRAM-SHA-256"));
    assert_eq!(msgs[0].auth_user.as_deref(), Some("alice"));

    // Name verification: IPv6 literal, IPv4 literal (no SNI for IPs).
    if let Some(v6) = server.addr_v6() {
        let out = smtp_client(&[&v6, "--tls", "implicit", "--cafile", ca()]);
        out.assert_success();
    }
    let out = smtp_client(&[&server.addr(), "--tls", "implicit", "--cafile", ca()]);
    out.assert_success();
}

#[test]
fn wrong_host_and_untrusted_certificates_fail_verification() {
    let pki = TestPki::shared();
    let wrong = SmtpServer::builder()
        .starttls()
        .cert(pki.wrong_host_cert(), pki.wrong_host_key())
        .start();
    let out = client(&wrong, &[]);
    out.assert_failure()
        .assert_stdout_contains("certificate verify failed");
    assert!(
        out.stdout_str().contains("Hostname mismatch"),
        "{}",
        out.report()
    );
    // The right name verifies (and is sent as SNI).
    let out = smtp_client(&[
        &wrong.addr(),
        "--tls",
        "starttls",
        "--cafile",
        ca(),
        "--servername",
        WRONG_HOST_NAME,
        "--from",
        "s@client.test",
        "--to",
        "r@x.test",
        "--data",
        "x",
    ]);
    out.assert_success();
    assert_eq!(
        wrong.wait_for_messages(1, WAIT)[0].sni.as_deref(),
        Some(WRONG_HOST_NAME)
    );

    let untrusted = SmtpServer::builder()
        .implicit_tls()
        .cert(pki.untrusted_cert(), pki.untrusted_key())
        .start();
    let out = client(&untrusted, &[]);
    out.assert_failure()
        .assert_stdout_contains("unable to get local issuer certificate");
    // Without verification the handshake itself is fine.
    let out = smtp_client(&[&untrusted.addr(), "--tls", "implicit"]);
    out.assert_success();

    let expired = SmtpServer::builder()
        .starttls()
        .cert(pki.expired_cert(), pki.expired_key())
        .start();
    let out = client(&expired, &[]);
    out.assert_failure()
        .assert_stdout_contains("certificate has expired");
}

#[test]
fn dropping_the_server_kills_it_and_removes_its_directory() {
    let server = SmtpServer::builder().auth(&["PLAIN"]).start();
    let (pid, dir) = (server.pid(), server.dir().to_path_buf());
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(server);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still there"
    );
    assert!(!dir.exists());
    // A port picked by the server itself, so many can run at once.
    let a = SmtpServer::builder().start();
    let b = SmtpServer::builder().start();
    assert_ne!(a.port(), b.port());
}
