//! The queue: messages that could not be delivered yet, kept on disk until a later
//! flush delivers them, or they expire into `failed`.
//!
//! [`Queue`] is what callers use: it stores a message, lists what waits, takes an
//! entry for delivery ([`Locked`]) and removes one. Below it, by concept:
//!
//! - `entry`: the format of one entry, a file holding a first line, the envelope
//!   (TOML) and the message; reading and writing it;
//! - `marks`: the delivery marks, overwritten in place in an entry's envelope;
//! - `store`: the directory, with `tmp/` and `failed/`, ids, locks, listing, removal
//!   and the sweep;
//! - `locked`: an entry held for delivery, and how an attempt at it ends;
//! - `retry`: the back-off, and which entries a flush takes.
//!
//! An entry is written in `tmp/`, fsynced, then renamed into place and the directory
//! fsynced, so a crash at any moment leaves an entry either absent or whole; what a
//! crash can leave behind sits in `tmp/`, which is never listed and is cleaned by a
//! later [`Queue::open`].

use std::fs::{self, DirBuilder};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::envelope::Address;
use crate::error::Error;
use crate::message::Message;
use crate::smtp::dsn::Dsn;

mod entry;
mod locked;
mod marks;
mod retry;
mod store;
#[cfg(test)]
mod testing;

pub use entry::Entry;
pub use locked::Locked;
pub use retry::{Pick, describe_duration};
pub use store::{Listed, new_id};

use entry::{EnvelopeFile, HEAD_READ, Unreadable, corrupt, read_entry};
use store::{
    DIR_MODE, FAILED, TMP, check_id, clean_tmp, default_dir_from, discard, io_error, new_staging,
    passwd_home, scan, sync_dir, take_lock,
};

/// Where [`Queue::keep`] puts a new entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Folder {
    /// The queue: due for delivery at once.
    Queue,
    /// `failed`: refused for good.
    Failed,
}

/// What a new entry holds besides its envelope and message.
#[derive(Clone, Debug, Default)]
pub struct Notes {
    /// The id it should have (a submission's own, so that its log lines and its
    /// bounce name the entry); a new one when that is taken.
    pub id: Option<String>,
    /// Whose settings carry it, when not its sender's: a bounce goes over the
    /// account of the message it reports.
    pub via: Option<Address>,
    /// One of outbox's notices to `bounce_to`: its own failure is told to nobody.
    pub notice: bool,
    /// Why it could not be delivered now: its last error (none if empty).
    pub reason: String,
    /// The submission's DSN requests (RFC 3461).
    pub dsn: Dsn,
    /// In `failed`: what became of the bounce.
    pub bounce: Option<String>,
    /// In the system queue: the submitting user's uid.
    pub uid: Option<u32>,
}

/// How many threads [`Queue::sync`] fsyncs a batch with.
const SYNC_THREADS: usize = 8;

/// Where a new entry goes, and whether it is fsynced there before it is reported
/// kept.
enum Placing {
    Synced(Folder),
    /// Into the queue, for [`Queue::sync`] to write out with others.
    Unsynced,
}

/// The queue directory of this user.
#[derive(Clone, Debug)]
pub struct Queue {
    root: PathBuf,
}

impl Queue {
    /// The queue directory when none is configured: `$OUTBOX_QUEUE_DIR`, else
    /// `/var/spool/outbox` for root, else `$XDG_STATE_HOME/outbox/queue`, else
    /// `~/.local/state/outbox/queue`.
    pub fn default_dir() -> PathBuf {
        let euid = fs::metadata("/proc/self").ok().map(|m| m.uid());
        default_dir_from(|k| std::env::var_os(k), euid, passwd_home)
    }

