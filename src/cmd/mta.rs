//! What a face does as an MTA besides sending: it knows who runs it and where its log
//! goes, and writes a line for each outcome of an attempt, one per group of recipients
//! that fared alike (as Postfix's smtp(8) and msmtp log).

use std::path::Path;
use std::time::SystemTime;

use outbox::envelope::Address;
use outbox::log::{self, Line, Log, Status, Target};
use outbox::outcome::{Outcome, Refusal};
use outbox::smtp::reply::Reply;
use outbox::{Envelope, Report, Settings};

/// The log, and who runs outbox.
pub struct Mta {
    pub log: Log,
    pub uid: u32,
    pub user: Option<String>,
}

/// Where a face logs when the configuration does not say.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LogDefault {
    /// The sendmail face and the queue flush: to syslog, as an MTA does.
    Syslog,
    /// The compose face: only when configured.
    Nowhere,
}

impl Mta {
    pub fn new(settings: &Settings, default: LogDefault) -> Mta {
        let target = settings.log.clone().unwrap_or_else(|| match default {
            LogDefault::Syslog => Target::Syslog(
                settings
                    .syslog_socket
                    .clone()
                    .unwrap_or_else(|| Path::new(log::DEFAULT_SYSLOG_SOCKET).to_owned()),
            ),
            LogDefault::Nowhere => Target::None,
        });
        let (uid, user) = log::local_user();
        Mta {
            log: Log::new(target),
            uid,
            user,
        }
    }

    /// Who submitted, for a bounce: "uid 1000 (alice)". `uid` is the submitter
    /// recorded in a system queue's entry; without one, it is who runs outbox.
    pub fn submitter(&self, uid: Option<u32>) -> String {
        let (uid, user) = self.who(uid);
        outbox::passwd::describe(uid, user.as_deref())
    }

    /// The uid and login name of the submitter: `uid` when an entry records one
    /// (the service logs for other users), else who runs outbox.
    fn who(&self, uid: Option<u32>) -> (u32, Option<String>) {
        match uid {
            Some(uid) if uid != self.uid => (uid, outbox::passwd::name_of(uid)),
            _ => (self.uid, self.user.clone()),
        }
    }

    /// Logs what `outcome` says of each recipient of one attempt: the accepted as
    /// sent; the refusals, grouped by their reply, as deferred or (for good) bounced,
    /// with `bounce` (what became of the bounce) noted on the latter.
    pub fn log_outcome(&self, attempt: &Attempt, outcome: &Outcome, bounce: Option<&str>) {
        if !outcome.accepted.is_empty() {
            let reply = outcome.accepted_reply.as_ref();
            let mut line = self.line(attempt, outcome.accepted.clone(), Status::Sent, reply);
            line.queued_as = reply.and_then(outbox::report::queue_id);
            if line.reply.is_empty() {
                line.reply = "accepted".into();
            }
            self.log.write(&line);
        }
        for permanent in [false, true] {
            let refusals = outcome.refusals.iter().filter(|r| r.permanent == permanent);
            for (reason, reply, to) in by_reason(refusals) {
                let status = if permanent {
                    Status::Bounced
                } else {
                    Status::Deferred
                };
                let mut line = self.line(attempt, to, status, reply);
                line.reply = reason.to_owned();
                if let Some(queued) = attempt
                    .queued
                    .as_ref()
                    .filter(|q| !permanent && **q != attempt.id)
                {
                    line.notes.push(("queued", queued.clone()));
                }
                if let (true, Some(bounce)) = (permanent, bounce) {
                    line.notes.push(("bounce", bounce.to_owned()));
                }
                if let Some(kept) = attempt
                    .kept
                    .as_ref()
                    .filter(|k| permanent && **k != attempt.id)
                {
                    line.notes.push(("kept", kept.clone()));
                }
                self.log.write(&line);
            }
        }
    }

