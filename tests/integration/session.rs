//! `outbox session`: typed at a pseudo-terminal as a person would (line editing,
//! Ctrl-D, the password asked without echo), and driven by a script on standard
//! input; against aiosmtpd (STARTTLS, AUTH), the suite's Postfix (delivery to its
//! Maildir) and a scripted peer (exactly what was sent, 421, a lost connection).

use std::time::Duration;

use crate::support::aiosmtpd::SmtpServer;
use crate::support::fake::{FakeServer, Step, send};
use crate::support::postfix::{Postfix, rcpt, strip_trace_headers};
use crate::support::pty::{CTRL_C, CTRL_D, CTRL_V, ENTER, Terminal};
use crate::support::tls::{by_name, ca};
use crate::support::{Cmd, TestEnv, crlf_to_lf, unique_name};

const WAIT: Duration = Duration::from_secs(30);
const PROMPT: &str = "smtp> ";
const DATA_PROMPT: &str = "data> ";
/// A password that appears nowhere else, to search the screen for.
const PASSWORD: &str = "Typed-s3cret-7q";
/// A message with a lone "." line and one that begins with a dot, as typed.
const MESSAGE: [&str; 6] = [
    "Subject: typed in a session",
    "",
    "first line",
    ".",
    ".second line, after a dot",
    "last line",
];

fn session_cmd(env: &TestEnv, server: &str) -> Cmd {
    let mut cmd = env.cmd();
    cmd.args(["session", "--timeout", "20", "--tls-ca-file", &ca(), server]);
    cmd
}

/// Types `line` at the prompt and waits for the next prompt: what was shown between.
#[track_caller]
fn typed(term: &mut Terminal, line: &str) -> String {
    term.line(line);
    term.prompt(PROMPT)
}

/// Types the message after a 354, line by line, and ends it with Ctrl-D.
#[track_caller]
fn type_message(term: &mut Terminal, lines: &[&str]) -> String {
    for line in lines {
        term.line(line);
        term.prompt(DATA_PROMPT);
    }
    term.send(CTRL_D);
    term.prompt(PROMPT)
}

#[track_caller]
fn assert_shows(shown: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            shown.contains(needle),
            "{needle:?} not shown; the terminal showed:\n{shown}"
        );
    }
}

#[test]
fn a_typed_session_upgrades_authenticates_and_sends_a_dot_line_intact() {
    let server = SmtpServer::builder()
        .starttls()
        .auth(&["PLAIN", "LOGIN"])
        .user("alice", PASSWORD)
        .start();
    let env = TestEnv::new();
    let mut term = Terminal::spawn(&session_cmd(&env, &by_name(&server.addr())));
    let opening = term.prompt(PROMPT);
    // To loopback outbox stays in clear unless told: the person types starttls.
    assert_shows(&opening, &["< 220 mx.outbox.test", "> EHLO ", "< 250"]);
    assert!(!opening.contains("> STARTTLS"), "{opening}");

    let shown = typed(&mut term, "EHLO person.example.test");
    assert_shows(&shown, &["< 250-mx.outbox.test", "< 250-STARTTLS"]);

    let shown = typed(&mut term, "StartTLS");
    assert_shows(
        &shown,
        &[
            "> STARTTLS",
            "< 220",
            "* TLS: TLSv1.",
            "cipher ",
            "< 250-AUTH PLAIN LOGIN",
        ],
    );
    let shown = typed(&mut term, "starttls");
    assert_shows(&shown, &["under TLS already"]);

    term.line("auth plain alice");
    term.expect("Password for alice at ");
    term.expect("(not shown; Ctrl-C cancels): ");
    term.line(PASSWORD);
    let shown = term.prompt(PROMPT);
    assert_shows(&shown, &["> AUTH PLAIN <redacted>", "< 235 2.7.0"]);

    typed(&mut term, "MAIL FROM:<someone@example.test>");
    typed(&mut term, "RCPT TO:<bob@example.test>");
    term.line("DATA");
    let shown = term.prompt(DATA_PROMPT);
    assert_shows(&shown, &["< 354", "Ctrl-D on an empty line ends it"]);
    let shown = type_message(&mut term, &MESSAGE);
    assert_shows(&shown, &["> [message: ", "> .", "< 250 2.0.0 OK: queued"]);

    // Ctrl-D at the prompt: QUIT, its 221 shown, exit 0.
    term.send(CTRL_D);
    let (code, seen) = term.wait();
    assert_eq!(code, 0, "{seen}");
    assert_shows(&seen, &["> QUIT", "< 221"]);
    assert!(!seen.contains(PASSWORD), "the password was shown:\n{seen}");
    assert!(!server.log().contains(PASSWORD), "{}", server.log());
    // Nor as it went on the wire, in base64 (RFC 4616).
    let plain = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("\0alice\0{PASSWORD}"),
    );
    assert!(
        !seen.contains(&plain),
        "the AUTH response was shown:\n{seen}"
    );

    let got = server.wait_for_messages(1, WAIT);
    let typed_bytes: String = MESSAGE.iter().map(|l| format!("{l}\r\n")).collect();
    assert_eq!(String::from_utf8_lossy(&got[0].data), typed_bytes);
    assert_eq!(got[0].auth_user.as_deref(), Some("alice"));
    assert_eq!(got[0].mechanism.as_deref(), Some("PLAIN"));
    assert!(got[0].tls);
}

