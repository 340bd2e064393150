use super::*;
use crate::smtp::reply::parse_reply;

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}

fn command(seed: Seed, list: &[&str]) -> Result<Command, Error> {
    seed.command(&words(list))
}

fn usage(seed: Seed, list: &[&str]) -> String {
    match command(seed, list) {
        Err(Error::Usage(text)) => text,
        other => panic!("{seed:?} {list:?}: not a usage error: {other:?}"),
    }
}

fn reply(text: &str) -> Reply {
    let wire = format!("{}\r\n", text.replace('\n', "\r\n"));
    parse_reply(wire.as_bytes()).unwrap().unwrap().0
}

#[test]
fn names_round_trip() {
    for seed in Seed::ALL {
        assert_eq!(Seed::from_name(seed.name()), Some(seed));
    }
    assert_eq!(Seed::from_name("command"), Some(Seed::Line));
    assert_eq!(Seed::from_name("VRFY"), None);
    assert_eq!(Seed::from_name("help"), None);
}

#[test]
fn each_seed_sends_its_line() {
    let cases: [(Seed, &[&str], &str); 9] = [
        (Seed::Vrfy, &["root"], "VRFY root\r\n"),
        (Seed::Vrfy, &["John Smith"], "VRFY John Smith\r\n"),
        (Seed::Expn, &["staff"], "EXPN staff\r\n"),
        (Seed::Etrn, &["example.test"], "ETRN example.test\r\n"),
        (Seed::Etrn, &["@example.test"], "ETRN @example.test\r\n"),
        (Seed::Etrn, &["#deferred"], "ETRN #deferred\r\n"),
        (Seed::Noop, &[], "NOOP\r\n"),
        (Seed::Rset, &[], "RSET\r\n"),
        (Seed::Line, &["HELP", "MAIL"], "HELP MAIL\r\n"),
    ];
    for (seed, list, wire) in cases {
        assert_eq!(command(seed, list).unwrap().to_string(), wire, "{seed:?}");
    }
    // One quoted word keeps its own spacing.
    assert_eq!(
        command(Seed::Line, &["xyzzy\t plugh "])
            .unwrap()
            .to_string(),
        "xyzzy\t plugh \r\n"
    );
}

#[test]
fn a_line_that_would_become_two_is_a_usage_error() {
    assert_eq!(
        usage(Seed::Line, &["NOOP\r\nRSET"]),
        "command line contains a forbidden character '\\r': one line is one command, and \
         nothing may end it early"
    );
    assert_eq!(
        usage(Seed::Line, &["NO\0OP"]),
        "command line contains a forbidden character '\\0': one line is one command, and \
         nothing may end it early"
    );
    assert_eq!(
        usage(Seed::Vrfy, &["root\nRCPT TO:<x@example.test>"]),
        "VRFY argument contains a forbidden character '\\n': one line is one command, and \
         nothing may end it early"
    );
    usage(Seed::Expn, &["a\rb"]);
    usage(Seed::Etrn, &["a\nb"]);
    // 510 octets and CRLF are the 512 RFC 5321 §4.5.3.1.4 allows; one more is over.
    assert!(command(Seed::Line, &[&"x".repeat(510)]).is_ok());
    assert_eq!(
        usage(Seed::Line, &[&"x".repeat(511)]),
        "command line would be 513 octets, over the limit: RFC 5321 §4.5.3.1.4 allows 512 \
         octets, CRLF included"
    );
    usage(Seed::Vrfy, &[&"x".repeat(512)]);
}

#[test]
fn each_seed_takes_its_number_of_words() {
    assert_eq!(
        usage(Seed::Vrfy, &["John", "Smith"]),
        "vrfy takes one argument (quote one with spaces), not 2"
    );
    usage(Seed::Vrfy, &[]);
    usage(Seed::Expn, &[]);
    usage(Seed::Etrn, &["a.test", "b.test"]);
    assert_eq!(
        usage(Seed::Noop, &["x"]),
        "noop takes no argument (outbox command 'NOOP ...' sends one)"
    );
    usage(Seed::Rset, &["x"]);
    assert_eq!(
        usage(Seed::Line, &[]),
        "command takes the line to send, as in outbox command 'HELP MAIL'"
    );
    usage(Seed::Line, &[""]);
}

