//! CHUNKING (RFC 3030): the message in BDAT chunks, in lock-step or pipelined.

use super::*;

#[test]
fn pipelining_and_chunking_send_envelope_bdat_message_and_quit_in_one_write() {
    // Bare LFs, a lone dot line, lines starting with dots, no final line end.
    let message = b"Subject: dots\n\n.\n..two\n.x\r\nend";
    let wire = b"Subject: dots\r\n\r\n.\r\n..two\r\n.x\r\nend\r\n";
    assert_eq!(crlf(message), wire);
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued as C1\r\n",
        "221 2.0.0 bye\r\n",
    ];
    let r = last(&script, &["b@example.test"], message);
    let receipt = r.result.unwrap();
    assert_eq!(receipt.reply.lines, ["2.0.0 queued as C1"]);
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B}{}{QUIT}", bdat_last(wire)),
        ]
    );
    // No dot-stuffing and no terminating dot under BDAT.
    assert_eq!(count(r.peer.written(), b"..."), 0);
    assert!(!show(r.peer.written()).contains("\r\n.\r\nQUIT"));
    assert_goodbye_unread(&r.peer, "221 2.0.0 bye\r\n");
    assert!(!r.usable);
    // EHLO, and everything else.
    assert_eq!(waits(&r.peer), 2);
}

#[test]
fn chunking_without_pipelining_goes_in_lock_step() {
    let message = b"Subject: x\n\n.dot\n";
    let wire = crlf(message);
    let script = [
        GREETING,
        EHLO_CHUNKING,
        "250 2.1.0 ok\r\n",
        "250 2.1.5 ok\r\n",
        "250 2.0.0 queued as L1\r\n",
        "221 bye\r\n",
    ];
    let r = run_script(&script, &["b@example.test"], message);
    let receipt = r.result.unwrap();
    assert_eq!(receipt.reply.lines, ["2.0.0 queued as L1"]);
    r.quit.unwrap().unwrap();
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            "MAIL FROM:<a@example.test>\r\n".to_owned(),
            "RCPT TO:<b@example.test>\r\n".to_owned(),
            bdat_last(&wire),
            QUIT.to_owned(),
        ]
    );
    assert_eq!(count(r.peer.written(), b"DATA"), 0);
    assert_goodbye_unread(&r.peer, "221 bye\r\n");
    // EHLO, MAIL, RCPT, BDAT.
    assert_eq!(waits(&r.peer), 4);

    // The same with QUIT announced: it follows the BDAT reply, on its own.
    let r = last(&script, &["b@example.test"], message);
    r.result.unwrap();
    assert_eq!(writes(&r.peer)[4], QUIT);
    assert_goodbye_unread(&r.peer, "221 bye\r\n");
    assert!(!r.usable);
}

/// 2.5 MiB of 80-byte lines ending in bare LF, with a CRLF split across the reads of
/// the message (64 KiB each) after which the first two chunks are cut: the CR ends
/// one read and the LF starts the next.
fn large_message() -> Vec<u8> {
    let mut message: Vec<u8> = (0..2_621_440)
        .map(|i| if i % 80 == 79 { b'\n' } else { b'a' })
        .collect();
    for read in [16, 32] {
        let at = read * 64 * 1024;
        message[at - 1] = b'\r';
        message[at] = b'\n';
    }
    message
}

#[track_caller]
fn check_large_chunks(chunks: &[Chunk], normalised: &[u8]) {
    assert_eq!(chunks.len(), 3);
    for (size, _, data) in chunks {
        assert_eq!(*size, data.len());
    }
    let lasts: Vec<bool> = chunks.iter().map(|c| c.1).collect();
    assert_eq!(lasts, [false, false, true], "only the last is LAST");
    assert!(chunks[0].0 >= CHUNK_SIZE && chunks[1].0 >= CHUNK_SIZE);
    assert_eq!(
        chunks.iter().map(|c| c.0).sum::<usize>(),
        normalised.len(),
        "the sizes add up to the message"
    );
    let joined: Vec<u8> = chunks.iter().flat_map(|c| c.2.iter().copied()).collect();
    assert!(joined == normalised, "the chunks are the message, in order");
    // The CRLF split across reads stays one line end, in the next chunk.
    for k in 1..3 {
        assert!(!chunks[k - 1].2.ends_with(b"\r"), "chunk {k}");
        assert!(chunks[k].2.starts_with(b"\r\na"), "chunk {}", k + 1);
    }
}

