//! TLS, AUTH and accounts, against real servers the suite starts: Postfix with
//! STARTTLS and an implicit-TLS listener, and aiosmtpd with AUTH, all with
//! certificates from the suite's own test CA.

use std::time::{Duration, Instant};

use crate::support::aiosmtpd::{MECHANISMS, Mode, SmtpServer};
use crate::support::postfix::{Postfix, rcpt, received_tls};
use crate::support::tls::{TestPki, by_name, ca};
use crate::support::{Cmd, Output, TestEnv, unique_name};

const WAIT: Duration = Duration::from_secs(30);
const SENDER: &str = "someone@example.test";
/// Already in NFKC form: the server applies SASLprep's normalisation, outbox does not.
const UTF8_PASSWORD: &str = "p\u{e4}ss w\u{f6}rd \u{65e5}\u{672c} \u{2713}";

fn outbox_cmd(env: &TestEnv, args: &[&str]) -> Cmd {
    let mut cmd = env.cmd();
    cmd.args(["--timeout", "20", "-f", SENDER, "-s", "tls test"])
        .args(args)
        .stdin(b"Sent over TLS.\n".to_vec());
    cmd
}

fn outbox(args: &[&str]) -> Output {
    outbox_cmd(&TestEnv::new(), args).run()
}

fn auth_server(mode: Mode) -> SmtpServer {
    SmtpServer::builder()
        .mode(mode)
        .auth(&MECHANISMS)
        .users(&[("alice", UTF8_PASSWORD), ("bob", "hunter2-bob")])
        .start()
}

// --- TLS against Postfix ---------------------------------------------------------------

#[test]
fn starttls_to_postfix_is_verified_and_delivers() {
    let pf = Postfix::shared_tls();
    let local = unique_name("starttls");
    let out = outbox(&[
        "-v",
        "--server",
        &by_name(&pf.addr()),
        "--tls",
        "starttls",
        "--tls-ca-file",
        &ca(),
        &rcpt(&local),
    ]);
    out.assert_success();
    let stderr = out.stderr_str();
    // The transcript: STARTTLS, what TLS was agreed, then EHLO again.
    let starttls = stderr
        .find("> STARTTLS")
        .unwrap_or_else(|| out.fail("no STARTTLS"));
    let tls_note = stderr
        .find("* TLS: TLSv1.")
        .unwrap_or_else(|| out.fail("no TLS note"));
    let second_ehlo = stderr[tls_note..]
        .find("> EHLO")
        .unwrap_or_else(|| out.fail("no EHLO after TLS"));
    assert!(starttls < tls_note && second_ehlo > 0);
    for needle in [
        "cipher ",
        "certificate CN=localhost",
        "issued by CN=",
        "expires ",
    ] {
        out.assert_stderr_contains(needle);
    }
    let msg = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    assert!(received_tls(&msg).is_some(), "Postfix saw no TLS");
}

#[test]
fn implicit_tls_to_postfix_delivers() {
    let pf = Postfix::shared_tls();
    let wrapper = pf
        .wrapper_addr()
        .expect("the shared TLS Postfix has a wrapper port");
    let local = unique_name("implicit");
    outbox(&[
        "--server",
        &by_name(&wrapper),
        "--tls",
        "implicit",
        "--tls-ca-file",
        &ca(),
        &rcpt(&local),
    ])
    .assert_success();
    let msg = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    assert!(received_tls(&msg).is_some(), "Postfix saw no TLS");
}

#[test]
fn starttls_required_but_not_offered_is_69() {
    // The plain shared Postfix offers no STARTTLS.
    let out = outbox(&[
        "--server",
        &Postfix::shared().addr(),
        "--tls",
        "starttls",
        &rcpt("never"),
    ]);
    out.assert_code(69)
        .assert_stderr_contains("does not offer STARTTLS")
        .assert_stderr_contains("--tls implicit");
}

#[test]
fn auto_on_loopback_sends_in_clear_without_trying_starttls() {
    let pf = Postfix::shared_tls();
    let local = unique_name("auto-loopback");
    let out = outbox(&["-v", "--server", &pf.addr(), &rcpt(&local)]);
    out.assert_success();
    if out.stderr_str().contains("> STARTTLS") {
        out.fail("auto must not try STARTTLS on loopback");
    }
    let msg = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    assert!(received_tls(&msg).is_none());
}

