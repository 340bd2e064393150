//! outbox: a command-line SMTP client, as a library.
//!
//! [`submit`] opens a session with the server in [`Settings`], hands over the message
//! for the [`Envelope`] and returns what the server said of each recipient.
//!
//! ```no_run
//! use outbox::compose::{self, Draft};
//! use outbox::smtp::transport::ServerAddr;
//! use outbox::{Envelope, Mailbox, Settings};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let from = Mailbox::parse("Ops <ops@example.com>")?;
//! let to = Mailbox::parse("admin@example.com")?;
//! let draft = Draft {
//!     from: Some(from.clone()),
//!     to: vec![to.clone()],
//!     subject: Some("disk report".into()),
//!     text: b"all is well\n".to_vec(),
//!     ..Draft::default()
//! };
//! let message = compose::build(&draft, "client.example.com")?;
//! let mut settings = Settings::from_cli(&outbox::cli::Cli::default())?;
//! settings.server = ServerAddr::parse("mail.example.com:587")?;
//! let envelope = Envelope::new(Some(from.address), [to.address]);
//! let receipt = outbox::submit(&settings, &envelope, &message)?;
//! println!("{}", receipt.reply);
//! # Ok(())
//! # }
//! ```

mod advice;
pub mod cli;
pub mod compose;
pub mod config;
pub mod envelope;
pub mod error;
pub mod exit;
pub mod message;
pub mod outcome;
pub mod progress;
pub mod queue;
pub mod report;
pub mod sendmail;
pub mod settings;
pub mod smtp;

pub use envelope::{Address, Envelope, Mailbox};
pub use error::{Error, Stage};
pub use message::Message;
pub use report::Report;
pub use settings::Settings;
pub use smtp::session::{Receipt, RecipientResult, Session, Timeouts, Transcript};

use std::borrow::Cow;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use message::downgrade::Downgraded;

use progress::Progress;
use report::{Phase, TlsStart};
use smtp::auth::{Credentials, Mechanism};
use smtp::tls::{Channel, Connection, Handshake, TlsClient, TlsMode};

/// Sends one message: connect, greeting, EHLO, the transaction, QUIT.
///
/// Returns the receipt when the server took the message for at least one recipient
/// (the receipt lists any it refused). On failure the session ends with a QUIT where
/// the connection allows it, and the error says at which stage and why.
pub fn submit(
    settings: &Settings,
    envelope: &Envelope,
    message: &Message,
) -> Result<Receipt, Error> {
    submit_with(settings, envelope, message, verbose_transcript(settings))
}

/// As [`submit`], writing the dialogue to `transcript` if given.
pub fn submit_with(
    settings: &Settings,
    envelope: &Envelope,
    message: &Message,
    transcript: Option<Transcript>,
) -> Result<Receipt, Error> {
    let options = Options {
        transcript,
        progress: None,
    };
    submit_reported(settings, envelope, message, options).0
}

/// What a submission shows as it goes.
#[derive(Default)]
pub struct Options {
    /// Where the dialogue goes (`-v`).
    pub transcript: Option<Transcript>,
    /// Told of the message's bytes as they go out.
    pub progress: Option<Box<dyn Progress>>,
}

impl Options {
    /// The transcript on standard error if the settings ask for it (`-v`); no progress.
    pub fn for_settings(settings: &Settings) -> Options {
        Options {
            transcript: verbose_transcript(settings),
            progress: None,
        }
    }
}

/// As [`submit`], with the report of what the session did (for `--json`): filled
/// as far as the session went, on failure too.
pub fn submit_reported(
    settings: &Settings,
    envelope: &Envelope,
    message: &Message,
    options: Options,
) -> (Result<Receipt, Error>, Report) {
    let start = Instant::now();
    let mut report = Report::for_server(&settings.server);
    let (result, mut report) = match Client::open(settings, options.transcript, &mut report) {
        Ok(mut client) => {
            client.set_progress(options.progress);
            client.last_message_next();
            let result = client.send(envelope, message);
            (result, client.finish())
        }
        Err(e) => (Err(e), report),
    };
    let result = result.map_err(|e| advice::advise(e, settings));
    report.total = Some(start.elapsed());
    (result, report)
}

/// A session ready for mail: greeted, TLS and AUTH done as the settings ask. Many
/// messages can go over it one after the other ([`Client::send`]).
pub struct Client {
    session: Session<Connection>,
    dsn: Dsn,
    /// The last transaction failed part-way: RSET before the next (RFC 5321 §4.1.1.5).
    needs_reset: bool,
}

