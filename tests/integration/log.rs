//! The log of every outcome, read back: one line per recipient group and attempt,
//! to a file (`log = "/path"`, `$OUTBOX_LOG`) or as datagrams to a syslog socket
//! (here a private one, [`SyslogSink`], named by `syslog_socket`), with the
//! fields an admin asks for (queue id, uid, from, to, server, peer, TLS, AUTH
//! user, size, delay, status, enhanced code, reply). The password never shows,
//! and a log that cannot be written never stops the mail.

use std::fs;
use std::thread;
use std::time::Duration;

use base64::Engine as _;

use crate::support::aiosmtpd::{Mode, SmtpServer};
use crate::support::dsn::Dsn;
use crate::support::face::{Face, closed_server, entry_ids};
use crate::support::outbox_log::{LogLine, parse_datagrams, parse_file};
use crate::support::postfix::{Postfix, rcpt};
use crate::support::syslog::SyslogSink;
use crate::support::tls::TestPki;
use crate::support::{Output, unique_name};

const WAIT: Duration = Duration::from_secs(30);
/// Facility mail (2) × 8 + severity info (6) or warning (4), RFC 5424 §6.2.1 and
/// RFC 3164 §4.1.1.
const MAIL_INFO: u8 = 22;
const MAIL_WARNING: u8 = 20;

/// Asserts that every datagram went with facility mail, at the severity the README
/// gives: info for sent and deferred mail, warning for bounces and expiries (mail
/// that will not arrive). Checked after the fields, so a test says first what is
/// wrong with them.
#[track_caller]
fn assert_mail_priorities(lines: &[LogLine]) {
    let wrong: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            let want = match l.get("status") {
                Some("bounced" | "expired") => MAIL_WARNING,
                _ => MAIL_INFO,
            };
            (l.pri != Some(want)).then(|| format!("expected <{want}>: {}", l.raw))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The real uid of this process, which the child inherits.
fn my_uid() -> String {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .unwrap()
        .to_owned()
}

/// The one line whose `key` is `value`; fails with every line when there is not
/// exactly one.
#[track_caller]
fn one_line<'a>(lines: &'a [LogLine], key: &str, value: &str) -> &'a LogLine {
    let found: Vec<&LogLine> = lines.iter().filter(|l| l.get(key) == Some(value)).collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!(
            "expected one log line with {key}={value}, found {}:\n{}",
            found.len(),
            all(lines)
        ),
    }
}

