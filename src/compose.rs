//! Building a message from flags (the compose face) with mail-builder.
//!
//! mail-builder writes the headers, the MIME structure and the text parts. A large
//! attachment is not read into memory: its part is given `Content-Transfer-Encoding:
//! base64` and a placeholder body, and the [`Message`] reads the file when it is sent,
//! base64-encoding it on the fly in the 76-column CRLF lines mail-builder itself
//! writes. For any type but `text/*` the result is byte for byte what mail-builder
//! writes with the whole file in memory. Small attachments (at most [`INLINE_MAX`]
//! bytes, or [`TEXT_INLINE_MAX`] for `text/*`) and anything that is not a regular
//! file (a pipe, `/dev/stdin`) are read when the message is built and go through
//! mail-builder whole, as before: so a small text file still gets mail-builder's
//! choice of 7bit, quoted-printable or base64, while a larger one always goes base64
//! (valid for any type, and what mail-builder picks for every other type).

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as HeaderAddress;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};

use crate::envelope::Mailbox;
use crate::error::Error;
pub use crate::message::Message;

/// A file to attach, with its MIME type and the name the recipient sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub path: PathBuf,
    pub content_type: String,
    pub name: String,
}

impl Attachment {
    /// Parses `PATH[;type=MIME][;name=NAME]`. The type is guessed from the name when not
    /// given; the name is the file's own when not given.
    pub fn parse(spec: &str) -> Result<Attachment, Error> {
        let mut path = spec;
        let mut content_type = None;
        let mut name = None;
        // Options are peeled off the end, so a path may itself hold ';'.
        while let Some((head, tail)) = path.rsplit_once(';') {
            if let Some(t) = tail.strip_prefix("type=") {
                content_type = Some(t.trim().to_owned());
            } else if let Some(n) = tail.strip_prefix("name=") {
                name = Some(n.to_owned());
            } else {
                // A path may hold ';', but `f;type=x;inline` is a typo in the options,
                // better named than reported as a file that cannot be read.
                if looks_like_option(tail) && !std::path::Path::new(path).exists() {
                    return Err(Error::Usage(format!(
                        "attachment {spec:?}: unknown option {tail:?} (the options are \
                         ;type=MIME/TYPE and ;name=NAME)"
                    )));
                }
                break;
            }
            path = head;
        }
        if path.is_empty() {
            return Err(Error::Usage(format!("attachment {spec:?} names no file")));
        }
        let path = PathBuf::from(path);
        let name = match name {
            Some(n) => n,
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| Error::Usage(format!("attachment {spec:?} names no file")))?,
        };
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(Error::Usage(format!(
                "attachment name {name:?} must be non-empty and hold no control characters"
            )));
        }
        let content_type = match content_type {
            Some(t) => match t.parse::<mime_guess::mime::Mime>() {
                Ok(m) if m.params().next().is_none() && !m.subtype().as_str().contains('/') => {
                    m.essence_str().to_owned()
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "attachment type {t:?} is not a MIME type like text/csv"
                    )));
                }
            },
            None => mime_guess::from_path(&name)
                .first_or_octet_stream()
                .essence_str()
                .to_owned(),
        };
        Ok(Attachment {
            path,
            content_type,
            name,
        })
    }
}

/// Whether the text after a `;` of `-a` reads as an option (`inline`, `typ=x`)
/// rather than the rest of a file name (`notes; draft 2.txt`).
fn looks_like_option(tail: &str) -> bool {
    let word = tail.split_once('=').map_or(tail, |(key, _)| key);
    !word.is_empty()
        && word.len() <= 20
        && word.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
}

/// Everything the compose face knows about the message it is to build.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: Option<String>,
    /// Extra headers from `-H`; one named like a header outbox writes replaces it.
    pub headers: Vec<(String, HeaderValue)>,
    /// The text body, as given (any line endings).
    pub text: Vec<u8>,
    pub html: Option<Vec<u8>>,
    pub attachments: Vec<Attachment>,
}

/// Headers outbox writes itself and that `-H` may not set: the MIME structure is
/// outbox's to describe, and Bcc never goes into the message.
const RESERVED: [&str; 4] = [
    "Bcc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Longest header name accepted. RFC 5322 §2.2 sets no limit, but a name cannot be
/// folded, and the whole line should stay within 78 characters (§2.1.1).
pub const MAX_HEADER_NAME: usize = 64;

/// The value of an extra header, in the form its field calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderValue {
    /// Unstructured text, encoded per RFC 2047 where it is not ASCII.
    Text(String),
    /// An address list (From, To, Cc, Reply-To, Sender).
    Addresses(Vec<Mailbox>),
    /// Written as given: Date and Message-ID, checked for form first.
    Raw(String),
}

/// Headers whose value is a list of addresses (RFC 5322 §3.6.2, §3.6.3).
const ADDRESS_HEADERS: [&str; 5] = ["From", "To", "Cc", "Reply-To", "Sender"];

