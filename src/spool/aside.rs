//! Setting a drop aside: into `bad/`, with a `<name>.reason` file beside it that says
//! why, or, once `bad/` holds [`Pickup::max_bad`] of them, removed, so that a flood
//! of hostile drops cannot fill the disk.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use super::pickup::{Picked, Pickup, SetAside, io_error, list, open_dir};
use crate::error::Error;

/// The longest reason kept, in characters: a decode error may quote the drop.
pub const MAX_REASON: usize = 512;
/// The suffix of the file beside a set-aside drop that says why.
pub const REASON_SUFFIX: &str = ".reason";
/// The longest name a set-aside drop keeps in `bad/` (NAME_MAX is 255, and the
/// reason file and a number are added to it).
pub(super) const MAX_BAD_NAME: usize = 200;

impl Pickup {
    /// Sets aside a drop that passed the checks but that the service will not queue
    /// (its user is over a limit): into `bad/` with `reason`, as a hostile drop is.
    pub fn refuse(&self, picked: &Picked, reason: &str) -> SetAside {
        match open_dir(&self.incoming) {
            Ok(incoming) => self.set_aside(&incoming, &picked.name, Some(picked.uid), reason),
            Err(e) => {
                self.skip(picked.name.clone().into());
                SetAside {
                    name: picked.name.clone(),
                    moved_to: None,
                    uid: Some(picked.uid),
                    reason: clean_reason(&format!("{reason}; not moved: {e}")),
                }
            }
        }
    }

    /// Moves `incoming/NAME` into `bad/` with `<name>.reason` beside it, or removes it
    /// when `bad/` holds [`Pickup::max_bad`] already. rename(2) acts on the entry, so
    /// a symbolic link moves as a link and nothing is followed; `RENAME_NOREPLACE`
    /// keeps an earlier one of the same name.
    pub(super) fn set_aside(
        &self,
        incoming: &OwnedFd,
        name: &str,
        uid: Option<u32>,
        reason: &str,
    ) -> SetAside {
        let mut aside = SetAside {
            name: name.to_owned(),
            moved_to: None,
            uid,
            reason: clean_reason(reason),
        };
        let outcome = open_dir(&self.bad).and_then(|bad| {
            if self.count_bad()? >= self.max_bad {
                return self.remove_hostile(incoming, name).map(|()| None);
            }
            self.move_to_bad(incoming, &bad, name, uid, &aside.reason)
        });
        match outcome {
            Ok(Some(moved_to)) => aside.moved_to = Some(moved_to),
            Ok(None) => {
                aside.reason = clean_reason(&format!(
                    "{}; removed: bad/ holds {} set-aside drops already",
                    aside.reason, self.max_bad
                ));
            }
            Err(e) => {
                // Left in incoming/, where no user reaches it; passed over from now on.
                self.skip(name.into());
                aside.reason = clean_reason(&format!("{}; not moved: {e}", aside.reason));
            }
        }
        aside
    }

    fn move_to_bad(
        &self,
        incoming: &OwnedFd,
        bad: &OwnedFd,
        name: &str,
        uid: Option<u32>,
        reason: &str,
    ) -> Result<Option<String>, Error> {
        let base = truncate(name, MAX_BAD_NAME);
        for n in 0..100u32 {
            let to = if n == 0 {
                base.to_owned()
            } else {
                format!("{base}.{n}")
            };
            // No set-aside drop is named like a reason file, so none is taken for one.
            if to.ends_with(REASON_SUFFIX) {
                continue;
            }
            match rustix::fs::renameat_with(
                incoming,
                name,
                bad,
                to.as_str(),
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => {
                    self.write_reason(bad, &to, uid, reason)?;
                    // Best effort: a set-aside drop found back in incoming/ after a
                    // crash is only set aside again.
                    let _ = rustix::fs::fsync(bad).and_then(|()| rustix::fs::fsync(incoming));
                    return Ok(Some(to));
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(io_error("move it into", &self.bad, e.into())),
            }
        }
        Err(io_error(
            "move it into",
            &self.bad,
            io::Error::other("100 of that name are there"),
        ))
    }

    fn write_reason(
        &self,
        bad: &OwnedFd,
        to: &str,
        uid: Option<u32>,
        reason: &str,
    ) -> Result<(), Error> {
        let file_name = format!("{to}{REASON_SUFFIX}");
        let path = self.bad.join(&file_name);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(bad, file_name.as_str(), flags, Mode::from_raw_mode(0o600))
            .map_err(|e| io_error("write", &path, e.into()))?;
        let uid = uid.map_or_else(|| "unknown".to_owned(), |u| u.to_string());
        File::from(fd)
            .write_all(format!("uid: {uid}\nreason: {reason}\n").as_bytes())
            .map_err(|e| io_error("write", &path, e))
    }

    /// How many set-aside drops `bad/` holds (reason files aside).
    fn count_bad(&self) -> Result<usize, Error> {
        Ok(list(&self.bad)?
            .iter()
            .filter(|n| !n.as_bytes().ends_with(REASON_SUFFIX.as_bytes()))
            .count())
    }

    /// Removes a failing drop when `bad/` is full: a flood of hostile drops must not
    /// fill the disk. A directory goes only when empty (its owner may fill it again).
    fn remove_hostile(&self, incoming: &OwnedFd, name: &str) -> Result<(), Error> {
        let path = self.incoming.join(name);
        let st = rustix::fs::statat(incoming, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_error("examine", &path, e.into()))?;
        let flags = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rustix::fs::unlinkat(incoming, name, flags).map_err(|e| io_error("remove", &path, e.into()))
    }
}

/// A reason fit for a log line and a file: control characters become `?` (a decode
/// error may quote the drop) and at most [`MAX_REASON`] characters are kept.
pub fn clean_reason(reason: &str) -> String {
    let mut clean: String = reason
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() > MAX_REASON {
        clean = clean.chars().take(MAX_REASON - 1).collect();
        clean.push('…');
    }
    clean
}

/// The first `max` bytes of `s`, cut at a character boundary.
pub(super) fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
