//! PIPELINING (RFC 2920): the envelope and DATA in one write, every reply still
//! read and checked in order.

use super::*;

#[test]
fn pipelining_sends_the_envelope_and_data_in_one_write_and_the_end_with_quit() {
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 2.1.0 sender ok\r\n250 2.1.5 b ok\r\n251 2.1.5 c forwarded\r\n354 go ahead\r\n",
        "250 2.0.0 queued as P1\r\n",
        "221 2.0.0 bye\r\n",
    ];
    for chunk in [ALL_AT_ONCE, 1, 5] {
        let peer = ScriptedPeer::new(script, AtEnd::Eof).chunk(chunk);
        let r = last_message(peer, true, None, &envelope(&B_C), SIMPLE);
        assert_eq!(
            writes(&r.peer),
            [
                SEND_EHLO.to_owned(),
                format!("{MAIL_B_C}DATA\r\n"),
                format!("{SIMPLE_WIRE}{QUIT}"),
            ],
            "chunk {chunk}"
        );
        let receipt = r.result.unwrap();
        let want = [("b@example.test", true, 250), ("c@example.test", true, 251)];
        assert_eq!(outcomes(&receipt), want);
        assert_eq!(receipt.reply.code, 250);
        assert_eq!(receipt.reply.lines, ["2.0.0 queued as P1"]);
        assert!(receipt.refused().is_empty());
        // The session is over once QUIT has gone: its 221 is not waited for, and no
        // second QUIT follows.
        assert_goodbye_unread(&r.peer, "221 2.0.0 bye\r\n");
        assert!(!r.usable);
        assert_eq!(count(r.peer.written(), b"QUIT"), 1);
        // EHLO, the envelope group, the end of data (QUIT went with it).
        assert_eq!(waits(&r.peer), 3, "chunk {chunk}");
    }
}

/// What a pipelined transaction that stood no chance must come to.
enum Refusal {
    /// The sender refused at this stage with this code.
    At(Stage, u16),
    /// Every recipient refused: each with its code.
    Everyone(&'static [(&'static str, u16)]),
}

/// A pipelined DATA transaction to b and c that goes wrong before the message: the
/// server's turns after EHLO (its 221 comes last), what the client must come to, and
/// whether it ends a 354 with the dot alone.
struct RefusedCase {
    name: &'static str,
    turns: &'static [&'static str],
    want: Refusal,
    exit: Option<u8>,
    dot: bool,
}

#[test]
fn pipelined_refusals_read_every_reply_and_send_no_message() {
    let cases = [
        RefusedCase {
            name: "the sender refused: RCPT and DATA get 503 and are read all the same",
            turns: &[
                "550 5.7.1 sender refused\r\n503 5.5.1 no sender\r\n503 5.5.1 no sender\r\n\
                      503 5.5.1 no valid recipients\r\n",
            ],
            want: Refusal::At(Stage::MailFrom, 550),
            exit: Some(69),
            dot: false,
        },
        RefusedCase {
            name: "the sender refused, and 354 anyway: an empty message, the dot alone",
            turns: &[
                "550 5.7.1 sender refused\r\n503 5.5.1 no sender\r\n503 5.5.1 no sender\r\n\
                 354 go ahead\r\n",
                "503 5.5.1 no transaction\r\n",
            ],
            want: Refusal::At(Stage::MailFrom, 550),
            exit: None,
            dot: true,
        },
        RefusedCase {
            name: "every recipient refused, and DATA too",
            turns: &["250 2.1.0 ok\r\n550 5.1.1 no b\r\n450 4.2.1 c busy\r\n\
                      554 5.5.1 no valid recipients\r\n"],
            want: Refusal::Everyone(&[("b@example.test", 550), ("c@example.test", 450)]),
            exit: Some(67),
            dot: false,
        },
        RefusedCase {
            name: "every recipient refused, and 354 all the same: RFC 2920 §3.1, the dot alone",
            turns: &[
                "250 2.1.0 ok\r\n550 5.1.1 no b\r\n550 5.1.1 no c\r\n354 go ahead\r\n",
                "554 5.5.1 no valid recipients\r\n",
            ],
            want: Refusal::Everyone(&[("b@example.test", 550), ("c@example.test", 550)]),
            exit: Some(67),
            dot: true,
        },
    ];
    for case in cases {
        let name = case.name;
        let mut script = vec![GREETING, EHLO_PIPELINING];
        script.extend(case.turns);
        script.push("221 bye\r\n");
        let r = run_script(&script, &B_C, SIMPLE);
        let err = r.result.unwrap_err();
        match case.want {
            Refusal::At(stage, code) => assert_refused(&err, stage, code),
            Refusal::Everyone(want) => assert_no_recipients(&err, want),
        }
        if let Some(code) = case.exit {
            assert_eq!(exit::code(&err), code, "{name}");
        }
        let mut want = vec![SEND_EHLO.to_owned(), format!("{MAIL_B_C}DATA\r\n")];
        if case.dot {
            want.push(".\r\n".to_owned());
        }
        want.push(QUIT.to_owned());
        assert_eq!(writes(&r.peer), want, "{name}");
        assert_eq!(count(r.peer.written(), b"Subject"), 0, "{name}");
        // Every reply was read but the goodbye, which is not waited for.
        assert_goodbye_unread(&r.peer, "221 bye\r\n");
    }
}