#[test]
fn a_typed_message_reaches_postfix_with_its_dot_line() {
    let pf = Postfix::shared_tls();
    let local = unique_name("session");
    let env = TestEnv::new();
    let mut cmd = session_cmd(&env, &by_name(&pf.addr()));
    cmd.args(["--tls", "starttls"]);
    let mut term = Terminal::spawn(&cmd);
    // STARTTLS as configured, before the first prompt.
    let opening = term.prompt(PROMPT);
    assert_shows(&opening, &["> STARTTLS", "* TLS: TLSv1."]);
    typed(&mut term, "MAIL FROM:<someone@example.test>");
    typed(&mut term, &format!("RCPT TO:<{}>", rcpt(&local)));
    term.line("DATA");
    term.prompt(DATA_PROMPT);
    // A line given up with Ctrl-C is not part of the message.
    term.send("not this line");
    term.send(CTRL_C);
    term.prompt(DATA_PROMPT);
    let shown = type_message(&mut term, &MESSAGE);
    assert_shows(&shown, &["< 250 2.0.0 Ok: queued as "]);
    term.line("quit");
    let (code, seen) = term.wait();
    assert_eq!(code, 0, "{seen}");
    assert_shows(&seen, &["< 221 2.0.0 Bye"]);
    // After the typed quit's 221, outbox sends no QUIT of its own.
    assert!(!seen.contains("> QUIT"), "{seen}");

    let got = pf.wait_for_messages(&local, 1, WAIT);
    let body = crlf_to_lf(&strip_trace_headers(&got[0]));
    let typed_lines: String = MESSAGE.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&body), typed_lines);
}

/// `outbox session` to the scripted peer at `addr`, with an EHLO name of its own.
fn scripted(env: &TestEnv, addr: &str) -> Cmd {
    let mut cmd = env.cmd();
    cmd.args([
        "session",
        "--timeout",
        "10",
        "--ehlo-name",
        "client.example.test",
        addr,
    ]);
    cmd
}

/// A scripted server that answers EHLO, one more command and QUIT, recording all.
fn two_commands() -> FakeServer {
    greeted(
        "250-fake\r\n250 8BITMIME\r\n",
        vec![
            send("250 2.0.0 Ok\r\n"),
            Step::Line,
            send("221 2.0.0 Bye\r\n"),
            Step::Close,
        ],
    )
}

#[test]
fn a_cr_typed_through_literal_next_is_refused_with_nothing_sent() {
    let server = two_commands();
    let env = TestEnv::new();
    let mut term = Terminal::spawn(&scripted(&env, server.addr()));
    term.prompt(PROMPT);
    // NOOP, a CR typed as a character of the line (Ctrl-V Ctrl-M), RSET: two commands
    // if the line went as typed.
    term.send(&format!("NOOP{CTRL_V}{ENTER}RSET{ENTER}"));
    let shown = term.prompt(PROMPT);
    assert_shows(&shown, &["nothing was sent"]);
    // BDAT and a STARTTLS with an argument are refused too, before anything is sent.
    assert_shows(&typed(&mut term, "BDAT 4 LAST"), &["type DATA"]);
    assert_shows(&typed(&mut term, "STARTTLS now"), &["takes no argument"]);
    assert_shows(&typed(&mut term, "VRFY postmaster"), &["< 250 2.0.0 Ok"]);
    term.send(CTRL_D);
    let (code, seen) = term.wait();
    assert_eq!(code, 0, "{seen}");
    let received = server.received_string();
    assert!(
        received.starts_with("EHLO ") && received.ends_with("\r\nVRFY postmaster\r\nQUIT\r\n"),
        "{received:?}"
    );
    assert_eq!(received.matches("\r\n").count(), 3, "{received:?}");
}

#[test]
fn a_script_on_standard_input_drives_the_session_and_its_end_sends_quit() {
    let server = greeted(
        "250 fake\r\n",
        vec![
            send("250 2.1.0 Ok\r\n"),
            Step::Line,
            send("354 go on\r\n"),
            Step::Data,
            send("250 2.0.0 queued\r\n"),
            Step::Line,
            send("221 2.0.0 Bye\r\n"),
            Step::Close,
        ],
    );
    let out = scripted(&TestEnv::new(), server.addr())
        .stdin(b"MAIL FROM:<a@example.test>\r\nNOOP\rRSET\nDATA\nSubject: s\n\n.\nend".to_vec())
        .run();
    out.assert_success()
        .assert_stdout_contains("< 354 go on")
        .assert_stdout_contains("outbox ends it with the final \".\"")
        .assert_stdout_contains("< 250 2.0.0 queued")
        .assert_stdout_contains("> QUIT")
        .assert_stderr_contains("nothing was sent");
    assert_eq!(
        server.received_string(),
        "EHLO client.example.test\r\nMAIL FROM:<a@example.test>\r\nDATA\r\n\
         Subject: s\r\n\r\n..\r\nend\r\n.\r\nQUIT\r\n"
    );
}

