//! One log line: what became of a group of recipients in one attempt, as `key=value`
//! pairs in the manner of Postfix's smtp(8) and msmtp.

use std::time::Duration;

use crate::envelope::Address;
use crate::smtp::reply::sanitize;

/// Longest text of one line, without the time and tag. RFC 5424 §6.1 has receivers
/// take 2048 octets; the syslog header (at most 45 octets) still fits beside this.
pub const MAX_TEXT: usize = 2000;
/// Longest reply kept in a line, in octets before quoting: an SMTP reply line is at
/// most 512 octets (RFC 5321 §4.5.3.1.5); a longer reply is cut and marked `...`.
pub const MAX_REPLY: usize = 512;
/// Longest value of any other field, in octets before quoting: a path is at most 256
/// octets (RFC 5321 §4.5.3.1.3), and nothing else in a line needs more.
pub const MAX_VALUE: usize = 256;

/// What became of the recipients in this attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The server took the message for them.
    Sent,
    /// A temporary failure: the message waits in the queue for another attempt.
    Deferred,
    /// A permanent failure: the sender is told (or the failure logged, for `<>`).
    Bounced,
    /// Still undelivered when the queue's lifetime ran out: given up, as a bounce.
    Expired,
    /// The service took a drop into the system queue (server= names the spool).
    Queued,
    /// Refused before it was queued, by a limit of the system spool: the caller was
    /// told by its exit code.
    Refused,
    /// A drop the service would not take (a link, a device, garbage, over the size
    /// limit), moved into the spool's `bad/`.
    SetAside,
}

impl Status {
    /// The word the line holds: `status=sent`.
    pub fn key(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Deferred => "deferred",
            Status::Bounced => "bounced",
            Status::Expired => "expired",
            Status::Queued => "queued",
            Status::Refused => "refused",
            Status::SetAside => "set-aside",
        }
    }

    /// The syslog severity (RFC 5424 §6.2.1). Postfix logs every outcome at info;
    /// mail that will never arrive is logged at warning so that `journalctl -p
    /// warning` shows it, while a deferral is the queue's ordinary life.
    pub fn severity(self) -> u8 {
        match self {
            Status::Sent | Status::Deferred | Status::Queued => 6,
            Status::Bounced | Status::Expired | Status::Refused | Status::SetAside => 4,
        }
    }
}

/// One line: what became of `to` in one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// outbox's id (queue id or submission id).
    pub id: String,
    /// The server's id ("queued as 4Xyz").
    pub queued_as: Option<String>,
    /// The local user.
    pub uid: u32,
    /// Its login name.
    pub user: Option<String>,
    /// `None`: the null sender `<>`.
    pub from: Option<Address>,
    pub to: Vec<Address>,
    /// As configured, host:port (or the socket path).
    pub server: String,
    /// The address connected, ip:port.
    pub peer: Option<String>,
    /// The TLS version, and the cipher if known: "TLSv1.3/TLS_AES_256_GCM_SHA384".
    pub tls: Option<String>,
    /// The AUTH user name (never a secret).
    pub auth: Option<String>,
    pub size: u64,
    /// From arrival to the end of this attempt.
    pub delay: Duration,
    pub status: Status,
    /// The enhanced status code ("2.0.0", "5.1.1", "4.4.7").
    pub dsn: Option<String>,
    /// The reply (or the reason); sanitised and put on one line in the text.
    pub reply: String,
    /// More key=value pairs, in order, after the fixed ones: ("bounce", "sent as 17...").
    pub notes: Vec<(&'static str, String)>,
}

