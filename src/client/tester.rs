//! What the tester face does over a client's session besides mail: one command and
//! its reply, STARTTLS when a person asks for it, AUTH with credentials typed in.

use super::Client;
use super::connect::{credentials_may_go, start_tls};
use crate::error::Error;
use crate::settings::Settings;
use crate::smtp::auth::{Credentials, Mechanism};
use crate::smtp::command::Command;
use crate::smtp::reply::Reply;
use crate::smtp::session::Session;
use crate::smtp::tls::{Channel, Connection};

impl Client {
    /// Sends `cmd`; the server's reply, whatever its code.
    pub fn exchange(&mut self, cmd: &Command) -> Result<Reply, Error> {
        self.session.exchange(cmd)
    }

    /// STARTTLS now, with the certificate checked as the settings say, and EHLO again.
    pub fn starttls(&mut self, settings: &Settings) -> Result<(), Error> {
        if self.session.stream().is_tls() {
            return Err(Error::Usage("the session is under TLS already".into()));
        }
        let client = settings.tls_client();
        start_tls(&mut self.session, &client, &self.ehlo_name)
    }

    /// Whether credentials may go over this connection: under TLS, or to this machine,
    /// as everywhere in outbox.
    pub fn may_send_credentials(&self) -> bool {
        credentials_may_go(&self.session, &"the server").is_ok()
    }

    /// AUTH with `mechanism` and `credentials`; never in clear to a server that is not
    /// on this machine.
    pub fn auth(&mut self, mechanism: Mechanism, credentials: &Credentials) -> Result<(), Error> {
        let server = self.report.server.as_deref().unwrap_or("the server");
        credentials_may_go(&self.session, &server)?;
        self.session.auth(mechanism, credentials)?;
        Ok(())
    }

    /// Ends an AUTH exchange the server holds open (its reply was 334) with `*` (RFC
    /// 4954 §4), so that the next line is a command again. `None`: the session is in
    /// step; else it has been hung up (no QUIT can follow), and why.
    pub fn cancel_auth(&mut self) -> Option<&'static str> {
        self.session
            .note("cancelling the AUTH exchange with \"*\" (RFC 4954 §4)");
        let cancelled = Command::auth_response("*")
            .map_err(|e| Error::Usage(e.to_string()))
            .and_then(|cancel| self.session.exchange(&cancel));
        match cancelled {
            Ok(again) if again.code == 334 => {
                let why = "the server still waits for a SASL response";
                self.session.hang_up(why);
                Some(why)
            }
            Ok(_) => None,
            Err(e) => {
                self.session
                    .note(&format!("the AUTH exchange could not be cancelled: {e}"));
                (!self.session.is_usable()).then_some("the connection is closed")
            }
        }
    }

    /// The session itself, for what the methods above do not cover.
    pub fn session_mut(&mut self) -> &mut Session<Connection> {
        &mut self.session
    }
}
