//! `outbox system setup|remove`, run as root with every path under a temporary
//! directory and a user whose name is unique to the run (removed afterwards by a
//! guard, whatever the test did): the modes and owners made, the unit's text, the
//! links, idempotence, a foreign file at a link's path, a spool where mail waits, and
//! the refusal of anyone but root.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::support::{Cmd, Output, TestEnv};

/// useradd and userdel lock the passwd and group files; these tests take turns so
/// that none waits on another's lock.
static ACCOUNTS: Mutex<()> = Mutex::new(());

/// A name for a test user or group: `prefix` and 6 random hex digits.
fn unique_account(prefix: &str) -> String {
    let mut random = [0u8; 3];
    getrandom::fill(&mut random).unwrap();
    format!(
        "{prefix}{:02x}{:02x}{:02x}",
        random[0], random[1], random[2]
    )
}

/// Whether getent knows `key` in `database`.
fn exists(database: &str, key: &str) -> bool {
    Command::new("getent")
        .args([database, key])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// getent's line for `key`, split at the colons.
fn entry(database: &str, key: &str) -> Vec<String> {
    let out = Command::new("getent")
        .args([database, key])
        .output()
        .unwrap_or_else(|e| panic!("cannot run getent: {e}"));
    assert!(out.status.success(), "getent {database} {key}: not found");
    String::from_utf8_lossy(&out.stdout)
        .trim_end()
        .split(':')
        .map(str::to_owned)
        .collect()
}

/// Removes the test's user and group however the test ended.
struct Accounts {
    names: Vec<String>,
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for name in &self.names {
            if exists("passwd", name) {
                let _ = Command::new("userdel").arg(name).status();
            }
            if exists("group", name) {
                let _ = Command::new("groupdel").arg(name).status();
            }
        }
    }
}

