//! What can go wrong, and where. Every error that involves the server keeps its whole
//! reply; `exit::code` maps each to a sysexits code.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::envelope::Address;
use crate::smtp::receipt::RecipientResult;
use crate::smtp::reply::Reply;
pub use crate::smtp::stage::Stage;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The message itself cannot be sent as it is.
    #[error("{0}")]
    Data(String),
    /// A body or attachment file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    NoInput { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Config(String),
    /// This user may not do this here (submit on a machine that allows only a group,
    /// see the system queue).
    #[error("{0}")]
    Denied(String),
    /// The name does not resolve; `temporary` when the resolver itself failed
    /// (EAI_AGAIN) rather than the name not existing.
    #[error("cannot resolve the server name {host:?}: {detail}")]
    NoHost {
        host: String,
        detail: String,
        temporary: bool,
    },
    /// The server lacks something the session needs (STARTTLS, AUTH, a mechanism).
    #[error("{0}")]
    Unsupported(String),
    /// This message cannot go to this server as it is (over its SIZE limit, UTF-8
    /// addresses without SMTPUTF8): trying again will not help.
    #[error("{0}")]
    Unsendable(String),
    /// The server's certificate does not verify (untrusted issuer, wrong name, expired).
    #[error("the certificate of {server} is not trusted: {detail}")]
    Certificate { server: String, detail: String },
    /// The TLS handshake failed for another reason than the certificate.
    #[error("TLS with {server} failed: {detail}")]
    Tls { server: String, detail: String },
    /// An error with advice on what to try.
    #[error("{error}\n  hint: {hint}")]
    Hint { error: Box<Error>, hint: String },
    /// Authentication failed on our side: the server's proof was wrong, or a challenge
    /// made no sense.
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("cannot connect to {server}: {source}")]
    Connect { server: String, source: io::Error },
    #[error("timed out after {}s waiting for the server (at {stage})", after.as_secs_f64())]
    Timeout { stage: Stage, after: Duration },
    #[error("the server closed the connection (at {stage})")]
    Closed { stage: Stage },
    #[error("connection lost (at {stage}): {source}")]
    Network { stage: Stage, source: io::Error },
    /// The server sent something that is not SMTP.
    #[error("the server broke the protocol (at {stage}): {detail}")]
    Protocol { stage: Stage, detail: String },
    /// A well-formed reply with a code this step does not allow (not 4xx or 5xx).
    #[error(
        "unexpected reply (at {stage}, expected {expected}):\n{}",
        indent(reply)
    )]
    Unexpected {
        stage: Stage,
        expected: &'static str,
        reply: Reply,
    },
    /// A 4xx or 5xx reply.
    #[error("the server refused {stage}:\n{}", indent(reply))]
    Refused { stage: Stage, reply: Reply },
    /// Under LMTP, every recipient refused the message after its data (RFC 2033 §4.2).
    #[error(
        "the message was refused after its data by every recipient:\n{}",
        list(refused)
    )]
    RefusedAfterData { refused: Vec<RecipientResult> },
    /// Under LMTP, the replies after the data stopped part-way (RFC 2033 §4.2: one per
    /// recipient): `cause` (a 421, a timeout, a close) came after some recipients had
    /// theirs. `answered` holds every recipient with a verdict (refused at RCPT, or
    /// answered after the data), `unanswered` those whose reply never came.
    #[error(
        "{cause}\n  the replies after the data stopped part-way:\n{}",
        cut_short(answered, unanswered)
    )]
    CutShortAfterData {
        answered: Vec<RecipientResult>,
        unanswered: Vec<Address>,
        cause: Box<Error>,
    },
    /// Every recipient was refused, so no message was sent.
    #[error("no recipient was accepted; nothing was sent:\n{}", list(refused))]
    NoRecipients { refused: Vec<RecipientResult> },
    /// The system spool refuses the message: over its size limit (`lasting`: trying
    /// again will not help), or the user's queue is full for now. `what` says which
    /// limit, the figures, and what to do.
    #[error("{what}")]
    OverLimit { what: String, lasting: bool },
    /// Local I/O (standard input, standard output) failed.
    #[error("{context}: {source}")]
    LocalIo { context: String, source: io::Error },
}

