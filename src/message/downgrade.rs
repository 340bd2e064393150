//! Header fields in UTF-8 (RFC 6532) for a server that does not offer SMTPUTF8.
//!
//! Only a server that offers SMTPUTF8 may be given a message whose header section holds
//! raw UTF-8 (RFC 6531 §3.4). For any other, the header section is rewritten in ASCII
//! as RFC 2047 allows: unstructured text (Subject and the like), display names and
//! comments become encoded-words (§5), at most 75 characters each on lines of at most
//! 76 (§2); a domain in UTF-8 becomes its A-labels, as in the envelope. What has no
//! ASCII form (an address whose local part is UTF-8, UTF-8 before the @ of a
//! Message-ID) cannot go to such a server at all: the message is refused, as a UTF-8
//! envelope address is.
//!
//! Only the header section is read and rewritten: the body is read on from the
//! message as it is, when it is sent.

use std::io::{self, Read};

use super::{Message, Resume, WireCounter};
use crate::envelope::{Address, domain_to_ascii};
use crate::error::Error;

mod lexer;
mod words;

use lexer::{Tok, comment_items, phrase_items, tokenize};
use words::{Folder, Item, emit};
#[cfg(test)]
use words::{MAX_ENCODED_WORD, MAX_LINE, is_encoded_word};

/// Fields whose value is addresses (RFC 5322 §3.6.2, §3.6.3, §3.6.6, §3.6.7, and the
/// common extensions of the same form).
const ADDRESS_FIELDS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "Resent-From",
    "Resent-Sender",
    "Resent-Reply-To",
    "Resent-To",
    "Resent-Cc",
    "Resent-Bcc",
    "Return-Path",
    "Disposition-Notification-To",
    "Mail-Followup-To",
    "Mail-Reply-To",
    "Errors-To",
    "Return-Receipt-To",
];

/// Fields whose value is message identifiers (RFC 5322 §3.6.4, RFC 2045 §7):
/// `<left@right>`, where `right` may be a domain in UTF-8.
const MSG_ID_FIELDS: &[&str] = &[
    "Message-ID",
    "Resent-Message-ID",
    "In-Reply-To",
    "References",
    "Content-ID",
];

/// Structured fields that hold no addresses: in them only comments can be encoded
/// (RFC 2047 §5(2)). Any field not named here or above is taken as unstructured.
const STRUCTURED_FIELDS: &[&str] = &[
    "Date",
    "Resent-Date",
    "Received",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Disposition",
    "Content-Language",
    "List-Id",
    "List-Post",
    "List-Help",
    "List-Subscribe",
    "List-Unsubscribe",
    "List-Owner",
    "List-Archive",
    "Archived-At",
    "Auto-Submitted",
];

/// A message's header section made fit for a server without SMTPUTF8, and where its
/// body begins: see the module documentation.
#[derive(Debug)]
pub struct Downgraded {
    head: Vec<u8>,
    /// Where in the message the body is read on from.
    resume: Resume,
    wire_size: u64,
    eight_bit: bool,
    fields: Vec<String>,
}

impl Downgraded {
    /// The size on the wire (RFC 1870 §3) of the message as it goes.
    pub fn wire_size(&self) -> u64 {
        self.wire_size
    }

    /// Whether the message as it goes still holds 8-bit data (in its body, or in a
    /// field that is not UTF-8, which is left as it is).
    pub fn is_8bit(&self) -> bool {
        self.eight_bit
    }

    /// The names of the fields rewritten, in the order of the header.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The message as it goes: the rewritten header section, then the body of
    /// `message`, which must be the message this was made from.
    pub fn reader<'a>(&'a self, message: &'a Message) -> impl Read + 'a {
        io::Cursor::new(&self.head[..]).chain(message.reader_from(&self.resume))
    }
}

impl Message {
    /// The message for a server without SMTPUTF8 (RFC 6531): its header section in
    /// ASCII, read and rewritten here, the body left to be read when it is sent.
    ///
    /// Error::Unsendable (exit 69) when a field has no ASCII form (an address whose
    /// local part is UTF-8, UTF-8 outside a comment in a structured field).
    pub fn downgraded(&self) -> Result<Downgraded, Error> {
        let io_error = |source| Error::LocalIo {
            context: "cannot read the message's header".into(),
            source,
        };
        let mut section = Vec::new();
        self.reader()
            .take(self.header_len)
            .read_to_end(&mut section)
            .map_err(io_error)?;
        let (head, fields) = header_section(&section)?;
        let resume = self.resume_at(self.header_len).ok_or_else(|| {
            Error::Unsendable("the message's header section does not end where it can".into())
        })?;
        let size = |bytes: &[u8]| {
            let mut counter = WireCounter::default();
            counter.feed(bytes);
            counter.finish()
        };
        Ok(Downgraded {
            wire_size: self.wire_size.saturating_sub(size(&section)) + size(&head),
            eight_bit: !head.is_ascii() || self.body_8bit,
            head,
            resume,
            fields,
        })
    }
}

