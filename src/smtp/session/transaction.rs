//! One mail transaction, by the strategy the server allows: lock-step (every command
//! waits for its reply), pipelined DATA (RFC 2920) or pipelined BDAT (RFC 3030); and
//! the replies to the envelope and to the end of the message, read in order.

use std::io::{Read, Write};

use super::Session;
use crate::envelope::{Address, Envelope};
use crate::error::Error;
use crate::smtp::command::{Command, CommandError};
use crate::smtp::deadline::IoTimeout;
use crate::smtp::receipt::{Receipt, RecipientResult};
use crate::smtp::record::Phase;
use crate::smtp::reply::Reply;
use crate::smtp::stage::{QuitAfter, Stage};

/// The ESMTP parameters of one transaction: for MAIL FROM, and for each RCPT TO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parameters {
    pub mail: Vec<String>,
    pub rcpt: Vec<String>,
}

/// The commands of a transaction's envelope: `MAIL FROM` with `params`, then one
/// `RCPT TO` per recipient. Every address is checked before anything is sent.
pub fn envelope_commands(
    envelope: &Envelope,
    mail_params: &[&str],
    rcpt_params: &[&str],
) -> Result<Vec<Command>, Error> {
    if envelope.to.is_empty() {
        return Err(Error::Usage("the envelope has no recipient".into()));
    }
    let usage = |e: CommandError| Error::Usage(e.to_string());
    let from = envelope.from.as_ref().map_or("", Address::as_str);
    let mut commands = vec![Command::mail_from(from, mail_params).map_err(usage)?];
    for to in &envelope.to {
        commands.push(Command::rcpt_to(to.as_str(), rcpt_params).map_err(usage)?);
    }
    Ok(commands)
}

fn split_envelope(commands: &[Command]) -> Result<(&Command, &[Command]), Error> {
    commands
        .split_first()
        .ok_or_else(|| Error::Usage("the envelope has no recipient".into()))
}

impl<S: Read + Write + IoTimeout> Session<S> {
    /// One mail transaction: MAIL, a RCPT per recipient, and the message if any
    /// recipient was accepted. Refused recipients are reported in the receipt; if none
    /// is accepted, the error lists every refusal.
    ///
    /// Where the server offers PIPELINING (RFC 2920), MAIL, every RCPT and DATA leave in
    /// one write, and the message, the final dot and (for the last message) QUIT in
    /// another; every reply is still read and checked in order. Where it offers
    /// CHUNKING (RFC 3030), the message goes in BDAT chunks instead of DATA, with no
    /// dot-stuffing, pipelined with the envelope where PIPELINING allows.
    pub fn transaction(
        &mut self,
        envelope: &Envelope,
        params: &[&str],
        message: &mut dyn Read,
    ) -> Result<Receipt, Error> {
        let params = Parameters {
            mail: params.iter().map(|p| (*p).to_owned()).collect(),
            rcpt: Vec::new(),
        };
        self.transaction_with(envelope, &params, message)
    }

    /// As [`Session::transaction`], with parameters for RCPT TO too (DSN's NOTIFY).
    pub fn transaction_with(
        &mut self,
        envelope: &Envelope,
        params: &Parameters,
        message: &mut dyn Read,
    ) -> Result<Receipt, Error> {
        let mail: Vec<&str> = params.mail.iter().map(String::as_str).collect();
        let rcpt: Vec<&str> = params.rcpt.iter().map(String::as_str).collect();
        let commands = envelope_commands(envelope, &mail, &rcpt)?;
        let pipelining = self.capabilities.has("PIPELINING");
        let chunking = self.chunking && self.capabilities.has("CHUNKING");
        let quit = std::mem::take(&mut self.quit_after);
        self.note_extensions(params, pipelining, chunking);
        self.timed(Phase::Envelope, |s| match (pipelining, chunking) {
            (false, false) => s.lockstep(envelope, &commands, message, quit, false),
            (false, true) => s.lockstep(envelope, &commands, message, quit, true),
            (true, false) => s.pipelined_data(envelope, &commands, message, quit),
            (true, true) => s.pipelined_bdat(envelope, &commands, message, quit),
        })
    }

