//! System mode end to end: unprivileged users hand mail to the system spool with
//! `sendmail`, and `outbox serve`, as the spool's owner, delivers it to the suite's
//! Postfix; what a hostile user puts in `maildrop/` is set aside and never read
//! through; one user cannot touch another's drop; the service survives SIGKILL with
//! nothing lost; limits, signals and `-v` (issue 12, "How it will be checked").
//!
//! Set-up and helpers: [`crate::support::system`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outbox::envelope::{Address, Envelope};
use outbox::smtp::dsn::Dsn as DsnRequest;
use outbox::spool::{DropEnvelope, encode};
use rustix::process::Signal;

use crate::support::dsn::Dsn;
use crate::support::face::{closed_server, entry_ids};
use crate::support::fake::{self, FakeServer, Step};
use crate::support::postfix::{Postfix, rcpt, strip_trace_headers};
use crate::support::system::{
    NOBODY, Reaped, System, User, any_file_contains, maildir_count, mode_and_owner, poll,
    seq_numbers, wait_until,
};
use crate::support::{free_port, unique_name};

/// How long a message may take to reach the Maildir, or the service its log line.
const WAIT: Duration = Duration::from_secs(20);
/// A second unprivileged user (no passwd entry), the hostile one.
const MALLORY: User = User {
    uid: 64002,
    gid: 64002,
};
/// A third one, who tries to reach nobody's drop.
const EVE: User = User {
    uid: 64003,
    gid: 64003,
};
const SENDER: &str = "sys-sender@example.test";

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A whole message as `sendmail -t` takes it, with every header outbox would
/// otherwise add, so that what arrives must be these bytes exactly.
fn message(to: &str, subject: &str, body: &str) -> String {
    let id = unique_name("sys-msg");
    format!(
        "From: Sys Sender <{SENDER}>\nTo: {to}\nSubject: {subject}\n\
         Date: Wed, 02 Dec 2026 03:00:00 +0000\nMessage-ID: <{id}@outbox.test>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}"
    )
}

/// `sendmail -t -i -f SENDER` as `user`, which must exit 0.
#[track_caller]
fn send(sys: &System, user: User, msg: &str) {
    sys.sendmail(user, &["-t", "-i", "-f", SENDER], msg.as_bytes())
        .assert_success();
}

/// Check 1: with the relay down, nobody's `sendmail -t -i` exits 0 and the message waits in
/// the system queue as nobody's; the configuration stays unreadable to nobody; once
/// the relay is up (and SIGUSR1 asks for a retry now) it arrives once, byte for byte.
#[test]
fn system_nobody_queues_while_the_relay_is_down_and_it_arrives_once_when_it_is_up() {
    let port = free_port();
    let sys = System::new(&format!("127.0.0.1:{port}"), "");
    let service = sys.serve();
    let local = unique_name("sys-down");
    let msg = message(&rcpt(&local), "while the relay is down", "Wait for me.\n");
    send(&sys, NOBODY, &msg);

    let queued = sys.wait_for_status("queued", 1, WAIT, Some(&service));
    assert_eq!(queued.len(), 1, "{:?}", queued);
    assert_eq!(queued[0].field("uid"), "65534", "{}", queued[0].raw);
    let id = queued[0].field("id").to_owned();
    let deferred = sys.wait_for_status("deferred", 1, WAIT, Some(&service));
    assert_eq!(deferred[0].field("id"), id, "{}", deferred[0].raw);
    assert_eq!(deferred[0].field("uid"), "65534", "{}", deferred[0].raw);

    let list = sys.admin().args(["queue", "list"]).run();
    list.assert_success()
        .assert_stdout_contains("submitted by: uid 65534 (nobody)");
    assert_eq!(
        entry_ids(&list.stdout_str()),
        std::slice::from_ref(&id),
        "{}",
        list.report()
    );
    let (mode, owner, _) = mode_and_owner(&sys.config());
    assert_eq!(
        (mode, owner),
        (0o600, sys.service_user().uid),
        "the configuration's mode and owner"
    );
    let cat = sys.as_user(NOBODY, "/bin/cat").arg(sys.config()).run();
    cat.assert_failure()
        .assert_stderr_contains("Permission denied");

    let pf = Postfix::builder().port(port).start();
    service.signal(Signal::USR1);
    let msgs = pf.wait_for_messages(&local, 1, WAIT);
    assert_eq!(
        lossy(&strip_trace_headers(&msgs[0])),
        msg,
        "not delivered byte for byte"
    );
    let sent = sys.wait_for_status("sent", 1, WAIT, Some(&service));
    assert_eq!(sent[0].field("id"), id, "{}", sent[0].raw);
    // Once sent the entry is gone, so no later attempt can send it again.
    let list = sys.admin().args(["queue", "list"]).run();
    list.assert_success();
    assert!(
        entry_ids(&list.stdout_str()).is_empty(),
        "{}",
        list.report()
    );
    service.signal(Signal::USR1);
    let resent = poll(Duration::from_millis(1500), || {
        (pf.messages_now(&local).len() > 1).then_some(())
    });
    assert!(resent.is_none(), "the message arrived twice");
}

