//! A private syslog socket, standing in for `/dev/log`: a Unix datagram
//! socket bound in a temporary directory of its own. Point outbox's
//! `syslog_socket` at [`SyslogSink::path`] and read what it sent with
//! [`SyslogSink::datagrams`]. Nothing else writes to it, so every datagram
//! there came from the programs the test ran.

use super::TempDir;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Largest datagram read; syslog(3) and RFC 3164 senders stay far below it.
const MAX_DATAGRAM: usize = 64 * 1024;

/// A bound datagram socket and what it has received so far.
#[derive(Debug)]
pub struct SyslogSink {
    dir: TempDir,
    socket: UnixDatagram,
    received: Mutex<Vec<Vec<u8>>>,
}

impl SyslogSink {
    /// Binds `DIR/log` in a fresh temporary directory.
    pub fn bind() -> SyslogSink {
        let dir = TempDir::new("outbox-syslog");
        let path = dir.join("log");
        let socket = UnixDatagram::bind(&path)
            .unwrap_or_else(|e| panic!("cannot bind a datagram socket at {}: {e}", path.display()));
        socket
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("cannot make {} non-blocking: {e}", path.display()));
        SyslogSink {
            dir,
            socket,
            received: Mutex::new(Vec::new()),
        }
    }

    /// The socket's path, for `syslog_socket = "..."`.
    pub fn path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The directory the socket is in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every datagram received so far (oldest first, as text), without waiting.
    pub fn datagrams(&self) -> Vec<String> {
        let mut received = self
            .received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => received.push(buf[..n].to_vec()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("cannot read from {}: {e}", self.path().display()),
            }
        }
        received
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect()
    }

    /// Waits until at least `count` datagrams have come, then returns them all;
    /// panics with what did come after `timeout`.
    #[track_caller]
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.datagrams();
            if got.len() >= count {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {count} datagram(s) on {}; got {}:\n{}",
                    self.path().display(),
                    got.len(),
                    got.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}
