//! Interop tests of the compose face: the built `outbox` binary composes a
//! message from flags and sends it to the shared private Postfix; each test
//! reads the delivered copy back from the Maildir and checks it byte for byte,
//! or decoded with mail-parser (RFC 2047 headers, text/HTML bodies,
//! attachments).
//!
//! Every test sends to local parts of its own (`unique_name`), so the tests
//! can run in parallel on the one server.

use std::net::TcpListener;
use std::time::Duration;

use mail_parser::{Message, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

use crate::support::postfix::{HOSTNAME, Postfix, rcpt, strip_trace_headers};
use crate::support::{Cmd, Output, TestEnv, crlf_to_lf, free_port, unique_name};

/// How long to wait for a message to reach the Maildir.
const WAIT: Duration = Duration::from_secs(30);
const SENDER: &str = "someone@example.test";

/// `outbox --server ADDR --timeout 30 ARGS...` in `env`, with `stdin` as body.
fn outbox_via(env: &TestEnv, server: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd: Cmd = env.cmd();
    cmd.args(["--server", server, "--timeout", "30"])
        .args(args)
        .stdin(stdin.to_vec());
    cmd.run()
}

/// As [`outbox_via`], to the shared Postfix over IPv4.
fn outbox(env: &TestEnv, args: &[&str], stdin: &[u8]) -> Output {
    outbox_via(env, &Postfix::shared().addr(), args, stdin)
}

/// The one message delivered to `local`, raw (LF line ends, trace headers).
#[track_caller]
fn delivered(local: &str) -> Vec<u8> {
    Postfix::shared()
        .wait_for_messages(local, 1, WAIT)
        .remove(0)
}

#[track_caller]
fn parse(raw: &[u8]) -> Message<'_> {
    MessageParser::default()
        .parse(raw)
        .unwrap_or_else(|| panic!("mail-parser cannot parse:\n{}", lossy(raw)))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The header block and the body of a raw message with LF line ends.
#[track_caller]
fn split_head_body(raw: &[u8]) -> (&[u8], &[u8]) {
    let i = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or_else(|| panic!("no end of header in:\n{}", lossy(raw)));
    (&raw[..i + 1], &raw[i + 2..])
}

/// Names of the top-level header fields of a message.
fn header_names(msg: &Message<'_>) -> Vec<String> {
    msg.headers().iter().map(|h| h.name().to_owned()).collect()
}

/// Splits `--dry-run` output into its envelope commands (up to and including
/// `DATA\r\n`) and the message, with the transfer encoding undone: the final
/// `.\r\n` removed and the leading dot of each stuffed line dropped (the
/// result keeps its CRLF line ends). Panics on anything that would not be
/// valid on the wire: a bare CR or LF, an unstuffed line starting with ".",
/// a missing terminator.
#[track_caller]
fn split_dry_run(stdout: &[u8]) -> (String, Vec<u8>) {
    let at = stdout
        .windows(8)
        .position(|w| w == b"\r\nDATA\r\n")
        .unwrap_or_else(|| panic!("no DATA command in dry-run output:\n{}", lossy(stdout)));
    let envelope = lossy(&stdout[..at + 8]);
    let data = &stdout[at + 8..];
    let body = data
        .strip_suffix(b".\r\n")
        .unwrap_or_else(|| panic!("dry-run data does not end in .CRLF:\n{}", lossy(data)));
    assert!(
        body.is_empty() || body.ends_with(b"\r\n"),
        "the line before the final dot is not ended:\n{}",
        lossy(data)
    );
    let mut message = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        let text = line
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("line not ended by CRLF on the wire: {:?}", lossy(line)));
        assert!(
            !text.contains(&b'\r') && !text.contains(&b'\n'),
            "bare CR or LF on the wire: {:?}",
            lossy(line)
        );
        match text.strip_prefix(b".") {
            Some(rest) => {
                assert!(
                    rest.starts_with(b"."),
                    "line starting with a single \".\" was not dot-stuffed: {:?}",
                    lossy(line)
                );
                message.extend_from_slice(rest);
            }
            None => message.extend_from_slice(text),
        }
        message.extend_from_slice(b"\r\n");
    }
    (envelope, message)
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts that `decoded` is the text body `input` came through as, allowing
/// exactly two differences, both legitimate for text on SMTP: every CRLF of
/// the input may read as LF (line ends are the transport's, and the Maildir
/// stores LF), and if the input does not end in a line break, one "\n" may be
/// added at the very end (SMTP data consists of whole lines). Nothing else:
/// no line dropped, joined, split or altered, no dot added or lost.
#[track_caller]
fn assert_text_body(decoded: &str, input: &[u8]) {
    let normalised = crlf_to_lf(input);
    let mut with_newline = normalised.clone();
    if !normalised.ends_with(b"\n") {
        with_newline.push(b'\n');
    }
    assert!(
        decoded.as_bytes() == normalised || decoded.as_bytes() == with_newline,
        "decoded body differs from the input\n--- decoded ({} bytes) ---\n{decoded:?}\n--- input, LF ({} bytes) ---\n{:?}",
        decoded.len(),
        normalised.len(),
        lossy(&normalised)
    );
}

