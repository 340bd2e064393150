//! `outbox queue list|flush|remove`: the messages kept for later delivery.

use std::collections::HashSet;
use std::ffi::OsString;
use std::time::SystemTime;

use clap::{Parser, Subcommand};

use outbox::cli::Cli;
use outbox::config::Config;
use outbox::mode::Mode;
use outbox::queue::{Listed, Queue, describe_duration};
// Which entries a flush takes is queue policy; the sendmail face (`-q`) names it here.
pub use outbox::queue::Pick;
use outbox::{Settings, exit};

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

/// The command's clap definition, named as a subcommand of `outbox`, for the man
/// page and the completions.
pub fn command() -> clap::Command {
    <QueueCli as clap::CommandFactory>::command().name("queue")
}

pub fn run(args: &[OsString]) -> anyhow::Result<u8> {
    let cli: QueueCli = match super::parse_subcommand("outbox queue", args) {
        Ok(cli) => cli,
        Err(code) => return Ok(code),
    };
    match cli.command {
        QueueCommand::List { failed } => list(failed),
        QueueCommand::Flush { verbose, due } => {
            super::flush::flush(verbose, if due { Pick::Due } else { Pick::Everything })
        }
        QueueCommand::Remove { ids } => remove(&ids),
    }
}

/// The configuration's default settings, and the queue they name.
/// The queue this caller works on, the settings without an account, and the
/// configuration. In system mode that is the system queue, for root (who becomes the
/// service's user for it) and the service's user alone.
pub fn open_queue() -> anyhow::Result<(Queue, Settings, Option<Config>)> {
    match Mode::detect_for_queue()? {
        Mode::Personal { .. } => open_personal_queue(),
        Mode::System { spool, .. } => {
            super::system_queue::become_service(&spool)?;
            let config = super::system_queue::config(&spool)?;
            let settings = Settings::resolve(&Cli::default(), Some(&config))?;
            Ok((Queue::open(&spool.queue_dir())?, settings, Some(config)))
        }
    }
}

/// The caller's own queue, settings and configuration (personal mode).
pub fn open_personal_queue() -> anyhow::Result<(Queue, Settings, Option<Config>)> {
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
    // A bounce that was queued has gone on since: where it is now says what became
    // of it.
    let queued = if failed { queue.list()? } else { Vec::new() };
    let waiting: HashSet<&str> = queued.iter().map(Listed::id).collect();
    let bounce_now = |id: &str| {
        // The note comes from a file: only an id of the queue's own form is looked up.
        let an_id = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
        if !an_id {
            BounceNow::Unknown
        } else if waiting.contains(id) {
            BounceNow::Waiting
        } else if queue.dir().join("failed").join(id).exists() {
            BounceNow::Refused
        } else {
            BounceNow::Gone
        }
    };
    let text = listing(&entries, failed, SystemTime::now(), bounce_now);
    if let Err(e) = output::stdout_text(&text) {
        say!("outbox: cannot write the listing to standard output: {e}");
        return Ok(exit::IOERR);
    }
    Ok(exit::OK)
}

/// Where a bounce that was queued is now.
enum BounceNow {
    /// The note names no id of the queue's form.
    Unknown,
    Waiting,
    /// Refused in turn, kept in `failed`.
    Refused,
    /// Out of the queue: sent (or removed by hand).
    Gone,
}

/// The text `queue list` prints for `entries`.
fn listing(
    entries: &[Listed],
    failed: bool,
    now: SystemTime,
    bounce_now: impl Fn(&str) -> BounceNow,
) -> String {
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
                if let Some(uid) = e.uid {
                    let who =
                        outbox::passwd::describe(uid, outbox::passwd::name_of(uid).as_deref());
                    let _ = writeln!(text, "    submitted by: {who}");
                }
                if let Some(error) = &e.last_error {
                    let _ = writeln!(text, "    last error: {error}");
                }
                if failed {
                    let bounce = e.bounce.as_deref().unwrap_or("none (kept before bounces)");
                    let now = match bounce.strip_prefix("queued as ") {
                        Some(id) => match bounce_now(id) {
                            BounceNow::Unknown => bounce.to_owned(),
                            BounceNow::Waiting => format!("{bounce} (still queued)"),
                            BounceNow::Refused => format!("{bounce}, refused since (in failed)"),
                            BounceNow::Gone => format!("sent as {id}"),
                        },
                        None => bounce.to_owned(),
                    };
                    let _ = writeln!(text, "    bounce: {now}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use outbox::queue::Entry;
    use outbox::smtp::dsn::Dsn;
    use std::time::{Duration, UNIX_EPOCH};

    fn failed_entry(bounce: Option<&str>) -> Listed {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_166_000);
        Listed::Entry(Box::new(Entry {
            id: "1796166000.000000.00000001".into(),
            from: Some("me@example.test".into()),
            recipients: vec!["x@example.test".into()],
            created: at,
            attempts: 1,
            last_error: Some("550 5.1.1 no".into()),
            next_attempt: at,
            size: 10,
            dsn: Dsn::default(),
            bounce: bounce.map(str::to_owned),
            via: None,
            notice: false,
            uid: None,
        }))
    }

    #[test]
    fn the_failed_listing_says_what_became_of_each_bounce() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_166_060);
        let where_now = |id: &str| match id {
            "B1" => BounceNow::Waiting,
            "B3" => BounceNow::Refused,
            _ => BounceNow::Gone,
        };
        let text = listing(
            &[
                failed_entry(Some("sent as A1")),
                failed_entry(Some("queued as B1")),
                failed_entry(Some("queued as B2")),
                failed_entry(Some("queued as B3")),
                failed_entry(None),
            ],
            true,
            now,
            where_now,
        );
        let bounces: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("    bounce: "))
            .collect();
        assert_eq!(
            bounces,
            [
                "sent as A1",
                "queued as B1 (still queued)",
                "sent as B2",
                "queued as B3, refused since (in failed)",
                "none (kept before bounces)"
            ],
            "{text}"
        );
        // The system queue's entries say who submitted them.
        let mut by_root = failed_entry(None);
        if let Listed::Entry(e) = &mut by_root {
            e.uid = Some(0);
        }
        let text = listing(&[by_root, failed_entry(None)], false, now, where_now);
        let who: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("    submitted by: "))
            .collect();
        assert_eq!(who, ["uid 0 (root)"], "{text}");
        // The queue's own listing has no bounce lines.
        let text = listing(&[failed_entry(Some("sent as A1"))], false, now, where_now);
        assert!(!text.contains("bounce:"), "{text}");
    }
}
