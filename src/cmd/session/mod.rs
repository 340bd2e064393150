//! `outbox session [OPTIONS] [SERVER[:PORT]]`: an interactive SMTP session for a
//! person at a terminal, or for a script on standard input. outbox connects, reads the
//! greeting, sends EHLO and does TLS and AUTH as configured, showing the dialogue as it
//! goes; then each typed line is sent as it is and its reply shown, but for the
//! session's own commands (`starttls`, `auth MECHANISM USER`) and the message after a
//! 354, which outbox sends dot-stuffed and ends itself.

mod action;
mod input;
mod screen;
mod secret;

use std::ffi::OsString;
use std::io::Stdout;

use clap::{CommandFactory, Parser};

use outbox::cli::ConnectArgs;
use outbox::client::Client;
use outbox::error::Error;
use outbox::seed::After;
use outbox::smtp::auth::{Credentials, Mechanism};
use outbox::smtp::command::Command;
use outbox::smtp::reply::Reply;
use outbox::smtp::stage::Stage;
use outbox::{Report, Settings, Transcript, exit};

use super::output::say;
use action::Action;
use input::{Input, Typed};
use screen::Screen;

/// Talk SMTP to a server yourself: outbox greets it, does TLS and AUTH as configured,
/// then sends each line you type and shows the reply
#[derive(Parser, Debug)]
#[command(
    name = "outbox session",
    max_term_width = 100,
    after_help = AFTER_HELP
)]
pub struct SessionArgs {
    /// The server, as --server takes it [default: --server, else the configuration's,
    /// else localhost]
    #[arg(value_name = "SERVER[:PORT]", conflicts_with = "server")]
    pub target: Option<String>,

    #[command(flatten)]
    pub connect: ConnectArgs,
}

const AFTER_HELP: &str = "\
Lines are sent as typed (no CR, LF or NUL, at most 510 characters), but for:
  starttls                 STARTTLS, the certificate checked as configured, EHLO again
  auth MECHANISM USER      AUTH (plain, login, cram-md5, scram-sha-256, xoauth2); the
                           password is asked for, not shown
  \\LINE                    LINE as typed, where it would be one of the above
After a 354, the message: Ctrl-D on an empty line ends it and outbox sends the final
\".\" (a line \".\" that you type is sent as \"..\" and arrives as \".\"). STARTTLS and
BDAT are never sent as typed. Ctrl-D at the prompt sends QUIT; Ctrl-C clears the line.
Not at a terminal, the lines of standard input are sent, and the message after a 354
is the rest of it.";

/// The prompt for a command.
const PROMPT: &str = "smtp> ";

/// The clap definition, for the man page and the completions.
pub fn command() -> clap::Command {
    SessionArgs::command()
        .name("session")
        .about("An interactive SMTP session: type commands, see each reply")
}

/// `outbox session ARGS...`.
pub fn run(args: &[OsString]) -> anyhow::Result<u8> {
    let args: SessionArgs = match super::parse_subcommand("outbox session", args) {
        Ok(args) => args,
        Err(code) => return Ok(code),
    };
    let settings = settings(&args)?;
    super::warn_about_tls(&settings);
    // Before connecting: a terminal that cannot be used must not keep a server waiting.
    let input = Input::open()?;
    let screen = Screen::new(std::io::stdout());
    let transcript = Transcript::new(Box::new(screen.clone()));
    let mut report = Report::for_server(&settings.server);
    let client = Client::open(&settings, Some(transcript), &mut report)?;
    if input.is_terminal() {
        screen.note(
            "each line you type is sent as it is; outbox's own: starttls, auth MECHANISM \
             USER, and \\LINE to send LINE as typed (outbox session --help)",
        );
        screen.note("Ctrl-D (or QUIT) ends the session; Ctrl-C clears the line");
    }
    let typing = Typing {
        client,
        settings,
        screen,
        input,
        challenged: false,
    };
    Ok(typing.run())
}

/// The settings, with the server the command line names first.
fn settings(args: &SessionArgs) -> Result<Settings, Error> {
    let settings = super::connect_settings(&args.connect, args.target.as_deref(), false)?;
    speaks_smtp(&settings)?;
    Ok(settings)
}