/// One installation under a temporary directory.
struct Install {
    env: TestEnv,
    user: String,
    _accounts: Accounts,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Install {
    fn new() -> Install {
        let turn = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let user = unique_account("obt");
        assert!(!exists("passwd", &user), "{user} exists already");
        let env = TestEnv::new();
        fs::create_dir(env.root().join("bin")).unwrap();
        Install {
            env,
            _accounts: Accounts {
                names: vec![user.clone()],
            },
            user,
            _turn: turn,
        }
    }

    fn spool(&self) -> PathBuf {
        self.env.root().join("spool")
    }

    fn config(&self) -> PathBuf {
        self.env.root().join("etc/outbox/config.toml")
    }

    fn unit_dir(&self) -> PathBuf {
        self.env.root().join("units")
    }

    fn unit(&self) -> PathBuf {
        self.unit_dir().join("outbox.service")
    }

    fn bin(&self) -> PathBuf {
        self.env.root().join("bin")
    }

    /// The flags that put everything under the temporary directory.
    fn places(&self) -> Vec<String> {
        [
            "--user".to_owned(),
            self.user.clone(),
            "--spool".to_owned(),
            path(&self.spool()),
            "--config".to_owned(),
            path(&self.config()),
            "--unit-dir".to_owned(),
            path(&self.unit_dir()),
            "--links-in".to_owned(),
            path(&self.bin()),
        ]
        .into()
    }

    fn command(&self, word: &str, extra: &[&str]) -> Cmd {
        let mut cmd = self.env.cmd();
        cmd.args(["system", word]).args(self.places()).args(extra);
        if word == "setup" {
            cmd.arg("--no-start");
        }
        cmd
    }

    fn setup(&self, extra: &[&str]) -> Output {
        self.command("setup", extra).run()
    }

    fn remove(&self, extra: &[&str]) -> Output {
        self.command("remove", extra).run()
    }

    fn uid_gid(&self) -> (u32, u32) {
        let fields = entry("passwd", &self.user);
        (fields[2].parse().unwrap(), fields[3].parse().unwrap())
    }

    /// Mode, owner, group of everything the set-up makes, and the unit's and config's
    /// bytes: what a second run must leave as it is.
    fn state(&self) -> Vec<String> {
        let mut paths = vec![
            self.spool(),
            self.config(),
            self.config().parent().unwrap().to_path_buf(),
            self.unit(),
            self.bin().join("sendmail"),
            self.bin().join("mailq"),
        ];
        for entry in fs::read_dir(self.spool()).unwrap() {
            paths.push(entry.unwrap().path());
        }
        paths.sort();
        let mut state: Vec<String> = paths
            .iter()
            .map(|p| {
                let m = fs::symlink_metadata(p).unwrap();
                format!(
                    "{} {:o} {} {} {}",
                    p.display(),
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.ino()
                )
            })
            .collect();
        state.push(fs::read_to_string(self.unit()).unwrap());
        state.push(fs::read_to_string(self.config()).unwrap());
        state
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

fn binary() -> PathBuf {
    fs::canonicalize(env!("CARGO_BIN_EXE_outbox")).unwrap()
}

/// Mode bits (no file type), owner, group.
fn stat(p: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

#[test]
fn setup_makes_the_user_spool_config_unit_and_links_and_a_second_run_changes_nothing() {
    let install = Install::new();
    let out = install.setup(&[]);
    out.assert_code(0)
        .assert_stdout_contains(&format!("user: made {} (uid ", install.user))
        .assert_stdout_contains("start: not started (--no-start)");
    let (uid, gid) = install.uid_gid();
    assert!(uid != 0 && uid < 1000, "a system uid: {uid}");
    let user = entry("passwd", &install.user);
    assert_eq!(user[5], path(&install.spool()), "home");
    assert_eq!(user[6], "/usr/sbin/nologin", "shell");
    assert_eq!(entry("group", &install.user)[2], gid.to_string());

    let spool = install.spool();
    assert_eq!(stat(&spool), (0o755, uid, gid));
    assert_eq!(stat(&spool.join("maildrop")), (0o3733, uid, gid));
    for private in ["incoming", "bad", "queue"] {
        assert_eq!(stat(&spool.join(private)), (0o700, uid, gid), "{private}");
    }
    assert_eq!(stat(&spool.join("users")), (0o755, uid, gid));

    let config = install.config();
    assert_eq!(stat(&config), (0o600, uid, gid));
    assert_eq!(stat(config.parent().unwrap()), (0o755, 0, 0));
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("\n[default]\nserver = \"localhost\"\nport = 25\n"),
        "{text}"
    );

    assert_eq!(stat(&install.unit()).0, 0o644);
    let unit = fs::read_to_string(install.unit()).unwrap();
    let want = outbox::system::unit::render(&outbox::system::unit::UnitValues {
        binary: &binary(),
        user: &install.user,
        group: &install.user,
        spool: &spool,
        spool_variable: Some(&spool),
        config_variable: Some(&config),
    })
    .unwrap();
    assert_eq!(unit, want);
    // The lines that differ from one machine to the next, spelt out.
    for line in [
        format!("ExecStart={} serve", binary().display()),
        format!("User={}", install.user),
        format!("Group={}", install.user),
        format!("Environment=OUTBOX_SPOOL={}", spool.display()),
        format!("Environment=OUTBOX_CONFIG={}", config.display()),
        format!("ReadWritePaths={}", spool.display()),
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}\n{unit}");
    }

    for name in ["sendmail", "mailq"] {
        let link = install.bin().join(name);
        assert_eq!(fs::read_link(&link).unwrap(), binary(), "{name}");
    }
    // The link works: as mailq, outbox lists a queue (this spool's, or in personal
    // mode one of the test's own: never the machine's).
    install
        .env
        .command(install.bin().join("mailq"))
        .env("OUTBOX_SPOOL", &spool)
        .env("OUTBOX_QUEUE_DIR", install.env.root().join("queue"))
        .run()
        .assert_code(0);

    let before = install.state();
    let again = install.setup(&[]);
    again.assert_code(0);
    assert_eq!(install.state(), before, "{}", again.report());
    let (user, bin) = (&install.user, binary());
    let (spool_shown, config_shown, unit) = (spool.display(), config.display(), install.unit());
    let env = format!("OUTBOX_SPOOL={spool_shown} OUTBOX_CONFIG={config_shown}");
    let links = install.bin();
    assert_eq!(
        again.stdout_str(),
        format!(
            "user: {user} (uid {uid}, group {user}, gid {gid}) exists; used as it is\n\
             spool: {spool_shown} as it should be (every local user may submit)\n\
             config: {config_shown} belongs to {user} with mode 0600, as it should\n\
             unit: {} as it should be\n\
             link: {}/sendmail -> {} as it should be\n\
             link: {}/mailq -> {} as it should be\n\
             start: not started (--no-start). Start the service with `systemctl enable \
             --now outbox.service` where systemd runs; else from the init, as root (it \
             becomes the spool's owner itself): `{env} outbox serve`; or, with no \
             service, from root's cron: `{env} outbox queue flush`\n\
             done: nothing changed: the system set-up was complete already\n",
            unit.display(),
            links.display(),
            bin.display(),
            links.display(),
            bin.display(),
        )
    );

    let removed = install.remove(&["--purge"]);
    removed
        .assert_code(0)
        .assert_stdout_contains(&format!("user: removed the user {}", install.user));
    for gone in [
        spool.clone(),
        config.clone(),
        config.parent().unwrap().to_path_buf(),
        install.unit(),
        install.bin().join("sendmail"),
        install.bin().join("mailq"),
    ] {
        assert!(
            fs::symlink_metadata(&gone).is_err(),
            "{} is still there\n{}",
            gone.display(),
            removed.report()
        );
    }
    assert!(!exists("passwd", &install.user));
    assert!(!exists("group", &install.user));
    install
        .remove(&["--purge"])
        .assert_code(0)
        .assert_stdout_contains("done: nothing changed");
}

#[test]
fn the_written_unit_passes_systemd_analyze_verify() {
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("skipped: systemd-analyze is not installed");
        return;
    };
    if !found.status.success() {
        println!("skipped: systemd-analyze --version failed");
        return;
    }
    let install = Install::new();
    install.setup(&[]).assert_code(0);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(install.unit())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // A warning about the unit names its file (an unknown key, a bad value).
    let unit = path(&install.unit());
    assert!(
        !stderr.lines().any(|l| l.contains(&unit)),
        "systemd-analyze verify warns:\n{stderr}"
    );
    install.remove(&["--purge"]).assert_code(0);
}

#[test]
fn a_foreign_file_at_a_link_is_refused_moved_aside_with_force_and_put_back_on_remove() {
    let install = Install::new();
    let sendmail = install.bin().join("sendmail");
    let script = b"#!/bin/sh\necho another sendmail\n";
    fs::write(&sendmail, script).unwrap();

    let refused = install.setup(&[]);
    refused
        .assert_code(73)
        .assert_stderr_contains("nothing was changed")
        .assert_stderr_contains(&format!(
            "{} is a file that no package installed, not outbox's",
            sendmail.display()
        ))
        .assert_stderr_contains("--force moves it to");
    assert!(!exists("passwd", &install.user), "the user was made");
    assert!(!install.spool().exists(), "the spool was made");
    assert!(!install.unit().exists(), "the unit was written");
    assert_eq!(fs::read(&sendmail).unwrap(), script);

    let saved = install.bin().join("sendmail.before-outbox");
    install
        .setup(&["--force"])
        .assert_code(0)
        .assert_stdout_contains(&format!("was moved to {} (--force)", saved.display()));
    assert_eq!(fs::read_link(&sendmail).unwrap(), binary());
    assert_eq!(fs::read(&saved).unwrap(), script);
    // Once outbox's, the link is kept: --force again moves nothing.
    install
        .setup(&["--force"])
        .assert_code(0)
        .assert_stdout_contains("done: nothing changed");
    assert_eq!(fs::read(&saved).unwrap(), script);

    install
        .remove(&[])
        .assert_code(0)
        .assert_stdout_contains("put back what was there before outbox");
    let back = fs::symlink_metadata(&sendmail).unwrap();
    assert!(back.is_file(), "not the file it was");
    assert_eq!(fs::read(&sendmail).unwrap(), script);
    assert!(!saved.exists());
    assert!(!install.bin().join("mailq").exists());
    // Not purged: the user and the configuration stay.
    assert!(exists("passwd", &install.user));
    assert!(install.config().exists());
    install.remove(&["--purge"]).assert_code(0);
    assert_eq!(
        fs::read(&sendmail).unwrap(),
        script,
        "a foreign file is left"
    );
}

#[test]
fn remove_keeps_a_spool_where_mail_waits_and_purge_removes_it() {
    let install = Install::new();
    install.setup(&[]).assert_code(0);
    let spool = install.spool();
    fs::write(spool.join("queue/1764641000.000001.abcdef"), b"queued").unwrap();
    fs::write(
        spool.join("maildrop/1764641000.000002.0123456789abcdef"),
        b"dropped",
    )
    .unwrap();
    fs::write(spool.join("users/0"), b"public").unwrap();

    let kept = install.remove(&[]);
    kept.assert_code(0).assert_stdout_contains(&format!(
        "spool: kept {}: 2 messages wait there (1 in maildrop/, 1 in queue/)",
        spool.display()
    ));
    assert!(spool.join("queue/1764641000.000001.abcdef").exists());
    assert!(spool.join("maildrop").is_dir());
    assert!(!install.unit().exists());
    assert!(!install.bin().join("sendmail").exists());
    // Asked again, it is kept again and says so.
    install
        .remove(&[])
        .assert_code(0)
        .assert_stdout_contains("spool: kept")
        .assert_stdout_contains("done: nothing changed");

    install
        .remove(&["--purge"])
        .assert_code(0)
        .assert_stdout_contains("with the 2 messages in it (--purge)");
    assert!(!spool.exists());
    assert!(!exists("passwd", &install.user));
}

#[test]
fn an_empty_spool_goes_with_remove() {
    let install = Install::new();
    install.setup(&[]).assert_code(0);
    // Only the public files: nothing waits.
    fs::write(install.spool().join("users/0"), b"public").unwrap();
    install
        .remove(&[])
        .assert_code(0)
        .assert_stdout_contains("(no message waited in it)");
    assert!(!install.spool().exists());
    install.remove(&["--purge"]).assert_code(0);
}

#[test]
fn a_submit_group_closes_the_spool_to_others_and_a_missing_one_is_67() {
    let install = Install::new();
    let missing = install.setup(&["--submit-group", "obt-no-such-group"]);
    missing
        .assert_code(67)
        .assert_stderr_contains("the group \"obt-no-such-group\" does not exist");
    assert!(!exists("passwd", &install.user), "the user was made");
    assert!(!install.spool().exists());

    let group = unique_account("obg");
    assert!(!exists("group", &group), "{group} exists already");
    let _group_guard = Accounts {
        names: vec![group.clone()],
    };
    let made = Command::new("groupadd").arg(&group).status().unwrap();
    assert!(made.success());
    let gid: u32 = entry("group", &group)[2].parse().unwrap();
    install.setup(&["--submit-group", &group]).assert_code(0);
    let (uid, service_gid) = install.uid_gid();
    assert_eq!(stat(&install.spool()), (0o710, uid, gid));
    assert_eq!(
        stat(&install.spool().join("maildrop")),
        (0o3733, uid, service_gid)
    );
    install.remove(&["--purge"]).assert_code(0);
    assert!(exists("group", &group), "the submit group is not outbox's");
}

#[test]
fn an_existing_user_is_used_as_it_is() {
    let install = Install::new();
    let made = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home"])
        .args(["--shell", "/bin/false", &install.user])
        .status()
        .unwrap();
    assert!(made.success());
    let before = entry("passwd", &install.user);
    install
        .setup(&[])
        .assert_code(0)
        .assert_stdout_contains("exists; used as it is");
    assert_eq!(entry("passwd", &install.user), before);
    // Not the set-up's user (its home is not the spool): --purge keeps it, and the
    // test's guard removes it.
    install
        .remove(&["--purge"])
        .assert_code(0)
        .assert_stdout_contains("kept");
    assert!(exists("passwd", &install.user));
}

#[test]
fn a_configuration_someone_else_made_is_refused() {
    let install = Install::new();
    let config = install.config();
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    fs::write(&config, "[default]\nserver = \"evil.example.test\"\n").unwrap();
    std::os::unix::fs::chown(&config, Some(65534), Some(65534)).unwrap();
    install
        .setup(&[])
        .assert_code(78)
        .assert_stderr_contains("belongs to uid 65534, neither root nor the service");
    let (_, uid, gid) = stat(&config);
    assert_eq!((uid, gid), (65534, 65534), "chowned");
    assert!(!exists("passwd", &install.user), "the user was made");
    assert!(!install.spool().exists(), "the spool was made");
    install.remove(&["--purge"]).assert_code(0);
}

#[test]
fn anyone_but_root_is_refused_with_77() {
    let install = Install::new();
    for word in ["setup", "remove"] {
        let mut cmd = install.env.command("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_outbox"))
            .args(["system", word])
            .args(install.places());
        cmd.run()
            .assert_code(77)
            .assert_stderr_contains(&format!("outbox system {word}: must be run as root"));
    }
    assert!(!exists("passwd", &install.user));
    assert!(!install.spool().exists());
    assert!(!install.unit().exists());
}

