//! What became of each recipient of a submission: accepted, to be retried, or refused
//! for good. The queue keeps the second kind; the third is reported (and kept aside).

use crate::Envelope;
use crate::envelope::Address;
use crate::error::{Error, Stage};
use crate::exit;
use crate::smtp::receipt::{Receipt, RecipientResult};
use crate::smtp::reply::Reply;

/// One submission's result, recipient by recipient.
#[derive(Debug, Default)]
pub struct Outcome {
    pub accepted: Vec<Address>,
    /// The reply that took the message for `accepted` (the end of the data; under
    /// LMTP each recipient's own, of which this is the first).
    pub accepted_reply: Option<Reply>,
    /// Refused for now, or never reached (server down, connection lost): retry later.
    pub retry: Vec<Address>,
    pub retry_reason: String,
    /// Refused for good.
    pub failed: Vec<Address>,
    pub failed_reason: String,
    /// The exit code the permanent failures call for (0 if there are none).
    pub failed_code: u8,
    /// What was said of each recipient in `retry` and `failed`: for the bounce and
    /// the log.
    pub refusals: Vec<Refusal>,
}

/// What became of one recipient that did not get the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub recipient: Address,
    /// The server's reply that refused it, where there was one (to its RCPT, to the
    /// message, or, under LMTP, its own reply after the data).
    pub reply: Option<Reply>,
    /// Where that came: the stage of the reply, or of the error.
    pub stage: Option<Stage>,
    /// The reply or the error, on one line.
    pub reason: String,
    /// Refused for good (else: to retry).
    pub permanent: bool,
}

impl Outcome {
    /// The refusals for good.
    pub fn permanent(&self) -> impl Iterator<Item = &Refusal> {
        self.refusals.iter().filter(|r| r.permanent)
    }

    /// The refusals to retry.
    pub fn temporary(&self) -> impl Iterator<Item = &Refusal> {
        self.refusals.iter().filter(|r| !r.permanent)
    }
}

impl Outcome {
    /// Sorts each recipient of `envelope` by what `result` says of it.
    pub fn of(envelope: &Envelope, result: &Result<Receipt, Error>) -> Outcome {
        match result {
            Ok(receipt) => {
                let mut outcome = Outcome::of_recipients(&receipt.recipients);
                if !outcome.accepted.is_empty() {
                    outcome.accepted_reply = Some(receipt.reply.clone());
                }
                outcome
            }
            Err(Error::NoRecipients { refused } | Error::RefusedAfterData { refused }) => {
                Outcome::of_recipients(refused)
            }
            Err(Error::CutShortAfterData {
                answered,
                unanswered,
                cause,
            }) => {
                let mut outcome = Outcome::of_recipients(answered);
                let why = cause.reply().map_or_else(|| cause.to_string(), one_line);
                let who: Vec<String> = unanswered.iter().map(|a| format!("<{a}>")).collect();
                let lost = format!("{}: no reply after the data: {why}", who.join(", "));
                outcome.retry.extend(unanswered.iter().cloned());
                outcome.refusals.extend(unanswered.iter().map(|r| Refusal {
                    recipient: r.clone(),
                    reply: cause.reply().cloned(),
                    stage: Some(Stage::EndOfData),
                    reason: format!("no reply after the data: {why}"),
                    permanent: false,
                }));
                outcome.retry_reason = match outcome.retry_reason.as_str() {
                    "" => lost,
                    before => format!("{before}; {lost}"),
                };
                outcome
            }
            Err(e) => {
                let mut outcome = Outcome::default();
                let permanent = refuses_the_message(e);
                if permanent {
                    outcome.failed = envelope.to.clone();
                    outcome.failed_reason = e.to_string();
                    outcome.failed_code = exit::code(e);
                } else {
                    outcome.retry = envelope.to.clone();
                    outcome.retry_reason = e.to_string();
                }
                let reason = e
                    .reply()
                    .map_or_else(|| e.to_string().replace('\n', " / "), one_line);
                outcome.refusals = envelope
                    .to
                    .iter()
                    .map(|r| Refusal {
                        recipient: r.clone(),
                        reply: e.reply().cloned(),
                        stage: e.stage(),
                        reason: reason.clone(),
                        permanent,
                    })
                    .collect();
                outcome
            }
        }
    }

