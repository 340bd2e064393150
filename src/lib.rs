//! outbox: a command-line SMTP client, as a library.
//!
//! [`submit`] opens a session with the server in [`Settings`], hands over the message
//! for the [`Envelope`] and returns what the server said of each recipient.
//!
//! ```no_run
//! use outbox::compose::{self, Draft};
//! use outbox::smtp::transport::ServerAddr;
//! use outbox::{Envelope, Mailbox, Settings, Timeouts};
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
//! let settings = Settings {
//!     server: ServerAddr::parse("mail.example.com:25")?,
//!     ehlo_name: None,
//!     timeouts: Timeouts::default(),
//!     verbose: false,
//! };
//! let envelope = Envelope::new(Some(from.address), [to.address]);
//! let receipt = outbox::submit(&settings, &envelope, &message)?;
//! println!("{}", receipt.reply);
//! # Ok(())
//! # }
//! ```

pub mod cli;
pub mod compose;
pub mod envelope;
pub mod error;
pub mod exit;
pub mod settings;
pub mod smtp;

pub use compose::Message;
pub use envelope::{Address, Envelope, Mailbox};
pub use error::{Error, Stage};
pub use settings::Settings;
pub use smtp::session::{Receipt, RecipientResult, Session, Timeouts, Transcript};

use std::io::Write;

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
    submit_with(settings, envelope, message, verbose_transcript(settings))
}

/// As [`submit`], writing the dialogue to `transcript` if given.
pub fn submit_with(
    settings: &Settings,
    envelope: &Envelope,
    message: &Message,
    mut transcript: Option<Transcript>,
) -> Result<Receipt, Error> {
    if let Some(t) = &mut transcript {
        t.note(&format!("connecting to {}", settings.server));
    }
    let stream = smtp::transport::connect(&settings.server, settings.timeouts.connect)?;
    if let Some(t) = &mut transcript
        && let Ok(peer) = stream.peer_addr()
    {
        t.note(&format!("connected to {peer}"));
    }
    let ehlo_name = settings
        .ehlo_name
        .clone()
        .unwrap_or_else(|| settings::default_ehlo_name(stream.local_addr().ok().map(|a| a.ip())));
    let mut session = Session::new(stream, settings.timeouts.clone()).with_transcript(transcript);
    match deliver(&mut session, &ehlo_name, envelope, message) {
        Ok(receipt) => {
            // The message is the server's now; a failed goodbye changes nothing.
            if let Err(e) = session.quit() {
                session.note(&format!("QUIT failed after the message was accepted: {e}"));
            }
            Ok(receipt)
        }
        Err(e) => {
            session.abort();
            Err(e)
        }
    }
}

fn deliver<S>(
    session: &mut Session<S>,
    ehlo_name: &str,
    envelope: &Envelope,
    message: &Message,
) -> Result<Receipt, Error>
where
    S: std::io::Read + Write + smtp::session::IoTimeout,
{
    session.greeting()?;
    session.ehlo(ehlo_name)?;
    let caps = session.capabilities();
    let params = mail_params(|k| caps.has(k), envelope, message)?;
    session.transaction(envelope, &params, &mut message.as_bytes())
}

/// The MAIL FROM parameters this message needs from a server that offers the
/// extensions for which `offers` is true.
pub fn mail_params(
    offers: impl Fn(&str) -> bool,
    envelope: &Envelope,
    message: &Message,
) -> Result<Vec<&'static str>, Error> {
    let mut params = Vec::new();
    // RFC 6152: 8-bit data is announced, where the server takes it.
    if !message.as_bytes().is_ascii() && offers("8BITMIME") {
        params.push("BODY=8BITMIME");
    }
    // RFC 6531 §3.4: an address in UTF-8 needs SMTPUTF8, and a server without it
    // cannot take the message at all.
    let utf8 = envelope
        .from
        .iter()
        .chain(&envelope.to)
        .any(|a| !a.as_str().is_ascii());
    if utf8 {
        if !offers("SMTPUTF8") {
            return Err(Error::Unsupported(
                "an address is not ASCII, and the server does not offer SMTPUTF8 (RFC 6531)".into(),
            ));
        }
        params.push("SMTPUTF8");
    }
    Ok(params)
}

fn verbose_transcript(settings: &Settings) -> Option<Transcript> {
    settings
        .verbose
        .then(|| Transcript::new(Box::new(std::io::stderr())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(from: &str, to: &str) -> Envelope {
        Envelope::new(
            Some(Address::new(from).unwrap()),
            [Address::new(to).unwrap()],
        )
    }

    #[test]
    fn seven_bit_ascii_needs_no_parameter() {
        let m = Message::from_bytes(b"Subject: x\r\n\r\nbody\r\n".to_vec());
        let e = envelope("a@example.test", "b@example.test");
        assert!(mail_params(|_| true, &e, &m).unwrap().is_empty());
    }

    #[test]
    fn eight_bit_data_is_announced_where_offered() {
        let m = Message::from_bytes("Subject: x\r\n\r\nGrüße\r\n".as_bytes().to_vec());
        let e = envelope("a@example.test", "b@example.test");
        assert_eq!(
            mail_params(|k| k == "8BITMIME", &e, &m).unwrap(),
            ["BODY=8BITMIME"]
        );
        assert!(mail_params(|_| false, &e, &m).unwrap().is_empty());
    }

    #[test]
    fn utf8_address_needs_smtputf8() {
        let m = Message::from_bytes("From: jörg@example.test\r\n\r\nx\r\n".as_bytes().to_vec());
        let e = envelope("jörg@example.test", "b@example.test");
        assert_eq!(
            mail_params(|_| true, &e, &m).unwrap(),
            ["BODY=8BITMIME", "SMTPUTF8"]
        );
        let err = mail_params(|k| k == "8BITMIME", &e, &m).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        assert_eq!(exit::code(&err), exit::UNAVAILABLE);
    }
}
