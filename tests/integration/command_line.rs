//! The command line as a new user meets it: help for every face and command, words
//! that name commands never taken for recipients, an empty body refused, and errors
//! that say what to change.

use std::os::unix::fs::symlink;

use crate::support::postfix::{Postfix, rcpt};
use crate::support::{Cmd, TestEnv, free_port, unique_name};

/// `outbox ARGS` in `env`, with a configuration whose catch-all alias would take any
/// local name, and a server that is not there: what is taken for a recipient would
/// be queued or fail with 75, never 0 or 64.
fn with_catch_all(env: &TestEnv, args: &[&str]) -> Cmd {
    env.configure(
        &format!("127.0.0.1:{}", free_port()),
        5,
        "\n[aliases]\ndefault = \"catchall@example.test\"\n",
    );
    let mut cmd = env.configured_cmd();
    cmd.args(args);
    cmd
}

// --- help ------------------------------------------------------------------------------

#[test]
fn top_level_help_lists_the_faces_and_commands() {
    for flag in ["--help", "-h"] {
        let out = with_catch_all(&TestEnv::new(), &[flag]).run();
        out.assert_code(0);
        let text = out.stdout_str();
        for line in [
            "outbox [OPTIONS] RECIPIENT...",
            "outbox sendmail",
            "outbox queue list",
            "outbox queue flush",
            "outbox queue remove",
            "outbox help",
            "--subject",
        ] {
            assert!(text.contains(line), "{flag}: no {line:?} in\n{text}");
        }
    }
}

#[test]
fn outbox_help_prints_help_instead_of_mailing_help() {
    let env = TestEnv::new();
    let out = with_catch_all(&env, &["help"]).run();
    out.assert_code(0);
    assert!(
        out.stdout_str().contains("outbox sendmail"),
        "{}",
        out.report()
    );
    assert!(!env.root().join("queue").exists(), "something was queued");
    let sendmail = with_catch_all(&env, &["help", "sendmail"]).run();
    sendmail.assert_code(0);
    assert!(
        sendmail.stdout_str().contains("-t "),
        "{}",
        sendmail.report()
    );
    let queue = with_catch_all(&env, &["help", "queue"]).run();
    queue.assert_code(0);
    assert!(queue.stdout_str().contains("flush"), "{}", queue.report());
    with_catch_all(&env, &["help", "nonsense"])
        .run()
        .assert_code(64)
        .assert_stderr_contains("unknown command \"nonsense\"");
}

#[test]
fn sendmail_help_is_help_not_an_unknown_option() {
    let env = TestEnv::new();
    let out = with_catch_all(&env, &["sendmail", "--help"]).run();
    out.assert_code(0);
    let text = out.stdout_str();
    for option in ["-t ", "-i, -oi", "-f ADDR", "-F NAME", "-q "] {
        assert!(text.contains(option), "no {option:?} in\n{text}");
    }
    // The same through a link named sendmail, as callers run it.
    let link = env.root().join("sendmail");
    symlink(env!("CARGO_BIN_EXE_outbox"), &link).unwrap();
    let mut cmd = env.command(&link);
    cmd.arg("--help");
    let linked = cmd.run();
    linked.assert_code(0);
    assert_eq!(linked.stdout_str(), text);
    // After `--`, it is a recipient's business, as with sendmail: here the catch-all
    // alias takes it, and the message waits in the queue for the dead server.
    let after = with_catch_all(&env, &["sendmail", "-i", "--", "--help"])
        .stdin(b"Subject: x\n\nbody\n".to_vec())
        .run();
    after.assert_code(0);
    assert!(after.stdout.is_empty(), "{}", after.report());
    assert!(env.root().join("queue").exists(), "{}", after.report());
}

#[test]
fn queue_help_is_help() {
    for args in [
        &["queue", "--help"][..],
        &["queue", "-h"],
        &["queue", "flush", "--help"],
    ] {
        let out = with_catch_all(&TestEnv::new(), args).run();
        out.assert_code(0);
        assert!(
            out.stdout_str().contains("Usage: outbox queue"),
            "{}",
            out.report()
        );
    }
}

// --- command words are not recipients --------------------------------------------------

#[test]
fn command_words_are_not_recipients() {
    // A command word among the compose face's recipients, wherever it stands, is refused.
    let env = TestEnv::new();
    with_catch_all(&env, &["-s", "hi", "--body", "x", "root", "Help"])
        .run()
        .assert_code(64)
        .assert_stderr_contains("names an outbox command, not a recipient");
    assert!(!env.root().join("queue").exists());
    // A full address of that name is a recipient like any other.
    with_catch_all(
        &env,
        &[
            "--dry-run",
            "--body",
            "x",
            "-f",
            "a@example.test",
            "help@example.test",
        ],
    )
    .run()
    .assert_code(0)
    .assert_stdout_contains("RCPT TO:<help@example.test>");
}

#[test]
fn an_empty_body_from_a_pipe_is_refused_unless_allowed() {
    let env = TestEnv::new();
    let dry = [
        "--dry-run",
        "-f",
        "a@example.test",
        "-s",
        "x",
        "b@example.test",
    ];
    with_catch_all(&env, &dry)
        .run()
        .assert_code(65)
        .assert_stderr_contains("the body is empty")
        .assert_stderr_contains("--allow-empty");
    let mut allowed = with_catch_all(&env, &dry);
    allowed.arg("--allow-empty").run().assert_code(0);
    // A body given on purpose, or a message with an attachment, is not empty by mistake.
    let mut given = with_catch_all(&env, &dry);
    given.args(["--body", ""]).run().assert_code(0);
    let file = env.write_file("report.csv", "a,b\n");
    let mut attached = with_catch_all(&env, &dry);
    attached.arg("-a").arg(&file).run().assert_code(0);
}

