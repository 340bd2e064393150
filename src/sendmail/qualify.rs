//! A domain for the bare local names of a message's address fields.
//!
//! cron writes `From: root (Cron Daemon)` and `To: root`, logwatch `From: root`: an
//! addr-spec needs a domain (RFC 5322 §3.4.1) and relays refuse such a From. As
//! Postfix appends `@$myorigin`, outbox appends the domain that bare names in the
//! envelope get ([`crate::settings::Settings::qualify`]). Aliases are for the
//! envelope only: a header keeps the name it had. Only the addresses without a domain
//! change; comments, display names, groups and folding stay as they were, byte for byte.

use crate::envelope::Address;

/// The fields whose addresses get the domain (RFC 5322 §3.6.2, §3.6.3, §3.6.6). Bcc
/// is not sent at all.
pub const FIELDS: [&str; 9] = [
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
];

/// The lines of one address field (each without its line end; the first holds the
/// name and the colon) with `@domain` after each address that has none, or `None`
/// when no address needs it. What cannot be read as an address is left alone.
pub fn qualify(lines: &[&[u8]], domain: &str) -> Option<Vec<Vec<u8>>> {
    let text = lines.join(&b'\n');
    let start = text.iter().position(|&b| b == b':')? + 1;
    let at: Vec<usize> = unqualified(&text, start)
        .into_iter()
        .filter(|spot| needs_domain(&spot.spec))
        .map(|spot| spot.end)
        .collect();
    if at.is_empty() {
        return None;
    }
    let suffix = format!("@{domain}");
    let mut out = Vec::with_capacity(text.len() + at.len() * suffix.len());
    let mut from = 0;
    for end in at {
        out.extend_from_slice(&text[from..end]);
        out.extend_from_slice(suffix.as_bytes());
        from = end;
    }
    out.extend_from_slice(&text[from..]);
    Some(out.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect())
}

/// Whether `spec` (an address's text, comments and folds made spaces) is a local
/// part alone.
fn needs_domain(spec: &[u8]) -> bool {
    let Ok(spec) = std::str::from_utf8(spec) else {
        return false;
    };
    let spec = super::address_list::join_words(spec);
    !spec.is_empty() && !spec.contains('@') && Address::new(&spec).is_ok()
}

/// An address with no `@`: its text, and where the domain goes (after its last word).
#[derive(Debug)]
struct Spot {
    spec: Vec<u8>,
    end: usize,
}

