//! The faces of the binary: each turns its command line into a session and an exit code.

pub mod bounce;
pub mod compose;
pub mod docs;
pub mod flush;
pub mod handoff;
pub mod help;
pub mod intake;
pub mod mta;
pub mod output;
pub mod probe;
pub mod queue;
pub mod rehearse;
pub mod seed;
pub mod sendmail;
pub mod serve;
pub mod session;
pub mod system;
pub mod system_queue;

use std::time::SystemTime;

use outbox::config::Config;
use outbox::envelope::Address;
use outbox::outcome::Outcome;
use outbox::queue::{Folder, Notes, Queue};
use outbox::smtp::receipt::Receipt;
use outbox::smtp::tls::TlsMode;
use outbox::{Envelope, Error, Message, Report, Settings, exit};

use mta::{Attempt, Mta};
use output::say;

/// The command line of a subcommand (`outbox queue …`, `outbox serve …`) parsed by
/// clap, or the exit code once clap has said why not (or printed the help asked for).
pub fn parse_subcommand<T: clap::Parser>(name: &str, args: &[std::ffi::OsString]) -> Result<T, u8> {
    let argv = std::iter::once(std::ffi::OsString::from(name)).chain(args.iter().cloned());
    T::try_parse_from(argv).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            exit::USAGE
        } else {
            exit::OK
        }
    })
}

/// The configuration file, with its warnings said.
pub fn load_config() -> Result<Option<Config>, outbox::Error> {
    let config = Config::load_default()?;
    for warning in config.iter().flat_map(|c| &c.warnings) {
        say!("outbox: warning: {warning}");
    }
    Ok(config)
}

/// The settings of a command that talks to a server (probe, session, the seed
/// commands): its connection flags over the configuration, with `target`, the server
/// it names on its command line, in place of `--server`.
pub fn connect_settings(
    connect: &outbox::cli::ConnectArgs,
    target: Option<&str>,
    verbose: bool,
) -> Result<Settings, Error> {
    let config = load_config()?;
    let mut connect = connect.clone();
    if let Some(target) = target {
        connect.server = Some(target.to_owned());
    }
    let flags = outbox::cli::Cli {
        connect,
        verbose,
        ..outbox::cli::Cli::default()
    };
    Settings::resolve(&flags, config.as_ref())
}

/// Says what is risky or likely wrong in the TLS settings, before connecting.
pub fn warn_about_tls(settings: &Settings) {
    if settings.server.port == 465 && matches!(settings.tls.mode, TlsMode::StartTls | TlsMode::None)
    {
        say!(
            "outbox: warning: port 465 is for implicit TLS (RFC 8314); a server there waits \
             in silence for a handshake: use --tls implicit"
        );
    }
    if settings.tls.insecure {
        say!(
            "outbox: warning: TLS certificates are not checked (--tls-insecure): \
             anyone in the path can pose as {}",
            settings.server.host
        );
    }
}

/// Every recipient with local names expanded through the aliases; `-v` says how.
pub fn expand_all<'a>(
    settings: &Settings,
    recipients: impl IntoIterator<Item = &'a Address>,
) -> Vec<Address> {
    let mut out = Vec::new();
    for r in recipients {
        let (addresses, note) = settings.expand(r);
        if let (true, Some(note)) = (settings.verbose, note) {
            say!("* {note}");
        }
        out.extend(addresses);
    }
    out
}

/// Whether to say that a message was queued: the compose face does, the sendmail face
/// (whose callers expect silence on success) only under `-v`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Say,
    Quietly,
}

/// What a face shows of a submission besides its messages on standard error.
#[derive(Clone, Copy, Default)]
pub struct Show {
    /// One JSON object on standard output (`--json`).
    pub json: bool,
    /// A progress bar for a large message, where standard error is a terminal.
    pub progress: bool,
}

