//! ESMTP extensions against the suite's Postfix, which offers PIPELINING, CHUNKING,
//! 8BITMIME, SMTPUTF8, SIZE, DSN and ENHANCEDSTATUSCODES.

use std::time::Duration;

use crate::support::postfix::{Postfix, rcpt, strip_trace_headers};
use crate::support::{TestEnv, unique_name};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_message_over_the_size_limit_is_refused_before_any_data() {
    let pf = Postfix::builder().message_size_limit(20_000).start();
    let env = TestEnv::new();
    let big = env.write_file("big.bin", vec![b'x'; 40_000]);
    let local = unique_name("size");
    let mut cmd = env.cmd();
    cmd.args([
        "-v",
        "--server",
        &pf.addr(),
        "-f",
        "a@example.test",
        "--body",
        "see attached",
        "-a",
        big.to_str().unwrap(),
        &rcpt(&local),
    ]);
    let out = cmd.run();
    out.assert_code(69)
        .assert_stderr_contains("over the server's limit of 20000 bytes");
    let stderr = out.stderr_str();
    assert!(stderr.contains("< 250-SIZE 20000"), "{}", out.report());
    assert!(
        !stderr.contains("> MAIL"),
        "nothing may be sent\n{}",
        out.report()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(pf.messages_now(&local).is_empty());
}

#[test]
fn size_and_dsn_parameters_are_sent_and_taken() {
    let pf = Postfix::shared();
    let local = unique_name("dsn");
    let mut cmd = TestEnv::new().cmd();
    cmd.args([
        "-v",
        "--server",
        &pf.addr(),
        "-f",
        "a@example.test",
        "--notify",
        "success,failure",
        "--ret",
        "hdrs",
        "--envid",
        "batch+7=x",
        "--body",
        "dsn",
        &rcpt(&local),
    ]);
    let out = cmd.run();
    out.assert_success();
    let mail = out.stderr_line("> MAIL FROM:");
    assert!(mail.contains(" SIZE="), "{mail}");
    assert!(mail.contains(" RET=HDRS"), "{mail}");
    // xtext (RFC 3461 §4): "+" and "=" are written as +2B and +3D.
    assert!(mail.contains(" ENVID=batch+2B7+3Dx"), "{mail}");
    let rcpt_line = out.stderr_line("> RCPT TO:");
    assert!(
        rcpt_line.ends_with(" NOTIFY=SUCCESS,FAILURE"),
        "{rcpt_line}"
    );
    // Postfix refuses malformed DSN parameters (501); it took these.
    pf.wait_for_messages(&local, 1, WAIT);
}

#[test]
fn sendmail_maps_n_r_v_to_dsn() {
    let pf = Postfix::shared();
    let env = TestEnv::new();
    let config = env.write_file(
        "config.toml",
        format!("[default]\nserver = \"{}\"\n", pf.addr()),
    );
    let local = unique_name("dsn-sendmail");
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", &config)
        .args([
            "sendmail",
            "-v",
            "-N",
            "delay",
            "-R",
            "full",
            "-V",
            "env-1",
            "-f",
            "a@example.test",
            &rcpt(&local),
        ])
        .stdin(b"Subject: dsn\n\nbody\n".to_vec());
    let out = cmd.run();
    out.assert_success()
        .assert_stderr_contains("RET=FULL ENVID=env-1")
        .assert_stderr_contains("NOTIFY=DELAY");
    pf.wait_for_messages(&local, 1, WAIT);
}

#[test]
fn eight_bit_message_goes_with_body_8bitmime_byte_for_byte() {
    let pf = Postfix::shared();
    let env = TestEnv::new();
    let config = env.write_file(
        "config.toml",
        format!("[default]\nserver = \"{}\"\n", pf.addr()),
    );
    let local = unique_name("eightbit");
    let message = "Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: 8bit\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
                   Message-ID: <8bit@example.test>\r\nFrom: a@example.test\r\n\r\n\
                   Grüße aus Köln — 日本語\r\n.leading dot\r\n";
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", &config)
        .args([
            "sendmail",
            "-v",
            "-i",
            "-f",
            "a@example.test",
            &rcpt(&local),
        ])
        .stdin(message.as_bytes().to_vec());
    let out = cmd.run();
    out.assert_success().assert_stderr_contains("BODY=8BITMIME");
    let got = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    assert_eq!(
        String::from_utf8_lossy(&strip_trace_headers(&got)),
        message.replace("\r\n", "\n")
    );
}

#[test]
fn without_chunking_the_same_message_arrives_the_same() {
    let pf = Postfix::shared();
    let env = TestEnv::new();
    let body: String = (0..3000).map(|i| format!(".line {i}\n")).collect();
    let mut delivered = Vec::new();
    for flag in ["--no-chunking", "-v"] {
        let local = unique_name("chunking");
        let mut cmd = env.cmd();
        cmd.args([
            flag,
            "--server",
            &pf.addr(),
            "-f",
            "a@example.test",
            "-H",
            "Date: Sat, 21 Nov 2026 10:00:00 +0000",
            "-H",
            "Message-ID: <chunking@example.test>",
            &rcpt(&local),
        ])
        .stdin(body.clone().into_bytes());
        cmd.run().assert_success();
        let got = pf.wait_for_messages(&local, 1, WAIT).remove(0);
        let text = String::from_utf8_lossy(&strip_trace_headers(&got)).into_owned();
        delivered.push(
            text.split_once("\n\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default(),
        );
    }
    assert_eq!(delivered[0], delivered[1]);
    // Short ASCII lines go 7bit: the dots arrive as typed, whether they were stuffed
    // on the way (DATA) or not (BDAT).
    assert!(
        delivered[0].starts_with(".line 0\n"),
        "{}",
        &delivered[0][..40]
    );
    assert!(delivered[0].ends_with("\n.line 2999\n"));
}

#[test]
fn without_smtputf8_an_idn_domain_goes_as_a_labels() {
    use crate::support::fake::{FakeServer, Step, one_message, send};
    // A server that offers 8BITMIME but not SMTPUTF8.
    let server = FakeServer::start(one_message(
        "220 fake.example.test ESMTP\r\n",
        "250-fake.example.test\r\n250 8BITMIME\r\n",
        "250 queued\r\n",
    ));
    let mut cmd = TestEnv::new().cmd();
    cmd.args([
        "--server",
        server.addr(),
        "-f",
        "a@bücher.example",
        "--body",
        "idn",
        "info@例え.テスト",
    ]);
    cmd.run().assert_success();
    let got = server.received_string();
    // The header's addresses (and the Message-ID made on the sender's domain) get
    // the same A-labels (RFC 6531 §3.2): the message is ASCII, so no BODY=8BITMIME.
    assert!(
        got.contains("MAIL FROM:<a@xn--bcher-kva.example>\r\n"),
        "{got}"
    );
    assert!(
        got.contains("RCPT TO:<info@xn--r8jz45g.xn--zckzah>\r\n"),
        "{got}"
    );
    assert!(
        got.contains("\r\nFrom: <a@xn--bcher-kva.example>\r\n"),
        "{got}"
    );
    assert!(
        got.contains("\r\nTo: <info@xn--r8jz45g.xn--zckzah>\r\n"),
        "{got}"
    );
    assert!(got.contains("@xn--bcher-kva.example>\r\n"), "{got}");
    assert!(got.is_ascii(), "{got}");

    // A local part in UTF-8 has no such form: refused, clearly, before any MAIL.
    let server = FakeServer::start(vec![
        send("220 fake.example.test ESMTP\r\n"),
        Step::Line,
        send("250-fake.example.test\r\n250 8BITMIME\r\n"),
        Step::Line,
        send("221 bye\r\n"),
        Step::Close,
    ]);
    let mut cmd = TestEnv::new().cmd();
    cmd.args([
        "--server",
        server.addr(),
        "-f",
        "a@example.test",
        "--body",
        "idn",
        "jörg@example.test",
    ]);
    let out = cmd.run();
    out.assert_code(69).assert_stderr_contains("SMTPUTF8");
    let got = server.received_string();
    assert!(!got.contains("MAIL"), "{got}");
}