#[test]
fn a_421_ends_the_session_with_75_and_no_quit() {
    let server = greeted(
        "250 fake\r\n",
        vec![
            send("421 4.3.2 going down\r\n"),
            Step::Silence(Duration::from_millis(500)),
            Step::Close,
        ],
    );
    let out = scripted(&TestEnv::new(), server.addr())
        .stdin(b"NOOP\nNOOP\n".to_vec())
        .run();
    out.assert_code(75)
        .assert_stdout_contains("< 421 4.3.2 going down")
        .assert_stderr_contains("closed the session");
    let received = server.received_string();
    assert!(received.ends_with("\r\nNOOP\r\n"), "{received:?}");
}

#[test]
fn a_lost_connection_ends_the_session_with_75() {
    let server = greeted("250 fake\r\n", vec![Step::Close]);
    scripted(&TestEnv::new(), server.addr())
        .stdin(b"NOOP\nNOOP\n".to_vec())
        .run()
        .assert_code(75);
    assert!(server.received_string().ends_with("\r\nNOOP\r\n"));
}

#[test]
fn auth_needs_a_terminal_to_ask_on_and_says_what_to_use_instead() {
    let server = two_commands();
    // setsid(1): a session of its own, with no controlling terminal to ask on.
    let env = TestEnv::new();
    let out = env
        .command("setsid")
        .args([
            "-w",
            env!("CARGO_BIN_EXE_outbox"),
            "session",
            "--timeout",
            "10",
        ])
        .args(["--ehlo-name", "client.example.test", server.addr()])
        .stdin(b"auth plain alice\nVRFY postmaster\n".to_vec())
        .run();
    out.assert_success()
        .assert_stderr_contains("--password-command");
    let received = server.received_string();
    assert!(!received.contains("AUTH"), "{received:?}");
}

/// Lines that answer a 334 go as AUTH responses: sent as typed, shown `<redacted>`.
#[test]
fn the_answers_to_a_challenge_are_sent_but_never_shown() {
    let server = greeted(
        "250-fake\r\n250 AUTH LOGIN\r\n",
        vec![
            send("334 VXNlcm5hbWU6\r\n"),
            Step::Line,
            send("334 UGFzc3dvcmQ6\r\n"),
            Step::Line,
            send("235 2.7.0 ok\r\n"),
            Step::Line,
            send("221 bye\r\n"),
            Step::Close,
        ],
    );
    let out = scripted(&TestEnv::new(), server.addr())
        .stdin(b"AUTH LOGIN\nYWxpY2U=\nc2VjcmV0cGFzcw==\n".to_vec())
        .run();
    out.assert_success().assert_stdout_contains("> <redacted>");
    for secret in ["YWxpY2U=", "c2VjcmV0cGFzcw=="] {
        assert!(!out.stdout_str().contains(secret), "{}", out.report());
        assert!(!out.stderr_str().contains(secret), "{}", out.report());
    }
    assert_eq!(
        server.received_string(),
        "EHLO client.example.test\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0cGFzcw==\r\nQUIT\r\n"
    );
}

/// The end of the input while a 334 waits: `*` cancels the exchange before QUIT,
/// which would otherwise be taken for the answer (RFC 4954 §4).
#[test]
fn an_end_during_a_challenge_cancels_it_before_quit() {
    let server = greeted(
        "250-fake\r\n250 AUTH LOGIN\r\n",
        vec![
            send("334 VXNlcm5hbWU6\r\n"),
            Step::Line,
            send("501 5.7.0 cancelled\r\n"),
            Step::Line,
            send("221 bye\r\n"),
            Step::Close,
        ],
    );
    let out = scripted(&TestEnv::new(), server.addr())
        .stdin(b"AUTH LOGIN\n".to_vec())
        .run();
    out.assert_success();
    assert_eq!(
        server.received_string(),
        "EHLO client.example.test\r\nAUTH LOGIN\r\n*\r\nQUIT\r\n"
    );
}

/// After a 250 to TURN the server would become the client: the session ends, with
/// nothing more sent (RFC 5321 Appendix F.1).
#[test]
fn a_250_to_turn_ends_the_session_without_quit() {
    let server = greeted(
        "250 fake\r\n",
        vec![
            send("250 OK, turning around\r\n"),
            Step::Silence(Duration::from_millis(500)),
            Step::Close,
        ],
    );
    let out = scripted(&TestEnv::new(), server.addr())
        .stdin(b"TURN\nNOOP\n".to_vec())
        .run();
    out.assert_success()
        .assert_stderr_contains("the session ends");
    assert_eq!(
        server.received_string(),
        "EHLO client.example.test\r\nTURN\r\n"
    );
}

/// A scripted peer that greets, answers EHLO with `ehlo`, then plays `then`.
fn greeted(ehlo: &str, then: Vec<Step>) -> FakeServer {
    let mut script = vec![
        send("220 fake ESMTP\r\n"),
        Step::Line,
        send(ehlo),
        Step::Line,
    ];
    script.extend(then);
    FakeServer::start(script)
}
