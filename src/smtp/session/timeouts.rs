//! How long each step of a session may take: RFC 5321 §4.5.3.2's limits, or one
//! limit for all (`--timeout`).

use std::time::Duration;

/// How long to wait at each step. The defaults are RFC 5321 §4.5.3.2's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// §4.5.3.2.1: initial 220 message, 5 minutes.
    pub greeting: Duration,
    /// EHLO has no RFC value; it is treated like MAIL.
    pub ehlo: Duration,
    /// §4.5.3.2.2: MAIL command, 5 minutes.
    pub mail: Duration,
    /// §4.5.3.2.3: RCPT command, 5 minutes.
    pub rcpt: Duration,
    /// §4.5.3.2.4: DATA initiation, 2 minutes.
    pub data_init: Duration,
    /// §4.5.3.2.5: each data block written, 3 minutes.
    pub data_block: Duration,
    /// §4.5.3.2.6: DATA termination (the reply to the final dot), 10 minutes.
    pub data_end: Duration,
    /// QUIT has no RFC value; a server that is slow to say goodbye holds nothing of ours.
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        let min = |m: u64| Duration::from_secs(60 * m);
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: min(5),
            ehlo: min(5),
            mail: min(5),
            rcpt: min(5),
            data_init: min(2),
            data_block: min(3),
            data_end: min(10),
            quit: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// The same limit for every step, as `--timeout` asks.
    pub fn uniform(t: Duration) -> Timeouts {
        Timeouts {
            connect: t,
            greeting: t,
            ehlo: t,
            mail: t,
            rcpt: t,
            data_init: t,
            data_block: t,
            data_end: t,
            quit: t,
        }
    }
}
