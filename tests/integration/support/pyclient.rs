//! A second, independent SMTP client for testing the test servers
//! themselves: `smtp_client.py` (Python's smtplib and ssl, run with
//! `/usr/bin/python3`), which can do STARTTLS and implicit TLS with
//! certificate verification, and AUTH PLAIN, LOGIN, CRAM-MD5,
//! SCRAM-SHA-256 and XOAUTH2. See the script for its options and output.
//!
//! ```ignore
//! let out = smtp_client(&[&server.addr(), "--tls", "starttls", "--cafile", ca,
//!                         "--auth", "PLAIN", "--user", "alice", "--password", "pw"]);
//! out.assert_success();
//! assert_eq!(step(&out, "auth").as_deref(), Some("235 2.7.0 Authentication successful"));
//! ```

use super::aiosmtpd::PYTHON;
use super::{Output, TestEnv};
use std::time::Duration;

const SCRIPT: &str = include_str!("smtp_client.py");

/// Run the client with `args` (see `smtp_client.py`); it gives up on a
/// silent server after 15 s.
pub fn smtp_client<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let env = TestEnv::new();
    let script = env.write_file("smtp_client.py", SCRIPT);
    let mut cmd = env.command(PYTHON);
    cmd.arg(script).args(args).timeout(Duration::from_secs(60));
    cmd.run()
}

/// The value of the last `key: value` line of the client's output.
pub fn step(out: &Output, key: &str) -> Option<String> {
    steps(out, key).pop()
}

/// The values of all `key: value` lines, in order.
pub fn steps(out: &Output, key: &str) -> Vec<String> {
    let prefix = format!("{key}: ");
    out.stdout_str()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect()
}
