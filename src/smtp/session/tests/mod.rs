//! Session tests against a scripted peer.
//!
//! As in Go's net/smtp tests, the server's side is a script of bytes fed to the client,
//! everything the client writes is captured, and both are compared exactly.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::chunking::CHUNK_SIZE;
use super::*;
use crate::compose::Message;
use crate::envelope::{Address, Envelope};
use crate::exit;
use crate::smtp::auth::{Credentials, Mechanism, Secret};
use crate::smtp::tls::{Channel, TlsClient, TlsMode};

// ---------------------------------------------------------------------------------------
// The scripted peer
// ---------------------------------------------------------------------------------------

/// What the peer does once its script has nothing more to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtEnd {
    /// Reads return `Ok(0)`: the server closed the connection.
    Eof,
    /// Reads fail with `WouldBlock`, as a socket read timeout does on Linux.
    Timeout,
}

/// Every read hands out as much of the current turn as the caller asks for.
pub(crate) const ALL_AT_ONCE: usize = usize::MAX;

/// One call the client made on the peer, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// `prepare_read` with a new timeout, or `set_write_timeout`.
    SetTimeout(Duration),
    /// `prepare_read` keeping the timeout it had.
    PrepareRead,
    /// A read and the bytes it returned (none: end of stream), with the timeout then in force.
    Read {
        bytes: Vec<u8>,
        timeout: Option<Duration>,
    },
    /// A read that failed as a timed-out socket read does.
    ReadTimedOut {
        timeout: Option<Duration>,
    },
    /// A write and the bytes the peer took (perhaps fewer than offered).
    Write {
        bytes: Vec<u8>,
        timeout: Option<Duration>,
    },
    /// A write that failed; `offered` is the length of the buffer it was given.
    WriteFailed {
        offered: usize,
        kind: io::ErrorKind,
    },
    Flush,
}

/// A stand-in for the server's end of the connection.
///
/// The script is a list of turns: what the server sends at once. The first turn is
/// there from the start (the greeting); each later turn is only sent once the client
/// has written something after reading all of the one before, as a lock-step server
/// would. A read before that is a client bug (a real server would wait for a command
/// that never comes), and the peer panics. Once all turns are read, reads behave as
/// `AtEnd` says.
pub(crate) struct ScriptedPeer {
    turns: VecDeque<Vec<u8>>,
    /// Bytes of the front turn already handed out.
    pos: usize,
    /// Most bytes a read hands out.
    chunk: usize,
    at_end: AtEnd,
    /// The front turn may be read: the client has written since the last turn ended.
    open: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// Writes fail with this kind once this many bytes have been taken.
    fail_writes: Option<(usize, io::ErrorKind)>,
    written: Vec<u8>,
    events: Vec<Event>,
    /// What the peer claims to be, for the TLS policy: on loopback or not, and whether
    /// TLS has been "started" (the handshake itself is not played).
    loopback: bool,
    tls: bool,
}

impl ScriptedPeer {
    pub(crate) fn new<T: AsRef<[u8]>>(
        turns: impl IntoIterator<Item = T>,
        at_end: AtEnd,
    ) -> ScriptedPeer {
        let turns: VecDeque<Vec<u8>> = turns.into_iter().map(|t| t.as_ref().to_vec()).collect();
        assert!(
            turns.iter().all(|t| !t.is_empty()),
            "an empty turn means nothing"
        );
        ScriptedPeer {
            turns,
            pos: 0,
            chunk: ALL_AT_ONCE,
            at_end,
            open: true,
            read_timeout: None,
            write_timeout: None,
            fail_writes: None,
            written: Vec::new(),
            events: Vec::new(),
            loopback: true,
            tls: false,
        }
    }

    /// A peer that is not on this machine.
    pub(crate) fn remote(mut self) -> ScriptedPeer {
        self.loopback = false;
        self
    }

    /// Hands out at most `n` bytes per read (1 exercises the client's buffering).
    pub(crate) fn chunk(mut self, n: usize) -> ScriptedPeer {
        assert!(n > 0);
        self.chunk = n;
        self
    }

    /// Takes `limit` bytes in all, then fails every write with `kind`.
    pub(crate) fn fail_writes_after(mut self, limit: usize, kind: io::ErrorKind) -> ScriptedPeer {
        self.fail_writes = Some((limit, kind));
        self
    }

    /// Every byte the client wrote, in order.
    pub(crate) fn written(&self) -> &[u8] {
        &self.written
    }

    /// The bytes of each successful write call.
    pub(crate) fn writes(&self) -> Vec<&[u8]> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Write { bytes, .. } => Some(bytes.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// Write calls that failed.
    pub(crate) fn failed_writes(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::WriteFailed { .. }))
            .count()
    }

    pub(crate) fn events(&self) -> &[Event] {
        &self.events
    }

    /// Every timeout the client set, in order.
    pub(crate) fn timeouts(&self) -> Vec<Duration> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::SetTimeout(t) => Some(*t),
                _ => None,
            })
            .collect()
    }

    /// The timeout in force when the client wrote bytes starting with `prefix`.
    pub(crate) fn timeout_writing(&self, prefix: &[u8]) -> Option<Duration> {
        self.events.iter().find_map(|e| match e {
            Event::Write { bytes, timeout } if bytes.starts_with(prefix) => *timeout,
            _ => None,
        })
    }

    /// The timeout in force when the client read bytes starting with `prefix`.
    pub(crate) fn timeout_reading(&self, prefix: &[u8]) -> Option<Duration> {
        self.events.iter().find_map(|e| match e {
            Event::Read { bytes, timeout } if bytes.starts_with(prefix) => *timeout,
            _ => None,
        })
    }

    /// Bytes of the script the client has not read.
    pub(crate) fn unread(&self) -> usize {
        self.turns.iter().map(Vec::len).sum::<usize>() - self.pos
    }
}

impl Read for ScriptedPeer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = self.read_timeout;
        let Some(turn) = self.turns.front() else {
            return match self.at_end {
                AtEnd::Eof => {
                    self.events.push(Event::Read {
                        bytes: Vec::new(),
                        timeout,
                    });
                    Ok(0)
                }
                AtEnd::Timeout => {
                    self.events.push(Event::ReadTimedOut { timeout });
                    Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "Resource temporarily unavailable",
                    ))
                }
            };
        };
        assert!(
            self.open,
            "the client read again without sending anything after the last reply; \
             a real server would wait (client wrote so far: {:?})",
            String::from_utf8_lossy(&self.written)
        );
        let n = (turn.len() - self.pos).min(self.chunk).min(buf.len());
        buf[..n].copy_from_slice(&turn[self.pos..self.pos + n]);
        self.events.push(Event::Read {
            bytes: buf[..n].to_vec(),
            timeout,
        });
        self.pos += n;
        if self.pos == turn.len() {
            self.turns.pop_front();
            self.pos = 0;
            self.open = false;
        }
        Ok(n)
    }
}

impl Write for ScriptedPeer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut take = buf.len();
        if let Some((limit, kind)) = self.fail_writes {
            if self.written.len() >= limit {
                self.events.push(Event::WriteFailed {
                    offered: buf.len(),
                    kind,
                });
                return Err(io::Error::from(kind));
            }
            take = take.min(limit - self.written.len());
        }
        self.written.extend_from_slice(&buf[..take]);
        self.events.push(Event::Write {
            bytes: buf[..take].to_vec(),
            timeout: self.write_timeout,
        });
        if take > 0 {
            self.open = true;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.events.push(Event::Flush);
        Ok(())
    }
}

impl IoTimeout for ScriptedPeer {
    fn prepare_read(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match timeout {
            Some(t) => {
                self.events.push(Event::SetTimeout(t));
                self.read_timeout = Some(t);
            }
            None => self.events.push(Event::PrepareRead),
        }
        Ok(())
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.events.push(Event::SetTimeout(timeout));
        self.write_timeout = Some(timeout);
        Ok(())
    }
}

