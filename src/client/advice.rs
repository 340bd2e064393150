//! Advice added to an error where the likely cause is on the caller's side and the
//! server's words alone do not say what to change.

use crate::error::Error;
use crate::settings::Settings;

/// `error` with a hint when one fits: nothing answers and no server was named (outbox
/// tried localhost), or the server wants a login that was not given (530, RFC 4954
/// §6: "Authentication required").
pub fn advise(error: Error, settings: &Settings) -> Error {
    let hint = match &error {
        Error::Connect { .. } if !settings.server_named => format!(
            "no server is configured, so outbox tried {}: name one with --server \
             HOST[:PORT] (and --port), or with server = \"HOST\" in the configuration \
             ($OUTBOX_CONFIG, ~/.config/outbox/config.toml or /etc/outbox/config.toml)",
            settings.server
        ),
        Error::Refused { reply, .. } if reply.code == 530 && settings.auth.is_none() => {
            "the server wants a login first: give --user NAME (the password then comes \
             from --password-command, OUTBOX_PASSWORD, the configuration or a prompt)"
                .to_owned()
        }
        _ => return error,
    };
    Error::Hint {
        error: Box::new(error),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::error::Stage;
    use crate::smtp::reply::parse_reply;
    use clap::Parser;

    fn settings(args: &[&str]) -> Settings {
        let cli =
            Cli::try_parse_from(std::iter::once("outbox").chain(args.iter().copied())).unwrap();
        Settings::from_cli(&cli).unwrap()
    }

    fn refused(wire: &str) -> Error {
        Error::Refused {
            stage: Stage::MailFrom,
            reply: parse_reply(wire.as_bytes()).unwrap().unwrap().0,
        }
    }

    fn refused_connection() -> Error {
        Error::Connect {
            server: "localhost:25".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        }
    }

    #[test]
    fn nothing_on_the_default_server_says_how_to_name_one() {
        let text = advise(refused_connection(), &settings(&[])).to_string();
        assert!(text.contains("no server is configured"), "{text}");
        assert!(text.contains("--server"), "{text}");
        assert!(text.contains("config.toml"), "{text}");
        let named = advise(refused_connection(), &settings(&["--server", "mx.x.test"]));
        assert!(!matches!(named, Error::Hint { .. }), "{named}");
    }

    #[test]
    fn authentication_required_hints_user() {
        let e = advise(
            refused("530 5.7.0 Authentication required\r\n"),
            &settings(&[]),
        );
        let text = e.to_string();
        assert!(text.contains("530 5.7.0 Authentication required"), "{text}");
        assert!(text.contains("--user"), "{text}");
        assert_eq!(crate::exit::code(&e), crate::exit::UNAVAILABLE);
        let logged_in = advise(
            refused("530 5.7.0 Authentication required\r\n"),
            &settings(&["--user", "me"]),
        );
        assert!(!matches!(logged_in, Error::Hint { .. }));
        let other = advise(refused("550 5.7.1 no\r\n"), &settings(&[]));
        assert!(!matches!(other, Error::Hint { .. }));
    }
}
