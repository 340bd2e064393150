//! Writes with a deadline: `--timeout` (or RFC 5321 §4.5.3.2.5's data block limit)
//! bounds the time a block of bytes takes to leave, once, however the socket splits it.
//!
//! A socket's own write timeout bounds each `send` call. A blocking `send` that times
//! out after some bytes were taken returns that partial count, and `write_all` calls
//! again with the rest, waiting the whole timeout anew: a server that stopped reading
//! would hold the client for several timeouts. Here every call is given only what is
//! left of its block's time, and a block is a buffer offered to `write` until it has
//! all gone.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A stream whose reads and writes can be given a time limit.
pub trait IoTimeout {
    /// Called before each read, which waits for the server. `timeout`, when given,
    /// bounds this read and the later ones; `None` keeps the last bound.
    fn prepare_read(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Bounds each later write.
    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// The time by which the next read must be done (`None`: no deadline). Only a
    /// stream that reads its socket more than once per read (TLS, a record at a time)
    /// needs it: for the others the read timeout is the time left. It bounds whatever
    /// that stream does on the socket for the read, writes included.
    fn read_by(&mut self, _deadline: Option<Instant>) {}
    /// As [`IoTimeout::read_by`], for the next write; `None` once it is over.
    fn write_by(&mut self, _deadline: Option<Instant>) {}
}

impl IoTimeout for std::net::TcpStream {
    fn prepare_read(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        prepare_read(self, timeout)
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        std::net::TcpStream::set_write_timeout(self, Some(socket_timeout(timeout)))
    }
}

/// Readies the socket for a wait for the server: the read timeout when `timeout` gives
/// one, and, on Linux, an immediate ACK for what comes next.
///
/// SMTP is a dialogue of small writes. A server that leaves Nagle's algorithm on holds
/// its second small write (after TLS: a session ticket, then the reply) until the first
/// is acknowledged, and the client's delayed ACK makes that a 40 ms stall per step.
/// Linux forgets TCP_QUICKACK after a while, so it is asked for before every wait.
pub(crate) fn prepare_read(tcp: &TcpStream, timeout: Option<Duration>) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    socket2::SockRef::from(tcp).set_tcp_quickack(true)?;
    match timeout {
        Some(t) => tcp.set_read_timeout(Some(socket_timeout(t))),
        None => Ok(()),
    }
}

/// Whether a socket timeout of `set` can stand for a wanted one of `want`: a little
/// longer, by at most 1/64 of it and never more than a second. Every change of a
/// socket's timeout is a system call; over a flush of many messages the same few
/// limits come back again and again.
pub(crate) fn close_enough(set: Option<Duration>, want: Duration) -> bool {
    let slack = (want / 64).min(Duration::from_secs(1));
    set.is_some_and(|set| set >= want && set - want <= slack)
}

/// The most a write call is offered: the block that must leave within the limit. A
/// larger buffer (a BDAT chunk of 1 MiB) is taken a block at a time, so that a slow but
/// steady link is not held to moving the whole of it within one limit.
const BLOCK: usize = 64 * 1024;

/// A socket timeout for `t`: zero would mean "no limit" to the socket.
pub(crate) fn socket_timeout(t: Duration) -> Duration {
    t.max(Duration::from_millis(1))
}

