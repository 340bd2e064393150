//! The sendmail face and the queue, end to end: the built binary run as
//! `outbox sendmail ...` (and through symlinks named `sendmail` and `mailq`)
//! with the exact command lines that cron, PHP, git send-email, mutt and shell
//! scripts use, delivering to a real Postfix; then the queue: messages kept
//! while the server is down, flushed later over one connection, deferred
//! recipients kept, permanent refusals kept in `failed`, concurrent and killed
//! flushes, corrupt entries and removal.
//!
//! Every test has its own [`TestEnv`], with `OUTBOX_CONFIG` pointing at a
//! configuration file it writes and `OUTBOX_QUEUE_DIR` at a queue of its own.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use mail_parser::MessageParser;

use crate::support::postfix::{Postfix, rcpt, strip_trace_headers};
use crate::support::{Cmd, Output, TestEnv, free_port, unique_name};

/// How long to wait for a message to reach the Maildir.
const WAIT: Duration = Duration::from_secs(30);

/// One sendmail user: a test environment with its own configuration file and queue.
struct Face {
    env: TestEnv,
}

impl Face {
    /// `config` is what follows `server = ...` and `timeout = ...` in `[default]`
    /// (more keys, then other tables such as `[aliases]`).
    fn new(server: &str, config: &str) -> Face {
        let face = Face {
            env: TestEnv::new(),
        };
        face.configure(server, config);
        face
    }

    /// (Re)writes the configuration file.
    fn configure(&self, server: &str, config: &str) {
        self.env.configure(server, 30, config);
    }

    fn queue_dir(&self) -> PathBuf {
        self.env.root().join("queue")
    }

    /// `program` in this environment, with the configuration and queue set.
    fn program(&self, program: impl AsRef<std::path::Path>) -> Cmd {
        self.env.configured_command(program)
    }

    fn outbox(&self) -> Cmd {
        self.program(env!("CARGO_BIN_EXE_outbox"))
    }

    /// A symlink `bin/<name>` to the outbox binary, made on first use.
    fn link(&self, name: &str) -> PathBuf {
        let dir = self.env.root().join("bin");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        if fs::symlink_metadata(&path).is_err() {
            symlink(env!("CARGO_BIN_EXE_outbox"), &path).unwrap();
        }
        path
    }

    /// `outbox sendmail ARGS` with `stdin`.
    fn sendmail(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = self.outbox();
        cmd.arg("sendmail").args(args).stdin(stdin.to_vec());
        cmd.run()
    }

    /// `sendmail ARGS` through a symlink named `sendmail`.
    fn sendmail_link(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = self.program(self.link("sendmail"));
        cmd.args(args).stdin(stdin.to_vec());
        cmd.run()
    }

    /// `outbox queue ARGS`.
    fn queue(&self, args: &[&str]) -> Output {
        let mut cmd = self.outbox();
        cmd.arg("queue").args(args);
        cmd.run()
    }

    /// The ids `outbox queue list` shows (readable entries only).
    #[track_caller]
    fn queued_ids(&self) -> Vec<String> {
        let out = self.queue(&["list"]);
        out.assert_success();
        entry_ids(&out.stdout_str())
    }

    /// Asserts that neither the queue nor its `failed` folder holds anything.
    #[track_caller]
    fn assert_nothing_queued(&self) {
        let out = self.queue(&["list"]);
        out.assert_success()
            .assert_stdout_contains("the queue is empty");
        let out = self.queue(&["list", "--failed"]);
        out.assert_success()
            .assert_stdout_contains("the failed folder is empty");
    }
}

