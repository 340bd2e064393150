//! The one mapping from outcomes to sysexits(3) codes.

use crate::error::{Error, Stage};
use crate::smtp::receipt::RecipientResult;
use crate::smtp::reply::Reply;

pub const OK: u8 = 0;
pub const USAGE: u8 = 64;
pub const DATAERR: u8 = 65;
pub const NOINPUT: u8 = 66;
pub const NOUSER: u8 = 67;
pub const NOHOST: u8 = 68;
pub const UNAVAILABLE: u8 = 69;
pub const SOFTWARE: u8 = 70;
pub const CANTCREAT: u8 = 73;
pub const IOERR: u8 = 74;
pub const TEMPFAIL: u8 = 75;
pub const PROTOCOL: u8 = 76;
pub const NOPERM: u8 = 77;
pub const CONFIG: u8 = 78;

/// The exit code for an error.
pub fn code(err: &Error) -> u8 {
    match err {
        Error::Usage(_) => USAGE,
        Error::Data(_) => DATAERR,
        Error::NoInput { .. } => NOINPUT,
        Error::Config(_) => CONFIG,
        Error::NoHost {
            temporary: true, ..
        } => TEMPFAIL,
        Error::NoHost { .. } => NOHOST,
        Error::Unsupported(_) | Error::Unsendable(_) => UNAVAILABLE,
        Error::Certificate { .. } | Error::Auth(_) | Error::Denied(_) => NOPERM,
        Error::Tls { .. } => PROTOCOL,
        Error::Connect { .. }
        | Error::Timeout { .. }
        | Error::Closed { .. }
        | Error::Network { .. } => TEMPFAIL,
        Error::Protocol { .. } | Error::Unexpected { .. } => PROTOCOL,
        Error::Refused { stage, reply } => reply_code(*stage, reply),
        Error::NoRecipients { refused } | Error::RefusedAfterData { refused } => {
            refusals_code(refused).unwrap_or(SOFTWARE)
        }
        // Those with no reply are to retry; a permanent refusal among the others
        // outranks that, as it does among mixed refusals (see `refusals_code`).
        Error::CutShortAfterData { answered, .. } => {
            let refused: Vec<RecipientResult> =
                answered.iter().filter(|r| !r.accepted).cloned().collect();
            match refusals_code(&refused) {
                Some(c @ (NOUSER | UNAVAILABLE)) => c,
                _ => TEMPFAIL,
            }
        }
        Error::LocalIo { .. } => IOERR,
        // sysexits(3): EX_CANTCREAT, "a (user specified) output file cannot be
        // created": the spool will never take a message that big.
        Error::OverLimit { lasting: true, .. } => CANTCREAT,
        Error::OverLimit { lasting: false, .. } => TEMPFAIL,
        Error::Hint { error, .. } => code(error),
    }
}

/// The exit code for a 4xx or 5xx reply at `stage`.
pub fn reply_code(stage: Stage, reply: &Reply) -> u8 {
    match reply.code {
        // RFC 3207 §4: 454 "TLS not available due to temporary reason", like any 4xx,
        // is worth a retry later; never a reason to go on in clear.
        400..=499 => TEMPFAIL,
        // RFC 4954 §6: 535 credentials invalid, 534 mechanism too weak, 538 encryption
        // required: the credentials or the way they are sent must change.
        500..=599 if stage == Stage::Auth => NOPERM,
        // RFC 5321 §4.2.3: 550 mailbox unavailable, 551 user not local, 553 mailbox
        // name not allowed: the address is what is wrong.
        550 | 551 | 553 if stage == Stage::RcptTo => NOUSER,
        // RFC 5321 §4.5.3.1.10: 552 to RCPT means "too many recipients", which the
        // client should treat as temporary and retry with the rest later.
        552 if stage == Stage::RcptTo => TEMPFAIL,
        _ => UNAVAILABLE,
    }
}