/// The session reads one reply to the end of a message, as SMTP has it; LMTP gives one
/// per accepted recipient (RFC 2033 §4.2), which typed lines keep no count of, so the
/// replies after the first would be taken for those of the commands that follow.
fn speaks_smtp(settings: &Settings) -> Result<(), Error> {
    match settings.lmtp {
        false => Ok(()),
        true => Err(Error::Usage(format!(
            "outbox session speaks SMTP, and the account for {} is LMTP (lmtp in the \
             configuration): name an SMTP server, or another account with -A",
            settings.server
        ))),
    }
}

/// The session is over, with this exit code: the server has closed it (221, 421, a
/// lost connection), so no QUIT is sent.
struct Over(u8);

/// A session being typed.
struct Typing {
    client: Client,
    settings: Settings,
    screen: Screen<Stdout>,
    input: Input,
    /// The last reply was a 334: the next line answers an AUTH challenge.
    challenged: bool,
}

impl Typing {
    fn run(mut self) -> u8 {
        loop {
            let step = match self.input.line(PROMPT) {
                Typed::Line(line) => self.typed(&line),
                Typed::Interrupted => Ok(()),
                Typed::Unreadable(why) => {
                    say!("outbox: {why}: nothing was sent");
                    Ok(())
                }
                Typed::End => {
                    self.finish();
                    return exit::OK;
                }
                Typed::Failed(why) => {
                    say!("outbox: {why}");
                    self.finish();
                    return exit::IOERR;
                }
            };
            if let Err(Over(code)) = step {
                return code;
            }
        }
    }

    fn typed(&mut self, line: &str) -> Result<(), Over> {
        match action::parse(line) {
            Action::Nothing => Ok(()),
            Action::Refuse(why) => {
                self.remember(line);
                say!("outbox: {why}: nothing was sent");
                Ok(())
            }
            Action::StartTls => {
                self.input.remember(line);
                let done = self.client.starttls(&self.settings);
                self.judge(done).map(drop)
            }
            Action::Auth { mechanism, user } => {
                self.input.remember(line);
                self.auth(mechanism, user)
            }
            Action::Send(text) => {
                self.remember(line);
                self.send(&text)
            }
        }
    }

    /// Keeps a line in the history unless it may carry a secret.
    fn remember(&mut self, line: &str) {
        if action::may_remember(line, self.challenged) {
            self.input.remember(line);
        }
    }

    /// Ends the session with QUIT; an AUTH exchange still open is cancelled first, or
    /// the QUIT would be taken for its answer.
    fn finish(mut self) {
        if self.challenged {
            self.client.cancel_auth();
        }
        self.client.finish();
    }

    fn send(&mut self, text: &str) -> Result<(), Over> {
        // After a 334 the line answers the challenge: it goes as an AUTH response,
        // which every transcript shows as `<redacted>` (RFC 4954 §4).
        let cmd = match self.challenged {
            true => Command::auth_response(text),
            false => Command::line(text),
        };
        let cmd = match cmd {
            Ok(cmd) => cmd,
            Err(e) => {
                say!("outbox: {e}: nothing was sent");
                return Ok(());
            }
        };
        if (self.challenged || action::is_auth(text)) && !self.may_send_secrets() {
            return Ok(());
        }
        if self.input.is_terminal() {
            // The terminal shows the line as it was typed.
            self.screen.skip_next(&format!("> {}", cmd.shown()));
        }
        let reply = self.client.exchange(&cmd);
        self.challenged = matches!(&reply, Ok(r) if r.code == 334);
        match self.judge(reply)? {
            Some(reply) => self.answered(&cmd, &reply),
            None => Ok(()),
        }
    }

