//! What tells a person and a shell what outbox has: the man page renders with
//! man(1), the completion scripts load in bash and zsh, `--version` names the TLS
//! library, and the top-level help lists every command.

use std::process::Command;

use crate::support::{TempDir, TestEnv};

/// Runs `program args`; its output.
fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

#[test]
fn the_man_page_renders_with_man() {
    let env = TestEnv::new();
    let out = env.cmd().arg("man").run();
    out.assert_success();
    let page = out.stdout_str();
    assert!(
        page.starts_with(".ie"),
        "not roff:\n{}",
        &page[..page.len().min(200)]
    );
    let dir = TempDir::new("outbox-man");
    let file = dir.join("outbox.1");
    std::fs::write(&file, &page).unwrap();
    let file = file.to_str().unwrap();
    let shown = Command::new("man")
        .args(["--warnings", "-l", file])
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "")
        .output()
        .expect("man(1) is installed by scripts/setup.sh --test");
    let text = String::from_utf8_lossy(&shown.stdout);
    let warnings = String::from_utf8_lossy(&shown.stderr);
    assert!(shown.status.success(), "{warnings}");
    assert!(warnings.trim().is_empty(), "man warns:\n{warnings}");
    for section in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS", "VERSION"] {
        assert!(text.contains(section), "no {section} in\n{text}");
    }
    for command in [
        "outbox-sendmail",
        "outbox-queue",
        "outbox-system",
        "outbox-serve",
    ] {
        assert!(text.contains(command), "no {command} in\n{text}");
    }
    assert!(text.contains("--subject"), "{text}");
}

#[test]
fn the_completions_load_in_bash_and_zsh() {
    let env = TestEnv::new();
    let dir = TempDir::new("outbox-completions");

    let bash = env.cmd().args(["completions", "bash"]).run();
    bash.assert_success();
    let file = dir.join("outbox.bash");
    std::fs::write(&file, bash.stdout_str()).unwrap();
    let loaded = run(
        "bash",
        &[
            "-c",
            &format!("set -e; source '{}'; complete -p outbox", file.display()),
        ],
    );
    assert!(
        loaded.status.success() && String::from_utf8_lossy(&loaded.stdout).contains("_outbox"),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    let zsh = env.cmd().args(["completions", "zsh"]).run();
    zsh.assert_success();
    let file = dir.join("_outbox");
    std::fs::write(&file, zsh.stdout_str()).unwrap();
    let file = file.display().to_string();
    let syntax = run("zsh", &["-n", &file]);
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let loaded = run(
        "zsh",
        &[
            "-c",
            &format!("autoload -U compinit; compinit -u -D; source '{file}'; whence -w _outbox"),
        ],
    );
    let said = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded.status.success() && said.contains("_outbox: function"),
        "{said}{}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    for shell in ["fish", "elvish", "powershell"] {
        env.cmd()
            .args(["completions", shell])
            .run()
            .assert_success();
    }
    env.cmd()
        .args(["completions", "tcsh"])
        .run()
        .assert_code(64)
        .assert_stderr_contains("bash, elvish, fish, powershell, zsh");
}

#[test]
fn the_version_names_the_tls_library_and_the_help_every_command() {
    let env = TestEnv::new();
    let version = env.cmd().arg("--version").run();
    version.assert_success();
    let text = version.stdout_str();
    assert!(text.starts_with("outbox "), "{text}");
    assert!(text.contains("\nTLS: OpenSSL 3."), "{text}");
    assert!(text.contains("SMTPUTF8"), "{text}");

    let help = env.cmd().arg("--help").run();
    help.assert_success();
    let text = help.stdout_str();
    for command in [
        "outbox sendmail",
        "outbox queue list",
        "outbox queue flush",
        "outbox queue remove",
        "outbox system setup",
        "outbox system remove",
        "outbox serve",
        "outbox man",
        "outbox completions",
        "outbox help",
    ] {
        assert!(text.contains(command), "{command} missing from\n{text}");
    }
}
