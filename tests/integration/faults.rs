//! A scripted fault server against the binary: the end of a session, replies nobody
//! asked for, a temporary refusal of STARTTLS, and waits that `--timeout` must bound
//! (a peer that stops reading, one that reads a drip at a time, silence after the dot).
//! Each fault through the compose face, and where queueing applies through `--queue`,
//! the sendmail face and `queue flush`: nothing refused may be reported delivered, and
//! nothing may be lost.

use std::time::{Duration, Instant};

use crate::support::fake::{FakeServer, Step, send};
use crate::support::{Cmd, Output, TestEnv, free_port};

const GREETING: &str = "220 fake.example.test ESMTP\r\n";
const EHLO_OK: &str = "250-fake.example.test\r\n250 8BITMIME\r\n";
const EHLO_PIPELINING: &str = "250-fake.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
const EHLO_CHUNKING: &str = "250-fake.example.test\r\n250-CHUNKING\r\n250 8BITMIME\r\n";
/// The `--timeout` of the runs that time a fault.
const TIMEOUT: u64 = 3;
/// What a stage whose time is up may take beyond `--timeout`.
const MARGIN: Duration = Duration::from_secs(2);

/// One user: a configuration file and a queue of their own.
struct User {
    env: TestEnv,
}

impl User {
    fn new(server: &str) -> User {
        let user = User {
            env: TestEnv::new(),
        };
        user.configure(server);
        user
    }

    fn configure(&self, server: &str) {
        self.env.configure(server, 10, "");
    }

    fn outbox(&self) -> Cmd {
        self.env.configured_cmd()
    }

    /// The compose face: a short message from a@ to `to`, with `extra` flags.
    fn compose(&self, to: &str, extra: &[&str]) -> Output {
        let mut cmd = self.outbox();
        cmd.args(["-f", "a@example.test", "--body", "hello"])
            .args(extra)
            .arg(to);
        cmd.run()
    }

    fn sendmail(&self, to: &str, subject: &str) -> Output {
        let mut cmd = self.outbox();
        cmd.args(["sendmail", "-i", "-f", "a@example.test", to])
            .stdin(format!("Subject: {subject}\n\nhello\n"));
        cmd.run()
    }

    fn queue(&self, args: &[&str]) -> Output {
        let mut cmd = self.outbox();
        cmd.arg("queue").args(args);
        cmd.run()
    }

    /// `queue list` (or `queue list --failed`), which must succeed.
    #[track_caller]
    fn listing(&self, failed: bool) -> String {
        let out = match failed {
            true => self.queue(&["list", "--failed"]),
            false => self.queue(&["list"]),
        };
        out.assert_success();
        out.stdout_str()
    }
}

/// The dialogue of a lock-step server up to its 354 (sent with `after_354`), the
/// message read, then `end` and whatever the client says until it closes.
fn up_to_354(ehlo: &str, after_354: &str, end: &str) -> Vec<Step> {
    vec![
        send(GREETING),
        Step::Line,
        send(ehlo),
        Step::Line,
        send("250 2.1.0 ok\r\n"),
        Step::Line,
        send("250 2.1.5 ok\r\n"),
        Step::Line,
        send(&format!("354 go ahead\r\n{after_354}")),
        Step::Data,
        send(end),
        Step::Line,
    ]
}

/// The dialogue of a pipelining server up to its 354 (sent with `after_354`), MAIL,
/// RCPT and DATA read in one go, and the message read.
fn pipelined_up_to_354(after_354: &str) -> Vec<Step> {
    vec![
        send(GREETING),
        Step::Line,
        send(EHLO_PIPELINING),
        Step::Line,
        Step::Line,
        Step::Line,
        send(&format!(
            "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n{after_354}"
        )),
        Step::Data,
    ]
}

