//! `outbox probe`, against real servers the suite starts: Postfix with STARTTLS and
//! its implicit-TLS listener, aiosmtpd with AUTH only after TLS and with chosen
//! certificates, and Postfix's smtp-sink (no TLS). What the probe says of a
//! certificate is compared with what the openssl command says of the same file.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::aiosmtpd::{Mode, SmtpServer};
use crate::support::fake::{FakeServer, Step, send};
use crate::support::postfix::Postfix;
use crate::support::tls::{TestPki, WRONG_HOST_NAME, by_name, ca};
use crate::support::{Output, TestEnv, free_port, outbox};

fn probe(args: &[&str]) -> Output {
    outbox().args(["probe", "--timeout", "20"]).args(args).run()
}

/// What `openssl x509` prints for `-noout -OPTION` of `cert`, after the `=`.
fn openssl_x509(cert: &Path, option: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-sha256", option, "-in"])
        .arg(cert)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl x509 {option} failed");
    let text = String::from_utf8(out.stdout).expect("openssl prints text");
    let (_, value) = text.trim().split_once('=').expect("NAME=VALUE");
    value.to_owned()
}

/// The SHA-256 fingerprint of `cert` as openssl prints it, `AB:CD:...`.
fn fingerprint(cert: &Path) -> String {
    openssl_x509(cert, "-fingerprint")
}

