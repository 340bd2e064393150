//! SMTP commands as values. Each formats itself with its CRLF; arguments are checked
//! when the value is made, so a command that exists is safe to put on the wire.

use std::fmt;

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest line answering an AUTH challenge, CRLF included (RFC 4954 §4). The AUTH
/// command itself keeps the ordinary limit: an initial response that would not fit
/// must wait for the server's first, empty, challenge.
pub const MAX_AUTH_LINE: usize = 12288;

/// Why an argument cannot go into a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// CR, LF or NUL would end or corrupt the command line (SMTP command injection).
    #[error("{what} contains a forbidden character {ch:?}")]
    ForbiddenChar { what: &'static str, ch: char },
    #[error("{what} contains white space")]
    WhiteSpace { what: &'static str },
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("command line would be {len} octets, over the limit")]
    TooLong { len: usize },
}

/// A command argument that holds no control character and no white space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg(String);

impl Arg {
    /// Checks `value` for use as an argument; `what` names it in the error.
    pub fn new(what: &'static str, value: &str) -> Result<Arg, CommandError> {
        if let Some(ch) = value.chars().find(|c| c.is_control()) {
            return Err(CommandError::ForbiddenChar { what, ch });
        }
        if value.chars().any(char::is_whitespace) {
            return Err(CommandError::WhiteSpace { what });
        }
        Ok(Arg(value.to_owned()))
    }

