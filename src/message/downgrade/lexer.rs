//! The lexical tokens of structured header fields (RFC 5322 §3.2), as far as the
//! downgrade needs them: white space, comments, quoted strings, domain literals,
//! specials and atoms, each kept as written.

use super::words::Item;

/// A lexical token of a structured field (RFC 5322 §3.2), as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tok<'a> {
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
    pub(super) fn raw(&self) -> &'a str {
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
    pub(super) fn is_word(&self) -> bool {
        !matches!(self, Tok::Ws(_) | Tok::Comment(_))
    }
}

const SPECIALS: &[u8] = b"()<>[]:;@\\,.\"";

/// Where the character after a backslash at `at` ends.
fn after_escape(text: &str, at: usize) -> usize {
    let next = at + 1;
    next + text[next..].chars().next().map_or(0, char::len_utf8)
}

pub(super) fn tokenize(value: &str) -> Result<Vec<Tok<'_>>, &'static str> {
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
pub(super) fn comment_items(comment: &str) -> Vec<Item> {
    let inner = comment.strip_prefix('(').unwrap_or(comment);
    let inner = inner.strip_suffix(')').unwrap_or(inner);
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
pub(super) fn phrase_items(tokens: &[Tok], items: &mut Vec<Item>) {
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
    let inner = quoted.strip_prefix('"').unwrap_or(quoted);
    let mut chars = inner.strip_suffix('"').unwrap_or(inner).chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.extend(chars.next()),
            c => text.push(c),
        }
    }
    text
}