    /// What a reply to a typed line means for the session: 354 asks for the
    /// message; 221 and 421 end it (RFC 5321 §3.8, §4.1.1.10); so does any other
    /// reply after which the server no longer reads commands (a 250 to TURN), as the
    /// seed commands judge it ([`outbox::seed::after`]).
    fn answered(&mut self, cmd: &Command, reply: &Reply) -> Result<(), Over> {
        match reply.code {
            354 => return self.message(),
            221 => return Err(Over(exit::OK)),
            421 => {
                say!("outbox: the server has closed the session");
                return Err(Over(exit::reply_code(Stage::Command, reply)));
            }
            // The next line answers the challenge.
            334 => return Ok(()),
            _ => {}
        }
        if let After::HangUp(why) = outbox::seed::after(cmd, reply) {
            self.client.session_mut().hang_up(why);
            say!("outbox: the session ends: {why}");
            return Err(Over(exit::OK));
        }
        Ok(())
    }

    fn message(&mut self) -> Result<(), Over> {
        self.screen.note(if self.input.is_terminal() {
            "type the message: Ctrl-D on an empty line ends it, and outbox sends the final \
             \".\" (a line \".\" you type is sent as \"..\" and arrives as \".\")"
        } else {
            "the rest of standard input is the message; outbox ends it with the final \".\""
        });
        let mut message = self.input.message();
        let reply = self.client.session_mut().typed_message(&mut message);
        drop(message);
        match self.judge(reply)? {
            Some(reply) if reply.code != 354 => self.answered(&Command::Data, &reply),
            _ => Ok(()),
        }
    }

    fn auth(&mut self, mechanism: Mechanism, user: String) -> Result<(), Over> {
        if !self.may_send_secrets() {
            return Ok(());
        }
        let what = match mechanism {
            Mechanism::XOAuth2 => "Token",
            _ => "Password",
        };
        let prompt = format!(
            "{what} for {user} at {} (not shown; Ctrl-C cancels): ",
            self.settings.server
        );
        let secret = match secret::ask(&prompt) {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                self.screen.note("AUTH cancelled: nothing was sent");
                return Ok(());
            }
            Err(e) => {
                say!("outbox: {e}");
                return Ok(());
            }
        };
        let credentials = Credentials { user, secret };
        let done = self.client.auth(mechanism, &credentials);
        self.judge(done).map(drop)
    }

    /// Whether credentials may go over this connection: under TLS, or to this machine,
    /// as for every face of outbox. Says why not.
    fn may_send_secrets(&mut self) -> bool {
        if self.client.may_send_credentials() {
            return true;
        }
        say!(
            "outbox: AUTH does not go in clear to {}, which is not on this machine: type \
             starttls first; nothing was sent",
            self.settings.server
        );
        false
    }

    /// A step's result: what it gave, or its error said; the session is over when the
    /// error has left the connection unusable.
    fn judge<T>(&mut self, result: Result<T, Error>) -> Result<Option<T>, Over> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                say!("outbox: {e}");
                match self.client.is_usable() {
                    true => Ok(None),
                    false => Err(Over(exit::code(&e))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outbox::cli::Cli;

    fn parse(args: &[&str]) -> Result<SessionArgs, clap::Error> {
        SessionArgs::try_parse_from(std::iter::once("outbox session").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_a_valid_clap_command() {
        command().debug_assert();
    }

    #[test]
    fn an_lmtp_server_is_refused_before_connecting() {
        let lmtp = Cli {
            lmtp: true,
            ..Cli::default()
        };
        let err = speaks_smtp(&Settings::from_cli(&lmtp).unwrap()).unwrap_err();
        assert!(
            matches!(&err, Error::Usage(why) if why.contains("is LMTP")),
            "{err}"
        );
        assert!(speaks_smtp(&Settings::from_cli(&Cli::default()).unwrap()).is_ok());
    }

    #[test]
    fn the_server_is_named_by_position_or_by_flag_not_both() {
        let args = parse(&["mx.example.test:587", "--tls", "starttls"]).unwrap();
        assert_eq!(args.target.as_deref(), Some("mx.example.test:587"));
        assert_eq!(args.connect.server, None);
        let args = parse(&["--server", "mx.example.test", "--user", "me"]).unwrap();
        assert_eq!(args.target, None);
        assert_eq!(args.connect.server.as_deref(), Some("mx.example.test"));
        assert_eq!(args.connect.user.as_deref(), Some("me"));
        assert!(parse(&["a.example.test", "--server", "b.example.test"]).is_err());
        assert!(parse(&["a.example.test", "b.example.test"]).is_err());
    }
}