/// Finds where a message's header section ends (after the empty line that ends it;
/// LF, CRLF and a lone CR each end a line) and whether it, or what follows it, holds
/// 8-bit bytes; fed a piece at a time.
#[derive(Debug, Default)]
pub(super) struct HeaderScan {
    pos: u64,
    end: Option<u64>,
    /// Some byte of the current line has been seen.
    mid_line: bool,
    /// The last byte was a CR, which ended an empty line if true.
    cr: Option<bool>,
    header_8bit: bool,
    body_8bit: bool,
}

impl HeaderScan {
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while self.end.is_none() && i < bytes.len() {
            let (b, at) = (bytes[i], self.pos + i as u64);
            i += 1;
            if let Some(empty) = self.cr.take() {
                if b == b'\n' {
                    if empty {
                        self.end = Some(at + 1);
                    }
                    continue;
                }
                if empty {
                    self.end = Some(at);
                    i -= 1;
                    break;
                }
            }
            match b {
                b'\r' => {
                    self.cr = Some(!self.mid_line);
                    self.mid_line = false;
                }
                b'\n' if !self.mid_line => self.end = Some(at + 1),
                b'\n' => self.mid_line = false,
                _ => {
                    self.mid_line = true;
                    self.header_8bit |= !b.is_ascii();
                }
            }
        }
        self.body_8bit |= !bytes[i..].is_ascii();
        self.pos += bytes.len() as u64;
    }

    /// `n` bytes of 7-bit lines, none empty, each ended by CRLF (base64 text).
    pub(super) fn feed_clean(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        if self.end.is_none() {
            if self.cr.take() == Some(true) {
                self.end = Some(self.pos);
            }
            self.mid_line = false;
        }
        self.pos += n;
    }

    /// The length of the header section, and whether it and the rest hold 8-bit bytes.
    pub(super) fn finish(&self) -> (u64, bool, bool) {
        (
            self.end.unwrap_or(self.pos),
            self.header_8bit,
            self.body_8bit,
        )
    }
}

/// The header section `section` (the empty line that ends it included) with every
/// field that holds UTF-8 rewritten in ASCII, and the names of those fields. Fields in
/// ASCII are kept byte for byte, line ends and all; rewritten ones end in CRLF.
/// A field whose 8-bit bytes are not UTF-8 is left as it is: there is no telling what
/// its text is.
pub fn header_section(section: &[u8]) -> Result<(Vec<u8>, Vec<String>), Error> {
    let mut out = Vec::with_capacity(section.len() + section.len() / 2);
    let mut fields: Vec<String> = Vec::new();
    for unit in units(section) {
        if unit.raw.is_ascii() {
            out.extend_from_slice(unit.raw);
            continue;
        }
        let Some(colon) = unit.colon else {
            return Err(Error::Unsendable(format!(
                "line {} of the header holds 8-bit bytes and is not a header field, and \
                 the server does not offer SMTPUTF8 (RFC 6531)",
                unit.number
            )));
        };
        let mut value = unit.lines[0][colon..].to_vec();
        for line in &unit.lines[1..] {
            value.extend_from_slice(line);
        }
        let Ok(value) = String::from_utf8(value) else {
            out.extend_from_slice(unit.raw);
            continue;
        };
        let prefix = &unit.lines[0][..colon];
        // A field name is printable ASCII (RFC 5322 §2.2).
        let prefix = String::from_utf8_lossy(prefix);
        let name = prefix.trim_end_matches(':').trim_end();
        let items = items_of(name, &value)?;
        let mut folder = Folder::new(&prefix);
        emit(&mut folder, &items, 0);
        out.extend_from_slice(folder.out.as_bytes());
        out.extend_from_slice(b"\r\n");
        if !fields.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            fields.push(name.to_owned());
        }
    }
    Ok((out, fields))
}