    fn non_empty(what: &'static str, value: &str) -> Result<Arg, CommandError> {
        if value.is_empty() {
            return Err(CommandError::Empty { what });
        }
        Arg::new(what, value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One SMTP command (RFC 5321 §4.1.1). `Debug` and [`Command::shown`] hide the
/// data of AUTH lines, which carry or derive from a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(Arg),
    Helo(Arg),
    /// LMTP's greeting (RFC 2033 §4.1), in place of EHLO.
    Lhlo(Arg),
    /// `MAIL FROM:<path> params`; an empty path is the null reverse-path `<>`.
    Mail {
        from: Arg,
        params: Vec<Arg>,
    },
    /// `RCPT TO:<path> params`.
    Rcpt {
        to: Arg,
        params: Vec<Arg>,
    },
    Data,
    /// `BDAT size [LAST]` (RFC 3030 §2); the chunk's bytes follow the line.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Quit,
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4), the response in base64.
    Auth {
        mechanism: Arg,
        initial: Option<Arg>,
    },
    /// A base64 line answering a 334 challenge, or `*` to cancel (RFC 4954 §4).
    AuthResponse(Arg),
    /// `VRFY string` (RFC 5321 §4.1.1.6): a user name or mailbox, spaces allowed.
    Vrfy(Text),
    /// `EXPN string` (RFC 5321 §4.1.1.7): a mailing list's name.
    Expn(Text),
    /// `HELP [string]` (RFC 5321 §4.1.1.8).
    Help(Option<Text>),
    /// `NOOP` (RFC 5321 §4.1.1.9).
    Noop,
    /// `ETRN node` (RFC 1985 §3): a domain, or `@domain` or `#queue`.
    Etrn(Arg),
    /// A line as a person typed it, sent unchanged but for the CRLF: any verb, old
    /// (TURN, SEND, SAML, SOML: RFC 5321 Appendix F) or unknown.
    Line(Text),
}

/// A command's text that may hold spaces but no CR, LF or NUL, so it stays one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    /// Checks `value`: not empty, no CR, LF or NUL. Other control characters (a tab)
    /// pass, so a server's answer to them can be seen.
    pub fn new(what: &'static str, value: &str) -> Result<Text, CommandError> {
        if let Some(ch) = value.chars().find(|c| matches!(c, '\r' | '\n' | '\0')) {
            return Err(CommandError::ForbiddenChar { what, ch });
        }
        if value.is_empty() {
            return Err(CommandError::Empty { what });
        }
        Ok(Text(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Command {
    pub fn ehlo(domain: &str) -> Result<Command, CommandError> {
        Command::Ehlo(Arg::non_empty("EHLO name", domain)?).checked()
    }

    pub fn lhlo(domain: &str) -> Result<Command, CommandError> {
        Command::Lhlo(Arg::non_empty("LHLO name", domain)?).checked()
    }

    pub fn helo(domain: &str) -> Result<Command, CommandError> {
        Command::Helo(Arg::non_empty("HELO name", domain)?).checked()
    }

    pub fn mail_from(path: &str, params: &[&str]) -> Result<Command, CommandError> {
        Command::Mail {
            from: Arg::new("sender address", path)?,
            params: params_of(params)?,
        }
        .checked()
    }

    pub fn rcpt_to(path: &str, params: &[&str]) -> Result<Command, CommandError> {
        Command::Rcpt {
            to: Arg::non_empty("recipient address", path)?,
            params: params_of(params)?,
        }
        .checked()
    }

    /// `AUTH` with an initial response already base64-encoded (`=` when empty).
    pub fn auth(mechanism: &str, initial: Option<&str>) -> Result<Command, CommandError> {
        Command::Auth {
            mechanism: Arg::non_empty("SASL mechanism", mechanism)?,
            initial: initial
                .map(|i| Arg::non_empty("AUTH initial response", i))
                .transpose()?,
        }
        .checked()
    }

    pub fn auth_response(base64: &str) -> Result<Command, CommandError> {
        Command::AuthResponse(Arg::new("AUTH response", base64)?).checked()
    }

    pub fn vrfy(what: &str) -> Result<Command, CommandError> {
        Command::Vrfy(Text::new("VRFY argument", what)?).checked()
    }

    pub fn expn(list: &str) -> Result<Command, CommandError> {
        Command::Expn(Text::new("EXPN argument", list)?).checked()
    }

    pub fn help(topic: Option<&str>) -> Result<Command, CommandError> {
        Command::Help(topic.map(|t| Text::new("HELP topic", t)).transpose()?).checked()
    }

    pub fn etrn(node: &str) -> Result<Command, CommandError> {
        Command::Etrn(Arg::non_empty("ETRN node", node)?).checked()
    }

    /// A whole command line as typed, without its CRLF.
    pub fn line(line: &str) -> Result<Command, CommandError> {
        Command::Line(Text::new("command line", line)?).checked()
    }

    /// The line as a transcript may show it: AUTH data replaced by `<redacted>`, in a
    /// typed line too.
    pub fn shown(&self) -> String {
        match self {
            Command::Line(line) => redact_typed_auth(line.as_str()),
            Command::Auth {
                mechanism,
                initial: Some(_),
            } => format!("AUTH {mechanism} <redacted>"),
            Command::AuthResponse(_) => "<redacted>".to_owned(),
            other => other.to_string().trim_end_matches("\r\n").to_owned(),
        }
    }

    /// The verb, for naming the stage in messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Lhlo(_) => "LHLO",
            Command::Mail { .. } => "MAIL FROM",
            Command::Rcpt { .. } => "RCPT TO",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } | Command::AuthResponse(_) => "AUTH",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help(_) => "HELP",
            Command::Noop => "NOOP",
            Command::Etrn(_) => "ETRN",
            Command::Line(_) => "the command",
        }
    }

    fn checked(self) -> Result<Command, CommandError> {
        let len = self.to_string().len();
        let limit = match self {
            Command::AuthResponse(_) => MAX_AUTH_LINE,
            _ => MAX_COMMAND_LINE,
        };
        if len > limit {
            return Err(CommandError::TooLong { len });
        }
        Ok(self)
    }
}

/// A typed `AUTH mechanism initial-response` shown as `AUTH mechanism <redacted>`:
/// the response carries or derives from a secret.
fn redact_typed_auth(line: &str) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(verb), Some(mechanism), Some(_)) if verb.eq_ignore_ascii_case("AUTH") => {
            format!("{verb} {mechanism} <redacted>")
        }
        _ => line.to_owned(),
    }
}

