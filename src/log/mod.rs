//! The log of every outcome: one line per recipient group and attempt, as Postfix's
//! smtp(8) and msmtp write them, to syslog (facility mail, tag `outbox`), a file,
//! standard error, or nowhere.
//!
//! Writing the log never blocks or fails a delivery: trouble is said once on
//! standard error and the mail goes on.

mod line;
mod syslog;
mod target;

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use jiff::Timestamp;
use jiff::tz::TimeZone;

pub use line::{Line, MAX_REPLY, MAX_TEXT, MAX_VALUE, Status};
pub use target::{DEFAULT_SYSLOG_SOCKET, Target};

/// The log of one process: opened lazily, never fails.
pub struct Log {
    target: Target,
    state: Mutex<State>,
}

struct State {
    /// The syslog connection, kept from one line to the next.
    syslog: Option<syslog::Connection>,
    /// The local time zone, read at the first line.
    zone: Option<TimeZone>,
    /// Whether trouble was said already.
    warned: bool,
    warnings: Box<dyn Write + Send>,
}

impl Log {
    pub fn new(target: Target) -> Log {
        Log::with_warnings(target, Box::new(io::stderr()))
    }

    /// The log that writes nothing.
    pub fn none() -> Log {
        Log::new(Target::None)
    }

    /// A log whose one warning goes to `warnings` rather than standard error.
    pub(crate) fn with_warnings(target: Target, warnings: Box<dyn Write + Send>) -> Log {
        Log {
            target,
            state: Mutex::new(State {
                syslog: None,
                zone: None,
                warned: false,
                warnings,
            }),
        }
    }

    /// Where the lines go.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Writes the line(s). Never blocks (a non-blocking datagram socket: a full
    /// syslog queue drops the line), never returns an error, never panics: the first
    /// trouble (no syslog daemon, a full disk, a file it cannot open) is said once on
    /// standard error for the process, and later lines are tried again quietly.
    pub fn write(&self, line: &Line) {
        if self.target == Target::None {
            return;
        }
        let texts = line.texts();
        // A thread that panicked while holding the lock left nothing half-done that
        // matters here: the worst is a connection to open again.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let zone = state
            .zone
            .get_or_insert_with(|| crate::compose::local_zone(std::env::var("TZ").ok()))
            .clone();
        let now = Timestamp::now().to_zoned_datetime(zone);
        let pid = std::process::id();
        let result = match &self.target {
            Target::Syslog(path) => {
                let stamp = stamp(&now, "%b %e %H:%M:%S");
                texts.iter().try_for_each(|text| {
                    let message = syslog::message(line.status.severity(), &stamp, pid, text);
                    send(&mut state.syslog, path, &message)
                })
            }
            Target::File(path) => {
                let stamp = stamp(&now, FILE_STAMP);
                append(path, &texts, &stamp, pid)
            }
            Target::Stderr => {
                let stamp = stamp(&now, FILE_STAMP);
                let mut err = io::stderr().lock();
                texts
                    .iter()
                    .try_for_each(|text| err.write_all(file_line(&stamp, pid, text).as_bytes()))
            }
            Target::None => Ok(()),
        };
        if let Err(e) = result
            && !state.warned
        {
            state.warned = true;
            let warning = format!(
                "outbox: warning: cannot write the log to {}: {e}; mail goes on\n",
                self.target
            );
            // Nowhere to say it is no reason to stop either.
            let _ = state.warnings.write_all(warning.as_bytes());
            let _ = state.warnings.flush();
        }
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log").field("target", &self.target).finish()
    }
}

/// The time at the start of a file's line: RFC 3339 in the local zone, to the
/// microsecond, as rsyslog's high-precision format writes it.
const FILE_STAMP: &str = "%Y-%m-%dT%H:%M:%S%.6f%:z";

fn stamp(now: &jiff::ZonedDateTime, format: &str) -> String {
    jiff::fmt::strtime::format(format, now).unwrap_or_else(|_| now.timestamp().to_string())
}

/// `TIME outbox[PID]: TEXT` and a newline.
fn file_line(stamp: &str, pid: u32, text: &str) -> String {
    format!("{stamp} {}[{pid}]: {text}\n", syslog::TAG)
}

/// Sends `message` on the syslog connection, opening it first if need be. A
/// connection that fails (the daemon restarted) is opened again once, as syslog(3)
/// does; one whose queue is full is not, the message being dropped.
fn send(connection: &mut Option<syslog::Connection>, path: &Path, message: &str) -> io::Result<()> {
    let mut retried = false;
    loop {
        let open = match connection {
            Some(open) => open,
            None => connection.insert(syslog::Connection::open(path)?),
        };
        match open.send(message) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // A stream cut short in a message is given up, so the next starts whole.
                if matches!(open, syslog::Connection::Stream(_)) {
                    *connection = None;
                }
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "the syslog daemon's queue is full (lines are dropped)",
                ));
            }
            Err(e) if retried => {
                *connection = None;
                return Err(e);
            }
            Err(_) => {
                *connection = None;
                retried = true;
            }
        }
    }
}

/// Appends the lines to the file at `path`, created 0640 if it is not there. The file
/// is opened for each write, so that a rotated log is followed at once; each line goes
/// in one write(2) on a file opened for appending, so that lines of processes writing
/// at the same time do not mix. Opened non-blocking, so that a named pipe with no
/// reader (or a full one) is trouble to report, not a wait.
fn append(path: &Path, texts: &[String], stamp: &str, pid: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let nonblocking = rustix::fs::OFlags::NONBLOCK.bits();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(i32::try_from(nonblocking).unwrap_or(0))
        .open(path)?;
    texts
        .iter()
        .try_for_each(|text| file.write_all(file_line(stamp, pid, text).as_bytes()))
}

/// The real uid of this process and its login name (from /etc/passwd).
pub fn local_user() -> (u32, Option<String>) {
    let uid = crate::passwd::real_uid();
    (uid, crate::passwd::name_of(uid))
}

#[cfg(test)]
pub(crate) mod tests;