/// One field of the header section with its continuation lines, or a line that is no
/// field (the empty line that ends the section).
struct Unit<'a> {
    /// Its bytes, line ends included.
    raw: &'a [u8],
    /// Its lines without their ends.
    lines: Vec<&'a [u8]>,
    /// For a field, where its value begins in the first line (after the colon).
    colon: Option<usize>,
    /// The 1-based number of its first line.
    number: usize,
}

fn units(section: &[u8]) -> Vec<Unit<'_>> {
    let mut units: Vec<Unit> = Vec::new();
    // Where the last unit begins.
    let mut begun = 0;
    let (mut at, mut number) = (0, 0);
    while at < section.len() {
        number += 1;
        let rest = &section[at..];
        let (text, end) = match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) if rest[i..].starts_with(b"\r\n") => (&rest[..i], i + 2),
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        let continues = matches!(text.first(), Some(b' ' | b'\t'));
        match units.last_mut() {
            Some(unit) if continues && unit.colon.is_some() => {
                unit.raw = &section[begun..at + end];
                unit.lines.push(text);
            }
            _ => {
                begun = at;
                units.push(Unit {
                    raw: &section[at..at + end],
                    lines: vec![text],
                    colon: field_colon(text),
                    number,
                });
            }
        }
        at += end;
    }
    units
}

/// Where the value of the field that `line` begins starts, right after its colon: a
/// name of printable ASCII but ':' (RFC 5322 §2.2), white space allowed before the
/// colon (§4.5).
fn field_colon(line: &[u8]) -> Option<usize> {
    let name = line
        .iter()
        .position(|&b| !(33..=126).contains(&b) || b == b':')?;
    let colon = name + line[name..].iter().position(|&b| b != b' ' && b != b'\t')?;
    (name > 0 && line[colon] == b':').then_some(colon + 1)
}

/// The value of field `name` as items, by the field's kind.
fn items_of(name: &str, value: &str) -> Result<Vec<Item>, Error> {
    let is = |list: &[&str]| list.iter().any(|f| f.eq_ignore_ascii_case(name));
    if is(ADDRESS_FIELDS) {
        return address_items(name, value);
    }
    let msg_ids = is(MSG_ID_FIELDS);
    if msg_ids || is(STRUCTURED_FIELDS) {
        let tokens = tokenize(value).map_err(|why| unreadable(name, why))?;
        let mut items = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let t = tokens[i];
            i += 1;
            items.push(match t {
                Tok::Ws(s) => Item::Ws(s.to_owned()),
                Tok::Comment(c) => Item::Comment(comment_items(c)),
                Tok::Special("<") if msg_ids => {
                    let close = tokens[i..]
                        .iter()
                        .position(|t| *t == Tok::Special(">"))
                        .map_or(tokens.len(), |c| i + c + 1);
                    let id: String = tokens[i - 1..close].iter().map(Tok::raw).collect();
                    i = close;
                    Item::Raw(ascii_msg_id(name, &id)?)
                }
                other if other.raw().is_ascii() => Item::Raw(other.raw().to_owned()),
                _ => {
                    return Err(Error::Unsendable(format!(
                        "the {name} header holds UTF-8 outside a comment, which has no \
                         ASCII form, and the server does not offer SMTPUTF8 (RFC 6531)"
                    )));
                }
            });
        }
        return Ok(items);
    }
    Ok(unstructured_items(value))
}

/// A message identifier `<left@right>` in ASCII: `right` in A-labels where it is a
/// domain in UTF-8; a `left` in UTF-8 has no ASCII form.
fn ascii_msg_id(name: &str, id: &str) -> Result<String, Error> {
    if id.is_ascii() {
        return Ok(id.to_owned());
    }
    let inner = id.trim_start_matches('<').trim_end_matches('>');
    let ascii = inner
        .rsplit_once('@')
        .filter(|(left, _)| left.is_ascii())
        .and_then(|(left, right)| Some(format!("<{left}@{}>", domain_to_ascii(right)?)));
    ascii.ok_or_else(|| {
        Error::Unsendable(format!(
            "the {name} header holds {id}, which has no ASCII form, and the server does \
             not offer SMTPUTF8 (RFC 6531)"
        ))
    })
}

fn unreadable(name: &str, why: &str) -> Error {
    Error::Unsendable(format!(
        "the {name} header holds UTF-8 and cannot be rewritten for a server without \
         SMTPUTF8: {why}"
    ))
}

