//! The message on standard input: read up to its end, its header block checked and
//! fixed (Bcc removed, bare names qualified, long lines folded, Date, Message-ID and
//! From added when missing), and with `-t` the recipients taken from it.

use std::io::{BufRead, BufReader, Read};

use mail_builder::headers::Header;
use mail_builder::headers::address::Address as HeaderAddress;

use super::address_list::address_list;
use super::{fold, qualify};
use crate::compose::{date_now, new_message_id};
use crate::envelope::{Address, Mailbox};
use crate::error::Error;

/// The display name of the From a message gets when it has none: `-F` (given empty,
/// no name at all), else the account's name when the sender is the account's
/// address, else the sender's own (`-f NAME <ADDR>`, or the user's when outbox chose
/// the sender), else `user_name()`, the full name of the user running outbox.
pub fn from_name(
    full_name: Option<&str>,
    account: Option<&Mailbox>,
    sender: &Mailbox,
    user_name: impl FnOnce() -> Option<String>,
) -> Option<String> {
    if let Some(name) = full_name {
        return (!name.trim().is_empty()).then(|| name.to_owned());
    }
    account
        .filter(|a| a.address == sender.address)
        .and_then(|a| a.name.clone())
        .or_else(|| sender.name.clone())
        .or_else(user_name)
}

/// Reads the message from `input`. Without `ignore_dots`, a line holding only "."
/// (with LF or CRLF) ends it, as Postfix's sendmail does; the "." line is not part of
/// the message. With it, everything to EOF.
///
/// A "." on the last line with no line end counts too, as in Postfix, which reads a
/// final unterminated line as a line. Only LF ends a line here: ".\r" followed by more
/// is not the end.
pub fn read_message(input: &mut dyn Read, ignore_dots: bool) -> std::io::Result<Vec<u8>> {
    let mut message = Vec::new();
    if ignore_dots {
        input.read_to_end(&mut message)?;
        return Ok(message);
    }
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if matches!(line.as_slice(), b".\n" | b".\r\n" | b".") {
            break;
        }
        message.extend_from_slice(&line);
    }
    Ok(message)
}

/// What to add to a message that lacks it.
#[derive(Clone, Debug)]
pub struct Fixups {
    pub from: Mailbox,
    pub message_id_domain: String,
    pub extract_recipients: bool,
    /// The domain for the addresses of the header that have none (RFC 5322 §3.4.1).
    pub local_domain: String,
}

/// A message from standard input, made fit to send.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The message to send: CRLF line ends throughout; Bcc (and Resent-Bcc) removed;
    /// bare local names in address fields given the local domain; lines over 998
    /// octets folded; Date, Message-ID and From added when missing.
    pub message: Vec<u8>,
    /// With -t: the addresses of To, Cc and Bcc (Resent-To/Cc/Bcc instead when any
    /// Resent- header is present, as Postfix does), in header order, group syntax
    /// handled.
    pub header_recipients: Vec<Address>,
    /// What was added, for -v (e.g. ["Date", "Message-ID", "From"]).
    pub added: Vec<&'static str>,
    /// The fields whose bare local names got the local domain, for -v.
    pub qualified: Vec<String>,
    /// The fields with a line too long that were folded, for -v.
    pub folded: Vec<String>,
}

pub use super::fold::MAX_LINE;

/// Fields a message never carries out: their point is that recipients do not see them.
const DROPPED: [&str; 2] = ["Bcc", "Resent-Bcc"];

/// Makes a message from standard input fit to send.
///
/// The header block is the lines up to the first empty line; a line that is neither a
/// field nor a continuation also ends it, and a blank line is put before it, as the
/// body cannot begin without one (RFC 5322 §2.1). Input whose first line is not a field
/// is all body, as in Postfix. Added fields go after the existing ones, in order.
///
/// Error::Data (exit 65), with the 1-based line number, for a header line longer than
/// 998 octets that has no place to fold it at, a NUL byte in the header block, or a -t
/// address that does not parse.
pub fn prepare(raw: &[u8], fixups: &Fixups) -> Result<Prepared, Error> {
    let message_id = new_message_id(&fixups.message_id_domain);
    prepare_with(raw, fixups, &date_now(), &message_id)
}

