//! The queue: messages that could not be delivered yet, kept on disk until a later
//! flush delivers them, or they expire into `failed`.
//!
//! Layout (directories 0700, files 0600):
//!
//! ```text
//! <queue>/<id>/message        the message, byte for byte as it will be sent
//! <queue>/<id>/envelope       TOML: sender, recipients still to do, attempts, times
//! <queue>/<id>/lock           flock(2)ed by whoever delivers, moves or removes the entry
//! <queue>/failed/<id>/...     entries given up on, same layout
//! <queue>/tmp/                staging on the same filesystem, so that renames are atomic
//! ```
//!
//! An entry only ever appears or disappears by one `rename(2)` of its whole directory,
//! made after every file in it is fsynced and followed by an fsync of the directories
//! involved; the envelope of a queued entry is replaced the same way. So a crash at
//! any moment leaves an entry either absent or whole, with its old or its new
//! envelope. What a crash can leave behind sits in `tmp/`, which is never listed and
//! is cleaned by a later [`Queue::open`].
//!
//! Ids are `<seconds>.<microseconds>.<random>` of the time of queueing: they sort
//! oldest first, and a directory is only taken when no other has the name.
//!
//! Retries back off exponentially: after the n-th failed attempt from the queue the
//! entry waits 5 min × 2^(n-1), at most 4 hours (5, 10, 20, 40, 80, 160, 240, 240...).
//! A freshly queued entry is due at once: the attempt that led to queueing is recorded
//! as its `last_error`, not counted in `attempts`.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::envelope::{Address, Envelope};
use crate::error::Error;
use crate::message::Message;

const TMP: &str = "tmp";
const FAILED: &str = "failed";
const MESSAGE: &str = "message";
const ENVELOPE: &str = "envelope";
/// The next envelope, written in full before it is renamed over [`ENVELOPE`].
const ENVELOPE_NEW: &str = "envelope.new";
const LOCK: &str = "lock";

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// The envelope format this code writes and reads.
const FORMAT: u32 = 1;

/// The first wait after a failed attempt from the queue.
const FIRST_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(4 * 60 * 60);

/// Something in `tmp/` this old and unlocked was left by a crash. Young and unlocked
/// can be a staging directory between its creation and the lock taken in it.
const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// Longest id accepted from a user; ours are 27 characters.
const MAX_ID: usize = 64;

/// The queue directory of this user.
#[derive(Clone, Debug)]
pub struct Queue {
    root: PathBuf,
}

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    Entry(Entry),
    /// An entry whose files cannot be used, and why.
    Corrupt {
        id: String,
        problem: String,
    },
}

impl Listed {
    pub fn id(&self) -> &str {
        match self {
            Listed::Entry(e) => &e.id,
            Listed::Corrupt { id, .. } => id,
        }
    }
}

/// What the envelope file of an entry says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// `None`: the null sender `<>`.
    pub from: Option<String>,
    /// Still to be delivered; never empty.
    pub recipients: Vec<String>,
    pub created: SystemTime,
    /// Failed attempts from the queue.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt: SystemTime,
    /// Length of the message in bytes.
    pub size: u64,
}

impl Entry {
    pub fn is_due(&self, now: SystemTime) -> bool {
        self.next_attempt <= now
    }

    /// How long ago it was queued (zero if `now` is earlier).
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.created).unwrap_or_default()
    }

    /// The envelope to deliver it with.
    pub fn envelope(&self) -> Result<Envelope, Error> {
        let bad =
            |e: crate::envelope::AddressError| Error::Data(format!("queue entry {}: {e}", self.id));
        let from = self
            .from
            .as_deref()
            .map(Address::new)
            .transpose()
            .map_err(bad)?;
        let to = self
            .recipients
            .iter()
            .map(|r| Address::new(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        Ok(Envelope::new(from, to))
    }
}

/// The wait after the `attempts`-th failed attempt from the queue.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    (FIRST_BACKOFF * (1 << doublings)).min(MAX_BACKOFF)
}

