//! The tester face's commands: one command, its reply shown whatever its code, for a
//! person or a script to judge (VRFY, EXPN, ETRN, a typed line).

use std::io::{Read, Write};

use super::Session;
use crate::error::Error;
use crate::smtp::command::Command;
use crate::smtp::deadline::IoTimeout;
use crate::smtp::record::Phase;
use crate::smtp::reply::Reply;
use crate::smtp::stage::Stage;

impl<S: Read + Write + IoTimeout> Session<S> {
    /// Sends `cmd` and returns the server's reply, whatever its code: the caller
    /// judges it. A 421 ends the session (RFC 5321 §3.8). Bounded by the limit of
    /// MAIL, RCPT and other commands (RFC 5321 §4.5.3.2: 5 minutes by default).
    pub fn exchange(&mut self, cmd: &Command) -> Result<Reply, Error> {
        self.timed(Phase::Command, |s| {
            let reply = s.command(cmd, Stage::Command, s.timeouts.mail)?;
            if reply.code == 421 {
                s.dead = true;
            }
            Ok(reply)
        })
    }
}
