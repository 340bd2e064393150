//! What the tester face does over a client's session besides mail: one command and
//! its reply, STARTTLS when a person asks for it, AUTH with credentials typed in.

use super::Client;
use super::connect::start_tls;
use crate::error::Error;
use crate::settings::Settings;
use crate::smtp::auth::{Credentials, Mechanism};
use crate::smtp::command::Command;
use crate::smtp::reply::Reply;
use crate::smtp::session::Session;
use crate::smtp::tls::{Channel, Connection, TlsClient};

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
        let client = TlsClient {
            options: &settings.tls,
            host: &settings.server.host,
            port: settings.server.port,
            timeout: settings.timeouts.greeting,
        };
        start_tls(&mut self.session, &client, &self.ehlo_name)
    }

    /// AUTH with `mechanism` and `credentials`.
    pub fn auth(&mut self, mechanism: Mechanism, credentials: &Credentials) -> Result<(), Error> {
        self.session.auth(mechanism, credentials)?;
        Ok(())
    }

    /// The session itself, for what the methods above do not cover.
    pub fn session_mut(&mut self) -> &mut Session<Connection> {
        &mut self.session
    }
}
