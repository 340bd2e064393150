//! Where the log goes: the `log` setting.

use std::fmt;
use std::path::{Path, PathBuf};

/// The local syslog socket, where syslog(3) writes.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// Where the log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// RFC 3164 datagrams to the local syslog socket (default /dev/log).
    Syslog(PathBuf),
    /// Appended, one write(2) per line so processes do not interleave; created 0640.
    File(PathBuf),
    Stderr,
    None,
}

impl Target {
    /// From the config's `log` value (or $OUTBOX_LOG): "syslog", "none", "stderr", or
    /// an absolute path; `syslog_socket` the socket for "syslog". An error names what
    /// is allowed.
    pub fn parse(value: &str, syslog_socket: Option<&Path>) -> Result<Target, String> {
        let socket = || syslog_socket.unwrap_or(Path::new(DEFAULT_SYSLOG_SOCKET));
        match value {
            v if v.eq_ignore_ascii_case("syslog") => Ok(Target::Syslog(socket().to_owned())),
            v if v.eq_ignore_ascii_case("stderr") => Ok(Target::Stderr),
            v if v.eq_ignore_ascii_case("none") => Ok(Target::None),
            v if v.starts_with('/') && !v.ends_with('/') => Ok(Target::File(PathBuf::from(v))),
            _ => Err(format!(
                "{value:?} is not a place for the log: give syslog, stderr, none \
                 or the absolute path of a file"
            )),
        }
    }
}

/// Where the log goes, as a warning names it.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Syslog(path) => write!(f, "syslog ({})", path.display()),
            Target::File(path) => write!(f, "{}", path.display()),
            Target::Stderr => f.write_str("standard error"),
            Target::None => f.write_str("nowhere"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_values_a_log_takes() {
        let socket = Path::new("/run/test/log");
        assert_eq!(
            Target::parse("syslog", None),
            Ok(Target::Syslog("/dev/log".into()))
        );
        assert_eq!(
            Target::parse("SysLog", Some(socket)),
            Ok(Target::Syslog(socket.into()))
        );
        assert_eq!(Target::parse("stderr", Some(socket)), Ok(Target::Stderr));
        assert_eq!(Target::parse("none", None), Ok(Target::None));
        assert_eq!(
            Target::parse("/var/log/outbox.log", Some(socket)),
            Ok(Target::File("/var/log/outbox.log".into()))
        );
        for bad in [
            "",
            "file",
            "outbox.log",
            "./outbox.log",
            "/var/log/",
            "journal",
        ] {
            let error = Target::parse(bad, None).unwrap_err();
            assert_eq!(
                error,
                format!(
                    "{bad:?} is not a place for the log: give syslog, stderr, none or \
                     the absolute path of a file"
                )
            );
        }
    }

    #[test]
    fn a_target_names_itself() {
        let shown: Vec<String> = [
            Target::Syslog("/dev/log".into()),
            Target::File("/var/log/outbox.log".into()),
            Target::Stderr,
            Target::None,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            shown,
            [
                "syslog (/dev/log)",
                "/var/log/outbox.log",
                "standard error",
                "nowhere"
            ]
        );
    }
}
