//! The message as BDAT chunks (RFC 3030): no dot-stuffing, a chunk at a time, each
//! with its size, the last marked LAST.

use std::io::{self, Read, Write};

use super::body::Counted;
use super::{DATA_BUFFER, Session};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::smtp::command::Command;
use crate::smtp::data::DotWriter;
use crate::smtp::deadline::{Bounded, IoTimeout};
use crate::smtp::receipt::RecipientResult;
use crate::smtp::stage::Stage;

/// What sending a message as BDAT chunks left to do.
pub(super) struct Chunked {
    /// Chunks whose replies are still to be read.
    pub(super) due: usize,
    /// The envelope's replies, when they were read between chunks.
    pub(super) replies: Option<(Option<Error>, Vec<RecipientResult>)>,
    /// The last chunk went out (false: stopped after the first, with no transaction).
    pub(super) ended: bool,
}

/// Bytes of message per BDAT chunk: large enough that chunk lines cost nothing, small
/// enough that a chunk in memory does not matter.
pub(super) const CHUNK_SIZE: usize = 1024 * 1024;

impl<S: Read + Write + IoTimeout> Session<S> {
    /// The message as BDAT chunks (RFC 3030): line ends made CRLF, no dot-stuffing,
    /// `CHUNK_SIZE` bytes a chunk, the last marked LAST; QUIT after it if `quit`.
    /// With `each_reply`, every chunk waits for its reply but the last (lock-step);
    /// otherwise all go out at once. Returns how many chunks' replies are still due.
    pub(super) fn send_chunks(
        &mut self,
        message: &mut dyn Read,
        prefix: Vec<u8>,
        quit: bool,
        each_reply: bool,
        envelope: Option<&Envelope>,
    ) -> Result<Chunked, Error> {
        if let Some(p) = &mut self.progress {
            p.start(self.message_size.take());
        }
        let due = self.send_chunks_untracked(message, prefix, quit, each_reply, envelope);
        if let Some(p) = &mut self.progress {
            p.finish(due.is_ok());
        }
        due
    }

    fn send_chunks_untracked(
        &mut self,
        message: &mut dyn Read,
        mut prefix: Vec<u8>,
        quit: bool,
        each_reply: bool,
        envelope: Option<&Envelope>,
    ) -> Result<Chunked, Error> {
        let mut replies = None;
        let mut lines = DotWriter::lines_only(Vec::with_capacity(CHUNK_SIZE + DATA_BUFFER));
        let mut input = vec![0u8; DATA_BUFFER];
        let mut chunks = 0usize;
        let mut due = 0usize;
        loop {
            let n = match message.read(&mut input) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.dead = true;
                    return Err(Error::LocalIo {
                        context: "cannot read the message".into(),
                        source,
                    });
                }
            };
            if n == 0 {
                break;
            }
            // Writing into a Vec cannot fail.
            let _ = lines.write_all(&input[..n]);
            if lines.get_mut().len() >= CHUNK_SIZE {
                let mut chunk = std::mem::take(lines.get_mut());
                if each_reply {
                    // In lock-step every reply so far has been read: anything waiting
                    // came unasked, and would be taken for this chunk's reply.
                    self.check_in_step("BDAT", Stage::Message)?;
                }
                self.send_chunk(std::mem::take(&mut prefix), &chunk, false, false)?;
                // The same buffer holds the next chunk: memory stays flat however
                // large the message.
                chunk.clear();
                *lines.get_mut() = chunk;
                chunks += 1;
                if each_reply {
                    let reply = self.read_reply(Stage::Message, self.timeouts.data_block)?;
                    self.expect(Stage::Message, reply, &[250], "250")?;
                } else {
                    due += 1;
                }
                // A message longer than one chunk waits, after its first, for the
                // envelope's replies: no use sending the rest to a refused sender or
                // to nobody.
                if let (Some(envelope), None) = (envelope, &replies) {
                    let (mail_error, recipients) = self.envelope_replies(envelope)?;
                    let stands = mail_error.is_none() && recipients.iter().any(|r| r.accepted);
                    replies = Some((mail_error, recipients));
                    if !stands {
                        return Ok(Chunked {
                            due,
                            replies,
                            ended: false,
                        });
                    }
                }
            }
        }
        let (bytes, line_count) = (lines.bytes_in(), lines.lines_when_finished());
        self.record.message = Some((bytes, line_count));
        let last = lines.finish().unwrap_or_default();
        if each_reply {
            self.check_in_step("BDAT", Stage::Message)?;
        }
        self.send_chunk(prefix, &last, true, quit)?;
        if let Some(t) = &mut self.transcript {
            let in_chunks = match chunks {
                0 => String::new(),
                n => format!(" in {} chunks", n + 1),
            };
            t.line(
                "> ",
                &format!("[message: {bytes} bytes, {line_count} lines{in_chunks}]"),
            );
            if quit {
                t.sent(&Command::Quit);
            }
        }
        Ok(Chunked {
            due: due + 1,
            replies,
            ended: true,
        })
    }

    /// One chunk: `prefix` (commands that go in the same write), the BDAT line, the
    /// bytes, and QUIT after the last if `quit`.
    fn send_chunk(
        &mut self,
        mut head: Vec<u8>,
        chunk: &[u8],
        last: bool,
        quit: bool,
    ) -> Result<(), Error> {
        let cmd = Command::Bdat {
            size: chunk.len() as u64,
            last,
        };
        if let Some(t) = &mut self.transcript {
            t.sent(&cmd);
        }
        head.extend_from_slice(cmd.to_string().as_bytes());
        let tail = match quit {
            true => Command::Quit.to_string().into_bytes(),
            false => Vec::new(),
        };
        let timeout = self.timeouts.data_block;
        let mut out = Bounded::new(&mut self.stream, &mut self.write_timeout, timeout);
        let sent = if chunk.len() + head.len() + tail.len() <= DATA_BUFFER {
            head.extend_from_slice(chunk);
            head.extend_from_slice(&tail);
            out.write_all(&head).inspect(|()| {
                if let Some(p) = &mut self.progress {
                    p.advance(chunk.len() as u64);
                }
            })
        } else {
            let mut counted = Counted {
                inner: &mut out,
                progress: self.progress.as_mut(),
            };
            counted
                .inner
                .write_all(&head)
                .and_then(|()| counted.write_all(chunk))
                .and_then(|()| counted.inner.write_all(&tail))
        }
        .and_then(|()| out.flush());
        sent.map_err(|e| self.write_failed(timeout, e))
    }
}
