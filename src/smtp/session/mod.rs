//! One SMTP session over any stream: greeting, EHLO (or HELO), the mail transaction,
//! QUIT. Each step states the reply codes it accepts; anything else is an error that
//! carries the stage and the server's reply.
//!
//! Here is the core: sending commands, reading replies within their deadline, `expect`,
//! the greeting, EHLO, STARTTLS and QUIT. The transaction strategies (lock-step,
//! pipelined DATA, pipelined BDAT) are in `transaction`, BDAT chunks in `chunking`, the
//! message body after DATA's 354 in `body`, the AUTH exchange in `authenticate`, the
//! `-v` dialogue in `transcript` and RFC 5321's limits in `timeouts`.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::command::Command;
use super::deadline::{Bounded, close_enough, socket_timeout};
use super::extension::Capabilities;
use super::record::{Phase, Record};
use super::reply::{Reply, parse_reply};
use crate::error::Error;
use crate::progress::Progress;
use crate::smtp::stage::Stage;

mod authenticate;
mod body;
mod chunking;
mod hang_up;
mod tester;
mod timeouts;
mod transaction;
mod transcript;
mod typed;

pub use super::deadline::IoTimeout;
pub use timeouts::Timeouts;
pub use transaction::{Parameters, envelope_commands};
pub use transcript::Transcript;

/// Bytes gathered before a write to the socket while sending the message.
const DATA_BUFFER: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;
/// At most how long to wait for a refusal after a write of the message failed.
const REFUSAL_WAIT: Duration = Duration::from_secs(5);
/// A look at what the server has already sent, when there is no time left to wait.
const GLANCE: Duration = Duration::from_millis(10);
/// How long `-v` waits for the reply to QUIT, to show it. Nothing depends on that
/// reply, and some servers hold it back until the client closes (Exim: 200 ms).
const SHOWN_QUIT_WAIT: Duration = Duration::from_millis(300);

/// A session with a server over `S`.
pub struct Session<S> {
    stream: S,
    rbuf: Vec<u8>,
    timeouts: Timeouts,
    transcript: Option<Transcript>,
    capabilities: Capabilities,
    /// The connection is unusable (closed, 421, garbage, timeout): no QUIT is sent.
    dead: bool,
    /// Use BDAT where the server offers CHUNKING.
    chunking: bool,
    /// Send QUIT right after the next message, in the same write when pipelining:
    /// the session has nothing more to say.
    quit_after: bool,
    /// LMTP (RFC 2033): LHLO, and a reply per accepted recipient after the message.
    lmtp: bool,
    /// What the session has done, and how long each stage took.
    record: Record,
    /// Told of the message's bytes as they go out.
    progress: Option<Box<dyn Progress>>,
    /// The size of the next message on the wire, where known (for `progress`).
    message_size: Option<u64>,
    /// The read and write timeouts last given to the stream.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// Called once if the server has said nothing this long after the connection,
    /// while the greeting is still awaited.
    silence_hint: Option<(Duration, Box<dyn FnMut() + Send>)>,
}

impl<S: Read + Write + IoTimeout> Session<S> {
    pub fn new(stream: S, timeouts: Timeouts) -> Session<S> {
        Session {
            stream,
            rbuf: Vec::new(),
            timeouts,
            transcript: None,
            capabilities: Capabilities::default(),
            dead: false,
            chunking: true,
            quit_after: false,
            lmtp: false,
            record: Record::default(),
            progress: None,
            message_size: None,
            read_timeout: None,
            write_timeout: None,
            silence_hint: None,
        }
    }

    /// Calls `say` once if the server has sent nothing `after` the wait for its
    /// greeting began; the wait goes on to the greeting's own limit.
    pub fn with_silence_hint(
        mut self,
        after: Duration,
        say: impl FnMut() + Send + 'static,
    ) -> Session<S> {
        self.silence_hint = Some((after, Box::new(say)));
        self
    }