impl Error {
    /// The stage of the session the error happened at, where it is one.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            Error::NoHost { .. } | Error::Connect { .. } => Some(Stage::Connect),
            Error::Certificate { .. } | Error::Tls { .. } => Some(Stage::TlsHandshake),
            Error::Auth(_) => Some(Stage::Auth),
            Error::Timeout { stage, .. }
            | Error::Closed { stage }
            | Error::Network { stage, .. }
            | Error::Protocol { stage, .. }
            | Error::Unexpected { stage, .. }
            | Error::Refused { stage, .. } => Some(*stage),
            Error::NoRecipients { .. } => Some(Stage::RcptTo),
            Error::RefusedAfterData { .. } => Some(Stage::EndOfData),
            Error::Hint { error, .. } | Error::CutShortAfterData { cause: error, .. } => {
                error.stage()
            }
            Error::Usage(_)
            | Error::Data(_)
            | Error::NoInput { .. }
            | Error::Config(_)
            | Error::Denied(_)
            | Error::Unsupported(_)
            | Error::Unsendable(_)
            | Error::OverLimit { .. }
            | Error::LocalIo { .. } => None,
        }
    }

    /// The server's reply, when the error is what the server said.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Error::Refused { reply, .. } | Error::Unexpected { reply, .. } => Some(reply),
            Error::Hint { error, .. } | Error::CutShortAfterData { cause: error, .. } => {
                error.reply()
            }
            _ => None,
        }
    }
}

/// A reply under a one-line summary, each line indented and sanitised.
fn indent(reply: &Reply) -> String {
    reply
        .to_string()
        .lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each refused recipient on a line of its own, with the server's reply under it.
pub fn list(refused: &[RecipientResult]) -> String {
    refused
        .iter()
        .map(|r| format!("  <{}>:\n{}", r.recipient, indent(&r.reply)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The verdicts that came after the data stopped part-way, then who had none.
fn cut_short(answered: &[RecipientResult], unanswered: &[Address]) -> String {
    let mut lines = vec![list(answered)];
    lines.extend(unanswered.iter().map(|a| format!("  <{a}>: no reply")));
    lines.retain(|l| !l.is_empty());
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::parse_reply;

    fn reply(wire: &str) -> Reply {
        parse_reply(wire.as_bytes()).unwrap().unwrap().0
    }

    /// ENHANCEDSTATUSCODES (RFC 2034): the `x.y.z` the server sent is in every summary.
    #[test]
    fn refusals_show_the_enhanced_code() {
        let refused = Error::Refused {
            stage: Stage::MailFrom,
            reply: reply("553-5.7.1 <a@example.test>: sender rejected\r\n553 5.7.1 see policy\r\n"),
        };
        let text = refused.to_string();
        assert!(
            text.contains("553-5.7.1 <a@example.test>: sender rejected"),
            "{text}"
        );
        assert_eq!(refused.stage(), Some(Stage::MailFrom));
        assert_eq!(
            refused
                .reply()
                .and_then(|r| r.enhanced)
                .map(|e| e.to_string())
                .as_deref(),
            Some("5.7.1")
        );
        let nobody = Error::NoRecipients {
            refused: vec![RecipientResult {
                recipient: crate::Address::new("x@example.test").unwrap(),
                reply: reply("550 5.1.1 <x@example.test>: Recipient address rejected\r\n"),
                accepted: false,
                stage: Stage::RcptTo,
            }],
        };
        assert!(
            nobody.to_string().contains("550 5.1.1 <x@example.test>"),
            "{nobody}"
        );
        assert_eq!(nobody.stage(), Some(Stage::RcptTo));
        let hinted = Error::Hint {
            error: Box::new(refused),
            hint: "h".into(),
        };
        assert!(hinted.to_string().contains("5.7.1"));
        assert_eq!(hinted.stage(), Some(Stage::MailFrom));
    }

    #[test]
    fn stages_have_machine_names() {
        assert_eq!(Stage::RcptTo.key(), "rcpt_to");
        assert_eq!(Stage::EndOfData.key(), "end_of_data");
        let closed = Error::Closed {
            stage: Stage::Greeting,
        };
        assert_eq!(closed.stage(), Some(Stage::Greeting));
        assert!(closed.reply().is_none());
        assert_eq!(Error::Usage("x".into()).stage(), None);
    }
}