impl Client {
    /// Connects and gets the session ready: greeting, EHLO, STARTTLS, AUTH.
    pub fn connect(settings: &Settings, transcript: Option<Transcript>) -> Result<Client, Error> {
        Client::open(settings, transcript, &mut Report::default())
    }

    /// As [`Client::connect`]. On failure, `report` says how far the session went; on
    /// success the client carries the report on ([`Client::report`]).
    pub fn open(
        settings: &Settings,
        mut transcript: Option<Transcript>,
        report: &mut Report,
    ) -> Result<Client, Error> {
        // Before connecting: a prompt must not keep a server waiting.
        let credentials = settings.credentials()?;
        // A CA file that cannot be read is found before anything is sent.
        if let Some(ca) = &settings.tls.ca_file
            && settings.tls.mode != TlsMode::None
            && let Err(source) = std::fs::metadata(ca)
        {
            return Err(Error::NoInput {
                path: ca.clone(),
                source,
            });
        }
        if let Some(t) = &mut transcript {
            t.note(&format!("connecting to {}", settings.server));
        }
        let (connection, ehlo_name, implicit) = match settings.server.unix_path() {
            Some(path) => {
                report.timeline.enter(Phase::Connect);
                let unix = std::os::unix::net::UnixStream::connect(path);
                report.timeline.stop();
                let unix = unix.map_err(|source| Error::Connect {
                    server: settings.server.to_string(),
                    source,
                })?;
                report.peer = Some(path.display().to_string());
                if let Some(t) = &mut transcript {
                    t.note(&format!("connected to {}", path.display()));
                }
                let ehlo_name = settings
                    .ehlo_name
                    .clone()
                    .unwrap_or_else(|| settings::default_ehlo_name(None));
                (Connection::Unix(unix), ehlo_name, false)
            }
            None => connect_tcp(settings, &mut transcript, report)?,
        };
        let client = (settings.tls.mode != TlsMode::None).then(|| TlsClient {
            options: &settings.tls,
            host: &settings.server.host,
            port: settings.server.port,
            timeout: settings.timeouts.greeting,
        });
        let mut session = Session::new(connection, settings.timeouts.clone())
            .with_transcript(transcript)
            .with_chunking(settings.chunking)
            .with_lmtp(settings.lmtp)
            .with_report(std::mem::take(report));
        if !implicit && settings.server.unix_path().is_none() {
            let limit = settings.timeouts.greeting;
            let after = silence_hint_after(limit);
            session =
                session.with_silence_hint(after, silence_hint(&settings.server, after, limit));
        }
        if let Some(info) = session.stream().tls_info() {
            session.note(&format!("TLS: {info}"));
            session.report_mut().tls = Some((TlsStart::Implicit, info));
        }
        let ready = establish(
            &mut session,
            settings,
            client.as_ref(),
            &ehlo_name,
            credentials.as_ref(),
        );
        match ready {
            Ok(()) => Ok(Client {
                session,
                dsn: settings.dsn.clone(),
                needs_reset: false,
            }),
            Err(e) => {
                session.abort();
                *report = std::mem::take(session.report_mut());
                // A server that speaks implicit TLS says nothing until the client starts
                // a handshake: a silent greeting on such a port is the likely mistake.
                Err(match e {
                    Error::Timeout {
                        stage: Stage::Greeting,
                        ..
                    } if !implicit => Error::Hint {
                        error: Box::new(e),
                        hint: "a server that speaks implicit TLS (as on port 465) waits in \
                               silence for the client to begin; if this is such a port, use \
                               --tls implicit"
                            .into(),
                    },
                    e => e,
                })
            }
        }
    }

    /// Sends one message. After a failed transaction the next begins with RSET, so it
    /// can follow on the same connection.
    pub fn send(&mut self, envelope: &Envelope, message: &Message) -> Result<Receipt, Error> {
        if self.needs_reset {
            self.session.rset()?;
        }
        let result = send_on(&mut self.session, envelope, message, &self.dsn);
        self.needs_reset = result.is_err();
        result
    }

    /// Sends the messages `series` gives, one after the other, and tells it what became
    /// of each, in order. Over a server that offers PIPELINING (with DATA: not when BDAT
    /// is in use), the end of each message leaves in the same write as the next one's
    /// MAIL, RCPTs and DATA, and the last one's with QUIT: one wait for the server per
    /// message, where [`Client::send`] needs two. The series ends when `series` has no
    /// more, or when the connection is lost.
    pub fn send_series<S: Series>(&mut self, series: &mut S) {
        if self.session.pipelines_data() {
            send_series_on(&mut self.session, &self.dsn, series);
            return;
        }
        while self.is_usable() {
            let Some(out) = series.next() else { break };
            let result = self.send(&out.envelope, &out.message);
            series.done(out, Some(result));
        }
    }