#[test]
fn utf8_subject_display_name_and_body_decode_exactly() {
    let env = TestEnv::new();
    let local = unique_name("utf8");
    // Long enough that the encoded Subject must be folded over several lines.
    let subject = "Grüße aus Köln — 日本語テスト ✓ — Ünïcödé-Betreff, der lang genug ist, \
                   um auf mehrere Zeilen gefaltet zu werden: 東京、大阪、京都 ✓✓✓";
    let from = "Jörg Müller <jm@example.test>";
    let body = "Grüße aus Köln!\nÄÖÜ äöü ß — “quotes” ‘single’ …\n日本語のテキスト。\n\
                Emoji: 📬✉️\nЗдравствуйте, мир.\n";
    let out = outbox(
        &env,
        &["-s", subject, "-f", from, &rcpt(&local)],
        body.as_bytes(),
    );
    out.assert_success();

    let raw = delivered(&local);
    let (head, _) = split_head_body(&raw);
    assert!(
        head.is_ascii(),
        "the header must be 7-bit (RFC 2047 encoded):\n{}",
        lossy(head)
    );
    let subject_lines = lossy(head)
        .lines()
        .skip_while(|l| !l.starts_with("Subject:"))
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.starts_with('\t'))
        .count();
    assert!(
        subject_lines >= 1,
        "expected a folded Subject:\n{}",
        lossy(head)
    );
    for line in lossy(head).lines() {
        assert!(line.len() <= 78, "header line over 78 characters: {line:?}");
    }

    let msg = parse(&raw);
    assert_eq!(msg.subject(), Some(subject));
    let sender = msg.from().and_then(|a| a.first()).expect("a From header");
    assert_eq!(sender.name(), Some("Jörg Müller"));
    assert_eq!(sender.address(), Some("jm@example.test"));
    assert_eq!(msg.body_text(0).as_deref(), Some(body));
    assert!(raw.starts_with(b"Return-Path: <jm@example.test>\n"));
}

#[test]
fn long_and_dotted_lines_survive_encoded() {
    let env = TestEnv::new();
    let local = unique_name("dots-qp");
    // A 3000-character line gets the body quoted-printable (or base64) encoded;
    // its soft line breaks may start with "." too, hence the dots in it.
    let long: String = (0..3000)
        .map(|i| char::from(b"0123456789.=abcdef-XYZ"[i % 22]))
        .collect();
    let body = format!(".\n..\n.x\n{long}\nmiddle\n...\nlast line, no newline");
    let out = outbox(
        &env,
        &["-f", SENDER, "-s", "dots and a long line", &rcpt(&local)],
        body.as_bytes(),
    );
    out.assert_success();
    let raw = delivered(&local);
    let msg = parse(&raw);
    let cte = msg.content_transfer_encoding().unwrap_or("7bit");
    assert!(
        cte.eq_ignore_ascii_case("quoted-printable") || cte.eq_ignore_ascii_case("base64"),
        "a 3000-character line cannot go as {cte}"
    );
    let text = msg.body_text(0).expect("a text body");
    assert_text_body(&text, body.as_bytes());
}

