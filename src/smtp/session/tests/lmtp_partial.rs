//! LMTP replies after the data cut short (RFC 2033 §4.2: one reply per accepted
//! recipient): a 421, a close or a timeout part-way. Those whose 250 was read have the
//! message and must not get it again; those whose reply never came are retried.

use super::*;
use crate::outcome::Outcome;

/// How a transaction goes over the server: lock-step DATA, pipelined DATA, pipelined
/// BDAT. Each gives the script's turns from the greeting to the replies before the
/// data's end, the server answering b@, c@ and d@.
const STRATEGIES: [(&str, &[&str], bool); 3] = [
    (
        "lock-step DATA",
        &[
            "220 lmtp.example.test LMTP\r\n",
            "250 lmtp.example.test\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
        ],
        false,
    ),
    (
        "pipelined DATA",
        &[
            "220 lmtp.example.test LMTP\r\n",
            "250-lmtp.example.test\r\n250 PIPELINING\r\n",
            "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
        ],
        false,
    ),
    (
        "pipelined BDAT",
        &[
            "220 lmtp.example.test LMTP\r\n",
            "250-lmtp.example.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
        ],
        true,
    ),
];

/// What the replies after the data are, and how the server ends them.
struct Ending {
    name: &'static str,
    /// The replies after the data (after the envelope's, for pipelined BDAT).
    replies: &'static str,
    at_end: AtEnd,
    accepted: &'static [&'static str],
    retry: &'static [&'static str],
    failed: &'static [&'static str],
    /// In the retry reason, for the recipients whose reply never came.
    why: &'static str,
    code: u8,
}

const ENDINGS: [Ending; 4] = [
    Ending {
        name: "421 after the first reply",
        replies: "250 2.0.0 <b@example.test> delivered\r\n421 4.3.2 shutting down\r\n",
        at_end: AtEnd::Eof,
        accepted: &["b@example.test"],
        retry: &["c@example.test", "d@example.test"],
        failed: &[],
        why: "421 4.3.2 shutting down",
        code: exit::TEMPFAIL,
    },
    Ending {
        name: "closed after the first reply",
        replies: "250 2.0.0 <b@example.test> delivered\r\n",
        at_end: AtEnd::Eof,
        accepted: &["b@example.test"],
        retry: &["c@example.test", "d@example.test"],
        failed: &[],
        why: "closed the connection",
        code: exit::TEMPFAIL,
    },
    Ending {
        name: "timed out after two replies",
        replies: "250 2.0.0 <b@example.test> delivered\r\n\
                  452 4.2.2 <c@example.test> over quota\r\n",
        at_end: AtEnd::Timeout,
        accepted: &["b@example.test"],
        retry: &["c@example.test", "d@example.test"],
        failed: &[],
        why: "timed out",
        code: exit::TEMPFAIL,
    },
    Ending {
        // A permanent refusal outranks the retry, as with any mixed refusals.
        name: "closed after a 250 and a 550",
        replies: "250 2.0.0 <b@example.test> delivered\r\n\
                  550 5.1.1 <c@example.test> no such user\r\n",
        at_end: AtEnd::Eof,
        accepted: &["b@example.test"],
        retry: &["d@example.test"],
        failed: &["c@example.test"],
        why: "closed the connection",
        code: exit::NOUSER,
    },
];

fn addrs(list: &[&str]) -> Vec<Address> {
    list.iter().map(|a| addr(a)).collect()
}

#[test]
fn a_reply_lost_after_the_data_retries_only_the_unanswered() {
    let to = ["b@example.test", "c@example.test", "d@example.test"];
    for (strategy, opening, bdat) in STRATEGIES {
        for ending in &ENDINGS {
            let case = format!("{strategy}, {}", ending.name);
            let mut turns: Vec<String> = opening.iter().map(|t| (*t).to_owned()).collect();
            if bdat {
                // MAIL, the RCPTs and the one BDAT LAST go at once; so do their replies.
                turns.push(format!(
                    "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n{}",
                    ending.replies
                ));
            } else {
                turns.push(ending.replies.to_owned());
            }
            let peer = ScriptedPeer::new(turns, ending.at_end);
            let mut session = Session::new(peer, Timeouts::default())
                .with_lmtp(true)
                .with_chunking(bdat);
            session.greeting().unwrap();
            session.ehlo(EHLO_NAME).unwrap();
            let envelope = envelope(&to);
            let result = session.transaction(&envelope, &[], &mut SIMPLE_MESSAGE.as_bytes());
            assert!(!session.is_usable(), "{case}");
            let written = show(session.into_inner().written());
            assert!(written.contains("hello\r\n"), "{case}: {written}");

            let outcome = Outcome::of(&envelope, &result);
            assert_eq!(
                outcome.accepted,
                addrs(ending.accepted),
                "{case}: {result:?}"
            );
            assert_eq!(outcome.retry, addrs(ending.retry), "{case}: {result:?}");
            assert_eq!(outcome.failed, addrs(ending.failed), "{case}: {result:?}");
            let last = ending.retry.last().unwrap();
            assert!(
                outcome.retry_reason.contains(&format!("<{last}>"))
                    && outcome.retry_reason.contains(ending.why),
                "{case}: {}",
                outcome.retry_reason
            );
            let err = result.as_ref().unwrap_err();
            assert_eq!(exit::code(err), ending.code, "{case}");
            assert!(
                matches!(err, Error::CutShortAfterData { .. }),
                "{case}: {err:?}"
            );
            assert_eq!(err.stage(), Some(Stage::EndOfData), "{case}");
            let text = err.to_string();
            assert!(
                text.contains(ending.why) && text.contains(&format!("<{last}>: no reply")),
                "{case}: {text}"
            );
        }
    }
}
