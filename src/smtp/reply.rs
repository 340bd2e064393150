//! SMTP replies (RFC 5321 §4.2): parsing is sans-IO, strict and bounded.

use std::fmt;

/// Longest reply line accepted, CRLF included. RFC 5321 §4.5.3.1.5 sets 512 octets;
/// real servers overrun it now and then, so four times that is tolerated.
pub const MAX_REPLY_LINE: usize = 2048;
/// Most lines accepted in one reply; an EHLO reply rarely has more than twenty.
pub const MAX_REPLY_LINES: usize = 128;

/// An enhanced status code `class.subject.detail` (RFC 3463), as sent under
/// ENHANCEDSTATUSCODES (RFC 2034).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete server reply: a three-digit code and one or more lines of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The enhanced status code from the first line, when the server sends one.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line, after the code and separator (enhanced code included).
    pub lines: Vec<String>,
}

/// Why bytes from the server are not a valid reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line is not \"code text\": {0:?}")]
    Malformed(String),
    #[error("reply line longer than {MAX_REPLY_LINE} octets")]
    LineTooLong,
    #[error("reply with more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    #[error("reply lines carry different codes: {first} then {then}")]
    CodeMismatch { first: u16, then: u16 },
}

impl Reply {
    /// 4yz: a temporary failure; the same command may succeed later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5yz: a permanent failure.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

/// Shows the reply as the server sent it (`250-first`, `250 last`), one line each,
/// with control characters replaced so that server text cannot drive the terminal.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let sep = if i == last { ' ' } else { '-' };
            write!(f, "{}{}{}", self.code, sep, sanitize(line))?;
        }
        Ok(())
    }
}

/// Replaces control characters, and the invisible Unicode characters that reorder or
/// break text (bidi controls, zero-width characters, line separators), with `?`, so
/// that text from the network prints as what it is.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || is_invisible_format(c) {
                '?'
            } else {
                c
            }
        })
        .collect()
}

fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}'                      // Arabic letter mark
        | '\u{200B}'..='\u{200F}'       // zero-width characters, LRM, RLM
        | '\u{2028}'..='\u{202E}'       // line and paragraph separators, bidi embeddings
        | '\u{2060}'..='\u{2069}'       // word joiner, invisible operators, bidi isolates
        | '\u{FEFF}'                     // zero-width no-break space
    )
}

/// Parses one complete reply from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or the reply and the number of bytes it
/// took. Bytes after the reply are left alone (they are the next reply when pipelining).
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() >= MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            // Garbage is known as soon as its first bytes arrive: no need to wait for a
            // line end that a server speaking another protocol may never send.
            if !plausible_start(rest) {
                return Err(ReplyError::Malformed(sanitize(&String::from_utf8_lossy(
                    rest,
                ))));
            }
            return Ok(None);
        };
        if nl + 1 > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        // A bare LF ends a line too: servers that send one are wrong, but the reply
        // is still unambiguous, and being lenient here cannot harm what we send.
        let raw = &rest[..nl];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos += nl + 1;
        let (line_code, last, text) = parse_line(raw)?;
        match code {
            None => code = Some(line_code),
            Some(first) if first != line_code => {
                return Err(ReplyError::CodeMismatch {
                    first,
                    then: line_code,
                });
            }
            Some(_) => {}
        }
        if lines.len() == MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        lines.push(text);
        if last {
            let code = line_code;
            let enhanced = lines.first().and_then(|l| parse_enhanced(code, l));
            return Ok(Some((
                Reply {
                    code,
                    enhanced,
                    lines,
                },
                pos,
            )));
        }
    }
}

/// Whether `partial`, the start of a line, can still become a valid reply line.
fn plausible_start(partial: &[u8]) -> bool {
    partial.iter().take(4).enumerate().all(|(i, &b)| match i {
        0 => matches!(b, b'2'..=b'5'),
        1 => matches!(b, b'0'..=b'5'),
        2 => b.is_ascii_digit(),
        _ => b == b' ' || b == b'-' || b == b'\r',
    })
}

