//! Folding header lines that are too long to send (RFC 5322 §2.1.1, §2.2.3).
//!
//! Callers such as PHP's `mail()` write a whole Bcc or To list on one line; Postfix
//! takes it, so outbox must too. A line of more than [`MAX_LINE`] octets is broken
//! into lines of at most [`TARGET`] octets where it can be, each continuation line
//! beginning with white space, so that unfolding (removing the CRLFs) gives the field
//! back as it was. A line that fits is never touched.

/// Longest line, without its CRLF (RFC 5322 §2.1.1).
pub const MAX_LINE: usize = 998;

/// The length RFC 5322 §2.1.1 recommends, aimed at when a line is folded anyway.
pub const TARGET: usize = 78;

/// A place where a line may be broken: before the byte at `at`; with `space`, a space
/// is inserted there as the continuation's white space (after a comma of an address
/// list, where RFC 5322 §3.4 allows CFWS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Break {
    at: usize,
    space: bool,
}

/// Why a line could not be folded: its index in the field and the longest piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unfoldable {
    pub line: usize,
    pub octets: usize,
}

/// The lines of one field (each without its line end; the first holds the name and
/// the colon), with every line longer than [`MAX_LINE`] folded. `addresses` says the
/// field is an address list, whose commas are places to fold too.
pub fn fold(lines: &[Vec<u8>], addresses: bool) -> Result<Vec<Vec<u8>>, Unfoldable> {
    let mut scan = Scan::default();
    let mut out = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        // The name and colon of the first line are no place to fold.
        let from = match index {
            0 => line
                .iter()
                .position(|&b| b == b':')
                .map_or(line.len(), |c| c + 1),
            _ => 0,
        };
        let breaks = scan.breaks(line, from, addresses);
        if line.len() <= MAX_LINE {
            out.push(line.clone());
            continue;
        }
        let pieces = split(line, &breaks);
        if let Some(longest) = pieces.iter().map(Vec::len).max().filter(|&n| n > MAX_LINE) {
            return Err(Unfoldable {
                line: index,
                octets: longest,
            });
        }
        out.extend(pieces);
    }
    Ok(out)
}

/// `line` cut at some of `breaks` (in order): each piece of at most [`TARGET`]
/// octets where the breaks allow, else as short as they allow.
fn split(line: &[u8], breaks: &[Break]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut start = Break {
        at: 0,
        space: false,
    };
    let len_from = |s: Break, end: usize| end - s.at + usize::from(s.space);
    let mut next = 0;
    while len_from(start, line.len()) > TARGET {
        let candidates = &breaks[next..];
        let fitting = candidates
            .iter()
            .take_while(|b| len_from(start, b.at) <= TARGET)
            .count();
        let chosen = match fitting {
            0 => 0,
            n => n - 1,
        };
        let Some(&cut) = candidates.get(chosen) else {
            break;
        };
        pieces.push(piece(line, start, cut.at));
        start = cut;
        next += chosen + 1;
    }
    pieces.push(piece(line, start, line.len()));
    pieces
}

fn piece(line: &[u8], start: Break, end: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(end - start.at + 1);
    if start.space {
        p.push(b' ');
    }
    p.extend_from_slice(&line[start.at..end]);
    p
}

/// Where the field's text is, carried from one line to the next: inside a quoted
/// string, a comment or a domain literal, a comma is text, not a separator.
#[derive(Debug, Default)]
struct Scan {
    quoted: bool,
    comment: usize,
    literal: bool,
}

impl Scan {
    /// The places to fold `line` at, from byte `from` on, in order.
    fn breaks(&mut self, line: &[u8], from: usize, addresses: bool) -> Vec<Break> {
        let wsp = |b: u8| b == b' ' || b == b'\t';
        // A continuation line must hold something besides white space (§2.2.3), and
        // so must what is left before the break.
        let Some(last) = line.iter().rposition(|&b| !wsp(b)) else {
            return Vec::new();
        };
        let first = line.iter().position(|&b| !wsp(b)).unwrap_or(line.len());
        let mut breaks = Vec::new();
        let mut escaped = false;
        for (i, &b) in line.iter().enumerate() {
            let in_text = self.quoted || self.comment > 0 || self.literal;
            // White space after a backslash is a quoted-pair (§3.2.1): it stays whole.
            if i >= from && i > first && i <= last && wsp(b) && !wsp(line[i - 1]) && !escaped {
                breaks.push(Break {
                    at: i,
                    space: false,
                });
            }
            if escaped {
                escaped = false;
                continue;
            }
            match b {
                b'\\' if in_text => escaped = true,
                b'"' if self.comment == 0 && !self.literal => self.quoted = !self.quoted,
                b'(' if !self.quoted && !self.literal => self.comment += 1,
                b')' if self.comment > 0 && !self.quoted => self.comment -= 1,
                b'[' if !in_text => self.literal = true,
                b']' if self.literal => self.literal = false,
                b',' if addresses && !in_text && i >= from && i < last && !wsp(line[i + 1]) => {
                    breaks.push(Break {
                        at: i + 1,
                        space: true,
                    });
                }
                _ => {}
            }
        }
        breaks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str, addresses: bool) -> Result<Vec<String>, Unfoldable> {
        fold(&[line.as_bytes().to_vec()], addresses).map(|lines| {
            lines
                .into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect()
        })
    }

