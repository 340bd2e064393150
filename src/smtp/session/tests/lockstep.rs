//! The dialogue in lock-step: each reply checked against its stage, timeouts,
//! refusals, broken connections and garbage, and the message on the wire.

use super::*;

#[test]
fn happy_path_transcript_byte_for_byte() {
    let message = b"Subject: test\r\n\r\n.\r\n..\r\n.x\r\nbare\nlf\r\nno newline";
    let wire = "Subject: test\r\n\r\n..\r\n...\r\n..x\r\nbare\r\nlf\r\nno newline\r\n.\r\n";
    let expected = format!(
        "EHLO client.example.test\r\n\
         MAIL FROM:<a@example.test>\r\n\
         RCPT TO:<b@example.test>\r\n\
         RCPT TO:<c@example.test>\r\n\
         DATA\r\n\
         {wire}\
         QUIT\r\n"
    );
    let script = [
        GREETING,
        EHLO_REPLY,
        "250 2.1.0 sender ok\r\n",
        "250 2.1.5 b ok\r\n",
        "251 2.1.5 c is not local; will forward\r\n",
        "354 end data with <CR><LF>.<CR><LF>\r\n",
        "250 2.0.0 queued as ABC123\r\n",
        "221 2.0.0 bye\r\n",
    ];
    for chunk in [ALL_AT_ONCE, 1, 3] {
        let r = run(
            ScriptedPeer::new(script, AtEnd::Eof).chunk(chunk),
            &envelope(&B_C),
            message,
        );
        assert_eq!(show(r.peer.written()), expected, "chunk {chunk}");
        // Every reply is read but the goodbye: once QUIT is sent, the client closes.
        assert_goodbye_unread(&r.peer, "221 2.0.0 bye\r\n");

        let receipt = r.result.unwrap();
        let want = [("b@example.test", true, 250), ("c@example.test", true, 251)];
        assert_eq!(outcomes(&receipt), want);
        assert_eq!(
            receipt.recipients[1].reply.lines,
            ["2.1.5 c is not local; will forward"]
        );
        assert_eq!(receipt.reply.code, 250);
        assert_eq!(receipt.reply.lines, ["2.0.0 queued as ABC123"]);
        assert!(receipt.refused().is_empty());
        assert_eq!(exit::refusals_code(&receipt.refused()), None);
        r.quit.unwrap().unwrap();

        let caps = &r.capabilities;
        assert_eq!(caps.domain, "mx.example.test");
        assert_eq!(
            caps.keywords().collect::<Vec<_>>(),
            ["ENHANCEDSTATUSCODES", "8BITMIME"]
        );
        assert_eq!(caps.size_limit(), None);
    }
}

#[test]
fn one_byte_reads_are_really_one_byte() {
    // The peer itself: with chunk(1) the client gets the script a byte at a time, so
    // the happy path above really exercised reassembly across reads.
    let r = run_simple(ScriptedPeer::new(REPLIES, AtEnd::Eof).chunk(1));
    assert!(r.result.is_ok());
    let reads: Vec<usize> = r
        .peer
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Read { bytes, .. } => Some(bytes.len()),
            _ => None,
        })
        .collect();
    // All but the 221, which is not waited for.
    assert_eq!(reads.len(), REPLIES[..6].concat().len());
    assert!(reads.iter().all(|&n| n == 1));
    assert_eq!(show(r.peer.written()), CMDS.concat());
}

/// A reply's timeout is a deadline for the whole reply, so what is set before a read is
/// what is left of it: at most the stage's limit, and not much less for a fast peer.
#[track_caller]
fn assert_near(got: Option<Duration>, want: Duration, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: no timeout set"));
    assert!(
        got <= want && got > want - Duration::from_secs(1),
        "{what}: {got:?}, want {want:?}"
    );
}