    /// A transaction as far as `stop` and no further (`--quit-after`): MAIL, then each
    /// RCPT, then DATA, each waiting for its reply, so that every reply shows what it
    /// answers. The recipients' results; none accepted is the error that lists them.
    /// After DATA's 354 only the message could follow (a QUIT would be taken for its
    /// first line): the session ends without a word, and the server drops the
    /// unfinished message (RFC 5321 §4.1.1.4 counts a message only once its end is
    /// seen).
    pub fn rehearse(
        &mut self,
        envelope: &Envelope,
        params: &Parameters,
        stop: QuitAfter,
    ) -> Result<Vec<RecipientResult>, Error> {
        let mail: Vec<&str> = params.mail.iter().map(String::as_str).collect();
        let rcpt: Vec<&str> = params.rcpt.iter().map(String::as_str).collect();
        let commands = envelope_commands(envelope, &mail, &rcpt)?;
        let (mail, rcpts) = split_envelope(&commands)?;
        self.note_extensions(params, false, false);
        self.timed(Phase::Envelope, |s| {
            let reply = s.command(mail, Stage::MailFrom, s.timeouts.mail)?;
            s.expect(Stage::MailFrom, reply, &[250], "250")?;
            let mut recipients = Vec::with_capacity(rcpts.len());
            if stop == QuitAfter::Mail {
                return Ok(recipients);
            }
            for (to, cmd) in envelope.to.iter().zip(rcpts) {
                s.send_group(std::slice::from_ref(cmd), Stage::RcptTo, s.timeouts.rcpt)?;
                recipients.push(s.rcpt_reply(to)?);
            }
            if !recipients.iter().any(|r| r.accepted) {
                return Err(Error::NoRecipients {
                    refused: recipients,
                });
            }
            if stop == QuitAfter::Data {
                s.record.timeline.enter(Phase::Data);
                let reply = s.command(&Command::Data, Stage::Data, s.timeouts.data_init)?;
                s.expect(Stage::Data, reply, &[354], "354")?;
                s.hang_up("the server waits for the message, which --quit-after data keeps");
            }
            Ok(recipients)
        })
    }

    /// Notes in the record which extensions this transaction uses.
    fn note_extensions(&mut self, params: &Parameters, pipelining: bool, chunking: bool) {
        let record = &mut self.record;
        record.begin_transaction();
        if pipelining {
            record.uses("PIPELINING");
        }
        if chunking {
            record.uses("CHUNKING");
        }
        for p in params.mail.iter().chain(&params.rcpt) {
            let key = p.split('=').next().unwrap_or_default().to_ascii_uppercase();
            match key.as_str() {
                "SIZE" => record.uses("SIZE"),
                "BODY" if p.eq_ignore_ascii_case("BODY=8BITMIME") => record.uses("8BITMIME"),
                "SMTPUTF8" => record.uses("SMTPUTF8"),
                "RET" | "ENVID" | "NOTIFY" | "ORCPT" => record.uses("DSN"),
                _ => {}
            }
        }
        if self.capabilities.has("ENHANCEDSTATUSCODES") {
            record.uses("ENHANCEDSTATUSCODES");
        }
    }

    /// MAIL and each RCPT wait for their reply; then DATA (or BDAT chunks, each waiting
    /// for its reply) if anyone was accepted.
    fn lockstep(
        &mut self,
        envelope: &Envelope,
        commands: &[Command],
        message: &mut dyn Read,
        quit: bool,
        chunking: bool,
    ) -> Result<Receipt, Error> {
        let (mail, rcpts) = split_envelope(commands)?;
        let reply = self.command(mail, Stage::MailFrom, self.timeouts.mail)?;
        self.expect(Stage::MailFrom, reply, &[250], "250")?;
        let mut recipients = Vec::with_capacity(rcpts.len());
        for (to, cmd) in envelope.to.iter().zip(rcpts) {
            self.send_group(std::slice::from_ref(cmd), Stage::RcptTo, self.timeouts.rcpt)?;
            recipients.push(self.rcpt_reply(to)?);
        }
        if !recipients.iter().any(|r| r.accepted) {
            return Err(Error::NoRecipients {
                refused: recipients,
            });
        }
        self.record.timeline.enter(Phase::Data);
        if chunking {
            // Every chunk but the last has had its reply; the last's is the message's.
            self.send_chunks(message, Vec::new(), false, true, None)?;
        } else {
            let reply = self.command(&Command::Data, Stage::Data, self.timeouts.data_init)?;
            self.expect(Stage::Data, reply, &[354], "354")?;
            self.send_body(message, &[])?;
        }
        let reply = self.end_of_data(&mut recipients)?;
        if quit {
            let _ = self.quit();
        }
        Ok(Receipt { recipients, reply })
    }