    /// Opens the queue at `dir`, creating it and its `failed` and `tmp` folders
    /// (0700) where missing, and clears what crashes left in `tmp`.
    pub fn open(dir: &Path) -> Result<Queue, Error> {
        let bad = |e: io::Error| {
            Error::Config(format!(
                "cannot use {} as the queue directory: {e}",
                dir.display()
            ))
        };
        // A relative path must keep meaning the same directory if the process moves.
        let root = std::path::absolute(dir).map_err(bad)?;
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(DIR_MODE);
        for d in [root.clone(), root.join(TMP), root.join(FAILED)] {
            builder.create(&d).map_err(bad)?;
        }
        clean_tmp(&root, SystemTime::now());
        Ok(Queue { root })
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Stores a message for later delivery to `recipients`, due at once, with
    /// `reason` (why it could not be delivered now) as its last error; returns its
    /// id. When this returns, the entry is on disk (fsynced). The message is written
    /// as it is read: a composed message's attachments are read and encoded into the
    /// queue's file a block at a time, never whole in memory, and the entry no longer
    /// needs them.
    pub fn enqueue(
        &self,
        from: Option<&Address>,
        recipients: &[Address],
        message: &Message,
        reason: &str,
        now: SystemTime,
    ) -> Result<String, Error> {
        let notes = Notes {
            reason: reason.to_owned(),
            ..Notes::default()
        };
        self.keep(Folder::Queue, from, recipients, message, &notes, now)
    }

    /// As [`Queue::enqueue`], into the queue or straight into `failed` (a message
    /// refused for good), with the submission's DSN requests and the bounce's fate
    /// in `notes`.
    pub fn keep(
        &self,
        folder: Folder,
        from: Option<&Address>,
        recipients: &[Address],
        message: &Message,
        notes: &Notes,
        now: SystemTime,
    ) -> Result<String, Error> {
        self.add(
            Placing::Synced(folder),
            from,
            recipients,
            message,
            notes,
            now,
        )
    }

    /// Whether entry `id` is stored whole, in the queue or in `failed`: the service
    /// asks before it queues a drop under its name, so that a drop taken again after
    /// a crash is not queued twice. An entry a power cut left cut short (its name
    /// reached the disk before its data, see [`Queue::keep_unsynced`]) is removed,
    /// and `false` returned: the drop, still there, is queued again.
    pub fn stored(&self, id: &str) -> bool {
        if check_id(id).is_err() {
            return false;
        }
        if fs::symlink_metadata(self.root.join(FAILED).join(id)).is_ok() {
            return true;
        }
        let path = self.root.join(id);
        let Ok(file) = fs::File::open(&path) else {
            return false;
        };
        let read = file
            .metadata()
            .map_err(|e| Unreadable::Corrupt(e.to_string()))
            .and_then(|meta| read_entry(&file, &meta, id, false).map(drop));
        match read {
            Ok(()) | Err(Unreadable::Gone | Unreadable::Settled) => true,
            Err(Unreadable::Corrupt(_)) => {
                drop(file);
                // Should it stay, the drop is queued under a new id: kept twice
                // (once unreadable) rather than lost.
                let _ = self.remove(id);
                false
            }
        }
    }

    /// As [`Queue::keep`] into the queue, but nothing is fsynced: [`Queue::sync`]
    /// does that for a batch at once, and the caller keeps the message's other copy
    /// (the service's drop) until it has.
    pub fn keep_unsynced(
        &self,
        from: Option<&Address>,
        recipients: &[Address],
        message: &Message,
        notes: &Notes,
        now: SystemTime,
    ) -> Result<String, Error> {
        self.add(Placing::Unsynced, from, recipients, message, notes, now)
    }

    /// Makes the entries `ids`, kept by [`Queue::keep_unsynced`], durable: each is
    /// fsynced, from several threads at once so that the filesystem's journal commits
    /// them together (one fsync after another cost a commit each: 1 to 4 ms a
    /// message), then the directories that hold their names. An entry gone since
    /// (delivered by another flush) needs nothing.
    pub fn sync(&self, ids: &[String]) -> Result<(), Error> {
        let fail = io_error(format!("cannot sync the queue {}", self.root.display()));
        let chunk = ids.len().div_ceil(SYNC_THREADS).max(1);
        let synced = std::thread::scope(|scope| {
            let workers: Vec<_> = ids
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .try_for_each(|id| match fs::File::open(self.root.join(id)) {
                                Ok(file) => file.sync_all(),
                                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                                Err(e) => Err(e),
                            })
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a syncing thread panicked")))
            })
        });
        synced.map_err(&fail)?;
        sync_dir(&self.root).map_err(&fail)?;
        sync_dir(&self.root.join(TMP)).map_err(&fail)
    }

    /// Every entry, oldest first. One that cannot be read is listed as corrupt. One
    /// whose every recipient is marked settled (its removal failed) is not listed,
    /// and removed if it is free.
    pub fn list(&self) -> Result<Vec<Listed>, Error> {
        let (listed, settled) = scan(&self.root)?;
        for id in settled {
            let _ = self.lock(&id);
        }
        Ok(listed)
    }

    /// The entries in `failed`, oldest first.
    pub fn list_failed(&self) -> Result<Vec<Listed>, Error> {
        scan(&self.root.join(FAILED)).map(|(listed, _)| listed)
    }

    /// Takes entry `id` for delivery. `Ok(None)` when another process holds it, or
    /// has finished with it (it is no longer in the queue): two flushes never send
    /// the same entry twice. The entry returned is read under the lock, so it shows
    /// what the last holder wrote; a small message is read with it.
    pub fn lock(&self, id: &str) -> Result<Option<Locked>, Error> {
        check_id(id)?;
        let path = self.root.join(id);
        let Some((file, meta)) = take_lock(&path)? else {
            return Ok(None);
        };
        match read_entry(&file, &meta, id, true) {
            Ok(read) => Ok(Some(Locked::new(&self.root, path, read, file))),
            Err(Unreadable::Gone) => Ok(None),
            // Done with, but still here: it goes now, under our lock.
            Err(Unreadable::Settled) => discard(&self.root, &path, id).map(|()| None),
            Err(Unreadable::Corrupt(problem)) => Err(corrupt(id, problem)),
        }
    }

    /// Removes entry `id`, from the queue or from `failed`, corrupt or not. Refused
    /// while another process holds it.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        check_id(id)?;
        let found = [self.root.join(id), self.root.join(FAILED).join(id)]
            .into_iter()
            .find_map(|path| fs::symlink_metadata(&path).ok().map(|m| (path, m)));
        let Some((path, meta)) = found else {
            return Err(Error::Usage(format!(
                "there is no entry {id} in the queue {}",
                self.root.display()
            )));
        };
        let failed = io_error(format!("cannot remove {id}"));
        if meta.is_dir() {
            // Not something this code makes, but it sits where an entry would.
            return fs::remove_dir_all(&path).map_err(failed);
        }
        if !meta.is_file() {
            return fs::remove_file(&path).map_err(failed);
        }
        let Some(_lock) = take_lock(&path)? else {
            return Err(Error::LocalIo {
                context: format!("cannot remove queue entry {id}"),
                source: io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another process is delivering it, or has just removed it",
                ),
            });
        };
        discard(&self.root, &path, id)
    }

    fn add(
        &self,
        placing: Placing,
        from: Option<&Address>,
        recipients: &[Address],
        message: &Message,
        notes: &Notes,
        now: SystemTime,
    ) -> Result<String, Error> {
        let (dest, sync) = match placing {
            Placing::Synced(Folder::Queue) => (self.root.clone(), true),
            Placing::Synced(Folder::Failed) => (self.root.join(FAILED), true),
            Placing::Unsynced => (self.root.clone(), false),
        };
        let dest = dest.as_path();
        if recipients.is_empty() {
            return Err(Error::Data(
                "a message with no recipient cannot be queued".into(),
            ));
        }
        let tmp = self.root.join(TMP);
        let write = io_error(format!("cannot write to the queue {}", self.root.display()));
        let (id, staging, file) =
            new_staging(&self.root, now, notes.id.as_deref()).map_err(&write)?;
        let entry = Entry {
            id: id.clone(),
            from: from.map(|a| a.as_str().to_owned()),
            recipients: recipients.iter().map(|a| a.as_str().to_owned()).collect(),
            created: now,
            attempts: 0,
            last_error: (!notes.reason.is_empty()).then(|| notes.reason.clone()),
            next_attempt: now,
            size: message.len(),
            dsn: notes.dsn.clone(),
            bounce: notes.bounce.clone(),
            via: notes.via.as_ref().map(|a| a.as_str().to_owned()),
            notice: notes.notice,
            uid: notes.uid,
        };
        let result = (|| {
            let head = EnvelopeFile::of(&entry).head()?;
            // Streamed: a composed message's attachments are read (and encoded) a
            // block at a time, never whole in memory.
            let mut out = io::BufWriter::with_capacity(HEAD_READ, &file);
            out.write_all(&head)
                .and_then(|()| message.write_to(&mut out).map(drop))
                .and_then(|()| out.flush())
                .map_err(&write)?;
            drop(out);
            if !sync {
                return fs::rename(&staging, dest.join(&id)).map_err(&write);
            }
            file.sync_all().map_err(&write)?;
            fs::rename(&staging, dest.join(&id)).map_err(&write)?;
            sync_dir(dest).map_err(&write)?;
            sync_dir(&tmp).map_err(&write)
        })();
        if result.is_err() {
            // Nothing half-written stays behind (after a successful rename this finds
            // nothing).
            let _ = fs::remove_file(&staging);
        }
        result.map(|()| id)
    }

    /// Best effort: removes the entries that were delivered or removed (they are out
    /// of the queue already, in `tmp/`). Nothing reads an entry's file once it is
    /// there, whoever still holds its lock. Returns how many it found.
    pub fn sweep(&self) -> usize {
        store::sweep(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::testing::*;
    use std::time::Duration;

    #[test]
    fn enqueue_and_list_round_trip() {
        let t = TempDir::new();
        let q = t.queue();
        let message = big_message();
        let now = at(T0) + Duration::from_millis(250);
        let id = q
            .enqueue(
                Some(&addr("me@example.test")),
                &[addr("a@example.test"), addr("b@example.test")],
                &msg(&message),
                "421 4.3.2 shutting down",
                now,
            )
            .unwrap();
        let bounce = q
            .enqueue(None, &[addr("c@example.test")], &msg(b"x\r\n"), "", now)
            .unwrap();
        assert_ne!(id, bounce);

        let listed = entries(q.list().unwrap());
        assert_eq!(listed.len(), 2);
        let entry = listed.iter().find(|e| e.id == id).unwrap();
        assert_eq!(
            *entry,
            Entry {
                id: id.clone(),
                from: Some("me@example.test".into()),
                recipients: vec!["a@example.test".into(), "b@example.test".into()],
                created: at(T0),
                attempts: 0,
                last_error: Some("421 4.3.2 shutting down".into()),
                next_attempt: at(T0),
                size: message.len() as u64,
                dsn: Dsn::default(),
                bounce: None,
                via: None,
                notice: false,
                uid: None,
            }
        );
        assert!(entry.is_due(now));
        let other = listed.iter().find(|e| e.id == bounce).unwrap();
        assert_eq!(other.from, None);
        assert_eq!(other.last_error, None);
        let envelope = other.envelope().unwrap();
        assert_eq!(envelope.from, None);
        assert_eq!(envelope.to, vec![addr("c@example.test")]);

        let mut locked = q.lock(&id).unwrap().unwrap();
        assert_eq!(locked.entry(), entry);
        let opened = locked.open_message().unwrap();
        assert!(opened.to_vec().unwrap() == message);
        assert_eq!(opened.wire_size(), crate::message::wire_size(&message));
        // Nothing is left in the staging area.
        assert_eq!(fs::read_dir(q.dir().join(TMP)).unwrap().count(), 0);
    }

    #[test]
    fn ids_sort_by_time_and_list_is_oldest_first() {
        let t = TempDir::new();
        let q = t.queue();
        let late = enqueue_to(&q, &["a@example.test"], at(T0 + 20));
        let early = enqueue_to(&q, &["a@example.test"], at(T0));
        let middle = enqueue_to(&q, &["a@example.test"], at(T0 + 10));
        let ids: Vec<String> = q.list().unwrap().iter().map(|l| l.id().into()).collect();
        assert_eq!(ids, [early.clone(), middle, late]);
        assert!(early.starts_with(&format!("{T0}.000000.")), "{early}");
        assert!(check_id(&early).is_ok());
    }

    #[test]
    fn a_failure_goes_straight_to_failed() {
        let t = TempDir::new();
        let q = t.queue();
        let id = store_failed(
            &q,
            Some(&addr("me@example.test")),
            &[addr("nobody@example.test")],
            &msg(b"Subject: x\r\n\r\nbody\r\n"),
            "550 5.1.1 <nobody@example.test>: user unknown",
            at(T0),
        )
        .unwrap();
        assert!(q.list().unwrap().is_empty());
        let failed = entries(q.list_failed().unwrap());
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, id);
        assert_eq!(failed[0].recipients, ["nobody@example.test"]);
        assert_eq!(
            failed[0].last_error.as_deref(),
            Some("550 5.1.1 <nobody@example.test>: user unknown")
        );
    }

    #[test]
    fn an_entry_keeps_its_dsn_requests_and_the_fate_of_its_bounce() {
        let t = TempDir::new();
        let q = t.queue();
        let notes = Notes {
            reason: "550 5.1.1 no".into(),
            dsn: Dsn {
                notify: Some("FAILURE,DELAY".into()),
                ret: Some("FULL".into()),
                envid: Some("env.1".into()),
            },
            bounce: Some("sent as 1.2.3".into()),
            id: Some("1796166000.000001.00c0ffee".into()),
            via: Some(addr("alice@example.test")),
            notice: true,
            uid: Some(1000),
        };
        let keep = |from: Option<&Address>| {
            q.keep(
                Folder::Failed,
                from,
                &[addr("a@example.test")],
                &msg(b"x\r\n"),
                &notes,
                at(T0),
            )
            .unwrap()
        };
        let id = keep(None);
        assert_eq!(id, "1796166000.000001.00c0ffee");
        let failed = entries(q.list_failed().unwrap());
        assert_eq!(failed[0].id, id);
        assert_eq!(failed[0].dsn, notes.dsn);
        assert_eq!(failed[0].via.as_deref(), Some("alice@example.test"));
        assert!(failed[0].notice);
        assert_eq!(failed[0].uid, Some(1000));
        // The id asked for is taken now: the next entry gets a new one.
        let other = keep(None);
        assert_ne!(other, id);
        q.remove(&other).unwrap();
        // On a message with a sender, via and notice would be a forgery: the entry
        // is not trusted.
        let forged = keep(Some(&addr("me@example.test")));
        let listed = q.list_failed().unwrap();
        let forged = listed.iter().find(|l| l.id() == forged).unwrap();
        assert!(
            matches!(forged, Listed::Corrupt { problem, .. } if problem.contains("via")),
            "{forged:?}"
        );
        q.remove(forged.id()).unwrap();
        assert_eq!(failed[0].bounce, notes.bounce);
        assert_eq!(failed[0].last_error.as_deref(), Some("550 5.1.1 no"));

        // A RET that is not RFC 3461's makes the entry unreadable, not a bounce of
        // another kind.
        let path = q.dir().join(FAILED).join(&id);
        let text = fs::read(&path).unwrap();
        let bad = String::from_utf8(text)
            .unwrap()
            .replace("ret = \"FULL\"", "ret = \"MOST\"");
        fs::write(&path, bad).unwrap();
        assert!(
            matches!(&q.list_failed().unwrap()[0], Listed::Corrupt { problem, .. } if problem.contains("RET")),
            "{:?}",
            q.list_failed().unwrap()
        );
    }

    #[test]
    fn remove_takes_the_entry_away() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test"], at(T0));
        q.remove(&id).unwrap();
        assert!(q.list().unwrap().is_empty());
        assert!(q.remove(&id).is_err());
    }

    #[test]
    fn open_refuses_what_is_not_a_directory() {
        let t = TempDir::new();
        let file = t.0.join("file");
        fs::write(&file, "").unwrap();
        let err = Queue::open(&file).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains("queue directory"), "{err}");
    }

    #[test]
    fn enqueue_needs_a_recipient() {
        let t = TempDir::new();
        let q = t.queue();
        assert!(q.enqueue(None, &[], &msg(b"x"), "", at(T0)).is_err());
        assert!(q.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(q.dir().join(TMP)).unwrap().count(), 0);
    }
}
