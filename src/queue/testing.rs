//! What the queue's tests share: a private directory, addresses, times and messages.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Entry, Listed, Queue};
use crate::envelope::Address;
use crate::message::Message;

/// A directory removed when the test ends.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "outbox-queue-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// A queue in a directory that does not exist yet.
    pub(super) fn queue(&self) -> Queue {
        Queue::open(&self.0.join("queue")).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn addr(a: &str) -> Address {
    Address::new(a).unwrap()
}

pub(super) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub(super) const T0: u64 = 1_750_000_000;

pub(super) fn msg(bytes: &[u8]) -> Message {
    Message::from_bytes(bytes.to_vec())
}

pub(super) fn enqueue_to(q: &Queue, to: &[&str], now: SystemTime) -> String {
    let to: Vec<Address> = to.iter().map(|a| addr(a)).collect();
    q.enqueue(
        Some(&addr("me@example.test")),
        &to,
        &msg(b"Subject: x\r\n\r\nbody\r\n"),
        "421 try later",
        now,
    )
    .unwrap()
}

pub(super) fn entries(listed: Vec<Listed>) -> Vec<Entry> {
    listed
        .into_iter()
        .map(|l| match l {
            Listed::Entry(e) => *e,
            corrupt => panic!("unexpected {corrupt:?}"),
        })
        .collect()
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(super) fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Two megabytes with every byte value, bare CRs and LFs, NULs and lone dots.
pub(super) fn big_message() -> Vec<u8> {
    let mut m = b"Subject: big\r\n\r\n".to_vec();
    let mut x: u32 = 1;
    while m.len() < 2 * 1024 * 1024 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        m.push((x >> 16) as u8);
        if x.is_multiple_of(97) {
            m.extend_from_slice(b"\n.\n\r.\r\n");
        }
    }
    m
}
