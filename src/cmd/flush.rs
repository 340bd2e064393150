//! `outbox queue flush` (and sendmail's `-q`): delivers what waits in the queue, one
//! connection per server, bounces what fails for good or waits too long, and logs
//! each outcome.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use outbox::cli::Cli;
use outbox::config::Config;
use outbox::error::Error;
use outbox::mode::Mode;
use outbox::outcome::{Outcome, Refusal};
use outbox::queue::{Folder, Listed, Locked, Notes, Pick, Queue, describe_duration};
use outbox::smtp::dsn::Dsn;
use outbox::{Address, Client, Outgoing, Receipt, Series, Settings, exit};

use super::bounce::{self, Fate, Original};
use super::mta::{Attempt, LogDefault, Mta};
use super::output::{out, say};

/// How many times the bounces a flush made are tried in the same flush: a bounce's
/// failure may make a notice to `bounce_to`, whose own failure makes none.
const BOUNCE_ROUNDS: usize = 3;

/// Delivers what `pick` says. Entries are grouped by the settings their sender picks
/// (the account whose `from` it is, else the default), and each group goes over one
/// connection. An entry past the queue lifetime gets one last try, then moves to
/// `failed`. A failure for good gets a bounce, queued and sent over a connection of
/// the same settings before the flush ends. Trouble with one entry is reported and
/// the flush goes on.
pub fn flush(verbose: bool, pick: Pick) -> anyhow::Result<u8> {
    let (code, totals, bounce_totals) = match Mode::detect_for_queue()? {
        // The drops waiting are taken first: without the service running (a machine
        // with no systemd), this from root's cron is what delivers them.
        Mode::System { spool, .. } => {
            super::system_queue::become_service(&spool)?;
            let mut service = super::intake::Service::start(spool, None, verbose)?;
            while service.intake(None) {}
            service.run(None).flush(verbose, pick)
        }
        Mode::Personal { .. } => {
            let (queue, base, config) = super::queue::open_personal_queue()?;
            let mta = Mta::new(&base, LogDefault::Syslog);
            let run = Run {
                queue: &queue,
                base: &base,
                config: config.as_ref(),
                mta: &mta,
                stop: None,
            };
            run.flush(verbose, pick)
        }
    };
    // Quiet for cron, which mails whatever a job prints.
    if verbose || std::io::stdout().is_terminal() {
        out!(
            "delivered {}, deferred {}, failed {}, skipped (in use) {}",
            totals.delivered,
            totals.deferred,
            totals.failed,
            totals.skipped
        );
        let Totals {
            delivered,
            deferred,
            failed,
            ..
        } = bounce_totals;
        if delivered + deferred + failed > 0 {
            out!("bounces: sent {delivered}, deferred {deferred}, refused {failed}");
        }
    }
    Ok(code)
}

/// What a flush works with: the queue, the settings without an account, the
/// configuration that picks each entry's, the log, and (for the service) the flag
/// that asks it to stop after the message on the wire.
pub struct Run<'a> {
    pub queue: &'a Queue,
    pub base: &'a Settings,
    pub config: Option<&'a Config>,
    pub mta: &'a Mta,
    pub stop: Option<&'a AtomicBool>,
}