#[test]
fn implicit_tls_against_a_starttls_port_says_so() {
    let pf = Postfix::shared_tls();
    let out = outbox(&[
        "--server",
        &by_name(&pf.addr()),
        "--tls",
        "implicit",
        "--tls-ca-file",
        &ca(),
        &rcpt("never"),
    ]);
    out.assert_code(76)
        .assert_stderr_contains("answered in clear text")
        .assert_stderr_contains("--tls starttls");
}

#[test]
fn starttls_against_an_implicit_tls_port_says_so() {
    let pf = Postfix::shared_tls();
    let wrapper = pf.wrapper_addr().expect("wrapper port");
    let started = Instant::now();
    let mut cmd = TestEnv::new().cmd();
    cmd.args([
        "--server",
        &by_name(&wrapper),
        "--tls",
        "starttls",
        "--timeout",
        "2",
        "-f",
        SENDER,
        "--body",
        "x",
        &rcpt("never"),
    ]);
    let out = cmd.run();
    out.assert_code(75)
        .assert_stderr_contains("timed out")
        .assert_stderr_contains("use --tls implicit");
    assert!(started.elapsed() < Duration::from_secs(10));
}

// --- Certificates ----------------------------------------------------------------------

/// `--server localhost:PORT --tls starttls --tls-ca-file CA` then `rest`.
fn starttls_to<'a>(server: &SmtpServer, rest: &[&'a str]) -> Vec<&'a str> {
    let args = [
        "--server",
        by_name(&server.addr()).leak(),
        "--tls",
        "starttls",
        "--tls-ca-file",
        ca().leak(),
    ];
    args.into_iter().chain(rest.iter().copied()).collect()
}

fn starttls_server_with(cert: &std::path::Path, key: &std::path::Path) -> SmtpServer {
    SmtpServer::builder().starttls().cert(cert, key).start()
}

#[test]
fn an_untrusted_ca_is_77() {
    let pki = TestPki::shared();
    let server = starttls_server_with(pki.untrusted_cert(), pki.untrusted_key());
    let out = outbox(&starttls_to(&server, &["b@example.test"]));
    out.assert_code(77).assert_stderr_contains("not trusted");
    assert!(server.messages().is_empty());
}

#[test]
fn without_the_test_ca_the_system_store_does_not_trust_it() {
    let server = auth_server(Mode::StartTls);
    outbox(&[
        "--server",
        &by_name(&server.addr()),
        "--tls",
        "starttls",
        "b@example.test",
    ])
    .assert_code(77);
}

#[test]
fn a_hashed_ca_directory_is_trusted_as_the_system_store_is() {
    // SSL_CERT_DIR stands in for /etc/ssl/certs: the same lazy lookup by hash.
    let pf = Postfix::shared_tls();
    let local = unique_name("cert-dir");
    let mut cmd = outbox_cmd(&TestEnv::new(), &[]);
    cmd.env("SSL_CERT_DIR", TestPki::shared().ca_dir()).args([
        "--server",
        &by_name(&pf.addr()),
        "--tls",
        "starttls",
        &rcpt(&local),
    ]);
    cmd.run().assert_success();
    pf.wait_for_messages(&local, 1, WAIT);
}

#[test]
fn a_certificate_for_another_host_is_77_and_insecure_accepts_it_loudly() {
    let pki = TestPki::shared();
    let server = starttls_server_with(pki.wrong_host_cert(), pki.wrong_host_key());
    let args = [
        "--server",
        &by_name(&server.addr()),
        "--tls",
        "starttls",
        "--tls-ca-file",
        &ca(),
    ];
    let out = outbox(&[&args[..], &["b@example.test"]].concat());
    out.assert_code(77).assert_stderr_contains("not trusted");
    assert!(server.messages().is_empty());

    let out = outbox(&[&args[..], &["--tls-insecure", "b@example.test"]].concat());
    out.assert_success()
        .assert_stderr_contains("certificates are not checked");
    let got = server.wait_for_messages(1, WAIT);
    assert!(got[0].tls);
}

#[test]
fn an_expired_certificate_is_77() {
    let pki = TestPki::shared();
    let server = starttls_server_with(pki.expired_cert(), pki.expired_key());
    outbox(&starttls_to(&server, &["b@example.test"]))
        .assert_code(77)
        .assert_stderr_contains("expired");
}

