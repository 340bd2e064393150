//! `outbox queue list|flush|remove`: the messages kept for later delivery.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};

use outbox::cli::Cli;
use outbox::config::Config;
use outbox::error::Error;
use outbox::outcome::Outcome;
use outbox::queue::{Entry, Listed, Locked, Queue, describe_duration};
// Which entries a flush takes is queue policy; the sendmail face (`-q`) names it here.
pub use outbox::queue::Pick;
use outbox::{Address, Client, Outgoing, Receipt, Series, Settings, Transcript, exit};

use super::output::{self, out, say};

/// The queue of messages that could not be delivered yet.
#[derive(Parser, Debug)]
#[command(name = "outbox queue")]
struct QueueCli {
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(Subcommand, Debug)]
enum QueueCommand {
    /// Show queued messages: id, age, size, recipients, last error
    List {
        /// Show the messages that failed for good instead
        #[arg(long)]
        failed: bool,
    },
    /// Try every queued message now, over one connection per server
    Flush {
        /// Show the SMTP dialogue on standard error
        #[arg(short = 'v', long)]
        verbose: bool,
        /// Only the messages whose next attempt is due by the retry back-off (for cron
        /// and timers)
        #[arg(long)]
        due: bool,
    },
    /// Remove messages from the queue
    Remove {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

pub fn run(args: &[OsString]) -> anyhow::Result<u8> {
    let argv = std::iter::once(OsString::from("outbox queue")).chain(args.iter().cloned());
    let cli = match QueueCli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Ok(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    match cli.command {
        QueueCommand::List { failed } => list(failed),
        QueueCommand::Flush { verbose, due } => {
            flush(verbose, if due { Pick::Due } else { Pick::Everything })
        }
        QueueCommand::Remove { ids } => remove(&ids),
    }
}

/// The configuration's default settings, and the queue they name.
fn open_queue() -> anyhow::Result<(Queue, Settings, Option<Config>)> {
    let config = super::load_config()?;
    let settings = Settings::resolve(&Cli::default(), config.as_ref())?;
    Ok((Queue::open(&settings.queue_dir())?, settings, config))
}

pub fn list(failed: bool) -> anyhow::Result<u8> {
    let (queue, _, _) = open_queue()?;
    let entries = if failed {
        queue.list_failed()?
    } else {
        queue.list()?
    };
    // The listing is what was asked for: one that cannot be written is a failure
    // (74), but a reader that stops early (`| head`) is not.
    if let Err(e) = output::stdout_text(&listing(&entries, failed, SystemTime::now())) {
        say!("outbox: cannot write the listing to standard output: {e}");
        return Ok(exit::IOERR);
    }
    Ok(exit::OK)
}

/// The text `queue list` prints for `entries`.
fn listing(entries: &[Listed], failed: bool, now: SystemTime) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    if entries.is_empty() {
        let what = if failed {
            "the failed folder"
        } else {
            "the queue"
        };
        let _ = writeln!(text, "{what} is empty");
        return text;
    }
    for listed in entries {
        match listed {
            Listed::Entry(e) => {
                let _ = writeln!(
                    text,
                    "{}  {:>6}  {:>8} bytes  attempts {}  from <{}>",
                    e.id,
                    describe_duration(e.age(now)),
                    e.size,
                    e.attempts,
                    e.from.as_deref().unwrap_or("")
                );
                let _ = writeln!(text, "    to: {}", e.recipients.join(", "));
                if let Some(error) = &e.last_error {
                    let _ = writeln!(text, "    last error: {error}");
                }
                if !failed && !e.is_due(now) {
                    let wait = e.next_attempt.duration_since(now).unwrap_or_default();
                    let _ = writeln!(text, "    next attempt in {}", describe_duration(wait));
                }
            }
            Listed::Corrupt { id, problem } => {
                let _ = writeln!(text, "{id}  (cannot be read: {problem})");
            }
        }
    }
    text
}

fn remove(ids: &[String]) -> anyhow::Result<u8> {
    let (queue, _, _) = open_queue()?;
    let mut code = exit::OK;
    for id in ids {
        match queue.remove(id) {
            Ok(()) => {
                queue.sweep();
                out!("removed {id}");
            }
            Err(e) => {
                say!("outbox: {id}: {e}");
                code = exit::code(&e);
            }
        }
    }
    Ok(code)
}

/// Delivers what `pick` says. Entries are grouped by the settings their sender picks
/// (the account whose `from` it is, else the default), and each group goes over one
/// connection. An entry past the queue lifetime gets one last try, then moves to
/// `failed`. Trouble with one entry is reported and the flush goes on.
pub fn flush(verbose: bool, pick: Pick) -> anyhow::Result<u8> {
    let (queue, base, config) = open_queue()?;
    let now = SystemTime::now();
    let mut groups: BTreeMap<String, (Settings, Vec<Entry>)> = BTreeMap::new();
    let mut code = exit::OK;
    for listed in queue.list()? {
        let entry = match listed {
            Listed::Entry(entry) => entry,
            Listed::Corrupt { id, problem } => {
                say!("outbox: queue entry {id} cannot be read ({problem}); left as it is");
                code = exit::DATAERR;
                continue;
            }
        };
        if !pick.takes(&entry, now, base.queue_lifetime) {
            continue;
        }
        let cli = Cli {
            from: entry.from.clone(),
            verbose,
            ..Cli::default()
        };
        match Settings::resolve(&cli, config.as_ref()) {
            Ok(settings) => groups
                .entry(session_key(&settings))
                .or_insert_with(|| (settings, Vec::new()))
                .1
                .push(entry),
            Err(e) => {
                say!("outbox: {}: {e}; left in the queue", entry.id);
                code = exit::code(&e);
            }
        }
    }
    let mut totals = Totals::default();
    std::thread::scope(|scope| {
        // Removing a delivered entry's file costs about as much as sending it (more,
        // where the filesystem discards freed blocks): that goes on beside the sending,
        // on another thread, told to stop when the sending is over.
        let (over, stop) = mpsc::channel::<()>();
        if !groups.is_empty() {
            let queue = &queue;
            scope.spawn(move || sweep_until(queue, &stop));
        }
        for (settings, entries) in groups.values() {
            flush_group(
                &queue,
                settings,
                base.queue_lifetime,
                pick,
                entries,
                &mut totals,
            );
        }
        drop(over);
    });
    queue.sweep();
    if totals.errors > 0 {
        code = exit::IOERR;
    }
    // Quiet for cron, which mails whatever a job prints.
    if verbose || std::io::stdout().is_terminal() {
        out!(
            "delivered {}, deferred {}, failed {}, skipped (in use) {}",
            totals.delivered,
            totals.deferred,
            totals.failed,
            totals.skipped
        );
    }
    Ok(code)
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

/// What makes two entries go over the same session.
fn session_key(s: &Settings) -> String {
    format!(
        "{}|{:?}|{:?}|{:?}|{:?}",
        s.server,
        s.auth.as_ref().map(|a| &a.user),
        s.tls,
        s.ehlo_name,
        s.timeouts
    )
}

#[derive(Default)]
struct Totals {
    delivered: usize,
    deferred: usize,
    failed: usize,
    skipped: usize,
    errors: usize,
}

fn flush_group(
    queue: &Queue,
    settings: &Settings,
    lifetime: Duration,
    pick: Pick,
    entries: &[Entry],
    totals: &mut Totals,
) {
    let transcript = settings
        .verbose
        .then(|| Transcript::new(Box::new(std::io::stderr())));
    let mut client = match Client::connect(settings, transcript) {
        Ok(c) => c,
        Err(e) => {
            // Nobody is reached: every entry waits for the next flush, or, past the
            // lifetime, is given up.
            say!("outbox: cannot reach {}: {e}", settings.server);
            for entry in entries {
                let done = queue.lock(&entry.id).and_then(|locked| match locked {
                    Some(locked) => {
                        let remaining = locked.entry().recipients.clone();
                        settle_later(locked, &remaining, &e.to_string(), lifetime, totals)
                    }
                    None => Ok(()),
                });
                if let Err(err) = done {
                    say!("outbox: {}: {err}", entry.id);
                    totals.errors += 1;
                }
            }
            return;
        }
    };
    let mut run = FlushRun {
        queue,
        lifetime,
        pick,
        entries: entries.iter(),
        totals,
    };
    client.send_series(&mut run);
    client.finish();
}

/// The entries of one group as a series of messages over one connection.
struct FlushRun<'a> {
    queue: &'a Queue,
    lifetime: Duration,
    pick: Pick,
    entries: std::slice::Iter<'a, Entry>,
    totals: &'a mut Totals,
}

impl Series for FlushRun<'_> {
    type Tag = Locked;

    /// The next entry that is still to be tried and free: locked, with its message open.
    fn next(&mut self) -> Option<Outgoing<Locked>> {
        for entry in self.entries.by_ref() {
            match take(self.queue, &entry.id, self.lifetime, self.pick) {
                Ok(Some(out)) => return Some(out),
                Ok(None) => self.totals.skipped += 1,
                Err(e) => {
                    say!("outbox: {}: {e}", entry.id);
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
        if let Err(e) = settle(self.queue, out, &result, self.lifetime, self.totals) {
            say!("outbox: {id}: {e}");
            self.totals.errors += 1;
        }
    }
}

/// Entry `id`, locked, if it is still there and, for [`Pick::Due`], still due:
/// another flush may have sent it, or tried it, since it was listed.
fn take(
    queue: &Queue,
    id: &str,
    lifetime: Duration,
    pick: Pick,
) -> Result<Option<Outgoing<Locked>>, Error> {
    let now = SystemTime::now();
    let Some(mut locked) = queue
        .lock(id)?
        .filter(|l| pick.takes(l.entry(), now, lifetime))
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

/// What one attempt at an entry leaves: removed, kept for later (with the recipients
/// still to do), or moved to failed.
fn settle(
    queue: &Queue,
    out: Outgoing<Locked>,
    result: &Result<Receipt, Error>,
    lifetime: Duration,
    totals: &mut Totals,
) -> Result<(), Error> {
    let Outgoing {
        tag: mut locked,
        envelope,
        message,
    } = out;
    let id = locked.entry().id.clone();
    let now = SystemTime::now();
    let outcome = Outcome::of(&envelope, result);
    if outcome.accepted.is_empty() && outcome.retry.is_empty() {
        // Refused for good, for everyone: the entry itself moves to failed.
        say!("outbox: {id}: not delivered: {}", outcome.failed_reason);
        totals.failed += 1;
        return locked.fail(&outcome.failed_reason);
    }
    let more = !outcome.retry.is_empty();
    if more || !outcome.failed.is_empty() {
        // Who has the message is written down first, in place: the failed copy and the
        // new envelope need free space, and if the disk is full a later flush must
        // still not send them a second copy.
        mark_settled(&mut locked, &outcome.accepted);
    }
    if !outcome.failed.is_empty() {
        let kept = queue.store_failed(
            envelope.from.as_ref(),
            &outcome.failed,
            &message,
            &outcome.failed_reason,
            now,
        )?;
        say!(
            "outbox: {id}: not delivered: {}; kept as {kept} in failed",
            outcome.failed_reason
        );
        totals.failed += 1;
        if more {
            // Kept in failed once: a new envelope that cannot be written must not
            // have them refused, and kept, again.
            mark_settled(&mut locked, &outcome.failed);
        }
    }
    if outcome.retry.is_empty() {
        totals.delivered += 1;
        return locked.delivered();
    }
    let remaining: Vec<String> = outcome.retry.iter().map(|a| a.to_string()).collect();
    settle_later(locked, &remaining, &outcome.retry_reason, lifetime, totals)
}

/// Marks `settled` in place. If that fails (an I/O error; on a copy-on-write
/// filesystem even an overwrite may need space) the new envelope written next still
/// drops them, so it is said and the settling goes on.
fn mark_settled(locked: &mut Locked, settled: &[Address]) {
    if let Err(e) = locked.settle_in_place(settled) {
        say!("outbox: {e}");
    }
}

/// Keeps an entry for later, or, past the queue lifetime, gives it up.
fn settle_later(
    locked: Locked,
    remaining: &[String],
    reason: &str,
    lifetime: Duration,
    totals: &mut Totals,
) -> Result<(), Error> {
    let now = SystemTime::now();
    let age = locked.entry().age(now);
    if age >= lifetime {
        say!(
            "outbox: {} has waited {} and is given up: {reason}",
            locked.entry().id,
            describe_duration(age)
        );
        totals.failed += 1;
        return locked.fail(&format!(
            "given up after {}; last error: {reason}",
            describe_duration(age)
        ));
    }
    totals.deferred += 1;
    locked.retry_later(remaining, reason, now)
}
