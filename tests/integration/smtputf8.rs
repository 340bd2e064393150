//! Header fields in UTF-8 (RFC 6532): SMTPUTF8 on MAIL where the server offers it
//! (RFC 6531 §3.4), encoded-words (RFC 2047) where it does not, against Postfix with
//! and without `smtputf8_enable`.

use std::time::Duration;

use crate::support::postfix::{Postfix, rcpt, strip_trace_headers};
use crate::support::{Output, TestEnv, unique_name};

const WAIT: Duration = Duration::from_secs(30);

/// The message, with Date and Message-ID so that it goes as it is.
fn utf8_message(to: &str) -> String {
    format!(
        "From: Jörg <a@example.test>\nTo: {to}\nSubject: Grüße\n\
         Date: Tue, 1 Dec 2026 22:00:00 +0100\nMessage-ID: <utf8@example.test>\n\nKöln\n"
    )
}

/// A test environment whose configuration names `server`, and a queue of its own.
fn env_for(server: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write_file(
        "config.toml",
        format!("[default]\nserver = \"{server}\"\ntimeout = 30\n"),
    );
    env
}

fn sendmail(env: &TestEnv, args: &[&str], stdin: &str) -> Output {
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", env.root().join("config.toml"))
        .env("OUTBOX_QUEUE_DIR", env.root().join("queue"))
        .arg("sendmail")
        .args(args)
        .stdin(stdin.as_bytes().to_vec());
    cmd.run()
}

/// The compose face with `-v`, from Jörg, subject Grüße, body Köln, with `extra` flags,
/// to `to` at `pf`.
fn compose(pf: &Postfix, extra: &[&str], to: &str) -> Output {
    let mut cmd = TestEnv::new().cmd();
    cmd.args(["-v", "--server", &pf.addr()])
        .args(["-f", "Jörg <a@example.test>", "-s", "Grüße"])
        .args(extra)
        .args(["--body", "Köln", to]);
    cmd.run()
}

/// The delivered header section (without Postfix's trace fields) and body.
fn split_delivered(raw: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let raw = strip_trace_headers(raw);
    let at = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("an empty line after the header");
    (raw[..at + 2].to_vec(), raw[at + 2..].to_vec())
}

/// Checks a message that went to a server without SMTPUTF8: an ASCII header whose
/// encoded-words read back as the original Subject and display name, the body as sent.
#[track_caller]
fn assert_downgraded(raw: &[u8]) {
    let (head, body) = split_delivered(raw);
    let shown = String::from_utf8_lossy(&head).into_owned();
    assert!(head.is_ascii(), "raw UTF-8 in the header:\n{shown}");
    assert!(
        shown.contains("Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n"),
        "{shown}"
    );
    assert_eq!(body, "Köln\n".as_bytes());
    let parsed = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("a message mail-parser reads");
    assert_eq!(parsed.subject(), Some("Grüße"));
    let from = parsed.from().and_then(|f| f.first()).expect("a From");
    assert_eq!(from.name(), Some("Jörg"));
    assert_eq!(from.address(), Some("a@example.test"));
}

#[test]
fn utf8_header_fields_go_with_smtputf8_byte_for_byte() {
    let pf = Postfix::shared();
    let env = env_for(&pf.addr());
    let local = unique_name("utf8-header");
    let message = utf8_message(&rcpt(&local));
    let out = sendmail(
        &env,
        &["-v", "-i", "-f", "a@example.test", &rcpt(&local)],
        &message,
    );
    out.assert_success();
    let mail = out.stderr_line("> MAIL FROM:");
    assert!(
        mail.starts_with("> MAIL FROM:<a@example.test> SIZE=")
            && mail.ends_with(" BODY=8BITMIME SMTPUTF8"),
        "{}",
        out.report()
    );
    let got = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    assert_eq!(
        String::from_utf8_lossy(&strip_trace_headers(&got)),
        message,
        "the raw UTF-8 header, byte for byte"
    );
}

