//! What the sendmail face does to a message's header, against a real Postfix: long
//! lines folded (PHP's `mail()` with a long Bcc), bare local names given the domain
//! (cron), the Date in the local time zone, and a display name on the From it adds.
//! Each copy is read back from the Maildir.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

use mail_parser::MessageParser;

use crate::support::postfix::{Postfix, rcpt, strip_trace_headers};
use crate::support::{Output, TestEnv, unique_name};

const WAIT: Duration = Duration::from_secs(30);

/// A test environment whose configuration is `[default]` with `server` and `more`.
fn env_for(server: &str, more: &str) -> TestEnv {
    let env = TestEnv::new();
    env.configure(server, 30, more);
    env
}

/// `outbox sendmail ARGS` with `stdin`, and `vars` set in its environment.
fn sendmail(env: &TestEnv, args: &[&str], stdin: &[u8], vars: &[(&str, &str)]) -> Output {
    let mut cmd = env.configured_cmd();
    cmd.arg("sendmail").args(args).stdin(stdin.to_vec());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.run()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The header of a delivered copy, without Postfix's trace fields, as lines.
fn head(raw: &[u8]) -> Vec<String> {
    lossy(&strip_trace_headers(raw))
        .lines()
        .take_while(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The unfolded value of the one field `name` of a delivered copy.
#[track_caller]
fn field(raw: &[u8], name: &str) -> String {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head(raw) {
        match fields.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.1 += &line,
            _ => {
                let (n, v) = line.split_once(':').unwrap_or((&line, ""));
                fields.push((n.to_owned(), v.trim_start().to_owned()));
            }
        }
    }
    let values: Vec<String> = fields
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect();
    match values.as_slice() {
        [v] => v.clone(),
        _ => panic!("{} {name} fields in:\n{}", values.len(), lossy(raw)),
    }
}

#[track_caller]
fn one_message(pf: &Postfix, local: &str) -> Vec<u8> {
    pf.wait_for_messages(local, 1, WAIT).remove(0)
}

/// PHP's mail() with many Bcc addresses: the exact command of the report,
/// `printf ... "$(seq -f 'b%g@example.test' -s ', ' 1 60)" | sendmail -t -i`, run by
/// the shell through a `sendmail` link, to a Postfix of its own (the names are not
/// unique). It was exit 65, "a header line is longer than 998 octets"; now every
/// recipient gets the message and none sees the Bcc.
#[test]
fn php_mail_with_60_bcc_is_folded_not_refused() {
    let pf = Postfix::start();
    let env = env_for(&pf.addr(), "");
    let bin = env.root().join("bin");
    fs::create_dir_all(&bin).unwrap();
    symlink(env!("CARGO_BIN_EXE_outbox"), bin.join("sendmail")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = env.configured_command("/bin/sh");
    cmd.arg("-c")
        .arg(
            "printf 'To: a@example.test\\nBcc: %s\\nSubject: x\\n\\nbody\\n' \
             \"$(seq -f 'b%g@example.test' -s ', ' 1 60)\" | sendmail -t -i",
        )
        .env("PATH", path);
    cmd.run().assert_success().assert_stderr_empty();

    let locals: Vec<String> = std::iter::once("a".to_owned())
        .chain((1..=60).map(|i| format!("b{i}")))
        .collect();
    for local in &locals {
        let raw = one_message(&pf, local);
        let lines = head(&raw);
        assert!(
            lines
                .iter()
                .all(|l| !l.to_ascii_lowercase().starts_with("bcc")),
            "a Bcc was delivered to {local}:\n{}",
            lossy(&raw)
        );
        assert_eq!(field(&raw, "To"), "a@example.test");
        assert_eq!(field(&raw, "Subject"), "x");
        assert!(lossy(&raw).ends_with("\n\nbody\n"), "{}", lossy(&raw));
    }
}

/// A To with more than 998 octets on one line reaches every recipient folded: each
/// line within 998 octets (within 78 where folded), the names and addresses whole.
#[test]
fn a_long_to_is_folded_in_the_delivered_copy() {
    let pf = Postfix::shared();
    let env = env_for(&pf.addr(), "from = \"lists@example.test\"\n");
    let locals: Vec<String> = (0..24).map(|_| unique_name("sm-long-to")).collect();
    let entries: Vec<(String, String)> = locals
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("Recipient {i:02}, of a long list"), rcpt(l)))
        .collect();
    let to: Vec<String> = entries
        .iter()
        .map(|(n, a)| format!("\"{n}\" <{a}>"))
        .collect();
    let input = format!("To: {}\nSubject: many\n\nbody\n", to.join(", "));
    assert!(input.lines().next().unwrap().len() > 998);
    sendmail(&env, &["-t", "-i"], input.as_bytes(), &[])
        .assert_success()
        .assert_stderr_empty();

    for local in &locals {
        let raw = one_message(pf, local);
        let lines = head(&raw);
        assert!(lines.iter().all(|l| l.len() <= 998), "{}", lossy(&raw));
        let to_lines: Vec<&String> = lines
            .iter()
            .skip_while(|l| !l.starts_with("To:"))
            .take_while(|l| l.starts_with("To:") || l.starts_with([' ', '\t']))
            .collect();
        assert!(to_lines.len() > 1, "{}", lossy(&raw));
        assert!(to_lines.iter().all(|l| l.len() <= 78), "{to_lines:?}");
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let got: Vec<(String, String)> = parsed
            .to()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a.name().unwrap_or_default().to_owned(),
                    a.address().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, entries);
    }
}