/// A duration as people say it, rounded down to its largest unit: "5 days", "1 hour".
pub fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = match secs {
        86400.. => (secs / 86400, "day"),
        3600.. => (secs / 3600, "hour"),
        60.. => (secs / 60, "minute"),
        _ => (secs, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The envelope file. Times are seconds since the epoch; `from = ""` is the null
/// sender, so that a lost key is an error rather than a silent `<>`.
#[derive(Debug, Serialize, Deserialize)]
struct EnvelopeFile {
    format: u32,
    from: String,
    recipients: Vec<String>,
    created: u64,
    attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    next_attempt: u64,
    size: u64,
}

impl EnvelopeFile {
    fn of(entry: &Entry) -> EnvelopeFile {
        EnvelopeFile {
            format: FORMAT,
            from: entry.from.clone().unwrap_or_default(),
            recipients: entry.recipients.clone(),
            created: secs(entry.created),
            attempts: entry.attempts,
            last_error: entry.last_error.clone(),
            next_attempt: secs(entry.next_attempt),
            size: entry.size,
        }
    }

    fn to_toml(&self) -> Result<String, Error> {
        toml::to_string(self).map_err(|e| Error::LocalIo {
            context: "cannot write a queue envelope".into(),
            source: io::Error::other(e),
        })
    }

    /// The entry it describes, with every address checked, since they go into SMTP
    /// commands.
    fn into_entry(self, id: &str) -> Result<Entry, String> {
        if self.format != FORMAT {
            return Err(format!(
                "the envelope has format {}; this outbox reads format {FORMAT}",
                self.format
            ));
        }
        let from = if self.from.is_empty() {
            None
        } else {
            Address::new(&self.from).map_err(|e| format!("the sender: {e}"))?;
            Some(self.from)
        };
        if self.recipients.is_empty() {
            return Err("the envelope has no recipient".into());
        }
        for r in &self.recipients {
            Address::new(r).map_err(|e| format!("a recipient: {e}"))?;
        }
        let time = |s: u64| {
            UNIX_EPOCH
                .checked_add(Duration::from_secs(s))
                .ok_or_else(|| format!("the time {s} is out of range"))
        };
        Ok(Entry {
            id: id.to_owned(),
            from,
            recipients: self.recipients,
            created: time(self.created)?,
            attempts: self.attempts,
            last_error: self.last_error,
            next_attempt: time(self.next_attempt)?,
            size: self.size,
        })
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Why an entry could not be read.
enum Unreadable {
    /// It was moved or removed while we looked: not a problem, just not there.
    Gone,
    Corrupt(String),
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
        let queue = Queue { root };
        queue.clean_tmp(SystemTime::now());
        Ok(queue)
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
        self.store(&self.root, from, recipients, message, reason, now)
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
        self.store(
            &self.root.join(FAILED),
            from,
            recipients,
            message,
            reason,
            now,
        )
    }

    /// Every entry, oldest first. One that cannot be read is listed as corrupt.
    pub fn list(&self) -> Result<Vec<Listed>, Error> {
        scan(&self.root)
    }

    /// The entries in `failed`, oldest first.
    pub fn list_failed(&self) -> Result<Vec<Listed>, Error> {
        scan(&self.root.join(FAILED))
    }

    /// Takes entry `id` for delivery. `Ok(None)` when another process holds it, or
    /// has finished with it (it is no longer in the queue): two flushes never send
    /// the same entry twice. The entry returned is read under the lock, so it shows
    /// what the last holder wrote.
    pub fn lock(&self, id: &str) -> Result<Option<Locked>, Error> {
        check_id(id)?;
        let dir = self.root.join(id);
        let Some(lock) = take_lock(&dir)? else {
            return Ok(None);
        };
        // Whoever moves or removes an entry does so holding its lock: if the entry is
        // still where it was, the lock taken is its lock (read_entry finds it gone
        // otherwise).
        match read_entry(&dir, id, true) {
            Ok((entry, message)) => Ok(Some(Locked {
                root: self.root.clone(),
                dir,
                entry,
                message,
                _lock: lock,
            })),
            Err(Unreadable::Gone) => Ok(None),
            Err(Unreadable::Corrupt(problem)) => Err(corrupt(id, problem)),
        }
    }

    /// Removes entry `id`, from the queue or from `failed`, corrupt or not. Refused
    /// while another process holds it.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        check_id(id)?;
        let found = [self.root.join(id), self.root.join(FAILED).join(id)]
            .into_iter()
            .find_map(|dir| fs::symlink_metadata(&dir).ok().map(|m| (dir, m)));
        let Some((dir, meta)) = found else {
            return Err(Error::Usage(format!(
                "there is no entry {id} in the queue {}",
                self.root.display()
            )));
        };
        if !meta.is_dir() {
            // Not something this code made, but it sits where an entry would.
            return fs::remove_file(&dir).map_err(io_error(format!("cannot remove {id}")));
        }
        let lock = take_lock(&dir)?.filter(|lock| still_at(lock, &dir.join(LOCK)));
        let Some(_lock) = lock else {
            return Err(Error::LocalIo {
                context: format!("cannot remove queue entry {id}"),
                source: io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another process is delivering it, or has just removed it",
                ),
            });
        };
        discard(&self.root, &dir, id)
    }

    fn store(
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
        let (id, staging) = self.new_staging(now)?;
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
            let write = io_error(format!("cannot write to the queue {}", self.root.display()));
            // Locked so that a concurrent open() does not take it for a crash's leftover.
            let lock = create_file(&staging.join(LOCK), b"").map_err(&write)?;
            lock.try_lock().map_err(|e| write(e.into()))?;
            // Streamed: a composed message's attachments are read (and encoded) a
            // block at a time, never whole in memory.
            create_file_with(&staging.join(MESSAGE), |f| message.write_to(f).map(drop))
                .map_err(&write)?;
            let text = EnvelopeFile::of(&entry).to_toml()?;
            create_file(&staging.join(ENVELOPE), text.as_bytes()).map_err(&write)?;
            sync_dir(&staging).map_err(&write)?;
            fs::rename(&staging, dest.join(&id)).map_err(&write)?;
            sync_dir(dest).map_err(&write)?;
            sync_dir(&tmp).map_err(&write)
        })();
        if result.is_err() {
            // Nothing half-written stays behind (after a successful rename this finds
            // nothing).
            let _ = fs::remove_dir_all(&staging);
        }
        result.map(|()| id)
    }

    /// A fresh id and its staging directory in `tmp/`, made with a name no entry,
    /// failed entry or staging directory has.
    fn new_staging(&self, now: SystemTime) -> Result<(String, PathBuf), Error> {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        loop {
            let id = format!(
                "{:010}.{:06}.{:08x}",
                since.as_secs(),
                since.subsec_micros(),
                random_u32()
            );
            let taken = [self.root.join(&id), self.root.join(FAILED).join(&id)]
                .iter()
                .any(|p| fs::symlink_metadata(p).is_ok());
            if taken {
                continue;
            }
            let staging = self.root.join(TMP).join(&id);
            match DirBuilder::new().mode(DIR_MODE).create(&staging) {
                Ok(()) => return Ok((id, staging)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(io_error(format!(
                        "cannot write to the queue {}",
                        self.root.display()
                    ))(e));
                }
            }
        }
    }

    /// Best effort: removes the entries that were delivered or removed (they are out
    /// of the queue already, in `tmp/`). Nothing reads an entry's files once it is
    /// there, whoever still holds its lock. Returns how many it found.
    pub fn sweep(&self) -> usize {
        let Ok(items) = fs::read_dir(self.root.join(TMP)) else {
            return 0;
        };
        let mut found = 0;
        for item in items.flatten() {
            if !item.file_name().to_string_lossy().contains(".removed.") {
                continue;
            }
            let path = item.path();
            // The files an entry has, by name: cheaper than listing the directory.
            for name in [LOCK, MESSAGE, ENVELOPE] {
                let _ = fs::remove_file(path.join(name));
            }
            if fs::remove_dir(&path).is_err() {
                let _ = fs::remove_dir_all(&path);
            }
            found += 1;
        }
        found
    }

    /// Best effort: removes from `tmp/` what is unlocked and older than
    /// [`STALE_AFTER`], i.e. what a crash left. Anything in use is locked or young.
    fn clean_tmp(&self, now: SystemTime) {
        let Ok(items) = fs::read_dir(self.root.join(TMP)) else {
            return;
        };
        for item in items.flatten() {
            let path = item.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > STALE_AFTER);
            if !old {
                continue;
            }
            if !meta.is_dir() {
                let _ = fs::remove_file(&path);
                continue;
            }
            let _lock = match File::open(path.join(LOCK)) {
                Ok(lock) => match lock.try_lock() {
                    Ok(()) => Some(lock),
                    Err(_) => continue,
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(_) => continue,
            };
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// An entry locked for delivery; the lock is released when this is dropped (or the
/// process dies).
#[derive(Debug)]
pub struct Locked {
    root: PathBuf,
    dir: PathBuf,
    entry: Entry,
    /// The message file, opened when the entry was read.
    message: Option<File>,
    _lock: File,
}

impl Locked {
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The message, whole in memory.
    pub fn message(&self) -> Result<Vec<u8>, Error> {
        fs::read(self.dir.join(MESSAGE)).map_err(self.read_error())
    }

    /// The message, read from its file as it is sent (memory does not grow with its
    /// size). The file is read through once here for its size and 8-bit check.
    pub fn open_message(&mut self) -> Result<Message, Error> {
        let path = self.dir.join(MESSAGE);
        let file = match self.message.take() {
            Some(file) => Ok(file),
            None => File::open(&path),
        };
        file.and_then(|file| Message::from_file(file, &path))
            .map_err(self.read_error())
    }

    /// After an attempt: keeps only `remaining` (the others were accepted), records
    /// `error`, counts the attempt and sets the next one by [`backoff`]. With no
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
        write_envelope(&self.dir, &self.entry)
    }

    /// Delivered to everyone: the entry leaves the queue in one rename, then is
    /// deleted.
    pub fn delivered(self) -> Result<(), Error> {
        discard(&self.root, &self.dir, &self.entry.id)
    }

    /// A permanent failure: the entry moves to `failed`, with `reason` as its last
    /// error.
    pub fn fail(mut self, reason: &str) -> Result<(), Error> {
        self.entry.last_error = Some(reason.to_owned());
        // The reason first: a crash before the move leaves the entry queued, to be
        // tried (and refused) once more; after it, the reason is already there.
        write_envelope(&self.dir, &self.entry)?;
        let failed = self.root.join(FAILED);
        let write = io_error(format!(
            "cannot move queue entry {} to failed",
            self.entry.id
        ));
        fs::rename(&self.dir, failed.join(&self.entry.id)).map_err(&write)?;
        sync_dir(&failed).map_err(&write)?;
        sync_dir(&self.root).map_err(&write)
    }

    fn read_error(&self) -> impl Fn(io::Error) -> Error + use<> {
        io_error(format!("cannot read queue entry {}", self.entry.id))
    }
}

/// Replaces the envelope of the entry in `dir` in one rename, so a reader or a crash
/// sees the old one or the new one, whole.
fn write_envelope(dir: &Path, entry: &Entry) -> Result<(), Error> {
    let write = io_error(format!("cannot update queue entry {}", entry.id));
    let text = EnvelopeFile::of(entry).to_toml()?;
    let new = dir.join(ENVELOPE_NEW);
    // A crash may have left one: it is overwritten, never read.
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&new)
        .map_err(&write)?;
    file.write_all(text.as_bytes()).map_err(&write)?;
    file.sync_all().map_err(&write)?;
    fs::rename(&new, dir.join(ENVELOPE)).map_err(&write)?;
    sync_dir(dir).map_err(&write)
}

