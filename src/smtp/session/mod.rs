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
pub(crate) use super::deadline::socket_timeout;
use super::deadline::{Bounded, close_enough};
use super::extension::Capabilities;
use super::reply::{Reply, parse_reply};
use crate::envelope::{Address, Envelope};
use crate::error::{Error, Stage};
use crate::progress::Progress;
use crate::report::{Phase, Report};

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

/// A stream whose reads and writes can be given a time limit.
pub trait IoTimeout {
    /// Called before each read, which waits for the server. `timeout`, when given,
    /// bounds this read and the later ones; `None` keeps the last bound.
    fn prepare_read(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Bounds each later write.
    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// The time by which the next read must be done (`None`: no deadline). Only a
    /// stream that reads its socket more than once per read (TLS, a record at a time)
    /// needs it: for the others the read timeout is the time left.
    fn read_by(&mut self, _deadline: Option<Instant>) {}
    /// As [`IoTimeout::read_by`], for the next write.
    fn write_by(&mut self, _deadline: Option<Instant>) {}
}

impl IoTimeout for std::net::TcpStream {
    fn prepare_read(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        super::tls::prepare_read(self, timeout)
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        std::net::TcpStream::set_write_timeout(self, Some(socket_timeout(timeout)))
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
    /// Where `reply` came: `RcptTo`, or under LMTP `EndOfData`, this recipient's own
    /// answer to the message (RFC 2033 §4.2). A refusal is judged by it.
    pub stage: Stage,
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

/// The stream while the message is sent, telling `progress` of each write.
struct Counted<'a, W> {
    inner: W,
    progress: Option<&'a mut Box<dyn Progress>>,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(p) = &mut self.progress {
            p.advance(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The commands of a transaction's envelope: `MAIL FROM` with `params`, then one
/// `RCPT TO` per recipient. Every address is checked before anything is sent.
pub fn envelope_commands(
    envelope: &Envelope,
    mail_params: &[&str],
    rcpt_params: &[&str],
) -> Result<Vec<Command>, Error> {
    if envelope.to.is_empty() {
        return Err(Error::Usage("the envelope has no recipient".into()));
    }
    let usage = |e: super::command::CommandError| Error::Usage(e.to_string());
    let from = envelope.from.as_ref().map_or("", Address::as_str);
    let mut commands = vec![Command::mail_from(from, mail_params).map_err(usage)?];
    for to in &envelope.to {
        commands.push(Command::rcpt_to(to.as_str(), rcpt_params).map_err(usage)?);
    }
    Ok(commands)
}

fn split_envelope(commands: &[Command]) -> Result<(&Command, &[Command]), Error> {
    commands
        .split_first()
        .ok_or_else(|| Error::Usage("the envelope has no recipient".into()))
}

/// Where copying the message failed: reading it, or writing it out.
enum Pumped {
    Source(io::Error),
    Sink(io::Error),
}

/// Copies `message` into `out` in DATA_BUFFER pieces.
fn pump(message: &mut dyn Read, out: &mut dyn Write) -> Result<(), Pumped> {
    let mut chunk = vec![0u8; DATA_BUFFER];
    loop {
        let n = match message.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Pumped::Source(e)),
        };
        out.write_all(&chunk[..n]).map_err(Pumped::Sink)?;
    }
}

/// What sending a message as BDAT chunks left to do.
struct Chunked {
    /// Chunks whose replies are still to be read.
    due: usize,
    /// The envelope's replies, when they were read between chunks.
    replies: Option<(Option<Error>, Vec<RecipientResult>)>,
    /// The last chunk went out (false: stopped after the first, with no transaction).
    ended: bool,
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
    /// Use BDAT where the server offers CHUNKING.
    chunking: bool,
    /// Send QUIT right after the next message, in the same write when pipelining:
    /// the session has nothing more to say.
    quit_after: bool,
    /// LMTP (RFC 2033): LHLO, and a reply per accepted recipient after the message.
    lmtp: bool,
    /// What the session has done, and how long each stage took.
    report: Report,
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

/// Bytes of message per BDAT chunk: large enough that chunk lines cost nothing, small
/// enough that a chunk in memory does not matter.
const CHUNK_SIZE: usize = 1024 * 1024;

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
            report: Report::default(),
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