/// [`prepare`] with the date and Message-ID (without brackets) to add where missing.
fn prepare_with(
    raw: &[u8],
    fixups: &Fixups,
    date: &str,
    message_id: &str,
) -> Result<Prepared, Error> {
    let mut lines = Lines::new(raw).peekable();
    // An mbox "From " separator line is the mailbox's, not the message's.
    // "From : x" (space before the colon, RFC 5322 §4.5) is a header, not that line.
    lines.next_if(|l| l.text.starts_with(b"From ") && field_name(l.text).is_none());

    let mut fields: Vec<Field> = Vec::new();
    let starts_with_field = lines
        .peek()
        .is_some_and(|l| field_name(l.text).is_some() || l.text.is_empty());
    if starts_with_field {
        while let Some(line) = lines.next_if(|l| {
            !l.text.is_empty()
                && (field_name(l.text).is_some()
                    || (!fields.is_empty() && matches!(l.text.first(), Some(b' ' | b'\t'))))
        }) {
            if line.text.contains(&0) {
                return Err(Error::Data(format!(
                    "line {}: a NUL byte in the header",
                    line.number
                )));
            }
            // The loop takes a line that starts no field only when a field came before.
            match (field_name(line.text), fields.last_mut()) {
                (None, Some(field)) => field.lines.push(line.text),
                (name, _) => fields.push(Field {
                    name: name.unwrap_or_default(),
                    number: line.number,
                    lines: vec![line.text],
                }),
            }
        }
        // The empty line that ends the header block is written back below.
        lines.next_if(|l| l.text.is_empty());
    }

    let has = |name: &str| fields.iter().any(|f| f.name.eq_ignore_ascii_case(name));
    let header_recipients = if fixups.extract_recipients {
        extract(&fields)?
    } else {
        Vec::new()
    };

    let mut message = Vec::with_capacity(raw.len() + raw.len() / 32 + 256);
    let (mut qualified, mut folded) = (Vec::new(), Vec::new());
    for field in &fields {
        if DROPPED.iter().any(|d| field.name.eq_ignore_ascii_case(d)) {
            continue;
        }
        let (lines, change) = field.fixed(&fixups.local_domain)?;
        for line in lines {
            message.extend_from_slice(&line);
            message.extend_from_slice(b"\r\n");
        }
        if change.qualified {
            qualified.push(field.name.to_owned());
        }
        if change.folded {
            folded.push(field.name.to_owned());
        }
    }
    let mut added = Vec::new();
    if !has("Date") {
        message.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
        added.push("Date");
    }
    if !has("Message-ID") {
        message.extend_from_slice(format!("Message-ID: <{message_id}>\r\n").as_bytes());
        added.push("Message-ID");
    }
    if !has("From") {
        message.extend_from_slice(b"From: ");
        let from = &fixups.from;
        HeaderAddress::new_address(from.name.as_deref(), from.address.as_str())
            .write_header(&mut message, "From: ".len());
        added.push("From");
    }
    message.extend_from_slice(b"\r\n");
    for line in lines {
        message.extend_from_slice(line.text);
        if line.ended {
            message.extend_from_slice(b"\r\n");
        }
    }
    Ok(Prepared {
        message,
        header_recipients,
        added,
        qualified,
        folded,
    })
}

/// What [`Field::fixed`] did to a field.
#[derive(Clone, Copy, Debug, Default)]
struct Change {
    qualified: bool,
    folded: bool,
}

/// One header field: its name, the number of its first line, and its lines without
/// their ends.
struct Field<'a> {
    name: &'a str,
    number: usize,
    lines: Vec<&'a [u8]>,
}

impl Field<'_> {
    /// Its lines as they are sent: an address field's bare local names get `domain`
    /// ([`qualify`]), and a line over [`MAX_LINE`] octets is folded ([`fold`]).
    fn fixed(&self, domain: &str) -> Result<(Vec<Vec<u8>>, Change), Error> {
        let is_address = qualify::FIELDS
            .iter()
            .any(|f| self.name.eq_ignore_ascii_case(f));
        let qualified = is_address
            .then(|| qualify::qualify(&self.lines, domain))
            .flatten();
        let change = Change {
            qualified: qualified.is_some(),
            folded: false,
        };
        let lines = qualified.unwrap_or_else(|| self.lines.iter().map(|l| l.to_vec()).collect());
        if lines.iter().all(|l| l.len() <= MAX_LINE) {
            return Ok((lines, change));
        }
        let folded = fold::fold(&lines, is_address).map_err(|e| {
            Error::Data(format!(
                "line {}: a header line is longer than {MAX_LINE} octets (RFC 5322 §2.1.1) \
                 and has a run of {} octets with no white space{} to fold it at",
                self.number + e.line,
                e.octets,
                if is_address { " or comma" } else { "" }
            ))
        })?;
        Ok((
            folded,
            Change {
                folded: true,
                ..change
            },
        ))
    }

    /// The unfolded value (RFC 5322 §2.2.3: only the line breaks go).
    fn value(&self) -> Vec<u8> {
        let mut value = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            let text = match i {
                0 => line
                    .iter()
                    .position(|&b| b == b':')
                    .map_or(&line[..0], |colon| &line[colon + 1..]),
                _ => line,
            };
            value.extend_from_slice(text);
        }
        value
    }
}

