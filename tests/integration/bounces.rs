//! The sendmail contract, end to end against the suite's Postfix: the sendmail
//! face exits 0 once it has taken responsibility for a message, and a recipient
//! refused for good (at submission, at a later flush, or when the queue gives
//! up) comes back to the envelope sender as a bounce: an RFC 3464 report in a
//! `multipart/report` (RFC 6522), sent from the null reverse-path (RFC 5321
//! §4.5.5) through the same server. Never a bounce of a bounce.
//!
//! Each bounce is read back from the Maildir and parsed ([`Dsn`]); its
//! envelope sender is the `Return-Path:` Postfix wrote.

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use mail_parser::DateTime;

use crate::support::dsn::{Dsn, Fields, Returned};
use crate::support::face::{Face, closed_server, entry_detail, entry_ids};
use crate::support::postfix::{HOSTNAME, Postfix, rcpt, strip_trace_headers};
use crate::support::unique_name;

/// How long to wait for a message to reach the Maildir.
const WAIT: Duration = Duration::from_secs(30);
/// How long nothing more may arrive before "exactly N" is believed.
const SETTLE: Duration = Duration::from_millis(1500);

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits for exactly `count` messages to `local`, lets a moment pass, checks that
/// no more came, and parses each as a bounce.
#[track_caller]
fn bounces(pf: &Postfix, local: &str, count: usize) -> Vec<Dsn> {
    pf.wait_for_messages(local, count, WAIT);
    thread::sleep(SETTLE);
    let msgs = pf.messages_now(local);
    assert_eq!(
        msgs.len(),
        count,
        "{} message(s) for {}, expected {count}:\n{}",
        msgs.len(),
        rcpt(local),
        msgs.iter()
            .map(|m| lossy(m))
            .collect::<Vec<_>>()
            .join("\n-----\n")
    );
    msgs.iter().map(|m| Dsn::of(m)).collect()
}

/// Asserts that nothing at all reached `local` (after a moment to arrive).
#[track_caller]
fn assert_no_mail(pf: &Postfix, local: &str) {
    bounces(pf, local, 0);
}

/// Asserts that `value` is an RFC 5322 date-time (RFC 3464 §2.2.5, §2.3.7).
#[track_caller]
fn assert_date(what: &str, value: &str, dsn: &Dsn) {
    assert!(
        DateTime::parse_rfc822(value).is_some_and(|d| d.is_valid()),
        "{what} {value:?} is not a date:\n{}",
        dsn.text()
    );
}