#[test]
fn etrn_takes_a_domain_a_domain_and_its_subdomains_or_a_queue() {
    for good in [
        "example.test",
        "@example.test",
        "#deferred",
        "#q-1",
        "mx1.a-b.example",
    ] {
        assert_eq!(etrn_node(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "@",
        "#",
        "-a.test",
        "a-.test",
        "a..test",
        "a_b.test",
        "[127.0.0.1]",
        "ex\u{e4}mple.test",
    ] {
        assert!(etrn_node(bad).is_err(), "{bad:?}");
    }
    assert!(etrn_node(&format!("{}.test", "a".repeat(64))).is_err());
    assert!(etrn_node(&format!("{}.test", "a".repeat(63))).is_ok());
    assert_eq!(
        usage(Seed::Etrn, &["ex\u{e4}mple.test"]),
        "etrn \"ex\u{e4}mple.test\": an internationalised domain goes in its ASCII \
         form (xn--..., RFC 5890)"
    );
    // White space is the command's own refusal, said as such.
    assert_eq!(
        usage(Seed::Etrn, &["two words"]),
        "ETRN node contains white space"
    );
}

#[test]
fn a_typed_bdat_with_data_to_follow_is_refused() {
    assert_eq!(
        usage(Seed::Line, &["BDAT 10 LAST"]),
        "\"BDAT 10 LAST\" announces 10 octets that would have to follow \
         the line; only BDAT 0 can be sent this way"
    );
    usage(Seed::Line, &["bdat", "1"]);
    for fine in ["BDAT 0 LAST", "BDAT", "BDAT x", "BDATA 10"] {
        assert!(command(Seed::Line, &[fine]).is_ok(), "{fine}");
    }
}

#[test]
fn each_reply_has_its_exit_code() {
    let vrfy = command(Seed::Vrfy, &["root"]).unwrap();
    let expn = command(Seed::Expn, &["staff"]).unwrap();
    let etrn = command(Seed::Etrn, &["example.test"]).unwrap();
    let line = |l: &str| Command::line(l).unwrap();
    let cases: Vec<(Command, &str, u8)> = vec![
        (vrfy.clone(), "250 <root@example.test>", 0),
        (vrfy.clone(), "251 forwarded", 0),
        (vrfy.clone(), "252 2.0.0 root", 0),
        (vrfy.clone(), "550 5.1.1 <nobody>: User unknown", 67),
        (vrfy.clone(), "551 not local", 67),
        (vrfy.clone(), "553 ambiguous", 67),
        (vrfy.clone(), "502 5.5.1 VRFY command is disabled", 69),
        (vrfy.clone(), "554 no", 69),
        (vrfy.clone(), "450 4.1.1 try later", 75),
        (vrfy.clone(), "421 4.3.2 shutting down", 75),
        (vrfy.clone(), "354 go ahead", 76),
        (
            expn.clone(),
            "250-<a@example.test>\n250 <b@example.test>",
            0,
        ),
        (expn.clone(), "252 cannot expand", 0),
        (expn.clone(), "251 forwarded", 76),
        (expn.clone(), "550 no such list", 67),
        (expn.clone(), "502 5.5.2 Error: command not recognized", 69),
        (etrn.clone(), "250 Queuing started", 0),
        (etrn.clone(), "251 OK, no messages waiting", 0),
        (etrn.clone(), "252 OK, pending messages started", 0),
        (etrn.clone(), "253 OK, 4 pending messages started", 0),
        (etrn.clone(), "458 Unable to queue messages", 75),
        (etrn.clone(), "459 4.7.1 not allowed", 75),
        (etrn.clone(), "550 no", 69),
        (Command::Noop, "250 2.0.0 Ok", 0),
        (Command::Noop, "252 what", 76),
        (Command::Rset, "250 2.0.0 Ok", 0),
        (Command::Rset, "500 no", 69),
        (line("HELP"), "214 see the RFC", 0),
        (line("DATA"), "354 go ahead", 0),
        (line("TURN"), "502 5.5.2 Error: command not recognized", 69),
        (line("SAML FROM:<a@example.test>"), "500 unknown", 69),
        (line("FOO"), "451 later", 75),
        // A typed VRFY or EXPN is judged as one for its refusals.
        (line("vrfy nobody"), "550 5.1.1 unknown", 67),
        (line("EXPN staff"), "553 no", 67),
        (line("RCPT TO:<x@example.test>"), "550 5.1.1 unknown", 69),
    ];
    for (cmd, text, code) in cases {
        let verdict = judge(&cmd, &reply(text));
        assert_eq!(verdict.code, code, "{} -> {text}", cmd.shown());
        assert_eq!(
            verdict.error.is_none(),
            code == 0,
            "{} -> {text}",
            cmd.shown()
        );
    }
}

#[test]
fn a_refusal_keeps_the_reply_and_names_the_command_stage() {
    let vrfy = command(Seed::Vrfy, &["nobody"]).unwrap();
    let verdict = judge(&vrfy, &reply("550 5.1.1 <nobody>: User unknown"));
    let error = verdict.error.unwrap();
    assert_eq!(error.stage(), Some(Stage::Command));
    assert_eq!(error.reply().map(|r| r.code), Some(550));
    let verdict = judge(&vrfy, &reply("354 go ahead"));
    assert_eq!(
        verdict.error.unwrap().to_string(),
        "unexpected reply (at the command, expected 250, 251 or 252):\n    354 go ahead"
    );
    assert_eq!(expected_text(&Command::Noop), "250");
    assert_eq!(expected_text(&vrfy), "250, 251 or 252");
}

#[test]
fn a_reply_that_leaves_the_session_out_of_step_ends_it_without_quit() {
    let line = |l: &str| Command::line(l).unwrap();
    assert!(matches!(
        after(&line("DATA"), &reply("354 End data with <CR><LF>.<CR><LF>")),
        After::HangUp(_)
    ));
    assert_eq!(
        after(&line("AUTH LOGIN"), &reply("334 VXNlcm5hbWU6")),
        After::CancelAuth
    );
    assert!(matches!(
        after(&line("STARTTLS"), &reply("220 2.0.0 Ready to start TLS")),
        After::HangUp(_)
    ));
    assert!(matches!(
        after(&line("QUIT"), &reply("221 2.0.0 Bye")),
        After::HangUp(_)
    ));
    assert!(matches!(
        after(&line("turn"), &reply("250 OK")),
        After::HangUp(_)
    ));
    for (cmd, text) in [
        (line("TURN"), "502 5.5.2 Error: command not recognized"),
        (line("NOOP"), "250 2.0.0 Ok"),
        (line("AUTH PLAIN AGFsaWNlAHMzY3JldA=="), "535 5.7.8 no"),
        (line("DATA"), "503 5.5.1 Error: need RCPT command"),
        (command(Seed::Vrfy, &["root"]).unwrap(), "252 2.0.0 root"),
        (Command::Rset, "421 4.3.2 bye"),
    ] {
        assert_eq!(after(&cmd, &reply(text)), After::Quit, "{text}");
    }
    assert_eq!(After::Quit.key(), "quit");
    assert_eq!(After::CancelAuth.key(), "auth_cancelled");
    assert_eq!(After::HangUp("x").key(), "closed");
}

#[test]
fn a_typed_auth_response_is_a_secret_and_refused() {
    assert!(matches!(
        command(Seed::Line, &["AUTH PLAIN AGFsaWNlAHMzY3JldA=="]),
        Err(Error::Usage(_))
    ));
    assert!(command(Seed::Line, &["AUTH LOGIN"]).is_ok());
    let line = |l: &str| Command::line(l).unwrap();
    assert!(carries_secret(&line("AUTH PLAIN AGFsaWNlAHMzY3JldA==")));
    assert!(carries_secret(&line("auth login YWxpY2U=")));
    assert!(!carries_secret(&line("AUTH LOGIN")));
    assert!(!carries_secret(&line("VRFY root")));
    assert!(!carries_secret(&Command::Noop));
}

#[test]
fn the_json_names_the_command_shown_its_reply_and_how_the_session_ended() {
    let mut session = Report::for_server("mx.example.test:25");
    session.connecting.add(
        crate::report::Phase::Connect,
        std::time::Duration::from_millis(2),
    );
    session.session.timeline.add(
        crate::report::Phase::Command,
        std::time::Duration::from_millis(3),
    );
    let typed = Command::line("AUTH PLAIN AGFsaWNlAHMzY3JldA==").unwrap();
    let r = reply("535 5.7.8 Error: authentication failed");
    let verdict = judge(&typed, &r);
    let v = json(
        &session,
        Some(&typed),
        Some(&r),
        Some(After::Quit),
        verdict.error.as_ref(),
        verdict.code,
    );
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ok",
            "exit_code",
            "server",
            "command",
            "reply",
            "ended",
            "tls",
            "auth",
            "extensions",
            "timings_ms",
            "error"
        ]
    );
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 69);
    assert_eq!(v["server"]["address"], "mx.example.test:25");
    assert_eq!(v["command"], "AUTH PLAIN <redacted>");
    assert!(!v.to_string().contains("AGFsaWNl"), "{v}");
    assert_eq!(v["reply"]["code"], 535);
    assert_eq!(v["reply"]["enhanced"], "5.7.8");
    assert_eq!(v["reply"]["text"], "Error: authentication failed");
    assert_eq!(
        v["reply"]["lines"],
        serde_json::json!(["5.7.8 Error: authentication failed"])
    );
    assert_eq!(v["ended"], "quit");
    assert_eq!(v["timings_ms"]["connect"], 2.0);
    assert_eq!(v["timings_ms"]["command"], 3.0);
    assert_eq!(v["error"]["stage"], "command");
    assert_eq!(v["error"]["exit_code"], 69);

    let ok = json(
        &session,
        Some(&Command::Noop),
        Some(&reply("250 2.0.0 Ok")),
        Some(After::Quit),
        None,
        0,
    );
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["command"], "NOOP");
    assert_eq!(ok["error"], serde_json::Value::Null);
    // No session at all: no reply, no ending.
    let refused = Error::Connect {
        server: "mx.example.test:25".into(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    };
    let none = json(&Report::default(), None, None, None, Some(&refused), 75);
    assert_eq!(none["ok"], false);
    assert_eq!(none["command"], serde_json::Value::Null);
    assert_eq!(none["reply"], serde_json::Value::Null);
    assert_eq!(none["ended"], serde_json::Value::Null);
    assert_eq!(none["error"]["stage"], "connect");
}
