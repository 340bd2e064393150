//! The seed commands (`outbox vrfy`, `expn`, `etrn`, `noop`, `rset`, `command`):
//! against a Postfix that answers VRFY and ETRN, and a scripted peer for what Postfix
//! does not do (EXPN, a 502 to the retired verbs, replies that leave the session out
//! of step). Lines that would not be one command are refused before connecting.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::OnceLock;

use crate::support::aiosmtpd::SmtpServer;
use crate::support::fake::{FakeServer, Step, send};
use crate::support::postfix::Postfix;
use crate::support::tls::TestPki;
use crate::support::{Output, TestEnv, outbox};

const GREETING: &str = "220 fake.example.test ESMTP\r\n";
const EHLO_OK: &str = "250-fake.example.test\r\n250 8BITMIME\r\n";
const EHLO_NAME: &str = "client.example.test";

/// A Postfix of these tests: ETRN for example.test (a fast-flush domain), and one
/// known mailbox, so that VRFY can tell a known user from an unknown one.
fn postfix() -> &'static Postfix {
    static PF: OnceLock<Postfix> = OnceLock::new();
    PF.get_or_init(|| {
        Postfix::builder()
            .main_cf("fast_flush_domains", "example.test")
            .main_cf(
                "virtual_mailbox_maps",
                "inline:{ root@example.test=example.test/ }",
            )
            .start()
    })
}

/// `outbox SEED ARGS...` against `server`.
fn seed(server: &str, seed: &str, args: &[&str]) -> Output {
    let mut cmd = outbox();
    cmd.arg(seed)
        .args([
            "--server",
            server,
            "--timeout",
            "10",
            "--ehlo-name",
            EHLO_NAME,
        ])
        .args(args);
    cmd.run()
}

/// A peer that greets, answers EHLO, gives `reply` to the one command, and then
/// answers QUIT if it comes.
fn peer(reply: &str) -> FakeServer {
    FakeServer::start(vec![
        send(GREETING),
        Step::Line,
        send(EHLO_OK),
        Step::Line,
        send(reply),
        Step::Line,
        send("221 bye\r\n"),
        Step::Close,
    ])
}

fn ehlo_then(lines: &str) -> String {
    format!("EHLO {EHLO_NAME}\r\n{lines}")
}

#[test]
fn vrfy_of_a_known_user_is_0_and_of_an_unknown_one_67() {
    let pf = postfix();
    seed(&pf.addr(), "vrfy", &["root@example.test"])
        .assert_code(0)
        .assert_stderr_empty();
    let out = seed(&pf.addr(), "vrfy", &["root@example.test"]);
    assert_eq!(out.stdout_str(), "252 2.0.0 root@example.test\n");

    let out = seed(&pf.addr(), "vrfy", &["nobody@example.test"]);
    out.assert_code(67).assert_stderr_contains(
        "outbox: \"VRFY nobody@example.test\" was not accepted: the server answered 550 \
         (250, 251 or 252 expected)",
    );
    assert_eq!(
        out.stdout_str(),
        "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in \
         virtual mailbox table\n"
    );
    // Outside its domains: a refusal, but not of the user.
    let out = seed(&pf.addr(), "vrfy", &["x@elsewhere.test"]);
    out.assert_code(69);
    assert_eq!(
        out.stdout_str(),
        "554 5.7.1 <x@elsewhere.test>: Relay access denied\n"
    );
}

#[test]
fn etrn_for_a_fast_flush_domain_is_0_and_for_another_75() {
    let pf = postfix();
    for node in ["example.test", "@example.test"] {
        let out = seed(&pf.addr(), "etrn", &[node]);
        out.assert_code(0);
        assert_eq!(out.stdout_str(), "250 Queuing started\n", "{node}");
    }
    let out = seed(&pf.addr(), "etrn", &["elsewhere.test"]);
    out.assert_code(75);
    assert_eq!(
        out.stdout_str(),
        "459 <elsewhere.test>: service unavailable\n"
    );
    let out = seed(&pf.addr(), "etrn", &["#deferred"]);
    out.assert_code(75);
    assert_eq!(out.stdout_str(), "459 <deferred>: service unavailable\n");
}