impl Channel for ScriptedPeer {
    fn is_tls(&self) -> bool {
        self.tls
    }

    fn peer_is_loopback(&self) -> bool {
        self.loopback
    }

    fn start_tls(&mut self, _client: &TlsClient<'_>) -> Result<(), Error> {
        self.tls = true;
        Ok(())
    }

    fn tls_info(&self) -> Option<crate::smtp::tls::TlsInfo> {
        None
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const EHLO_NAME: &str = "client.example.test";
const GREETING: &str = "220-mx.example.test ESMTP\r\n220 ready\r\n";
/// A server without PIPELINING or CHUNKING: every step in lock-step.
const EHLO_REPLY: &str = "250-mx.example.test greets client.example.test\r\n\
                          250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";
const SIMPLE_MESSAGE: &str = "Subject: hi\r\n\r\nhello\r\n";
const SIMPLE_WIRE: &str = "Subject: hi\r\n\r\nhello\r\n.\r\n";

fn addr(s: &str) -> Address {
    Address::new(s).unwrap()
}

fn envelope(to: &[&str]) -> Envelope {
    Envelope::new(Some(addr("a@example.test")), to.iter().map(|t| addr(t)))
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(60 * m)
}

/// The server's replies of a plain one-recipient session, one per stage, and the
/// client's commands: `CMDS[k]` is what the client sends before reading `REPLIES[k + 1]`.
const REPLIES: [&str; 7] = [
    GREETING,
    EHLO_REPLY,
    "250 2.1.0 sender ok\r\n",
    "250 2.1.5 recipient ok\r\n",
    "354 go ahead\r\n",
    "250 2.0.0 queued as 1234\r\n",
    "221 2.0.0 bye\r\n",
];
const CMDS: [&str; 6] = [
    "EHLO client.example.test\r\n",
    "MAIL FROM:<a@example.test>\r\n",
    "RCPT TO:<b@example.test>\r\n",
    "DATA\r\n",
    SIMPLE_WIRE,
    "QUIT\r\n",
];
/// The stage whose reply is `REPLIES[k]`.
const STAGES: [Stage; 6] = [
    Stage::Greeting,
    Stage::Ehlo,
    Stage::MailFrom,
    Stage::RcptTo,
    Stage::Data,
    Stage::EndOfData,
];

/// What a run through `run` left behind.
struct Run {
    result: Result<Receipt, Error>,
    /// The QUIT after a delivery (none after a failure: `abort` was called).
    quit: Option<Result<(), Error>>,
    capabilities: Capabilities,
    peer: ScriptedPeer,
}

/// What `deliver` in lib.rs does on a connection without TLS or AUTH.
fn plain_delivery(
    session: &mut Session<ScriptedPeer>,
    envelope: &Envelope,
    message: &Message,
) -> Result<Receipt, Error> {
    session.greeting()?;
    session.ehlo(EHLO_NAME)?;
    let caps = session.capabilities();
    let params = crate::parameters(
        |k| caps.has(k),
        caps.size_limit().flatten(),
        envelope,
        message,
        &crate::Dsn::default(),
    )?;
    session.transaction_with(envelope, &params, &mut message.reader())
}

/// Drives a session as `submit_with` does: greeting, EHLO, transaction, then QUIT on
/// success or `abort` on failure.
fn run_with(
    peer: ScriptedPeer,
    timeouts: Timeouts,
    transcript: Option<Transcript>,
    envelope: &Envelope,
    message: &[u8],
) -> Run {
    let mut session = Session::new(peer, timeouts).with_transcript(transcript);
    let message = Message::from_bytes(message.to_vec());
    let result = plain_delivery(&mut session, envelope, &message);
    let quit = match &result {
        Ok(_) => Some(session.quit()),
        Err(_) => {
            session.abort();
            None
        }
    };
    let capabilities = session.capabilities().clone();
    Run {
        result,
        quit,
        capabilities,
        peer: session.into_inner(),
    }
}

fn run(peer: ScriptedPeer, envelope: &Envelope, message: &[u8]) -> Run {
    run_with(peer, Timeouts::default(), None, envelope, message)
}

/// A one-recipient session whose server answers the first `k` stages as usual, then
/// sends `then` (if any) and behaves as `at_end`.
fn failing_at(k: usize, then: Option<&str>, at_end: AtEnd) -> Run {
    let mut turns: Vec<&str> = REPLIES[..k].to_vec();
    turns.extend(then);
    run(
        ScriptedPeer::new(turns, at_end),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    )
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| w == &needle)
        .count()
}

/// A `Write` for the transcript whose bytes the test can read afterwards.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

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
            &envelope(&["b@example.test", "c@example.test"]),
            message,
        );
        assert_eq!(show(r.peer.written()), expected, "chunk {chunk}");
        // Every reply is read but the goodbye: once QUIT is sent, the client closes.
        assert_goodbye_unread(&r.peer, "221 2.0.0 bye\r\n");

        let receipt = r.result.unwrap();
        let got: Vec<_> = receipt
            .recipients
            .iter()
            .map(|rr| (rr.recipient.as_str(), rr.accepted, rr.reply.code))
            .collect();
        assert_eq!(
            got,
            [("b@example.test", true, 250), ("c@example.test", true, 251)]
        );
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
    let r = run(
        ScriptedPeer::new(REPLIES, AtEnd::Eof).chunk(1),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
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
    let r = run(
        ScriptedPeer::new(REPLIES, AtEnd::Eof),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
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
        SIMPLE_MESSAGE.as_bytes(),
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
        let r = run(
            ScriptedPeer::new(script, AtEnd::Eof),
            &envelope(&["b@example.test"]),
            SIMPLE_MESSAGE.as_bytes(),
        );
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
    let r = run(
        ScriptedPeer::new(
            ["220 mx\r\n", "502 no\r\n", "550 go away\r\n", "221 bye\r\n"],
            AtEnd::Eof,
        ),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    match &r.result {
        Err(Error::Refused { stage, reply }) => {
            assert_eq!(*stage, Stage::Helo);
            assert_eq!(reply.code, 550);
        }
        other => panic!("{other:?}"),
    }
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
        match &err {
            Error::Refused { stage: s, reply } => {
                assert_eq!(*s, stage);
                assert_eq!(reply.code, 421, "{stage}");
                assert_eq!(reply.lines, ["4.3.2 shutting down"]);
            }
            other => panic!("{stage}: {other:?}"),
        }
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
    let r = run(
        ScriptedPeer::new(["220-mx.example.test\r\n220-still"], AtEnd::Eof).chunk(1),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
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
    // Nothing at all: no greeting.
    let r = failing_at(0, None, AtEnd::Timeout);
    let err = r.result.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { stage: Stage::Greeting, after } if after == minutes(5)),
        "{err:?}"
    );
    assert_eq!(exit::code(&err), 75);
    assert!(r.peer.written().is_empty());

    // No reply to the final dot.
    let r = failing_at(5, None, AtEnd::Timeout);
    let err = r.result.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { stage: Stage::EndOfData, after } if after == minutes(10)),
        "{err:?}"
    );
    assert_eq!(exit::code(&err), 75);
    // The message went out whole; no QUIT follows (it would be read as more data by a
    // server that is merely slow, and waiting for its reply would cost another timeout).
    assert_eq!(show(r.peer.written()), CMDS[..5].concat());
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
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test", "c@example.test", "d@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
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
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test", "c@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let err = r.result.unwrap_err();
    match &err {
        Error::NoRecipients { refused } => {
            let got: Vec<_> = refused
                .iter()
                .map(|f| (f.recipient.as_str(), f.reply.code))
                .collect();
            assert_eq!(got, [("b@example.test", 550), ("c@example.test", 450)]);
        }
        other => panic!("{other:?}"),
    }
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
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let err = r.result.unwrap_err();
    match &err {
        Error::Refused { stage, reply } => {
            assert_eq!(*stage, Stage::MailFrom);
            assert_eq!(reply.code, 553);
        }
        other => panic!("{other:?}"),
    }
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
            let r = run(
                ScriptedPeer::new([greeting], AtEnd::Eof).chunk(chunk),
                &envelope(&["b@example.test"]),
                SIMPLE_MESSAGE.as_bytes(),
            );
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
    assert!(matches!(
        r.result,
        Err(Error::Protocol {
            stage: Stage::MailFrom,
            ..
        })
    ));
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
    let r = run(
        ScriptedPeer::new(REPLIES, AtEnd::Eof),
        &envelope(&["b@example.test"]),
        body.as_bytes(),
    );
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
    let r = run(
        ScriptedPeer::new(REPLIES, AtEnd::Eof),
        &envelope(&["b@example.test"]),
        body.as_bytes(),
    );
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
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let err = r.result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol {
                stage: Stage::Ehlo,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(exit::code(&err), 76);
    assert_eq!(show(r.peer.written()), "", "not even QUIT after a desync");
}