    /// The next message is the last: QUIT goes with it.
    pub fn last_message_next(&mut self) {
        self.session.quit_after_next();
    }

    /// Whether another message can be sent over this connection.
    pub fn is_usable(&self) -> bool {
        self.session.is_usable()
    }

    /// Tells `progress` of each message's bytes as they go out.
    pub fn set_progress(&mut self, progress: Option<Box<dyn Progress>>) {
        self.session.set_progress(progress);
    }

    /// What the session has done so far.
    pub fn report(&self) -> &Report {
        self.session.report()
    }

    /// Ends the session with QUIT where the connection still allows it. Whatever was
    /// accepted is the server's already: a failed goodbye changes nothing. Returns the
    /// report of the session.
    pub fn finish(mut self) -> Report {
        if self.session.is_usable()
            && let Err(e) = self.session.quit()
        {
            self.session.note(&format!("QUIT failed: {e}"));
        }
        std::mem::take(self.session.report_mut())
    }
}

/// One message of a series ([`Client::send_series`]), with what its sender knows it by.
pub struct Outgoing<T> {
    pub tag: T,
    pub envelope: Envelope,
    pub message: Message,
}

/// Where the messages of [`Client::send_series`] come from, and where their results go.
pub trait Series {
    type Tag;
    /// The next message to send; `None` when there are no more.
    fn next(&mut self) -> Option<Outgoing<Self::Tag>>;
    /// What became of a message `next` gave. Results come in the order the messages
    /// were given, but for those the server cannot take at all (too big for its SIZE,
    /// 8-bit data without 8BITMIME...): they are told at once. `None`: it was not
    /// tried, the connection was lost before it.
    fn done(&mut self, message: Outgoing<Self::Tag>, result: Option<Result<Receipt, Error>>);
}

/// [`Client::send_series`] over a server that pipelines DATA transactions.
fn send_series_on<C: Channel, S: Series>(session: &mut Session<C>, dsn: &Dsn, series: &mut S) {
    // A message whose envelope was accepted and which has had DATA's 354: its content
    // is owed.
    type Ready<T> = (Outgoing<T>, Option<Downgraded>, Vec<RecipientResult>);
    let mut ready: Option<Ready<S::Tag>> = None;
    loop {
        let (upcoming, then) = match next_prepared(session, dsn, series) {
            Some((out, envelope, group, downgraded)) => (Some((out, envelope, downgraded)), group),
            None if ready.is_some() => (None, vec![smtp::command::Command::Quit]),
            None => return,
        };
        match ready.take() {
            Some((out, downgraded, mut recipients)) => {
                if session.has_progress() {
                    session.set_message_size(Some(wire_size_as_sent(&out.message, &downgraded)));
                }
                let result = session
                    .send_body(&mut reader_as_sent(&out.message, &downgraded), &then)
                    .and_then(|()| session.end_of_data(&mut recipients))
                    .map(|reply| Receipt { recipients, reply });
                series.done(out, Some(result));
                if upcoming.is_none() {
                    session.after_quit();
                    return;
                }
            }
            None => {
                if let Err(e) = session.send_data_group(&then) {
                    if let Some((out, _, _)) = upcoming {
                        series.done(out, Some(Err(e)));
                    }
                    return;
                }
            }
        }
        let Some((out, envelope, downgraded)) = upcoming else {
            return;
        };
        if !session.is_usable() {
            // Its commands went, if at all, after an end that broke the connection.
            series.done(out, None);
            return;
        }
        match session.data_replies(&envelope) {
            Ok(recipients) => ready = Some((out, downgraded, recipients)),
            Err(e) => {
                series.done(out, Some(Err(e)));
                // A MAIL that was accepted is still open (RFC 5321 §4.1.1.5).
                if session.is_usable() && session.rset().is_err() {
                    return;
                }
            }
        }
    }
}

/// A message of a series made ready: its envelope as sent, its command group, and
/// its header as this server takes it.
type Prepared<T> = (
    Outgoing<T>,
    Envelope,
    Vec<smtp::command::Command>,
    Option<Downgraded>,
);

