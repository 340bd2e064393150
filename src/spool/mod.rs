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

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::Error;

mod format;
mod layout;
mod pickup;
mod public;
mod submit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_spool;

pub use format::{DropEnvelope, decode, encode};
pub use pickup::{Found, Picked, Pickup, SetAside};
pub use public::{Limits, Usage};
pub use submit::{check_limits, is_drop_name};

/// The spool's root when `$OUTBOX_SPOOL` is not set.
pub const DEFAULT_ROOT: &str = "/var/spool/outbox";
/// The environment variable that names another spool root (tests, benches).
pub const ROOT_ENV: &str = "OUTBOX_SPOOL";

/// The drop directory, under the root.
pub const MAILDROP: &str = "maildrop";
/// Where the service moves a drop before it checks and stores it.
pub const INCOMING: &str = "incoming";
/// The subdirectory of the root that holds set-aside drops; the service's alone.
pub const BAD: &str = "bad";
/// The system queue (`outbox::queue::Queue`'s format).
pub const QUEUE: &str = "queue";
/// The public per-user files, `users/<uid>`.
pub const USERS: &str = "users";
/// The public file of the service's limits.
pub const LIMITS: &str = "limits";

/// The drop directory's mode: setgid, sticky, `rwx-wx-wx` (see the module's comment).
pub const DROP_DIR_MODE: u32 = 0o3733;
/// A drop's mode: the owner and the directory's group read it, nobody else.
pub const DROP_MODE: u32 = 0o640;
/// The mode of `incoming/`, `bad/` and `queue/`.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// The mode of the root (open to all) and of `users/`.
pub const PUBLIC_DIR_MODE: u32 = 0o755;
/// The mode of the root when only a group may submit: its members may reach
/// `maildrop/` and the public files, nobody else may.
pub const RESTRICTED_ROOT_MODE: u32 = 0o710;
/// The mode of the public files.
pub const PUBLIC_FILE_MODE: u32 = 0o644;
/// The mode of [`BAD`].
pub const BAD_MODE: u32 = PRIVATE_DIR_MODE;
/// The suffix of a drop still being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// A user and group id: the service's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// What a submitter finds at the spool root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetUp {
    /// No system set-up here (the root or `maildrop/` does not exist): personal mode.
    Absent,
    /// Set up: drops go to `maildrop`; `owner` is the service's uid and gid.
    Ready { maildrop: PathBuf, owner: Owner },
    /// Set up, but this user may not submit (not in the submit group).
    Denied(String),
    /// Something is there, but not as [`Spool::create`] makes it.
    Broken(String),
}

/// The system spool at one root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// `$OUTBOX_SPOOL` when set and not empty, else [`DEFAULT_ROOT`].
    pub fn default_root() -> PathBuf {
        default_root_from(std::env::var_os(ROOT_ENV))
    }

    pub fn at(root: impl Into<PathBuf>) -> Spool {
        Spool { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maildrop(&self) -> PathBuf {
        self.root.join(MAILDROP)
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.root.join(QUEUE)
    }

    pub fn incoming(&self) -> PathBuf {
        self.root.join(INCOMING)
    }

    pub fn bad(&self) -> PathBuf {
        self.root.join(BAD)
    }
}

fn default_root_from(var: Option<std::ffi::OsString>) -> PathBuf {
    match var {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_ROOT),
    }
}

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
    submit::drop_into(dir, envelope, message)
}