    /// Each result as a refusal at its own stage counts (a 552 to RCPT is "too many
    /// recipients", to retry; an LMTP 552 after the data is a full mailbox, for good).
    fn of_recipients(results: &[RecipientResult]) -> Outcome {
        let mut outcome = Outcome::default();
        let mut retry_replies = Vec::new();
        let mut failed = Vec::new();
        let mut refusals = (Vec::new(), Vec::new());
        for r in results {
            if r.accepted {
                outcome.accepted.push(r.recipient.clone());
                if outcome.accepted_reply.is_none() && r.stage == Stage::EndOfData {
                    outcome.accepted_reply = Some(r.reply.clone());
                }
                continue;
            }
            let permanent = exit::recipient_code(r) != exit::TEMPFAIL;
            let refusal = Refusal {
                recipient: r.recipient.clone(),
                reply: Some(r.reply.clone()),
                stage: Some(r.stage),
                reason: one_line(&r.reply),
                permanent,
            };
            if permanent {
                outcome.failed.push(r.recipient.clone());
                failed.push(r.clone());
                refusals.1.push(refusal);
            } else {
                outcome.retry.push(r.recipient.clone());
                retry_replies.push(format!("<{}>: {}", r.recipient, one_line(&r.reply)));
                refusals.0.push(refusal);
            }
        }
        outcome.refusals = refusals.0;
        outcome.refusals.append(&mut refusals.1);
        outcome.retry_reason = retry_replies.join("; ");
        outcome.failed_reason = failed
            .iter()
            .map(|r| format!("<{}>: {}", r.recipient, one_line(&r.reply)))
            .collect::<Vec<_>>()
            .join("; ");
        outcome.failed_code = exit::refusals_code(&failed).unwrap_or(exit::OK);
        outcome
    }
}

/// Whether `e` says this message will never go: the server refused it for good, or it
/// cannot be sent as it is. Anything else (the server down, a 4xx, TLS, AUTH or a
/// password command failing, a server out of step) may pass, so the message waits
/// in the queue rather than being given up.
fn refuses_the_message(e: &Error) -> bool {
    match e {
        Error::Refused { stage, reply } => {
            reply.is_permanent()
                && matches!(
                    stage,
                    Stage::MailFrom
                        | Stage::RcptTo
                        | Stage::Data
                        | Stage::Message
                        | Stage::EndOfData
                )
        }
        Error::Data(_) | Error::Unsendable(_) => true,
        Error::Hint { error, .. } => refuses_the_message(error),
        _ => false,
    }
}

