//! Bounces: the delivery status notification outbox sends, from the null reverse-path
//! (RFC 5321 §4.5.5), to the sender of a message it could not deliver. A
//! `multipart/report; report-type=delivery-status` (RFC 6522 §3) of three parts: a
//! text for people, the `message/delivery-status` for machines (RFC 3464 §2), and the
//! original's header section, or the whole of a small original when RET=FULL asked
//! for it (RFC 3461 §4.3). When an address or the original's header is not ASCII the
//! global types of RFC 6533 stand in for the last two.
//!
//! Pure: [`build`] makes bytes from a [`Notice`] and the original [`Message`]; sending
//! them is the caller's part.

mod fields;
mod original;
mod report;
#[cfg(test)]
mod tests;

use std::io;
use std::time::SystemTime;

use crate::envelope::{Address, Mailbox};
use crate::message::Message;
use crate::smtp::reply::Reply;
use crate::smtp::stage::Stage;

pub use original::HEADER_LIMIT;

/// RFC 3464 §2.3.3 Action values outbox reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
}

/// What the server (or outbox) said of one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diagnostic {
    /// An SMTP (or LMTP) reply: `Diagnostic-Code: smtp; <reply on one line>`.
    Reply(Reply),
    /// No reply to quote (connection refused, queue lifetime reached, a message the
    /// server cannot take as it is): `Diagnostic-Code: X-Outbox; <text>`.
    Other(String),
}

/// One recipient the bounce reports on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Final-Recipient.
    pub recipient: Address,
    /// Original-Recipient (ORCPT, RFC 3461 §4.2), `rfc822;addr` as given.
    pub original_recipient: Option<String>,
    pub action: Action,
    /// The RFC 3463 status, e.g. "5.1.1"; see [`status_of`] and [`EXPIRED`]. One not
    /// of that form is reported as the class its action implies.
    pub status: String,
    /// The server that gave the reply (its host name as configured): `Remote-MTA: dns; NAME`.
    pub remote_mta: Option<String>,
    pub diagnostic: Diagnostic,
    /// Where in the session the reply came (RCPT, after the data, ...), for the text part.
    pub stage: Option<Stage>,
    /// Last-Attempt-Date.
    pub last_attempt: SystemTime,
}

/// RET (RFC 3461 §4.3): what of the original comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    Headers,
    Full,
}

/// Everything a bounce says, but the original itself.
#[derive(Clone, Debug)]
pub struct Notice {
    /// The bounce's To field: the original envelope sender (after aliases), and an
    /// admin copy address if any.
    pub to: Vec<Address>,
    /// From: `Mail Delivery System <MAILER-DAEMON@DOMAIN>`; see [`Notice::new`].
    pub from: Mailbox,
    /// Reporting-MTA: dns; NAME (this host's fully qualified name).
    pub reporting_mta: String,
    /// The original's ENVID (RFC 3461 §4.4), for Original-Envelope-Id.
    pub envelope_id: Option<String>,
    /// outbox's own id of the original (its queue id or submission id): the
    /// X-Outbox-Queue-ID field (RFC 3464 §2.1 allows X- fields) and in the text part.
    pub queue_id: String,
    /// Who submitted the original, e.g. "uid 1000 (alice)": in the text part.
    pub submitter: Option<String>,
    /// Arrival-Date.
    pub arrival: SystemTime,
    pub failures: Vec<Failure>,
    pub ret: Ret,
    /// Fixed by [`Notice::new`] from the clock and randomness; tests set them.
    pub date: SystemTime,
    /// Without the angle brackets, as [`crate::compose::new_message_id`] gives it.
    pub message_id: String,
    /// Replaced by a fresh one in [`build`] if the bounce's text holds it.
    pub boundary: String,
}

/// The display name of the bounce's From.
const FROM_NAME: &str = "Mail Delivery System";

