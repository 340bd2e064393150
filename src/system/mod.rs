//! System mode's installation, the parts that can be decided without touching the
//! machine: the systemd unit's text, what to do at each `sendmail`/`mailq` link, the
//! configuration file's template, the accounts the service runs as. `outbox system
//! setup|remove` (in the binary) does the rest: it asks, decides with these, acts and
//! says what it did.
//!
//! - `unit`: the unit file (`dist/outbox.service`) with this machine's values;
//! - `links`: what is at a link's path, and what setup and remove do about it;
//! - `start`: which `systemctl` commands start and stop the service;
//! - `template`: the configuration file made when there is none;
//! - `account`: users and groups as `getent` finds them, and the names `useradd` takes;
//! - `tool`: running `useradd`, `systemctl` and the like, with their failures said.

use std::path::{Path, PathBuf};

pub mod account;
pub mod links;
pub mod start;
pub mod template;
pub mod tool;
pub mod unit;

/// The service's user (and group) when `--user` names none.
pub const DEFAULT_USER: &str = "outbox";
/// The service's configuration when `--config` names none: the one place
/// [`crate::config::Config::load_default`] looks for a system-wide file.
pub const DEFAULT_CONFIG: &str = "/etc/outbox/config.toml";
/// Where the unit goes when `--unit-dir` names none: the administrator's units.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
/// The unit's file name.
pub const UNIT_NAME: &str = "outbox.service";
/// The directory whose presence says that systemd is the running init
/// (sd_booted(3)).
pub const SYSTEMD_RUNNING: &str = "/run/systemd/system";
/// sysexits' EX_OSERR: a program of the system (`useradd`, `systemctl`) failed.
pub const EX_OSERR: u8 = 71;

/// The mode of the configuration file: it may hold the relay's credentials, which
/// only the service may read.
pub const CONFIG_MODE: u32 = 0o600;
/// The mode of the configuration's directory: the service must search it.
pub const CONFIG_DIR_MODE: u32 = 0o755;
/// The unit file's mode, as systemd's own.
pub const UNIT_MODE: u32 = 0o644;

/// Whether `path` can be written into a unit file as it is: absolute, UTF-8, and
/// free of what systemd would read otherwise (white space splits a list, `%` starts
/// a specifier, `$` a variable, quotes and backslashes are unquoted, `;` ends a
/// command line: systemd.service(5), systemd.unit(5) "Specifiers"). Outbox refuses
/// such a path rather than escape it: a spool or binary named so is most likely a
/// mistake, and an escaping error would hand the service another path.
pub fn unit_path(path: &Path) -> Result<&str, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    if !path.is_absolute() {
        return Err(format!("{text} is not an absolute path"));
    }
    let bad = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "%$\"'\\;".contains(*c));
    match bad {
        Some(c) => Err(format!(
            "{text} holds {c:?}, which a systemd unit would not read as part of a path; \
             choose a path without it"
        )),
        None => Ok(text),
    }
}

/// What the unit's sandbox hides of `path`, if anything: `ProtectHome=yes` makes
/// `/home`, `/root` and `/run/user` empty, `PrivateTmp=yes` gives the service a
/// `/tmp` and `/var/tmp` of its own. A binary, spool or configuration there would
/// not be what the service sees.
pub fn hidden_by_sandbox(path: &Path) -> Option<&'static str> {
    let home = ["/home", "/root", "/run/user"];
    let tmp = ["/tmp", "/var/tmp"];
    // `Path::starts_with` compares whole components: /homework is not /home.
    if home.iter().any(|d| path.starts_with(d)) {
        Some("ProtectHome=yes")
    } else if tmp.iter().any(|d| path.starts_with(d)) {
        Some("PrivateTmp=yes")
    } else {
        None
    }
}

/// The path of this binary, as the unit and the links name it: absolute and with
/// every symbolic link resolved, so that a link never points at another link.
pub fn this_binary() -> std::io::Result<PathBuf> {
    std::env::current_exe()?.canonicalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_are_absolute_and_plain() {
        assert_eq!(
            unit_path(Path::new("/var/spool/outbox")),
            Ok("/var/spool/outbox")
        );
        assert_eq!(
            unit_path(Path::new("/opt/out-box_2.0/bin/outbox")),
            Ok("/opt/out-box_2.0/bin/outbox")
        );
        assert_eq!(
            unit_path(Path::new("spool")),
            Err("spool is not an absolute path".to_owned())
        );
        for bad in [
            "/var/spool/my spool",
            "/srv/100%",
            "/srv/$HOME",
            "/srv/a;b",
            "/srv/\"q\"",
            "/srv/back\\slash",
            "/srv/tab\there",
            "/srv/new\nline",
        ] {
            let err = unit_path(Path::new(bad)).unwrap_err();
            assert!(err.contains("which a systemd unit would not read"), "{err}");
        }
        use std::os::unix::ffi::OsStrExt;
        let not_utf8 = std::ffi::OsStr::from_bytes(b"/srv/\xff");
        assert!(
            unit_path(Path::new(not_utf8))
                .unwrap_err()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn the_sandbox_hides_home_and_tmp() {
        assert_eq!(
            hidden_by_sandbox(Path::new("/home/alice/bin/outbox")),
            Some("ProtectHome=yes")
        );
        assert_eq!(
            hidden_by_sandbox(Path::new("/root/outbox")),
            Some("ProtectHome=yes")
        );
        assert_eq!(
            hidden_by_sandbox(Path::new("/tmp/spool")),
            Some("PrivateTmp=yes")
        );
        assert_eq!(
            hidden_by_sandbox(Path::new("/var/tmp/x")),
            Some("PrivateTmp=yes")
        );
        assert_eq!(hidden_by_sandbox(Path::new("/usr/local/bin/outbox")), None);
        // Whole components: /homework is not /home.
        assert_eq!(hidden_by_sandbox(Path::new("/homework/outbox")), None);
        assert_eq!(hidden_by_sandbox(Path::new("/tmpfs/outbox")), None);
    }
}