/// Takes `dir` out of its folder in one rename into `tmp/`, then deletes it. The
/// caller holds its lock, which moves with it, so a cleaner leaves it alone.
fn discard(root: &Path, dir: &Path, id: &str) -> Result<(), Error> {
    let write = io_error(format!("cannot remove queue entry {id}"));
    let tmp = root.join(TMP);
    let grave = tmp.join(format!("{id}.removed.{:08x}", unique_u32()));
    fs::rename(dir, &grave).map_err(&write)?;
    // No fsync, and no removal yet: a crash that undid this rename would bring the
    // entry back, to be sent once more, never lost; and a flush of many messages
    // would spend more on syncing and unlinking than on sending. `Queue::sweep`
    // removes what is out of the queue.
    Ok(())
}

/// The lock of the entry in `dir`: `None` when someone else holds it, or when the
/// entry is not there. Between the open and the lock, the holder before may have moved
/// or removed the entry: then the lock is that of a file no longer there, which the
/// caller checks.
fn take_lock(dir: &Path) -> Result<Option<File>, Error> {
    let path = dir.join(LOCK);
    let failed = io_error(format!("cannot lock {}", dir.display()));
    let lock = match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
    {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(e)) => return Err(failed(e)),
    }
    Ok(Some(lock))
}

/// Whether `path` still names the file open as `file`.
fn still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The entries in `dir`, sorted by id (so by time of queueing).
fn scan(dir: &Path) -> Result<Vec<Listed>, Error> {
    let items =
        fs::read_dir(dir).map_err(io_error(format!("cannot read the queue {}", dir.display())))?;
    let mut listed = Vec::new();
    for item in items.flatten() {
        // Anything that is not named like an entry (tmp/, failed/, an editor's
        // file) is not one.
        let Some(id) = item.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if check_id(&id).is_err() {
            continue;
        }
        match read_entry(&item.path(), &id, false) {
            Ok((entry, _)) => listed.push(Listed::Entry(entry)),
            Err(Unreadable::Gone) => {}
            Err(Unreadable::Corrupt(problem)) => listed.push(Listed::Corrupt { id, problem }),
        }
    }
    listed.sort_by(|a, b| a.id().cmp(b.id()));
    Ok(listed)
}

