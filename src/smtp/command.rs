//! SMTP commands as values. Each formats itself with its CRLF; arguments are checked
//! when the value is made, so a command that exists is safe to put on the wire.

use std::fmt;

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;

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
    #[error("command line would be {len} octets, over the limit of {MAX_COMMAND_LINE}")]
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

/// One SMTP command (RFC 5321 §4.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(Arg),
    Helo(Arg),
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
    Quit,
}

impl Command {
    pub fn ehlo(domain: &str) -> Result<Command, CommandError> {
        Command::Ehlo(Arg::non_empty("EHLO name", domain)?).checked()
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

    /// The verb, for naming the stage in messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL FROM",
            Command::Rcpt { .. } => "RCPT TO",
            Command::Data => "DATA",
            Command::Quit => "QUIT",
        }
    }

    fn checked(self) -> Result<Command, CommandError> {
        let len = self.to_string().len();
        if len > MAX_COMMAND_LINE {
            return Err(CommandError::TooLong { len });
        }
        Ok(self)
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
            Command::Mail { from, params } => {
                write!(f, "MAIL FROM:<{from}>")?;
                write_params(f, params)?;
            }
            Command::Rcpt { to, params } => {
                write!(f, "RCPT TO:<{to}>")?;
                write_params(f, params)?;
            }
            Command::Data => f.write_str("DATA")?,
            Command::Quit => f.write_str("QUIT")?,
        }
        f.write_str("\r\n")
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
            (Command::Quit, "QUIT\r\n"),
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
}
