//! The steps of a session, as errors and recipients' results name them.

use std::fmt;

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
    /// A command of the tester face (VRFY, ETRN, a typed line).
    Command,
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
            Stage::Command => "the command",
        })
    }
}

impl Stage {
    /// The stage as a name for machines (`--json`): `rcpt_to`, `end_of_data`, ...
    pub fn key(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "ehlo",
            Stage::Helo => "helo",
            Stage::StartTls => "starttls",
            Stage::TlsHandshake => "tls_handshake",
            Stage::Auth => "auth",
            Stage::MailFrom => "mail_from",
            Stage::RcptTo => "rcpt_to",
            Stage::Data => "data",
            Stage::Message => "message",
            Stage::EndOfData => "end_of_data",
            Stage::Rset => "rset",
            Stage::Quit => "quit",
            Stage::Command => "command",
        }
    }
}

/// Where `--quit-after` ends a session: after this stage, with QUIT, and nothing more
/// sent. In the order a session goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum QuitAfter {
    /// The TCP connection (and the handshake of implicit TLS).
    Connect,
    Greeting,
    /// The first EHLO (or HELO).
    Ehlo,
    /// STARTTLS, its handshake and the EHLO over TLS.
    Tls,
    Auth,
    Mail,
    /// Every RCPT TO.
    Rcpt,
    /// DATA and its 354: the message itself is never sent.
    Data,
}

impl QuitAfter {
    pub const ALL: [QuitAfter; 8] = [
        QuitAfter::Connect,
        QuitAfter::Greeting,
        QuitAfter::Ehlo,
        QuitAfter::Tls,
        QuitAfter::Auth,
        QuitAfter::Mail,
        QuitAfter::Rcpt,
        QuitAfter::Data,
    ];

    /// The name on the command line and in `--json`.
    pub fn key(self) -> &'static str {
        match self {
            QuitAfter::Connect => "connect",
            QuitAfter::Greeting => "greeting",
            QuitAfter::Ehlo => "ehlo",
            QuitAfter::Tls => "tls",
            QuitAfter::Auth => "auth",
            QuitAfter::Mail => "mail",
            QuitAfter::Rcpt => "rcpt",
            QuitAfter::Data => "data",
        }
    }

    /// The stage named `text`, in any case; swaks's spellings of the same stages
    /// (`banner`, `first-helo`, `helo`) too.
    pub fn parse(text: &str) -> Option<QuitAfter> {
        let text = text.trim().to_ascii_lowercase();
        let alias = match text.as_str() {
            "banner" => "greeting",
            "first-helo" | "first-ehlo" | "helo" => "ehlo",
            "starttls" => "tls",
            "from" | "mail-from" => "mail",
            "to" | "rcpt-to" => "rcpt",
            other => other,
        };
        QuitAfter::ALL.into_iter().find(|q| q.key() == alias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quit_after_stages_parse_by_name_and_swaks_spelling() {
        for q in QuitAfter::ALL {
            assert_eq!(QuitAfter::parse(q.key()), Some(q));
            assert_eq!(QuitAfter::parse(&q.key().to_uppercase()), Some(q));
        }
        assert_eq!(QuitAfter::parse("banner"), Some(QuitAfter::Greeting));
        assert_eq!(QuitAfter::parse("first-helo"), Some(QuitAfter::Ehlo));
        assert_eq!(QuitAfter::parse("RCPT-TO"), Some(QuitAfter::Rcpt));
        assert_eq!(QuitAfter::parse("message"), None);
        assert_eq!(QuitAfter::parse(""), None);
        assert!(QuitAfter::Greeting < QuitAfter::Rcpt);
    }
}