#[test]
fn rfc_5321_timeouts_apply_per_stage() {
    let r = run_simple(ScriptedPeer::new(REPLIES, AtEnd::Eof));
    assert!(r.result.is_ok());
    let p = &r.peer;
    assert_near(p.timeout_reading(b"220"), minutes(5), "greeting");
    assert_near(p.timeout_writing(b"EHLO"), minutes(5), "EHLO");
    assert_near(p.timeout_writing(b"MAIL"), minutes(5), "MAIL");
    assert_near(p.timeout_reading(b"250 2.1.0"), minutes(5), "MAIL");
    assert_near(p.timeout_writing(b"RCPT"), minutes(5), "RCPT");
    assert_near(p.timeout_reading(b"250 2.1.5"), minutes(5), "RCPT");
    assert_near(p.timeout_writing(b"DATA"), minutes(2), "DATA");
    assert_near(p.timeout_reading(b"354"), minutes(2), "DATA");
    assert_near(p.timeout_writing(b"Subject"), minutes(3), "block");
    assert_near(p.timeout_reading(b"250 2.0.0"), minutes(10), "final dot");
    assert_near(p.timeout_writing(b"QUIT"), Duration::from_secs(60), "");

    // --timeout: one limit for every step.
    let t = Duration::from_secs(7);
    let r = run_with(
        ScriptedPeer::new(REPLIES, AtEnd::Eof),
        Timeouts::uniform(t),
        None,
        &envelope(&["b@example.test"]),
        SIMPLE,
    );
    assert!(r.result.is_ok());
    let set = r.peer.timeouts();
    assert!(!set.is_empty());
    assert!(
        set.iter()
            .all(|&x| x <= t && x > t - Duration::from_secs(1)),
        "{set:?}"
    );
}

#[test]
fn helo_when_ehlo_is_refused() {
    for code in ["500", "502"] {
        let ehlo_refusal = format!("{code} 5.5.1 command not recognized\r\n");
        let script = [
            "220 mx.example.test\r\n",
            &ehlo_refusal,
            "250 mx.example.test hello\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 queued\r\n",
            "221 bye\r\n",
        ];
        let r = run_simple(ScriptedPeer::new(script, AtEnd::Eof));
        assert_eq!(r.result.unwrap().reply.code, 250, "{code}");
        assert_eq!(
            show(r.peer.written()),
            format!(
                "EHLO client.example.test\r\nHELO client.example.test\r\n\
                 MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n\
                 DATA\r\n{SIMPLE_WIRE}QUIT\r\n"
            ),
            "{code}"
        );
        assert_eq!(r.capabilities, Capabilities::default(), "{code}");
        assert_eq!(r.capabilities.keywords().count(), 0);
    }

    // HELO refused too: the error names HELO.
    let script = ["220 mx\r\n", "502 no\r\n", "550 go away\r\n", "221 bye\r\n"];
    let r = run_simple(ScriptedPeer::new(script, AtEnd::Eof));
    assert_refused(r.result.as_ref().unwrap_err(), Stage::Helo, 550);
    assert_eq!(
        show(r.peer.written()),
        "EHLO client.example.test\r\nHELO client.example.test\r\nQUIT\r\n"
    );
}

#[test]
fn a_421_at_any_stage_ends_the_session_without_quit() {
    for (k, &stage) in STAGES.iter().enumerate() {
        let r = failing_at(k, Some("421 4.3.2 shutting down\r\n"), AtEnd::Eof);
        let err = r.result.unwrap_err();
        assert_refused(&err, stage, 421);
        assert_eq!(err.reply().unwrap().lines, ["4.3.2 shutting down"]);
        assert_eq!(exit::code(&err), 75, "{stage}");
        assert_eq!(show(r.peer.written()), CMDS[..k].concat(), "{stage}");
        assert_eq!(count(r.peer.written(), b"QUIT"), 0, "{stage}");
    }
}

#[test]
fn a_closed_connection_at_any_stage_ends_the_session_without_quit() {
    for (k, &stage) in STAGES.iter().enumerate() {
        let r = failing_at(k, None, AtEnd::Eof);
        let err = r.result.unwrap_err();
        assert!(
            matches!(err, Error::Closed { stage: s } if s == stage),
            "{stage}: {err:?}"
        );
        assert_eq!(exit::code(&err), 75, "{stage}");
        assert_eq!(show(r.peer.written()), CMDS[..k].concat(), "{stage}");
    }

    // Closed halfway through a multi-line reply, a byte at a time.
    let r =
        run_simple(ScriptedPeer::new(["220-mx.example.test\r\n220-still"], AtEnd::Eof).chunk(1));
    assert!(matches!(
        r.result,
        Err(Error::Closed {
            stage: Stage::Greeting
        })
    ));
    assert!(r.peer.written().is_empty());
}

#[test]
fn a_silent_server_times_out() {
    // Nothing at all: no greeting. Or no reply to the final dot: the message went out
    // whole; no QUIT follows (it would be read as more data by a server that is merely
    // slow, and waiting for its reply would cost another timeout). (Stages answered,
    // the stage that timed out, its limit in minutes.)
    for (k, stage, limit) in [(0, Stage::Greeting, 5), (5, Stage::EndOfData, 10)] {
        let r = failing_at(k, None, AtEnd::Timeout);
        let err = r.result.unwrap_err();
        let want = (stage, minutes(limit));
        assert!(
            matches!(err, Error::Timeout { stage, after } if (stage, after) == want),
            "{err:?}"
        );
        assert_eq!(exit::code(&err), 75);
        assert_eq!(show(r.peer.written()), CMDS[..k].concat());
    }
}

