//! The client: a session with a mail server got ready as the settings ask, over which
//! messages go one after the other or as a pipelined series; and [`submit_reported`],
//! which does that for one message and says what the session did.

mod advice;
mod connect;
mod parameters;
mod rehearse;
mod send;
mod tester;

pub use parameters::{Dsn, Parameters, parameters};
pub use rehearse::{Rehearsal, rehearse_reported};
pub use send::{Outgoing, Series};
#[cfg(test)]
pub(crate) use send::{deliver, send_series_on};

use std::time::Instant;

use crate::error::Error;
use crate::progress::Progress;
use crate::report::Report;
use crate::settings::Settings;
use crate::smtp::receipt::Receipt;
use crate::smtp::session::{Session, Transcript};
use crate::smtp::stage::QuitAfter;
use crate::smtp::tls::Connection;
use crate::{Envelope, Message};

/// As [`crate::submit`], writing the dialogue to `transcript` if given.
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

/// As [`crate::submit`], with the report of what the session did (for `--json`): filled
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
    /// What was done before the session (connecting, TLS); the session keeps its own
    /// record, joined to this one in [`Client::report`] and [`Client::finish`].
    report: Report,
    dsn: Dsn,
    /// The last transaction failed part-way: RSET before the next (RFC 5321 §4.1.1.5).
    needs_reset: bool,
    /// The name given in EHLO, given again after STARTTLS.
    ehlo_name: String,
    /// The session stopped there, as `--quit-after` asked: nothing more is sent.
    stopped: Option<QuitAfter>,
}

impl Client {
    /// Sends one message. After a failed transaction the next begins with RSET, so it
    /// can follow on the same connection.
    pub fn send(&mut self, envelope: &Envelope, message: &Message) -> Result<Receipt, Error> {
        if self.needs_reset {
            self.session.rset()?;
        }
        let result = send::send_on(&mut self.session, envelope, message, &self.dsn);
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
            send::send_series_on(&mut self.session, &self.dsn, series);
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

    /// What the client and the session have done so far.
    pub fn report(&self) -> Report {
        Report {
            session: self.session.record().clone(),
            ..self.report.clone()
        }
    }

    /// Ends the session with QUIT where the connection still allows it. Whatever was
    /// accepted is the server's already: a failed goodbye changes nothing. Returns the
    /// report of the session.
    pub fn finish(mut self) -> Report {
        if self.stopped == Some(QuitAfter::Connect) {
            // Nothing may be said before the greeting, QUIT included: the connection
            // just closes.
            self.session
                .hang_up("--quit-after connect: not even QUIT comes before the greeting");
        }
        if self.session.is_usable()
            && let Err(e) = self.session.quit()
        {
            self.session.note(&format!("QUIT failed: {e}"));
        }
        let mut report = std::mem::take(&mut self.report);
        report.session = self.session.take_record();
        report
    }
}

pub(crate) fn verbose_transcript(settings: &Settings) -> Option<Transcript> {
    settings
        .verbose
        .then(|| Transcript::new(Box::new(std::io::stderr())))
}

/// An envelope from `from` to `to`, for the unit tests of the client's parts.
#[cfg(test)]
fn test_envelope(from: &str, to: &str) -> Envelope {
    use crate::envelope::Address;
    Envelope::new(
        Some(Address::new(from).unwrap()),
        [Address::new(to).unwrap()],
    )
}
