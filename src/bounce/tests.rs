use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mail_parser::{MessageParser, MimeHeaders};

use super::original::{self, Kind};
use super::*;
use crate::smtp::reply::parse_reply;

/// 2026-12-01 10:00:00 UTC.
fn arrival() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_119_200)
}

fn reply(text: &str) -> Reply {
    parse_reply(text.as_bytes()).unwrap().unwrap().0
}

fn address(a: &str) -> Address {
    Address::new(a).unwrap()
}

fn zone() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::fixed(jiff::tz::offset(1))
}

const ORIGINAL: &str = "From: Alice <alice@example.com>\r\n\
    To: bob@example.org, carol@example.org\r\n\
    Subject: quarterly figures\r\n\
    Message-ID: <orig.1@example.com>\r\n\
    Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n\
    \r\n\
    Hello.\r\n";

fn failure(to: &str, r: &str, stage: Stage) -> Failure {
    let reply = reply(r);
    Failure {
        recipient: address(to),
        original_recipient: None,
        action: Action::Failed,
        status: status_of(&reply),
        remote_mta: Some("mx.example.org".into()),
        diagnostic: Diagnostic::Reply(reply),
        stage: Some(stage),
        last_attempt: arrival() + Duration::from_secs(60),
    }
}

fn notice(failures: Vec<Failure>, ret: Ret) -> Notice {
    let mut n = Notice::new(
        "host.example.com",
        "host.example.com",
        vec![address("alice@example.com")],
        "1F3A9C2B".into(),
        arrival(),
        failures,
        ret,
    );
    n.submitter = Some("uid 1000 (alice)".into());
    n.date = arrival() + Duration::from_secs(7200);
    n.message_id = "bounce.1@host.example.com".into();
    n.boundary = "=_report_fixed".into();
    n
}

fn two_failures() -> Vec<Failure> {
    let mut bob = failure(
        "bob@example.org",
        "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table\r\n",
        Stage::RcptTo,
    );
    bob.original_recipient = Some("rfc822;bob@example.org".into());
    let carol = failure(
        "carol@example.org",
        "552 Message size exceeds fixed limit\r\n",
        Stage::EndOfData,
    );
    vec![bob, carol]
}

