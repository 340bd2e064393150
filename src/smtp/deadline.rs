//! Writes with a deadline: `--timeout` (or RFC 5321 §4.5.3.2.5's data block limit)
//! bounds the time a block of bytes takes to leave, once, however the socket splits it.
//!
//! A socket's own write timeout bounds each `send` call. A blocking `send` that times
//! out after some bytes were taken returns that partial count, and `write_all` calls
//! again with the rest, waiting the whole timeout anew: a server that stopped reading
//! would hold the client for several timeouts. Here every call is given only what is
//! left of its block's time, and a block is a buffer offered to `write` until it has
//! all gone.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::session::IoTimeout;

/// Whether a socket timeout of `set` can stand for a wanted one of `want`: a little
/// longer, by at most 1/64 of it and never more than a second. Every change of a
/// socket's timeout is a system call; over a flush of many messages the same few
/// limits come back again and again.
pub(crate) fn close_enough(set: Option<Duration>, want: Duration) -> bool {
    let slack = (want / 64).min(Duration::from_secs(1));
    set.is_some_and(|set| set >= want && set - want <= slack)
}

/// A socket timeout for `t`: zero would mean "no limit" to the socket.
pub(crate) fn socket_timeout(t: Duration) -> Duration {
    t.max(Duration::from_millis(1))
}

/// The stream while bytes go out. Each block must leave within `limit`: a write that
/// takes only part of what it is offered leaves the rest the time that is left, and
/// once that is gone the write fails as timed out without waiting again. After one
/// failed write every further write fails at once without touching the stream: a
/// BufWriter dropped with bytes still in it (as `DotWriter::finish` or a failed flush
/// leaves it) would try them again, and wait out the timeout a second time.
pub(crate) struct Bounded<'a, S> {
    stream: &'a mut S,
    /// The write timeout the stream has now, as the session records it.
    set: &'a mut Option<Duration>,
    limit: Duration,
    /// When the block being written is due; `None` between blocks.
    due: Option<Instant>,
    failed: bool,
}

impl<'a, S: Write + IoTimeout> Bounded<'a, S> {
    pub(crate) fn new(
        stream: &'a mut S,
        set: &'a mut Option<Duration>,
        limit: Duration,
    ) -> Bounded<'a, S> {
        Bounded {
            stream,
            set,
            limit,
            due: None,
            failed: false,
        }
    }

    fn fail(&mut self, e: io::Error) -> io::Error {
        self.failed = true;
        e
    }
}

impl<S: Write + IoTimeout> Write for Bounded<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let now = Instant::now();
        let left = match self.due {
            Some(due) => due.saturating_duration_since(now),
            None => {
                self.due = Some(now + self.limit);
                self.limit
            }
        };
        if left.is_zero() {
            let e = io::Error::new(io::ErrorKind::TimedOut, "the write timed out");
            return Err(self.fail(e));
        }
        if !close_enough(*self.set, left) {
            let t = socket_timeout(left);
            if let Err(e) = self.stream.set_write_timeout(t) {
                return Err(self.fail(e));
            }
            *self.set = Some(t);
        }
        match self.stream.write(buf) {
            Ok(n) => {
                if n == buf.len() {
                    self.due = None;
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        self.stream.flush().map_err(|e| self.fail(e))
    }
}
