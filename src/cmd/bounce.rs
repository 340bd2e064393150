//! Bounces: who a failure is told to, the notice made for it, and its sending.
//!
//! A bounce goes from the null reverse-path (RFC 5321 §4.5.5) to the failed message's
//! envelope sender, local names mapped by the aliases, through the same server and
//! account. A message from `<>` gets none: its failure goes to `bounce_to` if that is
//! set, unless `bounce_to` is the very recipient that failed, so a notice that fails
//! is never told of in turn and nothing loops.

use std::time::SystemTime;

use outbox::bounce::{self, Action, Diagnostic, Failure, Notice, Ret};
use outbox::envelope::Address;
use outbox::outcome::{Outcome, Refusal};
use outbox::queue::{Folder, Notes, Queue, new_id};
use outbox::smtp::dsn::Dsn;
use outbox::smtp::stage::Stage;
use outbox::{Envelope, Message, Settings, settings};

use super::mta::{Attempt, Mta};
use super::output::say;

/// What became of a bounce: what the log and the failed entry say of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The server took it; the bounce's own id.
    Sent(String),
    /// Kept in the queue for a later attempt, under this id.
    Queued(String),
    /// None was due, for this reason (the null sender, NOTIFY).
    NotDue(String),
    /// The bounce itself was refused for good: kept in `failed` under this id, or
    /// not even that (the error).
    Refused(Result<String, String>),
    /// It could neither be sent nor kept: the error.
    Lost(String),
}

impl Fate {
    /// The note for the log and `queue list --failed`.
    pub fn note(&self) -> String {
        match self {
            Fate::Sent(id) => format!("sent as {id}"),
            Fate::Queued(id) => format!("queued as {id}"),
            Fate::NotDue(why) => format!("none ({why})"),
            Fate::Refused(Ok(id)) => format!("refused, kept as {id} in failed"),
            Fate::Refused(Err(e)) => format!("refused, and not kept: {e}"),
            Fate::Lost(e) => format!("not sent: {e}"),
        }
    }

    /// Whether the failure is taken care of: told, on its way, not to be told, or
    /// (the bounce refused in turn) logged and kept in `failed`, as an MTA keeps a
    /// double bounce. Only a failure that nothing records is not.
    pub fn is_handled(&self) -> bool {
        matches!(
            self,
            Fate::Sent(_) | Fate::Queued(_) | Fate::NotDue(_) | Fate::Refused(Ok(_))
        )
    }
}

/// The message that failed, as the bounce needs it.
pub struct Original<'a> {
    /// outbox's id of it.
    pub id: &'a str,
    pub envelope: &'a Envelope,
    pub message: &'a Message,
    pub dsn: &'a Dsn,
    /// When outbox took it.
    pub arrival: SystemTime,
    /// Whose settings carried it: its sender, or for a bounce the sender of what it
    /// reports. A bounce goes over the same.
    pub via: Option<&'a Address>,
    /// It is one of outbox's notices to `bounce_to`: its failure makes none.
    pub notice: bool,
    /// Who submitted it, when the system queue recorded it.
    pub uid: Option<u32>,
}

/// A bounce made and addressed, ready to go.
pub struct Made {
    pub envelope: Envelope,
    pub message: Message,
    /// It goes to `bounce_to` alone, for a message from `<>`.
    pub notice: bool,
    /// Whose settings it goes over.
    pub via: Option<Address>,
}

impl Made {
    /// How the queue keeps it.
    pub fn notes(&self, reason: &str) -> Notes {
        Notes {
            reason: reason.to_owned(),
            via: self.via.clone(),
            notice: self.notice,
            ..Notes::default()
        }
    }
}

/// Each refusal in `outcome` that is for good, as the bounce reports it.
pub fn failures(settings: &Settings, outcome: &Outcome) -> Vec<Failure> {
    let now = SystemTime::now();
    outcome
        .permanent()
        .map(|r| failure(settings, r, None, now))
        .collect()
}

/// Each refusal to retry in `outcome`, given up after waiting too long (`why`): the
/// status of its last reply where there was one (RFC 3463 asks for the actual
/// problem's code), else X.4.7, delivery time expired.
pub fn expired(settings: &Settings, outcome: &Outcome, why: &str) -> Vec<Failure> {
    let now = SystemTime::now();
    outcome
        .temporary()
        .map(|r| failure(settings, r, Some(why), now))
        .collect()
}

