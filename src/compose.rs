//! Building a message from flags (the compose face) with mail-builder.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as HeaderAddress;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};

use crate::envelope::Mailbox;
use crate::error::Error;

/// A finished message, ready for DATA.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    bytes: Vec<u8>,
}

impl Message {
    /// A message from bytes that are already a whole RFC 5322 message.
    pub fn from_bytes(bytes: Vec<u8>) -> Message {
        Message { bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Message({} bytes)", self.bytes.len())
    }
}

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
            Some(t) => {
                let valid = t.split_once('/').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && t.chars().all(|c| {
                            c.is_ascii_graphic() && !"()<>@,;:\\\"[]?=".contains(c) || c == '/'
                        })
                });
                if !valid {
                    return Err(Error::Usage(format!(
                        "attachment type {t:?} is not a MIME type like text/csv"
                    )));
                }
                t
            }
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

/// Everything the compose face knows about the message it is to build.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: Option<String>,
    /// Extra headers from `-H`; one named like a header outbox writes replaces it.
    pub headers: Vec<(String, String)>,
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

/// Parses `-H "Name: value"`.
pub fn parse_header(spec: &str) -> Result<(String, String), Error> {
    let (name, value) = spec
        .split_once(':')
        .ok_or_else(|| Error::Usage(format!("header {spec:?} is not \"Name: value\"")))?;
    let name = name.trim();
    // RFC 5322 §2.2: a field name is printable US-ASCII except ':'.
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(Error::Usage(format!("header name {name:?} is not valid")));
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
    Ok((name.to_owned(), value.to_owned()))
}

/// Builds the message. `domain` names this host in the Message-ID when the sender's
/// address has no domain.
pub fn build(draft: &Draft, domain: &str) -> Result<Message, Error> {
    let attachments = draft
        .attachments
        .iter()
        .map(|a| {
            std::fs::read(&a.path)
                .map(|bytes| (a, bytes))
                .map_err(|source| Error::NoInput {
                    path: a.path.clone(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, Error>>()?;

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
        b = b.date(mail_builder::headers::date::Date::now());
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
        b = b.header(name.as_str(), Text::new(value.as_str()));
    }

    let text = text_part("text/plain", &draft.text);
    let body = match &draft.html {
        Some(html) => MimePart::new(
            "multipart/alternative",
            vec![text, text_part("text/html", html)],
        ),
        None => text,
    };
    let body = if attachments.is_empty() {
        body
    } else {
        let mut parts = vec![body];
        for (a, bytes) in &attachments {
            parts.push(
                MimePart::new(
                    ContentType::new(a.content_type.as_str()),
                    BodyPart::Binary(Cow::Borrowed(bytes)),
                )
                .attachment(a.name.as_str()),
            );
        }
        MimePart::new("multipart/mixed", parts)
    };
    let bytes = b
        .body(body)
        .write_to_vec()
        .map_err(|e| Error::Data(format!("cannot build the message: {e}")))?;
    Ok(Message { bytes })
}

/// A text part: UTF-8 as it is; other bytes are kept exactly, labelled with the
/// charset `unknown-8bit` (RFC 1428), rather than altered or refused.
fn text_part<'x>(mime: &'x str, body: &'x [u8]) -> MimePart<'x> {
    match std::str::from_utf8(body) {
        Ok(text) => MimePart::new(mime, BodyPart::Text(Cow::Borrowed(text))),
        Err(_) => MimePart::new(
            ContentType::new(mime).attribute("charset", "unknown-8bit"),
            BodyPart::Binary(Cow::Borrowed(body)),
        ),
    }
}

fn header_address(m: &Mailbox) -> HeaderAddress<'_> {
    HeaderAddress::new_address(m.name.as_deref(), m.address.as_str())
}

fn address_list(list: &[Mailbox]) -> HeaderAddress<'_> {
    HeaderAddress::new_list(list.iter().map(header_address).collect())
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
        String::from_utf8(m.as_bytes().to_vec()).unwrap()
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
        assert!(Attachment::parse("x;name=a\nb").is_err());
    }

    #[test]
    fn header_specs() {
        assert_eq!(
            parse_header("X-Ticket:  42 ").unwrap(),
            ("X-Ticket".to_owned(), "42".to_owned())
        );
        for bad in [
            "NoColon",
            ": value",
            "Bad Name: x",
            "X-A: one\r\nBcc: evil@example.test",
            "X-A: nul\0",
            "Bcc: x@example.test",
            "content-type: text/html",
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
            headers: vec![("X-Ticket".into(), "42".into())],
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
                ("Subject".into(), "header".into()),
                ("Message-ID".into(), "<fixed@example.test>".into()),
            ],
            ..Draft::default()
        };
        let text = text_of(&build(&draft, "h").unwrap());
        assert_eq!(text.matches("Subject:").count(), 1, "{text}");
        assert!(text.contains("Subject: header\r\n"));
        assert_eq!(text.matches("Message-ID:").count(), 1, "{text}");
        assert!(text.contains("Message-ID: <fixed@example.test>\r\n"));
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
    fn message_ids_differ() {
        assert_ne!(new_message_id("a"), new_message_id("a"));
    }
}
