//! Failures the binary must report with the right exit code and a clear message,
//! without a panic: bad input, unreachable or misbehaving servers.

use std::time::{Duration, Instant};

use crate::support::fake::{FakeServer, Step, one_message, send};
use crate::support::{free_port, outbox};

const GREETING: &str = "220 fake.example.test ESMTP\r\n";
const EHLO_OK: &str = "250-fake.example.test\r\n250 8BITMIME\r\n";

/// A run that sends a short message to `server`, with `extra` flags before the recipient.
fn send_to(server: &str, extra: &[&str]) -> crate::support::Cmd {
    let mut cmd = outbox();
    cmd.args([
        "--server",
        server,
        "-f",
        "a@example.test",
        "--body",
        "hello",
    ])
    .args(extra)
    .arg("b@example.test");
    cmd
}

fn to_fake(server: &FakeServer) -> crate::support::Cmd {
    send_to(server.addr(), &["--timeout", "10"])
}

#[test]
fn unknown_flag_is_usage_64() {
    outbox()
        .args(["--no-such-flag", "b@example.test"])
        .run()
        .assert_code(64)
        .assert_stderr_contains("--no-such-flag");
}

#[test]
fn no_recipient_is_usage_64() {
    outbox()
        .args(["--dry-run", "-f", "a@example.test", "--body", "x"])
        .run()
        .assert_code(64)
        .assert_stderr_contains("no recipient");
}

#[test]
fn injected_addresses_and_headers_are_usage_64() {
    for args in [
        &[
            "--dry-run",
            "--body",
            "x",
            "b@example.test>\r\nRCPT TO:<evil@example.test",
        ][..],
        &[
            "--dry-run",
            "--body",
            "x",
            "-f",
            "a@example.test\nX",
            "b@example.test",
        ],
        &[
            "--dry-run",
            "--body",
            "x",
            "-H",
            "X-A: 1\r\nBcc: evil@example.test",
            "b@example.test",
        ],
        &[
            "--dry-run",
            "--body",
            "x",
            "-H",
            "Bcc: evil@example.test",
            "b@example.test",
        ],
        &[
            "--dry-run",
            "--body",
            "x",
            "--ehlo-name",
            "a\r\nRSET",
            "b@example.test",
        ],
        &[
            "--dry-run",
            "--body",
            "x",
            "--server",
            "host:99999",
            "b@example.test",
        ],
    ] {
        let out = outbox().args(args).run();
        out.assert_code(64);
        if !out.stdout.is_empty() {
            out.fail("nothing may be printed as the message when the input is refused");
        }
    }
}

#[test]
fn missing_attachment_is_noinput_66_before_any_connection() {
    let port = free_port();
    send_to(
        &format!("127.0.0.1:{port}"),
        &["-a", "/nonexistent/outbox/report.pdf"],
    )
    .run()
    .assert_code(66)
    .assert_stderr_contains("/nonexistent/outbox/report.pdf");
}

#[test]
fn missing_body_file_is_noinput_66() {
    outbox()
        .args([
            "--dry-run",
            "--body-file",
            "/nonexistent/outbox/body.txt",
            "b@example.test",
        ])
        .run()
        .assert_code(66)
        .assert_stderr_contains("body.txt");
}

#[test]
fn unknown_host_is_nohost_68() {
    // A label over 63 octets (RFC 1035 §2.3.4) fails in the resolver library itself,
    // so no DNS query leaves this machine.
    let host = format!("{}.invalid", "a".repeat(64));
    send_to(&host, &[])
        .run()
        .assert_code(68)
        .assert_stderr_contains(&host);
}

#[test]
fn connection_refused_is_tempfail_75() {
    let port = free_port();
    send_to(&format!("127.0.0.1:{port}"), &[])
        .run()
        .assert_code(75)
        .assert_stderr_contains("cannot connect");
}

#[test]
fn garbage_greeting_is_protocol_76() {
    let server = FakeServer::start(vec![
        send("SSH-2.0-OpenSSH_9.2p1\r\n"),
        Step::Silence(Duration::from_secs(2)),
    ]);
    let out = to_fake(&server).run();
    out.assert_code(76)
        .assert_stderr_contains("SSH-2.0-OpenSSH_9.2p1");
    // Nothing but garbage came back, so outbox must not have gone on with EHLO.
    let got = server.received_string();
    assert!(!got.contains("EHLO"), "client sent {got:?}");
}

#[test]
fn garbage_without_line_end_is_protocol_76_not_a_timeout() {
    let server = FakeServer::start(vec![
        Step::Send(b"\x16\x03\x01\x00".to_vec()),
        Step::Silence(Duration::from_secs(15)),
    ]);
    let started = Instant::now();
    to_fake(&server).run().assert_code(76);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "garbage must be seen at once"
    );
}