/// Checks what every bounce has: sent from `<>`, To `sender`, a `multipart/report;
/// report-type=delivery-status` from MAILER-DAEMON, `Auto-Submitted: auto-replied`,
/// the per-message fields, and for the refused `refused`: `Action: failed`, `Status:
/// status`, Remote-MTA, a Diagnostic-Code that begins `smtp; diagnostic`, and
/// Last-Attempt-Date. Returns that recipient's block.
#[track_caller]
fn assert_bounce<'a>(
    dsn: &'a Dsn,
    sender: &str,
    refused: &str,
    status: &str,
    diagnostic: &str,
) -> &'a Fields {
    let text = dsn.text();
    assert_eq!(
        dsn.return_path.as_deref(),
        Some("<>"),
        "the bounce's envelope sender is not null:\n{text}"
    );
    assert_eq!(dsn.content_type, "multipart/report", "{text}");
    assert_eq!(
        dsn.report_type.as_deref(),
        Some("delivery-status"),
        "{text}"
    );
    assert!(
        dsn.part_types.len() == 3
            && dsn.part_types[..2] == ["text/plain", "message/delivery-status"],
        "parts {:?}:\n{text}",
        dsn.part_types
    );
    let from = dsn.from.as_deref().unwrap_or_default();
    assert!(
        from.to_ascii_uppercase().starts_with("MAILER-DAEMON@"),
        "From {from:?}:\n{text}"
    );
    assert!(
        dsn.to.iter().any(|t| t == sender),
        "not To {sender}:\n{text}"
    );
    assert_eq!(
        dsn.auto_submitted.as_deref(),
        Some("auto-replied"),
        "{text}"
    );
    assert!(
        dsn.human.contains(refused),
        "the text part does not name {refused}:\n{text}"
    );

    let mta = dsn.per_message.field("Reporting-MTA");
    assert!(
        mta.strip_prefix("dns;")
            .is_some_and(|n| !n.trim().is_empty()),
        "Reporting-MTA {mta:?}:\n{text}"
    );
    assert_date("Arrival-Date", dsn.per_message.field("Arrival-Date"), dsn);
    assert!(
        !dsn.per_message.field("X-Outbox-Queue-ID").is_empty(),
        "{text}"
    );

    assert_eq!(dsn.final_recipients(), [refused], "{text}");
    let r = dsn
        .recipient(refused)
        .unwrap_or_else(|| panic!("no Final-Recipient: rfc822; {refused}:\n{text}"));
    assert_eq!(r.field("Action"), "failed", "{text}");
    assert_eq!(r.field("Status"), status, "{text}");
    let remote = r.field("Remote-MTA");
    let host = remote
        .strip_prefix("dns;")
        .map(str::trim)
        .unwrap_or_default();
    assert!(
        host.contains("127.0.0.1") || host.eq_ignore_ascii_case(HOSTNAME),
        "Remote-MTA {remote:?} names neither the server given nor its greeting:\n{text}"
    );
    let code = r.field("Diagnostic-Code");
    assert!(
        code.starts_with(&format!("smtp; {diagnostic}")),
        "Diagnostic-Code {code:?}, expected \"smtp; {diagnostic}...\":\n{text}"
    );
    assert_date("Last-Attempt-Date", r.field("Last-Attempt-Date"), dsn);
    r
}

/// The returned header block of a bounce; fails unless it is `text/rfc822-headers`.
#[track_caller]
fn returned_headers(dsn: &Dsn) -> &str {
    match &dsn.returned {
        Returned::Headers(h) => h,
        other => panic!(
            "expected text/rfc822-headers, got {other:?}:\n{}",
            dsn.text()
        ),
    }
}

/// Whether a failed entry's `bounce:` line says the bounce went: `sent as ID` (also
/// for one a flush queued and then sent).
fn bounce_went(line: &str) -> bool {
    line.starts_with("sent as ")
}

/// `failed/` holds one entry, and its `bounce:` line says the bounce went.
#[track_caller]
fn assert_one_failed_whose_bounce_went(face: &Face) {
    let failed = face.failed_listing();
    let listing = failed.stdout_str();
    let ids = entry_ids(&listing);
    assert_eq!(ids.len(), 1, "{}", failed.report());
    let bounce = entry_detail(&listing, &ids[0], "bounce")
        .unwrap_or_else(|| failed.fail("no `bounce:` line under the failed entry"));
    assert!(bounce_went(&bounce), "{}", failed.report());
}

/// The `Message-ID:` line's value in a header block.
fn message_id_in(headers: &str) -> Option<&str> {
    headers.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("message-id")
            .then_some(value.trim())
    })
}