#[test]
fn one_refused_recipient_of_three() {
    let script = [
        GREETING,
        EHLO_REPLY,
        "250 2.1.0 ok\r\n",
        "250 2.1.5 ok\r\n",
        "550 5.1.1 <c@example.test>: no such user\r\n",
        "250 2.1.5 ok\r\n",
        "354 go\r\n",
        "250 2.0.0 queued\r\n",
        "221 bye\r\n",
    ];
    let r = run_script(
        &script,
        &["b@example.test", "c@example.test", "d@example.test"],
        SIMPLE,
    );
    let receipt = r.result.unwrap();
    let accepted: Vec<_> = receipt
        .recipients
        .iter()
        .map(|rr| (rr.recipient.as_str(), rr.accepted))
        .collect();
    assert_eq!(
        accepted,
        [
            ("b@example.test", true),
            ("c@example.test", false),
            ("d@example.test", true)
        ]
    );
    let refused = receipt.refused();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].recipient, "c@example.test");
    assert_eq!(refused[0].reply.code, 550);
    assert_eq!(
        refused[0].reply.lines,
        ["5.1.1 <c@example.test>: no such user"]
    );
    assert_eq!(exit::refusals_code(&refused), Some(67));
    assert_eq!(
        show(r.peer.written()),
        format!(
            "EHLO client.example.test\r\nMAIL FROM:<a@example.test>\r\n\
             RCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n\
             RCPT TO:<d@example.test>\r\nDATA\r\n{SIMPLE_WIRE}QUIT\r\n"
        )
    );
}

#[test]
fn every_recipient_refused_sends_no_data() {
    let script = [
        GREETING,
        EHLO_REPLY,
        "250 2.1.0 ok\r\n",
        "550 5.1.1 no such user\r\n",
        "450 4.2.1 mailbox busy\r\n",
        "221 bye\r\n",
    ];
    let r = run_script(&script, &B_C, SIMPLE);
    let err = r.result.unwrap_err();
    assert_no_recipients(&err, &[("b@example.test", 550), ("c@example.test", 450)]);
    // Permanent outranks temporary.
    assert_eq!(exit::code(&err), 67);
    assert_eq!(count(r.peer.written(), b"DATA"), 0);
    assert_eq!(
        show(r.peer.written()),
        "EHLO client.example.test\r\nMAIL FROM:<a@example.test>\r\n\
         RCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nQUIT\r\n"
    );
    assert_goodbye_unread(&r.peer, "221 bye\r\n");
}

#[test]
fn mail_from_refused_then_one_quit() {
    let script = [
        GREETING,
        EHLO_REPLY,
        "553 5.7.1 sender rejected\r\n",
        "221 bye\r\n",
    ];
    let r = run_simple(ScriptedPeer::new(script, AtEnd::Eof));
    let err = r.result.unwrap_err();
    assert_refused(&err, Stage::MailFrom, 553);
    assert_eq!(exit::code(&err), 69);
    assert_eq!(
        show(r.peer.written()),
        "EHLO client.example.test\r\nMAIL FROM:<a@example.test>\r\nQUIT\r\n"
    );
    assert_eq!(count(r.peer.written(), b"QUIT"), 1);
}

#[test]
fn garbage_replies_are_protocol_errors() {
    let mut too_long = "220 ".to_owned();
    too_long.push_str(&"a".repeat(3000));
    too_long.push_str("\r\n");
    let tls_hello: &[u8] = b"\x16\x03\x01\x00\x4a\x02\x00\x00\x46\x03\x01\x5f\x0a\x9c\x00\r\n";
    let cases: [(&str, &[u8]); 5] = [
        ("plain text", b"hello\r\n"),
        ("TLS ServerHello", tls_hello),
        ("oversize line", too_long.as_bytes()),
        ("oversize line, no end", &too_long.as_bytes()[..2500]),
        ("mixed codes", b"220-mx\r\n250 ready\r\n"),
    ];
    for (what, greeting) in cases {
        for chunk in [ALL_AT_ONCE, 1] {
            let r = run_simple(ScriptedPeer::new([greeting], AtEnd::Eof).chunk(chunk));
            let err = r.result.unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Protocol {
                        stage: Stage::Greeting,
                        ..
                    }
                ),
                "{what}, chunk {chunk}: {err:?}"
            );
            assert_eq!(exit::code(&err), 76, "{what}");
            // Out of step: not even a QUIT.
            assert!(r.peer.written().is_empty(), "{what}");
        }
    }

    // Garbage later on names its stage.
    let r = failing_at(2, Some("OK\r\n"), AtEnd::Eof);
    assert_protocol(r.result.as_ref().unwrap_err(), Stage::MailFrom);
    assert_eq!(show(r.peer.written()), CMDS[..2].concat());
}