#[test]
fn a_held_back_reply_to_quit_does_not_delay_the_client() {
    // The server never says 221 (Exim holds it until the client closes). Waiting for
    // it would take the whole --timeout, 30 s; the client closes after QUIT instead.
    for verbose in [false, true] {
        let mut script = up_to_354(EHLO_OK, "", "250 2.0.0 queued as H1\r\n");
        script.push(Step::Line);
        let server = FakeServer::start(script);
        let started = Instant::now();
        let mut cmd = crate::support::outbox();
        cmd.args(["--server", server.addr(), "--timeout", "30"])
            .args(["-f", "a@example.test", "--body", "hello"]);
        if verbose {
            cmd.arg("-v");
        }
        let out = cmd.arg("b@example.test").run();
        let took = started.elapsed();
        out.assert_success();
        if verbose {
            out.assert_stderr_contains("> QUIT")
                .assert_stderr_contains("no reply to QUIT within 300 ms");
        }
        assert!(
            took < Duration::from_secs(15),
            "verbose {verbose}: took {took:?}"
        );
        let got = server.received_string();
        assert!(got.ends_with(".\r\nQUIT\r\n"), "{got:?}");
    }
}

/// A stray 250 after the 354, and the real verdict, 554, after the dot.
fn stray_after_354() -> Vec<Step> {
    up_to_354(
        EHLO_OK,
        "250 2.0.0 stray\r\n",
        "554 5.7.1 message refused\r\n",
    )
}

/// Runs the compose face against `script` with `extra` and `--queue`: the message is
/// kept for b@example.test, exit 0. The user and the queue's listing, for more checks.
#[track_caller]
fn assert_kept_with_queue(script: Vec<Step>, extra: &[&str]) -> (User, String) {
    let server = FakeServer::start(script);
    let user = User::new(server.addr());
    let mut args = extra.to_vec();
    args.push("--queue");
    user.compose("b@example.test", &args)
        .assert_success()
        .assert_stderr_contains("queued as");
    let listing = user.listing(false);
    assert!(listing.contains("b@example.test"), "{listing}");
    (user, listing)
}

#[track_caller]
fn assert_out_of_step(out: &Output) {
    out.assert_code(76)
        .assert_stderr_contains("the server sent data before the message was sent");
    if out.stderr_str().contains("accepted") {
        out.fail("a refused message must not be reported accepted");
    }
}

#[test]
fn a_stray_reply_after_354_is_out_of_step_76_not_delivered() {
    let server = FakeServer::start(stray_after_354());
    let user = User::new(server.addr());
    assert_out_of_step(&user.compose("b@example.test", &[]));
    let got = server.received_string();
    assert!(!got.contains("hello"), "the message went: {got:?}");
}

#[test]
fn a_stray_reply_before_bdat_is_out_of_step_76_not_delivered() {
    let server = FakeServer::start(vec![
        send(GREETING),
        Step::Line,
        send(EHLO_CHUNKING),
        Step::Line,
        send("250 2.1.0 ok\r\n"),
        Step::Line,
        send("250 2.1.5 ok\r\n250 2.0.0 stray\r\n"),
        Step::Line,
        send("554 5.7.1 message refused\r\n"),
        Step::Line,
    ]);
    let user = User::new(server.addr());
    let out = user.compose("b@example.test", &[]);
    out.assert_code(76)
        .assert_stderr_contains("the server sent data before BDAT was sent");
    assert!(!server.received_string().contains("BDAT"));
}

/// Over PIPELINING and CHUNKING the transaction and QUIT leave in one write: a stray
/// `250` among the replies was taken for the message's, and the `554` after it went
/// unread: exit 0 for a refused message. Now 76, and with `--queue` the message stays.
#[test]
fn a_stray_reply_in_a_pipelined_bdat_transaction_is_76_and_kept() {
    let script = || {
        vec![
            send(GREETING),
            Step::Line,
            send("250-fake.example.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"),
            // Everything the client sends arrives; then every reply in one write.
            Step::Silence(Duration::from_millis(300)),
            send(
                "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 stray\r\n554 5.7.1 message refused\r\n221 bye\r\n",
            ),
            Step::Silence(Duration::from_millis(300)),
        ]
    };
    let server = FakeServer::start(script());
    let user = User::new(server.addr());
    user.compose("b@example.test", &[])
        .assert_code(76)
        .assert_stderr_contains("554 5.7.1 message refused");
    assert!(server.received_string().contains("BDAT"));

    assert_kept_with_queue(script(), &[]);
}