impl Line {
    /// The line's text, without time or tag: `id=… queued_as=… uid=1000 user=alice
    /// from=<a@x> to=<b@y>,<c@y> server=… peer=… tls=… auth=… size=1234 delay=0.42
    /// status=sent dsn=2.0.0 reply="250 2.0.0 Ok: queued as 4Xyz" bounce=…`.
    ///
    /// Absent optional fields are left out. A value holding a space, a quote, a
    /// backslash or `=` (or nothing) is put in quotes with `\"` and `\\` escapes;
    /// control and invisible characters become `?` as [`sanitize`] makes them, and a
    /// reply of several lines is joined with " / ". When the recipients would make a
    /// line longer than [`MAX_TEXT`], it is split into several, each with a share of
    /// `to` and the rest the same.
    pub fn texts(&self) -> Vec<String> {
        let mut head = String::new();
        push_field(&mut head, "id", &self.id);
        if let Some(q) = &self.queued_as {
            push_field(&mut head, "queued_as", q);
        }
        push_field(&mut head, "uid", &self.uid.to_string());
        if let Some(user) = &self.user {
            push_field(&mut head, "user", user);
        }
        let from = self.from.as_ref().map_or("", Address::as_str);
        push_field(&mut head, "from", &format!("<{from}>"));

        let mut tail = String::new();
        push_field(&mut tail, "server", &self.server);
        for (key, value) in [
            ("peer", &self.peer),
            ("tls", &self.tls),
            ("auth", &self.auth),
        ] {
            if let Some(value) = value {
                push_field(&mut tail, key, value);
            }
        }
        push_field(&mut tail, "size", &self.size.to_string());
        push_field(
            &mut tail,
            "delay",
            &format!("{:.2}", self.delay.as_secs_f64()),
        );
        push_field(&mut tail, "status", self.status.key());
        if let Some(dsn) = &self.dsn {
            push_field(&mut tail, "dsn", dsn);
        }
        let mut notes = String::new();
        for (key, value) in &self.notes {
            push_field(&mut notes, key, value);
        }
        // The reply gives way to the other fields, so that a line with one recipient
        // (of the longest) still fits.
        let longest = self.to.iter().map(|a| a.as_str().len() + 2).max();
        let fixed = head.len() + tail.len() + notes.len() + " to=\"\"".len();
        let room = MAX_TEXT.saturating_sub(fixed + 2 * longest.unwrap_or(0));
        let reply = one_line(&self.reply);
        let mut max = MAX_REPLY;
        let mut field = String::new();
        loop {
            field.clear();
            push_value(&mut field, "reply", &reply, max);
            if field.len() <= room || max == 0 {
                break;
            }
            max = max.saturating_sub(field.len() - room);
        }
        tail.push_str(&field);
        tail.push_str(&notes);

        let recipients: Vec<Piece> = self
            .to
            .iter()
            .map(|a| Piece::new(&format!("<{a}>")))
            .collect();
        // Room for the recipients: the fixed fields, " to=" and, if quoted, two quotes.
        let room = MAX_TEXT.saturating_sub(head.len() - 1 + tail.len() + " to=\"\"".len());
        let mut lines = Vec::new();
        for group in groups(&recipients, room) {
            // Every field was pushed with a space before it; the line starts without.
            let mut text = head[1..].to_owned();
            text.push_str(" to=");
            let quoted = group.is_empty() || group.iter().any(|p| p.needs_quotes);
            if quoted {
                text.push('"');
            }
            for (i, piece) in group.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&piece.escaped);
            }
            if quoted {
                text.push('"');
            }
            text.push_str(&tail);
            // Only configured values far beyond any real one can make the fixed
            // fields alone too long: the line is then cut rather than sent whole.
            lines.push(cut(text, MAX_TEXT));
        }
        lines
    }
}

/// One recipient as the line writes it: escaped, and whether the list needs quotes.
struct Piece {
    escaped: String,
    needs_quotes: bool,
}

impl Piece {
    fn new(value: &str) -> Piece {
        let clean = cut(sanitize(value), MAX_VALUE);
        Piece {
            needs_quotes: needs_quotes(&clean),
            escaped: escape(&clean),
        }
    }
}

/// The recipients in groups whose list takes at most `room` octets; each group has
/// one recipient at least, and an empty `to` makes one empty group.
fn groups(pieces: &[Piece], room: usize) -> Vec<&[Piece]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut len = 0;
    for (i, piece) in pieces.iter().enumerate() {
        let more = piece.escaped.len() + usize::from(i > start);
        if i > start && len + more > room {
            out.push(&pieces[start..i]);
            start = i;
            len = piece.escaped.len();
        } else {
            len += more;
        }
    }
    out.push(&pieces[start..]);
    out
}

/// Appends ` key=value`, the value sanitised, cut to [`MAX_VALUE`] and quoted as needed.
fn push_field(out: &mut String, key: &str, value: &str) {
    push_value(out, key, value, MAX_VALUE);
}

/// Appends ` key=value`, the value cut to `max` octets and quoted as needed.
fn push_value(out: &mut String, key: &str, value: &str, max: usize) {
    let clean = cut(sanitize(value), max);
    out.push(' ');
    out.push_str(key);
    out.push('=');
    if needs_quotes(&clean) {
        out.push('"');
        out.push_str(&escape(&clean));
        out.push('"');
    } else {
        out.push_str(&clean);
    }
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty() || value.contains([' ', '"', '\\', '='])
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A reply of several lines as one: its lines joined with " / ", empty ones left out.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// `text` cut to at most `max` octets on a character boundary, ending in `...` when
/// something was taken off.
fn cut(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
#[path = "line_tests.rs"]
mod tests;
