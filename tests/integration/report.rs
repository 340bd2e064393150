//! `--json` and the progress bar: the report of a session against the suite's
//! Postfix (which offers PIPELINING, CHUNKING, SIZE, 8BITMIME, SMTPUTF8, DSN and
//! ENHANCEDSTATUSCODES), of a refused recipient, of a server that is down; the
//! progress bar only on a terminal.

use std::time::Duration;

use serde_json::Value;

use crate::support::aiosmtpd::SmtpServer;
use crate::support::postfix::{Postfix, rcpt};
use crate::support::tls::TestPki;
use crate::support::{Output, TestEnv, free_port, unique_name};

const WAIT: Duration = Duration::from_secs(30);
const SENDER: &str = "someone@example.test";

/// Standard output as the one JSON object it must be, and nothing else.
#[track_caller]
fn json_of(out: &Output) -> Value {
    let stdout = out.stdout_str();
    let mut objects = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
    let json = match objects.next() {
        Some(Ok(v)) => v,
        other => out.fail(&format!("stdout is not JSON: {other:?}")),
    };
    if objects.next().is_some() {
        out.fail("more than one JSON value on stdout");
    }
    assert!(json.is_object(), "{}", out.report());
    json
}

/// The Postfix queue id in the first `Received:` header: `... with ESMTP id 4Xyz ...`.
fn received_id(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let head = text
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace("\n ", " ")
        .replace("\n\t", " ");
    let received = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("received:"))
        .unwrap_or_else(|| panic!("no Received header in:\n{text}"));
    let words: Vec<&str> = received.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "id")
        .unwrap_or_else(|| panic!("no id in {received}"));
    words[at + 1].trim_end_matches([';', ',']).to_owned()
}

fn used(json: &Value) -> Vec<String> {
    json["extensions"]["used"]
        .as_array()
        .unwrap_or_else(|| panic!("no extensions.used in {json}"))
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn json_reports_the_server_extensions_recipients_queue_id_and_timings() {
    let pf = Postfix::shared();
    let (one, two) = (unique_name("json"), unique_name("json"));
    let out = TestEnv::new()
        .cmd()
        .args([
            "--json",
            "--server",
            &pf.addr(),
            "--timeout",
            "30",
            "-f",
            SENDER,
            "-s",
            "report",
            "--body",
            "hello",
            &rcpt(&one),
            &rcpt(&two),
        ])
        .run();
    out.assert_success();
    let json = json_of(&out);
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["error"], Value::Null);
    assert_eq!(json["server"]["address"], pf.addr().as_str());
    assert_eq!(json["server"]["name"], "mx.outbox.test");
    assert!(json["server"]["peer"].is_string(), "{json}");
    assert_eq!(json["tls"], Value::Null);
    let used = used(&json);
    for ext in ["PIPELINING", "CHUNKING", "SIZE", "ENHANCEDSTATUSCODES"] {
        assert!(used.iter().any(|u| u == ext), "{ext} not in {used:?}");
    }
    assert!(
        !used.iter().any(|u| u == "STARTTLS" || u == "AUTH"),
        "{used:?}"
    );
    let offered = json["extensions"]["offered"].as_array().unwrap();
    assert!(offered.iter().any(|k| k == "DSN"), "{json}");
    let recipients = json["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 2, "{json}");
    for (r, local) in recipients.iter().zip([&one, &two]) {
        assert_eq!(r["address"], rcpt(local).as_str());
        assert_eq!(r["accepted"], true);
        assert_eq!(r["code"], 250);
        assert_eq!(r["enhanced"], "2.1.5");
        assert_eq!(r["text"], "Ok");
    }
    assert_eq!(json["reply"]["code"], 250);
    assert_eq!(json["reply"]["enhanced"], "2.0.0");
    let queue_id = json["queue_id"]
        .as_str()
        .unwrap_or_else(|| out.fail("no queue_id"));
    assert!(
        json["reply"]["text"].as_str().unwrap().contains(queue_id),
        "{json}"
    );
    let delivered = pf.wait_for_messages(&one, 1, WAIT).remove(0);
    assert_eq!(received_id(&delivered), queue_id);
    let timings = json["timings_ms"].as_object().unwrap();
    for stage in [
        "connect", "greeting", "ehlo", "envelope", "data", "quit", "total",
    ] {
        let ms = timings
            .get(stage)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| out.fail(&format!("no timing for {stage}")));
        assert!((0.0..30_000.0).contains(&ms), "{stage}: {ms}");
    }
    assert!(!timings.contains_key("auth") && !timings.contains_key("starttls"));
    assert!(json["message"]["bytes"].as_u64().unwrap() > 0);
    // Human words stay on standard error: nothing there on success.
    out.assert_stderr_empty();
}