#[test]
fn silent_server_times_out_with_75() {
    let server = FakeServer::start(vec![Step::Silence(Duration::from_secs(5))]);
    let started = Instant::now();
    let out = send_to(server.addr(), &["--timeout", "1"]).run();
    out.assert_code(75).assert_stderr_contains("timed out");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "--timeout 1 should end the wait after about a second, took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_trickling_server_cannot_stretch_the_timeout() {
    // One byte every 400 ms never lets a single read wait a whole second, but the
    // greeting as a whole is due within --timeout.
    let mut script = Vec::new();
    for b in "220 slow.example.test hello\r\n".bytes() {
        script.push(Step::Send(vec![b]));
        script.push(Step::Silence(Duration::from_millis(400)));
    }
    let server = FakeServer::start(script);
    let started = Instant::now();
    send_to(server.addr(), &["--timeout", "1"])
        .run()
        .assert_code(75)
        .assert_stderr_contains("timed out");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_421_greeting_is_tempfail_75_without_quit() {
    let server = FakeServer::start(vec![
        send("421 4.3.2 fake.example.test busy, try later\r\n"),
        Step::Close,
    ]);
    to_fake(&server)
        .run()
        .assert_code(75)
        .assert_stderr_contains("421 4.3.2 fake.example.test busy, try later");
    assert_eq!(
        server.received_string(),
        "",
        "nothing is sent to a server that said 421"
    );
}

#[test]
fn connection_dropped_after_rcpt_is_tempfail_75() {
    let server = FakeServer::start(vec![
        send(GREETING),
        Step::Line,
        send(EHLO_OK),
        Step::Line,
        send("250 2.1.0 ok\r\n"),
        Step::Line,
        Step::Close,
    ]);
    to_fake(&server)
        .run()
        .assert_code(75)
        .assert_stderr_contains("RCPT TO");
}

#[test]
fn mail_from_refused_is_unavailable_69_and_quit_is_sent() {
    let server = FakeServer::start(vec![
        send(GREETING),
        Step::Line,
        send(EHLO_OK),
        Step::Line,
        send("553 5.7.1 sender not allowed\r\n"),
        Step::Line,
        send("221 bye\r\n"),
        Step::Close,
    ]);
    to_fake(&server)
        .run()
        .assert_code(69)
        .assert_stderr_contains("MAIL FROM")
        .assert_stderr_contains("553 5.7.1 sender not allowed");
    let got = server.received_string();
    assert!(
        got.ends_with("MAIL FROM:<a@example.test>\r\nQUIT\r\n"),
        "client sent {got:?}"
    );
}

#[test]
fn rejected_message_after_data_is_69_with_the_reply() {
    let server = FakeServer::start(one_message(
        GREETING,
        EHLO_OK,
        "554-5.7.1 message refused:\r\n554 5.7.1 looks like spam\x1b[2J\r\n",
    ));
    let out = to_fake(&server).run();
    out.assert_code(69)
        .assert_stderr_contains("554-5.7.1 message refused:")
        .assert_stderr_contains("554 5.7.1 looks like spam?[2J");
    if out.stderr.contains(&0x1b) {
        out.fail("server text must be sanitised before it reaches the terminal");
    }
}

#[test]
fn exact_client_bytes_on_the_wire() {
    let server = FakeServer::start(one_message(
        "220-fake.example.test ESMTP\r\n220 welcome\r\n",
        EHLO_OK,
        "250 queued\r\n",
    ));
    let out = outbox()
        .args([
            "--server",
            server.addr(),
            "--ehlo-name",
            "client.example.test",
            "-f",
            "a@example.test",
            "-H",
            "Date: Sat, 21 Nov 2026 10:00:00 +0000",
            "-H",
            "Message-ID: <fixed@example.test>",
            "-s",
            "hi",
            "b@example.test",
        ])
        .stdin(".\n..\nlast")
        .run();
    out.assert_success()
        .assert_stderr_empty()
        .assert_stdout_empty();
    let expected = "EHLO client.example.test\r\n\
        MAIL FROM:<a@example.test>\r\n\
        RCPT TO:<b@example.test>\r\n\
        DATA\r\n\
        From: <a@example.test>\r\n\
        To: <b@example.test>\r\n\
        Subject: hi\r\n\
        Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
        Message-ID: <fixed@example.test>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=\"utf-8\"\r\n\
        Content-Transfer-Encoding: 7bit\r\n\
        \r\n\
        ..\r\n\
        ...\r\n\
        last\r\n\
        .\r\n\
        QUIT\r\n";
    assert_eq!(server.received_string(), expected);
}

#[test]
fn body_typed_at_a_terminal_ends_at_a_lone_dot() {
    // script(1) gives outbox a terminal for stdin; what follows the "." is not body.
    if !std::path::Path::new("/usr/bin/script").exists() {
        panic!("/usr/bin/script (bsdutils) is needed for this test");
    }
    let bin = env!("CARGO_BIN_EXE_outbox");
    let out = crate::support::TestEnv::new()
        .command("/usr/bin/script")
        .args([
            "-qec",
            &format!("{bin} --dry-run -f a@example.test b@example.test"),
            "/dev/null",
        ])
        .stdin("first line\n.\nnot body\n")
        .run();
    out.assert_success();
    // The terminal echoes all the input at once, before outbox prints anything, so
    // only what follows DATA is the message.
    let text = out.stdout_str().replace('\r', "");
    let Some((_, message)) = text.split_once("\nDATA\n") else {
        out.fail("no DATA line in the dry run");
    };
    assert!(message.ends_with("\n\nfirst line\n.\n"), "{}", out.report());
    assert!(!message.contains("not body"), "{}", out.report());
}
