//! Connecting and getting the session ready for mail: TCP or a Unix socket, TLS at
//! once or after STARTTLS, the greeting, EHLO and AUTH.

use std::io::Write;
use std::time::Duration;

use super::Client;
use crate::error::{Error, Stage};
use crate::report::{Phase, Report, TlsStart};
use crate::settings::{self, Settings};
use crate::smtp;
use crate::smtp::auth::{Credentials, Mechanism};
use crate::smtp::session::{Session, Transcript};
use crate::smtp::stage::QuitAfter;
use crate::smtp::tls::{Channel, Connection, Handshake, TlsClient, TlsMode};

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
        // Before connecting: a prompt must not keep a server waiting. A session that
        // stops before AUTH (`--quit-after`) needs none.
        let credentials = match settings.quit_after {
            Some(stop) if stop < QuitAfter::Auth => None,
            _ => settings.credentials()?,
        };
        settings.check_ca_file()?;
        if let Some(t) = &mut transcript {
            t.note(&format!("connecting to {}", settings.server));
        }
        let (connection, ehlo_name, implicit) = match settings.server.unix_path() {
            Some(path) => {
                report.connecting.enter(Phase::Connect);
                let unix = std::os::unix::net::UnixStream::connect(path);
                report.connecting.stop();
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
        let client = (settings.tls.mode != TlsMode::None).then(|| settings.tls_client());
        let mut session = Session::new(connection, settings.timeouts.clone())
            .with_transcript(transcript)
            .with_chunking(settings.chunking)
            .with_lmtp(settings.lmtp);
        if !implicit && settings.server.unix_path().is_none() {
            let limit = settings.timeouts.greeting;
            let after = silence_hint_after(limit);
            session =
                session.with_silence_hint(after, silence_hint(&settings.server, after, limit));
        }
        if let Some(info) = session.stream().tls_info() {
            session.note(&format!("TLS: {info}"));
            report.tls = Some((TlsStart::Implicit, info));
        }
        // `--quit-after connect`: nothing is said, not even QUIT, which may not come
        // before the greeting (RFC 5321 §3.1).
        let ready = match settings.quit_after {
            Some(QuitAfter::Connect) => Ok(true),
            _ => establish(
                &mut session,
                settings,
                client.as_ref(),
                &ehlo_name,
                credentials.as_ref(),
            ),
        };
        // A stream that is TLS now and was not at first went through STARTTLS.
        if !implicit && let Some(info) = session.stream().tls_info() {
            report.tls = Some((TlsStart::StartTls, info));
        }
        match ready {
            Ok(stopped) => Ok(Client {
                session,
                report: std::mem::take(report),
                dsn: settings.dsn.clone(),
                needs_reset: false,
                ehlo_name,
                stopped: stopped.then_some(settings.quit_after).flatten(),
            }),
            Err(e) => {
                session.abort();
                report.session = session.take_record();
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
}

/// A TCP connection to the server, under TLS at once where the mode says so; with
/// the EHLO name and whether TLS was implicit.
fn connect_tcp(
    settings: &Settings,
    transcript: &mut Option<Transcript>,
    report: &mut Report,
) -> Result<(Connection, String, bool), Error> {
    report.connecting.enter(Phase::Connect);
    let tcp = smtp::transport::connect(&settings.server, settings.timeouts.connect, settings.dial);
    report.connecting.stop();
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
    let implicit = settings.implicit_tls();
    let connection = if implicit {
        let client = settings.tls_client();
        report.connecting.enter(Phase::Tls);
        let shaken = client.handshake(tcp, Handshake::Implicit);
        report.connecting.stop();
        shaken?
    } else {
        Connection::Plain(tcp)
    };
    Ok((connection, ehlo_name, implicit))
}

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

/// The policy of a session after connecting: greeting and EHLO, STARTTLS where the
/// mode asks for it, AUTH when credentials are given. True when it stopped before the
/// end, where `--quit-after` asks.
pub(super) fn establish<S: Channel>(
    session: &mut Session<S>,
    settings: &Settings,
    client: Option<&TlsClient<'_>>,
    ehlo_name: &str,
    credentials: Option<&Credentials>,
) -> Result<bool, Error> {
    let stop_after = |stage| settings.quit_after == Some(stage);
    let loopback = session.stream().peer_is_loopback();
    session.greeting()?;
    if stop_after(QuitAfter::Greeting) {
        return Ok(true);
    }
    session.ehlo(ehlo_name)?;
    if stop_after(QuitAfter::Ehlo) {
        return Ok(true);
    }
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
        start_tls(session, client, ehlo_name)?;
    }
    // Where no TLS is to be had, the stage is passed as it would be in a real session.
    if stop_after(QuitAfter::Tls) {
        return Ok(true);
    }
    if let Some(credentials) = credentials {
        authenticate(session, settings, credentials)?;
    }
    Ok(stop_after(QuitAfter::Auth))
}

/// STARTTLS, the handshake, and EHLO again over TLS.
pub(super) fn start_tls<S: Channel>(
    session: &mut Session<S>,
    client: &TlsClient<'_>,
    ehlo_name: &str,
) -> Result<(), Error> {
    session.starttls()?;
    let discarded = session.upgrade(|stream| stream.start_tls(client))?;
    if discarded > 0 {
        session.note(&format!(
            "discarded {discarded} bytes the server sent before TLS began (RFC 3207 §4.2)"
        ));
    }
    if let Some(info) = session.stream().tls_info() {
        session.note(&format!("TLS: {info}"));
    }
    session.ehlo(ehlo_name)?;
    Ok(())
}

/// Credentials never go in clear to a server that is not on this machine.
pub(super) fn credentials_may_go<S: Channel>(
    session: &Session<S>,
    server: &dyn std::fmt::Display,
) -> Result<(), Error> {
    let stream = session.stream();
    if stream.is_tls() || stream.peer_is_loopback() {
        return Ok(());
    }
    Err(Error::Unsupported(format!(
        "outbox does not send credentials in clear to {server}, which is not on this \
         machine: use TLS (--tls starttls, or --tls implicit on port 465)"
    )))
}

/// AUTH with the configured mechanism, or the strongest the server offers.
/// Credentials never go in clear to a server that is not on this machine.
fn authenticate<S: Channel>(
    session: &mut Session<S>,
    settings: &Settings,
    credentials: &Credentials,
) -> Result<(), Error> {
    credentials_may_go(session, &settings.server)?;
    let tls = session.stream().is_tls();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_silence_hint_comes_after_10_s_or_half_a_shorter_limit() {
        let secs = Duration::from_secs;
        assert_eq!(silence_hint_after(secs(300)), secs(10));
        assert_eq!(silence_hint_after(secs(3)), Duration::from_millis(1500));
        assert_eq!(seconds(secs(10)), "10");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5");
    }
}
