//! A large attachment streams: outbox reads and base64-encodes it a block at a time
//! while sending, so its memory does not grow with the file. A 50 MB attachment goes
//! to a private Postfix (its base64 form is over the shared instance's 50 MiB SIZE
//! limit), arrives intact, and outbox's peak RSS, read from /proc while it runs,
//! stays under 32 MiB. Timings and the 100 MB comparison with s-nail are in
//! `bench/big-attachment.sh`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

use crate::support::postfix::{Postfix, rcpt};
use crate::support::{TestEnv, unique_name};

const ATTACHMENT_BYTES: usize = 50 * 1000 * 1000;
const RSS_LIMIT_KIB: u64 = 32 * 1024;
const SENDER: &str = "someone@example.test";

/// Writes `len` pseudo-random bytes (xorshift64*) to `path`; returns their SHA-256.
fn write_pseudo_random(path: &std::path::Path, len: usize, seed: u64) -> String {
    let mut out = BufWriter::new(File::create(path).unwrap());
    let mut hash = Sha256::new();
    let mut x = seed | 1;
    let mut block = Vec::with_capacity(64 * 1024);
    let mut left = len;
    while left > 0 {
        block.clear();
        while block.len() < 64 * 1024 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            block.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        block.truncate(left.min(block.len()));
        hash.update(&block);
        out.write_all(&block).unwrap();
        left -= block.len();
    }
    out.flush().unwrap();
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `VmHWM` (peak resident set) of a running process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[test]
fn fifty_megabyte_attachment_streams_in_flat_memory() {
    let pf = Postfix::builder()
        .message_size_limit(200 * 1024 * 1024)
        .start();
    let env = TestEnv::new();
    let local = unique_name("big");
    let file = env.root().join("big.bin");
    let sha = write_pseudo_random(&file, ATTACHMENT_BYTES, 0x00b1_6a77_ac4e);

    let stderr_path = env.root().join("stderr.txt");
    let mut cmd = env.cmd();
    cmd.args(["--server", &pf.addr(), "--timeout", "60"])
        .args(["-f", SENDER, "-s", "big", "--body", "A big file."])
        .args(["-a", "big.bin", &rcpt(&local)]);
    let mut child = cmd.spawn_with_stderr(File::create(&stderr_path).unwrap());
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak = 0;
    let status = loop {
        // VmHWM only grows; the last reading before the exit is the peak (the
        // transfer takes far longer than a polling interval).
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("outbox took over 2 minutes: `{}`", cmd.cmdline());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        status.success(),
        "`{}` failed ({status}):\n{stderr}\n{}",
        cmd.cmdline(),
        pf.maillog_tail(20)
    );
    assert!(peak > 0, "no reading of VmHWM for pid {pid}");
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {peak} KiB sending a {ATTACHMENT_BYTES}-byte attachment (limit {RSS_LIMIT_KIB} KiB)"
    );
    eprintln!("peak RSS sending {ATTACHMENT_BYTES} bytes: {peak} KiB");

    let raw = pf
        .wait_for_messages(&local, 1, Duration::from_secs(60))
        .remove(0);
    let msg = MessageParser::default()
        .parse(&raw)
        .expect("mail-parser parses the delivered message");
    assert_eq!(msg.attachment_count(), 1);
    let part = msg.attachment(0).expect("the attachment");
    assert_eq!(part.attachment_name(), Some("big.bin"));
    let got = part.contents();
    assert_eq!(got.len(), ATTACHMENT_BYTES, "attachment size");
    assert_eq!(hex(&Sha256::digest(got)), sha, "attachment SHA-256");
    assert_eq!(msg.body_text(0).as_deref(), Some("A big file."));
}
