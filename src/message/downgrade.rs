//! Header fields in UTF-8 (RFC 6532) for a server that does not offer SMTPUTF8.
//!
//! Only a server that offers SMTPUTF8 may be given a message whose header section holds
//! raw UTF-8 (RFC 6531 §3.4). For any other, the header section is rewritten in ASCII
//! as RFC 2047 allows: unstructured text (Subject and the like), display names and
//! comments become encoded-words (§5), at most 75 characters each on lines of at most
//! 76 (§2); a domain in UTF-8 becomes its A-labels, as in the envelope. What has no
//! ASCII form (an address whose local part is UTF-8, UTF-8 in a Message-ID) cannot go
//! to such a server at all: the message is refused, as a UTF-8 envelope address is.
//!
//! Only the header section is read and rewritten: the body is read on from the
//! message as it is, when it is sent.

use std::io::{self, Read};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Message, Resume, WireCounter};
use crate::envelope::{Address, domain_to_ascii};
use crate::error::Error;

/// Longest encoded-word (RFC 2047 §2).
const MAX_ENCODED_WORD: usize = 75;
/// Longest line of a field that holds an encoded-word (RFC 2047 §2).
const MAX_LINE: usize = 76;
/// What an encoded-word takes besides its encoded text: `=?UTF-8?Q?` and `?=`.
const OVERHEAD: usize = "=?UTF-8?Q??=".len();

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
            wire_size: self.wire_size - size(&section) + size(&head),
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

/// A piece of a field's value, as it is written back.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    /// White space, where the field may be folded.
    Ws(String),
    /// A word of text: as written, and as read (quotes and quoted-pairs undone). One
    /// that is not ASCII goes as encoded-words.
    Word { raw: String, text: String },
    /// A comment's contents, between its parentheses.
    Comment(Vec<Item>),
    /// Anything else, written as it is.
    Raw(String),
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

