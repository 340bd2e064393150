//! What the service does in one pass: take every drop into the system queue, deliver
//! what is due, and publish each user's usage for the submitters' limits.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use outbox::cli::Cli;
use outbox::config::Config;
use outbox::log::{Status, Target};
use outbox::queue::{Folder, Listed, Notes, Pick, Queue};
use outbox::spool::{Found, Picked, Pickup, SetAside, Spool, Usage};
use outbox::{Error, Message, Settings};

use super::flush::Run;
use super::mta::{LogDefault, Mta, SpoolEvent};
use super::output::say;

/// The service, as its configuration makes it.
pub struct Service {
    spool: Spool,
    queue: Queue,
    config: Config,
    base: Settings,
    mta: Mta,
    pickup: Pickup,
    verbose: bool,
    /// Drops stored whose removal failed: taken again they would be found in the
    /// queue, unless delivered by then, and sent twice; this process leaves them.
    stored: HashSet<String>,
}

impl Service {
    /// The service for `spool`, run as its owner: checks the spool, reads the
    /// configuration, opens the queue and publishes the limits. `log` overrides the
    /// configuration's log.
    pub fn start(spool: Spool, log: Option<Target>, verbose: bool) -> Result<Service, Error> {
        spool.check()?;
        let config = super::system_queue::config(&spool)?;
        let cli = Cli {
            verbose,
            ..Cli::default()
        };
        let mut base = Settings::resolve(&cli, Some(&config))?;
        if log.is_some() {
            base.log = log;
        }
        let mta = Mta::new(&base, LogDefault::Syslog);
        let queue = Queue::open(&spool.queue_dir())?;
        spool.publish_limits(&base.limits)?;
        let pickup = spool.pickup(&base.limits);
        Ok(Service {
            spool,
            queue,
            config,
            base,
            mta,
            pickup,
            verbose,
            stored: HashSet::new(),
        })
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// One pass: every drop taken, what `pick` says delivered, the usage published.
    /// Returns when the next entry is due, if one waits. `stop` ends it early, after
    /// the drop or the message in hand.
    pub fn pass(&mut self, stop: Option<&AtomicBool>, pick: Pick) -> Option<SystemTime> {
        self.intake(stop);
        let run = Run {
            queue: &self.queue,
            base: &self.base,
            config: Some(&self.config),
            mta: &self.mta,
            stop,
        };
        run.flush(self.verbose, pick);
        self.publish()
    }

    /// Takes every drop waiting into the queue; what fails the pickup's checks is
    /// set aside and logged.
    pub fn intake(&mut self, stop: Option<&AtomicBool>) {
        let now = SystemTime::now();
        let names = match self.pickup.waiting(now) {
            Ok(names) => names,
            Err(e) => {
                say!("outbox: {e}");
                return;
            }
        };
        for name in names {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                return;
            }
            if self.stored.contains(&name) {
                continue;
            }
            match self.pickup.take(&name, now) {
                Ok(None) => {}
                Ok(Some(Found::Picked(picked))) => self.store(picked),
                Ok(Some(Found::SetAside(aside))) => self.log_set_aside(&aside),
                Err(e) => say!("outbox: drop {name}: {e}"),
            }
        }
    }

    /// Queues a drop under its own name, unless a pass before a crash did, then
    /// removes it. What cannot be queued now stays for the next pass.
    fn store(&mut self, mut picked: Picked) {
        let id = picked.name.clone();
        if !self.queue.contains(&id) {
            let envelope = &picked.envelope.envelope;
            // The aliases are the service's: no submitter could read them.
            let to = super::expand_all(&self.base, &envelope.to);
            let message = Message::from_bytes(std::mem::take(&mut picked.message));
            let notes = Notes {
                id: Some(id.clone()),
                dsn: picked.envelope.dsn.clone(),
                uid: Some(picked.uid),
                ..Notes::default()
            };
            let kept = self.queue.keep(
                Folder::Queue,
                envelope.from.as_ref(),
                &to,
                &message,
                &notes,
                picked.dropped,
            );
            let event = SpoolEvent {
                id: &id,
                uid: Some(picked.uid),
                envelope: Some(envelope),
                size: message.len(),
                arrival: picked.dropped,
                place: self.spool.root(),
            };
            match kept {
                Ok(_) => {
                    self.mta
                        .log_spool(&event, Status::Queued, "taken from the drop directory")
                }
                Err(e) => {
                    say!("outbox: drop {id} cannot be queued now ({e}); it waits");
                    return;
                }
            }
        }
        if let Err(e) = self.pickup.done(&picked) {
            say!("outbox: drop {id} is queued but cannot be removed ({e}); left alone");
            self.stored.insert(id);
        }
    }

    fn log_set_aside(&self, aside: &SetAside) {
        let place = match &aside.moved_to {
            Some(to) => format!("set aside as {to}"),
            None => "left where it is".to_owned(),
        };
        say!("outbox: drop {} {place}: {}", aside.name, aside.reason);
        self.mta.log_spool(
            &SpoolEvent {
                id: &aside.name,
                uid: aside.uid,
                envelope: None,
                size: 0,
                arrival: SystemTime::now(),
                place: self.spool.root(),
            },
            Status::SetAside,
            &format!("{}; {place}", aside.reason),
        );
    }

    /// Publishes each user's queued count and bytes; returns when the next entry is
    /// due (its next attempt, or the end of its lifetime).
    fn publish(&self) -> Option<SystemTime> {
        let listed = match self.queue.list() {
            Ok(listed) => listed,
            Err(e) => {
                say!("outbox: {e}");
                return None;
            }
        };
        let mut usage: BTreeMap<u32, Usage> = BTreeMap::new();
        let mut next: Option<SystemTime> = None;
        for entry in listed.iter().filter_map(|l| match l {
            Listed::Entry(e) => Some(e),
            Listed::Corrupt { .. } => None,
        }) {
            if let Some(uid) = entry.uid {
                let used = usage.entry(uid).or_default();
                used.queued += 1;
                used.bytes += entry.size;
            }
            let ends = entry.created + self.base.queue_lifetime;
            let due = entry.next_attempt.min(ends);
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        if let Err(e) = self.spool.publish_usage(&usage) {
            say!("outbox: {e}");
        }
        next
    }
}
