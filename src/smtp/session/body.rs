//! The message after DATA's 354 (RFC 5321 §4.1.1.4): through a DotWriter, in
//! buffer-sized writes, with the final dot; and what a failed write of it means.

use std::io::{self, BufWriter, Read, Write};
use std::time::Duration;

use super::{DATA_BUFFER, GLANCE, REFUSAL_WAIT, Session};
use crate::error::Error;
use crate::progress::Progress;
use crate::smtp::command::Command;
use crate::smtp::data::DotWriter;
use crate::smtp::deadline::{Bounded, IoTimeout};
use crate::smtp::stage::Stage;

/// The stream while the message is sent, telling `progress` of each write.
pub(super) struct Counted<'a, W> {
    pub(super) inner: W,
    pub(super) progress: Option<&'a mut Box<dyn Progress>>,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(p) = &mut self.progress {
            p.advance(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where copying the message failed: reading it, or writing it out.
enum Pumped {
    Source(io::Error),
    Sink(io::Error),
}

/// Copies `message` into `out` in DATA_BUFFER pieces.
fn pump(message: &mut dyn Read, out: &mut dyn Write) -> Result<(), Pumped> {
    let mut chunk = vec![0u8; DATA_BUFFER];
    loop {
        let n = match message.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Pumped::Source(e)),
        };
        out.write_all(&chunk[..n]).map_err(Pumped::Sink)?;
    }
}

impl<S: Read + Write + IoTimeout> Session<S> {
    /// The message through a DotWriter after DATA's 354, the final dot, and the commands
    /// `then` (QUIT, or the next message's command group: RFC 2920 §3.1 lets message
    /// content open a group): the end of the message, the dot and `then` leave in one
    /// write.
    pub(crate) fn send_body(
        &mut self,
        message: &mut dyn Read,
        then: &[Command],
    ) -> Result<(), Error> {
        // DATA's 354 was the last reply due: anything after it came unasked, and would
        // be taken for the reply to the end of the message.
        self.check_in_step("the message", Stage::Message)?;
        let timeout = self.timeouts.data_block;
        if let Some(p) = &mut self.progress {
            p.start(self.message_size.take());
        }
        let counted = Counted {
            inner: Bounded::new(&mut self.stream, &mut self.write_timeout, timeout),
            progress: self.progress.as_mut(),
        };
        let mut dot = DotWriter::new(BufWriter::with_capacity(DATA_BUFFER, counted));
        let pumped = pump(message, &mut dot);
        let counts = (dot.bytes_in(), dot.lines_when_finished());
        self.record.message = Some(counts);
        let sent = match pumped {
            Ok(()) => dot.finish().and_then(|mut w| {
                for cmd in then {
                    w.write_all(cmd.to_string().as_bytes())?;
                }
                w.flush()
            }),
            Err(failure) => {
                // What is buffered is dropped unwritten: half a message must never be
                // followed by anything the server could take for its end.
                let _ = dot.into_inner().into_parts();
                match failure {
                    Pumped::Source(source) => {
                        // The server waits for data we cannot give; the connection is
                        // of no more use.
                        self.dead = true;
                        if let Some(p) = &mut self.progress {
                            p.finish(false);
                        }
                        return Err(Error::LocalIo {
                            context: "cannot read the message".into(),
                            source,
                        });
                    }
                    Pumped::Sink(e) => Err(e),
                }
            }
        };
        if let Some(p) = &mut self.progress {
            p.finish(sent.is_ok());
        }
        if let Some(t) = &mut self.transcript {
            t.line(
                "> ",
                &format!("[message: {} bytes, {} lines]", counts.0, counts.1),
            );
            t.line("> ", ".");
            for cmd in then {
                t.sent(cmd);
            }
        }
        sent.map_err(|e| self.write_failed(timeout, e))
    }

    /// A write of the message failed: the server's reason, if it left one, else the
    /// network error.
    pub(super) fn write_failed(&mut self, timeout: Duration, e: io::Error) -> Error {
        let err = self.io_error(Stage::Message, timeout, e);
        // After a timeout the stage's time is up: only a reply that is already here
        // counts. A connection that failed otherwise gets a short wait, within the
        // stage's limit.
        let wait = match err {
            Error::Timeout { .. } => GLANCE,
            _ => REFUSAL_WAIT.min(self.timeouts.data_block),
        };
        self.refusal_after_failed_write(wait).unwrap_or(err)
    }

    /// A server that refuses a message part-way (too big, policy) often says why and
    /// closes; our next write then fails. The reply it left is the real reason, and
    /// it may be permanent, where a lost connection would say "try again later".
    fn refusal_after_failed_write(&mut self, wait: Duration) -> Option<Error> {
        let reply = self.read_reply(Stage::Message, wait).ok()?;
        (reply.is_transient() || reply.is_permanent()).then(|| self.refused(Stage::Message, reply))
    }
}