/// A lexical token of a structured field (RFC 5322 §3.2), as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok<'a> {
    Ws(&'a str),
    /// With its parentheses.
    Comment(&'a str),
    /// With its quotes.
    Quoted(&'a str),
    /// A domain literal, with its brackets.
    Literal(&'a str),
    Special(&'a str),
    Atom(&'a str),
}

impl<'a> Tok<'a> {
    fn raw(&self) -> &'a str {
        match *self {
            Tok::Ws(s)
            | Tok::Comment(s)
            | Tok::Quoted(s)
            | Tok::Literal(s)
            | Tok::Special(s)
            | Tok::Atom(s) => s,
        }
    }

    /// Neither white space nor a comment.
    fn is_word(&self) -> bool {
        !matches!(self, Tok::Ws(_) | Tok::Comment(_))
    }
}

const SPECIALS: &[u8] = b"()<>[]:;@\\,.\"";

/// Where the character after a backslash at `at` ends.
fn after_escape(text: &str, at: usize) -> usize {
    let next = at + 1;
    next + text[next..].chars().next().map_or(0, char::len_utf8)
}

fn tokenize(value: &str) -> Result<Vec<Tok<'_>>, &'static str> {
    let b = value.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let token = match b[i] {
            b' ' | b'\t' => {
                while i < b.len() && matches!(b[i], b' ' | b'\t') {
                    i += 1;
                }
                Tok::Ws(&value[start..i])
            }
            b'(' => {
                i = comment_end(value, i).ok_or("a comment has no closing parenthesis")?;
                Tok::Comment(&value[start..i])
            }
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("a quoted string has no closing quote"),
                        Some(b'\\') => i = after_escape(value, i),
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                Tok::Quoted(&value[start..i])
            }
            b'[' => {
                i += value[i..]
                    .find(']')
                    .ok_or("a domain literal has no closing ]")?
                    + 1;
                Tok::Literal(&value[start..i])
            }
            c if SPECIALS.contains(&c) => {
                i += 1;
                Tok::Special(&value[start..i])
            }
            _ => {
                while i < b.len() && !SPECIALS.contains(&b[i]) && !matches!(b[i], b' ' | b'\t') {
                    i += 1;
                }
                Tok::Atom(&value[start..i])
            }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// Where the comment that opens at `open` ends (after its closing parenthesis).
fn comment_end(text: &str, open: usize) -> Option<usize> {
    let b = text.as_bytes();
    let (mut i, mut depth) = (open, 0usize);
    while i < b.len() {
        match b[i] {
            b'\\' => {
                i = after_escape(text, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The contents of a comment (given with its parentheses) as items: words, white
/// space and nested comments (RFC 5322 §3.2.2).
fn comment_items(comment: &str) -> Vec<Item> {
    let inner = &comment[1..comment.len() - 1];
    let mut items = Vec::new();
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        match b[i] {
            b' ' | b'\t' => {
                while i < b.len() && matches!(b[i], b' ' | b'\t') {
                    i += 1;
                }
                items.push(Item::Ws(inner[start..i].to_owned()));
            }
            b'(' => {
                i = comment_end(inner, i).unwrap_or(inner.len());
                items.push(Item::Comment(comment_items(&inner[start..i])));
            }
            _ => {
                let mut text = String::new();
                while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'(' | b')') {
                    let end = if b[i] == b'\\' {
                        after_escape(inner, i)
                    } else {
                        i + inner[i..].chars().next().map_or(1, char::len_utf8)
                    };
                    text.push_str(inner[i..end].strip_prefix('\\').unwrap_or(&inner[i..end]));
                    i = end;
                }
                // A stray ')' (the comment's own is outside `inner`) is kept as text.
                if i == start {
                    i += 1;
                    text.push(')');
                }
                items.push(Item::Word {
                    raw: inner[start..i].to_owned(),
                    text,
                });
            }
        }
    }
    items
}

/// Phrase tokens (a display name, a group name) as items: the words between white
/// space and comments each become one word, quotes undone in its text.
fn phrase_items(tokens: &[Tok], items: &mut Vec<Item>) {
    let mut word: Option<(String, String)> = None;
    let flush = |word: &mut Option<(String, String)>, items: &mut Vec<Item>| {
        if let Some((raw, text)) = word.take() {
            items.push(Item::Word { raw, text });
        }
    };
    for t in tokens {
        match t {
            Tok::Ws(s) => {
                flush(&mut word, items);
                items.push(Item::Ws((*s).to_owned()));
            }
            Tok::Comment(c) => {
                flush(&mut word, items);
                items.push(Item::Comment(comment_items(c)));
            }
            other => {
                let (raw, text) = word.get_or_insert_with(Default::default);
                raw.push_str(other.raw());
                match other {
                    Tok::Quoted(q) => text.push_str(&unquote(q)),
                    _ => text.push_str(other.raw()),
                }
            }
        }
    }
    flush(&mut word, items);
}

/// The text of a quoted string (given with its quotes).
fn unquote(quoted: &str) -> String {
    let mut text = String::new();
    let mut chars = quoted[1..quoted.len() - 1].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.extend(chars.next()),
            c => text.push(c),
        }
    }
    text
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

/// Whether `word` is an encoded-word (RFC 2047 §2): `=?charset?Q|B?text?=`.
fn is_encoded_word(word: &str) -> bool {
    let Some(inner) = word.strip_prefix("=?").and_then(|w| w.strip_suffix("?=")) else {
        return false;
    };
    let parts: Vec<&str> = inner.split('?').collect();
    word.is_ascii()
        && parts.len() == 3
        && !parts[0].is_empty()
        && matches!(parts[1], "Q" | "q" | "B" | "b")
}

/// Writes `items`: words that are not ASCII as encoded-words, runs of them (and the
/// white space between) as one text, as white space between encoded-words is not
/// part of the text (RFC 2047 §6.2). `reserve` is room kept at the end of a line for
/// what must follow without white space (a comment's closing parenthesis).
fn emit(f: &mut Folder, items: &[Item], reserve: usize) {
    let mut ws = String::new();
    // The last thing written was an encoded-word: white space before one of ours
    // would be lost when read, so it goes into our text.
    let mut after_encoded = false;
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            Item::Ws(s) => ws.push_str(s),
            Item::Word { text, .. } if !text.is_ascii() => {
                let mut run = String::new();
                if after_encoded && !ws.is_empty() {
                    run.push_str(&std::mem::replace(&mut ws, " ".into()));
                }
                run.push_str(text);
                let mut next_ws = String::new();
                loop {
                    let mut j = i + 1;
                    let mut gap = String::new();
                    while let Some(Item::Ws(s)) = items.get(j) {
                        gap.push_str(s);
                        j += 1;
                    }
                    match items.get(j) {
                        Some(Item::Word { text, .. }) if !text.is_ascii() && !gap.is_empty() => {
                            run.push_str(&gap);
                            run.push_str(text);
                            i = j;
                        }
                        Some(Item::Word { raw, .. }) if !gap.is_empty() && is_encoded_word(raw) => {
                            run.push_str(&gap);
                            next_ws.push(' ');
                            i = j - 1;
                            break;
                        }
                        _ => break,
                    }
                }
                f.encoded(&ws, &run, reserve);
                ws = next_ws;
                after_encoded = true;
            }
            Item::Word { raw, .. } => {
                f.piece(&ws, raw);
                ws.clear();
                after_encoded = is_encoded_word(raw);
            }
            Item::Comment(inner) => {
                f.piece(&ws, "(");
                ws.clear();
                emit(f, inner, reserve.max(1));
                f.piece("", ")");
                after_encoded = false;
            }
            Item::Raw(s) => {
                f.piece(&ws, s);
                ws.clear();
                after_encoded = false;
            }
        }
        i += 1;
    }
    f.out.push_str(&ws);
}

/// Writes a field's value, folding it (RFC 5322 §2.2.3) before white space where a
/// line would pass [`MAX_LINE`].
struct Folder {
    out: String,
    col: usize,
    /// Something follows the field name on the current line.
    started: bool,
}

impl Folder {
    fn new(prefix: &str) -> Folder {
        Folder {
            out: prefix.to_owned(),
            col: prefix.len(),
            started: false,
        }
    }

    fn fold(&mut self) {
        self.out.push_str("\r\n");
        self.col = 0;
    }

    fn piece(&mut self, ws: &str, text: &str) {
        if self.started && !ws.is_empty() && self.col + ws.len() + text.len() > MAX_LINE {
            self.fold();
        }
        self.out.push_str(ws);
        self.out.push_str(text);
        self.col += ws.len() + text.len();
        self.started = true;
    }

    /// `text` as encoded-words, each as long as the line allows.
    fn encoded(&mut self, ws: &str, text: &str, reserve: usize) {
        // Q keeps mostly Latin text legible; B is shorter for the rest.
        let base64 = text.chars().map(q_len).sum::<usize>() > b_len(text.len()) * 3 / 2;
        let mut ws = ws.to_owned();
        let mut rest = text;
        while !rest.is_empty() {
            let room = MAX_LINE
                .saturating_sub(self.col + ws.len() + reserve)
                .min(MAX_ENCODED_WORD);
            let (word, used) = encoded_word(rest, room, base64);
            if used == 0 {
                // A fold needs white space to begin the next line.
                self.fold();
                ws = " ".into();
                continue;
            }
            self.out.push_str(&ws);
            self.out.push_str(&word);
            self.col += ws.len() + word.len();
            self.started = true;
            rest = &rest[used..];
            ws = " ".into();
        }
    }
}

/// The longest encoded-word of at most `room` characters for the start of `text`
/// (whole characters only, RFC 2047 §5), and the bytes of `text` it holds.
fn encoded_word(text: &str, room: usize, base64: bool) -> (String, usize) {
    let Some(budget) = room.checked_sub(OVERHEAD) else {
        return (String::new(), 0);
    };
    let (mut used, mut len) = (0, 0);
    for c in text.chars() {
        let next = if base64 {
            b_len(used + c.len_utf8())
        } else {
            len + q_len(c)
        };
        if next > budget {
            break;
        }
        used += c.len_utf8();
        len = next;
    }
    if used == 0 {
        return (String::new(), 0);
    }
    let chunk = &text[..used];
    let word = if base64 {
        format!("=?UTF-8?B?{}?=", BASE64.encode(chunk))
    } else {
        let mut q = String::from("=?UTF-8?Q?");
        for b in chunk.bytes() {
            match b {
                b' ' => q.push('_'),
                _ if q_safe(b) => q.push(b as char),
                _ => q.push_str(&format!("={b:02X}")),
            }
        }
        q.push_str("?=");
        q
    };
    (word, used)
}

/// Bytes that stand for themselves in a Q-encoded word anywhere it may appear, a
/// phrase being the strictest place (RFC 2047 §5(3)).
fn q_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!*+-/".contains(&b)
}

/// Characters `c` takes Q-encoded (RFC 2047 §4.2).
fn q_len(c: char) -> usize {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| if b == b' ' || q_safe(b) { 1 } else { 3 })
        .sum()
}

/// Characters `n` bytes take B-encoded (RFC 2047 §4.1).
fn b_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
#[path = "downgrade_tests.rs"]
mod tests;
