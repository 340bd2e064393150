//! The systemd unit of the delivery service: `dist/outbox.service` with this
//! machine's binary, user, group and paths in place of its `@NAME@` marks.

use std::path::Path;

use super::unit_path;

/// The unit as the repository holds it.
pub const TEMPLATE: &str = include_str!("../../dist/outbox.service");

/// The environment variables that name the spool and the configuration: the unit
/// sets them only where the set-up was given other paths than the defaults.
pub const SPOOL_VARIABLE: &str = "OUTBOX_SPOOL";
pub const CONFIG_VARIABLE: &str = "OUTBOX_CONFIG";

/// What differs from one installation to the next.
#[derive(Clone, Debug)]
pub struct UnitValues<'a> {
    /// The outbox binary, absolute.
    pub binary: &'a Path,
    pub user: &'a str,
    pub group: &'a str,
    /// The spool, which the service alone may write.
    pub spool: &'a Path,
    /// `Some` where the spool is not the default one: the service must be told.
    pub spool_variable: Option<&'a Path>,
    /// `Some` where the configuration is not the default one.
    pub config_variable: Option<&'a Path>,
}

/// The unit's text, or why these values cannot be written into a unit.
pub fn render(values: &UnitValues<'_>) -> Result<String, String> {
    let binary = unit_path(values.binary)?;
    let spool = unit_path(values.spool)?;
    for name in [values.user, values.group] {
        if !super::account::valid_name(name) {
            return Err(format!("{name:?} cannot be written into a unit as a name"));
        }
    }
    let mut environment = Vec::new();
    for (variable, path) in [
        (SPOOL_VARIABLE, values.spool_variable),
        (CONFIG_VARIABLE, values.config_variable),
    ] {
        if let Some(path) = path {
            environment.push(format!("Environment={variable}={}", unit_path(path)?));
        }
    }
    let mut out = String::with_capacity(TEMPLATE.len() + 256);
    for line in TEMPLATE.lines() {
        if line == "@ENVIRONMENT@" {
            for set in &environment {
                out.push_str(set);
                out.push('\n');
            }
            continue;
        }
        out.push_str(
            &line
                .replace("@BINARY@", binary)
                .replace("@USER@", values.user)
                .replace("@GROUP@", values.group)
                .replace("@SPOOL@", spool),
        );
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendered unit with the given environment lines, the rest fixed.
    fn expected(environment: &str) -> String {
        format!(
            "\
# outbox's delivery service (system mode): it takes what local users drop into the
# spool, queues it, delivers it through the relay of its configuration, retries and
# bounces. `outbox system setup` fills in the values between @ signs and installs
# this file; `outbox system remove` takes it away. The README's \"System mode: set-up
# and removal\" says why each hardening line is here.

[Unit]
Description=outbox mail delivery service
After=network.target nss-lookup.target

[Service]
Type=simple
ExecStart=/usr/local/bin/outbox serve
ExecReload=/bin/kill -HUP $MAINPID
User=outbox
Group=mailout
{environment}Restart=on-failure
RestartSec=5s

NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=/var/spool/outbox
LogsDirectory=outbox
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
UMask=0077

[Install]
WantedBy=multi-user.target
"
        )
    }

    fn values<'a>() -> UnitValues<'a> {
        UnitValues {
            binary: Path::new("/usr/local/bin/outbox"),
            user: "outbox",
            group: "mailout",
            spool: Path::new("/var/spool/outbox"),
            spool_variable: None,
            config_variable: None,
        }
    }

    #[test]
    fn the_default_unit_sets_no_environment() {
        assert_eq!(render(&values()).unwrap(), expected(""));
    }

    #[test]
    fn paths_other_than_the_defaults_go_into_the_environment() {
        let spool = Path::new("/srv/mail/spool");
        let config = Path::new("/srv/mail/outbox.toml");
        let text = render(&UnitValues {
            spool,
            spool_variable: Some(spool),
            config_variable: Some(config),
            ..values()
        })
        .unwrap();
        let want = expected(
            "Environment=OUTBOX_SPOOL=/srv/mail/spool\n\
             Environment=OUTBOX_CONFIG=/srv/mail/outbox.toml\n",
        )
        .replace(
            "ReadWritePaths=/var/spool/outbox",
            "ReadWritePaths=/srv/mail/spool",
        );
        assert_eq!(text, want);
        let only_config = render(&UnitValues {
            config_variable: Some(config),
            ..values()
        })
        .unwrap();
        assert_eq!(
            only_config,
            expected("Environment=OUTBOX_CONFIG=/srv/mail/outbox.toml\n")
        );
    }

    #[test]
    fn every_mark_of_the_template_is_filled() {
        let text = render(&values()).unwrap();
        for mark in ["@BINARY@", "@USER@", "@GROUP@", "@SPOOL@", "@ENVIRONMENT@"] {
            assert!(TEMPLATE.contains(mark), "{mark}");
            assert!(!text.contains(mark), "{mark}");
        }
    }

    #[test]
    fn values_a_unit_would_misread_are_refused() {
        let err = render(&UnitValues {
            binary: Path::new("/opt/my outbox/outbox"),
            ..values()
        })
        .unwrap_err();
        assert!(err.contains("/opt/my outbox/outbox"), "{err}");
        let err = render(&UnitValues {
            spool: Path::new("/srv/%h"),
            ..values()
        })
        .unwrap_err();
        assert!(err.contains("/srv/%h"), "{err}");
        let err = render(&UnitValues {
            config_variable: Some(Path::new("etc/outbox.toml")),
            ..values()
        })
        .unwrap_err();
        assert!(err.contains("not an absolute path"), "{err}");
        let err = render(&UnitValues {
            user: "out box",
            ..values()
        })
        .unwrap_err();
        assert!(err.contains("\"out box\""), "{err}");
    }
}
