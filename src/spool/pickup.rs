//! What the service does with the drop directory: list it, take each drop with checks
//! that nothing a user put there is followed or trusted, set aside what fails them,
//! and remove a drop once the caller has stored it in its queue.
//!
//! A drop is opened relative to a descriptor of the directory (openat(2)), so that
//! nothing but the last component is looked up again, and only after lstat(2)
//! (`statat` with `AT_SYMLINK_NOFOLLOW`) has found a regular file: opening a device
//! can itself act (a tape rewinds, a modem hangs up). The open then adds:
//!
//! - `O_NOFOLLOW`: a symbolic link put there since fails with `ELOOP` instead of
//!   being followed (open(2));
//! - `O_NONBLOCK`: a FIFO put there since does not block the open waiting for a
//!   writer (fifo(7)); `O_NOCTTY`: a terminal does not become ours.
//!
//! What was opened is then checked with fstat(2) on the descriptor, never on the path
//! again: a regular file, the same inode the lstat saw, one link (a hard link to a
//! file of someone else's has two, and its owner is not the submitter), not over the
//! size limit, not owned by the service itself. The content is read through that
//! descriptor and must decode whole, trailer and digest included.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Stat};

use super::format::{self, DropEnvelope};
use super::{BAD, TMP_SUFFIX};
use crate::error::Error;

/// The default size limit of a drop: a message of 64 MiB and its envelope.
pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024 + 4 * 1024 * 1024;
/// The mode bits a drop never has: set-id and sticky, execute, and write for the
/// group or others (a drop is 0640).
const FOREIGN_MODE_BITS: u32 = 0o7137;

/// How long a `.tmp` may be left before it is taken for one whose writer died.
pub const DEFAULT_STALE_TMP: Duration = Duration::from_secs(3600);

/// The service's view of a drop directory.
#[derive(Clone, Debug)]
pub struct Pickup {
    pub dir: PathBuf,
    /// The largest drop file taken, in bytes; larger ones are set aside.
    pub max_size: u64,
    /// A `.tmp` younger than this is being written and is left alone; an older one
    /// is checked as a drop whose rename a crash lost, and set aside if it fails.
    pub stale_tmp: Duration,
    /// An owner whose drops are refused: the service's own uid when it is not root.
    /// No user can create a file the service owns, so one there is a hard link or
    /// a mistake, never a submission.
    pub refuse_owner: Option<u32>,
}

/// A drop that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picked {
    pub name: String,
    /// The submitting user: the file's owner.
    pub uid: u32,
    pub envelope: DropEnvelope,
    pub message: Vec<u8>,
    /// When the drop was written (the file's modification time).
    pub dropped: SystemTime,
}

/// A drop moved into `bad/`, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAside {
    pub name: String,
    /// Its name in `bad/` (the same, unless that was taken); `None` when the rename
    /// failed (the reason says why) and it is still in the drop directory.
    pub moved_to: Option<String>,
    /// The owner, when it could be seen.
    pub uid: Option<u32>,
    pub reason: String,
}

/// What a scan found in the drop directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Picked(Picked),
    SetAside(SetAside),
}

impl Pickup {
    /// The drop directory `dir` with the default limits, for a service running as
    /// the current effective user.
    pub fn new(dir: impl Into<PathBuf>) -> Pickup {
        let euid = rustix::process::geteuid().as_raw();
        Pickup {
            dir: dir.into(),
            max_size: DEFAULT_MAX_SIZE,
            stale_tmp: DEFAULT_STALE_TMP,
            refuse_owner: (euid != 0).then_some(euid),
        }
    }

