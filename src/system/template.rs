//! The delivery service's configuration file as `outbox system setup` makes it
//! where there is none: a working default (an SMTP server on this machine) and, in
//! comments, what to set for a relay.

/// The file's text. It must load as it is (a test says so): a service started right
/// after the set-up runs with it.
pub const CONFIG_TEMPLATE: &str = r#"# The configuration of outbox's delivery service (system mode), made by
# `outbox system setup`. It belongs to the service's user and has mode 0600: it may
# hold the relay's credentials, which only the service reads. Local users never
# need it: they drop their mail into the spool, and the service sends it on.
#
# As made, every message goes to an SMTP server on this machine, port 25. To send
# through a relay (a provider's submission server, the organisation's smarthost),
# set server and port to it, and, where it asks for them, TLS and a login:
#
#   server = "smtp.example.com"
#   port = 587
#   tls = "starttls"
#   user = "relay-login@example.com"
#   password = "the relay's password"
#
# (or password_command, a command that prints it). Also worth setting:
#
#   from = "root@example.com"             the sender where a message names none
#   bounce_to = "postmaster@example.com"  who hears of mail that bounced to <>
#
# After a change, `systemctl reload outbox` (or SIGHUP to `outbox serve`) makes
# the service read the file again. The README lists every key.

[default]
server = "localhost"
port = 25
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn the_template_loads_and_names_the_local_server() {
        let config = Config::parse(CONFIG_TEMPLATE, Path::new("config.toml")).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let account = config.account(None, None).unwrap();
        assert_eq!(account.server.as_deref(), Some("localhost"));
        assert_eq!(account.port, Some(25));
        assert_eq!(account.user, None);
        assert!(account.password.is_none());
    }

    #[test]
    fn each_commented_example_is_a_key_the_file_takes() {
        // Uncommented, the examples must load: they are what the administrator will
        // copy.
        let examples: String = CONFIG_TEMPLATE
            .lines()
            .filter_map(|l| l.strip_prefix("#   "))
            .map(|l| l.split("  ").next().unwrap_or(l).trim().to_owned() + "\n")
            .collect();
        assert_eq!(examples.lines().count(), 7, "{examples}");
        let text = format!("[default]\n{examples}");
        let config = Config::parse(&text, Path::new("config.toml")).unwrap();
        let account = config.account(None, None).unwrap();
        assert_eq!(account.server.as_deref(), Some("smtp.example.com"));
        assert_eq!(account.port, Some(587));
        assert_eq!(account.user.as_deref(), Some("relay-login@example.com"));
        assert!(account.bounce_to.is_some());
    }
}
