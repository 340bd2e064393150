//! STARTTLS and AUTH, and the TLS and credentials policy of `deliver` off loopback.

use super::*;

fn credentials(password: &str) -> Credentials {
    Credentials {
        user: "user".into(),
        secret: Secret::new(password.into()),
    }
}

#[test]
fn starttls_discards_early_bytes_forgets_capabilities_and_says_ehlo_again() {
    let injected = "250-injected.example.test\r\n250 AUTH PLAIN\r\n";
    let after_220 = format!("220 2.0.0 Ready to start TLS\r\n{injected}");
    let script = [
        "220 mx.example.test ESMTP\r\n",
        "250-mx.example.test\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n",
        after_220.as_str(),
        "250-mx.example.test\r\n250 PIPELINING\r\n",
    ];
    let mut session = session(&script);
    session.greeting().unwrap();
    assert!(session.ehlo(EHLO_NAME).unwrap().has("STARTTLS"));
    session.starttls().unwrap();
    let mut handshakes = 0;
    let discarded = session
        .upgrade(|_| {
            handshakes += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(handshakes, 1);
    // Bytes sent in clear after the 220 are an injection attempt: dropped, not replies.
    assert_eq!(discarded, injected.len());
    assert_eq!(session.capabilities().keywords().count(), 0);
    let caps = session.ehlo(EHLO_NAME).unwrap().clone();
    assert!(caps.has("PIPELINING"));
    assert!(
        !caps.has("STARTTLS"),
        "capabilities from before TLS were kept"
    );
    assert!(caps.auth_mechanisms().is_empty(), "{caps:?}");
    let peer = session.into_inner();
    assert_eq!(
        show(peer.written()),
        "EHLO client.example.test\r\nSTARTTLS\r\nEHLO client.example.test\r\n"
    );
}

#[test]
fn starttls_refused() {
    // RFC 3207 §4: 454 "TLS not available due to temporary reason" is exit 75, retry
    // later (never a reason to go on in clear); a permanent refusal is exit 69 (nothing
    // safe to do). Either way a polite QUIT.
    let cases = [
        ("454 4.7.0 TLS not available\r\n", 75),
        ("502 5.5.1 not implemented\r\n", 69),
    ];
    for (refusal, code) in cases {
        let script = [
            "220 mx ESMTP\r\n",
            "250-mx\r\n250 STARTTLS\r\n",
            refusal,
            "221 bye\r\n",
        ];
        let mut session = greeted(session(&script));
        let err = session.starttls().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Refused {
                    stage: Stage::StartTls,
                    ..
                }
            ),
            "{refusal}"
        );
        assert_eq!(exit::code(&err), code, "{refusal}");
        session.abort();
        assert!(
            show(session.into_inner().written()).ends_with("STARTTLS\r\nQUIT\r\n"),
            "{refusal}"
        );
    }
}

#[test]
fn a_failed_starttls_handshake_leaves_nothing_to_send_quit_over() {
    let script = [
        "220 mx ESMTP\r\n",
        "250-mx\r\n250 STARTTLS\r\n",
        "220 go\r\n",
    ];
    let mut session = greeted(session(&script));
    session.starttls().unwrap();
    let err = session
        .upgrade(|_| {
            Err(Error::Tls {
                server: "mx:25".into(),
                detail: "handshake failure".into(),
            })
        })
        .unwrap_err();
    assert_eq!(exit::code(&err), 76);
    session.abort();
    assert!(show(session.into_inner().written()).ends_with("STARTTLS\r\n"));
}

/// Runs AUTH after a greeting and EHLO offering `mechanisms`, with `replies` to it.
fn auth_run(
    mechanism: Mechanism,
    password: &str,
    replies: &[&str],
) -> (Result<Reply, Error>, String, String) {
    let (buf, transcript) = transcript_to_buf();
    let mut script = vec![
        "220 mx ESMTP\r\n",
        "250-mx\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n",
    ];
    script.extend_from_slice(replies);
    let mut session = greeted(session(&script).with_transcript(transcript));
    let result = session.auth(mechanism, &credentials(password));
    (result, show(session.into_inner().written()), buf.text())
}

