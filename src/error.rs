//! What can go wrong, and where. Every error that involves the server keeps its whole
//! reply; `exit::code` maps each to a sysexits code.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::smtp::reply::Reply;
use crate::smtp::session::RecipientResult;

/// The step of a session an error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    /// The TLS handshake, after STARTTLS or at once for implicit TLS.
    TlsHandshake,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    /// Sending the message itself, between the 354 and the final dot.
    Message,
    /// The reply to the final dot.
    EndOfData,
    Rset,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::Helo => "HELO",
            Stage::StartTls => "STARTTLS",
            Stage::TlsHandshake => "TLS handshake",
            Stage::Auth => "AUTH",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Message => "message transfer",
            Stage::EndOfData => "end of data",
            Stage::Rset => "RSET",
            Stage::Quit => "QUIT",
        })
    }
}

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
    /// Every recipient was refused, so no message was sent.
    #[error("no recipient was accepted; nothing was sent:\n{}", list(refused))]
    NoRecipients { refused: Vec<RecipientResult> },
    /// Local I/O (standard input, standard output) failed.
    #[error("{context}: {source}")]
    LocalIo { context: String, source: io::Error },
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
