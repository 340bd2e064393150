//! The spool's directories: made by the set-up (as root), found by a submitter (as
//! anyone), verified by the service at start (as the service's user).
//!
//! The set-up works on descriptors: it opens the root with `O_NOFOLLOW|O_DIRECTORY`
//! and makes, opens and changes each subdirectory relative to it (mkdirat(2),
//! openat(2), fchown(2), fchmod(2)), so that a symbolic link put in the way is never
//! followed and the directory changed is the one checked.

use std::fs::{self, DirBuilder, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::{
    BAD, DROP_DIR_MODE, INCOMING, MAILDROP, Owner, PRIVATE_DIR_MODE, PUBLIC_DIR_MODE, QUEUE,
    RESTRICTED_ROOT_MODE, SetUp, Spool, USERS,
};
use crate::error::Error;

/// The service's private directories, made before the drop directory is opened to all.
const PRIVATE: [(&str, u32); 4] = [
    (INCOMING, PRIVATE_DIR_MODE),
    (BAD, PRIVATE_DIR_MODE),
    (QUEUE, PRIVATE_DIR_MODE),
    (USERS, PUBLIC_DIR_MODE),
];

impl Spool {
    /// Makes or fixes every directory of the spool with its mode and owner (run by
    /// root, the set-up command), and is idempotent. With `submit_gid` the root is
    /// 0710 with that group, so that only its members reach `maildrop/`; without, it
    /// is 0755. `queue/` is always 0700, whatever it was.
    ///
    /// A directory already there that belongs to neither the caller nor `owner` is
    /// refused: whoever made it could have left in it what they like (a `bad/` they
    /// list, a `queue/` they write).
    pub fn create(&self, owner: Owner, submit_gid: Option<u32>) -> Result<(), Error> {
        let root = self.root();
        if let Some(parent) = root.parent() {
            make_parents(parent)?;
        }
        match DirBuilder::new().mode(PRIVATE_DIR_MODE).create(root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("create the directory", root, e)),
        }
        let me = crate::passwd::effective_uid();
        let root_fd = open_dir_at(None, root)?;
        check_made_by(&root_fd, root, me, owner.uid)?;
        for (name, mode) in PRIVATE {
            let fd = make_dir_at(&root_fd, root, name, me, owner.uid)?;
            set_owner_and_mode(&fd, &root.join(name), owner.uid, owner.gid, mode)?;
        }
        // The root's group and mode before the drop directory opens: with a submit
        // group, no one outside it ever reaches an open maildrop/.
        let (root_gid, root_mode) = match submit_gid {
            Some(gid) => (gid, RESTRICTED_ROOT_MODE),
            None => (owner.gid, PUBLIC_DIR_MODE),
        };
        set_owner_and_mode(&root_fd, root, owner.uid, root_gid, root_mode)?;
        let maildrop = make_dir_at(&root_fd, root, MAILDROP, me, owner.uid)?;
        // The group before the mode: chown(2) clears the setgid bit. Linux's mkdir(2)
        // takes setgid from the parent, never from the mode given, hence fchmod.
        set_owner_and_mode(
            &maildrop,
            &self.maildrop(),
            owner.uid,
            owner.gid,
            DROP_DIR_MODE,
        )?;
        Ok(())
    }

    /// What a submitter finds here, in a few lstat(2) calls; creates nothing. No
    /// `maildrop/`, or a root the caller may not search that is not restricted to a
    /// submit group (mode 0710), is no set-up: [`SetUp::Absent`].
    pub fn detect(&self) -> SetUp {
        let root = self.root();
        let root_meta = match fs::symlink_metadata(root) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return SetUp::Absent,
            Err(e) => return SetUp::Broken(format!("cannot examine {}: {e}", root.display())),
        };
        if !root_meta.is_dir() {
            let problem = dir_problem(&root_meta, &[]).unwrap_or_default();
            return SetUp::Broken(format!("{}: {problem}", root.display()));
        }
        let restricted = root_meta.mode() & 0o7777 == RESTRICTED_ROOT_MODE;
        let maildrop = self.maildrop();
        let meta = match fs::symlink_metadata(&maildrop) {
            Ok(m) => m,
            // Not set up: the root may be something else, such as root's own queue
            // (`/var/spool/outbox` is its default), whatever its mode.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return SetUp::Absent,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && restricted => {
                return SetUp::Denied(format!(
                    "the system spool {} takes mail only from the members of group {} \
                     (the group of the spool), and you are not one: ask the administrator \
                     to add you, or give yourself a configuration of your own",
                    root.display(),
                    root_meta.gid()
                ));
            }
            // A private directory that is no spool the set-up made: nothing a submitter
            // can use, as if there were none.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return SetUp::Absent,
            Err(e) => {
                return SetUp::Broken(format!("cannot examine {}: {e}", maildrop.display()));
            }
        };
        if let Some(problem) = dir_problem(&root_meta, &[PUBLIC_DIR_MODE, RESTRICTED_ROOT_MODE]) {
            return SetUp::Broken(format!("{}: {problem}", root.display()));
        }
        if let Some(problem) = dir_problem(&meta, &[DROP_DIR_MODE]) {
            return SetUp::Broken(format!("{}: {problem}", maildrop.display()));
        }
        if meta.uid() != root_meta.uid() {
            return SetUp::Broken(format!(
                "{} belongs to uid {}, the spool {} to uid {}",
                maildrop.display(),
                meta.uid(),
                root.display(),
                root_meta.uid()
            ));
        }
        SetUp::Ready {
            maildrop,
            owner: Owner {
                uid: meta.uid(),
                gid: meta.gid(),
            },
        }
    }

    /// The service's owner and group as the set-up left them: those of `maildrop/`.
    /// For a service started as root, to know whom to become before [`Spool::check`].
    pub fn owner(&self) -> Result<Owner, Error> {
        let maildrop = self.maildrop();
        let meta = fs::symlink_metadata(&maildrop)
            .map_err(|e| self.not_set_up(&maildrop, &format!("cannot examine it ({e})")))?;
        if let Some(problem) = dir_problem(&meta, &[DROP_DIR_MODE]) {
            return Err(self.not_set_up(&maildrop, &problem));
        }
        Ok(Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    /// For the service at start: every directory is a directory of the effective
    /// user, with the mode the set-up gives it, and the service is in `maildrop/`'s
    /// group (which it needs to read drops, 0640). Returns the service's uid and that
    /// group.
    pub fn check(&self) -> Result<Owner, Error> {
        let me = crate::passwd::effective_uid();
        let root = self.root().to_path_buf();
        let maildrop = self.maildrop();
        let mut wanted = vec![
            (root, vec![PUBLIC_DIR_MODE, RESTRICTED_ROOT_MODE]),
            (maildrop.clone(), vec![DROP_DIR_MODE]),
        ];
        for (name, mode) in PRIVATE {
            wanted.push((self.root().join(name), vec![mode]));
        }
        let mut gid = 0;
        for (path, modes) in wanted {
            let meta = fs::symlink_metadata(&path)
                .map_err(|e| self.not_set_up(&path, &format!("cannot examine it ({e})")))?;
            if let Some(problem) = dir_problem(&meta, &modes) {
                return Err(self.not_set_up(&path, &problem));
            }
            if meta.uid() != me {
                return Err(self.not_set_up(
                    &path,
                    &format!(
                        "it belongs to uid {}, and the service runs as uid {me}",
                        meta.uid()
                    ),
                ));
            }
            if path == maildrop {
                gid = meta.gid();
            }
        }
        let in_group = rustix::process::getegid().as_raw() == gid
            || rustix::process::getgroups()
                .map(|groups| groups.iter().any(|g| g.as_raw() == gid))
                .unwrap_or(false);
        if !in_group {
            return Err(self.not_set_up(
                &maildrop,
                &format!(
                    "its group is {gid}, which the service is not in (it could not read drops)"
                ),
            ));
        }
        Ok(Owner { uid: me, gid })
    }

    fn not_set_up(&self, path: &Path, problem: &str) -> Error {
        Error::Config(format!(
            "the spool {} is not as `outbox system setup` makes it: {}: {problem}",
            self.root().display(),
            path.display()
        ))
    }
}

/// Makes the missing directories of `path`, each 0755 whatever the umask: a parent
/// that others could write would let them rename the spool away and put their own
/// in its place. Those already there are left as they are.
fn make_parents(path: &Path) -> Result<(), Error> {
    let missing: Vec<&Path> = path
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err())
        .collect();
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(PUBLIC_DIR_MODE))
                .map_err(|e| io_error("chmod", dir, e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("create the directory", dir, e)),
        }
    }
    Ok(())
}