    /// What the session has done so far.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// What the session has done, taken out of it: the session starts a new record.
    pub fn take_record(&mut self) -> Record {
        std::mem::take(&mut self.record)
    }

    /// Tells `progress` of the message's bytes as they are written.
    pub fn set_progress(&mut self, progress: Option<Box<dyn Progress>>) {
        self.progress = progress;
    }

    /// Whether a progress is told of the message's bytes.
    pub fn has_progress(&self) -> bool {
        self.progress.is_some()
    }

    /// The size on the wire of the next message, where known: the total of its
    /// progress.
    pub fn set_message_size(&mut self, size: Option<u64>) {
        self.message_size = size;
    }

    /// Runs `f` as `phase` of the timeline.
    fn timed<T>(&mut self, phase: Phase, f: impl FnOnce(&mut Self) -> T) -> T {
        self.record.timeline.enter(phase);
        let out = f(self);
        self.record.timeline.stop();
        out
    }

    /// Speak LMTP (RFC 2033) rather than SMTP.
    pub fn with_lmtp(mut self, lmtp: bool) -> Session<S> {
        self.lmtp = lmtp;
        self
    }

    /// Whether BDAT may be used where offered (`--no-chunking` says no).
    pub fn with_chunking(mut self, chunking: bool) -> Session<S> {
        self.chunking = chunking;
        self
    }

    /// The next transaction is the last: QUIT goes with its end (pipelined where the
    /// server allows), and the session is over after it.
    pub fn quit_after_next(&mut self) {
        self.quit_after = true;
    }

    pub fn with_transcript(mut self, transcript: Option<Transcript>) -> Session<S> {
        self.transcript = transcript;
        self
    }