#[test]
fn a_large_message_goes_in_several_chunks_only_the_last_marked_last() {
    let message = large_message();
    let normalised = crlf(&message);
    // 32768 bare LFs and two CRLFs, each one line end.
    assert_eq!(count(&normalised, b"\r\n"), message.len() / 80 + 2);
    assert_eq!(normalised.len(), message.len() + message.len() / 80);

    // Pipelined: everything goes out, then every reply is read in order.
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 chunk 1\r\n250 2.0.0 chunk 2\r\n\
         250 2.0.0 all queued as C3\r\n",
        "221 bye\r\n",
    ];
    let r = last(&script, &["b@example.test"], &message);
    assert_eq!(r.result.unwrap().reply.lines, ["2.0.0 all queued as C3"]);
    assert_goodbye_unread(&r.peer, "221 bye\r\n");
    assert!(!r.usable);
    assert_eq!(waits(&r.peer), 2);
    let wire = r.peer.written();
    let after_ehlo = &wire[SEND_EHLO.len()..];
    assert!(after_ehlo.starts_with(MAIL_B.as_bytes()));
    let (chunks, rest) = bdat_chunks(&after_ehlo[MAIL_B.len()..]);
    check_large_chunks(&chunks, &normalised);
    assert_eq!(show(rest), QUIT);

    // Lock-step: each chunk waits for its reply.
    let script = [
        GREETING,
        EHLO_CHUNKING,
        "250 2.1.0 ok\r\n",
        "250 2.1.5 ok\r\n",
        "250 2.0.0 chunk 1\r\n",
        "250 2.0.0 chunk 2\r\n",
        "250 2.0.0 all queued as L3\r\n",
        "221 bye\r\n",
    ];
    let r = run_script(&script, &["b@example.test"], &message);
    assert_eq!(r.result.unwrap().reply.lines, ["2.0.0 all queued as L3"]);
    assert_goodbye_unread(&r.peer, "221 bye\r\n");
    let wire = r.peer.written();
    let after_envelope = &wire[SEND_EHLO.len() + MAIL_B.len()..];
    let (chunks, rest) = bdat_chunks(after_envelope);
    check_large_chunks(&chunks, &normalised);
    assert_eq!(show(rest), QUIT);
    // EHLO, MAIL, RCPT, three chunks.
    assert_eq!(waits(&r.peer), 6);
}

#[test]
fn no_chunking_uses_data_where_bdat_is_offered() {
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 ok\r\n250 ok\r\n354 go\r\n",
        "250 queued\r\n221 bye\r\n",
    ];
    let peer = ScriptedPeer::new(script, AtEnd::Eof);
    let r = last_message(peer, false, None, &envelope(&["b@example.test"]), SIMPLE);
    r.result.unwrap();
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B}DATA\r\n"),
            format!("{SIMPLE_WIRE}{QUIT}"),
        ]
    );
    assert_eq!(count(r.peer.written(), b"BDAT"), 0);
    assert_eq!(r.peer.unread(), 0);
}

#[test]
fn bdat_refused_after_the_data_is_unavailable() {
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n554 5.6.0 content rejected\r\n221 bye\r\n",
    ];
    let r = last(&script, &["b@example.test"], SIMPLE);
    let err = r.result.unwrap_err();
    assert_refused(&err, Stage::EndOfData, 554);
    assert_eq!(err.reply().unwrap().lines, ["5.6.0 content rejected"]);
    assert_eq!(exit::code(&err), 69);
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B}{}{QUIT}", bdat_last(SIMPLE)),
        ]
    );
    assert_eq!(r.peer.unread(), 0, "the 221 was read");
    assert!(!r.usable);
}

#[test]
fn transcript_of_a_pipelined_bdat_session() {
    let (buf, transcript) = transcript_to_buf();
    let message = "Subject: secret\r\n\r\nbody\n";
    let wire_len = crlf(message.as_bytes()).len();
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n221 bye\r\n",
    ];
    let peer = ScriptedPeer::new(script, AtEnd::Eof);
    let to = envelope(&["b@example.test"]);
    let r = last_message(peer, true, transcript, &to, message.as_bytes());
    r.result.unwrap();
    let transcript = buf.text();
    assert_eq!(
        transcript,
        format!(
            "< 220-mx.example.test ESMTP\n\
             < 220 ready\n\
             > EHLO client.example.test\n\
             < 250-mx.example.test\n\
             < 250-PIPELINING\n\
             < 250 CHUNKING\n\
             > MAIL FROM:<a@example.test>\n\
             > RCPT TO:<b@example.test>\n\
             > BDAT {wire_len} LAST\n\
             > [message: {} bytes, 3 lines]\n\
             > QUIT\n\
             < 250 2.1.0 ok\n\
             < 250 2.1.5 ok\n\
             < 250 2.0.0 queued\n\
             < 221 bye\n",
            message.len()
        )
    );
    assert!(!transcript.contains("secret"));
}

