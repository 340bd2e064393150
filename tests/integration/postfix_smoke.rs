//! Smoke tests of the private Postfix itself, spoken to with a raw SMTP
//! client (no `outbox` involved). They pin down the server behaviour the
//! other tests rely on.

use crate::support::postfix::{HOSTNAME, Postfix, rcpt, strip_trace_headers};
use crate::support::smtp::{Reply, SmtpClient};
use crate::support::{crlf_to_lf, unique_name};
use std::net::TcpStream;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const SENDER: &str = "sender@client.test";

fn greet(addr: &str) -> SmtpClient {
    let (mut c, greeting) = SmtpClient::connect_greeted(addr);
    assert!(
        greeting.text().starts_with(HOSTNAME),
        "greeting should name {HOSTNAME}: {greeting}"
    );
    c.expect("EHLO client.test", 250);
    c
}

fn quit(mut c: SmtpClient) {
    c.expect("QUIT", 221);
}

#[track_caller]
fn assert_reply(reply: &Reply, code: u16, needle: &str, c: &SmtpClient) {
    assert!(
        reply.code == code && reply.text().contains(needle),
        "expected {code} containing {needle:?}, got:\n{reply}\n--- transcript ---\n{}",
        c.transcript()
    );
}

#[test]
fn ehlo_advertises_the_extensions_outbox_relies_on() {
    let pf = Postfix::shared();
    let (mut c, _) = SmtpClient::connect_greeted(pf.addr());
    let ehlo = c.expect("EHLO client.test", 250);
    assert_eq!(ehlo.lines[0], HOSTNAME, "EHLO reply: {ehlo}");
    let keywords = ehlo.ehlo_keywords();
    for k in [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "SIZE",
        "DSN",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ] {
        assert!(
            keywords.iter().any(|w| w == k),
            "{k} missing from EHLO reply:\n{ehlo}"
        );
    }
    for k in ["STARTTLS", "AUTH"] {
        assert!(
            !keywords.iter().any(|w| w == k),
            "unexpected {k} in EHLO reply:\n{ehlo}"
        );
    }
    assert_eq!(
        ehlo.ehlo_param("SIZE").as_deref(),
        Some("52428800"),
        "SIZE should advertise the default 50 MiB limit:\n{ehlo}"
    );
    quit(c);

    if let Some(v6) = pf.addr_v6() {
        let c = greet(&v6);
        quit(c);
    }
}

#[test]
fn delivers_a_message_to_the_maildir_intact() {
    let pf = Postfix::shared();
    let message = "From: Sender <sender@client.test>\r\n\
                   To: Smoke <smoke@example.test>\r\n\
                   Subject: smoke test\r\n\
                   Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
                   Message-ID: <smoke.1@client.test>\r\n\
                   MIME-Version: 1.0\r\n\
                   Content-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: 8bit\r\n\
                   \r\n\
                   Hello from the smoke test.\r\n\
                   .a line starting with a dot\r\n\
                   ..and one with two\r\n\
                   Gr\u{fc}\u{df}e, \u{65e5}\u{672c}\r\n\
                   \ttab, trailing space \r\n\
                   \r\n\
                   last line\r\n";
    let mut c = greet(&pf.addr());
    let reply = c.send_message(SENDER, &["smoke@example.test"], message.as_bytes());
    assert_reply(&reply, 250, "queued as", &c);
    quit(c);

    let msgs = pf.wait_for_messages("smoke", 1, WAIT);
    let raw = String::from_utf8_lossy(&msgs[0]).into_owned();
    assert!(
        raw.starts_with("Return-Path: <sender@client.test>\n"),
        "delivered message:\n{raw}"
    );
    assert!(
        raw.contains("\nDelivered-To: smoke@example.test\n"),
        "delivered message:\n{raw}"
    );
    assert_eq!(
        String::from_utf8_lossy(&strip_trace_headers(&msgs[0])),
        String::from_utf8_lossy(&crlf_to_lf(message.as_bytes())),
        "the delivered message (minus trace headers, with LF line endings) \
         must be exactly what was sent"
    );
}

#[test]
fn server_neither_adds_nor_drops_headers() {
    // By default Postfix adds Date, Message-ID, From, ... for "local"
    // clients and drops Bcc; the tests must see a client's omissions and
    // leaks.
    let pf = Postfix::shared();
    let local = unique_name("headers");
    let message = "Subject: nothing else\r\nBcc: hidden@example.test\r\n\r\nbody\r\n";
    let mut c = greet(&pf.addr());
    let reply = c.send_message(SENDER, &[&rcpt(&local)], message.as_bytes());
    assert_reply(&reply, 250, "queued as", &c);
    quit(c);

    let msgs = pf.wait_for_messages(&local, 1, WAIT);
    assert_eq!(
        String::from_utf8_lossy(&strip_trace_headers(&msgs[0])),
        "Subject: nothing else\nBcc: hidden@example.test\n\nbody\n"
    );
}