#[test]
fn short_dotted_lines_arrive_byte_for_byte() {
    let env = TestEnv::new();
    let local = unique_name("dots-7bit");
    let body = ".\n..\n.x\nx.\na\nend";
    let args = ["-f", SENDER, "-s", "dots", &rcpt(&local)];
    let out = outbox(&env, &args, body.as_bytes());
    out.assert_success();

    let raw = delivered(&local);
    let (head, delivered_body) = split_head_body(&raw);
    assert!(
        lossy(head).contains("\nContent-Transfer-Encoding: 7bit\n"),
        "this body should go 7bit, unencoded:\n{}",
        lossy(head)
    );
    // The server undid the dot-stuffing: the lines arrive as given. Only the
    // missing line break at the end is added (SMTP data is whole lines).
    assert_eq!(lossy(delivered_body), ".\n..\n.x\nx.\na\nend\n");

    // ... and that was outbox's doing: on the wire every line starting with a
    // dot has one more, and the last line is ended before the final dot.
    let dry = {
        let mut cmd = env.cmd();
        cmd.arg("--dry-run")
            .args(args)
            .stdin(body.as_bytes().to_vec());
        cmd.run()
    };
    dry.assert_success();
    assert!(
        dry.stdout
            .ends_with(b"\r\n\r\n..\r\n...\r\n..x\r\nx.\r\na\r\nend\r\n.\r\n"),
        "dry-run data is not dot-stuffed as expected:\n{}",
        dry.stdout_str()
    );
}

#[test]
fn delivered_message_is_exactly_the_dry_run() {
    let env = TestEnv::new();
    let local = unique_name("exact");
    let message_id = format!("<fixed-{local}@example.test>");
    let message_id_header = format!("Message-ID: {message_id}");
    let to = rcpt(&local);
    let args = [
        "-f",
        SENDER,
        "-s",
        "byte for byte",
        "-H",
        "Date: Sat, 21 Nov 2026 10:00:00 +0000",
        "-H",
        &message_id_header,
        &to,
    ];
    let body = b"First line.\n.A line with a leading dot\n\nLast line.\n";

    let dry = {
        let mut cmd = env.cmd();
        cmd.arg("--dry-run").args(args).stdin(body.to_vec());
        cmd.run()
    };
    dry.assert_success();
    let (envelope, message) = split_dry_run(&dry.stdout);
    // A dry run takes the server to offer every extension: SIZE is the message's size
    // in CRLF form, before dot-stuffing (RFC 1870 §3).
    assert_eq!(
        envelope,
        format!(
            "MAIL FROM:<{SENDER}> SIZE={}\r\nRCPT TO:<{to}>\r\nDATA\r\n",
            message.len()
        )
    );

    outbox(&env, &args, body).assert_success();
    let raw = delivered(&local);
    let stored = strip_trace_headers(&raw);
    assert_eq!(
        lossy(&stored),
        lossy(&crlf_to_lf(&message)),
        "the delivered message (minus trace headers, LF line ends) must be \
         exactly what --dry-run shows (unstuffed)"
    );
    // The -H values replaced the generated Date and Message-ID.
    let text = lossy(&stored);
    assert_eq!(text.matches("\nDate:").count(), 1, "{text}");
    assert!(
        text.contains("\nDate: Sat, 21 Nov 2026 10:00:00 +0000\n"),
        "{text}"
    );
    assert_eq!(text.matches("\nMessage-ID:").count(), 1, "{text}");
    assert!(text.contains(&format!("\n{message_id_header}\n")), "{text}");
    assert_eq!(
        parse(&raw).message_id(),
        Some(&message_id[1..message_id.len() - 1])
    );
}

#[test]
fn two_megabyte_binary_attachment_arrives_intact() {
    let env = TestEnv::new();
    let local = unique_name("attach");
    let data = pseudo_random(2 * 1024 * 1024, 0x5eed_0f0b_b0c5);
    env.write_file("file.bin", &data);
    let out = outbox(
        &env,
        &[
            "-f",
            SENDER,
            "-s",
            "binary",
            "-a",
            "file.bin",
            &rcpt(&local),
        ],
        b"See the attachment.\n",
    );
    out.assert_success();

    let raw = delivered(&local);
    let msg = parse(&raw);
    assert_eq!(msg.attachment_count(), 1, "{:?}", header_names(&msg));
    let part = msg.attachment(0).expect("the attachment");
    let ct = part.content_type().expect("a Content-Type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("application", Some("octet-stream"))
    );
    assert_eq!(part.attachment_name(), Some("file.bin"));
    let got = part.contents();
    assert_eq!(got.len(), data.len(), "attachment size");
    assert_eq!(sha256_hex(got), sha256_hex(&data), "attachment SHA-256");
    assert_eq!(msg.body_text(0).as_deref(), Some("See the attachment.\n"));
}

