//! System mode's drop directory: how any local user hands a message to the delivery
//! service, with no setuid or setgid program. Not wired into a face yet.
//!
//! The directory (say `/var/spool/outbox/maildrop`) belongs to the service's user and
//! group and has mode 3733 ([`DROP_DIR_MODE`]), as Postfix's world-writable
//! `maildrop` had before `postdrop`:
//!
//! - write and search for everyone, read for no one but the owner: any user can create
//!   a file in it, but only the service can list it, so a user cannot find another's
//!   drop, whose name is random;
//! - sticky: only a file's owner (or the directory's) may rename or remove it
//!   (unlink(2), rename(2): `EPERM` in a sticky directory);
//! - setgid: a new file takes the directory's group rather than its creator's
//!   (open(2), "bsdgroups" semantics), so a drop created 0640 is readable by the
//!   service's group and by no other user.
//!
//! The submitting user is the file's owner (`st_uid`), which the kernel sets and the
//! user cannot change (chown(2) needs privilege). A user may still rename into the
//! directory a file of someone else's that they can move (out of a shared directory
//! without the sticky bit); such a file keeps its own group and mode, so the pickup
//! takes only a file of the directory's group with no write or execute bit but its
//! owner's, as only a drop made there has.
//!
//! Before this is wired into a face and `outbox serve`, a review found more to do:
//! `scan` holds every drop's message at once (it should give names, and `take` one at
//! a time); a crash between storing a drop and [`Pickup::done`] duplicates it, and
//! `done` should check the inode it removes (better: move a drop into a private
//! `incoming/` before checking it, as Postfix's pickup does, which also settles a
//! `.tmp` whose writer was only stopped); entries that cannot be set aside (a directory
//! the service may not rename, names that are not UTF-8) are met again at every scan;
//! `drop` should refuse what is over the limit rather than leave it to be set aside;
//! nothing bounds `bad/` nor a user's drops; the pickup should check the modes and
//! owners of both directories;
//! the submitter cannot fsync the directory (it may not read it), so a rename can be
//! lost to a power cut until the stale `.tmp` is taken; the race defences need tests
//! that swap the file between lstat and open, run as a user other than root; and the
//! group that reads drops must not be the group allowed to submit.
//!
//! [`drop`] writes `<name>.tmp` with `O_CREAT|O_EXCL|O_NOFOLLOW`, fsyncs it, renames it
//! to `<name>` and fsyncs the directory: a drop is there whole or not at all, whether
//! the service is running or not. [`Pickup`] lists the directory as the service and
//! takes each drop with checks that nothing a user can put there (a symbolic link, a
//! hard link to someone else's file, a FIFO, a device, a huge file, a file still being
//! written, garbage) is followed or trusted; what fails them is renamed into `bad/`
//! ([`BAD`]) with the reason, never deleted.
//!
//! A Unix socket to the service was the other design; the drop directory was chosen
//! because a drop works while the service is down (the message waits on disk, as the
//! issue asks) and the submitter needs nothing but open(2), fsync(2) and rename(2).
//!
//! - `format`: the bytes of one drop (header, message, trailer with a digest);
//! - `pickup`: what the service does: list, check, read, set aside, remove.

use std::fs::{DirBuilder, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags};

use crate::error::Error;

mod format;
mod pickup;
#[cfg(test)]
mod tests;

pub use format::{DropEnvelope, decode, encode};
pub use pickup::{Found, Picked, Pickup, SetAside};