/// The exit code for one refused recipient, judged at the stage its reply came. To
/// RCPT, as [`reply_code`] says (552 is "too many recipients", to retry). Under LMTP
/// after the data, the reply is that recipient's final answer (RFC 2033 §4.2): 550,
/// 551 and 553 say the mailbox is what is wrong, any other 5xx (552: the mailbox is
/// full) is permanent all the same, and only a 4xx is worth a retry.
pub fn recipient_code(r: &RecipientResult) -> u8 {
    match r.reply.code {
        550 | 551 | 553 if r.stage == Stage::EndOfData => NOUSER,
        _ => reply_code(r.stage, &r.reply),
    }
}

/// The exit code for a set of refused recipients: the worst refusal. A permanent
/// refusal outranks a temporary one, because retrying the same submission cannot
/// cure it and would send the message again to those who already have it.
pub fn refusals_code(refused: &[RecipientResult]) -> Option<u8> {
    refused.iter().map(recipient_code).max_by_key(|&c| match c {
        NOUSER => 3,
        UNAVAILABLE => 2,
        _ => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::time::Duration;

    fn reply(code: u16) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec!["text".into()],
        }
    }

    fn refusal(code: u16) -> RecipientResult {
        refusal_at(Stage::RcptTo, code)
    }

    fn refusal_at(stage: Stage, code: u16) -> RecipientResult {
        RecipientResult {
            recipient: crate::Address::new("x@example.test").unwrap(),
            reply: reply(code),
            accepted: false,
            stage,
        }
    }

    #[test]
    fn every_error_kind_has_its_code() {
        let io_err = || io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        let cases = [
            (Error::Usage("bad flag".into()), 64),
            (Error::Data("bad message".into()), 65),
            (
                Error::NoInput {
                    path: "x".into(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                },
                66,
            ),
            (Error::Config("bad".into()), 78),
            (Error::Denied("not in the group".into()), 77),
            (
                Error::NoHost {
                    host: "nx.invalid".into(),
                    detail: "unknown".into(),
                    temporary: false,
                },
                68,
            ),
            (
                Error::NoHost {
                    host: "mx.example.test".into(),
                    detail: "Temporary failure in name resolution".into(),
                    temporary: true,
                },
                75,
            ),
            (Error::Unsupported("no SMTPUTF8".into()), 69),
            (
                Error::Certificate {
                    server: "mx".into(),
                    detail: "unable to get local issuer certificate".into(),
                },
                77,
            ),
            (
                Error::Tls {
                    server: "mx".into(),
                    detail: "wrong version number".into(),
                },
                76,
            ),
            (Error::Auth("server signature mismatch".into()), 77),
            (
                Error::OverLimit {
                    what: "over the size limit".into(),
                    lasting: true,
                },
                73,
            ),
            (
                Error::OverLimit {
                    what: "the queue is full".into(),
                    lasting: false,
                },
                75,
            ),
            (
                Error::Hint {
                    error: Box::new(Error::Closed {
                        stage: Stage::Greeting,
                    }),
                    hint: "try this".into(),
                },
                75,
            ),
            (
                Error::Connect {
                    server: "127.0.0.1:1".into(),
                    source: io_err(),
                },
                75,
            ),
            (
                Error::Timeout {
                    stage: Stage::Greeting,
                    after: Duration::from_secs(1),
                },
                75,
            ),
            (
                Error::Closed {
                    stage: Stage::RcptTo,
                },
                75,
            ),
            (
                Error::Network {
                    stage: Stage::Message,
                    source: io_err(),
                },
                75,
            ),
            (
                Error::Protocol {
                    stage: Stage::Greeting,
                    detail: "garbage".into(),
                },
                76,
            ),
            (
                Error::Unexpected {
                    stage: Stage::Data,
                    expected: "354",
                    reply: reply(250),
                },
                76,
            ),
            (
                Error::LocalIo {
                    context: "stdin".into(),
                    source: io_err(),
                },
                74,
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(code(&err), expected, "{err:?}");
        }
    }

    #[test]
    fn refusals_by_stage_and_code() {
        let refused = |stage, c| {
            code(&Error::Refused {
                stage,
                reply: reply(c),
            })
        };
        assert_eq!(refused(Stage::RcptTo, 550), 67);
        assert_eq!(refused(Stage::RcptTo, 551), 67);
        assert_eq!(refused(Stage::RcptTo, 553), 67);
        assert_eq!(refused(Stage::RcptTo, 552), 75);
        assert_eq!(refused(Stage::RcptTo, 554), 69);
        assert_eq!(refused(Stage::EndOfData, 552), 69);
        assert_eq!(refused(Stage::RcptTo, 450), 75);
        assert_eq!(refused(Stage::MailFrom, 550), 69);
        assert_eq!(refused(Stage::Greeting, 554), 69);
        assert_eq!(refused(Stage::Greeting, 421), 75);
        assert_eq!(refused(Stage::EndOfData, 451), 75);
        assert_eq!(refused(Stage::EndOfData, 554), 69);
        assert_eq!(refused(Stage::Auth, 535), 77);
        assert_eq!(refused(Stage::Auth, 454), 75);
        assert_eq!(refused(Stage::StartTls, 454), 75);
        assert_eq!(refused(Stage::StartTls, 501), 69);
        assert_eq!(refused(Stage::StartTls, 421), 75);
        assert_eq!(refused(Stage::StartTls, 250), 69);
    }

    #[test]
    fn worst_refusal_wins() {
        assert_eq!(refusals_code(&[]), None);
        assert_eq!(refusals_code(&[refusal(450)]), Some(75));
        assert_eq!(refusals_code(&[refusal(450), refusal(550)]), Some(67));
        assert_eq!(refusals_code(&[refusal(554), refusal(450)]), Some(69));
        assert_eq!(refusals_code(&[refusal(554), refusal(550)]), Some(67));
        assert_eq!(
            code(&Error::NoRecipients {
                refused: vec![refusal(450), refusal(451)]
            }),
            75
        );
    }

    /// RFC 2033 §4.2: under LMTP each reply after the data is that recipient's final
    /// answer; the "552 is temporary" rule (RFC 5321 §4.5.3.1.10) is for RCPT only.
    #[test]
    fn lmtp_552_after_data_is_permanent() {
        let rcpt = |c| recipient_code(&refusal_at(Stage::RcptTo, c));
        let after = |c| recipient_code(&refusal_at(Stage::EndOfData, c));
        assert_eq!(rcpt(552), 75);
        assert_eq!(after(552), 69);
        for c in [550, 551, 553] {
            assert_eq!(rcpt(c), 67, "{c}");
            assert_eq!(after(c), 67, "{c}");
        }
        assert_eq!(rcpt(554), 69);
        assert_eq!(after(554), 69);
        assert_eq!(after(452), 75);
        assert_eq!(after(451), 75);
        // A whole SMTP message refused after the final dot is no address's fault.
        let message = |c| {
            code(&Error::Refused {
                stage: Stage::EndOfData,
                reply: reply(c),
            })
        };
        assert_eq!(message(552), 69);
        assert_eq!(message(550), 69);

        let full = refusal_at(Stage::EndOfData, 552);
        let over_quota = refusal_at(Stage::EndOfData, 452);
        assert_eq!(refusals_code(&[over_quota.clone(), full.clone()]), Some(69));
        assert_eq!(
            refusals_code(&[full.clone(), refusal_at(Stage::EndOfData, 550)]),
            Some(67)
        );
        assert_eq!(
            code(&Error::RefusedAfterData {
                refused: vec![over_quota.clone(), full]
            }),
            69
        );
        assert_eq!(
            code(&Error::RefusedAfterData {
                refused: vec![over_quota]
            }),
            75
        );
        assert_eq!(
            code(&Error::NoRecipients {
                refused: vec![refusal_at(Stage::RcptTo, 552)]
            }),
            75
        );
    }
}
