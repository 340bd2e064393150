//! The command line as typed: raw flags, checked by clap for form only. Meaning and
//! validation come in `settings` and `compose`.

use std::path::PathBuf;

use clap::Parser;

use crate::smtp::stage::QuitAfter;
use crate::smtp::tls::TlsMode;

/// The words that name a command of outbox rather than a recipient: those it has, and
/// those it is to have. A bare word among them is never taken as a local recipient
/// (a catch-all alias would deliver `outbox help` to somebody).
pub const COMMAND_WORDS: &[&str] = &[
    "sendmail",
    "queue",
    "system",
    "help",
    "probe",
    "serve",
    "session",
    "completions",
    "man",
    "command",
    "vrfy",
    "expn",
    "etrn",
    "noop",
    "rset",
];

/// The commands the top-level help lists besides the compose face's options.
const HELP_TEMPLATE: &str = "\
{about-with-newline}
{usage-heading} {usage}

Commands:
  outbox [OPTIONS] RECIPIENT...  Send a message composed from the options below
  outbox sendmail [OPTION...]    sendmail(1)'s command line: a whole message on stdin
  outbox queue list [--failed]   Show the messages waiting in the queue (also: mailq)
  outbox queue flush [-v]        Try every queued message now (also: sendmail -q)
  outbox queue flush --due       Only those whose retry time has come (for cron)
  outbox queue remove ID...      Remove messages from the queue
  outbox system setup            System mode, as root: the service's user, spool, unit, links
  outbox system remove           Undo it (a spool where mail waits is kept)
  outbox serve                   System mode's delivery service (systemd runs it)
  outbox probe [SERVER[:PORT]]   What a server offers: EHLO, TLS, certificate, timings; --check
  outbox session [SERVER]        Type SMTP commands yourself and see each reply
  outbox vrfy ADDR               Ask the server about an address (VRFY); expn LIST: a list
  outbox etrn DOMAIN             Ask the server to deliver what it holds for DOMAIN (RFC 1985)
  outbox noop, outbox rset       NOOP or RSET after EHLO (TLS, AUTH): is the server in step?
  outbox command 'LINE'          Send one line as typed (HELP MAIL, TURN...), show the reply
  outbox man                     The man page, in roff (outbox man | man -l -)
  outbox completions SHELL       The completion script for bash, zsh, fish, elvish, powershell
  outbox help [COMMAND]          This help, or a command's (sendmail, queue, probe, vrfy...)

{all-args}{after-help}";

/// Send a message over SMTP: compose it from flags and a body on standard input.
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "outbox",
    version,
    about,
    max_term_width = 100,
    help_template = HELP_TEMPLATE
)]
pub struct Cli {
    /// Recipients, written into To:
    #[arg(value_name = "RECIPIENT")]
    pub recipients: Vec<String>,

    /// Subject of the message
    #[arg(short = 's', long)]
    pub subject: Option<String>,

    /// Sender, with an optional display name: "Ops Team <ops@example.com>"
    /// [default: $USER@this host's name]
    #[arg(short = 'f', long, value_name = "ADDR")]
    pub from: Option<String>,

    /// Copy to these recipients (repeatable, or comma-separated)
    #[arg(short = 'c', long, value_name = "ADDR")]
    pub cc: Vec<String>,

    /// Blind copy: these get the message, but no header names them
    #[arg(short = 'b', long, value_name = "ADDR")]
    pub bcc: Vec<String>,

    /// Attach a file (repeatable); type guessed from the name.
    /// Override with FILE;type=MIME/TYPE;name=NAME
    #[arg(short = 'a', long = "attach", value_name = "FILE")]
    pub attach: Vec<String>,

    /// Add a header, "Name: value" (repeatable); replaces one outbox would write
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// HTML version of the body, sent with the text as multipart/alternative
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Where replies should go
    #[arg(long, value_name = "ADDR")]
    pub reply_to: Option<String>,

    /// The body text, instead of standard input
    #[arg(long, value_name = "TEXT", conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Read the body from this file, instead of standard input
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// Send the message even when its body is empty: by default nothing on standard
    /// input (and no --body, --html or -a) is refused, as `mail -E` skips it
    #[arg(long)]
    pub allow_empty: bool,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Print the envelope and the exact bytes that would be sent; connect to nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Delivery status notifications: never, or some of success,failure,delay
    /// (where the server offers DSN)
    #[arg(long, value_name = "WHEN")]
    pub notify: Option<String>,

    /// What a bounce returns: full (the message) or hdrs (its headers)
    #[arg(long, value_name = "WHAT")]
    pub ret: Option<String>,