impl Run<'_> {
    /// One flush of what `pick` says; the exit code, what was done with the queued
    /// messages, and what with the bounces.
    pub fn flush(&self, verbose: bool, pick: Pick) -> (u8, Totals, Totals) {
        let Run {
            queue,
            base,
            config,
            mta,
            stop,
        } = *self;
        let now = SystemTime::now();
        let mut groups: BTreeMap<String, (Settings, Vec<String>)> = BTreeMap::new();
        let mut code = exit::OK;
        let listed = match queue.list() {
            Ok(listed) => listed,
            Err(e) => {
                say!("outbox: {e}");
                return (exit::code(&e), Totals::default(), Totals::default());
            }
        };
        for listed in listed {
            let entry = match listed {
                Listed::Entry(entry) => *entry,
                Listed::Corrupt { id, problem } => {
                    say!("outbox: queue entry {id} cannot be read ({problem}); left as it is");
                    code = exit::DATAERR;
                    continue;
                }
            };
            if !pick.takes(&entry, now, base.queue_lifetime) {
                continue;
            }
            // A bounce goes over the account of the message it reports.
            let cli = Cli {
                from: entry.via.clone().or_else(|| entry.from.clone()),
                verbose,
                ..Cli::default()
            };
            let settings = match Settings::resolve(&cli, config) {
                Ok(settings) => settings,
                Err(e) => {
                    say!("outbox: {}: {e}; left in the queue", entry.id);
                    code = exit::code(&e);
                    continue;
                }
            };
            // The DSN requests made when the message was submitted go with it.
            let settings = Settings {
                dsn: entry.dsn.clone(),
                ..settings
            };
            groups
                .entry(session_key(&settings))
                .or_insert_with(|| (settings, Vec::new()))
                .1
                .push(entry.id);
        }
        let mut totals = Totals::default();
        let mut bounce_totals = Totals::default();
        std::thread::scope(|scope| {
            // Removing a delivered entry's file costs about as much as sending it (more,
            // where the filesystem discards freed blocks): that goes on beside the sending,
            // on another thread, told to stop when the sending is over.
            let (over, ended) = mpsc::channel::<()>();
            if !groups.is_empty() {
                scope.spawn(move || sweep_until(queue, &ended));
            }
            for round in 0..=BOUNCE_ROUNDS {
                // The bounces are counted apart: the totals are of what was queued.
                let totals = if round == 0 {
                    &mut totals
                } else {
                    &mut bounce_totals
                };
                let mut bounces = BTreeMap::new();
                for (key, (settings, ids)) in &groups {
                    let flusher = Flusher {
                        queue,
                        mta,
                        settings,
                        lifetime: base.queue_lifetime,
                        pick,
                        stop,
                    };
                    let made = flusher.group(ids, totals);
                    if !made.is_empty() {
                        // A bounce asks for no DSN of its own.
                        let settings = Settings {
                            dsn: Dsn::default(),
                            ..settings.clone()
                        };
                        bounces.insert(key.clone(), (settings, made));
                    }
                }
                if bounces.is_empty() {
                    break;
                }
                // The bounces go over the settings of what they report.
                groups = bounces;
            }
            drop(over);
        });
        queue.sweep();
        if totals.errors + bounce_totals.errors > 0 {
            code = exit::IOERR;
        }
        (code, totals, bounce_totals)
    }
}

/// How long the sweeping thread first waits when it found nothing to remove; each
/// further time it finds nothing it waits twice as long, up to SWEEP_PAUSE_MAX.
const SWEEP_PAUSE: Duration = Duration::from_millis(5);
const SWEEP_PAUSE_MAX: Duration = Duration::from_millis(200);

/// Sweeps the queue until `stop` is closed.
fn sweep_until(queue: &Queue, stop: &mpsc::Receiver<()>) {
    let mut pause = SWEEP_PAUSE;
    loop {
        if queue.sweep() > 0 {
            pause = SWEEP_PAUSE;
            if !matches!(stop.try_recv(), Err(mpsc::TryRecvError::Empty)) {
                return;
            }
        } else {
            if !matches!(
                stop.recv_timeout(pause),
                Err(mpsc::RecvTimeoutError::Timeout)
            ) {
                return;
            }
            pause = (pause * 2).min(SWEEP_PAUSE_MAX);
        }
    }
}

/// What makes two entries go over the same session: the settings of the session,
/// and the DSN requests, which the client makes for every message over it.
fn session_key(s: &Settings) -> String {
    format!(
        "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
        s.server,
        s.lmtp,
        s.auth.as_ref().map(|a| &a.user),
        s.tls,
        s.ehlo_name,
        s.timeouts,
        s.dsn
    )
}

#[derive(Default)]
pub struct Totals {
    delivered: usize,
    deferred: usize,
    failed: usize,
    skipped: usize,
    errors: usize,
}

/// What one group's delivery needs: where the entries are, the log, the settings.
struct Flusher<'a> {
    queue: &'a Queue,
    mta: &'a Mta,
    settings: &'a Settings,
    lifetime: Duration,
    pick: Pick,
    stop: Option<&'a AtomicBool>,
}