#[test]
fn system_help_is_help() {
    for args in [
        &["system", "--help"][..],
        &["help", "system"],
        &["system", "setup", "--help"],
    ] {
        let out = TestEnv::new().cmd().args(args).run();
        out.assert_code(0)
            .assert_stdout_contains("Usage: outbox system");
    }
    TestEnv::new()
        .cmd()
        .args(["system", "install"])
        .run()
        .assert_code(64);
}

#[test]
fn root_is_never_the_service_user() {
    let env = TestEnv::new();
    let spool = env.root().join("spool");
    let places = |word: &str| {
        let mut cmd = env.cmd();
        cmd.args(["system", word, "--user", "root", "--spool"])
            .arg(&spool)
            .arg("--config")
            .arg(env.root().join("etc/outbox/config.toml"))
            .arg("--unit-dir")
            .arg(env.root().join("units"))
            .arg("--no-links");
        cmd
    };
    places("setup")
        .arg("--no-start")
        .run()
        .assert_code(64)
        .assert_stderr_contains("root has uid 0: the service must not run as root");
    assert!(!spool.exists());
    places("remove")
        .arg("--purge")
        .run()
        .assert_code(64)
        .assert_stderr_contains("--purge would remove it");
    assert!(exists("passwd", "root"));
}

#[test]
fn an_existing_configuration_is_kept_and_given_to_the_service_alone() {
    let install = Install::new();
    let config = install.config();
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    let text = "[default]\nserver = \"relay.example.test:587\"\npassword = \"s3cret\"\n";
    fs::write(&config, text).unwrap();
    fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = install.setup(&[]);
    out.assert_code(0).assert_stdout_contains(&format!(
        "config: {} now belongs to {1}:{1} with mode 0600 (was uid 0, gid 0, mode 0644)",
        config.display(),
        install.user
    ));
    assert!(!out.stdout_str().contains("s3cret"), "{}", out.report());
    let (uid, gid) = install.uid_gid();
    assert_eq!(stat(&config), (0o600, uid, gid));
    assert_eq!(fs::read_to_string(&config).unwrap(), text, "rewritten");
    install.remove(&["--purge"]).assert_code(0);
    assert!(!config.exists());
}

#[test]
fn a_spool_root_that_holds_roots_personal_queue_is_refused() {
    let install = Install::new();
    let spool = install.spool();
    for dir in ["tmp", "failed"] {
        fs::create_dir_all(spool.join(dir)).unwrap();
    }
    fs::write(
        spool.join("1764641000.000001.abcdef"),
        b"root's queued mail",
    )
    .unwrap();
    install
        .setup(&[])
        .assert_code(73)
        .assert_stderr_contains("nothing was changed")
        .assert_stderr_contains(&format!(
            "{} holds what is not the spool's: 1764641000.000001.abcdef, failed/, tmp/.",
            spool.display()
        ));
    assert!(!exists("passwd", &install.user), "the user was made");
    assert_eq!(stat(&spool).1, 0, "the root was given away");
    assert!(!spool.join("maildrop").exists());
}