#[test]
fn auth_plain_sends_an_initial_response_and_never_shows_it() {
    let (result, written, transcript) = auth_run(
        Mechanism::Plain,
        "pencil-42",
        &["235 2.7.0 Authentication successful\r\n"],
    );
    assert_eq!(result.unwrap().code, 235);
    // base64("\0user\0pencil-42")
    assert!(
        written.ends_with("AUTH PLAIN AHVzZXIAcGVuY2lsLTQy\r\n"),
        "{written}"
    );
    assert!(
        transcript.contains("> AUTH PLAIN <redacted>\n"),
        "{transcript}"
    );
    assert!(!transcript.contains("AHVzZXIAcGVuY2lsLTQy"), "{transcript}");
    assert!(!transcript.contains("pencil-42"), "{transcript}");
}

#[test]
fn auth_login_answers_two_challenges() {
    let (result, written, transcript) = auth_run(
        Mechanism::Login,
        "pencil-42",
        &[
            "334 VXNlcm5hbWU6\r\n",
            "334 UGFzc3dvcmQ6\r\n",
            "235 2.7.0 ok\r\n",
        ],
    );
    assert_eq!(result.unwrap().code, 235);
    assert!(
        written.ends_with("AUTH LOGIN\r\ndXNlcg==\r\ncGVuY2lsLTQy\r\n"),
        "{written}"
    );
    assert_eq!(
        transcript.matches("> <redacted>\n").count(),
        2,
        "{transcript}"
    );
    assert!(!transcript.contains("cGVuY2lsLTQy"), "{transcript}");
}

#[test]
fn auth_cram_md5_uses_the_challenge() {
    // RFC 2195's example exchange.
    let (result, written, _) = auth_run(
        Mechanism::CramMd5,
        "tanstaaftanstaaf",
        &[
            "334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
            "235 ok\r\n",
        ],
    );
    assert_eq!(result.unwrap().code, 235);
    // base64("user b913a602c7eda7a495b4e6e7334d3890") for user "user".
    let expected = BASE64.encode("user b913a602c7eda7a495b4e6e7334d3890");
    assert!(written.ends_with(&format!("{expected}\r\n")), "{written}");
}

#[test]
fn wrong_password_is_noperm_77_with_the_server_text() {
    let (result, _, transcript) = auth_run(
        Mechanism::Plain,
        "wrong-pencil",
        &["535 5.7.8 Authentication credentials invalid\r\n"],
    );
    let err = result.unwrap_err();
    assert!(matches!(
        err,
        Error::Refused {
            stage: Stage::Auth,
            ..
        }
    ));
    assert_eq!(exit::code(&err), 77);
    assert!(
        err.to_string()
            .contains("535 5.7.8 Authentication credentials invalid")
    );
    assert!(!transcript.contains("wrong-pencil"));
}

#[test]
fn a_challenge_that_is_not_base64_cancels_the_exchange() {
    let (result, written, _) = auth_run(
        Mechanism::Login,
        "pencil-42",
        &["334 not base64!\r\n", "501 5.7.0 cancelled\r\n"],
    );
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    assert_eq!(exit::code(&err), 77);
    assert!(written.ends_with("AUTH LOGIN\r\n*\r\n"), "{written}");
}

/// Runs lib.rs's `deliver` over `peer` with `mode` and, if `user` is given, PLAIN
/// credentials; then aborts (QUIT where the session allows).
fn policy_run(
    peer: ScriptedPeer,
    mode: TlsMode,
    user: Option<&str>,
) -> (Result<Receipt, Error>, String) {
    let cli = crate::cli::Cli {
        connect: crate::cli::ConnectArgs {
            tls: Some(mode),
            user: user.map(str::to_owned),
            auth: user.map(|_| "plain".to_owned()),
            ..Default::default()
        },
        ..crate::cli::Cli::default()
    };
    let settings = crate::Settings::from_cli(&cli).unwrap();
    let client = TlsClient {
        options: &settings.tls,
        host: "mx.example.test",
        port: 25,
        timeout: Duration::from_secs(5),
    };
    let credentials = user.map(|u| Credentials {
        user: u.to_owned(),
        ..credentials("pencil-42")
    });
    let mut session = Session::new(peer, Timeouts::default());
    let message = Message::from_bytes(SIMPLE.to_vec());
    let result = crate::deliver(
        &mut session,
        &settings,
        (mode != TlsMode::None).then_some(&client),
        EHLO_NAME,
        credentials.as_ref(),
        &envelope(&["b@example.test"]),
        &message,
    );
    if result.is_err() {
        session.abort();
    }
    (result, show(session.into_inner().written()))
}

const EHLO_PLAIN: &str = "250-mx.example.test\r\n250 AUTH PLAIN\r\n";

const EHLO_STARTTLS: &str = "250-mx.example.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n";