impl Flusher<'_> {
    /// Delivers the entries `ids` over one connection; returns the ids of the bounces
    /// it queued.
    fn group(&self, ids: &[String], totals: &mut Totals) -> Vec<String> {
        let transcript = self
            .settings
            .verbose
            .then(|| outbox::Transcript::new(Box::new(std::io::stderr())));
        let mut bounces = Vec::new();
        let mut client = match Client::connect(self.settings, transcript) {
            Ok(c) => c,
            Err(e) => {
                // Nobody is reached: every entry waits for the next flush, or, past the
                // lifetime, is given up.
                say!("outbox: cannot reach {}: {e}", self.settings.server);
                let report = outbox::Report::for_server(&self.settings.server);
                let result = Err(e);
                for id in ids {
                    let done = self.take(id).and_then(|out| match out {
                        Some(out) => self.settle(out, &result, &report, totals, &mut bounces),
                        None => Ok(()),
                    });
                    if let Err(err) = done {
                        say!("outbox: {id}: {err}");
                        totals.errors += 1;
                    }
                }
                return bounces;
            }
        };
        let report = client.report();
        let mut run = FlushRun {
            flusher: self,
            report,
            ids: ids.iter(),
            totals,
            bounces: &mut bounces,
        };
        client.send_series(&mut run);
        client.finish();
        bounces
    }

    /// Entry `id`, locked, if it is still there and, for [`Pick::Due`], still due:
    /// another flush may have sent it, or tried it, since it was listed.
    fn take(&self, id: &str) -> Result<Option<Outgoing<Locked>>, Error> {
        let now = SystemTime::now();
        let Some(mut locked) = self
            .queue
            .lock(id)?
            .filter(|l| self.pick.takes(l.entry(), now, self.lifetime))
        else {
            return Ok(None);
        };
        let envelope = locked.entry().envelope()?;
        let message = locked.open_message()?;
        Ok(Some(Outgoing {
            tag: locked,
            envelope,
            message,
        }))
    }

    /// What one attempt at an entry leaves: removed, kept for later (with the
    /// recipients still to do), or moved to failed, with one bounce queued (its id
    /// added to `bounces`) for what failed for good and, past the queue lifetime,
    /// what waited too long. Each outcome is logged.
    fn settle(
        &self,
        out: Outgoing<Locked>,
        result: &Result<Receipt, Error>,
        report: &outbox::Report,
        totals: &mut Totals,
        bounces: &mut Vec<String>,
    ) -> Result<(), Error> {
        let Outgoing {
            tag: mut locked,
            envelope,
            message,
        } = out;
        let entry = locked.entry().clone();
        let id = entry.id.clone();
        let now = SystemTime::now();
        let outcome = Outcome::of(&envelope, result);
        let mut attempt = Attempt::new(
            &id,
            &envelope,
            self.settings,
            report,
            entry.size,
            entry.created,
        );
        attempt.submitter = entry.uid;
        let more = !outcome.retry.is_empty();
        let failed = !outcome.failed.is_empty();
        let age = entry.age(now);
        let given_up = (more && age >= self.lifetime)
            .then(|| format!("given up after {}", describe_duration(age)));
        if !outcome.accepted.is_empty() && (more || failed) {
            // Who has the message is written down first, in place: the bounce, the
            // failed copy and the new envelope need free space, and if the disk is
            // full (or the flush is killed) a later flush must still not send them a
            // second copy.
            mark_settled(&mut locked, &outcome.accepted);
        }
        let via = entry.via.as_deref().and_then(|v| Address::new(v).ok());
        let original = Original {
            id: &id,
            envelope: &envelope,
            message: &message,
            dsn: &entry.dsn,
            arrival: entry.created,
            via: via.as_ref(),
            notice: entry.notice,
            uid: entry.uid,
        };
        let mut failures = bounce::failures(self.settings, &outcome);
        if let Some(why) = &given_up {
            failures.extend(bounce::expired(self.settings, &outcome, why));
        }
        let fate = (!failures.is_empty()).then(|| self.queue_bounce(&original, failures, bounces));
        let note = fate.as_ref().map(Fate::note);
        if let Some(Fate::Lost(e)) = &fate {
            // Nobody would hear of the failure: it stays in the queue, to be tried
            // (and told) again by a later flush, and is logged as deferred.
            say!("outbox: {id}: its bounce cannot be queued ({e}); left in the queue");
            totals.errors += 1;
            let waiting = Outcome {
                refusals: outcome
                    .refusals
                    .iter()
                    .map(|r| Refusal {
                        permanent: false,
                        ..r.clone()
                    })
                    .collect(),
                accepted: outcome.accepted.clone(),
                accepted_reply: outcome.accepted_reply.clone(),
                ..Outcome::default()
            };
            self.mta.log_outcome(&attempt, &waiting, None);
            let remaining: Vec<String> = outcome
                .retry
                .iter()
                .chain(&outcome.failed)
                .map(ToString::to_string)
                .collect();
            let reason = [outcome.retry_reason.as_str(), &outcome.failed_reason]
                .into_iter()
                .filter(|r| !r.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            return locked.retry_later(&remaining, &reason, now);
        }
        // If what follows cannot record the failure (a full disk), the entry stays as
        // it was and a later flush refuses it, and bounces it, again: the bounce queued
        // for it now is withdrawn, so the sender hears of it once.
        let withdraw = |bounces: &mut Vec<String>| {
            if let Some(Fate::Queued(bounce)) = &fate {
                let _ = self.queue.remove(bounce);
                bounces.retain(|b| b != bounce);
            }
        };
        let names =
            |to: &[Address]| -> Vec<String> { to.iter().map(ToString::to_string).collect() };
        if !more && outcome.accepted.is_empty() {
            // Refused for good, for everyone: the entry itself moves to failed.
            say!("outbox: {id}: not delivered: {}", outcome.failed_reason);
            let moved = locked.fail(
                &names(&outcome.failed),
                &outcome.failed_reason,
                note.clone(),
            );
            if moved.is_err() {
                withdraw(bounces);
            }
            self.mta.log_outcome(&attempt, &outcome, note.as_deref());
            totals.failed += 1;
            return moved;
        }
        if failed {
            let notes = Notes {
                reason: outcome.failed_reason.clone(),
                dsn: entry.dsn.clone(),
                bounce: note.clone(),
                ..Notes::default()
            };
            let from = envelope.from.as_ref();
            let kept =
                match self
                    .queue
                    .keep(Folder::Failed, from, &outcome.failed, &message, &notes, now)
                {
                    Ok(kept) => kept,
                    Err(e) => {
                        withdraw(bounces);
                        return Err(e);
                    }
                };
            say!(
                "outbox: {id}: not delivered: {}; kept as {kept} in failed",
                outcome.failed_reason
            );
            attempt.kept = Some(kept);
            totals.failed += 1;
            if more {
                // Kept in failed once: a new envelope that cannot be written must not
                // have them refused, and kept, again.
                mark_settled(&mut locked, &outcome.failed);
            }
        }
        if !more {
            self.mta.log_outcome(&attempt, &outcome, note.as_deref());
            totals.delivered += 1;
            return locked.delivered();
        }
        if let Some(why) = given_up {
            // The temporary refusals are logged as expired, not deferred.
            let logged = Outcome {
                accepted: outcome.accepted.clone(),
                accepted_reply: outcome.accepted_reply.clone(),
                refusals: outcome.permanent().cloned().collect(),
                ..Outcome::default()
            };
            self.mta.log_outcome(&attempt, &logged, note.as_deref());
            let bounce = note.clone().unwrap_or_default();
            self.mta.log_expired(&attempt, &outcome, &why, &bounce);
            let why = format!("{why}; last error: {}", outcome.retry_reason);
            say!("outbox: {id}: {why}");
            totals.failed += 1;
            let moved = locked.fail(&names(&outcome.retry), &why, note);
            if moved.is_err() && !failed {
                withdraw(bounces);
            }
            return moved;
        }
        self.mta.log_outcome(&attempt, &outcome, note.as_deref());
        totals.deferred += 1;
        locked.retry_later(&names(&outcome.retry), &outcome.retry_reason, now)
    }

    /// Makes the bounce for `failures` and queues it, due at once: this flush sends
    /// it next. Says what became of it.
    fn queue_bounce(
        &self,
        original: &Original,
        failures: Vec<outbox::bounce::Failure>,
        bounces: &mut Vec<String>,
    ) -> Fate {
        let made = match bounce::make(self.settings, self.mta, original, failures) {
            Ok(made) => made,
            Err(fate) => return fate,
        };
        let notes = made.notes("");
        match self.queue.keep(
            Folder::Queue,
            None,
            &made.envelope.to,
            &made.message,
            &notes,
            SystemTime::now(),
        ) {
            Ok(id) => {
                bounces.push(id.clone());
                Fate::Queued(id)
            }
            Err(e) => {
                say!("outbox: {}: cannot queue its bounce: {e}", original.id);
                Fate::Lost(e.to_string())
            }
        }
    }
}