fn params_of(params: &[&str]) -> Result<Vec<Arg>, CommandError> {
    params
        .iter()
        .map(|p| Arg::non_empty("ESMTP parameter", p))
        .collect()
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[Arg]) -> fmt::Result {
    for p in params {
        write!(f, " {p}")?;
    }
    Ok(())
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo(d) => write!(f, "EHLO {d}")?,
            Command::Helo(d) => write!(f, "HELO {d}")?,
            Command::Lhlo(d) => write!(f, "LHLO {d}")?,
            Command::Mail { from, params } => {
                write!(f, "MAIL FROM:<{from}>")?;
                write_params(f, params)?;
            }
            Command::Rcpt { to, params } => {
                write!(f, "RCPT TO:<{to}>")?;
                write_params(f, params)?;
            }
            Command::Data => f.write_str("DATA")?,
            Command::Bdat { size, last } => {
                write!(f, "BDAT {size}")?;
                if *last {
                    f.write_str(" LAST")?;
                }
            }
            Command::Rset => f.write_str("RSET")?,
            Command::Quit => f.write_str("QUIT")?,
            Command::StartTls => f.write_str("STARTTLS")?,
            Command::Auth { mechanism, initial } => {
                write!(f, "AUTH {mechanism}")?;
                if let Some(i) = initial {
                    write!(f, " {i}")?;
                }
            }
            Command::AuthResponse(r) => write!(f, "{r}")?,
            Command::Vrfy(t) => write!(f, "VRFY {t}")?,
            Command::Expn(t) => write!(f, "EXPN {t}")?,
            Command::Help(None) => f.write_str("HELP")?,
            Command::Help(Some(t)) => write!(f, "HELP {t}")?,
            Command::Noop => f.write_str("NOOP")?,
            Command::Etrn(n) => write!(f, "ETRN {n}")?,
            Command::Line(line) => f.write_str(line.as_str())?,
        }
        f.write_str("\r\n")
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({:?})", self.shown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes() {
        let cases = [
            (
                Command::ehlo("client.example.test").unwrap(),
                "EHLO client.example.test\r\n",
            ),
            (
                Command::helo("[127.0.0.1]").unwrap(),
                "HELO [127.0.0.1]\r\n",
            ),
            (
                Command::lhlo("client.example.test").unwrap(),
                "LHLO client.example.test\r\n",
            ),
            (
                Command::mail_from("a@example.test", &[]).unwrap(),
                "MAIL FROM:<a@example.test>\r\n",
            ),
            (Command::mail_from("", &[]).unwrap(), "MAIL FROM:<>\r\n"),
            (
                Command::mail_from("a@example.test", &["BODY=8BITMIME", "SIZE=1000"]).unwrap(),
                "MAIL FROM:<a@example.test> BODY=8BITMIME SIZE=1000\r\n",
            ),
            (
                Command::rcpt_to("b@example.test", &[]).unwrap(),
                "RCPT TO:<b@example.test>\r\n",
            ),
            (Command::Data, "DATA\r\n"),
            (Command::StartTls, "STARTTLS\r\n"),
            (Command::Rset, "RSET\r\n"),
            (
                Command::Bdat {
                    size: 1024,
                    last: false,
                },
                "BDAT 1024\r\n",
            ),
            (
                Command::Bdat {
                    size: 0,
                    last: true,
                },
                "BDAT 0 LAST\r\n",
            ),
            (
                Command::auth("PLAIN", Some("AGEAYg==")).unwrap(),
                "AUTH PLAIN AGEAYg==\r\n",
            ),
            (Command::auth("LOGIN", None).unwrap(), "AUTH LOGIN\r\n"),
            (Command::auth_response("dXNlcg==").unwrap(), "dXNlcg==\r\n"),
            (Command::auth_response("*").unwrap(), "*\r\n"),
            (Command::Quit, "QUIT\r\n"),
            (Command::vrfy("John Smith").unwrap(), "VRFY John Smith\r\n"),
            (Command::expn("staff").unwrap(), "EXPN staff\r\n"),
            (Command::help(None).unwrap(), "HELP\r\n"),
            (Command::help(Some("MAIL")).unwrap(), "HELP MAIL\r\n"),
            (Command::Noop, "NOOP\r\n"),
            (
                Command::etrn("@example.test").unwrap(),
                "ETRN @example.test\r\n",
            ),
            (Command::line("TURN").unwrap(), "TURN\r\n"),
            (
                Command::line("xyzzy\tplugh  ").unwrap(),
                "xyzzy\tplugh  \r\n",
            ),
        ];
        for (cmd, bytes) in cases {
            assert_eq!(cmd.to_string(), bytes);
        }
    }

    #[test]
    fn injection_is_refused() {
        for bad in [
            "a@example.test>\r\nRCPT TO:<evil@example.test",
            "a@example.test\n",
            "a@example.test\r",
            "a\0@example.test",
        ] {
            assert!(
                matches!(
                    Command::mail_from(bad, &[]),
                    Err(CommandError::ForbiddenChar { .. })
                ),
                "MAIL FROM {bad:?} should be refused"
            );
            assert!(matches!(
                Command::rcpt_to(bad, &[]),
                Err(CommandError::ForbiddenChar { .. })
            ));
            assert!(matches!(
                Command::ehlo(bad),
                Err(CommandError::ForbiddenChar { .. })
            ));
        }
        assert!(matches!(
            Command::mail_from("a@example.test", &["SIZE=1\r\nQUIT"]),
            Err(CommandError::ForbiddenChar { .. })
        ));
    }

    #[test]
    fn white_space_and_empty_are_refused() {
        assert_eq!(
            Command::ehlo("two words"),
            Err(CommandError::WhiteSpace { what: "EHLO name" })
        );
        assert_eq!(
            Command::ehlo(""),
            Err(CommandError::Empty { what: "EHLO name" })
        );
        assert_eq!(
            Command::rcpt_to("", &[]),
            Err(CommandError::Empty {
                what: "recipient address"
            })
        );
    }

    #[test]
    fn auth_data_never_shows() {
        let secret = "c2VjcmV0LXBhc3N3b3Jk";
        for cmd in [
            Command::auth("PLAIN", Some(secret)).unwrap(),
            Command::auth_response(secret).unwrap(),
        ] {
            assert!(!cmd.shown().contains(secret), "{}", cmd.shown());
            assert!(!format!("{cmd:?}").contains(secret), "{cmd:?}");
            assert!(cmd.shown().contains("<redacted>"));
        }
        assert_eq!(Command::auth("LOGIN", None).unwrap().shown(), "AUTH LOGIN");
        assert!(Command::auth_response("a\r\nQUIT").is_err());
    }

    #[test]
    fn auth_responses_may_be_longer_than_commands() {
        let long = "A".repeat(4000);
        assert!(matches!(
            Command::auth("XOAUTH2", Some(&long)),
            Err(CommandError::TooLong { .. })
        ));
        assert!(Command::auth_response(&long).is_ok());
        assert!(Command::auth_response(&"A".repeat(MAX_AUTH_LINE)).is_err());
    }

    #[test]
    fn line_length_is_bounded() {
        let local = "a".repeat(MAX_COMMAND_LINE);
        assert!(matches!(
            Command::rcpt_to(&format!("{local}@example.test"), &[]),
            Err(CommandError::TooLong { .. })
        ));
        // "RCPT TO:<" + path + ">\r\n" is 12 octets around the path.
        let path = "b".repeat(MAX_COMMAND_LINE - 12);
        assert!(Command::rcpt_to(&path, &[]).is_ok());
        let path = "b".repeat(MAX_COMMAND_LINE - 11);
        assert!(Command::rcpt_to(&path, &[]).is_err());
    }

    #[test]
    fn typed_lines_cannot_become_two() {
        for bad in ["NOOP\r\nRSET", "NOOP\n", "\rNOOP", "NO\0OP", ""] {
            assert!(Command::line(bad).is_err(), "{bad:?}");
        }
        for bad in ["a\r\nRSET", "a\n"] {
            assert!(Command::vrfy(bad).is_err(), "{bad:?}");
            assert!(Command::expn(bad).is_err(), "{bad:?}");
            assert!(Command::help(Some(bad)).is_err(), "{bad:?}");
            assert!(Command::etrn(bad).is_err(), "{bad:?}");
        }
        assert!(Command::etrn("two words").is_err());
        assert!(Command::line(&"x".repeat(510)).is_ok());
        assert_eq!(
            Command::line(&"x".repeat(511)),
            Err(CommandError::TooLong { len: 513 })
        );
    }

    #[test]
    fn a_typed_auth_line_hides_its_response() {
        let typed = Command::line("auth plain AGFsaWNlAHMzY3JldA==").unwrap();
        assert_eq!(typed.shown(), "auth plain <redacted>");
        assert!(!format!("{typed:?}").contains("AGFsaWNl"));
        assert_eq!(Command::line("AUTH LOGIN").unwrap().shown(), "AUTH LOGIN");
        assert_eq!(Command::line("VRFY root").unwrap().shown(), "VRFY root");
    }
}