/// Sends the message as `show` asks: the report of the session comes with the result.
pub fn submit(
    settings: &Settings,
    envelope: &Envelope,
    message: &Message,
    show: Show,
) -> (Result<Receipt, Error>, Report) {
    let mut options = outbox::Options::for_settings(settings);
    if show.progress {
        options.progress = outbox::progress::for_terminal(settings.verbose);
    }
    outbox::submit_reported(settings, envelope, message, options)
}

/// Prints `json` on standard output, on one line. A reader that has gone away
/// (`| head`) is no failure; another trouble is said, but changes no exit code:
/// the message went or did not go all the same.
pub fn print_json(json: &serde_json::Value) {
    if let Err(e) = output::stdout_text(&format!("{json}\n")) {
        say!("outbox: cannot write the JSON report to standard output: {e}");
    }
}

/// The exit code of a submission's result: the error's, or the worst refusal's.
pub fn result_code(result: &Result<Receipt, Error>) -> u8 {
    match result {
        Ok(receipt) => exit::refusals_code(&receipt.refused()).unwrap_or(exit::OK),
        Err(e) => exit::code(e),
    }
}

/// The log's note on a refusal that the caller is told of instead of a bounce.
pub const NO_BOUNCE: &str = "none (the caller is told)";

/// What becomes of a recipient refused for good.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Refusals {
    /// Said on standard error, with the refusal's exit code (the compose face, the
    /// sendmail face's `-oep`).
    Report,
    /// The exit code only (`-oeq`).
    Quiet,
    /// A bounce to the sender, and exit 0 once it is sent or queued (the sendmail
    /// face): an MTA has taken the message.
    Bounce,
}

/// How a face hands a message over: what it says and shows, and what a refusal gets.
#[derive(Clone, Copy)]
pub struct Handling {
    pub keep: Keep,
    pub show: Show,
    pub refusals: Refusals,
}

/// Sends the message; what cannot be delivered now goes to the queue (exit 0, as a
/// sendmail that has accepted a message for delivery), and what is refused for good
/// is kept in the queue's `failed` folder and, as `handling` says, bounced or
/// reported with the exit code it calls for. If what needs queueing cannot be queued,
/// the exit code is 75 so the caller keeps the message itself. The queue's copy is
/// streamed from the message (see [`outbox::queue::Queue::enqueue`]): a composed
/// message is not made whole in memory. Each outcome is logged.
pub fn deliver_or_keep(
    settings: &Settings,
    mta: &Mta,
    envelope: &Envelope,
    message: &Message,
    handling: Handling,
) -> anyhow::Result<u8> {
    warn_about_tls(settings);
    let arrival = SystemTime::now();
    let (result, report) = submit(settings, envelope, message, handling.show);
    let attempt = Attempt::new(
        &outbox::queue::new_id(arrival),
        envelope,
        settings,
        &report,
        message.len(),
        arrival,
    );
    let mut kept = serde_json::Map::new();
    let code = keep_what_failed(
        settings, mta, attempt, envelope, message, handling, &result, &mut kept,
    );
    if handling.show.json {
        let mut json = outbox::report::json(&report, &result, code);
        if let Some(object) = json.as_object_mut() {
            object.extend(kept);
        }
        print_json(&json);
    }
    Ok(code)
}

