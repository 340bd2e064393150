//! What a submitter does: check the published limits, then write the drop.
//!
//! A drop is written as `<name>.tmp` with `O_CREAT|O_EXCL|O_NOFOLLOW`, fsynced,
//! and renamed to `<name>`: it is there whole or not at all, whether the service is
//! running or not.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags};

use super::format::{self, DropEnvelope};
use super::{DROP_MODE, Limits, Spool, TMP_SUFFIX, Usage};
use crate::error::Error;

impl Spool {
    /// Refuses a message over the published limits (`Error::OverLimit`), then drops
    /// it into `maildrop/` and returns the drop's name, which the service keeps as
    /// the message's queue id. Once it returns, the drop is on disk whole.
    pub fn drop(&self, envelope: &DropEnvelope, message: &[u8]) -> Result<String, Error> {
        let uid = crate::passwd::effective_uid();
        check_limits(&self.limits(), &self.usage(uid), message.len() as u64)?;
        drop_into(&self.maildrop(), envelope, message)
    }
}

/// Whether one more message of `size` bytes fits the limits for a user whose queue
/// holds `usage`. Over the size limit is for good (`lasting`); a full queue is for
/// now, unless this message alone is over the queue's byte limit.
pub fn check_limits(limits: &Limits, usage: &Usage, size: u64) -> Result<(), Error> {
    if size > limits.max_message_size {
        return Err(Error::OverLimit {
            what: format!(
                "the message is {size} bytes, over the system's limit of {} bytes a message \
                 (max_message_size); it was not queued: send it smaller, or ask the \
                 administrator to raise the limit",
                limits.max_message_size
            ),
            lasting: true,
        });
    }
    if usage.queued >= limits.max_queued {
        return Err(Error::OverLimit {
            what: format!(
                "you have {} messages in the system queue, the system's limit per user \
                 (max_queued_per_user = {}); it was not queued: try again once some are delivered, \
                 or ask the administrator",
                usage.queued, limits.max_queued
            ),
            lasting: false,
        });
    }
    if usage.bytes.saturating_add(size) > limits.max_queued_bytes {
        return Err(Error::OverLimit {
            what: format!(
                "you have {} bytes in the system queue, and this message's {size} would be \
                 over the system's limit of {} bytes per user (max_queued_bytes_per_user); it was \
                 not queued: try again once some are delivered, or ask the administrator",
                usage.bytes, limits.max_queued_bytes
            ),
            lasting: size > limits.max_queued_bytes,
        });
    }
    Ok(())
}

/// Drops `message` for `envelope` into the drop directory `dir`, and returns the
/// drop's name.
pub(super) fn drop_into(
    dir: &Path,
    envelope: &DropEnvelope,
    message: &[u8],
) -> Result<String, Error> {
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
                // filesystem makes a rename without a directory fsync (opening with
                // O_PATH cannot fsync either); a rename lost to a power cut leaves
                // the whole `.tmp`, which the service takes once it is stale.
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
/// random bits, so that another user cannot guess it. [`is_drop_name`] knows it.
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

/// Whether `name` is one [`new_name`] makes, with or without the `.tmp` suffix: ten
/// digits, a dot, six digits, a dot, sixteen lower-case hex digits. The service
/// takes no other, since the name becomes the queue id.
pub fn is_drop_name(name: &str) -> bool {
    let name = name.strip_suffix(TMP_SUFFIX).unwrap_or(name);
    let parts: Vec<&str> = name.split('.').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    matches!(&parts[..], [secs, micros, random]
        if digits(secs, 10)
            && digits(micros, 6)
            && random.len() == 16
            && random.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}
