//! One SMTP session over any stream: greeting, EHLO (or HELO), the mail transaction,
//! QUIT. Each step states the reply codes it accepts; anything else is an error that
//! carries the stage and the server's reply.

use std::io::{self, BufWriter, Read, Write};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::auth::{Credentials, Exchange, Mechanism};
use super::command::{Command, CommandError};
use super::data::DotWriter;
use super::extension::Capabilities;
use super::reply::{Reply, parse_reply};
use crate::envelope::{Address, Envelope};
use crate::error::{Error, Stage};

/// Bytes gathered before a write to the socket while sending the message.
const DATA_BUFFER: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// A stream whose reads and writes can be given a deadline.
pub trait IoTimeout {
    fn set_io_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

impl IoTimeout for std::net::TcpStream {
    fn set_io_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        super::tls::prepare_socket(self, timeout)
    }
}

/// How long to wait at each step. The defaults are RFC 5321 §4.5.3.2's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// §4.5.3.2.1: initial 220 message, 5 minutes.
    pub greeting: Duration,
    /// EHLO has no RFC value; it is treated like MAIL.
    pub ehlo: Duration,
    /// §4.5.3.2.2: MAIL command, 5 minutes.
    pub mail: Duration,
    /// §4.5.3.2.3: RCPT command, 5 minutes.
    pub rcpt: Duration,
    /// §4.5.3.2.4: DATA initiation, 2 minutes.
    pub data_init: Duration,
    /// §4.5.3.2.5: each data block written, 3 minutes.
    pub data_block: Duration,
    /// §4.5.3.2.6: DATA termination (the reply to the final dot), 10 minutes.
    pub data_end: Duration,
    /// QUIT has no RFC value; a server that is slow to say goodbye holds nothing of ours.
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        let min = |m: u64| Duration::from_secs(60 * m);
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: min(5),
            ehlo: min(5),
            mail: min(5),
            rcpt: min(5),
            data_init: min(2),
            data_block: min(3),
            data_end: min(10),
            quit: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// The same limit for every step, as `--timeout` asks.
    pub fn uniform(t: Duration) -> Timeouts {
        Timeouts {
            connect: t,
            greeting: t,
            ehlo: t,
            mail: t,
            rcpt: t,
            data_init: t,
            data_block: t,
            data_end: t,
            quit: t,
        }
    }
}

/// Where `-v` writes the dialogue: `> ` for what we send, `< ` for what the server
/// says, `* ` for notes of our own. Server text is sanitised before it is shown.
pub struct Transcript {
    out: Box<dyn Write + Send>,
}

impl Transcript {
    pub fn new(out: Box<dyn Write + Send>) -> Transcript {
        Transcript { out }
    }

    /// A failure to write the transcript must not fail the delivery, so it is ignored.
    fn line(&mut self, prefix: &str, text: &str) {
        let _ = writeln!(self.out, "{prefix}{text}");
    }

    pub fn note(&mut self, text: &str) {
        self.line("* ", text);
    }

    fn sent(&mut self, cmd: &Command) {
        self.line("> ", &cmd.shown());
    }

    fn received(&mut self, reply: &Reply) {
        for line in reply.to_string().lines() {
            self.line("< ", line);
        }
    }
}

/// The outcome for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    pub recipient: Address,
    pub reply: Reply,
    pub accepted: bool,
}

/// What the server said about a message it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Every recipient, in envelope order.
    pub recipients: Vec<RecipientResult>,
    /// The reply to the final dot.
    pub reply: Reply,
}

impl Receipt {
    /// The recipients the server refused, in envelope order.
    pub fn refused(&self) -> Vec<RecipientResult> {
        self.recipients
            .iter()
            .filter(|r| !r.accepted)
            .cloned()
            .collect()
    }
}

/// The stream while the message is sent. After one failed write every further write
/// fails at once without touching the stream: a BufWriter dropped with bytes still in it
/// (as `DotWriter::finish` or a failed flush leaves it) would try them again, and wait
/// out the timeout a second time.
struct Latched<'a, W> {
    inner: &'a mut W,
    failed: bool,
}