/// git send-email as git runs it (`sendmail -i TO CC CC`, no `-f`: the envelope
/// sender is the configured `from`), three messages, one Cc refused: every call
/// exits 0, To and the other Cc get all three byte for byte, and the sender gets
/// one bounce per call, naming the refused Cc and returning that call's headers.
#[test]
fn git_send_email_with_a_refused_cc_exits_0_and_bounces_each_copy() {
    let pf = Postfix::shared();
    let jane = unique_name("bnc-git-jane");
    let to = unique_name("bnc-git-to");
    let cc = unique_name("bnc-git-cc");
    let refused = unique_name("reject-bnc-git");
    let face = Face::new(&pf.addr(), &format!("from = \"{}\"\n", rcpt(&jane)));
    let subjects = [
        "[PATCH 0/2] queue: survive a crash",
        "[PATCH 1/2] queue: fsync the directory after rename",
        "[PATCH 2/2] queue: test the crash",
    ];
    let mut inputs = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let threading = if i == 0 {
            String::new()
        } else {
            "In-Reply-To: <cover.1764633600.git.jane@example.test>\n\
             References: <cover.1764633600.git.jane@example.test>\n"
                .to_owned()
        };
        let id = if i == 0 {
            "<cover.1764633600.git.jane@example.test>".to_owned()
        } else {
            format!("<20261201235900.4242-{i}-jane@example.test>")
        };
        let input = format!(
            "From: Jane Developer <{jane}>\n\
             To: {to}\n\
             Cc: {cc},\n {refused}\n\
             Subject: {subject}\n\
             Date: Tue,  1 Dec 2026 23:59:0{i} +0000\n\
             Message-ID: {id}\n\
             X-Mailer: git-send-email 2.39.5\n\
             {threading}\
             MIME-Version: 1.0\n\
             Content-Transfer-Encoding: 8bit\n\
             \n\
             Patch {i} of 2.\n\
             ..a line that begins with dots\n\
             -- \n\
             2.39.5\n\
             \n",
            jane = rcpt(&jane),
            to = rcpt(&to),
            cc = rcpt(&cc),
            refused = rcpt(&refused),
        );
        let out = face.sendmail_link(
            &["-i", &rcpt(&to), &rcpt(&cc), &rcpt(&refused)],
            input.as_bytes(),
        );
        out.assert_success().assert_stderr_contains(&rcpt(&refused));
        inputs.push((id, input));
    }

    for local in [&to, &cc] {
        let got: BTreeSet<String> = pf
            .wait_for_messages(local, 3, WAIT)
            .iter()
            .map(|raw| lossy(&strip_trace_headers(raw)))
            .collect();
        let sent: BTreeSet<String> = inputs.iter().map(|(_, i)| i.clone()).collect();
        assert_eq!(
            got,
            sent,
            "{} did not get all three byte for byte",
            rcpt(local)
        );
    }
    let mut returned_ids = Vec::new();
    for dsn in bounces(pf, &jane, 3) {
        assert_eq!(dsn.to, [rcpt(&jane)], "{}", dsn.text());
        assert_bounce(&dsn, &rcpt(&jane), &rcpt(&refused), "5.1.1", "550 5.1.1");
        let headers = returned_headers(&dsn);
        returned_ids.push(
            message_id_in(headers)
                .unwrap_or_else(|| panic!("no Message-ID returned:\n{}", dsn.text()))
                .to_owned(),
        );
    }
    returned_ids.sort();
    let mut sent_ids: Vec<String> = inputs.into_iter().map(|(id, _)| id).collect();
    sent_ids.sort();
    assert_eq!(returned_ids, sent_ids, "not one bounce per call");
    assert!(pf.messages_now(&refused).is_empty());
}

/// PHP's mail(): `sendmail -t -i -f sender`, the To refused and a Cc good: exit 0,
/// the Cc has it, the sender a bounce for the To, which returns the headers.
#[test]
fn php_mail_with_a_refused_to_exits_0_and_bounces() {
    let pf = Postfix::shared();
    let shop = unique_name("bnc-php-shop");
    let refused = unique_name("reject-bnc-php");
    let cc = unique_name("bnc-php-cc");
    let face = Face::new(&pf.addr(), "");
    let input = format!(
        "To: {}\n\
         Subject: Your order #1234\n\
         X-PHP-Originating-Script: 33:order.php\n\
         From: Shop <{}>\n\
         Cc: {}\n\
         MIME-Version: 1.0\n\
         Content-type: text/plain; charset=iso-8859-1\n\
         \n\
         Thank you for your order.\n",
        rcpt(&refused),
        rcpt(&shop),
        rcpt(&cc)
    );
    let out = face.sendmail(&["-t", "-i", "-f", &rcpt(&shop)], input.as_bytes());
    out.assert_success().assert_stderr_contains(&rcpt(&refused));
    let got = pf.wait_for_messages(&cc, 1, WAIT);
    assert!(lossy(&got[0]).contains("Subject: Your order #1234"));

    let dsn = &bounces(pf, &shop, 1)[0];
    assert_bounce(dsn, &rcpt(&shop), &rcpt(&refused), "5.1.1", "550 5.1.1");
    let headers = returned_headers(dsn);
    assert!(
        headers.contains("Subject: Your order #1234")
            && headers.contains("X-PHP-Originating-Script: 33:order.php"),
        "{headers}"
    );
    assert!(
        !headers.contains("Thank you"),
        "the body came back in text/rfc822-headers:\n{}",
        dsn.text()
    );
}

