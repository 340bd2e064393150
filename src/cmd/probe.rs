//! `outbox probe [SERVER[:PORT]]`: what a server offers and how it protects the
//! connection, without sending mail; as a report for a person, `--json`, or a
//! monitoring plugin's status line and code (`--check`).

use std::ffi::OsString;

use clap::Parser;

use outbox::cli::ConnectArgs;
use outbox::error::Error;
use outbox::probe::{self, Status, Thresholds};
use outbox::smtp::session::Transcript;
use outbox::{Settings, exit};

use super::output::{out, say};

/// Report what a server offers and how it protects the connection, without sending mail
///
/// The greeting, EHLO in clear and under TLS (STARTTLS wherever offered), the TLS
/// version and the certificate chain (trusted? for the name? days left?), the time of
/// each step and the findings. Sends no MAIL and no AUTH (--user and the password
/// options are not used).
#[derive(Parser, Debug)]
#[command(name = "outbox probe", max_term_width = 100)]
struct ProbeCli {
    /// The server [default: --server, else the configuration's, else localhost:25]
    #[arg(value_name = "SERVER[:PORT]", conflicts_with = "server")]
    target: Option<String>,

    #[command(flatten)]
    connect: ConnectArgs,

    /// Answer as a monitoring plugin (Nagios, Icinga): one line `SMTP OK - ... |
    /// perfdata`, and exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    #[arg(long, conflicts_with = "json")]
    check: bool,

    /// A warning when the server's certificate has fewer days left than this
    #[arg(long, value_name = "DAYS", default_value_t = Thresholds::default().warn_days)]
    warn_days: u32,

    /// A problem (CRITICAL) when it has fewer days left than this
    #[arg(long, value_name = "DAYS", default_value_t = Thresholds::default().critical_days)]
    critical_days: u32,

    /// Show the SMTP dialogue on standard error
    #[arg(short = 'v', long)]
    verbose: bool,

    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
}

/// The command's clap definition, named as a subcommand of `outbox`, for the man
/// page and the completions.
pub fn command() -> clap::Command {
    <ProbeCli as clap::CommandFactory>::command().name("probe")
}

pub fn run(args: &[OsString]) -> anyhow::Result<u8> {
    let argv = std::iter::once(OsString::from("outbox probe")).chain(args.iter().cloned());
    let cli = match ProbeCli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return Ok(exit::OK);
            }
            // A plugin says UNKNOWN for a command line it cannot run.
            if wants_check(args) {
                out!("SMTP UNKNOWN - invalid command line (see outbox probe --help)");
                return Ok(Status::Unknown.code());
            }
            return Ok(exit::USAGE);
        }
    };
    let server = cli
        .target
        .clone()
        .or_else(|| cli.connect.server.clone())
        .unwrap_or_else(|| "the configured server".to_owned());
    let settings = match settings(&cli) {
        Ok(settings) => settings,
        Err(e) => return failed(&cli, &server, e),
    };
    super::warn_about_tls(&settings);
    let transcript = settings
        .verbose
        .then(|| Transcript::new(Box::new(std::io::stderr())));
    let thresholds = Thresholds {
        warn_days: cli.warn_days,
        critical_days: cli.critical_days,
    };
    let report = match probe::probe(&settings, transcript, thresholds) {
        Ok(report) => report,
        Err(e) => return failed(&cli, &settings.server.to_string(), e),
    };
    if cli.check {
        let (text, status) = probe::check_report(&report);
        print(&text);
        return Ok(status.code());
    }
    let code = report.exit_code();
    if cli.json {
        super::print_json(&probe::json(&report, code));
    } else {
        print(&probe::text(&report));
    }
    Ok(code)
}

/// The settings, from the command line over the configuration.
fn settings(cli: &ProbeCli) -> Result<Settings, Error> {
    super::connect_settings(&cli.connect, cli.target.as_deref(), cli.verbose)
}

/// A probe that found nothing to report: said as the mode asks, with its code.
fn failed(cli: &ProbeCli, server: &str, e: Error) -> anyhow::Result<u8> {
    if cli.check {
        let (text, status) = probe::check_failure(server, &e);
        print(&text);
        return Ok(status.code());
    }
    let code = exit::code(&e);
    if cli.json {
        super::print_json(&probe::json_failure(server, &e, code));
    }
    say!("outbox: {e}");
    Ok(code)
}

/// Whether `--check` is among the arguments, for a command line clap refused.
fn wants_check(args: &[OsString]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--check")
}

fn print(text: &str) {
    if let Err(e) = super::output::stdout_text(text) {
        say!("outbox: cannot write the report to standard output: {e}");
    }
}