#[test]
fn transcript_shows_commands_replies_and_a_message_summary() {
    let buf = SharedBuf::default();
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
    let r = run_with(
        ScriptedPeer::new(script, AtEnd::Eof),
        Timeouts::default(),
        Some(Transcript::new(Box::new(buf.clone()))),
        &envelope(&["b@example.test"]),
        message.as_bytes(),
    );
    assert!(r.result.is_ok());
    let transcript = show(&buf.0.lock().unwrap());
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
    let small = SIMPLE_MESSAGE.as_bytes().to_vec();
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
        SIMPLE_MESSAGE.as_bytes(),
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
    let mut session = Session::new(
        ScriptedPeer::new(&REPLIES[..5], AtEnd::Eof),
        Timeouts::default(),
    );
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
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

// STARTTLS and AUTH.

fn credentials(password: &str) -> Credentials {
    Credentials {
        user: "user".into(),
        secret: Secret::new(password.into()),
    }
}

#[test]
fn starttls_discards_early_bytes_forgets_capabilities_and_says_ehlo_again() {
    let injected = "250-injected.example.test\r\n250 AUTH PLAIN\r\n";
    let after_220 = format!("220 2.0.0 Ready to start TLS\r\n{injected}");
    let script = [
        "220 mx.example.test ESMTP\r\n",
        "250-mx.example.test\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n",
        after_220.as_str(),
        "250-mx.example.test\r\n250 PIPELINING\r\n",
    ];
    let mut session = Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default());
    session.greeting().unwrap();
    assert!(session.ehlo(EHLO_NAME).unwrap().has("STARTTLS"));
    session.starttls().unwrap();
    let mut handshakes = 0;
    let discarded = session
        .upgrade(|_| {
            handshakes += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(handshakes, 1);
    // Bytes sent in clear after the 220 are an injection attempt: dropped, not replies.
    assert_eq!(discarded, injected.len());
    assert_eq!(session.capabilities().keywords().count(), 0);
    let caps = session.ehlo(EHLO_NAME).unwrap().clone();
    assert!(caps.has("PIPELINING"));
    assert!(
        !caps.has("STARTTLS"),
        "capabilities from before TLS were kept"
    );
    assert!(caps.auth_mechanisms().is_empty(), "{caps:?}");
    let peer = session.into_inner();
    assert_eq!(
        show(peer.written()),
        "EHLO client.example.test\r\nSTARTTLS\r\nEHLO client.example.test\r\n"
    );
}

#[test]
fn starttls_454_is_temporary() {
    // RFC 3207 §4: 454 "TLS not available due to temporary reason": exit 75, retry
    // later (never a reason to go on in clear), and a polite QUIT.
    let script = [
        "220 mx ESMTP\r\n",
        "250-mx\r\n250 STARTTLS\r\n",
        "454 4.7.0 TLS not available\r\n",
        "221 bye\r\n",
    ];
    let mut session = Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default());
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    let err = session.starttls().unwrap_err();
    assert!(matches!(
        err,
        Error::Refused {
            stage: Stage::StartTls,
            ..
        }
    ));
    assert_eq!(exit::code(&err), 75);
    session.abort();
    assert!(show(session.into_inner().written()).ends_with("STARTTLS\r\nQUIT\r\n"));
}

#[test]
fn starttls_refused_or_failed_handshake() {
    // A permanent refusal of STARTTLS: exit 69 (nothing safe to do), and a polite QUIT.
    let script = [
        "220 mx ESMTP\r\n",
        "250-mx\r\n250 STARTTLS\r\n",
        "502 5.5.1 not implemented\r\n",
        "221 bye\r\n",
    ];
    let mut session = Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default());
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    let err = session.starttls().unwrap_err();
    assert!(matches!(
        err,
        Error::Refused {
            stage: Stage::StartTls,
            ..
        }
    ));
    assert_eq!(exit::code(&err), 69);
    session.abort();
    assert!(show(session.into_inner().written()).ends_with("STARTTLS\r\nQUIT\r\n"));

    // A handshake that fails leaves nothing to send QUIT over.
    let script = [
        "220 mx ESMTP\r\n",
        "250-mx\r\n250 STARTTLS\r\n",
        "220 go\r\n",
    ];
    let mut session = Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default());
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    session.starttls().unwrap();
    let err = session
        .upgrade(|_| {
            Err(Error::Tls {
                server: "mx:25".into(),
                detail: "handshake failure".into(),
            })
        })
        .unwrap_err();
    assert_eq!(exit::code(&err), 76);
    session.abort();
    assert!(show(session.into_inner().written()).ends_with("STARTTLS\r\n"));
}

/// Runs AUTH after a greeting and EHLO offering `mechanisms`, with `replies` to it.
fn auth_run(
    mechanism: Mechanism,
    password: &str,
    replies: &[&str],
) -> (Result<Reply, Error>, String, String) {
    let buf = SharedBuf::default();
    let mut script = vec![
        "220 mx ESMTP\r\n",
        "250-mx\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n",
    ];
    script.extend_from_slice(replies);
    let mut session = Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default())
        .with_transcript(Some(Transcript::new(Box::new(buf.clone()))));
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    let result = session.auth(mechanism, &credentials(password));
    let written = show(session.into_inner().written());
    let transcript = show(&buf.0.lock().unwrap());
    (result, written, transcript)
}

#[test]
fn auth_plain_sends_an_initial_response_and_never_shows_it() {
    let (result, written, transcript) = auth_run(
        Mechanism::Plain,
        "pencil-42",
        &["235 2.7.0 Authentication successful\r\n"],
    );
    assert_eq!(result.unwrap().code, 235);
    // base64("\0user\0pencil-42")
    assert!(
        written.ends_with("AUTH PLAIN AHVzZXIAcGVuY2lsLTQy\r\n"),
        "{written}"
    );
    assert!(
        transcript.contains("> AUTH PLAIN <redacted>\n"),
        "{transcript}"
    );
    assert!(!transcript.contains("AHVzZXIAcGVuY2lsLTQy"), "{transcript}");
    assert!(!transcript.contains("pencil-42"), "{transcript}");
}

#[test]
fn auth_login_answers_two_challenges() {
    let (result, written, transcript) = auth_run(
        Mechanism::Login,
        "pencil-42",
        &[
            "334 VXNlcm5hbWU6\r\n",
            "334 UGFzc3dvcmQ6\r\n",
            "235 2.7.0 ok\r\n",
        ],
    );
    assert_eq!(result.unwrap().code, 235);
    assert!(
        written.ends_with("AUTH LOGIN\r\ndXNlcg==\r\ncGVuY2lsLTQy\r\n"),
        "{written}"
    );
    assert_eq!(
        transcript.matches("> <redacted>\n").count(),
        2,
        "{transcript}"
    );
    assert!(!transcript.contains("cGVuY2lsLTQy"), "{transcript}");
}