/// `-R full` (RET=FULL): a small message comes back whole, as message/rfc822.
#[test]
fn ret_full_returns_the_whole_message() {
    let pf = Postfix::shared();
    let sender = unique_name("bnc-full");
    let refused = unique_name("reject-bnc-full");
    let face = Face::new(&pf.addr(), "");
    let input = format!(
        "From: {}\nTo: {}\nSubject: whole\nMessage-ID: <whole-1@example.test>\n\
         Date: Tue, 1 Dec 2026 23:59:00 +0000\n\nthe body, returned\n",
        rcpt(&sender),
        rcpt(&refused)
    );
    face.sendmail(
        &["-R", "full", "-i", "-f", &rcpt(&sender), &rcpt(&refused)],
        input.as_bytes(),
    )
    .assert_success();
    let dsn = &bounces(pf, &sender, 1)[0];
    assert_bounce(dsn, &rcpt(&sender), &rcpt(&refused), "5.1.1", "550 5.1.1");
    assert_eq!(dsn.part_types[2], "message/rfc822", "{}", dsn.text());
    match &dsn.returned {
        Returned::Message(m) => assert_eq!(
            lossy(m).replace("\r\n", "\n").trim_end(),
            input.trim_end(),
            "the message did not come back whole"
        ),
        other => panic!("{other:?}:\n{}", dsn.text()),
    }
}

/// `-oep` prints the refusal and exits 67, `-oeq` exits 67 quietly; neither
/// bounces. A later `-oem` call from the same sender does, and is the only bounce.
#[test]
fn oep_and_oeq_exit_67_without_a_bounce() {
    let pf = Postfix::shared();
    let sender = unique_name("bnc-oe");
    let good = unique_name("bnc-oe-good");
    let face = Face::new(&pf.addr(), &format!("from = \"{}\"\n", rcpt(&sender)));
    let refused_p = unique_name("reject-bnc-oep");
    let out = face.sendmail(
        &["-oep", "-i", &rcpt(&good), &rcpt(&refused_p)],
        b"Subject: oep\n\nbody\n",
    );
    out.assert_code(67)
        .assert_stderr_contains(&rcpt(&refused_p));
    let refused_q = unique_name("reject-bnc-oeq");
    let out = face.sendmail(
        &["-oeq", "-i", &rcpt(&good), &rcpt(&refused_q)],
        b"Subject: oeq\n\nbody\n",
    );
    out.assert_code(67).assert_stderr_empty();
    pf.wait_for_messages(&good, 2, WAIT);

    let refused_m = unique_name("reject-bnc-oem");
    face.sendmail(
        &["-oem", "-i", &rcpt(&refused_m)],
        b"Subject: oem\n\nbody\n",
    )
    .assert_success();
    let dsn = &bounces(pf, &sender, 1)[0];
    assert_bounce(dsn, &rcpt(&sender), &rcpt(&refused_m), "5.1.1", "550 5.1.1");
}

/// `-oee` and `-oew` are taken as the default, `-oem`: a bounce each, exit 0.
#[test]
fn oee_and_oew_bounce_as_oem() {
    let pf = Postfix::shared();
    let sender = unique_name("bnc-oee");
    let face = Face::new(&pf.addr(), &format!("from = \"{}\"\n", rcpt(&sender)));
    let mut refused = Vec::new();
    for flag in ["-oee", "-oew"] {
        let r = unique_name("reject-bnc-oee");
        face.sendmail(&[flag, "-i", &rcpt(&r)], b"Subject: oe\n\nbody\n")
            .assert_success();
        refused.push(rcpt(&r));
    }
    let mut got: Vec<String> = bounces(pf, &sender, 2)
        .iter()
        .map(|d| {
            let r = d.final_recipients();
            assert_eq!(r.len(), 1, "{}", d.text());
            r[0].clone()
        })
        .collect();
    got.sort();
    refused.sort();
    assert_eq!(got, refused);
}