fn all(lines: &[LogLine]) -> String {
    lines
        .iter()
        .map(|l| l.raw.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks the fields every line has, as sent by `sender` to the server at `server`.
#[track_caller]
fn assert_common(line: &LogLine, sender: &str, server: &str) {
    let raw = &line.raw;
    assert!(!line.field("id").is_empty(), "{raw}");
    assert_eq!(line.field("uid"), my_uid(), "{raw}");
    assert!(!line.field("user").is_empty(), "{raw}");
    assert_eq!(line.field("from"), format!("<{sender}>"), "{raw}");
    // The name given (the port may be shown apart), and the address connected.
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    assert!(line.field("server").contains(host), "{raw}");
    assert_eq!(line.field("peer"), server, "{raw}");
    // Neither TLS nor AUTH here: a field that is there must not claim them.
    if let Some(tls) = line.get("tls") {
        assert!(!tls.contains("TLSv"), "{raw}");
    }
    if let Some(auth) = line.get("auth") {
        assert!(["none", "no", "-", ""].contains(&auth), "{raw}");
    }
    assert!(
        line.field("size").parse::<u64>().is_ok_and(|n| n > 0),
        "{raw}"
    );
    assert!(
        line.field("delay")
            .starts_with(|c: char| c.is_ascii_digit()),
        "{raw}"
    );
}

/// `sendmail -i -f sender good refused` through Postfix: the three outcomes (the
/// good one sent, the refused one bounced, the bounce sent) and their fields.
#[track_caller]
fn assert_three_outcomes(lines: &[LogLine], pf: &Postfix, sender: &str, good: &str, refused: &str) {
    let server = pf.addr();
    assert_eq!(
        lines.len(),
        3,
        "one line per outcome expected:\n{}",
        all(lines)
    );
    let sent = one_line(lines, "to", &format!("<{good}>"));
    assert_common(sent, sender, &server);
    assert_eq!(sent.field("status"), "sent", "{}", sent.raw);
    assert_eq!(sent.field("dsn"), "2.0.0", "{}", sent.raw);
    // Postfix says "Ok: queued as ID" after DATA, "Ok: N bytes queued as ID" after BDAT.
    let reply = sent.field("reply");
    let queued_as = sent.field("queued_as");
    assert!(
        reply.starts_with("250 2.0.0 Ok: ")
            && reply.ends_with(&format!("queued as {queued_as}"))
            && !queued_as.is_empty(),
        "{}",
        sent.raw
    );

    let bounced = one_line(lines, "to", &format!("<{refused}>"));
    assert_common(bounced, sender, &server);
    assert_eq!(bounced.field("status"), "bounced", "{}", bounced.raw);
    assert_eq!(bounced.field("dsn"), "5.1.1", "{}", bounced.raw);
    assert!(
        bounced.field("reply").starts_with(&format!(
            "550 5.1.1 <{refused}>: Recipient address rejected"
        )),
        "{}",
        bounced.raw
    );
    assert_eq!(bounced.field("id"), sent.field("id"), "{}", all(lines));
    let bounce_id = bounce_id_of(bounced);

    let bounce = one_line(lines, "from", "<>");
    assert_eq!(bounce.field("to"), format!("<{sender}>"), "{}", bounce.raw);
    assert_eq!(bounce.field("status"), "sent", "{}", bounce.raw);
    assert_eq!(bounce.field("id"), bounce_id, "{}", all(lines));
    assert!(lines.iter().all(|l| l.pid == sent.pid), "{}", all(lines));
}

/// The bounce's id in a line's `bounce=` (`ID`, or `sent as ID`, `queued as ID`);
/// fails when the field says there was none.
#[track_caller]
fn bounce_id_of(line: &LogLine) -> &str {
    let value = line.field("bounce");
    let id = value.rsplit(' ').next().unwrap_or_default();
    assert!(
        !value.starts_with("none") && id.starts_with(|c: char| c.is_ascii_digit()),
        "no bounce id in {}",
        line.raw
    );
    id
}

/// The bounce `sender` got, whose X-Outbox-Queue-ID must be the logged `id`.
#[track_caller]
fn assert_bounce_names(pf: &Postfix, sender_local: &str, id: &str) {
    let raw = pf.wait_for_messages(sender_local, 1, WAIT).remove(0);
    let dsn = Dsn::of(&raw);
    assert_eq!(
        dsn.per_message.get("X-Outbox-Queue-ID"),
        Some(id),
        "{}",
        dsn.text()
    );
}

/// `$OUTBOX_LOG` names a file: a line per outcome, naming the bounce (its
/// X-Outbox-Queue-ID is the line's id) and the copy kept in failed/.
#[test]
fn a_log_file_has_a_line_per_outcome() {
    let pf = Postfix::shared();
    let sender = unique_name("log-file");
    let good = unique_name("log-file-good");
    let refused = unique_name("reject-log-file");
    let face = Face::new(&pf.addr(), "");
    let path = face.env.root().join("explicit.log");
    let mut cmd = face.sendmail_cmd(
        &["-i", "-f", &rcpt(&sender), &rcpt(&good), &rcpt(&refused)],
        b"Subject: logged\n\nbody\n",
    );
    cmd.env("OUTBOX_LOG", &path);
    cmd.run().assert_success();
    pf.wait_for_messages(&good, 1, WAIT);
    let lines = parse_file(&fs::read_to_string(&path).unwrap());
    assert_three_outcomes(&lines, pf, &rcpt(&sender), &rcpt(&good), &rcpt(&refused));
    let id = one_line(&lines, "status", "bounced").field("id");
    assert_bounce_names(pf, &sender, id);
    // The refused copy kept in failed/ is named by the log line that refused it.
    let failed = face.failed_listing();
    let kept = entry_ids(&failed.stdout_str());
    let bounced = one_line(&lines, "status", "bounced");
    assert!(
        kept.len() == 1 && bounced.fields.iter().any(|(_, v)| v.ends_with(&kept[0])),
        "the log line does not name the copy kept in failed/:\n{}\n{}",
        bounced.raw,
        failed.report()
    );
}

/// With no `log` set, the sendmail face logs to syslog (here `syslog_socket`).
#[test]
fn the_sendmail_face_logs_to_syslog_by_default() {
    let pf = Postfix::shared();
    let sink = SyslogSink::bind();
    let sender = unique_name("log-syslog");
    let good = unique_name("log-syslog-good");
    let refused = unique_name("reject-log-syslog");
    let face = Face::new(
        &pf.addr(),
        &format!("syslog_socket = \"{}\"\n", sink.path().display()),
    )
    .log_from_config();
    face.sendmail(
        &["-i", "-f", &rcpt(&sender), &rcpt(&good), &rcpt(&refused)],
        b"Subject: logged\n\nbody\n",
    )
    .assert_success();
    let lines = parse_datagrams(&sink.wait_for(3, WAIT));
    assert_three_outcomes(&lines, pf, &rcpt(&sender), &rcpt(&good), &rcpt(&refused));
    assert_bounce_names(
        pf,
        &sender,
        one_line(&lines, "status", "bounced").field("id"),
    );
    assert_mail_priorities(&lines);
}

/// The compose face logs only when `log` is set.
#[test]
fn the_compose_face_logs_only_when_configured() {
    let pf = Postfix::shared();
    let sink = SyslogSink::bind();
    let to = unique_name("log-compose");
    let socket = format!("syslog_socket = \"{}\"\n", sink.path().display());
    let face = Face::new(&pf.addr(), &socket).log_from_config();
    face.compose(
        &["-f", "me@example.test", "-s", "quiet", &rcpt(&to)],
        b"x\n",
    )
    .assert_success();
    pf.wait_for_messages(&to, 1, WAIT);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.datagrams(), Vec::<String>::new());

    face.configure(&pf.addr(), &format!("{socket}log = \"syslog\"\n"));
    face.compose(
        &["-f", "me@example.test", "-s", "logged", &rcpt(&to)],
        b"x\n",
    )
    .assert_success();
    let lines = parse_datagrams(&sink.wait_for(1, WAIT));
    assert_eq!(lines.len(), 1, "{}", all(&lines));
    assert_common(&lines[0], "me@example.test", &pf.addr());
    assert_eq!(lines[0].field("to"), format!("<{}>", rcpt(&to)));
    assert_eq!(lines[0].field("status"), "sent");
    assert_mail_priorities(&lines);
}

/// `-f '<>'` and a refused recipient: exit 0, no bounce, the refusal logged with
/// `bounce=none (...)`.
#[test]
fn a_null_sender_refusal_is_logged_and_not_bounced() {
    let pf = Postfix::shared();
    let refused = unique_name("reject-log-null");
    let face = Face::new(&pf.addr(), "").log_from_config();
    let path = face.env.root().join("configured.log");
    face.configure(&pf.addr(), &format!("log = \"{}\"\n", path.display()));
    face.sendmail(
        &["-i", "-f", "<>", &rcpt(&refused)],
        b"Subject: n\n\nbody\n",
    )
    .assert_success();
    let lines = parse_file(&fs::read_to_string(&path).unwrap());
    assert_eq!(lines.len(), 1, "{}", all(&lines));
    let l = &lines[0];
    assert_eq!(l.field("from"), "<>", "{}", l.raw);
    assert_eq!(l.field("to"), format!("<{}>", rcpt(&refused)), "{}", l.raw);
    assert_eq!(l.field("status"), "bounced", "{}", l.raw);
    assert_eq!(l.field("dsn"), "5.1.1", "{}", l.raw);
    assert!(l.field("bounce").starts_with("none ("), "{}", l.raw);
}

/// A queue and its flush log every attempt: deferred at submission (server down),
/// then at the flush, one entry sent and one given up (`expired`, 4.4.7, bounced).
/// The flush logs to syslog by default, as the sendmail face does.
#[test]
fn the_queue_and_its_flush_log_each_attempt() {
    let pf = Postfix::shared();
    let sink = SyslogSink::bind();
    let sender = unique_name("log-flush");
    let good = unique_name("log-flush-good");
    let deferred = unique_name("defer-log-flush");
    let socket = format!("syslog_socket = \"{}\"\n", sink.path().display());
    let face = Face::new(&closed_server(), &socket).log_from_config();
    for to in [&good, &deferred] {
        face.sendmail(
            &["-i", "-f", &rcpt(&sender), &rcpt(to)],
            b"Subject: q\n\nbody\n",
        )
        .assert_success();
    }
    let queued = parse_datagrams(&sink.wait_for(2, WAIT));
    assert_eq!(queued.len(), 2, "{}", all(&queued));
    assert!(
        queued.iter().all(|l| l.get("status") == Some("deferred")),
        "{}",
        all(&queued)
    );
    thread::sleep(Duration::from_millis(1200));

    face.configure(&pf.addr(), &format!("{socket}queue_lifetime = 0.00001\n"));
    face.queue(&["flush"]).assert_success();
    pf.wait_for_messages(&good, 1, WAIT);
    pf.wait_for_messages(&sender, 1, WAIT);
    let lines = parse_datagrams(&sink.datagrams());
    let flush = &lines[2..];
    let sent = one_line(flush, "to", &format!("<{}>", rcpt(&good)));
    assert_eq!(sent.field("status"), "sent", "{}", sent.raw);
    let expired = one_line(flush, "to", &format!("<{}>", rcpt(&deferred)));
    assert_eq!(expired.field("status"), "expired", "{}", expired.raw);
    // The status of the last reply, as the bounce gives it (RFC 3463 on X.4.7).
    assert_eq!(expired.field("dsn"), "4.2.0", "{}", expired.raw);
    let bounce = one_line(flush, "from", "<>");
    assert_eq!(bounce.field("status"), "sent", "{}", bounce.raw);
    assert_eq!(bounce.field("id"), bounce_id_of(expired), "{}", all(&lines));
    // An admin can follow the message from submission to delivery: the flush logs
    // the queue entry's id, which the submission's line gave as its id or `queued=`.
    let at_submission = one_line(&queued, "to", &format!("<{}>", rcpt(&good)));
    let entry = at_submission
        .get("queued")
        .unwrap_or_else(|| at_submission.field("id"));
    assert_eq!(
        sent.field("id"),
        entry,
        "the flush logs another id than the submission gave for the entry:\n{}",
        all(&lines)
    );
    assert_mail_priorities(&lines);
}

/// Over STARTTLS with AUTH PLAIN and a password from `password_command`, to a log
/// file and then to syslog: `auth=USER`, the TLS version, and neither the password
/// nor its base64 form anywhere in the log or on stderr.
#[test]
fn the_password_never_appears_in_the_log() {
    let password = format!("pw-{}-s3cr3t", unique_name("x"));
    let server = SmtpServer::builder()
        .mode(Mode::StartTls)
        .auth(&["PLAIN"])
        .user("alice", &password)
        .start();
    let sink = SyslogSink::bind();
    let face = Face::new("localhost:1", "").log_from_config();
    let pw_file = face.env.write_file("pw", format!("{password}\n"));
    let path = face.env.root().join("configured.log");
    let port = server.port();
    let account = format!(
        "tls = \"starttls\"\ntls_ca_file = \"{}\"\nuser = \"alice\"\nauth = \"plain\"\n\
         password_command = \"cat {}\"\nsyslog_socket = \"{}\"\n",
        TestPki::shared().ca_cert().display(),
        pw_file.display(),
        sink.path().display()
    );
    let server_name = format!("localhost:{port}");
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{password}"));
    let secrets = [password.as_str(), plain.as_str()];
    let check = |out: &Output, lines: &[LogLine]| {
        out.assert_success();
        for s in secrets {
            assert!(!out.stderr_str().contains(s), "{}", out.report());
            assert!(lines.iter().all(|l| !l.raw.contains(s)), "{}", all(lines));
        }
        assert_eq!(lines.len(), 1, "{}", all(lines));
        let l = &lines[0];
        assert_eq!(l.field("auth"), "alice", "{}", l.raw);
        assert!(l.field("tls").contains("TLSv1."), "{}", l.raw);
        assert_eq!(l.field("status"), "sent", "{}", l.raw);
        assert!(l.field("server").contains("localhost"), "{}", l.raw);
    };

    face.configure(
        &server_name,
        &format!("{account}log = \"{}\"\n", path.display()),
    );
    let out = face.sendmail(
        &["-i", "-f", "a@example.test", "b@example.test"],
        b"Subject: a\n\nx\n",
    );
    let text = fs::read_to_string(&path).unwrap_or_default();
    check(&out, &parse_file(&text));

    face.configure(&server_name, &format!("{account}log = \"syslog\"\n"));
    let out = face.sendmail(
        &["-i", "-f", "a@example.test", "b@example.test"],
        b"Subject: b\n\nx\n",
    );
    let lines = parse_datagrams(&sink.wait_for(1, WAIT));
    check(&out, &lines);
    assert_mail_priorities(&lines);
    let got = server.wait_for_messages(2, WAIT);
    assert!(
        got.iter()
            .all(|m| m.auth_user.as_deref() == Some("alice") && m.tls)
    );
}

/// `sendmail -i -f sender good refused` with a log that cannot be written: exit 0,
/// the good one delivered, the bounce sent, and one warning on stderr (beside the
/// refusal) that names `place`, not one per line the log missed.
#[track_caller]
fn assert_mail_goes_and_one_warning(
    face: &Face,
    place: &std::path::Path,
    out_of: impl Fn(&Face, &[&str]) -> Output,
) {
    let pf = Postfix::shared();
    let sender = unique_name("log-broken");
    let good = unique_name("log-broken-good");
    let refused = unique_name("reject-broken");
    let out = out_of(
        face,
        &["-i", "-f", &rcpt(&sender), &rcpt(&good), &rcpt(&refused)],
    );
    out.assert_success();
    pf.wait_for_messages(&good, 1, WAIT);
    pf.wait_for_messages(&sender, 1, WAIT);
    let stderr = out.stderr_str();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains(&rcpt(&refused)) && !l.trim().is_empty())
        .collect();
    assert_eq!(warnings.len(), 1, "one warning expected:\n{}", out.report());
    assert!(
        warnings[0].to_ascii_lowercase().contains("log")
            && warnings[0].contains(&place.display().to_string()),
        "the warning does not say it is about the log at {}:\n{}",
        place.display(),
        out.report()
    );
}

