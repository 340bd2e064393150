//! The message body as it goes on the wire after DATA (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! Every line ends in CRLF: a bare LF or a bare CR in the input becomes CRLF, so no
//! server can read a line end that another would not (the SMTP smuggling vectors
//! `\n.\n` and `\r.\r\n` become harmless stuffed lines). A line that starts with "."
//! gets another "." in front (transparency, §4.5.2). `finish` ends the last line if
//! the input did not, then writes the terminating `.CRLF`.

use std::io::{self, Write};

/// A writer that turns message bytes into DATA bytes, streaming. Made with
/// [`DotWriter::lines_only`] it only makes the line ends CRLF, as BDAT needs
/// (RFC 3030 §2: chunks carry the message as it is, with no transparency).
pub struct DotWriter<W: Write> {
    inner: W,
    /// Dot-stuffing and the terminating `.CRLF` (DATA), or neither (BDAT).
    stuff: bool,
    /// The next byte starts a line (true at the start of the message).
    line_start: bool,
    /// The last byte seen was a CR whose line end is not yet written.
    pending_cr: bool,
    /// Bytes of message written, before stuffing.
    written: u64,
    lines: u64,
}

impl<W: Write> DotWriter<W> {
    pub fn new(inner: W) -> DotWriter<W> {
        DotWriter {
            inner,
            stuff: true,
            line_start: true,
            pending_cr: false,
            written: 0,
            lines: 0,
        }
    }

    /// Line ends made CRLF, and nothing else changed (for BDAT).
    pub fn lines_only(inner: W) -> DotWriter<W> {
        DotWriter {
            stuff: false,
            ..DotWriter::new(inner)
        }
    }

    /// Ends the last line if needed and, for DATA, writes `.CRLF`; returns the inner
    /// writer, not flushed, so the caller can put more in the same write.
    pub fn finish(mut self) -> io::Result<W> {
        if self.pending_cr || !self.line_start {
            self.inner.write_all(b"\r\n")?;
            self.lines += 1;
            self.pending_cr = false;
            self.line_start = true;
        }
        if self.stuff {
            self.inner.write_all(b".\r\n")?;
        }
        Ok(self.inner)
    }

    /// The inner writer, to take out what has been written so far (BDAT chunks).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The inner writer, with the message unfinished (used when giving up).
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Bytes of message taken so far (before normalisation and stuffing).
    pub fn bytes_in(&self) -> u64 {
        self.written
    }

    /// Lines ended so far; the last may still be open (see `lines_when_finished`).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Lines the message has on the wire once finished: those ended so far, and the
    /// last one if it is still open (`finish` ends it).
    pub fn lines_when_finished(&self) -> u64 {
        self.lines + u64::from(self.pending_cr || !self.line_start)
    }

    /// Where the stretch of `buf` from `start` that needs no change ends, and how many
    /// CRLF line ends it holds. It stops at a CR or LF that is not part of a CRLF
    /// (and at a CR that ends `buf`, whose LF may come next), and for DATA after a
    /// CRLF followed by a dot.
    fn clean_run(&self, buf: &[u8], start: usize) -> (usize, u64) {
        let mut at = start;
        let mut crlfs = 0;
        while let Some(p) = memchr::memchr2(b'\r', b'\n', &buf[at..]) {
            let eol = at + p;
            if buf[eol] != b'\r' || buf.get(eol + 1) != Some(&b'\n') {
                return (eol, crlfs);
            }
            at = eol + 2;
            crlfs += 1;
            if self.stuff && buf.get(at) == Some(&b'.') {
                return (at, crlfs);
            }
        }
        (buf.len(), crlfs)
    }

    fn end_line(&mut self) -> io::Result<()> {
        self.inner.write_all(b"\r\n")?;
        self.line_start = true;
        self.lines += 1;
        Ok(())
    }
}

