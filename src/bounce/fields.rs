//! Header fields and text lines of a bounce: folded to fit (RFC 5322 §2.1.1, §2.2.3)
//! and made safe where their text comes from a server or the original message.

/// The length a line is folded to where it can be (RFC 5322 §2.1.1).
pub(crate) const TARGET: usize = 78;
/// Longest piece a line is ever left with, its CRLF aside: below the 998 octets of RFC
/// 5322 §2.1.1, with room for the white space a continuation starts with.
const HARD_LIMIT: usize = 990;

/// `text` with control characters, the invisible Unicode characters that reorder text
/// and, unless `utf8`, every non-ASCII character replaced with `?`.
pub(crate) fn safe(text: &str, utf8: bool) -> String {
    crate::smtp::reply::sanitize(text)
        .chars()
        .map(|c| if c.is_ascii() || utf8 { c } else { '?' })
        .collect()
}

/// Appends the field `name: value` with its CRLF, folded before a space where a line
/// would pass [`TARGET`]; a run without spaces longer than [`HARD_LIMIT`] is broken
/// where it must be (only a server's or a sender's pathological text has one). The
/// value must hold no line ends (callers pass it through [`safe`]).
pub(crate) fn field(out: &mut String, name: &str, value: &str) {
    let first = format!("{name}: ");
    fold_into(out, &first, value, " ");
}

/// Appends `text` as lines that start with `indent` (the first) and `more` (the rest),
/// broken before a space where a line would pass [`TARGET`], each ended by CRLF: for
/// the text part, where a reply line may be long.
pub(crate) fn wrapped(out: &mut String, indent: &str, more: &str, text: &str) {
    fold_into(out, indent, text, more);
}

/// Writes `lead` then the words of `text`, a new line (starting with `more`) before a
/// word that would carry the line past [`TARGET`]. For a header field `more` is the
/// single space folding keeps, and the space before the word goes with it.
fn fold_into(out: &mut String, lead: &str, text: &str, more: &str) {
    let mut line = String::from(lead);
    let mut fresh = true;
    for word in text.split(' ') {
        let needed = usize::from(!fresh) + word.len();
        if !fresh && line.len() + needed > TARGET {
            out.push_str(&line);
            out.push_str("\r\n");
            // For a field, `more` is the folded space itself.
            line = String::from(more);
            fresh = true;
        }
        if !fresh {
            line.push(' ');
        }
        let mut rest = word;
        while line.len() + rest.len() > HARD_LIMIT {
            let room = HARD_LIMIT.saturating_sub(line.len()).max(1);
            let cut = floor_char_boundary(rest, room);
            line.push_str(&rest[..cut]);
            out.push_str(&line);
            out.push_str("\r\n");
            line = String::from(more);
            rest = &rest[cut..];
        }
        line.push_str(rest);
        fresh = false;
    }
    out.push_str(&line);
    out.push_str("\r\n");
}

/// The largest char boundary of `s` at or below `at`, but at least one character in.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut cut = at.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut == 0 {
        s.chars().next().map_or(0, char::len_utf8)
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_field_is_one_line() {
        let mut out = String::new();
        field(&mut out, "Subject", "hello there");
        assert_eq!(out, "Subject: hello there\r\n");
    }

    #[test]
    fn a_long_field_folds_before_a_space_and_unfolds_to_itself() {
        let value = (1..=30)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut out = String::new();
        field(&mut out, "Subject", &value);
        assert_eq!(
            out,
            "Subject: word1 word2 word3 word4 word5 word6 word7 word8 word9 word10 word11\r\n \
             word12 word13 word14 word15 word16 word17 word18 word19 word20 word21 word22\r\n \
             word23 word24 word25 word26 word27 word28 word29 word30\r\n"
        );
        assert!(out.split("\r\n").all(|l| l.len() <= TARGET));
        assert_eq!(
            out.trim_end().replace("\r\n", ""),
            format!("Subject: {value}")
        );
    }

    #[test]
    fn a_word_longer_than_a_line_may_be_is_broken() {
        let value = "x".repeat(2500);
        let mut out = String::new();
        field(&mut out, "Diagnostic-Code", &format!("smtp; 550 {value}"));
        let lines: Vec<&str> = out.trim_end().split("\r\n").collect();
        assert_eq!(lines.len(), 4);
        assert!(lines.iter().all(|l| l.len() <= HARD_LIMIT));
        assert!(lines[1..].iter().all(|l| l.starts_with(' ')));
        assert_eq!(out.matches('x').count(), 2500);
    }

    #[test]
    fn wrapped_text_lines_carry_their_indent() {
        let text = (1..=20)
            .map(|i| format!("w{i:02}"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut out = String::new();
        wrapped(&mut out, "    ", "      ", &format!("{text} {text}"));
        assert_eq!(
            out,
            "    w01 w02 w03 w04 w05 w06 w07 w08 w09 w10 w11 w12 w13 w14 w15 w16 w17 w18\r\n      \
             w19 w20 w01 w02 w03 w04 w05 w06 w07 w08 w09 w10 w11 w12 w13 w14 w15 w16\r\n      \
             w17 w18 w19 w20\r\n"
        );
    }

    #[test]
    fn safe_text_has_no_controls_and_ascii_unless_utf8() {
        assert_eq!(safe("a\tb\u{1b}[31mc é", false), "a?b?[31mc ?");
        assert_eq!(safe("a\rb é\u{202E}", true), "a?b é?");
    }
}