/// The next message of `series` this server can take, prepared; those it cannot take
/// are done with at once.
fn next_prepared<C: Channel, S: Series>(
    session: &mut Session<C>,
    dsn: &Dsn,
    series: &mut S,
) -> Option<Prepared<S::Tag>> {
    if !session.is_usable() {
        return None;
    }
    loop {
        let out = series.next()?;
        let prepared = prepare(session, &out.envelope, &out.message, dsn).and_then(
            |(envelope, params, downgraded)| {
                let group = session.data_group(&envelope, &params)?;
                Ok((envelope.into_owned(), group, downgraded))
            },
        );
        match prepared {
            Ok((envelope, group, downgraded)) => return Some((out, envelope, group, downgraded)),
            Err(e) => series.done(out, Some(Err(e))),
        }
    }
}

/// A TCP connection to the server, under TLS at once where the mode says so; with
/// the EHLO name and whether TLS was implicit.
fn connect_tcp(
    settings: &Settings,
    transcript: &mut Option<Transcript>,
    report: &mut Report,
) -> Result<(Connection, String, bool), Error> {
    report.timeline.enter(Phase::Connect);
    let tcp = smtp::transport::connect(&settings.server, settings.timeouts.connect);
    report.timeline.stop();
    let tcp = tcp?;
    if let Ok(peer) = tcp.peer_addr() {
        report.peer = Some(peer.to_string());
        if let Some(t) = transcript {
            t.note(&format!("connected to {peer}"));
        }
    }
    let ehlo_name = settings
        .ehlo_name
        .clone()
        .unwrap_or_else(|| settings::default_ehlo_name(tcp.local_addr().ok().map(|a| a.ip())));
    let implicit = match settings.tls.mode {
        TlsMode::Implicit => true,
        TlsMode::Auto => settings.server.port == IMPLICIT_TLS_PORT,
        TlsMode::StartTls | TlsMode::None => false,
    };
    let connection = if implicit {
        let client = TlsClient {
            options: &settings.tls,
            host: &settings.server.host,
            port: settings.server.port,
            timeout: settings.timeouts.greeting,
        };
        report.timeline.enter(Phase::Tls);
        let shaken = client.handshake(tcp, Handshake::Implicit);
        report.timeline.stop();
        shaken?
    } else {
        Connection::Plain(tcp)
    };
    Ok((connection, ehlo_name, implicit))
}

/// Implicit TLS for submission (RFC 8314 §3.3).
const IMPLICIT_TLS_PORT: u16 = 465;

/// How long a silent server is waited for before outbox says it is still waiting.
const SILENCE_HINT_AFTER: Duration = Duration::from_secs(10);

/// When to say that the greeting has not come: after 10 s, or half the greeting's
/// limit when that is shorter, so the line comes before a short `--timeout` is up.
fn silence_hint_after(greeting: Duration) -> Duration {
    SILENCE_HINT_AFTER.min(greeting / 2)
}