#[test]
fn noop_and_rset_are_0_and_end_with_quit() {
    let pf = postfix();
    for (verb, line) in [("noop", "> NOOP"), ("rset", "> RSET")] {
        let out = seed(&pf.addr(), verb, &["-v"]);
        out.assert_code(0);
        assert_eq!(out.stdout_str(), "250 2.0.0 Ok\n", "{verb}");
        let stderr = out.stderr_str();
        let sent: Vec<&str> = stderr.lines().filter(|l| l.starts_with("> ")).collect();
        assert_eq!(sent, [&format!("> EHLO {EHLO_NAME}"), line, "> QUIT"]);
        out.assert_stderr_contains("< 250 2.0.0 Ok");
    }
}

/// RFC 5321 Appendix F retired TURN, SEND, SAML and SOML; Postfix does not know
/// them, nor HELP or EXPN.
#[test]
fn postfix_answers_help_expn_and_the_retired_verbs_with_500() {
    let pf = postfix();
    for line in [
        "HELP",
        "HELP MAIL",
        "TURN",
        "SEND FROM:<a@example.test>",
        "SAML FROM:<a@example.test>",
        "SOML FROM:<a@example.test>",
    ] {
        let out = seed(&pf.addr(), "command", &[line]);
        out.assert_code(69);
        assert_eq!(
            out.stdout_str(),
            "500 5.5.2 Error: command not recognized\n",
            "{line}"
        );
    }
    let out = seed(&pf.addr(), "expn", &["staff"]);
    out.assert_code(69);
    assert_eq!(
        out.stdout_str(),
        "500 5.5.2 Error: command not recognized\n"
    );
}

#[test]
fn the_json_names_the_command_its_reply_tls_and_timings() {
    let pf = Postfix::shared_tls();
    let ca = TestPki::shared().ca_cert().display().to_string();
    let out = seed(
        &pf.addr(),
        "vrfy",
        &[
            "--tls",
            "starttls",
            "--tls-ca-file",
            &ca,
            "--json",
            "root@example.test",
        ],
    );
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["server"]["address"], pf.addr());
    assert_eq!(v["command"], "VRFY root@example.test");
    assert_eq!(v["reply"]["code"], 252);
    assert_eq!(v["reply"]["enhanced"], "2.0.0");
    assert_eq!(v["reply"]["lines"][0], "2.0.0 root@example.test");
    assert_eq!(v["ended"], "quit");
    assert_eq!(v["tls"]["started"], "starttls");
    assert!(v["timings_ms"]["command"].as_f64().is_some(), "{v}");
    assert!(v["timings_ms"]["total"].as_f64().is_some(), "{v}");
    assert_eq!(v["error"], serde_json::Value::Null);

    // A refusal: the error, with the reply and the command stage.
    let out = seed(&pf.addr(), "command", &["--tls", "none", "--json", "TURN"]);
    out.assert_code(69);
    let v = out.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 69);
    assert_eq!(v["command"], "TURN");
    assert_eq!(v["reply"]["code"], 500);
    assert_eq!(v["tls"], serde_json::Value::Null);
    assert_eq!(v["error"]["stage"], "command");
    assert_eq!(v["error"]["reply"]["code"], 500);
}