#[test]
fn sni_is_the_name_given_not_the_address() {
    let server = auth_server(Mode::Implicit);
    outbox(&[
        "--server",
        &by_name(&server.addr()),
        "--tls",
        "implicit",
        "--tls-ca-file",
        &ca(),
        "b@example.test",
    ])
    .assert_success();
    let got = server.wait_for_messages(1, WAIT);
    assert_eq!(got[0].sni.as_deref(), Some("localhost"));
}

// --- AUTH ------------------------------------------------------------------------------

fn auth_args(server: &SmtpServer, user: &str, mechanism: &str) -> Vec<String> {
    [
        "--server",
        &by_name(&server.addr()),
        "--tls",
        "starttls",
        "--tls-ca-file",
        &ca(),
        "--user",
        user,
        "--auth",
        mechanism,
        "b@example.test",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn run_with_password(args: &[String], password: &str) -> Output {
    let env = TestEnv::new();
    let mut cmd = outbox_cmd(&env, &[]);
    cmd.args(args).env("OUTBOX_PASSWORD", password);
    cmd.run()
}

#[test]
fn each_mechanism_authenticates() {
    let server = auth_server(Mode::StartTls);
    for (i, mechanism) in MECHANISMS.iter().enumerate() {
        let out = run_with_password(
            &auth_args(&server, "alice", &mechanism.to_lowercase()),
            UTF8_PASSWORD,
        );
        out.assert_success();
        let got = server.wait_for_messages(i + 1, WAIT);
        let last = &got[i];
        assert_eq!(last.mechanism.as_deref(), Some(*mechanism));
        assert_eq!(last.auth_user.as_deref(), Some("alice"));
        assert!(last.tls);
    }
}

#[test]
fn auto_picks_the_strongest_offered() {
    let server = auth_server(Mode::StartTls);
    run_with_password(&auth_args(&server, "bob", "auto"), "hunter2-bob").assert_success();
    let got = server.wait_for_messages(1, WAIT);
    assert_eq!(got[0].mechanism.as_deref(), Some("SCRAM-SHA-256"));

    let plain_only = SmtpServer::builder()
        .starttls()
        .auth(&["LOGIN", "PLAIN"])
        .user("bob", "hunter2-bob")
        .start();
    run_with_password(&auth_args(&plain_only, "bob", "auto"), "hunter2-bob").assert_success();
    let got = plain_only.wait_for_messages(1, WAIT);
    assert_eq!(got[0].mechanism.as_deref(), Some("PLAIN"));
}

#[test]
fn a_wrong_password_is_77_with_the_servers_words() {
    let server = auth_server(Mode::StartTls);
    for mechanism in ["plain", "scram-sha-256"] {
        let out = run_with_password(&auth_args(&server, "bob", mechanism), "not-the-password");
        out.assert_code(77)
            .assert_stderr_contains("535 5.7.8 Authentication credentials invalid");
    }
    assert!(server.messages().is_empty());
}

#[test]
fn the_password_never_shows_in_the_transcript() {
    let server = auth_server(Mode::StartTls);
    for mechanism in ["plain", "login", "xoauth2"] {
        let mut args = auth_args(&server, "bob", mechanism);
        args.insert(0, "-v".into());
        let out = run_with_password(&args, "hunter2-bob");
        out.assert_success();
        let stderr = out.stderr_str();
        assert!(stderr.contains("<redacted>"), "{}", out.report());
        // Neither the password nor any base64 window of a response that holds it.
        assert!(!stderr.contains("hunter2-bob"), "{}", out.report());
        // An AUTH line is the verb and mechanism alone, or ends in <redacted>.
        for line in stderr.lines().filter(|l| l.starts_with("> AUTH ")) {
            assert!(
                line.split(' ').count() == 3 || line.ends_with(" <redacted>"),
                "{line}"
            );
        }
        use base64::Engine;
        let plain = base64::engine::general_purpose::STANDARD.encode("\0bob\0hunter2-bob");
        assert!(!stderr.contains(&plain));
    }
}

#[test]
fn the_password_is_not_in_the_process_arguments() {
    // A server that holds the greeting back keeps outbox running long enough to look
    // at its command line, with the password coming from a command.
    let env = TestEnv::new();
    let pw_file = env.write_file("pw", "hunter2-in-a-file\n");
    let server = crate::support::fake::FakeServer::start(vec![
        crate::support::fake::Step::Silence(Duration::from_secs(3)),
        crate::support::fake::Step::Close,
    ]);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_outbox"))
        .args([
            "--server",
            server.addr(),
            "--tls",
            "none",
            "--user",
            "bob",
            "--password-command",
            &format!("cat {}", pw_file.display()),
            "-f",
            SENDER,
            "--body",
            "x",
            "b@example.test",
        ])
        .env("HOME", env.home())
        .env("XDG_CONFIG_HOME", env.config_home())
        .env_remove("OUTBOX_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start outbox");
    std::thread::sleep(Duration::from_millis(800));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    assert!(!cmdline.is_empty(), "outbox ended too soon to be looked at");
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("hunter2-in-a-file"),
        "{cmdline:?}"
    );
}

#[test]
fn password_from_command_and_from_a_config_account() {
    let server = auth_server(Mode::StartTls);
    let env = TestEnv::new();
    let pw_file = env.write_file("pw", "hunter2-bob\nsecond line ignored\n");

    // --password-command
    let mut cmd = outbox_cmd(&env, &[]);
    cmd.args(auth_args(&server, "bob", "plain"))
        .args(["--password-command", &format!("cat {}", pw_file.display())]);
    cmd.run().assert_success();

    // An account in the configuration file, chosen by -A, with everything in it.
    let config = format!(
        "[default]\nserver = \"localhost:1\"\n\n\
         [account.test]\nserver = \"{}\"\ntls = \"starttls\"\ntls_ca_file = \"{}\"\n\
         user = \"bob\"\nauth = \"cram-md5\"\npassword_command = \"cat {}\"\n\
         from = \"Bob <bob@example.test>\"\n",
        by_name(&server.addr()),
        ca(),
        pw_file.display()
    );
    let path = env.write_file("config.toml", &config);
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", &path)
        .args(["-A", "test", "-s", "from config", "b@example.test"])
        .stdin(b"x\n".to_vec());
    cmd.run().assert_success();

    // -f picks the account whose from matches.
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", &path)
        .args(["-f", "bob@example.test", "-s", "by from", "b@example.test"])
        .stdin(b"x\n".to_vec());
    cmd.run().assert_success();

    let got = server.wait_for_messages(3, WAIT);
    assert_eq!(got[1].mechanism.as_deref(), Some("CRAM-MD5"));
    assert_eq!(got[1].mail_from, "bob@example.test");
    assert!(String::from_utf8_lossy(&got[1].data).contains("From: \"Bob\" <bob@example.test>"));
    assert_eq!(got[2].auth_user.as_deref(), Some("bob"));
}

#[test]
fn config_errors_name_file_line_and_key() {
    let env = TestEnv::new();
    let path = env.write_file(
        "config.toml",
        "[default]\nserver = \"localhost\"\n\n[account.a]\nuser = \"me\"\npasword = \"typo\"\n",
    );
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", &path)
        .args(["--dry-run", "--body", "x", "b@example.test"]);
    let out = cmd.run();
    out.assert_code(78)
        .assert_stderr_contains(&format!("{}:6:", path.display()))
        .assert_stderr_contains("pasword");
}

#[test]
fn a_config_with_a_password_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let path = env.write_file(
        "config.toml",
        "[default]\nuser = \"me\"\npassword = \"pw\"\n",
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", &path).args([
        "--dry-run",
        "-f",
        SENDER,
        "--body",
        "x",
        "b@example.test",
    ]);
    cmd.run()
        .assert_success()
        .assert_stderr_contains("chmod 600");
}