impl Notice {
    /// With From MAILER-DAEMON@domain (a bare MAILER-DAEMON if `domain` is not one),
    /// Date now, a fresh Message-ID at `domain` and a fresh boundary.
    pub fn new(
        domain: &str,
        reporting_mta: &str,
        to: Vec<Address>,
        queue_id: String,
        arrival: SystemTime,
        failures: Vec<Failure>,
        ret: Ret,
    ) -> Notice {
        let address = Address::new(&format!("MAILER-DAEMON@{domain}"))
            .or_else(|_| Address::new("MAILER-DAEMON"))
            .expect("MAILER-DAEMON alone is a valid local name");
        Notice {
            to,
            from: Mailbox {
                name: Some(FROM_NAME.to_owned()),
                address,
            },
            reporting_mta: reporting_mta.to_owned(),
            envelope_id: None,
            queue_id,
            submitter: None,
            arrival,
            failures,
            ret,
            date: SystemTime::now(),
            message_id: crate::compose::new_message_id(domain),
            boundary: fresh_boundary(),
        }
    }
}

/// The status to report for a refusal: the reply's enhanced code (RFC 3463) when it
/// has one of the reply's own class, else the class alone ("5.0.0", "4.0.0"; "5.0.0"
/// for a code that is neither, as for anything that is no success).
pub fn status_of(reply: &Reply) -> String {
    let class = reply.code / 100;
    match reply.enhanced {
        Some(e) if u16::from(e.class) == class => e.to_string(),
        _ if class == 4 => "4.0.0".to_owned(),
        _ => "5.0.0".to_owned(),
    }
}

/// The status of a message given up because it waited too long (RFC 3463 X.4.7:
/// delivery time expired).
pub const EXPIRED: &str = "4.4.7";

/// The largest original returned whole with RET=FULL (Postfix's bounce_size_limit is
/// 50000); a larger one comes back as its header section only (text/rfc822-headers),
/// and the text part says so.
pub const FULL_LIMIT: u64 = 50_000;

/// The bounce as bytes (CRLF line ends), ready to be sent as a `Message::from_bytes`.
/// `original` is the message that failed; what of it comes back follows `notice.ret`
/// and [`FULL_LIMIT`], and no more of it than that is read.
pub fn build(notice: &Notice, original: &Message) -> io::Result<Vec<u8>> {
    build_in(notice, original, &crate::compose::local_time_zone())
}