/// The compose face is a client: a refused recipient is exit 67 and no bounce. But
/// a message it queued (`--queue`, the server down) that is refused at the flush
/// gets one.
#[test]
fn compose_exits_67_without_a_bounce_but_its_queued_message_is_bounced_at_flush() {
    let pf = Postfix::shared();
    let sender = unique_name("bnc-compose");
    let face = Face::new(&pf.addr(), "");
    let now = unique_name("reject-bnc-compose-now");
    face.compose(
        &["-f", &rcpt(&sender), "-s", "now", &rcpt(&now)],
        b"refused now\n",
    )
    .assert_code(67);

    face.configure(&closed_server(), "");
    let later = unique_name("reject-bnc-compose-later");
    face.compose(
        &[
            "--queue",
            "-f",
            &rcpt(&sender),
            "-s",
            "later",
            &rcpt(&later),
        ],
        b"refused later\n",
    )
    .assert_success();
    assert_eq!(face.queued_ids().len(), 1);

    face.configure(&pf.addr(), "");
    face.queue(&["flush"]).assert_success();
    let dsn = &bounces(pf, &sender, 1)[0];
    assert_bounce(dsn, &rcpt(&sender), &rcpt(&later), "5.1.1", "550 5.1.1");
    assert!(returned_headers(dsn).contains("Subject: later"));
}

/// Queued while the server is down; at the flush a 5xx for one recipient (the other
/// is delivered): the entry goes to failed/, one bounce to its sender, and `queue
/// list --failed` says the bounce went.
#[test]
fn a_queued_message_refused_at_flush_is_bounced_once() {
    let pf = Postfix::shared();
    let sender = unique_name("bnc-flush");
    let good = unique_name("bnc-flush-good");
    let refused = unique_name("reject-bnc-flush");
    let face = Face::new(&closed_server(), "");
    face.sendmail(
        &["-i", "-f", &rcpt(&sender), &rcpt(&good), &rcpt(&refused)],
        b"Subject: flushed\n\nbody\n",
    )
    .assert_success();
    assert_eq!(face.queued_ids().len(), 1);

    face.configure(&pf.addr(), "");
    face.queue(&["flush"]).assert_success();
    pf.wait_for_messages(&good, 1, WAIT);
    let dsn = &bounces(pf, &sender, 1)[0];
    assert_bounce(dsn, &rcpt(&sender), &rcpt(&refused), "5.1.1", "550 5.1.1");

    assert!(face.queued_ids().is_empty());
    let failed = face.failed_listing();
    let listing = failed.stdout_str();
    let ids = entry_ids(&listing);
    assert_eq!(ids.len(), 1, "{}", failed.report());
    assert_eq!(
        entry_detail(&listing, &ids[0], "to").as_deref(),
        Some(rcpt(&refused).as_str()),
        "{}",
        failed.report()
    );
    // A second flush does not bounce it again.
    face.queue(&["flush"]).assert_success();
    bounces(pf, &sender, 1);
    // The bounce went during the first flush, and the listing says so.
    let bounce = entry_detail(&listing, &ids[0], "bounce")
        .unwrap_or_else(|| failed.fail("no `bounce:` line under the failed entry"));
    assert!(bounce_went(&bounce), "{}", failed.report());
}

