//! The queue: messages that could not be delivered yet, kept on disk until a later
//! flush delivers them, or they expire into `failed`.
//!
//! Layout (directories 0700, files 0600):
//!
//! ```text
//! <queue>/<id>            an entry: a first line, the envelope (TOML), the message
//! <queue>/failed/<id>     entries given up on, the same way
//! <queue>/tmp/            staging and removal, on the same filesystem, so that renames
//!                         are atomic
//! ```
//!
//! An entry is one file: a first line, the envelope, the message (see the `entry`
//! module for its format).
//!
//! An entry is written in `tmp/`, fsynced, then renamed into place and the directory
//! fsynced; a new envelope means a new file (the message copied in the kernel),
//! renamed over the old. So a crash at any moment leaves an entry either absent or
//! whole, with its old or its new envelope. Before a new envelope drops recipients
//! who have the message, they are marked in place in the old one (see [`marks`]),
//! which needs no free space: a full disk cannot make a later flush send them a
//! second copy. What a crash can leave behind sits in `tmp/`, which is never listed
//! and is cleaned by a later [`Queue::open`].

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::envelope::Address;
use crate::error::Error;
use crate::message::Message;

mod entry;
mod marks;
mod retry;
mod store;
#[cfg(test)]
mod testing;

pub use entry::Entry;
use entry::{EnvelopeFile, HEAD_READ, Unreadable, corrupt, read_entry};
use marks::Marks;
use retry::backoff;
pub use retry::{Pick, describe_duration};
pub use store::Listed;
use store::{
    DIR_MODE, FAILED, TMP, check_id, clean_tmp, create_new, default_dir_from, discard, io_error,
    new_staging, passwd_home, scan, sync_dir, take_lock, unique_u32,
};

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
        self.add(&self.root, from, recipients, message, reason, now)
    }

    /// Stores a message that failed permanently straight into `failed`, with
    /// `reason` (the server's reply); returns its id.
    pub fn store_failed(
        &self,
        from: Option<&Address>,
        recipients: &[Address],
        message: &Message,
        reason: &str,
        now: SystemTime,
    ) -> Result<String, Error> {
        self.add(
            &self.root.join(FAILED),
            from,
            recipients,
            message,
            reason,
            now,
        )
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
            Ok(read) => Ok(Some(Locked {
                root: self.root.clone(),
                path,
                entry: read.entry,
                marks: read.marks,
                places: read.places,
                start: read.start,
                message: read.message,
                file,
            })),
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
        dest: &Path,
        from: Option<&Address>,
        recipients: &[Address],
        message: &Message,
        reason: &str,
        now: SystemTime,
    ) -> Result<String, Error> {
        if recipients.is_empty() {
            return Err(Error::Data(
                "a message with no recipient cannot be queued".into(),
            ));
        }
        let tmp = self.root.join(TMP);
        let write = io_error(format!("cannot write to the queue {}", self.root.display()));
        let (id, staging, file) = new_staging(&self.root, now).map_err(&write)?;
        let entry = Entry {
            id: id.clone(),
            from: from.map(|a| a.as_str().to_owned()),
            recipients: recipients.iter().map(|a| a.as_str().to_owned()).collect(),
            created: now,
            attempts: 0,
            last_error: (!reason.is_empty()).then(|| reason.to_owned()),
            next_attempt: now,
            size: message.len(),
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

/// An entry locked for delivery; the lock is released when this is dropped (or the
/// process dies).
#[derive(Debug)]
pub struct Locked {
    root: PathBuf,
    path: PathBuf,
    /// With the recipients still to do.
    entry: Entry,
    marks: Marks,
    /// The place of each of `entry.recipients` in the envelope's list (and marks).
    places: Vec<usize>,
    /// Where the message begins in the file.
    start: u64,
    /// The message, when it was small enough to be read with the envelope.
    message: Option<Vec<u8>>,
    /// The entry's file, flock(2)ed.
    file: File,
}

impl Locked {
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The message: in memory if it was read with the envelope, else read from the
    /// file as it is sent (memory does not grow with its size; the file is read
    /// through once here for its size and 8-bit check).
    pub fn open_message(&mut self) -> Result<Message, Error> {
        if let Some(m) = self.message.take() {
            return Ok(Message::from_bytes(m));
        }
        self.file
            .try_clone()
            .and_then(|file| Message::from_file_at(file, &self.path, self.start))
            .map_err(self.read_error())
    }

    /// After an attempt: keeps only `remaining` (the others were accepted), records
    /// `error`, counts the attempt and sets the next one by the back-off. With no
    /// recipient remaining the entry is removed.
    pub fn retry_later(
        mut self,
        remaining: &[String],
        error: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        if remaining.is_empty() {
            return self.delivered();
        }
        for r in remaining {
            Address::new(r).map_err(|e| {
                Error::Data(format!("queue entry {}: cannot keep {e}", self.entry.id))
            })?;
        }
        let entry = &mut self.entry;
        entry.recipients = remaining.to_vec();
        entry.attempts = entry.attempts.saturating_add(1);
        entry.last_error = (!error.is_empty()).then(|| error.to_owned());
        entry.next_attempt = now + backoff(entry.attempts);
        let dir = self.root.clone();
        self.rewrite(&dir)
    }

    /// Delivered to everyone: the entry leaves the queue in one rename, then is
    /// deleted. If the rename fails, every recipient is marked settled in place, so
    /// that no flush sends the entry again; a later one removes it.
    pub fn delivered(mut self) -> Result<(), Error> {
        let gone = discard(&self.root, &self.path, &self.entry.id);
        if gone.is_err() {
            self.mark(|_| true)?;
        }
        gone
    }

    /// A permanent failure: the entry moves to `failed`, with `reason` as its last
    /// error.
    pub fn fail(mut self, reason: &str) -> Result<(), Error> {
        self.entry.last_error = Some(reason.to_owned());
        // The new entry goes into failed before the old one leaves the queue: a crash
        // between leaves it in both, to be tried (and refused) once more.
        self.rewrite(&self.root.join(FAILED))?;
        let write = io_error(format!(
            "cannot move queue entry {} to failed",
            self.entry.id
        ));
        fs::remove_file(&self.path).map_err(&write)?;
        sync_dir(&self.root).map_err(&write)
    }

    /// Writes the entry with its envelope as it is now, and the message copied from
    /// the old file, as `<dest>/<id>` (replacing what is there, in one rename).
    fn rewrite(&self, dest: &Path) -> Result<(), Error> {
        let id = &self.entry.id;
        let write = io_error(format!("cannot update queue entry {id}"));
        let head = EnvelopeFile::of(&self.entry).head()?;
        let staging = self
            .root
            .join(TMP)
            .join(format!("{id}.new.{:08x}", unique_u32()));
        let result = (|| {
            let mut out = create_new(&staging)?;
            out.write_all(&head)?;
            let mut from = &self.file;
            from.seek(SeekFrom::Start(self.start))?;
            // Between two files, io::copy has the kernel copy (copy_file_range).
            let copied = io::copy(&mut from.take(self.entry.size), &mut out)?;
            if copied != self.entry.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the message is shorter than its envelope says",
                ));
            }
            out.sync_all()?;
            fs::rename(&staging, dest.join(id))?;
            sync_dir(dest)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&staging);
        }
        result.map_err(write)
    }

    fn read_error(&self) -> impl Fn(io::Error) -> Error + use<> {
        io_error(format!("cannot read queue entry {}", self.entry.id))
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
        assert_eq!(opened.wire_size(), crate::wire_size(&message));
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
    fn retry_later_keeps_the_remaining_and_backs_off() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(
            &q,
            &["a@example.test", "b@example.test", "c@example.test"],
            at(T0),
        );
        let now = at(T0 + 60);
        q.lock(&id)
            .unwrap()
            .unwrap()
            .retry_later(&["b@example.test".into()], "451 4.7.1 greylisted", now)
            .unwrap();
        let entry = entries(q.list().unwrap()).remove(0);
        assert_eq!(entry.recipients, ["b@example.test"]);
        assert_eq!(entry.attempts, 1);
        assert_eq!(entry.last_error.as_deref(), Some("451 4.7.1 greylisted"));
        assert_eq!(entry.next_attempt, now + Duration::from_secs(300));
        assert_eq!(entry.created, at(T0));
        assert!(!entry.is_due(now));
        assert!(!entry.is_due(now + Duration::from_secs(299)));
        assert!(entry.is_due(now + Duration::from_secs(300)));

        let later = entry.next_attempt;
        q.lock(&id)
            .unwrap()
            .unwrap()
            .retry_later(&entry.recipients, "connection refused", later)
            .unwrap();
        let entry = entries(q.list().unwrap()).remove(0);
        assert_eq!(entry.attempts, 2);
        assert_eq!(entry.next_attempt, later + Duration::from_secs(600));
        // The message came along, and nothing is left in the staging area.
        let mut locked = q.lock(&id).unwrap().unwrap();
        assert_eq!(
            locked.open_message().unwrap().to_vec().unwrap(),
            b"Subject: x\r\n\r\nbody\r\n"
        );
        drop(locked);
        assert_eq!(fs::read_dir(q.dir().join(TMP)).unwrap().count(), 0);

        // Nothing left to do: the entry goes.
        q.lock(&id)
            .unwrap()
            .unwrap()
            .retry_later(&[], "", later)
            .unwrap();
        assert!(q.list().unwrap().is_empty());
    }

    #[test]
    fn delivered_removes_the_entry() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test"], at(T0));
        let keep = enqueue_to(&q, &["a@example.test"], at(T0 + 1));
        q.lock(&id).unwrap().unwrap().delivered().unwrap();
        let ids: Vec<String> = q.list().unwrap().iter().map(|l| l.id().into()).collect();
        assert_eq!(ids, [keep]);
        assert!(!q.dir().join(&id).exists());
        // Out of the queue at once; gone from the disk when swept.
        assert_eq!(fs::read_dir(q.dir().join(TMP)).unwrap().count(), 1);
        q.sweep();
        assert_eq!(fs::read_dir(q.dir().join(TMP)).unwrap().count(), 0);
        assert!(q.list_failed().unwrap().is_empty());
    }

    #[test]
    fn fail_moves_the_entry_to_failed_with_the_reason() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test"], at(T0));
        q.lock(&id)
            .unwrap()
            .unwrap()
            .fail("550 5.1.1 no such user")
            .unwrap();
        assert!(q.list().unwrap().is_empty());
        let failed = entries(q.list_failed().unwrap());
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, id);
        assert_eq!(
            failed[0].last_error.as_deref(),
            Some("550 5.1.1 no such user")
        );
        let file = fs::read(q.dir().join(FAILED).join(&id)).unwrap();
        assert!(file.ends_with(b"\nSubject: x\r\n\r\nbody\r\n"));
        assert!(!q.dir().join(&id).exists());
        // A failed entry is no longer offered for delivery, but can be removed.
        assert!(q.lock(&id).unwrap().is_none());
        q.remove(&id).unwrap();
        assert!(q.list_failed().unwrap().is_empty());
    }

    #[test]
    fn store_failed_goes_straight_to_failed() {
        let t = TempDir::new();
        let q = t.queue();
        let id = q
            .store_failed(
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
    fn a_crash_while_rewriting_the_envelope_keeps_the_old_one() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test"], at(T0));
        // What a rewrite leaves when it stops half-way: a file in tmp, never read.
        let half = q.dir().join(TMP).join(format!("{id}.new.00000000"));
        fs::write(&half, "outbox-queue 2 9\nfro").unwrap();
        let entry = entries(q.list().unwrap()).remove(0);
        assert_eq!(entry.recipients, ["a@example.test"]);
        q.lock(&id)
            .unwrap()
            .unwrap()
            .retry_later(&["a@example.test".into()], "451", at(T0 + 1))
            .unwrap();
        assert_eq!(entries(q.list().unwrap())[0].attempts, 1);
    }

    /// The recipients an attempt settled are marked in the entry's own file, in place:
    /// the file keeps its size and inode (no new space needed), only the marks change,
    /// and every later reader leaves those recipients out, whatever could not be
    /// written after.
    #[test]
    fn a_full_queue_disk_never_causes_a_duplicate_marks_in_place() {
        let t = TempDir::new();
        let q = t.queue();
        let to = ["a@example.test", "b@example.test", "c@example.test"];
        let id = enqueue_to(&q, &to, at(T0));
        let path = q.dir().join(&id);
        let before = fs::read(&path).unwrap();
        let inode = fs::metadata(&path).unwrap().ino();
        assert!(
            lossy(&before).contains("\ndone = \"---\"\n"),
            "{}",
            lossy(&before)
        );

        let mut locked = q.lock(&id).unwrap().unwrap();
        locked
            .settle_in_place(&[addr("a@example.test"), addr("c@example.test")])
            .unwrap();
        assert_eq!(locked.entry().recipients, ["b@example.test"]);
        // Settling no one, or someone already settled, writes nothing.
        locked.settle_in_place(&[]).unwrap();
        locked.settle_in_place(&[addr("a@example.test")]).unwrap();
        // As a flush whose new envelope cannot be written: the lock just goes.
        drop(locked);

        let after = fs::read(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(after.len(), before.len());
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 2);
        assert!(
            lossy(&after).contains("\ndone = \"+-+\"\n"),
            "{}",
            lossy(&after)
        );
        let entry = entries(q.list().unwrap()).remove(0);
        assert_eq!(entry.recipients, ["b@example.test"]);

        let mut locked = q.lock(&id).unwrap().unwrap();
        assert_eq!(
            locked.entry().envelope().unwrap().to,
            [addr("b@example.test")]
        );
        assert_eq!(
            locked.open_message().unwrap().to_vec().unwrap(),
            b"Subject: x\r\n\r\nbody\r\n"
        );
        // The next envelope holds only who is left, none of them settled.
        locked
            .retry_later(&["b@example.test".into()], "451", at(T0 + 1))
            .unwrap();
        let rewritten = fs::read(&path).unwrap();
        assert!(lossy(&rewritten).contains("\ndone = \"-\"\n"));
        assert_eq!(entries(q.list().unwrap())[0].recipients, ["b@example.test"]);
    }

    /// A delivered entry that cannot leave the queue (the rename fails) is marked
    /// settled for everyone: no flush sends it again, and the next listing removes it.
    #[test]
    fn a_delivered_entry_that_cannot_be_removed_is_never_sent_again() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test", "b@example.test"], at(T0));
        let tmp = q.dir().join(TMP);
        fs::remove_dir(&tmp).unwrap();
        fs::write(&tmp, "in the way").unwrap();
        let err = q.lock(&id).unwrap().unwrap().delivered().unwrap_err();
        assert!(err.to_string().contains("cannot remove"), "{err}");
        assert!(q.dir().join(&id).exists());
        // Not listed, so not sent; it cannot go yet.
        assert!(q.list().unwrap().is_empty());
        assert!(q.dir().join(&id).exists());
        fs::remove_file(&tmp).unwrap();
        fs::create_dir(&tmp).unwrap();
        assert!(q.list().unwrap().is_empty());
        assert!(!q.dir().join(&id).exists());
        assert!(q.lock(&id).unwrap().is_none());
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
