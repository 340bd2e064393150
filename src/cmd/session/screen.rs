//! The session's screen: the dialogue as the transcript writes it (`> ` sent, `< `
//! received, `* ` notes), less the echo of a line that the terminal showed already as
//! it was typed.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Where the dialogue goes, shared between the session's transcript and the loop.
/// Cloning gives another handle on the same screen.
pub struct Screen<W> {
    shared: Arc<Mutex<State<W>>>,
}

impl<W> Clone for Screen<W> {
    fn clone(&self) -> Self {
        Screen {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct State<W> {
    out: W,
    /// The start of a line not yet ended.
    partial: Vec<u8>,
    /// The next whole line that is exactly this is not shown.
    skip: Option<Vec<u8>>,
}

impl<W: Write> Screen<W> {
    pub fn new(out: W) -> Screen<W> {
        Screen {
            shared: Arc::new(Mutex::new(State {
                out,
                partial: Vec::new(),
                skip: None,
            })),
        }
    }

    /// The next line written that is exactly `line` (without its line end) is not
    /// shown: the terminal has shown it as it was typed. Any other line clears this.
    pub fn skip_next(&self, line: &str) {
        self.state().skip = Some(line.as_bytes().to_vec());
    }

    /// A note of the session's own, as the transcript writes its notes. A screen
    /// that cannot be written changes nothing in the session, so failures are ignored.
    pub fn note(&self, text: &str) {
        let mut screen = self.clone();
        let _ = writeln!(screen, "* {text}");
    }

    fn state(&self) -> MutexGuard<'_, State<W>> {
        // A panic elsewhere while writing leaves nothing half-done that matters here.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<W: Write> Write for Screen<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.state();
        let state = &mut *state;
        let mut rest = buf;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            state.partial.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut state.partial);
            if state.skip.take().as_deref() == Some(line.as_slice()) {
                continue;
            }
            state.out.write_all(&line)?;
            state.out.write_all(b"\n")?;
            state.out.flush()?;
        }
        state.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.state().out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A screen over a buffer the test reads.
    fn screen() -> (Screen<Vec<u8>>, impl Fn() -> String) {
        let screen = Screen::new(Vec::new());
        let handle = screen.clone();
        (screen, move || {
            String::from_utf8(handle.state().out.clone()).unwrap()
        })
    }

    #[test]
    fn lines_pass_as_written_even_in_pieces() {
        let (mut s, shown) = screen();
        write!(s, "< 250-mx").unwrap();
        assert_eq!(shown(), "", "half a line is held back");
        write!(s, ".example.test\n< 250 OK\n").unwrap();
        s.note("a note");
        assert_eq!(shown(), "< 250-mx.example.test\n< 250 OK\n* a note\n");
    }

    #[test]
    fn the_echo_of_a_typed_line_is_left_out_once() {
        let (mut s, shown) = screen();
        s.skip_next("> NOOP");
        write!(s, "> NO").unwrap();
        write!(s, "OP\n< 250 2.0.0 Ok\n> NOOP\n").unwrap();
        assert_eq!(shown(), "< 250 2.0.0 Ok\n> NOOP\n");
    }

    #[test]
    fn a_skip_not_met_by_the_next_line_is_forgotten() {
        let (mut s, shown) = screen();
        s.skip_next("> NOOP");
        write!(s, "> RSET\n> NOOP\n").unwrap();
        assert_eq!(shown(), "> RSET\n> NOOP\n");
    }
}