/// The line for a server that has not greeted: a port that speaks implicit TLS waits
/// in silence for the client's handshake, and without a word the wait looks like a
/// hang. Standard error that cannot be written changes nothing.
fn silence_hint(
    server: &smtp::transport::ServerAddr,
    after: Duration,
    limit: Duration,
) -> impl FnMut() + Send + 'static {
    let line = format!(
        "outbox: no greeting from {server} after {} s; still waiting (up to {} s). A server \
         that speaks implicit TLS (as on port 465) says nothing until the client begins: if \
         this is such a port, use --tls implicit",
        seconds(after),
        seconds(limit)
    );
    move || {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

/// `10`, `1.5`: seconds as a person reads them.
fn seconds(d: Duration) -> String {
    match d.subsec_millis() {
        0 => d.as_secs().to_string(),
        _ => format!("{:.1}", d.as_secs_f64()),
    }
}

/// Getting a session and then sending one message: what `submit` does, over any
/// channel (the tests drive it with a scripted peer).
#[cfg(test)]
fn deliver<S: Channel>(
    session: &mut Session<S>,
    settings: &Settings,
    client: Option<&TlsClient<'_>>,
    ehlo_name: &str,
    credentials: Option<&Credentials>,
    envelope: &Envelope,
    message: &Message,
) -> Result<Receipt, Error> {
    establish(session, settings, client, ehlo_name, credentials)?;
    send_on(session, envelope, message, &settings.dsn)
}

/// One transaction, with the MAIL parameters this server and message call for.
fn send_on<S: Channel>(
    session: &mut Session<S>,
    envelope: &Envelope,
    message: &Message,
    dsn: &Dsn,
) -> Result<Receipt, Error> {
    let (envelope, params, downgraded) = prepare(session, envelope, message, dsn)?;
    if session.has_progress() {
        session.set_message_size(Some(wire_size_as_sent(message, &downgraded)));
    }
    let mut reader = reader_as_sent(message, &downgraded);
    session.transaction_with(&envelope, &params, &mut reader)
}

/// The envelope as this server can take it, the parameters this server and message
/// call for, and the header rewritten in ASCII if the server cannot take it in UTF-8.
fn prepare<'a, S: Channel>(
    session: &mut Session<S>,
    envelope: &'a Envelope,
    message: &Message,
    dsn: &Dsn,
) -> Result<(Cow<'a, Envelope>, Parameters, Option<Downgraded>), Error> {
    let caps = session.capabilities();
    let smtputf8 = caps.has("SMTPUTF8");
    let envelope = if smtputf8 {
        Cow::Borrowed(envelope)
    } else {
        Cow::Owned(ascii_envelope(envelope)?)
    };
    // RFC 6531 §3.4: UTF-8 header fields only to a server that offers SMTPUTF8; for
    // any other they are rewritten in ASCII (RFC 2047) where they can be.
    let downgraded = if message.has_8bit_header() && !smtputf8 {
        Some(message.downgraded()?)
    } else {
        None
    };
    let shape = match &downgraded {
        Some(d) => Shape {
            wire_size: d.wire_size(),
            eight_bit: d.is_8bit(),
            utf8_header: false,
        },
        None => Shape::of(message),
    };
    let size_limit = caps.size_limit().flatten();
    let params = parameters_for(|k| caps.has(k), size_limit, &envelope, &shape, dsn)?;
    if !dsn.is_empty() && !caps.has("DSN") {
        session.note("the server does not offer DSN: the notification requests are left out");
    }
    if let Some(d) = downgraded.as_ref().filter(|d| !d.fields().is_empty()) {
        session.note(&format!(
            "the server does not offer SMTPUTF8: the UTF-8 in {} is sent as RFC 2047 \
             encoded-words (domains as A-labels)",
            d.fields().join(", ")
        ));
    }
    Ok((envelope, params, downgraded))
}

/// The size on the wire of `message` as it goes, its header rewritten or not.
fn wire_size_as_sent(message: &Message, downgraded: &Option<Downgraded>) -> u64 {
    downgraded
        .as_ref()
        .map_or(message.wire_size(), Downgraded::wire_size)
}

/// The bytes of `message` as it goes, its header rewritten or not.
fn reader_as_sent<'a>(
    message: &'a Message,
    downgraded: &'a Option<Downgraded>,
) -> Box<dyn Read + 'a> {
    match downgraded {
        Some(d) => Box::new(d.reader(message)),
        None => Box::new(message.reader()),
    }
}

/// The envelope for a server without SMTPUTF8: internationalised domains in A-labels;
/// a local part that is not ASCII cannot be sent there at all (RFC 6531 §3.2).
fn ascii_envelope(envelope: &Envelope) -> Result<Envelope, Error> {
    let convert = |a: &Address| {
        a.to_ascii().ok_or_else(|| {
            Error::Unsendable(format!(
                "the address <{a}> has a local part that is not ASCII, and the server \
                 does not offer SMTPUTF8 (RFC 6531)"
            ))
        })
    };
    let from = envelope.from.as_ref().map(convert).transpose()?;
    let to = envelope
        .to
        .iter()
        .map(convert)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Envelope::new(from, to))
}

/// The policy of a session after connecting: greeting and EHLO, STARTTLS where the
/// mode asks for it, AUTH when credentials are given.
fn establish<S: Channel>(
    session: &mut Session<S>,
    settings: &Settings,
    client: Option<&TlsClient<'_>>,
    ehlo_name: &str,
    credentials: Option<&Credentials>,
) -> Result<(), Error> {
    let loopback = session.stream().peer_is_loopback();
    session.greeting()?;
    session.ehlo(ehlo_name)?;
    // To loopback, auto stays in clear, unless credentials are to be sent and the
    // server offers AUTH only after STARTTLS (Dovecot's submission, Postfix with
    // smtpd_tls_auth_only): then TLS, with the certificate checked as for any server.
    let auth_needs_tls = credentials.is_some()
        && session.capabilities().has("STARTTLS")
        && session.capabilities().auth_mechanisms().is_empty();
    let wants_starttls = !session.stream().is_tls()
        && match settings.tls.mode {
            TlsMode::StartTls => true,
            TlsMode::Auto => !loopback || auth_needs_tls,
            TlsMode::Implicit | TlsMode::None => false,
        };
    if wants_starttls {
        if !session.capabilities().has("STARTTLS") {
            let why = match settings.tls.mode {
                TlsMode::StartTls => "STARTTLS was asked for (--tls starttls)",
                _ => {
                    "outbox does not send in clear to a server that is not on this machine \
                      unless told to"
                }
            };
            return Err(Error::Unsupported(format!(
                "{} does not offer STARTTLS, and {why}: try the submission port 587, or port \
                 465 with --tls implicit; --tls none sends in clear",
                settings.server
            )));
        }
        let client = client.ok_or_else(|| {
            Error::Usage("STARTTLS is wanted, but TLS is turned off (--tls none)".into())
        })?;
        session.starttls()?;
        let discarded = session.upgrade(|stream| stream.start_tls(client))?;
        if discarded > 0 {
            session.note(&format!(
                "discarded {discarded} bytes the server sent before TLS began (RFC 3207 §4.2)"
            ));
        }
        if let Some(info) = session.stream().tls_info() {
            session.note(&format!("TLS: {info}"));
            session.report_mut().tls = Some((TlsStart::StartTls, info));
        }
        session.ehlo(ehlo_name)?;
    }
    if let Some(credentials) = credentials {
        authenticate(session, settings, credentials, loopback)?;
    }
    Ok(())
}