/// Unstructured text (RFC 5322 §3.2.5): words and the white space between them.
fn unstructured_items(value: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let (piece, tail) = if ws > 0 {
            let (ws, tail) = rest.split_at(ws);
            (Item::Ws(ws.to_owned()), tail)
        } else {
            let end = rest.find([' ', '\t']).unwrap_or(rest.len());
            let (word, tail) = rest.split_at(end);
            (
                Item::Word {
                    raw: word.to_owned(),
                    text: word.to_owned(),
                },
                tail,
            )
        };
        items.push(piece);
        rest = tail;
    }
    items
}

/// An address list (RFC 5322 §3.4) as items: display names and comments to be
/// encoded, each address in ASCII.
fn address_items(name: &str, value: &str) -> Result<Vec<Item>, Error> {
    let tokens = tokenize(value).map_err(|why| unreadable(name, why))?;
    let mut items = Vec::new();
    let mut start = 0;
    let mut in_angle = false;
    for (i, t) in tokens.iter().enumerate() {
        match t.raw() {
            "<" => in_angle = true,
            ">" => in_angle = false,
            d @ ("," | ";" | ":") if !in_angle && matches!(t, Tok::Special(_)) => {
                mailbox_items(name, &tokens[start..i], d == ":", &mut items)?;
                items.push(Item::Raw(d.to_owned()));
                start = i + 1;
            }
            _ => {}
        }
    }
    mailbox_items(name, &tokens[start..], false, &mut items)?;
    Ok(items)
}

/// One element of an address list: a group's name, `phrase <addr>` or a bare address,
/// with the comments and white space around it.
fn mailbox_items(
    name: &str,
    tokens: &[Tok],
    group_name: bool,
    items: &mut Vec<Item>,
) -> Result<(), Error> {
    let cfws = |tokens: &[Tok], items: &mut Vec<Item>| phrase_items(tokens, items);
    if group_name {
        phrase_items(tokens, items);
        return Ok(());
    }
    if let Some(open) = tokens.iter().position(|t| *t == Tok::Special("<")) {
        let close = tokens[open..]
            .iter()
            .position(|t| *t == Tok::Special(">"))
            .map_or(tokens.len(), |c| open + c + 1);
        let phrase = &tokens[..open];
        phrase_items(phrase, items);
        if phrase.iter().any(|t| !t.raw().is_ascii()) && !matches!(items.last(), Some(Item::Ws(_)))
        {
            items.push(Item::Ws(" ".into()));
        }
        items.push(Item::Raw(ascii_address(name, &tokens[open..close], true)?));
        let after = &tokens[close..];
        if after.iter().any(|t| t.is_word() && !t.raw().is_ascii()) {
            return Err(unreadable(name, "there is text after <...>"));
        }
        cfws(after, items);
        return Ok(());
    }
    let Some(first) = tokens.iter().position(Tok::is_word) else {
        cfws(tokens, items);
        return Ok(());
    };
    let last = tokens.iter().rposition(Tok::is_word).unwrap_or(first);
    cfws(&tokens[..first], items);
    items.push(Item::Raw(ascii_address(
        name,
        &tokens[first..=last],
        false,
    )?));
    cfws(&tokens[last + 1..], items);
    Ok(())
}

/// An address (with its angle brackets if `angle`) in ASCII: as written if it is
/// already, else with its domain in A-labels (what the envelope does too); one whose
/// local part is UTF-8 has no such form (RFC 6531 §3.2).
fn ascii_address(name: &str, tokens: &[Tok], angle: bool) -> Result<String, Error> {
    let written: String = tokens.iter().map(Tok::raw).collect();
    if written.is_ascii() {
        return Ok(written);
    }
    let mut spec: String = tokens
        .iter()
        .filter(|t| t.is_word())
        .map(Tok::raw)
        .collect();
    if angle {
        spec = spec
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned();
    }
    // obs-route (RFC 5322 §4.4): "@a,@b:" before the address.
    let (route, spec) = match spec.strip_prefix('@').and(spec.rsplit_once(':')) {
        Some((route, spec)) if route.is_ascii() => (format!("{route}:"), spec.to_owned()),
        _ => (String::new(), spec),
    };
    let address = Address::new(&spec).map_err(|e| unreadable(name, &format!("{e}")))?;
    let ascii = address.to_ascii().ok_or_else(|| {
        Error::Unsendable(format!(
            "the {name} header holds the address <{address}>, whose local part is not \
             ASCII, and the server does not offer SMTPUTF8 (RFC 6531)"
        ))
    })?;
    Ok(if angle {
        format!("<{route}{ascii}>")
    } else {
        ascii.to_string()
    })
}

#[cfg(test)]
mod tests;
