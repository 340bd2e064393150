//! `outbox man`, `outbox completions SHELL` and `outbox --version`: what tells a
//! person (and a shell) what outbox has. The man page and the completions are made
//! from the same clap definitions as the command lines, so they cannot drift apart.

use std::ffi::OsString;

use clap::{Arg, Command, CommandFactory, ValueEnum, value_parser};
use clap_complete::Shell;

use outbox::cli::Cli;
use outbox::exit;

use super::output::say;

/// Every command of outbox as one clap tree: the compose face with the others as its
/// subcommands (clap adds `help`). The sendmail face's command line is sendmail(1)'s,
/// parsed by hand, so it is described rather than defined.
pub fn tree() -> Command {
    Cli::command()
        .subcommand(
            Command::new("sendmail")
                .about("sendmail(1)'s command line: a whole message on standard input")
                .long_about(
                    "sendmail(1)'s command line: a whole message on standard input \
                     (-t, -i, -f, -F, -N, -R, -V, -oX, -q, -bp...; see outbox help \
                     sendmail). Installed as sendmail or mailq, outbox is this face.",
                )
                .arg(
                    Arg::new("args")
                        .value_name("OPTION")
                        .num_args(0..)
                        .trailing_var_arg(true)
                        .allow_hyphen_values(true),
                ),
        )
        .subcommand(super::queue::command())
        .subcommand(super::system::command())
        .subcommand(super::serve::command())
        .subcommand(super::probe::command())
        .subcommand(super::session::command())
        .subcommands(super::seed::commands())
        .subcommand(Command::new("man").about("Print outbox's man page (roff) on standard output"))
        .subcommand(
            Command::new("completions")
                .about("Print the completion script for a shell")
                .arg(
                    Arg::new("shell")
                        .value_name("SHELL")
                        .required(true)
                        .value_parser(value_parser!(Shell)),
                ),
        )
}

/// `outbox man`: the page, for `man -l -` or a man1 directory.
pub fn man(args: &[OsString]) -> anyhow::Result<u8> {
    if let Some(extra) = args.first() {
        say!("outbox: man takes no argument (got {extra:?}); it prints the page for outbox(1)");
        return Ok(exit::USAGE);
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(tree()).render(&mut page)?;
    Ok(print(&page))
}

/// `outbox completions SHELL`: the script for bash, zsh, fish, elvish or PowerShell.
pub fn completions(args: &[OsString]) -> anyhow::Result<u8> {
    let names = || {
        clap_complete::Shell::value_variants()
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let shell = match args {
        [one] => one.to_str().and_then(|s| s.parse::<Shell>().ok()),
        _ => None,
    };
    let Some(shell) = shell else {
        say!("outbox: completions takes one shell, of {}", names());
        return Ok(exit::USAGE);
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut tree(), "outbox", &mut script);
    Ok(print(&script))
}

/// `outbox --version`: the version, the TLS library it runs with and what it has.
pub fn version() -> String {
    format!(
        "outbox {}\n\
         TLS: {} (through the openssl crate; built against {})\n\
         has: STARTTLS and implicit TLS (certificate and name checked), AUTH PLAIN, LOGIN, \
         CRAM-MD5, SCRAM-SHA-256 and XOAUTH2, PIPELINING, CHUNKING, 8BITMIME, SMTPUTF8, \
         DSN, SIZE, ENHANCEDSTATUSCODES, LMTP, the queue, bounces (RFC 3464), syslog, \
         system mode (outbox serve)\n",
        env!("CARGO_PKG_VERSION"),
        openssl::version::version(),
        openssl_built_against(),
    )
}

/// The OpenSSL version outbox was compiled against, from its version number.
fn openssl_built_against() -> String {
    // OPENSSL_VERSION_NUMBER is 0xMNN00PP0L for 3.x (major, minor, patch).
    let n = openssl::version::number();
    format!(
        "OpenSSL {}.{}.{}",
        (n >> 28) & 0xf,
        (n >> 20) & 0xff,
        (n >> 4) & 0xff
    )
}

/// Writes what was generated (UTF-8 text) to standard output.
fn print(bytes: &[u8]) -> u8 {
    match super::output::stdout_text(&String::from_utf8_lossy(bytes)) {
        Ok(()) => exit::OK,
        Err(e) => {
            say!("outbox: cannot write to standard output: {e}");
            exit::IOERR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_a_valid_clap_command_with_every_command() {
        let tree = tree();
        tree.clone().debug_assert();
        let names: Vec<&str> = tree.get_subcommands().map(|c| c.get_name()).collect();
        assert_eq!(
            names,
            [
                "sendmail",
                "queue",
                "system",
                "serve",
                "probe",
                "session",
                "vrfy",
                "expn",
                "etrn",
                "noop",
                "rset",
                "command",
                "man",
                "completions"
            ]
        );
    }

    #[test]
    fn the_version_names_the_tls_library_it_runs_with() {
        let text = version();
        assert!(text.starts_with(&format!("outbox {}\n", env!("CARGO_PKG_VERSION"))));
        assert!(text.contains(openssl::version::version()), "{text}");
        assert!(text.contains("built against OpenSSL 3."), "{text}");
    }
}