/// An entry older than `queue_lifetime` (here under a second) whose recipient is
/// still deferred: the flush gives it up, it goes to failed/, and its sender gets
/// one bounce with the status of the last reply (450 4.2.0: the problem itself, as
/// RFC 3463 asks and the README says). The flush is `sendmail -q`.
#[test]
fn a_queued_message_past_its_lifetime_is_bounced_with_its_last_reply() {
    let pf = Postfix::shared();
    let sender = unique_name("bnc-expired");
    let deferred = unique_name("defer-bnc-expired");
    let face = Face::new(&closed_server(), "");
    face.sendmail(
        &["-i", "-f", &rcpt(&sender), &rcpt(&deferred)],
        b"Subject: too late\n\nbody\n",
    )
    .assert_success();
    assert_eq!(face.queued_ids().len(), 1);
    thread::sleep(Duration::from_millis(1200));

    face.configure(&pf.addr(), "queue_lifetime = 0.00001\n");
    // `sendmail -q`, the flush as cron jobs written for sendmail run it.
    face.sendmail_link(&["-q"], b"").assert_success();
    let dsn = &bounces(pf, &sender, 1)[0];
    let text = dsn.text();
    assert_eq!(dsn.return_path.as_deref(), Some("<>"), "{text}");
    assert_eq!(dsn.final_recipients(), [rcpt(&deferred)], "{text}");
    let r = dsn.recipient(&rcpt(&deferred)).unwrap();
    assert_eq!(r.field("Action"), "failed", "{text}");
    assert!(returned_headers(dsn).contains("Subject: too late"));

    assert!(face.queued_ids().is_empty());
    assert_one_failed_whose_bounce_went(&face);
    assert_eq!(r.field("Status"), "4.2.0", "{text}");
    assert!(
        r.field("Diagnostic-Code").starts_with("smtp; 450 4.2.0"),
        "{text}"
    );
}

/// An entry past `queue_lifetime` whose last try finds no server (connection
/// refused): given up, and its bounce (queued, as the server is down, and sent by
/// the next flush) says Status 4.4.7, delivery time expired (RFC 3463), with no
/// server reply to quote. A private Postfix, stopped and started again.
#[test]
fn a_queued_message_past_its_lifetime_with_no_server_is_bounced_with_4_4_7() {
    let mut pf = Postfix::builder().start();
    pf.stop();
    let sender = unique_name("bnc-expired-down");
    let to = unique_name("bnc-expired-down-to");
    // About 2.6 s: long enough that the bounce the first flush queues (its time kept
    // in whole seconds) is not itself past it when that flush tries it.
    let face = Face::new(&pf.addr(), "queue_lifetime = 0.00003\n");
    face.sendmail(
        &["-i", "-f", &rcpt(&sender), &rcpt(&to)],
        b"Subject: nobody answered\n\nbody\n",
    )
    .assert_success();
    thread::sleep(Duration::from_millis(2700));
    face.queue(&["flush"]).assert_success();

    pf.start_again();
    face.queue(&["flush"]).assert_success();
    let dsn = &bounces(&pf, &sender, 1)[0];
    let text = dsn.text();
    assert_eq!(dsn.return_path.as_deref(), Some("<>"), "{text}");
    assert_eq!(dsn.final_recipients(), [rcpt(&to)], "{text}");
    let r = dsn.recipient(&rcpt(&to)).unwrap();
    assert_eq!(r.field("Action"), "failed", "{text}");
    assert_eq!(r.field("Status"), "4.4.7", "{text}");
    assert!(
        !r.get("Diagnostic-Code")
            .is_some_and(|d| d.starts_with("smtp;")),
        "a server reply is quoted, though none came:\n{text}"
    );
    assert!(returned_headers(dsn).contains("Subject: nobody answered"));
    assert!(pf.messages_now(&to).is_empty());
    assert!(face.queued_ids().is_empty());
    assert_one_failed_whose_bounce_went(&face);
}

/// A queued message with the null sender (`-f '<>'`, itself a notification) that is
/// refused at the flush: failed/, `bounce: none`, and nothing is sent anywhere. A
/// private Postfix, so its log holds only this test's sessions.
#[test]
fn a_null_sender_entry_that_fails_gets_no_bounce() {
    let mut pf = Postfix::builder().start();
    pf.stop();
    let author = unique_name("bnc-null-author");
    let refused = unique_name("reject-bnc-null");
    let face = Face::new(&pf.addr(), &format!("from = \"{}\"\n", rcpt(&author)));
    let input = format!(
        "From: {}\nTo: {}\nSubject: a notice\n\nbody\n",
        rcpt(&author),
        rcpt(&refused)
    );
    face.sendmail(&["-i", "-f", "<>", &rcpt(&refused)], input.as_bytes())
        .assert_success();
    assert_eq!(face.queued_ids().len(), 1);

    pf.start_again();
    face.queue(&["flush"]).assert_success();
    let failed = face.failed_listing();
    let listing = failed.stdout_str();
    let ids = entry_ids(&listing);
    assert_eq!(ids.len(), 1, "{}", failed.report());
    let bounce = entry_detail(&listing, &ids[0], "bounce")
        .unwrap_or_else(|| failed.fail("no `bounce:` line under the failed entry"));
    assert!(bounce.starts_with("none"), "{}", failed.report());

    assert_no_mail(&pf, &author);
    let log = pf.maillog();
    let rejects = log
        .lines()
        .filter(|l| l.contains("NOQUEUE: reject: RCPT"))
        .count();
    assert_eq!(
        rejects, 1,
        "one refusal expected, the message's own:\n{log}"
    );
    assert!(
        !log.contains("status=sent"),
        "something was delivered:\n{log}"
    );
}