/// Parses `-H "Name: value"`.
pub fn parse_header(spec: &str) -> Result<(String, HeaderValue), Error> {
    let (name, value) = spec
        .split_once(':')
        .ok_or_else(|| Error::Usage(format!("header {spec:?} is not \"Name: value\"")))?;
    let name = name.trim();
    // RFC 5322 §2.2: a field name is printable US-ASCII except ':'.
    if name.is_empty()
        || name.len() > MAX_HEADER_NAME
        || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
    {
        return Err(Error::Usage(format!(
            "header name {name:?} is not valid (printable ASCII, no ':', at most {MAX_HEADER_NAME} characters)"
        )));
    }
    if let Some(r) = RESERVED.iter().find(|r| r.eq_ignore_ascii_case(name)) {
        return Err(Error::Usage(match *r {
            "Bcc" => "a Bcc header is never sent: use -b/--bcc".to_owned(),
            _ => format!("outbox writes {r} itself; it cannot be set with -H"),
        }));
    }
    let value = value.trim();
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Error::Usage(format!(
            "header {name} holds a control character (CR, LF, NUL...)"
        )));
    }
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    let value = if ADDRESS_HEADERS.iter().any(|h| is(h)) {
        let list =
            Mailbox::parse_list(value).map_err(|e| Error::Usage(format!("header {name}: {e}")))?;
        if list.is_empty() {
            return Err(Error::Usage(format!("header {name} names no address")));
        }
        HeaderValue::Addresses(list)
    } else if is("Message-ID") {
        // RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">".
        let valid = value
            .strip_prefix('<')
            .and_then(|v| v.strip_suffix('>'))
            .and_then(|v| v.split_once('@'))
            .is_some_and(|(l, r)| {
                !l.is_empty()
                    && !r.is_empty()
                    && (l.chars().chain(r.chars()))
                        .all(|c| c.is_ascii_graphic() && !"<>@".contains(c))
            });
        if !valid {
            return Err(Error::Usage(format!(
                "header Message-ID {value:?} is not of the form <left@right>"
            )));
        }
        HeaderValue::Raw(value.to_owned())
    } else if is("Date") {
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err(Error::Usage(format!(
                "header Date {value:?} is not an RFC 5322 date like \"Sat, 21 Nov 2026 10:00:00 +0000\""
            )));
        }
        HeaderValue::Raw(value.to_owned())
    } else {
        HeaderValue::Text(value.to_owned())
    };
    Ok((name.to_owned(), value))
}

/// Attachments of at most this many bytes are read when the message is built.
pub const INLINE_MAX: u64 = 64 * 1024;
/// `text/*` attachments of at most this many bytes are read when the message is built,
/// so that mail-builder chooses their transfer encoding.
pub const TEXT_INLINE_MAX: u64 = 1024 * 1024;

/// Which attachments are read into memory when the message is built; the others are
/// read as it is sent.
#[derive(Clone, Copy, Debug)]
struct Inline {
    any: Option<u64>,
    text: Option<u64>,
}

impl Inline {
    const DEFAULT: Inline = Inline {
        any: Some(INLINE_MAX),
        text: Some(TEXT_INLINE_MAX),
    };

    fn takes(&self, attachment: &Attachment, size: u64) -> bool {
        let is_text = attachment
            .content_type
            .get(..5)
            .is_some_and(|t| t.eq_ignore_ascii_case("text/"));
        let within = |max: Option<u64>| max.is_some_and(|m| size <= m);
        within(self.any) || (is_text && within(self.text))
    }
}

/// An attachment's body: read already, or a file to read as the message is sent.
enum Content {
    InMemory(Vec<u8>),
    Streamed { file: File, size: u64 },
}

/// Builds the message. `domain` names this host in the Message-ID when the sender's
/// address has no domain. Every attachment is opened here: one that cannot be is
/// `Error::NoInput`, before anything is sent.
pub fn build(draft: &Draft, domain: &str) -> Result<Message, Error> {
    build_with(draft, domain, Inline::DEFAULT)
}

