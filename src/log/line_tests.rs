use super::*;

fn a(text: &str) -> Address {
    Address::new(text).unwrap()
}

fn full() -> Line {
    Line {
        id: "17A3F9C2.1234".into(),
        queued_as: Some("4Xyz".into()),
        uid: 1000,
        user: Some("alice".into()),
        from: Some(a("a@example.test")),
        to: vec![a("b@example.test"), a("c@example.test")],
        server: "mail.example.test:587".into(),
        peer: Some("192.0.2.25:587".into()),
        tls: Some("TLSv1.3/TLS_AES_256_GCM_SHA384".into()),
        auth: Some("alice@example.test".into()),
        size: 1234,
        delay: Duration::from_millis(420),
        status: Status::Sent,
        dsn: Some("2.0.0".into()),
        reply: "250 2.0.0 Ok: queued as 4Xyz".into(),
        notes: vec![
            ("bounce", "sent as 17A3F9C3.1234".into()),
            ("try", "2".into()),
        ],
    }
}

fn minimal() -> Line {
    Line {
        id: "Q1".into(),
        queued_as: None,
        uid: 0,
        user: None,
        from: None,
        to: vec![a("root@example.test")],
        server: "localhost:25".into(),
        peer: None,
        tls: None,
        auth: None,
        size: 0,
        delay: Duration::ZERO,
        status: Status::Deferred,
        dsn: None,
        reply: "connection refused".into(),
        notes: Vec::new(),
    }
}

#[test]
fn every_field_in_order() {
    assert_eq!(
        full().texts(),
        [
            "id=17A3F9C2.1234 queued_as=4Xyz uid=1000 user=alice from=<a@example.test> \
          to=<b@example.test>,<c@example.test> server=mail.example.test:587 \
          peer=192.0.2.25:587 tls=TLSv1.3/TLS_AES_256_GCM_SHA384 auth=alice@example.test \
          size=1234 delay=0.42 status=sent dsn=2.0.0 \
          reply=\"250 2.0.0 Ok: queued as 4Xyz\" bounce=\"sent as 17A3F9C3.1234\" try=2"
        ]
    );
}

#[test]
fn absent_fields_are_left_out_and_the_null_sender_shown() {
    assert_eq!(
        minimal().texts(),
        [
            "id=Q1 uid=0 from=<> to=<root@example.test> server=localhost:25 size=0 \
          delay=0.00 status=deferred reply=\"connection refused\""
        ]
    );
}

#[test]
fn status_words_and_severities() {
    let all = [
        Status::Sent,
        Status::Deferred,
        Status::Bounced,
        Status::Expired,
        Status::Queued,
        Status::Refused,
        Status::SetAside,
    ];
    let keys: Vec<&str> = all.iter().map(|s| s.key()).collect();
    assert_eq!(
        keys,
        [
            "sent",
            "deferred",
            "bounced",
            "expired",
            "queued",
            "refused",
            "set-aside"
        ]
    );
    let severities: Vec<u8> = all.iter().map(|s| s.severity()).collect();
    assert_eq!(severities, [6, 6, 4, 4, 6, 4, 4]);
}

#[test]
fn quotes_and_backslashes_are_escaped() {
    let mut line = minimal();
    line.id = String::new();
    line.user = Some("a=b".into());
    line.from = Some(a("x=y@example.test"));
    line.to = vec![a("root@example.test"), a("a=b@example.test")];
    line.server = "/run/a \\dir/lmtp".into();
    line.reply = "he said \"hi\" \\o/".into();
    line.notes = vec![("note", "plain".into()), ("empty", String::new())];
    assert_eq!(
        line.texts(),
        ["id=\"\" uid=0 user=\"a=b\" from=\"<x=y@example.test>\" \
          to=\"<root@example.test>,<a=b@example.test>\" server=\"/run/a \\\\dir/lmtp\" \
          size=0 delay=0.00 status=deferred reply=\"he said \\\"hi\\\" \\\\o/\" \
          note=plain empty=\"\""]
    );
}