#[test]
fn no_syslog_socket_warns_once_and_mail_still_goes() {
    let pf = Postfix::shared();
    let socket = face_missing_dir(&unique_name("nosock")).join("log");
    let face = Face::new(
        &pf.addr(),
        &format!(
            "log = \"syslog\"\nsyslog_socket = \"{}\"\n",
            socket.display()
        ),
    )
    .log_from_config();
    assert_mail_goes_and_one_warning(&face, &socket, |f, args| {
        f.sendmail(args, b"Subject: s\n\nx\n")
    });
}

#[test]
fn an_unwritable_log_file_warns_once_and_mail_still_goes() {
    let pf = Postfix::shared();
    let face = Face::new(&pf.addr(), "");
    for place in [
        face_missing_dir(&unique_name("nodir")).join("outbox.log"),
        "/dev/full".into(),
    ] {
        assert_mail_goes_and_one_warning(&face, &place, |f, args| {
            let mut cmd = f.sendmail_cmd(args, b"Subject: f\n\nx\n");
            cmd.env("OUTBOX_LOG", &place);
            cmd.run()
        });
    }
}

/// A directory that does not exist (and cannot be made by accident: its parent
/// is missing too).
fn face_missing_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(format!("/nonexistent-outbox-test/{name}"));
    assert!(!dir.exists());
    dir
}