/// Reads and checks the entry in `dir`. An entry moved away meanwhile is `Gone`. With
/// `open`, the message file is opened, and given back open.
fn read_entry(dir: &Path, id: &str, open: bool) -> Result<(Entry, Option<File>), Unreadable> {
    let problem = |what: &str, e: io::Error| {
        match fs::symlink_metadata(dir) {
            Err(_) => return Unreadable::Gone,
            Ok(m) if !m.is_dir() => return Unreadable::Corrupt("it is not a directory".into()),
            Ok(_) => {}
        }
        if e.kind() == io::ErrorKind::NotFound {
            return Unreadable::Corrupt(format!("it has no {what} file"));
        }
        Unreadable::Corrupt(format!("cannot read its {what}: {e}"))
    };
    let text = read_small(&dir.join(ENVELOPE)).map_err(|e| problem(ENVELOPE, e))?;
    let file: EnvelopeFile = toml::from_str(&text).map_err(|e| {
        Unreadable::Corrupt(format!("its envelope is not valid: {}", e.message().trim()))
    })?;
    let entry = file.into_entry(id).map_err(Unreadable::Corrupt)?;
    let path = dir.join(MESSAGE);
    let (len, message) = if open {
        let file = File::open(&path).map_err(|e| problem(MESSAGE, e))?;
        let len = file.metadata().map_err(|e| problem(MESSAGE, e))?.len();
        (len, Some(file))
    } else {
        let len = fs::metadata(&path).map_err(|e| problem(MESSAGE, e))?.len();
        (len, None)
    };
    if len != entry.size {
        return Err(Unreadable::Corrupt(format!(
            "its message has {len} bytes, its envelope says {}",
            entry.size
        )));
    }
    Ok((entry, message))
}