#[test]
fn attachment_type_and_name_can_be_overridden() {
    let env = TestEnv::new();
    let local = unique_name("attach-csv");
    let csv = b"id,name\n1,alpha\n2,beta\n";
    env.write_file("data.bin", csv);
    let out = outbox(
        &env,
        &[
            "-f",
            SENDER,
            "-a",
            "data.bin;type=text/csv;name=report.csv",
            &rcpt(&local),
        ],
        b"Report attached.\n",
    );
    out.assert_success();

    let raw = delivered(&local);
    let msg = parse(&raw);
    let part = msg
        .parts
        .iter()
        .find(|p| p.attachment_name().is_some())
        .unwrap_or_else(|| panic!("no named part in:\n{}", lossy(&raw)));
    let ct = part.content_type().expect("a Content-Type");
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("csv")));
    assert_eq!(part.attachment_name(), Some("report.csv"));
    assert_eq!(lossy(part.contents()), lossy(csv));
    assert!(
        !lossy(&raw).contains("data.bin"),
        "the local file name must not leak:\n{}",
        lossy(&raw)
    );
}

#[test]
fn bcc_is_delivered_but_never_shown_and_cc_is() {
    let env = TestEnv::new();
    let (to, hidden, c1, c2) = (
        unique_name("to"),
        unique_name("hidden"),
        unique_name("cc"),
        unique_name("cc"),
    );
    let cc_list = format!("{}, {}", rcpt(&c1), rcpt(&c2));
    let out = outbox(
        &env,
        &[
            "-f",
            SENDER,
            "-s",
            "copies",
            "-b",
            &rcpt(&hidden),
            "-c",
            &cc_list,
            &rcpt(&to),
        ],
        b"For several eyes.\n",
    );
    out.assert_success();

    for local in [&to, &hidden, &c1, &c2] {
        let raw = delivered(local);
        let msg = parse(&raw);
        let names = header_names(&msg);
        assert!(
            !names.iter().any(|n| n.eq_ignore_ascii_case("bcc")),
            "Bcc header in the copy for {local}:\n{}",
            lossy(&raw)
        );
        assert!(
            !lossy(&raw).to_ascii_lowercase().contains("\nbcc:"),
            "Bcc in the copy for {local}:\n{}",
            lossy(&raw)
        );
        assert_eq!(
            msg.to().and_then(|a| a.first()).and_then(|a| a.address()),
            Some(rcpt(&to).as_str())
        );
        let cc: Vec<&str> = msg
            .cc()
            .map(|a| a.iter().filter_map(|a| a.address()).collect())
            .unwrap_or_default();
        assert_eq!(cc, [rcpt(&c1), rcpt(&c2)], "Cc of the copy for {local}");
        assert_eq!(msg.body_text(0).as_deref(), Some("For several eyes.\n"));
        if *local != hidden {
            // Not in a header, not in a trace header, not anywhere.
            assert!(
                !lossy(&raw).contains(&hidden),
                "the blind copy's address leaks into the copy for {local}:\n{}",
                lossy(&raw)
            );
        }
    }
}

#[test]
fn html_reply_to_and_custom_header() {
    let env = TestEnv::new();
    let local = unique_name("html");
    let html = "<!DOCTYPE html>\n<html><body>\n<h1>Grüße</h1>\n<p>A <b>bold</b> \
                claim &amp; a <a href=\"https://example.test/\">link</a>.</p>\n</body></html>\n";
    let text = "Grüße\n\nA bold claim & a link.\n";
    env.write_file("page.html", html);
    let out = outbox(
        &env,
        &[
            "-f",
            SENDER,
            "-s",
            "html",
            "--html",
            "page.html",
            "--reply-to",
            "Replies <replies@example.test>",
            "-H",
            "X-Custom: value",
            &rcpt(&local),
        ],
        text.as_bytes(),
    );
    out.assert_success();

    let raw = delivered(&local);
    let msg = parse(&raw);
    let ct = msg.content_type().expect("a Content-Type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative")),
        "{}",
        lossy(&raw)
    );
    let text_part = msg.text_part(0).expect("a text part");
    let ct = text_part.content_type().expect("text part Content-Type");
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
    assert_eq!(text_part.text_contents(), Some(text));
    let html_part = msg.html_part(0).expect("an html part");
    let ct = html_part.content_type().expect("html part Content-Type");
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("html")));
    assert_eq!(html_part.text_contents(), Some(html));
    assert_eq!(msg.attachment_count(), 0);

    let reply_to = msg.reply_to().and_then(|a| a.first()).expect("a Reply-To");
    assert_eq!(reply_to.address(), Some("replies@example.test"));
    assert_eq!(reply_to.name(), Some("Replies"));
    assert_eq!(
        msg.header("X-Custom").and_then(|v| v.as_text()),
        Some("value")
    );
    assert!(
        lossy(&raw).contains("\nX-Custom: value\n"),
        "{}",
        lossy(&raw)
    );
}

