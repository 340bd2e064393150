//! The format of one drop: what a submitter writes and the service reads back.
//!
//! ```text
//! outbox-drop 1 <length of the envelope>\n
//! <envelope, TOML: from, recipients, ret, notify, envid, size>
//! <the message, size bytes>
//! \n.end <size> <sha256 of everything before this trailer, hex>\n
//! ```
//!
//! The trailer is the last thing written: a file cut short (a submitter killed
//! mid-write, a full disk) has none, and one altered after the fact has a digest that
//! no longer matches, so neither is ever taken for a message. Pure: bytes in, values out.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::envelope::{Address, Envelope};
use crate::smtp::dsn::Dsn;

const MAGIC: &str = "outbox-drop";
const FORMAT: u32 = 1;
/// The longest first line taken: the magic, the format and a length.
const MAX_FIRST_LINE: usize = 64;
/// The longest envelope taken: [`MAX_RECIPIENTS`] addresses of up to 256 octets
/// (RFC 5321 §4.5.3.1.3, a path), quoted, and the DSN values, with room to spare.
const MAX_ENVELOPE: usize = 1024 * 1024;
/// `\n.end ` + up to 20 digits + ` ` + 64 hex digits + `\n`.
const MAX_TRAILER: usize = 6 + 20 + 1 + 64 + 1;
/// The most recipients a drop may name: RFC 5321 §4.5.3.1.8 asks a server to take
/// at least 100 per message; Postfix's smtpd takes 1000 (`smtpd_recipient_limit`).
pub const MAX_RECIPIENTS: usize = 1000;
/// What a drop file holds beyond its message, at most.
pub const MAX_OVERHEAD: u64 = (MAX_FIRST_LINE + MAX_ENVELOPE + MAX_TRAILER) as u64;

/// Who a drop is from and for, and its DSN requests (RFC 3461).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropEnvelope {
    pub envelope: Envelope,
    pub dsn: Dsn,
}

/// The envelope as written: `from = ""` is the null sender, so that a lost key is an
/// error rather than a silent `<>`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeFile {
    from: String,
    recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notify: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    envid: Option<String>,
    size: u64,
}

/// The bytes of a drop holding `message` for `envelope`.
pub fn encode(envelope: &DropEnvelope, message: &[u8]) -> Result<Vec<u8>, String> {
    let count = envelope.envelope.to.len();
    if count > MAX_RECIPIENTS {
        return Err(too_many(count));
    }
    let file = EnvelopeFile {
        from: envelope
            .envelope
            .from
            .as_ref()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        recipients: envelope
            .envelope
            .to
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
        ret: envelope.dsn.ret.clone(),
        notify: envelope.dsn.notify.clone(),
        envid: envelope.dsn.envid.clone(),
        size: message.len() as u64,
    };
    let toml = toml::to_string(&file).map_err(|e| e.to_string())?;
    if toml.len() > MAX_ENVELOPE {
        return Err(format!(
            "the envelope is {} bytes, over the {MAX_ENVELOPE} a drop may have",
            toml.len()
        ));
    }
    let mut bytes = format!("{MAGIC} {FORMAT} {}\n", toml.len()).into_bytes();
    bytes.reserve(toml.len() + message.len() + MAX_TRAILER);
    bytes.extend_from_slice(toml.as_bytes());
    bytes.extend_from_slice(message);
    let digest = hex(&Sha256::digest(&bytes));
    bytes.extend_from_slice(format!("\n.end {} {digest}\n", message.len()).as_bytes());
    Ok(bytes)
}

/// The envelope and the message of a drop's bytes, or why they are not one: every
/// length is checked against what is there, the digest against the content, and
/// every address and DSN value as the command line's are, since they go into SMTP
/// commands.
pub fn decode(bytes: &[u8]) -> Result<(DropEnvelope, &[u8]), String> {
    let head_end = bytes
        .iter()
        .take(MAX_FIRST_LINE)
        .position(|&b| b == b'\n')
        .ok_or("no first line")?;
    let first = std::str::from_utf8(&bytes[..head_end]).map_err(|_| "a first line not UTF-8")?;
    let mut words = first.split(' ');
    if words.next() != Some(MAGIC) {
        return Err("not a drop (no outbox-drop line)".into());
    }
    if words.next() != Some("1") {
        return Err(format!("an unknown format: {first:?}"));
    }
    let env_len = words
        .next()
        .and_then(|w| w.parse::<usize>().ok())
        .filter(|&n| n <= MAX_ENVELOPE && words.next().is_none())
        .ok_or_else(|| format!("a bad first line: {first:?}"))?;
    let env_start = head_end + 1;
    let env_end = env_start
        .checked_add(env_len)
        .filter(|&e| e <= bytes.len())
        .ok_or("cut short in the envelope")?;
    let toml =
        std::str::from_utf8(&bytes[env_start..env_end]).map_err(|_| "an envelope not UTF-8")?;
    let file: EnvelopeFile = toml::from_str(toml).map_err(|e| format!("a bad envelope: {e}"))?;
    let size = usize::try_from(file.size).map_err(|_| "a message size out of range")?;
    let body_end = env_end
        .checked_add(size)
        .filter(|&e| e <= bytes.len())
        .ok_or("cut short in the message")?;
    check_trailer(&bytes[..body_end], &bytes[body_end..], file.size)?;
    Ok((file.into_envelope()?, &bytes[env_end..body_end]))
}

/// Whether `trailer` is exactly the one `signed` and `size` call for.
fn check_trailer(signed: &[u8], trailer: &[u8], size: u64) -> Result<(), String> {
    if trailer.is_empty() {
        return Err("cut short: no trailer".into());
    }
    if trailer.len() > MAX_TRAILER {
        return Err("bytes after the message's end".into());
    }
    let text = std::str::from_utf8(trailer).map_err(|_| "a trailer not UTF-8")?;
    let fields = text
        .strip_prefix("\n.end ")
        .and_then(|t| t.strip_suffix('\n'))
        .ok_or("a bad trailer")?;
    let (len, digest) = fields.split_once(' ').ok_or("a bad trailer")?;
    if len.parse::<u64>().ok() != Some(size) {
        return Err(format!(
            "the trailer's length {len} is not the envelope's {size}"
        ));
    }
    if digest != hex(&Sha256::digest(signed)) {
        return Err("the digest does not match the content (altered or cut short)".into());
    }
    Ok(())
}

impl EnvelopeFile {
    fn into_envelope(self) -> Result<DropEnvelope, String> {
        let from = if self.from.is_empty() {
            None
        } else {
            Some(Address::new(&self.from).map_err(|e| format!("the sender: {e}"))?)
        };
        if self.recipients.is_empty() {
            return Err("the envelope has no recipient".into());
        }
        if self.recipients.len() > MAX_RECIPIENTS {
            return Err(too_many(self.recipients.len()));
        }
        let to = self
            .recipients
            .iter()
            .map(|r| Address::new(r).map_err(|e| format!("a recipient: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DropEnvelope {
            envelope: Envelope::new(from, to),
            dsn: Dsn::checked(self.ret, self.notify, self.envid)?,
        })
    }
}

fn too_many(count: usize) -> String {
    format!("{count} recipients, over the {MAX_RECIPIENTS} a message may have")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