    /// Logs that the recipients `outcome` has to retry were given up (`why`), one
    /// line per reply: its status, as the bounce gives it, else X.4.7 (RFC 3463).
    pub fn log_expired(&self, attempt: &Attempt, outcome: &Outcome, why: &str, bounce: &str) {
        for (reason, reply, to) in by_reason(outcome.temporary()) {
            let mut line = self.line(attempt, to, Status::Expired, reply);
            line.dsn = Some(reply.map_or_else(
                || outbox::bounce::EXPIRED.to_owned(),
                outbox::bounce::status_of,
            ));
            line.reply = format!("{why}; last error: {reason}");
            line.notes.push(("bounce", bounce.to_owned()));
            self.log.write(&line);
        }
    }

    /// A line of the system spool's rather than of a server's: a drop taken into the
    /// queue, refused by a limit, or set aside. `place` is the spool (server=);
    /// `envelope` is `None` for a drop that could not be read.
    pub fn log_spool(&self, event: &SpoolEvent, status: Status, reason: &str) {
        let (uid, user) = self.who(event.uid);
        let line = Line {
            id: event.id.to_owned(),
            queued_as: None,
            uid,
            user,
            from: event.envelope.and_then(|e| e.from.clone()),
            to: event.envelope.map(|e| e.to.clone()).unwrap_or_default(),
            server: event.place.display().to_string(),
            peer: None,
            tls: None,
            auth: None,
            size: event.size,
            delay: SystemTime::now()
                .duration_since(event.arrival)
                .unwrap_or_default(),
            status,
            dsn: None,
            reply: reason.to_owned(),
            notes: Vec::new(),
        };
        self.log.write(&line);
    }

    /// A line for `to` with what `attempt` says, the status and the reply's code.
    pub fn line(
        &self,
        attempt: &Attempt,
        to: Vec<Address>,
        status: Status,
        reply: Option<&Reply>,
    ) -> Line {
        let (uid, user) = self.who(attempt.submitter);
        Line {
            id: attempt.id.to_owned(),
            queued_as: None,
            uid,
            user,
            from: attempt.from.clone(),
            to,
            server: attempt.server.clone(),
            peer: attempt.peer.clone(),
            tls: attempt.tls.clone(),
            auth: attempt.auth.clone(),
            size: attempt.size,
            delay: SystemTime::now()
                .duration_since(attempt.arrival)
                .unwrap_or_default(),
            status,
            dsn: reply.and_then(|r| r.enhanced).map(|c| c.to_string()),
            reply: reply.map(|r| r.to_string()).unwrap_or_default(),
            notes: Vec::new(),
        }
    }
}

/// `refusals` grouped by their reason, in the order each first comes: a log line is
/// for a group of recipients that fared alike.
fn by_reason<'a>(
    refusals: impl Iterator<Item = &'a Refusal>,
) -> Vec<(&'a str, Option<&'a Reply>, Vec<Address>)> {
    let mut groups: Vec<(&str, Option<&Reply>, Vec<Address>)> = Vec::new();
    for r in refusals {
        match groups.iter_mut().find(|(reason, ..)| *reason == r.reason) {
            Some(group) => group.2.push(r.recipient.clone()),
            None => groups.push((&r.reason, r.reply.as_ref(), vec![r.recipient.clone()])),
        }
    }
    groups
}

/// What a line of the spool's says: which drop or entry, whose, and where.
pub struct SpoolEvent<'a> {
    pub id: &'a str,
    pub uid: Option<u32>,
    pub envelope: Option<&'a Envelope>,
    pub size: u64,
    pub arrival: SystemTime,
    pub place: &'a Path,
}

/// One attempt at a message: what its log lines say besides the recipients.
pub struct Attempt {
    /// outbox's id of the message: its queue id, or the submission's.
    pub id: String,
    pub from: Option<Address>,
    pub server: String,
    pub peer: Option<String>,
    pub tls: Option<String>,
    pub auth: Option<String>,
    pub size: u64,
    /// When outbox took the message.
    pub arrival: SystemTime,
    /// The queue entry the deferred recipients went to, when it is not `id` itself.
    pub queued: Option<String>,
    /// The entry in `failed` that keeps the refused ones, when it is not `id` itself.
    pub kept: Option<String>,
    /// The user who submitted it, when the system queue recorded one.
    pub submitter: Option<u32>,
}

