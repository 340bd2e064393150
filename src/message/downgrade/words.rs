//! Writing a field back with RFC 2047 encoded-words where its text is not ASCII,
//! folded so that no line passes the limit of §2.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Longest encoded-word (RFC 2047 §2).
pub(super) const MAX_ENCODED_WORD: usize = 75;
/// Longest line of a field that holds an encoded-word (RFC 2047 §2).
pub(super) const MAX_LINE: usize = 76;
/// What an encoded-word takes besides its encoded text: `=?UTF-8?Q?` and `?=`.
const OVERHEAD: usize = "=?UTF-8?Q??=".len();

/// A piece of a field's value, as it is written back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Item {
    /// White space, where the field may be folded.
    Ws(String),
    /// A word of text: as written, and as read (quotes and quoted-pairs undone). One
    /// that is not ASCII goes as encoded-words.
    Word { raw: String, text: String },
    /// A comment's contents, between its parentheses.
    Comment(Vec<Item>),
    /// Anything else, written as it is.
    Raw(String),
}

/// Whether `word` is an encoded-word (RFC 2047 §2): `=?charset?Q|B?text?=`.
pub(super) fn is_encoded_word(word: &str) -> bool {
    let Some(inner) = word.strip_prefix("=?").and_then(|w| w.strip_suffix("?=")) else {
        return false;
    };
    let parts: Vec<&str> = inner.split('?').collect();
    word.is_ascii()
        && parts.len() == 3
        && !parts[0].is_empty()
        && matches!(parts[1], "Q" | "q" | "B" | "b")
}

/// Writes `items`: words that are not ASCII as encoded-words, runs of them (and the
/// white space between) as one text, as white space between encoded-words is not
/// part of the text (RFC 2047 §6.2). `reserve` is room kept at the end of a line for
/// what must follow without white space (a comment's closing parenthesis).
pub(super) fn emit(f: &mut Folder, items: &[Item], reserve: usize) {
    let mut ws = String::new();
    // The last thing written was an encoded-word: white space before one of ours
    // would be lost when read, so it goes into our text.
    let mut after_encoded = false;
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            Item::Ws(s) => ws.push_str(s),
            Item::Word { text, .. } if !text.is_ascii() => {
                let mut run = String::new();
                if after_encoded && !ws.is_empty() {
                    run.push_str(&std::mem::replace(&mut ws, " ".into()));
                }
                run.push_str(text);
                let mut next_ws = String::new();
                loop {
                    let mut j = i + 1;
                    let mut gap = String::new();
                    while let Some(Item::Ws(s)) = items.get(j) {
                        gap.push_str(s);
                        j += 1;
                    }
                    match items.get(j) {
                        Some(Item::Word { text, .. }) if !text.is_ascii() && !gap.is_empty() => {
                            run.push_str(&gap);
                            run.push_str(text);
                            i = j;
                        }
                        Some(Item::Word { raw, .. }) if !gap.is_empty() && is_encoded_word(raw) => {
                            run.push_str(&gap);
                            next_ws.push(' ');
                            i = j - 1;
                            break;
                        }
                        _ => break,
                    }
                }
                f.encoded(&ws, &run, glued(items, i + 1, reserve));
                ws = next_ws;
                after_encoded = true;
            }
            Item::Word { raw, .. } => {
                f.piece(&ws, raw, glued(items, i + 1, reserve));
                ws.clear();
                after_encoded = is_encoded_word(raw);
            }
            Item::Comment(inner) => {
                let after = glued(items, i + 1, reserve) + 1;
                f.piece(&ws, "(", glued(inner, 0, after));
                ws.clear();
                emit(f, inner, after);
                f.piece("", ")", 0);
                after_encoded = false;
            }
            Item::Raw(s) => {
                f.piece(&ws, s, glued(items, i + 1, reserve));
                ws.clear();
                after_encoded = false;
            }
        }
        i += 1;
    }
    f.out.push_str(&ws);
}