/// AUTH with the configured mechanism, or the strongest the server offers.
/// Credentials never go in clear to a server that is not on this machine.
fn authenticate<S: Channel>(
    session: &mut Session<S>,
    settings: &Settings,
    credentials: &Credentials,
    loopback: bool,
) -> Result<(), Error> {
    let tls = session.stream().is_tls();
    if !tls && !loopback {
        return Err(Error::Unsupported(format!(
            "outbox does not send credentials in clear to {}, which is not on this machine: \
             use TLS (--tls starttls, or --tls implicit on port 465)",
            settings.server
        )));
    }
    let offered = session.capabilities().auth_mechanisms();
    if offered.is_empty() {
        return Err(Error::Unsupported(format!(
            "{} offers no AUTH{}",
            settings.server,
            if tls {
                ""
            } else {
                " (many servers offer it only after STARTTLS: try --tls starttls)"
            }
        )));
    }
    let wanted = settings.auth.as_ref().and_then(|a| a.mechanism);
    let mechanism = match wanted {
        Some(m) if offered.iter().any(|o| o.eq_ignore_ascii_case(m.name())) => m,
        Some(m) => {
            return Err(Error::Unsupported(format!(
                "{} does not offer {}; it offers {}",
                settings.server,
                m.name(),
                offered.join(" ")
            )));
        }
        None => Mechanism::strongest(&offered, tls, credentials.secret.expose().is_ascii())
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "no SASL mechanism in common with {}, which offers {}",
                    settings.server,
                    offered.join(" ")
                ))
            })?,
    };
    session.auth(mechanism, credentials)?;
    Ok(())
}

/// Delivery status notification requests (RFC 3461), for servers that offer DSN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dsn {
    /// `NEVER`, or some of `SUCCESS`, `FAILURE`, `DELAY` joined by commas (§4.1).
    pub notify: Option<String>,
    /// `FULL` or `HDRS` (§4.3).
    pub ret: Option<String>,
    /// The envelope id (§4.4), as given; sent as xtext.
    pub envid: Option<String>,
}

impl Dsn {
    pub fn is_empty(&self) -> bool {
        self.notify.is_none() && self.ret.is_none() && self.envid.is_none()
    }
}

/// The ESMTP parameters of one transaction: for MAIL FROM, and for each RCPT TO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parameters {
    pub mail: Vec<String>,
    pub rcpt: Vec<String>,
}

/// The parameters this message needs from a server that offers the extensions for
/// which `offers` is true, and whose SIZE limit is `size_limit`. Checks what can be
/// known before sending: a message over the limit, 8-bit data or UTF-8 addresses the
/// server cannot take.
pub fn parameters(
    offers: impl Fn(&str) -> bool,
    size_limit: Option<u64>,
    envelope: &Envelope,
    message: &Message,
    dsn: &Dsn,
) -> Result<Parameters, Error> {
    parameters_for(offers, size_limit, envelope, &Shape::of(message), dsn)
}

/// What the parameters depend on in the message as it goes to the server.
struct Shape {
    wire_size: u64,
    eight_bit: bool,
    utf8_header: bool,
}

impl Shape {
    fn of(message: &Message) -> Shape {
        Shape {
            wire_size: message.wire_size(),
            eight_bit: message.is_8bit(),
            utf8_header: message.has_8bit_header(),
        }
    }
}

