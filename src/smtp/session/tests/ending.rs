//! The end of a session, and replies nobody asked for.

use super::*;

/// Whether the client read (or tried to) after its last write.
fn read_after_last_write(peer: &ScriptedPeer) -> bool {
    let events = peer.events();
    let last = events
        .iter()
        .rposition(|e| matches!(e, Event::Write { bytes, .. } if !bytes.is_empty()))
        .unwrap();
    events[last..]
        .iter()
        .any(|e| matches!(e, Event::Read { .. } | Event::ReadTimedOut { .. }))
}

/// How many reads timed out.
fn timed_out_reads(peer: &ScriptedPeer) -> usize {
    let timed_out = |e: &&Event| matches!(e, Event::ReadTimedOut { .. });
    peer.events().iter().filter(timed_out).count()
}

/// A session over `peer` with a silence hint after 1 ms, and how often it was given.
fn hinted(peer: ScriptedPeer) -> (Session<ScriptedPeer>, Arc<Mutex<u32>>) {
    let said = Arc::new(Mutex::new(0));
    let counter = said.clone();
    let session = Session::new(peer, Timeouts::default()).with_silence_hint(
        Duration::from_millis(1),
        move || {
            *counter.lock().unwrap() += 1;
        },
    );
    (session, said)
}

#[test]
fn the_reply_to_quit_is_not_waited_for() {
    // A server that never says goodbye: a read after QUIT would wait out the whole quit
    // timeout on a real socket (here it would fail at once as timed out).
    let r = run_simple(ScriptedPeer::new(&REPLIES[..6], AtEnd::Timeout));
    r.result.unwrap();
    r.quit.unwrap().unwrap();
    assert_eq!(show(r.peer.written()), CMDS.concat());
    assert!(!read_after_last_write(&r.peer), "{:?}", r.peer.events());

    // Pipelined, QUIT goes with the end of the message: the reply to the end is read,
    // and nothing after it.
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",
        "250 2.0.0 queued as Q1\r\n",
    ];
    let peer = ScriptedPeer::new(script, AtEnd::Timeout);
    let r = last_message(peer, true, None, &envelope(&["b@example.test"]), SIMPLE);
    assert_eq!(r.result.unwrap().reply.lines, ["2.0.0 queued as Q1"]);
    assert!(show(r.peer.written()).ends_with(&format!("{SIMPLE_WIRE}{QUIT}")));
    assert_eq!(timed_out_reads(&r.peer), 0, "a read waited for the 221");
    assert!(!r.usable);
}

#[test]
fn with_a_transcript_the_reply_to_quit_is_waited_for_briefly() {
    // -v shows the goodbye when it comes at once...
    let to = envelope(&["b@example.test"]);
    let (buf, transcript) = transcript_to_buf();
    let peer = ScriptedPeer::new(REPLIES, AtEnd::Eof);
    let r = run_with(peer, Timeouts::default(), transcript, &to, SIMPLE);
    r.result.unwrap();
    assert_eq!(r.peer.unread(), 0);
    let shown = buf.text();
    assert!(shown.ends_with("> QUIT\n< 221 2.0.0 bye\n"), "{shown}");
    // ...for a moment only, not the quit timeout, and says it did not come.
    let (buf, transcript) = transcript_to_buf();
    let peer = ScriptedPeer::new(&REPLIES[..6], AtEnd::Timeout);
    let r = run_with(peer, Timeouts::default(), transcript, &to, SIMPLE);
    r.result.unwrap();
    r.quit.unwrap().unwrap();
    let waited = r.peer.events().iter().rev().find_map(|e| match e {
        Event::ReadTimedOut { timeout } => *timeout,
        _ => None,
    });
    let waited = waited.unwrap();
    assert!(
        waited <= SHOWN_QUIT_WAIT && waited > SHOWN_QUIT_WAIT / 2,
        "{waited:?}"
    );
    let shown = buf.text();
    assert!(
        shown.ends_with("> QUIT\n* no reply to QUIT within 300 ms; closing without it\n"),
        "{shown}"
    );
}

#[test]
fn a_stray_reply_after_354_is_never_taken_for_the_final_one() {
    // 354 and an extra 250 in one write, then 554 after the dot: the 250 would pass for
    // the reply to the end of the message, and the refusal for the reply to QUIT.
    let stray = "354 go ahead\r\n250 2.0.0 stray\r\n";
    let refusal = "554 5.7.1 message refused\r\n";
    // Lock-step.
    let mut script: Vec<&str> = REPLIES[..4].to_vec();
    script.extend([stray, refusal]);
    let r = run_simple(ScriptedPeer::new(script, AtEnd::Eof));
    assert_out_of_step(&r.result.unwrap_err());
    // Not a byte of the message, and no QUIT: the server is out of step.
    assert_eq!(show(r.peer.written()), CMDS[..4].concat());

    // Pipelined, with QUIT announced.
    let group = format!("250 2.1.0 ok\r\n250 2.1.5 ok\r\n{stray}");
    let script = [GREETING, EHLO_PIPELINING, group.as_str(), refusal];
    let r = last(&script, &["b@example.test"], SIMPLE);
    assert_out_of_step(&r.result.unwrap_err());
    assert_eq!(writes(&r.peer), [SEND_EHLO, &format!("{MAIL_B}DATA\r\n")]);
    assert!(!r.usable);
}

