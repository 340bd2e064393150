//! outbox: a command-line SMTP client, as a library.
//!
//! [`submit`] opens a session with the server in [`Settings`], hands over the message
//! for the [`Envelope`] and returns what the server said of each recipient.
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

pub mod cli;
pub mod client;
pub mod compose;
pub mod config;
pub mod envelope;
pub mod error;
pub mod exit;
pub mod message;
pub mod outcome;
pub mod progress;
pub mod queue;
pub mod report;
pub mod sendmail;
pub mod settings;
pub mod smtp;

pub use client::{
    Client, Dsn, Options, Outgoing, Parameters, Series, parameters, submit_reported, submit_with,
    wire_size,
};
pub use envelope::{Address, Envelope, Mailbox};
pub use error::{Error, Stage};
pub use message::Message;
pub use report::Report;
pub use settings::Settings;
pub use smtp::session::{Receipt, RecipientResult, Session, Timeouts, Transcript};

pub(crate) use client::xtext;
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
