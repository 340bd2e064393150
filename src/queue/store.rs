//! The queue's directory: where entries are, how they are named, locked, listed and
//! removed.
//!
//! ```text
//! <queue>/<id>            an entry (see the entry module for its format)
//! <queue>/failed/<id>     entries given up on, the same way
//! <queue>/tmp/            staging and removal, on the same filesystem, so that renames
//!                         are atomic
//! ```
//!
//! Directories are 0700, files 0600. An entry's lock is an flock(2) on its own file.
//! What a crash can leave behind sits in `tmp/`, which is never listed and is cleaned
//! by [`clean_tmp`] when the queue is opened; what was delivered or removed leaves in
//! one rename into `tmp/`, and [`sweep`] deletes it.
//!
//! Ids are `<seconds>.<microseconds>.<random>` of the time of queueing: they sort
//! oldest first, and a name is only taken when no other entry has it.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::entry::{Entry, Unreadable, read_entry};
use crate::error::Error;

pub(super) const TMP: &str = "tmp";
pub(super) const FAILED: &str = "failed";

pub(super) const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Something in `tmp/` this old and unlocked was left by a crash. Young and unlocked
/// can be a staging file between its creation and the lock taken on it.
pub(super) const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// Longest id accepted from a user; ours are 27 characters.
const MAX_ID: usize = 64;

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// Boxed: an entry is large beside the error.
    Entry(Box<Entry>),
    /// An entry whose file cannot be used, and why.
    Corrupt { id: String, problem: String },
}

impl Listed {
    pub fn id(&self) -> &str {
        match self {
            Listed::Entry(e) => &e.id,
            Listed::Corrupt { id, .. } => id,
        }
    }
}

/// A fresh id and its staging file in `tmp/`, made (and locked, so that a
/// concurrent `open` does not take it for a crash's leftover) with a name no
/// entry, failed entry or staging file has.
/// An id of the queue's form for a message taken at `now`: the time, then a random
/// part. A submission that is never queued is logged under one too.
pub fn new_id(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "{:010}.{:06}.{:08x}",
        since.as_secs(),
        since.subsec_micros(),
        random_u32()
    )
}