    /// An envelope id for delivery status notifications
    #[arg(long, value_name = "ID")]
    pub envid: Option<String>,

    /// Speak LMTP (RFC 2033) to a delivery agent, over TCP (port 24 by default) or a
    /// Unix socket (--server unix:/path)
    #[arg(long)]
    pub lmtp: bool,

    /// Send the message with DATA even where the server offers CHUNKING (BDAT)
    #[arg(long)]
    pub no_chunking: bool,

    /// Keep a message that cannot be delivered now (4xx, server down) in the queue and
    /// exit 0; `outbox queue flush` sends it later
    #[arg(long)]
    pub queue: bool,

    /// End the session after this stage, with QUIT, and send no message: connect,
    /// greeting, ehlo, tls, auth, mail, rcpt (will the recipients be taken?) or data
    #[arg(long, value_name = "STAGE", value_parser = parse_quit_after,
          conflicts_with_all = ["queue", "dry_run"])]
    pub quit_after: Option<QuitAfter>,

    /// Show the SMTP dialogue on standard error
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Print one JSON object on standard output: the server, TLS, the extensions used,
    /// each recipient's reply, the queue id, the time each stage took, and any error
    #[arg(long, conflicts_with = "dry_run")]
    pub json: bool,
}

/// How to reach the server and what to do on the way: the flags every command that
/// talks to a server takes (compose, probe, session and the seed commands).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Use this account of the configuration file
    #[arg(short = 'A', long, value_name = "NAME")]
    pub account: Option<String>,

    /// SMTP server, HOST[:PORT] or [IPv6]:PORT [default: localhost, port 25 or, with
    /// implicit TLS, 465]
    #[arg(long, value_name = "HOST[:PORT]")]
    pub server: Option<String>,

    /// The server's port, where --server (or the configuration's server) names none
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Connect over IPv4 only
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Connect over IPv6 only
    #[arg(short = '6')]
    pub ipv6: bool,

    /// Bind this local address before connecting (the server's addresses of its
    /// family only)
    #[arg(long, value_name = "ADDR")]
    pub source_address: Option<std::net::IpAddr>,

    /// TLS: auto (implicit on port 465, else STARTTLS required except to loopback),
    /// starttls, implicit, none
    #[arg(long, value_name = "MODE", value_parser = parse_tls)]
    pub tls: Option<TlsMode>,

    /// Trust this CA certificate (PEM) besides the system's
    #[arg(long, value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// Accept any certificate: anyone in the path can then pose as the server
    #[arg(long)]
    pub tls_insecure: bool,

    /// Accept the certificate with this SHA-256 fingerprint (sha256:HEX, colons
    /// allowed), and only it, instead of a CA's trust and the name check
    #[arg(long, value_name = "sha256:HEX", conflicts_with = "tls_insecure")]
    pub tls_fingerprint: Option<String>,

    /// Client certificate (PEM, with its chain) for a relay that authenticates by
    /// certificate; with --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM); with --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// User name for SMTP AUTH
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// SASL mechanism: auto (the strongest offered), plain, login, cram-md5,
    /// scram-sha-256, xoauth2
    #[arg(long, value_name = "MECH")]
    pub auth: Option<String>,

    /// Run this shell command for the password (its first line of output); or set
    /// OUTBOX_PASSWORD, or password_command in the configuration
    #[arg(long, value_name = "CMD")]
    pub password_command: Option<String>,

    /// Name to give in EHLO [default: this host's fully qualified name]
    #[arg(long, value_name = "NAME")]
    pub ehlo_name: Option<String>,

    /// One time limit for connect and every reply, instead of RFC 5321's: seconds,
    /// or with a unit, 30s or 2m
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<f64>,
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    crate::config::parse_seconds(text)
        .ok_or_else(|| "give a number of seconds, or one with a unit: 30s, 2m".to_owned())
}

fn parse_quit_after(text: &str) -> Result<QuitAfter, String> {
    QuitAfter::parse(text)
        .ok_or_else(|| "expected connect, greeting, ehlo, tls, auth, mail, rcpt or data".to_owned())
}