#[test]
fn auth_cram_md5_uses_the_challenge() {
    // RFC 2195's example exchange.
    let (result, written, _) = auth_run(
        Mechanism::CramMd5,
        "tanstaaftanstaaf",
        &[
            "334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
            "235 ok\r\n",
        ],
    );
    assert_eq!(result.unwrap().code, 235);
    // base64("user b913a602c7eda7a495b4e6e7334d3890") for user "user".
    let expected = BASE64.encode("user b913a602c7eda7a495b4e6e7334d3890");
    assert!(written.ends_with(&format!("{expected}\r\n")), "{written}");
}

#[test]
fn wrong_password_is_noperm_77_with_the_server_text() {
    let (result, _, transcript) = auth_run(
        Mechanism::Plain,
        "wrong-pencil",
        &["535 5.7.8 Authentication credentials invalid\r\n"],
    );
    let err = result.unwrap_err();
    assert!(matches!(
        err,
        Error::Refused {
            stage: Stage::Auth,
            ..
        }
    ));
    assert_eq!(exit::code(&err), 77);
    assert!(
        err.to_string()
            .contains("535 5.7.8 Authentication credentials invalid")
    );
    assert!(!transcript.contains("wrong-pencil"));
}

#[test]
fn a_challenge_that_is_not_base64_cancels_the_exchange() {
    let (result, written, _) = auth_run(
        Mechanism::Login,
        "pencil-42",
        &["334 not base64!\r\n", "501 5.7.0 cancelled\r\n"],
    );
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    assert_eq!(exit::code(&err), 77);
    assert!(written.ends_with("AUTH LOGIN\r\n*\r\n"), "{written}");
}

// The TLS and credentials policy of `deliver`, off loopback.

/// Runs lib.rs's `deliver` over `peer` with `mode` and, if `user` is given, PLAIN
/// credentials; then aborts (QUIT where the session allows).
fn policy_run(
    peer: ScriptedPeer,
    mode: TlsMode,
    user: Option<&str>,
) -> (Result<Receipt, Error>, String) {
    let cli = crate::cli::Cli {
        tls: Some(mode),
        user: user.map(str::to_owned),
        auth: user.map(|_| "plain".to_owned()),
        ..crate::cli::Cli::default()
    };
    let settings = crate::Settings::from_cli(&cli).unwrap();
    let client = TlsClient {
        options: &settings.tls,
        host: "mx.example.test",
        port: 25,
        timeout: Duration::from_secs(5),
    };
    let credentials = user.map(|u| Credentials {
        user: u.to_owned(),
        secret: Secret::new("pencil-42".into()),
    });
    let mut session = Session::new(peer, Timeouts::default());
    let message = Message::from_bytes(SIMPLE_MESSAGE.as_bytes().to_vec());
    let result = crate::deliver(
        &mut session,
        &settings,
        (mode != TlsMode::None).then_some(&client),
        EHLO_NAME,
        credentials.as_ref(),
        &envelope(&["b@example.test"]),
        &message,
    );
    if result.is_err() {
        session.abort();
    }
    (result, show(session.into_inner().written()))
}

const HELLO: &str = "220 mx.example.test ESMTP\r\n";
const EHLO_PLAIN: &str = "250-mx.example.test\r\n250 AUTH PLAIN\r\n";
const EHLO_STARTTLS: &str = "250-mx.example.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n";
const TRANSACTION: [&str; 4] = ["250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 queued\r\n"];

#[test]
fn auto_off_loopback_requires_starttls() {
    let peer = ScriptedPeer::new([HELLO, EHLO_PLAIN, "221 bye\r\n"], AtEnd::Eof).remote();
    let (result, written) = policy_run(peer, TlsMode::Auto, None);
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert_eq!(exit::code(&err), 69);
    // Nothing of the message was sent in clear.
    assert_eq!(written, "EHLO client.example.test\r\nQUIT\r\n");
}

#[test]
fn auto_off_loopback_starts_tls_and_ehlos_again() {
    let mut script = vec![HELLO, EHLO_STARTTLS, "220 go ahead\r\n", EHLO_PLAIN];
    script.extend(TRANSACTION);
    let peer = ScriptedPeer::new(script, AtEnd::Eof).remote();
    let (result, written) = policy_run(peer, TlsMode::Auto, None);
    result.unwrap();
    assert!(
        written.starts_with(
            "EHLO client.example.test\r\nSTARTTLS\r\nEHLO client.example.test\r\nMAIL FROM:"
        ),
        "{written}"
    );
}

#[test]
fn auto_on_loopback_does_not_try_starttls() {
    let mut script = vec![HELLO, EHLO_STARTTLS];
    script.extend(TRANSACTION);
    let peer = ScriptedPeer::new(script, AtEnd::Eof);
    let (result, written) = policy_run(peer, TlsMode::Auto, None);
    result.unwrap();
    assert!(!written.contains("STARTTLS"), "{written}");
}

#[test]
fn credentials_never_go_in_clear_off_loopback() {
    let peer = ScriptedPeer::new([HELLO, EHLO_PLAIN, "221 bye\r\n"], AtEnd::Eof).remote();
    let (result, written) = policy_run(peer, TlsMode::None, Some("user"));
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(!written.contains("AUTH"), "{written}");
    assert_eq!(written, "EHLO client.example.test\r\nQUIT\r\n");
}

#[test]
fn credentials_go_after_starttls_off_loopback() {
    let mut script = vec![
        HELLO,
        EHLO_STARTTLS,
        "220 go ahead\r\n",
        EHLO_PLAIN,
        "235 ok\r\n",
    ];
    script.extend(TRANSACTION);
    let peer = ScriptedPeer::new(script, AtEnd::Eof).remote();
    let (result, written) = policy_run(peer, TlsMode::StartTls, Some("user"));
    result.unwrap();
    let starttls = written.find("STARTTLS").unwrap();
    let auth = written.find("AUTH PLAIN").unwrap();
    assert!(starttls < auth, "{written}");
}

#[test]
fn credentials_in_clear_to_loopback_are_allowed() {
    let mut script = vec![HELLO, EHLO_PLAIN, "235 ok\r\n"];
    script.extend(TRANSACTION);
    let peer = ScriptedPeer::new(script, AtEnd::Eof);
    let (result, written) = policy_run(peer, TlsMode::None, Some("user"));
    result.unwrap();
    assert!(written.contains("AUTH PLAIN "), "{written}");
}

#[test]
fn tls_none_never_sends_starttls_even_when_offered() {
    let mut script = vec![HELLO, EHLO_STARTTLS];
    script.extend(TRANSACTION);
    let peer = ScriptedPeer::new(script, AtEnd::Eof).remote();
    let (result, written) = policy_run(peer, TlsMode::None, None);
    result.unwrap();
    assert!(!written.contains("STARTTLS"), "{written}");
}

#[test]
fn an_overlong_initial_response_goes_after_an_empty_challenge() {
    // RFC 4954 §4: AUTH without the initial response, which follows the empty 334.
    let long_token = "t".repeat(5_000);
    let buf = SharedBuf::default();
    let script = [
        "220 mx ESMTP\r\n",
        "250-mx\r\n250 AUTH XOAUTH2\r\n",
        "334 \r\n",
        "235 ok\r\n",
    ];
    let mut session = Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default())
        .with_transcript(Some(Transcript::new(Box::new(buf.clone()))));
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    let creds = Credentials {
        user: "user".into(),
        secret: Secret::new(long_token.clone()),
    };
    session.auth(Mechanism::XOAuth2, &creds).unwrap();
    let written = show(session.into_inner().written());
    assert!(written.contains("AUTH XOAUTH2\r\n"), "{}", &written[..80]);
    let expected = BASE64.encode(format!("user=user\x01auth=Bearer {long_token}\x01\x01"));
    assert!(written.ends_with(&format!("{expected}\r\n")));
    assert!(!show(&buf.0.lock().unwrap()).contains(&long_token));
}