/// The addresses of the address list in `text[start..]` that have no `@` outside
/// quoted strings, comments and domain literals (RFC 5322 §3.4). `\n` is a fold.
fn unqualified(text: &[u8], start: usize) -> Vec<Spot> {
    let mut spots = Vec::new();
    let mut item = Item::new(start);
    let mut i = start;
    while i < text.len() {
        let b = text[i];
        match b {
            b'"' => {
                i = skip_quoted(text, i, b'"', b'"');
                item.word(i);
                continue;
            }
            b'[' => {
                i = skip_quoted(text, i, b'[', b']');
                item.word(i);
                continue;
            }
            b'(' => {
                let end = skip_comment(text, i);
                item.comments.push(i..end);
                i = end;
                continue;
            }
            b'<' if item.angle.is_none() => {
                item.angle = Some(Angle {
                    open: i + 1,
                    close: None,
                    last_word: None,
                });
                item.at = false;
            }
            b'>' if item.in_angle() => {
                if let Some(a) = &mut item.angle {
                    a.close = Some(i);
                }
            }
            b'@' => item.at = true,
            b':' if !item.in_angle() => {
                // A group's display name (RFC 5322 §3.4): the members follow.
                item = Item::new(i + 1);
            }
            b',' | b';' if !item.in_angle() => {
                spots.extend(item.finish(text, i));
                item = Item::new(i + 1);
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => item.word(i + 1),
        }
        i += 1;
    }
    spots.extend(item.finish(text, text.len()));
    spots
}

/// The index after the quoted string (or domain literal) that opens at `i`; a
/// backslash escapes the next byte (RFC 5322 §3.2.4).
fn skip_quoted(text: &[u8], i: usize, open: u8, close: u8) -> usize {
    let mut j = i + 1;
    while j < text.len() {
        match text[j] {
            b'\\' if open == b'"' => j += 1,
            b if b == close => return j + 1,
            _ => {}
        }
        j += 1;
    }
    text.len()
}

/// The index after the comment that opens at `i`; comments nest (RFC 5322 §3.2.2).
fn skip_comment(text: &[u8], i: usize) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j < text.len() {
        match text[j] {
            b'\\' => j += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    text.len()
}

#[derive(Debug)]
struct Angle {
    /// After the `<`.
    open: usize,
    /// At the `>`.
    close: Option<usize>,
    last_word: Option<usize>,
}

/// One address of the list as it is read.
#[derive(Debug)]
struct Item {
    start: usize,
    /// Where its comments are, to leave them out of the address.
    comments: Vec<std::ops::Range<usize>>,
    angle: Option<Angle>,
    /// An `@` outside quotes, in the <...> when there is one.
    at: bool,
    /// After the last byte of a word outside <...>.
    last_word: Option<usize>,
}

impl Item {
    fn new(start: usize) -> Item {
        Item {
            start,
            comments: Vec::new(),
            angle: None,
            at: false,
            last_word: None,
        }
    }

    fn in_angle(&self) -> bool {
        matches!(self.angle, Some(Angle { close: None, .. }))
    }

    /// A word of the item ends at `end`.
    fn word(&mut self, end: usize) {
        match &mut self.angle {
            Some(a) if a.close.is_none() => a.last_word = Some(end),
            Some(_) => {}
            None => self.last_word = Some(end),
        }
    }

    /// The spot for the domain, if the item, which ends at `end` in `text`, is an
    /// address without one.
    fn finish(self, text: &[u8], end: usize) -> Option<Spot> {
        if self.at {
            return None;
        }
        let (from, last) = match self.angle {
            // An unclosed <, an empty <> or an obs-route: not for us to mend.
            Some(Angle {
                open,
                close: Some(_),
                last_word: Some(last),
            }) => (open, last),
            Some(_) => return None,
            None => (self.start, self.last_word?),
        };
        let mut spec = text[from..last.min(end)].to_vec();
        for comment in &self.comments {
            for i in comment.start.max(from)..comment.end.min(last) {
                spec[i - from] = b' ';
            }
        }
        for b in &mut spec {
            if *b == b'\n' {
                *b = b' ';
            }
        }
        Some(Spot { spec, end: last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(field: &str) -> Option<String> {
        let lines: Vec<&[u8]> = field.split('\n').map(str::as_bytes).collect();
        qualify(&lines, "example.test").map(|lines| {
            let text: Vec<String> = lines
                .into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect();
            text.join("\n")
        })
    }

    #[test]
    fn cron_and_logwatch_fields_get_the_domain() {
        assert_eq!(
            q("From: root (Cron Daemon)").as_deref(),
            Some("From: root@example.test (Cron Daemon)")
        );
        assert_eq!(q("To: root").as_deref(), Some("To: root@example.test"));
        assert_eq!(q("From: root").as_deref(), Some("From: root@example.test"));
    }

    #[test]
    fn display_names_comments_and_angles_are_kept() {
        assert_eq!(
            q("From: \"Cron, the Daemon\" <root> (local)").as_deref(),
            Some("From: \"Cron, the Daemon\" <root@example.test> (local)")
        );
        assert_eq!(
            q("To: =?utf-8?q?J=C3=B6rg?= <joerg>, a@x.test,\n\tops (team)").as_deref(),
            Some(
                "To: =?utf-8?q?J=C3=B6rg?= <joerg@example.test>, a@x.test,\n\
                 \tops@example.test (team)"
            )
        );
        assert_eq!(
            q("Cc: first.last, \"quoted\"").as_deref(),
            Some("Cc: first.last@example.test, \"quoted\"@example.test")
        );
    }

    #[test]
    fn fields_that_are_fine_are_left_alone() {
        for field in [
            "To: a@example.test",
            "To: A <a@example.test>, \"B, root\" <b@x.test> (root)",
            "To: undisclosed-recipients:;",
            "Cc: team: a@x.test, b@x.test;",
            "To: <@route.test:a@x.test>",
            "To: <>",
            "To: two words",
            "To: \"q u\"",
            "To: ",
            "To: <unclosed",
            "To: user@[127.0.0.1]",
        ] {
            assert_eq!(q(field), None, "{field}");
        }
    }

    #[test]
    fn group_members_get_the_domain_and_the_group_stays() {
        assert_eq!(
            q("To: ops: root, a@x.test;, undisclosed-recipients:;").as_deref(),
            Some("To: ops: root@example.test, a@x.test;, undisclosed-recipients:;")
        );
    }
}