/// The ids of the entry lines of a `queue list` (or `mailq`) output.
fn entry_ids(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| !l.starts_with(' ') && l.contains(" bytes  attempts "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

/// The `to:` line of entry `id` in a `queue list` output.
#[track_caller]
fn recipients_of(listing: &str, id: &str) -> String {
    let mut lines = listing.lines().skip_while(|l| !l.starts_with(id));
    lines
        .next()
        .unwrap_or_else(|| panic!("{id} not in:\n{listing}"));
    lines
        .next()
        .and_then(|l| l.trim().strip_prefix("to: "))
        .unwrap_or_else(|| panic!("no to: line for {id} in:\n{listing}"))
        .to_owned()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A delivered message without Postfix's trace headers, split into its header
/// fields (name, unfolded value, in order) and its body (LF line ends).
struct Delivered {
    raw: Vec<u8>,
    head: Vec<u8>,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivered {
    #[track_caller]
    fn of(raw: &[u8]) -> Delivered {
        let raw = strip_trace_headers(raw);
        let at = raw
            .windows(2)
            .position(|w| w == b"\n\n")
            .unwrap_or_else(|| panic!("no end of header in:\n{}", lossy(&raw)));
        let head = raw[..at + 1].to_vec();
        let body = raw[at + 2..].to_vec();
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in lossy(&head).lines() {
            if line.starts_with([' ', '\t']) {
                let last = fields.last_mut().expect("continuation without a field");
                last.1.push_str(line);
            } else {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not a header field: {line:?}"));
                fields.push((name.to_owned(), value.trim_start().to_owned()));
            }
        }
        Delivered {
            raw,
            head,
            fields,
            body,
        }
    }

    fn names(&self) -> Vec<&str> {
        self.fields.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The values of the fields called `name` (case-insensitive).
    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the one field called `name`.
    #[track_caller]
    fn one(&self, name: &str) -> &str {
        match self.all(name).as_slice() {
            [v] => v,
            other => panic!(
                "expected one {name} field, found {}:\n{}",
                other.len(),
                lossy(&self.raw)
            ),
        }
    }

    /// Asserts there is no Bcc field, and that Date and Message-ID are valid.
    #[track_caller]
    fn assert_sane(&self) {
        assert!(
            self.all("Bcc").is_empty() && self.all("Resent-Bcc").is_empty(),
            "a Bcc field was delivered:\n{}",
            lossy(&self.raw)
        );
        let parsed = MessageParser::default().parse(&self.raw).unwrap();
        assert!(
            parsed.date().is_some(),
            "no valid Date:\n{}",
            lossy(&self.raw)
        );
        let id = self.one("Message-ID");
        assert!(
            id.starts_with('<') && id.ends_with('>') && id.contains('@'),
            "bad Message-ID {id:?}"
        );
    }
}

/// The raw headers of `input` (LF line ends), up to the empty line, as lines.
fn head_lines(input: &str) -> Vec<&str> {
    input.lines().take_while(|l| !l.is_empty()).collect()
}

/// The envelope sender Postfix recorded (`Return-Path`).
fn return_path(raw: &[u8]) -> String {
    lossy(raw)
        .lines()
        .find_map(|l| l.strip_prefix("Return-Path: ").map(str::to_owned))
        .unwrap_or_default()
}

/// Waits for the one message to `local` on the shared Postfix.
#[track_caller]
fn one_message(local: &str) -> Vec<u8> {
    Postfix::shared()
        .wait_for_messages(local, 1, WAIT)
        .remove(0)
}

/// An address nobody listens on (connection refused), for queueing.
fn closed_server() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Debian cron (cron 3.0pl1): `sendmail -FCronDaemon -i -B8BITMIME -oem root`, with
/// `root` mapped by an alias. Cron writes From, To, Subject, MIME headers and
/// X-Cron-Env, but no Date or Message-ID.
#[test]
fn debian_cron() {
    let local = unique_name("sm-cron");
    let face = Face::new(
        &Postfix::shared().addr(),
        &format!("[aliases]\nroot = \"{}\"\n", rcpt(&local)),
    );
    let body = "Sauvegarde terminée : 3 fichiers copiés, 0 erreur ✓\n\
                /var/backups/étc.tar.gz  12 Mio\n";
    let input = format!(
        "From: root (Cron Daemon)\n\
         To: root\n\
         Subject: Cron <root@host> /usr/local/bin/backup --quiet\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=UTF-8\n\
         Content-Transfer-Encoding: 8bit\n\
         X-Cron-Env: <SHELL=/bin/sh>\n\
         X-Cron-Env: <HOME=/root>\n\
         X-Cron-Env: <PATH=/usr/bin:/bin>\n\
         X-Cron-Env: <LOGNAME=root>\n\
         \n\
         {body}"
    );
    let out = face.sendmail(
        &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
        input.as_bytes(),
    );
    out.assert_success()
        .assert_stderr_empty()
        .assert_stdout_empty();

    let raw = one_message(&local);
    let msg = Delivered::of(&raw);
    msg.assert_sane();
    // Cron's own fields first, in order, then Date and Message-ID; the bare names of
    // From and To get this host's name (no `from` configured), as the envelope
    // sender does.
    let host = return_path(&raw)
        .strip_prefix("<tester@")
        .and_then(|r| r.strip_suffix('>'))
        .unwrap_or_else(|| panic!("{}", lossy(&raw)))
        .to_owned();
    let from = format!("From: root@{host} (Cron Daemon)");
    let to = format!("To: root@{host}");
    let mut expected: Vec<&str> = head_lines(&input);
    expected[0] = &from;
    expected[1] = &to;
    let head = lossy(&msg.head);
    let got: Vec<&str> = head.lines().collect();
    assert_eq!(&got[..expected.len()], &expected[..], "{head}");
    let names: Vec<&str> = got[expected.len()..]
        .iter()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(names, ["Date", "Message-ID"], "{head}");
    assert_eq!(lossy(&msg.body), body, "the UTF-8 body changed");
    face.assert_nothing_queued();
}

/// PHP's mail(): `sendmail -t -i`, recipients in To, Cc and Bcc. Each gets the
/// message, and no copy shows the Bcc.
#[test]
fn php_mail() {
    let to = unique_name("sm-php-to");
    let cc = unique_name("sm-php-cc");
    let bcc = unique_name("sm-php-bcc");
    let face = Face::new(&Postfix::shared().addr(), "");
    let input = format!(
        "To: Alice Example <{}>\n\
         Subject: Your order #1234\n\
         X-PHP-Originating-Script: 33:order.php\n\
         From: Shop <shop@example.test>\n\
         Cc: {}\n\
         Bcc: Auditor <{}>\n\
         MIME-Version: 1.0\n\
         Content-type: text/html; charset=iso-8859-1\n\
         \n\
         <html><body><p>Thank you for your order.</p>\n\
         .\n\
         <p>Total: 12.00 EUR</p></body></html>\n",
        rcpt(&to),
        rcpt(&cc),
        rcpt(&bcc)
    );
    let out = face.sendmail(&["-t", "-i"], input.as_bytes());
    out.assert_success().assert_stderr_empty();

    for local in [&to, &cc, &bcc] {
        let raw = one_message(local);
        let msg = Delivered::of(&raw);
        msg.assert_sane();
        assert!(
            !lossy(&msg.head).to_ascii_lowercase().contains("auditor"),
            "the Bcc leaked:\n{}",
            lossy(&raw)
        );
        assert_eq!(msg.one("From"), "Shop <shop@example.test>");
        assert_eq!(msg.one("To"), format!("Alice Example <{}>", rcpt(&to)));
        assert_eq!(msg.one("Cc"), rcpt(&cc));
        assert_eq!(msg.one("Subject"), "Your order #1234");
        assert_eq!(
            msg.names(),
            [
                "To",
                "Subject",
                "X-PHP-Originating-Script",
                "From",
                "Cc",
                "MIME-Version",
                "Content-type",
                "Date",
                "Message-ID"
            ]
        );
        // -i: the lone "." is part of the body.
        let body = lossy(&msg.body);
        assert!(body.contains("order.</p>\n.\n<p>Total"), "{body}");
        // No -f: the envelope sender is the user, as with Postfix's sendmail.
        assert!(return_path(&raw).starts_with("<tester@"), "{}", lossy(&raw));
    }
}

/// git send-email: `sendmail -i -f me@example.test a@... b@...`; the message has its
/// own Date and Message-ID and arrives byte for byte.
#[test]
fn git_send_email() {
    let a = unique_name("sm-git-a");
    let b = unique_name("sm-git-b");
    let face = Face::new(&Postfix::shared().addr(), "");
    let input = format!(
        "From: Jane Developer <me@example.test>\n\
         To: {a}\n\
         Cc: {b}\n\
         Subject: [PATCH v2 1/2] queue: fsync the directory after rename\n\
         Date: Tue,  4 Mar 2025 10:15:42 +0100\n\
         Message-ID: <20250304091542.12345-1-me@example.test>\n\
         X-Mailer: git-send-email 2.39.5\n\
         In-Reply-To: <cover.1741079742.git.me@example.test>\n\
         References: <cover.1741079742.git.me@example.test>\n\
         MIME-Version: 1.0\n\
         Content-Transfer-Encoding: 8bit\n\
         \n\
         Without it a crash can lose the rename.\n\
         ..and a line that begins with dots.\n\
         \n\
         Signed-off-by: Jane Développeur <me@example.test>\n\
         ---\n \
         src/queue.rs | 1 +\n \
         1 file changed, 1 insertion(+)\n\
         \n\
         diff --git a/src/queue.rs b/src/queue.rs\n\
         --- a/src/queue.rs\n\
         +++ b/src/queue.rs\n\
         @@ -10,3 +10,4 @@\n \
         fs::rename(&a, &b)?;\n\
         +sync_dir(dir)?;\n \
         Ok(())\n\
         -- \n\
         2.39.5\n\
         \n",
        a = rcpt(&a),
        b = rcpt(&b)
    );
    let out = face.sendmail(
        &["-i", "-f", "me@example.test", &rcpt(&a), &rcpt(&b)],
        input.as_bytes(),
    );
    out.assert_success().assert_stderr_empty();
    for local in [&a, &b] {
        let raw = one_message(local);
        assert_eq!(
            lossy(&strip_trace_headers(&raw)),
            input,
            "not delivered byte for byte"
        );
        assert_eq!(return_path(&raw), "<me@example.test>");
    }
}

/// mutt: `sendmail -oem -oi -- a@...`; mutt writes Date and Message-ID itself.
#[test]
fn mutt() {
    let local = unique_name("sm-mutt");
    let face = Face::new(&Postfix::shared().addr(), "from = \"me@example.test\"\n");
    let input = format!(
        "Date: Wed, 5 Mar 2025 08:01:02 +0000\n\
         From: Me <me@example.test>\n\
         To: {to}\n\
         Subject: Re: lunch\n\
         Message-ID: <Z8gBXk3aT9q@example.test>\n\
         References: <abc@example.test>\n\
         In-Reply-To: <abc@example.test>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=us-ascii\n\
         Content-Disposition: inline\n\
         User-Agent: Mutt/2.2.9 (2022-11-12)\n\
         \n\
         Noon is fine.\n\
         .\n\
         See you.\n",
        to = rcpt(&local)
    );
    let out = face.sendmail(&["-oem", "-oi", "--", &rcpt(&local)], input.as_bytes());
    out.assert_success().assert_stderr_empty();
    let raw = one_message(&local);
    assert_eq!(lossy(&strip_trace_headers(&raw)), input);
    assert_eq!(return_path(&raw), "<me@example.test>");
}

/// A shell script through a symlink named `sendmail`:
/// `printf 'Subject: x\n\nbody\n' | sendmail someone@...`. From is the configured
/// `from`; Date and Message-ID are added.
#[test]
fn shell_script_through_a_symlink() {
    let local = unique_name("sm-script");
    let face = Face::new(
        &Postfix::shared().addr(),
        "from = \"Backup Script <backup@example.test>\"\n",
    );
    let out = face.sendmail_link(&[&rcpt(&local)], b"Subject: x\n\nbody\n");
    out.assert_success()
        .assert_stderr_empty()
        .assert_stdout_empty();
    let raw = one_message(&local);
    let msg = Delivered::of(&raw);
    msg.assert_sane();
    assert_eq!(msg.names(), ["Subject", "Date", "Message-ID", "From"]);
    assert_eq!(msg.one("Subject"), "x");
    let parsed = MessageParser::default().parse(&msg.raw).unwrap();
    let from = parsed.from().and_then(|f| f.first()).unwrap();
    assert_eq!(from.address(), Some("backup@example.test"));
    assert_eq!(from.name(), Some("Backup Script"));
    assert_eq!(msg.body, b"body\n");
    assert_eq!(return_path(&raw), "<backup@example.test>");
    // The Message-ID is in the sender's domain.
    assert!(msg.one("Message-ID").ends_with("@example.test>"));
}

/// `echo hello | sendmail NAME`: input without a header block is all body, and a
/// local name with no alias gets the account's domain.
#[test]
fn echo_to_a_local_name() {
    let local = unique_name("sm-echo");
    let face = Face::new(&Postfix::shared().addr(), "from = \"ops@example.test\"\n");
    let out = face.sendmail(&[&local], b"hello\n");
    out.assert_success().assert_stderr_empty();
    let raw = one_message(&local);
    let msg = Delivered::of(&raw);
    msg.assert_sane();
    assert_eq!(msg.names(), ["Date", "Message-ID", "From"]);
    assert_eq!(msg.one("From"), "<ops@example.test>");
    assert_eq!(msg.body, b"hello\n");

    // -v says how the name was mapped.
    let local2 = unique_name("sm-echo");
    let out = face.sendmail(&["-v", &local2], b"hello again\n");
    out.assert_success()
        .assert_stderr_contains(&format!("sending to {}", rcpt(&local2)));
    assert_eq!(Delivered::of(&one_message(&local2)).body, b"hello again\n");
}

/// Without -i/-oi a line holding only "." ends the input; with -i it is body.
#[test]
fn a_lone_dot_ends_the_input_unless_i() {
    let face = Face::new(&Postfix::shared().addr(), "from = \"me@example.test\"\n");
    let input = b"Subject: dots\n\nline one\n.\nafter the dot\n";

    let without = unique_name("sm-dot");
    face.sendmail(&[&rcpt(&without)], input)
        .assert_success()
        .assert_stderr_empty();
    let msg = Delivered::of(&one_message(&without));
    assert_eq!(lossy(&msg.body), "line one\n");

    let with = unique_name("sm-dot-i");
    face.sendmail(&["-i", &rcpt(&with)], input)
        .assert_success()
        .assert_stderr_empty();
    let msg = Delivered::of(&one_message(&with));
    assert_eq!(lossy(&msg.body), "line one\n.\nafter the dot\n");

    // -oi is the same as -i; CRLF input too.
    let with_oi = unique_name("sm-dot-oi");
    face.sendmail(
        &["-oi", &rcpt(&with_oi)],
        b"Subject: dots\r\n\r\nline one\r\n.\r\nafter the dot\r\n",
    )
    .assert_success();
    let msg = Delivered::of(&one_message(&with_oi));
    assert_eq!(lossy(&msg.body), "line one\n.\nafter the dot\n");
}

/// Bad command lines are 64, unusable messages 65; nothing is sent or queued.
#[test]
fn usage_and_data_errors() {
    let local = unique_name("sm-err");
    let to = rcpt(&local);
    let face = Face::new(&Postfix::shared().addr(), "from = \"me@example.test\"\n");
    let good = b"Subject: fine\n\nbody\n";

    face.sendmail(&["-Z", &to], good)
        .assert_code(64)
        .assert_stderr_contains("-Z");
    face.sendmail(&["--frobnicate", &to], good)
        .assert_code(64)
        .assert_stderr_contains("--frobnicate");
    face.sendmail(&["-bs"], good)
        .assert_code(64)
        .assert_stderr_contains("-bs");
    face.sendmail_link(&["-bs"], good).assert_code(64);

    // 999 octets on line 2 with nowhere to fold them (RFC 5322 §2.1.1 allows 998).
    let long = format!(
        "From: me@example.test\nSubject: {}\n\nbody\n",
        "a".repeat(999)
    );
    face.sendmail(&[&to], long.as_bytes())
        .assert_code(65)
        .assert_stderr_contains("line 2");
    face.sendmail(
        &[&to],
        b"From: me@example.test\nSubject: nul\nX-Bad: a\0b\n\nbody\n",
    )
    .assert_code(65)
    .assert_stderr_contains("line 3");

    face.assert_nothing_queued();
    // None of them reached the server (a later good one does, and is the only one).
    let ok = format!("Subject: {}\n\nbody\n", "b".repeat(989));
    assert_eq!(ok.lines().next().unwrap().len(), 998);
    face.sendmail(&[&to], ok.as_bytes())
        .assert_success()
        .assert_stderr_empty();
    let msg = Delivered::of(&one_message(&local));
    assert_eq!(msg.one("Subject"), "b".repeat(989));
    thread::sleep(Duration::from_millis(500));
    assert_eq!(Postfix::shared().messages_now(&local).len(), 1);
}

/// Lines of the mail log that say an SMTP client connected.
fn connections(pf: &Postfix) -> (usize, usize) {
    let log = pf.maillog();
    let connects = log
        .lines()
        .filter(|l| l.contains(": connect from "))
        .count();
    let disconnects = log
        .lines()
        .filter(|l| l.contains(": disconnect from "))
        .count();
    (connects, disconnects)
}

/// Waits until every connection in the log has its disconnect and nothing changes
/// for a moment; returns the number of connections.
#[track_caller]
fn settled_connections(pf: &Postfix) -> usize {
    let deadline = Instant::now() + WAIT;
    let mut last = connections(pf);
    let mut since = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(100));
        let now = connections(pf);
        if now != last {
            last = now;
            since = Instant::now();
        } else if now.0 == now.1 && since.elapsed() >= Duration::from_millis(500) {
            return now.0;
        }
        assert!(
            Instant::now() < deadline,
            "the mail log does not settle: {last:?}\n{}",
            pf.maillog_tail(40)
        );
    }
}

/// Server down: three messages are queued (exit 0, quietly) and listed by `queue
/// list`, `sendmail -bp` and `mailq`; server up: one flush delivers each exactly once
/// over one connection and empties the queue.
#[test]
fn queued_while_down_then_flushed_over_one_connection() {
    let mut pf = Postfix::builder().start();
    pf.stop();
    let face = Face::new(&pf.addr(), "from = \"me@example.test\"\n");
    let locals: Vec<String> = (0..3).map(|_| unique_name("sm-q")).collect();
    for (i, local) in locals.iter().enumerate() {
        let out = face.sendmail(
            &["-i", &rcpt(local)],
            format!("Subject: queued {i}\n\nmessage {i}\n").as_bytes(),
        );
        out.assert_success()
            .assert_stderr_empty()
            .assert_stdout_empty();
    }

    let list = face.queue(&["list"]);
    list.assert_success();
    let ids = entry_ids(&list.stdout_str());
    assert_eq!(ids.len(), 3, "{}", list.report());
    for (id, local) in ids.iter().zip(&locals) {
        assert_eq!(recipients_of(&list.stdout_str(), id), rcpt(local));
    }
    assert!(
        list.stdout_str().contains("last error:"),
        "{}",
        list.report()
    );
    let bp = face.sendmail(&["-bp"], b"");
    bp.assert_success();
    assert_eq!(entry_ids(&bp.stdout_str()), ids, "{}", bp.report());
    let mailq = face.program(face.link("mailq")).run();
    mailq.assert_success();
    assert_eq!(entry_ids(&mailq.stdout_str()), ids, "{}", mailq.report());

    pf.start_again();
    let before = settled_connections(&pf);
    let flush = face.queue(&["flush", "-v"]);
    flush
        .assert_success()
        .assert_stdout_contains("delivered 3, deferred 0, failed 0");
    for (i, local) in locals.iter().enumerate() {
        let raw = pf.wait_for_messages(local, 1, WAIT).remove(0);
        let msg = Delivered::of(&raw);
        assert_eq!(msg.one("Subject"), format!("queued {i}"));
        assert_eq!(msg.body, format!("message {i}\n").as_bytes());
    }
    let after = settled_connections(&pf);
    assert_eq!(
        after - before,
        1,
        "the flush used {} connections\n{}",
        after - before,
        pf.maillog_tail(40)
    );
    face.queue(&["list"])
        .assert_success()
        .assert_stdout_contains("the queue is empty");
    // Nothing more arrives, and a second flush has nothing to do.
    face.queue(&["flush", "-v"])
        .assert_success()
        .assert_stdout_contains("delivered 0, deferred 0, failed 0");
    thread::sleep(Duration::from_millis(500));
    for local in &locals {
        assert_eq!(pf.messages_now(local).len(), 1);
    }
}

/// One deferred recipient and one normal: the normal one has it at once, and the
/// queue keeps only the deferred one.
#[test]
fn a_deferred_recipient_is_kept_alone() {
    let normal = unique_name("sm-normal");
    let deferred = unique_name("defer-sm");
    let face = Face::new(&Postfix::shared().addr(), "from = \"me@example.test\"\n");
    let out = face.sendmail(
        &[&rcpt(&deferred), &rcpt(&normal)],
        b"Subject: half now\n\nbody\n",
    );
    out.assert_success().assert_stderr_empty();
    let msg = Delivered::of(&one_message(&normal));
    assert_eq!(msg.one("Subject"), "half now");

    let list = face.queue(&["list"]);
    list.assert_success();
    let listing = list.stdout_str();
    let ids = entry_ids(&listing);
    assert_eq!(ids.len(), 1, "{}", list.report());
    assert_eq!(recipients_of(&listing, &ids[0]), rcpt(&deferred));
    assert!(listing.contains("450"), "{}", list.report());
    assert!(!listing.contains(&rcpt(&normal)), "{}", list.report());
    face.queue(&["list", "--failed"])
        .assert_stdout_contains("the failed folder is empty");
}

/// A permanent refusal in the sendmail face: the sender gets a bounce, the exit is 0
/// (an MTA has taken the message), the refusal is still said on stderr, and the
/// message is kept in `failed` with the server's reply and the bounce's fate;
/// nothing waits in the queue. With `-oep` the exit is 67 and no bounce goes.
#[test]
fn a_permanent_refusal_is_bounced_and_kept_in_failed() {
    let rejected = unique_name("reject-sm");
    let sender = unique_name("sm-bounced");
    let pf = Postfix::shared();
    let face = Face::new(&pf.addr(), &format!("from = \"{}\"\n", rcpt(&sender)));
    let out = face.sendmail(&[&rcpt(&rejected)], b"Subject: no\n\nbody\n");
    out.assert_code(0)
        .assert_stderr_contains(&rcpt(&rejected))
        .assert_stderr_contains("550");
    let bounces = pf.wait_for_messages(&sender, 1, WAIT);
    assert_eq!(bounces.len(), 1, "{}", out.report());
    let bounce = String::from_utf8_lossy(&bounces[0]);
    assert!(bounce.contains("Return-Path: <>"), "{bounce}");
    assert!(bounce.contains("report-type=delivery-status"), "{bounce}");
    face.queue(&["list"])
        .assert_success()
        .assert_stdout_contains("the queue is empty");
    let failed = face.queue(&["list", "--failed"]);
    failed.assert_success();
    let listing = failed.stdout_str();
    let ids = entry_ids(&listing);
    assert_eq!(ids.len(), 1, "{}", failed.report());
    assert_eq!(recipients_of(&listing, &ids[0]), rcpt(&rejected));
    assert!(
        listing.contains("last error:") && listing.contains("550"),
        "{}",
        failed.report()
    );
    assert!(listing.contains("bounce: sent as "), "{}", failed.report());

    let again = unique_name("reject-sm");
    face.sendmail(&["-oep", &rcpt(&again)], b"Subject: no\n\nbody\n")
        .assert_code(67)
        .assert_stderr_contains(&rcpt(&again));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(pf.messages_now(&sender).len(), 1, "-oep sent a bounce");
}

/// A notice to `bounce_to` that is itself refused makes no further notice, even when
/// the refusal names `bounce_to` in its ASCII form: to a server without SMTPUTF8 the
/// address `reject-pm@bücher.example` goes, and is refused, as
/// `reject-pm@xn--bcher-kva.example`. Once, this went round until the stack ran out.
#[test]
fn a_refused_notice_to_bounce_to_is_not_told_of_again() {
    let pf = Postfix::builder().smtputf8(false).start();
    let rejected = unique_name("reject-null");
    let face = Face::new(&pf.addr(), "bounce_to = \"reject-pm@bücher.example\"\n");
    let out = face.sendmail(
        &["-f", "<>", "-i", &rcpt(&rejected)],
        b"Subject: auto-reply\n\nbody\n",
    );
    out.assert_code(0).assert_stderr_contains(&rcpt(&rejected));
    let log = String::from_utf8(face.env.read_file(face.env.log_file())).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    // The message's refusal, and the notice's: nothing more.
    assert_eq!(lines.len(), 2, "{log}\n{}", out.report());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("to=<reject-pm@xn--bcher-kva.example>")
                && l.contains("status=bounced")
                && l.contains("bounce=\"none (it reports a failure itself)\"")),
        "{log}"
    );
    let failed = face.queue(&["list", "--failed"]);
    assert_eq!(
        entry_ids(&failed.stdout_str()).len(),
        2,
        "{}",
        failed.report()
    );
    face.queue(&["list"])
        .assert_stdout_contains("the queue is empty");
}

/// A relay that refuses the null sender itself (`MAIL FROM:<>`) takes no bounce at
/// all: then nobody would hear of a refusal, so the sendmail face says so with the
/// refusal's exit code (67), as a client would, rather than 0.
#[test]
fn a_relay_that_refuses_the_null_sender_leaves_the_refusal_to_the_caller() {
    let checks = crate::support::TempDir::new("outbox-sender-checks");
    let table = checks.join("senders");
    fs::write(&table, "/^<>$/ 550 5.7.1 no bounces through here\n").unwrap();
    // Refused at MAIL itself: Postfix would otherwise wait for the RCPT to say it,
    // where it looks like the sender's own address refused (kept, exit 0).
    let pf = Postfix::builder()
        .main_cf(
            "smtpd_sender_restrictions",
            &format!("check_sender_access regexp:{}", table.display()),
        )
        .main_cf("smtpd_delay_reject", "no")
        .start();
    let rejected = unique_name("reject-nonull");
    let face = Face::new(&pf.addr(), "from = \"me@example.test\"\n");
    let out = face.sendmail(&[&rcpt(&rejected)], b"Subject: no\n\nbody\n");
    out.assert_code(67)
        .assert_stderr_contains(&rcpt(&rejected))
        .assert_stderr_contains("no bounces through here");
    let log = String::from_utf8(face.env.read_file(face.env.log_file())).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("to=<{}>", rcpt(&rejected)))
                && l.contains("bounce=\"not sent: the server refuses mail from <>")),
        "{log}"
    );
}

