//! LMTP (RFC 2033) against aiosmtpd's LMTP server, over TCP and over a Unix socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Output, TempDir, TestEnv, free_port};

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

/// What the scripted LMTP peer does once it has sent its replies after the data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Goes on answering, as a server does.
    Serve,
    /// Closes the connection, whether every recipient had its reply or not.
    Close,
}

/// A scripted LMTP peer on a Unix socket, for exact replies after the data: it answers
/// each command of one session in turn (no PIPELINING, so outbox goes in lockstep) and
/// after the message sends `after_data`, one reply per accepted recipient (RFC 2033
/// §4.2), then does as `then` says. The thread returns what the client sent.
fn scripted_lmtp(
    path: &Path,
    after_data: &'static str,
    then: Then,
) -> std::thread::JoinHandle<String> {
    scripted_lmtp_sessions(path, vec![after_data], then)
}

/// As [`scripted_lmtp`], for one session after another, each with its own replies
/// after the data.
fn scripted_lmtp_sessions(
    path: &Path,
    sessions: Vec<&'static str>,
    then: Then,
) -> std::thread::JoinHandle<String> {
    let listener = std::os::unix::net::UnixListener::bind(path).expect("bind the LMTP socket");
    std::thread::spawn(move || {
        let mut got = String::new();
        for after_data in sessions {
            let Ok((stream, _)) = listener.accept() else {
                return got;
            };
            got.push_str(&lmtp_session(stream, after_data, then));
        }
        got
    })
}

/// One session of the scripted peer; returns what the client sent.
fn lmtp_session(
    stream: std::os::unix::net::UnixStream,
    after_data: &'static str,
    then: Then,
) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut got = String::new();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let Ok(mut out) = stream.try_clone() else {
        return got;
    };
    let mut lines = BufReader::new(stream);
    let _ = out.write_all(b"220 lmtp.example.test LMTP\r\n");
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            return got;
        }
        got.push_str(&line);
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "LHLO" => "250-lmtp.example.test\r\n250 ENHANCEDSTATUSCODES\r\n",
            "MAIL" | "RCPT" => "250 2.1.0 ok\r\n",
            "DATA" => {
                let _ = out.write_all(b"354 go ahead\r\n");
                loop {
                    let mut data = String::new();
                    if lines.read_line(&mut data).unwrap_or(0) == 0 {
                        return got;
                    }
                    got.push_str(&data);
                    if data == ".\r\n" {
                        break;
                    }
                }
                after_data
            }
            "QUIT" => {
                let _ = out.write_all(b"221 2.0.0 bye\r\n");
                return got;
            }
            _ => "500 5.5.1 what\r\n",
        };
        if out.write_all(reply.as_bytes()).is_err() || (verb == "DATA" && then == Then::Close) {
            return got;
        }
    }
}

/// One submission to ok@ and full@ against the scripted peer; `--queue` with a queue
/// of the environment's own. Returns the result and what the peer received.
fn send_scripted(env: &TestEnv, after_data: &'static str, queue: bool) -> (Output, String) {
    send_scripted_then(env, after_data, Then::Serve, queue)
}

/// As [`send_scripted`], the peer doing as `then` says after its replies to the data.
fn send_scripted_then(
    env: &TestEnv,
    after_data: &'static str,
    then: Then,
    queue: bool,
) -> (Output, String) {
    let dir = TempDir::new("outbox-lmtp-fake");
    let socket = dir.join("lmtp.sock");
    let peer = scripted_lmtp(&socket, after_data, then);
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_QUEUE_DIR", env.root().join("queue"))
        .args(["--lmtp", "--timeout", "10", "--server"])
        .arg(format!("unix:{}", socket.display()))
        .args(["-f", "a@example.test", "-s", "quota"]);
    if queue {
        cmd.arg("--queue");
    }
    cmd.args(["ok@example.test", "full@example.test"])
        .stdin(b"to a full mailbox\n".to_vec());
    let out = cmd.run();
    let got = peer.join().expect("the LMTP peer thread panicked");
    (out, got)
}

