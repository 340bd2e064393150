//! The dialogue as `-v` shows it.

use std::io::Write;

use crate::smtp::command::Command;
use crate::smtp::reply::Reply;

/// Where `-v` writes the dialogue: `> ` for what we send, `< ` for what the server
/// says, `* ` for notes of our own. Server text is sanitised before it is shown.
pub struct Transcript {
    out: Box<dyn Write + Send>,
}

impl Transcript {
    pub fn new(out: Box<dyn Write + Send>) -> Transcript {
        Transcript { out }
    }

    /// A failure to write the transcript must not fail the delivery, so it is ignored.
    pub(super) fn line(&mut self, prefix: &str, text: &str) {
        let _ = writeln!(self.out, "{prefix}{text}");
    }

    pub fn note(&mut self, text: &str) {
        self.line("* ", text);
    }

    pub(super) fn sent(&mut self, cmd: &Command) {
        self.line("> ", &cmd.shown());
    }

    pub(super) fn received(&mut self, reply: &Reply) {
        for line in reply.to_string().lines() {
            self.line("< ", line);
        }
    }
}