/// Check 2: a recipient the relay refuses for good: nobody's sendmail exits 0 and the
/// sender gets an RFC 3464 bounce that names the recipient and who submitted it.
#[test]
fn system_a_refused_recipient_of_nobody_bounces_to_the_sender() {
    let pf = Postfix::shared();
    let sys = System::new(&pf.addr(), "");
    // Started as its own user rather than as root, as a unit with User= starts it.
    let service = sys.serve_as_owner();
    let sender_local = unique_name("sys-bnc-sender");
    let sender = rcpt(&sender_local);
    let refused = rcpt(&unique_name("reject-sys"));
    let msg = message(&refused, "to be refused", "Nobody wants this.\n");
    // As callers of /usr/sbin/sendmail run it: through a link named `sendmail`.
    let link = sys.scratch().join("sendmail");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_outbox"), &link).unwrap();
    let mut cmd = sys.as_user(NOBODY, &link);
    cmd.args(["-t", "-i", "-f", &sender])
        .stdin(msg.as_bytes().to_vec());
    cmd.run().assert_success();

    let bounces = pf.wait_for_messages(&sender_local, 1, WAIT);
    let dsn = Dsn::of(&bounces[0]);
    let text = dsn.text();
    assert_eq!(dsn.return_path.as_deref(), Some("<>"), "{text}");
    assert_eq!(
        dsn.report_type.as_deref(),
        Some("delivery-status"),
        "{text}"
    );
    assert_eq!(
        dsn.final_recipients(),
        std::slice::from_ref(&refused),
        "{text}"
    );
    let r = dsn
        .recipient(&refused)
        .unwrap_or_else(|| panic!("no block for {refused}:\n{text}"));
    assert_eq!(r.field("Action"), "failed", "{text}");
    assert_eq!(r.field("Status"), "5.1.1", "{text}");
    assert!(dsn.human.contains(&refused), "{text}");
    assert!(
        dsn.human.contains("uid 65534 (nobody)"),
        "the bounce does not say who submitted it:\n{text}"
    );
    let bounced = sys.wait_for_status("bounced", 1, WAIT, Some(&service));
    assert_eq!(bounced[0].field("uid"), "65534", "{}", bounced[0].raw);
}

/// A name as a submitter's drop has (the time, then 64 random bits as hex), unique
/// in this process, so that the service judges the file and not its name.
fn drop_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:010}.{:06}.{:016x}",
        now.as_secs(),
        now.subsec_micros(),
        (u64::from(std::process::id()) << 32) | NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The bytes of a well-formed drop of `message` for `to`.
fn drop_bytes(to: &str, message: &[u8]) -> Vec<u8> {
    let envelope = DropEnvelope {
        envelope: Envelope::new(
            Some(Address::new(SENDER).unwrap()),
            vec![Address::new(to).unwrap()],
        ),
        dsn: DsnRequest::default(),
    };
    encode(&envelope, message).unwrap()
}