#[test]
fn pipelined_bdat_every_recipient_refused() {
    // Under BDAT the message has already left with the envelope; the BDAT refusal is
    // read and the error is still about the recipients.
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 2.1.0 ok\r\n550 5.1.1 no b\r\n554 5.5.1 no valid recipients\r\n221 bye\r\n",
    ];
    let r = last(&script, &["b@example.test"], SIMPLE);
    let err = r.result.unwrap_err();
    assert_no_recipients(&err, &[("b@example.test", 550)]);
    assert_eq!(r.peer.unread(), 0);
    assert!(!r.usable);
    assert_eq!(count(r.peer.written(), b"QUIT"), 1);
}

#[test]
fn pipelined_one_refused_recipient_of_two() {
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 2.1.0 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go\r\n",
        "250 2.0.0 queued\r\n221 bye\r\n",
    ];
    let r = last(&script, &B_C, SIMPLE);
    let receipt = r.result.unwrap();
    let refused = receipt.refused();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].recipient, "b@example.test");
    assert_eq!(refused[0].reply.lines, ["5.1.1 no such user"]);
    assert!(receipt.recipients[1].accepted);
    assert_eq!(exit::refusals_code(&refused), Some(67));
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B_C}DATA\r\n"),
            format!("{SIMPLE_WIRE}{QUIT}"),
        ]
    );
    assert_eq!(r.peer.unread(), 0);

    // The same under BDAT.
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n450 4.2.1 busy\r\n250 2.0.0 queued\r\n221 bye\r\n",
    ];
    let r = last(&script, &B_C, SIMPLE);
    let receipt = r.result.unwrap();
    let refused = receipt.refused();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].recipient, "c@example.test");
    assert_eq!(exit::refusals_code(&refused), Some(75));
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B_C}{}{QUIT}", bdat_last(SIMPLE)),
        ]
    );
    assert_eq!(r.peer.unread(), 0);
}

#[test]
fn pipelined_421_to_a_recipient_ends_it_all() {
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 2.1.0 ok\r\n421 4.3.2 shutting down\r\n",
    ];
    let r = last(&script, &B_C, SIMPLE);
    let err = r.result.unwrap_err();
    assert_refused(&err, Stage::RcptTo, 421);
    assert_eq!(exit::code(&err), 75);
    assert!(!r.usable);
    // Neither the message nor a QUIT: the server has gone.
    assert_eq!(
        writes(&r.peer),
        [SEND_EHLO.to_owned(), format!("{MAIL_B_C}DATA\r\n")]
    );
    assert_eq!(r.peer.unread(), 0);
}

#[test]
fn end_of_data_refused_with_quit_pipelined_still_reads_the_goodbye() {
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 ok\r\n250 ok\r\n354 go\r\n",
        "451 4.3.0 try again later\r\n221 bye\r\n",
    ];
    let r = last(&script, &["b@example.test"], SIMPLE);
    let err = r.result.unwrap_err();
    assert_refused(&err, Stage::EndOfData, 451);
    assert_eq!(exit::code(&err), 75);
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B}DATA\r\n"),
            format!("{SIMPLE_WIRE}{QUIT}"),
        ]
    );
    assert_eq!(r.peer.unread(), 0, "the 221 was read");
    assert!(!r.usable);
    assert_eq!(count(r.peer.written(), b"QUIT"), 1, "no second QUIT");
}

#[test]
fn pipelined_421_to_data_after_refusals_ends_the_session() {
    // Every recipient refused, then the server closes with 421 to DATA: the refusals
    // are the error, but the connection is gone, so no QUIT and no next message on it.
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 2.1.0 ok\r\n550 5.1.1 no b\r\n421 4.3.2 closing\r\n",
    ];
    let mut session = greeted(session(&script));
    let err = session
        .transaction(
            &envelope(&["b@example.test"]),
            &[],
            &mut SIMPLE_MESSAGE.as_bytes(),
        )
        .unwrap_err();
    assert_no_recipients(&err, &[("b@example.test", 550)]);
    assert!(!session.is_usable());
    session.abort();
    let peer = session.into_inner();
    assert_eq!(
        writes(&peer),
        [SEND_EHLO.to_owned(), format!("{MAIL_B}DATA\r\n")]
    );
}