/// `r` as the bounce reports it; `expired` says why a temporary one is given up.
fn failure(settings: &Settings, r: &Refusal, expired: Option<&str>, now: SystemTime) -> Failure {
    let status = match (&r.reply, expired) {
        (Some(reply), _) if reply.code >= 400 => bounce::status_of(reply),
        (_, Some(_)) => bounce::EXPIRED.to_owned(),
        (_, None) => "5.0.0".to_owned(),
    };
    // Remote-MTA names a server that answered over the network (RFC 3464 §2.3.5),
    // not a local socket, nor one never reached.
    let remote_mta = (r.reply.is_some() && settings.server.unix_path().is_none())
        .then(|| settings.server.host.clone());
    let diagnostic = match (&r.reply, expired) {
        (Some(reply), _) => Diagnostic::Reply(reply.clone()),
        (None, Some(why)) => Diagnostic::Other(format!("{why}: {}", r.reason)),
        (None, None) => Diagnostic::Other(r.reason.clone()),
    };
    Failure {
        recipient: r.recipient.clone(),
        original_recipient: None,
        action: Action::Failed,
        status,
        remote_mta,
        diagnostic,
        stage: r.stage,
        last_attempt: now,
    }
}

/// Who is told of a failure of `original` for `failed`: its sender (a local name
/// through the aliases), and `bounce_to` with `bounce_copy` (the second value, a copy
/// for the envelope alone); for the null sender, `bounce_to` alone. `Err` says why
/// nobody is.
fn recipients(
    settings: &Settings,
    original: &Original,
    failed: &[Address],
) -> Result<(Vec<Address>, Option<Address>), String> {
    if original.notice {
        return Err("it reports a failure itself".into());
    }
    // RFC 3461 §4.1: NOTIFY without FAILURE asks for no failure notice.
    if let Some(notify) = &original.dsn.notify
        && !notify.split(',').any(|w| w == "FAILURE")
    {
        return Err(format!("NOTIFY={notify}"));
    }
    let admin = settings
        .bounce_to
        .as_ref()
        .filter(|admin| !failed.iter().any(|f| same_address(f, admin)));
    let to = match &original.envelope.from {
        Some(sender) => local_mapped(settings, sender),
        None => match admin {
            Some(admin) => return Ok((vec![admin.clone()], None)),
            None => return Err("null sender".into()),
        },
    };
    let copy = admin
        .filter(|admin| settings.bounce_copy && !to.contains(admin))
        .cloned();
    Ok((to, copy))
}

/// Whether `a` and `b` name one mailbox: as written, or once in ASCII (a server
/// without SMTPUTF8 is sent, and refuses, the A-label form of a domain).
fn same_address(a: &Address, b: &Address) -> bool {
    let ascii = |x: &Address| x.to_ascii().unwrap_or_else(|| x.clone());
    a.as_str().eq_ignore_ascii_case(b.as_str())
        || ascii(a).as_str().eq_ignore_ascii_case(ascii(b).as_str())
}

/// A sender at this host goes through the aliases as a local name would: cron's
/// `root@host.example` is whoever `root` stands for.
fn local_mapped(settings: &Settings, sender: &Address) -> Vec<Address> {
    let here = |d: &str| {
        d.eq_ignore_ascii_case(&settings.local_domain)
            || d.eq_ignore_ascii_case(&settings::fqdn())
            || d.eq_ignore_ascii_case(&settings::hostname())
    };
    let local = sender
        .as_str()
        .rsplit_once('@')
        .filter(|(_, d)| here(d))
        .and_then(|(name, _)| Address::new(name).ok());
    match local {
        Some(name)
            if settings
                .aliases
                .keys()
                .any(|k| k.eq_ignore_ascii_case(name.as_str())) =>
        {
            settings.expand(&name).0
        }
        _ => vec![sender.clone()],
    }
}

