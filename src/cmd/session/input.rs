//! Where the session's lines come from: a person at a terminal, with line editing and
//! a history kept in memory only (typed lines may hold addresses and AUTH data), or a
//! script on standard input, read line by line with no prompt.

use std::io::{self, BufRead, BufReader, IsTerminal, Read, Stdin};

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use outbox::error::Error;

/// The prompt for each line of a message, at a terminal: the person sees that what
/// they type now is the message, not commands.
const MESSAGE_PROMPT: &str = "data> ";
/// How many typed lines the history keeps.
const HISTORY: usize = 500;
/// The longest line read from a script: far over what a command may be (512 octets
/// with its CRLF, RFC 5321 §4.5.3.1.4), so any longer line is refused for its length
/// without holding all of it.
const MAX_PIPED_LINE: usize = 64 * 1024;

/// One line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    Line(String),
    /// Ctrl-C: the line is given up.
    Interrupted,
    /// Ctrl-D on an empty line, or the end of the script.
    End,
    /// A line that cannot be taken, and why; the next may be.
    Unreadable(String),
    /// The input cannot be read any more.
    Failed(String),
}

pub enum Input {
    Terminal(Box<DefaultEditor>),
    Script(BufReader<Stdin>),
}

impl Input {
    /// A line editor when standard input is a terminal, else the lines of the script.
    pub fn open() -> Result<Input, Error> {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return Ok(Input::Script(BufReader::new(stdin)));
        }
        let editor = rustyline::Config::builder()
            .auto_add_history(false)
            .max_history_size(HISTORY)
            .map(|b| b.build())
            .and_then(DefaultEditor::with_config)
            .map_err(|e| Error::LocalIo {
                context: "cannot set up line editing on the terminal".into(),
                source: readline_io(e),
            })?;
        Ok(Input::Terminal(Box::new(editor)))
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Input::Terminal(_))
    }

    /// The next line; `prompt` is shown at a terminal.
    pub fn line(&mut self, prompt: &str) -> Typed {
        match self {
            Input::Terminal(editor) => match editor.readline(prompt) {
                Ok(line) => Typed::Line(line),
                Err(ReadlineError::Interrupted) => Typed::Interrupted,
                Err(ReadlineError::Eof) => Typed::End,
                Err(e) => Typed::Failed(format!("cannot read the terminal: {e}")),
            },
            Input::Script(reader) => piped_line(reader),
        }
    }

    /// Keeps `line` in the history, for the arrow keys.
    pub fn remember(&mut self, line: &str) {
        if let Input::Terminal(editor) = self {
            // A history that will not take a line costs the person only that line.
            let _ = editor.add_history_entry(line);
        }
    }

    /// The message after a 354, as it is typed: at a terminal, line after line with
    /// CRLF line ends until Ctrl-D on an empty line; from a script, the rest of it.
    pub fn message(&mut self) -> Box<dyn Read + '_> {
        match self {
            Input::Terminal(editor) => Box::new(TypedMessage {
                editor,
                pending: Vec::new(),
                at: 0,
                ended: false,
            }),
            Input::Script(reader) => Box::new(reader),
        }
    }
}

fn readline_io(e: ReadlineError) -> io::Error {
    match e {
        ReadlineError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// A line of a script without its line end (LF, or CRLF as a script written for SMTP
/// has). A CR anywhere else stays, for the command's check to refuse.
fn piped_line(reader: &mut impl BufRead) -> Typed {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(MAX_PIPED_LINE as u64)
        .read_until(b'\n', &mut line);
    match read {
        Ok(0) => return Typed::End,
        Ok(_) => {}
        Err(e) => return Typed::Failed(format!("cannot read standard input: {e}")),
    }
    if line.pop_if(|b| *b == b'\n').is_some() {
        line.pop_if(|b| *b == b'\r');
    } else if line.len() == MAX_PIPED_LINE {
        return match skip_line(reader) {
            Ok(()) => Typed::Unreadable(format!("a line of more than {MAX_PIPED_LINE} bytes")),
            Err(e) => Typed::Failed(format!("cannot read standard input: {e}")),
        };
    }
    match String::from_utf8(line) {
        Ok(line) => Typed::Line(line),
        Err(_) => Typed::Unreadable("a line that is not UTF-8".into()),
    }
}

/// Reads past the end of the current line.
fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// The lines of a message as the person types them, each with CRLF; Ctrl-C gives up
/// the line being typed, Ctrl-D on an empty line ends the message.
struct TypedMessage<'a> {
    editor: &'a mut DefaultEditor,
    pending: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Read for TypedMessage<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            if self.ended {
                return Ok(0);
            }
            match self.editor.readline(MESSAGE_PROMPT) {
                Ok(line) => {
                    self.pending = message_line(&line);
                    self.at = 0;
                }
                Err(ReadlineError::Interrupted) => {}
                Err(ReadlineError::Eof) => self.ended = true,
                Err(e) => return Err(readline_io(e)),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A typed line of the message as it goes into the DotWriter, which stuffs its dots
/// (RFC 5321 §4.5.2).
fn message_line(line: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(line.len() + 2);
    bytes.extend_from_slice(line.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(script: &[u8]) -> Vec<Typed> {
        let mut reader = io::Cursor::new(script.to_vec());
        let mut out = Vec::new();
        loop {
            match piped_line(&mut reader) {
                Typed::End => return out,
                typed => out.push(typed),
            }
        }
    }

    fn line(text: &str) -> Typed {
        Typed::Line(text.to_owned())
    }

    #[test]
    fn a_script_is_read_line_by_line_without_line_ends() {
        assert_eq!(
            lines(b"EHLO x\nNOOP\r\nlast"),
            [line("EHLO x"), line("NOOP"), line("last")]
        );
        assert_eq!(lines(b"\n\r\n"), [line(""), line("")]);
        assert!(lines(b"").is_empty());
    }

    #[test]
    fn a_cr_inside_a_line_stays_for_the_check_to_refuse() {
        assert_eq!(lines(b"NOOP\rRSET\n"), [line("NOOP\rRSET")]);
        assert_eq!(lines(b"NOOP\r\r\n"), [line("NOOP\r")]);
    }

    #[test]
    fn an_overlong_or_undecodable_line_is_refused_and_the_next_read() {
        let mut script = vec![b'x'; MAX_PIPED_LINE + 10];
        script.extend_from_slice(b"\nNOOP\n\xff\nQUIT\n");
        let got = lines(&script);
        assert!(matches!(&got[0], Typed::Unreadable(why) if why.contains("more than")));
        assert_eq!(got[1], line("NOOP"));
        assert!(matches!(&got[2], Typed::Unreadable(why) if why.contains("UTF-8")));
        assert_eq!(got[3], line("QUIT"));
        assert_eq!(got.len(), 4);
        // A line of exactly the limit is a line like another.
        let mut script = vec![b'y'; MAX_PIPED_LINE - 1];
        script.push(b'\n');
        assert_eq!(
            lines(&script),
            [Typed::Line("y".repeat(MAX_PIPED_LINE - 1))]
        );
    }

    #[test]
    fn a_typed_message_line_ends_in_crlf() {
        assert_eq!(message_line("."), b".\r\n");
        assert_eq!(message_line(""), b"\r\n");
        assert_eq!(message_line("Subject: hi"), b"Subject: hi\r\n");
    }
}