    /// The capabilities from the last EHLO (empty after HELO).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn note(&mut self, text: &str) {
        if let Some(t) = &mut self.transcript {
            t.note(text);
        }
    }

    /// Reads the server's greeting: 220 (RFC 5321 §4.3.2).
    pub fn greeting(&mut self) -> Result<Reply, Error> {
        self.timed(Phase::Greeting, |s| {
            let reply = s.read_greeting()?;
            s.record.greeting = reply.lines.first().cloned();
            s.expect(Stage::Greeting, reply, &[220], "220")
        })
    }

    /// The greeting, within its limit; the silence hint is given on the way if the
    /// server has not sent a byte by its time.
    fn read_greeting(&mut self) -> Result<Reply, Error> {
        let limit = self.timeouts.greeting;
        let deadline = Instant::now() + limit;
        if let Some((after, mut say)) = self.silence_hint.take()
            && after < limit
            && !self.some_bytes_by(Stage::Greeting, Instant::now() + after, limit)?
        {
            say();
        }
        self.read_reply_by(Stage::Greeting, deadline, limit)
    }

    /// Waits until `until` for the server to send something; whether it has. `limit`
    /// is the stage's, for the error of a read that fails.
    fn some_bytes_by(
        &mut self,
        stage: Stage,
        until: Instant,
        limit: Duration,
    ) -> Result<bool, Error> {
        while self.rbuf.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.read_more(stage, left, until, limit)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One read of what the server sends, waiting up to `left` (until `deadline`),
    /// kept in the read buffer; `false` when the wait ran out (an interrupted read is
    /// `true`: nothing came, but there is time to read again). `limit` is the stage's,
    /// for the error of a read that fails.
    fn read_more(
        &mut self,
        stage: Stage,
        left: Duration,
        deadline: Instant,
        limit: Duration,
    ) -> Result<bool, Error> {
        let mut chunk = [0u8; READ_CHUNK];
        self.prepare_read(stage, left, deadline)?;
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.dead = true;
                Err(Error::Closed { stage })
            }
            Ok(n) => {
                self.rbuf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.io_error(stage, limit, e)),
        }
    }

    /// EHLO, and HELO if the server refuses EHLO permanently (RFC 5321 §4.1.4).
    pub fn ehlo(&mut self, name: &str) -> Result<&Capabilities, Error> {
        self.timed(Phase::Ehlo, |s| s.ehlo_untimed(name))?;
        self.record.server_name = Some(self.capabilities.domain.clone());
        self.record.offered = self.capabilities.keywords().map(str::to_owned).collect();
        Ok(&self.capabilities)
    }

    fn ehlo_untimed(&mut self, name: &str) -> Result<(), Error> {
        if self.lmtp {
            // RFC 2033 §4.1: LHLO, and no HELO to fall back to.
            let lhlo = Command::lhlo(name).map_err(|e| Error::Usage(e.to_string()))?;
            let reply = self.command(&lhlo, Stage::Ehlo, self.timeouts.ehlo)?;
            let reply = self.expect(Stage::Ehlo, reply, &[250], "250")?;
            self.capabilities = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        let ehlo = Command::ehlo(name).map_err(|e| Error::Usage(e.to_string()))?;
        let reply = self.command(&ehlo, Stage::Ehlo, self.timeouts.ehlo)?;
        if reply.is_permanent() {
            let helo = Command::helo(name).map_err(|e| Error::Usage(e.to_string()))?;
            let reply = self.command(&helo, Stage::Helo, self.timeouts.ehlo)?;
            self.expect(Stage::Helo, reply, &[250], "250")?;
            self.capabilities = Capabilities::default();
        } else {
            let reply = self.expect(Stage::Ehlo, reply, &[250], "250")?;
            self.capabilities = Capabilities::from_ehlo(&reply);
        }
        Ok(())
    }

    /// `RSET`: 250. Ends a transaction that went wrong, so the next can begin on the
    /// same connection (RFC 5321 §4.1.1.5).
    pub fn rset(&mut self) -> Result<Reply, Error> {
        self.timed(Phase::Rset, |s| {
            let reply = s.command(&Command::Rset, Stage::Rset, s.timeouts.mail)?;
            s.expect(Stage::Rset, reply, &[250], "250")
        })
    }

    /// Whether the connection can carry another command (no 421, close, garbage or
    /// timeout so far).
    pub fn is_usable(&self) -> bool {
        !self.dead
    }

    /// `QUIT`, and the session is over. Its reply (221) is not waited for: everything
    /// that matters has been answered before it (Postfix's client does the same,
    /// `smtp_skip_quit_response`). Only a transcript waits a moment for it, to show it.
    /// An error means the QUIT could not be sent.
    pub fn quit(&mut self) -> Result<(), Error> {
        self.timed(Phase::Quit, |s| {
            let sent = s.send_group(&[Command::Quit], Stage::Quit, s.timeouts.quit);
            if sent.is_ok() {
                let _ = s.after_quit();
            }
            s.dead = true;
            sent
        })
    }

    /// After a QUIT has gone, the session is over. A connection that failed before
    /// gets no further wait; with a transcript, a live one is given a moment to show
    /// the goodbye, and a server that holds it back is not waited for. Returns a
    /// reply read here that is not the goodbye.
    pub(crate) fn after_quit(&mut self) -> Option<Reply> {
        self.record.timeline.enter(Phase::Quit);
        let mut unexpected = None;
        if !self.dead && self.transcript.is_some() {
            let wait = self.timeouts.quit.min(SHOWN_QUIT_WAIT);
            match self.read_reply(Stage::Quit, wait) {
                Ok(reply) if reply.code != 221 => {
                    self.note(&format!("unexpected reply to QUIT: {reply}"));
                    unexpected = Some(reply);
                }
                Ok(_) => {}
                Err(Error::Timeout { .. }) => self.note(&format!(
                    "no reply to QUIT within {} ms; closing without it",
                    wait.as_millis()
                )),
                Err(_) => {}
            }
        }
        self.dead = true;
        unexpected
    }

    /// A whole reply already here, after the last one due was read: the server answered
    /// more than it was asked, so the replies read were not the ones they were taken
    /// for. With QUIT sent, its 221 is the one reply that may be waiting.
    fn unasked_reply(&self, quit_sent: bool) -> Option<Reply> {
        match parse_reply(&self.rbuf) {
            Ok(Some((reply, _))) if quit_sent && reply.code == 221 => None,
            Ok(Some((reply, _))) => Some(reply),
            _ => None,
        }
    }

    /// Ends the session after a failure: QUIT if the connection is still usable, and
    /// any error of its own ignored (the first error is what matters).
    pub fn abort(&mut self) {
        if self.dead {
            return;
        }
        let _ = self.quit();
    }

    /// `STARTTLS`: 220 (RFC 3207 §4). The caller then hands the stream to
    /// [`Session::upgrade`].
    pub fn starttls(&mut self) -> Result<Reply, Error> {
        self.timed(Phase::StartTls, |s| {
            let reply = s.command(&Command::StartTls, Stage::StartTls, s.timeouts.ehlo)?;
            match reply.code {
                220 => Ok(reply),
                // Any other answer, odd or not, means no TLS now; exit::reply_code makes a
                // 4xx (RFC 3207 §4: 454) "try again later" (75), anything else
                // "unavailable" (69). Never a reason to go on in clear.
                _ => Err(s.refused(Stage::StartTls, reply)),
            }
        })
    }

    /// Runs `handshake` on the stream (a TLS handshake after STARTTLS, which turns the
    /// stream into a TLS stream in place). Bytes the server sent before the handshake
    /// are discarded and every capability is forgotten (RFC 3207 §4.2): nothing said in
    /// clear may count once TLS is up, or a man in the middle could have said it. The
    /// caller sends EHLO again. Returns how many bytes were discarded.
    pub fn upgrade(
        &mut self,
        handshake: impl FnOnce(&mut S) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let discarded = self.rbuf.len();
        self.rbuf.clear();
        self.capabilities = Capabilities::default();
        // The handshake sets timeouts of its own.
        self.read_timeout = None;
        self.write_timeout = None;
        self.record.timeline.enter(Phase::StartTls);
        let shaken = handshake(&mut self.stream);
        self.record.timeline.stop();
        if let Err(e) = shaken {
            // Half a handshake leaves nothing a QUIT could be sent over.
            self.dead = true;
            return Err(e);
        }
        Ok(discarded)
    }

    /// Gives the stream back, ending the session without a word.
    pub fn into_inner(self) -> S {
        self.stream
    }

    pub fn stream(&self) -> &S {
        &self.stream
    }

    fn command(&mut self, cmd: &Command, stage: Stage, timeout: Duration) -> Result<Reply, Error> {
        self.send_group(std::slice::from_ref(cmd), stage, timeout)?;
        self.read_reply(stage, timeout)
    }

    /// Writes `commands` in one write (one command group, RFC 2920 §3.1).
    fn send_group(
        &mut self,
        commands: &[Command],
        stage: Stage,
        timeout: Duration,
    ) -> Result<(), Error> {
        self.check_in_step(commands.first().map_or("a command", Command::verb), stage)?;
        let mut bytes = Vec::new();
        for cmd in commands {
            if let Some(t) = &mut self.transcript {
                t.sent(cmd);
            }
            bytes.extend_from_slice(cmd.to_string().as_bytes());
        }
        self.write_now(&bytes, stage, timeout)
    }

    /// Writes bytes that are not a command (the dot that ends an empty message).
    fn send_group_raw(&mut self, bytes: &[u8], shown: &str, stage: Stage) -> Result<(), Error> {
        if let Some(t) = &mut self.transcript {
            t.line("> ", shown);
        }
        self.write_now(bytes, stage, self.timeouts.data_block)
    }

    fn write_now(&mut self, bytes: &[u8], stage: Stage, timeout: Duration) -> Result<(), Error> {
        let mut out = Bounded::new(&mut self.stream, &mut self.write_timeout, timeout);
        if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
            return Err(self.io_error(stage, timeout, e));
        }
        Ok(())
    }

    /// In lock-step every reply has been read before the next command group; bytes
    /// already waiting were sent unasked, and taking them as the next reply would let a
    /// server (or someone in the path) answer for a command it has not seen.
    fn check_in_step(&mut self, verb: &str, stage: Stage) -> Result<(), Error> {
        if self.rbuf.is_empty() {
            return Ok(());
        }
        self.dead = true;
        Err(Error::Protocol {
            stage,
            detail: format!(
                "the server sent data before {verb} was sent: {:?}",
                super::reply::sanitize(&String::from_utf8_lossy(&self.rbuf))
            ),
        })
    }

    /// Reads one reply. `timeout` bounds the whole reply, not each read, so a server
    /// that trickles bytes cannot hold the session open past it.
    fn read_reply(&mut self, stage: Stage, timeout: Duration) -> Result<Reply, Error> {
        self.read_reply_by(stage, Instant::now() + timeout, timeout)
    }

    /// Reads one reply, due by `deadline`; `timeout` is the limit a timeout reports.
    fn read_reply_by(
        &mut self,
        stage: Stage,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        loop {
            match parse_reply(&self.rbuf) {
                Ok(Some((reply, used))) => {
                    self.rbuf.drain(..used);
                    if let Some(t) = &mut self.transcript {
                        t.received(&reply);
                    }
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => {
                    self.dead = true;
                    return Err(Error::Protocol {
                        stage,
                        detail: e.to_string(),
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.dead = true;
                return Err(Error::Timeout {
                    stage,
                    after: timeout,
                });
            }
            if !self.read_more(stage, left, deadline, timeout)? {
                let ran_out = io::Error::from(io::ErrorKind::TimedOut);
                return Err(self.io_error(stage, timeout, ran_out));
            }
        }
    }

    /// Before a read that may wait up to `left`, until `deadline`.
    fn prepare_read(
        &mut self,
        stage: Stage,
        left: Duration,
        deadline: Instant,
    ) -> Result<(), Error> {
        self.stream.read_by(Some(deadline));
        let change = !close_enough(self.read_timeout, left);
        let timeout = change.then(|| socket_timeout(left));
        self.stream
            .prepare_read(timeout)
            .map_err(|source| Error::Network { stage, source })?;
        if change {
            self.read_timeout = timeout;
        }
        Ok(())
    }

    fn io_error(&mut self, stage: Stage, after: Duration, e: io::Error) -> Error {
        self.dead = true;
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout { stage, after },
            io::ErrorKind::UnexpectedEof => Error::Closed { stage },
            _ => Error::Network { stage, source: e },
        }
    }

    /// Accepts `reply` if its code is one of `codes`; otherwise the error for it.
    fn expect(
        &mut self,
        stage: Stage,
        reply: Reply,
        codes: &[u16],
        expected: &'static str,
    ) -> Result<Reply, Error> {
        if codes.contains(&reply.code) {
            Ok(reply)
        } else if reply.is_transient() || reply.is_permanent() {
            Err(self.refused(stage, reply))
        } else {
            Err(self.unexpected(stage, reply, expected))
        }
    }

    fn refused(&mut self, stage: Stage, reply: Reply) -> Error {
        // RFC 5321 §3.8: 421 means the server is closing the channel.
        if reply.code == 421 {
            self.dead = true;
        }
        Error::Refused { stage, reply }
    }

    fn unexpected(&mut self, stage: Stage, reply: Reply, expected: &'static str) -> Error {
        // Out of step with the server: nothing more it says can be trusted.
        self.dead = true;
        Error::Unexpected {
            stage,
            expected,
            reply,
        }
    }
}

#[cfg(test)]
mod tests;