#[test]
fn auth_in_clear_to_loopback_is_allowed() {
    let server = SmtpServer::builder()
        .auth(&["PLAIN"])
        .auth_require_tls(false)
        .user("bob", "hunter2-bob")
        .start();
    let mut args = auth_args(&server, "bob", "plain");
    args[3] = "none".into();
    run_with_password(&args, "hunter2-bob").assert_success();
    let got = server.wait_for_messages(1, WAIT);
    assert!(!got[0].tls);
    assert_eq!(got[0].auth_user.as_deref(), Some("bob"));
}

#[test]
fn no_auth_offered_before_tls_is_explained() {
    // AUTH is offered only after STARTTLS; asking for it in clear gets a clear answer.
    let server = auth_server(Mode::StartTls);
    let mut args = auth_args(&server, "bob", "plain");
    args[3] = "none".into();
    run_with_password(&args, "hunter2-bob")
        .assert_code(69)
        .assert_stderr_contains("offers no AUTH");
}

#[test]
fn password_prompt_reads_the_terminal() {
    let server = auth_server(Mode::StartTls);
    let args = auth_args(&server, "bob", "plain").join(" ");
    let bin = env!("CARGO_BIN_EXE_outbox");
    let env = TestEnv::new();
    let mut cmd = env.command("/usr/bin/script");
    // Body first (ended by "."), then the password at the prompt.
    cmd.args([
        "-qec",
        &format!("{bin} -f {SENDER} -s prompt --timeout 20 {args}"),
        "/dev/null",
    ])
    .stdin(b"typed body\n.\nhunter2-bob\n".to_vec());
    let out = cmd.run();
    out.assert_success()
        .assert_stdout_contains("Password for bob at localhost:");
    let got = server.wait_for_messages(1, WAIT);
    assert_eq!(got[0].auth_user.as_deref(), Some("bob"));
}

