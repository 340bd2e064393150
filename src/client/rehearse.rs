//! `--quit-after`: a session that goes as far as a stage and stops there with QUIT,
//! sending no message, to see what a server would say (will it take these
//! recipients?) at no cost to anyone's mailbox.

use std::time::Instant;

use super::send::prepare;
use super::{Client, Options};
use crate::error::Error;
use crate::report::Report;
use crate::settings::Settings;
use crate::smtp::receipt::RecipientResult;
use crate::smtp::stage::QuitAfter;
use crate::{Envelope, Message};

/// How far a rehearsal went, and what the server said of each recipient (when it
/// went as far as RCPT).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rehearsal {
    pub stopped_after: QuitAfter,
    pub recipients: Vec<RecipientResult>,
}

impl Rehearsal {
    /// The recipients the server refused, in envelope order.
    pub fn refused(&self) -> Vec<RecipientResult> {
        crate::smtp::receipt::refused(&self.recipients)
    }
}

impl Client {
    /// The transaction as far as `stop` (MAIL, RCPT or DATA), with the parameters the
    /// message would be sent with, so the server answers as it would for it (SIZE,
    /// SMTPUTF8...). A session already stopped before the transaction sends nothing.
    pub fn rehearse(
        &mut self,
        envelope: &Envelope,
        message: &Message,
        stop: QuitAfter,
    ) -> Result<Rehearsal, Error> {
        let stopped_after = self.stopped.unwrap_or(stop);
        if self.stopped.is_some() || stop < QuitAfter::Mail {
            return Ok(Rehearsal {
                stopped_after,
                recipients: Vec::new(),
            });
        }
        let (envelope, params, _) = prepare(&mut self.session, envelope, message, &self.dsn)?;
        let recipients = self.session.rehearse(&envelope, &params, stop)?;
        Ok(Rehearsal {
            stopped_after,
            recipients,
        })
    }
}

/// As [`super::submit_reported`], but only as far as `settings.quit_after` (which
/// must be set): a session to that stage, then QUIT; with the report of what it did.
pub fn rehearse_reported(
    settings: &Settings,
    envelope: &Envelope,
    message: &Message,
    options: Options,
) -> (Result<Rehearsal, Error>, Report) {
    let start = Instant::now();
    let mut report = Report::for_server(&settings.server);
    let stop = settings.quit_after.unwrap_or(QuitAfter::Rcpt);
    let (result, mut report) = match Client::open(settings, options.transcript, &mut report) {
        Ok(mut client) => {
            let result = client.rehearse(envelope, message, stop);
            (result, client.finish())
        }
        Err(e) => (Err(e), report),
    };
    let result = result.map_err(|e| super::advice::advise(e, settings));
    report.total = Some(start.elapsed());
    (result, report)
}