    /// What the lines unfold to (RFC 5322 §2.2.3: the line breaks go, nothing else).
    fn unfolded(lines: &[String]) -> String {
        lines.concat()
    }

    #[test]
    fn a_line_that_fits_is_kept_byte_for_byte() {
        let line = format!("Subject: {}", "word ".repeat(197));
        assert!(line.len() <= MAX_LINE);
        assert_eq!(one(&line, false).unwrap(), [line]);
        let lines = vec![b"To: a@x,".to_vec(), b"  b@x".to_vec()];
        assert_eq!(fold(&lines, true).unwrap(), lines);
    }

    #[test]
    fn long_bcc_list_is_folded_at_the_spaces_after_commas() {
        let list: Vec<String> = (1..=60).map(|i| format!("b{i}@example.test")).collect();
        let line = format!("Bcc: {}", list.join(", "));
        assert!(line.len() > MAX_LINE);
        let lines = one(&line, true).unwrap();
        assert!(lines.len() > 1);
        assert_eq!(unfolded(&lines), line);
        for (i, l) in lines.iter().enumerate() {
            assert!(l.len() <= TARGET, "{i}: {l:?}");
            if i > 0 {
                assert!(l.starts_with(' '), "{l:?}");
                assert!(!l.trim().is_empty(), "{l:?}");
            }
        }
        // Folded between addresses, never inside one.
        assert!(
            lines[1].starts_with(" b") && lines[0].ends_with(','),
            "{lines:?}"
        );
    }

    #[test]
    fn commas_without_space_get_one_in_address_lists_only() {
        let list: Vec<String> = (1..=80).map(|i| format!("u{i}@example.test")).collect();
        let line = format!("To: {}", list.join(","));
        let lines = one(&line, true).unwrap();
        assert!(lines.iter().all(|l| l.len() <= TARGET), "{lines:?}");
        // Unfolded, each break left one space after a comma, and nothing else changed.
        assert_eq!(unfolded(&lines).replace(", ", ","), line);
        // In unstructured text a comma is no place to fold: a space would change it.
        let text = format!("Subject: {}", list.join(","));
        assert_eq!(
            one(&text, false),
            Err(Unfoldable {
                line: 0,
                octets: text.len() - "Subject:".len()
            })
        );
    }

    #[test]
    fn commas_in_quotes_and_comments_are_text() {
        let name = format!("\"{}\"", "Doe,John,".repeat(120));
        let line = format!("To: {name} <a@example.test>");
        // The only places to fold are the two spaces.
        assert_eq!(
            one(&line, true),
            Err(Unfoldable {
                line: 0,
                octets: name.len() + 1
            })
        );
        let comment = format!("(c,{}) a@x", "y".repeat(1000));
        assert!(one(&format!("Cc: {comment}"), true).is_err());
    }

    #[test]
    fn a_quoted_pair_is_not_split() {
        let line = format!("To: \"{}\\ {}\" <a@x>", "a".repeat(600), "b".repeat(600));
        assert!(one(&line, true).is_err());
        // Outside quoted strings and comments a backslash is a character like another.
        let text = format!("Subject: {}\\ {}", "a".repeat(600), "b".repeat(600));
        assert_eq!(one(&text, false).unwrap().len(), 3);
    }

    #[test]
    fn folding_right_after_the_colon_is_allowed_but_not_inside_the_name() {
        let line = format!("Subject: {}", "a".repeat(990));
        assert_eq!(line.len(), 999);
        let lines = one(&line, false).unwrap();
        assert_eq!(
            lines,
            ["Subject:".to_owned(), format!(" {}", "a".repeat(990))]
        );
        let too_long = format!("Subject: {}", "a".repeat(MAX_LINE));
        assert_eq!(
            one(&too_long, false),
            Err(Unfoldable {
                line: 0,
                octets: MAX_LINE + 1
            })
        );
    }

    #[test]
    fn a_long_run_between_places_to_fold_is_kept_whole_if_it_fits() {
        let line = format!("X-Long: a {} b {} c", "x".repeat(500), "y".repeat(900));
        let lines = one(&line, false).unwrap();
        assert_eq!(unfolded(&lines), line);
        let x = format!(" {}", "x".repeat(500));
        let y = format!(" {}", "y".repeat(900));
        assert_eq!(lines, ["X-Long: a", &x, " b", &y, " c"]);
    }

    #[test]
    fn trailing_white_space_makes_no_blank_line() {
        let line = format!("X-A: {} {}   ", "p".repeat(500), "q".repeat(500));
        let lines = one(&line, false).unwrap();
        assert_eq!(unfolded(&lines), line);
        assert!(lines.iter().all(|l| !l.trim().is_empty()), "{lines:?}");
    }

    #[test]
    fn the_line_number_of_an_unfoldable_continuation() {
        let lines = vec![
            b"X-A: short".to_vec(),
            format!(" {}", "z".repeat(MAX_LINE)).into_bytes(),
        ];
        assert_eq!(
            fold(&lines, false),
            Err(Unfoldable {
                line: 1,
                octets: MAX_LINE + 1
            })
        );
    }

    #[test]
    fn quotes_carry_over_from_one_line_to_the_next() {
        // The quoted string opened on the first line holds the commas of the second.
        let lines = vec![
            b"To: \"Doe,".to_vec(),
            format!(" {}\" <a@x>", "J,".repeat(600)).into_bytes(),
        ];
        assert!(fold(&lines, true).is_err());
    }
}