/// The compose face queues only when asked: `--queue` exits 0 and keeps the message,
/// without it the exit is 75 and nothing is kept.
#[test]
fn compose_queues_only_with_the_flag() {
    let mut pf = Postfix::builder().start();
    pf.stop();
    let local = unique_name("sm-compose");
    let face = Face::new(&pf.addr(), "from = \"me@example.test\"\n");

    let mut cmd = face.outbox();
    cmd.args(["-s", "not now", "--body", "plain", &rcpt(&local)]);
    cmd.run().assert_code(75);
    face.assert_nothing_queued();

    let mut cmd = face.outbox();
    cmd.args(["--queue", "-s", "later", "--body", "kept", &rcpt(&local)]);
    cmd.run().assert_success().assert_stderr_contains("queued");
    let ids = face.queued_ids();
    assert_eq!(ids.len(), 1);

    pf.start_again();
    face.queue(&["flush", "-v"])
        .assert_success()
        .assert_stdout_contains("delivered 1,");
    let msg = Delivered::of(&pf.wait_for_messages(&local, 1, WAIT).remove(0));
    assert_eq!(msg.one("Subject"), "later");
    assert!(face.queued_ids().is_empty());
}

/// A composed message with a large attachment is queued streaming: the queue keeps
/// the whole encoded message, so the file may go before the flush, which delivers it
/// intact (the flush reads the queued message from its file too).
#[test]
fn compose_queues_a_streamed_attachment_whole() {
    use mail_parser::MimeHeaders;
    let mut pf = Postfix::builder().start();
    pf.stop();
    let local = unique_name("sm-attach");
    let face = Face::new(&pf.addr(), "from = \"me@example.test\"\n");
    // Over the size read into memory when the message is built.
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = face.env.write_file("data.bin", &data);

    let mut cmd = face.outbox();
    cmd.args(["--queue", "-s", "attached", "--body", "see file"])
        .arg("-a")
        .arg(&file)
        .arg(rcpt(&local));
    cmd.run().assert_success().assert_stderr_contains("queued");
    assert_eq!(face.queued_ids().len(), 1);
    fs::remove_file(&file).unwrap();

    pf.start_again();
    face.queue(&["flush", "-v"])
        .assert_success()
        .assert_stdout_contains("delivered 1,");
    let raw = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    let msg = MessageParser::default().parse(&raw).unwrap();
    let part = msg.attachment(0).expect("the attachment");
    assert_eq!(part.attachment_name(), Some("data.bin"));
    assert!(part.contents() == data.as_slice(), "the attachment differs");
}