/// The queueing part of [`deliver_or_keep`]: returns the exit code, and notes in
/// `kept` (for `--json`) where what was not delivered is kept.
#[allow(clippy::too_many_arguments)]
fn keep_what_failed(
    settings: &Settings,
    mta: &Mta,
    mut attempt: Attempt,
    envelope: &Envelope,
    message: &Message,
    handling: Handling,
    result: &Result<Receipt, Error>,
    kept: &mut serde_json::Map<String, serde_json::Value>,
) -> u8 {
    let outcome = Outcome::of(envelope, result);
    if settings.verbose && !outcome.accepted.is_empty() {
        say!("* accepted for {}", list(&outcome.accepted));
    }
    let now = SystemTime::now();
    let from = envelope.from.as_ref();
    let queue = || Queue::open(&settings.queue_dir());
    // The queue's entry, or else the failed copy, takes the submission's id: its log
    // lines, its bounce and `queue list` name the same.
    let notes = |reason: &str, bounce: Option<String>| Notes {
        id: Some(attempt.id.clone()),
        reason: reason.to_owned(),
        dsn: settings.dsn.clone(),
        bounce,
        ..Notes::default()
    };
    let mut code = exit::OK;
    if !outcome.retry.is_empty() {
        let queued = queue().and_then(|q| {
            let notes = notes(&outcome.retry_reason, None);
            q.keep(Folder::Queue, from, &outcome.retry, message, &notes, now)
                .map(|id| (id, q))
        });
        match queued {
            Ok((id, q)) => {
                attempt.queued = Some(id.clone());
                kept.insert(
                    "queued".into(),
                    serde_json::json!({
                        "id": id.to_string(),
                        "recipients": outcome.retry.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    }),
                );
                if handling.keep == Keep::Say || settings.verbose {
                    say!(
                        "outbox: not delivered yet to {} ({}); queued as {id} in {}",
                        list(&outcome.retry),
                        outcome.retry_reason,
                        q.dir().display()
                    );
                }
            }
            Err(e) => {
                say!(
                    "outbox: not delivered to {} ({}), and it cannot be queued: {e}",
                    list(&outcome.retry),
                    outcome.retry_reason
                );
                code = exit::TEMPFAIL;
            }
        }
    }
    if outcome.failed.is_empty() {
        mta.log_outcome(&attempt, &outcome, None);
        return code;
    }
    let bounce = match handling.refusals {
        Refusals::Bounce => {
            let original = bounce::Original {
                id: &attempt.id,
                envelope,
                message,
                dsn: &settings.dsn,
                arrival: attempt.arrival,
                via: None,
                notice: false,
                uid: None,
            };
            let made = bounce::make(
                settings,
                mta,
                &original,
                bounce::failures(settings, &outcome),
            );
            Some(match made {
                Ok(made) => bounce::send_now(settings, mta, made),
                Err(fate) => fate,
            })
        }
        Refusals::Report | Refusals::Quiet => None,
    };
    let note = Some(
        bounce
            .as_ref()
            .map_or_else(|| NO_BOUNCE.to_owned(), bounce::Fate::note),
    );
    let stored = queue().and_then(|q| {
        let notes = notes(&outcome.failed_reason, note.clone());
        q.keep(Folder::Failed, from, &outcome.failed, message, &notes, now)
            .map(|id| (id, q))
    });
    let said = match stored {
        Ok((id, q)) => {
            attempt.kept = Some(id.clone());
            kept.insert("failed_kept_as".into(), id.to_string().into());
            format!("; kept as {id} in {}", q.dir().join("failed").display())
        }
        Err(e) => format!("; it could not be kept: {e}"),
    };
    mta.log_outcome(&attempt, &outcome, note.as_deref());
    match (handling.refusals, &bounce) {
        (Refusals::Quiet, _) => code.max(outcome.failed_code),
        (Refusals::Report, _) => {
            report_failed(&outcome, &said);
            if code == exit::OK {
                outcome.failed_code
            } else {
                code
            }
        }
        (Refusals::Bounce, Some(fate)) => {
            kept.insert("bounce".into(), fate.note().into());
            report_failed(&outcome, &format!("{said}; bounce: {}", fate.note()));
            if fate.is_handled() || code != exit::OK {
                code
            } else {
                outcome.failed_code
            }
        }
        (Refusals::Bounce, None) => code,
    }
}

fn report_failed(outcome: &Outcome, kept: &str) {
    if !outcome.failed.is_empty() {
        say!("outbox: not delivered: {}{kept}", outcome.failed_reason);
    }
}

pub fn list(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(|a| format!("<{a}>"))
        .collect::<Vec<_>>()
        .join(", ")
}
