//! System mode: the spool through which any local user hands a message to the
//! delivery service (`outbox serve`), with no setuid or setgid program.
//!
//! Under the root (`$OUTBOX_SPOOL`, else `/var/spool/outbox`), all the service's:
//!
//! | path | mode | what |
//! |---|---|---|
//! | root | 0755, or 0710 with the submit group | only that group reaches `maildrop/` when restricted |
//! | `maildrop/` | 3733 | drops (0640, the service's group by setgid) |
//! | `incoming/` | 0700 | a drop being checked and stored, moved here first |
//! | `bad/` | 0700 | set-aside drops, each with `<name>.reason` |
//! | `queue/` | 0700 | the system queue (`crate::queue::Queue`) |
//! | `limits`, `users/<uid>` | 0644 (`users/` 0755) | public: the limits, each user's usage |
//!
//! `maildrop/` is mode 3733 ([`DROP_DIR_MODE`]), as Postfix's world-writable
//! `maildrop` was before `postdrop`:
//!
//! - write and search for everyone, read for no one but the owner: any user can create
//!   a file in it, but only the service can list it, so a user cannot find another's
//!   drop, whose name is random;
//! - sticky: only a file's owner (or the directory's) may rename or remove it
//!   (unlink(2), rename(2): `EPERM` in a sticky directory);
//! - setgid: a new file takes the directory's group rather than its creator's
//!   (open(2), "bsdgroups" semantics), so a drop created 0640 is readable by the
//!   service's group and by no other user. That group is the service's own, never
//!   the submit group, which only reaches the directory.
//!
//! The submitting user is the file's owner (`st_uid`), which the kernel sets and the
//! user cannot change (chown(2) needs privilege). A user may still rename into the
//! directory a file of someone else's that they can move (out of a shared directory
//! without the sticky bit); such a file keeps its own group and mode, so the pickup
//! takes only a file of the directory's group with no write or execute bit but its
//! owner's, as only a drop made there has.
//!
//! The submitter cannot fsync the drop directory (it may not open it), so a rename
//! can be lost to a power cut; the whole `.tmp` is then taken once it is stale.
//! Nothing but the published limits (checked by the submitter, and again by the
//! service when it stores) bounds how much one user drops.
//!
//! A Unix socket to the service was the other design; the drop directory was chosen
//! because a drop works while the service is down (the message waits on disk, as the
//! issue asks) and the submitter needs nothing but open(2), fsync(2) and rename(2).
//!
//! - `layout`: the directories: made by [`Spool::create`], found by
//!   [`Spool::detect`], verified by [`Spool::check`];
//! - `submit`: [`Spool::drop`], after [`check_limits`];
//! - `public`: [`Limits`], [`Usage`] and their public files;
//! - `format`: the bytes of one drop (header, envelope, message, trailer with a
//!   digest);
//! - `pickup`: what the service does: list, move into `incoming/`, check, read, set
//!   aside, remove.

use std::path::{Path, PathBuf};

mod aside;
mod format;
mod layout;
mod pickup;
mod public;
mod submit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_spool;

pub use aside::{MAX_REASON, REASON_SUFFIX, clean_reason};
pub use format::{DropEnvelope, MAX_RECIPIENTS, decode, encode};
pub use pickup::{DEFAULT_MAX_BAD, DEFAULT_STALE_TMP, FileId, Found, Picked, Pickup, SetAside};
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