    /// Every drop ready in the directory, oldest name first, each picked or set
    /// aside; `.tmp` files younger than [`Pickup::stale_tmp`] are left alone.
    /// An error only when the directory itself cannot be read.
    pub fn scan(&self, now: SystemTime) -> Result<Vec<Found>, Error> {
        let dirfd = self.open_dir(&self.dir)?;
        let mut names = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| self.io("list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.io("list", &self.dir, e))?;
            // A name that is not UTF-8 is no drop of ours: it is left where it is, at
            // the cost of one directory entry.
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == BAD || entry.file_name().to_str().is_none() {
                continue;
            }
            names.push(name);
        }
        names.sort();
        let mut found = Vec::new();
        for name in names {
            if name.ends_with(TMP_SUFFIX) && !self.is_stale(&dirfd, &name, now) {
                continue;
            }
            if let Some(f) = self.take_at(&dirfd, &name) {
                found.push(f);
            }
        }
        Ok(found)
    }

    /// Takes the one drop `name`: picked, or set aside (`None` if it is gone).
    pub fn take(&self, name: &str) -> Result<Option<Found>, Error> {
        let dirfd = self.open_dir(&self.dir)?;
        Ok(self.take_at(&dirfd, name))
    }

    /// Removes a picked drop, once the caller has stored it in its queue.
    pub fn done(&self, name: &str) -> Result<(), Error> {
        if !is_plain_name(name) {
            return Err(Error::Usage(format!("{name:?} is not a drop's name")));
        }
        let dirfd = self.open_dir(&self.dir)?;
        rustix::fs::unlinkat(&dirfd, name, AtFlags::empty())
            .map_err(|e| self.io("remove the drop", &self.dir.join(name), e.into()))?;
        rustix::fs::fsync(&dirfd).map_err(|e| self.io("sync", &self.dir, e.into()))
    }

    fn take_at(&self, dirfd: &OwnedFd, name: &str) -> Option<Found> {
        if !is_plain_name(name) {
            return None;
        }
        match self.check(dirfd, name) {
            Ok(picked) => Some(Found::Picked(picked)),
            Err(Refused::Gone) => None,
            Err(Refused::Bad { uid, reason }) => {
                Some(Found::SetAside(self.set_aside(dirfd, name, uid, reason)))
            }
        }
    }

