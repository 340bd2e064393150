//! The spool's public files, through which the service tells submitters its limits
//! (`limits`) and each user's queued count and bytes (`users/<uid>`), so that a
//! submitter refuses what would be over them before it drops anything.
//!
//! Each is a few TOML lines, 0644, replaced whole (a temporary file renamed over
//! it), so a reader sees the old one or the new one. They are advice for the
//! submitter, never a defence: a file missing or unreadable counts as the defaults
//! (limits) or as nothing queued (usage), and the service checks again itself.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::Mode;
use serde::{Deserialize, Serialize};

use super::layout::io_error;
use super::{LIMITS, PUBLIC_FILE_MODE, Spool, USERS};
use crate::error::Error;

/// The longest public file read: a few lines of numbers.
const MAX_PUBLIC_FILE: u64 = 4096;

/// What the service takes, per message and per user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Bytes of the message (not of the drop file, whose envelope adds to it).
    pub max_message_size: u64,
    /// Messages queued per user.
    pub max_queued: u64,
    /// Bytes queued per user.
    pub max_queued_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_size: 64 * 1024 * 1024,
            max_queued: 1000,
            max_queued_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// What one user has in the system queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub queued: u64,
    pub bytes: u64,
}

impl Limits {
    /// The text of the `limits` file.
    pub fn to_text(&self) -> String {
        to_text(self)
    }

    /// The limits a `limits` file's text gives; `None` when it is not one.
    pub fn from_text(text: &str) -> Option<Limits> {
        toml::from_str(text).ok()
    }
}

impl Usage {
    /// The text of a `users/<uid>` file.
    pub fn to_text(&self) -> String {
        to_text(self)
    }

    /// The usage a `users/<uid>` file's text gives; `None` when it is not one.
    pub fn from_text(text: &str) -> Option<Usage> {
        toml::from_str(text).ok()
    }
}

fn to_text(value: &impl Serialize) -> String {
    // Plain integers in a flat table: serialisation cannot fail.
    toml::to_string(value).unwrap_or_default()
}

impl Spool {
    /// The limits the service published, or the defaults.
    pub fn limits(&self) -> Limits {
        read_small(&self.root().join(LIMITS))
            .and_then(|t| Limits::from_text(&t))
            .unwrap_or_default()
    }

    /// The usage the service published for `uid`, or nothing queued.
    pub fn usage(&self, uid: u32) -> Usage {
        read_small(&self.root().join(USERS).join(uid.to_string()))
            .and_then(|t| Usage::from_text(&t))
            .unwrap_or_default()
    }

    /// Publishes `limits` in the `limits` file, unless it already says so.
    pub fn publish_limits(&self, limits: &Limits) -> Result<(), Error> {
        write_public(self.root(), LIMITS, &limits.to_text())
    }

    /// Publishes each user's usage in `users/<uid>` (those that changed), and removes
    /// every other file there: a user with nothing queued has none.
    pub fn publish_usage(&self, usage: &BTreeMap<u32, Usage>) -> Result<(), Error> {
        let dir = self.root().join(USERS);
        for (uid, u) in usage {
            write_public(&dir, &uid.to_string(), &u.to_text())?;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| io_error("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", &dir, e))?;
            let name = entry.file_name();
            // "007" is no uid's file name: only the one `uid.to_string()` gives is kept.
            let listed = name
                .to_str()
                .and_then(|n| n.parse::<u32>().ok().filter(|uid| uid.to_string() == n))
                .is_some_and(|uid| usage.contains_key(&uid));
            if !listed {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("remove", &path, e)),
                }
            }
        }
        Ok(())
    }
}

/// The text of a small file, or `None` when it is missing, unreadable, too long or
/// not UTF-8.
fn read_small(path: &Path) -> Option<String> {
    let file = File::options()
        .read(true)
        // A FIFO put in a public file's place must not block the reader.
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .ok()?;
    let mut text = String::new();
    file.take(MAX_PUBLIC_FILE + 1)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() as u64 <= MAX_PUBLIC_FILE).then_some(text)
}

/// Replaces `dir/name` with `text`, 0644, unless it holds that already. Not fsynced:
/// the files are advice rewritten at every round, and a reader of one lost to a power
/// cut falls back on the defaults.
fn write_public(dir: &Path, name: &str, text: &str) -> Result<(), Error> {
    let path = dir.join(name);
    if read_small(&path).as_deref() == Some(text) {
        return Ok(());
    }
    // A leading dot: never a uid, so `publish_usage` removes one a crash left.
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut file = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PUBLIC_FILE_MODE)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)?;
        // The umask may have cut the mode given to open(2).
        rustix::fs::fchmod(&file, Mode::from_raw_mode(PUBLIC_FILE_MODE))?;
        file.write_all(text.as_bytes())?;
        std::fs::rename(&tmp, &path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error("write", &path, e)
    })
}
