//! Ending a session without QUIT, for where a QUIT would be out of step with the
//! server: after a 354 it takes every line as message text, after a 220 to STARTTLS
//! it waits for a TLS handshake, after a 221 it has gone.

use std::io::{Read, Write};

use super::Session;
use crate::smtp::deadline::IoTimeout;

impl<S: Read + Write + IoTimeout> Session<S> {
    /// Ends the session without a word: no QUIT follows, and the connection closes
    /// when the session is dropped. `why` goes to the transcript.
    pub fn hang_up(&mut self, why: &str) {
        if !self.dead {
            self.note(&format!("closing without QUIT: {why}"));
        }
        self.dead = true;
    }
}
