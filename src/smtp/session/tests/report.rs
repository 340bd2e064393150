//! The report (`--json`) and the progress of the message.

use super::*;

/// What a progress was told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Told {
    starts: Vec<Option<u64>>,
    bytes: u64,
    finished: Vec<bool>,
}

struct Recording(Arc<Mutex<Told>>);

impl crate::progress::Progress for Recording {
    fn start(&mut self, total: Option<u64>) {
        self.0.lock().unwrap().starts.push(total);
    }
    fn advance(&mut self, bytes: u64) {
        self.0.lock().unwrap().bytes += bytes;
    }
    fn finish(&mut self, ok: bool) {
        self.0.lock().unwrap().finished.push(ok);
    }
}

/// Greeting, EHLO and one last transaction with a recording progress told that the
/// message is `total` bytes; returns the session after it, what the progress was
/// told, and the result.
fn reported(
    script: &[&str],
    chunking: bool,
    to: &[&str],
    message: &[u8],
    total: Option<u64>,
) -> (Session<ScriptedPeer>, Told, Result<Receipt, Error>) {
    let told = Arc::new(Mutex::new(Told::default()));
    let mut session = session(script).with_chunking(chunking);
    session.set_progress(Some(Box::new(Recording(told.clone()))));
    let mut session = greeted(session);
    session.quit_after_next();
    session.set_message_size(total);
    let message = Message::from_bytes(message.to_vec());
    let params = parameters(&session, &envelope(to), &message).unwrap();
    let result = session.transaction_with(&envelope(to), &params, &mut message.reader());
    let told = told.lock().unwrap().clone();
    (session, told, result)
}

/// The client's report of this session (nothing before it: no connection, no TLS).
fn report_of(session: &Session<ScriptedPeer>) -> crate::Report {
    crate::Report {
        session: session.record().clone(),
        ..crate::Report::default()
    }
}

fn phases(report: &crate::Report) -> Vec<&'static str> {
    report.spent().into_iter().map(|(p, _)| p.key()).collect()
}

#[test]
fn the_report_says_what_was_used_each_recipient_and_each_stage() {
    let script = [
        GREETING,
        "250-mx.example.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE 1000000\r\n\
         250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n",
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 <c@example.test>: no such user\r\n\
         250 2.0.0 Ok: queued as 4Abc\r\n221 2.0.0 bye\r\n",
    ];
    let (session, _, result) = reported(
        &script,
        true,
        &B_C,
        "Subject: x\r\n\r\nGrüße\r\n".as_bytes(),
        None,
    );
    let receipt = result.unwrap();
    let report = &report_of(&session);
    assert_eq!(
        report.session.greeting.as_deref(),
        Some("mx.example.test ESMTP")
    );
    assert_eq!(
        report.session.server_name.as_deref(),
        Some("mx.example.test")
    );
    assert_eq!(
        report.extensions_used(),
        [
            "PIPELINING",
            "CHUNKING",
            "SIZE",
            "8BITMIME",
            "ENHANCEDSTATUSCODES"
        ]
    );
    assert_eq!(report.session.recipients, receipt.recipients);
    assert_eq!(report.session.recipients[1].reply.code, 550);
    assert_eq!(report.session.message, Some((23, 3)));
    assert_eq!(
        phases(report),
        ["greeting", "ehlo", "envelope", "data", "quit"]
    );
    let json = crate::report::json(report, &Ok(receipt), 67);
    assert_eq!(json["queue_id"], "4Abc");
    assert_eq!(json["recipients"][1]["enhanced"], "5.1.1");
    assert_eq!(
        json["recipients"][1]["text"],
        "<c@example.test>: no such user"
    );
}

#[test]
fn a_refused_transaction_keeps_the_recipients_in_the_report() {
    // Lock-step DATA: the recipients were accepted, then the message was refused.
    let script = [
        GREETING,
        EHLO_REPLY,
        "250 2.1.0 ok\r\n",
        "250 2.1.5 ok\r\n",
        "354 go ahead\r\n",
        "554 5.7.1 spam\r\n",
    ];
    let (session, told, result) = reported(
        &script,
        true,
        &["b@example.test"],
        SIMPLE,
        Some(SIMPLE_MESSAGE.len() as u64),
    );
    let err = result.unwrap_err();
    assert_eq!(err.stage(), Some(Stage::EndOfData));
    assert_eq!(
        err.reply()
            .and_then(|r| r.enhanced)
            .map(|e| e.to_string())
            .as_deref(),
        Some("5.7.1")
    );
    assert!(err.to_string().contains("554 5.7.1 spam"), "{err}");
    let report = &report_of(&session);
    assert_eq!(report.session.recipients.len(), 1);
    assert!(report.session.recipients[0].accepted);
    assert_eq!(phases(report), ["greeting", "ehlo", "envelope", "data"]);
    // The message went out whole before the refusal.
    assert_eq!(told.starts, [Some(SIMPLE_MESSAGE.len() as u64)]);
    assert_eq!(told.finished, [true]);
}

