//! What the service does with the drops: list them, move each into the private
//! `incoming/` before anything else, check and read it there, set aside what fails
//! the checks, and remove it once the caller has stored it in its queue.
//!
//! Moving first (rename(2), which acts on the directory entry and follows nothing)
//! takes the drop out of its submitter's reach: `incoming/` is 0700, so from then on
//! they can neither rename, remove nor replace it, a writer only stopped (SIGSTOP)
//! finds its `.tmp` gone, and a drop left there by a crash is taken again, first,
//! at the next pass, under the same name, so that the caller can tell it stored it
//! already (the name is the queue id).
//!
//! A drop is then opened relative to a descriptor of `incoming/` (openat(2)), and
//! only after lstat(2) (`statat` with `AT_SYMLINK_NOFOLLOW`) has found a regular
//! file: opening a device can itself act (a tape rewinds, a modem hangs up). The
//! open adds `O_NOFOLLOW` (a symbolic link fails with `ELOOP` rather than being
//! followed), `O_NONBLOCK` (a FIFO does not block the open waiting for a writer,
//! fifo(7)) and `O_NOCTTY`. What was opened is checked with fstat(2) on the
//! descriptor: a regular file, the inode the lstat saw, one link (a hard link to a
//! file of someone else's has two), not over the size limit, the drop directory's
//! group and no write or execute bit but its owner's (as only a file made in the
//! setgid drop directory has: one renamed in from elsewhere keeps its own), not
//! owned by the service itself. The content is read through that descriptor and
//! must decode whole, trailer and digest included.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Stat};

use super::aside::{MAX_BAD_NAME, clean_reason, truncate};
use super::format::{self, DropEnvelope, MAX_OVERHEAD};
use super::{Limits, Spool, TMP_SUFFIX, is_drop_name};
use crate::error::Error;

/// The mode bits a drop never has: set-id and sticky, execute, and write for the
/// group or others (a drop is 0640).
const FOREIGN_MODE_BITS: u32 = 0o7137;
/// How long a `.tmp` may be left before it is taken for one whose writer died.
pub const DEFAULT_STALE_TMP: Duration = Duration::from_secs(3600);
/// The most set-aside drops `bad/` keeps; beyond, a failing drop is removed.
pub const DEFAULT_MAX_BAD: usize = 1000;
/// The service's view of the drop directory.
#[derive(Debug)]
pub struct Pickup {
    pub maildrop: PathBuf,
    pub incoming: PathBuf,
    pub bad: PathBuf,
    /// The largest message taken, in bytes; larger ones are set aside.
    pub max_message_size: u64,
    /// A `.tmp` changed less than this ago is being written and is left alone; an
    /// older one is taken as a drop whose rename a crash lost, and set aside if it
    /// fails the checks.
    pub stale_tmp: Duration,
    /// An owner whose drops are refused: the service's own uid when it is not root.
    /// No user can create a file the service owns, so one there is a hard link or
    /// a mistake, never a submission.
    pub refuse_owner: Option<u32>,
    /// The most set-aside drops kept in `bad/`.
    pub max_bad: usize,
    /// Names that could be neither moved nor removed (a user's directory, which the
    /// service may not rename): reported once, then passed over.
    pub(super) skip: Mutex<BTreeSet<OsString>>,
}

impl Clone for Pickup {
    fn clone(&self) -> Pickup {
        Pickup {
            maildrop: self.maildrop.clone(),
            incoming: self.incoming.clone(),
            bad: self.bad.clone(),
            max_message_size: self.max_message_size,
            stale_tmp: self.stale_tmp,
            refuse_owner: self.refuse_owner,
            max_bad: self.max_bad,
            skip: Mutex::new(self.skipped()),
        }
    }
}

/// A drop that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picked {
    /// Its name, which is also its queue id.
    pub name: String,
    /// The submitting user: the file's owner.
    pub uid: u32,
    pub envelope: DropEnvelope,
    pub message: Vec<u8>,
    /// When it was dropped: the file's status change time as the service found it in
    /// the drop directory, which a user cannot set (touch -d sets the mtime alone).
    pub dropped: SystemTime,
    /// The file taken, which [`Pickup::done`] checks before it removes it.
    pub file: FileId,
}