// PIPELINING (RFC 2920) and CHUNKING (RFC 3030).

/// A server that pipelines but takes no BDAT.
const EHLO_PIPELINING: &str = "250-mx.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
/// A server that takes BDAT but does not pipeline.
const EHLO_CHUNKING: &str = "250-mx.example.test\r\n250-CHUNKING\r\n250 8BITMIME\r\n";
/// A server that offers both.
const EHLO_BOTH: &str = "250-mx.example.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
const QUIT: &str = "QUIT\r\n";
const MAIL_B_C: &str = "MAIL FROM:<a@example.test>\r\n\
                        RCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n";
const MAIL_B: &str = "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n";
const SEND_EHLO: &str = "EHLO client.example.test\r\n";

/// What a session's last transaction left behind.
struct Last {
    result: Result<Receipt, Error>,
    /// Whether the session could take another command right after the transaction.
    usable: bool,
    peer: ScriptedPeer,
}

/// Greeting, EHLO, and one transaction announced as the last (`quit_after_next`), so
/// QUIT goes with its end; then, as `Client` does, `abort` after a failure and QUIT
/// after a success only where the session is still usable.
fn last_message(
    peer: ScriptedPeer,
    chunking: bool,
    transcript: Option<Transcript>,
    envelope: &Envelope,
    message: &[u8],
) -> Last {
    let mut session = Session::new(peer, Timeouts::default())
        .with_transcript(transcript)
        .with_chunking(chunking);
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    session.quit_after_next();
    let caps = session.capabilities();
    let message = Message::from_bytes(message.to_vec());
    let params = crate::parameters(
        |k| caps.has(k),
        caps.size_limit().flatten(),
        envelope,
        &message,
        &crate::Dsn::default(),
    )
    .unwrap();
    let result = session.transaction_with(envelope, &params, &mut message.reader());
    let usable = session.is_usable();
    match &result {
        Err(_) => session.abort(),
        Ok(_) if session.is_usable() => {
            session.quit().unwrap();
        }
        Ok(_) => {}
    }
    Last {
        result,
        usable,
        peer: session.into_inner(),
    }
}

/// How often the client waited for the server after its greeting: reads that follow
/// a write. Further reads of bytes already sent cost no round trip.
fn waits(peer: &ScriptedPeer) -> usize {
    let mut waiting = false;
    let mut n = 0;
    for e in peer.events() {
        match e {
            Event::Write { bytes, .. } if !bytes.is_empty() => waiting = true,
            Event::Read { .. } | Event::ReadTimedOut { .. } if waiting => {
                n += 1;
                waiting = false;
            }
            _ => {}
        }
    }
    n
}

/// The client sent QUIT and closed without waiting for its reply: `bye`, the last turn
/// of the script, is left unread (a read of it would have made the peer panic, as it
/// comes only after another write).
#[track_caller]
fn assert_goodbye_unread(peer: &ScriptedPeer, bye: &str) {
    assert!(
        show(peer.written()).ends_with(QUIT),
        "{:?}",
        show(peer.written())
    );
    assert_eq!(peer.unread(), bye.len(), "the goodbye {bye:?} was read");
}

fn writes(peer: &ScriptedPeer) -> Vec<String> {
    peer.writes().into_iter().map(show).collect()
}

/// The message as BDAT carries it, worked out here independently of DotWriter: every
/// CRLF, bare CR and bare LF a CRLF, the last line ended, nothing else changed.
fn crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 16);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A BDAT chunk as sent: declared size, LAST or not, the bytes.
type Chunk = (usize, bool, Vec<u8>);

/// Splits `wire` (starting at a BDAT command) into its chunks up to and including the
/// one marked LAST: each chunk's declared size, LAST flag and bytes; and what follows.
fn bdat_chunks(mut wire: &[u8]) -> (Vec<Chunk>, &[u8]) {
    let mut chunks = Vec::new();
    loop {
        assert!(
            wire.starts_with(b"BDAT "),
            "{:?}",
            show(&wire[..wire.len().min(40)])
        );
        let end = wire.windows(2).position(|w| w == b"\r\n").unwrap();
        let line = show(&wire[5..end]);
        let (size, last) = match line.strip_suffix(" LAST") {
            Some(n) => (n.parse::<usize>().unwrap(), true),
            None => (line.parse::<usize>().unwrap(), false),
        };
        let data = wire[end + 2..end + 2 + size].to_vec();
        wire = &wire[end + 2 + size..];
        chunks.push((size, last, data));
        if last {
            return (chunks, wire);
        }
    }
}

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
        let r = last_message(
            ScriptedPeer::new(script, AtEnd::Eof).chunk(chunk),
            true,
            None,
            &envelope(&["b@example.test", "c@example.test"]),
            SIMPLE_MESSAGE.as_bytes(),
        );
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
        let got: Vec<_> = receipt
            .recipients
            .iter()
            .map(|rr| (rr.recipient.as_str(), rr.accepted, rr.reply.code))
            .collect();
        assert_eq!(
            got,
            [("b@example.test", true, 250), ("c@example.test", true, 251)]
        );
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
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test"]),
        message,
    );
    let receipt = r.result.unwrap();
    assert_eq!(receipt.reply.lines, ["2.0.0 queued as C1"]);
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B}BDAT {} LAST\r\n{}{QUIT}", wire.len(), show(wire)),
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
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test"]),
        message,
    );
    let receipt = r.result.unwrap();
    assert_eq!(receipt.reply.lines, ["2.0.0 queued as L1"]);
    r.quit.unwrap().unwrap();
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            "MAIL FROM:<a@example.test>\r\n".to_owned(),
            "RCPT TO:<b@example.test>\r\n".to_owned(),
            format!("BDAT {} LAST\r\n{}", wire.len(), show(&wire)),
            QUIT.to_owned(),
        ]
    );
    assert_eq!(count(r.peer.written(), b"DATA"), 0);
    assert_goodbye_unread(&r.peer, "221 bye\r\n");
    // EHLO, MAIL, RCPT, BDAT.
    assert_eq!(waits(&r.peer), 4);

    // The same with QUIT announced: it follows the BDAT reply, on its own.
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test"]),
        message,
    );
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
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test"]),
        &message,
    );
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
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test"]),
        &message,
    );
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
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        false,
        None,
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
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
fn pipelined_mail_refused_reads_every_reply_and_sends_no_message() {
    // The server refuses the sender; RCPT and DATA get 503 and are read all the same.
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "550 5.7.1 sender refused\r\n503 5.5.1 no sender\r\n503 5.5.1 no sender\r\n\
         503 5.5.1 no valid recipients\r\n",
        "221 bye\r\n",
    ];
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test", "c@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let err = r.result.unwrap_err();
    match &err {
        Error::Refused { stage, reply } => {
            assert_eq!(*stage, Stage::MailFrom);
            assert_eq!(reply.code, 550);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(exit::code(&err), 69);
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B_C}DATA\r\n"),
            QUIT.to_owned()
        ]
    );
    // The 503s were read; the 221 is not waited for.
    assert_goodbye_unread(&r.peer, "221 bye\r\n");

    // A server that says 354 anyway gets an empty message: the dot alone.
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "550 5.7.1 sender refused\r\n503 5.5.1 no sender\r\n503 5.5.1 no sender\r\n\
         354 go ahead\r\n",
        "503 5.5.1 no transaction\r\n",
        "221 bye\r\n",
    ];
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test", "c@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let err = r.result.unwrap_err();
    assert!(
        matches!(&err, Error::Refused { stage: Stage::MailFrom, reply } if reply.code == 550),
        "{err:?}"
    );
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B_C}DATA\r\n"),
            ".\r\n".to_owned(),
            QUIT.to_owned()
        ]
    );
    assert_eq!(count(r.peer.written(), b"Subject"), 0);
    assert_goodbye_unread(&r.peer, "221 bye\r\n");
}