#[test]
fn a_positive_reply_where_another_is_due_is_unexpected() {
    // 250 to DATA instead of 354: the message must not follow.
    let r = failing_at(4, Some("250 2.0.0 ok\r\n"), AtEnd::Eof);
    let err = r.result.unwrap_err();
    match &err {
        Error::Unexpected {
            stage,
            expected,
            reply,
        } => {
            assert_eq!(*stage, Stage::Data);
            assert_eq!(*expected, "354");
            assert_eq!(reply.code, 250);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(exit::code(&err), 76);
    assert_eq!(show(r.peer.written()), CMDS[..4].concat());
    assert_eq!(count(r.peer.written(), b"Subject"), 0);

    // 354 to MAIL FROM.
    let r = failing_at(2, Some("354 go\r\n"), AtEnd::Eof);
    assert!(matches!(
        r.result,
        Err(Error::Unexpected {
            stage: Stage::MailFrom,
            ..
        })
    ));
    assert_eq!(show(r.peer.written()), CMDS[..2].concat());
}

#[test]
fn a_small_message_leaves_in_one_write_and_each_command_in_one() {
    // About 62 KB in 1000 lines: under the 64 KiB buffer even after the final dot.
    let line = format!("{}\r\n", "m".repeat(60));
    let body = line.repeat(1000);
    let wire = format!("{body}.\r\n");
    assert!(wire.len() < 64 * 1024);
    let r = run_script(&REPLIES, &["b@example.test"], body.as_bytes());
    assert!(r.result.is_ok());
    let writes: Vec<String> = r.peer.writes().into_iter().map(show).collect();
    let mut expected: Vec<String> = CMDS.iter().map(|c| c.to_string()).collect();
    expected[4] = wire;
    assert_eq!(writes.len(), expected.len(), "one write per command");
    assert_eq!(writes, expected);
}

#[test]
fn a_large_message_leaves_in_buffer_sized_writes() {
    let line = format!("{}\r\n", "m".repeat(98));
    let body = line.repeat(3000); // 300 KB
    let wire = format!("{body}.\r\n");
    let r = run_script(&REPLIES, &["b@example.test"], body.as_bytes());
    assert!(r.result.is_ok());
    let writes = r.peer.writes();
    let message_writes = &writes[4..writes.len() - 1];
    assert_eq!(show(&message_writes.concat()), wire);
    assert!(
        message_writes.len() <= 6,
        "{} writes for 300 KB",
        message_writes.len()
    );
    assert!(message_writes.iter().all(|w| w.len() <= 64 * 1024));
}

#[test]
fn a_reply_sent_before_its_command_is_refused() {
    // Greeting and an EHLO reply in one read, before EHLO was sent: taking the early
    // reply as the answer to EHLO would let injected replies stand in for real ones.
    let script = [
        "220 mx.example.test ready\r\n250-mx.example.test\r\n250 PIPELINING\r\n",
        "250 ok\r\n",
    ];
    let r = run_simple(ScriptedPeer::new(script, AtEnd::Eof));
    let err = r.result.unwrap_err();
    assert_protocol(&err, Stage::Ehlo);
    assert_eq!(exit::code(&err), 76);
    assert_eq!(show(r.peer.written()), "", "not even QUIT after a desync");
}

#[test]
fn transcript_shows_commands_replies_and_a_message_summary() {
    let (buf, transcript) = transcript_to_buf();
    let script = [
        "220 mx\x1b[31m ready\x07\r\n",
        "250-mx.example.test\r\n250 8BITMIME\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "354 go\r\n",
        "250 queued\r\n",
        "221 bye\r\n",
    ];
    let message = "Subject: secret plans\r\n\r\nline one\r\nline two\n";
    let peer = ScriptedPeer::new(script, AtEnd::Eof);
    let to = envelope(&["b@example.test"]);
    let r = run_with(
        peer,
        Timeouts::default(),
        transcript,
        &to,
        message.as_bytes(),
    );
    assert!(r.result.is_ok());
    let transcript = buf.text();
    assert_eq!(
        transcript,
        format!(
            "< 220 mx?[31m ready?\n\
             > EHLO client.example.test\n\
             < 250-mx.example.test\n\
             < 250 8BITMIME\n\
             > MAIL FROM:<a@example.test>\n\
             < 250 ok\n\
             > RCPT TO:<b@example.test>\n\
             < 250 ok\n\
             > DATA\n\
             < 354 go\n\
             > [message: {} bytes, 4 lines]\n\
             > .\n\
             < 250 queued\n\
             > QUIT\n\
             < 221 bye\n",
            message.len()
        )
    );
    assert!(!transcript.contains("secret"));
    assert!(!transcript.contains('\x1b'));
}

#[test]
fn a_write_failure_during_the_message_is_a_network_error() {
    let before = CMDS[..4].concat().len();
    let small = SIMPLE.to_vec();
    let large = format!("{}\r\n", "m".repeat(98)).repeat(3000).into_bytes();
    for (what, message) in [("small", &small), ("large", &large)] {
        for kind in [io::ErrorKind::BrokenPipe, io::ErrorKind::WouldBlock] {
            // The peer takes the commands and a few bytes of the message, then fails.
            let r = run(
                ScriptedPeer::new(&REPLIES[..5], AtEnd::Eof).fail_writes_after(before + 7, kind),
                &envelope(&["b@example.test"]),
                message,
            );
            let err = r.result.unwrap_err();
            match (&err, kind) {
                (
                    Error::Network {
                        stage: Stage::Message,
                        source,
                    },
                    io::ErrorKind::BrokenPipe,
                ) => assert_eq!(source.kind(), kind),
                (
                    Error::Timeout {
                        stage: Stage::Message,
                        after,
                    },
                    io::ErrorKind::WouldBlock,
                ) => assert_eq!(*after, minutes(3)),
                _ => panic!("{what}, {kind:?}: {err:?}"),
            }
            assert_eq!(exit::code(&err), 75);
            assert_eq!(r.peer.written().len(), before + 7);
            // One failed attempt: no second try of the same bytes (after a timeout that
            // would mean waiting the whole timeout again), and no QUIT.
            assert_eq!(r.peer.failed_writes(), 1, "{what}, {kind:?}");
        }
    }

    // A broken pipe while sending a command names the command.
    let r = run(
        ScriptedPeer::new(&REPLIES[..2], AtEnd::Eof)
            .fail_writes_after(CMDS[0].len(), io::ErrorKind::BrokenPipe),
        &envelope(&["b@example.test"]),
        SIMPLE,
    );
    let err = r.result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Network {
                stage: Stage::MailFrom,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(r.peer.failed_writes(), 1);
}

#[test]
fn a_refusal_sent_during_the_message_is_reported_not_lost() {
    // The server refuses part-way (too big) and stops reading; our write fails, but
    // its reply is there to read, and it is permanent: exit 69, not "try again".
    let before = CMDS[..4].concat().len();
    let mut script: Vec<&str> = REPLIES[..5].to_vec();
    script.push("552 5.3.4 Message size exceeds fixed limit\r\n");
    let large = format!("{}\r\n", "m".repeat(98)).repeat(3000).into_bytes();
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof)
            .fail_writes_after(before + 7, io::ErrorKind::ConnectionReset),
        &envelope(&["b@example.test"]),
        &large,
    );
    let err = r.result.unwrap_err();
    match &err {
        Error::Refused {
            stage: Stage::Message,
            reply,
        } => assert_eq!(reply.code, 552),
        other => panic!("{other:?}"),
    }
    assert_eq!(exit::code(&err), 69);
    assert_eq!(r.peer.failed_writes(), 1);
}

/// Gives `data`, then fails (after one `Interrupted`, which must be retried).
struct FailingReader {
    data: &'static [u8],
    interrupted: bool,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.interrupted {
            self.interrupted = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        if !self.data.is_empty() {
            let n = self.data.len().min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            return Ok(n);
        }
        Err(io::Error::other("disk on fire"))
    }
}

#[test]
fn a_failing_message_source_is_a_local_io_error() {
    let mut session = greeted(session(&REPLIES[..5]));
    let mut source = FailingReader {
        data: b"Subject: half\r\n\r\nhalf a mess",
        interrupted: false,
    };
    let err = session
        .transaction(&envelope(&["b@example.test"]), &[], &mut source)
        .unwrap_err();
    assert!(
        matches!(&err, Error::LocalIo { source, .. } if source.kind() == io::ErrorKind::Other),
        "{err:?}"
    );
    assert_eq!(exit::code(&err), 74);
    session.abort();
    let peer = session.into_inner();
    // Neither the half message nor a final dot went out: the server must not take a
    // truncated message for a whole one. And no QUIT, which it would read as data.
    assert_eq!(show(peer.written()), CMDS[..4].concat());
}
