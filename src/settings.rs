//! Validated settings for a session, from the command line and the environment.

use std::net::IpAddr;
use std::time::Duration;

use crate::cli::Cli;
use crate::envelope::Mailbox;
use crate::error::Error;
use crate::smtp::command::Command;
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
            Some(secs) if (0.001..=86_400.0).contains(&secs) => {
                Timeouts::uniform(Duration::from_secs_f64(secs))
            }
            Some(secs) => {
                return Err(Error::Usage(format!(
                    "--timeout {secs}: give a number of seconds from 0.001 to 86400"
                )));
            }
        };
        if let Some(name) = &cli.ehlo_name {
            Command::ehlo(name).map_err(|e| Error::Usage(format!("--ehlo-name: {e}")))?;
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
    if Command::ehlo(&name).is_err() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// This host's fully qualified name: the kernel's name if it has a dot, else the first
/// dotted name /etc/hosts gives for it (as `hostname -f` finds it on most systems;
/// no DNS query is made), else the kernel's name as it is.
pub fn fqdn() -> String {
    let name = hostname();
    if name.contains('.') {
        return name;
    }
    std::fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|hosts| fqdn_from_hosts(&hosts, &name))
        .unwrap_or(name)
}

fn fqdn_from_hosts(hosts: &str, name: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return None;
        }
        names
            .iter()
            .find(|n| n.contains('.') && Command::ehlo(n).is_ok())
            .map(|n| (*n).to_owned())
    })
}

/// The EHLO name when none is set: this host's fully qualified name, else the
/// address literal of our end of the connection, which RFC 5321 §4.1.4 allows when
/// the host has no meaningful name.
pub fn default_ehlo_name(local: Option<IpAddr>) -> String {
    ehlo_name_for(fqdn(), local)
}

fn ehlo_name_for(fqdn: String, local: Option<IpAddr>) -> String {
    if fqdn.contains('.') {
        return fqdn;
    }
    match local {
        Some(IpAddr::V4(ip)) => format!("[{ip}]"),
        Some(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
        None => fqdn,
    }
}

/// The sender when none is given: `USER@fqdn`, the user from `$USER`, `$LOGNAME`, or
/// the passwd entry of the process's owner (daemons and cron jobs may set neither),
/// whichever first makes a valid address.
pub fn default_sender() -> Option<Mailbox> {
    let host = fqdn();
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .chain(passwd_name())
        .find_map(|user| Mailbox::parse(&format!("<{user}@{host}>")).ok())
}

fn passwd_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self is owned by the process's effective user; std has no geteuid().
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
            &["--timeout", "1e-12", "a@example.test"],
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
        let v4 = Some("127.0.0.1".parse().unwrap());
        assert_eq!(ehlo_name_for("vm".into(), v4), "[127.0.0.1]");
        let v6 = Some("::1".parse().unwrap());
        assert_eq!(ehlo_name_for("vm".into(), v6), "[IPv6:::1]");
        assert_eq!(ehlo_name_for("vm".into(), None), "vm");
        assert_eq!(
            ehlo_name_for("vm.example.test".into(), v4),
            "vm.example.test"
        );
    }

    #[test]
    fn fqdn_comes_from_the_hosts_line_naming_this_host() {
        let hosts = "127.0.0.1 localhost\n\
                     # 10.0.0.1 vm.commented.test vm\n\
                     10.0.0.2 vm.example.test vm # trailing\n\
                     10.0.0.3 other.example.test other\n";
        assert_eq!(
            fqdn_from_hosts(hosts, "vm").as_deref(),
            Some("vm.example.test")
        );
        assert_eq!(
            fqdn_from_hosts(hosts, "VM").as_deref(),
            Some("vm.example.test")
        );
        assert_eq!(fqdn_from_hosts(hosts, "nohost"), None);
        assert_eq!(fqdn_from_hosts("10.0.0.4 solo\n", "solo"), None);
    }
}