#[track_caller]
fn assert_no_recipients(err: &Error, want: &[(&str, u16)]) {
    match err {
        Error::NoRecipients { refused } => {
            let got: Vec<_> = refused
                .iter()
                .map(|f| (f.recipient.as_str(), f.reply.code))
                .collect();
            assert_eq!(got, want);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pipelined_every_recipient_refused() {
    // DATA refused too: no message.
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 2.1.0 ok\r\n550 5.1.1 no b\r\n450 4.2.1 c busy\r\n\
         554 5.5.1 no valid recipients\r\n",
        "221 bye\r\n",
    ];
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test", "c@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let err = r.result.unwrap_err();
    assert_no_recipients(&err, &[("b@example.test", 550), ("c@example.test", 450)]);
    assert_eq!(exit::code(&err), 67);
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B_C}DATA\r\n"),
            QUIT.to_owned()
        ]
    );
    assert_goodbye_unread(&r.peer, "221 bye\r\n");

    // DATA answered 354 all the same: RFC 2920 §3.1, the dot alone ends it.
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 2.1.0 ok\r\n550 5.1.1 no b\r\n550 5.1.1 no c\r\n354 go ahead\r\n",
        "554 5.5.1 no valid recipients\r\n",
        "221 bye\r\n",
    ];
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test", "c@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let err = r.result.unwrap_err();
    assert_no_recipients(&err, &[("b@example.test", 550), ("c@example.test", 550)]);
    assert_eq!(exit::code(&err), 67);
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!("{MAIL_B_C}DATA\r\n"),
            ".\r\n".to_owned(),
            QUIT.to_owned()
        ]
    );
    assert_goodbye_unread(&r.peer, "221 bye\r\n");

    // Under BDAT the message has already left with the envelope; the BDAT refusal is
    // read and the error is still about the recipients.
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 2.1.0 ok\r\n550 5.1.1 no b\r\n554 5.5.1 no valid recipients\r\n221 bye\r\n",
    ];
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
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
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test", "c@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
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
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test", "c@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let receipt = r.result.unwrap();
    let refused = receipt.refused();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].recipient, "c@example.test");
    assert_eq!(exit::refusals_code(&refused), Some(75));
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!(
                "{MAIL_B_C}BDAT {} LAST\r\n{SIMPLE_MESSAGE}{QUIT}",
                SIMPLE_MESSAGE.len()
            ),
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
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test", "c@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let err = r.result.unwrap_err();
    assert!(
        matches!(&err, Error::Refused { stage: Stage::RcptTo, reply } if reply.code == 421),
        "{err:?}"
    );
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
fn bdat_refused_after_the_data_is_unavailable() {
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n554 5.6.0 content rejected\r\n221 bye\r\n",
    ];
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let err = r.result.unwrap_err();
    match &err {
        Error::Refused { stage, reply } => {
            assert_eq!(*stage, Stage::EndOfData);
            assert_eq!(reply.code, 554);
            assert_eq!(reply.lines, ["5.6.0 content rejected"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(exit::code(&err), 69);
    assert_eq!(
        writes(&r.peer),
        [
            SEND_EHLO.to_owned(),
            format!(
                "{MAIL_B}BDAT {} LAST\r\n{SIMPLE_MESSAGE}{QUIT}",
                SIMPLE_MESSAGE.len()
            ),
        ]
    );
    assert_eq!(r.peer.unread(), 0, "the 221 was read");
    assert!(!r.usable);
}

#[test]
fn end_of_data_refused_with_quit_pipelined_still_reads_the_goodbye() {
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 ok\r\n250 ok\r\n354 go\r\n",
        "451 4.3.0 try again later\r\n221 bye\r\n",
    ];
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    let err = r.result.unwrap_err();
    assert!(
        matches!(&err, Error::Refused { stage: Stage::EndOfData, reply } if reply.code == 451),
        "{err:?}"
    );
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
fn transcript_of_a_pipelined_bdat_session() {
    let buf = SharedBuf::default();
    let message = "Subject: secret\r\n\r\nbody\n";
    let wire_len = crlf(message.as_bytes()).len();
    let script = [
        GREETING,
        EHLO_BOTH,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n221 bye\r\n",
    ];
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        Some(Transcript::new(Box::new(buf.clone()))),
        &envelope(&["b@example.test"]),
        message.as_bytes(),
    );
    r.result.unwrap();
    let transcript = show(&buf.0.lock().unwrap());
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
fn pipelined_421_to_data_after_refusals_ends_the_session() {
    // Every recipient refused, then the server closes with 421 to DATA: the refusals
    // are the error, but the connection is gone, so no QUIT and no next message on it.
    let script = [
        GREETING,
        EHLO_PIPELINING,
        "250 2.1.0 ok\r\n550 5.1.1 no b\r\n421 4.3.2 closing\r\n",
    ];
    let mut session = Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default());
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
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

// ---------------------------------------------------------------------------------------
// The report (`--json`) and the progress of the message
// ---------------------------------------------------------------------------------------

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
    let mut session = Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default())
        .with_chunking(chunking);
    session.set_progress(Some(Box::new(Recording(told.clone()))));
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    session.quit_after_next();
    session.set_message_size(total);
    let caps = session.capabilities();
    let message = Message::from_bytes(message.to_vec());
    let params = crate::parameters(
        |k| caps.has(k),
        caps.size_limit().flatten(),
        &envelope(to),
        &message,
        &crate::Dsn::default(),
    )
    .unwrap();
    let result = session.transaction_with(&envelope(to), &params, &mut message.reader());
    let told = told.lock().unwrap().clone();
    (session, told, result)
}

fn phases(report: &crate::Report) -> Vec<&'static str> {
    report
        .timeline
        .spent()
        .into_iter()
        .map(|(p, _)| p.key())
        .collect()
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
        &["b@example.test", "c@example.test"],
        "Subject: x\r\n\r\nGrüße\r\n".as_bytes(),
        None,
    );
    let receipt = result.unwrap();
    let report = session.report();
    assert_eq!(report.greeting.as_deref(), Some("mx.example.test ESMTP"));
    assert_eq!(report.server_name.as_deref(), Some("mx.example.test"));
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
    assert_eq!(report.recipients, receipt.recipients);
    assert_eq!(report.recipients[1].reply.code, 550);
    assert_eq!(report.message, Some((23, 3)));
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
        SIMPLE_MESSAGE.as_bytes(),
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
    let report = session.report();
    assert_eq!(report.recipients.len(), 1);
    assert!(report.recipients[0].accepted);
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
    let total = crate::wire_size(&message);
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
    let without = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test"]),
        &message,
    );
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
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    let result = session.transaction(&envelope(&["b@example.test"]), &[], &mut &message[..]);
    assert!(result.is_err());
    let told = told.lock().unwrap().clone();
    assert_eq!(told.starts, [None]);
    assert_eq!(told.finished, [false]);
    assert!(told.bytes < message.len() as u64);
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
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test"]),
        &large_message(),
    );
    let err = r.result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Refused {
                stage: Stage::MailFrom,
                ..
            }
        ),
        "{err:?}"
    );
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
fn lmtp_refusals_after_the_data_are_not_nothing_sent() {
    let script = [
        "220 lmtp.example.test LMTP\r\n",
        "250-lmtp.example.test\r\n250 PIPELINING\r\n",
        "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
        "552 5.2.2 <b@example.test> mailbox full\r\n452 4.2.2 <c@example.test> over quota\r\n",
        "221 bye\r\n",
    ];
    let mut session =
        Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default()).with_lmtp(true);
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    let err = session
        .transaction(
            &envelope(&["b@example.test", "c@example.test"]),
            &[],
            &mut SIMPLE_MESSAGE.as_bytes(),
        )
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