/// Whole days left on `cert`, from openssl's notAfter.
fn days_left(cert: &Path) -> i64 {
    let end = openssl_x509(cert, "-enddate");
    let out = Command::new("date")
        .args(["-u", "-d", &end, "+%s"])
        .output()
        .expect("date runs");
    let end: i64 = String::from_utf8(out.stdout)
        .expect("date prints text")
        .trim()
        .parse()
        .expect("seconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (end - now).div_euclid(86_400)
}

#[test]
fn probe_reports_postfix_over_starttls_with_the_certificate_openssl_sees() {
    let pf = Postfix::shared_tls();
    let pki = TestPki::shared();
    let out = probe(&["-v", "--tls-ca-file", &ca(), &by_name(&pf.addr())]);
    out.assert_success();
    let stdout = out.stdout_str();
    // Each capability, as offered under TLS.
    let under_tls = stdout
        .lines()
        .find(|l| l.starts_with("under TLS:"))
        .unwrap_or_else(|| out.fail("no EHLO under TLS"));
    for keyword in [
        "PIPELINING",
        "SIZE",
        "ETRN",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
    ] {
        assert!(under_tls.contains(keyword), "{keyword}\n{}", out.report());
    }
    assert!(!under_tls.contains("STARTTLS"), "{}", out.report());
    for needle in [
        "in clear:",
        "STARTTLS",
        "TLS changed: removed STARTTLS\n",
        "not offered: REQUIRETLS",
        "AUTH:        none offered\n",
        ", after STARTTLS\n",
        "trusted:     yes, by a trusted CA\n",
        "name:        localhost: matches the certificate\n",
        "certificate 1 of 1 (the server's):\n",
        "  subject:     CN=localhost\n",
        "  issuer:      CN=outbox test CA\n",
        "  names:       DNS:localhost, DNS:mx.outbox.test, IP:127.0.0.1, IP:::1\n",
        "timings:     connect ",
        ", STARTTLS ",
        ", TLS handshake ",
        ", EHLO under TLS ",
    ] {
        out.assert_stdout_contains(needle);
    }
    let days = days_left(pki.server_cert());
    out.assert_stdout_contains(&format!(" ({days} days left)\n"))
        .assert_stdout_contains(&format!(
            "  SHA-256:     {}\n",
            fingerprint(pki.server_cert())
        ));
    // The dialogue: STARTTLS and EHLO again, then QUIT; never MAIL nor AUTH.
    let stderr = out.stderr_str();
    for sent in ["> EHLO ", "> STARTTLS", "> QUIT"] {
        out.assert_stderr_contains(sent);
    }
    assert_eq!(stderr.matches("> EHLO ").count(), 2, "{}", out.report());
    assert!(!stderr.contains("> MAIL") && !stderr.contains("> AUTH"));
}

#[test]
fn probe_without_the_test_ca_says_the_certificate_is_untrusted_and_why() {
    let pf = Postfix::shared_tls();
    let out = probe(&[&by_name(&pf.addr())]);
    // The report in full, then 77: outbox would refuse this certificate.
    out.assert_code(77)
        .assert_stdout_contains("trusted:     no: unable to get local issuer certificate")
        .assert_stdout_contains("name:        localhost: matches the certificate\n")
        .assert_stdout_contains("under TLS:")
        .assert_stdout_contains(
            "problem: the certificate would be refused (exit 77): unable to get local issuer \
             certificate",
        );
}

#[test]
fn probe_says_a_wrong_host_certificate_does_not_match_the_name() {
    let pki = TestPki::shared();
    let server = SmtpServer::builder()
        .starttls()
        .cert(pki.wrong_host_cert(), pki.wrong_host_key())
        .start();
    let out = probe(&["--tls-ca-file", &ca(), &by_name(&server.addr())]);
    out.assert_code(77)
        .assert_stdout_contains("trusted:     yes, by a trusted CA\n")
        .assert_stdout_contains(&format!(
            "name:        localhost: does not match (the certificate is for \
             DNS:{WRONG_HOST_NAME})\n"
        ))
        .assert_stdout_contains("it is not for localhost");
    // By its address, the name check is for the IP address, which it lacks too.
    let out = probe(&["--tls-ca-file", &ca(), &server.addr()]);
    out.assert_code(77)
        .assert_stdout_contains("name:        127.0.0.1: does not match");
}

#[test]
fn probe_sees_implicit_tls_on_postfix_wrapper_port() {
    let pf = Postfix::shared_tls();
    let wrapper = pf
        .wrapper_addr()
        .expect("the shared TLS Postfix has a wrapper port");
    let out = probe(&[
        "--tls",
        "implicit",
        "--tls-ca-file",
        &ca(),
        &by_name(&wrapper),
    ]);
    out.assert_success()
        .assert_stdout_contains(", implicit (from the first byte)\n")
        .assert_stdout_contains("under TLS:")
        .assert_stdout_contains("timings:     connect ");
    let stdout = out.stdout_str();
    assert!(!stdout.contains("in clear:"), "{}", out.report());
    assert!(!stdout.contains("STARTTLS "), "{}", out.report());
}

#[test]
fn probe_says_auth_appears_only_after_tls_and_sends_none() {
    let server = SmtpServer::builder()
        .mode(Mode::StartTls)
        .auth(&["PLAIN", "LOGIN"])
        .user("alice", "secret-never-sent")
        .start();
    let out = probe(&["--tls-ca-file", &ca(), &by_name(&server.addr())]);
    out.assert_success()
        .assert_stdout_contains("AUTH:        PLAIN LOGIN (only under TLS)\n")
        .assert_stdout_contains("TLS changed: added AUTH PLAIN LOGIN; removed STARTTLS\n")
        .assert_stdout_contains("note: AUTH is offered only after STARTTLS, as it should be\n");
    assert!(server.auth_attempts().is_empty(), "{}", server.log());
}

/// Postfix's smtp-sink on a free loopback port, killed on drop.
struct Sink {
    child: Child,
    port: u16,
}

impl Sink {
    fn start() -> Sink {
        let port = free_port();
        let child = Command::new("/usr/sbin/smtp-sink")
            .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "16"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink starts (it comes with the postfix package)");
        let sink = Sink { child, port };
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "smtp-sink did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        sink
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn probe_finds_that_smtp_sink_offers_no_starttls() {
    let sink = Sink::start();
    let addr = format!("127.0.0.1:{}", sink.port);
    // To loopback outbox may send in clear: a warning, and 0.
    let out = probe(&[&addr]);
    out.assert_success()
        .assert_stdout_contains("TLS:         none: STARTTLS not offered\n")
        .assert_stdout_contains(
            "warning: STARTTLS is not offered: mail to this server goes in clear\n",
        );
    // Where TLS is asked for, outbox would not send: 69.
    let out = probe(&["--tls", "starttls", &addr]);
    out.assert_code(69)
        .assert_stdout_contains("problem: STARTTLS is not offered, and these settings ask for TLS");
    let out = probe(&["--check", &addr]);
    out.assert_code(1);
    assert!(
        out.stdout_str().starts_with(&format!(
            "SMTP WARNING - {addr}: STARTTLS is not offered: mail to this server goes in clear \
             | time="
        )),
        "{}",
        out.report()
    );
}

#[test]
fn probe_json_holds_the_same_facts() {
    let pf = Postfix::shared_tls();
    let pki = TestPki::shared();
    let out = probe(&["--json", "--tls-ca-file", &ca(), &by_name(&pf.addr())]);
    out.assert_success();
    let json = out.json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["loopback"], true);
    assert_eq!(json["size"], 50 * 1024 * 1024);
    let keywords = |key: &str| -> Vec<String> {
        json[key]["extensions"]
            .as_array()
            .unwrap_or_else(|| out.fail(&format!("no {key}")))
            .iter()
            .map(|e| e["keyword"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(keywords("ehlo_clear").contains(&"STARTTLS".to_owned()));
    assert!(keywords("ehlo_tls").contains(&"CHUNKING".to_owned()));
    assert!(!keywords("ehlo_tls").contains(&"STARTTLS".to_owned()));
    let tls = &json["tls"];
    assert_eq!(tls["began"], "starttls");
    assert!(tls["version"].as_str().unwrap().starts_with("TLSv1."));
    assert_eq!(tls["accepted"], true);
    assert_eq!(tls["chain_trusted"], true);
    assert_eq!(tls["name_matches"], true);
    assert_eq!(tls["name"], "localhost");
    assert_eq!(tls["errors"], Value::Array(vec![]));
    let days = days_left(pki.server_cert());
    assert_eq!(tls["days_left"], days);
    let leaf = &tls["certificates"][0];
    assert_eq!(leaf["sha256"], fingerprint(pki.server_cert()));
    assert_eq!(leaf["subject"], "CN=localhost");
    assert_eq!(leaf["days_left"], days);
    assert_eq!(leaf["ip_addresses"][0], "127.0.0.1");
    for step in [
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "tls_handshake",
        "ehlo_tls",
        "total",
    ] {
        assert!(json["timings_ms"][step].is_number(), "{step}");
    }
    // The certificate of the suite has 29 days left: a warning under the default 30.
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["level"], "warning");
    assert_eq!(
        findings[0]["text"],
        format!("the certificate expires in {days} days (warning under 30)")
    );
}

#[test]
fn probe_check_warns_then_goes_critical_on_a_certificate_about_to_expire() {
    let pki = TestPki::shared();
    let server = SmtpServer::builder()
        .starttls()
        .cert(pki.expiring_cert(), pki.expiring_key())
        .start();
    let addr = by_name(&server.addr());
    let days = days_left(pki.expiring_cert());
    let out = probe(&[
        "--check",
        "--warn-days",
        "30",
        "--tls-ca-file",
        &ca(),
        &addr,
    ]);
    out.assert_code(1);
    let first = out
        .stdout_str()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        first.starts_with(&format!(
            "SMTP WARNING - {addr}: the certificate expires in {days} days (warning under 30) \
             | time="
        )),
        "{}",
        out.report()
    );
    assert!(
        first.ends_with(&format!(" cert_days={days};30:;7:;0")),
        "{}",
        out.report()
    );
    let out = probe(&[
        "--check",
        "--warn-days",
        "30",
        "--critical-days",
        "14",
        "--tls-ca-file",
        &ca(),
        &addr,
    ]);
    out.assert_code(2);
    assert!(
        out.stdout_str().starts_with(&format!(
            "SMTP CRITICAL - {addr}: the certificate expires in {days} days (critical under 14)"
        )),
        "{}",
        out.report()
    );
    // Untrusted is critical whatever the days.
    let out = probe(&["--check", "--critical-days", "1", &addr]);
    out.assert_code(2)
        .assert_stdout_contains("the certificate would be refused (exit 77)");
}

#[test]
fn probe_check_is_ok_for_a_valid_certificate_and_critical_when_nothing_answers() {
    let pf = Postfix::shared_tls();
    let addr = by_name(&pf.addr());
    let days = days_left(TestPki::shared().server_cert());
    let out = probe(&[
        "--check",
        "--warn-days",
        "20",
        "--critical-days",
        "10",
        "--tls-ca-file",
        &ca(),
        &addr,
    ]);
    out.assert_success();
    let stdout = out.stdout_str();
    let expected = format!("SMTP OK - {addr}: TLSv1.");
    assert!(stdout.starts_with(&expected), "{}", out.report());
    assert!(
        stdout.contains(&format!(
            " after STARTTLS, certificate valid for {days} days, "
        )),
        "{}",
        out.report()
    );
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("cert_days={days};20:;10:;0")),
        "{}",
        out.report()
    );
    assert_eq!(stdout.lines().count(), 1, "{}", out.report());
    // Nothing listening: CRITICAL, in the plugin's form.
    let port = free_port();
    let out = probe(&["--check", &format!("127.0.0.1:{port}")]);
    out.assert_code(2);
    assert!(
        out.stdout_str().starts_with(&format!(
            "SMTP CRITICAL - cannot connect to 127.0.0.1:{port}"
        )),
        "{}",
        out.report()
    );
    // A command line it cannot run: UNKNOWN.
    let out = probe(&["--check", "--warn-days", "soon", &addr]);
    out.assert_code(3)
        .assert_stdout_contains("SMTP UNKNOWN - invalid command line");
}

#[test]
fn probe_takes_the_configured_server_and_never_runs_the_password_command() {
    let sink = Sink::start();
    let env = TestEnv::new();
    let ran = env.root().join("password-command-ran");
    env.configure(
        &format!("127.0.0.1:{}", sink.port),
        20,
        &format!(
            "user = \"alice\"\npassword_command = \"touch {} && echo leaked-secret\"\n",
            ran.display()
        ),
    );
    let out = env.configured_cmd().args(["probe", "-v"]).run();
    out.assert_success()
        .assert_stdout_contains(&format!("server:      127.0.0.1:{}\n", sink.port))
        .assert_stdout_contains("AUTH:        PLAIN LOGIN (in clear)\n");
    assert!(!ran.exists(), "the password command ran\n{}", out.report());
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        !all.contains("leaked-secret") && !all.contains("> AUTH"),
        "{}",
        out.report()
    );
    // A server named on the command line, and --server, cannot both be given.
    env.configured_cmd()
        .args(["probe", "--server", "a.example.test", "b.example.test"])
        .run()
        .assert_code(64);
}