/// The numbers a flush prints: delivered, deferred, failed, skipped.
#[track_caller]
fn flush_totals(out: &Output) -> [usize; 4] {
    let text = out.stdout_str();
    let line = text
        .lines()
        .find(|l| l.starts_with("delivered "))
        .unwrap_or_else(|| out.fail("no totals line"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|_| out.fail("bad totals line"))
}

/// Subject -> number of copies, of the messages delivered to `local`.
fn subjects(pf: &Postfix, local: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for raw in pf.messages_now(local) {
        let msg = Delivered::of(&raw);
        *seen.entry(msg.one("Subject").to_owned()).or_insert(0) += 1;
    }
    seen
}

/// Queues `n` messages to `local` with the server down; returns their subjects.
fn queue_messages(face: &Face, local: &str, n: usize, body_size: usize) -> Vec<String> {
    let filler = format!("{}\n", "x".repeat(75)).repeat(body_size / 76 + 1);
    (0..n)
        .map(|i| {
            let subject = format!("{local} message {i:02}");
            face.sendmail(
                &["-i", &rcpt(local)],
                format!("Subject: {subject}\n\n{filler}").as_bytes(),
            )
            .assert_success()
            .assert_stderr_empty();
            subject
        })
        .collect()
}

/// Waits until every subject has arrived at least once, then for the Maildir to be
/// still for a moment; returns the copies of each.
#[track_caller]
fn wait_for_subjects(pf: &Postfix, local: &str, wanted: &[String]) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = subjects(pf, local);
        if wanted.iter().all(|s| seen.contains_key(s)) {
            thread::sleep(Duration::from_secs(1));
            let again = subjects(pf, local);
            if again == seen {
                return seen;
            }
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "missing: {:?}\n{}",
            wanted
                .iter()
                .filter(|s| !seen.contains_key(*s))
                .collect::<Vec<_>>(),
            pf.maillog_tail(40)
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Two flushes at once never send the same entry twice.
#[test]
fn two_flushes_at_once_send_each_entry_once() {
    let mut pf = Postfix::builder().start();
    pf.stop();
    let local = unique_name("sm-race");
    let face = Face::new(&pf.addr(), "from = \"me@example.test\"\n");
    let wanted = queue_messages(&face, &local, 10, 100);
    assert_eq!(face.queued_ids().len(), 10);
    pf.start_again();

    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| face.queue(&["flush", "-v"]));
        let b = s.spawn(|| face.queue(&["flush", "-v"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    a.assert_success();
    b.assert_success();
    let (ta, tb) = (flush_totals(&a), flush_totals(&b));
    eprintln!("concurrent flushes: {ta:?} and {tb:?} (delivered, deferred, failed, skipped)");
    assert_eq!(ta[0] + tb[0], 10, "{}\n{}", a.report(), b.report());
    assert_eq!(ta[1] + tb[1] + ta[2] + tb[2], 0);

    let seen = wait_for_subjects(&pf, &local, &wanted);
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "duplicates: {seen:?}");
    assert!(face.queued_ids().is_empty());
}

/// A flush killed with SIGKILL at any moment loses no entry and leaves none corrupt;
/// at most the message in flight at the kill arrives twice.
#[test]
fn a_flush_killed_midway_loses_nothing() {
    let mut pf = Postfix::builder().start();
    pf.stop();
    let local = unique_name("sm-kill");
    let face = Face::new(&pf.addr(), "from = \"me@example.test\"\n");
    // Big enough that the transfer of 20 takes a while.
    let wanted = queue_messages(&face, &local, 20, 64 * 1024);
    assert_eq!(face.queued_ids().len(), 20);
    pf.start_again();

    let mut flush = face.outbox();
    flush.args(["queue", "flush", "-v"]);
    let mut child = flush.spawn();
    thread::sleep(Duration::from_millis(60));
    let finished_before_kill = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let status = child.wait().unwrap();

    let list = face.queue(&["list"]);
    list.assert_success();
    assert!(
        !list.stdout_str().contains("cannot be read"),
        "{}",
        list.report()
    );
    let left = entry_ids(&list.stdout_str()).len();
    eprintln!(
        "killed flush: finished before the kill: {finished_before_kill}, status {status:?}, \
         {left} of 20 entries left"
    );

    let out = face.queue(&["flush", "-v"]);
    out.assert_success();
    assert_eq!(flush_totals(&out)[0], left, "{}", out.report());
    let seen = wait_for_subjects(&pf, &local, &wanted);
    assert_eq!(seen.len(), 20, "{seen:?}");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= 1 && twice.iter().all(|(_, n)| **n == 2),
        "more duplicates than the one message in flight: {twice:?}"
    );
    face.queue(&["list"])
        .assert_success()
        .assert_stdout_contains("the queue is empty");
}

/// Corrupt entries are reported by `queue list` and left alone by `queue flush`,
/// which delivers the others and exits 65 (EX_DATAERR) to say something is wrong.
#[test]
fn corrupt_entries_are_reported_and_skipped() {
    let local = unique_name("sm-corrupt");
    let face = Face::new(&closed_server(), "from = \"me@example.test\"\n");
    face.sendmail(&[&rcpt(&local)], b"Subject: survivor\n\nbody\n")
        .assert_success();
    let good = face.queued_ids();
    assert_eq!(good.len(), 1);

    let garbage = "1600000000.000000.0badc0de";
    let truncated = "1600000001.000000.0badf00d";
    fs::write(
        face.queue_dir().join(garbage),
        "outbox-queue 2 20\nthis is = not [ toml\n\0\u{1}",
    )
    .unwrap();
    // A whole entry, then the end of its message cut off.
    let whole = fs::read(face.queue_dir().join(&good[0])).unwrap();
    fs::write(face.queue_dir().join(truncated), &whole[..whole.len() - 3]).unwrap();

    let list = face.queue(&["list"]);
    list.assert_success();
    let listing = list.stdout_str();
    for id in [garbage, truncated] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(id) && l.contains("cannot be read")),
            "{id} not reported:\n{}",
            list.report()
        );
    }
    assert!(
        listing.contains("its message has") && listing.contains("its envelope says"),
        "{}",
        list.report()
    );
    assert_eq!(entry_ids(&listing), good);

    face.configure(&Postfix::shared().addr(), "from = \"me@example.test\"\n");
    let flush = face.queue(&["flush", "-v"]);
    flush
        .assert_code(65)
        .assert_stderr_contains(garbage)
        .assert_stderr_contains(truncated)
        .assert_stdout_contains("delivered 1,");
    let msg = Delivered::of(&one_message(&local));
    assert_eq!(msg.one("Subject"), "survivor");
    // The corrupt ones are left as they were, for a human to look at.
    let list = face.queue(&["list"]);
    assert_eq!(
        list.stdout_str()
            .lines()
            .filter(|l| l.contains("cannot be read"))
            .count(),
        2,
        "{}",
        list.report()
    );
    assert!(entry_ids(&list.stdout_str()).is_empty());
}