// ---------------------------------------------------------------------------------------
// A series of messages over one session (the queue's flush)
// ---------------------------------------------------------------------------------------

/// Messages to send, each with a name, and what became of each.
#[derive(Default)]
struct Batch {
    todo: VecDeque<(&'static str, Envelope, Message)>,
    results: Vec<(&'static str, Option<Result<Receipt, Error>>)>,
}

impl Batch {
    fn of(messages: &[(&'static str, &[&str], &str)]) -> Batch {
        let todo = messages
            .iter()
            .map(|(name, to, text)| {
                let m = Message::from_bytes(text.as_bytes().to_vec());
                (*name, envelope(to), m)
            })
            .collect();
        Batch {
            todo,
            results: Vec::new(),
        }
    }

    fn result(&self, name: &str) -> &Option<Result<Receipt, Error>> {
        &self
            .results
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no result for {name}"))
            .1
    }
}

impl crate::Series for Batch {
    type Tag = &'static str;

    fn next(&mut self) -> Option<crate::Outgoing<&'static str>> {
        let (tag, envelope, message) = self.todo.pop_front()?;
        Some(crate::Outgoing {
            tag,
            envelope,
            message,
        })
    }

    fn done(&mut self, out: crate::Outgoing<&'static str>, result: Option<Result<Receipt, Error>>) {
        self.results.push((out.tag, result));
    }
}

/// Greets, says EHLO, then sends `batch` as a series.
fn run_series(script: &[&str], batch: &mut Batch) -> ScriptedPeer {
    let mut session = Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default());
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    assert!(session.pipelines_data());
    crate::send_series_on(&mut session, &crate::Dsn::default(), batch);
    assert!(!session.is_usable(), "the series ends the session");
    session.into_inner()
}

fn queued_as(result: &Option<Result<Receipt, Error>>) -> String {
    match result {
        Some(Ok(receipt)) => receipt.reply.lines.join(" "),
        other => panic!("not delivered: {other:?}"),
    }
}

const PIPELINING_EHLO: &str = "250-mx.example.test\r\n250 PIPELINING\r\n";
const ENVELOPE_OK: &str = "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n";

#[test]
fn a_series_sends_each_end_with_the_next_envelope() {
    let mut batch = Batch::of(&[
        ("one", &["b@example.test"], "Subject: 1\r\n\r\none\r\n"),
        ("two", &["c@example.test"], "Subject: 2\r\n\r\n.two\r\n"),
        ("three", &["d@example.test"], "Subject: 3\r\n\r\nthree\r\n"),
    ]);
    let queued = |n: u32| format!("250 2.0.0 queued as {n}\r\n");
    let script = [
        "220 mx.example.test\r\n".to_owned(),
        PIPELINING_EHLO.to_owned(),
        ENVELOPE_OK.to_owned(),
        queued(1) + ENVELOPE_OK,
        queued(2) + ENVELOPE_OK,
        queued(3),
        "221 bye\r\n".to_owned(),
    ];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let peer = run_series(&script, &mut batch);
    assert_eq!(
        writes(&peer),
        [
            "EHLO client.example.test\r\n",
            "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
            "Subject: 1\r\n\r\none\r\n.\r\n\
             MAIL FROM:<a@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n",
            "Subject: 2\r\n\r\n..two\r\n.\r\n\
             MAIL FROM:<a@example.test>\r\nRCPT TO:<d@example.test>\r\nDATA\r\n",
            "Subject: 3\r\n\r\nthree\r\n.\r\nQUIT\r\n",
        ]
    );
    let names: Vec<&str> = batch.results.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["one", "two", "three"]);
    for (i, name) in ["one", "two", "three"].iter().enumerate() {
        assert_eq!(
            queued_as(batch.result(name)),
            format!("2.0.0 queued as {}", i + 1)
        );
    }
    // The series ends with QUIT and does not wait for its reply.
    assert_goodbye_unread(&peer, "221 bye\r\n");
}

#[test]
fn a_series_goes_on_past_refused_messages() {
    let mut batch = Batch::of(&[
        ("first", &["b@example.test"], SIMPLE_MESSAGE),
        // 8-bit data for a server without 8BITMIME: refused before anything is sent.
        (
            "eight-bit",
            &["b@example.test"],
            "Subject: x\r\n\r\ncaf\u{e9}\r\n",
        ),
        ("nobody", &["gone@example.test"], SIMPLE_MESSAGE),
        ("rejected", &["b@example.test"], SIMPLE_MESSAGE),
        ("last", &["b@example.test"], SIMPLE_MESSAGE),
    ]);
    let script = [
        "220 mx.example.test\r\n",
        PIPELINING_EHLO,
        ENVELOPE_OK,
        "250 2.0.0 queued as 1\r\n250 2.1.0 ok\r\n550 5.1.1 no such user\r\n\
         554 5.5.1 no valid recipients\r\n",
        "250 2.0.0 reset\r\n",
        ENVELOPE_OK,
        "554 5.7.1 content rejected\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",
        "250 2.0.0 queued as 4\r\n221 bye\r\n",
    ];
    let peer = run_series(&script, &mut batch);
    let envelope_group = "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n";
    assert_eq!(
        writes(&peer),
        [
            "EHLO client.example.test\r\n".to_owned(),
            envelope_group.to_owned(),
            format!(
                "{SIMPLE_WIRE}MAIL FROM:<a@example.test>\r\nRCPT TO:<gone@example.test>\r\n\
                 DATA\r\n"
            ),
            // The refused transaction's MAIL is still open.
            "RSET\r\n".to_owned(),
            envelope_group.to_owned(),
            format!("{SIMPLE_WIRE}{envelope_group}"),
            format!("{SIMPLE_WIRE}QUIT\r\n"),
        ]
    );
    let names: Vec<&str> = batch.results.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["eight-bit", "first", "nobody", "rejected", "last"]);
    assert_eq!(queued_as(batch.result("first")), "2.0.0 queued as 1");
    assert!(matches!(
        batch.result("eight-bit"),
        Some(Err(Error::Data(why))) if why.contains("8BITMIME")
    ));
    match batch.result("nobody") {
        Some(Err(Error::NoRecipients { refused })) => assert_eq!(refused[0].reply.code, 550),
        other => panic!("{other:?}"),
    }
    match batch.result("rejected") {
        Some(Err(Error::Refused { stage, reply })) => {
            assert_eq!(*stage, Stage::EndOfData);
            assert_eq!(reply.code, 554);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(queued_as(batch.result("last")), "2.0.0 queued as 4");
}

#[test]
fn a_series_stops_where_the_connection_is_lost() {
    let mut batch = Batch::of(&[
        ("sent", &["b@example.test"], SIMPLE_MESSAGE),
        ("announced", &["b@example.test"], SIMPLE_MESSAGE),
        ("untouched", &["b@example.test"], SIMPLE_MESSAGE),
    ]);
    let script = [
        "220 mx.example.test\r\n",
        PIPELINING_EHLO,
        ENVELOPE_OK,
        "421 4.3.2 shutting down\r\n",
    ];
    let peer = run_series(&script, &mut batch);
    match batch.result("sent") {
        Some(Err(Error::Refused { reply, .. })) => assert_eq!(reply.code, 421),
        other => panic!("{other:?}"),
    }
    // Its envelope went with the end of the one before, but nothing of it was read.
    assert!(batch.result("announced").is_none());
    assert_eq!(batch.results.len(), 2);
    assert_eq!(batch.todo.len(), 1, "the rest is not taken from the series");
    assert!(!show(peer.written()).contains("QUIT"));
}

// ---------------------------------------------------------------------------------------
// The end of a session, and replies nobody asked for
// ---------------------------------------------------------------------------------------

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

#[test]
fn the_reply_to_quit_is_not_waited_for() {
    // A server that never says goodbye: a read after QUIT would wait out the whole quit
    // timeout on a real socket (here it would fail at once as timed out).
    let r = run(
        ScriptedPeer::new(&REPLIES[..6], AtEnd::Timeout),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
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
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Timeout),
        true,
        None,
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    assert_eq!(r.result.unwrap().reply.lines, ["2.0.0 queued as Q1"]);
    assert!(show(r.peer.written()).ends_with(&format!("{SIMPLE_WIRE}{QUIT}")));
    let timed_out = r
        .peer
        .events()
        .iter()
        .filter(|e| matches!(e, Event::ReadTimedOut { .. }))
        .count();
    assert_eq!(timed_out, 0, "a read waited for the 221");
    assert!(!r.usable);
}

#[test]
fn with_a_transcript_the_reply_to_quit_is_waited_for_briefly() {
    // -v shows the goodbye when it comes at once...
    let buf = SharedBuf::default();
    let r = run_with(
        ScriptedPeer::new(REPLIES, AtEnd::Eof),
        Timeouts::default(),
        Some(Transcript::new(Box::new(buf.clone()))),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    r.result.unwrap();
    assert_eq!(r.peer.unread(), 0);
    let shown = show(&buf.0.lock().unwrap());
    assert!(shown.ends_with("> QUIT\n< 221 2.0.0 bye\n"), "{shown}");
    // ...for a moment only, not the quit timeout, and says it did not come.
    let buf = SharedBuf::default();
    let r = run_with(
        ScriptedPeer::new(&REPLIES[..6], AtEnd::Timeout),
        Timeouts::default(),
        Some(Transcript::new(Box::new(buf.clone()))),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
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
    let shown = show(&buf.0.lock().unwrap());
    assert!(
        shown.ends_with("> QUIT\n* no reply to QUIT within 300 ms; closing without it\n"),
        "{shown}"
    );
}

/// The error for a reply that came unasked, before the message: 76, at `Stage::Message`.
#[track_caller]
fn assert_out_of_step(err: &Error) {
    assert!(
        matches!(
            err,
            Error::Protocol {
                stage: Stage::Message,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(exit::code(err), exit::PROTOCOL);
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
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    assert_out_of_step(&r.result.unwrap_err());
    // Not a byte of the message, and no QUIT: the server is out of step.
    assert_eq!(show(r.peer.written()), CMDS[..4].concat());

    // Pipelined, with QUIT announced.
    let group = format!("250 2.1.0 ok\r\n250 2.1.5 ok\r\n{stray}");
    let script = [GREETING, EHLO_PIPELINING, group.as_str(), refusal];
    let r = last_message(
        ScriptedPeer::new(script, AtEnd::Eof),
        true,
        None,
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    assert_out_of_step(&r.result.unwrap_err());
    assert_eq!(writes(&r.peer), [SEND_EHLO, &format!("{MAIL_B}DATA\r\n")]);
    assert!(!r.usable);
}

#[test]
fn a_stray_reply_before_bdat_is_never_taken_for_its_reply() {
    // An extra reply after the RCPT replies, before BDAT, in lock-step.
    let script = [
        GREETING,
        EHLO_CHUNKING,
        "250 2.1.0 ok\r\n",
        "250 2.1.5 ok\r\n250 2.0.0 stray\r\n",
        "554 5.7.1 message refused\r\n",
    ];
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test"]),
        SIMPLE_MESSAGE.as_bytes(),
    );
    assert_out_of_step(&r.result.unwrap_err());
    assert_eq!(count(r.peer.written(), b"BDAT"), 0);

    // The same between the chunks of a large message: after a chunk's reply.
    let message = large_message();
    let script = [
        GREETING,
        EHLO_CHUNKING,
        "250 2.1.0 ok\r\n",
        "250 2.1.5 ok\r\n",
        "250 2.0.0 chunk 1\r\n250 2.0.0 stray\r\n",
        "554 5.7.1 message refused\r\n",
    ];
    let r = run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(&["b@example.test"]),
        &message,
    );
    assert_out_of_step(&r.result.unwrap_err());
    assert_eq!(count(r.peer.written(), b"BDAT"), 1);
}

#[test]
fn a_stray_reply_in_a_series_does_not_cascade() {
    // Had the stray 250 been taken for the end of the first message, the first would
    // count as delivered and the second would get the first one's 554.
    let mut batch = Batch::of(&[
        ("first", &["b@example.test"], SIMPLE_MESSAGE),
        ("second", &["c@example.test"], SIMPLE_MESSAGE),
    ]);
    let stray = format!("{ENVELOPE_OK}250 2.0.0 stray\r\n");
    let after = format!("554 5.7.1 refused\r\n{ENVELOPE_OK}");
    let script = [
        "220 mx.example.test\r\n",
        PIPELINING_EHLO,
        stray.as_str(),
        after.as_str(),
        "250 2.0.0 queued as 2\r\n",
    ];
    let peer = run_series(&script, &mut batch);
    match batch.result("first") {
        Some(Err(e)) => assert_out_of_step(e),
        other => panic!("{other:?}"),
    }
    // The second was never begun: it stays to be sent later.
    assert!(batch.result("second").is_none());
    assert_eq!(count(peer.written(), b"Subject"), 0);
    assert_eq!(count(peer.written(), b"RCPT TO:<c@"), 0);
}

#[test]
fn a_silent_greeting_gives_the_hint_once_and_the_wait_goes_on() {
    let said = Arc::new(Mutex::new(0));
    let counter = said.clone();
    let mut session = Session::new(
        ScriptedPeer::new(Vec::<&str>::new(), AtEnd::Timeout),
        Timeouts::default(),
    )
    .with_silence_hint(Duration::from_millis(1), move || {
        *counter.lock().unwrap() += 1;
    });
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
    let said = Arc::new(Mutex::new(0));
    let counter = said.clone();
    let mut session = Session::new(
        ScriptedPeer::new([GREETING], AtEnd::Eof),
        Timeouts::default(),
    )
    .with_silence_hint(Duration::from_millis(1), move || {
        *counter.lock().unwrap() += 1;
    });
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
        let r = run_with(
            ScriptedPeer::new(&REPLIES[..5], AtEnd::Timeout).fail_writes_after(before + 7, kind),
            timeouts,
            None,
            &envelope(&["b@example.test"]),
            SIMPLE_MESSAGE.as_bytes(),
        );
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
        let r = last_message(
            ScriptedPeer::new(script, AtEnd::Timeout),
            true,
            transcript.then(|| Transcript::new(Box::new(SharedBuf::default()))),
            &envelope(&["b@example.test"]),
            SIMPLE_MESSAGE.as_bytes(),
        );
        assert!(matches!(
            r.result,
            Err(Error::Timeout {
                stage: Stage::EndOfData,
                ..
            })
        ));
        let timed_out = r
            .peer
            .events()
            .iter()
            .filter(|e| matches!(e, Event::ReadTimedOut { .. }))
            .count();
        assert_eq!(timed_out, 1, "transcript {transcript}");
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
    let mut session =
        Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default()).with_lmtp(true);
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    session.quit_after_next();
    let receipt = session
        .transaction(
            &envelope(&["b@example.test", "c@example.test"]),
            &[],
            &mut SIMPLE_MESSAGE.as_bytes(),
        )
        .unwrap();
    assert!(receipt.recipients.iter().all(|r| r.accepted));
    assert!(!session.is_usable());
    let peer = session.into_inner();
    assert!(show(peer.written()).ends_with(&format!("{SIMPLE_WIRE}{QUIT}")));
    assert_goodbye_unread(&peer, "221 bye\r\n");
}