    /// MAIL, the RCPTs and DATA in one write; then the message, the dot and QUIT in
    /// another.
    fn pipelined_data(
        &mut self,
        envelope: &Envelope,
        commands: &[Command],
        message: &mut dyn Read,
        quit: bool,
    ) -> Result<Receipt, Error> {
        let mut group = commands.to_vec();
        group.push(Command::Data);
        self.send_group(&group, Stage::MailFrom, self.timeouts.mail)?;
        let mut recipients = self.data_replies(envelope)?;
        let then: &[Command] = if quit { &[Command::Quit] } else { &[] };
        self.send_body(message, then)?;
        let reply = self.end_of_data(&mut recipients);
        if quit {
            let _ = self.after_quit();
        }
        Ok(Receipt {
            recipients,
            reply: reply?,
        })
    }

    /// Whether messages go with DATA over a pipelining server: PIPELINING offered, and
    /// BDAT not in use.
    pub(crate) fn pipelines_data(&self) -> bool {
        self.capabilities.has("PIPELINING") && !(self.chunking && self.capabilities.has("CHUNKING"))
    }

    /// The command group that opens a pipelined DATA transaction: MAIL, a RCPT per
    /// recipient, DATA. The transaction counts as begun in the record.
    pub(crate) fn data_group(
        &mut self,
        envelope: &Envelope,
        params: &Parameters,
    ) -> Result<Vec<Command>, Error> {
        let mail: Vec<&str> = params.mail.iter().map(String::as_str).collect();
        let rcpt: Vec<&str> = params.rcpt.iter().map(String::as_str).collect();
        let mut group = envelope_commands(envelope, &mail, &rcpt)?;
        group.push(Command::Data);
        self.note_extensions(params, true, false);
        Ok(group)
    }

    /// Writes a command group (as made by [`Session::data_group`]) on its own.
    pub(crate) fn send_data_group(&mut self, group: &[Command]) -> Result<(), Error> {
        self.send_group(group, Stage::MailFrom, self.timeouts.mail)
    }

    /// The replies to a pipelined MAIL, its RCPTs and DATA, in order. Ready for the
    /// message (354, some recipient accepted): each recipient's result. Otherwise the
    /// error, with the dialogue kept in step.
    pub(crate) fn data_replies(
        &mut self,
        envelope: &Envelope,
    ) -> Result<Vec<RecipientResult>, Error> {
        self.record.timeline.enter(Phase::Envelope);
        let (mail_error, recipients) = self.envelope_replies(envelope)?;
        self.record.timeline.enter(Phase::Data);
        let reply = self.read_reply(Stage::Data, self.timeouts.data_init)?;
        // RFC 5321 §3.8: a 421 closes the connection, whatever error is reported.
        if reply.code == 421 {
            self.dead = true;
        }
        let go_ahead = reply.code == 354;
        let nobody = !recipients.iter().any(|r| r.accepted);
        if go_ahead && (mail_error.is_some() || nobody) {
            // RFC 2920 §3.1: a 354 where no transaction stands must still be ended, with
            // an empty message, to keep the dialogue in step.
            self.send_group_raw(b".\r\n", ".", Stage::EndOfData)?;
            if self
                .read_reply(Stage::EndOfData, self.timeouts.data_end)?
                .code
                == 421
            {
                self.dead = true;
            }
        }
        if let Some(e) = mail_error {
            return Err(e);
        }
        if nobody {
            return Err(Error::NoRecipients {
                refused: recipients,
            });
        }
        self.expect(Stage::Data, reply, &[354], "354")?;
        Ok(recipients)
    }