/// What is wrong with `meta` as a directory of the spool whose mode is one of `modes`.
fn dir_problem(meta: &Metadata, modes: &[u32]) -> Option<String> {
    if meta.file_type().is_symlink() {
        return Some("a symbolic link, not a directory".into());
    }
    if !meta.is_dir() {
        return Some("not a directory".into());
    }
    let mode = meta.mode() & 0o7777;
    if !modes.contains(&mode) {
        let wanted: Vec<String> = modes.iter().map(|m| format!("{m:04o}")).collect();
        return Some(format!(
            "its mode is {mode:04o}, not {}",
            wanted.join(" or ")
        ));
    }
    None
}

/// `path` (relative to `dir` when given), opened as a directory without following a
/// symbolic link in its last component.
fn open_dir_at(dir: Option<(&OwnedFd, &str)>, path: &Path) -> Result<OwnedFd, Error> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let opened = match dir {
        Some((fd, name)) => rustix::fs::openat(fd, name, flags, Mode::empty()),
        None => rustix::fs::open(path, flags, Mode::empty()),
    };
    opened.map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => Error::Config(format!(
            "cannot use {} for the spool: not a directory (a symbolic link is not followed)",
            path.display()
        )),
        e => io_error("open", path, e.into()),
    })
}

/// Makes `root/name` (0700 until its mode is set) unless it exists, and opens it.
fn make_dir_at(
    root_fd: &OwnedFd,
    root: &Path,
    name: &str,
    me: u32,
    owner: u32,
) -> Result<OwnedFd, Error> {
    let path = root.join(name);
    match rustix::fs::mkdirat(root_fd, name, Mode::from_raw_mode(PRIVATE_DIR_MODE)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(io_error("create the directory", &path, e.into())),
    }
    let fd = open_dir_at(Some((root_fd, name)), &path)?;
    check_made_by(&fd, &path, me, owner)?;
    Ok(fd)
}

/// Refuses a directory that neither the caller nor the service's user owns.
fn check_made_by(fd: &OwnedFd, path: &Path, me: u32, owner: u32) -> Result<(), Error> {
    let st = rustix::fs::fstat(fd).map_err(|e| io_error("examine", path, e.into()))?;
    if st.st_uid != me && st.st_uid != owner {
        return Err(Error::Config(format!(
            "cannot use {} for the spool: it belongs to another user (uid {}); \
             remove it, or look at what it holds first",
            path.display(),
            st.st_uid
        )));
    }
    Ok(())
}

fn set_owner_and_mode(
    fd: &OwnedFd,
    path: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
) -> Result<(), Error> {
    std::os::unix::fs::fchown(fd, Some(uid), Some(gid)).map_err(|e| io_error("chown", path, e))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(|e| io_error("chmod", path, e.into()))
}

pub(super) fn io_error(what: &str, path: &Path, source: io::Error) -> Error {
    Error::LocalIo {
        context: format!("cannot {what} {}", path.display()),
        source,
    }
}