/// The bounce for `failures` of `original`, or why none is due.
pub fn make(
    settings: &Settings,
    mta: &Mta,
    original: &Original,
    failures: Vec<Failure>,
) -> Result<Made, Fate> {
    let failed: Vec<Address> = failures.iter().map(|f| f.recipient.clone()).collect();
    let (to, copy) = recipients(settings, original, &failed).map_err(Fate::NotDue)?;
    let fqdn = settings::fqdn();
    let ret = match original.dsn.ret.as_deref() {
        Some("FULL") => Ret::Full,
        _ => Ret::Headers,
    };
    // bounce_copy's copy goes in the envelope only: the sender's To does not show
    // the admin's address.
    let mut notice = Notice::new(
        &settings.local_domain,
        &fqdn,
        to.clone(),
        original.id.to_owned(),
        original.arrival,
        failures,
        ret,
    );
    notice.envelope_id = original.dsn.envid.clone();
    notice.submitter = Some(mta.submitter(original.uid));
    let bytes = bounce::build(&notice, original.message)
        .map_err(|e| Fate::Lost(format!("cannot read the message for its bounce: {e}")))?;
    Ok(Made {
        envelope: Envelope::new(None, to.into_iter().chain(copy)),
        message: Message::from_bytes(bytes),
        notice: original.envelope.from.is_none(),
        via: original
            .via
            .cloned()
            .or_else(|| original.envelope.from.clone()),
    })
}