// --- faults, from a scripted peer ----------------------------------------------------

#[test]
fn probe_reports_a_454_to_starttls_with_what_came_before_and_75() {
    let peer = FakeServer::start(vec![
        send("220 fake.example.test ESMTP\r\n"),
        Step::Line,
        send("250-fake.example.test\r\n250-SIZE 1000\r\n250 STARTTLS\r\n"),
        Step::Line,
        send("454 4.7.0 TLS not available due to temporary reason\r\n"),
        Step::Line,
        send("221 bye\r\n"),
        Step::Close,
    ]);
    let out = probe(&[peer.addr()]);
    out.assert_code(75)
        .assert_stdout_contains("in clear:    fake.example.test offers SIZE 1000, STARTTLS\n")
        .assert_stdout_contains("TLS:         none: failed (see the findings)\n")
        .assert_stdout_contains(
            "  problem: the server refused STARTTLS: 454 4.7.0 TLS not available due to \
             temporary reason\n",
        );
    assert_eq!(
        peer.received_string(),
        "EHLO [127.0.0.1]\r\nSTARTTLS\r\nQUIT\r\n"
    );
}

#[test]
fn probe_falls_back_to_helo_when_ehlo_is_refused() {
    let peer = FakeServer::start(vec![
        send("220 old.example.test SMTP\r\n"),
        Step::Line,
        send("502 5.5.1 command not recognized\r\n"),
        Step::Line,
        send("250 old.example.test\r\n"),
        Step::Line,
        send("221 bye\r\n"),
        Step::Close,
    ]);
    let out = probe(&["--ehlo-name", "client.example.test", peer.addr()]);
    out.assert_success()
        .assert_stdout_contains("in clear:    old.example.test took HELO, not EHLO: no extension\n")
        .assert_stdout_contains("warning: the server refused EHLO and took HELO");
    assert_eq!(
        peer.received_string(),
        "EHLO client.example.test\r\nHELO client.example.test\r\nQUIT\r\n"
    );
}

#[test]
fn probe_of_a_server_that_refuses_or_says_nothing_is_an_error_or_critical() {
    let peer = FakeServer::start(vec![
        send("421 4.3.2 busy, come back later\r\n"),
        Step::Close,
    ]);
    let out = probe(&[peer.addr()]);
    out.assert_code(75)
        .assert_stdout_empty()
        .assert_stderr_contains("421 4.3.2 busy, come back later");
    let peer = FakeServer::start(vec![Step::Silence(Duration::from_secs(5)), Step::Close]);
    let out = outbox()
        .args(["probe", "--check", "--timeout", "1", peer.addr()])
        .run();
    out.assert_code(2);
    assert!(
        out.stdout_str().starts_with(&format!(
            "SMTP CRITICAL - {}: timed out after 1s waiting for the server (at greeting)\n",
            peer.addr()
        )),
        "{}",
        out.report()
    );
}

#[test]
fn probe_names_ehlo_when_the_server_closes_there() {
    let peer = FakeServer::start(vec![
        send("220 fake.example.test ESMTP\r\n"),
        Step::Line,
        Step::Close,
    ]);
    probe(&[peer.addr()])
        .assert_code(75)
        .assert_stderr_contains("the server closed the connection (at EHLO)");
}