/// The drop directory's mode: setgid, sticky, `rwx-wx-wx` (see the module's comment).
pub const DROP_DIR_MODE: u32 = 0o3733;
/// A drop's mode: the owner and the directory's group read it, nobody else.
pub const DROP_MODE: u32 = 0o640;
/// The subdirectory of the drop directory that holds set-aside drops; the service's
/// alone.
pub const BAD: &str = "bad";
/// The mode of [`BAD`].
pub const BAD_MODE: u32 = 0o700;
/// The suffix of a drop still being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// Creates the drop directory `path` (and its [`BAD`] subdirectory) or fixes the
/// modes of one that exists, with `gid` as its group when given (the service's
/// group; the owner is whoever runs this, so run it as the service or chown after).
///
/// The modes are set by chmod(2) after mkdir(2), since mkdir's are cut by the umask
/// and Linux's mkdir(2) takes the setgid bit from the parent rather than from `mode`.
/// The group is set before the mode because chown(2) clears the setgid bit.
pub fn create_drop_dir(path: &Path, gid: Option<u32>) -> Result<(), Error> {
    let fail = |what: &str, p: &Path, source: io::Error| Error::LocalIo {
        context: format!("cannot {what} {}", p.display()),
        source,
    };
    // The parents are 0755 whatever the umask: a parent others could write would let
    // them rename the drop directory away and put their own in its place.
    if let Some(parent) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| fail("create the directory", parent, e))?;
    }
    let me = crate::passwd::effective_uid();
    let bad = path.join(BAD);
    // `bad/` is made, and checked to be ours, while the drop directory is still
    // closed to others; the directory is opened to all last.
    for dir in [path, &*bad] {
        match DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail("create the directory", dir, e)),
        }
        let meta = std::fs::symlink_metadata(dir).map_err(|e| fail("examine", dir, e))?;
        if !meta.is_dir() {
            return Err(fail(
                "use as a drop directory",
                dir,
                io::Error::other("not a directory"),
            ));
        }
        if std::os::unix::fs::MetadataExt::uid(&meta) != me {
            return Err(fail(
                "use as a drop directory",
                dir,
                io::Error::other("it belongs to another user"),
            ));
        }
    }
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(BAD_MODE))
        .map_err(|e| fail("chmod", &bad, e))?;
    if gid.is_some() {
        // Before the mode: chown(2) clears the setgid bit.
        std::os::unix::fs::chown(path, None, gid).map_err(|e| fail("chown", path, e))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DROP_DIR_MODE))
        .map_err(|e| fail("chmod", path, e))?;
    Ok(())
}

/// Drops `message` for `envelope` into the drop directory `dir`, and returns the
/// drop's name. Once it returns, the drop is on disk whole (fsynced and renamed into
/// place) and waits there for the service, which need not be running.
pub fn drop(dir: &Path, envelope: &DropEnvelope, message: &[u8]) -> Result<String, Error> {
    let bytes = format::encode(envelope, message).map_err(Error::Data)?;
    let fail = |what: &str, source: io::Error| Error::LocalIo {
        context: format!("cannot {what} in the drop directory {}", dir.display()),
        source,
    };
    let (name, mut file) = create_tmp(dir).map_err(|e| fail("create a drop", e))?;
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let written = (|| {
        // The umask may have cut the group's read bit, which the service needs.
        rustix::fs::fchmod(&file, Mode::from_raw_mode(DROP_MODE))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(&name))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .or_else(|e| match e.raw_os_error() {
                // The directory is not readable to the submitter (mode 3733): open(2)
                // of it gives EACCES. The rename is then as durable as the
                // filesystem makes a rename without a directory fsync; opening with
                // O_PATH cannot fsync either.
                Some(code) if code == rustix::io::Errno::ACCESS.raw_os_error() => Ok(()),
                _ => Err(e),
            })
    })();
    written.map_err(|e| {
        // Best effort: a sticky directory lets the owner remove its own file.
        let _ = std::fs::remove_file(&tmp);
        fail("write a drop", e)
    })?;
    Ok(name)
}

/// A new `<name>.tmp` in `dir`, created exclusively, and its name without the suffix.
fn create_tmp(dir: &Path) -> io::Result<(String, File)> {
    let mut tries = 0;
    loop {
        let name = new_name(SystemTime::now())?;
        let path = dir.join(format!("{name}{TMP_SUFFIX}"));
        // O_EXCL: never an existing file; O_NOFOLLOW: with O_EXCL, open(2) already
        // fails on a symbolic link (POSIX), this says so twice.
        let flags = OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::WRONLY
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        match rustix::fs::open(&path, flags, Mode::from_raw_mode(DROP_MODE)) {
            Ok(fd) => return Ok((name, File::from(fd))),
            Err(rustix::io::Errno::EXIST) if tries < 8 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A drop's name: the time, for the service to take drops oldest first, and 64
/// random bits, so that another user cannot guess it.
fn new_name(now: SystemTime) -> io::Result<String> {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(format!(
        "{:010}.{:06}.{:016x}",
        since.as_secs(),
        since.subsec_micros(),
        u64::from_ne_bytes(random)
    ))
}