/// The connection flags and the configuration are the compose face's: here an
/// account with STARTTLS and AUTH, chosen by `-A`.
#[test]
fn an_account_brings_its_server_tls_and_auth() {
    let server = SmtpServer::builder()
        .starttls()
        .auth(&["PLAIN"])
        .user("bob", "hunter2-bob")
        .start();
    let env = TestEnv::new();
    let config = env.write_file(
        "config.toml",
        format!(
            "[default]\nserver = \"localhost:1\"\n\n\
             [account.test]\nserver = \"{}\"\ntls = \"starttls\"\ntls_ca_file = \"{}\"\n\
             user = \"bob\"\nauth = \"plain\"\n",
            server.addr(),
            TestPki::shared().ca_cert().display()
        ),
    );
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", &config)
        .env("OUTBOX_PASSWORD", "hunter2-bob")
        .args(["noop", "-A", "test", "-v", "--json"]);
    let out = cmd.run();
    out.assert_code(0)
        .assert_stderr_contains("> STARTTLS")
        .assert_stderr_contains("> AUTH PLAIN <redacted>")
        .assert_stderr_contains("> NOOP");
    assert!(!out.stderr_str().contains("hunter2"), "{}", out.report());
    let v = out.json();
    assert_eq!(v["command"], "NOOP");
    assert_eq!(v["reply"]["code"], 250);
    assert_eq!(v["tls"]["started"], "starttls");
    assert_eq!(v["auth"], "PLAIN");
    let attempts = server.auth_attempts();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].user.as_deref(), Some("bob"));
    assert!(attempts[0].success && attempts[0].tls, "{attempts:?}");

    // A refused AUTH is AUTH's failure (77), and the command is never sent.
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", &config)
        .env("OUTBOX_PASSWORD", "wrong")
        .args(["vrfy", "-A", "test", "-v", "bob"]);
    let out = cmd.run();
    out.assert_code(77).assert_stdout_empty();
    assert!(!out.stderr_str().contains("> VRFY"), "{}", out.report());

    // An account the file does not have: 78, before connecting; the JSON names the
    // command all the same.
    let mut cmd = env.cmd();
    cmd.env("OUTBOX_CONFIG", &config)
        .args(["vrfy", "-A", "nosuch", "--json", "bob"]);
    let out = cmd.run();
    out.assert_code(78);
    let v = out.json();
    assert_eq!(v["command"], "VRFY bob");
    assert_eq!(v["error"]["exit_code"], 78);
}

/// Postfix with VRFY turned off says so: "not implemented" is 69.
#[test]
fn vrfy_to_a_postfix_that_disables_it_is_69() {
    let pf = Postfix::builder()
        .main_cf("disable_vrfy_command", "yes")
        .start();
    let out = seed(&pf.addr(), "vrfy", &["root@example.test"]);
    out.assert_code(69);
    assert_eq!(out.stdout_str(), "502 5.5.1 VRFY command is disabled\n");
}

#[test]
fn expn_shows_every_line_of_the_list() {
    let fake = peer(
        "250-Alice <alice@example.test>\r\n250-<bob@example.test>\r\n\
         250 Carol \u{1b}[31m <carol@example.test>\r\n",
    );
    let out = seed(fake.addr(), "expn", &["staff"]);
    out.assert_code(0);
    // Every line, as sent; a control character in server text is shown as `?`.
    assert_eq!(
        out.stdout_str(),
        "250-Alice <alice@example.test>\n250-<bob@example.test>\n\
         250 Carol ?[31m <carol@example.test>\n"
    );
    assert_eq!(fake.received_string(), ehlo_then("EXPN staff\r\nQUIT\r\n"));
}

#[test]
fn the_retired_verbs_get_a_502_from_a_peer_that_says_so() {
    for line in [
        "TURN",
        "SEND FROM:<a@example.test>",
        "SAML FROM:<a@example.test>",
        "SOML FROM:<a@example.test>",
    ] {
        let fake = peer("502 5.5.1 Command not implemented (RFC 5321 Appendix F)\r\n");
        let out = seed(fake.addr(), "command", &[line]);
        out.assert_code(69);
        assert_eq!(
            out.stdout_str(),
            "502 5.5.1 Command not implemented (RFC 5321 Appendix F)\n"
        );
        assert_eq!(
            fake.received_string(),
            ehlo_then(&format!("{line}\r\nQUIT\r\n"))
        );
    }
    // A server that still turns: after 250 it would be the client, so no QUIT.
    let fake = peer("250 OK, turning around\r\n");
    seed(fake.addr(), "command", &["-v", "TURN"])
        .assert_code(0)
        .assert_stderr_contains("closing without QUIT");
    assert_eq!(fake.received_string(), ehlo_then("TURN\r\n"));
}