/// A new entry's staging file in `tmp/`, created and locked, and its id: `wanted`
/// if that is a free id, else a new one for `now`.
pub(super) fn new_staging(
    root: &Path,
    now: SystemTime,
    wanted: Option<&str>,
) -> io::Result<(String, PathBuf, File)> {
    let mut wanted = wanted.filter(|id| check_id(id).is_ok());
    loop {
        let id = wanted.take().map_or_else(|| new_id(now), str::to_owned);
        let taken = [root.join(&id), root.join(FAILED).join(&id)]
            .iter()
            .any(|p| fs::symlink_metadata(p).is_ok());
        if taken {
            continue;
        }
        let staging = root.join(TMP).join(&id);
        match create_new(&staging) {
            Ok(file) => {
                file.try_lock().map_err(io::Error::from)?;
                return Ok((id, staging, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Best effort: deletes what [`discard`] moved into `tmp/` (see `Queue::sweep`);
/// returns how many it found.
pub(super) fn sweep(root: &Path) -> usize {
    let Ok(items) = fs::read_dir(root.join(TMP)) else {
        return 0;
    };
    let mut found = 0;
    for item in items.flatten() {
        if !item.file_name().to_string_lossy().contains(".removed.") {
            continue;
        }
        let path = item.path();
        if fs::remove_file(&path).is_err() {
            let _ = fs::remove_dir_all(&path);
        }
        found += 1;
    }
    found
}

/// Best effort: removes from `tmp/` what is unlocked and older than
/// [`STALE_AFTER`], i.e. what a crash left. Anything in use is locked or young.
pub(super) fn clean_tmp(root: &Path, now: SystemTime) {
    let Ok(items) = fs::read_dir(root.join(TMP)) else {
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
        if meta.is_dir() {
            let _ = fs::remove_dir_all(&path);
            continue;
        }
        // A file still locked is being written.
        let unlocked = File::open(&path).is_ok_and(|f| f.try_lock().is_ok());
        if unlocked {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Takes the entry at `path` out of its folder in one rename into `tmp/`, to be
/// deleted by [`sweep`]. The caller holds its lock.
pub(super) fn discard(root: &Path, path: &Path, id: &str) -> Result<(), Error> {
    let write = io_error(format!("cannot remove queue entry {id}"));
    let grave = root
        .join(TMP)
        .join(format!("{id}.removed.{:08x}", unique_u32()));
    fs::rename(path, &grave).map_err(&write)?;
    // No fsync, and no removal yet: a crash that undid this rename would bring the
    // entry back, to be sent once more, never lost; and a flush of many messages
    // would spend more on syncing and unlinking than on sending. `sweep` removes
    // what is out of the queue.
    Ok(())
}

/// The entry file at `path`, open and flock(2)ed: `None` when someone else holds it,
/// or when the entry is not there (any more). The holder before us may have replaced
/// (new envelope), moved or removed it between our open and our lock: then the lock
/// is that of a file no longer at `path`, and it is not taken.
pub(super) fn take_lock(path: &Path) -> Result<Option<(File, fs::Metadata)>, Error> {
    let failed = io_error(format!("cannot lock {}", path.display()));
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(e)) => return Err(failed(e)),
    }
    match still_at(&file, path) {
        Some(meta) => Ok(Some((file, meta))),
        None => Ok(None),
    }
}

/// The metadata of the file open as `file`, if `path` still names it.
pub(super) fn still_at(file: &File, path: &Path) -> Option<fs::Metadata> {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino() => Some(a),
        _ => None,
    }
}

/// The entries in `dir`, sorted by id (so by time of queueing), and the ids of those
/// whose every recipient is marked settled.
pub(super) fn scan(dir: &Path) -> Result<(Vec<Listed>, Vec<String>), Error> {
    let items =
        fs::read_dir(dir).map_err(io_error(format!("cannot read the queue {}", dir.display())))?;
    let mut listed = Vec::new();
    let mut settled = Vec::new();
    for item in items.flatten() {
        // Anything that is not named like an entry (tmp/, failed/, an editor's
        // file) is not one.
        let Some(id) = item.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // Every id outbox makes has dots (time.micros.random); a name without one is
        // not an entry: root's personal queue is the system spool's root, where
        // `maildrop/`, `queue/` and `limits` live on a machine in system mode.
        if check_id(&id).is_err() || !id.contains('.') {
            continue;
        }
        let path = item.path();
        let read = match File::open(&path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok((file, meta)) => read_entry(&file, &meta, &id, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Unreadable::Gone),
            Err(e) => Err(Unreadable::Corrupt(format!("cannot read it: {e}"))),
        };
        match read {
            Ok(read) => listed.push(Listed::Entry(Box::new(read.entry))),
            Err(Unreadable::Gone) => {}
            Err(Unreadable::Settled) => settled.push(id),
            Err(Unreadable::Corrupt(problem)) => listed.push(Listed::Corrupt { id, problem }),
        }
    }
    listed.sort_by(|a, b| a.id().cmp(b.id()));
    Ok((listed, settled))
}

/// A new file (0600) that was not there.
pub(super) fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Ids come from users too: one plain path component of safe characters, never `.`,
/// `..`, `tmp` or `failed`.
pub(super) fn check_id(id: &str) -> Result<(), Error> {
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

pub(super) fn io_error(context: String) -> impl Fn(io::Error) -> Error {
    move |source| Error::LocalIo {
        context: context.clone(),
        source,
    }
}

/// Makes the names in `dir` (created, renamed, removed) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Distinct at each call within the process (for 2^32 calls), and random across
/// processes: one call for the system's randomness per process, not one per name.
pub(super) fn unique_u32() -> u32 {
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

pub(super) fn default_dir_from(
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
pub(super) fn passwd_home() -> Option<PathBuf> {
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
    use crate::queue::Queue;
    use crate::queue::testing::*;

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
    fn a_lock_on_an_entry_removed_or_replaced_meanwhile_is_not_taken() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test"], at(T0));
        let path = q.dir().join(&id);
        // As a second flush would, having opened the entry before the first one
        // finished.
        let waiting = File::open(&path).unwrap();
        q.lock(&id).unwrap().unwrap().delivered().unwrap();
        waiting.try_lock().unwrap();
        assert!(still_at(&waiting, &path).is_none());
        assert!(q.lock(&id).unwrap().is_none());

        // A new envelope is a new file: the old one's lock is no longer the entry's.
        let id = enqueue_to(&q, &["a@example.test"], at(T0));
        let path = q.dir().join(&id);
        let waiting = File::open(&path).unwrap();
        q.lock(&id)
            .unwrap()
            .unwrap()
            .retry_later(&["a@example.test".into()], "451", at(T0))
            .unwrap();
        waiting.try_lock().unwrap();
        assert!(still_at(&waiting, &path).is_none());
        let again = q.lock(&id).unwrap().unwrap();
        assert_eq!(again.entry().attempts, 1);
    }

    #[test]
    fn crash_leftovers_are_not_listed_and_stale_ones_are_cleaned() {
        let t = TempDir::new();
        let q = t.queue();
        let tmp = q.dir().join(TMP);
        let stale = SystemTime::now() - 2 * STALE_AFTER;
        let age = |p: &Path| File::open(p).unwrap().set_modified(stale).unwrap();
        // A crash while staging an entry, or a new envelope.
        let half = tmp.join(format!("{T0}.000000.0000000a"));
        fs::write(&half, "outbox-queue 2 100\nfrom").unwrap();
        age(&half);
        let new = tmp.join(format!("{T0}.000000.0000000b.new.00000001"));
        fs::write(&new, "outbox-queue 2 100\nfrom").unwrap();
        age(&new);
        // A directory, as an older layout left them.
        let bare = tmp.join(format!("{T0}.000000.0000000c"));
        fs::create_dir(&bare).unwrap();
        fs::write(bare.join("message"), "x").unwrap();
        age(&bare);
        // Another process staging right now: young.
        let young = tmp.join(format!("{T0}.000000.0000000d"));
        fs::write(&young, "").unwrap();
        // Another process staging slowly: locked.
        let slow = tmp.join(format!("{T0}.000000.0000000e"));
        let held = File::create(&slow).unwrap();
        held.lock().unwrap();
        age(&slow);

        assert!(q.list().unwrap().is_empty());
        let q = Queue::open(q.dir()).unwrap();
        assert!(!half.exists());
        assert!(!new.exists());
        assert!(!bare.exists());
        assert!(young.exists());
        assert!(slow.exists());
        drop(held);
        let _ = Queue::open(q.dir()).unwrap();
        assert!(!slow.exists());
        assert!(young.exists());
    }

    #[test]
    fn ids_from_users_cannot_leave_the_queue() {
        let t = TempDir::new();
        let q = t.queue();
        let outside = t.0.join("victim");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("entry"), "x").unwrap();
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
        assert!(outside.join("entry").exists());
        assert!(q.dir().join(TMP).is_dir());
        assert!(q.dir().join(FAILED).is_dir());

        let err = q.remove("1750000000.000000.deadbeef").unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
        assert!(err.to_string().contains("no entry"), "{err}");
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
        assert_eq!(mode(&entry), 0o600);
        q.lock(&id)
            .unwrap()
            .unwrap()
            .retry_later(&["a@example.test".into()], "451", at(T0))
            .unwrap();
        assert_eq!(mode(&entry), 0o600);
        let failed = store_failed(
            &q,
            None,
            &[addr("a@example.test")],
            &msg(b"x"),
            "550",
            at(T0),
        )
        .unwrap();
        assert_eq!(mode(&q.dir().join(FAILED).join(&failed)), 0o600);
        q.lock(&id)
            .unwrap()
            .unwrap()
            .fail(&["a@example.test".into()], "550", None)
            .unwrap();
        assert_eq!(mode(&q.dir().join(FAILED).join(&id)), 0o600);
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
}
