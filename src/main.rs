use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use outbox::cli::Cli;
use outbox::error::Error;
use outbox::exit;

mod cmd;

use cmd::output::say;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let program = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let first = args.get(1).and_then(|a| a.to_str());
    let result = match (program.as_str(), first) {
        // Installed as sendmail (or mailq), outbox speaks sendmail(1).
        ("sendmail" | "mailq" | "newaliases", _) => cmd::sendmail::run(&program, &args[1..]),
        (_, Some("sendmail")) => cmd::sendmail::run("sendmail", &args[2..]),
        (_, Some("queue")) => cmd::queue::run(&args[2..]),
        (_, Some("serve")) => cmd::serve::run(&args[2..]),
        (_, Some("probe")) => cmd::probe::run(&args[2..]),
        (_, Some("session")) => cmd::session::run(&args[2..]),
        (_, Some("man")) => cmd::docs::man(&args[2..]),
        (_, Some("completions")) => cmd::docs::completions(&args[2..]),
        // The version and what it was built with; clap's own would say only the first.
        (_, Some("--version" | "-V")) if args.len() == 2 => {
            cmd::output::out!("{}", cmd::docs::version().trim_end());
            Ok(exit::OK)
        }
        (_, Some("help")) => cmd::help::run(&args[2..]),
        (_, Some(word)) if outbox::seed::Seed::from_name(word).is_some() => {
            cmd::seed::run(word, &args[2..])
        }
        (_, Some("system")) => cmd::system::run(&args[2..]),
        // A command of a later version, not a recipient named after it.
        (_, Some(word)) if cmd::help::is_command_word(word) => {
            Err(cmd::help::unknown_command(word).into())
        }
        _ => match Cli::try_parse_from(&args) {
            Ok(cli) => cmd::compose::run(&cli),
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() {
                    exit::USAGE
                } else {
                    exit::OK
                });
            }
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = match e.downcast_ref::<Error>() {
                Some(err) => exit::code(err),
                None => exit::SOFTWARE,
            };
            say!("outbox: {e}");
            ExitCode::from(code)
        }
    }
}