#[test]
fn without_smtputf8_utf8_header_fields_go_as_encoded_words() {
    let pf = Postfix::builder().smtputf8(false).start();
    let env = env_for(&pf.addr());
    let local = unique_name("utf8-down");
    let out = sendmail(
        &env,
        &["-v", "-i", "-f", "a@example.test", &rcpt(&local)],
        &utf8_message(&rcpt(&local)),
    );
    out.assert_success().assert_stderr_contains(
        "* the server does not offer SMTPUTF8: the UTF-8 in From, Subject is sent as \
         RFC 2047 encoded-words",
    );
    assert!(
        !out.stderr_str().contains("< 250-SMTPUTF8"),
        "{}",
        out.report()
    );
    let mail = out.stderr_line("> MAIL FROM:");
    // The body is still 8-bit: BODY=8BITMIME stays; SMTPUTF8 goes.
    assert!(
        mail.ends_with(" BODY=8BITMIME") && !mail.contains("SMTPUTF8"),
        "{}",
        out.report()
    );
    let got = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    assert_downgraded(&got);
    let (head, _) = split_delivered(&got);
    assert!(
        String::from_utf8_lossy(&head)
            .starts_with("From: =?UTF-8?Q?J=C3=B6rg?= <a@example.test>\n"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

#[test]
fn without_smtputf8_a_utf8_address_in_a_to_header_is_refused() {
    let pf = Postfix::builder().smtputf8(false).start();
    let env = env_for(&pf.addr());
    let local = unique_name("utf8-refused");
    let message = utf8_message(&format!("Jörg <jörg@example.test>, {}", rcpt(&local)));
    let out = sendmail(
        &env,
        &["-v", "-oep", "-i", "-f", "a@example.test", &rcpt(&local)],
        &message,
    );
    out.assert_code(69)
        .assert_stderr_contains("the To header holds the address <jörg@example.test>")
        .assert_stderr_contains("SMTPUTF8");
    assert!(!out.stderr_str().contains("> MAIL"), "{}", out.report());
    std::thread::sleep(Duration::from_millis(500));
    assert!(pf.messages_now(&local).is_empty());
}

#[test]
fn a_queued_utf8_message_is_downgraded_when_flushed() {
    let mut pf = Postfix::builder().smtputf8(false).start();
    pf.stop();
    let env = env_for(&pf.addr());
    let local = unique_name("utf8-queued");
    sendmail(&env, &["-i", &rcpt(&local)], &utf8_message(&rcpt(&local))).assert_success();
    // The queue keeps the message as it came: the downgrade is for the server it
    // finally goes to.
    let queue = std::fs::read_dir(env.root().join("queue"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| std::fs::read(e.path()).unwrap())
        .find(|bytes| bytes.starts_with(b"outbox-queue"))
        .expect("a queue entry");
    assert!(
        String::from_utf8_lossy(&queue).contains("Subject: Grüße\r\n"),
        "{}",
        String::from_utf8_lossy(&queue)
    );
    pf.start_again();
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", env.root().join("config.toml"))
        .env("OUTBOX_QUEUE_DIR", env.root().join("queue"))
        .args(["queue", "flush", "-v"]);
    let out = cmd.run();
    out.assert_success()
        .assert_stdout_contains("delivered 1, deferred 0, failed 0")
        .assert_stderr_contains("the UTF-8 in From, Subject is sent as RFC 2047");
    assert_downgraded(&pf.wait_for_messages(&local, 1, WAIT).remove(0));
}

#[test]
fn compose_utf8_address_headers_get_smtputf8() {
    // mail-builder encodes display names and text itself, but writes addresses as
    // they are: a UTF-8 one makes the header UTF-8.
    let pf = Postfix::shared();
    let local = unique_name("utf8-compose");
    let out = compose(pf, &["-H", "Reply-To: jörg@example.test"], &rcpt(&local));
    out.assert_success();
    assert!(
        out.stderr_line("> MAIL FROM:").ends_with(" SMTPUTF8"),
        "{}",
        out.report()
    );
    let got = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    let (head, _) = split_delivered(&got);
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.contains("Reply-To: <jörg@example.test>\n"), "{head}");
    // What the compose face encodes itself is as before.
    assert!(head.contains("Subject: =?utf-8?"), "{head}");
    assert!(head.contains("From: =?utf-8?"), "{head}");

    // An ASCII header: no SMTPUTF8, as before.
    let local = unique_name("utf8-compose");
    let out = compose(pf, &[], &rcpt(&local));
    out.assert_success();
    assert!(
        !out.stderr_line("> MAIL FROM:").contains("SMTPUTF8"),
        "{}",
        out.report()
    );
}

#[test]
fn without_smtputf8_or_8bitmime_a_utf8_header_over_an_ascii_body_goes_7bit() {
    use crate::support::fake::{FakeServer, one_message};
    // A server that offers no extension at all: the rewritten message is 7-bit, so it
    // needs neither SMTPUTF8 nor 8BITMIME (before, it was refused as 8-bit data).
    let server = FakeServer::start(one_message(
        "220 fake.example.test ESMTP\r\n",
        "250 fake.example.test\r\n",
        "250 queued\r\n",
    ));
    let env = env_for(server.addr());
    let message = "From: Jörg <a@example.test>\nSubject: Grüße aus Köln\n\
                   Date: Tue, 1 Dec 2026 22:00:00 +0100\nMessage-ID: <7bit@example.test>\n\n\
                   plain body\n";
    let out = sendmail(
        &env,
        &["-i", "-f", "a@example.test", "r@example.test"],
        message,
    );
    out.assert_success();
    let got = server.received_string();
    let (_, session) = got.split_once("\r\n").expect("EHLO");
    assert_eq!(
        session,
        "MAIL FROM:<a@example.test>\r\nRCPT TO:<r@example.test>\r\nDATA\r\n\
         From: =?UTF-8?Q?J=C3=B6rg?= <a@example.test>\r\n\
         Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus =?UTF-8?Q?K=C3=B6ln?=\r\n\
         Date: Tue, 1 Dec 2026 22:00:00 +0100\r\nMessage-ID: <7bit@example.test>\r\n\r\n\
         plain body\r\n.\r\nQUIT\r\n"
    );
}