fn parameters_for(
    offers: impl Fn(&str) -> bool,
    size_limit: Option<u64>,
    envelope: &Envelope,
    message: &Shape,
    dsn: &Dsn,
) -> Result<Parameters, Error> {
    let mut params = Parameters::default();
    if offers("SIZE") {
        let size = message.wire_size;
        // RFC 1870 §6.1: a message the server has said it will refuse is not sent.
        if let Some(limit) = size_limit
            && size > limit
        {
            return Err(Error::Unsendable(format!(
                "the message is {size} bytes, over the server's limit of {limit} bytes (SIZE)"
            )));
        }
        params.mail.push(format!("SIZE={size}"));
    }
    // Known without reading the message: bytes in memory were looked at when it was
    // made, and what a composed message reads from files goes base64 (ASCII).
    if message.eight_bit {
        // RFC 6152 §3: 8-bit data only to a server that says it takes it.
        if !offers("8BITMIME") {
            return Err(Error::Data(
                "the message holds 8-bit data and the server does not offer 8BITMIME; \
                 encode it (quoted-printable or base64) first"
                    .into(),
            ));
        }
        params.mail.push("BODY=8BITMIME".into());
    }
    // RFC 6531 §3.4: an address in UTF-8 needs SMTPUTF8, and a server without it
    // cannot take the message at all; so do header fields in UTF-8 (RFC 6532), unless
    // they were rewritten in ASCII first (see `prepare`).
    let utf8_address = envelope
        .from
        .iter()
        .chain(&envelope.to)
        .any(|a| !a.as_str().is_ascii());
    if utf8_address || message.utf8_header {
        if !offers("SMTPUTF8") {
            return Err(Error::Unsendable(if utf8_address {
                "an address is not ASCII, and the server does not offer SMTPUTF8 (RFC 6531)".into()
            } else {
                "the header holds UTF-8, and the server does not offer SMTPUTF8 (RFC 6531)".into()
            }));
        }
        params.mail.push("SMTPUTF8".into());
    }
    if offers("DSN") {
        if let Some(ret) = &dsn.ret {
            params.mail.push(format!("RET={ret}"));
        }
        if let Some(envid) = &dsn.envid {
            params.mail.push(format!("ENVID={}", xtext(envid)));
        }
        if let Some(notify) = &dsn.notify {
            params.rcpt.push(format!("NOTIFY={notify}"));
        }
    }
    Ok(params)
}

/// The size of the message as the server counts it (RFC 1870 §3): every line end a
/// CRLF, the last line ended, no dot-stuffing.
pub fn wire_size(bytes: &[u8]) -> u64 {
    let mut counter = message::WireCounter::default();
    counter.feed(bytes);
    counter.finish()
}

/// xtext (RFC 3461 §4): `+`, `=` and anything outside `!`..`~` as `+XX`.
pub(crate) fn xtext(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'!'..=b'~' if b != b'+' && b != b'=' => (b as char).to_string(),
            _ => format!("+{b:02X}"),
        })
        .collect()
}

