//! The seed commands: `outbox vrfy ADDR`, `expn LIST`, `etrn DOMAIN`, `noop`, `rset`
//! and `command 'LINE'`. Each opens a session as the compose face would (greeting,
//! EHLO, TLS and AUTH as configured), sends its one command, prints the reply on
//! standard output and ends the session: with QUIT where the reply leaves it in
//! step, without where QUIT would be out of step (see [`outbox::seed::after`]). The
//! exit code judges the reply ([`outbox::seed::judge`]).

use std::ffi::OsString;
use std::time::Instant;

use clap::{Arg, ArgAction, Args, FromArgMatches};

use outbox::cli::ConnectArgs;
use outbox::seed::{self, After, Seed};
use outbox::smtp::command::Command;
use outbox::smtp::reply::Reply;
use outbox::{Client, Error, Options, Report, Settings, exit};

use super::output::say;

/// What every seed command takes: the connection flags, `-v`, `--json`, and the
/// words after its name (see [`command`]).
#[derive(Debug)]
struct SeedCli {
    connect: ConnectArgs,
    verbose: bool,
    json: bool,
    words: Vec<String>,
}

impl SeedCli {
    fn from_matches(m: &clap::ArgMatches) -> Result<SeedCli, clap::Error> {
        Ok(SeedCli {
            connect: ConnectArgs::from_arg_matches(m)?,
            verbose: m.get_flag("verbose"),
            json: m.get_flag("json"),
            words: m
                .get_many::<String>("words")
                .map(|w| w.cloned().collect())
                .unwrap_or_default(),
        })
    }
}

/// The clap definition of one seed command, named as on outbox's command line.
pub fn command(seed: Seed) -> clap::Command {
    let (about, value, help): (&str, &str, &str) = match seed {
        Seed::Vrfy => (
            "Ask the server whether it knows an address or user name (VRFY); exit 0 on \
             250, 251 or 252, 67 on 550, 551 or 553",
            "ADDR",
            "The address or user name (quote one with spaces)",
        ),
        Seed::Expn => (
            "Ask the server for the members of a mailing list (EXPN); exit 0 on 250 or \
             252, 67 on 550, 551 or 553",
            "LIST",
            "The list's name",
        ),
        Seed::Etrn => (
            "Ask the server to deliver the mail it holds for a domain now (ETRN, RFC \
             1985); exit 0 on 250 to 253",
            "DOMAIN",
            "DOMAIN, @DOMAIN (with its subdomains) or #QUEUE",
        ),
        Seed::Noop => (
            "Send NOOP: is the server there and answering? Exit 0 on 250",
            "ARG",
            "",
        ),
        Seed::Rset => (
            "Send RSET after EHLO (and TLS, AUTH); exit 0 on 250",
            "ARG",
            "",
        ),
        Seed::Line => (
            "Send one line as typed (HELP MAIL, TURN, anything) and show the reply; exit \
             0 on 2xx or 3xx. No CR, LF or NUL; at most 510 octets",
            "LINE",
            "The line; several words are joined with one space (quote the line to keep \
             its own spacing)",
        ),
    };
    let words = Arg::new("words").value_name(value).help(help);
    let words = match seed {
        Seed::Vrfy | Seed::Expn | Seed::Etrn => words.required(true).num_args(1),
        Seed::Line => words.required(true).num_args(1..),
        // Refused by Seed::command with a word on what to use instead.
        Seed::Noop | Seed::Rset => words.num_args(0..).hide(true),
    };
    let cmd = clap::Command::new(seed.name())
        .bin_name(format!("outbox {}", seed.name()))
        .max_term_width(100);
    // After the group, whose own doc comment would be taken for the command's.
    ConnectArgs::augment_args(cmd)
        .about(about)
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::SetTrue)
                .help("Show the SMTP dialogue on standard error"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .help(
                    "Print one JSON object on standard output (instead of the reply): the \
                     server, the command as sent, the reply, TLS, the time each stage took, \
                     and any error",
                ),
        )
        .arg(words)
}

/// Every seed command's clap definition, for the man page and the completions.
pub fn commands() -> impl Iterator<Item = clap::Command> {
    Seed::ALL.into_iter().map(command)
}