/// The error report outbox prints at the end of stderr: from its first
/// "outbox: " line on (before it, with -v, comes the dialogue).
fn error_report(out: &Output) -> String {
    let stderr = out.stderr_str();
    match stderr.find("outbox: ") {
        Some(i) => stderr[i..].to_owned(),
        None => out.fail("no \"outbox: \" error report on stderr"),
    }
}

#[test]
fn rejected_recipient_exits_67_and_nothing_is_sent() {
    let env = TestEnv::new();
    let local = unique_name("reject-only");
    let out = outbox(
        &env,
        &["-v", "-f", SENDER, &rcpt(&local)],
        b"Never delivered.\n",
    );
    out.assert_code(67);
    let report = error_report(&out);
    for needle in [
        format!("<{}>", rcpt(&local)),
        "550 5.1.1".to_owned(),
        "rejected for testing".to_owned(),
    ] {
        assert!(
            report.contains(&needle),
            "error report lacks {needle:?}\n{}",
            out.report()
        );
    }
    // No recipient, no DATA: the message went nowhere.
    assert!(
        !out.stderr_str().lines().any(|l| l.starts_with("> DATA")),
        "DATA sent without an accepted recipient\n{}",
        out.report()
    );
    assert!(Postfix::shared().messages_now(&local).is_empty());
}

#[test]
fn deferred_recipient_exits_75() {
    let env = TestEnv::new();
    let local = unique_name("defer-only");
    let out = outbox(&env, &["-f", SENDER, &rcpt(&local)], b"Later.\n");
    out.assert_code(75);
    for needle in [
        format!("<{}>", rcpt(&local)),
        "450 4.2.0".to_owned(),
        "deferred for testing".to_owned(),
    ] {
        assert!(
            out.stderr_str().contains(&needle),
            "stderr lacks {needle:?}\n{}",
            out.report()
        );
    }
    assert!(Postfix::shared().messages_now(&local).is_empty());
}

#[test]
fn one_refused_one_accepted_exits_67_and_delivers_once() {
    let env = TestEnv::new();
    let (bad, good) = (unique_name("reject-mixed"), unique_name("mixed"));
    let out = outbox(
        &env,
        &["-f", SENDER, "-s", "mixed", &rcpt(&bad), &rcpt(&good)],
        b"Half of it.\n",
    );
    out.assert_code(67);
    let stderr = out.stderr_str();
    assert!(
        stderr.contains("1 of 2 recipients refused")
            && stderr.contains(&format!("<{}>:", rcpt(&bad)))
            && stderr.contains("550 5.1.1"),
        "stderr must report the refused recipient with its reply\n{}",
        out.report()
    );
    assert!(
        !stderr.contains(&rcpt(&good)),
        "the accepted recipient is not an error\n{}",
        out.report()
    );
    let raw = delivered(&good);
    assert_eq!(parse(&raw).subject(), Some("mixed"));
    // Exactly once: nothing more arrives a little later either.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(Postfix::shared().messages_now(&good).len(), 1);
}

#[test]
fn connection_refused_exits_75() {
    let env = TestEnv::new();
    let port = free_port();
    let server = format!("127.0.0.1:{port}");
    let out = outbox_via(
        &env,
        &server,
        &["-f", SENDER, "nobody@example.test"],
        b"x\n",
    );
    out.assert_code(75);
    assert!(
        out.stderr_str().contains(&server),
        "stderr should name the server\n{}",
        out.report()
    );
}

