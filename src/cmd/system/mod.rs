//! `outbox system setup|remove`: system mode made and unmade in one command each, as
//! root. Each step says on standard output what it did, or that it found things as
//! they should be; a second run changes nothing and says so.
//!
//! - `setup`: the service's user, the spool, the configuration, the unit, the links,
//!   the start;
//! - `config`: the set-up's step for the configuration file;
//! - `remove`: the same backwards, keeping a spool where mail still waits.

mod config;
mod remove;
mod setup;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use outbox::spool::Spool;
use outbox::system::{self, DEFAULT_CONFIG, DEFAULT_UNIT_DIR, DEFAULT_USER, links};
use outbox::{Error, exit};

use super::output::{out, say};

/// System mode: one spool for every local user, and the service that delivers it.
#[derive(Parser, Debug)]
#[command(name = "outbox system", max_term_width = 100)]
struct SystemCli {
    #[command(subcommand)]
    command: SystemCommand,
}

#[derive(Subcommand, Debug)]
enum SystemCommand {
    /// Make the system set-up (as root): the service's user, the spool, the
    /// configuration, the systemd unit, the sendmail and mailq links; then start it
    Setup(SetupArgs),
    /// Undo it (as root): stop the service, remove the unit and the links (putting back
    /// what --force moved aside), and the spool if no mail waits in it
    Remove(RemoveArgs),
}

/// What both commands are told.
#[derive(Args, Debug, Clone)]
struct Places {
    /// The service's user (and the group of the same name, when the user is made)
    #[arg(long = "user", value_name = "NAME", default_value = DEFAULT_USER)]
    user: String,
    /// The spool's root [default: $OUTBOX_SPOOL, else /var/spool/outbox]
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// The service's configuration file
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Where the systemd unit goes
    #[arg(long, value_name = "DIR", default_value = DEFAULT_UNIT_DIR)]
    unit_dir: PathBuf,
    /// The sendmail and mailq links go in DIR [default: /usr/sbin/sendmail,
    /// /usr/bin/mailq, /usr/lib/sendmail]
    #[arg(long, value_name = "DIR", conflicts_with = "no_links")]
    links_in: Option<PathBuf>,
    /// Make (or remove) no sendmail or mailq link
    #[arg(long)]
    no_links: bool,
}

#[derive(Args, Debug)]
struct SetupArgs {
    #[command(flatten)]
    places: Places,
    /// Only the members of this existing group may submit mail [default: every
    /// local user]
    #[arg(long, value_name = "GROUP")]
    submit_group: Option<String>,
    /// Install, but do not start the service
    #[arg(long)]
    no_start: bool,
    /// Move a file that is not outbox's out of a link's way, to PATH.before-outbox
    /// (remove puts it back)
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct RemoveArgs {
    #[command(flatten)]
    places: Places,
    /// Also remove the spool whatever it holds, the configuration file, and the user
    /// and group
    #[arg(long)]
    purge: bool,
}

impl Places {
    fn spool_root(&self) -> PathBuf {
        self.spool.clone().unwrap_or_else(Spool::default_root)
    }

    /// The spool's root and the configuration, as absolute paths: the unit and the
    /// commands said to the administrator name them from anywhere.
    fn absolute(&self) -> Result<(PathBuf, PathBuf), Failure> {
        let absolute =
            |path: &Path| std::path::absolute(path).map_err(|e| Failure::io("resolve", path, e));
        Ok((absolute(&self.spool_root())?, absolute(&self.config)?))
    }

    /// What setup and removal both check first: the user's name, and where this
    /// program, the spool and the configuration are. Returns the program's path, the
    /// spool's root and the configuration file, absolute.
    fn checked(&self) -> Result<(PathBuf, PathBuf, PathBuf), Failure> {
        if !system::account::valid_name(&self.user) {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "{:?} cannot name the service's user: a letter or _ first, then letters, \
                     digits, _ . -, at most {} in all",
                    self.user,
                    system::account::NAME_MAX
                ),
            ));
        }
        let binary = system::this_binary().map_err(|e| {
            Failure::new(
                exit::SOFTWARE,
                format!("cannot find the path of this program: {e}"),
            )
        })?;
        let (spool_root, config) = self.absolute()?;
        Ok((binary, spool_root, config))
    }

    fn unit_file(&self) -> PathBuf {
        self.unit_dir.join(system::UNIT_NAME)
    }

    fn links(&self) -> Vec<PathBuf> {
        match (&self.links_in, self.no_links) {
            (_, true) => Vec::new(),
            (Some(dir), false) => links::links_in(dir),
            (None, false) => links::DEFAULT_LINKS.iter().map(PathBuf::from).collect(),
        }
    }

    /// Whether the unit is where systemd reads the administrator's units.
    fn unit_dir_is_systemds(&self) -> bool {
        self.unit_dir == Path::new(DEFAULT_UNIT_DIR)
    }
}

/// The command's clap definition, named as a subcommand of `outbox`, for the man
/// page and the completions.
pub fn command() -> clap::Command {
    <SystemCli as clap::CommandFactory>::command().name("system")
}

