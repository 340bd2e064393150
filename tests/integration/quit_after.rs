//! `--quit-after STAGE`: the session goes as far as the stage, says QUIT and sends no
//! message. Against the suite's Postfix (whose log says what each session did), its
//! STARTTLS listener, aiosmtpd with AUTH, and scripted peers for the exact bytes.

use std::time::Duration;

use crate::support::aiosmtpd::{Mode, SmtpServer};
use crate::support::fake::{FakeServer, Step, send};
use crate::support::postfix::{Postfix, rcpt};
use crate::support::tls::TestPki;
use crate::support::{Output, TestEnv, unique_name};

const SENDER: &str = "someone@example.test";

fn outbox(server: &str, args: &[&str]) -> Output {
    let mut cmd = TestEnv::new().cmd();
    cmd.args(["--timeout", "20", "--server", server, "-f", SENDER])
        .args(args)
        .stdin(b"Never sent.\n".to_vec());
    cmd.run()
}

/// The `disconnect` line of the one session that said EHLO to `pf` (its start-up
/// check only connects and quits), with Postfix's count of each command.
fn only_session(pf: &Postfix) -> String {
    for _ in 0..100 {
        let log = pf.maillog();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("disconnect from") && l.contains(" ehlo="))
        {
            return line.to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no disconnect after EHLO in\n{}", pf.maillog());
}

#[test]
fn quit_after_rcpt_sends_no_data_to_postfix_and_ends_with_quit() {
    let pf = Postfix::start();
    let local = unique_name("quit-rcpt");
    let out = outbox(&pf.addr(), &["-v", "--quit-after", "rcpt", &rcpt(&local)]);
    out.assert_success()
        .assert_stderr_contains(&format!("> RCPT TO:<{}>", rcpt(&local)))
        .assert_stderr_contains("< 250 2.1.5 Ok")
        .assert_stderr_contains("* stopped after rcpt");
    let dialogue: Vec<String> = out
        .stderr_str()
        .lines()
        .filter(|l| l.starts_with("> "))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        dialogue.last().map(String::as_str),
        Some("> QUIT"),
        "{dialogue:?}"
    );
    assert!(
        !dialogue
            .iter()
            .any(|l| l.contains("DATA") || l.contains("BDAT")),
        "{dialogue:?}"
    );
    // Postfix's own account of the session: MAIL and RCPT, no DATA, and no message.
    let disconnect = only_session(&pf);
    assert!(
        disconnect.contains(" mail=1 rcpt=1 quit=1 commands=4"),
        "{disconnect}"
    );
    assert!(!disconnect.contains("data="), "{disconnect}");
    assert!(!pf.maillog().contains("message-id="), "{}", pf.maillog());
    std::thread::sleep(Duration::from_millis(300));
    assert!(pf.messages_now(&local).is_empty());
}

