//! LMTP (RFC 2033) against aiosmtpd's LMTP server, over TCP and over a Unix socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TempDir, TestEnv, free_port};

/// aiosmtpd's LMTP server as a child process, stopped on drop.
struct Lmtpd {
    child: Child,
    out: TempDir,
    server: String,
}

impl Lmtpd {
    fn start(unix: bool) -> Lmtpd {
        let out = TempDir::new("outbox-lmtp");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/support/lmtpd.py");
        let (kind, where_, server) = if unix {
            let path = out.join("lmtp.sock");
            let shown = path.display().to_string();
            ("unix", shown.clone(), format!("unix:{shown}"))
        } else {
            let port = free_port();
            ("tcp", port.to_string(), format!("127.0.0.1:{port}"))
        };
        let child = Command::new("/usr/bin/python3")
            .arg(&script)
            .args([kind, &where_, &out.join("msgs").display().to_string()])
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the LMTP server");
        std::fs::create_dir_all(out.join("msgs")).unwrap();
        let lmtpd = Lmtpd { child, out, server };
        lmtpd.wait_ready(unix, &where_);
        lmtpd
    }

    fn wait_ready(&self, unix: bool, where_: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let up = if unix {
                std::os::unix::net::UnixStream::connect(where_).is_ok()
            } else {
                std::net::TcpStream::connect(("127.0.0.1", where_.parse::<u16>().unwrap())).is_ok()
            };
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the LMTP server did not come up at {where_}");
    }

    /// The messages received, as (recipients, raw bytes).
    fn messages(&self, count: usize) -> Vec<(Vec<String>, Vec<u8>)> {
        let dir: PathBuf = self.out.join("msgs");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            if files.len() >= count || Instant::now() > deadline {
                files.sort();
                return files
                    .iter()
                    .map(|p| {
                        let text = std::fs::read_to_string(p).unwrap();
                        let rcpts = json_strings(&text, "rcpt_tos");
                        let data = json_strings(&text, "data").pop().unwrap_or_default();
                        use base64::Engine;
                        let raw = base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .unwrap();
                        (rcpts, raw)
                    })
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The strings of a JSON field written by lmtpd.py (a string or a list of strings).
fn json_strings(text: &str, key: &str) -> Vec<String> {
    let Some(start) = text.find(&format!("\"{key}\": ")) else {
        return Vec::new();
    };
    let rest = &text[start + key.len() + 4..];
    let end = if rest.starts_with('[') {
        rest.find(']').map_or(rest.len(), |i| i + 1)
    } else {
        rest[1..].find('"').map_or(rest.len(), |i| i + 2)
    };
    rest[..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn send(server: &str, recipients: &[&str]) -> crate::support::Output {
    let mut cmd = TestEnv::new().cmd();
    cmd.args([
        "--lmtp",
        "-v",
        "--server",
        server,
        "-f",
        "a@example.test",
        "-s",
        "lmtp",
    ])
    .args(recipients)
    .stdin(b"delivered by LMTP\n.leading dot\n".to_vec());
    cmd.run()
}

#[test]
fn lmtp_over_tcp_gets_a_reply_per_recipient() {
    let server = Lmtpd::start(false);
    let out = send(&server.server, &["one@example.test", "two@example.test"]);
    out.assert_success().assert_stderr_contains("> LHLO ");
    let stderr = out.stderr_str();
    // Two replies after the message, one per recipient (RFC 2033 §4.2).
    let delivered = stderr.matches("< 250 2.0.0 <").count();
    assert_eq!(delivered, 2, "{}", out.report());
    let got = server.messages(1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, ["one@example.test", "two@example.test"]);
    let text = String::from_utf8_lossy(&got[0].1);
    assert!(
        text.contains("\r\n\r\ndelivered by LMTP\r\n.leading dot\r\n"),
        "{text}"
    );
}

#[test]
fn lmtp_over_a_unix_socket_reports_each_recipient() {
    let server = Lmtpd::start(true);
    let out = send(&server.server, &["ok@example.test", "full@example.test"]);
    // One mailbox was full after the data: that one is refused for now (4xx), and the
    // exit code says "try again" for it; the other has the message.
    out.assert_code(75);
    let stderr = out.stderr_str();
    assert!(stderr.contains("<full@example.test>"), "{}", out.report());
    assert!(stderr.contains("452 4.2.2"), "{}", out.report());
    let got = server.messages(1);
    assert_eq!(got[0].0, ["ok@example.test", "full@example.test"]);
}