/// `outbox NAME ARGS...` for the seed command `name` (vrfy, ..., command).
pub fn run(name: &str, args: &[OsString]) -> anyhow::Result<u8> {
    let Some(seed) = Seed::from_name(name) else {
        return Err(super::help::unknown_command(name).into());
    };
    let argv =
        std::iter::once(OsString::from(format!("outbox {name}"))).chain(args.iter().cloned());
    let parsed = command(seed)
        .try_get_matches_from(argv)
        .and_then(|m| SeedCli::from_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Ok(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let cmd = match seed.command(&cli.words) {
        Ok(cmd) => cmd,
        Err(e) => return Ok(before_session(&e, None, cli.json)),
    };
    let (code, json) = match settings(&cli) {
        Ok(settings) => converse(&settings, &cmd, cli.json),
        Err(e) => return Ok(before_session(&e, Some(&cmd), cli.json)),
    };
    if cli.json {
        super::print_json(&json);
    }
    Ok(code)
}

/// A failure before any session (the command's words, the configuration): said, and
/// with `--json` the JSON of it. Returns the exit code.
fn before_session(e: &Error, cmd: Option<&Command>, json: bool) -> u8 {
    say!("outbox: {e}");
    let code = exit::code(e);
    if json {
        super::print_json(&seed::json(
            &Report::default(),
            cmd,
            None,
            None,
            Some(e),
            code,
        ));
    }
    code
}

/// The settings of the connection flags, the configuration file and `-v`.
fn settings(cli: &SeedCli) -> Result<Settings, Error> {
    super::connect_settings(&cli.connect, None, cli.verbose)
}

/// The session: open, the one command, its reply shown and judged, the end. Returns
/// the exit code and the JSON of it all.
fn converse(settings: &Settings, cmd: &Command, json: bool) -> (u8, serde_json::Value) {
    super::warn_about_tls(settings);
    let start = Instant::now();
    let mut report = Report::for_server(&settings.server);
    let transcript = Options::for_settings(settings).transcript;
    let failed = |e: Error, mut report: Report| {
        report.total = Some(start.elapsed());
        say!("outbox: {e}");
        let code = exit::code(&e);
        (
            code,
            seed::json(&report, Some(cmd), None, None, Some(&e), code),
        )
    };
    let mut client = match Client::open(settings, transcript, &mut report) {
        Ok(client) => client,
        Err(e) => return failed(e, report),
    };
    let reply = match client.exchange(cmd) {
        Ok(reply) => reply,
        Err(e) => return failed(e, client.finish()),
    };
    let mut code = exit::OK;
    if !json {
        code = show(&reply);
    }
    let verdict = seed::judge(cmd, &reply);
    let ended = end(&mut client, cmd, &reply);
    let mut report = client.finish();
    report.total = Some(start.elapsed());
    if verdict.error.is_some() {
        say!(
            "outbox: {:?} was not accepted: the server answered {} ({} expected)",
            cmd.shown(),
            reply.code,
            seed::expected_text(cmd)
        );
        code = verdict.code;
    }
    let json = seed::json(
        &report,
        Some(cmd),
        Some(&reply),
        Some(ended),
        verdict.error.as_ref(),
        code,
    );
    (code, json)
}

/// Prints every line of the reply on standard output, as the server sent it (server
/// text sanitised). A reader gone away is no failure; another trouble is 74.
fn show(reply: &Reply) -> u8 {
    match super::output::stdout_text(&format!("{reply}\n")) {
        Ok(()) => exit::OK,
        Err(e) => {
            say!("outbox: cannot write the reply to standard output: {e}");
            exit::IOERR
        }
    }
}

/// Gets the session ready to end as the reply leaves it: a pending AUTH exchange
/// cancelled, or the connection marked for closing without QUIT. Says how it ends.
fn end(client: &mut Client, cmd: &Command, reply: &Reply) -> After {
    let mut ended = seed::after(cmd, reply);
    match ended {
        After::Quit => {}
        After::HangUp(why) => client.session_mut().hang_up(why),
        After::CancelAuth => {
            if let Some(why) = client.cancel_auth() {
                ended = After::HangUp(why);
            }
        }
    }
    // A 421, or a connection lost on the way: nothing more could be said.
    if !matches!(ended, After::HangUp(_)) && !client.is_usable() {
        ended = After::HangUp("the connection is closed");
    }
    ended
}