/// cron's header (`From: root (Cron Daemon)`, `To: root`) reaches the mailbox with
/// the account's domain on both names, the comment kept; the alias that took `root`
/// applied to the envelope only.
#[test]
fn cron_headers_get_the_domain() {
    let pf = Postfix::shared();
    let local = unique_name("sm-cron-domain");
    let env = env_for(
        &pf.addr(),
        &format!(
            "from = \"alerts@host.example.org\"\n[aliases]\nroot = \"{}\"\n",
            rcpt(&local)
        ),
    );
    let input = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> true\n\
                 X-Cron-Env: <LOGNAME=root>\n\nok\n";
    sendmail(
        &env,
        &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
        input.as_bytes(),
        &[],
    )
    .assert_success()
    .assert_stderr_empty();
    let raw = one_message(pf, &local);
    let lines = head(&raw);
    assert_eq!(
        &lines[..4],
        [
            "From: root@host.example.org (Cron Daemon)",
            "To: root@host.example.org",
            "Subject: Cron <root@host> true",
            "X-Cron-Env: <LOGNAME=root>",
        ],
        "{}",
        lossy(&raw)
    );
    assert!(
        lossy(&raw).contains(&format!("Delivered-To: {}\n", rcpt(&local))),
        "{}",
        lossy(&raw)
    );
}

