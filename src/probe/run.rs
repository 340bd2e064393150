//! The probe's session: connect, TLS at once where the port or `--tls implicit` says
//! so, the greeting, EHLO (HELO where EHLO is refused), STARTTLS wherever it is
//! offered (to loopback too: the point is to see the certificate) unless `--tls
//! none`, EHLO again, QUIT. No MAIL, no AUTH: no credential is ever asked for or sent.

use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Began, Failure, Offered, Probe, Step, Thresholds, inspect};
use crate::error::{Error, Stage};
use crate::exit;
use crate::settings::{self, Settings};
use crate::smtp::command::Command;
use crate::smtp::extension::Capabilities;
use crate::smtp::reply::{Reply, sanitize};
use crate::smtp::session::{Session, Transcript};
use crate::smtp::tls::{Channel, Connection, TlsClient, TlsMode};
use crate::smtp::transport;

/// Probes the server of `settings`, writing the dialogue to `transcript` if given.
/// An error is a probe that found nothing to report: the server could not be reached,
/// did not greet, or refused EHLO and HELO. Whatever fails later (STARTTLS refused, a
/// failed handshake) is in the report, with what came before it.
pub fn probe(
    settings: &Settings,
    mut transcript: Option<Transcript>,
    thresholds: Thresholds,
) -> Result<Probe, Error> {
    if settings.server.unix_path().is_some() {
        return Err(Error::Usage(format!(
            "outbox probe speaks to a server over TCP; {} is a Unix socket",
            settings.server
        )));
    }
    settings.check_ca_file()?;
    let start = Instant::now();
    let mut timings = Vec::new();
    if let Some(t) = &mut transcript {
        t.note(&format!("connecting to {}", settings.server));
    }
    let tcp = timed(&mut timings, Step::Connect, || {
        transport::connect(&settings.server, settings.timeouts.connect, settings.dial)
    })?;
    let peer = tcp.peer_addr().ok();
    if let (Some(t), Some(peer)) = (&mut transcript, peer) {
        t.note(&format!("connected to {peer}"));
    }
    let ehlo_name = settings
        .ehlo_name
        .clone()
        .unwrap_or_else(|| settings::default_ehlo_name(tcp.local_addr().ok().map(|a| a.ip())));
    let client = settings.tls_client();
    let implicit = settings.implicit_tls();
    let (connection, tls) = match implicit {
        true => {
            let (connection, report) = timed(&mut timings, Step::TlsHandshake, || {
                inspect::handshake(&client, tcp, Began::Implicit)
            })?;
            (connection, Some(report))
        }
        false => (Connection::Plain(tcp), None),
    };
    let mut session =
        Session::new(connection, settings.timeouts.clone()).with_transcript(transcript);
    if let Some(info) = session.stream().tls_info() {
        session.note(&format!("TLS: {info}"));
    }
    let mut probe = Probe {
        server: settings.server.to_string(),
        peer: peer.map(|p| p.to_string()),
        loopback: peer.is_some_and(|p| p.ip().is_loopback()),
        mode: settings.tls.mode,
        greeting: Vec::new(),
        clear: None,
        under_tls: None,
        tls,
        failure: None,
        timings: Vec::new(),
        total: Duration::ZERO,
        now: unix_now(),
        thresholds,
    };
    let greeted = timed(&mut timings, Step::Greeting, || session.greeting())
        .map_err(|e| silent_greeting_hint(e, implicit))
        .and_then(|greeting| {
            probe.greeting = greeting.lines.iter().map(|l| sanitize(l)).collect();
            timed(&mut timings, Step::Ehlo, || hello(&mut session, &ehlo_name))
        });
    let first = match greeted {
        Ok(first) => first,
        Err(e) => {
            session.abort();
            return Err(e);
        }
    };
    let offers_starttls = first.has("STARTTLS");
    match implicit {
        true => probe.under_tls = Some(first),
        false => probe.clear = Some(first),
    }
    if !implicit && offers_starttls && settings.tls.mode != TlsMode::None {
        if let Err(e) = starttls(&mut session, &client, &ehlo_name, &mut timings, &mut probe) {
            probe.failure = Some(failure(&e));
        }
        probe.now = unix_now();
    }
    probe.timings = timings;
    probe.total = start.elapsed();
    if session.is_usable()
        && let Err(e) = session.quit()
    {
        session.note(&format!("QUIT failed: {e}"));
    }
    Ok(probe)
}