/// [`build`] with the dates written in `zone`.
fn build_in(notice: &Notice, original: &Message, zone: &jiff::tz::TimeZone) -> io::Result<Vec<u8>> {
    let returned = original::returned(
        &mut original.reader(),
        original.len(),
        original.header_len(),
        &notice.ret,
    )?;
    let date = |at: SystemTime| crate::compose::date_at(at, zone);
    let global = status_is_global(notice, &returned);
    let text = report::text(notice, &returned);
    let status = report::delivery_status(notice, global, &date);
    let mut boundary = notice.boundary.clone();
    let taken = |b: &str| {
        !is_boundary(b)
            || text.contains(b)
            || status.contains(b)
            || memchr::memmem::find(&returned.bytes, b.as_bytes()).is_some()
    };
    while taken(&boundary) {
        boundary = fresh_boundary();
    }
    let eight_bit = !text.is_ascii() || !status.is_ascii() || returned.eight_bit;

    let mut head = String::new();
    header(
        &mut head, notice, &returned, &date, &boundary, global, eight_bit,
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(b"This is a delivery status notification in MIME format.\r\n");

    let part = |out: &mut Vec<u8>, fields: &[String], body: &[u8]| {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        for f in fields {
            out.extend_from_slice(f.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    };
    let charset = if text.is_ascii() { "us-ascii" } else { "utf-8" };
    let cte = |ascii: bool| if ascii { "7bit" } else { "8bit" };
    part(
        &mut out,
        &[
            format!("Content-Type: text/plain; charset={charset}"),
            format!("Content-Transfer-Encoding: {}", cte(text.is_ascii())),
            "Content-Description: Notification".to_owned(),
        ],
        text.as_bytes(),
    );
    let status_type = if global {
        "message/global-delivery-status"
    } else {
        "message/delivery-status"
    };
    let mut status_fields = vec![format!("Content-Type: {status_type}")];
    if !status.is_ascii() {
        status_fields.push("Content-Transfer-Encoding: 8bit".to_owned());
    }
    status_fields.push("Content-Description: Delivery report".to_owned());
    part(&mut out, &status_fields, status.as_bytes());
    let (returned_type, description) = match (returned.kind, returned.global) {
        (original::Kind::Headers, false) => {
            ("text/rfc822-headers", "Header of the undelivered message")
        }
        (original::Kind::Headers, true) => (
            "message/global-headers",
            "Header of the undelivered message",
        ),
        (original::Kind::Full, false) => ("message/rfc822", "Undelivered message"),
        (original::Kind::Full, true) => ("message/global", "Undelivered message"),
    };
    let mut returned_fields = vec![format!("Content-Type: {returned_type}")];
    if returned.eight_bit {
        returned_fields.push("Content-Transfer-Encoding: 8bit".to_owned());
    }
    returned_fields.push(format!("Content-Description: {description}"));
    part(&mut out, &returned_fields, &returned.bytes);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// The bounce's header section.
fn header(
    out: &mut String,
    notice: &Notice,
    returned: &original::Returned,
    date: &dyn Fn(SystemTime) -> String,
    boundary: &str,
    global: bool,
    eight_bit: bool,
) {
    let header = &returned.bytes[..returned.header_len];
    fields::field(out, "Date", &date(notice.date));
    fields::field(out, "From", &mailbox(&notice.from));
    let to: Vec<String> = notice
        .to
        .iter()
        .map(|a| fields::safe(a.as_str(), true))
        .collect();
    // RFC 5322 §3.6.3 allows an empty group where there is no one to name.
    let to = if to.is_empty() {
        "undisclosed-recipients:;".to_owned()
    } else {
        to.join(", ")
    };
    fields::field(out, "To", &to);
    fields::field(out, "Subject", &subject(notice, header));
    fields::field(
        out,
        "Message-ID",
        &format!("<{}>", fields::safe(&notice.message_id, false)),
    );
    if let Some(id) = original::message_id(header) {
        fields::field(out, "In-Reply-To", &id);
        fields::field(out, "References", &id);
    }
    // RFC 3834 §5: a bounce is an automatic reply, so that no one answers it in turn.
    fields::field(out, "Auto-Submitted", "auto-replied");
    fields::field(out, "MIME-Version", "1.0");
    fields::field(
        out,
        "Content-Type",
        &format!(
            "multipart/report; report-type={}; boundary=\"{boundary}\"",
            // RFC 6522 §3: the report type names the second part's subtype.
            if global {
                "global-delivery-status"
            } else {
                "delivery-status"
            }
        ),
    );
    if eight_bit {
        // RFC 2045 §6.4: a multipart is labelled as the most of what it holds.
        fields::field(out, "Content-Transfer-Encoding", "8bit");
    }
    out.push_str("\r\n");
}

/// Whether the second part takes the global type (RFC 6533 §6).
fn status_is_global(notice: &Notice, returned: &original::Returned) -> bool {
    returned.global
        || notice.failures.iter().any(|f| {
            !f.recipient.as_str().is_ascii()
                || f.original_recipient
                    .as_deref()
                    .is_some_and(|o| !o.is_ascii())
        })
}

/// The Subject: the original's after a word of what happened, when it is plain
/// ASCII; else that word alone.
fn subject(notice: &Notice, header: &[u8]) -> String {
    let what = if notice
        .failures
        .iter()
        .all(|f| matches!(f.action, Action::Delayed))
    {
        "Delayed mail"
    } else {
        "Undelivered mail"
    };
    match original::header_value(header, "Subject") {
        Some(s) if !s.is_empty() && s.is_ascii() => {
            format!("{what}: {}", fields::safe(&s.replace('\t', " "), false))
        }
        _ => what.to_owned(),
    }
}

/// A mailbox as a header writes it: the name as it is when it is words of letters and
/// digits, else quoted (RFC 5322 §3.4).
fn mailbox(m: &Mailbox) -> String {
    let address = fields::safe(m.address.as_str(), true);
    match &m.name {
        None => address,
        Some(name) => {
            let name = fields::safe(name, true);
            let plain = name.split(' ').all(|w| {
                !w.is_empty() && w.chars().all(|c| c.is_alphanumeric() || "-_".contains(c))
            });
            if plain {
                format!("{name} <{address}>")
            } else {
                let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{quoted}\" <{address}>")
            }
        }
    }
}

/// Whether `b` can be a boundary (RFC 2046 §5.1.1: 1 to 70 of its characters, not
/// ending in a space).
fn is_boundary(b: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    (1..=70).contains(&b.len()) && b.chars().all(allowed) && !b.ends_with(' ')
}

/// A boundary no text holds by chance: 128 random bits.
fn fresh_boundary() -> String {
    format!("=_outbox_report_{}", crate::compose::nonce())
}