fn verbose_transcript(settings: &Settings) -> Option<Transcript> {
    settings
        .verbose
        .then(|| Transcript::new(Box::new(std::io::stderr())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(from: &str, to: &str) -> Envelope {
        Envelope::new(
            Some(Address::new(from).unwrap()),
            [Address::new(to).unwrap()],
        )
    }

    fn message(text: &str) -> Message {
        Message::from_bytes(text.as_bytes().to_vec())
    }

    fn mail(offers: &[&str], e: &Envelope, m: &Message) -> Result<Vec<String>, Error> {
        parameters(|k| offers.contains(&k), None, e, m, &Dsn::default()).map(|p| p.mail)
    }

    #[test]
    fn the_silence_hint_comes_after_10_s_or_half_a_shorter_limit() {
        let secs = Duration::from_secs;
        assert_eq!(silence_hint_after(secs(300)), secs(10));
        assert_eq!(silence_hint_after(secs(3)), Duration::from_millis(1500));
        assert_eq!(seconds(secs(10)), "10");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5");
    }

    #[test]
    fn seven_bit_ascii_needs_no_parameter() {
        let m = message("Subject: x\r\n\r\nbody\r\n");
        let e = envelope("a@example.test", "b@example.test");
        assert!(
            mail(&["8BITMIME", "SMTPUTF8", "DSN"], &e, &m)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn eight_bit_data_is_announced_and_refused_where_not_offered() {
        let m = message("Subject: x\r\n\r\nGrüße\r\n");
        let e = envelope("a@example.test", "b@example.test");
        assert_eq!(mail(&["8BITMIME"], &e, &m).unwrap(), ["BODY=8BITMIME"]);
        let err = mail(&[], &e, &m).unwrap_err();
        assert!(matches!(err, Error::Data(_)), "{err:?}");
        assert_eq!(exit::code(&err), exit::DATAERR);
    }

    #[test]
    fn utf8_address_needs_smtputf8() {
        let m = message("From: jörg@example.test\r\n\r\nx\r\n");
        let e = envelope("jörg@example.test", "b@example.test");
        assert_eq!(
            mail(&["8BITMIME", "SMTPUTF8"], &e, &m).unwrap(),
            ["BODY=8BITMIME", "SMTPUTF8"]
        );
        let err = mail(&["8BITMIME"], &e, &m).unwrap_err();
        assert!(matches!(err, Error::Unsendable(_)), "{err:?}");
        assert_eq!(exit::code(&err), exit::UNAVAILABLE);
    }

    #[test]
    fn utf8_header_fields_need_smtputf8() {
        let e = envelope("a@example.test", "r@example.test");
        let m = message("From: Jörg <a@example.test>\r\nSubject: Grüße\r\n\r\nx\r\n");
        assert_eq!(
            mail(&["8BITMIME", "SMTPUTF8"], &e, &m).unwrap(),
            ["BODY=8BITMIME", "SMTPUTF8"]
        );
        // Only the header counts: 8-bit text in the body is 8BITMIME's business.
        let m = message("Subject: x\r\n\r\nGrüße\r\n");
        assert_eq!(
            mail(&["8BITMIME", "SMTPUTF8"], &e, &m).unwrap(),
            ["BODY=8BITMIME"]
        );
    }

    #[test]
    fn without_smtputf8_domains_go_as_a_labels_and_utf8_local_parts_are_refused() {
        let e = envelope("a@bücher.example", "info@例え.テスト");
        let ascii = ascii_envelope(&e).unwrap();
        assert_eq!(ascii.from.unwrap().as_str(), "a@xn--bcher-kva.example");
        assert_eq!(ascii.to[0].as_str(), "info@xn--r8jz45g.xn--zckzah");
        let err = ascii_envelope(&envelope("jörg@example.test", "b@example.test")).unwrap_err();
        assert!(matches!(err, Error::Unsendable(_)), "{err:?}");
        assert_eq!(exit::code(&err), exit::UNAVAILABLE);
    }

    #[test]
    fn size_is_announced_and_a_message_over_the_limit_is_refused_before_sending() {
        let m = message("Subject: x\n\nbody\nlast");
        let e = envelope("a@example.test", "b@example.test");
        // Every line end counted as CRLF, the last line ended.
        let size = m.wire_size();
        assert_eq!(size, wire_size(b"Subject: x\n\nbody\nlast"));
        assert_eq!(size, "Subject: x\r\n\r\nbody\r\nlast\r\n".len() as u64);
        let p = parameters(|k| k == "SIZE", Some(1000), &e, &m, &Dsn::default()).unwrap();
        assert_eq!(p.mail, [format!("SIZE={size}")]);
        let err = parameters(|k| k == "SIZE", Some(10), &e, &m, &Dsn::default()).unwrap_err();
        assert_eq!(exit::code(&err), exit::UNAVAILABLE);
        let text = err.to_string();
        assert!(
            text.contains(&size.to_string()) && text.contains("10 bytes"),
            "{text}"
        );
    }

    #[test]
    fn wire_size_counts_crlf_forms_alike() {
        for text in ["a\nb\n", "a\r\nb\r\n", "a\rb\r", "a\nb"] {
            assert_eq!(wire_size(text.as_bytes()), 6, "{text:?}");
        }
        assert_eq!(wire_size(b""), 0);
    }

    #[test]
    fn dsn_parameters_go_where_they_belong() {
        let m = message("Subject: x\r\n\r\nbody\r\n");
        let e = envelope("a@example.test", "b@example.test");
        let dsn = Dsn {
            notify: Some("SUCCESS,FAILURE".into()),
            ret: Some("HDRS".into()),
            envid: Some("id+1=2 x".into()),
        };
        let p = parameters(|k| k == "DSN", None, &e, &m, &dsn).unwrap();
        assert_eq!(p.mail, ["RET=HDRS", "ENVID=id+2B1+3D2+20x"]);
        assert_eq!(p.rcpt, ["NOTIFY=SUCCESS,FAILURE"]);
        let p = parameters(|_| false, None, &e, &m, &dsn).unwrap();
        assert_eq!(p, Parameters::default());
    }
}