#[test]
fn verbose_shows_the_dialogue_but_not_the_message() {
    let env = TestEnv::new();
    let local = unique_name("verbose");
    let secret = "zebra-quartz-7319 distinctive body line";
    // No line break at the end, as with a typical `--body TEXT`.
    let body = format!("first line\n{secret}\nlast line");
    let to = rcpt(&local);
    let args = [
        "-f",
        SENDER,
        "-s",
        "verbose",
        "-H",
        "Date: Sat, 21 Nov 2026 10:00:00 +0000",
        "-H",
        "Message-ID: <verbose@example.test>",
        "--body",
        &body,
        &to,
    ];
    let mut verbose_args = vec!["-v"];
    verbose_args.extend(args);
    // DATA's dialogue; BDAT's is checked below.
    let mut data_args = verbose_args.clone();
    data_args.insert(0, "--no-chunking");
    let out = outbox(&env, &data_args, b"");
    out.assert_success();
    let stderr = out.stderr_str();
    let lines: Vec<&str> = stderr.lines().collect();
    let has = |pred: &dyn Fn(&str) -> bool| lines.iter().any(|l| pred(l));
    for (what, ok) in [
        ("> EHLO ", has(&|l| l.starts_with("> EHLO "))),
        (
            "< 220 (our server)",
            has(&|l| l.starts_with("< 220 ") && l.contains(HOSTNAME)),
        ),
        (
            "> MAIL FROM:<sender>",
            has(&|l| l.starts_with(&format!("> MAIL FROM:<{SENDER}>"))),
        ),
        (
            "> RCPT TO:<rcpt>",
            has(&|l| l.starts_with(&format!("> RCPT TO:<{to}>"))),
        ),
        ("< 250", has(&|l| l.starts_with("< 250"))),
        ("> DATA", has(&|l| l == "> DATA")),
        ("< 354", has(&|l| l.starts_with("< 354"))),
        ("> .", has(&|l| l == "> .")),
        ("< 250 ... queued as", has(&|l| l.contains("queued as"))),
        ("> QUIT", has(&|l| l == "> QUIT")),
        ("< 221", has(&|l| l.starts_with("< 221"))),
    ] {
        assert!(ok, "stderr lacks {what:?}\n{}", out.report());
    }
    // The message itself is summed up, never shown.
    for line in ["first line", secret, "last line", "Subject: verbose"] {
        assert!(
            !stderr.contains(line),
            "the message leaks into the dialogue: {line:?}\n{}",
            out.report()
        );
    }
    let summary = lines
        .iter()
        .find_map(|l| l.strip_prefix("> [message: "))
        .unwrap_or_else(|| out.fail("no \"> [message: N bytes, M lines]\" line"));
    let (bytes, lines_count) = summary
        .strip_suffix(" lines]")
        .and_then(|s| s.split_once(" bytes, "))
        .and_then(|(b, l)| Some((b.parse::<usize>().ok()?, l.parse::<usize>().ok()?)))
        .unwrap_or_else(|| out.fail("malformed message summary line"));

    // The summary counts what was sent: the same message as --dry-run shows
    // (fixed Date and Message-ID make it identical), and as many lines as
    // were delivered.
    let raw = delivered(&local);
    let stored = strip_trace_headers(&raw);
    let dry = {
        let mut cmd = env.cmd();
        cmd.arg("--dry-run").args(args);
        cmd.run()
    };
    dry.assert_success();
    let (_, message) = split_dry_run(&dry.stdout);
    assert_eq!(lossy(&crlf_to_lf(&message)), lossy(&stored));
    let wire_lines = stored.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(
        lines_count,
        wire_lines,
        "the summary must count the lines sent ({wire_lines})\n{}",
        out.report()
    );
    // Bytes are counted as composed, before line ends become CRLF: somewhere
    // between the LF and the CRLF form of what was sent.
    assert!(
        (stored.len()..=message.len()).contains(&bytes),
        "{bytes} bytes is not the size of the message ({} with LF, {} with CRLF)\n{}",
        stored.len(),
        message.len(),
        out.report()
    );

    // Postfix offers PIPELINING and CHUNKING: by default the envelope, one BDAT LAST
    // chunk and QUIT go together, and the four replies follow.
    let local = unique_name("verbose-bdat");
    let to = rcpt(&local);
    let out = outbox(&env, &["-v", "-f", SENDER, "--body", "short", &to], b"");
    out.assert_success();
    let stderr = out.stderr_str();
    let dialogue: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("> MAIL"))
        .collect();
    let kinds: Vec<String> = dialogue
        .iter()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        &kinds[..7],
        [
            "> MAIL",
            "> RCPT",
            "> BDAT",
            "> [message:",
            "> QUIT",
            "< 250",
            "< 250"
        ],
        "{}",
        out.report()
    );
    assert!(dialogue[2].ends_with(" LAST"), "{}", out.report());
    pf_delivered_once(&local);
}