// --- auto TLS to loopback when AUTH needs it ---------------------------------------------

/// `--tls auto` (no --tls at all) to `server` on loopback, logging in as bob.
fn auto_with_auth(server: &SmtpServer, extra: &[&str]) -> Output {
    let env = TestEnv::new();
    let mut cmd = outbox_cmd(&env, &["-v", "--server", &by_name(&server.addr())]);
    cmd.args(["--user", "bob", "--auth", "plain"])
        .args(extra)
        .arg("b@example.test")
        .env("OUTBOX_PASSWORD", "hunter2-bob");
    cmd.run()
}

#[test]
fn auto_to_loopback_starts_tls_when_auth_is_offered_only_after_it() {
    // As Dovecot's submission and Postfix with smtpd_tls_auth_only = yes: STARTTLS and
    // no AUTH before it.
    let server = auth_server(Mode::StartTls);
    let out = auto_with_auth(&server, &["--tls-ca-file", &ca()]);
    out.assert_success().assert_stderr_contains("> STARTTLS");
    let got = server.wait_for_messages(1, WAIT);
    assert!(got[0].tls, "{}", out.report());
    assert_eq!(got[0].auth_user.as_deref(), Some("bob"));
}

#[test]
fn auto_to_loopback_for_auth_checks_the_certificate_and_never_falls_back_to_clear() {
    let server = auth_server(Mode::StartTls);
    // The test CA is not in the system store: the certificate is refused.
    let out = auto_with_auth(&server, &[]);
    out.assert_code(77).assert_stderr_contains("not trusted");
    assert!(
        server.auth_attempts().is_empty(),
        "{:?}",
        server.auth_attempts()
    );
    assert!(server.messages().is_empty());
}

#[test]
fn auto_to_loopback_with_auth_offered_in_clear_stays_in_clear() {
    let server = SmtpServer::builder()
        .mode(Mode::StartTls)
        .auth(&["PLAIN"])
        .auth_require_tls(false)
        .user("bob", "hunter2-bob")
        .start();
    let out = auto_with_auth(&server, &["--tls-ca-file", &ca()]);
    out.assert_success();
    if out.stderr_str().contains("> STARTTLS") {
        out.fail("AUTH is offered in clear on loopback: auto must not start TLS");
    }
    let got = server.wait_for_messages(1, WAIT);
    assert!(!got[0].tls);
    assert_eq!(got[0].auth_user.as_deref(), Some("bob"));
}

/// The SHA-256 fingerprint of a PEM certificate, as the openssl command prints it.
fn openssl_fingerprint(cert: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("the openssl command is installed by scripts/setup.sh --test");
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, hex) = text
        .trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"));
    format!("sha256:{hex}")
}