const TRANSACTION: [&str; 4] = ["250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 queued\r\n"];

#[test]
fn auto_off_loopback_requires_starttls() {
    let peer = ScriptedPeer::new([HELLO, EHLO_PLAIN, "221 bye\r\n"], AtEnd::Eof).remote();
    let (result, written) = policy_run(peer, TlsMode::Auto, None);
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert_eq!(exit::code(&err), 69);
    // Nothing of the message was sent in clear.
    assert_eq!(written, "EHLO client.example.test\r\nQUIT\r\n");
}

#[test]
fn auto_off_loopback_starts_tls_and_ehlos_again() {
    let mut script = vec![HELLO, EHLO_STARTTLS, "220 go ahead\r\n", EHLO_PLAIN];
    script.extend(TRANSACTION);
    let peer = ScriptedPeer::new(script, AtEnd::Eof).remote();
    let (result, written) = policy_run(peer, TlsMode::Auto, None);
    result.unwrap();
    assert!(
        written.starts_with(
            "EHLO client.example.test\r\nSTARTTLS\r\nEHLO client.example.test\r\nMAIL FROM:"
        ),
        "{written}"
    );
}

#[test]
fn auto_on_loopback_does_not_try_starttls() {
    let mut script = vec![HELLO, EHLO_STARTTLS];
    script.extend(TRANSACTION);
    let peer = ScriptedPeer::new(script, AtEnd::Eof);
    let (result, written) = policy_run(peer, TlsMode::Auto, None);
    result.unwrap();
    assert!(!written.contains("STARTTLS"), "{written}");
}

#[test]
fn credentials_never_go_in_clear_off_loopback() {
    let peer = ScriptedPeer::new([HELLO, EHLO_PLAIN, "221 bye\r\n"], AtEnd::Eof).remote();
    let (result, written) = policy_run(peer, TlsMode::None, Some("user"));
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(!written.contains("AUTH"), "{written}");
    assert_eq!(written, "EHLO client.example.test\r\nQUIT\r\n");
}

#[test]
fn credentials_go_after_starttls_off_loopback() {
    let mut script = vec![
        HELLO,
        EHLO_STARTTLS,
        "220 go ahead\r\n",
        EHLO_PLAIN,
        "235 ok\r\n",
    ];
    script.extend(TRANSACTION);
    let peer = ScriptedPeer::new(script, AtEnd::Eof).remote();
    let (result, written) = policy_run(peer, TlsMode::StartTls, Some("user"));
    result.unwrap();
    let starttls = written.find("STARTTLS").unwrap();
    let auth = written.find("AUTH PLAIN").unwrap();
    assert!(starttls < auth, "{written}");
}

#[test]
fn credentials_in_clear_to_loopback_are_allowed() {
    let mut script = vec![HELLO, EHLO_PLAIN, "235 ok\r\n"];
    script.extend(TRANSACTION);
    let peer = ScriptedPeer::new(script, AtEnd::Eof);
    let (result, written) = policy_run(peer, TlsMode::None, Some("user"));
    result.unwrap();
    assert!(written.contains("AUTH PLAIN "), "{written}");
}

#[test]
fn tls_none_never_sends_starttls_even_when_offered() {
    let mut script = vec![HELLO, EHLO_STARTTLS];
    script.extend(TRANSACTION);
    let peer = ScriptedPeer::new(script, AtEnd::Eof).remote();
    let (result, written) = policy_run(peer, TlsMode::None, None);
    result.unwrap();
    assert!(!written.contains("STARTTLS"), "{written}");
}

#[test]
fn an_overlong_initial_response_goes_after_an_empty_challenge() {
    // RFC 4954 §4: AUTH without the initial response, which follows the empty 334.
    let long_token = "t".repeat(5_000);
    let (buf, transcript) = transcript_to_buf();
    let script = [
        "220 mx ESMTP\r\n",
        "250-mx\r\n250 AUTH XOAUTH2\r\n",
        "334 \r\n",
        "235 ok\r\n",
    ];
    let mut session = greeted(session(&script).with_transcript(transcript));
    session
        .auth(Mechanism::XOAuth2, &credentials(&long_token))
        .unwrap();
    let written = show(session.into_inner().written());
    assert!(written.contains("AUTH XOAUTH2\r\n"), "{}", &written[..80]);
    let expected = BASE64.encode(format!("user=user\x01auth=Bearer {long_token}\x01\x01"));
    assert!(written.ends_with(&format!("{expected}\r\n")));
    assert!(!buf.text().contains(&long_token));
}