#[test]
fn an_empty_message_to_the_sendmail_face_is_still_sent() {
    // sendmail(1) takes an empty message on standard input; so does Postfix.
    let local = unique_name("empty");
    let env = TestEnv::new();
    env.configure(&Postfix::shared().addr(), 30, "");
    let mut cmd = env.configured_cmd();
    cmd.args([
        "sendmail",
        "-i",
        "-f",
        "someone@example.test",
        &rcpt(&local),
    ]);
    cmd.run().assert_code(0);
    let got = Postfix::shared().wait_for_messages(&local, 1, std::time::Duration::from_secs(30));
    assert_eq!(got.len(), 1);
}

// --- secrets ---------------------------------------------------------------------------

#[test]
fn a_password_of_the_wrong_type_in_the_config_is_not_shown_in_the_error() {
    for value in [
        "123456789",
        "123456789.0",
        "[\"123456789\"]",
        "123456789 x",
        "\"123456789",
    ] {
        let env = TestEnv::new();
        env.write_file(
            "outbox.toml",
            format!("[default]\nuser = \"me\"\npassword = {value}\n"),
        );
        let mut cmd = dry_run_in(&env, &[]);
        cmd.env("OUTBOX_CONFIG", env.root().join("outbox.toml"));
        let out = cmd.run();
        out.assert_code(78).assert_stderr_contains("outbox.toml:3:");
        assert!(!out.stderr_str().contains("12345"), "{}", out.report());
    }
}

// --- clearer errors --------------------------------------------------------------------

/// A dry run from a@example.test to b@example.test with `extra` flags.
fn dry_run(extra: &[&str]) -> Cmd {
    dry_run_in(&TestEnv::new(), extra)
}

/// As [`dry_run`], in `env`.
fn dry_run_in(env: &TestEnv, extra: &[&str]) -> Cmd {
    let mut cmd = env.cmd();
    cmd.args(["--dry-run", "--body", "x", "-f", "a@example.test"])
        .args(extra)
        .arg("b@example.test");
    cmd
}

#[test]
fn port_is_accepted_as_a_flag() {
    let postfix = Postfix::shared();
    let local = unique_name("port-flag");
    let mut cmd = TestEnv::new().cmd();
    cmd.args([
        "--server",
        "127.0.0.1",
        "--port",
        &postfix.port().to_string(),
    ])
    .args([
        "--timeout",
        "30",
        "-f",
        "someone@example.test",
        "--body",
        "x",
    ])
    .arg(rcpt(&local));
    cmd.run().assert_code(0);
    postfix.wait_for_messages(&local, 1, std::time::Duration::from_secs(30));
    dry_run(&["--server", "mx.example.test:25", "--port", "587"])
        .run()
        .assert_code(64)
        .assert_stderr_contains("give one");
}

#[test]
fn timeout_accepts_s_and_m_suffixes() {
    dry_run(&["--timeout", "5s"]).run().assert_code(0);
    dry_run(&["--timeout", "2m"]).run().assert_code(0);
    dry_run(&["--timeout", "5 parsecs"])
        .run()
        .assert_code(64)
        .assert_stderr_contains("30s, 2m");
    let env = TestEnv::new();
    env.write_file("outbox.toml", "[default]\ntimeout = \"90s\"\n");
    let mut cmd = dry_run_in(&env, &[]);
    cmd.env("OUTBOX_CONFIG", env.root().join("outbox.toml"));
    cmd.run().assert_code(0);
}

#[test]
fn a_missing_closing_angle_bracket_is_named() {
    dry_run(&["-c", "Bob <bob@example.test"])
        .run()
        .assert_code(64)
        .assert_stderr_contains("the > that closes <...> is missing");
}

#[test]
fn an_unknown_attachment_option_is_named_not_an_unreadable_file() {
    let out = dry_run(&["-a", "f;type=x;inline"]).run();
    out.assert_code(64)
        .assert_stderr_contains("unknown option \"inline\"");
    assert!(
        !out.stderr_str().contains("cannot read"),
        "{}",
        out.report()
    );
}

#[test]
fn no_server_configured_says_how_to_name_one() {
    // No configuration and no --server: outbox tries localhost, where nothing answers.
    let mut cmd = TestEnv::new().cmd();
    cmd.args(["--port", &free_port().to_string(), "--timeout", "5"])
        .args(["-f", "a@example.test", "--body", "x", "b@example.test"]);
    cmd.run()
        .assert_code(75)
        .assert_stderr_contains("no server is configured")
        .assert_stderr_contains("--server")
        .assert_stderr_contains("config.toml");
}

#[test]
fn authentication_required_hints_user() {
    let server = crate::support::aiosmtpd::SmtpServer::builder()
        .auth(&["PLAIN"])
        .auth_required(true)
        .auth_require_tls(false)
        .user("bob", "hunter2-bob")
        .start();
    let mut cmd = TestEnv::new().cmd();
    cmd.args(["--server", &server.addr(), "--timeout", "20"])
        .args(["-f", "a@example.test", "--body", "x", "b@example.test"]);
    cmd.run()
        .assert_code(69)
        .assert_stderr_contains("530")
        .assert_stderr_contains("--user");
}