/// How much must follow `items[from - 1]` on its line: the items up to the next white
/// space (a `,`, the `)` of an outer comment), and `reserve` when they reach the end.
fn glued(items: &[Item], from: usize, reserve: usize) -> usize {
    let mut n = 0;
    for item in &items[from.min(items.len())..] {
        match item {
            Item::Ws(_) => return n,
            Item::Raw(s) => n += s.len(),
            Item::Word { raw, .. } => n += raw.len(),
            // Its "(" cannot be parted from what it follows; its contents can fold.
            Item::Comment(_) => return n + 1,
        }
    }
    n + reserve
}

/// Writes a field's value, folding it (RFC 5322 §2.2.3) before white space where a
/// line would pass [`MAX_LINE`].
pub(super) struct Folder {
    pub(super) out: String,
    col: usize,
    /// Something follows the field name on the current line.
    started: bool,
}

impl Folder {
    pub(super) fn new(prefix: &str) -> Folder {
        Folder {
            out: prefix.to_owned(),
            col: prefix.len(),
            started: false,
        }
    }

    fn fold(&mut self) {
        self.out.push_str("\r\n");
        self.col = 0;
    }

    /// `text` after `ws`, on a new line if it and the `glued` octets that must follow
    /// it would pass the limit.
    fn piece(&mut self, ws: &str, text: &str, glued: usize) {
        if self.started && !ws.is_empty() && self.col + ws.len() + text.len() + glued > MAX_LINE {
            self.fold();
        }
        self.out.push_str(ws);
        self.out.push_str(text);
        self.col += ws.len() + text.len();
        self.started = true;
    }

    /// `text` as encoded-words, each as long as the line allows.
    fn encoded(&mut self, ws: &str, text: &str, reserve: usize) {
        // Q keeps mostly Latin text legible; B is shorter for the rest.
        let base64 = text.chars().map(q_len).sum::<usize>() > b_len(text.len()) * 3 / 2;
        let mut ws = ws.to_owned();
        let mut rest = text;
        while !rest.is_empty() {
            let room = MAX_LINE
                .saturating_sub(self.col + ws.len() + reserve)
                .min(MAX_ENCODED_WORD);
            let (word, used) = encoded_word(rest, room, base64);
            if used == 0 {
                // A fold needs white space to begin the next line.
                self.fold();
                ws = " ".into();
                continue;
            }
            self.out.push_str(&ws);
            self.out.push_str(&word);
            self.col += ws.len() + word.len();
            self.started = true;
            rest = &rest[used..];
            ws = " ".into();
        }
    }
}

/// The longest encoded-word of at most `room` characters for the start of `text`
/// (whole characters only, RFC 2047 §5), and the bytes of `text` it holds.
fn encoded_word(text: &str, room: usize, base64: bool) -> (String, usize) {
    let Some(budget) = room.checked_sub(OVERHEAD) else {
        return (String::new(), 0);
    };
    let (mut used, mut len) = (0, 0);
    for c in text.chars() {
        let next = if base64 {
            b_len(used + c.len_utf8())
        } else {
            len + q_len(c)
        };
        if next > budget {
            break;
        }
        used += c.len_utf8();
        len = next;
    }
    if used == 0 {
        return (String::new(), 0);
    }
    let chunk = &text[..used];
    let word = if base64 {
        format!("=?UTF-8?B?{}?=", BASE64.encode(chunk))
    } else {
        let mut q = String::from("=?UTF-8?Q?");
        for b in chunk.bytes() {
            match b {
                b' ' => q.push('_'),
                _ if q_safe(b) => q.push(b as char),
                _ => q.push_str(&format!("={b:02X}")),
            }
        }
        q.push_str("?=");
        q
    };
    (word, used)
}

/// Bytes that stand for themselves in a Q-encoded word anywhere it may appear, a
/// phrase being the strictest place (RFC 2047 §5(3)).
fn q_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!*+-/".contains(&b)
}

/// Characters `c` takes Q-encoded (RFC 2047 §4.2).
fn q_len(c: char) -> usize {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| if b == b' ' || q_safe(b) { 1 } else { 3 })
        .sum()
}

/// Characters `n` bytes take B-encoded (RFC 2047 §4.1).
fn b_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}