/// The sender itself is refused: the message's bounce is refused too. It is kept in
/// failed/ and not bounced again; Postfix sees exactly one bounce attempt, and a
/// later flush does not try it again.
#[test]
fn a_refused_bounce_is_kept_in_failed_and_not_bounced_again() {
    let pf = Postfix::shared();
    let sender = unique_name("reject-bnc-sender");
    let refused = unique_name("reject-bnc-loop");
    let face = Face::new(&pf.addr(), "");
    // A loop would not end: the harness's limit stops it and fails the test.
    let out = face
        .sendmail_cmd(
            &["-i", "-f", &rcpt(&sender), &rcpt(&refused)],
            b"Subject: loop\n\nbody\n",
        )
        .timeout(Duration::from_secs(30))
        .run();
    let bounce_attempts = || {
        let log = pf.maillog();
        log.lines()
            .filter(|l| l.contains(&format!("from=<> to=<{}>", rcpt(&sender))))
            .count()
    };
    thread::sleep(SETTLE);
    assert_eq!(bounce_attempts(), 1, "{}", pf.maillog_tail(40));

    assert!(
        face.queued_ids().is_empty(),
        "the refused bounce waits for a retry"
    );
    let failed = face.failed_listing();
    let listing = failed.stdout_str();
    let kept = entry_ids(&listing)
        .into_iter()
        .find(|id| entry_detail(&listing, id, "to").as_deref() == Some(rcpt(&sender).as_str()))
        .unwrap_or_else(|| failed.fail("the refused bounce is not in failed/"));
    let bounce = entry_detail(&listing, &kept, "bounce")
        .unwrap_or_else(|| failed.fail("no `bounce:` line under the refused bounce"));
    assert!(bounce.starts_with("none"), "{}", failed.report());

    face.queue(&["flush"]).assert_success();
    thread::sleep(SETTLE);
    assert_eq!(bounce_attempts(), 1, "{}", pf.maillog_tail(40));
    // The refusal was taken care of (a bounce tried, then kept): outbox took
    // responsibility for the message, which is what 0 says to an MTA's caller.
    // Checked last, so that a failure here says the rest held.
    out.assert_success();
}

/// `bounce_to`: a refused message from the null sender gets no bounce, but a notice
/// goes to bounce_to. Without `bounce_copy`, an ordinary bounce is not copied there.
#[test]
fn bounce_to_gets_the_notice_for_a_null_sender() {
    let pf = Postfix::shared();
    let admin = unique_name("bnc-admin");
    let sender = unique_name("bnc-admin-user");
    let face = Face::new(&pf.addr(), &format!("bounce_to = \"{}\"\n", rcpt(&admin)));
    let refused = unique_name("reject-bnc-admin");
    face.sendmail(
        &["-i", "-f", "<>", &rcpt(&refused)],
        b"Subject: from nobody\n\nbody\n",
    )
    .assert_success();
    let notice = pf.wait_for_messages(&admin, 1, WAIT).remove(0);
    let text = lossy(&notice);
    assert!(
        text.contains("Return-Path: <>"),
        "the notice is not from <>:\n{text}"
    );
    assert!(
        text.contains(&rcpt(&refused)) && text.contains("550 5.1.1"),
        "the notice does not say who was refused and why:\n{text}"
    );

    let refused2 = unique_name("reject-bnc-admin");
    face.sendmail(
        &["-i", "-f", &rcpt(&sender), &rcpt(&refused2)],
        b"Subject: ordinary\n\nbody\n",
    )
    .assert_success();
    let dsn = &bounces(pf, &sender, 1)[0];
    assert_bounce(dsn, &rcpt(&sender), &rcpt(&refused2), "5.1.1", "550 5.1.1");
    assert_eq!(pf.messages_now(&admin).len(), 1, "bounce_to got a copy");
}