/// A small text file (an envelope), read without asking its size first (as
/// `fs::read_to_string` does, with two more system calls).
fn read_small(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut bytes = vec![0u8; 1024];
    let mut got = 0;
    loop {
        if got == bytes.len() {
            bytes.resize(got * 2, 0);
        }
        match file.read(&mut bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(got);
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Ids come from users too: one plain path component of safe characters, never `.`,
/// `..`, `tmp` or `failed`.
fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && id != TMP
        && id != FAILED;
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{:?} is not a queue entry id (ids look like 1735732800.123456.9f3a0c1e)",
            id
        )))
    }
}

fn corrupt(id: &str, problem: String) -> Error {
    Error::LocalIo {
        context: format!("queue entry {id} is corrupt"),
        source: io::Error::new(io::ErrorKind::InvalidData, problem),
    }
}

fn io_error(context: String) -> impl Fn(io::Error) -> Error {
    move |source| Error::LocalIo {
        context: context.clone(),
        source,
    }
}

/// A new file holding `bytes`, on disk when this returns.
fn create_file(path: &Path, bytes: &[u8]) -> io::Result<File> {
    create_file_with(path, |f| f.write_all(bytes))
}

/// A new file holding what `fill` writes (through a buffer), on disk when this
/// returns.
fn create_file_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    let mut out = io::BufWriter::with_capacity(64 * 1024, file);
    fill(&mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok(file)
}

/// Makes the names in `dir` (created, renamed, removed) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Distinct at each call within the process (for 2^32 calls), and random across
/// processes: one call for the system's randomness per process, not one per name.
fn unique_u32() -> u32 {
    static BASE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(random_u32);
    // An odd step visits every u32 before coming back.
    base.wrapping_add((COUNT.fetch_add(1, Ordering::Relaxed) as u32).wrapping_mul(0x9e37_79b9))
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_ok() {
        return u32::from_ne_bytes(bytes);
    }
    // Without the system's randomness: still distinct within the process, and the
    // callers retry on a name already taken.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (std::process::id() ^ (n as u32).rotate_left(16)).wrapping_add(n as u32)
}

