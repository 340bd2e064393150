//! Standard error or output that cannot be written (a log on a full disk, a reader
//! that has gone as `| head -1` goes) never changes what a run did or its exit code:
//! a delivered message is exit 0, a refused one 67, a queued one 0, and no panic (101).

use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

use crate::support::postfix::{Postfix, rcpt};
use crate::support::{Cmd, TestEnv, free_port, unique_name};

const WAIT: Duration = Duration::from_secs(30);
const SENDER: &str = "someone@example.test";

/// A place output cannot go, named for messages, and a way to open it.
type Sink = (&'static str, fn() -> Stdio);

/// Where output cannot go.
fn sinks() -> [Sink; 2] {
    [("/dev/full", full), ("a closed pipe", closed_pipe)]
}

/// `/dev/full`: every write fails with ENOSPC.
fn full() -> Stdio {
    let file = File::options()
        .write(true)
        .open("/dev/full")
        .unwrap_or_else(|e| panic!("cannot open /dev/full: {e}"));
    Stdio::from(file)
}

/// A pipe whose reading end is already closed: every write fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap_or_else(|e| panic!("cannot make a pipe: {e}"));
    drop(reader);
    Stdio::from(writer)
}

/// `outbox -v` with a short message from SENDER to `to`, over `server`.
fn verbose_to(env: &TestEnv, server: &str, to: &str, extra: &[&str]) -> Cmd {
    let mut cmd = env.cmd();
    cmd.args(["-v", "--server", server, "--timeout", "30", "-f", SENDER])
        .args(["-s", "unwritable", "--body", "hello"])
        .args(extra)
        .arg(to)
        .env("OUTBOX_QUEUE_DIR", env.root().join("queue"));
    cmd
}

#[test]
fn unwritable_stderr_does_not_change_the_exit_of_a_delivery() {
    let postfix = Postfix::shared();
    for (name, sink) in sinks() {
        let local = unique_name("unwritable");
        let env = TestEnv::new();
        let out =
            verbose_to(&env, &postfix.addr(), &rcpt(&local), &[]).run_with(None, Some(sink()));
        out.assert_code(0);
        assert!(
            !postfix.wait_for_messages(&local, 1, WAIT).is_empty(),
            "{name}"
        );
    }
}

#[test]
fn unwritable_stderr_does_not_change_the_exit_of_a_refusal() {
    let postfix = Postfix::shared();
    for (name, sink) in sinks() {
        let local = unique_name("reject");
        let env = TestEnv::new();
        let out =
            verbose_to(&env, &postfix.addr(), &rcpt(&local), &[]).run_with(None, Some(sink()));
        assert_eq!(out.status, Some(67), "{name}\n{}", out.report());
    }
}

#[test]
fn unwritable_stderr_does_not_change_the_exit_of_a_queued_message() {
    let dead = format!("127.0.0.1:{}", free_port());
    for (name, sink) in sinks() {
        let env = TestEnv::new();
        let out = verbose_to(&env, &dead, "later@example.test", &["--queue"])
            .run_with(None, Some(sink()));
        assert_eq!(out.status, Some(0), "{name}\n{}", out.report());
        // The entry is there, exactly once: a caller told 0 does not send again.
        let mut list = env.cmd();
        list.args(["queue", "list"])
            .env("OUTBOX_QUEUE_DIR", env.root().join("queue"));
        let listed = list.run();
        listed.assert_code(0);
        assert_eq!(
            listed
                .stdout_str()
                .matches("to: later@example.test")
                .count(),
            1,
            "{name}\n{}",
            listed.report()
        );
    }
}

#[test]
fn the_sendmail_face_with_unwritable_stderr_still_queues_and_exits_0() {
    let dead = format!("127.0.0.1:{}", free_port());
    for (name, sink) in sinks() {
        let env = TestEnv::new();
        env.configure(&dead, 5, "");
        let mut cmd = env.configured_cmd();
        cmd.args(["sendmail", "-v", "-i", "-f", SENDER, "later@example.test"])
            .stdin(b"Subject: unwritable\n\nhello\n".to_vec());
        let out = cmd.run_with(None, Some(sink()));
        assert_eq!(out.status, Some(0), "{name}\n{}", out.report());
        let queued = std::fs::read_dir(env.root().join("queue"))
            .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
            .unwrap_or(0);
        assert_eq!(queued, 1, "{name}");
    }
}

#[test]
fn json_and_transcript_to_a_closed_pipe_do_not_change_the_exit() {
    // `outbox -v --json ... 2>&1 | head -0`: both streams are one pipe, gone.
    let postfix = Postfix::shared();
    let local = unique_name("unwritable");
    let env = TestEnv::new();
    let (reader, writer) = std::io::pipe().unwrap_or_else(|e| panic!("cannot make a pipe: {e}"));
    drop(reader);
    let both = writer.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let out = verbose_to(&env, &postfix.addr(), &rcpt(&local), &["--json"])
        .run_with(Some(Stdio::from(writer)), Some(Stdio::from(both)));
    out.assert_code(0);
    assert!(!postfix.wait_for_messages(&local, 1, WAIT).is_empty());
}

#[test]
fn queue_list_to_an_unwritable_stdout_is_74_and_to_a_closed_pipe_0() {
    let env = TestEnv::new();
    let list = || {
        let mut cmd = env.cmd();
        cmd.args(["queue", "list"])
            .env("OUTBOX_QUEUE_DIR", env.root().join("queue"));
        cmd
    };
    list()
        .run_with(Some(full()), None)
        .assert_code(74)
        .assert_stderr_contains("cannot write the listing");
    // A reader that stops early wanted no more: no failure.
    list().run_with(Some(closed_pipe()), None).assert_code(0);
    // Standard error gone as well: still no panic.
    list()
        .run_with(Some(full()), Some(closed_pipe()))
        .assert_code(74);
}
