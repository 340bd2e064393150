//! The faces of the binary: each turns its command line into a session and an exit code.

pub mod compose;
pub mod help;
pub mod output;
pub mod queue;
pub mod sendmail;

use std::time::SystemTime;

use outbox::config::Config;
use outbox::envelope::Address;
use outbox::outcome::Outcome;
use outbox::queue::Queue;
use outbox::smtp::receipt::Receipt;
use outbox::smtp::tls::TlsMode;
use outbox::{Envelope, Error, Message, Report, Settings, exit};

use output::say;

/// The configuration file, with its warnings said.
pub fn load_config() -> Result<Option<Config>, outbox::Error> {
    let config = Config::load_default()?;
    for warning in config.iter().flat_map(|c| &c.warnings) {
        say!("outbox: warning: {warning}");
    }
    Ok(config)
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

/// Sends the message; what cannot be delivered now goes to the queue (exit 0, as a
/// sendmail that has accepted a message for delivery), and what is refused for good
/// is kept in the queue's `failed` folder and reported, with the exit code it calls
/// for. If what needs queueing cannot be queued, the exit code is 75 so the caller
/// keeps the message itself. The queue's copy is streamed from the message (see
/// [`outbox::queue::Queue::enqueue`]): a composed message is not made whole in memory.
pub fn deliver_or_keep(
    settings: &Settings,
    envelope: &Envelope,
    message: &Message,
    keep: Keep,
    show: Show,
) -> anyhow::Result<u8> {
    warn_about_tls(settings);
    let (result, report) = submit(settings, envelope, message, show);
    let mut kept = serde_json::Map::new();
    let code = keep_what_failed(settings, envelope, message, keep, &result, &mut kept);
    if show.json {
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
fn keep_what_failed(
    settings: &Settings,
    envelope: &Envelope,
    message: &Message,
    keep: Keep,
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
    if !outcome.retry.is_empty() {
        let queued = queue().and_then(|q| {
            q.enqueue(from, &outcome.retry, message, &outcome.retry_reason, now)
                .map(|id| (id, q))
        });
        match queued {
            Ok((id, q)) => {
                kept.insert(
                    "queued".into(),
                    serde_json::json!({
                        "id": id.to_string(),
                        "recipients": outcome.retry.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    }),
                );
                if keep == Keep::Say || settings.verbose {
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
                report_failed(&outcome, "");
                return exit::TEMPFAIL;
            }
        }
    }
    if outcome.failed.is_empty() {
        return exit::OK;
    }
    let stored = queue().and_then(|q| {
        q.store_failed(from, &outcome.failed, message, &outcome.failed_reason, now)
            .map(|id| (id, q))
    });
    let said = match stored {
        Ok((id, q)) => {
            kept.insert("failed_kept_as".into(), id.to_string().into());
            format!("; kept as {id} in {}", q.dir().join("failed").display())
        }
        Err(e) => format!("; it could not be kept: {e}"),
    };
    report_failed(&outcome, &said);
    outcome.failed_code
}

fn report_failed(outcome: &Outcome, kept: &str) {
    if !outcome.failed.is_empty() {
        say!("outbox: not delivered: {}{kept}", outcome.failed_reason);
    }
}

fn list(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(|a| format!("<{a}>"))
        .collect::<Vec<_>>()
        .join(", ")
}
