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
use crate::smtp::receipt::Receipt;
use crate::smtp::tls::{Channel, TlsClient, TlsMode};

mod chunking;
mod ending;
mod hang_up;
mod lmtp_partial;
mod lockstep;
mod pipelining;
mod report;
mod series;
mod starttls_auth;
mod typed;

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
const HELLO: &str = "220 mx.example.test ESMTP\r\n";
const SIMPLE_MESSAGE: &str = "Subject: hi\r\n\r\nhello\r\n";
/// `SIMPLE_MESSAGE` as the message source takes it.
const SIMPLE: &[u8] = SIMPLE_MESSAGE.as_bytes();
/// The two recipients of most multi-recipient cases.
const B_C: [&str; 2] = ["b@example.test", "c@example.test"];
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

/// The MAIL parameters the client would give `message` after this session's EHLO.
fn parameters(
    session: &Session<ScriptedPeer>,
    envelope: &Envelope,
    message: &Message,
) -> Result<crate::Parameters, Error> {
    let caps = session.capabilities();
    let (offers, limit) = (|k: &str| caps.has(k), caps.size_limit().flatten());
    crate::parameters(offers, limit, envelope, message, &crate::Dsn::default())
}

/// What `deliver` in lib.rs does on a connection without TLS or AUTH.
fn plain_delivery(
    session: &mut Session<ScriptedPeer>,
    envelope: &Envelope,
    message: &Message,
) -> Result<Receipt, Error> {
    session.greeting()?;
    session.ehlo(EHLO_NAME)?;
    let params = parameters(session, envelope, message)?;
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

/// `run` over a script that ends in EOF.
fn run_script(script: &[&str], to: &[&str], message: &[u8]) -> Run {
    run(
        ScriptedPeer::new(script, AtEnd::Eof),
        &envelope(to),
        message,
    )
}

/// `run` of the plain message to b over `peer`: the shape most lock-step tests share.
fn run_simple(peer: ScriptedPeer) -> Run {
    run(peer, &envelope(&["b@example.test"]), SIMPLE)
}

/// A one-recipient session whose server answers the first `k` stages as usual, then
/// sends `then` (if any) and behaves as `at_end`.
fn failing_at(k: usize, then: Option<&str>, at_end: AtEnd) -> Run {
    let mut turns: Vec<&str> = REPLIES[..k].to_vec();
    turns.extend(then);
    run_simple(ScriptedPeer::new(turns, at_end))
}

/// A session over `script` (ending in EOF) with the default timeouts, not yet greeted.
fn session(script: &[&str]) -> Session<ScriptedPeer> {
    Session::new(ScriptedPeer::new(script, AtEnd::Eof), Timeouts::default())
}

/// `session` after its greeting and EHLO, both expected to succeed.
fn greeted(mut session: Session<ScriptedPeer>) -> Session<ScriptedPeer> {
    session.greeting().unwrap();
    session.ehlo(EHLO_NAME).unwrap();
    session
}

/// A transcript writing into a buffer the test can read afterwards.
fn transcript_to_buf() -> (SharedBuf, Option<Transcript>) {
    let buf = SharedBuf::default();
    let transcript = Transcript::new(Box::new(buf.clone()));
    (buf, Some(transcript))
}

impl SharedBuf {
    /// What has been written so far, as text.
    fn text(&self) -> String {
        show(&self.0.lock().unwrap())
    }
}

/// Each recipient of a receipt: accepted or not, with the code of its reply.
fn outcomes(receipt: &Receipt) -> Vec<(&str, bool, u16)> {
    let outcomes = receipt.recipients.iter();
    outcomes
        .map(|r| (r.recipient.as_str(), r.accepted, r.reply.code))
        .collect()
}

/// The error refuses at `stage` with `code`.
#[track_caller]
fn assert_refused(err: &Error, stage: Stage, code: u16) {
    assert!(
        matches!(err, Error::Refused { stage: s, reply } if *s == stage && reply.code == code),
        "want {code} at {stage}: {err:?}"
    );
}

/// Every recipient was refused, each with its code.
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

/// The error is a protocol error at `stage`.
#[track_caller]
fn assert_protocol(err: &Error, stage: Stage) {
    assert!(
        matches!(err, Error::Protocol { stage: s, .. } if *s == stage),
        "want a protocol error at {stage}: {err:?}"
    );
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
// Helpers for PIPELINING (RFC 2920) and CHUNKING (RFC 3030)
// ---------------------------------------------------------------------------------------

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
    let message = Message::from_bytes(message.to_vec());
    let params = parameters(&session, envelope, &message).unwrap();
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

/// `last_message` over a script that ends in EOF, with CHUNKING used where offered and
/// no transcript: the shape most pipelining and chunking tests share.
fn last(script: &[&str], to: &[&str], message: &[u8]) -> Last {
    let peer = ScriptedPeer::new(script, AtEnd::Eof);
    last_message(peer, true, None, &envelope(to), message)
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

/// `message` (already in CRLF lines) as one BDAT chunk marked LAST.
fn bdat_last(message: &[u8]) -> String {
    format!("BDAT {} LAST\r\n{}", message.len(), show(message))
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
