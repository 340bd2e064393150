//! Tests of the harness the bounce and log tests read with: the private syslog
//! socket, the log line parser and the report parser, on input made here (no
//! outbox involved), so a failure of those tests is outbox's and not theirs.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::support::dsn::{Dsn, Returned, address_of_type, parse_status_blocks};
use crate::support::outbox_log::{LogLine, parse_fields};
use crate::support::syslog::SyslogSink;

#[test]
fn the_syslog_sink_receives_what_is_sent_to_its_path() {
    let sink = SyslogSink::bind();
    assert!(sink.datagrams().is_empty());
    let sender = UnixDatagram::unbound().unwrap();
    sender
        .send_to(b"<22>Dec  1 23:59:01 outbox[7]: first", sink.path())
        .unwrap();
    sender.send_to(b"second", sink.path()).unwrap();
    let got = sink.wait_for(2, Duration::from_secs(5));
    assert_eq!(got, ["<22>Dec  1 23:59:01 outbox[7]: first", "second"]);
    // Read once, kept: a later call returns them again, with any new one after.
    sender.send_to(b"third", sink.path()).unwrap();
    assert_eq!(
        sink.datagrams(),
        ["<22>Dec  1 23:59:01 outbox[7]: first", "second", "third"]
    );
}

#[test]
fn the_syslog_sink_times_out_with_what_it_has() {
    let sink = SyslogSink::bind();
    let result = std::panic::catch_unwind(|| sink.wait_for(1, Duration::from_millis(100)));
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("waiting for 1 datagram(s)"), "{message}");
}