fn built(n: &Notice, original: &[u8]) -> String {
    let bytes = build_in(n, &Message::from_bytes(original.to_vec()), &zone()).unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn report_text_for_a_fixed_input_is_exact() {
    let mut n = notice(two_failures(), Ret::Headers);
    n.envelope_id = Some("env-42".into());
    let expected = "\
Date: Tue, 1 Dec 2026 13:00:00 +0100\r\n\
From: Mail Delivery System <MAILER-DAEMON@host.example.com>\r\n\
To: alice@example.com\r\n\
Subject: Undelivered mail: quarterly figures\r\n\
Message-ID: <bounce.1@host.example.com>\r\n\
In-Reply-To: <orig.1@example.com>\r\n\
References: <orig.1@example.com>\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n \
boundary=\"=_report_fixed\"\r\n\
\r\n\
This is a delivery status notification in MIME format.\r\n\
\r\n\
--=_report_fixed\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
Content-Transfer-Encoding: 7bit\r\n\
Content-Description: Notification\r\n\
\r\n\
This report comes from outbox at host.example.com.\r\n\
\r\n\
Your message could not be delivered to these 2 recipients:\r\n\
\r\n\
<bob@example.org>\r\n\
\x20   The server mx.example.org refused it at RCPT TO:\r\n\
\x20   550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in\r\n\
\x20     virtual mailbox table\r\n\
\x20   Check the address, then send the message again.\r\n\
\r\n\
<carol@example.org>\r\n\
\x20   The server mx.example.org refused it after the message was sent:\r\n\
\x20   552 Message size exceeds fixed limit\r\n\
\x20   The server will not take the message as it is; its answer says why.\r\n\
\r\n\
Queue id: 1F3A9C2B\r\n\
Submitted by: uid 1000 (alice)\r\n\
\r\n\
The delivery report and the header of your message follow.\r\n\
\r\n\
--=_report_fixed\r\n\
Content-Type: message/delivery-status\r\n\
Content-Description: Delivery report\r\n\
\r\n\
Original-Envelope-Id: env-42\r\n\
Reporting-MTA: dns; host.example.com\r\n\
Arrival-Date: Tue, 1 Dec 2026 11:00:00 +0100\r\n\
X-Outbox-Queue-ID: 1F3A9C2B\r\n\
\r\n\
Original-Recipient: rfc822;bob@example.org\r\n\
Final-Recipient: rfc822; bob@example.org\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mx.example.org\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: Recipient address\r\n \
rejected: User unknown in virtual mailbox table\r\n\
Last-Attempt-Date: Tue, 1 Dec 2026 11:01:00 +0100\r\n\
\r\n\
Final-Recipient: rfc822; carol@example.org\r\n\
Action: failed\r\n\
Status: 5.0.0\r\n\
Remote-MTA: dns; mx.example.org\r\n\
Diagnostic-Code: smtp; 552 Message size exceeds fixed limit\r\n\
Last-Attempt-Date: Tue, 1 Dec 2026 11:01:00 +0100\r\n\
\r\n\
--=_report_fixed\r\n\
Content-Type: text/rfc822-headers\r\n\
Content-Description: Header of the undelivered message\r\n\
\r\n\
From: Alice <alice@example.com>\r\n\
To: bob@example.org, carol@example.org\r\n\
Subject: quarterly figures\r\n\
Message-ID: <orig.1@example.com>\r\n\
Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n\
\r\n\
--=_report_fixed--\r\n";
    assert_eq!(built(&n, ORIGINAL.as_bytes()), expected);
}

fn parts(bounce: &str) -> Vec<String> {
    let message = MessageParser::default().parse(bounce.as_bytes()).unwrap();
    let root = message.root_part();
    let ct = root.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    let ids = root.sub_parts().unwrap();
    ids.iter()
        .map(|&id| {
            let ct = message.parts[id as usize].content_type().unwrap();
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
        })
        .collect()
}

/// The third part of a parsed bounce, as the parser gives its contents.
fn third_part(bounce: &str) -> Vec<u8> {
    let message = MessageParser::default().parse(bounce.as_bytes()).unwrap();
    let id = message.root_part().sub_parts().unwrap()[2];
    message.parts[id as usize].contents().to_vec()
}

#[test]
fn status_of_takes_the_enhanced_code_of_the_replys_class() {
    assert_eq!(status_of(&reply("550 5.1.1 no such user\r\n")), "5.1.1");
    assert_eq!(status_of(&reply("452 4.2.2 mailbox full\r\n")), "4.2.2");
    assert_eq!(status_of(&reply("552 5.3.4 too big\r\n")), "5.3.4");
}

#[test]
fn status_of_a_reply_without_an_enhanced_code_is_its_class() {
    assert_eq!(status_of(&reply("550 no such user\r\n")), "5.0.0");
    assert_eq!(status_of(&reply("451 try later\r\n")), "4.0.0");
}

#[test]
fn status_of_ignores_an_enhanced_code_of_another_class() {
    // The parser drops such a code already; a Reply made another way must not pass
    // one through either.
    let mixed = Reply {
        code: 550,
        enhanced: Some(crate::smtp::reply::EnhancedCode {
            class: 4,
            subject: 2,
            detail: 2,
        }),
        lines: vec!["4.2.2 odd".into()],
    };
    assert_eq!(status_of(&mixed), "5.0.0");
    assert_eq!(status_of(&reply("550 4.2.2 odd\r\n")), "5.0.0");
    assert_eq!(status_of(&reply("451 5.1.1 odd\r\n")), "4.0.0");
}

#[test]
fn an_expired_message_is_failed_with_4_4_7_and_says_how_long_it_waited() {
    let expired = Failure {
        recipient: address("bob@example.org"),
        original_recipient: None,
        action: Action::Failed,
        status: EXPIRED.into(),
        remote_mta: None,
        diagnostic: Diagnostic::Other("connection refused by mx.example.org".into()),
        stage: Some(Stage::Connect),
        last_attempt: arrival() + Duration::from_secs(5 * 86400 - 600),
    };
    let mut n = notice(vec![expired], Ret::Headers);
    n.date = arrival() + Duration::from_secs(5 * 86400 + 60);
    let bounce = built(&n, ORIGINAL.as_bytes());
    let status = "\r\n\r\nFinal-Recipient: rfc822; bob@example.org\r\n\
        Action: failed\r\n\
        Status: 4.4.7\r\n\
        Diagnostic-Code: X-Outbox; connection refused by mx.example.org\r\n\
        Last-Attempt-Date: Sun, 6 Dec 2026 10:50:00 +0100\r\n";
    assert!(bounce.contains(status), "{bounce}");
    let text = "<bob@example.org>\r\n\
        \x20   connection refused by mx.example.org (when outbox connected)\r\n\
        \x20   It waited 5 days in the queue without being delivered, and outbox gave up.\r\n";
    assert!(bounce.contains(text), "{bounce}");
}

#[test]
fn a_delayed_recipient_is_reported_as_delayed() {
    let mut later = failure("bob@example.org", "451 4.3.0 try later\r\n", Stage::RcptTo);
    later.action = Action::Delayed;
    let bounce = built(&notice(vec![later], Ret::Headers), ORIGINAL.as_bytes());
    assert!(bounce.contains("\r\nSubject: Delayed mail: quarterly figures\r\n"));
    assert!(bounce.contains("\r\nAction: delayed\r\nStatus: 4.3.0\r\n"));
    assert!(bounce.contains("has not been delivered yet"));
    assert!(bounce.contains("    outbox will try again later.\r\n"));
}

#[test]
fn the_bounce_parses_as_a_multipart_report_of_three_parts() {
    let bounce = built(&notice(two_failures(), Ret::Headers), ORIGINAL.as_bytes());
    let message = MessageParser::default().parse(bounce.as_bytes()).unwrap();
    let ct = message.root_part().content_type().unwrap();
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert_eq!(message.in_reply_to().as_text(), Some("orig.1@example.com"));
    assert_eq!(
        parts(&bounce),
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let headers = third_part(&bounce);
    let (original_header, _) = ORIGINAL.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&headers).trim_end(),
        original_header
    );
}