#[test]
fn a_silent_greeting_gives_the_hint_once_and_the_wait_goes_on() {
    let (mut session, said) = hinted(ScriptedPeer::new(Vec::<&str>::new(), AtEnd::Timeout));
    let err = session.greeting().unwrap_err();
    assert_eq!(*said.lock().unwrap(), 1);
    // The greeting's own limit still applies, and is what the error reports.
    match err {
        Error::Timeout {
            stage: Stage::Greeting,
            after,
        } => assert_eq!(after, minutes(5)),
        other => panic!("{other:?}"),
    }

    // A server that greets says nothing of the kind.
    let (mut session, said) = hinted(ScriptedPeer::new([GREETING], AtEnd::Eof));
    assert_eq!(session.greeting().unwrap().code, 220);
    assert_eq!(*said.lock().unwrap(), 0);
}

#[test]
fn the_wait_for_a_refusal_after_a_failed_write_follows_the_limits() {
    // The wait for a reason after a failed write of the message: none after a timeout
    // (the stage's time is up; only what has come is looked at), else at most 5 s and
    // never more than the stage's own limit.
    let before = CMDS[..4].concat().len();
    let wait_after = |kind: io::ErrorKind, timeouts: Timeouts| {
        let peer = ScriptedPeer::new(&REPLIES[..5], AtEnd::Timeout);
        let peer = peer.fail_writes_after(before + 7, kind);
        let r = run_with(peer, timeouts, None, &envelope(&["b@example.test"]), SIMPLE);
        assert!(r.result.is_err());
        let events = r.peer.events();
        let failed = events
            .iter()
            .position(|e| matches!(e, Event::WriteFailed { .. }))
            .unwrap();
        events[failed..]
            .iter()
            .find_map(|e| match e {
                Event::ReadTimedOut { timeout } => *timeout,
                _ => None,
            })
            .unwrap()
    };
    let secs = Duration::from_secs;
    let t = wait_after(io::ErrorKind::WouldBlock, Timeouts::default());
    assert!(t <= GLANCE, "{t:?}");
    let t = wait_after(io::ErrorKind::ConnectionReset, Timeouts::default());
    assert!(t <= REFUSAL_WAIT && t > secs(4), "{t:?}");
    let t = wait_after(io::ErrorKind::ConnectionReset, Timeouts::uniform(secs(1)));
    assert!(t <= secs(1) && t > Duration::from_millis(500), "{t:?}");
}

#[test]
fn a_dead_connection_gets_no_further_wait_after_the_dot() {
    // Pipelined, QUIT went with the dot; the reply to the dot never comes. One timed
    // out wait, and none for the reply to QUIT.
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",
    ];
    for transcript in [false, true] {
        let peer = ScriptedPeer::new(script, AtEnd::Timeout);
        let shown = transcript.then(|| Transcript::new(Box::new(SharedBuf::default())));
        let r = last_message(peer, true, shown, &envelope(&["b@example.test"]), SIMPLE);
        assert!(matches!(
            r.result,
            Err(Error::Timeout {
                stage: Stage::EndOfData,
                ..
            })
        ));
        assert_eq!(timed_out_reads(&r.peer), 1, "transcript {transcript}");
        assert_eq!(count(r.peer.written(), b"QUIT"), 1);
    }
}

#[test]
fn lmtp_ends_with_quit_and_does_not_wait_for_its_reply() {
    // LMTP, pipelined: a reply per recipient after the data, QUIT with the dot, and
    // its 221 left unread.
    let script = [
        "220 lmtp.example.test LMTP\r\n",
        "250-lmtp.example.test\r\n250 PIPELINING\r\n",
        "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
        "250 2.0.0 <b@example.test> delivered\r\n250 2.0.0 <c@example.test> delivered\r\n",
        "221 bye\r\n",
    ];
    let mut session = greeted(session(&script).with_lmtp(true));
    session.quit_after_next();
    let receipt = session
        .transaction(&envelope(&B_C), &[], &mut SIMPLE_MESSAGE.as_bytes())
        .unwrap();
    assert!(receipt.recipients.iter().all(|r| r.accepted));
    assert!(!session.is_usable());
    let peer = session.into_inner();
    assert!(show(peer.written()).ends_with(&format!("{SIMPLE_WIRE}{QUIT}")));
    assert_goodbye_unread(&peer, "221 bye\r\n");
}