fn build_with(draft: &Draft, domain: &str, inline: Inline) -> Result<Message, Error> {
    let contents = draft
        .attachments
        .iter()
        .map(|a| open_attachment(a, inline))
        .collect::<Result<Vec<_>, Error>>()?;
    let nonce = nonce();
    let tokens: Vec<String> = (0..contents.len())
        .map(|i| format!("outbox-attachment-body-{nonce}-{i}"))
        .collect();
    let parts = draft
        .attachments
        .iter()
        .zip(&contents)
        .zip(&tokens)
        .map(|((a, content), token)| match content {
            Content::InMemory(bytes) => attachment_part(a, bytes),
            // A part with a Content-Transfer-Encoding is written as it is: the
            // placeholder marks where the encoded file goes.
            Content::Streamed { .. } => {
                attachment_part(a, token.as_bytes()).transfer_encoding("base64")
            }
        })
        .collect();
    let written = headers(draft, domain)
        .body(body(draft, parts))
        .write_to_vec()
        .map_err(|e| Error::Data(format!("cannot build the message: {e}")))?;

    // The placeholders out, each file's place noted.
    let mut skeleton = Vec::with_capacity(written.len());
    let mut splices = Vec::new();
    let mut from = 0;
    for ((a, content), token) in draft.attachments.iter().zip(contents).zip(&tokens) {
        let Content::Streamed { file, size } = content else {
            continue;
        };
        let token = token.as_bytes();
        let at = find(&written[from..], token)
            .map(|i| from + i)
            .filter(|&at| find(&written[at + token.len()..], token).is_none())
            .ok_or_else(|| {
                Error::Data(format!(
                    "cannot build the message: no single place for the body of {}",
                    a.path.display()
                ))
            })?;
        skeleton.extend_from_slice(&written[from..at]);
        splices.push((skeleton.len(), file, a.path.clone(), size));
        from = at + token.len();
    }
    skeleton.extend_from_slice(&written[from..]);
    drop(written);
    Message::spliced(skeleton, splices)
        .map_err(|e| Error::Data(format!("cannot build the message: {e}")))
}

/// Most bytes read from an attachment that is not a regular file (a pipe, a device).
const MAX_UNSIZED_ATTACHMENT: u64 = 64 << 20;

/// Opens an attachment, and reads it if it is small or not a regular file.
fn open_attachment(a: &Attachment, inline: Inline) -> Result<Content, Error> {
    let no_input = |source| Error::NoInput {
        path: a.path.clone(),
        source,
    };
    let mut file = File::open(&a.path).map_err(no_input)?;
    let meta = file.metadata().map_err(no_input)?;
    if meta.is_dir() {
        return Err(no_input(io::Error::from(io::ErrorKind::IsADirectory)));
    }
    if !meta.is_file() || inline.takes(a, meta.len()) {
        // A pipe or device has no size to announce, so it is read first; with a bound,
        // as `-a /dev/zero` would otherwise fill memory.
        let mut bytes = Vec::new();
        (&mut file)
            .take(MAX_UNSIZED_ATTACHMENT + 1)
            .read_to_end(&mut bytes)
            .map_err(no_input)?;
        if bytes.len() as u64 > MAX_UNSIZED_ATTACHMENT {
            return Err(Error::Data(format!(
                "{} is not a regular file and holds more than {} MiB: save it to a file \
                 and attach that",
                a.path.display(),
                MAX_UNSIZED_ATTACHMENT >> 20
            )));
        }
        return Ok(Content::InMemory(bytes));
    }
    Ok(Content::Streamed {
        file,
        size: meta.len(),
    })
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut i = 0;
    while let Some(p) = haystack.get(i..)?.iter().position(|&b| b == first) {
        let at = i + p;
        if haystack.get(at + 1..at + needle.len()) == Some(rest) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// 128 random bits in hex, for placeholders no text can hold by chance.
pub(crate) fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Without the system's randomness, time and process; a placeholder found
        // more than once is refused anyway.
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        bytes[..8].copy_from_slice(&h.finish().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The message's headers, as outbox writes them.
fn headers<'x>(draft: &'x Draft, domain: &str) -> MessageBuilder<'x> {
    let custom = |name: &str| {
        draft
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let mut b = MessageBuilder::new();
    if let Some(from) = &draft.from
        && !custom("From")
    {
        b = b.from(header_address(from));
    }
    if !draft.to.is_empty() && !custom("To") {
        b = b.to(address_list(&draft.to));
    }
    if !draft.cc.is_empty() && !custom("Cc") {
        b = b.cc(address_list(&draft.cc));
    }
    if let Some(r) = &draft.reply_to
        && !custom("Reply-To")
    {
        b = b.reply_to(header_address(r));
    }
    if let Some(s) = &draft.subject
        && !custom("Subject")
    {
        b = b.subject(Text::new(s.as_str()));
    }
    if !custom("Date") {
        b = b.header("Date", Raw::new(date_now()));
    }
    if !custom("Message-ID") {
        let id_domain = draft
            .from
            .as_ref()
            .and_then(|f| f.address.domain())
            .unwrap_or(domain);
        b = b.message_id(MessageId::new(new_message_id(id_domain)));
    }
    for (name, value) in &draft.headers {
        b = match value {
            HeaderValue::Text(text) => b.header(name.as_str(), Text::new(text.as_str())),
            HeaderValue::Addresses(list) => b.header(name.as_str(), address_list(list)),
            HeaderValue::Raw(raw) => b.header(name.as_str(), Raw::new(raw.as_str())),
        };
    }
    b
}

/// The text (and HTML) body, and the attachment parts after it.
fn body<'x>(draft: &'x Draft, attachments: Vec<MimePart<'x>>) -> MimePart<'x> {
    let text = text_part("text/plain", &draft.text);
    let body = match &draft.html {
        Some(html) => MimePart::new(
            "multipart/alternative",
            vec![text, text_part("text/html", html)],
        ),
        None => text,
    };
    if attachments.is_empty() {
        body
    } else {
        let mut parts = vec![body];
        parts.extend(attachments);
        MimePart::new("multipart/mixed", parts)
    }
}

fn attachment_part<'x>(a: &'x Attachment, body: &'x [u8]) -> MimePart<'x> {
    MimePart::new(
        ContentType::new(a.content_type.as_str()),
        BodyPart::Binary(Cow::Borrowed(body)),
    )
    .attachment(a.name.as_str())
}

/// A text part. UTF-8 text goes as mail-builder encodes it. Bytes that are not UTF-8
/// are kept exactly, labelled `charset=unknown-8bit` (RFC 1428), and text with a NUL
/// (which no 7bit or quoted-printable part may hold, RFC 2045 §2.7) is kept too: both
/// go base64, after line ends are made CRLF as RFC 2045 §6.8 asks of text.
fn text_part<'x>(mime: &'x str, body: &'x [u8]) -> MimePart<'x> {
    match std::str::from_utf8(body) {
        Ok(text) if !body.contains(&0) => MimePart::new(mime, BodyPart::Text(Cow::Borrowed(text))),
        Ok(_) => base64_text_part(ContentType::new(mime).attribute("charset", "utf-8"), body),
        Err(_) => base64_text_part(
            ContentType::new(mime).attribute("charset", "unknown-8bit"),
            body,
        ),
    }
}

fn base64_text_part<'x>(content_type: ContentType<'x>, body: &[u8]) -> MimePart<'x> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(crlf_lines(body));
    // RFC 2045 §6.8: lines of at most 76 characters.
    let mut wrapped = Vec::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for line in encoded.as_bytes().chunks(76) {
        wrapped.extend_from_slice(line);
        wrapped.extend_from_slice(b"\r\n");
    }
    MimePart::new(content_type, BodyPart::Binary(Cow::Owned(wrapped))).transfer_encoding("base64")
}