/// `bounce_copy = true`: bounce_to gets a copy of each bounce.
#[test]
fn bounce_copy_sends_bounce_to_a_copy() {
    let pf = Postfix::shared();
    let admin = unique_name("bnc-copy-admin");
    let sender = unique_name("bnc-copy-user");
    let refused = unique_name("reject-bnc-copy");
    let face = Face::new(
        &pf.addr(),
        &format!("bounce_to = \"{}\"\nbounce_copy = true\n", rcpt(&admin)),
    );
    face.sendmail(
        &["-i", "-f", &rcpt(&sender), &rcpt(&refused)],
        b"Subject: copied\n\nbody\n",
    )
    .assert_success();
    let dsn = &bounces(pf, &sender, 1)[0];
    assert_bounce(dsn, &rcpt(&sender), &rcpt(&refused), "5.1.1", "550 5.1.1");
    let copy = &bounces(pf, &admin, 1)[0];
    let text = copy.text();
    assert_eq!(copy.return_path.as_deref(), Some("<>"), "{text}");
    assert_eq!(copy.final_recipients(), [rcpt(&refused)], "{text}");
    assert_eq!(
        copy.per_message.get("X-Outbox-Queue-ID"),
        dsn.per_message.get("X-Outbox-Queue-ID"),
        "the copy is of another message:\n{text}"
    );
    // The copy goes in the envelope alone: the sender is not shown the admin.
    assert_eq!(dsn.to, [rcpt(&sender)], "{}", dsn.text());
}

/// A refusal after the data (here Postfix's header_checks: 550 5.7.1 at the final
/// dot) refuses the message for every recipient: exit 0, and one bounce naming both,
/// with the reply that came after the data.
#[test]
fn a_refusal_after_the_data_is_bounced_for_every_recipient() {
    let checks = crate::support::TempDir::new("outbox-header-checks");
    let table = checks.join("header_checks");
    std::fs::write(
        &table,
        "/^X-Refuse-Me:/ REJECT 5.7.1 refused after the data\n",
    )
    .unwrap();
    let pf = Postfix::builder()
        .main_cf("header_checks", &format!("regexp:{}", table.display()))
        .main_cf("nested_header_checks", "")
        .start();
    let sender = unique_name("bnc-data");
    let one = unique_name("bnc-data-one");
    let two = unique_name("bnc-data-two");
    let face = Face::new(&pf.addr(), "");
    let out = face.sendmail(
        &["-i", "-f", &rcpt(&sender), &rcpt(&one), &rcpt(&two)],
        b"Subject: refused whole\nX-Refuse-Me: yes\n\nbody\n",
    );
    out.assert_success()
        .assert_stderr_contains("refused after the data");
    let dsn = &bounces(&pf, &sender, 1)[0];
    let text = dsn.text();
    assert_eq!(dsn.return_path.as_deref(), Some("<>"), "{text}");
    assert_eq!(dsn.content_type, "multipart/report", "{text}");
    assert_eq!(dsn.final_recipients(), [rcpt(&one), rcpt(&two)], "{text}");
    for r in &dsn.recipients {
        assert_eq!(r.field("Action"), "failed", "{text}");
        assert_eq!(r.field("Status"), "5.7.1", "{text}");
        assert!(
            r.field("Diagnostic-Code")
                .starts_with("smtp; 550 5.7.1 refused after the data"),
            "{text}"
        );
    }
    assert!(returned_headers(dsn).contains("X-Refuse-Me: yes"), "{text}");
    assert!(pf.messages_now(&one).is_empty() && pf.messages_now(&two).is_empty());
}
