//! A minimal, blocking SMTP client for talking to a server directly from a
//! test: send exact bytes, read replies. It does no dot-stuffing, no line
//! ending conversion and no pipelining logic — what you send is what goes
//! on the wire. Every I/O problem panics with the conversation so far.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Read/write timeout for every socket operation.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// One (possibly multi-line) SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code, e.g. 250.
    pub code: u16,
    /// The text of each line, without the code, the separator and CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// For an EHLO reply: the extension keywords (upper-cased first word of
    /// every line but the first), e.g. `["PIPELINING", "SIZE", ...]`.
    pub fn ehlo_keywords(&self) -> Vec<String> {
        self.lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|k| k.to_ascii_uppercase())
            .collect()
    }

    /// For an EHLO reply: the parameters of `keyword` (e.g. `"SIZE"` ->
    /// `Some("52428800")`), `None` if the keyword is not advertised.
    pub fn ehlo_param(&self, keyword: &str) -> Option<String> {
        self.lines.iter().skip(1).find_map(|l| {
            let mut words = l.splitn(2, ' ');
            let k = words.next()?;
            k.eq_ignore_ascii_case(keyword)
                .then(|| words.next().unwrap_or("").trim().to_string())
        })
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.lines.iter().enumerate() {
            let sep = if i + 1 == self.lines.len() { ' ' } else { '-' };
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}{sep}{l}", self.code)?;
        }
        Ok(())
    }
}

/// A raw SMTP connection. The transcript is kept for failure messages.
pub struct SmtpClient {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    transcript: String,
}

impl SmtpClient {
    /// Connect (does not read the greeting; call [`SmtpClient::read_reply`]).
    pub fn connect(addr: impl ToSocketAddrs + fmt::Debug) -> SmtpClient {
        let stream = TcpStream::connect(&addr)
            .unwrap_or_else(|e| panic!("cannot connect to SMTP server {addr:?}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        stream.set_write_timeout(Some(IO_TIMEOUT)).ok();
        let reader = BufReader::new(
            stream
                .try_clone()
                .unwrap_or_else(|e| panic!("cannot clone TCP stream: {e}")),
        );
        SmtpClient {
            writer: stream,
            reader,
            transcript: String::new(),
        }
    }

    /// Connect and read the greeting, asserting it is a 220.
    pub fn connect_greeted(addr: impl ToSocketAddrs + fmt::Debug) -> (SmtpClient, Reply) {
        let mut c = SmtpClient::connect(addr);
        let greeting = c.read_reply();
        c.check(&greeting, 220, "greeting");
        (c, greeting)
    }

    /// The conversation so far (`C:` client, `S:` server lines).
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// Read one complete reply.
    pub fn read_reply(&mut self) -> Reply {
        let mut code = None;
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            match self.reader.read_until(b'\n', &mut raw) {
                Ok(0) => panic!(
                    "server closed the connection while a reply was expected\n{}",
                    self.transcript
                ),
                Ok(_) => {}
                Err(e) => panic!("error reading SMTP reply: {e}\n{}", self.transcript),
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            self.transcript.push_str(&format!("S: {line}\n"));
            let (c, rest) = parse_reply_line(&line).unwrap_or_else(|| {
                panic!("malformed SMTP reply line {line:?}\n{}", self.transcript)
            });
            match code {
                None => code = Some(c),
                Some(prev) if prev != c => panic!(
                    "reply code changed within a multi-line reply\n{}",
                    self.transcript
                ),
                Some(_) => {}
            }
            lines.push(rest.1.to_string());
            if !rest.0 {
                break;
            }
        }
        Reply {
            code: code.expect("a reply has at least one line"),
            lines,
        }
    }

    /// Send bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let shown = String::from_utf8_lossy(bytes);
        for l in shown.split_inclusive('\n') {
            self.transcript
                .push_str(&format!("C: {}\n", l.escape_debug()));
        }
        self.writer
            .write_all(bytes)
            .and_then(|()| self.writer.flush())
            .unwrap_or_else(|e| panic!("error sending to SMTP server: {e}\n{}", self.transcript));
    }

    /// Send `line` + CRLF and read the reply.
    pub fn command(&mut self, line: &str) -> Reply {
        self.send_raw(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    /// Send `line` + CRLF, read the reply and assert its code.
    #[track_caller]
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let reply = self.command(line);
        self.check(&reply, code, line);
        reply
    }

    /// One complete transaction after EHLO: `MAIL FROM:<from>`, `RCPT TO`
    /// for each of `to` (each must get 250), `DATA` (354), then `message`
    /// dot-stuffed (see [`dot_stuff`]; it must use CRLF line endings and
    /// should end with one) and the final `.`. Returns the final reply,
    /// whatever its code.
    #[track_caller]
    pub fn send_message(&mut self, from: &str, to: &[&str], message: &[u8]) -> Reply {
        self.expect(&format!("MAIL FROM:<{from}>"), 250);
        for rcpt in to {
            self.expect(&format!("RCPT TO:<{rcpt}>"), 250);
        }
        self.expect("DATA", 354);
        let mut data = dot_stuff(message);
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.send_raw(&data);
        self.read_reply()
    }

    /// Panic with the transcript unless `reply.code == code`.
    #[track_caller]
    pub fn check(&self, reply: &Reply, code: u16, what: &str) {
        if reply.code != code {
            panic!(
                "expected {code} in reply to {what:?}, got:\n{reply}\n--- transcript ---\n{}",
                self.transcript
            );
        }
    }
}

/// `"250-PIPELINING"` -> `(250, (true, "PIPELINING"))`; the bool says more
/// lines follow.
fn parse_reply_line(line: &str) -> Option<(u16, (bool, &str))> {
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code = code.parse().ok()?;
    match line.as_bytes().get(3) {
        None => Some((code, (false, ""))),
        Some(b' ') => Some((code, (false, &line[4..]))),
        Some(b'-') => Some((code, (true, &line[4..]))),
        Some(_) => None,
    }
}

/// SMTP dot-stuffing: a `.` at the start of a line (after LF, or at the very
/// start) is doubled.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut at_line_start = true;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}