/// The stream while bytes go out. Each block (a write call's buffer, at most `BLOCK`
/// bytes) must leave within `limit`: a write that
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
        let block = &buf[..buf.len().min(BLOCK)];
        self.stream.write_by(self.due);
        let wrote = self.stream.write(block);
        self.stream.write_by(None);
        match wrote {
            Ok(n) => {
                if n == block.len() {
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

/// A TCP socket that keeps to deadlines, for TLS to run over. OpenSSL reads and writes
/// the socket as often as a record or a handshake needs, and with only the socket's
/// timeout each of those calls could wait the whole limit anew: a server sending a
/// record a byte at a time would never time out. Here each call has only what is left
/// until the deadline; once it is gone the call fails as a timed-out socket call
/// does, without waiting.
///
/// The deadline is that of what the session is doing, whichever way the socket goes:
/// OpenSSL reads during `SSL_write` (a TLS 1.2 renegotiation, TLS 1.3 post-handshake
/// messages, RFC 8446 §4.6) and writes during `SSL_read` (answering a KeyUpdate, an
/// alert). While a write is under way its deadline bounds both; otherwise the read's
/// does; with neither, each call is bounded by `limit`, so no small timeout set for an
/// earlier call is left to cut a later one short.
#[derive(Debug)]
pub struct Timed {
    tcp: TcpStream,
    /// The deadline of the read the session is in, or began last.
    read_by: Option<Instant>,
    /// The deadline of the write under way; `None` between writes.
    write_by: Option<Instant>,
    /// The bound of a call with no deadline: the session's general limit.
    limit: Duration,
    /// The socket's read and write timeouts now.
    read_set: Option<Duration>,
    write_set: Option<Duration>,
}

impl Timed {
    /// The socket, with both deadlines `limit` from now (for the TLS handshake,
    /// which the limit bounds as a whole).
    pub(crate) fn new(tcp: TcpStream, limit: Duration) -> Timed {
        let by = Instant::now() + limit;
        Timed {
            tcp,
            read_by: Some(by),
            write_by: Some(by),
            limit,
            read_set: None,
            write_set: None,
        }
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.tcp
    }

    /// The deadline of the read about to begin; it bounds the writes OpenSSL makes
    /// during it too.
    pub(crate) fn read_by(&mut self, deadline: Option<Instant>) {
        self.read_by = deadline;
    }

    /// The deadline of the write about to begin, `None` once it is over (the read's
    /// deadline is then back in force); it bounds the reads OpenSSL makes during it too.
    pub(crate) fn write_by(&mut self, deadline: Option<Instant>) {
        self.write_by = deadline;
    }

    /// The socket timeout for the next call, whichever way: what is left of the
    /// deadline in force, or the general limit; an error once the deadline is past.
    fn left(&self) -> io::Result<Duration> {
        let Some(by) = self.write_by.or(self.read_by) else {
            return Ok(self.limit);
        };
        let left = by.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "timed out"));
        }
        Ok(left)
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        if !close_enough(self.read_set, left) {
            let t = socket_timeout(left);
            self.tcp.set_read_timeout(Some(t))?;
            self.read_set = Some(t);
        }
        self.tcp.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        if !close_enough(self.write_set, left) {
            let t = socket_timeout(left);
            self.tcp.set_write_timeout(Some(t))?;
            self.write_set = Some(t);
        }
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that takes `per_wait` bytes each time a send blocks for its whole
    /// timeout, as a socket to a server that reads a drip at a time does; or nothing
    /// at all (`per_wait` 0: it stopped reading), which fails as a timed-out send.
    struct Slow {
        timeout: Option<Duration>,
        per_wait: usize,
        /// How long a send takes, when shorter than its timeout.
        pace: Option<Duration>,
        taken: usize,
        calls: usize,
    }

    impl Slow {
        fn new(per_wait: usize) -> Slow {
            Slow {
                timeout: None,
                per_wait,
                pace: None,
                taken: 0,
                calls: 0,
            }
        }
    }

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            let timeout = self.timeout.expect("a write timeout is set");
            std::thread::sleep(self.pace.map_or(timeout, |p| p.min(timeout)));
            let n = self.per_wait.min(buf.len());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.taken += n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl IoTimeout for Slow {
        fn prepare_read(&mut self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }

        fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
            self.timeout = Some(timeout);
            Ok(())
        }
    }

    const LIMIT: Duration = Duration::from_millis(200);

    #[test]
    fn a_drip_cannot_stretch_a_write_past_its_limit() {
        // Five bytes per wait: 1000 bytes would take 200 waits with a limit per send.
        let mut slow = Slow::new(5);
        let mut set = None;
        let started = Instant::now();
        let err = Bounded::new(&mut slow, &mut set, LIMIT)
            .write_all(&[b'x'; 1000])
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(slow.calls, 1, "the time was up after the first send");
        assert_eq!(slow.taken, 5);
        assert!(took < LIMIT * 2, "took {took:?}");
    }

    #[test]
    fn a_slow_but_steady_link_takes_a_large_buffer_a_block_at_a_time() {
        // A block per 100 ms: 1 MiB takes 1.6 s, eight times the limit, and each block
        // is well within it.
        let mut slow = Slow::new(BLOCK);
        slow.pace = Some(LIMIT / 2);
        let mut set = None;
        Bounded::new(&mut slow, &mut set, LIMIT)
            .write_all(&vec![b'x'; 16 * BLOCK])
            .unwrap();
        assert_eq!(slow.taken, 16 * BLOCK);
        assert_eq!(slow.calls, 16);
    }

    #[test]
    fn a_peer_that_stopped_reading_costs_one_wait_and_no_more_writes() {
        let mut slow = Slow::new(0);
        let mut set = None;
        let mut out = Bounded::new(&mut slow, &mut set, LIMIT);
        let started = Instant::now();
        let err = out.write_all(b"data").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        // What a BufWriter dropped with bytes in it would try: failed at once.
        assert!(out.write_all(b"more").is_err());
        assert!(out.flush().is_err());
        assert!(started.elapsed() < LIMIT * 2);
        assert_eq!(slow.calls, 1);
    }

    #[test]
    fn a_timed_socket_read_a_byte_at_a_time_keeps_to_its_deadline() {
        // As OpenSSL reads a record: read after read until it is whole. The server
        // sends a byte every 50 ms, so no single read waits long. A limit of a second
        // and a second's margin keep the test steady on a busy machine.
        let limit = Duration::from_secs(1);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            for _ in 0..100 {
                if peer.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut timed = Timed::new(TcpStream::connect(addr).unwrap(), limit);
        let started = Instant::now();
        let mut got = 0;
        let err = loop {
            let mut byte = [0u8; 1];
            match timed.read(&mut byte) {
                Ok(0) => panic!("closed"),
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        let took = started.elapsed();
        drop(timed);
        server.join().unwrap();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err:?}"
        );
        assert!(got > 0 && got < 100, "{got} bytes");
        assert!(took >= limit && took < limit * 2, "took {took:?}");
    }

    /// A `Timed` over one end of a loopback connection, and the other end.
    fn timed_pair(limit: Duration) -> (Timed, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (far, _) = listener.accept().unwrap();
        let mut timed = Timed::new(near, limit);
        // As after the handshake: the session gives each read and write its deadline.
        timed.read_by(None);
        timed.write_by(None);
        (timed, far)
    }

    /// A deadline that has passed.
    fn passed() -> Instant {
        let then = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        then
    }

    #[test]
    fn a_read_during_a_write_keeps_to_the_write_s_deadline() {
        let (mut timed, mut far) = timed_pair(Duration::from_secs(60));
        // The last reply was read: its deadline stays behind, and has passed.
        timed.read_by(Some(passed()));
        timed.write_by(Some(Instant::now() + Duration::from_secs(5)));
        // A write that needs no read.
        timed.write_all(b"MAIL FROM:<a@example.test>\r\n").unwrap();
        // What OpenSSL does when SSL_write meets a renegotiation or a post-handshake
        // message: it reads the socket, within the write's time.
        far.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(timed.read(&mut byte).unwrap(), 1);
        let timeout = timed.get_ref().read_timeout().unwrap().unwrap();
        assert!(timeout > Duration::from_secs(4), "{timeout:?}");
        // Once the write is over, the read's deadline is back.
        timed.write_by(None);
        far.write_all(b"y").unwrap();
        let err = timed.read(&mut byte).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_write_during_a_read_keeps_to_the_read_s_deadline() {
        let limit = Duration::from_secs(60);
        let (mut timed, _far) = timed_pair(limit);
        // A write with a few milliseconds left leaves a small SO_SNDTIMEO behind.
        timed.write_by(Some(Instant::now() + Duration::from_millis(5)));
        timed.write_all(b"x").unwrap();
        timed.write_by(None);
        // A read due in 5 s, during which OpenSSL writes (answering a KeyUpdate, or an
        // alert): the write has the read's time, not what the last write left.
        timed.read_by(Some(Instant::now() + Duration::from_secs(5)));
        timed.write_all(b"y").unwrap();
        let timeout = timed.get_ref().write_timeout().unwrap().unwrap();
        assert!(
            // The kernel rounds a socket timeout up to its clock's tick.
            timeout > Duration::from_secs(4) && timeout < Duration::from_millis(5100),
            "{timeout:?}"
        );
        // No deadline at all: the general limit, never a small one left over.
        timed.write_by(Some(Instant::now() + Duration::from_millis(5)));
        timed.write_all(b"z").unwrap();
        timed.write_by(None);
        timed.read_by(None);
        timed.write_all(b"w").unwrap();
        assert_eq!(timed.get_ref().write_timeout().unwrap(), Some(limit));
    }

    #[test]
    fn each_block_that_leaves_whole_has_the_full_limit_again() {
        // Each send takes what it is given: every block starts with the whole limit,
        // and the socket's timeout is set once.
        struct Quick(Vec<Duration>);
        impl Write for Quick {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl IoTimeout for Quick {
            fn prepare_read(&mut self, _: Option<Duration>) -> io::Result<()> {
                Ok(())
            }
            fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
                self.0.push(timeout);
                Ok(())
            }
        }
        let mut quick = Quick(Vec::new());
        let mut set = None;
        let mut out = Bounded::new(&mut quick, &mut set, LIMIT);
        for _ in 0..100 {
            out.write_all(b"block").unwrap();
        }
        assert_eq!(quick.0, [LIMIT]);
        assert_eq!(set, Some(LIMIT));
    }
}
