//! Validated settings for a session, from the command line and the environment.

use std::net::IpAddr;
use std::time::Duration;

use crate::cli::Cli;
use crate::error::Error;
use crate::smtp::session::Timeouts;
use crate::smtp::transport::ServerAddr;

/// How to reach the server and how to behave on the way.
#[derive(Clone, Debug)]
pub struct Settings {
    pub server: ServerAddr,
    /// The EHLO name; when `None`, this host's name (see [`default_ehlo_name`]).
    pub ehlo_name: Option<String>,
    pub timeouts: Timeouts,
    pub verbose: bool,
}

impl Settings {
    pub fn from_cli(cli: &Cli) -> Result<Settings, Error> {
        let server = ServerAddr::parse(&cli.server).map_err(Error::Usage)?;
        let timeouts = match cli.timeout {
            None => Timeouts::default(),
            Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => {
                Timeouts::uniform(Duration::from_secs_f64(secs))
            }
            Some(secs) => {
                return Err(Error::Usage(format!(
                    "--timeout {secs}: give a number of seconds above 0 and at most 86400"
                )));
            }
        };
        if let Some(name) = &cli.ehlo_name
            && (name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(Error::Usage(format!(
                "--ehlo-name {:?} must be a domain or an address literal",
                name.escape_debug().to_string()
            )));
        }
        Ok(Settings {
            server,
            ehlo_name: cli.ehlo_name.clone(),
            timeouts,
            verbose: cli.verbose,
        })
    }
}

/// This host's name, as the kernel has it.
pub fn hostname() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        "localhost".to_owned()
    } else {
        name
    }
}

/// The EHLO name when none is set: the host name if it is fully qualified, else the
/// address literal of our end of the connection, which RFC 5321 §4.1.4 allows when
/// the host has no meaningful name.
pub fn default_ehlo_name(local: Option<IpAddr>) -> String {
    let name = hostname();
    if name.contains('.') {
        return name;
    }
    match local {
        Some(IpAddr::V4(ip)) => format!("[{ip}]"),
        Some(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
        None => name,
    }
}

/// Who is running outbox, for the default sender: `$USER`, `$LOGNAME`, or the
/// passwd entry of the process's owner (daemons and cron jobs may set neither).
pub fn user_name() -> Option<String> {
    let valid = |u: &String| {
        !u.is_empty() && !u.contains(|c: char| c.is_control() || c.is_whitespace() || c == '@')
    };
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(valid)
        .or_else(|| passwd_name().filter(valid))
}

fn passwd_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's real user; std has no getuid().
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<Settings, Error> {
        let cli = Cli::try_parse_from(std::iter::once("outbox").chain(args.iter().copied()))
            .expect("clap accepts these");
        Settings::from_cli(&cli)
    }

    #[test]
    fn timeout_lowers_every_limit() {
        let s = settings(&["--timeout", "3", "a@example.test"]).unwrap();
        assert_eq!(s.timeouts, Timeouts::uniform(Duration::from_secs(3)));
        let s = settings(&["a@example.test"]).unwrap();
        assert_eq!(s.timeouts.data_end, Duration::from_secs(600));
        assert_eq!(s.timeouts.connect, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--timeout", "0", "a@example.test"][..],
            &["--timeout=-1", "a@example.test"],
            &["--timeout", "NaN", "a@example.test"],
            &["--server", "host:99999", "a@example.test"],
            &["--ehlo-name", "two words", "a@example.test"],
        ] {
            assert!(matches!(settings(args), Err(Error::Usage(_))), "{args:?}");
        }
    }

    #[test]
    fn passwd_lookup_finds_the_owner() {
        // The test runs as some user that has a passwd entry on any sane machine.
        let name = passwd_name().expect("the test user is in /etc/passwd");
        assert!(!name.is_empty());
    }

    #[test]
    fn ehlo_literal_when_no_domain() {
        let name = default_ehlo_name(Some("127.0.0.1".parse().unwrap()));
        assert!(name.contains('.'), "{name}");
        let v6 = default_ehlo_name(Some("::1".parse().unwrap()));
        assert!(v6.contains('.') || v6 == "[IPv6:::1]", "{v6}");
    }
}