/// What `date +%z` says the offset is now, with `TZ` set to `tz` (or unset).
fn offset_by_date(tz: Option<&str>) -> String {
    let mut cmd = std::process::Command::new("date");
    cmd.arg("+%z");
    match tz {
        Some(tz) => cmd.env("TZ", tz),
        None => cmd.env_remove("TZ"),
    };
    let out = cmd.output().expect("date runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The Date both faces add is in the local time zone (RFC 5322 §3.3), as Postfix and
/// mailx write it: `TZ` in its forms, else /etc/localtime. It was always +0000.
#[test]
fn date_is_in_the_local_time_zone() {
    let pf = Postfix::shared();
    let env = env_for(&pf.addr(), "from = \"clock@example.test\"\n");
    for tz in [
        Some("Europe/Berlin"),
        Some(":Europe/Berlin"),
        Some("UTC"),
        Some("America/St_Johns"),
        None,
    ] {
        let local = unique_name("sm-date");
        let mut cmd = env.configured_cmd();
        cmd.args(["sendmail", "-i", &rcpt(&local)])
            .stdin(b"Subject: when\n\nnow\n".to_vec());
        match tz {
            Some(tz) => cmd.env("TZ", tz),
            None => cmd.env_remove("TZ"),
        };
        cmd.run().assert_success().assert_stderr_empty();
        let raw = one_message(pf, &local);
        let date = field(&raw, "Date");
        let offset = date.rsplit(' ').next().unwrap().to_owned();
        assert_eq!(offset, offset_by_date(tz), "TZ={tz:?}: {date}");
        match tz {
            Some(tz) if tz.ends_with("Europe/Berlin") => {
                assert!(["+0100", "+0200"].contains(&offset.as_str()), "{date}")
            }
            Some("UTC") => assert_eq!(offset, "+0000"),
            Some("America/St_Johns") => {
                assert!(["-0330", "-0230"].contains(&offset.as_str()), "{date}")
            }
            _ => {}
        }
        assert!(
            MessageParser::default()
                .parse(&raw)
                .unwrap()
                .date()
                .is_some(),
            "{date}"
        );
    }

    // The compose face too.
    let mut cmd = env.configured_cmd();
    cmd.args(["--dry-run", "-s", "when", "--body", "now", "a@example.test"])
        .env("TZ", "Europe/Berlin");
    let out = cmd.run();
    out.assert_success();
    let stdout = out.stdout_str();
    let date = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Date: "))
        .unwrap_or_else(|| panic!("no Date in:\n{stdout}"));
    assert!(
        date.ends_with(&format!(" {}", offset_by_date(Some("Europe/Berlin")))),
        "{date}"
    );
}

/// The first comma field of `login`'s GECOS in /etc/passwd, if not empty.
fn gecos_of(login: &str) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&login))
            .then(|| f[4].split(',').next().unwrap_or_default().trim().to_owned())
            .filter(|n| !n.is_empty())
    })
}

/// The From the sendmail face adds has a display name: -F, else the account's, else
/// the user's full name from the passwd entry. It was `<root@host>`.
#[test]
fn added_from_has_a_display_name() {
    let pf = Postfix::shared();
    let from_of = |env: &TestEnv, args: &[&str], vars: &[(&str, &str)]| {
        let local = unique_name("sm-from-name");
        let mut all = args.to_vec();
        let to = rcpt(&local);
        all.push(&to);
        sendmail(env, &all, b"Subject: named\n\nhi\n", vars)
            .assert_success()
            .assert_stderr_empty();
        let raw = one_message(pf, &local);
        let lines = head(&raw);
        let from_line = lines
            .iter()
            .find(|l| l.starts_with("From:"))
            .unwrap_or_else(|| panic!("no From:\n{}", lossy(&raw)))
            .clone();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let from = parsed.from().unwrap().first().unwrap();
        (
            from.name().map(str::to_owned),
            from.address().unwrap().to_owned(),
            from_line,
        )
    };

    // -F, with a comma (quoted) and not ASCII (RFC 2047).
    let plain = env_for(&pf.addr(), "");
    let (name, _, line) = from_of(&plain, &["-F", "Doe, John"], &[]);
    assert_eq!(name.as_deref(), Some("Doe, John"));
    assert!(line.contains("\"Doe, John\""), "{line}");
    let (name, _, line) = from_of(&plain, &["-F", "Jörg Müller"], &[]);
    assert_eq!(name.as_deref(), Some("Jörg Müller"));
    assert!(line.is_ascii() && line.contains("=?"), "{line}");

    // The account's name, also when -f names the account's address.
    let account = env_for(
        &pf.addr(),
        "from = \"Backup Script <backup@example.test>\"\n",
    );
    for args in [&[][..], &["-f", "backup@example.test"][..]] {
        let (name, address, _) = from_of(&account, args, &[]);
        assert_eq!(name.as_deref(), Some("Backup Script"), "{args:?}");
        assert_eq!(address, "backup@example.test");
    }

    // The user's full name (GECOS), here root's as /etc/passwd has it.
    let (name, address, _) = from_of(&plain, &[], &[("USER", "root"), ("LOGNAME", "root")]);
    assert_eq!(name, gecos_of("root"));
    assert!(address.starts_with("root@"), "{address}");
    // A user without a passwd entry gets no name (the harness's `tester`).
    let (name, address, line) = from_of(&plain, &[], &[]);
    assert_eq!(name, None, "{line}");
    assert!(address.starts_with("tester@"), "{address}");
}
