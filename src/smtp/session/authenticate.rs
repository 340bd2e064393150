//! AUTH (RFC 4954): the SASL exchange over the session, challenge by challenge.

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Session;
use crate::error::Error;
use crate::smtp::auth::{Credentials, Exchange, Mechanism};
use crate::smtp::command::{Command, CommandError};
use crate::smtp::deadline::IoTimeout;
use crate::smtp::record::Phase;
use crate::smtp::reply::{Reply, sanitize};
use crate::smtp::stage::Stage;

impl<S: Read + Write + IoTimeout> Session<S> {
    /// `AUTH` (RFC 4954): the exchange runs until 235, answering each 334 challenge.
    /// A 4xx or 5xx ends it (535: the credentials are wrong). A challenge that makes no
    /// sense, or a server that cannot prove it knows the password (SCRAM), cancels it
    /// with `*` and fails.
    pub fn auth(
        &mut self,
        mechanism: Mechanism,
        credentials: &Credentials,
    ) -> Result<Reply, Error> {
        self.timed(Phase::Auth, |s| s.auth_untimed(mechanism, credentials))
    }

    fn auth_untimed(
        &mut self,
        mechanism: Mechanism,
        credentials: &Credentials,
    ) -> Result<Reply, Error> {
        let usage = |e: CommandError| Error::Usage(e.to_string());
        let mut exchange = Exchange::new(mechanism, credentials);
        // RFC 4954 §4: an empty initial response is sent as "=".
        let initial = exchange.initial_response().map(|r| match r.is_empty() {
            true => "=".to_owned(),
            false => BASE64.encode(r),
        });
        // RFC 4954 §4: an initial response too long for the AUTH line is left out, and
        // the exchange gives it at the server's empty 334 instead.
        let cmd = match Command::auth(mechanism.name(), initial.as_deref()) {
            Err(CommandError::TooLong { .. }) => Command::auth(mechanism.name(), None),
            other => other,
        }
        .map_err(usage)?;
        let mut reply = self.command(&cmd, Stage::Auth, self.timeouts.ehlo)?;
        loop {
            match reply.code {
                235 => {
                    exchange.finish().map_err(|e| Error::Auth(e.to_string()))?;
                    self.record.auth = Some(mechanism.name().to_owned());
                    return Ok(reply);
                }
                334 => {
                    let text = reply.lines.first().map_or("", |l| l.trim());
                    let response = BASE64
                        .decode(text)
                        .map_err(|_| format!("the server's challenge is not base64: {text:?}"))
                        .and_then(|challenge| {
                            exchange.respond(&challenge).map_err(|e| e.to_string())
                        });
                    let response = match response {
                        Ok(r) => BASE64.encode(r),
                        Err(why) => {
                            self.cancel_auth();
                            return Err(Error::Auth(sanitize(&why)));
                        }
                    };
                    let cmd = Command::auth_response(&response).map_err(usage)?;
                    reply = self.command(&cmd, Stage::Auth, self.timeouts.ehlo)?;
                }
                _ => return self.expect(Stage::Auth, reply, &[235], "235 or 334"),
            }
        }
    }

    /// RFC 4954 §4: "*" cancels an exchange; the server answers 501.
    fn cancel_auth(&mut self) {
        if let Ok(cancel) = Command::auth_response("*") {
            let _ = self.command(&cancel, Stage::Auth, self.timeouts.ehlo);
        }
    }
}