/// `queue remove ID` takes an entry away; an unknown id is an error (64).
#[test]
fn queue_remove() {
    let face = Face::new(&closed_server(), "from = \"me@example.test\"\n");
    for i in 0..2 {
        face.sendmail(
            &[&rcpt(&unique_name("sm-remove"))],
            format!("Subject: {i}\n\nbody\n").as_bytes(),
        )
        .assert_success();
    }
    let ids = face.queued_ids();
    assert_eq!(ids.len(), 2);
    face.queue(&["remove", &ids[0]])
        .assert_success()
        .assert_stdout_contains(&format!("removed {}", ids[0]));
    assert_eq!(face.queued_ids(), &ids[1..]);
    assert!(!face.queue_dir().join(&ids[0]).exists());

    let unknown = "1234567890.000000.00000000";
    face.queue(&["remove", unknown])
        .assert_code(64)
        .assert_stderr_contains(unknown);
    face.queue(&["remove", &ids[0]]).assert_code(64);
    face.queue(&["remove", "../../etc"]).assert_code(64);
    assert_eq!(face.queued_ids(), &ids[1..]);
    face.queue(&["remove", &ids[1]]).assert_success();
    assert!(face.queued_ids().is_empty());
}

/// An entry queued while the server was down and tried once more in vain: its next
/// attempt is minutes away. Returns the face (now pointed at the shared Postfix) and
/// the recipient's local part.
fn backed_off_entry() -> (Face, String) {
    let local = unique_name("sm-backoff");
    let face = Face::new(&closed_server(), "from = \"me@example.test\"\n");
    face.sendmail(&["-i", &rcpt(&local)], b"Subject: backed off\n\nbody\n")
        .assert_success();
    let flush = face.queue(&["flush", "-v"]);
    flush.assert_success();
    assert_eq!(flush_totals(&flush), [0, 1, 0, 0], "{}", flush.report());
    let list = face.queue(&["list"]);
    list.assert_success()
        .assert_stdout_contains("attempts 1")
        .assert_stdout_contains("next attempt in ");
    face.configure(&Postfix::shared().addr(), "from = \"me@example.test\"\n");
    (face, local)
}

