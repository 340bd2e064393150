//! A series of messages over one session (the queue's flush).

use super::*;

/// Messages to send, each with a name, and what became of each.
#[derive(Default)]
struct Batch {
    todo: VecDeque<(&'static str, Envelope, Message)>,
    results: Vec<(&'static str, Option<Result<Receipt, Error>>)>,
}

impl Batch {
    fn of(messages: &[(&'static str, &[&str], &str)]) -> Batch {
        let todo = messages
            .iter()
            .map(|(name, to, text)| {
                let m = Message::from_bytes(text.as_bytes().to_vec());
                (*name, envelope(to), m)
            })
            .collect();
        Batch {
            todo,
            results: Vec::new(),
        }
    }

    fn result(&self, name: &str) -> &Option<Result<Receipt, Error>> {
        &self
            .results
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no result for {name}"))
            .1
    }

    /// The error `name` came to.
    fn error(&self, name: &str) -> &Error {
        match self.result(name) {
            Some(Err(e)) => e,
            other => panic!("{name} did not fail: {other:?}"),
        }
    }
}

impl crate::Series for Batch {
    type Tag = &'static str;

    fn next(&mut self) -> Option<crate::Outgoing<&'static str>> {
        let (tag, envelope, message) = self.todo.pop_front()?;
        Some(crate::Outgoing {
            tag,
            envelope,
            message,
        })
    }

    fn done(&mut self, out: crate::Outgoing<&'static str>, result: Option<Result<Receipt, Error>>) {
        self.results.push((out.tag, result));
    }
}

/// Greets, says EHLO, then sends `batch` as a series.
fn run_series(script: &[&str], batch: &mut Batch) -> ScriptedPeer {
    let mut session = greeted(session(script));
    assert!(session.pipelines_data());
    crate::send_series_on(&mut session, &crate::Dsn::default(), batch);
    assert!(!session.is_usable(), "the series ends the session");
    session.into_inner()
}

fn queued_as(result: &Option<Result<Receipt, Error>>) -> String {
    match result {
        Some(Ok(receipt)) => receipt.reply.lines.join(" "),
        other => panic!("not delivered: {other:?}"),
    }
}

const PIPELINING_EHLO: &str = "250-mx.example.test\r\n250 PIPELINING\r\n";

const ENVELOPE_OK: &str = "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n";

#[test]
fn a_series_sends_each_end_with_the_next_envelope() {
    let mut batch = Batch::of(&[
        ("one", &["b@example.test"], "Subject: 1\r\n\r\none\r\n"),
        ("two", &["c@example.test"], "Subject: 2\r\n\r\n.two\r\n"),
        ("three", &["d@example.test"], "Subject: 3\r\n\r\nthree\r\n"),
    ]);
    let queued = |n: u32| format!("250 2.0.0 queued as {n}\r\n");
    let script = [
        "220 mx.example.test\r\n".to_owned(),
        PIPELINING_EHLO.to_owned(),
        ENVELOPE_OK.to_owned(),
        queued(1) + ENVELOPE_OK,
        queued(2) + ENVELOPE_OK,
        queued(3),
        "221 bye\r\n".to_owned(),
    ];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let peer = run_series(&script, &mut batch);
    assert_eq!(
        writes(&peer),
        [
            "EHLO client.example.test\r\n",
            "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
            "Subject: 1\r\n\r\none\r\n.\r\n\
             MAIL FROM:<a@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n",
            "Subject: 2\r\n\r\n..two\r\n.\r\n\
             MAIL FROM:<a@example.test>\r\nRCPT TO:<d@example.test>\r\nDATA\r\n",
            "Subject: 3\r\n\r\nthree\r\n.\r\nQUIT\r\n",
        ]
    );
    let names: Vec<&str> = batch.results.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["one", "two", "three"]);
    for (i, name) in ["one", "two", "three"].iter().enumerate() {
        assert_eq!(
            queued_as(batch.result(name)),
            format!("2.0.0 queued as {}", i + 1)
        );
    }
    // The series ends with QUIT and does not wait for its reply.
    assert_goodbye_unread(&peer, "221 bye\r\n");
}

#[test]
fn a_series_goes_on_past_refused_messages() {
    let mut batch = Batch::of(&[
        ("first", &["b@example.test"], SIMPLE_MESSAGE),
        // 8-bit data for a server without 8BITMIME: refused before anything is sent.
        (
            "eight-bit",
            &["b@example.test"],
            "Subject: x\r\n\r\ncaf\u{e9}\r\n",
        ),
        ("nobody", &["gone@example.test"], SIMPLE_MESSAGE),
        ("rejected", &["b@example.test"], SIMPLE_MESSAGE),
        ("last", &["b@example.test"], SIMPLE_MESSAGE),
    ]);
    let script = [
        "220 mx.example.test\r\n",
        PIPELINING_EHLO,
        ENVELOPE_OK,
        "250 2.0.0 queued as 1\r\n250 2.1.0 ok\r\n550 5.1.1 no such user\r\n\
         554 5.5.1 no valid recipients\r\n",
        "250 2.0.0 reset\r\n",
        ENVELOPE_OK,
        "554 5.7.1 content rejected\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",
        "250 2.0.0 queued as 4\r\n221 bye\r\n",
    ];
    let peer = run_series(&script, &mut batch);
    let envelope_group = "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n";
    assert_eq!(
        writes(&peer),
        [
            "EHLO client.example.test\r\n".to_owned(),
            envelope_group.to_owned(),
            format!(
                "{SIMPLE_WIRE}MAIL FROM:<a@example.test>\r\nRCPT TO:<gone@example.test>\r\n\
                 DATA\r\n"
            ),
            // The refused transaction's MAIL is still open.
            "RSET\r\n".to_owned(),
            envelope_group.to_owned(),
            format!("{SIMPLE_WIRE}{envelope_group}"),
            format!("{SIMPLE_WIRE}QUIT\r\n"),
        ]
    );
    let names: Vec<&str> = batch.results.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["eight-bit", "first", "nobody", "rejected", "last"]);
    assert_eq!(queued_as(batch.result("first")), "2.0.0 queued as 1");
    assert!(matches!(
        batch.result("eight-bit"),
        Some(Err(Error::Data(why))) if why.contains("8BITMIME")
    ));
    let nobody = batch.error("nobody");
    assert!(
        matches!(nobody, Error::NoRecipients { refused } if refused[0].reply.code == 550),
        "{nobody:?}"
    );
    assert_refused(batch.error("rejected"), Stage::EndOfData, 554);
    assert_eq!(queued_as(batch.result("last")), "2.0.0 queued as 4");
}

#[test]
fn a_series_stops_where_the_connection_is_lost() {
    let mut batch = Batch::of(&[
        ("sent", &["b@example.test"], SIMPLE_MESSAGE),
        ("announced", &["b@example.test"], SIMPLE_MESSAGE),
        ("untouched", &["b@example.test"], SIMPLE_MESSAGE),
    ]);
    let script = [
        "220 mx.example.test\r\n",
        PIPELINING_EHLO,
        ENVELOPE_OK,
        "421 4.3.2 shutting down\r\n",
    ];
    let peer = run_series(&script, &mut batch);
    let sent = batch.error("sent");
    assert!(
        matches!(sent, Error::Refused { reply, .. } if reply.code == 421),
        "{sent:?}"
    );
    // Its envelope went with the end of the one before, but nothing of it was read.
    assert!(batch.result("announced").is_none());
    assert_eq!(batch.results.len(), 2);
    assert_eq!(batch.todo.len(), 1, "the rest is not taken from the series");
    assert!(!show(peer.written()).contains("QUIT"));
}

#[test]
fn a_stray_reply_in_a_series_does_not_cascade() {
    // Had the stray 250 been taken for the end of the first message, the first would
    // count as delivered and the second would get the first one's 554.
    let mut batch = Batch::of(&[
        ("first", &["b@example.test"], SIMPLE_MESSAGE),
        ("second", &["c@example.test"], SIMPLE_MESSAGE),
    ]);
    let stray = format!("{ENVELOPE_OK}250 2.0.0 stray\r\n");
    let after = format!("554 5.7.1 refused\r\n{ENVELOPE_OK}");
    let script = [
        "220 mx.example.test\r\n",
        PIPELINING_EHLO,
        stray.as_str(),
        after.as_str(),
        "250 2.0.0 queued as 2\r\n",
    ];
    let peer = run_series(&script, &mut batch);
    assert_out_of_step(batch.error("first"));
    // The second was never begun: it stays to be sent later.
    assert!(batch.result("second").is_none());
    assert_eq!(count(peer.written(), b"Subject"), 0);
    assert_eq!(count(peer.written(), b"RCPT TO:<c@"), 0);
}