/// One reply line: `Reply-code [ ("-" / SP) textstring ]` (RFC 5321 §4.2).
fn parse_line(raw: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = || ReplyError::Malformed(sanitize(&String::from_utf8_lossy(raw)));
    if raw.len() < 3 {
        return Err(malformed());
    }
    let digits = &raw[..3];
    // RFC 5321 §4.2: the first digit is 2 to 5, the second 0 to 5, the third 0 to 9.
    let valid = matches!(digits[0], b'2'..=b'5')
        && matches!(digits[1], b'0'..=b'5')
        && digits[2].is_ascii_digit();
    if !valid {
        return Err(malformed());
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let (last, text) = match raw.get(3) {
        None => (true, &raw[3..3]),
        Some(b' ') => (true, &raw[4..]),
        Some(b'-') => (false, &raw[4..]),
        Some(_) => return Err(malformed()),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// The enhanced code at the start of `text`, if its class agrees with the reply code.
fn parse_enhanced(code: u16, text: &str) -> Option<EnhancedCode> {
    let word = text.split(' ').next()?;
    let mut parts = word.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || u16::from(class) != code / 100 || subject > 999 || detail > 999 {
        return None;
    }
    Some(EnhancedCode {
        class,
        subject,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Reply {
        match parse_reply(input) {
            Ok(Some((reply, used))) => {
                assert_eq!(used, input.len(), "reply should consume all input");
                reply
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn single_line() {
        let r = parse_all(b"220 mx.example.test ESMTP ready\r\n");
        assert_eq!(r.code, 220);
        assert_eq!(r.lines, vec!["mx.example.test ESMTP ready"]);
        assert_eq!(r.enhanced, None);
    }

    #[test]
    fn multi_line_keeps_every_line() {
        let r = parse_all(b"250-mx.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["mx.example.test", "PIPELINING", "8BITMIME"]);
    }

    #[test]
    fn code_alone_is_a_complete_line() {
        let r = parse_all(b"250\r\n");
        assert_eq!(r.lines, vec![""]);
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        assert_eq!(parse_reply(b""), Ok(None));
        assert_eq!(parse_reply(b"250-first\r\n250 sec"), Ok(None));
        assert_eq!(parse_reply(b"25"), Ok(None));
    }

    #[test]
    fn bytes_after_the_reply_are_left_for_the_next() {
        let input = b"250 ok\r\n354 go ahead\r\n";
        let (reply, used) = parse_reply(input).unwrap().unwrap();
        assert_eq!(reply.code, 250);
        let (next, _) = parse_reply(&input[used..]).unwrap().unwrap();
        assert_eq!(next.code, 354);
    }

    #[test]
    fn enhanced_code_is_parsed_and_stripped_from_the_message() {
        let r = parse_all(b"550-5.1.1 <x@example.test>: no such user\r\n550 5.1.1 see docs\r\n");
        assert_eq!(
            r.enhanced,
            Some(EnhancedCode {
                class: 5,
                subject: 1,
                detail: 1
            })
        );
        assert_eq!(r.lines[1], "5.1.1 see docs");
    }

    #[test]
    fn enhanced_code_of_another_class_is_ignored() {
        let r = parse_all(b"250 5.1.1 odd\r\n");
        assert_eq!(r.enhanced, None);
    }

    #[test]
    fn bad_codes_are_refused() {
        for bad in [
            &b"abc hello\r\n"[..],
            b"2x0 hello\r\n",
            b"650 hello\r\n",
            b"190 hello\r\n",
            b"260 hello\r\n",
            b"25\r\n",
            b"250hello\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\r\n",
        ] {
            assert!(
                matches!(parse_reply(bad), Err(ReplyError::Malformed(_))),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn garbage_is_refused_before_its_line_ends() {
        assert!(matches!(
            parse_reply(b"\x16\x03\x01"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(b"SSH-2.0-OpenSSH"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(b"250-ok\r\nxyz"),
            Err(ReplyError::Malformed(_))
        ));
        assert_eq!(parse_reply(b"2"), Ok(None));
        assert_eq!(parse_reply(b"250-"), Ok(None));
        assert_eq!(parse_reply(b"250\r"), Ok(None));
    }

    #[test]
    fn lines_must_share_one_code() {
        assert_eq!(
            parse_reply(b"250-first\r\n251 second\r\n"),
            Err(ReplyError::CodeMismatch {
                first: 250,
                then: 251
            })
        );
    }

    #[test]
    fn overlong_line_is_refused_even_before_its_end_arrives() {
        let mut long = b"250 ".to_vec();
        long.resize(MAX_REPLY_LINE + 10, b'a');
        assert_eq!(parse_reply(&long), Err(ReplyError::LineTooLong));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_reply(&long), Err(ReplyError::LineTooLong));
    }

    #[test]
    fn line_at_the_limit_is_accepted() {
        let mut line = b"250 ".to_vec();
        line.resize(MAX_REPLY_LINE - 2, b'a');
        line.extend_from_slice(b"\r\n");
        assert_eq!(parse_all(&line).code, 250);
    }

    #[test]
    fn too_many_lines_are_refused() {
        let mut input = Vec::new();
        for _ in 0..MAX_REPLY_LINES {
            input.extend_from_slice(b"250-x\r\n");
        }
        input.extend_from_slice(b"250 end\r\n");
        assert_eq!(parse_reply(&input), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn bare_lf_line_end_is_tolerated() {
        let r = parse_all(b"220 hi\n");
        assert_eq!(r.lines, vec!["hi"]);
    }

    #[test]
    fn sanitize_hides_bidi_and_invisible_characters() {
        assert_eq!(
            sanitize("ok\u{202E}txt.exe\u{2028}x\u{200B}"),
            "ok?txt.exe?x?"
        );
        assert_eq!(sanitize("Grüße 日本"), "Grüße 日本");
    }

    #[test]
    fn display_sanitizes_control_characters() {
        let r = parse_all(b"550-bad\x1b[31m\r\n550 end\x07\r\n");
        assert_eq!(r.to_string(), "550-bad?[31m\n550 end?");
    }
}