#[test]
fn ret_full_returns_a_small_original_whole_as_message_rfc822() {
    let bounce = built(&notice(two_failures(), Ret::Full), ORIGINAL.as_bytes());
    assert_eq!(
        parts(&bounce),
        ["text/plain", "message/delivery-status", "message/rfc822"]
    );
    let returned = third_part(&bounce);
    assert!(returned.starts_with(ORIGINAL.as_bytes()), "{bounce}");
    assert!(bounce.contains("The delivery report and your message follow.\r\n"));
}

#[test]
fn ret_full_returns_a_big_original_as_its_header_and_says_so() {
    let mut big = ORIGINAL.as_bytes().to_vec();
    while big.len() as u64 <= FULL_LIMIT {
        big.extend_from_slice(b"a line of the body that makes it bigger than the limit\r\n");
    }
    let bounce = built(&notice(two_failures(), Ret::Full), &big);
    assert_eq!(
        parts(&bounce),
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    assert!(!bounce.contains("a line of the body"));
    let said = format!(
        "The delivery report and the header of your message follow.\r\n\
         Your message was {} bytes, more than the 50000 returned whole, so only its\r\n\
         header comes back.\r\n",
        big.len()
    );
    assert!(bounce.contains(&said), "{bounce}");
}

#[test]
fn a_utf8_header_makes_the_global_types() {
    let original = ORIGINAL.replace("quarterly figures", "Quartalszahlen für Köln");
    let bounce = built(&notice(two_failures(), Ret::Headers), original.as_bytes());
    assert_eq!(
        parts(&bounce),
        [
            "text/plain",
            "message/global-delivery-status",
            "message/global-headers"
        ]
    );
    assert!(bounce.contains("report-type=global-delivery-status;"));
    assert!(bounce.contains("\r\nSubject: Undelivered mail\r\n"));
    assert!(bounce.contains("\r\nSubject: Quartalszahlen für Köln\r\n"));
    let full = built(&notice(two_failures(), Ret::Full), original.as_bytes());
    assert_eq!(parts(&full)[2], "message/global");
    assert!(full.contains("Content-Type: message/global\r\nContent-Transfer-Encoding: 8bit\r\n"));
    assert!(full.contains("\r\nContent-Transfer-Encoding: 8bit\r\n\r\nThis is a delivery"));
}

#[test]
fn a_utf8_recipient_has_the_utf8_address_type() {
    let mut f = two_failures();
    f[1].recipient = address("jörg@example.org");
    let bounce = built(&notice(f, Ret::Headers), ORIGINAL.as_bytes());
    assert_eq!(parts(&bounce)[1], "message/global-delivery-status");
    assert!(bounce.contains("\r\nFinal-Recipient: utf-8; jörg@example.org\r\n"));
    assert!(bounce.contains("\r\nFinal-Recipient: rfc822; bob@example.org\r\n"));
    assert!(bounce.contains("charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"));
    // The original's header is ASCII: it keeps its plain type.
    assert_eq!(parts(&bounce)[2], "text/rfc822-headers");
}

#[test]
fn a_multi_line_reply_is_joined_on_one_line() {
    let f = vec![failure(
        "bob@example.org",
        "550-5.7.1 Our policy does not allow\r\n550-5.7.1 this message.\r\n550 5.7.1 See the help page\r\n",
        Stage::EndOfData,
    )];
    let bounce = built(&notice(f, Ret::Headers), ORIGINAL.as_bytes());
    assert!(
        bounce.contains(
            "\r\nDiagnostic-Code: smtp; 550 5.7.1 Our policy does not allow this message. See\r\n \
             the help page\r\n"
        ),
        "{bounce}"
    );
    assert!(bounce.contains(
        "    550-5.7.1 Our policy does not allow\r\n    550-5.7.1 this message.\r\n    \
         550 5.7.1 See the help page\r\n"
    ));
}

#[test]
fn a_control_character_in_a_reply_is_made_safe() {
    let mut f = failure("bob@example.org", "550 x\r\n", Stage::RcptTo);
    f.diagnostic = Diagnostic::Reply(Reply {
        code: 550,
        enhanced: None,
        lines: vec!["no\u{1b}[2J such\ruser\u{0} é\u{202E}".into()],
    });
    let bounce = built(&notice(vec![f], Ret::Headers), ORIGINAL.as_bytes());
    assert!(bounce.contains("\r\nDiagnostic-Code: smtp; 550 no?[2J such?user? ??\r\n"));
    assert!(bounce.contains("\r\n    550 no?[2J such?user? é?\r\n"));
    assert!(!bounce.contains('\u{1b}') && !bounce.contains('\0'));
}

#[test]
fn no_bare_line_end_and_no_line_over_998() {
    let original = "Subject: lf only\nX-Odd: a\rb\n\nbody\nmore\r";
    let mut f = two_failures();
    f[0].diagnostic = Diagnostic::Reply(Reply {
        code: 550,
        enhanced: None,
        lines: vec!["y".repeat(2040), "two words".into()],
    });
    f[1].diagnostic = Diagnostic::Other(format!("why {}", "z".repeat(1500)));
    for ret in [Ret::Headers, Ret::Full] {
        let bounce = built(&notice(f.clone(), ret), original.as_bytes());
        let bytes = bounce.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(bytes[i - 1], b'\r', "bare LF at {i}");
            }
            if b == b'\r' {
                assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
        assert!(bounce.split("\r\n").all(|l| l.len() <= 998));
        // A word too long for a line is broken, no character lost.
        let at = bounce.find("Diagnostic-Code: smtp; 550").unwrap();
        let end = at + bounce[at..].find("\r\nLast-Attempt-Date").unwrap();
        let unfolded = bounce[at..end].replace("\r\n", "");
        assert!(unfolded.starts_with("Diagnostic-Code: smtp; 550 yyy"));
        assert!(unfolded.ends_with("yyy two words"));
        assert_eq!(unfolded.matches('y').count(), 2040);
        assert!(bounce.contains("X-Odd: a\r\nb\r\n"));
    }
}

#[test]
fn a_boundary_the_original_holds_is_replaced() {
    let original = format!("{ORIGINAL}--=_report_fixed\r\n");
    let bounce = built(&notice(two_failures(), Ret::Full), original.as_bytes());
    assert!(!bounce.contains("boundary=\"=_report_fixed\""));
    assert_eq!(parts(&bounce).len(), 3);
    assert!(third_part(&bounce).ends_with(b"--=_report_fixed\r\n"));
}

#[test]
fn notice_new_writes_from_mailer_daemon_with_fresh_ids() {
    let new = || {
        Notice::new(
            "example.com",
            "mx.example.com",
            vec![],
            "Q".into(),
            arrival(),
            vec![],
            Ret::Headers,
        )
    };
    let (a, b) = (new(), new());
    assert_eq!(a.from.address, "MAILER-DAEMON@example.com");
    assert_eq!(a.from.name.as_deref(), Some("Mail Delivery System"));
    assert!(a.message_id.ends_with("@example.com"));
    assert_ne!(a.message_id, b.message_id);
    assert_ne!(a.boundary, b.boundary);
    assert!(is_boundary(&a.boundary));
    let odd = Notice::new(
        "bad domain",
        "x",
        vec![],
        "Q".into(),
        arrival(),
        vec![],
        Ret::Full,
    );
    assert_eq!(odd.from.address, "MAILER-DAEMON");
}

#[test]
fn a_header_section_over_the_limit_comes_back_cut_at_a_line_end() {
    let mut original = String::from("Subject: many fields\r\n");
    while original.len() as u64 <= HEADER_LIMIT + 1000 {
        original.push_str("X-Filler: a field that makes the header section longer\r\n");
    }
    let header_size = original.len() + 2;
    original.push_str("\r\nbody\r\n");
    let bounce = built(&notice(two_failures(), Ret::Headers), original.as_bytes());
    let headers = third_part(&bounce);
    assert!(headers.len() as u64 <= HEADER_LIMIT);
    assert!(headers.ends_with(b"longer\r\n") || headers.ends_with(b"longer"));
    assert!(bounce.contains(&format!("Its header was {header_size} bytes, more than the 102400 returned, so it comes back\r\n\
         cut short.\r\n")), "{}", &bounce[..3000]);
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// A file-backed message of a few MiB: a short header, a huge body.
fn big_file(name: &str) -> (PathBuf, Message) {
    let dir = std::env::temp_dir().join(format!("outbox-bounce-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let mut file = File::create(&path).unwrap();
    file.write_all(ORIGINAL.as_bytes()).unwrap();
    let line = [b'b'; 1023];
    for _ in 0..4096 {
        file.write_all(&line).unwrap();
        file.write_all(b"\n").unwrap();
    }
    drop(file);
    let message = Message::from_file_at(File::open(&path).unwrap(), &path, 0).unwrap();
    assert!(message.reads_files() && message.len() > 4 << 20);
    (path, message)
}

#[test]
fn only_the_header_section_of_a_big_original_is_read() {
    let (path, message) = big_file("counted.eml");
    for ret in [Ret::Headers, Ret::Full] {
        let mut counting = Counting {
            inner: message.reader(),
            read: 0,
        };
        let r =
            original::returned(&mut counting, message.len(), message.header_len(), &ret).unwrap();
        assert_eq!(r.kind, Kind::Headers);
        assert_eq!(counting.read, message.header_len());
        assert_eq!(r.too_big, matches!(ret, Ret::Full).then_some(message.len()));
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_big_file_original_returns_its_headers_without_being_read_whole() {
    let (path, message) = big_file("truncated.eml");
    // Cut the file short behind the message's back: reading past the first block
    // would now fail, so a bounce built at all was built from the first block alone.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(128 * 1024).unwrap();
    assert!(message.to_vec().is_err());
    for ret in [Ret::Headers, Ret::Full] {
        let bounce = build_in(&notice(two_failures(), ret), &message, &zone()).unwrap();
        let bounce = String::from_utf8(bounce).unwrap();
        assert_eq!(parts(&bounce)[2], "text/rfc822-headers");
        assert!(bounce.len() < 8192);
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_bounce_to_no_one_names_an_empty_group() {
    let mut n = notice(two_failures(), Ret::Headers);
    n.to.clear();
    let bounce = built(&n, ORIGINAL.as_bytes());
    assert!(bounce.contains("\r\nTo: undisclosed-recipients:;\r\n"));
    n.to = vec![
        address("alice@example.com"),
        address("postmaster@example.com"),
    ];
    let bounce = built(&n, ORIGINAL.as_bytes());
    assert!(bounce.contains("\r\nTo: alice@example.com, postmaster@example.com\r\n"));
}
