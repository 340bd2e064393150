//! What of the original message comes back in a bounce (RFC 6522 §3, RFC 3461 §4.3):
//! its header section, or the whole of a small message when RET=FULL asked for it.
//! Only that much is read: a large original is never read whole.

use std::io::{self, Read};

use super::{FULL_LIMIT, Ret};

/// The longest header section returned (Postfix's `header_size_limit`); a longer one is
/// cut at a line end, and the text part says so.
pub const HEADER_LIMIT: u64 = 102_400;

/// What the third part holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The header section: `text/rfc822-headers` (or `message/global-headers`).
    Headers,
    /// The whole message: `message/rfc822` (or `message/global`).
    Full,
}

/// The part of the original that comes back, its line ends made CRLF.
#[derive(Debug)]
pub(crate) struct Returned {
    pub kind: Kind,
    pub bytes: Vec<u8>,
    /// The header section, for Subject and Message-ID (a prefix of `bytes`).
    pub header_len: usize,
    /// Whether the header holds UTF-8 (RFC 6532): the global types of RFC 6533.
    pub global: bool,
    /// Whether some byte returned is not 7-bit.
    pub eight_bit: bool,
    /// The original's size, when RET=FULL asked for it whole and it was too big.
    pub too_big: Option<u64>,
    /// The header section's size, when it was longer than [`HEADER_LIMIT`] and is cut.
    pub cut: Option<u64>,
}

/// Reads from `original` (a message of `len` bytes whose header section, its ending
/// empty line included, is `header_len` bytes) what `ret` asks to return: never more
/// than [`FULL_LIMIT`] or [`HEADER_LIMIT`] bytes.
pub(crate) fn returned(
    original: &mut dyn Read,
    len: u64,
    header_len: u64,
    ret: &Ret,
) -> io::Result<Returned> {
    let full = matches!(ret, Ret::Full) && len <= FULL_LIMIT;
    let want = if full {
        len
    } else {
        header_len.min(HEADER_LIMIT)
    };
    let mut raw = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    original.take(want).read_to_end(&mut raw)?;
    if (raw.len() as u64) < want {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the original message ended before its announced size",
        ));
    }
    let cut = (!full && header_len > HEADER_LIMIT).then_some(header_len);
    if cut.is_some() {
        // Only whole lines come back.
        let end = raw.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        raw.truncate(end);
    }
    let too_big = (matches!(ret, Ret::Full) && !full).then_some(len);
    let header_raw = usize::try_from(header_len).map_or(raw.len(), |h| h.min(raw.len()));
    let global = !raw[..header_raw].is_ascii();
    let (kind, bytes, header_len) = if full {
        let head = crate::compose::crlf_lines(&raw[..header_raw]);
        let mut bytes = crate::compose::crlf_lines(&raw);
        if !bytes.is_empty() && !bytes.ends_with(b"\r\n") {
            bytes.extend_from_slice(b"\r\n");
        }
        (Kind::Full, bytes, head.len())
    } else {
        let mut bytes = crate::compose::crlf_lines(&raw);
        // The empty line that ends the section is no header line.
        while bytes.ends_with(b"\r\n\r\n") {
            bytes.truncate(bytes.len() - 2);
        }
        if bytes == b"\r\n" {
            bytes.clear();
        }
        if !bytes.is_empty() && !bytes.ends_with(b"\r\n") {
            bytes.extend_from_slice(b"\r\n");
        }
        let n = bytes.len();
        (Kind::Headers, bytes, n)
    };
    Ok(Returned {
        kind,
        eight_bit: !bytes.is_ascii(),
        bytes,
        header_len,
        global,
        too_big,
        cut,
    })
}

/// The unfolded value of the first `name` field in `header` (CRLF line ends), if it is
/// there and UTF-8.
pub(crate) fn header_value(header: &[u8], name: &str) -> Option<String> {
    let mut lines = header
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut value: Option<Vec<u8>> = None;
    for line in lines.by_ref() {
        match &mut value {
            None => {
                if line.len() > name.len()
                    && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                    && line[name.len()] == b':'
                {
                    value = Some(line[name.len() + 1..].to_vec());
                }
            }
            Some(v) => {
                if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                    v.extend_from_slice(line);
                } else {
                    break;
                }
            }
        }
    }
    let value = String::from_utf8(value?).ok()?;
    Some(value.trim().to_owned())
}

/// The original's Message-ID (`<left@right>`), when it has one of that form.
pub(crate) fn message_id(header: &[u8]) -> Option<String> {
    let value = header_value(header, "Message-ID")?;
    let id = value.split_whitespace().next()?;
    let inner = id.strip_prefix('<')?.strip_suffix('>')?;
    let plain = |c: char| c.is_ascii_graphic() && !"<>\"\\".contains(c);
    (inner.contains('@') && inner.chars().all(plain)).then(|| id.to_owned())
}