impl<W: Write> Write for Latched<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        self.inner.write(buf).inspect_err(|e| {
            self.failed = e.kind() != io::ErrorKind::Interrupted;
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        self.inner.flush()
    }
}

/// The commands of a transaction's envelope: `MAIL FROM` with `params`, then one
/// `RCPT TO` per recipient. Every address is checked before anything is sent.
pub fn envelope_commands(envelope: &Envelope, params: &[&str]) -> Result<Vec<Command>, Error> {
    if envelope.to.is_empty() {
        return Err(Error::Usage("the envelope has no recipient".into()));
    }
    let usage = |e: super::command::CommandError| Error::Usage(e.to_string());
    let from = envelope.from.as_ref().map_or("", Address::as_str);
    let mut commands = vec![Command::mail_from(from, params).map_err(usage)?];
    for to in &envelope.to {
        commands.push(Command::rcpt_to(to.as_str(), &[]).map_err(usage)?);
    }
    Ok(commands)
}

/// A session with a server over `S`.
pub struct Session<S> {
    stream: S,
    rbuf: Vec<u8>,
    timeouts: Timeouts,
    transcript: Option<Transcript>,
    capabilities: Capabilities,
    /// The connection is unusable (closed, 421, garbage, timeout): no QUIT is sent.
    dead: bool,
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
        }
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
        let reply = self.read_reply(Stage::Greeting, self.timeouts.greeting)?;
        self.expect(Stage::Greeting, reply, &[220], "220")
    }

    /// EHLO, and HELO if the server refuses EHLO permanently (RFC 5321 §4.1.4).
    pub fn ehlo(&mut self, name: &str) -> Result<&Capabilities, Error> {
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
        Ok(&self.capabilities)
    }

    /// `RCPT TO`: 250 or 251 accept the recipient; any other 4xx or 5xx refuses this
    /// one recipient and the session goes on. A 421, a broken connection or garbage
    /// end the session.
    fn rcpt_to(&mut self, to: &Address, cmd: &Command) -> Result<RecipientResult, Error> {
        let reply = self.command(cmd, Stage::RcptTo, self.timeouts.rcpt)?;
        let accepted = match reply.code {
            250 | 251 => true,
            421 => return Err(self.refused(Stage::RcptTo, reply)),
            400..=599 => false,
            _ => return Err(self.unexpected(Stage::RcptTo, reply, "250 or 251")),
        };
        Ok(RecipientResult {
            recipient: to.clone(),
            reply,
            accepted,
        })
    }

    /// `DATA` (354), the message through a DotWriter, the final dot (250).
    pub fn data(&mut self, message: &mut dyn Read) -> Result<Reply, Error> {
        let reply = self.command(&Command::Data, Stage::Data, self.timeouts.data_init)?;
        self.expect(Stage::Data, reply, &[354], "354")?;
        self.set_timeout(Stage::Message, self.timeouts.data_block)?;
        let (bytes, lines) = self.send_message(message)?;
        if let Some(t) = &mut self.transcript {
            t.line("> ", &format!("[message: {bytes} bytes, {lines} lines]"));
            t.line("> ", ".");
        }
        let reply = self.read_reply(Stage::EndOfData, self.timeouts.data_end)?;
        self.expect(Stage::EndOfData, reply, &[250], "250")
    }

    /// `RSET`: 250. Ends a transaction that went wrong, so the next can begin on the
    /// same connection (RFC 5321 §4.1.1.5).
    pub fn rset(&mut self) -> Result<Reply, Error> {
        let reply = self.command(&Command::Rset, Stage::Rset, self.timeouts.mail)?;
        self.expect(Stage::Rset, reply, &[250], "250")
    }

    /// Whether the connection can carry another command (no 421, close, garbage or
    /// timeout so far).
    pub fn is_usable(&self) -> bool {
        !self.dead
    }

    /// `QUIT`: 221.
    pub fn quit(&mut self) -> Result<Reply, Error> {
        let reply = self.command(&Command::Quit, Stage::Quit, self.timeouts.quit)?;
        self.dead = true;
        self.expect(Stage::Quit, reply, &[221], "221")
    }

    /// One mail transaction: MAIL, a RCPT per recipient, and DATA if any recipient was
    /// accepted. Refused recipients are reported in the receipt; if none is accepted,
    /// the error lists every refusal and no data is sent.
    pub fn transaction(
        &mut self,
        envelope: &Envelope,
        params: &[&str],
        message: &mut dyn Read,
    ) -> Result<Receipt, Error> {
        let commands = envelope_commands(envelope, params)?;
        let (mail, rcpts) = commands
            .split_first()
            .ok_or_else(|| Error::Usage("the envelope has no recipient".into()))?;
        let reply = self.command(mail, Stage::MailFrom, self.timeouts.mail)?;
        self.expect(Stage::MailFrom, reply, &[250], "250")?;
        let mut recipients = Vec::with_capacity(envelope.to.len());
        for (to, cmd) in envelope.to.iter().zip(rcpts) {
            recipients.push(self.rcpt_to(to, cmd)?);
        }
        if !recipients.iter().any(|r| r.accepted) {
            return Err(Error::NoRecipients {
                refused: recipients,
            });
        }
        let reply = self.data(message)?;
        Ok(Receipt { recipients, reply })
    }

    /// Ends the session after a failure: QUIT if the connection is still usable, with a
    /// short wait, and any error of its own ignored (the first error is what matters).
    pub fn abort(&mut self) {
        if self.dead {
            return;
        }
        self.timeouts.quit = self.timeouts.quit.min(Duration::from_secs(5));
        let _ = self.quit();
    }

    /// `AUTH` (RFC 4954): the exchange runs until 235, answering each 334 challenge.
    /// A 4xx or 5xx ends it (535: the credentials are wrong). A challenge that makes no
    /// sense, or a server that cannot prove it knows the password (SCRAM), cancels it
    /// with `*` and fails.
    pub fn auth(
        &mut self,
        mechanism: Mechanism,
        credentials: &Credentials,
    ) -> Result<Reply, Error> {
        let usage = |e: CommandError| Error::Usage(e.to_string());
        let mut exchange = Exchange::new(mechanism, credentials);
        // RFC 4954 §4: an empty initial response is sent as "=".
        let initial = exchange.initial_response().map(|r| match r.is_empty() {
            true => "=".to_owned(),
            false => BASE64.encode(r),
        });
        // RFC 4954 §4: an initial response too long for the AUTH line is left out, and
        // the exchange gives it at the server's empty 334 instead.
        let cmd = match Command::auth(mechanism.name(), initial.as_deref()) {
            Err(CommandError::TooLong { .. }) => Command::auth(mechanism.name(), None),
            other => other,
        }
        .map_err(usage)?;
        let mut reply = self.command(&cmd, Stage::Auth, self.timeouts.ehlo)?;
        loop {
            match reply.code {
                235 => {
                    exchange.finish().map_err(|e| Error::Auth(e.to_string()))?;
                    return Ok(reply);
                }
                334 => {
                    let text = reply.lines.first().map_or("", |l| l.trim());
                    let response = BASE64
                        .decode(text)
                        .map_err(|_| format!("the server's challenge is not base64: {text:?}"))
                        .and_then(|challenge| {
                            exchange.respond(&challenge).map_err(|e| e.to_string())
                        });
                    let response = match response {
                        Ok(r) => BASE64.encode(r),
                        Err(why) => {
                            self.cancel_auth();
                            return Err(Error::Auth(super::reply::sanitize(&why)));
                        }
                    };
                    let cmd = Command::auth_response(&response).map_err(usage)?;
                    reply = self.command(&cmd, Stage::Auth, self.timeouts.ehlo)?;
                }
                _ => return self.expect(Stage::Auth, reply, &[235], "235 or 334"),
            }
        }
    }

    /// RFC 4954 §4: "*" cancels an exchange; the server answers 501.
    fn cancel_auth(&mut self) {
        if let Ok(cancel) = Command::auth_response("*") {
            let _ = self.command(&cancel, Stage::Auth, self.timeouts.ehlo);
        }
    }

    /// `STARTTLS`: 220 (RFC 3207 §4). The caller then hands the stream to
    /// [`Session::upgrade`].
    pub fn starttls(&mut self) -> Result<Reply, Error> {
        let reply = self.command(&Command::StartTls, Stage::StartTls, self.timeouts.ehlo)?;
        match reply.code {
            220 => Ok(reply),
            // Any other answer, odd or not, means no TLS; exit::reply_code makes that
            // "unavailable" (69), as nothing safe is left to do.
            _ => Err(self.refused(Stage::StartTls, reply)),
        }
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
        if let Err(e) = handshake(&mut self.stream) {
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
        // In lock-step every reply has been read before the next command; bytes already
        // waiting were sent unasked, and taking them as the next reply would let a
        // server (or someone in the path) answer for a command it has not seen.
        if !self.rbuf.is_empty() {
            self.dead = true;
            return Err(Error::Protocol {
                stage,
                detail: format!(
                    "the server sent data before {} was sent: {:?}",
                    cmd.verb(),
                    super::reply::sanitize(&String::from_utf8_lossy(&self.rbuf))
                ),
            });
        }
        if let Some(t) = &mut self.transcript {
            t.sent(cmd);
        }
        self.set_timeout(stage, timeout)?;
        let bytes = cmd.to_string();
        if let Err(e) = self
            .stream
            .write_all(bytes.as_bytes())
            .and_then(|()| self.stream.flush())
        {
            return Err(self.io_error(stage, timeout, e));
        }
        self.read_reply(stage, timeout)
    }

    fn send_message(&mut self, message: &mut dyn Read) -> Result<(u64, u64), Error> {
        let timeout = self.timeouts.data_block;
        let latched = Latched {
            inner: &mut self.stream,
            failed: false,
        };
        let mut dot = DotWriter::new(BufWriter::with_capacity(DATA_BUFFER, latched));
        let mut chunk = vec![0u8; DATA_BUFFER];
        let sent = loop {
            let n = match message.read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    // Drop what is buffered without writing it: half a message must not
                    // be followed by anything the server could take for its end.
                    let _ = dot.into_inner().into_parts();
                    // The server waits for data we cannot give; the connection is of
                    // no more use.
                    self.dead = true;
                    return Err(Error::LocalIo {
                        context: "cannot read the message".into(),
                        source,
                    });
                }
            };
            if let Err(e) = dot.write_all(&chunk[..n]) {
                break Err(e);
            }
        };
        let counts = (dot.bytes_in(), dot.lines_when_finished());
        // The final dot goes in the same buffer as the end of the message.
        let sent = sent.and_then(|()| dot.finish()?.flush());
        match sent {
            Ok(()) => Ok(counts),
            Err(e) => {
                let err = self.io_error(Stage::Message, timeout, e);
                Err(self.refusal_after_failed_write().unwrap_or(err))
            }
        }
    }

    /// A server that refuses a message part-way (too big, policy) often says why and
    /// closes; our next write then fails. The reply it left is the real reason, and
    /// it may be permanent, where a lost connection would say "try again later".
    fn refusal_after_failed_write(&mut self) -> Option<Error> {
        let reply = self
            .read_reply(Stage::Message, Duration::from_secs(5))
            .ok()?;
        (reply.is_transient() || reply.is_permanent()).then(|| self.refused(Stage::Message, reply))
    }

    /// Reads one reply. `timeout` bounds the whole reply, not each read, so a server
    /// that trickles bytes cannot hold the session open past it.
    fn read_reply(&mut self, stage: Stage, timeout: Duration) -> Result<Reply, Error> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; READ_CHUNK];
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
            self.set_timeout(stage, left)?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.dead = true;
                    return Err(Error::Closed { stage });
                }
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(stage, timeout, e)),
            }
        }
    }

    fn set_timeout(&mut self, stage: Stage, timeout: Duration) -> Result<(), Error> {
        self.stream
            .set_io_timeout(timeout)
            .map_err(|source| Error::Network { stage, source })
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
#[path = "session_tests.rs"]
mod tests;