pub fn run(args: &[OsString]) -> anyhow::Result<u8> {
    let cli: SystemCli = match super::parse_subcommand("outbox system", args) {
        Ok(cli) => cli,
        Err(code) => return Ok(code),
    };
    let (word, result) = match &cli.command {
        SystemCommand::Setup(args) => ("setup", only_root("setup").and_then(|()| setup::run(args))),
        SystemCommand::Remove(args) => (
            "remove",
            only_root("remove").and_then(|()| remove::run(args)),
        ),
    };
    match result {
        Ok(()) => Ok(exit::OK),
        Err(failure) => {
            say!("outbox system {word}: {failure}");
            Ok(failure.code)
        }
    }
}

/// The set-up makes a system user and files owned by it: root's work.
fn only_root(word: &str) -> Result<(), Failure> {
    if outbox::passwd::effective_uid() == 0 {
        return Ok(());
    }
    Err(Failure::new(
        exit::NOPERM,
        format!(
            "must be run as root: it {} a system user, the spool, the unit and the links \
             (try: sudo outbox system {word} ...)",
            if word == "setup" { "makes" } else { "removes" }
        ),
    ))
}

/// The service's user as the set-up found or made it.
pub struct Service {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub group: String,
}

/// Why a step stopped the command, and the exit code that says so.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub text: String,
}

impl Failure {
    pub fn new(code: u8, text: impl Into<String>) -> Failure {
        Failure {
            code,
            text: text.into(),
        }
    }

    /// A local I/O failure on `path` (74).
    pub fn io(what: &str, path: &Path, e: std::io::Error) -> Failure {
        Failure::new(
            exit::IOERR,
            format!("cannot {what} {}: {e}", path.display()),
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<system::tool::ToolError> for Failure {
    fn from(e: system::tool::ToolError) -> Failure {
        Failure::new(system::EX_OSERR, e.to_string())
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::new(exit::code(&e), e.to_string())
    }
}

/// The lines a command says, one per step, and whether any step changed something.
#[derive(Default)]
pub struct Steps {
    changed: bool,
}

impl Steps {
    /// `step` changed something, as `text` says.
    pub fn did(&mut self, step: &str, text: impl fmt::Display) {
        self.changed = true;
        out!("{step}: {text}");
    }

    /// `step` found things as they should be, or had nothing to do.
    pub fn found(&mut self, step: &str, text: impl fmt::Display) {
        out!("{step}: {text}");
    }

    /// Something the administrator should know, which changes nothing.
    pub fn warn(&mut self, text: impl fmt::Display) {
        say!("outbox: warning: {text}");
    }

    pub fn changed(&self) -> bool {
        self.changed
    }
}

/// The mode bits of `mode` in octal, as ls -l's readers know them.
pub fn octal(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<SystemCli, clap::Error> {
        SystemCli::try_parse_from(std::iter::once("outbox system").chain(args.iter().copied()))
    }

    #[test]
    fn setup_defaults() {
        let SystemCommand::Setup(args) = parse(&["setup"]).unwrap().command else {
            panic!("not setup");
        };
        assert_eq!(args.places.user, "outbox");
        assert_eq!(args.places.config, Path::new("/etc/outbox/config.toml"));
        assert_eq!(
            args.places.unit_file(),
            Path::new("/etc/systemd/system/outbox.service")
        );
        assert_eq!(
            args.places.links(),
            [
                Path::new("/usr/sbin/sendmail"),
                Path::new("/usr/bin/mailq"),
                Path::new("/usr/lib/sendmail")
            ]
        );
        assert!(args.places.unit_dir_is_systemds());
        assert!(!args.no_start && !args.force && args.submit_group.is_none());
    }

    #[test]
    fn setup_flags() {
        let SystemCommand::Setup(args) = parse(&[
            "setup",
            "--user",
            "mailer",
            "--submit-group",
            "mailers",
            "--spool",
            "/srv/spool",
            "--config",
            "/srv/outbox.toml",
            "--unit-dir",
            "/run/units",
            "--links-in",
            "/opt/bin",
            "--no-start",
            "--force",
        ])
        .unwrap()
        .command
        else {
            panic!("not setup");
        };
        assert_eq!(args.places.user, "mailer");
        assert_eq!(args.submit_group.as_deref(), Some("mailers"));
        assert_eq!(args.places.spool_root(), Path::new("/srv/spool"));
        assert_eq!(
            args.places.links(),
            [Path::new("/opt/bin/sendmail"), Path::new("/opt/bin/mailq")]
        );
        assert!(!args.places.unit_dir_is_systemds());
        assert!(args.no_start && args.force);
    }

    #[test]
    fn remove_flags() {
        let SystemCommand::Remove(args) =
            parse(&["remove", "--purge", "--no-links"]).unwrap().command
        else {
            panic!("not remove");
        };
        assert!(args.purge);
        assert!(args.places.links().is_empty());
        // Flags of the set-up alone are refused.
        assert!(parse(&["remove", "--force"]).is_err());
        assert!(parse(&["remove", "--submit-group", "g"]).is_err());
        assert!(parse(&["setup", "--purge"]).is_err());
    }

    #[test]
    fn links_in_and_no_links_conflict() {
        assert!(parse(&["setup", "--links-in", "/opt/bin", "--no-links"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["install"]).is_err());
    }

    #[test]
    fn modes_in_octal() {
        assert_eq!(octal(0o40755), "0755");
        assert_eq!(octal(0o3733), "3733");
        assert_eq!(octal(0o100600), "0600");
    }
}