/// RFC 2033 §4.2: each reply after the data is that recipient's final answer, so a
/// `552 5.2.2 Quota exceeded` then is permanent (69), not RCPT's "too many recipients"
/// (RFC 5321 §4.5.3.1.10, temporary); with `--queue` full@ goes to `failed/` with the
/// reply and nothing waits for a retry; ok@ has the message.
#[test]
fn lmtp_552_after_data_is_permanent() {
    const QUOTA: &str = "250 2.0.0 <ok@example.test> delivered\r\n\
                         552 5.2.2 <full@example.test> Quota exceeded\r\n";
    let env = TestEnv::new();
    let (out, got) = send_scripted(&env, QUOTA, false);
    out.assert_code(69)
        .assert_stderr_contains("<full@example.test>")
        .assert_stderr_contains("552 5.2.2");
    assert!(got.contains("RCPT TO:<ok@example.test>\r\n"), "{got}");
    assert!(got.contains("\r\n\r\nto a full mailbox\r\n.\r\n"), "{got}");

    let (out, _) = send_scripted(&env, QUOTA, true);
    out.assert_code(69);
    let queue = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.env("OUTBOX_QUEUE_DIR", env.root().join("queue"))
            .arg("queue")
            .args(args);
        cmd.run()
    };
    queue(&["list"])
        .assert_success()
        .assert_stdout_contains("the queue is empty");
    let failed = queue(&["list", "--failed"]);
    failed.assert_success();
    let listing = failed.stdout_str();
    assert!(
        listing.contains("to: full@example.test\n"),
        "{}",
        failed.report()
    );
    assert!(
        listing.contains("552 5.2.2 <full@example.test> Quota exceeded"),
        "{}",
        failed.report()
    );
    assert!(!listing.contains("ok@example.test"), "{}", failed.report());

    // 550 after the data names the mailbox: 67, as it would to RCPT.
    let (out, _) = send_scripted(
        &env,
        "250 2.0.0 <ok@example.test> delivered\r\n550 5.1.1 <full@example.test> no such user\r\n",
        false,
    );
    out.assert_code(67);
    // A 4xx after the data is still worth a retry.
    let (out, _) = send_scripted(
        &env,
        "250 2.0.0 <ok@example.test> delivered\r\n452 4.2.2 <full@example.test> over quota\r\n",
        false,
    );
    out.assert_code(75);
}

/// RFC 2033 §4.2: ok@ had its 250 after the data, then the connection closed before
/// full@'s reply. ok@ has the message and must not get it again: with `--queue` only
/// full@ waits in the queue, with why; without it, exit 75.
#[test]
fn lmtp_reply_lost_after_the_data_retries_only_the_unanswered() {
    const HALF: &str = "250 2.0.0 <ok@example.test> delivered\r\n";
    let env = TestEnv::new();
    let (out, _) = send_scripted_then(&env, HALF, Then::Close, true);
    out.assert_code(0);
    let queue = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.env("OUTBOX_QUEUE_DIR", env.root().join("queue"))
            .arg("queue")
            .args(args);
        cmd.run()
    };
    let listed = queue(&["list"]);
    listed.assert_success();
    let listing = listed.stdout_str();
    assert!(
        listing.contains("to: full@example.test\n"),
        "{}",
        listed.report()
    );
    assert!(!listing.contains("ok@example.test"), "{}", listed.report());
    assert!(
        listing.contains("no reply after the data"),
        "{}",
        listed.report()
    );

    let (out, got) = send_scripted_then(&env, HALF, Then::Close, false);
    out.assert_code(75)
        .assert_stderr_contains("closed the connection")
        .assert_stderr_contains("<full@example.test>: no reply");
    assert!(got.contains("\r\n\r\nto a full mailbox\r\n.\r\n"), "{got}");
}

/// The sendmail face over LMTP (`lmtp = true` in the configuration): a recipient's own
/// 550 after the data (RFC 2033 §4.2) is a refusal for good like any other: exit 0,
/// and a bounce to the sender over a second session, naming that recipient with the
/// reply that came after the data; no Remote-MTA for a local socket.
#[test]
fn an_lmtp_refusal_after_the_data_is_bounced_by_the_sendmail_face() {
    let env = TestEnv::new();
    let dir = TempDir::new("outbox-lmtp-fake");
    let socket = dir.join("lmtp.sock");
    let peer = scripted_lmtp_sessions(
        &socket,
        vec![
            "250 2.0.0 <ok@example.test> delivered\r\n\
             550 5.1.1 <full@example.test> no such user\r\n",
            "250 2.0.0 <a@example.test> delivered\r\n",
        ],
        Then::Serve,
    );
    env.configure(&format!("unix:{}", socket.display()), 10, "lmtp = true\n");
    let mut cmd = env.configured_cmd();
    cmd.args(["sendmail", "-i", "-f", "a@example.test"])
        .args(["ok@example.test", "full@example.test"])
        .stdin(b"Subject: over lmtp\n\nhello\n".to_vec());
    let out = cmd.run();
    let got = peer.join().expect("the LMTP peer thread panicked");
    out.assert_code(0)
        .assert_stderr_contains("<full@example.test>")
        .assert_stderr_contains("550 5.1.1");
    let sessions: Vec<&str> = got.split("LHLO ").skip(1).collect();
    assert_eq!(sessions.len(), 2, "{got}");
    let bounce = sessions[1];
    assert!(bounce.contains("MAIL FROM:<>\r\n"), "{bounce}");
    assert!(bounce.contains("RCPT TO:<a@example.test>\r\n"), "{bounce}");
    for field in [
        "Final-Recipient: rfc822; full@example.test\r\n",
        "Action: failed\r\n",
        "Status: 5.1.1\r\n",
        "Diagnostic-Code: smtp; 550 5.1.1 <full@example.test> no such user\r\n",
        "Subject: over lmtp\r\n",
    ] {
        assert!(bounce.contains(field), "no {field:?} in:\n{bounce}");
    }
    assert!(!bounce.contains("Remote-MTA:"), "{bounce}");
    assert!(!bounce.contains("ok@example.test\r\nAction"), "{bounce}");
}