/// The server is back: a scheduled `queue flush --due` keeps the back-off and sends
/// nothing, where `queue flush`, asked for by hand, tries every entry now (as Postfix's
/// `sendmail -q`, `postqueue -f`, does).
#[test]
fn queue_flush_tries_everything_now_and_due_keeps_the_backoff() {
    let (face, local) = backed_off_entry();
    let due = face.queue(&["flush", "--due", "-v"]);
    due.assert_success();
    assert_eq!(flush_totals(&due), [0, 0, 0, 0], "{}", due.report());
    assert_eq!(face.queued_ids().len(), 1);

    let now = face.queue(&["flush", "-v"]);
    now.assert_success();
    assert_eq!(flush_totals(&now), [1, 0, 0, 0], "{}", now.report());
    let msg = Delivered::of(&one_message(&local));
    assert_eq!(msg.one("Subject"), "backed off");
    assert!(face.queued_ids().is_empty());
    thread::sleep(Duration::from_millis(500));
    assert_eq!(Postfix::shared().messages_now(&local).len(), 1);
}

/// `sendmail -q` is the flush by hand too: it tries the entry that `--due` passes over.
#[test]
fn sendmail_q_tries_everything_now() {
    let (face, local) = backed_off_entry();
    let due = face.queue(&["flush", "--due", "-v"]);
    assert_eq!(flush_totals(&due), [0, 0, 0, 0], "{}", due.report());
    face.sendmail_link(&["-q"], b"").assert_success();
    let msg = Delivered::of(&one_message(&local));
    assert_eq!(msg.one("Subject"), "backed off");
    assert!(face.queued_ids().is_empty());
}