#[test]
fn after_354_the_session_ends_without_quit() {
    let fake = peer("354 End data with <CR><LF>.<CR><LF>\r\n");
    seed(fake.addr(), "command", &["-v", "DATA"])
        .assert_code(0)
        .assert_stdout_contains("354 End data with <CR><LF>.<CR><LF>")
        .assert_stderr_contains(
            "* closing without QUIT: after 354 the server takes every line as message text",
        );
    // Nothing after DATA: a QUIT would have been message text.
    assert_eq!(fake.received_string(), ehlo_then("DATA\r\n"));
}

#[test]
fn after_334_a_star_cancels_the_exchange_then_quit() {
    let fake = FakeServer::start(vec![
        send(GREETING),
        Step::Line,
        send(EHLO_OK),
        Step::Line,
        send("334 VXNlcm5hbWU6\r\n"),
        Step::Line,
        send("501 5.7.0 Authentication cancelled\r\n"),
        Step::Line,
        send("221 bye\r\n"),
        Step::Close,
    ]);
    let out = seed(fake.addr(), "command", &["--json", "AUTH LOGIN"]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["reply"]["code"], 334);
    assert_eq!(v["ended"], "auth_cancelled");
    assert_eq!(
        fake.received_string(),
        ehlo_then("AUTH LOGIN\r\n*\r\nQUIT\r\n")
    );
}

#[test]
fn after_220_to_starttls_the_session_ends_without_quit() {
    let fake = peer("220 2.0.0 Ready to start TLS\r\n");
    let out = seed(fake.addr(), "command", &["--json", "STARTTLS"]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["ended"], "closed");
    assert_eq!(fake.received_string(), ehlo_then("STARTTLS\r\n"));
}

#[test]
fn a_typed_quit_is_not_followed_by_another() {
    let fake = FakeServer::start(vec![
        send(GREETING),
        Step::Line,
        send(EHLO_OK),
        Step::Line,
        send("221 2.0.0 Bye\r\n"),
        Step::Close,
    ]);
    let out = seed(fake.addr(), "command", &["QUIT"]);
    out.assert_code(0);
    assert_eq!(out.stdout_str(), "221 2.0.0 Bye\n");
    assert_eq!(fake.received_string(), ehlo_then("QUIT\r\n"));
}

#[test]
fn a_421_ends_the_session_with_75_and_no_quit() {
    let fake = peer("421 4.3.2 Service shutting down\r\n");
    let out = seed(fake.addr(), "vrfy", &["root"]);
    out.assert_code(75);
    assert_eq!(out.stdout_str(), "421 4.3.2 Service shutting down\n");
    assert_eq!(fake.received_string(), ehlo_then("VRFY root\r\n"));
}

/// A secret has no place on a command line (other users read it in ps): an AUTH line
/// with its response is refused before connecting, and never shown.
#[test]
fn a_typed_auth_response_is_refused_before_connecting() {
    let secret = "AGFsaWNlAHMzY3JldA==";
    let listener = Untouched::new();
    let out = seed(
        &listener.addr(),
        "command",
        &["-v", "--json", &format!("AUTH PLAIN {secret}")],
    );
    out.assert_code(64)
        .assert_stderr_contains("where other users of this machine can read it");
    for text in [out.stdout_str(), out.stderr_str()] {
        assert!(
            !text.contains(secret),
            "the secret shows:\n{}",
            out.report()
        );
    }
    listener.assert_never_connected("AUTH PLAIN with its response");
}