/// A file's device and inode numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// A drop that failed the checks, moved into `bad/` with a `<name>.reason` beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAside {
    pub name: String,
    /// Its name in `bad/` (the same, unless that was taken or too long); `None` when
    /// it is not there: removed (`bad/` is full) or not moved (the reason says why).
    pub moved_to: Option<String>,
    /// The owner, when it could be seen.
    pub uid: Option<u32>,
    /// Why, control characters replaced and at most [`MAX_REASON`] characters long.
    pub reason: String,
}

/// What taking one drop found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Picked(Picked),
    SetAside(SetAside),
}

impl Spool {
    /// The service's pickup, taking messages up to `limits.max_message_size`.
    pub fn pickup(&self, limits: &Limits) -> Pickup {
        let euid = crate::passwd::effective_uid();
        Pickup {
            maildrop: self.maildrop(),
            incoming: self.incoming(),
            bad: self.bad(),
            max_message_size: limits.max_message_size,
            stale_tmp: DEFAULT_STALE_TMP,
            refuse_owner: (euid != 0).then_some(euid),
            max_bad: DEFAULT_MAX_BAD,
            skip: Mutex::new(BTreeSet::new()),
        }
    }
}

impl Pickup {
    /// The names to take, oldest first: those a crash left in `incoming/`, then the
    /// drops ready in `maildrop/` (a `.tmp` counts once it is stale). A name that is
    /// not UTF-8 is moved into `incoming/` under a printable one (its bytes escaped),
    /// to be set aside by [`Pickup::take`] like any name no drop has. An error only
    /// when a directory itself cannot be read.
    pub fn waiting(&self, now: SystemTime) -> Result<Vec<String>, Error> {
        let skip = self.skipped();
        let mut names: Vec<String> = list(&self.incoming)?
            .into_iter()
            .filter(|n| !skip.contains(n))
            .filter_map(|n| n.into_string().ok())
            .collect();
        names.sort();
        let maildrop = open_dir(&self.maildrop)?;
        let mut dropped = Vec::new();
        for name in list(&self.maildrop)? {
            if skip.contains(&name) {
                continue;
            }
            match name.to_str() {
                Some(n) if names.iter().any(|m| m == n) => {}
                Some(n) => {
                    if !n.ends_with(TMP_SUFFIX) || self.is_stale(&maildrop, n, now) {
                        dropped.push(n.to_owned());
                    }
                }
                None => {
                    if let Some(printable) = self.rename_unprintable(&maildrop, &name) {
                        names.push(printable);
                    }
                }
            }
        }
        dropped.sort();
        names.extend(dropped);
        Ok(names)
    }

    /// Takes the drop `name`: moves it from `maildrop/` into `incoming/` (unless it
    /// is there already), then checks and reads it there. `Ok(None)`: it is gone (its
    /// owner removed it first) or a `.tmp` still being written. An error when a
    /// directory cannot be opened, or `name` is no name in a directory.
    pub fn take(&self, name: &str, now: SystemTime) -> Result<Option<Found>, Error> {
        if !is_plain_name(name) {
            return Err(Error::Usage(format!("{name:?} is not a drop's name")));
        }
        let incoming = open_dir(&self.incoming)?;
        let maildrop = open_dir(&self.maildrop)?;
        let dir_gid = rustix::fs::fstat(&maildrop)
            .map_err(|e| io_error("examine", &self.maildrop, e.into()))?
            .st_gid;
        let dropped = match rustix::fs::statat(&incoming, name, AtFlags::SYMLINK_NOFOLLOW) {
            // Left there by a crash, or renamed there by `waiting`.
            Ok(st) => changed(&st),
            Err(rustix::io::Errno::NOENT) => {
                let seen = match rustix::fs::statat(&maildrop, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(rustix::io::Errno::NOENT) => return Ok(None),
                    Err(e) => return Err(io_error("examine", &self.maildrop.join(name), e.into())),
                };
                if name.ends_with(TMP_SUFFIX) && !self.stale(&seen, now) {
                    return Ok(None);
                }
                match rustix::fs::renameat_with(
                    &maildrop,
                    name,
                    &incoming,
                    name,
                    RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => {}
                    // Its owner removed or renamed it since: theirs to do.
                    Err(rustix::io::Errno::NOENT) => return Ok(None),
                    Err(e) => return Ok(Some(Found::SetAside(self.unmovable(name, &seen, e)))),
                }
                changed(&seen)
            }
            Err(e) => return Err(io_error("examine", &self.incoming.join(name), e.into())),
        };
        Ok(match self.check(&incoming, name, dir_gid) {
            Ok((uid, envelope, message, file)) => Some(Found::Picked(Picked {
                name: name.to_owned(),
                uid,
                envelope,
                message,
                dropped,
                file,
            })),
            Err(Refused { uid, reason }) => Some(Found::SetAside(
                self.set_aside(&incoming, name, uid, &reason),
            )),
        })
    }

