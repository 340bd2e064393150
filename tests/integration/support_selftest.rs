//! Tests of the test harness in `support` (run with `/bin/sh` instead of
//! `outbox`, so they do not depend on the binary's behaviour).

use crate::support::postfix::strip_trace_headers;
use crate::support::smtp::dot_stuff;
use crate::support::{TestEnv, crlf_to_lf, outbox};
use std::time::{Duration, Instant};

fn sh(env: &TestEnv, script: &str) -> crate::support::Cmd {
    let mut c = env.command("/bin/sh");
    c.args(["-c", script, "sh"]);
    c
}

#[test]
fn commands_run_in_an_isolated_environment() {
    let env = TestEnv::new();
    let out = sh(&env, "env; echo cwd=$(pwd)")
        .env("OUTBOX_EXPLICIT", "1")
        .run();
    out.assert_success();
    let stdout = out.stdout_str();
    let root = env.root().display().to_string();
    for expected in [
        format!("HOME={root}/home"),
        format!("XDG_CONFIG_HOME={root}/config"),
        format!("XDG_STATE_HOME={root}/state"),
        format!("XDG_CACHE_HOME={root}/cache"),
        "USER=tester".to_string(),
        "OUTBOX_EXPLICIT=1".to_string(),
        format!("cwd={root}"),
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "missing {expected:?}\n{}",
            out.report()
        );
    }
    let mut outbox_vars: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("OUTBOX_"))
        .collect();
    // OUTBOX_LOG keeps the log out of the machine's syslog, OUTBOX_SPOOL the
    // machine's system spool out of the tests.
    let log = format!("OUTBOX_LOG={}", env.log_file().display());
    let spool = format!(
        "OUTBOX_SPOOL={}",
        env.root().join("no-system-spool").display()
    );
    outbox_vars.sort_unstable();
    assert_eq!(
        outbox_vars,
        ["OUTBOX_EXPLICIT=1", log.as_str(), spool.as_str()],
        "{}",
        out.report()
    );
    assert!(env.home().is_dir() && env.config_home().is_dir());
}

#[test]
fn stdin_stdout_stderr_and_exit_code_are_captured() {
    let env = TestEnv::new();
    let out = sh(&env, "cat; echo oops >&2; exit 3")
        .stdin(b"line one\r\nline two\n".to_vec())
        .run();
    out.assert_code(3)
        .assert_failure()
        .assert_stdout_contains("line one\r\nline two\n")
        .assert_stderr_contains("oops");
    assert_eq!(out.stdout, b"line one\r\nline two\n");
    assert!(out.cmdline.contains("/bin/sh -c"), "{}", out.cmdline);
}

#[test]
#[should_panic(expected = "expected exit code 0")]
fn assert_code_panics_with_a_report() {
    let env = TestEnv::new();
    sh(&env, "echo visible-in-report; exit 1")
        .run()
        .assert_code(0);
}

#[test]
fn runaway_commands_are_killed_after_the_timeout() {
    let env = TestEnv::new();
    let started = Instant::now();
    let out = sh(&env, "exec sleep 30")
        .timeout(Duration::from_millis(300))
        .run();
    assert!(out.timed_out, "{}", out.report());
    assert_eq!(out.status, None);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn environments_are_removed_when_dropped() {
    let cmd = outbox();
    let root = cmd.test_env().root().to_path_buf();
    assert!(root.is_dir());
    drop(cmd);
    assert!(!root.exists(), "{} still exists", root.display());
}

#[test]
fn message_helpers() {
    assert_eq!(crlf_to_lf(b"a\r\nb\rc\n\r\n"), b"a\nb\rc\n\n");
    assert_eq!(dot_stuff(b".a\r\nb.\r\n..c\r\n"), b"..a\r\nb.\r\n...c\r\n");
    let delivered = b"Return-Path: <s@x.test>\n\
        X-Original-To: r@example.test\n\
        Delivered-To: r@example.test\n\
        Received: from a\n\tby b;\n  date\n\
        Subject: hi\n\
        Received: kept, not leading\n\
        \n\
        Received: body\n";
    assert_eq!(
        strip_trace_headers(delivered),
        b"Subject: hi\nReceived: kept, not leading\n\nReceived: body\n"
    );
    assert_eq!(
        strip_trace_headers(b"Subject: x\n\nb\n"),
        b"Subject: x\n\nb\n"
    );
}