/// `text` with every line end (LF, CR or CRLF) made CRLF.
pub(crate) fn crlf_lines(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    let mut bytes = text.iter().peekable();
    while let Some(&b) = bytes.next() {
        match b {
            b'\r' => {
                bytes.next_if_eq(&&b'\n');
                out.extend_from_slice(b"\r\n");
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    out
}

fn header_address(m: &Mailbox) -> HeaderAddress<'_> {
    HeaderAddress::new_address(m.name.as_deref(), m.address.as_str())
}

fn address_list(list: &[Mailbox]) -> HeaderAddress<'_> {
    HeaderAddress::new_list(list.iter().map(header_address).collect())
}

/// The Date field's value for now (RFC 5322 §3.3), in the local time zone as Postfix
/// and mailx write it: the zone `TZ` names (`Europe/Berlin`, `:Europe/Berlin`, a
/// zoneinfo file or a POSIX rule), else `/etc/localtime`; UTC when neither gives one.
pub fn date_now() -> String {
    rfc5322_date(jiff::Timestamp::now(), local_time_zone())
}

/// The local time zone, as [`date_now`] finds it.
pub(crate) fn local_time_zone() -> jiff::tz::TimeZone {
    local_zone(std::env::var("TZ").ok())
}

/// `at` as an RFC 5322 date-time (§3.3) in `zone`; a time outside what the format
/// holds is written as the Unix epoch rather than failing a message over its Date.
pub(crate) fn date_at(at: SystemTime, zone: &jiff::tz::TimeZone) -> String {
    let at = jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    rfc5322_date(at, zone.clone())
}

/// Where zone names are found, unless `TZDIR` says otherwise (as for the C library).
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// The local time zone for `tz`, the value of `TZ`: a zone name under the zoneinfo
/// directory, with or without a leading `:`, a TZif file's path, or a POSIX rule
/// (`CET-1CEST,M3.5.0,M10.5.0/3`); without one, `/etc/localtime`. UTC for an empty
/// `TZ` and for anything that does not read as a zone. The file is read directly:
/// jiff's own lookup lists the whole zoneinfo tree first, over a millisecond per
/// message.
pub(crate) fn local_zone(tz: Option<String>) -> jiff::tz::TimeZone {
    use jiff::tz::TimeZone;
    let tzif = |name: &str, path: &std::path::Path| {
        std::fs::read(path)
            .ok()
            .and_then(|data| TimeZone::tzif(name, &data).ok())
    };
    let Some(tz) = tz else {
        return tzif("localtime", std::path::Path::new("/etc/localtime")).unwrap_or(TimeZone::UTC);
    };
    let name = tz.strip_prefix(':').unwrap_or(&tz);
    if name.is_empty() {
        return TimeZone::UTC;
    }
    let path = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        std::env::var_os("TZDIR")
            .map_or_else(|| PathBuf::from(ZONEINFO), PathBuf::from)
            .join(name)
    };
    tzif(name, &path)
        .or_else(|| TimeZone::posix(name).ok())
        .unwrap_or(TimeZone::UTC)
}