/// Check 3: hostile drops by an unprivileged user, written straight into `maildrop/`: each
/// is set aside into `bad/` with a log line, nothing is followed or read through
/// (no secret reaches the server or the queue), a `.tmp` still being written is left
/// alone, the service stays up, and good drops after them are delivered.
#[test]
fn system_hostile_drops_are_set_aside_and_never_read_through() {
    let pf = Postfix::shared();
    let sys = System::new(&pf.addr(), "max_message_size = 10000\n");
    let service_user = sys.service_user();
    let mut service = sys.serve();
    let drop = sys.maildrop();

    // Secrets a user may name but not read. Each is a well-formed drop to a mailbox of
    // the server, so that a service that followed a link or a second name to it
    // would deliver it: the token would show in the Maildir.
    let token = format!("SECRET-{}", drop_name());
    let leak_local = unique_name("sys-leak");
    let secret = drop_bytes(
        &rcpt(&leak_local),
        format!("Subject: {token}\n\n{token}\n").as_bytes(),
    );
    let root_secret = sys.scratch().join("root-secret");
    fs::write(&root_secret, &secret).unwrap();
    fs::set_permissions(&root_secret, fs::Permissions::from_mode(0o600)).unwrap();
    // Readable by the service's group alone: what the service could leak, were it
    // fooled.
    let service_secret = sys.scratch().join("service-secret");
    fs::write(&service_secret, &secret).unwrap();
    std::os::unix::fs::chown(&service_secret, Some(0), Some(service_user.gid)).unwrap();
    fs::set_permissions(&service_secret, fs::Permissions::from_mode(0o640)).unwrap();
    let shadow_line = fs::read_to_string("/etc/shadow")
        .unwrap()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(!shadow_line.is_empty(), "/etc/shadow is empty");

    // What each is, its name, the owner its log line must name, and what the reason
    // given must say (the reply= field).
    let mut hostile: Vec<(&str, String, u32, &str)> = Vec::new();
    let mut as_mallory = |what: &'static str, why: &'static str, script: &str, args: &[&str]| {
        let name = drop_name();
        let mut all = vec![name.as_str()];
        all.extend_from_slice(args);
        let out = sys.shell(MALLORY, &format!("umask 027; {script}"), &all);
        out.assert_success();
        hostile.push((what, name, MALLORY.uid, why));
    };
    as_mallory(
        "symlink to /etc/shadow",
        "symbolic link",
        r#"ln -s /etc/shadow "maildrop/$1""#,
        &[],
    );
    let root_path = root_secret.to_string_lossy().into_owned();
    let service_path = service_secret.to_string_lossy().into_owned();
    let config_path = sys.config().to_string_lossy().into_owned();
    as_mallory(
        "symlink to a root-only file",
        "symbolic link",
        r#"ln -s "$2" "maildrop/$1""#,
        &[&root_path],
    );
    as_mallory(
        "symlink to a file of the service's group",
        "symbolic link",
        r#"ln -s "$2" "maildrop/$1""#,
        &[&service_path],
    );
    as_mallory(
        "symlink to the service's configuration",
        "symbolic link",
        r#"ln -s "$2" "maildrop/$1""#,
        &[&config_path],
    );
    as_mallory("a FIFO", "FIFO", r#"mkfifo "maildrop/$1""#, &[]);
    as_mallory(
        "garbage",
        "",
        r#"head -c 3000 /dev/urandom > "maildrop/$1""#,
        &[],
    );
    let full = drop_bytes(
        &rcpt(&leak_local),
        format!("Subject: {token}\n\n{token}\n").as_bytes(),
    );
    let half = lossy(&full[..full.len() / 2]);
    as_mallory(
        "a drop cut short (written in place, never finished)",
        "cut short",
        r#"printf '%s' "$2" > "maildrop/$1""#,
        &[&half],
    );
    let mut altered = full.clone();
    let at = altered.len() - 80;
    altered[at] ^= 1;
    let altered = lossy(&altered);
    as_mallory(
        "a drop altered after its digest",
        "digest",
        r#"printf '%s' "$2" > "maildrop/$1""#,
        &[&altered],
    );
    let big_body = format!("Subject: {token}\n\n{}\n", "x".repeat(20_000));
    let big = lossy(&drop_bytes(&rcpt(&leak_local), big_body.as_bytes()));
    as_mallory(
        "a drop over the size limit",
        "size limit",
        r#"printf '%s' "$2" > "maildrop/$1""#,
        &[&big],
    );

    // A hard link to a file the user does not own: the kernel refuses it to the user
    // where fs.protected_hardlinks is on, so root puts one there, as a user could on
    // a machine where it is off.
    let protected =
        fs::read_to_string("/proc/sys/fs/protected_hardlinks").is_ok_and(|v| v.trim() == "1");
    let name = drop_name();
    let out = sys.shell(MALLORY, r#"ln "$2" "maildrop/$1""#, &[&name, &root_path]);
    if protected {
        out.assert_failure();
        for (what, target) in [
            ("a hard link to a root-only file", &root_secret),
            (
                "a hard link to a file of the service's group",
                &service_secret,
            ),
        ] {
            let name = drop_name();
            fs::hard_link(target, drop.join(&name)).unwrap();
            hostile.push((what, name, 0, "hard link"));
        }
    } else {
        out.assert_success();
        hostile.push((
            "a hard link to a root-only file",
            name,
            MALLORY.uid,
            "hard link",
        ));
    }
    // A device made to look like a drop in every other way (owner, group, mode).
    let name = drop_name();
    let out = sys.shell(
        User { uid: 0, gid: 0 },
        r#"mknod -m 640 "maildrop/$1" c 1 3 && chown "$2:$3" "maildrop/$1""#,
        &[
            &name,
            &MALLORY.uid.to_string(),
            &service_user.gid.to_string(),
        ],
    );
    out.assert_success();
    hostile.push((
        "a character device (/dev/null's numbers)",
        name,
        MALLORY.uid,
        "device",
    ));

    // A .tmp whose writer still has it open: being written, so left where it is.
    let tmp_name = format!("{}.tmp", drop_name());
    let _writer = Reaped({
        let mut cmd = sys.as_user(MALLORY, "/bin/sh");
        cmd.args([
            "-c",
            r#"umask 027; exec 3>"maildrop/$1"; printf '%s' "$2" >&3; exec sleep 60"#,
            "sh",
            &tmp_name,
            &half,
        ])
        .current_dir(sys.root());
        cmd.spawn()
    });
    wait_until(WAIT, "the .tmp to be written", || {
        fs::metadata(drop.join(&tmp_name))
            .ok()
            .filter(|m| m.len() == half.len() as u64)
    });

    // Good drops after them: one through outbox, one written by hand.
    let good_local = unique_name("sys-good");
    let good = message(
        &rcpt(&good_local),
        "after the hostile ones",
        "Still here.\n",
    );
    send(&sys, NOBODY, &good);
    let by_hand_name = drop_name();
    let by_hand = lossy(&drop_bytes(
        &rcpt(&good_local),
        b"Subject: by hand\n\nA drop made by hand.\n",
    ));
    sys.shell(
        MALLORY,
        r#"umask 027; printf '%s' "$2" > "maildrop/$1.tmp" && mv "maildrop/$1.tmp" "maildrop/$1""#,
        &[&by_hand_name, &by_hand],
    )
    .assert_success();

    let arrived = pf.wait_for_messages(&good_local, 2, WAIT);
    assert!(
        arrived
            .iter()
            .any(|m| lossy(&strip_trace_headers(m)) == good),
        "the good drop was not delivered byte for byte"
    );
    // The hostile drops are older than the good ones, so the pass that took those
    // had judged these: whatever it took is delivered by now, or still queued.
    assert!(
        pf.messages_now(&leak_local).is_empty(),
        "a secret was delivered"
    );
    for needle in [token.as_bytes(), shadow_line.as_bytes()] {
        assert!(
            !any_file_contains(&pf.maildir(), needle),
            "the Maildir holds {:?}",
            lossy(needle)
        );
        assert!(
            !any_file_contains(&sys.spool().queue_dir(), needle),
            "the system queue holds {:?}",
            lossy(needle)
        );
    }
    let set_aside = poll(WAIT, || {
        let lines = sys.log_with_status("set-aside");
        (lines.len() >= hostile.len()).then_some(lines)
    })
    .unwrap_or_else(|| sys.log_with_status("set-aside"));
    let bad = sys.names_in(&sys.bad());
    for (what, name, uid, why) in &hostile {
        let line = set_aside
            .iter()
            .find(|l| l.get("id") == Some(name.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "no set-aside line for {what} ({name}):\n{}",
                    fs::read_to_string(sys.log()).unwrap_or_default()
                )
            });
        assert_eq!(
            line.get("uid"),
            Some(uid.to_string().as_str()),
            "the set-aside line for {what} does not name its owner: {}",
            line.raw
        );
        assert!(
            line.field("reply").contains(why),
            "{what} set aside for another reason than {why:?}: {}",
            line.raw
        );
        assert!(
            bad.contains(name),
            "{what} ({name}) is not in bad/: {bad:?}\n{}",
            line.raw
        );
        assert!(
            fs::symlink_metadata(drop.join(name)).is_err(),
            "{what} ({name}) is still in maildrop/"
        );
    }
    assert_eq!(
        set_aside.len(),
        hostile.len(),
        "set aside more than the hostile drops:\n{set_aside:#?}"
    );
    assert!(
        drop.join(&tmp_name).exists() && !bad.contains(&tmp_name),
        "the .tmp still being written was not left alone"
    );
    assert!(
        service.is_running(),
        "the service stopped\n{}",
        service.report()
    );
}

/// Check 4: another unprivileged user cannot list `maildrop/`, nor read, change, rename or
/// remove nobody's pending drop, nor list the system queue; the drop is then taken
/// whole, as nobody's.
#[test]
fn system_another_user_cannot_reach_nobodys_pending_drop() {
    let sys = System::new(&closed_server(), "");
    // No service yet: the drop waits.
    let msg = message(
        &rcpt(&unique_name("sys-pending")),
        "pending",
        "Mine alone.\n",
    );
    send(&sys, NOBODY, &msg);
    let names = sys.names_in(&sys.maildrop());
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    let path = sys.maildrop().join(name);
    let before = fs::read(&path).unwrap();
    let (_, owner, _) = mode_and_owner(&path);
    assert_eq!(owner, NOBODY.uid, "the drop's owner");

    for (what, script) in [
        ("list maildrop/", r#"ls maildrop"#),
        ("read the drop", r#"cat "maildrop/$1""#),
        ("append to the drop", r#"printf x >> "maildrop/$1""#),
        ("truncate the drop", r#": > "maildrop/$1""#),
        ("rename the drop", r#"mv "maildrop/$1" "maildrop/$1.mine""#),
        ("remove the drop", r#"rm -f "maildrop/$1""#),
    ] {
        let out = sys.shell(EVE, script, &[name]);
        if out.status == Some(0) {
            out.fail(&format!("uid {} could {what}", EVE.uid));
        }
    }
    assert_eq!(fs::read(&path).unwrap(), before, "the drop was changed");

    for user in [EVE, NOBODY] {
        for args in [vec!["list"], vec!["flush"], vec!["remove", name.as_str()]] {
            let mut cmd = sys.submitter(user);
            cmd.arg("queue").args(&args);
            cmd.run().assert_code(77);
        }
    }
    assert!(path.exists(), "the drop is gone");

    sys.serve_cmd(&["--once"]).run().assert_success();
    assert!(!path.exists(), "the drop was not taken");
    let list = sys.admin().args(["queue", "list"]).run();
    list.assert_success()
        .assert_stdout_contains("submitted by: uid 65534 (nobody)");
    assert_eq!(
        entry_ids(&list.stdout_str()),
        std::slice::from_ref(name),
        "{}",
        list.report()
    );
    // Now queued: still nothing for another user, and root may remove it.
    let mut cmd = sys.submitter(EVE);
    cmd.args(["queue", "remove", name]);
    cmd.run().assert_code(77);
    sys.admin()
        .args(["queue", "remove", name])
        .run()
        .assert_success();
    let list = sys.admin().args(["queue", "list"]).run();
    list.assert_success();
    assert!(
        entry_ids(&list.stdout_str()).is_empty(),
        "{}",
        list.report()
    );
}

/// The most messages one flush can have had acknowledged by the server (its 250 in
/// hand or on the way) and not yet recorded as sent: `send_series_on`
/// (src/client/send.rs) sends a message's body with the next message's MAIL, RCPTs
/// and DATA behind it, then reads that message's 250 and settles its entry before
/// the next body goes, so one at a time.
const PIPELINE_DEPTH: usize = 1;

/// A small xorshift generator: the kill times are random, and the seed printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Check 5: 1000 messages from 10 concurrent unprivileged submitters while the service is
/// killed with SIGKILL at random moments and started again: every message arrives,
/// and the duplicates are no more than a kill between a 250 and its record can make.
#[test]
fn system_1000_drops_survive_sigkill_of_the_service() {
    const PROCESSES: u64 = 10;
    const EACH: u64 = 100;
    let started = Instant::now();
    let pf = Postfix::start();
    let sys = System::new(&pf.addr(), "");
    let local = unique_name("sys-kill");
    let to = rcpt(&local);
    let script = r#"
        i=0
        while [ "$i" -lt "$2" ]; do
            n=$(( $1 * $2 + i ))
            printf 'From: <%s>\nTo: <%s>\nSubject: kill test %s\nX-Seq: %s\n\nmessage %s\n' \
                "$4" "$3" "$n" "$n" "$n" | "$5" sendmail -t -i -f "$4" \
                || { echo "message $n: exit $?" >&2; exit 1; }
            i=$((i + 1))
        done
    "#;
    let total = (PROCESSES * EACH) as usize;
    let mut service = sys.serve();
    let submitters: Vec<(u64, Reaped, std::path::PathBuf)> = (0..PROCESSES)
        .map(|k| {
            let user = User::numeric(64010 + k as u32);
            let err = sys.scratch().join(format!("submitter-{k}.err"));
            let file = fs::File::create(&err).unwrap();
            let mut cmd = sys.as_user(user, "/bin/sh");
            cmd.args(["-c", script, "sh"])
                .arg(k.to_string())
                .arg(EACH.to_string())
                .arg(&to)
                .arg(SENDER)
                .arg(env!("CARGO_BIN_EXE_outbox"));
            (k, Reaped(cmd.spawn_with_stderr(file)), err)
        })
        .collect();

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rng = Rng(seed);
    let kills = 8 + rng.below(8) as usize;
    // Half the kills while the drops come in (the service is taking them into the
    // queue), half once it delivers: each of those waits for a message to arrive
    // from the service started after the kill before, so that it falls in a flush,
    // where a kill between a 250 and its record makes a duplicate.
    let mut during_delivery = 0;
    for n in 0..kills {
        if n >= kills / 2 {
            let before = maildir_count(&pf.maildir());
            let delivering = poll(WAIT, || {
                let now = maildir_count(&pf.maildir());
                (now > before || now >= total).then_some(now < total)
            });
            during_delivery += usize::from(delivering == Some(true));
        }
        thread::sleep(Duration::from_millis(100 + rng.below(301)));
        service.kill();
        service = sys.serve();
    }
    for (k, mut child, err) in submitters {
        let status = child.0.wait().unwrap();
        assert!(
            status.success(),
            "submitter {k} failed ({status}):\n{}",
            fs::read_to_string(&err).unwrap_or_default()
        );
    }

    let submitted = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last_nudge = Instant::now();
    let seen = loop {
        let seen = seq_numbers(&pf.messages_now(&local), "X-Seq");
        if seen.len() == total || Instant::now() >= deadline {
            break seen;
        }
        // A retry now for anything a kill left deferred.
        if last_nudge.elapsed() >= Duration::from_millis(500) {
            service.signal(Signal::USR1);
            last_nudge = Instant::now();
        }
        thread::sleep(Duration::from_millis(50));
    };
    let missing: Vec<u64> = (0..total as u64)
        .filter(|n| !seen.contains_key(n))
        .collect();
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    eprintln!(
        "[system] {total} messages, {kills} kills ({during_delivery} while delivering; seed \
         {seed}), {duplicates} duplicates, \
         {} missing; all dropped after {:.1} s, delivered after {:.1} s",
        missing.len(),
        submitted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        missing.is_empty(),
        "{} messages never arrived: {:?}...\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        service.report()
    );
    assert!(
        seen.keys().all(|n| *n < total as u64),
        "a message that was never sent arrived"
    );
    assert!(
        duplicates <= kills * PIPELINE_DEPTH,
        "{duplicates} duplicates after {kills} kills: more than a kill between a 250 and \
         its record can make"
    );
    wait_until(WAIT, "the queue, maildrop/ and incoming/ to empty", || {
        let list = sys.admin().args(["queue", "list"]).run();
        let spool = sys.spool();
        let empty = entry_ids(&list.stdout_str()).is_empty()
            && sys.names_in(&spool.maildrop()).is_empty()
            && sys.names_in(&spool.incoming()).is_empty();
        empty.then_some(())
    });
}

/// Check 6: limits: a message over `max_message_size` gets 73 with a clear message; with
/// `max_queued_per_user = 2` and the relay down, the third gets 75 once the service
/// has published the two; each refusal is logged.
#[test]
fn system_limits_refuse_a_big_message_for_good_and_a_full_queue_for_now() {
    let sys = System::new(
        &closed_server(),
        "max_message_size = 1000\nmax_queued_per_user = 2\n",
    );
    let service = sys.serve();
    wait_until(WAIT, "the limits to be published", || {
        fs::read_to_string(sys.root().join("limits"))
            .ok()
            .filter(|t| t.contains("1000"))
    });

    let to = rcpt(&unique_name("sys-limits"));
    let big = message(&to, "too big", &"0123456789\n".repeat(200));
    let out = sys.sendmail(NOBODY, &["-t", "-i", "-f", SENDER], big.as_bytes());
    out.assert_code(73)
        .assert_stderr_contains("max_message_size");
    let refused = sys.submit_log_lines();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0].field("status"), "refused", "{}", refused[0].raw);
    assert_eq!(refused[0].field("uid"), "65534", "{}", refused[0].raw);
    assert!(
        sys.names_in(&sys.maildrop()).is_empty(),
        "the big message was dropped"
    );

    for n in 1..=2 {
        send(
            &sys,
            NOBODY,
            &message(&to, &format!("small {n}"), "Small.\n"),
        );
    }
    wait_until(WAIT, "users/65534 to show 2 queued", || {
        sys.published_usage(NOBODY.uid)
            .filter(|u| u.get("queued") == Some(&2))
    });
    let third = message(&to, "small 3", "One too many.\n");
    let out = sys.sendmail(NOBODY, &["-t", "-i", "-f", SENDER], third.as_bytes());
    out.assert_code(75).assert_stderr_contains("max_queued");
    let refused: Vec<_> = sys
        .submit_log_lines()
        .into_iter()
        .filter(|l| l.get("status") == Some("refused"))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    let queued = sys.wait_for_status("queued", 2, WAIT, Some(&service));
    assert_eq!(queued.len(), 2, "{queued:#?}");
    // Another user has a queue of their own.
    send(&sys, EVE, &message(&to, "eve's", "Mine.\n"));
}

/// Check 7: SIGTERM while idle: exit 0 within a second. SIGHUP: a changed `server` is used
/// for the next message.
#[test]
fn system_sigterm_stops_at_once_and_sighup_reads_the_configuration_again() {
    let dead = closed_server();
    let sys = System::new(&dead, "");
    let mut service = sys.serve();
    service.signal(Signal::TERM);
    let status = service
        .wait_timeout(Duration::from_secs(1))
        .unwrap_or_else(|| panic!("still running a second after SIGTERM\n{}", service.report()));
    assert_eq!(status.code(), Some(0), "{status}\n{}", service.report());

    let service = sys.serve();
    let before = rcpt(&unique_name("sys-hup-before"));
    send(
        &sys,
        NOBODY,
        &message(&before, "before", "To the dead server.\n"),
    );
    let deferred = sys.wait_for_status("deferred", 1, WAIT, Some(&service));
    assert!(
        deferred[0].field("server").contains(&dead),
        "{}",
        deferred[0].raw
    );

    let pf = Postfix::shared();
    sys.configure(&pf.addr(), "");
    service.signal(Signal::HUP);
    wait_until(WAIT, "the service to read its configuration again", || {
        service.stderr().contains("read again").then_some(())
    });
    let local = unique_name("sys-hup-after");
    let msg = message(&rcpt(&local), "after", "To the new server.\n");
    send(&sys, NOBODY, &msg);
    let msgs = pf.wait_for_messages(&local, 1, WAIT);
    assert_eq!(lossy(&strip_trace_headers(&msgs[0])), msg);
    let sent = sys.wait_for_status("sent", 1, WAIT, Some(&service));
    assert!(
        sent[0].field("server").contains(&pf.addr()),
        "{}",
        sent[0].raw
    );
}

/// Check 8: `-v` names the mode and why: system mode where the spool is set up, personal
/// mode when the caller has a configuration of its own.
#[test]
fn system_verbose_names_the_mode() {
    let pf = Postfix::shared();
    let sys = System::new(&pf.addr(), "");
    let msg = message(&rcpt(&unique_name("sys-mode")), "mode", "Which mode?\n");
    let out = sys.sendmail(NOBODY, &["-v", "-t", "-i", "-f", SENDER], msg.as_bytes());
    out.assert_success();
    // The mode, and why: where the drops go.
    let line = out.stderr_line("* system mode");
    let maildrop = sys.maildrop().display().to_string();
    assert!(line.contains(&maildrop), "{}", out.report());
    assert_eq!(sys.names_in(&sys.maildrop()).len(), 1, "{}", out.report());

    let personal = sys.scratch().join("personal.toml");
    fs::write(
        &personal,
        format!("[default]\nserver = \"{}\"\ntimeout = 10\n", pf.addr()),
    )
    .unwrap();
    fs::set_permissions(&personal, fs::Permissions::from_mode(0o644)).unwrap();
    let local = unique_name("sys-personal");
    let msg = message(&rcpt(&local), "personal", "My own way.\n");
    let mut cmd = sys.submitter(NOBODY);
    cmd.args(["sendmail", "-v", "-t", "-i", "-f", SENDER])
        .env("OUTBOX_CONFIG", &personal)
        .stdin(msg.as_bytes().to_vec());
    let out = cmd.run();
    out.assert_success();
    // The mode, and why: the configuration of this user's own.
    let line = out.stderr_line("* personal mode");
    assert!(
        line.contains(&personal.display().to_string()),
        "{}",
        out.report()
    );
    assert!(
        !out.stderr_str().contains("system mode"),
        "{}",
        out.report()
    );
    pf.wait_for_messages(&local, 1, WAIT);
    assert_eq!(
        sys.names_in(&sys.maildrop()).len(),
        1,
        "the personal message went to the spool"
    );
}

/// The compose face with `--queue`, run by a user without a configuration on a machine
/// set up for system mode, hands the message to the spool too: the service delivers
/// it, as that user's.
#[test]
fn system_compose_with_queue_goes_through_the_spool() {
    let pf = Postfix::shared();
    let sys = System::new(&pf.addr(), "");
    let service = sys.serve();
    let local = unique_name("sys-compose");
    let mut cmd = sys.submitter(NOBODY);
    cmd.args([
        "--queue",
        "-f",
        SENDER,
        "-s",
        "composed",
        "--body",
        "Composed.\n",
    ])
    .arg(rcpt(&local));
    cmd.run().assert_success();
    let msgs = pf.wait_for_messages(&local, 1, WAIT);
    assert!(
        lossy(&msgs[0]).contains("Subject: composed"),
        "{}",
        lossy(&msgs[0])
    );
    let queued = sys.wait_for_status("queued", 1, WAIT, Some(&service));
    assert_eq!(queued[0].field("uid"), "65534", "{}", queued[0].raw);
    let sent = sys.wait_for_status("sent", 1, WAIT, Some(&service));
    assert_eq!(
        sent[0].field("id"),
        queued[0].field("id"),
        "{}",
        sent[0].raw
    );
}

/// SIGTERM while a message is on the wire: the service waits for the server's reply
/// to the final dot, records it, says QUIT and exits 0; the message is sent once and
/// nothing is left queued.
#[test]
fn system_sigterm_during_a_delivery_finishes_the_message_first() {
    // A lock-step server (no PIPELINING) that keeps its 250 for the message back.
    const HELD: Duration = Duration::from_secs(2);
    let fake = FakeServer::start(vec![
        fake::send("220 fake ESMTP\r\n"),
        Step::Line,
        fake::send("250 fake\r\n"),
        Step::Line,
        fake::send("250 ok\r\n"),
        Step::Line,
        fake::send("250 ok\r\n"),
        Step::Line,
        fake::send("354 go on\r\n"),
        Step::Data,
        Step::Silence(HELD),
        fake::send("250 2.0.0 taken\r\n"),
        Step::Line,
        fake::send("221 bye\r\n"),
        Step::Close,
    ]);
    let sys = System::new(fake.addr(), "");
    let mut service = sys.serve_with(&["-v"]);
    let msg = message(
        &rcpt(&unique_name("sys-term")),
        "on the wire",
        "Finish me.\n",
    );
    send(&sys, NOBODY, &msg);
    // The transcript on standard error: once DATA has its 354, the message is going.
    wait_until(WAIT, "the server's 354 in the transcript", || {
        service.stderr().contains("< 354").then_some(())
    });
    let termed = Instant::now();
    service.signal(Signal::TERM);
    let status = service
        .wait_timeout(HELD + WAIT)
        .unwrap_or_else(|| panic!("still running after SIGTERM\n{}", service.report()));
    assert_eq!(status.code(), Some(0), "{status}\n{}", service.report());
    let sent = sys.log_with_status("sent");
    assert_eq!(
        sent.len(),
        1,
        "the message was not finished:\n{}",
        service.report()
    );
    assert!(
        termed.elapsed() >= HELD / 2,
        "the service exited without waiting for the server's reply\n{}",
        service.report()
    );
    let got = lossy(&fake.received());
    assert_eq!(got.matches("Subject: on the wire").count(), 1, "{got}");
    assert!(got.ends_with("QUIT\r\n"), "no QUIT after the reply:\n{got}");
    let list = sys.admin().args(["queue", "list"]).run();
    list.assert_success();
    assert!(
        entry_ids(&list.stdout_str()).is_empty(),
        "{}",
        list.report()
    );
}

/// `max_queued_bytes_per_user`: a message that would take the user over it is refused
/// for now (75) while the relay is down, and one over it alone for good (73).
#[test]
fn system_a_user_over_the_queued_bytes_is_refused() {
    let sys = System::new(&closed_server(), "max_queued_bytes_per_user = 1500\n");
    let _service = sys.serve();
    let to = rcpt(&unique_name("sys-bytes"));
    let first = message(&to, "first", &"0123456789\n".repeat(60));
    send(&sys, NOBODY, &first);
    wait_until(
        WAIT,
        "users/65534 to show the first message's bytes",
        || {
            sys.published_usage(NOBODY.uid)
                .filter(|u| u.get("queued") == Some(&1))
        },
    );
    let second = message(&to, "second", &"0123456789\n".repeat(60));
    let out = sys.sendmail(NOBODY, &["-t", "-i", "-f", SENDER], second.as_bytes());
    out.assert_code(75)
        .assert_stderr_contains("max_queued_bytes_per_user");
    let alone = message(&to, "alone", &"0123456789\n".repeat(200));
    let out = sys.sendmail(NOBODY, &["-t", "-i", "-f", SENDER], alone.as_bytes());
    out.assert_code(73)
        .assert_stderr_contains("max_queued_bytes_per_user");
}

/// SIGHUP with a configuration that does not parse: the service says so, keeps the
/// one it has and goes on delivering with it.
#[test]
fn system_sighup_with_a_broken_configuration_keeps_the_old_one() {
    let pf = Postfix::shared();
    let sys = System::new(&pf.addr(), "");
    let mut service = sys.serve();
    sys.configure(&closed_server(), "this is not = = toml\n");
    service.signal(Signal::HUP);
    wait_until(
        WAIT,
        "the service to refuse the broken configuration",
        || service.stderr().contains("not read again").then_some(()),
    );
    let local = unique_name("sys-hup-broken");
    let msg = message(&rcpt(&local), "old configuration", "Still the old one.\n");
    send(&sys, NOBODY, &msg);
    let msgs = pf.wait_for_messages(&local, 1, WAIT);
    assert_eq!(lossy(&strip_trace_headers(&msgs[0])), msg);
    assert!(service.is_running(), "{}", service.report());
}

/// `outbox serve` run by a user who is neither root nor the spool's owner is refused
/// with 77 and says whom to run it as.
#[test]
fn system_serve_as_another_user_is_refused() {
    let sys = System::new(&closed_server(), "");
    let mut cmd = sys.submitter(NOBODY);
    cmd.arg("serve").arg("--once");
    let out = cmd.run();
    out.assert_code(77).assert_stderr_contains("root");
}

/// A directory a user makes in `maildrop/` (which the service may not move: renaming a
/// directory needs write access to it) is logged once and passed over; it stops
/// neither the service nor the drops after it.
#[test]
fn system_a_directory_in_maildrop_does_not_stop_the_service() {
    let pf = Postfix::shared();
    let sys = System::new(&pf.addr(), "");
    let mut service = sys.serve();
    let name = drop_name();
    sys.shell(MALLORY, r#"umask 027; mkdir "maildrop/$1""#, &[&name])
        .assert_success();
    let local = unique_name("sys-after-dir");
    let msg = message(&rcpt(&local), "after a directory", "Still going.\n");
    send(&sys, NOBODY, &msg);
    pf.wait_for_messages(&local, 1, WAIT);
    send(&sys, NOBODY, &msg);
    pf.wait_for_messages(&local, 2, WAIT);
    assert!(service.is_running(), "{}", service.report());
    // Said once, however many passes meet it, and left where it is.
    let lines: Vec<_> = sys
        .log_with_status("set-aside")
        .into_iter()
        .filter(|l| l.get("id") == Some(name.as_str()))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].field("reply").contains("directory"),
        "{}",
        lines[0].raw
    );
    assert_eq!(lines[0].field("uid"), "64002", "{}", lines[0].raw);
    assert!(sys.maildrop().join(&name).is_dir());
}