#[test]
fn each_recipient_gets_its_own_copy() {
    let pf = Postfix::shared();
    let (a, b, other) = (
        unique_name("copy"),
        unique_name("copy"),
        unique_name("copy"),
    );
    let mut c = greet(&pf.addr());
    let reply = c.send_message(
        SENDER,
        &[&rcpt(&a), &rcpt(&b)],
        b"Subject: two\r\n\r\nx\r\n",
    );
    assert_reply(&reply, 250, "queued as", &c);
    quit(c);

    for local in [&a, &b] {
        let msgs = pf.wait_for_messages(local, 1, WAIT);
        let delivered_to = format!("\nDelivered-To: {}\n", rcpt(local));
        assert!(
            String::from_utf8_lossy(&msgs[0]).contains(&delivered_to),
            "copy for {local}:\n{}",
            String::from_utf8_lossy(&msgs[0])
        );
    }
    assert!(pf.messages_now(&other).is_empty());
}

#[test]
fn rcpt_with_reject_prefix_gets_550() {
    let pf = Postfix::shared();
    let mut c = greet(&pf.addr());
    c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
    let reply = c.command(&format!("RCPT TO:<{}>", rcpt(&unique_name("reject-x"))));
    assert_reply(&reply, 550, "5.1.1", &c);
    assert_reply(&reply, 550, "rejected for testing", &c);
    // An ordinary recipient in the same transaction is still fine.
    c.expect(&format!("RCPT TO:<{}>", rcpt(&unique_name("ok"))), 250);
    c.expect("RSET", 250);
    quit(c);
}

#[test]
fn rcpt_with_defer_prefix_gets_450() {
    let pf = Postfix::shared();
    let mut c = greet(&pf.addr());
    c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
    let reply = c.command(&format!("RCPT TO:<{}>", rcpt(&unique_name("defer-x"))));
    assert_reply(&reply, 450, "4.2.0", &c);
    assert_reply(&reply, 450, "deferred for testing", &c);
    c.expect("RSET", 250);
    quit(c);
}

#[test]
fn rcpt_in_another_domain_is_not_relayed() {
    let pf = Postfix::shared();
    let mut c = greet(&pf.addr());
    c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
    let reply = c.command("RCPT TO:<someone@elsewhere.test>");
    assert_reply(&reply, 554, "Relay access denied", &c);
    c.expect("RSET", 250);
    quit(c);
}

#[test]
fn bare_lf_in_message_is_refused() {
    let pf = Postfix::shared();
    let local = unique_name("barelf");
    let mut c = greet(&pf.addr());
    let reply = c.send_message(
        SENDER,
        &[&rcpt(&local)],
        b"Subject: bare LF\r\n\r\nbad: a\nb\r\n",
    );
    assert_reply(&reply, 550, "bare <LF>", &c);

    // The session goes on, and the same message with CRLF is accepted;
    // only that one arrives.
    let reply = c.send_message(
        SENDER,
        &[&rcpt(&local)],
        b"Subject: no bare LF\r\n\r\ngood: a\r\nb\r\n",
    );
    assert_reply(&reply, 250, "queued as", &c);
    quit(c);
    let msgs = pf.wait_for_messages(&local, 1, WAIT);
    assert_eq!(
        String::from_utf8_lossy(&strip_trace_headers(&msgs[0])),
        "Subject: no bare LF\n\ngood: a\nb\n"
    );
}

#[test]
fn private_instance_has_its_own_size_limit() {
    let pf = Postfix::builder().message_size_limit(10_000).start();
    let (mut c, _) = SmtpClient::connect_greeted(pf.addr());
    let ehlo = c.expect("EHLO client.test", 250);
    assert_eq!(ehlo.ehlo_param("SIZE").as_deref(), Some("10000"), "{ehlo}");
    let reply = c.command(&format!("MAIL FROM:<{SENDER}> SIZE=20000"));
    assert_reply(&reply, 552, "5.3.4", &c);
    quit(c);
}

#[test]
fn private_instance_stops_and_starts_again_on_the_same_port() {
    let mut pf = Postfix::start();
    let port = pf.port();
    let local = unique_name("restart");

    let mut c = greet(&pf.addr());
    let reply = c.send_message(SENDER, &[&rcpt(&local)], b"Subject: one\r\n\r\n1\r\n");
    assert_reply(&reply, 250, "queued as", &c);
    quit(c);
    pf.wait_for_messages(&local, 1, WAIT);

    pf.stop();
    assert!(!pf.is_running());
    let err = TcpStream::connect(pf.addr()).expect_err("nothing may listen after stop()");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");

    pf.start_again();
    assert_eq!(pf.port(), port);
    let mut c = greet(&pf.addr());
    let reply = c.send_message(SENDER, &[&rcpt(&local)], b"Subject: two\r\n\r\n2\r\n");
    assert_reply(&reply, 250, "queued as", &c);
    quit(c);
    let msgs = pf.wait_for_messages(&local, 2, WAIT);
    assert!(String::from_utf8_lossy(&msgs[0]).contains("Subject: one\n"));
    assert!(String::from_utf8_lossy(&msgs[1]).contains("Subject: two\n"));

    let dir = pf.dir().to_path_buf();
    drop(pf);
    assert!(!dir.exists(), "{} must be removed on drop", dir.display());
}
