//! The first two parts of a bounce: the text for people, and the delivery status for
//! machines (RFC 3464 §2, RFC 6533 §3 for the global form).

use std::time::{Duration, SystemTime};

use super::fields::{field, safe, wrapped};
use super::original::{HEADER_LIMIT, Kind, Returned};
use super::{Action, Diagnostic, EXPIRED, FULL_LIMIT, Failure, Notice};
use crate::smtp::reply::Reply;
use crate::smtp::stage::Stage;

/// The first part: which recipients failed, what was said, what to do.
pub(crate) fn text(notice: &Notice, returned: &Returned) -> String {
    let mut out = String::new();
    let host = safe(&notice.reporting_mta, true);
    out.push_str(&format!("This report comes from outbox at {host}.\r\n\r\n"));
    let (failed, delayed): (Vec<&Failure>, Vec<&Failure>) = notice
        .failures
        .iter()
        .partition(|f| matches!(f.action, Action::Failed));
    let waited = notice
        .date
        .duration_since(notice.arrival)
        .unwrap_or(Duration::ZERO);
    if !failed.is_empty() {
        let whom = match failed.len() {
            1 => "this recipient".to_owned(),
            n => format!("these {n} recipients"),
        };
        out.push_str(&format!(
            "Your message could not be delivered to {whom}:\r\n\r\n"
        ));
        for f in failed {
            recipient(&mut out, f, waited);
        }
    }
    if !delayed.is_empty() {
        out.push_str(
            "Your message has not been delivered yet to the recipients below;\r\n\
             outbox keeps trying, there is no need to send it again:\r\n\r\n",
        );
        for f in delayed {
            recipient(&mut out, f, waited);
        }
    }
    out.push_str(&format!("Queue id: {}\r\n", safe(&notice.queue_id, true)));
    if let Some(who) = &notice.submitter {
        out.push_str(&format!("Submitted by: {}\r\n", safe(who, true)));
    }
    out.push_str("\r\n");
    let what = match returned.kind {
        Kind::Full => "your message",
        Kind::Headers => "the header of your message",
    };
    out.push_str(&format!("The delivery report and {what} follow.\r\n"));
    if let Some(size) = returned.too_big {
        wrapped(
            &mut out,
            "",
            "",
            &format!(
                "Your message was {size} bytes, more than the {FULL_LIMIT} returned whole, \
                 so only its header comes back."
            ),
        );
    }
    if let Some(size) = returned.cut {
        wrapped(
            &mut out,
            "",
            "",
            &format!(
                "Its header was {size} bytes, more than the {HEADER_LIMIT} returned, so \
                 it comes back cut short."
            ),
        );
    }
    out
}

/// One recipient's paragraph of the text part.
fn recipient(out: &mut String, f: &Failure, waited: Duration) {
    out.push_str(&format!("<{}>\r\n", safe(f.recipient.as_str(), true)));
    let server = f.remote_mta.as_deref().map_or_else(
        || "The server".to_owned(),
        |m| format!("The server {}", safe(m, true)),
    );
    let verb = match f.action {
        Action::Failed => "refused it",
        Action::Delayed => "put it off",
    };
    match &f.diagnostic {
        Diagnostic::Reply(reply) => {
            let said = match f.stage.map(place) {
                Some(place) => format!("{server} {verb} {place}:"),
                None => format!("{server} {verb}:"),
            };
            wrapped(out, "    ", "    ", &said);
            let last = reply.lines.len().saturating_sub(1);
            for (i, line) in reply.lines.iter().enumerate() {
                let sep = if i == last { ' ' } else { '-' };
                let line = safe(&format!("{}{sep}{line}", reply.code), true);
                wrapped(out, "    ", "      ", &line);
            }
        }
        Diagnostic::Other(why) => {
            let why = safe(why, true);
            match f.stage.map(place) {
                Some(place) => wrapped(out, "    ", "      ", &format!("{why} ({place})")),
                None => wrapped(out, "    ", "      ", &why),
            }
        }
    }
    wrapped(out, "    ", "    ", &advice(f, waited));
    out.push_str("\r\n");
}

/// Where in the session a reply came, as the text part says it.
fn place(stage: Stage) -> String {
    match stage {
        Stage::Connect => "when outbox connected".to_owned(),
        Stage::Message => "while the message was sent".to_owned(),
        Stage::EndOfData => "after the message was sent".to_owned(),
        other => format!("at {other}"),
    }
}

