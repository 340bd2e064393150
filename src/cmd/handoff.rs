//! System mode's submission: the message goes into the system spool, whole, and the
//! service delivers it. The caller's exit code says only that it was taken (0), or
//! why not: a limit of the spool (73, 75), a message no drop can hold (65), or the
//! spool itself (75).

use std::time::SystemTime;

use outbox::log::Status;
use outbox::queue::{Folder, Notes, Queue};
use outbox::spool::{DropEnvelope, Spool};
use outbox::{Envelope, Error, Message, Settings, exit};

use super::mta::{LogDefault, Mta, SpoolEvent};
use super::output::say;

/// Drops `message` for `envelope` into `spool`, with the DSN requests of `settings`.
/// The recipients go as given: the aliases are the service's to apply, since its
/// configuration is no user's to read.
pub fn hand_off(
    spool: &Spool,
    settings: &Settings,
    envelope: Envelope,
    message: &[u8],
) -> anyhow::Result<u8> {
    if envelope.to.is_empty() {
        return Err(Error::Usage("no recipients given".into()).into());
    }
    let dropped = DropEnvelope {
        envelope,
        dsn: settings.dsn.clone(),
    };
    // The service's own user: the pickup refuses the service's files (no user can
    // make one, so one there is a link or a mistake), and the queue is its own.
    let own = spool
        .owner()
        .is_ok_and(|o| o.uid == outbox::passwd::effective_uid());
    let handed = if own {
        queue_directly(spool, &dropped, message)
    } else {
        spool.drop(&dropped, message)
    };
    match handed {
        Ok(name) => {
            if settings.verbose {
                say!("* handed to the system spool as {name}; the service delivers it");
            }
            Ok(exit::OK)
        }
        Err(e) => {
            let code = match &e {
                // A limit, or a message the drop cannot hold (over a thousand
                // recipients): trying again would not help.
                Error::OverLimit { .. } | Error::Data(_) | Error::Usage(_) => exit::code(&e),
                // Whatever kept it from the spool will pass (a full disk, a spool
                // being set up again): the caller should try again, as after
                // Postfix's "cannot queue".
                _ => exit::TEMPFAIL,
            };
            say!("outbox: the message was not taken: {e}");
            let mta = Mta::new(settings, LogDefault::Syslog);
            let now = SystemTime::now();
            let id = outbox::queue::new_id(now);
            mta.log_spool(
                &SpoolEvent {
                    id: &id,
                    uid: None,
                    envelope: Some(&dropped.envelope),
                    size: message.len() as u64,
                    arrival: now,
                    place: spool.root(),
                },
                Status::Refused,
                &e.to_string(),
            );
            Ok(code)
        }
    }
}

/// Puts the message of the service's own user straight into the system queue,
/// where the service finds it on its next round (within a minute).
fn queue_directly(spool: &Spool, dropped: &DropEnvelope, message: &[u8]) -> Result<String, Error> {
    let queue = Queue::open(&spool.queue_dir())?;
    let notes = Notes {
        dsn: dropped.dsn.clone(),
        uid: Some(outbox::passwd::effective_uid()),
        ..Notes::default()
    };
    queue.keep(
        Folder::Queue,
        dropped.envelope.from.as_ref(),
        &dropped.envelope.to,
        &Message::from_bytes(message.to_vec()),
        &notes,
        SystemTime::now(),
    )
}
