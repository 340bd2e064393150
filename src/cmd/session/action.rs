//! What a line typed at `outbox session` asks for: one of the session's own commands,
//! a line to send as it is, or a line refused before anything is sent.

use outbox::smtp::auth::{Mechanism, valid_user};

/// What to do with one typed line.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// An empty line: there is nothing to send (no SMTP command is empty).
    Nothing,
    /// `starttls`: STARTTLS, the handshake checked as configured, EHLO again.
    StartTls,
    /// `auth MECHANISM USER`: the password is asked for, then the AUTH exchange.
    Auth { mechanism: Mechanism, user: String },
    /// The line, to be sent as it is (it is checked as a command line on the way).
    Send(String),
    /// Nothing is sent, for this reason.
    Refuse(String),
}

/// A leading backslash sends the rest of the line as it is, where it would otherwise
/// be one of the session's own commands (`\AUTH PLAIN dGVzdA...`).
const ESCAPE: char = '\\';

/// What `line` asks for. The session's own commands are words of SMTP (STARTTLS,
/// AUTH), taken in any case; every other line is sent as typed. STARTTLS and BDAT are
/// never sent as typed: after a 220 to STARTTLS the server waits for a TLS handshake,
/// and BDAT's chunk follows it with no line end (RFC 3030 §2), so either would leave
/// the session out of step with the server.
pub fn parse(line: &str) -> Action {
    if line.is_empty() {
        return Action::Nothing;
    }
    let (escaped, text) = match line.strip_prefix(ESCAPE) {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let verb = words.first().copied().unwrap_or_default();
    if verb.eq_ignore_ascii_case("STARTTLS") {
        return match (escaped, words.len()) {
            (false, 1) => Action::StartTls,
            (false, _) => Action::Refuse(
                "STARTTLS takes no argument (RFC 3207 §4): type starttls alone".into(),
            ),
            (true, _) => Action::Refuse(
                "STARTTLS is not sent as typed: after its 220 the server waits for a TLS \
                 handshake; type starttls, and outbox does it"
                    .into(),
            ),
        };
    }
    if verb.eq_ignore_ascii_case("BDAT") {
        return Action::Refuse(
            "BDAT is not sent as typed: its chunk of the message follows it with no line \
             end (RFC 3030 §2), which a typed line cannot give; type DATA, and the message \
             after its 354"
                .into(),
        );
    }
    if !escaped
        && verb.eq_ignore_ascii_case("AUTH")
        && let [_, mechanism, user] = words[..]
        && let Some(mechanism) = Mechanism::from_name(mechanism)
    {
        if !valid_user(user) {
            return Action::Refuse("a user name cannot hold control characters".into());
        }
        return Action::Auth {
            mechanism,
            user: user.to_owned(),
        };
    }
    if escaped && text.is_empty() {
        return Action::Nothing;
    }
    Action::Send(text.to_owned())
}

/// Whether a line sent as typed may be kept in the history: not an AUTH line with its
/// initial response, nor a line that answers a 334 challenge, as either carries or
/// derives from a secret.
pub fn may_remember(line: &str, answers_challenge: bool) -> bool {
    if answers_challenge {
        return false;
    }
    let text = line.strip_prefix(ESCAPE).unwrap_or(line);
    let mut words = text.split_whitespace();
    let is_auth = words.next().is_some_and(|v| v.eq_ignore_ascii_case("AUTH"));
    !(is_auth && words.nth(1).is_some())
}

/// Whether a line sent as typed is an AUTH command, which never goes in clear to a
/// server that is not on this machine (`auth MECHANISM USER` neither).
pub fn is_auth(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|v| v.eq_ignore_ascii_case("AUTH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(line: &str) -> Action {
        Action::Send(line.to_owned())
    }

    #[test]
    fn the_sessions_own_commands_in_any_case() {
        assert_eq!(parse("starttls"), Action::StartTls);
        assert_eq!(parse("StartTLS"), Action::StartTls);
        assert_eq!(parse("  STARTTLS "), Action::StartTls);
        assert_eq!(
            parse("auth plain alice"),
            Action::Auth {
                mechanism: Mechanism::Plain,
                user: "alice".into()
            }
        );
        assert_eq!(
            parse("AUTH Login bob@example.test"),
            Action::Auth {
                mechanism: Mechanism::Login,
                user: "bob@example.test".into()
            }
        );
        assert_eq!(
            parse("auth scram-sha-256 carol"),
            Action::Auth {
                mechanism: Mechanism::ScramSha256,
                user: "carol".into()
            }
        );
    }

    #[test]
    fn every_other_line_is_sent_exactly_as_typed() {
        for line in [
            "EHLO client.example.test",
            "mail from:<a@example.test>  SIZE=10",
            "vrfy  John Smith ",
            "TURN",
            "xyzzy\tplugh",
            "   ",
            "DATA",
            "QUIT",
            // AUTH in other shapes: the exchange then runs line by line.
            "AUTH LOGIN",
            "AUTH PLAIN",
            "AUTH X-UNKNOWN alice",
            "AUTH PLAIN alice extra",
        ] {
            assert_eq!(parse(line), send(line), "{line:?}");
        }
        assert_eq!(parse(""), Action::Nothing);
    }

    #[test]
    fn a_backslash_sends_what_would_be_a_sessions_command() {
        assert_eq!(
            parse("\\AUTH PLAIN AGFsaWNlAHMzY3JldA=="),
            send("AUTH PLAIN AGFsaWNlAHMzY3JldA==")
        );
        assert_eq!(parse("\\\\x"), send("\\x"));
        assert_eq!(parse("\\NOOP"), send("NOOP"));
        assert_eq!(parse("\\"), Action::Nothing);
    }

    #[test]
    fn starttls_and_bdat_are_never_sent_as_typed() {
        for line in [
            "STARTTLS now",
            "\\STARTTLS",
            "\\starttls x",
            "BDAT 5 LAST",
            "bdat",
        ] {
            assert!(matches!(parse(line), Action::Refuse(_)), "{line:?}");
        }
        let Action::Refuse(why) = parse("BDAT 12 LAST") else {
            panic!("BDAT not refused")
        };
        assert!(why.contains("type DATA"), "{why}");
    }

    #[test]
    fn a_user_name_with_a_control_character_is_refused() {
        assert!(matches!(parse("auth plain al\u{1b}ice"), Action::Refuse(_)));
    }

    #[test]
    fn secrets_stay_out_of_the_history() {
        assert!(may_remember("EHLO x", false));
        assert!(may_remember("AUTH LOGIN", false));
        assert!(!may_remember("AUTH PLAIN AGFsaWNl", false));
        assert!(!may_remember("\\auth plain AGFsaWNl", false));
        assert!(!may_remember("YWxpY2U=", true));
    }

    #[test]
    fn auth_lines_are_known_as_such() {
        assert!(is_auth("auth login"));
        assert!(is_auth("  AUTH PLAIN x"));
        assert!(!is_auth("AUTHX"));
        assert!(!is_auth("EHLO auth"));
    }
}