fn pf_delivered_once(local: &str) {
    let got = Postfix::shared().wait_for_messages(local, 1, WAIT);
    assert_eq!(got.len(), 1);
}

#[test]
fn sends_over_ipv6_loopback() {
    let shared = Postfix::shared();
    let private;
    let (pf, v6) = match shared.addr_v6() {
        Some(v6) => (shared, v6),
        None => {
            if let Err(e) = TcpListener::bind("[::1]:0") {
                eprintln!(
                    "SKIPPED sends_over_ipv6_loopback: this machine has no usable IPv6 \
                     loopback (binding [::1]:0 fails: {e}), so no server can listen on ::1"
                );
                return;
            }
            // ::1 works, but the shared instance's port was taken on ::1: use
            // an instance of our own, which must then listen on ::1.
            private = Postfix::builder().ipv6(true).start();
            let v6 = private
                .addr_v6()
                .expect("::1 is usable, yet the test Postfix does not listen on it");
            (&private, v6)
        }
    };
    let env = TestEnv::new();
    let local = unique_name("ipv6");
    let out = outbox_via(
        &env,
        &v6,
        &["-v", "-f", SENDER, "-s", "over IPv6", &rcpt(&local)],
        b"Sent over ::1.\n",
    );
    out.assert_success();
    assert!(
        out.stderr_str().contains(&format!("* connected to {v6}")),
        "should have connected to {v6}\n{}",
        out.report()
    );
    let raw = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    let msg = parse(&raw);
    assert_eq!(msg.subject(), Some("over IPv6"));
    assert_eq!(msg.body_text(0).as_deref(), Some("Sent over ::1.\n"));
    // Postfix records the client's address in its Received header.
    assert!(
        lossy(&raw).contains("[IPv6:::1]") || lossy(&raw).contains("[::1]"),
        "Received header should show an IPv6 client:\n{}",
        lossy(&raw)
    );
}

#[test]
fn default_sender_is_user_at_hostname() {
    let env = TestEnv::new();
    let local = unique_name("default-from");
    // The harness sets USER=tester (and LOGNAME).
    let out = outbox(&env, &["-s", "who am I", &rcpt(&local)], b"Guess.\n");
    out.assert_success();
    let raw = delivered(&local);
    let msg = parse(&raw);
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .expect("a From address")
        .to_owned();
    let domain = from
        .strip_prefix("tester@")
        .unwrap_or_else(|| panic!("From {from:?} is not tester@..."));
    assert!(!domain.is_empty(), "From {from:?} has no domain");
    // The domain is this host's name, as the kernel has it, or its fully qualified
    // form from /etc/hosts.
    if let Ok(hostname) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let hostname = hostname.trim();
        assert!(
            domain == hostname || domain.starts_with(&format!("{hostname}.")),
            "From {from:?}, host name {hostname:?}"
        );
    }
    // The envelope sender (Return-Path, added by Postfix from MAIL FROM) too.
    let return_path = format!("Return-Path: <{from}>\n");
    assert!(
        raw.starts_with(return_path.as_bytes()),
        "expected {return_path:?}:\n{}",
        lossy(&raw)
    );
    assert!(
        msg.message_id()
            .is_some_and(|id| id.ends_with(&format!("@{domain}"))),
        "Message-ID should name the sender's domain: {:?}",
        msg.message_id()
    );
}

