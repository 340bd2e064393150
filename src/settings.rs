//! Validated settings for a session, from the command line and the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::Cli;
use crate::config::{Account, Config};
use crate::envelope::{Address, Mailbox};
use crate::error::Error;
use crate::log::Target;
use crate::smtp::auth::{Credentials, Mechanism, Secret, valid_user};
use crate::smtp::command::Command;
use crate::smtp::dsn;
use crate::smtp::session::Timeouts;
use crate::smtp::tls::{IMPLICIT_TLS_PORT, TlsClient, TlsMode, TlsOptions};
use crate::smtp::transport::{DEFAULT_PORT, ServerAddr};

mod identity;

pub use identity::{default_ehlo_name, default_sender, fqdn, gecos_name, hostname};
#[cfg(test)]
use identity::{ehlo_name_for, fqdn_from_hosts, passwd_name};

/// How to reach the server and how to behave on the way.
#[derive(Clone, Debug)]
pub struct Settings {
    pub server: ServerAddr,
    /// Which of the server's addresses, and from where (`-4`, `-6`,
    /// `--source-address`).
    pub dial: crate::smtp::transport::Dial,
    /// Whether the server was named (flag or configuration) rather than taken to be
    /// localhost, for advice when nothing answers there.
    pub server_named: bool,
    /// The EHLO name; when `None`, this host's name (see [`default_ehlo_name`]).
    pub ehlo_name: Option<String>,
    pub timeouts: Timeouts,
    pub verbose: bool,
    pub tls: TlsOptions,
    pub auth: Option<AuthSettings>,
    /// The sender the account names, for when `-f` is not given.
    pub from: Option<Mailbox>,
    /// Use BDAT (RFC 3030) where the server offers CHUNKING.
    pub chunking: bool,
    /// Speak LMTP (RFC 2033), as to a mailbox server's delivery agent.
    pub lmtp: bool,
    /// Delivery status notifications asked for (RFC 3461).
    pub dsn: dsn::Dsn,
    /// Keep a message that cannot be delivered now in the queue, and exit 0.
    pub queue: bool,
    /// End the session after this stage (`--quit-after`): the message is not sent.
    pub quit_after: Option<crate::smtp::stage::QuitAfter>,
    /// The queue's directory when not the default one.
    pub queue_dir: Option<PathBuf>,
    /// How long a queued message is retried before it moves to `failed`.
    pub queue_lifetime: Duration,
    /// Local names and the addresses they stand for (`default` for all others).
    pub aliases: BTreeMap<String, Vec<Address>>,
    /// The domain a local name gets when no alias takes it.
    pub local_domain: String,
    /// Where the log goes: `$OUTBOX_LOG`, else the configuration's `log`. `None`
    /// when neither says, for each face to choose (the sendmail face and the flush
    /// log to syslog; compose does not log).
    pub log: Option<Target>,
    /// The syslog daemon's socket (`syslog_socket`), for a face whose log goes to
    /// syslog by default; `None`: the usual one.
    pub syslog_socket: Option<PathBuf>,
    /// Who is told of failed messages from the null sender `<>` (and gets copies of
    /// bounces, with `bounce_copy`), a bare name given the local domain.
    pub bounce_to: Option<Address>,
    /// Whether `bounce_to` gets a copy of every bounce.
    pub bounce_copy: bool,
    /// System mode: what the service lets one user submit and keep queued.
    pub limits: crate::spool::Limits,
}

/// Five days, as sendmail's and Postfix's queues keep a message by default.
pub const DEFAULT_QUEUE_LIFETIME: Duration = Duration::from_secs(5 * 24 * 3600);

/// Who to log in as, how, and where the secret comes from.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub user: String,
    /// `None`: the strongest mechanism the server offers.
    pub mechanism: Option<Mechanism>,
    pub password: PasswordSource,
}