    /// Starts from `report` (what was done before the session: the connection).
    pub fn with_report(mut self, report: Report) -> Session<S> {
        self.report = report;
        self
    }

    /// What the session has done so far.
    pub fn report(&self) -> &Report {
        &self.report
    }

    pub fn report_mut(&mut self) -> &mut Report {
        &mut self.report
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
        self.report.timeline.enter(phase);
        let out = f(self);
        self.report.timeline.stop();
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
            s.report.greeting = reply.lines.first().cloned();
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
        let mut chunk = [0u8; READ_CHUNK];
        while self.rbuf.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.prepare_read(stage, left, until)?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.dead = true;
                    return Err(Error::Closed { stage });
                }
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false);
                }
                Err(e) => return Err(self.io_error(stage, limit, e)),
            }
        }
        Ok(true)
    }

    /// EHLO, and HELO if the server refuses EHLO permanently (RFC 5321 §4.1.4).
    pub fn ehlo(&mut self, name: &str) -> Result<&Capabilities, Error> {
        self.timed(Phase::Ehlo, |s| s.ehlo_untimed(name))?;
        self.report.server_name = Some(self.capabilities.domain.clone());
        self.report.offered = self.capabilities.keywords().map(str::to_owned).collect();
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
                s.after_quit();
            }
            s.dead = true;
            sent
        })
    }

    /// One mail transaction: MAIL, a RCPT per recipient, and the message if any
    /// recipient was accepted. Refused recipients are reported in the receipt; if none
    /// is accepted, the error lists every refusal.
    ///
    /// Where the server offers PIPELINING (RFC 2920), MAIL, every RCPT and DATA leave in
    /// one write, and the message, the final dot and (for the last message) QUIT in
    /// another; every reply is still read and checked in order. Where it offers
    /// CHUNKING (RFC 3030), the message goes in BDAT chunks instead of DATA, with no
    /// dot-stuffing, pipelined with the envelope where PIPELINING allows.
    pub fn transaction(
        &mut self,
        envelope: &Envelope,
        params: &[&str],
        message: &mut dyn Read,
    ) -> Result<Receipt, Error> {
        let params = crate::Parameters {
            mail: params.iter().map(|p| (*p).to_owned()).collect(),
            rcpt: Vec::new(),
        };
        self.transaction_with(envelope, &params, message)
    }

    /// As [`Session::transaction`], with parameters for RCPT TO too (DSN's NOTIFY).
    pub fn transaction_with(
        &mut self,
        envelope: &Envelope,
        params: &crate::Parameters,
        message: &mut dyn Read,
    ) -> Result<Receipt, Error> {
        let mail: Vec<&str> = params.mail.iter().map(String::as_str).collect();
        let rcpt: Vec<&str> = params.rcpt.iter().map(String::as_str).collect();
        let commands = envelope_commands(envelope, &mail, &rcpt)?;
        let pipelining = self.capabilities.has("PIPELINING");
        let chunking = self.chunking && self.capabilities.has("CHUNKING");
        let quit = std::mem::take(&mut self.quit_after);
        self.note_extensions(params, pipelining, chunking);
        self.timed(Phase::Envelope, |s| match (pipelining, chunking) {
            (false, false) => s.lockstep(envelope, &commands, message, quit, false),
            (false, true) => s.lockstep(envelope, &commands, message, quit, true),
            (true, false) => s.pipelined_data(envelope, &commands, message, quit),
            (true, true) => s.pipelined_bdat(envelope, &commands, message, quit),
        })
    }

    /// Notes in the report which extensions this transaction uses.
    fn note_extensions(&mut self, params: &crate::Parameters, pipelining: bool, chunking: bool) {
        let report = &mut self.report;
        report.begin_transaction();
        if pipelining {
            report.uses("PIPELINING");
        }
        if chunking {
            report.uses("CHUNKING");
        }
        for p in params.mail.iter().chain(&params.rcpt) {
            let key = p.split('=').next().unwrap_or_default().to_ascii_uppercase();
            match key.as_str() {
                "SIZE" => report.uses("SIZE"),
                "BODY" if p.eq_ignore_ascii_case("BODY=8BITMIME") => report.uses("8BITMIME"),
                "SMTPUTF8" => report.uses("SMTPUTF8"),
                "RET" | "ENVID" | "NOTIFY" | "ORCPT" => report.uses("DSN"),
                _ => {}
            }
        }
        if self.capabilities.has("ENHANCEDSTATUSCODES") {
            report.uses("ENHANCEDSTATUSCODES");
        }
    }

    /// MAIL and each RCPT wait for their reply; then DATA (or BDAT chunks, each waiting
    /// for its reply) if anyone was accepted.
    fn lockstep(
        &mut self,
        envelope: &Envelope,
        commands: &[Command],
        message: &mut dyn Read,
        quit: bool,
        chunking: bool,
    ) -> Result<Receipt, Error> {
        let (mail, rcpts) = split_envelope(commands)?;
        let reply = self.command(mail, Stage::MailFrom, self.timeouts.mail)?;
        self.expect(Stage::MailFrom, reply, &[250], "250")?;
        let mut recipients = Vec::with_capacity(rcpts.len());
        for (to, cmd) in envelope.to.iter().zip(rcpts) {
            self.send_group(std::slice::from_ref(cmd), Stage::RcptTo, self.timeouts.rcpt)?;
            recipients.push(self.rcpt_reply(to)?);
        }
        if !recipients.iter().any(|r| r.accepted) {
            return Err(Error::NoRecipients {
                refused: recipients,
            });
        }
        self.report.timeline.enter(Phase::Data);
        if chunking {
            // Every chunk but the last has had its reply; the last's is the message's.
            self.send_chunks(message, Vec::new(), false, true, None)?;
        } else {
            let reply = self.command(&Command::Data, Stage::Data, self.timeouts.data_init)?;
            self.expect(Stage::Data, reply, &[354], "354")?;
            self.send_body(message, &[])?;
        }
        let reply = self.end_of_data(&mut recipients)?;
        if quit {
            let _ = self.quit();
        }
        Ok(Receipt { recipients, reply })
    }

    /// MAIL, the RCPTs and DATA in one write; then the message, the dot and QUIT in
    /// another.
    fn pipelined_data(
        &mut self,
        envelope: &Envelope,
        commands: &[Command],
        message: &mut dyn Read,
        quit: bool,
    ) -> Result<Receipt, Error> {
        let mut group = commands.to_vec();
        group.push(Command::Data);
        self.send_group(&group, Stage::MailFrom, self.timeouts.mail)?;
        let mut recipients = self.data_replies(envelope)?;
        let then: &[Command] = if quit { &[Command::Quit] } else { &[] };
        self.send_body(message, then)?;
        let reply = self.end_of_data(&mut recipients);
        if quit {
            self.after_quit();
        }
        Ok(Receipt {
            recipients,
            reply: reply?,
        })
    }

    /// Whether messages go with DATA over a pipelining server: PIPELINING offered, and
    /// BDAT not in use.
    pub(crate) fn pipelines_data(&self) -> bool {
        self.capabilities.has("PIPELINING") && !(self.chunking && self.capabilities.has("CHUNKING"))
    }

    /// The command group that opens a pipelined DATA transaction: MAIL, a RCPT per
    /// recipient, DATA. The transaction counts as begun in the report.
    pub(crate) fn data_group(
        &mut self,
        envelope: &Envelope,
        params: &crate::Parameters,
    ) -> Result<Vec<Command>, Error> {
        let mail: Vec<&str> = params.mail.iter().map(String::as_str).collect();
        let rcpt: Vec<&str> = params.rcpt.iter().map(String::as_str).collect();
        let mut group = envelope_commands(envelope, &mail, &rcpt)?;
        group.push(Command::Data);
        self.note_extensions(params, true, false);
        Ok(group)
    }

    /// Writes a command group (as made by [`Session::data_group`]) on its own.
    pub(crate) fn send_data_group(&mut self, group: &[Command]) -> Result<(), Error> {
        self.send_group(group, Stage::MailFrom, self.timeouts.mail)
    }

    /// The replies to a pipelined MAIL, its RCPTs and DATA, in order. Ready for the
    /// message (354, some recipient accepted): each recipient's result. Otherwise the
    /// error, with the dialogue kept in step.
    pub(crate) fn data_replies(
        &mut self,
        envelope: &Envelope,
    ) -> Result<Vec<RecipientResult>, Error> {
        self.report.timeline.enter(Phase::Envelope);
        let (mail_error, recipients) = self.envelope_replies(envelope)?;
        self.report.timeline.enter(Phase::Data);
        let reply = self.read_reply(Stage::Data, self.timeouts.data_init)?;
        // RFC 5321 §3.8: a 421 closes the connection, whatever error is reported.
        if reply.code == 421 {
            self.dead = true;
        }
        let go_ahead = reply.code == 354;
        let nobody = !recipients.iter().any(|r| r.accepted);
        if go_ahead && (mail_error.is_some() || nobody) {
            // RFC 2920 §3.1: a 354 where no transaction stands must still be ended, with
            // an empty message, to keep the dialogue in step.
            self.send_group_raw(b".\r\n", ".", Stage::EndOfData)?;
            if self
                .read_reply(Stage::EndOfData, self.timeouts.data_end)?
                .code
                == 421
            {
                self.dead = true;
            }
        }
        if let Some(e) = mail_error {
            return Err(e);
        }
        if nobody {
            return Err(Error::NoRecipients {
                refused: recipients,
            });
        }
        self.expect(Stage::Data, reply, &[354], "354")?;
        Ok(recipients)
    }

    /// MAIL, the RCPTs, every BDAT chunk and QUIT in one stream of writes; then the
    /// replies, in order.
    fn pipelined_bdat(
        &mut self,
        envelope: &Envelope,
        commands: &[Command],
        message: &mut dyn Read,
        quit: bool,
    ) -> Result<Receipt, Error> {
        // The envelope goes in the same write as the first chunk.
        let mut envelope_bytes = Vec::new();
        for cmd in commands {
            if let Some(t) = &mut self.transcript {
                t.sent(cmd);
            }
            envelope_bytes.extend_from_slice(cmd.to_string().as_bytes());
        }
        self.check_in_step("MAIL FROM", Stage::MailFrom)?;
        // The envelope leaves with the message: from here on it is all data.
        self.report.timeline.enter(Phase::Data);
        let chunked = self.send_chunks(message, envelope_bytes, quit, false, Some(envelope))?;
        let chunks = chunked.due;
        let quit = quit && chunked.ended;
        let (mail_error, recipients) = match chunked.replies {
            Some(replies) => replies,
            None => self.envelope_replies(envelope)?,
        };
        let mut recipients = recipients;
        let no_transaction = mail_error.is_some() || !recipients.iter().any(|r| r.accepted);
        // The replies to the chunks before the last (to every chunk sent, when the
        // message was cut short because no transaction stood).
        let mut first_error = None;
        let before_last = if chunked.ended { chunks - 1 } else { chunks };
        for _ in 0..before_last {
            let reply = self.read_reply(Stage::EndOfData, self.timeouts.data_end)?;
            if reply.code == 421 {
                return Err(self.refused(Stage::EndOfData, reply));
            }
            if reply.code != 250 && first_error.is_none() {
                first_error = Some(reply);
            }
        }
        // The last chunk's reply is the message's (one per recipient under LMTP), unless
        // no transaction stands: then it is one refusal.
        let ended = if !chunked.ended {
            Err(first_error.unwrap_or_else(|| Reply {
                code: 503,
                enhanced: None,
                lines: vec!["no transaction".into()],
            }))
        } else if no_transaction || first_error.is_some() {
            let reply = self.read_reply(Stage::EndOfData, self.timeouts.data_end)?;
            if reply.code == 421 {
                return Err(self.refused(Stage::EndOfData, reply));
            }
            Err(first_error.unwrap_or(reply))
        } else {
            Ok(self.end_of_data(&mut recipients))
        };
        if quit {
            self.after_quit();
        }
        if let Some(e) = mail_error {
            return Err(e);
        }
        if !recipients.iter().any(|r| r.accepted) && ended.is_err() {
            return Err(Error::NoRecipients {
                refused: recipients,
            });
        }
        match ended {
            Ok(reply) => Ok(Receipt {
                recipients,
                reply: reply?,
            }),
            // A 2xx other than 250 to a chunk is no refusal, but out of step all the same.
            Err(reply) => Err(match reply.code {
                400..=599 => self.refused(Stage::EndOfData, reply),
                _ => self.unexpected(Stage::EndOfData, reply, "250"),
            }),
        }
    }

    /// The reply to the end of the message. Under LMTP (RFC 2033 §4.2) there is one
    /// per accepted recipient, in RCPT order, and each recipient's result becomes that
    /// reply; if none took the message, the error lists them all.
    pub(crate) fn end_of_data(
        &mut self,
        recipients: &mut [RecipientResult],
    ) -> Result<Reply, Error> {
        if !self.lmtp {
            let reply = self.read_reply(Stage::EndOfData, self.timeouts.data_end)?;
            return self.expect(Stage::EndOfData, reply, &[250], "250");
        }
        let mut first_ok = None;
        for r in recipients.iter_mut().filter(|r| r.accepted) {
            let reply = self.read_reply(Stage::EndOfData, self.timeouts.data_end)?;
            if reply.code == 421 {
                return Err(self.refused(Stage::EndOfData, reply));
            }
            r.accepted = reply.code == 250;
            r.stage = Stage::EndOfData;
            if r.accepted && first_ok.is_none() {
                first_ok = Some(reply.clone());
            }
            r.reply = reply;
            if let Some(seen) = self
                .report
                .recipients
                .iter_mut()
                .find(|s| s.recipient == r.recipient)
            {
                *seen = r.clone();
            }
        }
        first_ok.ok_or_else(|| Error::RefusedAfterData {
            refused: recipients.to_vec(),
        })
    }

    /// The replies to a pipelined MAIL and its RCPTs, in order: the MAIL refusal if
    /// there was one (the RCPT replies are read all the same, to stay in step), and
    /// each recipient's result. A 421, a broken connection or garbage end it all.
    fn envelope_replies(
        &mut self,
        envelope: &Envelope,
    ) -> Result<(Option<Error>, Vec<RecipientResult>), Error> {
        let reply = self.read_reply(Stage::MailFrom, self.timeouts.mail)?;
        let mail_error = match reply.code {
            250 => None,
            421 => return Err(self.refused(Stage::MailFrom, reply)),
            _ => Some(
                self.expect(Stage::MailFrom, reply, &[250], "250")
                    .err()
                    .unwrap_or(Error::Usage("MAIL FROM".into())),
            ),
        };
        let mut recipients = Vec::with_capacity(envelope.to.len());
        for to in &envelope.to {
            recipients.push(self.rcpt_reply(to)?);
        }
        Ok((mail_error, recipients))
    }

    /// The reply to one RCPT: 250 or 251 accept the recipient; any other 4xx or 5xx
    /// refuses this one recipient and the session goes on. A 421, a broken connection
    /// or garbage end the session.
    fn rcpt_reply(&mut self, to: &Address) -> Result<RecipientResult, Error> {
        let reply = self.read_reply(Stage::RcptTo, self.timeouts.rcpt)?;
        let accepted = match reply.code {
            250 | 251 => true,
            421 => return Err(self.refused(Stage::RcptTo, reply)),
            400..=599 => false,
            _ => return Err(self.unexpected(Stage::RcptTo, reply, "250 or 251")),
        };
        let result = RecipientResult {
            recipient: to.clone(),
            reply,
            accepted,
            stage: Stage::RcptTo,
        };
        self.report.recipients.push(result.clone());
        Ok(result)
    }

    /// After a QUIT has gone, the session is over. A connection that failed before
    /// gets no further wait; with a transcript, a live one is given a moment to show
    /// the goodbye, and a server that holds it back is not waited for.
    pub(crate) fn after_quit(&mut self) {
        self.report.timeline.enter(Phase::Quit);
        if !self.dead && self.transcript.is_some() {
            let wait = self.timeouts.quit.min(SHOWN_QUIT_WAIT);
            match self.read_reply(Stage::Quit, wait) {
                Ok(reply) if reply.code != 221 => {
                    self.note(&format!("unexpected reply to QUIT: {reply}"));
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
    }

    /// Ends the session after a failure: QUIT if the connection is still usable, and
    /// any error of its own ignored (the first error is what matters).
    pub fn abort(&mut self) {
        if self.dead {
            return;
        }
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
        self.timed(Phase::Auth, |s| s.auth_untimed(mechanism, credentials))
    }

    fn auth_untimed(
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
                    self.report.auth = Some(mechanism.name().to_owned());
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
        self.report.timeline.enter(Phase::StartTls);
        let shaken = handshake(&mut self.stream);
        self.report.timeline.stop();
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

    /// The message through a DotWriter after DATA's 354, the final dot, and the commands
    /// `then` (QUIT, or the next message's command group: RFC 2920 §3.1 lets message
    /// content open a group): the end of the message, the dot and `then` leave in one
    /// write.
    pub(crate) fn send_body(
        &mut self,
        message: &mut dyn Read,
        then: &[Command],
    ) -> Result<(), Error> {
        // DATA's 354 was the last reply due: anything after it came unasked, and would
        // be taken for the reply to the end of the message.
        self.check_in_step("the message", Stage::Message)?;
        let timeout = self.timeouts.data_block;
        if let Some(p) = &mut self.progress {
            p.start(self.message_size.take());
        }
        let counted = Counted {
            inner: Bounded::new(&mut self.stream, &mut self.write_timeout, timeout),
            progress: self.progress.as_mut(),
        };
        let mut dot = DotWriter::new(BufWriter::with_capacity(DATA_BUFFER, counted));
        let pumped = pump(message, &mut dot);
        let counts = (dot.bytes_in(), dot.lines_when_finished());
        self.report.message = Some(counts);
        let sent = match pumped {
            Ok(()) => dot.finish().and_then(|mut w| {
                for cmd in then {
                    w.write_all(cmd.to_string().as_bytes())?;
                }
                w.flush()
            }),
            Err(failure) => {
                // What is buffered is dropped unwritten: half a message must never be
                // followed by anything the server could take for its end.
                let _ = dot.into_inner().into_parts();
                match failure {
                    Pumped::Source(source) => {
                        // The server waits for data we cannot give; the connection is
                        // of no more use.
                        self.dead = true;
                        if let Some(p) = &mut self.progress {
                            p.finish(false);
                        }
                        return Err(Error::LocalIo {
                            context: "cannot read the message".into(),
                            source,
                        });
                    }
                    Pumped::Sink(e) => Err(e),
                }
            }
        };
        if let Some(p) = &mut self.progress {
            p.finish(sent.is_ok());
        }
        if let Some(t) = &mut self.transcript {
            t.line(
                "> ",
                &format!("[message: {} bytes, {} lines]", counts.0, counts.1),
            );
            t.line("> ", ".");
            for cmd in then {
                t.sent(cmd);
            }
        }
        sent.map_err(|e| self.write_failed(timeout, e))
    }

    /// The message as BDAT chunks (RFC 3030): line ends made CRLF, no dot-stuffing,
    /// `CHUNK_SIZE` bytes a chunk, the last marked LAST; QUIT after it if `quit`.
    /// With `each_reply`, every chunk waits for its reply but the last (lock-step);
    /// otherwise all go out at once. Returns how many chunks' replies are still due.
    fn send_chunks(
        &mut self,
        message: &mut dyn Read,
        prefix: Vec<u8>,
        quit: bool,
        each_reply: bool,
        envelope: Option<&Envelope>,
    ) -> Result<Chunked, Error> {
        if let Some(p) = &mut self.progress {
            p.start(self.message_size.take());
        }
        let due = self.send_chunks_untracked(message, prefix, quit, each_reply, envelope);
        if let Some(p) = &mut self.progress {
            p.finish(due.is_ok());
        }
        due
    }

    fn send_chunks_untracked(
        &mut self,
        message: &mut dyn Read,
        mut prefix: Vec<u8>,
        quit: bool,
        each_reply: bool,
        envelope: Option<&Envelope>,
    ) -> Result<Chunked, Error> {
        let mut replies = None;
        let mut lines = DotWriter::lines_only(Vec::with_capacity(CHUNK_SIZE + DATA_BUFFER));
        let mut input = vec![0u8; DATA_BUFFER];
        let mut chunks = 0usize;
        let mut due = 0usize;
        loop {
            let n = match message.read(&mut input) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.dead = true;
                    return Err(Error::LocalIo {
                        context: "cannot read the message".into(),
                        source,
                    });
                }
            };
            if n == 0 {
                break;
            }
            // Writing into a Vec cannot fail.
            let _ = lines.write_all(&input[..n]);
            if lines.get_mut().len() >= CHUNK_SIZE {
                let mut chunk = std::mem::take(lines.get_mut());
                if each_reply {
                    // In lock-step every reply so far has been read: anything waiting
                    // came unasked, and would be taken for this chunk's reply.
                    self.check_in_step("BDAT", Stage::Message)?;
                }
                self.send_chunk(std::mem::take(&mut prefix), &chunk, false, false)?;
                // The same buffer holds the next chunk: memory stays flat however
                // large the message.
                chunk.clear();
                *lines.get_mut() = chunk;
                chunks += 1;
                if each_reply {
                    let reply = self.read_reply(Stage::Message, self.timeouts.data_block)?;
                    self.expect(Stage::Message, reply, &[250], "250")?;
                } else {
                    due += 1;
                }
                // A message longer than one chunk waits, after its first, for the
                // envelope's replies: no use sending the rest to a refused sender or
                // to nobody.
                if let (Some(envelope), None) = (envelope, &replies) {
                    let (mail_error, recipients) = self.envelope_replies(envelope)?;
                    let stands = mail_error.is_none() && recipients.iter().any(|r| r.accepted);
                    replies = Some((mail_error, recipients));
                    if !stands {
                        return Ok(Chunked {
                            due,
                            replies,
                            ended: false,
                        });
                    }
                }
            }
        }
        let (bytes, line_count) = (lines.bytes_in(), lines.lines_when_finished());
        self.report.message = Some((bytes, line_count));
        let last = lines.finish().unwrap_or_default();
        if each_reply {
            self.check_in_step("BDAT", Stage::Message)?;
        }
        self.send_chunk(prefix, &last, true, quit)?;
        if let Some(t) = &mut self.transcript {
            let in_chunks = match chunks {
                0 => String::new(),
                n => format!(" in {} chunks", n + 1),
            };
            t.line(
                "> ",
                &format!("[message: {bytes} bytes, {line_count} lines{in_chunks}]"),
            );
            if quit {
                t.sent(&Command::Quit);
            }
        }
        Ok(Chunked {
            due: due + 1,
            replies,
            ended: true,
        })
    }

    /// One chunk: `prefix` (commands that go in the same write), the BDAT line, the
    /// bytes, and QUIT after the last if `quit`.
    fn send_chunk(
        &mut self,
        mut head: Vec<u8>,
        chunk: &[u8],
        last: bool,
        quit: bool,
    ) -> Result<(), Error> {
        let cmd = Command::Bdat {
            size: chunk.len() as u64,
            last,
        };
        if let Some(t) = &mut self.transcript {
            t.sent(&cmd);
        }
        head.extend_from_slice(cmd.to_string().as_bytes());
        let tail = match quit {
            true => Command::Quit.to_string().into_bytes(),
            false => Vec::new(),
        };
        let timeout = self.timeouts.data_block;
        let mut out = Bounded::new(&mut self.stream, &mut self.write_timeout, timeout);
        let sent = if chunk.len() + head.len() + tail.len() <= DATA_BUFFER {
            head.extend_from_slice(chunk);
            head.extend_from_slice(&tail);
            out.write_all(&head).inspect(|()| {
                if let Some(p) = &mut self.progress {
                    p.advance(chunk.len() as u64);
                }
            })
        } else {
            let mut counted = Counted {
                inner: &mut out,
                progress: self.progress.as_mut(),
            };
            counted
                .inner
                .write_all(&head)
                .and_then(|()| counted.write_all(chunk))
                .and_then(|()| counted.inner.write_all(&tail))
        }
        .and_then(|()| out.flush());
        sent.map_err(|e| self.write_failed(timeout, e))
    }

    /// A write of the message failed: the server's reason, if it left one, else the
    /// network error.
    fn write_failed(&mut self, timeout: Duration, e: io::Error) -> Error {
        let err = self.io_error(Stage::Message, timeout, e);
        // After a timeout the stage's time is up: only a reply that is already here
        // counts. A connection that failed otherwise gets a short wait, within the
        // stage's limit.
        let wait = match err {
            Error::Timeout { .. } => GLANCE,
            _ => REFUSAL_WAIT.min(self.timeouts.data_block),
        };
        self.refusal_after_failed_write(wait).unwrap_or(err)
    }

    /// A server that refuses a message part-way (too big, policy) often says why and
    /// closes; our next write then fails. The reply it left is the real reason, and
    /// it may be permanent, where a lost connection would say "try again later".
    fn refusal_after_failed_write(&mut self, wait: Duration) -> Option<Error> {
        let reply = self.read_reply(Stage::Message, wait).ok()?;
        (reply.is_transient() || reply.is_permanent()).then(|| self.refused(Stage::Message, reply))
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
            self.prepare_read(stage, left, deadline)?;
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