    fn check(&self, dirfd: &OwnedFd, name: &str) -> Result<Picked, Refused> {
        let seen = match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Err(Refused::Gone),
            Err(e) => return Err(Refused::bad(None, format!("cannot examine it: {e}"))),
        };
        let uid = Some(seen.st_uid);
        let dir_gid = rustix::fs::fstat(dirfd)
            .map_err(|e| Refused::bad(None, format!("cannot examine the directory: {e}")))?
            .st_gid;
        self.check_stat(&seen, dir_gid)?;
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(dirfd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Err(Refused::Gone),
            Err(rustix::io::Errno::LOOP) => {
                return Err(Refused::bad(uid, "a symbolic link (not followed)".into()));
            }
            Err(e) => return Err(Refused::bad(uid, format!("cannot open it: {e}"))),
        };
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| Refused::bad(uid, format!("cannot examine it: {e}")))?;
        if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) {
            return Err(Refused::bad(
                Some(st.st_uid),
                "replaced while being opened".into(),
            ));
        }
        // Again on what was opened: the path may have changed between the two.
        self.check_stat(&st, dir_gid)?;
        let uid = st.st_uid;
        let mut bytes = Vec::new();
        // One byte over the limit tells a file that grew since fstat.
        File::from(fd)
            .take(self.max_size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| Refused::bad(Some(uid), format!("cannot read it: {e}")))?;
        if bytes.len() as u64 > self.max_size {
            return Err(Refused::bad(Some(uid), self.too_big()));
        }
        let (envelope, message) =
            format::decode(&bytes).map_err(|reason| Refused::bad(Some(uid), reason))?;
        let message = message.to_vec();
        // The status change time: a user can set a file's mtime (touch -d), not this.
        let dropped = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(st.st_ctime.max(0) as u64))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(Picked {
            name: name.to_owned(),
            uid,
            envelope,
            message,
            dropped,
        })
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
            return Err(Refused::bad(
                uid,
                format!("not a regular file: {}", describe(kind)),
            ));
        }
        if st.st_nlink != 1 {
            return Err(Refused::bad(
                uid,
                format!("{} links to the file (a hard link)", st.st_nlink),
            ));
        }
        if st.st_size < 0 || st.st_size as u64 > self.max_size {
            return Err(Refused::bad(uid, self.too_big()));
        }
        if st.st_gid != dir_gid {
            return Err(Refused::bad(
                uid,
                format!(
                    "its group is {}, not the directory's {dir_gid}: not made here",
                    st.st_gid
                ),
            ));
        }
        if st.st_mode & FOREIGN_MODE_BITS != 0 {
            return Err(Refused::bad(
                uid,
                format!(
                    "mode {:o}: others may write or run it, not a drop",
                    st.st_mode & 0o7777
                ),
            ));
        }
        if self.refuse_owner == Some(st.st_uid) {
            return Err(Refused::bad(uid, "owned by the service itself".into()));
        }
        Ok(())
    }

    fn too_big(&self) -> String {
        format!("over the size limit of {} bytes", self.max_size)
    }

    fn is_stale(&self, dirfd: &OwnedFd, name: &str, now: SystemTime) -> bool {
        let Ok(st) = rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) else {
            return false;
        };
        // The status change time, which every write moves and no user can set back
        // or ahead (touch -d sets the mtime alone).
        let changed = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(st.st_ctime.max(0) as u64))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        now.duration_since(changed).unwrap_or_default() >= self.stale_tmp
    }

    /// Renames `name` into `bad/`: rename(2) acts on the directory entry, so a
    /// symbolic link moves as a link and nothing is followed. `RENAME_NOREPLACE`
    /// keeps an earlier one of the same name.
    fn set_aside(&self, dirfd: &OwnedFd, name: &str, uid: Option<u32>, reason: String) -> SetAside {
        let mut aside = SetAside {
            name: name.to_owned(),
            moved_to: None,
            uid,
            reason,
        };
        let bad = match self.open_dir(&self.dir.join(BAD)) {
            Ok(bad) => bad,
            Err(e) => {
                aside.reason += &format!("; not moved: {e}");
                return aside;
            }
        };
        for n in 0..100u32 {
            let moved_to = if n == 0 {
                name.to_owned()
            } else {
                format!("{name}.{n}")
            };
            match rustix::fs::renameat_with(dirfd, name, &bad, &moved_to, RenameFlags::NOREPLACE) {
                Ok(()) => {
                    // Best effort: a set-aside drop found back in place after a crash
                    // is only set aside again.
                    let _ = rustix::fs::fsync(&bad).and_then(|()| rustix::fs::fsync(dirfd));
                    aside.moved_to = Some(moved_to);
                    return aside;
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => {
                    aside.reason += &format!("; not moved: {e}");
                    return aside;
                }
            }
        }
        aside.reason += "; not moved: bad/ holds 100 of that name";
        aside
    }

    /// A directory, opened without following a symbolic link in its last component.
    fn open_dir(&self, path: &Path) -> Result<OwnedFd, Error> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::open(path, flags, Mode::empty()).map_err(|e| self.io("open", path, e.into()))
    }

    fn io(&self, what: &str, path: &Path, source: io::Error) -> Error {
        Error::LocalIo {
            context: format!("cannot {what} {}", path.display()),
            source,
        }
    }
}

/// Why a drop was not picked.
enum Refused {
    /// It went away meanwhile (its owner removed it): nothing to set aside.
    Gone,
    Bad {
        uid: Option<u32>,
        reason: String,
    },
}

impl Refused {
    fn bad(uid: Option<u32>, reason: String) -> Refused {
        Refused::Bad { uid, reason }
    }
}

/// A name in the directory itself: not empty, no `/`, not `.` or `..`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && name != BAD
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