/// The name of the field that `line` begins, if it begins one: printable ASCII but ':'
/// (RFC 5322 §2.2), then ':', with white space allowed before it (obs-optional, RFC 5322
/// §4.5).
fn field_name(line: &[u8]) -> Option<&str> {
    let end = line
        .iter()
        .position(|&b| !(33..=126).contains(&b) || b == b':')?;
    let (name, rest) = line.split_at(end);
    let rest = rest.trim_ascii_start();
    if name.is_empty() || !rest.starts_with(b":") {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// The recipients `-t` takes from the header (RFC 5322 §3.6.3, and §3.6.6 for Resent-).
fn extract(fields: &[Field]) -> Result<Vec<Address>, Error> {
    let resent = fields.iter().any(|f| {
        f.name
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("Resent-"))
    });
    let wanted: [&str; 3] = if resent {
        ["Resent-To", "Resent-Cc", "Resent-Bcc"]
    } else {
        ["To", "Cc", "Bcc"]
    };
    let mut out = Vec::new();
    for field in fields {
        if !wanted.iter().any(|w| field.name.eq_ignore_ascii_case(w)) {
            continue;
        }
        let fail = |why: String| {
            Error::Data(format!(
                "line {}: the {} header: {why}",
                field.number, field.name
            ))
        };
        let value = field.value();
        let value = String::from_utf8_lossy(&value);
        for spec in address_list(&value).map_err(fail)? {
            if spec.contains(char::REPLACEMENT_CHARACTER) {
                return Err(fail(format!("the address {spec:?} is not UTF-8")));
            }
            out.push(Address::new(&spec).map_err(|e| fail(e.to_string()))?);
        }
    }
    Ok(out)
}

/// A line of the input: its text without the line end, whether it had one, and its
/// 1-based number. LF, CRLF and a bare CR each end a line.
struct Line<'a> {
    text: &'a [u8],
    ended: bool,
    number: usize,
}

struct Lines<'a> {
    rest: &'a [u8],
    number: usize,
}

