//! What the service does in one pass: take the drops into the system queue, deliver
//! what is due, and publish each user's usage for the submitters' limits.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use outbox::cli::Cli;
use outbox::config::Config;
use outbox::log::{Status, Target};
use outbox::queue::{Listed, Notes, Pick, Queue};
use outbox::spool::{Found, Picked, Pickup, SetAside, Spool, Usage, check_limits, clean_reason};
use outbox::{Error, Message, Settings};

use super::flush::Run;
use super::mta::{LogDefault, Mta, SpoolEvent};
use super::output::say;

/// The most drops one pass takes before it syncs and delivers them: a burst goes
/// out as it comes rather than after its last drop.
const BATCH: usize = 100;

/// What a pass leaves: when the next entry is due, if one waits, and whether drops
/// wait beyond the batch (the next pass should not wait).
pub struct Pass {
    pub next: Option<SystemTime>,
    pub more: bool,
}

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
    /// Each user's queued messages and bytes: as the last pass counted them, and
    /// what this pass stored since.
    usage: BTreeMap<u32, Usage>,
}

impl Service {
    /// The service for `spool`, run as its owner: checks the spool, reads the
    /// configuration, opens the queue, publishes the limits and counts each user's
    /// usage. `log` overrides the configuration's log.
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
        // Advice for the submitters, which the service checks again itself: a full
        // disk that keeps it from being written must not keep the service from
        // starting.
        if let Err(e) = spool.publish_limits(&base.limits) {
            say!("outbox: warning: {e}");
        }
        let pickup = spool.pickup(&base.limits);
        let mut service = Service {
            spool,
            queue,
            config,
            base,
            mta,
            pickup,
            verbose,
            stored: HashSet::new(),
            usage: BTreeMap::new(),
        };
        // What each user has queued, before the first drop is checked against it.
        service.publish();
        Ok(service)
    }

    /// Reads the configuration again, keeping what this process knows of the spool
    /// (the drops it stored but could not remove, the names it passes over).
    pub fn reload(&mut self, log: Option<Target>) -> Result<(), Error> {
        let mut new = Service::start(self.spool.clone(), log, self.verbose)?;
        new.stored = std::mem::take(&mut self.stored);
        let max = new.pickup.max_message_size;
        std::mem::swap(&mut new.pickup, &mut self.pickup);
        new.pickup.max_message_size = max;
        *self = new;
        Ok(())
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// A flush of the system queue with the service's settings and log; `stop` ends
    /// it after the message on the wire.
    pub fn run<'a>(&'a self, stop: Option<&'a AtomicBool>) -> Run<'a> {
        Run {
            queue: &self.queue,
            base: &self.base,
            config: Some(&self.config),
            mta: &self.mta,
            stop,
        }
    }

    /// One pass: drops taken (a batch of them), what `pick` says delivered, the
    /// usage published. `stop` ends it early, after the drop or the message in hand.
    pub fn pass(&mut self, stop: Option<&AtomicBool>, pick: Pick) -> Pass {
        let more = self.intake(stop);
        self.run(stop).flush(self.verbose, pick);
        Pass {
            next: self.publish(),
            more,
        }
    }

    /// Takes drops into the queue, at most [`BATCH`]; what fails the pickup's checks
    /// is set aside and logged. The entries are made durable together (fsynced at
    /// once) before the drops, their other copy, are removed. Returns whether more
    /// wait.
    pub fn intake(&mut self, stop: Option<&AtomicBool>) -> bool {
        // One intake at a time (the service, and root's `queue flush` beside it):
        // two would take the same drop from incoming/ and queue it twice. The lock
        // is the directory's, held while this runs; one that is taken means the
        // other is at work, and nothing is left for this one.
        let lock = match self.lock_incoming() {
            Ok(Some(lock)) => lock,
            Ok(None) => return false,
            Err(e) => {
                say!("outbox: {e}");
                return false;
            }
        };
        let more = self.intake_locked(stop);
        drop(lock);
        more
    }

    /// The exclusive lock of `incoming/`, or `None` when another process has it.
    fn lock_incoming(&self) -> Result<Option<std::fs::File>, Error> {
        let dir = self.spool.incoming();
        let fail = |source: std::io::Error| Error::LocalIo {
            context: format!("cannot lock {}", dir.display()),
            source,
        };
        let file = std::fs::File::open(&dir).map_err(fail)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(file)),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(fail(e.into())),
        }
    }

    fn intake_locked(&mut self, stop: Option<&AtomicBool>) -> bool {
        let now = SystemTime::now();
        let names = match self.pickup.waiting(now) {
            Ok(names) => names,
            Err(e) => {
                say!("outbox: {e}");
                return false;
            }
        };
        let mut taken = Vec::new();
        let mut more = false;
        for name in names {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                break;
            }
            if self.stored.contains(&name) {
                continue;
            }
            if taken.len() == BATCH {
                more = true;
                break;
            }
            match self.pickup.take(&name, now) {
                Ok(None) => {}
                Ok(Some(Found::Picked(picked))) => taken.extend(self.store(picked)),
                Ok(Some(Found::SetAside(aside))) => self.log_set_aside(&aside),
                Err(e) => say!("outbox: drop {}: {e}", clean_reason(&name)),
            }
        }
        if taken.is_empty() {
            return more;
        }
        let ids: Vec<String> = taken.iter().map(|(_, id)| id.clone()).collect();
        if let Err(e) = self.queue.sync(&ids) {
            // Whether the entries are on disk is unknown: the drops stay, and this
            // process leaves them (a restart finds each stored, or not, and goes on).
            say!("outbox: {e}; the drops taken stay in incoming/");
            self.stored.extend(taken.into_iter().map(|(p, _)| p.name));
            return more;
        }
        for (picked, _) in taken {
            if let Err(e) = self.pickup.done(&picked) {
                say!(
                    "outbox: drop {} is queued but cannot be removed ({e}); left alone",
                    picked.name
                );
                self.stored.insert(picked.name);
            }
        }
        more
    }

    /// Queues a drop under its own name (unless a pass before a crash did) and logs
    /// it; returns it, for removal once the queue is synced, with the entry's id
    /// (its name, unless an unreadable entry held that), or `None` when it cannot be
    /// queued now and stays for the next pass.
    fn store(&mut self, mut picked: Picked) -> Option<(Picked, String)> {
        let id = picked.name.clone();
        let envelope = &picked.envelope.envelope;
        let again = self.queue.stored(&id);
        let size = picked.message.len() as u64;
        let mut entry = id.clone();
        if !again {
            // The submitter checked the limits as published; a drop written by hand,
            // or by submitters racing past the same figure, is checked again here.
            let used = self.usage.entry(picked.uid).or_default();
            if let Err(e) = check_limits(&self.base.limits, used, size) {
                let aside = self.pickup.refuse(&picked, &e.to_string());
                self.log_set_aside(&aside);
                return None;
            }
            used.queued += 1;
            used.bytes += size;
            // The aliases are the service's: no submitter could read them.
            let to = super::expand_all(&self.base, &envelope.to);
            let message = Message::from_bytes(std::mem::take(&mut picked.message));
            let notes = Notes {
                id: Some(id.clone()),
                dsn: picked.envelope.dsn.clone(),
                uid: Some(picked.uid),
                ..Notes::default()
            };
            let kept = self.queue.keep_unsynced(
                envelope.from.as_ref(),
                &to,
                &message,
                &notes,
                picked.dropped,
            );
            match kept {
                Ok(kept) => entry = kept,
                Err(e) => {
                    say!("outbox: drop {id} cannot be queued now ({e}); it waits");
                    return None;
                }
            }
        }
        let event = SpoolEvent {
            id: &entry,
            uid: Some(picked.uid),
            envelope: Some(envelope),
            size,
            arrival: picked.dropped,
            place: self.spool.root(),
        };
        let why = if again {
            "taken from the drop directory again, after a restart: queued already"
        } else {
            "taken from the drop directory"
        };
        self.mta.log_spool(&event, Status::Queued, why);
        Some((picked, entry))
    }

    fn log_set_aside(&self, aside: &SetAside) {
        let place = match &aside.moved_to {
            Some(to) => format!("set aside as {to}"),
            None => "left where it is".to_owned(),
        };
        // The name is the user's to choose: no control character of it reaches the
        // service's standard error (the journal), where it could forge a line.
        say!(
            "outbox: drop {} {place}: {}",
            clean_reason(&aside.name),
            aside.reason
        );
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
    fn publish(&mut self) -> Option<SystemTime> {
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
        self.usage = usage;
        next
    }
}