/// A listener that no client is accepted from: whether a connection was made is
/// seen afterwards, as one waiting in its backlog.
struct Untouched(TcpListener);

impl Untouched {
    fn new() -> Untouched {
        Untouched(TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
    }

    fn addr(&self) -> String {
        self.0.local_addr().expect("local address").to_string()
    }

    fn assert_never_connected(&self, what: &str) {
        self.0.set_nonblocking(true).expect("non-blocking");
        match self.0.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok(_) => panic!("{what}: outbox connected"),
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[test]
fn a_line_that_would_not_be_one_command_is_refused_before_connecting() {
    let long = "x".repeat(511);
    let cases: [(&str, &str, &str); 8] = [
        ("command", "NOOP\r\nRSET", "forbidden character '\\r'"),
        ("command", "NOOP\nRSET", "forbidden character '\\n'"),
        ("command", "NOOP\rRSET", "forbidden character '\\r'"),
        ("command", &long, "513 octets"),
        ("command", "BDAT 5 LAST", "only BDAT 0"),
        (
            "vrfy",
            "root\r\nRCPT TO:<x@example.test>",
            "forbidden character",
        ),
        ("expn", "staff\nDATA", "forbidden character"),
        ("etrn", "example.test\r\nQUIT", "forbidden character"),
    ];
    for (verb, arg, said) in cases {
        let server = Untouched::new();
        seed(&server.addr(), verb, &[arg])
            .assert_code(64)
            .assert_stderr_contains(said)
            .assert_stdout_empty();
        server.assert_never_connected(&format!("{verb} {arg:?}"));
    }
    // 510 octets and the CRLF are 512: it goes.
    let fake = peer("500 5.5.2 Error: command not recognized\r\n");
    seed(fake.addr(), "command", &[&"x".repeat(510)]).assert_code(69);
    assert_eq!(
        fake.received_string(),
        ehlo_then(&format!("{}\r\nQUIT\r\n", "x".repeat(510)))
    );
    // The argument count and a node that is no domain are usage errors too.
    for (verb, args) in [
        ("vrfy", &["a", "b"][..]),
        ("vrfy", &[]),
        ("etrn", &["not a domain"]),
        ("etrn", &["bad_label.test"]),
        ("noop", &["x"]),
        ("command", &[]),
    ] {
        let server = Untouched::new();
        seed(&server.addr(), verb, args).assert_code(64);
        server.assert_never_connected(&format!("{verb} {args:?}"));
    }
    // With --json, the error is the JSON too.
    let server = Untouched::new();
    let out = seed(&server.addr(), "command", &["--json", "NOOP\r\nRSET"]);
    out.assert_code(64);
    let v = out.json();
    assert_eq!(v["exit_code"], 64);
    assert_eq!(v["command"], serde_json::Value::Null);
    server.assert_never_connected("--json");
}

#[test]
fn each_seed_has_its_help() {
    for (verb, usage) in [
        ("vrfy", "Usage: outbox vrfy [OPTIONS] <ADDR>"),
        ("expn", "Usage: outbox expn [OPTIONS] <LIST>"),
        ("etrn", "Usage: outbox etrn [OPTIONS] <DOMAIN>"),
        ("noop", "Usage: outbox noop [OPTIONS]"),
        ("rset", "Usage: outbox rset [OPTIONS]"),
        ("command", "Usage: outbox command [OPTIONS] <LINE>..."),
    ] {
        let mut cmd = outbox();
        cmd.args(["help", verb]);
        cmd.run().assert_code(0).assert_stdout_contains(usage);
        let mut cmd = outbox();
        cmd.args([verb, "--help"]);
        cmd.run()
            .assert_code(0)
            .assert_stdout_contains(usage)
            .assert_stdout_contains("--server");
    }
}
