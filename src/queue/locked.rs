//! An entry taken for delivery, under its lock, and the ways an attempt at it ends:
//! kept for later with the recipients still to do, delivered, or failed.
//!
//! A new envelope means a new file (the message copied in the kernel), written in
//! `tmp/`, fsynced, and renamed over the old: a crash at any moment leaves the entry
//! whole, with its old or its new envelope. Before a new envelope drops recipients who
//! have the message, they are marked in place in the old one (see the marks module),
//! which needs no free space: a full disk cannot make a later flush send them a
//! second copy.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::entry::{Entry, EnvelopeFile, Loaded};
use super::marks::Marks;
use super::retry::backoff;
use super::store::{FAILED, TMP, create_new, discard, io_error, sync_dir, unique_u32};
use crate::envelope::Address;
use crate::error::Error;
use crate::message::Message;

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
    /// The entry read from `file` (at `path`, in the queue at `root`), whose lock the
    /// caller has taken.
    pub(super) fn new(root: &Path, path: PathBuf, read: Loaded, file: File) -> Locked {
        Locked {
            root: root.to_owned(),
            path,
            entry: read.entry,
            marks: read.marks,
            places: read.places,
            start: read.start,
            message: read.message,
            file,
        }
    }

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

    /// A permanent failure: the entry moves to `failed` for `recipients` (the ones it
    /// failed for, named as the caller knows them, not as marks left them), with
    /// `reason` as its last error and `bounce` saying what became of its bounce.
    pub fn fail(
        mut self,
        recipients: &[String],
        reason: &str,
        bounce: Option<String>,
    ) -> Result<(), Error> {
        if recipients.is_empty() {
            return Err(Error::Data(format!(
                "queue entry {}: a failure for no recipient",
                self.entry.id
            )));
        }
        for r in recipients {
            Address::new(r).map_err(|e| {
                Error::Data(format!("queue entry {}: cannot keep {e}", self.entry.id))
            })?;
        }
        self.entry.recipients = recipients.to_vec();
        self.entry.last_error = Some(reason.to_owned());
        self.entry.bounce = bounce;
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

    /// Records that `settled` (the server has the message for them, or their refusal
    /// is kept in `failed`) need nothing more, in place in the entry's file: nothing
    /// that fails afterwards, a full disk included, can have them tried again (see
    /// the marks module). Synced when it returns. An entry written by an older outbox
    /// has no marks, and only the envelope written next will say it.
    ///
    /// A recipient matches as written in the entry or in its ASCII form: to a server
    /// without SMTPUTF8 the results name `info@xn--bcher-kva.example` for the entry's
    /// `info@bücher.example`.
    pub fn settle_in_place(&mut self, settled: &[Address]) -> Result<(), Error> {
        // A set, so that settling tens of thousands of recipients stays linear.
        let settled: HashSet<&str> = settled.iter().map(Address::as_str).collect();
        self.mark(|r| {
            settled.contains(r)
                || Address::new(r)
                    .ok()
                    .and_then(|a| a.to_ascii())
                    .is_some_and(|a| settled.contains(a.as_str()))
        })
    }

    /// Marks settled each recipient still to do for whom `settled` holds.
    fn mark(&mut self, settled: impl Fn(&str) -> bool) -> Result<(), Error> {
        let (done, todo): (Vec<_>, Vec<_>) = self
            .entry
            .recipients
            .iter()
            .cloned()
            .zip(self.places.iter().copied())
            .partition(|(r, _)| settled(r));
        if done.is_empty() {
            return Ok(());
        }
        let write = io_error(format!(
            "cannot mark recipients done in queue entry {}",
            self.entry.id
        ));
        // Under our lock nobody replaces the entry, so its path still names our file.
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(&write)?;
        let places: Vec<usize> = done.into_iter().map(|(_, p)| p).collect();
        self.marks.settle(&file, &places).map_err(&write)?;
        (self.entry.recipients, self.places) = todo.into_iter().unzip();
        Ok(())
    }

    fn read_error(&self) -> impl Fn(io::Error) -> Error + use<> {
        io_error(format!("cannot read queue entry {}", self.entry.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::testing::*;
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;

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
            .fail(
                &["a@example.test".into()],
                "550 5.1.1 no such user",
                Some("sent as 1.2.3".into()),
            )
            .unwrap();
        assert!(q.list().unwrap().is_empty());
        let failed = entries(q.list_failed().unwrap());
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, id);
        assert_eq!(
            failed[0].last_error.as_deref(),
            Some("550 5.1.1 no such user")
        );
        assert_eq!(failed[0].bounce.as_deref(), Some("sent as 1.2.3"));
        let file = fs::read(q.dir().join(FAILED).join(&id)).unwrap();
        assert!(file.ends_with(b"\nSubject: x\r\n\r\nbody\r\n"));
        assert!(!q.dir().join(&id).exists());
        // A failed entry is no longer offered for delivery, but can be removed.
        assert!(q.lock(&id).unwrap().is_none());
        q.remove(&id).unwrap();
        assert!(q.list_failed().unwrap().is_empty());
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

    /// To a server without SMTPUTF8 the results name the ASCII form of an IDN
    /// address: the marks must find the entry's recipient all the same, or a full disk
    /// would have it sent a second copy.
    #[test]
    fn marks_find_a_recipient_named_by_its_a_labels() {
        let t = TempDir::new();
        let q = t.queue();
        let to = ["info@bücher.example", "x@example.test"];
        let id = enqueue_to(&q, &to, at(T0));
        let mut locked = q.lock(&id).unwrap().unwrap();
        locked
            .settle_in_place(&[addr("info@xn--bcher-kva.example")])
            .unwrap();
        assert_eq!(locked.entry().recipients, ["x@example.test"]);
        drop(locked);
        let entry = entries(q.list().unwrap()).remove(0);
        assert_eq!(entry.recipients, ["x@example.test"]);
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
}