    /// MAIL, the RCPTs, every BDAT chunk and QUIT in one stream of writes; then the
    /// replies, in order.
    fn pipelined_bdat(
        &mut self,
        envelope: &Envelope,
        commands: &[Command],
        message: &mut dyn Read,
        quit: bool,
    ) -> Result<Receipt, Error> {
        // The envelope goes in the same write as the first chunk.
        let mut envelope_bytes = Vec::new();
        for cmd in commands {
            if let Some(t) = &mut self.transcript {
                t.sent(cmd);
            }
            envelope_bytes.extend_from_slice(cmd.to_string().as_bytes());
        }
        self.check_in_step("MAIL FROM", Stage::MailFrom)?;
        // The envelope leaves with the message: from here on it is all data.
        self.record.timeline.enter(Phase::Data);
        let chunked = self.send_chunks(message, envelope_bytes, quit, false, Some(envelope))?;
        let chunks = chunked.due;
        let quit = quit && chunked.ended;
        let (mail_error, recipients) = match chunked.replies {
            Some(replies) => replies,
            None => self.envelope_replies(envelope)?,
        };
        let mut recipients = recipients;
        let no_transaction = mail_error.is_some() || !recipients.iter().any(|r| r.accepted);
        // The replies to the chunks before the last (to every chunk sent, when the
        // message was cut short because no transaction stood).
        let mut first_error = None;
        let before_last = if chunked.ended { chunks - 1 } else { chunks };
        for _ in 0..before_last {
            let reply = self.read_reply(Stage::EndOfData, self.timeouts.data_end)?;
            if reply.code == 421 {
                return Err(self.refused(Stage::EndOfData, reply));
            }
            if reply.code != 250 && first_error.is_none() {
                first_error = Some(reply);
            }
        }
        // The last chunk's reply is the message's (one per recipient under LMTP), unless
        // no transaction stands: then it is one refusal.
        let ended = if !chunked.ended {
            Err(first_error.unwrap_or_else(|| Reply {
                code: 503,
                enhanced: None,
                lines: vec!["no transaction".into()],
            }))
        } else if no_transaction || first_error.is_some() {
            let reply = self.read_reply(Stage::EndOfData, self.timeouts.data_end)?;
            if reply.code == 421 {
                return Err(self.refused(Stage::EndOfData, reply));
            }
            Err(first_error.unwrap_or(reply))
        } else {
            Ok(self.end_of_data(&mut recipients))
        };
        // Every reply here is read in turn, none checked for being in step before it
        // (the whole transaction left at once): a stray one shifts them all, and the
        // message's own reply is then the one left over (RFC 2920 §3.1: one reply
        // per command, in order).
        let mut unasked = self.unasked_reply(quit);
        if quit {
            unasked = unasked.or(self.after_quit());
        }
        if let (Ok(_), Some(extra)) = (&ended, unasked) {
            self.dead = true;
            return Err(Error::Protocol {
                stage: Stage::EndOfData,
                detail: format!(
                    "the server sent more replies than it was sent commands; the one left \
                     over: {extra}"
                ),
            });
        }
        if let Some(e) = mail_error {
            return Err(e);
        }
        if !recipients.iter().any(|r| r.accepted) && ended.is_err() {
            return Err(Error::NoRecipients {
                refused: recipients,
            });
        }
        match ended {
            Ok(reply) => Ok(Receipt {
                recipients,
                reply: reply?,
            }),
            // A 2xx other than 250 to a chunk is no refusal, but out of step all the same.
            Err(reply) => Err(match reply.code {
                400..=599 => self.refused(Stage::EndOfData, reply),
                _ => self.unexpected(Stage::EndOfData, reply, "250"),
            }),
        }
    }