fn default_dir_from(
    env: impl Fn(&str) -> Option<OsString>,
    euid: Option<u32>,
    passwd_home: impl Fn() -> Option<PathBuf>,
) -> PathBuf {
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("OUTBOX_QUEUE_DIR") {
        return dir;
    }
    if euid == Some(0) {
        return PathBuf::from("/var/spool/outbox");
    }
    // The XDG spec says a relative value is to be ignored.
    if let Some(state) = var("XDG_STATE_HOME").filter(|d| d.is_absolute()) {
        return state.join("outbox/queue");
    }
    match var("HOME").or_else(passwd_home) {
        Some(home) => home.join(".local/state/outbox/queue"),
        // Nowhere to go: open() then says so, naming this.
        None => PathBuf::from("/var/spool/outbox"),
    }
}

/// The home directory of the effective user in /etc/passwd.
fn passwd_home() -> Option<PathBuf> {
    let uid = fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2] == uid).then(|| PathBuf::from(fields[5]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::AtomicUsize;

    /// A directory removed when the test ends.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "outbox-queue-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        /// A queue in a directory that does not exist yet.
        fn queue(&self) -> Queue {
            Queue::open(&self.0.join("queue")).unwrap()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn addr(a: &str) -> Address {
        Address::new(a).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const T0: u64 = 1_750_000_000;

    fn msg(bytes: &[u8]) -> Message {
        Message::from_bytes(bytes.to_vec())
    }

    fn enqueue_to(q: &Queue, to: &[&str], now: SystemTime) -> String {
        let to: Vec<Address> = to.iter().map(|a| addr(a)).collect();
        q.enqueue(
            Some(&addr("me@example.test")),
            &to,
            &msg(b"Subject: x\r\n\r\nbody\r\n"),
            "421 try later",
            now,
        )
        .unwrap()
    }

    fn entries(listed: Vec<Listed>) -> Vec<Entry> {
        listed
            .into_iter()
            .map(|l| match l {
                Listed::Entry(e) => e,
                corrupt => panic!("unexpected {corrupt:?}"),
            })
            .collect()
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Two megabytes with every byte value, bare CRs and LFs, NULs and lone dots.
    fn big_message() -> Vec<u8> {
        let mut m = b"Subject: big\r\n\r\n".to_vec();
        let mut x: u32 = 1;
        while m.len() < 2 * 1024 * 1024 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            m.push((x >> 16) as u8);
            if x.is_multiple_of(97) {
                m.extend_from_slice(b"\n.\n\r.\r\n");
            }
        }
        m
    }

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
        assert!(locked.message().unwrap() == message);
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
    fn a_lock_excludes_every_other_until_dropped() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test"], at(T0));
        let first = q.lock(&id).unwrap().unwrap();
        assert!(q.lock(&id).unwrap().is_none());
        let from_elsewhere = |q_dir: PathBuf, id: String| {
            std::thread::spawn(move || Queue::open(&q_dir).unwrap().lock(&id).unwrap().is_some())
                .join()
                .unwrap()
        };
        assert!(!from_elsewhere(q.dir().to_owned(), id.clone()));
        // Locked entries cannot be removed either.
        let err = q.remove(&id).unwrap_err();
        assert!(err.to_string().contains("another process"), "{err}");
        drop(first);
        assert!(from_elsewhere(q.dir().to_owned(), id.clone()));
        assert!(q.lock(&id).unwrap().is_some());
    }

    #[test]
    fn a_lock_on_an_entry_removed_meanwhile_is_not_taken() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test"], at(T0));
        let lock_path = q.dir().join(&id).join(LOCK);
        // As a second flush would, having opened the lock file before the first one
        // finished.
        let waiting = File::open(&lock_path).unwrap();
        q.lock(&id).unwrap().unwrap().delivered().unwrap();
        waiting.try_lock().unwrap();
        assert!(!still_at(&waiting, &lock_path));
        assert!(q.lock(&id).unwrap().is_none());
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
        assert!(!q.dir().join(&id).join(ENVELOPE_NEW).exists());

        // Nothing left to do: the entry goes.
        q.lock(&id)
            .unwrap()
            .unwrap()
            .retry_later(&[], "", later)
            .unwrap();
        assert!(q.list().unwrap().is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_four_hours() {
        let minutes: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs() / 60).collect();
        assert_eq!(minutes, [5, 10, 20, 40, 80, 160, 240, 240, 240]);
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
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
        let message = fs::read(q.dir().join(FAILED).join(&id).join(MESSAGE)).unwrap();
        assert_eq!(message, b"Subject: x\r\n\r\nbody\r\n");
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
    fn corrupt_entries_are_listed_as_such_and_do_not_stop_the_others() {
        let t = TempDir::new();
        let q = t.queue();
        let good = enqueue_to(&q, &["a@example.test"], at(T0 + 5));
        let garbage = enqueue_to(&q, &["a@example.test"], at(T0 + 1));
        fs::write(q.dir().join(&garbage).join(ENVELOPE), "from = [[[\n").unwrap();
        let no_message = enqueue_to(&q, &["a@example.test"], at(T0 + 2));
        fs::remove_file(q.dir().join(&no_message).join(MESSAGE)).unwrap();
        let truncated = enqueue_to(&q, &["a@example.test"], at(T0 + 3));
        fs::write(q.dir().join(&truncated).join(MESSAGE), "Subj").unwrap();
        let bad_rcpt = enqueue_to(&q, &["a@example.test"], at(T0 + 4));
        let path = q.dir().join(&bad_rcpt).join(ENVELOPE);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("a@example.test", "a@x\\r\\nRSET")).unwrap();
        let empty = format!("{T0}.000000.00000000");
        fs::create_dir(q.dir().join(&empty)).unwrap();
        let plain_file = format!("{T0}.000000.00000001");
        fs::write(q.dir().join(&plain_file), "?").unwrap();
        // Not named like an entry: not one.
        fs::create_dir(q.dir().join(".hidden")).unwrap();

        let listed = q.list().unwrap();
        let problem = |id: &str| match listed.iter().find(|l| l.id() == id) {
            Some(Listed::Corrupt { problem, .. }) => problem.clone(),
            other => panic!("{id}: {other:?}"),
        };
        assert!(problem(&garbage).starts_with("its envelope is not valid"));
        assert_eq!(problem(&no_message), "it has no message file");
        assert_eq!(
            problem(&truncated),
            "its message has 4 bytes, its envelope says 20"
        );
        assert!(problem(&bad_rcpt).contains("control character"));
        assert_eq!(problem(&empty), "it has no envelope file");
        assert_eq!(problem(&plain_file), "it is not a directory");
        assert_eq!(listed.len(), 7);
        assert!(matches!(listed.last(), Some(Listed::Entry(e)) if e.id == good));

        let err = q.lock(&garbage).unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
        // Corrupt entries can be removed.
        for id in [&garbage, &no_message, &empty, &plain_file] {
            q.remove(id).unwrap();
        }
        assert_eq!(q.list().unwrap().len(), 3);
    }

    #[test]
    fn crash_leftovers_are_not_listed_and_stale_ones_are_cleaned() {
        let t = TempDir::new();
        let q = t.queue();
        let tmp = q.dir().join(TMP);
        let stale = SystemTime::now() - 2 * STALE_AFTER;
        // A crash between the message and the envelope.
        let half = tmp.join(format!("{T0}.000000.0000000a"));
        fs::create_dir(&half).unwrap();
        fs::write(half.join(MESSAGE), "Subject: x\r\n").unwrap();
        fs::write(half.join(LOCK), "").unwrap();
        File::open(&half).unwrap().set_modified(stale).unwrap();
        // A crash right after the directory was made.
        let bare = tmp.join(format!("{T0}.000000.0000000b"));
        fs::create_dir(&bare).unwrap();
        File::open(&bare).unwrap().set_modified(stale).unwrap();
        // Another process staging right now: young.
        let young = tmp.join(format!("{T0}.000000.0000000c"));
        fs::create_dir(&young).unwrap();
        // Another process deleting an old entry it moved here: locked.
        let removing = tmp.join(format!("{T0}.000000.0000000d.removed.00000000"));
        fs::create_dir(&removing).unwrap();
        let held = File::create(removing.join(LOCK)).unwrap();
        held.lock().unwrap();
        File::open(&removing).unwrap().set_modified(stale).unwrap();

        assert!(q.list().unwrap().is_empty());
        let q = Queue::open(q.dir()).unwrap();
        assert!(!half.exists());
        assert!(!bare.exists());
        assert!(young.exists());
        assert!(removing.exists());
        drop(held);
        let _ = Queue::open(q.dir()).unwrap();
        assert!(!removing.exists());
        assert!(young.exists());
    }

    #[test]
    fn a_crash_while_rewriting_the_envelope_keeps_the_old_one() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test"], at(T0));
        fs::write(q.dir().join(&id).join(ENVELOPE_NEW), "format = 1\nfro").unwrap();
        let entry = entries(q.list().unwrap()).remove(0);
        assert_eq!(entry.recipients, ["a@example.test"]);
        q.lock(&id)
            .unwrap()
            .unwrap()
            .retry_later(&["a@example.test".into()], "451", at(T0 + 1))
            .unwrap();
        assert_eq!(entries(q.list().unwrap())[0].attempts, 1);
    }

    #[test]
    fn ids_from_users_cannot_leave_the_queue() {
        let t = TempDir::new();
        let q = t.queue();
        let outside = t.0.join("victim");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join(ENVELOPE), "x").unwrap();
        for id in [
            "../victim",
            "..",
            ".",
            "",
            "tmp",
            "failed",
            "/etc",
            "a/b",
            "x\n",
            &"9".repeat(65),
        ] {
            assert!(
                matches!(q.remove(id), Err(Error::Usage(_))),
                "remove {id:?}"
            );
            assert!(matches!(q.lock(id), Err(Error::Usage(_))), "lock {id:?}");
        }
        assert!(outside.join(ENVELOPE).exists());
        assert!(q.dir().join(TMP).is_dir());
        assert!(q.dir().join(FAILED).is_dir());

        let err = q.remove("1750000000.000000.deadbeef").unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
        assert!(err.to_string().contains("no entry"), "{err}");
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
    fn files_are_private() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test"], at(T0));
        for dir in [q.dir().to_owned(), q.dir().join(TMP), q.dir().join(FAILED)] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
        let entry = q.dir().join(&id);
        assert_eq!(mode(&entry), 0o700);
        for f in [MESSAGE, ENVELOPE, LOCK] {
            assert_eq!(mode(&entry.join(f)), 0o600, "{f}");
        }
        q.lock(&id)
            .unwrap()
            .unwrap()
            .retry_later(&["a@example.test".into()], "451", at(T0))
            .unwrap();
        assert_eq!(mode(&entry.join(ENVELOPE)), 0o600);
        let failed = q
            .store_failed(None, &[addr("a@example.test")], &msg(b"x"), "550", at(T0))
            .unwrap();
        assert_eq!(mode(&q.dir().join(FAILED).join(&failed)), 0o700);
        assert_eq!(
            mode(&q.dir().join(FAILED).join(&failed).join(MESSAGE)),
            0o600
        );
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

    #[test]
    fn the_default_directory() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let no_home = || None;
        let home = || Some(PathBuf::from("/home/pw"));
        assert_eq!(
            default_dir_from(env(&[("OUTBOX_QUEUE_DIR", "/q")]), Some(0), no_home),
            Path::new("/q")
        );
        assert_eq!(
            default_dir_from(env(&[("HOME", "/root")]), Some(0), no_home),
            Path::new("/var/spool/outbox")
        );
        assert_eq!(
            default_dir_from(
                env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")]),
                Some(1000),
                no_home
            ),
            Path::new("/s/outbox/queue")
        );
        assert_eq!(
            default_dir_from(
                env(&[
                    ("XDG_STATE_HOME", "rel"),
                    ("HOME", "/h"),
                    ("OUTBOX_QUEUE_DIR", "")
                ]),
                Some(1000),
                no_home
            ),
            Path::new("/h/.local/state/outbox/queue")
        );
        assert_eq!(
            default_dir_from(env(&[]), Some(1000), home),
            Path::new("/home/pw/.local/state/outbox/queue")
        );
    }

    #[test]
    fn durations_as_people_say_them() {
        let d = Duration::from_secs;
        assert_eq!(describe_duration(d(5 * 86400 + 3600)), "5 days");
        assert_eq!(describe_duration(d(86400)), "1 day");
        assert_eq!(describe_duration(d(7200)), "2 hours");
        assert_eq!(describe_duration(d(61)), "1 minute");
        assert_eq!(describe_duration(d(0)), "0 seconds");
    }
}
