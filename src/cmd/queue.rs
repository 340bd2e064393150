//! `outbox queue list|flush|remove`: the messages kept for later delivery.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};

use outbox::cli::Cli;
use outbox::error::Error;
use outbox::outcome::Outcome;
use outbox::queue::{Entry, Listed, Queue};
use outbox::{Client, Message, Settings, Transcript, exit};

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
    /// Deliver the messages that are due, over one connection per server
    Flush {
        /// Show the SMTP dialogue on standard error
        #[arg(short = 'v', long)]
        verbose: bool,
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
        QueueCommand::Flush { verbose } => flush(verbose),
        QueueCommand::Remove { ids } => remove(&ids),
    }
}

/// The queue the configuration names, or the default one.
fn open_queue() -> anyhow::Result<(Queue, Settings)> {
    let config = super::load_config()?;
    let settings = Settings::resolve(&Cli::default(), config.as_ref())?;
    let dir = settings
        .queue_dir
        .clone()
        .unwrap_or_else(Queue::default_dir);
    Ok((Queue::open(&dir)?, settings))
}

pub fn list(failed: bool) -> anyhow::Result<u8> {
    let (queue, _) = open_queue()?;
    let entries = if failed {
        queue.list_failed()?
    } else {
        queue.list()?
    };
    if entries.is_empty() {
        println!(
            "{} is empty",
            if failed {
                "the failed folder"
            } else {
                "the queue"
            }
        );
        return Ok(exit::OK);
    }
    let now = SystemTime::now();
    for listed in &entries {
        match listed {
            Listed::Entry(e) => {
                println!(
                    "{}  {:>6}  {:>8} bytes  attempts {}  from <{}>",
                    e.id,
                    age(e.created, now),
                    e.size,
                    e.attempts,
                    e.from.as_deref().unwrap_or("")
                );
                println!("    to: {}", e.recipients.join(", "));
                if let Some(error) = &e.last_error {
                    println!("    last error: {error}");
                }
                if !failed && !e.is_due(now) {
                    println!("    next attempt in {}", age(now, e.next_attempt));
                }
            }
            Listed::Corrupt { id, problem } => println!("{id}  (cannot be read: {problem})"),
        }
    }
    Ok(exit::OK)
}

fn remove(ids: &[String]) -> anyhow::Result<u8> {
    let (queue, _) = open_queue()?;
    let mut code = exit::OK;
    for id in ids {
        match queue.remove(id) {
            Ok(()) => println!("removed {id}"),
            Err(e) => {
                eprintln!("outbox: {id}: {e}");
                code = exit::code(&e);
            }
        }
    }
    Ok(code)
}

/// Delivers what is due. Entries are grouped by the settings their sender picks (the
/// account whose `from` it is, else the default), and each group goes over one
/// connection. Old entries move to `failed` first.
pub fn flush(verbose: bool) -> anyhow::Result<u8> {
    let (queue, base) = open_queue()?;
    let now = SystemTime::now();
    for id in queue.expire(base.queue_lifetime, now)? {
        eprintln!(
            "outbox: {id} has waited longer than {} days and was moved to failed",
            base.queue_lifetime.as_secs() / 86_400
        );
    }
    let config = outbox::config::Config::load_default()?;
    let mut groups: BTreeMap<String, (Settings, Vec<Entry>)> = BTreeMap::new();
    let mut code = exit::OK;
    for listed in queue.list()? {
        match listed {
            Listed::Entry(entry) if entry.is_due(now) => {
                let cli = Cli {
                    from: entry.from.clone(),
                    verbose,
                    ..Cli::default()
                };
                let settings = Settings::resolve(&cli, config.as_ref())?;
                let key = format!(
                    "{}|{}",
                    settings.server,
                    settings.auth.as_ref().map_or("", |a| a.user.as_str())
                );
                groups
                    .entry(key)
                    .or_insert_with(|| (settings, Vec::new()))
                    .1
                    .push(entry);
            }
            Listed::Entry(_) => {}
            Listed::Corrupt { id, problem } => {
                eprintln!("outbox: queue entry {id} cannot be read ({problem}); left as it is");
                code = exit::DATAERR;
            }
        }
    }
    let mut totals = Totals::default();
    for (settings, entries) in groups.values() {
        flush_group(&queue, settings, entries, &mut totals)?;
    }
    println!(
        "delivered {}, deferred {}, failed {}, skipped (in use) {}",
        totals.delivered, totals.deferred, totals.failed, totals.skipped
    );
    Ok(code)
}

#[derive(Default)]
struct Totals {
    delivered: usize,
    deferred: usize,
    failed: usize,
    skipped: usize,
}

fn flush_group(
    queue: &Queue,
    settings: &Settings,
    entries: &[Entry],
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let transcript = settings
        .verbose
        .then(|| Transcript::new(Box::new(std::io::stderr())));
    let mut client = match Client::connect(settings, transcript) {
        Ok(c) => Some(c),
        Err(e) => {
            // Nobody is reached: every entry waits for the next flush.
            let reason = e.to_string();
            for entry in entries {
                if let Some(locked) = queue.lock(&entry.id)? {
                    let remaining = locked.entry().recipients.clone();
                    locked.retry_later(&remaining, &reason, SystemTime::now())?;
                    totals.deferred += 1;
                }
            }
            eprintln!("outbox: cannot reach {}: {reason}", settings.server);
            return Ok(());
        }
    };
    for entry in entries {
        // Another flush may have sent it, or tried it, since it was listed.
        let Some(locked) = queue
            .lock(&entry.id)?
            .filter(|l| l.entry().is_due(SystemTime::now()))
        else {
            totals.skipped += 1;
            continue;
        };
        let entry = locked.entry().clone();
        let envelope = entry.envelope()?;
        let message = Message::from_bytes(locked.message()?);
        let now = SystemTime::now();
        let result = match client.as_mut().filter(|c| c.is_usable()) {
            Some(c) => c.send(&envelope, &message),
            None => Err(Error::Closed {
                stage: outbox::Stage::MailFrom,
            }),
        };
        let outcome = Outcome::of(&envelope, &result);
        if !outcome.failed.is_empty() {
            queue.store_failed(
                envelope.from.as_ref(),
                &outcome.failed,
                message.as_bytes(),
                &outcome.failed_reason,
                now,
            )?;
            eprintln!(
                "outbox: {}: refused for good for {}: {}",
                entry.id,
                outcome.failed.len(),
                outcome.failed_reason
            );
            totals.failed += 1;
        }
        if outcome.retry.is_empty() {
            locked.delivered()?;
            if outcome.failed.is_empty() {
                totals.delivered += 1;
            }
        } else {
            let remaining: Vec<String> = outcome.retry.iter().map(|a| a.to_string()).collect();
            locked.retry_later(&remaining, &outcome.retry_reason, now)?;
            totals.deferred += 1;
        }
    }
    if let Some(c) = client {
        c.finish();
    }
    Ok(())
}

/// "3m", "2h", "4d": how long ago `then` was (or how far `now` is from it).
fn age(then: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}