/// A small tmpfs mounted on a directory of its own, unmounted when dropped (whatever
/// the test did). The suite runs as root.
struct Tmpfs {
    dir: crate::support::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = crate::support::TempDir::new("outbox-tmpfs");
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "cannot mount a tmpfs on {} (the suite runs as root): {status:?}",
            dir.path().display()
        );
        Tmpfs { dir }
    }

    /// Fills the filesystem with a file until no block is left.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => return path, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.dir.path();
        let unmounted = std::process::Command::new("umount")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(path)
                .status();
        }
    }
}

/// A flush with the queue's filesystem full: one recipient accepted, one deferred
/// (450), one refused (550). Neither the copy for `failed` nor the new envelope can be
/// written (exit 74), but the accepted recipient is marked in place in the entry, so
/// the next flushes, full disk or not, never send it a second copy.
#[test]
fn a_full_queue_disk_never_causes_a_duplicate() {
    let tmpfs = Tmpfs::mount("256k");
    let ok = unique_name("sm-full-ok");
    let deferred = unique_name("defer-full");
    let rejected = unique_name("reject-full");
    let face = Face::new(&closed_server(), "from = \"me@example.test\"\n");
    let queue = tmpfs.dir.join("queue");
    fs::create_dir(&queue).unwrap();
    symlink(&queue, face.queue_dir()).unwrap();
    face.sendmail(
        &["-i", &rcpt(&ok), &rcpt(&deferred), &rcpt(&rejected)],
        b"Subject: once\n\nonly one copy\n",
    )
    .assert_success();
    let ids = face.queued_ids();
    assert_eq!(ids.len(), 1);
    assert!(queue.join(&ids[0]).is_file());
    let filler = tmpfs.fill();

    face.configure(&Postfix::shared().addr(), "from = \"me@example.test\"\n");
    for _ in 0..2 {
        let full = face.queue(&["flush", "-v"]);
        full.assert_code(74)
            .assert_stderr_contains("No space left on device");
        let list = face.queue(&["list"]);
        let listing = list.stdout_str();
        assert_eq!(
            recipients_of(&listing, &ids[0]),
            format!("{}, {}", rcpt(&deferred), rcpt(&rejected)),
            "{}",
            list.report()
        );
    }
    let msg = Delivered::of(&one_message(&ok));
    assert_eq!(msg.one("Subject"), "once");

    // Room again: the refused one goes to failed, the deferred one waits alone.
    fs::remove_file(filler).unwrap();
    let flush = face.queue(&["flush", "-v"]);
    flush.assert_success();
    assert_eq!(flush_totals(&flush), [0, 1, 1, 0], "{}", flush.report());
    let list = face.queue(&["list"]);
    assert_eq!(recipients_of(&list.stdout_str(), &ids[0]), rcpt(&deferred));
    let failed = face.queue(&["list", "--failed"]);
    assert_eq!(
        entry_ids(&failed.stdout_str()).len(),
        1,
        "{}",
        failed.report()
    );
    assert!(failed.stdout_str().contains(&rcpt(&rejected)));
    thread::sleep(Duration::from_secs(1));
    assert_eq!(Postfix::shared().messages_now(&ok).len(), 1);
}