/// A reply on one line, for a queue entry's "last error".
fn one_line(reply: &crate::smtp::reply::Reply) -> String {
    reply.to_string().replace('\n', " / ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::Reply;
    use std::time::Duration;

    fn a(s: &str) -> Address {
        Address::new(s).unwrap()
    }

    fn reply(code: u16) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec!["text".into()],
        }
    }

    fn result(to: &str, code: u16) -> RecipientResult {
        result_at(Stage::RcptTo, to, code)
    }

    fn result_at(stage: Stage, to: &str, code: u16) -> RecipientResult {
        RecipientResult {
            recipient: a(to),
            reply: reply(code),
            accepted: code < 300,
            stage,
        }
    }

    fn envelope() -> Envelope {
        Envelope::new(
            Some(a("f@example.test")),
            [
                a("ok@example.test"),
                a("later@example.test"),
                a("never@example.test"),
            ],
        )
    }

    #[test]
    fn per_recipient_verdicts() {
        let receipt = Receipt {
            recipients: vec![
                result("ok@example.test", 250),
                result("later@example.test", 450),
                result("never@example.test", 550),
            ],
            reply: reply(250),
        };
        let o = Outcome::of(&envelope(), &Ok(receipt));
        assert_eq!(o.accepted, [a("ok@example.test")]);
        assert_eq!(o.retry, [a("later@example.test")]);
        assert_eq!(o.failed, [a("never@example.test")]);
        assert_eq!(o.failed_code, 67);
        assert!(o.retry_reason.contains("450"), "{}", o.retry_reason);
        assert!(o.failed_reason.contains("<never@example.test>: 550"));
    }

    #[test]
    fn all_refused_is_sorted_the_same_way() {
        let refused = vec![
            result("ok@example.test", 452),
            result("later@example.test", 552),
            result("never@example.test", 554),
        ];
        let o = Outcome::of(&envelope(), &Err(Error::NoRecipients { refused }));
        assert!(o.accepted.is_empty());
        // 552 to RCPT is "too many recipients": temporary.
        assert_eq!(o.retry.len(), 2);
        assert_eq!(o.failed, [a("never@example.test")]);
        assert_eq!(o.failed_code, 69);
    }

    #[test]
    fn a_server_that_is_down_means_retry_for_everyone() {
        let err = Error::Timeout {
            stage: Stage::Greeting,
            after: Duration::from_secs(1),
        };
        let o = Outcome::of(&envelope(), &Err(err));
        assert_eq!(o.retry.len(), 3);
        assert!(o.failed.is_empty());
        assert_eq!(o.failed_code, 0);
    }

    #[test]
    fn local_and_session_troubles_wait_in_the_queue() {
        for err in [
            Error::Config("the password command failed".into()),
            Error::Auth("server signature mismatch".into()),
            Error::Refused {
                stage: Stage::Auth,
                reply: reply(535),
            },
            Error::Refused {
                stage: Stage::StartTls,
                reply: reply(454),
            },
            Error::Protocol {
                stage: Stage::Greeting,
                detail: "garbage".into(),
            },
            Error::Unsupported("no STARTTLS".into()),
        ] {
            let o = Outcome::of(&envelope(), &Err(err));
            assert_eq!(o.retry.len(), 3);
            assert!(o.failed.is_empty());
        }
        let o = Outcome::of(&envelope(), &Err(Error::Unsendable("too big".into())));
        assert_eq!(o.failed.len(), 3);
        assert_eq!(o.failed_code, 69);
    }

    #[test]
    fn a_permanent_refusal_of_the_message_fails_everyone() {
        let err = Error::Refused {
            stage: Stage::EndOfData,
            reply: reply(554),
        };
        let o = Outcome::of(&envelope(), &Err(err));
        assert!(o.retry.is_empty());
        assert_eq!(o.failed.len(), 3);
        assert_eq!(o.failed_code, 69);
        assert!(o.failed_reason.contains("554"));
    }

    /// Under LMTP the replies after the data are final (RFC 2033 §4.2): a 552 then is a
    /// full mailbox, kept in failed rather than retried, where a 552 to RCPT is retried.
    #[test]
    fn lmtp_552_after_data_is_permanent() {
        let receipt = Receipt {
            recipients: vec![
                result_at(Stage::EndOfData, "ok@example.test", 250),
                result_at(Stage::EndOfData, "later@example.test", 452),
                result_at(Stage::EndOfData, "never@example.test", 552),
            ],
            reply: reply(250),
        };
        let o = Outcome::of(&envelope(), &Ok(receipt));
        assert_eq!(o.accepted, [a("ok@example.test")]);
        assert_eq!(o.retry, [a("later@example.test")]);
        assert_eq!(o.failed, [a("never@example.test")]);
        assert_eq!(o.failed_code, 69);
        assert!(o.failed_reason.contains("<never@example.test>: 552"));

        // 550 after the data names the mailbox: 67, as it would to RCPT.
        let refused = vec![
            result_at(Stage::EndOfData, "ok@example.test", 550),
            result_at(Stage::EndOfData, "later@example.test", 452),
            result_at(Stage::EndOfData, "never@example.test", 552),
        ];
        let o = Outcome::of(&envelope(), &Err(Error::RefusedAfterData { refused }));
        assert!(o.accepted.is_empty());
        assert_eq!(o.retry, [a("later@example.test")]);
        assert_eq!(o.failed, [a("ok@example.test"), a("never@example.test")]);
        assert_eq!(o.failed_code, 67);

        // Each result keeps its own stage: a 552 to RCPT beside one after the data.
        let receipt = Receipt {
            recipients: vec![
                result_at(Stage::EndOfData, "ok@example.test", 250),
                result_at(Stage::RcptTo, "later@example.test", 552),
                result_at(Stage::EndOfData, "never@example.test", 552),
            ],
            reply: reply(250),
        };
        let o = Outcome::of(&envelope(), &Ok(receipt));
        assert_eq!(o.retry, [a("later@example.test")]);
        assert_eq!(o.failed, [a("never@example.test")]);
    }

    /// SMTP: a 552 after the final dot refuses the message itself (its size, the
    /// storage), not one recipient: permanent, for everyone.
    #[test]
    fn smtp_552_after_the_final_dot_fails_everyone() {
        let err = Error::Refused {
            stage: Stage::EndOfData,
            reply: reply(552),
        };
        let o = Outcome::of(&envelope(), &Err(err));
        assert!(o.retry.is_empty());
        assert_eq!(o.failed.len(), 3);
        assert_eq!(o.failed_code, 69);
    }
}
