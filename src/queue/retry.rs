//! The retry policy: when an entry is tried again, and which entries a flush takes.
//!
//! Retries back off exponentially: after the n-th failed attempt from the queue the
//! entry waits 5 min × 2^(n-1), at most 4 hours (5, 10, 20, 40, 80, 160, 240, 240...).
//! A freshly queued entry is due at once: the attempt that led to queueing is recorded
//! as its `last_error`, not counted in `attempts`. An entry older than the queue
//! lifetime gets one last try, then is given up.

use std::time::{Duration, SystemTime};

use super::entry::Entry;

/// The first wait after a failed attempt from the queue.
const FIRST_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(4 * 60 * 60);

/// The wait after the `attempts`-th failed attempt from the queue.
pub(super) fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    (FIRST_BACKOFF * (1 << doublings)).min(MAX_BACKOFF)
}

/// Which entries a flush tries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pick {
    /// Every entry, now: someone asked (`queue flush`, `sendmail -q`), most likely
    /// because the server is back, as Postfix's `sendmail -q` (postqueue -f) does.
    Everything,
    /// Only those whose next attempt has come, and those past the queue lifetime:
    /// a scheduled run (`queue flush --due` from cron or a timer) keeps the back-off.
    Due,
}

impl Pick {
    /// Whether a flush of this kind tries `entry` now.
    pub fn takes(self, entry: &Entry, now: SystemTime, lifetime: Duration) -> bool {
        self == Pick::Everything || entry.is_due(now) || entry.age(now) >= lifetime
    }
}

/// A duration as people say it, rounded down to its largest unit: "5 days", "1 hour"
/// (how long an entry has waited, or will).
pub fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = match secs {
        86400.. => (secs / 86400, "day"),
        3600.. => (secs / 3600, "hour"),
        60.. => (secs / 60, "minute"),
        _ => (secs, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_four_hours() {
        let minutes: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs() / 60).collect();
        assert_eq!(minutes, [5, 10, 20, 40, 80, 160, 240, 240, 240]);
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn durations_as_people_say_them() {
        let d = Duration::from_secs;
        assert_eq!(describe_duration(d(5 * 86400 + 3600)), "5 days");
        assert_eq!(describe_duration(d(86400)), "1 day");
        assert_eq!(describe_duration(d(7200)), "2 hours");
        assert_eq!(describe_duration(d(61)), "1 minute");
        assert_eq!(describe_duration(d(0)), "0 seconds");
    }
}