/// The entries of one group as a series of messages over one connection.
struct FlushRun<'a, 'b> {
    flusher: &'a Flusher<'a>,
    /// The connection's, for the log.
    report: outbox::Report,
    ids: std::slice::Iter<'a, String>,
    totals: &'b mut Totals,
    bounces: &'b mut Vec<String>,
}

impl Series for FlushRun<'_, '_> {
    type Tag = Locked;

    /// The next entry that is still to be tried and free: locked, with its message open.
    fn next(&mut self) -> Option<Outgoing<Locked>> {
        // Asked to stop: what is on the wire is finished, nothing more is begun.
        if self.flusher.stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return None;
        }
        for id in self.ids.by_ref() {
            match self.flusher.take(id) {
                Ok(Some(out)) => return Some(out),
                Ok(None) => self.totals.skipped += 1,
                Err(e) => {
                    say!("outbox: {id}: {e}");
                    self.totals.errors += 1;
                }
            }
        }
        None
    }

    fn done(&mut self, out: Outgoing<Locked>, result: Option<Result<Receipt, Error>>) {
        // Not tried (the connection was lost first): left as it was for the next flush.
        let Some(result) = result else { return };
        let id = out.tag.entry().id.clone();
        if let Err(e) = self
            .flusher
            .settle(out, &result, &self.report, self.totals, self.bounces)
        {
            say!("outbox: {id}: {e}");
            self.totals.errors += 1;
        }
    }
}

/// Marks `settled` in place. If that fails (an I/O error; on a copy-on-write
/// filesystem even an overwrite may need space) the new envelope written next still
/// drops them, so it is said and the settling goes on.
fn mark_settled(locked: &mut Locked, settled: &[Address]) {
    if let Err(e) = locked.settle_in_place(settled) {
        say!("outbox: {e}");
    }
}
