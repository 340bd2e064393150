//! Reading a delivered bounce back: a delivery status notification (RFC 3464)
//! in a `multipart/report` (RFC 6522), parsed with mail-parser for the MIME
//! structure and by hand for the `message/delivery-status` fields, which
//! mail-parser leaves as bytes.

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// The fields of one block of a `message/delivery-status` part (RFC 3464 §2.1):
/// `Name: value` lines, continuation lines unfolded, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The value of the field `name` (case-insensitive), if there is one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the field `name`; panics with the block when it is missing.
    #[track_caller]
    pub fn field(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("no {name} field in {:?}", self.0))
    }

    /// How many fields are called `name`.
    pub fn count(&self, name: &str) -> usize {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// What the report's third part gives back of the original message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Returned {
    /// No third part.
    Nothing,
    /// `text/rfc822-headers`: the header block, as text.
    Headers(String),
    /// `message/rfc822`: the whole message, as bytes.
    Message(Vec<u8>),
    /// Some other type (named), which RFC 6522 §3 does not expect here.
    Other(String),
}

/// A parsed bounce.
#[derive(Clone, Debug)]
pub struct Dsn {
    /// The message as given (trace headers included).
    pub raw: Vec<u8>,
    /// The `Return-Path:` Postfix recorded (the envelope sender), e.g. `<>`.
    pub return_path: Option<String>,
    /// The address in `From:`.
    pub from: Option<String>,
    /// The addresses in `To:`.
    pub to: Vec<String>,
    pub subject: Option<String>,
    pub auto_submitted: Option<String>,
    /// Type and subtype of the message, lower case, e.g. `multipart/report`.
    pub content_type: String,
    /// Its `report-type` parameter.
    pub report_type: Option<String>,
    /// Type and subtype of each part of the report, lower case, in order.
    pub part_types: Vec<String>,
    /// The first part's text.
    pub human: String,
    /// The per-message block of the `message/delivery-status` part.
    pub per_message: Fields,
    /// Its per-recipient blocks.
    pub recipients: Vec<Fields>,
    pub returned: Returned,
}

impl Dsn {
    /// Parses `raw`; an error says what is missing (the caller shows `raw`).
    pub fn parse(raw: &[u8]) -> Result<Dsn, String> {
        let msg = MessageParser::default()
            .parse(raw)
            .ok_or("mail-parser finds no message")?;
        let root = msg.root_part();
        let ct = root.content_type().ok_or("no Content-Type")?;
        let content_type = type_of(ct.ctype(), ct.subtype());
        let report_type = ct.attribute("report-type").map(str::to_owned);
        let ids = root
            .sub_parts()
            .ok_or_else(|| format!("{content_type} has no parts"))?;
        let parts: Vec<_> = ids
            .iter()
            .map(|&id| msg.part(id).ok_or_else(|| format!("part {id} is missing")))
            .collect::<Result<_, _>>()?;
        let part_types: Vec<String> = parts
            .iter()
            .map(|p| {
                p.content_type()
                    .map_or("text/plain".to_owned(), |c| type_of(c.ctype(), c.subtype()))
            })
            .collect();
        if parts.len() < 2 {
            return Err(format!("{} part(s), a report has at least 2", parts.len()));
        }
        let human = parts[0]
            .text_contents()
            .ok_or("the first part is not text")?
            .to_owned();
        let status = String::from_utf8_lossy(parts[1].contents()).into_owned();
        let mut blocks = parse_status_blocks(&status).into_iter();
        let per_message = blocks.next().ok_or("the delivery-status part is empty")?;
        let recipients: Vec<Fields> = blocks.collect();
        let returned = match parts.get(2) {
            None => Returned::Nothing,
            Some(part) => match (&part.body, part_types[2].as_str()) {
                (PartType::Message(m), _) => Returned::Message(m.raw_message().to_vec()),
                (PartType::Text(t), "text/rfc822-headers") => Returned::Headers(t.to_string()),
                (_, other) => Returned::Other(other.to_owned()),
            },
        };
        Ok(Dsn {
            raw: raw.to_vec(),
            return_path: msg.header_raw("Return-Path").map(|v| v.trim().to_owned()),
            from: msg
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_owned),
            to: msg
                .to()
                .map(|a| {
                    a.iter()
                        .filter_map(|a| a.address().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            subject: msg.subject().map(str::to_owned),
            auto_submitted: msg
                .header_raw("Auto-Submitted")
                .map(|v| v.trim().to_owned()),
            content_type,
            report_type,
            part_types,
            human,
            per_message,
            recipients,
            returned,
        })
    }

    /// As [`Dsn::parse`], panicking with the message when it is not a report.
    #[track_caller]
    pub fn of(raw: &[u8]) -> Dsn {
        Dsn::parse(raw).unwrap_or_else(|e| {
            panic!(
                "not a delivery status notification: {e}\n--- message ---\n{}",
                String::from_utf8_lossy(raw)
            )
        })
    }

    /// The message as text, for failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The per-recipient block whose `Final-Recipient` is `rfc822; addr`.
    pub fn recipient(&self, addr: &str) -> Option<&Fields> {
        self.recipients.iter().find(|r| {
            r.get("Final-Recipient")
                .and_then(address_of_type)
                .is_some_and(|a| a.eq_ignore_ascii_case(addr))
        })
    }

    /// The addresses of every `Final-Recipient`, in order.
    pub fn final_recipients(&self) -> Vec<String> {
        self.recipients
            .iter()
            .filter_map(|r| r.get("Final-Recipient").and_then(address_of_type))
            .map(str::to_owned)
            .collect()
    }
}

/// `rfc822; addr` (RFC 3464 §2.3.2: address-type ";" generic-address) gives `addr`;
/// another address type gives `None`.
pub fn address_of_type(value: &str) -> Option<&str> {
    let (kind, addr) = value.split_once(';')?;
    kind.trim()
        .eq_ignore_ascii_case("rfc822")
        .then_some(addr.trim())
}

/// The blocks of a `message/delivery-status` body: groups of fields separated by
/// empty lines (RFC 3464 §2.1), continuation lines unfolded; lines that are not
/// fields are kept with an empty name so a test sees them.
pub fn parse_status_blocks(text: &str) -> Vec<Fields> {
    let mut blocks = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.replace("\r\n", "\n").lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(Fields(std::mem::take(&mut current)));
            }
        } else if line.starts_with([' ', '\t']) && !current.is_empty() {
            if let Some(last) = current.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else {
            match line.split_once(':') {
                Some((name, value)) => {
                    current.push((name.trim().to_owned(), value.trim().to_owned()))
                }
                None => current.push((String::new(), line.to_owned())),
            }
        }
    }
    if !current.is_empty() {
        blocks.push(Fields(current));
    }
    blocks
}

fn type_of(ctype: &str, subtype: Option<&str>) -> String {
    format!("{ctype}/{}", subtype.unwrap_or("")).to_ascii_lowercase()
}