#[test]
fn a_large_bdat_message_stops_after_one_chunk_when_mail_is_refused() {
    // The first chunk goes with the envelope; the rest waits for the envelope's
    // replies, so a refused sender does not cost the upload of a whole large message.
    let script = [
        HELLO,
        EHLO_BOTH,
        "550 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n",
        "221 bye\r\n",
    ];
    let r = last(&script, &["b@example.test"], &large_message());
    assert_refused(&r.result.unwrap_err(), Stage::MailFrom, 550);
    let written = r.peer.written();
    assert!(
        written.len() < CHUNK_SIZE + DATA_BUFFER + 4096,
        "{} bytes written for a refused sender",
        written.len()
    );
    assert!(
        show(written).ends_with("QUIT\r\n"),
        "the session ends politely"
    );
}

#[test]
fn a_stray_reply_before_bdat_is_never_taken_for_its_reply() {
    // In lock-step, an extra reply after the RCPT replies, before BDAT; and one between
    // the chunks of a large message, after a chunk's reply: (message, turns after MAIL's
    // reply, BDAT commands sent).
    let large = large_message();
    let cases: [(&[u8], &[&str], usize); 2] = [
        (SIMPLE, &["250 2.1.5 ok\r\n250 2.0.0 stray\r\n"], 0),
        (
            &large,
            &[
                "250 2.1.5 ok\r\n",
                "250 2.0.0 chunk 1\r\n250 2.0.0 stray\r\n",
            ],
            1,
        ),
    ];
    for (message, turns, bdats) in cases {
        let mut script = vec![GREETING, EHLO_CHUNKING, "250 2.1.0 ok\r\n"];
        script.extend(turns);
        script.push("554 5.7.1 message refused\r\n");
        let r = run_script(&script, &["b@example.test"], message);
        assert_out_of_step(&r.result.unwrap_err());
        assert_eq!(count(r.peer.written(), b"BDAT"), bdats);
    }
}

/// Over PIPELINING and CHUNKING the whole transaction leaves at once and its replies
/// are read in turn: a stray `250` among them was taken for the message's reply, and
/// the server's `554` after it went unread (or showed only as "unexpected reply to
/// QUIT"): a refused message reported delivered. The reply left over is caught.
#[test]
fn a_stray_reply_in_a_pipelined_bdat_transaction_is_never_taken_for_the_final_one() {
    let large = large_message();
    let cases: [(&[u8], &str); 2] = [
        (
            SIMPLE,
            "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 stray\r\n554 5.7.1 refused\r\n",
        ),
        (
            &large,
            "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 chunk 1\r\n250 2.0.0 stray\r\n\
             250 2.0.0 chunk 2\r\n554 5.7.1 refused\r\n",
        ),
    ];
    for (message, replies) in cases {
        for verbose in [false, true] {
            let script = [GREETING, EHLO_BOTH, replies, "221 bye\r\n"];
            let transcript = verbose.then(|| Transcript::new(Box::new(SharedBuf::default())));
            let (peer, to) = (
                ScriptedPeer::new(script, AtEnd::Eof),
                envelope(&["b@example.test"]),
            );
            let r = last_message(peer, true, transcript, &to, message);
            let err = r.result.unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Protocol {
                        stage: Stage::EndOfData,
                        ..
                    }
                ),
                "verbose {verbose}: {err:?}"
            );
            assert!(
                err.to_string()
                    .contains("the one left over: 554 5.7.1 refused"),
                "{err}"
            );
            assert_eq!(exit::code(&err), exit::PROTOCOL);
        }
    }
    // The same transaction in step is delivered, its 221 left unread.
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n221 bye\r\n",
    ];
    let r = last(&script, &["b@example.test"], SIMPLE);
    assert_eq!(r.result.unwrap().reply.lines, ["2.0.0 queued"]);
}