fn parse_tls(text: &str) -> Result<TlsMode, String> {
    TlsMode::parse(text).ok_or_else(|| "expected auto, starttls, implicit or none".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("outbox").chain(args.iter().copied()))
    }

    #[test]
    fn compose_flags() {
        let cli = parse(&[
            "-s",
            "disk report",
            "-f",
            "Ops <ops@example.test>",
            "-c",
            "c@example.test",
            "-b",
            "b@example.test",
            "-a",
            "r.pdf",
            "-a",
            "x.bin;type=text/csv",
            "-H",
            "X-A: 1",
            "--html",
            "m.html",
            "--reply-to",
            "r@example.test",
            "--server",
            "[::1]:2525",
            "--ehlo-name",
            "client.example.test",
            "--timeout",
            "2.5",
            "-v",
            "a@example.test",
            "d@example.test",
        ])
        .unwrap();
        assert_eq!(cli.subject.as_deref(), Some("disk report"));
        assert_eq!(cli.from.as_deref(), Some("Ops <ops@example.test>"));
        assert_eq!(cli.cc, ["c@example.test"]);
        assert_eq!(cli.bcc, ["b@example.test"]);
        assert_eq!(cli.attach, ["r.pdf", "x.bin;type=text/csv"]);
        assert_eq!(cli.headers, ["X-A: 1"]);
        assert_eq!(cli.html, Some(PathBuf::from("m.html")));
        assert_eq!(cli.connect.server.as_deref(), Some("[::1]:2525"));
        assert_eq!(cli.connect.timeout, Some(2.5));
        assert!(cli.verbose);
        assert!(!cli.dry_run);
        assert_eq!(cli.recipients, ["a@example.test", "d@example.test"]);
    }

    #[test]
    fn defaults() {
        let cli = parse(&["a@example.test"]).unwrap();
        assert_eq!(cli.connect.server, None);
        assert_eq!(cli.connect.tls, None);
        assert_eq!(cli.connect.timeout, None);
        assert!(cli.attach.is_empty());
    }

    #[test]
    fn tls_and_auth_flags() {
        let cli = parse(&[
            "-A",
            "work",
            "--tls",
            "STARTTLS",
            "--tls-ca-file",
            "ca.pem",
            "--tls-insecure",
            "--user",
            "me",
            "--auth",
            "cram-md5",
            "--password-command",
            "pass show smtp",
            "a@example.test",
        ])
        .unwrap();
        assert_eq!(cli.connect.account.as_deref(), Some("work"));
        assert_eq!(cli.connect.tls, Some(TlsMode::StartTls));
        assert_eq!(cli.connect.tls_ca_file, Some(PathBuf::from("ca.pem")));
        assert!(cli.connect.tls_insecure);
        assert_eq!(cli.connect.user.as_deref(), Some("me"));
        assert_eq!(cli.connect.auth.as_deref(), Some("cram-md5"));
        assert_eq!(
            cli.connect.password_command.as_deref(),
            Some("pass show smtp")
        );
        assert!(parse(&["--tls", "sometimes", "a@example.test"]).is_err());
    }

    #[test]
    fn there_is_no_flag_for_the_password_itself() {
        for flag in ["--password", "--pass", "-p"] {
            assert!(
                parse(&[flag, "secret", "a@example.test"]).is_err(),
                "{flag}"
            );
        }
    }

    #[test]
    fn json_and_dry_run_conflict() {
        assert!(parse(&["--json", "a@example.test"]).unwrap().json);
        assert!(parse(&["--json", "--dry-run", "a@example.test"]).is_err());
    }

    #[test]
    fn body_and_body_file_conflict() {
        assert!(parse(&["--body", "x", "--body-file", "f", "a@example.test"]).is_err());
    }

    #[test]
    fn unknown_flag_is_an_error() {
        assert!(parse(&["--no-such-flag", "a@example.test"]).is_err());
        assert!(parse(&["--timeout", "soon", "a@example.test"]).is_err());
        assert!(parse(&["--port", "0", "a@example.test"]).is_err());
        assert!(parse(&["--port", "65536", "a@example.test"]).is_err());
    }

    #[test]
    fn timeout_takes_a_unit_and_port_a_flag() {
        for (text, secs) in [
            ("5", 5.0),
            ("5s", 5.0),
            ("2.5s", 2.5),
            ("2m", 120.0),
            (" 1m ", 60.0),
        ] {
            let cli = parse(&["--timeout", text, "a@example.test"]).unwrap();
            assert_eq!(cli.connect.timeout, Some(secs), "{text}");
        }
        for bad in ["5h", "s", "m5", "5 s x", "-", "5ss"] {
            assert!(
                parse(&["--timeout", bad, "a@example.test"]).is_err(),
                "{bad}"
            );
        }
        let cli = parse(&["--port", "587", "a@example.test"]).unwrap();
        assert_eq!(cli.connect.port, Some(587));
    }
}