impl<W: Write> Write for DotWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut i = 0;
        if self.pending_cr && !buf.is_empty() {
            self.pending_cr = false;
            // CR LF split across two writes is one line end; a CR followed by anything
            // else is a bare CR, which also ends the line.
            if buf[0] == b'\n' {
                i = 1;
            }
            self.end_line()?;
        }
        while i < buf.len() {
            if self.stuff && self.line_start && buf[i] == b'.' {
                self.inner.write_all(b".")?;
            }
            // The longest stretch that goes out unchanged, as one slice: ordinary
            // bytes and CRLF line ends, up to a bare CR or LF, or (for DATA) a line
            // that starts with a dot.
            let (run_end, crlfs) = self.clean_run(buf, i);
            if run_end > i {
                self.inner.write_all(&buf[i..run_end])?;
                self.lines += crlfs;
                self.line_start = buf[run_end - 1] == b'\n';
            }
            i = run_end;
            if i == buf.len() {
                break;
            }
            if buf[i] != b'\r' && buf[i] != b'\n' {
                // Stopped before a line that starts with a dot: stuffed above.
                continue;
            }
            if buf[i] == b'\n' {
                i += 1;
                self.end_line()?;
            } else if i + 1 == buf.len() {
                // A CR at the end of this buffer: the next one says whether an LF follows.
                i += 1;
                self.pending_cr = true;
            } else {
                i += if buf[i + 1] == b'\n' { 2 } else { 1 };
                self.end_line()?;
            }
        }
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(input: &[u8]) -> Vec<u8> {
        let mut w = DotWriter::new(Vec::new());
        w.write_all(input).unwrap();
        w.finish().unwrap()
    }

    /// Feeds the input one byte per write, to prove state carries across writes.
    fn wire_bytewise(input: &[u8]) -> Vec<u8> {
        let mut w = DotWriter::new(Vec::new());
        for b in input {
            w.write_all(std::slice::from_ref(b)).unwrap();
        }
        w.finish().unwrap()
    }

    fn check(input: &[u8], expected: &[u8]) {
        assert_eq!(
            String::from_utf8_lossy(&wire(input)),
            String::from_utf8_lossy(expected),
            "whole input {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            String::from_utf8_lossy(&wire_bytewise(input)),
            String::from_utf8_lossy(expected),
            "bytewise input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn plain_crlf_text_passes_through() {
        check(
            b"Subject: x\r\n\r\nhello\r\n",
            b"Subject: x\r\n\r\nhello\r\n.\r\n",
        );
    }

    #[test]
    fn empty_message_is_just_the_terminator() {
        check(b"", b".\r\n");
    }

    #[test]
    fn bare_lf_becomes_crlf() {
        check(b"a\nb\n", b"a\r\nb\r\n.\r\n");
    }

    #[test]
    fn bare_cr_becomes_crlf() {
        check(b"a\rb\r", b"a\r\nb\r\n.\r\n");
    }

    #[test]
    fn final_line_without_newline_is_ended() {
        check(b"a\r\nlast", b"a\r\nlast\r\n.\r\n");
    }

    #[test]
    fn leading_dots_are_stuffed() {
        check(
            b".\r\n..\r\n.x\r\nx.\r\n",
            b"..\r\n...\r\n..x\r\nx.\r\n.\r\n",
        );
        check(b".start", b"..start\r\n.\r\n");
    }

    #[test]
    fn smuggling_lf_dot_lf_is_stuffed() {
        check(
            b"a\n.\nMAIL FROM:<evil@example.test>\n",
            b"a\r\n..\r\nMAIL FROM:<evil@example.test>\r\n.\r\n",
        );
    }

    #[test]
    fn smuggling_cr_dot_cr_lf_is_stuffed() {
        check(b"a\r.\r\nRSET\r\n", b"a\r\n..\r\nRSET\r\n.\r\n");
    }

    #[test]
    fn smuggling_crlf_dot_lf_is_stuffed() {
        check(b"a\r\n.\nQUIT\r\n", b"a\r\n..\r\nQUIT\r\n.\r\n");
    }

    #[test]
    fn cr_cr_lf_is_two_line_ends() {
        check(b"a\r\r\nb", b"a\r\n\r\nb\r\n.\r\n");
    }

    #[test]
    fn a_5000_character_line_is_kept_whole() {
        let line = "y".repeat(5000);
        let mut expected = line.clone().into_bytes();
        expected.extend_from_slice(b"\r\n.\r\n");
        check(line.as_bytes(), &expected);
    }

    #[test]
    fn lines_only_normalises_without_stuffing_or_terminator() {
        let mut w = DotWriter::lines_only(Vec::new());
        w.write_all(b".a\n..b\r.\r\nlast").unwrap();
        assert_eq!(w.finish().unwrap(), b".a\r\n..b\r\n.\r\nlast\r\n");
        let w = DotWriter::lines_only(Vec::new());
        assert_eq!(w.finish().unwrap(), b"");
    }

    #[test]
    fn counts_bytes_and_lines() {
        let mut w = DotWriter::new(Vec::new());
        w.write_all(b"one\ntwo\r\nthree").unwrap();
        assert_eq!(w.bytes_in(), 14);
        assert_eq!(w.lines(), 2);
        assert_eq!(w.lines_when_finished(), 3);
        w.write_all(b"\r").unwrap();
        assert_eq!(w.lines(), 2);
        assert_eq!(w.lines_when_finished(), 3);
        w.write_all(b"\n").unwrap();
        assert_eq!(w.lines(), 3);
        assert_eq!(w.lines_when_finished(), 3);
    }

    /// What the writer must produce, byte by byte: every line end CRLF, a dot that
    /// starts a line doubled (DATA), the last line ended, `.CRLF` (DATA); and the
    /// number of lines.
    fn model(input: &[u8], stuff: bool) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let mut lines = 0;
        let mut line_start = true;
        let mut i = 0;
        while i < input.len() {
            match input[i] {
                b'\r' | b'\n' => {
                    if input[i] == b'\r' && input.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                    out.extend_from_slice(b"\r\n");
                    lines += 1;
                    line_start = true;
                }
                b => {
                    if stuff && line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    line_start = false;
                }
            }
            i += 1;
        }
        if !line_start {
            out.extend_from_slice(b"\r\n");
            lines += 1;
        }
        if stuff {
            out.extend_from_slice(b".\r\n");
        }
        (out, lines)
    }

    #[test]
    fn random_input_in_random_pieces_matches_the_model() {
        let alphabet = [b'\r', b'\n', b'.', b'x', b'y', b'\r', b'\n'];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as usize
        };
        for _ in 0..3000 {
            let len = next(60);
            let input: Vec<u8> = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
            for stuff in [true, false] {
                let (expected, lines) = model(&input, stuff);
                let mut w = if stuff {
                    DotWriter::new(Vec::new())
                } else {
                    DotWriter::lines_only(Vec::new())
                };
                let mut at = 0;
                while at < input.len() {
                    let n = 1 + next(input.len() - at);
                    w.write_all(&input[at..at + n]).unwrap();
                    at += n;
                }
                assert_eq!(w.bytes_in(), input.len() as u64);
                assert_eq!(w.lines_when_finished(), lines, "{input:?}");
                let out = w.finish().unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&expected),
                    "{input:?} stuff={stuff}"
                );
            }
        }
    }

    #[test]
    fn no_byte_sequence_produces_a_bare_cr_or_lf_or_early_terminator() {
        // Every string of up to 5 symbols over the interesting alphabet.
        let alphabet = [b'\r', b'\n', b'.', b'x'];
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
        let mut frontier: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            frontier = frontier
                .iter()
                .flat_map(|s| {
                    alphabet.iter().map(move |&c| {
                        let mut t = s.clone();
                        t.push(c);
                        t
                    })
                })
                .collect();
            inputs.extend(frontier.iter().cloned());
        }
        for input in inputs {
            let out = wire(&input);
            assert_eq!(out, wire_bytewise(&input));
            let body = &out[..out.len() - 3];
            assert!(out.ends_with(b".\r\n"));
            assert!(body.is_empty() || body.ends_with(b"\r\n"));
            for (i, &b) in out.iter().enumerate() {
                if b == b'\r' {
                    assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR for {input:?}");
                }
                if b == b'\n' {
                    assert_eq!(out[i - 1], b'\r', "bare LF for {input:?}");
                }
            }
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                assert_ne!(line, b".\r", "early terminator at line {i} for {input:?}");
            }
        }
    }
}
