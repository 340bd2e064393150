//! Reading outbox's own log back: the lines of a log file (`TIME outbox[PID]:
//! TEXT`) and the datagrams it sends to syslog (`<PRI>Mmm dd hh:mm:ss
//! outbox[PID]: TEXT`, RFC 3164 as syslog(3) writes it), and the `key=value`
//! fields of TEXT (`id=... from=<...> reply="..." bounce=none (why)`).

/// One entry of the log, whichever way it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The line or datagram as written.
    pub raw: String,
    /// What precedes the tag: the time (file), or the RFC 3164 TIMESTAMP (syslog).
    pub stamp: String,
    /// The syslog priority, facility × 8 + severity (RFC 3164 §4.1.1); `None` in a file.
    pub pri: Option<u8>,
    pub pid: u32,
    /// What follows `outbox[PID]: `.
    pub text: String,
    /// The `key=value` fields of `text`, in order, quotes removed.
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// Parses a line of a log file: `TIME outbox[PID]: TEXT`.
    pub fn from_file_line(line: &str) -> Result<LogLine, String> {
        let (stamp, rest) = line
            .split_once(" outbox[")
            .ok_or_else(|| format!("no \" outbox[\" in {line:?}"))?;
        if stamp.is_empty() {
            return Err(format!("no time before the tag in {line:?}"));
        }
        LogLine::tagged(line, stamp, None, rest)
    }

    /// Parses a syslog datagram: `<PRI>Mmm dd hh:mm:ss outbox[PID]: TEXT`.
    pub fn from_datagram(datagram: &str) -> Result<LogLine, String> {
        let (pri, rest) = datagram
            .strip_prefix('<')
            .and_then(|d| d.split_once('>'))
            .ok_or_else(|| format!("datagram does not start with <PRI>: {datagram:?}"))?;
        // RFC 3164 §4.1.1: one to three digits, at most 191 (23 × 8 + 7).
        let pri = Some(pri)
            .filter(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u8>().ok())
            .filter(|p| *p <= 191)
            .ok_or_else(|| format!("bad PRI <{pri}> in {datagram:?}"))?;
        // RFC 3164 §4.1.2: TIMESTAMP is "Mmm dd hh:mm:ss", the day padded with a space.
        let stamp = rest
            .get(..15)
            .ok_or_else(|| format!("datagram too short: {datagram:?}"))?;
        if !is_rfc3164_timestamp(stamp) {
            return Err(format!("bad RFC 3164 timestamp {stamp:?} in {datagram:?}"));
        }
        let tagged = rest[15..]
            .strip_prefix(" outbox[")
            .ok_or_else(|| format!("no \" outbox[\" after the timestamp in {datagram:?}"))?;
        LogLine::tagged(datagram, stamp, Some(pri), tagged)
    }

    /// `rest` is what follows `outbox[`: `PID]: TEXT`.
    fn tagged(raw: &str, stamp: &str, pri: Option<u8>, rest: &str) -> Result<LogLine, String> {
        let (pid, text) = rest
            .split_once("]: ")
            .ok_or_else(|| format!("no \"]: \" after the pid in {raw:?}"))?;
        let pid = pid
            .parse()
            .map_err(|_| format!("pid {pid:?} is not a number in {raw:?}"))?;
        let fields = parse_fields(text).map_err(|e| format!("{e} in {raw:?}"))?;
        Ok(LogLine {
            raw: raw.to_owned(),
            stamp: stamp.to_owned(),
            pri,
            pid,
            text: text.to_owned(),
            fields,
        })
    }

    /// The value of field `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of field `key`; panics with the line when it is missing.
    #[track_caller]
    pub fn field(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no {key}= in the log line {:?}", self.raw))
    }
}

/// Every line of a log file's contents, parsed; panics with the file on a line
/// that is not in the format.
#[track_caller]
pub fn parse_file(contents: &str) -> Vec<LogLine> {
    contents
        .lines()
        .map(|l| {
            LogLine::from_file_line(l).unwrap_or_else(|e| panic!("{e}\n--- log ---\n{contents}"))
        })
        .collect()
}

/// Every datagram, parsed; panics on one not in the format.
#[track_caller]
pub fn parse_datagrams(datagrams: &[String]) -> Vec<LogLine> {
    datagrams
        .iter()
        .map(|d| {
            LogLine::from_datagram(d)
                .unwrap_or_else(|e| panic!("{e}\n--- all datagrams ---\n{}", datagrams.join("\n")))
        })
        .collect()
}

fn is_rfc3164_timestamp(s: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    let digit = |i: usize| b[i].is_ascii_digit();
    b.len() == 15
        && MONTHS.contains(&&s[..3])
        && b[3] == b' '
        && (b[4] == b' ' || (b'1'..=b'3').contains(&b[4]))
        && digit(5)
        && b[6] == b' '
        && digit(7)
        && digit(8)
        && b[9] == b':'
        && digit(10)
        && digit(11)
        && b[12] == b':'
        && digit(13)
        && digit(14)
}

/// Splits `key=value key="quoted \"value\"" key=word (with spaces)` into pairs.
/// A bare value runs to the next space outside parentheses (a space followed by
/// `(` is part of it); a quoted one to
/// its closing quote, with `\"` and `\\` unescaped. Anything that is not a
/// `key=` where a field should start is an error.
pub fn parse_fields(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(fields);
        }
        let mut key = String::new();
        loop {
            match chars.next() {
                Some('=') if !key.is_empty() => break,
                Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' => key.push(c),
                other => {
                    return Err(format!(
                        "expected a key= at {:?}, found {other:?}",
                        key.clone() + &chars.clone().collect::<String>()
                    ));
                }
            }
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(format!("{key}= ends in a backslash")),
                    },
                    Some(c) => value.push(c),
                    None => return Err(format!("{key}= has no closing quote")),
                }
            }
            if chars.peek().is_some_and(|c| *c != ' ') {
                return Err(format!("{key}= has text after its closing quote"));
            }
        } else {
            let mut depth = 0usize;
            while let Some(&c) = chars.peek() {
                if c == ' ' && depth == 0 {
                    // `bounce=none (why)`: a parenthesis after a space goes on.
                    let mut ahead = chars.clone();
                    ahead.next();
                    if ahead.peek() != Some(&'(') {
                        break;
                    }
                }
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                value.push(c);
                chars.next();
            }
        }
        fields.push((key, value));
    }
}