#[test]
fn quit_after_rcpt_shows_the_550_of_a_refused_recipient() {
    let pf = Postfix::shared();
    let good = rcpt(&unique_name("quit-good"));
    let bad = rcpt(&unique_name("reject-quit"));
    let bad = bad.as_str();
    let out = outbox(&pf.addr(), &["--json", "--quit-after", "rcpt", &good, bad]);
    // As sending would: the message would have gone to the one, not the other.
    out.assert_code(67)
        .assert_stderr_contains("1 of 2 recipients would be refused")
        .assert_stderr_contains("550");
    let report = out.json();
    assert_eq!(report["stopped_after"], "rcpt");
    assert_eq!(report["exit_code"], 67);
    let recipients = report["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 2, "{report}");
    assert_eq!(recipients[0]["accepted"], true);
    assert_eq!(recipients[1]["accepted"], false);
    assert_eq!(recipients[1]["code"], 550);
    assert!(report["reply"].is_null(), "{report}");

    // Every recipient refused: the error lists them, with the same code.
    let alone = outbox(&pf.addr(), &["--quit-after", "rcpt", bad]);
    alone.assert_code(67).assert_stderr_contains("550");
}

#[test]
fn quit_after_data_has_the_354_and_sends_no_message() {
    let pf = Postfix::start();
    let local = unique_name("quit-data");
    let out = outbox(&pf.addr(), &["-v", "--quit-after", "data", &rcpt(&local)]);
    out.assert_success()
        .assert_stderr_contains("> DATA")
        .assert_stderr_contains("< 354")
        .assert_stderr_contains("closing without QUIT");
    assert!(!out.stderr_str().contains("> QUIT"), "{}", out.stderr_str());
    let disconnect = only_session(&pf);
    assert!(disconnect.contains("data=0/1"), "{disconnect}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(pf.messages_now(&local).is_empty());
}

#[test]
fn quit_after_tls_goes_through_starttls_and_ehlo_again() {
    let pf = Postfix::shared_tls();
    let port = pf.addr().rsplit(':').next().unwrap_or_default().to_owned();
    let ca = TestPki::shared().ca_cert().display().to_string();
    let out = outbox(
        &format!("localhost:{port}"),
        &[
            "-v",
            "--json",
            "--tls",
            "starttls",
            "--tls-ca-file",
            &ca,
            "--quit-after",
            "tls",
            "b@example.test",
        ],
    );
    out.assert_success();
    let sent: Vec<String> = out
        .stderr_str()
        .lines()
        .filter(|l| l.starts_with("> "))
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        sent,
        ["EHLO", "STARTTLS", "EHLO", "QUIT"],
        "{}",
        out.stderr_str()
    );
    let report = out.json();
    assert_eq!(report["tls"]["started"], "starttls");
    assert_eq!(report["stopped_after"], "tls");
}

#[test]
fn quit_after_auth_authenticates_and_goes_no_further() {
    let server = SmtpServer::builder()
        .mode(Mode::StartTls)
        .auth(&["PLAIN"])
        .user("alice", "s3cret-alice")
        .start();
    let ca = TestPki::shared().ca_cert().display().to_string();
    let mut cmd = TestEnv::new().cmd();
    cmd.args([
        "--timeout",
        "20",
        "--server",
        &format!("localhost:{}", server.port()),
    ])
    .args(["--tls", "starttls", "--tls-ca-file", &ca, "--user", "alice"])
    .args(["-v", "--quit-after", "auth", "-f", SENDER, "b@example.test"])
    .env("OUTBOX_PASSWORD", "s3cret-alice")
    .stdin(b"Never sent.\n".to_vec());
    let out = cmd.run();
    out.assert_success()
        .assert_stderr_contains("> AUTH PLAIN <redacted>")
        .assert_stderr_contains("< 235");
    assert!(
        !out.stderr_str().contains("MAIL FROM"),
        "{}",
        out.stderr_str()
    );
    assert_eq!(server.auth_attempts().len(), 1);
    assert!(server.messages().is_empty());
}

/// The exact bytes: nothing at all after `connect` (not even QUIT, which may not
/// come before the greeting), QUIT alone after the greeting, EHLO and QUIT after
/// `ehlo`, MAIL and QUIT after `mail`.
#[test]
fn each_early_stage_stops_with_exactly_the_commands_before_it() {
    let greeting = || send("220 fake ESMTP\r\n");
    // SIZE offered: MAIL carries the size the message would have.
    let ehlo = || send("250-fake\r\n250 SIZE 100000\r\n");
    let bye = || send("221 bye\r\n");
    let cases: Vec<(&str, Vec<Step>, &str)> = vec![
        (
            "connect",
            // Whatever the client sends before it closes is read (and recorded).
            vec![Step::Line, Step::Close],
            "",
        ),
        (
            "greeting",
            vec![greeting(), Step::Line, bye(), Step::Close],
            "QUIT\r\n",
        ),
        (
            "ehlo",
            vec![
                greeting(),
                Step::Line,
                ehlo(),
                Step::Line,
                bye(),
                Step::Close,
            ],
            "EHLO client.example.test\r\nQUIT\r\n",
        ),
        (
            "mail",
            vec![
                greeting(),
                Step::Line,
                ehlo(),
                Step::Line,
                send("250 ok\r\n"),
                Step::Line,
                bye(),
                Step::Close,
            ],
            "EHLO client.example.test\r\nMAIL FROM:<someone@example.test> SIZE=#\r\nQUIT\r\n",
        ),
    ];
    for (stage, script, expected) in cases {
        let peer = FakeServer::start(script);
        let out = outbox(
            peer.addr(),
            &[
                "--ehlo-name",
                "client.example.test",
                "--quit-after",
                stage,
                "b@example.test",
            ],
        );
        out.assert_success();
        // The message's size depends on the date in its header: `#` stands for it.
        let got = peer.received_string();
        let got = match got.split_once(" SIZE=") {
            Some((head, rest)) => {
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                format!("{head} SIZE=#{}", &rest[digits..])
            }
            None => got,
        };
        assert_eq!(got, expected, "{stage}");
    }
}

#[test]
fn a_stage_that_does_not_exist_and_quit_after_with_queue_are_usage_errors() {
    outbox(
        "127.0.0.1:9",
        &["--quit-after", "message", "b@example.test"],
    )
    .assert_code(64);
    outbox(
        "127.0.0.1:9",
        &["--quit-after", "rcpt", "--queue", "b@example.test"],
    )
    .assert_code(64);
    outbox(
        "127.0.0.1:9",
        &["--quit-after", "rcpt", "--dry-run", "b@example.test"],
    )
    .assert_code(64);
}
