//! outbox: a command-line SMTP client, as a library.
//!
//! [`submit`] opens a session with the server in [`Settings`], hands over the message
//! for the [`Envelope`] and returns what the server said of each recipient. For more
//! than one message, [`Client`] keeps the session open: [`Client::send`] sends one
//! after another, [`Client::send_series`] pipelines them where the server allows it.
//! [`submit_reported`] also returns the [`Report`] of what the session did (`--json`).
//!
//! The modules, from the faces down:
//!
//! - the faces live in the binary (`src/cmd/`): compose, sendmail, the queue commands;
//!   [`sendmail`] holds what the sendmail face does to its command line and message;
//! - [`client`]: a session got ready as the settings ask (connect, TLS, EHLO, AUTH)
//!   and each message fitted to the server (MAIL parameters, ASCII fallbacks);
//! - [`smtp`]: the protocol engine, the [`Session`] and the values it speaks in;
//! - [`probe`]: the tester face's report of what a server offers and how it protects
//!   the connection (TLS, the certificate chain), found without sending mail;
//! - the message: [`compose`] builds one from flags, [`message`] holds it ready for
//!   DATA, [`envelope`] says who it is from and for;
//! - [`queue`]: messages kept on disk until a later flush delivers them; [`bounce`]:
//!   the report sent to the sender of one that fails; [`spool`]: system mode's drop
//!   directory, where any local user hands a message to the service; [`system`]:
//!   what `outbox system setup|remove` installs (the unit, the links, the template);
//! - configuration: [`cli`] (the flags as typed), [`config`] (the file), [`settings`]
//!   (what they resolve to);
//! - what came of it: [`error`], [`exit`] (sysexits codes), [`outcome`], [`report`],
//!   [`progress`], and [`log`], the line of every outcome; [`passwd`] names the user;
//! - the tester face: [`seed`], the seed commands (VRFY, EXPN, ETRN, NOOP, RSET, a
//!   typed line) and how each reply is judged.
//!
//! ```no_run
//! use outbox::compose::{self, Draft};
//! use outbox::smtp::transport::ServerAddr;
//! use outbox::{Envelope, Mailbox, Settings};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let from = Mailbox::parse("Ops <ops@example.com>")?;
//! let to = Mailbox::parse("admin@example.com")?;
//! let draft = Draft {
//!     from: Some(from.clone()),
//!     to: vec![to.clone()],
//!     subject: Some("disk report".into()),
//!     text: b"all is well\n".to_vec(),
//!     ..Draft::default()
//! };
//! let message = compose::build(&draft, "client.example.com")?;
//! let mut settings = Settings::from_cli(&outbox::cli::Cli::default())?;
//! settings.server = ServerAddr::parse("mail.example.com:587")?;
//! let envelope = Envelope::new(Some(from.address), [to.address]);
//! let receipt = outbox::submit(&settings, &envelope, &message)?;
//! println!("{}", receipt.reply);
//! # Ok(())
//! # }
//! ```

pub mod bounce;
pub mod cli;
pub mod client;
pub mod compose;
pub mod config;
pub mod envelope;
pub mod error;
pub mod exit;
pub mod log;
pub mod message;
pub mod mode;
pub mod outcome;
pub mod passwd;
pub mod probe;
pub mod progress;
pub mod queue;
pub mod report;
pub mod seed;
pub mod sendmail;
pub mod settings;
pub mod smtp;
pub mod spool;
pub mod system;

pub use client::{
    Client, Dsn, Options, Outgoing, Parameters, Rehearsal, Series, parameters, rehearse_reported,
    submit_reported, submit_with,
};
pub use envelope::{Address, Envelope, Mailbox};
pub use error::{Error, Stage};
pub use message::{Message, wire_size};
pub use report::Report;
pub use settings::Settings;
pub use smtp::receipt::{Receipt, RecipientResult};
pub use smtp::session::{Session, Timeouts, Transcript};

#[cfg(test)]
pub(crate) use client::{deliver, send_series_on};

/// Sends one message: connect, greeting, EHLO, the transaction, QUIT.
///
/// Returns the receipt when the server took the message for at least one recipient
/// (the receipt lists any it refused). On failure the session ends with a QUIT where
/// the connection allows it, and the error says at which stage and why.
pub fn submit(
    settings: &Settings,
    envelope: &Envelope,
    message: &Message,
) -> Result<Receipt, Error> {
    submit_with(
        settings,
        envelope,
        message,
        client::verbose_transcript(settings),
    )
}