impl Attempt {
    /// An attempt over the connection `report` describes, as `settings` made it.
    pub fn new(
        id: &str,
        envelope: &Envelope,
        settings: &Settings,
        report: &Report,
        size: u64,
        arrival: SystemTime,
    ) -> Attempt {
        Attempt {
            id: id.to_owned(),
            from: envelope.from.clone(),
            server: report
                .server
                .clone()
                .unwrap_or_else(|| settings.server.to_string()),
            peer: report.peer.clone(),
            tls: report
                .tls
                .as_ref()
                .map(|(_, info)| format!("{}/{}", info.version, info.cipher)),
            auth: report
                .session
                .auth
                .as_ref()
                .and(settings.auth.as_ref())
                .map(|a| a.user.clone()),
            size,
            arrival,
            queued: None,
            kept: None,
            submitter: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outbox::smtp::reply::{EnhancedCode, Reply};
    use outbox::smtp::stage::Stage;

    fn a(s: &str) -> Address {
        Address::new(s).unwrap()
    }

    fn reply(code: u16, enhanced: Option<EnhancedCode>, text: &str) -> Reply {
        Reply {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    fn refusal(to: &str, reply: Reply, permanent: bool) -> Refusal {
        Refusal {
            recipient: a(to),
            reason: reply.to_string(),
            reply: Some(reply),
            stage: Some(Stage::RcptTo),
            permanent,
        }
    }

    /// One line per group: the accepted, the deferred with the same reply together
    /// (with the entry they went to), the refused for good with their bounce.
    #[test]
    fn an_outcome_is_logged_one_line_per_group() {
        let dir = std::env::temp_dir().join(format!("outbox-mta-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("log");
        let _ = std::fs::remove_file(&file);
        let mta = Mta {
            log: Log::new(Target::File(file.clone())),
            uid: 1000,
            user: Some("alice".into()),
        };
        let busy = reply(450, None, "mailbox busy");
        let unknown = reply(
            550,
            Some(EnhancedCode {
                class: 5,
                subject: 1,
                detail: 1,
            }),
            "no such user",
        );
        let outcome = Outcome {
            accepted: vec![a("ok@example.test")],
            accepted_reply: Some(reply(250, None, "Ok: queued as ABC123")),
            retry: vec![a("b@example.test"), a("c@example.test")],
            failed: vec![a("d@example.test")],
            refusals: vec![
                refusal("b@example.test", busy.clone(), false),
                refusal("c@example.test", busy, false),
                refusal("d@example.test", unknown, true),
            ],
            ..Outcome::default()
        };
        let attempt = Attempt {
            id: "1.2.3".into(),
            from: Some(a("me@example.test")),
            server: "mx.example.test:25".into(),
            peer: Some("127.0.0.1:25".into()),
            tls: None,
            auth: None,
            size: 42,
            arrival: SystemTime::now(),
            queued: Some("4.5.6".into()),
            kept: Some("1.2.4".into()),
            submitter: None,
        };
        mta.log_outcome(&attempt, &outcome, Some("sent as 7.8.9"));
        let text = std::fs::read_to_string(&file).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains(" id=1.2.3 queued_as=ABC123 uid=1000 user=alice "),
            "{text}"
        );
        assert!(lines[0].contains(" to=<ok@example.test> "), "{text}");
        assert!(lines[0].contains(" status=sent "), "{text}");
        assert!(
            lines[1].contains(" to=<b@example.test>,<c@example.test> "),
            "{text}"
        );
        assert!(lines[1].contains(" status=deferred "), "{text}");
        assert!(lines[1].ends_with(" queued=4.5.6"), "{text}");
        assert!(lines[2].contains(" to=<d@example.test> "), "{text}");
        assert!(lines[2].contains(" status=bounced dsn=5.1.1 "), "{text}");
        assert!(
            lines[2].ends_with(" bounce=\"sent as 7.8.9\" kept=1.2.4"),
            "{text}"
        );
        assert!(!lines[1].contains("bounce="), "{text}");
    }
}