/// `--tls-fingerprint`: a self-signed certificate no CA vouches for is accepted when
/// its fingerprint is the one pinned, and its name is not checked; another pin is
/// refused with 77, saying what the server showed.
#[test]
fn a_pinned_fingerprint_stands_in_for_the_ca_and_a_wrong_one_is_77() {
    let pki = TestPki::shared();
    let pf = Postfix::builder()
        .tls(pki.self_signed_cert(), pki.self_signed_key())
        .start();
    let right = openssl_fingerprint(pki.self_signed_cert());
    let local = unique_name("pinned");
    let env = TestEnv::new();
    let args = |pin: &str| {
        let mut cmd = outbox_cmd(&env, &[]);
        cmd.args(["--server", &pf.addr(), "--tls", "starttls"])
            .args(["--tls-fingerprint", pin, &rcpt(&local)]);
        cmd
    };
    args(&right).run().assert_success();
    let raw = pf.wait_for_messages(&local, 1, WAIT).remove(0);
    assert!(received_tls(&raw).is_some(), "not over TLS");
    // Without the pin the same server is not trusted.
    let mut plain = outbox_cmd(&env, &[]);
    plain
        .args(["--server", &pf.addr(), "--tls", "starttls", &rcpt(&local)])
        .run()
        .assert_code(77);
    let wrong = openssl_fingerprint(pki.server_cert());
    args(&wrong)
        .run()
        .assert_code(77)
        .assert_stderr_contains(&format!("fingerprint is {right}, not the pinned {wrong}"));
    args("sha256:00")
        .run()
        .assert_code(64)
        .assert_stderr_contains("--tls-fingerprint");
    // The same pin from the configuration.
    let config = env.write_file(
        "pinned.toml",
        format!("[default]\ntls_fingerprint = \"{right}\"\n"),
    );
    let mut cmd = outbox_cmd(&env, &[]);
    cmd.env("OUTBOX_CONFIG", &config)
        .args(["--server", &pf.addr(), "--tls", "starttls", &rcpt(&local)])
        .run()
        .assert_success();
    pf.wait_for_messages(&local, 2, WAIT);
}

/// `--tls-cert`/`--tls-key` (and `tls_cert`/`tls_key` in the configuration): a
/// Postfix that relays only for clients with a certificate of the test CA
/// (`permit_tls_all_clientcerts`) takes the message with one and refuses it
/// without; a key that is not the certificate's is a configuration error (78).
#[test]
fn a_client_certificate_gets_past_a_relay_that_asks_for_one() {
    let pki = TestPki::shared();
    let ca = pki.ca_cert().display().to_string();
    let pf = Postfix::builder()
        .tls_test_pki()
        .main_cf("smtpd_tls_ask_ccert", "yes")
        .main_cf("smtpd_tls_CAfile", &ca)
        .main_cf(
            "smtpd_recipient_restrictions",
            "permit_tls_all_clientcerts, reject",
        )
        .start();
    let local = unique_name("ccert");
    let env = TestEnv::new();
    let send = |extra: &[&str]| {
        let mut cmd = outbox_cmd(&env, &[]);
        cmd.args(["--server", &by_name(&pf.addr()), "--tls", "starttls"])
            .arg("--tls-ca-file")
            .arg(pki.ca_cert())
            .args(extra)
            .arg(rcpt(&local));
        cmd.run()
    };
    let cert = pki.server_cert().display().to_string();
    let key = pki.server_key().display().to_string();
    send(&["--tls-cert", &cert, "--tls-key", &key]).assert_success();
    pf.wait_for_messages(&local, 1, WAIT);
    let refused = send(&[]);
    assert_ne!(refused.status, Some(0), "{}", refused.report());
    assert!(refused.stderr_str().contains("554"), "{}", refused.report());
    // The same from the configuration.
    let config = env.write_file(
        "ccert.toml",
        format!("[default]\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n"),
    );
    let mut cmd = outbox_cmd(&env, &[]);
    cmd.env("OUTBOX_CONFIG", &config)
        .args(["--server", &by_name(&pf.addr()), "--tls", "starttls"])
        .arg("--tls-ca-file")
        .arg(pki.ca_cert())
        .arg(rcpt(&local));
    cmd.run().assert_success();
    pf.wait_for_messages(&local, 2, WAIT);
    let other_key = pki.wrong_host_key().display().to_string();
    send(&["--tls-cert", &cert, "--tls-key", &other_key])
        .assert_code(78)
        .assert_stderr_contains("cannot be used as the client certificate's key");
}