/// What the sender can do about one failure.
fn advice(f: &Failure, waited: Duration) -> String {
    if matches!(f.action, Action::Delayed) {
        return "outbox will try again later.".to_owned();
    }
    if f.status == EXPIRED {
        return format!(
            "It waited {} in the queue without being delivered, and outbox gave up.",
            span(waited)
        );
    }
    if f.status.starts_with("5.1.") {
        "Check the address, then send the message again.".to_owned()
    } else if f.status.starts_with('5') {
        "The server will not take the message as it is; its answer says why.".to_owned()
    } else {
        "The failure was temporary, but outbox has given up on it.".to_owned()
    }
}

/// A time span in whole days, or hours when under a day.
fn span(d: Duration) -> String {
    let hours = d.as_secs() / 3600;
    let (n, unit) = if hours >= 24 {
        (hours / 24, "day")
    } else {
        (hours, "hour")
    };
    match n {
        0 => "less than an hour".to_owned(),
        1 => format!("1 {unit}"),
        n => format!("{n} {unit}s"),
    }
}

/// The second part's body (RFC 3464 §2.1): the per-message fields, then each
/// recipient's, an empty line before each group.
pub(crate) fn delivery_status(
    notice: &Notice,
    global: bool,
    date: &dyn Fn(SystemTime) -> String,
) -> String {
    let mut out = String::new();
    // §2.2: the order of the grammar; extension fields come last.
    if let Some(envid) = &notice.envelope_id {
        field(&mut out, "Original-Envelope-Id", &safe(envid, false));
    }
    field(
        &mut out,
        "Reporting-MTA",
        &format!("dns; {}", safe(&notice.reporting_mta, false)),
    );
    field(&mut out, "Arrival-Date", &date(notice.arrival));
    field(
        &mut out,
        "X-Outbox-Queue-ID",
        &safe(&notice.queue_id, false),
    );
    for f in &notice.failures {
        out.push_str("\r\n");
        // §2.3: the fields in the order of the grammar.
        if let Some(orcpt) = &f.original_recipient {
            let orcpt = safe(orcpt, global);
            let value = if orcpt.contains(';') {
                orcpt
            } else {
                format!("rfc822; {orcpt}")
            };
            field(&mut out, "Original-Recipient", &value);
        }
        let address = f.recipient.as_str();
        // RFC 6533 §3: the utf-8 address type, for an address that is not ASCII.
        let kind = if address.is_ascii() {
            "rfc822"
        } else {
            "utf-8"
        };
        field(
            &mut out,
            "Final-Recipient",
            &format!("{kind}; {}", safe(address, global)),
        );
        let action = match f.action {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        };
        field(&mut out, "Action", action);
        field(&mut out, "Status", &status(f));
        if let Some(mta) = &f.remote_mta {
            field(
                &mut out,
                "Remote-MTA",
                &format!("dns; {}", safe(mta, false)),
            );
        }
        field(&mut out, "Diagnostic-Code", &diagnostic(&f.diagnostic));
        field(&mut out, "Last-Attempt-Date", &date(f.last_attempt));
    }
    out
}

/// The failure's status if it has the form of RFC 3464 §2.3.4 (class 2, 4 or 5, then
/// one to three digits twice), else the class its action implies.
fn status(f: &Failure) -> String {
    let mut parts = f.status.split('.');
    let class = parts.next();
    let digits = |p: Option<&str>| {
        p.is_some_and(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let valid = matches!(class, Some("2" | "4" | "5"))
        && digits(parts.next())
        && digits(parts.next())
        && parts.next().is_none();
    if valid {
        f.status.clone()
    } else {
        match f.action {
            Action::Failed => "5.0.0".to_owned(),
            Action::Delayed => "4.0.0".to_owned(),
        }
    }
}

/// The Diagnostic-Code value (RFC 3464 §2.3.6): one logical line, ASCII only.
fn diagnostic(d: &Diagnostic) -> String {
    match d {
        Diagnostic::Reply(reply) => format!("smtp; {}", reply_line(reply)),
        Diagnostic::Other(text) => format!("X-Outbox; {}", safe(text, false)),
    }
}

/// A reply on one line: the code, then each line's text joined with spaces; a later
/// line's repeat of the first line's enhanced code is left out.
pub(crate) fn reply_line(reply: &Reply) -> String {
    let enhanced = reply.enhanced.map(|e| e.to_string());
    let mut out = reply.code.to_string();
    for (i, line) in reply.lines.iter().enumerate() {
        let mut text = line.as_str();
        if i > 0
            && let Some(e) = &enhanced
            && let Some(rest) = text.strip_prefix(e.as_str())
            && (rest.is_empty() || rest.starts_with(' '))
        {
            text = rest.trim_start();
        }
        if !text.is_empty() {
            out.push(' ');
            out.push_str(text);
        }
    }
    safe(&out, false)
}