#[test]
fn log_fields_split_bare_quoted_and_parenthesised_values() {
    let fields = parse_fields(
        "id=1764633600.123456.0abc uid=0 from=<> to=<a@example.test> \
         reply=\"550 5.1.1 <a@example.test>: say \\\"no\\\" \\\\ twice\" \
         bounce=none (the sender is <>) dsn=5.1.1",
    )
    .unwrap();
    let want: Vec<(String, String)> = [
        ("id", "1764633600.123456.0abc"),
        ("uid", "0"),
        ("from", "<>"),
        ("to", "<a@example.test>"),
        ("reply", "550 5.1.1 <a@example.test>: say \"no\" \\ twice"),
        ("bounce", "none (the sender is <>)"),
        ("dsn", "5.1.1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(fields, want);
    assert!(parse_fields("id=1 what").is_err());
    assert!(parse_fields("reply=\"unclosed").is_err());
    assert!(parse_fields("reply=\"a\"b").is_err());
    assert!(parse_fields("=x").is_err());
}

#[test]
fn log_lines_of_a_file_and_of_syslog() {
    let line = LogLine::from_file_line(
        "2026-12-01T23:59:01Z outbox[4242]: id=9 status=sent reply=\"250 2.0.0 Ok\"",
    )
    .unwrap();
    assert_eq!(line.stamp, "2026-12-01T23:59:01Z");
    assert_eq!(line.pri, None);
    assert_eq!(line.pid, 4242);
    assert_eq!(line.text, "id=9 status=sent reply=\"250 2.0.0 Ok\"");
    assert_eq!(line.field("reply"), "250 2.0.0 Ok");
    assert_eq!(line.get("dsn"), None);
    assert!(LogLine::from_file_line("outbox[1]: id=1").is_err());
    assert!(LogLine::from_file_line("t outbox[x]: id=1").is_err());

    let d = LogLine::from_datagram("<22>Dec  1 23:59:01 outbox[77]: id=1 status=bounced").unwrap();
    assert_eq!(d.stamp, "Dec  1 23:59:01");
    assert_eq!(d.pri, Some(22));
    assert_eq!(d.pid, 77);
    assert_eq!(d.field("status"), "bounced");
    let d = LogLine::from_datagram("<20>Dec 11 23:59:01 outbox[77]: id=1").unwrap();
    assert_eq!(d.pri, Some(20));
    for bad in [
        "Dec  1 23:59:01 outbox[77]: id=1",
        "<>Dec  1 23:59:01 outbox[77]: id=1",
        "<192>Dec  1 23:59:01 outbox[77]: id=1",
        "<2x>Dec  1 23:59:01 outbox[77]: id=1",
        "<22>Dec 1 23:59:01 outbox[77]: id=1",
        "<22>2026-12-01T23:59:01 outbox[77]: id=1",
        "<22>Dec  1 23:59:01 mailer[77]: id=1",
        "<22>Dec  1 23:59:01 outbox[77] id=1",
    ] {
        assert!(LogLine::from_datagram(bad).is_err(), "{bad}");
    }
}

/// A report as RFC 3464 §A.2 and RFC 6522 shape it.
const REPORT: &str = "Return-Path: <>\n\
    From: Mail Delivery System <MAILER-DAEMON@host.example.test>\n\
    To: sender@example.test\n\
    Subject: Undelivered Mail Returned to Sender\n\
    Auto-Submitted: auto-replied\n\
    MIME-Version: 1.0\n\
    Content-Type: multipart/report; report-type=delivery-status;\n \
    boundary=\"B0\"\n\
    \n\
    --B0\n\
    Content-Type: text/plain; charset=us-ascii\n\
    \n\
    Your message could not be delivered to rcpt@example.test.\n\
    \n\
    --B0\n\
    Content-Type: message/delivery-status\n\
    \n\
    Reporting-MTA: dns; host.example.test\n\
    X-Outbox-Queue-ID: 1764633600.1.abc\n\
    Arrival-Date: Tue, 1 Dec 2026 23:59:00 +0000\n\
    \n\
    Final-Recipient: rfc822; rcpt@example.test\n\
    Action: failed\n\
    Status: 5.1.1\n\
    Remote-MTA: dns; mx.outbox.test\n\
    Diagnostic-Code: smtp; 550 5.1.1 <rcpt@example.test>:\n \
    Recipient address rejected\n\
    \n\
    Final-Recipient: rfc822; other@example.test\n\
    Action: failed\n\
    Status: 5.7.1\n\
    \n\
    --B0\n\
    Content-Type: text/rfc822-headers\n\
    \n\
    Subject: hello\n\
    Message-ID: <m1@example.test>\n\
    \n\
    --B0--\n";

#[test]
fn a_report_is_read_back() {
    let dsn = Dsn::of(REPORT.as_bytes());
    assert_eq!(dsn.return_path.as_deref(), Some("<>"));
    assert_eq!(dsn.from.as_deref(), Some("MAILER-DAEMON@host.example.test"));
    assert_eq!(dsn.to, ["sender@example.test"]);
    assert_eq!(dsn.auto_submitted.as_deref(), Some("auto-replied"));
    assert_eq!(dsn.content_type, "multipart/report");
    assert_eq!(dsn.report_type.as_deref(), Some("delivery-status"));
    assert_eq!(
        dsn.part_types,
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    assert!(dsn.human.contains("could not be delivered to rcpt@"));
    assert_eq!(
        dsn.per_message.field("Reporting-MTA"),
        "dns; host.example.test"
    );
    assert_eq!(
        dsn.per_message.field("x-outbox-queue-id"),
        "1764633600.1.abc"
    );
    assert_eq!(
        dsn.final_recipients(),
        ["rcpt@example.test", "other@example.test"]
    );
    let r = dsn.recipient("RCPT@example.test").unwrap();
    assert_eq!(r.field("Status"), "5.1.1");
    assert_eq!(
        r.field("Diagnostic-Code"),
        "smtp; 550 5.1.1 <rcpt@example.test>: Recipient address rejected"
    );
    assert_eq!(
        dsn.returned,
        Returned::Headers("Subject: hello\nMessage-ID: <m1@example.test>\n".into())
    );
}

#[test]
fn a_report_returning_the_whole_message_and_a_message_that_is_none() {
    let full = REPORT
        .replace(
            "Content-Type: text/rfc822-headers",
            "Content-Type: message/rfc822",
        )
        .replace(
            "Message-ID: <m1@example.test>\n\n",
            "Message-ID: <m1@example.test>\n\nthe body\n\n",
        );
    let dsn = Dsn::of(full.as_bytes());
    match &dsn.returned {
        Returned::Message(m) => {
            let m = String::from_utf8_lossy(m);
            assert!(
                m.starts_with("Subject: hello\n") && m.contains("\n\nthe body"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(Dsn::parse(b"Subject: hi\n\njust text\n").is_err());
}

#[test]
fn delivery_status_blocks_and_address_types() {
    let blocks = parse_status_blocks("A: 1\r\nB: 2\r\n  more\r\n\r\n\r\nC: 3\r\nnot a field\r\n");
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].field("b"), "2 more");
    assert_eq!(blocks[1].0[1], (String::new(), "not a field".to_string()));
    assert_eq!(address_of_type("rfc822; a@b"), Some("a@b"));
    assert_eq!(address_of_type("RFC822;a@b"), Some("a@b"));
    assert_eq!(address_of_type("x400; a@b"), None);
    assert_eq!(address_of_type("a@b"), None);
}
