//! The faces of the binary: each turns its command line into a session and an exit code.

pub mod compose;
pub mod queue;
pub mod sendmail;

use std::time::SystemTime;

use outbox::config::Config;
use outbox::envelope::Address;
use outbox::outcome::Outcome;
use outbox::queue::Queue;
use outbox::smtp::tls::TlsMode;
use outbox::{Envelope, Message, Settings, exit};

/// The configuration file, with its warnings said.
pub fn load_config() -> Result<Option<Config>, outbox::Error> {
    let config = Config::load_default()?;
    for warning in config.iter().flat_map(|c| &c.warnings) {
        eprintln!("outbox: warning: {warning}");
    }
    Ok(config)
}

/// Says what is risky or likely wrong in the TLS settings, before connecting.
pub fn warn_about_tls(settings: &Settings) {
    if settings.server.port == 465 && matches!(settings.tls.mode, TlsMode::StartTls | TlsMode::None)
    {
        eprintln!(
            "outbox: warning: port 465 is for implicit TLS (RFC 8314); a server there waits \
             in silence for a handshake: use --tls implicit"
        );
    }
    if settings.tls.insecure {
        eprintln!(
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
            eprintln!("* {note}");
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

/// Sends the message; what cannot be delivered now goes to the queue (exit 0, as a
/// sendmail that has accepted a message for delivery), and what is refused for good
/// is kept in the queue's `failed` folder and reported, with the exit code it calls
/// for. If what needs queueing cannot be queued, the exit code is 75 so the caller
/// keeps the message itself.
pub fn deliver_or_keep(
    settings: &Settings,
    envelope: &Envelope,
    message: &Message,
    keep: Keep,
) -> anyhow::Result<u8> {
    warn_about_tls(settings);
    let result = outbox::submit(settings, envelope, message);
    let outcome = Outcome::of(envelope, &result);
    if settings.verbose && !outcome.accepted.is_empty() {
        eprintln!("* accepted for {}", list(&outcome.accepted));
    }
    let now = SystemTime::now();
    let from = envelope.from.as_ref();
    let queue = || Queue::open(&settings.queue_dir());
    if !outcome.retry.is_empty() {
        let queued = queue().and_then(|q| {
            q.enqueue(
                from,
                &outcome.retry,
                message.as_bytes(),
                &outcome.retry_reason,
                now,
            )
            .map(|id| (id, q))
        });
        match queued {
            Ok((id, q)) => {
                if keep == Keep::Say || settings.verbose {
                    eprintln!(
                        "outbox: not delivered yet to {} ({}); queued as {id} in {}",
                        list(&outcome.retry),
                        outcome.retry_reason,
                        q.dir().display()
                    );
                }
            }
            Err(e) => {
                eprintln!(
                    "outbox: not delivered to {} ({}), and it cannot be queued: {e}",
                    list(&outcome.retry),
                    outcome.retry_reason
                );
                report_failed(&outcome, "");
                return Ok(exit::TEMPFAIL);
            }
        }
    }
    if outcome.failed.is_empty() {
        return Ok(exit::OK);
    }
    let kept = queue()
        .and_then(|q| {
            q.store_failed(
                from,
                &outcome.failed,
                message.as_bytes(),
                &outcome.failed_reason,
                now,
            )
            .map(|id| format!("; kept as {id} in {}", q.dir().join("failed").display()))
        })
        .unwrap_or_else(|e| format!("; it could not be kept: {e}"));
    report_failed(&outcome, &kept);
    Ok(outcome.failed_code)
}

fn report_failed(outcome: &Outcome, kept: &str) {
    if !outcome.failed.is_empty() {
        eprintln!("outbox: not delivered: {}{kept}", outcome.failed_reason);
    }
}

fn list(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(|a| format!("<{a}>"))
        .collect::<Vec<_>>()
        .join(", ")
}