/// Sends the bounce `made` now; what cannot go now is queued, and a refusal is kept
/// in `failed` (and told to `bounce_to`, once). Logs each outcome.
pub fn send_now(settings: &Settings, mta: &Mta, made: Made) -> Fate {
    // A bounce asks for no DSN of its own, and names no envelope id of the message
    // it reports.
    let settings = Settings {
        dsn: Dsn::default(),
        ..settings.clone()
    };
    let settings = &settings;
    let arrival = SystemTime::now();
    let id = new_id(arrival);
    let (result, report) = super::submit(
        settings,
        &made.envelope,
        &made.message,
        super::Show::default(),
    );
    let outcome = Outcome::of(&made.envelope, &result);
    let mut attempt = Attempt::new(
        &id,
        &made.envelope,
        settings,
        &report,
        made.message.len(),
        arrival,
    );
    let queue = || Queue::open(&settings.queue_dir());
    let mut fate = Fate::Sent(id.clone());
    if !outcome.retry.is_empty() {
        let notes = Notes {
            id: Some(id.clone()),
            ..made.notes(&outcome.retry_reason)
        };
        fate = match queue().and_then(|q| {
            q.keep(
                Folder::Queue,
                None,
                &outcome.retry,
                &made.message,
                &notes,
                arrival,
            )
        }) {
            Ok(queued) => {
                attempt.queued = Some(queued.clone());
                Fate::Queued(queued)
            }
            Err(e) => Fate::Lost(e.to_string()),
        };
    }
    let mut told = None;
    if !outcome.failed.is_empty() {
        let original = Original {
            id: &id,
            envelope: &made.envelope,
            message: &made.message,
            dsn: &Dsn::default(),
            arrival,
            via: made.via.as_ref(),
            notice: made.notice,
            uid: None,
        };
        // The bounce's failure goes to bounce_to, if that is set and is not who
        // refused it; a notice's own failure goes nowhere (see `recipients`).
        let notice = make(settings, mta, &original, failures(settings, &outcome))
            .map(|notice| send_now(settings, mta, notice));
        let note = match &notice {
            Ok(fate) | Err(fate) => fate.note(),
        };
        told = Some(note.clone());
        let notes = Notes {
            id: Some(id.clone()),
            bounce: Some(note),
            ..made.notes(&outcome.failed_reason)
        };
        let kept = queue()
            .and_then(|q| {
                q.keep(
                    Folder::Failed,
                    None,
                    &outcome.failed,
                    &made.message,
                    &notes,
                    arrival,
                )
            })
            .map_err(|e| e.to_string());
        say!(
            "outbox: the bounce to {} was refused: {}",
            super::list(&outcome.failed),
            outcome.failed_reason
        );
        if outcome.accepted.is_empty() && outcome.retry.is_empty() {
            // A server that refuses the null sender itself will take no bounce at
            // all: nobody hears of the failure, and the caller must.
            let refuses_null_sender = outcome
                .permanent()
                .any(|r| r.stage == Some(Stage::MailFrom));
            fate = if refuses_null_sender {
                Fate::Lost(format!(
                    "the server refuses mail from <>: {}",
                    outcome.failed_reason
                ))
            } else {
                Fate::Refused(kept)
            };
        }
    }
    mta.log_outcome(&attempt, &outcome, told.as_deref());
    fate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        Address::new(s).unwrap()
    }

    fn settings() -> Settings {
        let mut s = Settings::from_cli(&outbox::cli::Cli::default()).unwrap();
        s.local_domain = "host.example".into();
        s.aliases
            .insert("root".into(), vec![a("admin@example.com")]);
        s
    }

    fn to_whom(
        settings: &Settings,
        from: Option<&str>,
        dsn: &Dsn,
        failed: &[&str],
    ) -> Result<Vec<String>, String> {
        let envelope = Envelope::new(from.map(a), [a("x@example.net")]);
        let message = Message::from_bytes(b"Subject: x\r\n\r\nx\r\n".to_vec());
        let original = Original {
            id: "1",
            envelope: &envelope,
            message: &message,
            dsn,
            arrival: SystemTime::now(),
            via: None,
            notice: false,
            uid: None,
        };
        let failed: Vec<Address> = failed.iter().map(|f| a(f)).collect();
        recipients(settings, &original, &failed)
            .map(|(to, copy)| to.iter().chain(&copy).map(ToString::to_string).collect())
    }

    #[test]
    fn a_bounce_goes_to_the_sender_through_the_aliases_at_this_host() {
        let s = settings();
        let none = Dsn::default();
        assert_eq!(
            to_whom(&s, Some("me@example.org"), &none, &["x@example.net"]),
            Ok(vec!["me@example.org".into()])
        );
        // cron's sender at this host is whoever root stands for; another domain's root
        // is not.
        assert_eq!(
            to_whom(&s, Some("root@host.example"), &none, &["x@example.net"]),
            Ok(vec!["admin@example.com".into()])
        );
        assert_eq!(
            to_whom(&s, Some("root@example.org"), &none, &["x@example.net"]),
            Ok(vec!["root@example.org".into()])
        );
        // A name with no alias stays as it is.
        assert_eq!(
            to_whom(&s, Some("alice@host.example"), &none, &["x@example.net"]),
            Ok(vec!["alice@host.example".into()])
        );
    }

    #[test]
    fn the_null_sender_gets_no_bounce_and_bounce_to_gets_the_notice_once() {
        let mut s = settings();
        let none = Dsn::default();
        assert_eq!(
            to_whom(&s, None, &none, &["x@example.net"]),
            Err("null sender".into())
        );
        s.bounce_to = Some(a("postmaster@example.com"));
        assert_eq!(
            to_whom(&s, None, &none, &["x@example.net"]),
            Ok(vec!["postmaster@example.com".into()])
        );
        // The notice to bounce_to failing is told to nobody: no loop.
        assert_eq!(
            to_whom(&s, None, &none, &["postmaster@example.com"]),
            Err("null sender".into())
        );
        // Without bounce_copy an ordinary bounce goes to the sender alone; with it,
        // bounce_to gets a copy.
        assert_eq!(
            to_whom(&s, Some("me@example.org"), &none, &["x@example.net"]),
            Ok(vec!["me@example.org".into()])
        );
        s.bounce_copy = true;
        assert_eq!(
            to_whom(&s, Some("me@example.org"), &none, &["x@example.net"]),
            Ok(vec![
                "me@example.org".into(),
                "postmaster@example.com".into()
            ])
        );
    }

    #[test]
    fn notify_without_failure_asks_for_no_bounce() {
        let s = settings();
        for (notify, due) in [
            ("NEVER", false),
            ("SUCCESS,DELAY", false),
            ("FAILURE", true),
            ("SUCCESS,FAILURE", true),
        ] {
            let dsn = Dsn {
                notify: Some(notify.into()),
                ..Dsn::default()
            };
            let got = to_whom(&s, Some("me@example.org"), &dsn, &["x@example.net"]);
            assert_eq!(got.is_ok(), due, "{notify}: {got:?}");
        }
    }

    #[test]
    fn fate_notes() {
        assert_eq!(Fate::Sent("1".into()).note(), "sent as 1");
        assert_eq!(Fate::Queued("2".into()).note(), "queued as 2");
        assert_eq!(
            Fate::NotDue("null sender".into()).note(),
            "none (null sender)"
        );
        assert!(Fate::NotDue(String::new()).is_handled());
        assert!(!Fate::Lost("disk full".into()).is_handled());
        assert!(Fate::Refused(Ok("3".into())).is_handled());
        assert!(!Fate::Refused(Err("disk full".into())).is_handled());
    }
}