#[test]
fn json_without_chunking_shows_what_was_used() {
    let pf = Postfix::shared();
    let local = unique_name("json-nochunk");
    let out = TestEnv::new()
        .cmd()
        .args([
            "--json",
            "--no-chunking",
            "--server",
            &pf.addr(),
            "-f",
            SENDER,
            "--body",
            "Grüße, 8 bits",
            &rcpt(&local),
        ])
        .run();
    out.assert_success();
    let json = json_of(&out);
    let used = used(&json);
    assert!(used.iter().any(|u| u == "PIPELINING"), "{used:?}");
    assert!(!used.iter().any(|u| u == "CHUNKING"), "{used:?}");
    let queue_id = json["queue_id"]
        .as_str()
        .unwrap_or_else(|| out.fail("no id"));
    let delivered = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    assert_eq!(received_id(&delivered), queue_id);
}

#[test]
fn json_shows_tls_and_auth() {
    let server = SmtpServer::builder()
        .starttls()
        .auth(&["PLAIN"])
        .user("alice", "pw-alice")
        .start();
    let port = server.port();
    let out = TestEnv::new()
        .cmd()
        .env("OUTBOX_PASSWORD", "pw-alice")
        .args([
            "--json",
            "--server",
            &format!("localhost:{port}"),
            "--tls",
            "starttls",
            "--tls-ca-file",
            &TestPki::shared().ca_cert().display().to_string(),
            "--user",
            "alice",
            "-f",
            SENDER,
            "--body",
            "x",
            "b@example.test",
        ])
        .run();
    out.assert_success();
    let json = json_of(&out);
    assert_eq!(json["tls"]["started"], "starttls", "{json}");
    assert!(
        json["tls"]["version"]
            .as_str()
            .unwrap()
            .starts_with("TLSv1."),
        "{json}"
    );
    assert!(
        json["tls"]["subject"]
            .as_str()
            .unwrap()
            .contains("CN=localhost")
    );
    assert_eq!(json["auth"], "PLAIN");
    let used = used(&json);
    assert_eq!(used[..2], ["STARTTLS", "AUTH"], "{used:?}");
    for stage in ["starttls", "auth"] {
        assert!(json["timings_ms"][stage].is_number(), "{json}");
    }
    server.wait_for_messages(1, WAIT);
}

#[test]
fn json_shows_a_refused_recipient_with_its_enhanced_code() {
    let pf = Postfix::shared();
    let good = unique_name("json-ok");
    let bad = unique_name("reject-json");
    // One accepted, one refused: the message goes, the exit code is the refusal's.
    let out = TestEnv::new()
        .cmd()
        .args([
            "--json",
            "--server",
            &pf.addr(),
            "-f",
            SENDER,
            "--body",
            "x",
            &rcpt(&good),
            &rcpt(&bad),
        ])
        .run();
    out.assert_code(67).assert_stderr_contains("5.1.1");
    let json = json_of(&out);
    assert_eq!(json["exit_code"], 67);
    let refused = &json["recipients"][1];
    assert_eq!(refused["address"], rcpt(&bad).as_str());
    assert_eq!(refused["accepted"], false);
    assert_eq!(refused["code"], 550);
    assert_eq!(refused["enhanced"], "5.1.1");
    assert!(json["queue_id"].is_string(), "{json}");

    // Only the refused one: nothing is sent, and the error says why.
    let out = TestEnv::new()
        .cmd()
        .args([
            "--json",
            "--server",
            &pf.addr(),
            "-f",
            SENDER,
            "--body",
            "x",
            &rcpt(&bad),
        ])
        .run();
    out.assert_code(67).assert_stderr_contains("550 5.1.1");
    let json = json_of(&out);
    assert_eq!(json["ok"], false);
    assert_eq!(json["exit_code"], 67);
    assert_eq!(json["recipients"][0]["code"], 550);
    assert_eq!(json["recipients"][0]["enhanced"], "5.1.1");
    assert_eq!(json["error"]["stage"], "rcpt_to");
    assert_eq!(json["error"]["exit_code"], 67);
    assert!(
        json["error"]["message"].as_str().unwrap().contains("5.1.1"),
        "{json}"
    );
    assert_eq!(json["queue_id"], Value::Null);
}