/// STARTTLS, the handshake and EHLO again, each kept in `probe` as it comes: the TLS
/// report once the handshake is done, then what the server offers under TLS.
fn starttls(
    session: &mut Session<Connection>,
    client: &TlsClient<'_>,
    ehlo_name: &str,
    timings: &mut Vec<(Step, Duration)>,
    probe: &mut Probe,
) -> Result<(), Error> {
    timed(timings, Step::StartTls, || session.starttls())?;
    let mut report = None;
    let upgraded = timed(timings, Step::TlsHandshake, || {
        session.upgrade(|stream| {
            let tcp = plain_socket(stream)?;
            let (tls, found) = inspect::handshake(client, tcp, Began::StartTls)?;
            *stream = tls;
            report = Some(found);
            Ok(())
        })
    });
    let discarded = upgraded?;
    if discarded > 0 {
        session.note(&format!(
            "discarded {discarded} bytes the server sent before TLS began (RFC 3207 §4.2)"
        ));
    }
    if let Some(info) = session.stream().tls_info() {
        session.note(&format!("TLS: {info}"));
    }
    if report.is_none() {
        return Err(Error::Protocol {
            stage: Stage::TlsHandshake,
            detail: "the handshake left no TLS session".into(),
        });
    }
    probe.tls = report;
    probe.under_tls = Some(timed(timings, Step::EhloTls, || hello(session, ehlo_name))?);
    Ok(())
}

/// The socket under a connection still in clear, for the handshake to take over.
fn plain_socket(stream: &Connection) -> Result<TcpStream, Error> {
    match stream {
        // The clone shares the socket; dropping the plain handle leaves it open.
        Connection::Plain(tcp) => tcp.try_clone().map_err(|source| Error::Network {
            stage: Stage::TlsHandshake,
            source,
        }),
        _ => Err(Error::Protocol {
            stage: Stage::StartTls,
            detail: "TLS is already on".into(),
        }),
    }
}

/// EHLO; HELO when the server refuses EHLO permanently (RFC 5321 §4.1.4). The reply
/// is read here rather than by the session's own EHLO, to tell HELO apart.
fn hello(session: &mut Session<Connection>, name: &str) -> Result<Offered, Error> {
    let command = |c: Result<Command, _>| c.map_err(|e| Error::Usage(format!("{e}")));
    let reply = session
        .exchange(&command(Command::ehlo(name))?)
        .map_err(|e| restage(e, Stage::Ehlo))?;
    if reply.code == 250 {
        return Ok(Offered::of(&Capabilities::from_ehlo(&reply)));
    }
    if !reply.is_permanent() {
        return Err(refused(Stage::Ehlo, reply));
    }
    let reply = session
        .exchange(&command(Command::helo(name))?)
        .map_err(|e| restage(e, Stage::Helo))?;
    if reply.code != 250 {
        return Err(refused(Stage::Helo, reply));
    }
    Ok(Offered {
        helo: true,
        ..Offered::of(&Capabilities::from_ehlo(&reply))
    })
}

/// An error of [`Session::exchange`], which names no command, named for `stage`.
fn restage(e: Error, stage: Stage) -> Error {
    match e {
        Error::Timeout { after, .. } => Error::Timeout { stage, after },
        Error::Closed { .. } => Error::Closed { stage },
        Error::Network { source, .. } => Error::Network { stage, source },
        Error::Protocol { detail, .. } => Error::Protocol { stage, detail },
        e => e,
    }
}

/// The error for a reply other than 250 to EHLO or HELO.
fn refused(stage: Stage, reply: Reply) -> Error {
    match reply.code {
        400..=599 => Error::Refused { stage, reply },
        _ => Error::Unexpected {
            stage,
            expected: "250",
            reply,
        },
    }
}

/// A server on an implicit-TLS port says nothing until the client begins: a greeting
/// that never came there is the likely mistake.
fn silent_greeting_hint(e: Error, implicit: bool) -> Error {
    match e {
        Error::Timeout {
            stage: Stage::Greeting,
            ..
        } if !implicit => Error::Hint {
            error: Box::new(e),
            hint: "a server that speaks implicit TLS (as on port 465) waits in silence for \
                   the client to begin; if this is such a port, use --tls implicit"
                .into(),
        },
        e => e,
    }
}

fn failure(e: &Error) -> Failure {
    let message = e.to_string();
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Failure {
        stage: e.stage().map_or("probe", Stage::key),
        message: lines.join(" "),
        exit_code: exit::code(e),
    }
}

fn timed<T>(timings: &mut Vec<(Step, Duration)>, step: Step, f: impl FnOnce() -> T) -> T {
    let began = Instant::now();
    let out = f();
    timings.push((step, began.elapsed()));
    out
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
