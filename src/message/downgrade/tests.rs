use super::*;
use crate::exit;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The header section `head` (with `\n` for CRLF) downgraded, as text.
fn down(head: &str) -> (String, Vec<String>) {
    let (out, fields) = header_section(head.replace('\n', "\r\n").as_bytes()).unwrap();
    assert!(out.is_ascii(), "{}", String::from_utf8_lossy(&out));
    (String::from_utf8(out).unwrap(), fields)
}

fn parsed(head: &str) -> mail_parser::Message<'static> {
    let text = format!("{head}body\r\n");
    mail_parser::MessageParser::default()
        .parse(text.as_bytes())
        .unwrap()
        .into_owned()
}

/// Every line at most 76 characters, every encoded-word at most 75 (RFC 2047 §2).
fn assert_limits(head: &str) {
    for line in head.split("\r\n") {
        assert!(line.len() <= MAX_LINE, "line of {}: {line:?}", line.len());
        for word in line.split([' ', '(', ')']) {
            if word.starts_with("=?") {
                assert!(word.len() <= MAX_ENCODED_WORD, "{word}");
                assert!(is_encoded_word(word), "{word}");
            }
        }
    }
}

#[test]
fn subject_is_encoded_and_folded_within_the_limits() {
    let subject = "Grüße aus Köln, und noch viel mehr: Übermäßig lange Betreffzeilen mit \
                   Umlauten überall — 日本語のテキストも少し — und am Ende ASCII words";
    let (head, fields) = down(&format!("Subject: {subject}\n\n"));
    assert_eq!(fields, ["Subject"]);
    assert!(head.starts_with("Subject: =?UTF-8?"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    assert!(head.matches("\r\n ").count() >= 2, "not folded: {head}");
    assert_limits(&head);
    assert_eq!(parsed(&head).subject(), Some(subject));
}

#[test]
fn ascii_words_stay_and_whitespace_between_encoded_runs_survives() {
    let (head, _) = down("Subject: Grüße aus Köln\n\n");
    assert_eq!(
        head,
        "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus =?UTF-8?Q?K=C3=B6ln?=\r\n\r\n"
    );
    // Two words in a row go as one text: white space between encoded-words is lost.
    let (head, _) = down("Subject: Grüße  Köln x\n\n");
    assert_eq!(
        head,
        "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe__K=C3=B6ln?= x\r\n\r\n"
    );
    assert_eq!(parsed(&head).subject(), Some("Grüße  Köln x"));
}

#[test]
fn mostly_non_latin_text_goes_base64() {
    let (head, _) = down("Subject: 日本語のテキスト\n\n");
    assert!(head.starts_with("Subject: =?UTF-8?B?"), "{head}");
    assert_eq!(parsed(&head).subject(), Some("日本語のテキスト"));
}

#[test]
fn a_character_is_never_split_between_encoded_words() {
    let subject = "ü".repeat(200);
    let (head, _) = down(&format!("Subject: {subject}\n\n"));
    assert_limits(&head);
    for word in head.split_whitespace().filter(|w| w.starts_with("=?")) {
        let inner = &word["=?UTF-8?B?".len()..word.len() - 2];
        assert!(word.starts_with("=?UTF-8?B?"), "{word}");
        let bytes = BASE64.decode(inner).unwrap();
        assert!(std::str::from_utf8(&bytes).is_ok(), "{word}");
    }
    assert_eq!(parsed(&head).subject(), Some(subject.as_str()));
}

#[test]
fn display_names_quoted_and_unquoted() {
    let (head, fields) = down(
        "From: Jörg Müller <a@example.test>\n\
         To: \"Müller, Jörg\" <b@example.test>, plain@example.test,\n \"Ann\" <c@example.test>\n\n",
    );
    assert_eq!(fields, ["From", "To"]);
    assert_eq!(
        head,
        "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <a@example.test>\r\n\
         To: =?UTF-8?Q?M=C3=BCller=2C_J=C3=B6rg?= <b@example.test>,\r\n plain@example.test, \"Ann\" <c@example.test>\r\n\r\n"
    );
    let m = parsed(&head);
    let from = m.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Jörg Müller"));
    assert_eq!(from.address(), Some("a@example.test"));
    let to: Vec<_> = m
        .to()
        .unwrap()
        .iter()
        .map(|a| (a.name(), a.address()))
        .collect();
    assert_eq!(
        to,
        [
            (Some("Müller, Jörg"), Some("b@example.test")),
            (None, Some("plain@example.test")),
            (Some("Ann"), Some("c@example.test")),
        ]
    );
}

#[test]
fn a_display_name_glued_to_its_address_gets_a_space() {
    let (head, _) = down("From: Jörg<a@example.test>\n\n");
    assert_eq!(head, "From: =?UTF-8?Q?J=C3=B6rg?= <a@example.test>\r\n\r\n");
}

#[test]
fn comments_are_encoded_in_address_and_structured_fields() {
    let (head, fields) = down(
        "From: a@example.test (Jörg (der Ältere))\n\
         Date: Tue, 1 Dec 2026 22:00:00 +0100 (Mitteleuropäische Zeit)\n\n",
    );
    assert_eq!(fields, ["From", "Date"]);
    assert_eq!(
        head,
        "From: a@example.test (=?UTF-8?Q?J=C3=B6rg?= (der =?UTF-8?Q?=C3=84ltere?=))\r\n\
         Date: Tue, 1 Dec 2026 22:00:00 +0100 (=?UTF-8?Q?Mitteleurop=C3=A4ische?=\r\n Zeit)\r\n\r\n"
    );
    let m = parsed(&head);
    assert_eq!(
        m.from().unwrap().first().unwrap().address(),
        Some("a@example.test")
    );
}

#[test]
fn a_utf8_domain_becomes_a_labels() {
    let (head, _) = down(
        "To: Jörg <info@bücher.example>, x@例え.テスト (日本)\nReply-To: <@relay.example:r@bücher.example>\n\n",
    );
    assert_eq!(
        head,
        "To: =?UTF-8?Q?J=C3=B6rg?= <info@xn--bcher-kva.example>,\r\n x@xn--r8jz45g.xn--zckzah (=?UTF-8?B?5pel5pys?=)\r\n\
         Reply-To: <@relay.example:r@xn--bcher-kva.example>\r\n\r\n"
    );
}

#[test]
fn a_message_id_on_a_utf8_domain_gets_a_labels() {
    let (head, fields) =
        down("Message-ID: <1.2@bücher.example>\nReferences: <a@b.example>\n <c@例え.jp>\n\n");
    assert_eq!(fields, ["Message-ID", "References"]);
    assert_eq!(
        head,
        "Message-ID: <1.2@xn--bcher-kva.example>\r\n\
         References: <a@b.example> <c@xn--r8jz45g.jp>\r\n\r\n"
    );
}

#[test]
fn a_utf8_local_part_is_refused() {
    for head in [
        "To: Jörg <jörg@example.test>\n\n",
        "Cc: a@example.test, jörg@example.test\n\n",
        "From: \"jörg\"@example.test\n\n",
    ] {
        let err = header_section(head.replace('\n', "\r\n").as_bytes()).unwrap_err();
        assert!(matches!(err, Error::Unsendable(_)), "{err:?}");
        assert_eq!(exit::code(&err), exit::UNAVAILABLE);
        let text = err.to_string();
        assert!(
            text.contains("SMTPUTF8") && text.contains("local part"),
            "{text}"
        );
    }
}

#[test]
fn utf8_with_no_ascii_form_in_a_structured_field_is_refused() {
    for (head, field) in [
        ("Message-ID: <grüße@example.test>\r\n\r\n", "Message-ID"),
        (
            "Content-Type: text/plain; name=\"Grüße.txt\"\r\n\r\n",
            "Content-Type",
        ),
    ] {
        let err = header_section(head.as_bytes()).unwrap_err();
        assert_eq!(exit::code(&err), exit::UNAVAILABLE);
        assert!(err.to_string().contains(field), "{err}");
    }
    let err = header_section(b"To: \"J\xc3\xb6rg <a@example.test>\r\n\r\n").unwrap_err();
    assert!(err.to_string().contains("closing quote"), "{err}");
}

#[test]
fn already_encoded_words_are_left_alone_and_spacing_kept() {
    let (head, _) = down("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Köln\n\n");
    assert_eq!(
        head,
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus =?UTF-8?Q?K=C3=B6ln?=\r\n\r\n"
    );
    // Right after an encoded-word the space must go into ours, or it is lost.
    let (head, _) = down("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= Köln =?utf-8?q?x?=\n\n");
    assert_eq!(parsed(&head).subject(), Some("Grüße Köln x"));
    assert!(
        head.starts_with("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= =?UTF-8?Q?_K"),
        "{head}"
    );
}

#[test]
fn ascii_fields_are_kept_byte_for_byte() {
    let head = b"X-Folded: a\n\tb\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\nX-Lf: c\n\n";
    let (out, fields) = header_section(head).unwrap();
    assert_eq!(fields, ["Subject"]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "X-Folded: a\n\tb\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nX-Lf: c\n\n"
    );
    let ascii = b"From: a@example.test\nSubject: x\r\n =?utf-8?q?y?=\r\n\r\n";
    let (out, fields) = header_section(ascii).unwrap();
    assert_eq!(out, ascii);
    assert!(fields.is_empty());
}

#[test]
fn a_field_that_is_not_utf8_is_left_as_it_is() {
    let head = b"Subject: caf\xe9\r\nTo: J\xc3\xb6rg <a@example.test>\r\n\r\n";
    let (out, fields) = header_section(head).unwrap();
    assert_eq!(fields, ["To"]);
    assert!(out.starts_with(b"Subject: caf\xe9\r\nTo: =?UTF-8?Q?J=C3=B6rg?="));
}

#[test]
fn the_header_section_ends_at_the_first_empty_line() {
    let cases: [(&[u8], u64, bool, bool); 7] = [
        (b"A: b\r\n\r\nbody \xc3\xa4", 8, false, true),
        (b"A: \xc3\xa4\n\nbody", 7, true, false),
        (b"A: b\r\rX", 6, false, false),
        (b"A: b\r\r\nX", 7, false, false),
        (b"\nbody", 1, false, false),
        (b"A: b\r\n", 6, false, false),
        (b"A: b\r\n\r", 7, false, false),
    ];
    for (bytes, len, header, body) in cases {
        for split in 0..=bytes.len() {
            let mut scan = HeaderScan::default();
            scan.feed(&bytes[..split]);
            scan.feed(&bytes[split..]);
            assert_eq!(scan.finish(), (len, header, body), "{bytes:?} at {split}");
        }
    }
}

#[test]
fn a_downgraded_message_reads_its_new_header_then_the_same_body() {
    let text = b"From: J\xc3\xb6rg <a@example.test>\r\nSubject: K\xc3\xb6ln\r\n\r\nK\xc3\xb6ln\r\n";
    let message = Message::from_bytes(text.to_vec());
    assert!(message.has_8bit_header());
    let down = message.downgraded().unwrap();
    let mut got = Vec::new();
    down.reader(&message).read_to_end(&mut got).unwrap();
    let expected = b"From: =?UTF-8?Q?J=C3=B6rg?= <a@example.test>\r\n\
                     Subject: =?UTF-8?Q?K=C3=B6ln?=\r\n\r\nK\xc3\xb6ln\r\n";
    assert_eq!(got, expected);
    assert_eq!(down.wire_size(), crate::message::wire_size(expected));
    assert!(down.is_8bit());
    assert_eq!(down.fields(), ["From", "Subject"]);

    // From a file (a queued message): the body is read on from the file.
    let dir = std::env::temp_dir().join(format!("outbox-downgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("queued.eml");
    let mut big = b"xx".to_vec();
    big.extend_from_slice(b"Subject: K\xc3\xb6ln\r\n\r\n");
    big.extend(std::iter::repeat_n(b'a', 200_000));
    std::fs::write(&path, &big).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let message = Message::from_file_at(file, &path, 2).unwrap();
    assert!(message.has_8bit_header() && message.is_8bit());
    let down = message.downgraded().unwrap();
    let mut got = Vec::new();
    down.reader(&message).read_to_end(&mut got).unwrap();
    let mut expected = b"Subject: =?UTF-8?Q?K=C3=B6ln?=\r\n\r\n".to_vec();
    expected.extend(std::iter::repeat_n(b'a', 200_000));
    assert!(got == expected);
    assert_eq!(down.wire_size(), crate::message::wire_size(&expected));
    assert!(!down.is_8bit());
    std::fs::remove_file(path).unwrap();
}

#[test]
fn an_ascii_header_is_not_8bit_whatever_the_body() {
    let message = Message::from_bytes(b"Subject: x\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n".to_vec());
    assert!(!message.has_8bit_header());
    assert!(message.is_8bit());
}

#[test]
fn a_composed_message_with_a_file_keeps_its_file_after_the_new_header() {
    let dir = std::env::temp_dir().join(format!("outbox-downgrade-s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("part.bin");
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let skeleton = "To: <jö@bücher.example>\r\n\r\n--b\r\n\r\n\r\n--b--\r\n";
    // Where the part's body goes: after the blank line that ends its (empty) header.
    let place = |skeleton: &str| skeleton.find("--b\r\n\r\n").unwrap() + "--b\r\n\r\n".len();
    let at = place(skeleton);
    let message = Message::spliced(
        skeleton.as_bytes().to_vec(),
        vec![(at, file, path.clone(), data.len() as u64)],
    )
    .unwrap();
    assert!(message.has_8bit_header());
    let err = message.downgraded().unwrap_err();
    assert!(err.to_string().contains("<jö@bücher.example>"), "{err}");

    let skeleton = skeleton.replace("jö@", "j@");
    let at = place(&skeleton);
    let file = std::fs::File::open(&path).unwrap();
    let message = Message::spliced(
        skeleton.as_bytes().to_vec(),
        vec![(at, file, path.clone(), data.len() as u64)],
    )
    .unwrap();
    let down = message.downgraded().unwrap();
    let mut got = Vec::new();
    down.reader(&message).read_to_end(&mut got).unwrap();
    let original = message.to_vec().unwrap();
    let new_head = b"To: <j@xn--bcher-kva.example>\r\n";
    let old_head = "To: <j@bücher.example>\r\n".len();
    assert_eq!(&got[..new_head.len()], new_head);
    assert!(got[new_head.len()..] == original[old_head..]);
    assert_eq!(down.wire_size(), crate::message::wire_size(&got));
    assert!(!down.is_8bit());
    std::fs::remove_file(path).unwrap();
}

#[test]
fn any_field_value_gives_ascii_or_a_refusal_never_a_panic() {
    let pieces = [
        "(",
        ")",
        "\"",
        "\\",
        "<",
        ">",
        ",",
        ":",
        ";",
        "@",
        ".",
        "[",
        "]",
        " ",
        "\t",
        "ü",
        "日本",
        "=?utf-8?q?x?=",
        "a",
        "Jörg",
        "x@bücher.example",
        "\r\n ",
    ];
    let mut seed = 0x2545_f491_u64;
    for _ in 0..3000 {
        let mut value = String::new();
        for _ in 0..(seed % 12 + 1) {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            value.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
        }
        for name in ["Subject", "To", "Date", "Message-ID"] {
            let head = format!("{name}: ü{value}\r\n\r\n");
            match header_section(head.as_bytes()) {
                Ok((out, _)) => {
                    assert!(out.is_ascii(), "{head:?}");
                    let text = String::from_utf8(out).unwrap();
                    // Line breaks only as CRLF, and within a field only before white space.
                    let body = text.strip_suffix("\r\n\r\n").expect("the end kept");
                    for (i, line) in body.split("\r\n").enumerate() {
                        assert!(!line.contains(['\r', '\n']), "{head:?}: {text:?}");
                        if i > 0 {
                            assert!(line.starts_with([' ', '\t']), "{head:?}: {text:?}");
                            // RFC 5322 §3.2.2: no line of white space alone.
                            assert!(!line.trim().is_empty(), "{head:?}: {text:?}");
                        }
                    }
                }
                Err(e) => assert_eq!(exit::code(&e), exit::UNAVAILABLE, "{head:?}: {e}"),
            }
        }
    }
}

#[test]
fn what_follows_an_encoded_word_without_white_space_stays_within_the_line() {
    // `From: a@x (b (ÄÄÄ…))` once ended a line with `?=))`, 77 characters: the room
    // kept for one ")" was not enough for two, nor for a ",". Every length of the
    // text before it (up to what fits a line by itself) puts the end of the
    // encoded-word on every column.
    for pad in 0..60 {
        let p = "p".repeat(pad);
        for head in [
            format!("From: a@example.test ({p} (ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ))\n\n"),
            format!(
                "To: {p} Jörg Ä <j@example.test>, b@example.test (ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ),c@example.test\n\n"
            ),
            format!("Subject: {p} ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ...\n\n"),
        ] {
            let (out, _) = down(&head);
            assert_limits(&out);
        }
    }
}
