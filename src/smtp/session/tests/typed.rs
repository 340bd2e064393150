//! A message typed after a 354 (`outbox session`): exact bytes on the wire.

use super::*;

/// Greeted, then `lines` sent as typed, each answered by the script.
fn typed_session(replies_after_ehlo: &[&str]) -> Session<ScriptedPeer> {
    let mut script = vec![HELLO, EHLO_REPLY];
    script.extend_from_slice(replies_after_ehlo);
    greeted(session(&script))
}

fn typed(session: &mut Session<ScriptedPeer>, line: &str) -> Reply {
    session.exchange(&Command::line(line).unwrap()).unwrap()
}

#[test]
fn a_typed_message_is_dot_stuffed_and_ended_by_outbox() {
    let mut s = typed_session(&["354 go ahead\r\n", "250 2.0.0 queued\r\n"]);
    let (buf, transcript) = transcript_to_buf();
    s = s.with_transcript(transcript);
    assert_eq!(typed(&mut s, "DATA").code, 354);
    // A lone "." and a line that begins with one, as a person types them.
    let mut message: &[u8] = b"Subject: t\r\n\r\n.\r\n.x\r\nend\r\n";
    let reply = s.typed_message(&mut message).unwrap();
    assert_eq!(reply.code, 250);
    assert!(s.is_usable());
    let peer = s.into_inner();
    assert_eq!(
        show(peer.written()),
        "EHLO client.example.test\r\nDATA\r\nSubject: t\r\n\r\n..\r\n..x\r\nend\r\n.\r\n"
    );
    // RFC 5321 §4.5.3.2.6: ten minutes for the reply to the final dot.
    let limit = peer.timeout_reading(b"250 2.0.0").unwrap();
    assert!(limit <= minutes(10) && limit > minutes(10) - Duration::from_secs(1));
    assert_eq!(
        buf.text(),
        "> DATA\n< 354 go ahead\n> [message: 26 bytes, 5 lines]\n> .\n< 250 2.0.0 queued\n"
    );
}

#[test]
fn an_empty_message_is_the_final_dot_alone() {
    let mut s = typed_session(&["354 go ahead\r\n", "554 5.6.0 empty\r\n"]);
    typed(&mut s, "DATA");
    let reply = s.typed_message(&mut io::empty()).unwrap();
    // The reply, whatever its code, is the person's to read.
    assert_eq!(reply.code, 554);
    assert!(s.is_usable());
    assert!(show(s.into_inner().written()).ends_with("DATA\r\n.\r\n"));
}

#[test]
fn a_script_without_crlf_still_gets_crlf_and_its_dots_stuffed() {
    let mut s = typed_session(&["354 go\r\n", "250 ok\r\n"]);
    typed(&mut s, "DATA");
    let mut message: &[u8] = b"a\n.\nb\r.\rlast";
    s.typed_message(&mut message).unwrap();
    assert!(
        show(s.into_inner().written()).ends_with("DATA\r\na\r\n..\r\nb\r\n..\r\nlast\r\n.\r\n")
    );
}

#[test]
fn a_421_after_the_message_ends_the_session() {
    let mut s = typed_session(&["354 go\r\n", "421 4.3.0 shutting down\r\n"]);
    typed(&mut s, "DATA");
    let reply = s.typed_message(&mut &b"x\r\n"[..]).unwrap();
    assert_eq!(reply.code, 421);
    assert!(!s.is_usable());
}

/// A source that gives one line, then fails, as a terminal that went away does.
struct Broken(bool);

impl Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if std::mem::replace(&mut self.0, true) {
            return Err(io::Error::other("terminal gone"));
        }
        buf[..3].copy_from_slice(b"x\r\n");
        Ok(3)
    }
}

#[test]
fn a_message_that_cannot_be_read_is_never_ended() {
    let mut s = typed_session(&["354 go\r\n"]);
    typed(&mut s, "DATA");
    let err = s.typed_message(&mut Broken(false)).unwrap_err();
    assert!(matches!(err, Error::LocalIo { .. }), "{err:?}");
    assert!(!s.is_usable());
    // Not even the first line went: half a message must not be taken for a whole one.
    assert_eq!(
        show(s.into_inner().written()),
        "EHLO client.example.test\r\nDATA\r\n"
    );
}