    /// Removes `incoming/NAME` once the caller has stored the drop, checking that it
    /// is still the file that was taken.
    pub fn done(&self, picked: &Picked) -> Result<(), Error> {
        let name = &picked.name;
        if !is_plain_name(name) {
            return Err(Error::Usage(format!("{name:?} is not a drop's name")));
        }
        let incoming = open_dir(&self.incoming)?;
        let path = self.incoming.join(name);
        let st = rustix::fs::statat(&incoming, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_error("examine", &path, e.into()))?;
        if file_id(&st) != picked.file {
            return Err(io_error(
                "remove",
                &path,
                io::Error::other("it is not the file that was taken"),
            ));
        }
        // Not fsynced: a removal a power cut undoes brings the drop back, and the
        // service, finding its entry stored, removes it again (Queue::stored).
        rustix::fs::unlinkat(&incoming, name.as_str(), AtFlags::empty())
            .map_err(|e| io_error("remove", &path, e.into()))
    }

    /// The names passed over because they could be neither moved nor removed.
    pub fn skipped(&self) -> BTreeSet<OsString> {
        self.skip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn skip(&self, name: OsString) {
        self.skip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name);
    }

    /// The checks, on the entry `name` of `incoming/`, and the drop read through the
    /// descriptor they passed.
    fn check(
        &self,
        dir: &OwnedFd,
        name: &str,
        dir_gid: u32,
    ) -> Result<(u32, DropEnvelope, Vec<u8>, FileId), Refused> {
        let seen = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Refused::new(None, format!("cannot examine it: {e}")))?;
        let uid = Some(seen.st_uid);
        if !is_drop_name(name) {
            return Err(Refused::new(uid, "a name no drop has".into()));
        }
        self.check_stat(&seen, dir_gid)?;
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP) => {
                return Err(Refused::new(uid, "a symbolic link (not followed)".into()));
            }
            Err(e) => return Err(Refused::new(uid, format!("cannot open it: {e}"))),
        };
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| Refused::new(uid, format!("cannot examine it: {e}")))?;
        if file_id(&st) != file_id(&seen) {
            return Err(Refused::new(
                Some(st.st_uid),
                "replaced while being opened".into(),
            ));
        }
        // Again on what was opened: the entry may have changed between the two.
        self.check_stat(&st, dir_gid)?;
        let uid = st.st_uid;
        let max = self.max_file_size();
        let mut bytes = Vec::new();
        // One byte over the limit tells a file that grew since fstat.
        File::from(fd)
            .take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| Refused::new(Some(uid), format!("cannot read it: {e}")))?;
        if bytes.len() as u64 > max {
            return Err(Refused::new(Some(uid), self.too_big()));
        }
        let (envelope, message) =
            format::decode(&bytes).map_err(|reason| Refused::new(Some(uid), reason))?;
        if message.len() as u64 > self.max_message_size {
            return Err(Refused::new(Some(uid), self.too_big()));
        }
        Ok((uid, envelope, message.to_vec(), file_id(&st)))
    }

    /// The checks on the file's status, before and after it is opened. A file made in
    /// the drop directory has the directory's group (its setgid bit) and, as a drop
    /// makes it, no write or execute bit but its owner's: a file of someone else's,
    /// renamed in from elsewhere by a user who may move it there, fails one or the
    /// other, so its owner cannot be made to seem its submitter.
    fn check_stat(&self, st: &Stat, dir_gid: u32) -> Result<(), Refused> {
        let uid = Some(st.st_uid);
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(Refused::new(
                uid,
                format!("not a regular file: {}", describe(kind)),
            ));
        }
        if st.st_nlink != 1 {
            return Err(Refused::new(
                uid,
                format!("{} links to the file (a hard link)", st.st_nlink),
            ));
        }
        if st.st_size < 0 || st.st_size as u64 > self.max_file_size() {
            return Err(Refused::new(uid, self.too_big()));
        }
        if st.st_gid != dir_gid {
            return Err(Refused::new(
                uid,
                format!(
                    "its group is {}, not the drop directory's {dir_gid}: not made there",
                    st.st_gid
                ),
            ));
        }
        if st.st_mode & FOREIGN_MODE_BITS != 0 {
            return Err(Refused::new(
                uid,
                format!(
                    "mode {:o}: others may write or run it, not a drop",
                    st.st_mode & 0o7777
                ),
            ));
        }
        if self.refuse_owner == Some(st.st_uid) {
            return Err(Refused::new(uid, "owned by the service itself".into()));
        }
        Ok(())
    }

    /// The largest drop file that can hold a message within the limit.
    fn max_file_size(&self) -> u64 {
        self.max_message_size.saturating_add(MAX_OVERHEAD)
    }

    fn too_big(&self) -> String {
        format!(
            "over the size limit of {} bytes a message",
            self.max_message_size
        )
    }

    fn is_stale(&self, dir: &OwnedFd, name: &str, now: SystemTime) -> bool {
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| self.stale(&st, now))
    }

    /// Whether a `.tmp` has not changed for [`Pickup::stale_tmp`]: the status change
    /// time, which every write moves and no user can set back.
    fn stale(&self, st: &Stat, now: SystemTime) -> bool {
        now.duration_since(changed(st)).unwrap_or_default() >= self.stale_tmp
    }

    /// A drop the service could not move out of `maildrop/` (a directory of another
    /// user: renaming it would change its `..`, which needs write permission on it).
    /// Reported once: it is passed over from then on.
    fn unmovable(&self, name: &str, seen: &Stat, e: rustix::io::Errno) -> SetAside {
        self.skip(name.into());
        let kind = FileType::from_raw_mode(seen.st_mode);
        let what = if kind == FileType::RegularFile {
            "a file"
        } else {
            describe(kind)
        };
        SetAside {
            name: name.to_owned(),
            moved_to: None,
            uid: Some(seen.st_uid),
            reason: clean_reason(&format!(
                "{what} that cannot be moved out of the drop directory ({e}); passed over \
                 from now on"
            )),
        }
    }

    /// Moves an entry whose name is not UTF-8 into `incoming/` under its bytes
    /// escaped, and returns that name; passes it over from then on when it cannot.
    fn rename_unprintable(&self, maildrop: &OwnedFd, name: &OsString) -> Option<String> {
        let incoming = open_dir(&self.incoming).ok()?;
        let escaped: String = name.as_bytes().escape_ascii().to_string();
        let base = truncate(&escaped, MAX_BAD_NAME);
        for n in 0..100u32 {
            let to = if n == 0 {
                base.to_owned()
            } else {
                format!("{base}.{n}")
            };
            match rustix::fs::renameat_with(
                maildrop,
                name.as_os_str(),
                &incoming,
                to.as_str(),
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => return Some(to),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(_) => break,
            }
        }
        self.skip(name.clone());
        None
    }
}

/// Why a drop was not picked.
struct Refused {
    uid: Option<u32>,
    reason: String,
}

impl Refused {
    fn new(uid: Option<u32>, reason: String) -> Refused {
        Refused { uid, reason }
    }
}

/// The entries of a directory, unsorted.
pub(super) fn list(dir: &Path) -> Result<Vec<OsString>, Error> {
    std::fs::read_dir(dir)
        .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect())
        .map_err(|e| io_error("list", dir, e))
}

/// A directory, opened without following a symbolic link in its last component.
pub(super) fn open_dir(path: &Path) -> Result<OwnedFd, Error> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::open(path, flags, Mode::empty()).map_err(|e| io_error("open", path, e.into()))
}

pub(super) fn io_error(what: &str, path: &Path, source: io::Error) -> Error {
    Error::LocalIo {
        context: format!("cannot {what} {}", path.display()),
        source,
    }
}

pub(super) fn file_id(st: &Stat) -> FileId {
    FileId {
        dev: st.st_dev,
        ino: st.st_ino,
    }
}

/// The status change time.
fn changed(st: &Stat) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(st.st_ctime.max(0) as u64))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A name in the directory itself: not empty, no `/`, not `.` or `..`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link (not followed)",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "of an unknown kind",
    }
}
