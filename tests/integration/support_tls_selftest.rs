//! Self-tests of the test PKI (`support::tls`) and of Postfix with TLS
//! (`Postfix::shared_tls`), checked with the `openssl` command and Python's
//! smtplib, without `outbox`.

use crate::support::postfix::{HOSTNAME, Postfix, rcpt, received_tls, strip_trace_headers};
use crate::support::pyclient::{smtp_client, step};
use crate::support::smtp::SmtpClient;
use crate::support::tls::{
    CA_NAME, SERVER_DNS_NAMES, SERVER_IPS, TestPki, UNTRUSTED_CA_NAME, WRONG_HOST_NAME,
    openssl_time,
};
use crate::support::{Output, TestEnv, crlf_to_lf, unique_name};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn openssl<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    openssl_with_stdin(args, b"")
}

fn openssl_with_stdin<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: &[u8]) -> Output {
    let env = TestEnv::new();
    let mut cmd = env.command("openssl");
    cmd.args(args)
        .stdin(stdin.to_vec())
        .timeout(Duration::from_secs(30));
    cmd.run()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// `openssl verify` of `cert` against `ca` with extra options.
fn verify(ca: &Path, cert: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["verify", "-CAfile", p(ca), "-purpose", "sslserver"];
    args.extend_from_slice(extra);
    args.push(p(cert));
    openssl(&args)
}

fn x509_text(cert: &Path) -> String {
    let out = openssl(&["x509", "-noout", "-text", "-in", p(cert)]);
    out.assert_success();
    out.stdout_str()
}

#[test]
fn openssl_time_formats_utc() {
    assert_eq!(openssl_time(0), "19700101000000Z");
    assert_eq!(openssl_time(951_782_400 + 3_723), "20000229010203Z");
    assert_eq!(openssl_time(-86_400), "19691231000000Z");
    assert_eq!(openssl_time(1_798_761_599), "20261231235959Z");
}

#[test]
fn server_cert_verifies_for_all_its_names() {
    let pki = TestPki::shared();
    for name in SERVER_DNS_NAMES {
        verify(
            pki.ca_cert(),
            pki.server_cert(),
            &["-verify_hostname", name],
        )
        .assert_success();
    }
    for ip in SERVER_IPS {
        verify(pki.ca_cert(), pki.server_cert(), &["-verify_ip", ip]).assert_success();
    }
    let out = verify(
        pki.ca_cert(),
        pki.server_cert(),
        &["-verify_hostname", WRONG_HOST_NAME],
    );
    out.assert_failure();
    // The hashed directory works as a trust store too.
    let out = openssl(&[
        "verify",
        "-CApath",
        p(pki.ca_dir()),
        "-verify_hostname",
        "localhost",
        p(pki.server_cert()),
    ]);
    out.assert_success();

    let text = x509_text(pki.server_cert());
    for needle in [
        format!("Issuer: CN = {CA_NAME}"),
        "CA:FALSE".to_string(),
        "TLS Web Server Authentication".to_string(),
        "DNS:localhost, DNS:mx.outbox.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"
            .to_string(),
        "NIST CURVE: P-256".to_string(),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    let ca = x509_text(pki.ca_cert());
    assert!(
        ca.contains("CA:TRUE") && ca.contains("Certificate Sign"),
        "{ca}"
    );
    // Valid now and for the next 29 days; issued before now.
    openssl(&[
        "x509",
        "-noout",
        "-checkend",
        "2505600",
        "-in",
        p(pki.server_cert()),
    ])
    .assert_success();
}

#[test]
fn wrong_host_cert_has_a_trusted_chain_but_another_name() {
    let pki = TestPki::shared();
    verify(pki.ca_cert(), pki.wrong_host_cert(), &[]).assert_success();
    verify(
        pki.ca_cert(),
        pki.wrong_host_cert(),
        &["-verify_hostname", WRONG_HOST_NAME],
    )
    .assert_success();
    for name in SERVER_DNS_NAMES {
        verify(
            pki.ca_cert(),
            pki.wrong_host_cert(),
            &["-verify_hostname", name],
        )
        .assert_failure()
        .assert_stderr_contains("hostname mismatch");
    }
    verify(
        pki.ca_cert(),
        pki.wrong_host_cert(),
        &["-verify_ip", "127.0.0.1"],
    )
    .assert_failure();
}

#[test]
fn untrusted_cert_needs_the_other_ca() {
    let pki = TestPki::shared();
    verify(
        pki.ca_cert(),
        pki.untrusted_cert(),
        &["-verify_hostname", "localhost"],
    )
    .assert_failure()
    .assert_stderr_contains("unable to get local issuer certificate");
    verify(
        pki.untrusted_ca_cert(),
        pki.untrusted_cert(),
        &["-verify_hostname", "localhost"],
    )
    .assert_success();
    assert!(
        x509_text(pki.untrusted_ca_cert()).contains(&format!("Subject: CN = {UNTRUSTED_CA_NAME}"))
    );
    assert_ne!(
        std::fs::read(pki.untrusted_ca_cert()).unwrap(),
        std::fs::read(pki.ca_cert()).unwrap()
    );
}

#[test]
fn expired_cert_is_expired() {
    let pki = TestPki::shared();
    verify(
        pki.ca_cert(),
        pki.expired_cert(),
        &["-verify_hostname", "localhost"],
    )
    .assert_failure()
    .assert_stderr_contains("certificate has expired");
    openssl(&[
        "x509",
        "-noout",
        "-checkend",
        "0",
        "-in",
        p(pki.expired_cert()),
    ])
    .assert_failure();
}

#[test]
fn self_signed_cert_is_not_trusted_by_the_ca() {
    let pki = TestPki::shared();
    let out = verify(pki.ca_cert(), pki.self_signed_cert(), &[]);
    out.assert_failure();
    let text = x509_text(pki.self_signed_cert());
    assert!(
        text.contains("Issuer: CN = localhost") && text.contains("Subject: CN = localhost"),
        "{text}"
    );
}

#[test]
fn keys_match_their_certificates() {
    let pki = TestPki::shared();
    let pubkey = |args: &[&str]| {
        let out = openssl(args);
        out.assert_success();
        out.stdout
    };
    for (cert, key) in [
        (pki.server_cert(), pki.server_key()),
        (pki.wrong_host_cert(), pki.wrong_host_key()),
        (pki.untrusted_cert(), pki.untrusted_key()),
        (pki.expired_cert(), pki.expired_key()),
        (pki.self_signed_cert(), pki.self_signed_key()),
        (pki.ca_cert(), pki.ca_key()),
        (pki.untrusted_ca_cert(), pki.untrusted_ca_key()),
    ] {
        assert_eq!(
            pubkey(&["x509", "-noout", "-pubkey", "-in", p(cert)]),
            pubkey(&["pkey", "-pubout", "-in", p(key)]),
            "{} / {}",
            cert.display(),
            key.display()
        );
    }
}

// ---------------------------------------------------------------------------
// Postfix with TLS

#[test]
fn shared_tls_offers_starttls_and_the_plain_shared_instance_does_not() {
    let pf = Postfix::shared_tls();
    assert!(pf.has_tls());
    let (mut c, _) = SmtpClient::connect_greeted(pf.addr());
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(
        ehlo.ehlo_keywords().iter().any(|k| k == "STARTTLS"),
        "{ehlo}"
    );
    assert!(!ehlo.ehlo_keywords().iter().any(|k| k == "AUTH"), "{ehlo}");
    c.expect("QUIT", 221);

    let plain = Postfix::shared();
    assert!(!plain.has_tls());
    assert!(plain.wrapper_addr().is_none());
    let (mut c, _) = SmtpClient::connect_greeted(plain.addr());
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(
        !ehlo.ehlo_keywords().iter().any(|k| k == "STARTTLS"),
        "{ehlo}"
    );
    c.expect("STARTTLS", 502);
    c.expect("QUIT", 221);
}

/// `openssl s_client` with full verification against the test CA. After
/// the handshake (and, for implicit TLS, the greeting) it sends EHLO, waits
/// for the reply, sends QUIT: Postfix drops clients that talk before it is
/// their turn, so the input cannot simply be piped in at once.
fn s_client(addr: &str, starttls: bool, verify: &[&str]) -> Output {
    let pki = TestPki::shared();
    let mut args = vec!["s_client", "-connect", addr];
    if starttls {
        args.extend_from_slice(&["-starttls", "smtp"]);
    }
    args.extend_from_slice(&[
        "-CAfile",
        p(pki.ca_cert()),
        "-verify_return_error",
        "-crlf",
        "-ign_eof",
    ]);
    args.extend_from_slice(verify);
    let cmdline = format!("openssl {}", args.join(" "));
    let mut child = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let mut transcript = String::new();
    // Wait for a line satisfying `want`; false on EOF or timeout.
    let mut wait_for = |want: &dyn Fn(&str) -> bool| loop {
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(line) => {
                transcript.push_str(&line);
                transcript.push('\n');
                if want(&line) {
                    return true;
                }
            }
            Err(_) => return false,
        }
    };
    let ready = if starttls {
        wait_for(&|l| l.starts_with("Verify return code:"))
    } else {
        wait_for(&|l| l.starts_with("220 "))
    };
    if ready {
        let _ = stdin.write_all(b"EHLO client.test\n");
        if wait_for(&|l| l.starts_with("250 ")) {
            let _ = stdin.write_all(b"QUIT\n");
            wait_for(&|_| false);
        }
    }
    drop(stdin);
    let _ = child.kill();
    let status = child.wait().expect("wait for openssl");
    let _ = reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    Output {
        status: status.code(),
        signal: None,
        timed_out: false,
        stdout: transcript.into_bytes(),
        stderr,
        cmdline,
    }
}

#[test]
fn postfix_starttls_verifies_with_openssl_s_client() {
    let pf = Postfix::shared_tls();
    let out = s_client(
        &pf.addr(),
        true,
        &["-verify_hostname", "localhost", "-servername", "localhost"],
    );
    out.assert_success()
        .assert_stdout_contains("Verify return code: 0 (ok)")
        .assert_stdout_contains(&format!("250-{HOSTNAME}"))
        .assert_stdout_contains("221 2.0.0 Bye");
    // After TLS, STARTTLS is no longer offered.
    let after = out.stdout_str();
    assert!(!after.contains("250-STARTTLS"), "{}", out.report());

    let out = s_client(&pf.addr(), true, &["-verify_ip", "127.0.0.1"]);
    out.assert_success();
    let out = s_client(&pf.addr(), true, &["-verify_hostname", WRONG_HOST_NAME]);
    out.assert_failure();
}

#[test]
fn postfix_wrapper_port_speaks_tls_first() {
    let pf = Postfix::shared_tls();
    let wrapper = pf.wrapper_addr().expect("shared_tls has a wrapper port");
    assert_ne!(pf.wrapper_port(), Some(pf.port()));
    let out = s_client(
        &wrapper,
        false,
        &["-verify_hostname", HOSTNAME, "-servername", HOSTNAME],
    );
    out.assert_success()
        .assert_stdout_contains("Verify return code: 0 (ok)")
        .assert_stdout_contains(&format!("220 {HOSTNAME} ESMTP"))
        .assert_stdout_contains(&format!("250-{HOSTNAME}"))
        .assert_stdout_contains("221 2.0.0 Bye");

    // Without a handshake, nothing comes: no plain-text greeting.
    let mut s = TcpStream::connect(&wrapper).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => assert!(
            !buf[..n].starts_with(b"220"),
            "plain greeting on the wrapper port: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }

    if let Some(v6) = pf.wrapper_addr_v6() {
        s_client(&v6, false, &["-verify_ip", "::1"]).assert_success();
    }
}

fn send_with_python(addr: &str, tls: &str, servername: &str, local: &str, subject: &str) {
    let pki = TestPki::shared();
    let data = format!("Subject: {subject}\nFrom: a@client.test\n\nbody over {tls}\n");
    let out = smtp_client(&[
        addr,
        "--tls",
        tls,
        "--cafile",
        p(pki.ca_cert()),
        "--servername",
        servername,
        "--from",
        "sender@client.test",
        "--to",
        &rcpt(local),
        "--data",
        &data,
    ]);
    out.assert_success();
    let data_reply = step(&out, "data").unwrap_or_default();
    assert!(data_reply.starts_with("250 "), "{}", out.report());
}

#[test]
fn mail_sent_over_starttls_and_wrapper_lands_in_the_maildir() {
    let pf = Postfix::shared_tls();
    let local = unique_name("tls");
    send_with_python(&pf.addr(), "starttls", "localhost", &local, "via starttls");
    send_with_python(
        &pf.wrapper_addr().unwrap(),
        "implicit",
        HOSTNAME,
        &local,
        "via wrapper",
    );
    let local_plain = unique_name("notls");
    send_with_python(&pf.addr(), "none", "localhost", &local_plain, "in clear");

    let msgs = pf.wait_for_messages(&local, 2, WAIT);
    let mut subjects = Vec::new();
    for m in &msgs {
        let tls = received_tls(m)
            .unwrap_or_else(|| panic!("no TLS in Received:\n{}", String::from_utf8_lossy(m)));
        assert!(tls.starts_with("TLSv1."), "{tls}");
        let body = String::from_utf8_lossy(&strip_trace_headers(m)).into_owned();
        subjects.push(body.lines().next().unwrap_or_default().to_string());
    }
    subjects.sort();
    assert_eq!(subjects, ["Subject: via starttls", "Subject: via wrapper"]);

    let plain = pf.wait_for_messages(&local_plain, 1, WAIT);
    assert_eq!(received_tls(&plain[0]), None);
    assert_eq!(
        strip_trace_headers(&plain[0]),
        crlf_to_lf(b"Subject: in clear\r\nFrom: a@client.test\r\n\r\nbody over none\r\n")
    );
}

#[test]
fn received_tls_reads_the_received_header() {
    let raw = b"Return-Path: <a@b>\nReceived: from x (localhost [127.0.0.1])\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n\t key-exchange X25519)\n\t(No client certificate requested)\n\tby mx; date\nSubject: s\n\nReceived: (using TLSv9)\n";
    assert_eq!(
        received_tls(raw).as_deref(),
        Some("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519")
    );
    assert_eq!(
        received_tls(b"Received: from x by y; date\nSubject: s\n\n"),
        None
    );
}

#[test]
fn private_instance_can_require_starttls() {
    let pf = Postfix::builder()
        .tls_test_pki()
        .main_cf("smtpd_tls_security_level", "encrypt")
        .start();
    assert!(pf.wrapper_addr().is_none());
    let (mut c, _) = SmtpClient::connect_greeted(pf.addr());
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(
        ehlo.ehlo_keywords().iter().any(|k| k == "STARTTLS"),
        "{ehlo}"
    );
    let reply = c.command("MAIL FROM:<a@client.test>");
    assert_eq!(reply.code, 530, "{reply}");
    assert!(reply.text().contains("STARTTLS"), "{reply}");
    c.expect("QUIT", 221);

    let local = unique_name("required");
    send_with_python(&pf.addr(), "starttls", "mx.outbox.test", &local, "required");
    let msgs = pf.wait_for_messages(&local, 1, WAIT);
    assert!(received_tls(&msgs[0]).is_some());
}

#[test]
fn wrapper_port_without_tls_is_an_error() {
    let err = Postfix::builder().wrapper_port().try_start().unwrap_err();
    assert!(err.contains("tls"), "{err}");
}