/// Where the secret comes from. It is fetched only when a session needs it, so a dry
/// run never asks.
#[derive(Clone, Debug)]
pub enum PasswordSource {
    /// A shell command whose first line of output is the secret.
    Command(String),
    /// Given already (`OUTBOX_PASSWORD`, or `password` in the configuration).
    Given(Secret),
    /// Asked for on the terminal, without echo.
    Prompt,
}

impl Settings {
    /// Settings from the command line alone, as if there were no configuration file.
    pub fn from_cli(cli: &Cli) -> Result<Settings, Error> {
        Settings::resolve(cli, None)
    }

    /// Settings from the command line over the configuration file's account (the one
    /// `-A` names, or the one whose `from` is `-f`'s address) over built-in defaults.
    pub fn resolve(cli: &Cli, config: Option<&Config>) -> Result<Settings, Error> {
        // `-f '<>'`, the null sender, names no account: the default carries it.
        let from_flag = cli
            .from
            .as_deref()
            .filter(|f| f.trim() != "<>")
            .map(Mailbox::parse)
            .transpose()
            .map_err(|e| Error::Usage(e.to_string()))?;
        let account = match config {
            Some(c) => c.account(
                cli.connect.account.as_deref(),
                from_flag.as_ref().map(|m| m.address.as_str()),
            )?,
            None if cli.connect.account.is_some() => {
                return Err(Error::Config(
                    "-A names an account, but there is no configuration file \
                     ($OUTBOX_CONFIG, ~/.config/outbox/config.toml or /etc/outbox/config.toml)"
                        .into(),
                ));
            }
            None => Account::default(),
        };

        let mode = cli.connect.tls.or(account.tls).unwrap_or_default();
        // RFC 8314 §3.3: implicit TLS for submission is on port 465; LMTP servers
        // (Dovecot, Cyrus) listen on 24 by custom.
        let lmtp = cli.lmtp || account.lmtp.unwrap_or(false);
        let default_port = match (mode, lmtp) {
            (TlsMode::Implicit, _) => IMPLICIT_TLS_PORT,
            (_, true) => 24,
            _ => DEFAULT_PORT,
        };
        let mut server = match (&cli.connect.server, &account.server) {
            (Some(s), _) => {
                let server = ServerAddr::parse_or(s, cli.connect.port.unwrap_or(default_port))
                    .map_err(Error::Usage)?;
                // Port 0 never parses: a second parse with it tells whether s names one.
                let named = ServerAddr::parse_or(s, 0).map_or(0, |a| a.port);
                if let Some(port) = cli.connect.port
                    && named != 0
                    && named != port
                    && server.unix_path().is_none()
                {
                    return Err(Error::Usage(format!(
                        "--server {s} names port {named} and --port {port}: give one"
                    )));
                }
                server
            }
            (None, Some(s)) => ServerAddr::parse_or(s, account.port.unwrap_or(default_port))
                .map_err(Error::Config)?,
            (None, None) => ServerAddr {
                host: "localhost".to_owned(),
                port: account.port.unwrap_or(default_port),
            },
        };
        // Flags override the file: --port over the configuration's server and port.
        if let Some(port) = cli.connect.port
            && server.unix_path().is_none()
        {
            server.port = port;
        }

        let timeouts = match cli.connect.timeout.or(account.timeout) {
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
        let ehlo_name = cli.connect.ehlo_name.clone().or(account.ehlo_name.clone());
        if let Some(name) = &ehlo_name {
            Command::ehlo(name).map_err(|e| Error::Usage(format!("EHLO name: {e}")))?;
        }
        let tls = TlsOptions {
            mode,
            ca_file: cli
                .connect
                .tls_ca_file
                .clone()
                .or(account.tls_ca_file.clone()),
            insecure: cli.connect.tls_insecure || account.tls_insecure.unwrap_or(false),
            fingerprint: match (&cli.connect.tls_fingerprint, &account.tls_fingerprint) {
                (Some(flag), _) => Some(
                    crate::smtp::pin::Fingerprint::parse(flag)
                        .map_err(|e| Error::Usage(format!("--tls-fingerprint: {e}")))?,
                ),
                (None, Some(key)) => Some(
                    crate::smtp::pin::Fingerprint::parse(key)
                        .map_err(|e| Error::Config(format!("tls_fingerprint: {e}")))?,
                ),
                (None, None) => None,
            },
            client_cert: match (
                cli.connect.tls_cert.clone().or(account.tls_cert.clone()),
                cli.connect.tls_key.clone().or(account.tls_key.clone()),
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(Error::Config(
                        "tls_cert and tls_key go together: set both, or neither".into(),
                    ));
                }
            },
        };
        let auth = auth_settings(cli, &account)?;
        let local_domain = account
            .from
            .as_ref()
            .or(from_flag.as_ref())
            .and_then(|m| m.address.domain().map(str::to_owned))
            .unwrap_or_else(fqdn);
        let aliases = config
            .map(|c| {
                c.aliases()
                    .iter()
                    .map(|(name, list)| (name.clone(), list.0.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let log = log_target(
            std::env::var("OUTBOX_LOG").ok().as_deref(),
            account.log.as_deref(),
            account.syslog_socket.as_deref(),
        )?;
        let bounce_to = account.bounce_to.map(|a| qualify_with(a, &local_domain));
        Ok(Settings {
            server_named: cli.connect.server.is_some() || account.server.is_some(),
            server,
            dial: crate::smtp::transport::Dial {
                family: match (cli.connect.ipv4, cli.connect.ipv6) {
                    (true, _) => crate::smtp::transport::Family::V4,
                    (_, true) => crate::smtp::transport::Family::V6,
                    _ => crate::smtp::transport::Family::Any,
                },
                source: cli.connect.source_address,
            },
            ehlo_name,
            timeouts,
            verbose: cli.verbose,
            tls,
            auth,
            from: account.from,
            chunking: !cli.no_chunking,
            lmtp,
            dsn: dsn_settings(cli)?,
            // A rehearsal sends nothing, so there is nothing to keep.
            queue: (cli.queue || account.queue.unwrap_or(false)) && cli.quit_after.is_none(),
            quit_after: cli.quit_after,
            queue_dir: account.queue_dir,
            queue_lifetime: account
                .queue_lifetime
                .map_or(DEFAULT_QUEUE_LIFETIME, |days| {
                    Duration::from_secs_f64(days * 24.0 * 3600.0)
                }),
            aliases,
            local_domain,
            log,
            syslog_socket: account.syslog_socket.clone(),
            bounce_to,
            bounce_copy: account.bounce_copy.unwrap_or(false),
            limits: {
                let default = crate::spool::Limits::default();
                crate::spool::Limits {
                    max_message_size: account.max_message_size.unwrap_or(default.max_message_size),
                    max_queued: account.max_queued_per_user.unwrap_or(default.max_queued),
                    max_queued_bytes: account
                        .max_queued_bytes_per_user
                        .unwrap_or(default.max_queued_bytes),
                }
            },
        })
    }

    /// The queue's directory: `queue_dir` from the configuration, else the default.
    pub fn queue_dir(&self) -> PathBuf {
        self.queue_dir
            .clone()
            .unwrap_or_else(crate::queue::Queue::default_dir)
    }

    /// An address with a domain: a bare local name (`-f root`, an alias target
    /// `admin`) gets the local domain, as a relay would refuse it without one.
    pub fn qualify(&self, address: Address) -> Address {
        qualify_with(address, &self.local_domain)
    }

    /// The sender: `given` (`-f`, a bare name qualified), else the account's `from`,
    /// else `$USER@fqdn`.
    pub fn sender(&self, given: Option<Mailbox>) -> Result<Mailbox, Error> {
        match (given, &self.from) {
            (Some(m), _) => Ok(Mailbox {
                name: m.name,
                address: self.qualify(m.address),
            }),
            (None, Some(f)) => Ok(f.clone()),
            (None, None) => default_sender().ok_or_else(|| {
                Error::Usage("cannot tell who is sending ($USER is not set): give -f ADDR".into())
            }),
        }
    }

    /// What a recipient stands for. A local name (no `@`, as cron's `root`) becomes its
    /// alias, else the `default` alias, else the name at the local domain; the second
    /// value says what was done, for `-v`. An address with a domain is left alone.
    pub fn expand(&self, recipient: &Address) -> (Vec<Address>, Option<String>) {
        if recipient.domain().is_some() {
            return (vec![recipient.clone()], None);
        }
        let name = recipient.as_str();
        // Local names compare without case, as mail systems' aliases do.
        let alias = self
            .aliases
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .or_else(|| self.aliases.get_key_value("default"));
        if let Some((_, list)) = alias {
            let list: Vec<Address> = list.iter().map(|a| self.qualify(a.clone())).collect();
            let shown: Vec<&str> = list.iter().map(Address::as_str).collect();
            let note = format!("{name} is an alias for {}", shown.join(", "));
            return (list, Some(note));
        }
        match Address::new(&format!("{name}@{}", self.local_domain)) {
            Ok(full) => {
                let note = format!("{name} has no alias: sending to {full}");
                (vec![full], Some(note))
            }
            Err(_) => (vec![recipient.clone()], None),
        }
    }

    /// What a TLS handshake with the server needs.
    pub fn tls_client(&self) -> TlsClient<'_> {
        TlsClient {
            options: &self.tls,
            host: &self.server.host,
            port: self.server.port,
            timeout: self.timeouts.greeting,
        }
    }

    /// Whether TLS begins at once, before the greeting: `--tls implicit`, or `auto` on
    /// port 465.
    pub fn implicit_tls(&self) -> bool {
        match self.tls.mode {
            TlsMode::Implicit => true,
            TlsMode::Auto => self.server.port == IMPLICIT_TLS_PORT,
            TlsMode::StartTls | TlsMode::None => false,
        }
    }

    /// That the CA file, where TLS may be used, can be read: found before anything is
    /// sent.
    pub fn check_ca_file(&self) -> Result<(), Error> {
        if let Some(ca) = &self.tls.ca_file
            && self.tls.mode != TlsMode::None
            && let Err(source) = std::fs::metadata(ca)
        {
            return Err(Error::NoInput {
                path: ca.clone(),
                source,
            });
        }
        Ok(())
    }

    /// The user and secret to log in with, if any; this may run the password command
    /// or ask on the terminal.
    pub fn credentials(&self) -> Result<Option<Credentials>, Error> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let secret = match &auth.password {
            PasswordSource::Given(secret) => secret.clone(),
            PasswordSource::Command(cmd) => run_password_command(cmd)?,
            PasswordSource::Prompt => {
                let prompt = format!("Password for {} at {}: ", auth.user, self.server);
                rpassword::prompt_password(prompt)
                    .map(Secret::new)
                    .map_err(|e| {
                        Error::Config(format!(
                            "no password for {}: none configured, and none could be asked \
                         for ({e}); use --password-command, OUTBOX_PASSWORD, or \
                         password_command in the configuration",
                            auth.user
                        ))
                    })?
            }
        };
        Ok(Some(Credentials {
            user: auth.user.clone(),
            secret,
        }))
    }
}

/// `address`, given `domain` if it has none.
fn qualify_with(address: Address, domain: &str) -> Address {
    if address.domain().is_some() {
        return address;
    }
    Address::new(&format!("{address}@{domain}")).unwrap_or(address)
}

/// Where the log goes: `env` (the value of `$OUTBOX_LOG`; empty is unset) over
/// `configured` (the `log` key), "syslog" meaning `syslog_socket` where one is set.
/// `None` when neither is set.
pub fn log_target(
    env: Option<&str>,
    configured: Option<&str>,
    syslog_socket: Option<&std::path::Path>,
) -> Result<Option<Target>, Error> {
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        return Target::parse(value, syslog_socket)
            .map(Some)
            .map_err(|e| Error::Config(format!("$OUTBOX_LOG: {e}")));
    }
    configured
        .map(|value| Target::parse(value, syslog_socket))
        .transpose()
        .map_err(|e| Error::Config(format!("log: {e}")))
}

/// `--notify`, `--ret`, `--envid`, checked and in the form RFC 3461 writes them.
fn dsn_settings(cli: &Cli) -> Result<dsn::Dsn, Error> {
    let notify = match &cli.notify {
        None => None,
        Some(text) => Some(dsn::notify(text).ok_or_else(|| {
            Error::Usage(format!(
                "--notify {text:?}: give never, or some of success,failure,delay"
            ))
        })?),
    };
    let ret = match cli.ret.as_deref() {
        None => None,
        Some(r) => Some(dsn::ret(r).map(str::to_owned).ok_or_else(|| {
            Error::Usage(format!(
                "--ret {:?}: give full or hdrs",
                r.to_ascii_uppercase()
            ))
        })?),
    };
    if let Some(envid) = &cli.envid
        && !dsn::envid_is_valid(envid)
    {
        return Err(Error::Usage(format!(
            "--envid {envid:?}: {}",
            dsn::ENVID_RULE
        )));
    }
    Ok(dsn::Dsn {
        notify,
        ret,
        envid: cli.envid.clone(),
    })
}

fn auth_settings(cli: &Cli, account: &Account) -> Result<Option<AuthSettings>, Error> {
    let Some(user) = cli.connect.user.clone().or(account.user.clone()) else {
        if cli.connect.auth.is_some() || cli.connect.password_command.is_some() {
            return Err(Error::Usage(
                "--auth and --password-command need a user: give --user NAME".into(),
            ));
        }
        return Ok(None);
    };
    if !valid_user(&user) {
        return Err(Error::Usage(
            "the user name is empty or holds a control character".into(),
        ));
    }
    let mechanism = match cli.connect.auth.as_deref().or(account.auth.as_deref()) {
        None => None,
        Some(name) if name.eq_ignore_ascii_case("auto") => None,
        Some(name) => Some(Mechanism::from_name(name).ok_or_else(|| {
            Error::Usage(format!(
                "unknown mechanism {name:?}: use {}",
                crate::smtp::auth::MECHANISM_CHOICES
            ))
        })?),
    };
    // The account's secret is its user's: with another --user it is not sent.
    let account_secret = account.user.as_deref() == Some(user.as_str());
    let password = if let Some(cmd) = &cli.connect.password_command {
        PasswordSource::Command(cmd.clone())
    } else if let Some(p) = std::env::var("OUTBOX_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        PasswordSource::Given(Secret::new(p))
    } else if let (true, Some(cmd)) = (account_secret, &account.password_command) {
        PasswordSource::Command(cmd.clone())
    } else if let (true, Some(p)) = (account_secret, &account.password) {
        PasswordSource::Given(p.clone())
    } else {
        PasswordSource::Prompt
    };
    Ok(Some(AuthSettings {
        user,
        mechanism,
        password,
    }))
}

/// Runs `cmd` with `sh -c` and takes the first line of its output as the secret. Its
/// standard error goes to ours, so a password manager can say what it needs.
fn run_password_command(cmd: &str) -> Result<Secret, Error> {
    let output = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::Config(format!("cannot run the password command: {e}")))?;
    if !output.status.success() {
        return Err(Error::Config(format!(
            "the password command failed ({})",
            output.status
        )));
    }
    let text = String::from_utf8(output.stdout)
        .map_err(|_| Error::Config("the password command's output is not UTF-8".into()))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(Error::Config(
            "the password command printed no password".into(),
        ));
    }
    Ok(Secret::new(line.to_owned()))
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
    fn port_is_a_flag_that_overrides_the_configuration() {
        let port = |args: &[&str]| settings(args).map(|s| s.server.to_string());
        assert_eq!(
            port(&["--port", "587", "a@x.test"]).unwrap(),
            "localhost:587"
        );
        assert_eq!(
            port(&["--server", "mx.example.test", "--port", "587", "a@x.test"]).unwrap(),
            "mx.example.test:587"
        );
        assert_eq!(
            port(&[
                "--server",
                "mx.example.test:587",
                "--port",
                "587",
                "a@x.test"
            ])
            .unwrap(),
            "mx.example.test:587"
        );
        let config = Config::parse(
            "[default]\nserver = \"mx.example.test:2525\"\n",
            std::path::Path::new("/c.toml"),
        )
        .unwrap();
        let cli = Cli::try_parse_from(["outbox", "--port", "587", "a@x.test"]).unwrap();
        let s = Settings::resolve(&cli, Some(&config)).unwrap();
        assert_eq!(s.server.to_string(), "mx.example.test:587");
        assert!(s.server_named);
        assert!(
            !settings(&["--port", "587", "a@x.test"])
                .unwrap()
                .server_named
        );
    }

    #[test]
    fn timeout_takes_seconds_or_minutes() {
        let s = settings(&["--timeout", "5s", "a@example.test"]).unwrap();
        assert_eq!(s.timeouts, Timeouts::uniform(Duration::from_secs(5)));
        let s = settings(&["--timeout", "2m", "a@example.test"]).unwrap();
        assert_eq!(s.timeouts, Timeouts::uniform(Duration::from_secs(120)));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--timeout", "0", "a@example.test"][..],
            &["--timeout", "100000", "a@example.test"],
            &["--server", "host:99999", "a@example.test"],
            &["--ehlo-name", "two words", "a@example.test"],
            &["--server", "host:25", "--port", "587", "a@example.test"],
        ] {
            assert!(matches!(settings(args), Err(Error::Usage(_))), "{args:?}");
        }
        // Not a time at all: clap refuses it (exit 64 too).
        for value in ["-1", "NaN", "inf", "1e-12", "5h"] {
            let argv = ["outbox", "--timeout", value, "a@example.test"];
            assert!(Cli::try_parse_from(argv).is_err(), "{value}");
        }
    }

    #[test]
    fn gecos_gives_the_full_name() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      jm:x:1000:1000:Jörg Müller,Raum 4,+49 30 1234,,:/home/jm:/bin/sh\n\
                      ops:x:1001:1001:& Team,,,:/home/ops:/bin/sh\n\
                      daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
                      blank:x:1002:1002: ,x:/home/blank:/bin/sh\n\
                      short:x:1003\n";
        assert_eq!(gecos_name(passwd, "root").as_deref(), Some("root"));
        // The other comma fields are not the name.
        assert_eq!(gecos_name(passwd, "jm").as_deref(), Some("Jörg Müller"));
        assert_eq!(gecos_name(passwd, "ops").as_deref(), Some("Ops Team"));
        for nobody in ["daemon", "blank", "short", "missing", "ro"] {
            assert_eq!(gecos_name(passwd, nobody), None, "{nobody}");
        }
    }

    #[test]
    fn passwd_lookup_finds_the_owner() {
        // The test runs as some user that has a passwd entry on any sane machine.
        let name = passwd_name(&std::fs::read_to_string("/etc/passwd").unwrap())
            .expect("the test user is in /etc/passwd");
        assert!(!name.is_empty());
    }

    #[test]
    fn debug_of_settings_never_shows_the_password() {
        let config = Config::parse(
            "[account.a]\nserver = \"mx.example.test:587\"\nuser = \"me\"\npassword = \"s3cr3t-pw\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let cli = Cli::try_parse_from(["outbox", "-A", "a", "x@example.test"]).unwrap();
        let settings = Settings::resolve(&cli, Some(&config)).unwrap();
        let shown = format!("{settings:?}");
        assert!(shown.contains("Given(Secret(<redacted>))"), "{shown}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert_eq!(settings.server.to_string(), "mx.example.test:587");
        let creds = settings.credentials().unwrap().unwrap();
        assert_eq!(creds.secret.expose(), "s3cr3t-pw");
        assert!(!format!("{creds:?}").contains("s3cr3t-pw"));
    }

    #[test]
    fn flags_override_the_account_and_implicit_tls_defaults_to_465() {
        let config = Config::parse(
            "[default]\nserver = \"mx.example.test\"\ntls = \"implicit\"\ntimeout = 9\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let cli = Cli::try_parse_from(["outbox", "x@example.test"]).unwrap();
        let s = Settings::resolve(&cli, Some(&config)).unwrap();
        assert_eq!(s.server.to_string(), "mx.example.test:465");
        assert_eq!(s.timeouts, Timeouts::uniform(Duration::from_secs(9)));
        let cli = Cli::try_parse_from([
            "outbox",
            "--server",
            "other.example.test",
            "--tls",
            "starttls",
            "--timeout",
            "2",
            "x@example.test",
        ])
        .unwrap();
        let s = Settings::resolve(&cli, Some(&config)).unwrap();
        assert_eq!(s.server.to_string(), "other.example.test:25");
        assert_eq!(s.tls.mode, TlsMode::StartTls);
        assert_eq!(s.timeouts, Timeouts::uniform(Duration::from_secs(2)));
    }

    #[test]
    fn password_command_gives_its_first_line() {
        assert_eq!(
            run_password_command("printf 'pw1\\nsecond\\n'")
                .unwrap()
                .expose(),
            "pw1"
        );
        assert!(matches!(
            run_password_command("exit 3"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            run_password_command("true"),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn another_users_password_is_not_taken_from_the_account() {
        let config = Config::parse(
            "[default]\nuser = \"me\"\npassword = \"mine\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let cli = Cli::try_parse_from(["outbox", "--user", "other", "x@example.test"]).unwrap();
        let s = Settings::resolve(&cli, Some(&config)).unwrap();
        assert!(matches!(
            s.auth.map(|a| a.password),
            Some(PasswordSource::Prompt)
        ));
        let cli = Cli::try_parse_from(["outbox", "--user", "me", "x@example.test"]).unwrap();
        let s = Settings::resolve(&cli, Some(&config)).unwrap();
        assert!(matches!(
            s.auth.map(|a| a.password),
            Some(PasswordSource::Given(_))
        ));
    }

    #[test]
    fn local_names_become_addresses() {
        let config = Config::parse(
            "[default]\nfrom = \"me@example.test\"\n[aliases]\nroot = \"admin@example.test, ops@example.test\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let cli = Cli::try_parse_from(["outbox", "x@example.test"]).unwrap();
        let s = Settings::resolve(&cli, Some(&config)).unwrap();
        let a = |t: &str| Address::new(t).unwrap();
        let (root, note) = s.expand(&a("root"));
        assert_eq!(root, [a("admin@example.test"), a("ops@example.test")]);
        assert!(note.unwrap().contains("alias"));
        let (www, note) = s.expand(&a("www-data"));
        assert_eq!(www, [a("www-data@example.test")]);
        assert!(note.unwrap().contains("www-data@example.test"));
        assert_eq!(
            s.expand(&a("x@other.test")),
            (vec![a("x@other.test")], None)
        );

        let config = Config::parse(
            "[aliases]\ndefault = \"catchall@example.test\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let s = Settings::resolve(&cli, Some(&config)).unwrap();
        assert_eq!(s.expand(&a("anyone")).0, [a("catchall@example.test")]);

        // Targets without a domain get the local one; names compare without case.
        let config = Config::parse(
            "[default]\nfrom = \"me@example.test\"\n[aliases]\nroot = \"admin\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let s = Settings::resolve(&cli, Some(&config)).unwrap();
        assert_eq!(s.expand(&a("ROOT")).0, [a("admin@example.test")]);
        assert_eq!(s.qualify(a("root")), a("root@example.test"));
    }

    #[test]
    fn the_log_comes_from_the_environment_over_the_configuration() {
        let socket = std::path::Path::new("/run/test/log");
        let file = || Some(Target::File("/var/log/outbox.log".into()));
        assert_eq!(log_target(None, None, None).unwrap(), None);
        assert_eq!(log_target(Some(""), None, Some(socket)).unwrap(), None);
        assert_eq!(
            log_target(None, Some("/var/log/outbox.log"), None).unwrap(),
            file()
        );
        assert_eq!(
            log_target(None, Some("syslog"), Some(socket)).unwrap(),
            Some(Target::Syslog(socket.into()))
        );
        assert_eq!(
            log_target(None, Some("syslog"), None).unwrap(),
            Some(Target::Syslog("/dev/log".into()))
        );
        assert_eq!(
            log_target(Some("none"), Some("syslog"), None).unwrap(),
            Some(Target::None)
        );
        assert_eq!(
            log_target(Some("/var/log/outbox.log"), Some("stderr"), None).unwrap(),
            file()
        );
        assert_eq!(
            log_target(Some("syslog"), Some("none"), Some(socket)).unwrap(),
            Some(Target::Syslog(socket.into()))
        );
        let Err(Error::Config(m)) = log_target(Some("relative.log"), Some("none"), None) else {
            panic!("a bad $OUTBOX_LOG is a configuration error");
        };
        assert_eq!(
            m,
            "$OUTBOX_LOG: \"relative.log\" is not a place for the log: give syslog, \
             stderr, none or the absolute path of a file"
        );
    }

    /// `lmtp = true` speaks LMTP as `--lmtp` does, on port 24 by default, so that the
    /// sendmail face and the flush (which have no such flag) can.
    #[test]
    fn lmtp_from_the_configuration() {
        let parse = |text: &str| Config::parse(text, std::path::Path::new("test.toml")).unwrap();
        let config = parse("[default]\nserver = \"lmtp.example.test\"\nlmtp = true\n");
        let s = Settings::resolve(&Cli::default(), Some(&config)).unwrap();
        assert!(s.lmtp);
        assert_eq!(s.server.port, 24);
        let config = parse("[default]\nserver = \"mx.example.test\"\n");
        let s = Settings::resolve(&Cli::default(), Some(&config)).unwrap();
        assert!(!s.lmtp);
        assert_eq!(s.server.port, 25);
    }

    #[test]
    fn log_and_bounce_settings_come_from_default() {
        let config = Config::parse(
            "[default]\nfrom = \"me@example.test\"\nlog = \"syslog\"\n\
             syslog_socket = \"/run/test/log\"\nbounce_to = \"postmaster\"\n\
             bounce_copy = true\n[account.a]\nserver = \"mx.example.test\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let cli = Cli::try_parse_from(["outbox", "-A", "a", "x@example.test"]).unwrap();
        let s = Settings::resolve(&cli, Some(&config)).unwrap();
        // The tests' own environment may set $OUTBOX_LOG, which wins.
        let expected = match std::env::var("OUTBOX_LOG").ok().filter(|v| !v.is_empty()) {
            Some(v) => Target::parse(&v, Some(std::path::Path::new("/run/test/log"))).unwrap(),
            None => Target::Syslog("/run/test/log".into()),
        };
        assert_eq!(s.log, Some(expected));
        assert_eq!(
            s.bounce_to,
            Some(Address::new("postmaster@example.test").unwrap())
        );
        assert!(s.bounce_copy);
        let s = settings(&["x@example.test"]).unwrap();
        assert_eq!((s.bounce_to, s.bounce_copy), (None, false));
    }

    #[test]
    fn account_without_configuration_is_a_config_error() {
        let cli = Cli::try_parse_from(["outbox", "-A", "work", "x@example.test"]).unwrap();
        assert!(matches!(
            Settings::resolve(&cli, None),
            Err(Error::Config(_))
        ));
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
