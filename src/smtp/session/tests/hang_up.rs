//! The tester face's one command, and a session ended without QUIT where a QUIT would
//! be out of step.

use super::*;

fn typed(line: &str) -> Command {
    Command::line(line).unwrap()
}

#[test]
fn after_a_hang_up_no_quit_is_sent() {
    let (buf, transcript) = transcript_to_buf();
    let peer = ScriptedPeer::new([HELLO, EHLO_REPLY, "354 go ahead\r\n"], AtEnd::Eof);
    let mut s = greeted(Session::new(peer, Timeouts::default()).with_transcript(transcript));
    let reply = s.exchange(&typed("DATA")).unwrap();
    assert_eq!(reply.code, 354);
    assert!(s.is_usable());
    s.hang_up("the server takes every line as message text");
    assert!(!s.is_usable());
    // What would end a session after a failure sends nothing now.
    s.abort();
    assert_eq!(show(s.stream().written()), format!("{SEND_EHLO}DATA\r\n"));
    assert!(
        buf.text()
            .ends_with("> DATA\n< 354 go ahead\n* closing without QUIT: the server takes every line as message text\n"),
        "{}",
        buf.text()
    );
    // Said once: a second hang-up, or one after the connection died, is silent.
    s.hang_up("again");
    assert!(!buf.text().contains("again"), "{}", buf.text());
}

#[test]
fn an_exchange_returns_any_reply_and_a_421_ends_the_session() {
    let peer = ScriptedPeer::new(
        [
            HELLO,
            EHLO_REPLY,
            "502 5.5.1 not implemented\r\n",
            "421 4.3.2 going down\r\n",
        ],
        AtEnd::Eof,
    );
    let mut s = greeted(Session::new(peer, Timeouts::default()));
    let reply = s.exchange(&typed("TURN")).unwrap();
    assert_eq!((reply.code, s.is_usable()), (502, true));
    let reply = s.exchange(&Command::Noop).unwrap();
    assert_eq!((reply.code, s.is_usable()), (421, false));
    s.abort();
    assert_eq!(
        show(s.stream().written()),
        format!("{SEND_EHLO}TURN\r\nNOOP\r\n")
    );
}