/// `at` as an RFC 5322 date-time in `zone`: "Tue, 1 Dec 2026 22:40:00 +0100".
fn rfc5322_date(at: jiff::Timestamp, zone: jiff::tz::TimeZone) -> String {
    let utc = || mail_builder::headers::date::Date::new(at.as_second()).to_rfc822();
    // An offset in whole minutes (as every zone has today) is what the format holds;
    // the UTC form stands in for anything it cannot write.
    jiff::fmt::rfc2822::to_string(&at.to_zoned_datetime(zone)).unwrap_or_else(|_| utc())
}

/// A Message-ID unique to this host and moment (RFC 5322 §3.6.4): time, process id
/// and a per-process random number, which std seeds from the OS for its hash maps.
pub fn new_message_id(domain: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = RandomState::new().build_hasher();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    format!(
        "{:x}.{:x}.{:016x}@{}",
        nanos,
        std::process::id(),
        h.finish(),
        domain
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(s: &str) -> Mailbox {
        Mailbox::parse(s).unwrap()
    }

    fn text_of(m: &Message) -> String {
        String::from_utf8(m.to_vec().unwrap()).unwrap()
    }

    #[test]
    fn attachment_specs() {
        let a = Attachment::parse("dir/report.pdf").unwrap();
        assert_eq!(a.path, PathBuf::from("dir/report.pdf"));
        assert_eq!(a.name, "report.pdf");
        assert_eq!(a.content_type, "application/pdf");
        let a = Attachment::parse("data.bin;type=text/csv;name=data.csv").unwrap();
        assert_eq!(a.path, PathBuf::from("data.bin"));
        assert_eq!(a.content_type, "text/csv");
        assert_eq!(a.name, "data.csv");
        let a = Attachment::parse("blob;name=x.png").unwrap();
        assert_eq!(a.content_type, "image/png");
        let a = Attachment::parse("noext").unwrap();
        assert_eq!(a.content_type, "application/octet-stream");
        assert!(Attachment::parse(";type=text/plain").is_err());
        assert!(Attachment::parse("x;type=bogus").is_err());
        assert!(Attachment::parse("x;type=a/b/c").is_err());
        assert!(Attachment::parse("x;name=a\nb").is_err());
    }

    #[test]
    fn an_unknown_attachment_option_is_named() {
        for (spec, option) in [("f;type=x;inline", "inline"), ("f;typ=text/csv", "typ")] {
            let e = Attachment::parse(spec).unwrap_err().to_string();
            assert!(
                e.contains(&format!("unknown option \"{option}")),
                "{spec}: {e}"
            );
            assert!(e.contains(";type=MIME/TYPE"), "{e}");
        }
        // What does not read as an option stays part of the file's name.
        let a = Attachment::parse("notes; draft 2.txt").unwrap();
        assert_eq!(a.path, PathBuf::from("notes; draft 2.txt"));
        // As does a name that is a file there.
        let dir = std::env::temp_dir().join(format!("outbox-attach-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a;inline");
        std::fs::write(&file, "x").unwrap();
        let spec = file.display().to_string();
        let parsed = Attachment::parse(&spec).map(|a| a.path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(parsed.unwrap(), file);
    }

    #[test]
    fn header_specs() {
        assert_eq!(
            parse_header("X-Ticket:  42 ").unwrap(),
            ("X-Ticket".to_owned(), HeaderValue::Text("42".to_owned()))
        );
        assert_eq!(
            parse_header("Message-ID: <a.b@example.test>").unwrap().1,
            HeaderValue::Raw("<a.b@example.test>".to_owned())
        );
        match parse_header("To: a@example.test, B <b@example.test>")
            .unwrap()
            .1
        {
            HeaderValue::Addresses(list) => assert_eq!(list.len(), 2),
            other => panic!("{other:?}"),
        }
        for bad in [
            "NoColon",
            ": value",
            "Bad Name: x",
            "X-A: one\r\nBcc: evil@example.test",
            "X-A: nul\0",
            "Bcc: x@example.test",
            "content-type: text/html",
            "Message-ID: nonsense",
            "Message-ID: <no-at-sign>",
            "Date:",
            "To: not an address",
            "From:",
        ] {
            assert!(parse_header(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers_are_complete() {
        let draft = Draft {
            from: Some(mailbox("Ops Team <ops@example.test>")),
            to: vec![mailbox("a@example.test"), mailbox("B <b@example.test>")],
            cc: vec![mailbox("c@example.test")],
            reply_to: Some(mailbox("r@example.test")),
            subject: Some("hello".into()),
            headers: vec![parse_header("X-Ticket: 42").unwrap()],
            text: b"body\n".to_vec(),
            ..Draft::default()
        };
        let text = text_of(&build(&draft, "host.example.test").unwrap());
        for needle in [
            "From: \"Ops Team\" <ops@example.test>\r\n",
            "To: <a@example.test>, \"B\" <b@example.test>\r\n",
            "Cc: <c@example.test>\r\n",
            "Reply-To: <r@example.test>\r\n",
            "Subject: hello\r\n",
            "X-Ticket: 42\r\n",
            "MIME-Version: 1.0\r\n",
            "Date: ",
            "Message-ID: <",
            "@example.test>\r\n",
            "Content-Type: text/plain; charset=\"utf-8\"\r\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
        }
        assert!(!text.contains("Bcc"));
    }

    #[test]
    fn custom_header_replaces_the_generated_one() {
        let draft = Draft {
            from: Some(mailbox("a@example.test")),
            subject: Some("flag".into()),
            headers: vec![
                parse_header("Subject: header").unwrap(),
                parse_header("Message-ID: <fixed@example.test>").unwrap(),
                parse_header("From: Jörg Müller <jm@example.test>").unwrap(),
            ],
            ..Draft::default()
        };
        let text = text_of(&build(&draft, "h").unwrap());
        assert_eq!(text.matches("Subject:").count(), 1, "{text}");
        assert!(text.contains("Subject: header\r\n"));
        assert_eq!(text.matches("Message-ID:").count(), 1, "{text}");
        assert!(text.contains("Message-ID: <fixed@example.test>\r\n"));
        // An address header from -H is written as addresses, the name encoded alone.
        assert!(
            text.contains("From: =?utf-8?") && text.contains("<jm@example.test>\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("From:").count(), 1, "{text}");
    }

    #[test]
    fn non_ascii_subject_is_encoded() {
        let draft = Draft {
            subject: Some("Grüße — 日本".into()),
            text: "Grüße\n".as_bytes().to_vec(),
            ..Draft::default()
        };
        let bytes = build(&draft, "h").unwrap();
        let head = text_of(&bytes);
        assert!(head.is_ascii(), "message should be 7-bit: {head}");
        assert!(head.contains("Subject: =?utf-8?"), "{head}");
    }

    #[test]
    fn html_makes_multipart_alternative_and_files_multipart_mixed() {
        let dir = std::env::temp_dir().join(format!("outbox-compose-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("data.csv");
        std::fs::write(&file, "a,b\n1,2\n").unwrap();
        let draft = Draft {
            text: b"plain".to_vec(),
            html: Some(b"<p>html</p>".to_vec()),
            attachments: vec![Attachment::parse(file.to_str().unwrap()).unwrap()],
            ..Draft::default()
        };
        let text = text_of(&build(&draft, "h").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(text.contains("Content-Type: multipart/mixed"), "{text}");
        assert!(
            text.contains("Content-Type: multipart/alternative"),
            "{text}"
        );
        assert!(text.contains("Content-Type: text/html"), "{text}");
        assert!(text.contains("Content-Type: text/csv"), "{text}");
        assert!(text.contains("filename=\"data.csv\""), "{text}");
    }

    #[test]
    fn an_endless_device_is_refused_not_read_forever() {
        let draft = Draft {
            attachments: vec![Attachment::parse("/dev/zero").unwrap()],
            ..Draft::default()
        };
        let err = build(&draft, "h").unwrap_err();
        assert!(matches!(err, Error::Data(_)), "{err:?}");
    }

    #[test]
    fn missing_attachment_is_noinput() {
        let draft = Draft {
            attachments: vec![Attachment::parse("/nonexistent/outbox/file.bin").unwrap()],
            ..Draft::default()
        };
        assert!(matches!(build(&draft, "h"), Err(Error::NoInput { .. })));
    }

    #[test]
    fn non_utf8_body_is_kept_byte_for_byte() {
        let draft = Draft {
            text: b"caf\xe9\n".to_vec(),
            ..Draft::default()
        };
        let text = text_of(&build(&draft, "h").unwrap());
        assert!(text.contains("charset=\"unknown-8bit\""), "{text}");
    }

    #[test]
    fn long_header_names_are_refused() {
        let spec = format!("X-{}: v", "n".repeat(MAX_HEADER_NAME));
        assert!(parse_header(&spec).is_err());
    }

    #[test]
    fn nul_in_utf8_text_goes_base64_with_crlf_lines() {
        use base64::Engine;
        let draft = Draft {
            text: b"a\0b\nc\rd".to_vec(),
            ..Draft::default()
        };
        let text = text_of(&build(&draft, "h").unwrap());
        assert!(text.contains("charset=\"utf-8\""), "{text}");
        assert!(
            text.contains("Content-Transfer-Encoding: base64\r\n"),
            "{text}"
        );
        assert!(!text.contains('\0'));
        let encoded = text.rsplit("\r\n\r\n").next().unwrap().trim_end();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.replace("\r\n", ""))
            .unwrap();
        assert_eq!(decoded, b"a\0b\r\nc\r\nd");
    }

    #[test]
    fn crlf_lines_makes_every_line_end_crlf() {
        assert_eq!(crlf_lines(b"a\nb\rc\r\nd\r"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(crlf_lines(b""), b"");
    }

    impl Inline {
        /// Every regular file streamed, however small.
        const NEVER: Inline = Inline {
            any: None,
            text: None,
        };
    }

    /// The message as outbox built it before attachments streamed: every file read
    /// into memory and handed to mail-builder whole.
    fn build_in_memory(draft: &Draft, domain: &str) -> Vec<u8> {
        let files: Vec<Vec<u8>> = draft
            .attachments
            .iter()
            .map(|a| std::fs::read(&a.path).unwrap())
            .collect();
        let parts = draft
            .attachments
            .iter()
            .zip(&files)
            .map(|(a, bytes)| attachment_part(a, bytes))
            .collect();
        headers(draft, domain)
            .body(body(draft, parts))
            .write_to_vec()
            .unwrap()
    }

    /// `bytes` with each MIME boundary (random in mail-builder) replaced by one
    /// numbered in order of appearance.
    fn fixed_boundaries(bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let marker = b"boundary=\"";
        let mut n = 0;
        let mut from = 0;
        while let Some(i) = find(&out[from..], marker) {
            let start = from + i + marker.len();
            let len = out[start..].iter().position(|&b| b == b'"').unwrap();
            let boundary = out[start..start + len].to_vec();
            let fixed = format!("BOUNDARY-{n}").into_bytes();
            n += 1;
            let mut replaced = Vec::with_capacity(out.len());
            let mut at = 0;
            while let Some(j) = find(&out[at..], &boundary) {
                replaced.extend_from_slice(&out[at..at + j]);
                replaced.extend_from_slice(&fixed);
                at += j + boundary.len();
            }
            replaced.extend_from_slice(&out[at..]);
            out = replaced;
            from = start;
        }
        out
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    struct Files(PathBuf);

    impl Files {
        fn new(tag: &str) -> Files {
            let dir = std::env::temp_dir().join(format!(
                "outbox-compose-{tag}-{}-{}",
                std::process::id(),
                nonce()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Files(dir)
        }

        fn add(&self, name: &str, bytes: &[u8]) -> Attachment {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).unwrap();
            Attachment::parse(path.to_str().unwrap()).unwrap()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fixed_draft(attachments: Vec<Attachment>) -> Draft {
        Draft {
            from: Some(mailbox("Ops <ops@example.test>")),
            to: vec![mailbox("a@example.test")],
            subject: Some("files".into()),
            headers: vec![
                parse_header("Date: Sat, 21 Nov 2026 10:00:00 +0000").unwrap(),
                parse_header("Message-ID: <fixed@example.test>").unwrap(),
            ],
            text: b"See the files.\n".to_vec(),
            html: Some(b"<p>See the files.</p>".to_vec()),
            attachments,
            ..Draft::default()
        }
    }

    #[test]
    fn streamed_attachments_are_what_mail_builder_writes_in_memory() {
        let files = Files::new("same");
        let sizes = [0usize, 1, 56, 57, 58, 1024 * 1024 + 3];
        let attachments: Vec<Attachment> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| files.add(&format!("f{i}.bin"), &pseudo_random(n, i as u64 + 7)))
            .collect();
        // Each size alone, then all of them in one message.
        let mut drafts: Vec<Draft> = attachments
            .iter()
            .map(|a| fixed_draft(vec![a.clone()]))
            .collect();
        drafts.push(fixed_draft(attachments.clone()));
        for draft in &drafts {
            let expected = fixed_boundaries(&build_in_memory(draft, "h"));
            for inline in [Inline::NEVER, Inline::DEFAULT] {
                let message = build_with(draft, "h", inline).unwrap();
                let got = message.to_vec().unwrap();
                assert!(
                    fixed_boundaries(&got) == expected,
                    "{:?} differs with {inline:?}:\n{}",
                    draft.attachments,
                    String::from_utf8_lossy(&got[..got.len().min(4000)])
                );
                assert_eq!(message.len(), got.len() as u64);
                assert_eq!(message.wire_size(), crate::message::wire_size(&got));
                assert!(!message.is_8bit());
            }
            let streamed = build_with(draft, "h", Inline::NEVER).unwrap();
            assert_eq!(streamed.reads_files(), !draft.attachments.is_empty());
        }
    }

    #[test]
    fn a_large_text_attachment_goes_base64_and_a_small_one_as_mail_builder_chooses() {
        use base64::Engine;
        let files = Files::new("text");
        let text = "line, with, commas\n".repeat(100);
        let a = files.add("data.csv", text.as_bytes());
        let draft = fixed_draft(vec![a]);
        let small = text_of(&build(&draft, "h").unwrap());
        assert!(
            small.contains("Content-Transfer-Encoding: 7bit\r\n"),
            "{small}"
        );
        let streamed = text_of(&build_with(&draft, "h", Inline::NEVER).unwrap());
        let head = "filename=\"data.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\n";
        let at = streamed.find(head).unwrap_or_else(|| panic!("{streamed}")) + head.len();
        let encoded = &streamed[at..streamed[at..].find("\r\n\r\n--").unwrap() + at];
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.replace("\r\n", ""))
            .unwrap();
        assert_eq!(decoded, text.as_bytes());
    }

    #[test]
    fn an_attachment_is_opened_when_built_and_read_when_sent() {
        let files = Files::new("open");
        let data = pseudo_random(200_000, 3);
        let a = files.add("kept.bin", &data);
        let draft = fixed_draft(vec![a.clone()]);
        let message = build(&draft, "h").unwrap();
        assert!(message.reads_files());
        let expected = message.to_vec().unwrap();
        // Removed after the message is built: the open file is still read.
        std::fs::remove_file(&a.path).unwrap();
        assert!(message.to_vec().unwrap() == expected);

        // A file that shrinks before it is sent is an error naming it.
        let b = files.add("shrinks.bin", &data);
        let message = build(&fixed_draft(vec![b.clone()]), "h").unwrap();
        std::fs::write(&b.path, b"short").unwrap();
        let err = message.to_vec().unwrap_err();
        assert!(err.to_string().contains("shrinks.bin"), "{err}");
    }

    #[test]
    fn a_directory_is_no_attachment_and_a_device_is_read_whole() {
        let files = Files::new("dir");
        let dir = Attachment::parse(files.0.to_str().unwrap()).unwrap();
        let err = build(&fixed_draft(vec![dir]), "h").unwrap_err();
        assert!(matches!(err, Error::NoInput { .. }), "{err:?}");
        let null = Attachment::parse("/dev/null").unwrap();
        let message = build(&fixed_draft(vec![null]), "h").unwrap();
        assert!(!message.reads_files());
        assert!(text_of(&message).contains("filename=\"null\""));
    }

    #[test]
    fn placeholders_are_found_once() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"x", b""), None);
    }

    #[test]
    fn date_is_in_the_local_time_zone_not_always_utc() {
        let zone = |name: &str| local_zone(Some(name.to_owned()));
        let winter: jiff::Timestamp = "2026-12-01T21:40:00Z".parse().unwrap();
        let summer: jiff::Timestamp = "2026-07-01T09:05:03Z".parse().unwrap();
        assert_eq!(
            rfc5322_date(winter, zone("Europe/Berlin")),
            "Tue, 1 Dec 2026 22:40:00 +0100"
        );
        assert_eq!(
            rfc5322_date(summer, zone("Europe/Berlin")),
            "Wed, 1 Jul 2026 11:05:03 +0200"
        );
        assert_eq!(
            rfc5322_date(winter, zone("America/St_Johns")),
            "Tue, 1 Dec 2026 18:10:00 -0330"
        );
        assert_eq!(
            rfc5322_date(winter, jiff::tz::TimeZone::UTC),
            "Tue, 1 Dec 2026 21:40:00 +0000"
        );
        // Every form TZ takes: `:name`, a TZif file's path, a POSIX rule; empty, or
        // naming nothing, is UTC.
        for tz in [
            ":Europe/Berlin",
            "/usr/share/zoneinfo/Europe/Berlin",
            "CET-1CEST,M3.5.0,M10.5.0/3",
        ] {
            assert_eq!(
                rfc5322_date(summer, zone(tz)),
                "Wed, 1 Jul 2026 11:05:03 +0200",
                "{tz}"
            );
        }
        for tz in ["", "No/Such_Zone", "../../etc/passwd"] {
            assert_eq!(
                rfc5322_date(winter, zone(tz)),
                "Tue, 1 Dec 2026 21:40:00 +0000",
                "{tz}"
            );
        }
        // What mail-builder writes for UTC is the same text.
        assert_eq!(
            mail_builder::headers::date::Date::new(winter.as_second()).to_rfc822(),
            "Tue, 1 Dec 2026 21:40:00 +0000"
        );
    }

    #[test]
    fn date_at_writes_the_given_time_in_the_given_zone() {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_796_119_200);
        let berlin = local_zone(Some("Europe/Berlin".into()));
        assert_eq!(date_at(at, &berlin), "Tue, 1 Dec 2026 11:00:00 +0100");
        assert_eq!(
            date_at(at, &jiff::tz::TimeZone::UTC),
            "Tue, 1 Dec 2026 10:00:00 +0000"
        );
    }

    #[test]
    fn message_ids_differ() {
        assert_ne!(new_message_id("a"), new_message_id("a"));
    }
}