    /// The reply to the end of the message. Under LMTP (RFC 2033 §4.2) there is one
    /// per accepted recipient, in RCPT order, and each recipient's result becomes that
    /// reply; if none took the message, the error lists them all.
    pub(crate) fn end_of_data(
        &mut self,
        recipients: &mut [RecipientResult],
    ) -> Result<Reply, Error> {
        if !self.lmtp {
            let reply = self.read_reply(Stage::EndOfData, self.timeouts.data_end)?;
            return self.expect(Stage::EndOfData, reply, &[250], "250");
        }
        let due: Vec<usize> = (0..recipients.len())
            .filter(|&i| recipients[i].accepted)
            .collect();
        let mut first_ok = None;
        for (k, &i) in due.iter().enumerate() {
            let reply = match self.read_reply(Stage::EndOfData, self.timeouts.data_end) {
                Ok(reply) if reply.code == 421 => Err(self.refused(Stage::EndOfData, reply)),
                read => read,
            };
            let reply = match reply {
                Ok(reply) => reply,
                // Nobody has had a reply yet: nobody has the message.
                Err(cause) if k == 0 => return Err(cause),
                Err(cause) => return Err(cut_short(recipients, i, cause)),
            };
            let r = &mut recipients[i];
            r.accepted = reply.code == 250;
            r.stage = Stage::EndOfData;
            if r.accepted && first_ok.is_none() {
                first_ok = Some(reply.clone());
            }
            r.reply = reply;
            if let Some(seen) = self
                .record
                .recipients
                .iter_mut()
                .find(|s| s.recipient == r.recipient)
            {
                *seen = r.clone();
            }
        }
        first_ok.ok_or_else(|| Error::RefusedAfterData {
            refused: recipients.to_vec(),
        })
    }

    /// The replies to a pipelined MAIL and its RCPTs, in order: the MAIL refusal if
    /// there was one (the RCPT replies are read all the same, to stay in step), and
    /// each recipient's result. A 421, a broken connection or garbage end it all.
    pub(super) fn envelope_replies(
        &mut self,
        envelope: &Envelope,
    ) -> Result<(Option<Error>, Vec<RecipientResult>), Error> {
        let reply = self.read_reply(Stage::MailFrom, self.timeouts.mail)?;
        let mail_error = match reply.code {
            250 => None,
            421 => return Err(self.refused(Stage::MailFrom, reply)),
            _ => Some(
                self.expect(Stage::MailFrom, reply, &[250], "250")
                    .err()
                    .unwrap_or(Error::Usage("MAIL FROM".into())),
            ),
        };
        let mut recipients = Vec::with_capacity(envelope.to.len());
        for to in &envelope.to {
            recipients.push(self.rcpt_reply(to)?);
        }
        Ok((mail_error, recipients))
    }

    /// The reply to one RCPT: 250 or 251 accept the recipient; any other 4xx or 5xx
    /// refuses this one recipient and the session goes on. A 421, a broken connection
    /// or garbage end the session.
    fn rcpt_reply(&mut self, to: &Address) -> Result<RecipientResult, Error> {
        let reply = self.read_reply(Stage::RcptTo, self.timeouts.rcpt)?;
        let accepted = match reply.code {
            250 | 251 => true,
            421 => return Err(self.refused(Stage::RcptTo, reply)),
            400..=599 => false,
            _ => return Err(self.unexpected(Stage::RcptTo, reply, "250 or 251")),
        };
        let result = RecipientResult {
            recipient: to.clone(),
            reply,
            accepted,
            stage: Stage::RcptTo,
        };
        self.record.recipients.push(result.clone());
        Ok(result)
    }
}

/// The error for LMTP replies after the data that stopped (a 421, a timeout, a
/// close) before the reply for `recipients[from]`: the recipients from there on that
/// were accepted at RCPT had no answer; every other one has its verdict.
fn cut_short(recipients: &[RecipientResult], from: usize, cause: Error) -> Error {
    let (unanswered, answered): (Vec<_>, Vec<_>) = recipients
        .iter()
        .enumerate()
        .partition(|&(i, r)| i >= from && r.accepted);
    Error::CutShortAfterData {
        answered: answered.into_iter().map(|(_, r)| r.clone()).collect(),
        unanswered: unanswered
            .into_iter()
            .map(|(_, r)| r.recipient.clone())
            .collect(),
        cause: Box::new(cause),
    }
}