#[test]
fn progress_is_told_of_every_byte_of_the_message_with_data() {
    let message = vec![b'x'; 3 * DATA_BUFFER + 10];
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 ok\r\n250 ok\r\n354 go ahead\r\n",
        "250 ok\r\n221 bye\r\n",
    ];
    let total = crate::message::wire_size(&message);
    let (session, told, result) =
        reported(&script, true, &["b@example.test"], &message, Some(total));
    result.unwrap();
    assert_eq!(told.starts, [Some(total)]);
    assert_eq!(told.finished, [true]);
    // Everything after DATA's write: the message, the final dot and QUIT.
    let after_data = session
        .into_inner()
        .writes()
        .iter()
        .skip(2)
        .map(|w| w.len() as u64)
        .sum::<u64>();
    assert_eq!(told.bytes, after_data);
    assert!(told.bytes >= total);
}

#[test]
fn progress_is_told_of_every_chunk_with_bdat_and_the_wire_is_unchanged() {
    let message: Vec<u8> = b"0123456789abcdef\n"
        .iter()
        .copied()
        .cycle()
        .take(CHUNK_SIZE * 2 + 100)
        .collect();
    let wire = crlf(&message);
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n221 bye\r\n",
    ];
    let (session, told, result) = reported(
        &script,
        true,
        &["b@example.test"],
        &message,
        Some(wire.len() as u64),
    );
    result.unwrap();
    assert_eq!(told.starts, [Some(wire.len() as u64)]);
    assert_eq!(told.bytes, wire.len() as u64);
    assert_eq!(told.finished, [true]);
    // The same writes as without a progress.
    let with = session
        .into_inner()
        .writes()
        .iter()
        .map(|w| w.to_vec())
        .collect::<Vec<_>>();
    let without = last(&script, &["b@example.test"], &message);
    assert_eq!(with, without.peer.writes());
}

#[test]
fn progress_hears_of_a_failed_transfer() {
    let message = vec![b'x'; 4 * DATA_BUFFER];
    let script = [
        GREETING,
        EHLO_REPLY,
        "250 ok\r\n",
        "250 ok\r\n",
        "354 go\r\n",
    ];
    let told = Arc::new(Mutex::new(Told::default()));
    let peer = ScriptedPeer::new(script, AtEnd::Eof)
        .fail_writes_after(300 + DATA_BUFFER, io::ErrorKind::ConnectionReset);
    let mut session = Session::new(peer, Timeouts::default());
    session.set_progress(Some(Box::new(Recording(told.clone()))));
    let mut session = greeted(session);
    let result = session.transaction(&envelope(&["b@example.test"]), &[], &mut &message[..]);
    assert!(result.is_err());
    let told = told.lock().unwrap().clone();
    assert_eq!(told.starts, [None]);
    assert_eq!(told.finished, [false]);
    assert!(told.bytes < message.len() as u64);
}

#[test]
fn lmtp_refusals_after_the_data_are_not_nothing_sent() {
    let script = [
        "220 lmtp.example.test LMTP\r\n",
        "250-lmtp.example.test\r\n250 PIPELINING\r\n",
        "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
        "552 5.2.2 <b@example.test> mailbox full\r\n452 4.2.2 <c@example.test> over quota\r\n",
        "221 bye\r\n",
    ];
    let mut session = greeted(session(&script).with_lmtp(true));
    let err = session
        .transaction(&envelope(&B_C), &[], &mut SIMPLE_MESSAGE.as_bytes())
        .unwrap_err();
    match &err {
        Error::RefusedAfterData { refused } => {
            assert_eq!(refused.len(), 2);
            assert!(refused.iter().all(|r| !r.accepted));
            assert!(refused.iter().all(|r| r.stage == Stage::EndOfData));
            assert_eq!(refused[0].reply.code, 552);
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains("nothing was sent"), "{err}");
    // A full mailbox after the data is permanent (69), and it outranks the 452.
    assert_eq!(exit::code(&err), 69);
    assert!(show(session.into_inner().written()).starts_with("LHLO client.example.test\r\n"));
}