/// A message queued with `-t`: the envelope keeps the header recipients, and the
/// queued copy has no Bcc either.
#[test]
fn a_queued_message_has_no_bcc() {
    let to = unique_name("sm-qt-to");
    let bcc = unique_name("sm-qt-bcc");
    let face = Face::new(&closed_server(), "");
    let input = format!(
        "From: me@example.test\nTo: {}\nBcc: {}\nSubject: later\n\nbody\n",
        rcpt(&to),
        rcpt(&bcc)
    );
    face.sendmail(&["-t", "-i"], input.as_bytes())
        .assert_success()
        .assert_stderr_empty();
    let list = face.queue(&["list"]);
    let ids = entry_ids(&list.stdout_str());
    assert_eq!(ids.len(), 1, "{}", list.report());
    assert_eq!(
        recipients_of(&list.stdout_str(), &ids[0]),
        format!("{}, {}", rcpt(&to), rcpt(&bcc))
    );
    let stored = fs::read(face.queue_dir().join(&ids[0])).unwrap();
    assert!(!lossy(&stored).contains("Bcc"), "{}", lossy(&stored));

    face.configure(&Postfix::shared().addr(), "");
    face.queue(&["flush", "-v"])
        .assert_success()
        .assert_stdout_contains("delivered 1,");
    for local in [&to, &bcc] {
        let raw = one_message(local);
        let msg = Delivered::of(&raw);
        msg.assert_sane();
        assert_eq!(msg.one("Subject"), "later");
        assert!(msg.all("Bcc").is_empty());
    }
}

/// Over a server that pipelines and takes DATA (CHUNKING not offered), a flush sends
/// each message's end in the same write as the next one's envelope: in the transcript
/// the final dot is followed by the next MAIL, not by the dot's reply. Every message
/// arrives intact, and a refused and a deferred one in the middle are settled alone.
#[test]
fn a_flush_over_data_pipelines_one_message_into_the_next() {
    let mut pf = Postfix::builder()
        .main_cf("smtpd_discard_ehlo_keywords", "chunking")
        .start();
    pf.stop();
    let face = Face::new(&pf.addr(), "from = \"me@example.test\"\n");
    let good = unique_name("sm-pipe");
    let rejected = unique_name("reject-pipe");
    let deferred = unique_name("defer-pipe");
    let bodies = [
        "first\n.\n..two dots\n.x\n",
        "second\n",
        "refused\n",
        "deferred\n",
        "last, without a final newline",
    ];
    for (i, to) in [&good, &good, &rejected, &deferred, &good]
        .iter()
        .enumerate()
    {
        face.sendmail(
            &["-i", &rcpt(to)],
            format!("Subject: pipe {i}\n\n{}", bodies[i]).as_bytes(),
        )
        .assert_success();
    }
    assert_eq!(face.queued_ids().len(), 5);

    pf.start_again();
    let flush = face.queue(&["flush", "-v"]);
    flush.assert_success();
    assert_eq!(flush_totals(&flush), [3, 1, 1, 0], "{}", flush.report());
    let transcript = flush.stderr_str();
    assert!(!transcript.contains("BDAT"), "{}", flush.report());
    // The queued messages' session, then the bounce's own for the refused one.
    let sessions: Vec<&str> = transcript.split("* connecting to").skip(1).collect();
    assert_eq!(sessions.len(), 2, "{}", flush.report());
    assert!(sessions[1].contains("> MAIL FROM:<>"), "{}", flush.report());
    let lines: Vec<&str> = sessions[0].lines().collect();
    let after_dot: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0] == "> .")
        .map(|w| w[1].split(" SIZE=").next().unwrap_or(w[1]))
        .collect();
    // The refused and the deferred message each end the chain: their RCPT is refused,
    // and the next envelope goes after an RSET.
    assert_eq!(
        after_dot,
        [
            "> MAIL FROM:<me@example.test>",
            "> MAIL FROM:<me@example.test>",
            "> QUIT"
        ],
        "{}",
        flush.report()
    );

    let mut delivered: Vec<Delivered> = pf
        .wait_for_messages(&good, 3, WAIT)
        .iter()
        .map(|raw| Delivered::of(raw))
        .collect();
    delivered.sort_by(|a, b| a.one("Subject").cmp(b.one("Subject")));
    assert_eq!(delivered[0].one("Subject"), "pipe 0");
    assert_eq!(delivered[0].body, bodies[0].as_bytes());
    assert_eq!(delivered[1].one("Subject"), "pipe 1");
    assert_eq!(delivered[1].body, bodies[1].as_bytes());
    assert_eq!(delivered[2].one("Subject"), "pipe 4");
    assert_eq!(delivered[2].body, format!("{}\n", bodies[4]).as_bytes());

    let list = face.queue(&["list"]);
    let ids = entry_ids(&list.stdout_str());
    assert_eq!(ids.len(), 1, "{}", list.report());
    assert_eq!(recipients_of(&list.stdout_str(), &ids[0]), rcpt(&deferred));
    let failed = face.queue(&["list", "--failed"]);
    assert!(
        failed.stdout_str().contains(&rcpt(&rejected)),
        "{}",
        failed.report()
    );
}