#[test]
fn utf8_sender_goes_with_smtputf8() {
    let env = TestEnv::new();
    let local = unique_name("utf8-sender");
    let out = outbox(
        &env,
        &[
            "-v",
            "-f",
            "Jörg <jörg@example.test>",
            "-s",
            "utf8",
            &rcpt(&local),
        ],
        b"Hallo.\n",
    );
    out.assert_success();
    // RFC 6531: the UTF-8 path needs the SMTPUTF8 parameter, and the UTF-8 header the
    // 8-bit body type (RFC 6152).
    out.assert_stderr_contains("> MAIL FROM:<jörg@example.test> SIZE=");
    out.assert_stderr_contains(" BODY=8BITMIME SMTPUTF8\n");
    let raw = delivered(&local);
    assert!(
        raw.starts_with("Return-Path: <jörg@example.test>\n".as_bytes()),
        "{}",
        lossy(&raw)
    );
    let msg = parse(&raw);
    let from = msg.from().and_then(|a| a.first()).expect("a From address");
    assert_eq!(from.address(), Some("jörg@example.test"));
    assert_eq!(from.name(), Some("Jörg"));
}

/// `outbox -s x root` sent `To: <root>` while RCPT went to root@ the local domain:
/// providers refuse such headers, so bare names in To, Cc and Reply-To get the domain
/// in the header as they do in the envelope.
#[test]
fn bare_names_in_compose_headers_get_the_domain() {
    let env = TestEnv::new();
    let mut cmd = env.cmd();
    cmd.args([
        "--dry-run",
        "-f",
        "ops@example.test",
        "-s",
        "x",
        "-c",
        "admin",
        "--reply-to",
        "Help Desk <helpdesk>",
        "root",
        "--body",
        "b",
    ]);
    let out = cmd.run();
    out.assert_success();
    let text = out.stdout_str();
    for want in [
        "RCPT TO:<root@example.test>",
        "RCPT TO:<admin@example.test>",
        "\r\nTo: <root@example.test>\r\n",
        "\r\nCc: <admin@example.test>\r\n",
        "\r\nReply-To: \"Help Desk\" <helpdesk@example.test>\r\n",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
}

/// `-f '<>'`: the null reverse-path, for testing bounces and auto-replies. Postfix
/// takes the message `from=<>` and delivers it with an empty Return-Path; the
/// header's From is still the user's.
#[test]
fn the_null_sender_reaches_postfix_as_from_empty() {
    let env = TestEnv::new();
    let local = unique_name("compose-null");
    let out = outbox(
        &env,
        &["-v", "-f", "<>", "-s", "a test bounce", &rcpt(&local)],
        b"Nobody answers this.\n",
    );
    out.assert_success().assert_stderr_contains("MAIL FROM:<>");
    let raw = delivered(&local);
    let text = lossy(&raw);
    assert!(text.starts_with("Return-Path: <>\n"), "{text}");
    assert!(text.contains("\nFrom: <tester@"), "{text}");
    let log = Postfix::shared().maillog();
    let queued = log
        .lines()
        .find(|l| l.contains(&format!("to=<{}>", rcpt(&local))))
        .and_then(|l| l.split(": ").nth(1).map(str::to_owned))
        .unwrap_or_else(|| panic!("no delivery of {local} in\n{log}"));
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("{queued}: from=<>,"))),
        "no from=<> for {queued} in\n{log}"
    );
}

/// `--source-address` binds the connection's local end: Postfix's Received header
/// names it. `-4` reaches an IPv4 server; `-6` to a server with no IPv6 address is
/// refused before any connection (68), saying what the name has.
#[test]
fn the_source_address_and_the_address_family_are_the_callers_choice() {
    let env = TestEnv::new();
    let local = unique_name("compose-source");
    outbox(
        &env,
        &[
            "-4",
            "--source-address",
            "127.0.0.2",
            "-s",
            "from .2",
            &rcpt(&local),
        ],
        b"Sent from 127.0.0.2.\n",
    )
    .assert_success();
    let text = lossy(&delivered(&local));
    assert!(
        text.contains("Received: from [127.0.0.2] (unknown [127.0.0.2])"),
        "{text}"
    );
    outbox(&env, &["-6", "-s", "none", &rcpt(&local)], b"x\n")
        .assert_code(68)
        .assert_stderr_contains("has no IPv6 address (it has 127.0.0.1)");
    outbox(
        &env,
        &["--source-address", "::1", "-s", "none", &rcpt(&local)],
        b"x\n",
    )
    .assert_code(68)
    .assert_stderr_contains("of the family of ::1");
}