#[test]
fn a_stray_reply_keeps_the_message_in_the_queue() {
    // The compose face with --queue, and the sendmail face: kept, never lost.
    let (_, listing) = assert_kept_with_queue(stray_after_354(), &[]);
    assert!(listing.contains("sent data before"), "{listing}");

    let server = FakeServer::start(stray_after_354());
    let user = User::new(server.addr());
    user.sendmail("c@example.test", "kept").assert_success();
    let listing = user.listing(false);
    assert!(listing.contains("c@example.test"), "{listing}");
    assert!(user.listing(true).contains("the failed folder is empty"));
}

#[test]
fn a_stray_reply_in_a_flush_does_not_cascade() {
    // Two messages queued while the server is down, then flushed over one pipelined
    // connection whose first 354 comes with a stray 250. Taken for the end of the
    // first message, it would have the first removed as delivered and the second
    // failed with the first one's 554.
    let user = User::new(&format!("127.0.0.1:{}", free_port()));
    user.sendmail("one@example.test", "first").assert_success();
    user.sendmail("two@example.test", "second").assert_success();
    let mut script = pipelined_up_to_354("250 2.0.0 stray\r\n");
    script.extend([
        send("554 5.7.1 refused\r\n"),
        Step::Line,
        Step::Line,
        Step::Line,
        send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
        Step::Data,
        send("250 2.0.0 queued as F2\r\n"),
        Step::Line,
    ]);
    let server = FakeServer::start(script);
    user.configure(server.addr());
    // Deferred entries are no failure of the flush; what matters is that none is
    // counted delivered or failed.
    user.queue(&["flush", "-v"])
        .assert_success()
        .assert_stdout_contains("delivered 0, deferred ")
        .assert_stdout_contains(", failed 0");
    let got = server.received_string();
    assert!(!got.contains("Subject:"), "a message went: {got:?}");
    let listing = user.listing(false);
    for to in ["one@example.test", "two@example.test"] {
        assert!(listing.contains(to), "{to} is no longer queued:\n{listing}");
    }
    let failed = user.listing(true);
    assert!(failed.contains("the failed folder is empty"), "{failed}");
}

#[test]
fn starttls_454_is_temporary_75_and_queued() {
    let script = || {
        vec![
            send(GREETING),
            Step::Line,
            send("250-fake.example.test\r\n250 STARTTLS\r\n"),
            Step::Line,
            send("454 4.7.0 TLS not available due to temporary reason\r\n"),
            Step::Line,
            send("221 bye\r\n"),
        ]
    };
    let server = FakeServer::start(script());
    let user = User::new(server.addr());
    user.compose("b@example.test", &["--tls", "starttls"])
        .assert_code(75)
        .assert_stderr_contains("454 4.7.0 TLS not available");
    let got = server.received_string();
    assert!(!got.contains("MAIL FROM"), "went on in clear: {got:?}");

    let (user, _) = assert_kept_with_queue(script(), &["--tls", "starttls"]);
    assert!(user.listing(true).contains("the failed folder is empty"));
}

#[test]
fn a_silent_greeting_says_once_that_it_is_still_waiting() {
    // At --timeout 3 the line comes after 1.5 s (half the limit; 10 s by default), and
    // the wait goes on to the limit.
    let server = FakeServer::start(vec![Step::Silence(Duration::from_secs(5))]);
    let user = User::new(server.addr());
    let started = Instant::now();
    let out = user.compose("b@example.test", &["--timeout", "3"]);
    let took = started.elapsed();
    out.assert_code(75)
        .assert_stderr_contains("no greeting from")
        .assert_stderr_contains("after 1.5 s; still waiting (up to 3 s)")
        .assert_stderr_contains("--tls implicit");
    assert_eq!(out.stderr_str().matches("still waiting").count(), 1);
    assert!(took >= Duration::from_secs(3), "gave up early: {took:?}");
}