impl<'a> Lines<'a> {
    fn new(raw: &'a [u8]) -> Lines<'a> {
        Lines {
            rest: raw,
            number: 0,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        self.number += 1;
        let (text, ended, rest) = match self.rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(end) => {
                let (text, tail) = self.rest.split_at(end);
                let skip = if tail.starts_with(b"\r\n") { 2 } else { 1 };
                (text, true, tail.get(skip..).unwrap_or_default())
            }
            None => (self.rest, false, &self.rest[..0]),
        };
        self.rest = rest;
        Some(Line {
            text,
            ended,
            number: self.number,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8], ignore_dots: bool) -> Vec<u8> {
        read_message(&mut &input[..], ignore_dots).unwrap()
    }

    #[test]
    fn a_lone_dot_ends_the_input_unless_told_otherwise() {
        assert_eq!(read(b"a\n.\nb\n", false), b"a\n");
        assert_eq!(read(b"a\n.\nb\n", true), b"a\n.\nb\n");
        assert_eq!(read(b"a\r\n.\r\nb\r\n", false), b"a\r\n");
        assert_eq!(read(b"a\r\n.\r\nb\r\n", true), b"a\r\n.\r\nb\r\n");
        assert_eq!(read(b"a\n..\nb\n", false), b"a\n..\nb\n");
        assert_eq!(read(b"a\n. \nb\n", false), b"a\n. \nb\n");
        assert_eq!(read(b"a\n.x\nb", false), b"a\n.x\nb");
        assert_eq!(read(b".\nb\n", false), b"");
        // A final "." with no line end is still a line holding only ".".
        assert_eq!(read(b"a\n.", false), b"a\n");
        assert_eq!(read(b"a\n.", true), b"a\n.");
        // Only LF ends a line here, as in Postfix.
        assert_eq!(read(b"a\r.\rb\n", false), b"a\r.\rb\n");
        assert_eq!(read(b"no end", false), b"no end");
        assert_eq!(read(b"", false), b"");
    }

    const DATE: &str = "Sat, 21 Nov 2026 10:00:00 +0000";
    const ID: &str = "id.1@host.example.test";

    fn fixups(extract: bool) -> Fixups {
        Fixups {
            from: Mailbox::parse("Cron Daemon <root@host.example.test>").unwrap(),
            message_id_domain: "host.example.test".into(),
            extract_recipients: extract,
            local_domain: "local.example.test".into(),
        }
    }

    fn run(raw: &[u8]) -> Prepared {
        prepare_with(raw, &fixups(false), DATE, ID).unwrap()
    }

    fn text(p: &Prepared) -> &str {
        std::str::from_utf8(&p.message).unwrap()
    }

    const ADDED: &str = "Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
                         Message-ID: <id.1@host.example.test>\r\n\
                         From: \"Cron Daemon\" <root@host.example.test>\r\n";

    #[test]
    fn missing_fields_are_added_after_the_existing_ones() {
        let p = run(b"Subject: x\nTo: a@example.test\n\nbody\n");
        assert_eq!(
            text(&p),
            format!("Subject: x\r\nTo: a@example.test\r\n{ADDED}\r\nbody\r\n")
        );
        assert_eq!(p.added, ["Date", "Message-ID", "From"]);
        assert!(p.header_recipients.is_empty());
    }

    #[test]
    fn each_fixup_alone() {
        let p = run(b"From: a@example.test\nDate: x\n\nb\n");
        assert_eq!(
            text(&p),
            "From: a@example.test\r\nDate: x\r\nMessage-ID: <id.1@host.example.test>\r\n\r\nb\r\n"
        );
        assert_eq!(p.added, ["Message-ID"]);
        let p = run(b"From: a@example.test\nMessage-ID: <m@x>\n\nb\n");
        assert_eq!(
            text(&p),
            format!("From: a@example.test\r\nMessage-ID: <m@x>\r\nDate: {DATE}\r\n\r\nb\r\n")
        );
        assert_eq!(p.added, ["Date"]);
        let p = run(b"Date: x\nMessage-ID: <m@x>\n\nb\n");
        assert_eq!(
            text(&p),
            "Date: x\r\nMessage-ID: <m@x>\r\nFrom: \"Cron Daemon\" <root@host.example.test>\r\n\r\nb\r\n"
        );
        assert_eq!(p.added, ["From"]);
    }

    #[test]
    fn existing_fields_are_kept_whatever_their_case() {
        let raw = b"DATE: x\r\nmessage-id: <m@x>\r\nfRoM: a@example.test\r\n\r\nb\r\n";
        let p = run(raw);
        assert_eq!(p.message, raw);
        assert!(p.added.is_empty());
        // obs-optional: white space before the colon still names the field.
        let p = run(b"Date : x\nMessage-ID: <m@x>\nFrom: a@example.test\n\nb\n");
        assert!(p.added.is_empty(), "{:?}", p.added);
    }

    #[test]
    fn from_without_a_name_and_with_one_to_encode() {
        let mut f = fixups(false);
        f.from = Mailbox::parse("root@host.example.test").unwrap();
        let p = prepare_with(b"Date: x\nMessage-ID: <m@x>\n\nb\n", &f, DATE, ID).unwrap();
        assert_eq!(
            text(&p),
            "Date: x\r\nMessage-ID: <m@x>\r\nFrom: <root@host.example.test>\r\n\r\nb\r\n"
        );
        f.from = Mailbox::parse("Jörg Müller <jm@example.test>").unwrap();
        let p = prepare_with(b"Date: x\nMessage-ID: <m@x>\n\nb\n", &f, DATE, ID).unwrap();
        let t = text(&p);
        assert!(t.is_ascii(), "{t}");
        let from = t.lines().find(|l| l.starts_with("From: ")).unwrap();
        assert!(from.starts_with("From: =?utf-8?"), "{from}");
        assert!(from.ends_with(" <jm@example.test>"), "{from}");
        let parsed = mail_parser::MessageParser::default()
            .parse(&p.message)
            .unwrap();
        let addr = parsed.from().unwrap().first().unwrap();
        assert_eq!(addr.name(), Some("Jörg Müller"));
        // Specials in a name are quoted (RFC 5322 §3.2.3).
        f.from = Mailbox {
            name: Some("Last, \"First\"".into()),
            address: Address::new("lf@example.test").unwrap(),
        };
        let p = prepare_with(b"Date: x\nMessage-ID: <m@x>\n\nb\n", &f, DATE, ID).unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(&p.message)
            .unwrap();
        let addr = parsed.from().unwrap().first().unwrap();
        assert_eq!(addr.name(), Some("Last, \"First\""));
        assert_eq!(addr.address(), Some("lf@example.test"));
    }

    #[test]
    fn added_from_gets_a_display_name() {
        let account = Mailbox::parse("Alerts <alerts@example.test>").unwrap();
        let bare = |a: &str| Mailbox {
            name: None,
            address: Address::new(a).unwrap(),
        };
        let gecos = || Some("Root".to_owned());
        let name =
            |f: Option<&str>, acc: Option<&Mailbox>, s: &Mailbox| from_name(f, acc, s, gecos);
        // -F first; an empty -F asks for no name.
        let sender = bare("alerts@example.test");
        assert_eq!(
            name(Some("Cron Daemon"), Some(&account), &sender).as_deref(),
            Some("Cron Daemon")
        );
        assert_eq!(name(Some(""), Some(&account), &sender), None);
        // Then the account's, for the account's address (-f naming it, or none).
        assert_eq!(
            name(None, Some(&account), &sender).as_deref(),
            Some("Alerts")
        );
        assert_eq!(
            name(None, Some(&account), &account).as_deref(),
            Some("Alerts")
        );
        // Not for another address, nor an account without a name: the user's.
        assert_eq!(
            name(None, Some(&account), &bare("bounce@example.test")).as_deref(),
            Some("Root")
        );
        assert_eq!(
            name(None, Some(&bare("alerts@example.test")), &sender).as_deref(),
            Some("Root")
        );
        assert_eq!(name(None, None, &sender).as_deref(), Some("Root"));
        assert_eq!(from_name(None, None, &sender, || None), None);
    }

    #[test]
    fn the_added_from_name_is_quoted_or_encoded() {
        for name in ["Doe, John", "Jörg Müller", "Root", "a \"quoted\" (x) name"] {
            let mut f = fixups(false);
            f.from = Mailbox {
                name: Some(name.into()),
                address: Address::new("root@host.example.test").unwrap(),
            };
            let p = prepare_with(b"Subject: x\n\nb\n", &f, DATE, ID).unwrap();
            assert!(text(&p).is_ascii(), "{}", text(&p));
            let parsed = mail_parser::MessageParser::default()
                .parse(&p.message)
                .unwrap();
            let from = parsed.from().unwrap().first().unwrap();
            assert_eq!(from.name(), Some(name));
            assert_eq!(from.address(), Some("root@host.example.test"));
        }
        let mut f = fixups(false);
        f.from.name = Some("Root".into());
        let p = prepare_with(b"Subject: x\n\nb\n", &f, DATE, ID).unwrap();
        assert!(
            text(&p).contains("\r\nFrom: \"Root\" <root@host.example.test>\r\n"),
            "{}",
            text(&p)
        );
    }

    #[test]
    fn the_real_date_and_message_id() {
        let p = prepare(b"Subject: x\n\nb\n", &fixups(false)).unwrap();
        let t = text(&p);
        let date = t.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap();
        // "Sat, 21 Nov 2026 10:00:00 +0000" (RFC 5322 §3.3)
        let parts: Vec<&str> = date.split(' ').collect();
        assert_eq!(parts.len(), 6, "{date}");
        assert!(parts[0].ends_with(','), "{date}");
        // A zone offset, +hhmm or -hhmm (RFC 5322 §3.3); which one is pinned by
        // the TZ tests of the integration suite.
        let zone = parts[5].as_bytes();
        assert!(
            zone.len() == 5
                && matches!(zone[0], b'+' | b'-')
                && zone[1..].iter().all(u8::is_ascii_digit),
            "{date}"
        );
        let id = t
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap();
        assert!(
            id.starts_with('<') && id.ends_with("@host.example.test>"),
            "{id}"
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(&p.message)
            .unwrap();
        assert!(parsed.date().is_some());
        assert_eq!(parsed.message_id(), Some(&id[1..id.len() - 1]));
    }

    #[test]
    fn bcc_is_removed_with_its_continuation_lines() {
        let raw = b"To: a@example.test\n\
                    Bcc: b@example.test,\n \tc@example.test\n\
                    X-Bcc-Note: stays\n\
                    bcc: d@example.test\n\
                    Resent-Bcc: e@example.test\n\
                    \x20f@example.test\n\
                    Subject: s\n\
                    \n\
                    Bcc: in the body stays\n";
        let p = prepare_with(raw, &fixups(false), "d", "i@h").unwrap();
        assert_eq!(
            text(&p),
            "To: a@example.test\r\nX-Bcc-Note: stays\r\nSubject: s\r\n\
             Date: d\r\nMessage-ID: <i@h>\r\nFrom: \"Cron Daemon\" <root@host.example.test>\r\n\
             \r\nBcc: in the body stays\r\n"
        );
    }

    fn recipients(raw: &[u8]) -> Vec<String> {
        prepare_with(raw, &fixups(true), DATE, ID)
            .unwrap()
            .header_recipients
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    #[test]
    fn recipients_from_the_header() {
        assert_eq!(
            recipients(
                b"From: f@example.test\n\
                  To: A <a@example.test>, \"B, Bee\" <b@example.test>\n\
                  Subject: to c@example.test\n\
                  Cc: c@example.test (C), a@example.test\n\
                  Bcc: d@example.test\n\
                  Reply-To: r@example.test\n\
                  \n\
                  To: body@example.test\n"
            ),
            [
                "a@example.test",
                "b@example.test",
                "c@example.test",
                "a@example.test",
                "d@example.test"
            ]
        );
    }

    #[test]
    fn recipients_from_folded_lines_and_groups() {
        assert_eq!(
            recipients(
                b"To: undisclosed-recipients:;\n\
                  cc: team: x@example.test,\r\n\tY <y@example.test>;, z@example.test\n\
                  TO: \"Odd <, > name\" <q@example.test>,\n <@route.test,@r2.test:o@example.test>\n\
                  Cc: (only a comment), empty:;\n\
                  Bcc: john . doe @ example.test, \"q\\\"o\"@[127.0.0.1]\n\
                  \n"
            ),
            [
                "x@example.test",
                "y@example.test",
                "z@example.test",
                "q@example.test",
                "o@example.test",
                "john.doe@example.test",
                "\"q\\\"o\"@[127.0.0.1]",
            ]
        );
    }

    #[test]
    fn quoted_local_part_with_space_is_refused_by_the_address_check() {
        let err = prepare_with(b"To: \"q u\"@example.test\n\n", &fixups(true), DATE, ID)
            .err()
            .unwrap();
        assert!(matches!(err, Error::Data(_)), "{err:?}");
    }

    #[test]
    fn resent_fields_take_over() {
        let raw = b"To: old@example.test\n\
                    Resent-From: me@example.test\n\
                    Resent-To: new@example.test\n\
                    Cc: old2@example.test\n\
                    Resent-Cc: new2@example.test\n\
                    Resent-Bcc: hidden@example.test\n\
                    \n\
                    b\n";
        let p = prepare_with(raw, &fixups(true), DATE, ID).unwrap();
        let got: Vec<String> = p.header_recipients.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            got,
            [
                "new@example.test",
                "new2@example.test",
                "hidden@example.test"
            ]
        );
        assert!(!text(&p).contains("hidden"), "{}", text(&p));
        assert!(text(&p).contains("Resent-To: new@example.test\r\n"));
    }

    #[test]
    fn without_t_the_header_is_not_read_for_recipients() {
        let p = prepare_with(b"To: not an address\n\nb\n", &fixups(false), DATE, ID).unwrap();
        assert!(p.header_recipients.is_empty());
    }

    #[test]
    fn bad_header_addresses_name_the_field_and_line() {
        for (raw, want) in [
            (
                &b"Subject: s\nTo: ok@example.test,\n not an address\n\n"[..],
                "line 2: the To header: invalid address \"not an address\": \
                 the part before @ has a character that needs quoting",
            ),
            (
                b"Subject: s\n\tmore\nCc: <a@example.test\n\n",
                "line 3: the Cc header: \"<a@example.test\" has no closing >",
            ),
            (
                b"bcc: \"unterminated@example.test\n\n",
                "line 1: the bcc header: a quoted string has no closing quote",
            ),
            (
                b"To: (unclosed a@example.test\n\n",
                "line 1: the To header: a comment has no closing parenthesis",
            ),
            (
                b"To: <>\n\n",
                "line 1: the To header: an empty address in \"<>\"",
            ),
            (
                b"To: <a@example.test> junk\n\n",
                "line 1: the To header: \"junk\" after <...> in \"<a@example.test> junk\"",
            ),
            (
                b"To: <a@x.test> <b@x.test>\n\n",
                "line 1: the To header: a second <...> after \"<a@x.test>\": is a comma missing?",
            ),
            (
                b"To: caf\xe9@example.test\n\n",
                "line 1: the To header: the address \"caf\u{FFFD}@example.test\" is not UTF-8",
            ),
        ] {
            match prepare_with(raw, &fixups(true), DATE, ID) {
                Err(e @ Error::Data(_)) => {
                    assert_eq!(e.to_string(), want);
                    assert_eq!(crate::exit::code(&e), crate::exit::DATAERR);
                }
                Err(other) => panic!("{other:?}"),
                Ok(p) => panic!("accepted {raw:?}: {:?}", p.header_recipients),
            }
        }
    }

    #[test]
    fn input_without_a_header_is_all_body() {
        let p = run(b"hello\n");
        assert_eq!(text(&p), format!("{ADDED}\r\nhello\r\n"));
        let p = run(b"hello: world? no, this\nis text\n");
        // A first line of the form "name:" is a field, as in Postfix; the line after
        // it that is not one starts the body, after a blank line.
        assert_eq!(
            text(&p),
            format!("hello: world? no, this\r\n{ADDED}\r\nis text\r\n")
        );
        let p = run(b" indented first line\n");
        assert_eq!(text(&p), format!("{ADDED}\r\n indented first line\r\n"));
        let p = run(b"two words: x\n");
        assert_eq!(text(&p), format!("{ADDED}\r\ntwo words: x\r\n"));
        let p = run(b"");
        assert_eq!(text(&p), format!("{ADDED}\r\n"));
        // An empty first line is an empty header block, not a line of the body.
        let p = run(b"\nbody\n");
        assert_eq!(text(&p), format!("{ADDED}\r\nbody\r\n"));
    }

    #[test]
    fn a_header_with_no_body_keeps_the_blank_line() {
        let p = run(b"Subject: x\n");
        assert_eq!(text(&p), format!("Subject: x\r\n{ADDED}\r\n"));
        let p = run(b"Subject: x");
        assert_eq!(text(&p), format!("Subject: x\r\n{ADDED}\r\n"));
        let p = run(b"Subject: x\n\n");
        assert_eq!(text(&p), format!("Subject: x\r\n{ADDED}\r\n"));
    }

    #[test]
    fn an_mbox_from_line_is_dropped() {
        let p = run(b"From someone@example.test Sat Nov 21 10:00:00 2026\nSubject: x\n\nb\n");
        assert_eq!(text(&p), format!("Subject: x\r\n{ADDED}\r\nb\r\n"));
        let p = run(b"From someone Sat Nov 21 10:00:00 2026\nhello\n");
        let kept = run(b"From : a@example.test\nSubject: x\n\nb\n");
        assert!(
            String::from_utf8_lossy(&kept.message).starts_with("From : a@example.test\r\n"),
            "{}",
            String::from_utf8_lossy(&kept.message)
        );
        assert_eq!(text(&p), format!("{ADDED}\r\nhello\r\n"));
        // Only on the first line.
        let p = run(b"Subject: x\n\nFrom here on\n");
        assert_eq!(
            text(&p),
            format!("Subject: x\r\n{ADDED}\r\nFrom here on\r\n")
        );
    }

    #[test]
    fn header_lines_up_to_998_octets() {
        let ok = format!("Subject: {}\n\nb\n", "x".repeat(MAX_LINE - 9));
        assert_eq!(ok.find('\n'), Some(MAX_LINE));
        let p = run(ok.as_bytes());
        assert!(text(&p).starts_with(&ok[..MAX_LINE]));
        let folded = format!(
            "To: a@example.test\nX-Long: y\n {}\n\nb\n",
            "x".repeat(MAX_LINE)
        );
        match prepare_with(folded.as_bytes(), &fixups(false), DATE, ID) {
            Err(Error::Data(msg)) => assert_eq!(
                msg,
                "line 3: a header line is longer than 998 octets (RFC 5322 §2.1.1) \
                 and has a run of 999 octets with no white space to fold it at"
            ),
            other => panic!("{:?}", other.map(|p| p.message.len())),
        }
        // CRLF is not counted.
        let crlf = format!("Subject: {}\r\n\r\nb\r\n", "x".repeat(MAX_LINE - 9));
        assert!(prepare_with(crlf.as_bytes(), &fixups(false), DATE, ID).is_ok());
        // The body is not held to it here.
        let body = format!("Subject: x\n\n{}\n", "x".repeat(5000));
        assert!(prepare_with(body.as_bytes(), &fixups(false), DATE, ID).is_ok());
    }

    #[test]
    fn long_header_lines_are_folded_not_refused() {
        // PHP's mail() with a long Bcc, through `sendmail -t -i` (issue 9, item 4).
        let bcc: Vec<String> = (1..=60).map(|i| format!("b{i}@example.test")).collect();
        let raw = format!(
            "To: a@example.test\nBcc: {}\nSubject: x\n\nbody\n",
            bcc.join(", ")
        );
        assert!(raw.lines().nth(1).unwrap().len() > MAX_LINE);
        let p = prepare_with(raw.as_bytes(), &fixups(true), DATE, ID).unwrap();
        let got: Vec<String> = p.header_recipients.iter().map(|a| a.to_string()).collect();
        let mut want = vec!["a@example.test".to_owned()];
        want.extend(bcc.iter().cloned());
        assert_eq!(got, want);
        assert!(!text(&p).contains("Bcc"), "{}", text(&p));
        assert!(p.folded.is_empty() && p.qualified.is_empty());

        // A long To is sent folded, every line within the limit, the addresses whole.
        let to: Vec<String> = (1..=60).map(|i| format!("t{i}@example.test")).collect();
        let raw = format!("To: {}\nSubject: x\n\nbody\n", to.join(", "));
        let p = prepare_with(raw.as_bytes(), &fixups(false), DATE, ID).unwrap();
        let t = text(&p);
        let head = &t[..t.find("\r\n\r\n").unwrap()];
        assert!(head.split("\r\n").all(|l| l.len() <= 78), "{head}");
        assert!(head.split("\r\n").count() > 10, "{head}");
        let parsed = mail_parser::MessageParser::default()
            .parse(&p.message)
            .unwrap();
        let got: Vec<&str> = parsed
            .to()
            .unwrap()
            .iter()
            .map(|a| a.address().unwrap())
            .collect();
        assert_eq!(got, to);
        assert!(t.ends_with("\r\n\r\nbody\r\n"));
        assert_eq!(p.folded, ["To"]);
    }

    #[test]
    fn an_unfoldable_header_line_is_refused_with_its_number() {
        let raw = format!("Subject: x\nX-Token: {}\n\nb\n", "t".repeat(MAX_LINE));
        match prepare_with(raw.as_bytes(), &fixups(false), DATE, ID) {
            Err(e @ Error::Data(_)) => {
                assert_eq!(
                    e.to_string(),
                    "line 2: a header line is longer than 998 octets (RFC 5322 §2.1.1) \
                     and has a run of 999 octets with no white space to fold it at"
                );
                assert_eq!(crate::exit::code(&e), crate::exit::DATAERR);
            }
            other => panic!("{:?}", other.map(|p| p.message.len())),
        }
        // An unfoldable Bcc is no trouble: it is not sent.
        let raw = format!("To: a@example.test\nBcc: {}\n\nb\n", "b".repeat(1200));
        let p = prepare_with(raw.as_bytes(), &fixups(false), DATE, ID).unwrap();
        assert!(!text(&p).contains("bbbb"));
    }

    #[test]
    fn unqualified_header_addresses_get_the_domain() {
        // cron (issue 9, item 5): the header gets the domain, the envelope keeps the
        // bare name for the aliases.
        let raw = b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@h> x\n\
                    Reply-To: ops, \"A, B\" <ab>\nX-Other: root\n\nb\n";
        let p = prepare_with(raw, &fixups(true), DATE, ID).unwrap();
        assert_eq!(
            text(&p),
            format!(
                "From: root@local.example.test (Cron Daemon)\r\n\
                 To: root@local.example.test\r\n\
                 Subject: Cron <root@h> x\r\n\
                 Reply-To: ops@local.example.test, \"A, B\" <ab@local.example.test>\r\n\
                 X-Other: root\r\n\
                 Date: {DATE}\r\nMessage-ID: <{ID}>\r\n\r\nb\r\n"
            )
        );
        let got: Vec<String> = p.header_recipients.iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["root"]);
        assert_eq!(p.qualified, ["From", "To", "Reply-To"]);
        // Resent- fields too; a group with no one in it is left as it is.
        let raw = b"Resent-From: admin\nResent-To: undisclosed-recipients:;\n\
                    Resent-Cc: <backup>\nResent-Sender: x@y.test\n\nb\n";
        let p = run(raw);
        assert!(
            text(&p).starts_with(
                "Resent-From: admin@local.example.test\r\n\
                 Resent-To: undisclosed-recipients:;\r\n\
                 Resent-Cc: <backup@local.example.test>\r\n\
                 Resent-Sender: x@y.test\r\n"
            ),
            "{}",
            text(&p)
        );
    }

    #[test]
    fn a_line_made_too_long_by_the_domain_is_folded() {
        let names: Vec<String> = (0..99).map(|i| format!("user{i:04}")).collect();
        let line = format!("To: {}", names.join(", "));
        assert!(line.len() <= MAX_LINE);
        let p = run(format!("{line}\n\nb\n").as_bytes());
        let t = text(&p);
        let head = &t[..t.find("\r\n\r\n").unwrap()];
        assert!(head.split("\r\n").all(|l| l.len() <= 78), "{head}");
        let parsed = mail_parser::MessageParser::default()
            .parse(&p.message)
            .unwrap();
        let got: Vec<String> = parsed
            .to()
            .unwrap()
            .iter()
            .map(|a| a.address().unwrap().to_owned())
            .collect();
        let want: Vec<String> = names
            .iter()
            .map(|n| format!("{n}@local.example.test"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn nul_in_the_header_is_refused_but_not_in_the_body() {
        match prepare_with(b"Subject: x\nX-A: a\0b\n\nb\n", &fixups(false), DATE, ID) {
            Err(e @ Error::Data(_)) => {
                assert_eq!(e.to_string(), "line 2: a NUL byte in the header");
                assert_eq!(crate::exit::code(&e), crate::exit::DATAERR);
            }
            other => panic!("{:?}", other.map(|p| p.message)),
        }
        let p = run(b"Subject: x\n\na\0b\n");
        assert_eq!(
            p.message,
            format!("Subject: x\r\n{ADDED}\r\na\0b\r\n").as_bytes()
        );
    }

    #[test]
    fn line_ends_become_crlf_everywhere() {
        let p = run(b"Subject: x\rTo: a@example.test\r\n folded\n\r\nl1\rl2\nl3\r\nl4\r\r\n\nend");
        assert_eq!(
            text(&p),
            format!(
                "Subject: x\r\nTo: a@example.test\r\n folded\r\n{ADDED}\r\n\
                 l1\r\nl2\r\nl3\r\nl4\r\n\r\n\r\nend"
            )
        );
        // Line numbers count each kind of line end once.
        let raw = b"A: 1\rB: 2\r\nC: \0\n\n";
        let err = prepare_with(raw, &fixups(false), DATE, ID).err().unwrap();
        assert!(err.to_string().starts_with("line 3:"), "{err}");
    }

    #[test]
    fn the_body_is_not_otherwise_touched() {
        let body = b"..dots\n.\nFrom the start\n\xff\xfe bytes\n\tindented";
        let mut raw = b"Subject: x\n\n".to_vec();
        raw.extend_from_slice(body);
        let p = run(&raw);
        let want = format!("Subject: x\r\n{ADDED}\r\n");
        let mut want = want.into_bytes();
        want.extend_from_slice(b"..dots\r\n.\r\nFrom the start\r\n\xff\xfe bytes\r\n\tindented");
        assert_eq!(p.message, want);
    }

    #[test]
    fn a_line_that_is_not_a_field_ends_the_header_block() {
        let p = run(b"Subject: x\nTo: a@example.test\nnot a field\nmore\n");
        assert_eq!(
            text(&p),
            format!("Subject: x\r\nTo: a@example.test\r\n{ADDED}\r\nnot a field\r\nmore\r\n")
        );
    }
}