#[test]
fn json_when_the_server_is_down() {
    let server = format!("127.0.0.1:{}", free_port());
    let out = TestEnv::new()
        .cmd()
        .args([
            "--json",
            "--server",
            &server,
            "-f",
            SENDER,
            "--body",
            "x",
            "b@example.test",
        ])
        .run();
    out.assert_code(75).assert_stderr_contains("cannot connect");
    let json = json_of(&out);
    assert_eq!(json["ok"], false);
    assert_eq!(json["exit_code"], 75);
    assert_eq!(json["server"]["address"], server.as_str());
    assert_eq!(json["error"]["stage"], "connect");
    assert_eq!(json["error"]["exit_code"], 75);
    assert_eq!(json["error"]["reply"], Value::Null);
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );
    assert!(json["timings_ms"]["connect"].is_number(), "{json}");
    assert_eq!(json["recipients"], serde_json::json!([]));
}

#[test]
fn json_for_a_usage_error_before_any_session() {
    let out = TestEnv::new()
        .cmd()
        .args(["--json", "-f", SENDER, "--body", "x"])
        .run();
    out.assert_code(64);
    let json = json_of(&out);
    assert_eq!(json["ok"], false);
    assert_eq!(json["exit_code"], 64);
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no recipient"),
        "{json}"
    );
}

#[test]
fn json_with_queue_names_the_queued_entry() {
    let pf = Postfix::shared();
    let later = unique_name("defer-json");
    let out = TestEnv::new()
        .cmd()
        .args([
            "--json",
            "--queue",
            "--server",
            &pf.addr(),
            "-f",
            SENDER,
            "--body",
            "x",
            &rcpt(&later),
        ])
        .run();
    out.assert_success();
    let json = json_of(&out);
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["recipients"][0]["code"], 450);
    assert_eq!(json["recipients"][0]["enhanced"], "4.2.0");
    assert!(json["queued"]["id"].is_string(), "{json}");
    assert_eq!(json["queued"]["recipients"][0], rcpt(&later).as_str());
}

/// A body of `len` bytes in lines of 76 characters.
fn big_body(len: usize) -> Vec<u8> {
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123\n";
    line.iter().copied().cycle().take(len).collect()
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let pf = Postfix::shared();
    let env = TestEnv::new();
    let local = unique_name("progress-pipe");
    let body = env.write_file("big.txt", big_body(3 << 20));
    let out = env
        .cmd()
        .args([
            "--server",
            &pf.addr(),
            "-f",
            SENDER,
            "--body-file",
            body.to_str().unwrap(),
            &rcpt(&local),
        ])
        .run();
    out.assert_success()
        .assert_stderr_empty()
        .assert_stdout_empty();
    pf.wait_for_messages(&local, 1, WAIT);
}

#[test]
fn a_large_message_shows_progress_on_a_terminal() {
    // script(1) gives outbox a terminal for stdin, stdout and stderr.
    if !std::path::Path::new("/usr/bin/script").exists() {
        panic!("/usr/bin/script (bsdutils) is needed for this test");
    }
    let pf = Postfix::shared();
    let env = TestEnv::new();
    let body = env.write_file("big.txt", big_body(3 << 20));
    let run = |local: &str, extra: &str| {
        let bin = env!("CARGO_BIN_EXE_outbox");
        env.command("/usr/bin/script")
            .args([
                "-qec",
                &format!(
                    "{bin} --server {} -f {SENDER} --body-file {} {extra} {}",
                    pf.addr(),
                    body.display(),
                    rcpt(local)
                ),
                "/dev/null",
            ])
            .run()
    };
    for extra in ["", "--no-chunking"] {
        let local = unique_name("progress-tty");
        let out = run(&local, extra);
        out.assert_success();
        let screen = out.stdout_str();
        assert!(
            screen.contains("sending") && screen.contains("MiB"),
            "no progress line ({extra}):\n{}",
            out.report()
        );
        pf.wait_for_messages(&local, 1, WAIT);
    }
    // A small message has none.
    let local = unique_name("progress-small");
    let bin = env!("CARGO_BIN_EXE_outbox");
    let out = env
        .command("/usr/bin/script")
        .args([
            "-qec",
            &format!(
                "{bin} --server {} -f {SENDER} --body small {}",
                pf.addr(),
                rcpt(&local)
            ),
            "/dev/null",
        ])
        .run();
    out.assert_success();
    assert!(!out.stdout_str().contains("sending"), "{}", out.report());
}