/// A message larger than the socket buffers of both ends (the fake server's kept
/// small): an attachment of 16 MiB goes out as some 22 MB of base64.
fn big_attachment(user: &User) -> String {
    let bytes: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let path = user.env.write_file("big.bin", bytes);
    path.display().to_string()
}

/// Runs the compose face against `script` at `--timeout 3`, with `args` after that
/// (and a big attachment where `big`), and checks that it timed out, 75, within the
/// limit of the fake server's mark (`what` says what the mark stands for).
#[track_caller]
fn assert_times_out_after_mark(script: Vec<Step>, big: bool, args: &[&str], what: &str) {
    let server = match big {
        true => FakeServer::start_with_receive_buffer(script, 4096),
        false => FakeServer::start(script),
    };
    let user = User::new(server.addr());
    let mut all = vec!["--timeout".to_owned(), TIMEOUT.to_string()];
    if big {
        all.extend(["-a".to_owned(), big_attachment(&user)]);
    }
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = user.compose("b@example.test", &all);
    let ended = Instant::now();
    let (_, marks) = server.received_with_marks();
    let mark = *marks.first().expect("the fake server reached its mark");
    let took = ended.saturating_duration_since(mark);
    out.assert_code(75).assert_stderr_contains("timed out");
    assert!(
        took < Duration::from_secs(TIMEOUT) + MARGIN,
        "took {took:?} {what}"
    );
}

/// The dialogue up to the message (354 sent), then the mark and `stall`.
fn stalled_in_the_data(stall: Step) -> Vec<Step> {
    let mut script = up_to_354(EHLO_OK, "", "");
    script.truncate(9);
    script.extend([Step::Mark, stall]);
    script
}

#[test]
fn a_peer_that_stops_reading_during_the_data_ends_within_the_timeout() {
    // Each blocked send used to wait the whole timeout and return a partial count, the
    // rest was written with a fresh wait, then 5 s more for a refusal: 14.5 s at 3.
    assert_times_out_after_mark(
        stalled_in_the_data(Step::Silence(Duration::from_secs(8))),
        true,
        &[],
        "after the peer stopped reading",
    );
}

#[test]
fn a_peer_that_reads_a_drip_at_a_time_ends_within_the_timeout() {
    // 100 bytes every 50 ms: each send takes a little, so a limit per send call never
    // runs out; a block of the message must leave within the limit.
    assert_times_out_after_mark(
        stalled_in_the_data(Step::Drip(
            Duration::from_millis(50),
            Duration::from_secs(8),
        )),
        true,
        &[],
        "after the drip began",
    );
}

#[test]
fn silence_after_the_dot_on_the_pipelined_path_is_one_wait() {
    // QUIT went with the dot. Once the reply to the dot has timed out, the connection
    // is dead: no second full wait for the reply to QUIT (6 s at --timeout 3). The same
    // for a reply that comes a byte at a time and is never whole in time.
    let drip: Vec<Step> = "250 2.0.0 slowly queued\r\n"
        .bytes()
        .flat_map(|b| {
            [
                Step::Send(vec![b]),
                Step::Silence(Duration::from_millis(400)),
            ]
        })
        .collect();
    for after_dot in [vec![Step::Silence(Duration::from_secs(8))], drip] {
        let mut script = pipelined_up_to_354("");
        script.push(Step::Mark);
        script.extend(after_dot);
        assert_times_out_after_mark(script, false, &[], "after the dot");
    }
}

#[test]
fn a_drip_during_the_tls_handshake_ends_within_the_timeout() {
    // A record header, then its body a byte every 300 ms. OpenSSL reads the socket a
    // piece at a time; a limit per read would never run out, and the handshake would
    // take the whole drip (some 20 s) before failing on what it got.
    let mut record = b"\x16\x03\x03\x00\x40".to_vec();
    record.extend([2u8; 64]);
    let mut script = vec![Step::Mark];
    for b in record {
        script.push(Step::Send(vec![b]));
        script.push(Step::Silence(Duration::from_millis(300)));
    }
    assert_times_out_after_mark(script, false, &["--tls", "implicit"], "in the handshake");
}