#[test]
fn a_reply_goes_on_one_line_without_control_or_invisible_characters() {
    let mut line = minimal();
    line.status = Status::Bounced;
    line.dsn = Some("5.7.1".into());
    line.reply = "550-5.7.1 first\r\n550-5.7.1 \u{202E}evil\u{1b}[31m\tx\0\r\n\r\n\
                  550 5.7.1 bare\rcr\nlf\u{200B}\n"
        .into();
    assert_eq!(
        line.texts(),
        [
            "id=Q1 uid=0 from=<> to=<root@example.test> server=localhost:25 size=0 \
          delay=0.00 status=bounced dsn=5.7.1 reply=\"550-5.7.1 first / \
          550-5.7.1 ?evil?[31m?x? / 550 5.7.1 bare / cr / lf?\""
        ]
    );
    // Every field is sanitised, not only the reply.
    line.reply = "x".into();
    line.server = "evil\u{1b}]0;title\u{7}host:25".into();
    line.user = Some("\u{2066}root".into());
    assert_eq!(
        line.texts(),
        ["id=Q1 uid=0 user=?root from=<> to=<root@example.test> \
          server=evil?]0;title?host:25 size=0 delay=0.00 status=bounced dsn=5.7.1 reply=x"]
    );
}

#[test]
fn a_long_reply_is_cut() {
    let mut line = minimal();
    line.reply = format!("451 4.3.0 {}", "é".repeat(2000));
    let texts = line.texts();
    assert_eq!(texts.len(), 1);
    let reply = texts[0]
        .split_once(" reply=")
        .map(|(_, r)| r.to_owned())
        .unwrap();
    assert!(reply.ends_with("...\""), "{reply}");
    // The value, quotes aside, is cut to MAX_REPLY octets on a character boundary.
    assert!(reply.len() - 2 <= MAX_REPLY, "{}", reply.len());
    assert!(reply.len() - 2 >= MAX_REPLY - 4, "{}", reply.len());
    assert!(reply.starts_with("\"451 4.3.0 éé"), "{reply}");
}

#[test]
fn many_recipients_are_shared_among_lines_under_the_limit() {
    let mut line = full();
    line.to = (0..500)
        .map(|i| a(&format!("user{i:03}@a-rather-long-domain.example.test")))
        .collect();
    let texts = line.texts();
    assert!(texts.len() > 1, "{}", texts.len());
    let mut seen = Vec::new();
    let mut rests = Vec::new();
    for text in &texts {
        assert!(text.len() <= MAX_TEXT, "{}", text.len());
        let (before, after) = text.split_once(" to=").unwrap();
        let (list, after) = after.split_once(' ').unwrap();
        seen.extend(list.split(',').map(str::to_owned));
        rests.push(format!("{before} | {after}"));
    }
    // The lines are full but the last: another recipient would not have fitted.
    for text in &texts[..texts.len() - 1] {
        assert!(text.len() + ",<user000@a-rather-long-domain.example.test>".len() > MAX_TEXT);
    }
    let expected: Vec<String> = line.to.iter().map(|a| format!("<{a}>")).collect();
    assert_eq!(seen, expected);
    assert!(rests.iter().all(|r| *r == rests[0]), "{rests:?}");
    assert!(rests[0].ends_with("try=2"), "{}", rests[0]);
}

#[test]
fn one_long_recipient_fits_beside_long_fields() {
    let mut line = full();
    let local = "l".repeat(64);
    let domain = format!("{}.example.test", vec!["d".repeat(55); 3].join("."));
    line.to = vec![a(&format!("{local}@{domain}")); 3];
    line.from = Some(a(&format!("{local}@from.{domain}")));
    line.reply = format!("550 {}", "\"".repeat(3000));
    line.notes = vec![("bounce", "b".repeat(300))];
    let texts = line.texts();
    let mut count = 0;
    for text in &texts {
        assert!(text.len() <= MAX_TEXT, "{}", text.len());
        // Nothing was cut off the end: the line still ends with the whole note, and
        // the reply gave way, still quoted.
        assert!(
            text.ends_with(&format!(" bounce={}...", "b".repeat(253))),
            "{text}"
        );
        assert!(text.contains(" reply=\"550 \\\"\\\""), "{text}");
        assert!(text.contains("...\" bounce="), "{text}");
        count += text.matches(&format!("<{local}@{domain}>")).count();
    }
    assert_eq!(count, 3, "{texts:?}");
}

#[test]
fn no_recipients_still_make_a_line() {
    let mut line = minimal();
    line.to.clear();
    assert_eq!(
        line.texts(),
        [
            "id=Q1 uid=0 from=<> to=\"\" server=localhost:25 size=0 delay=0.00 \
          status=deferred reply=\"connection refused\""
        ]
    );
}
