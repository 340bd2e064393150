//! A message typed by a person after a 354 (`outbox session`): sent through the
//! DotWriter, ended with the final dot, and the server's reply returned whatever its
//! code, for the person to read.

use std::io::{Read, Write};

use super::Session;
use crate::error::Error;
use crate::smtp::deadline::IoTimeout;
use crate::smtp::record::Phase;
use crate::smtp::reply::Reply;
use crate::smtp::stage::Stage;

impl<S: Read + Write + IoTimeout> Session<S> {
    /// After a 354: `message` with CRLF line ends and its dots stuffed (RFC 5321
    /// §4.5.2), then the final `.` (so nothing typed can end it early), and the reply
    /// to it within DATA termination's limit (§4.5.3.2.6). A 421 ends the session.
    pub fn typed_message(&mut self, message: &mut dyn Read) -> Result<Reply, Error> {
        self.timed(Phase::Data, |s| {
            s.send_body(message, &[])?;
            let reply = s.read_reply(Stage::EndOfData, s.timeouts.data_end)?;
            if reply.code == 421 {
                s.dead = true;
            }
            Ok(reply)
        })
    }
}
