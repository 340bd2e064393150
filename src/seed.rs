//! The seed commands of the tester face: VRFY, EXPN, ETRN, NOOP, RSET and a typed
//! line, each sent once after EHLO (and TLS and AUTH as configured). Here is what is
//! pure about them: the command each makes of its words (checked before anything is
//! connected), which replies it expects, the exit code of any other, and whether the
//! reply leaves the session in step for a QUIT.

use crate::error::{Error, Stage};
use crate::exit;
use crate::report::{self, Report};
use crate::smtp::command::{Command, CommandError, MAX_COMMAND_LINE};
use crate::smtp::reply::Reply;

/// RFC 1035 §2.3.4: a label is at most 63 octets, a name at most 255 (253 written
/// out without the root's dot).
const MAX_LABEL: usize = 63;
const MAX_DOMAIN: usize = 253;

/// One of the seed commands, named as on outbox's command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seed {
    /// `outbox vrfy ADDR`: `VRFY` (RFC 5321 §4.1.1.6).
    Vrfy,
    /// `outbox expn LIST`: `EXPN` (RFC 5321 §4.1.1.7).
    Expn,
    /// `outbox etrn DOMAIN|@DOMAIN|#QUEUE`: `ETRN` (RFC 1985).
    Etrn,
    /// `outbox noop`: `NOOP` (RFC 5321 §4.1.1.9).
    Noop,
    /// `outbox rset`: `RSET` (RFC 5321 §4.1.1.5).
    Rset,
    /// `outbox command LINE`: one line as typed.
    Line,
}

impl Seed {
    pub const ALL: [Seed; 6] = [
        Seed::Vrfy,
        Seed::Expn,
        Seed::Etrn,
        Seed::Noop,
        Seed::Rset,
        Seed::Line,
    ];

    /// The seed a word of outbox's command line names (`vrfy`, ..., `command`).
    pub fn from_name(name: &str) -> Option<Seed> {
        Seed::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Its name on outbox's command line.
    pub fn name(self) -> &'static str {
        match self {
            Seed::Vrfy => "vrfy",
            Seed::Expn => "expn",
            Seed::Etrn => "etrn",
            Seed::Noop => "noop",
            Seed::Rset => "rset",
            Seed::Line => "command",
        }
    }

    /// The command for the words after the seed's name, checked as it will go: one
    /// line, at most 512 octets with its CRLF (RFC 5321 §4.5.3.1.4). A typed line's
    /// words are joined by one space. Any fault is a usage error, found before
    /// anything is connected.
    pub fn command(self, words: &[String]) -> Result<Command, Error> {
        let usage = |e: CommandError| {
            Error::Usage(match e {
                CommandError::TooLong { .. } => format!(
                    "{e}: RFC 5321 §4.5.3.1.4 allows {MAX_COMMAND_LINE} octets, CRLF included"
                ),
                CommandError::ForbiddenChar { .. } => {
                    format!("{e}: one line is one command, and nothing may end it early")
                }
                _ => e.to_string(),
            })
        };
        let one = || match words {
            [word] => Ok(word.as_str()),
            _ => Err(Error::Usage(format!(
                "{} takes one argument (quote one with spaces), not {}",
                self.name(),
                words.len()
            ))),
        };
        match self {
            Seed::Vrfy => Command::vrfy(one()?).map_err(usage),
            Seed::Expn => Command::expn(one()?).map_err(usage),
            Seed::Etrn => {
                let node = one()?;
                let cmd = Command::etrn(node).map_err(usage)?;
                etrn_node(node).map_err(|why| Error::Usage(format!("etrn {node:?}: {why}")))?;
                Ok(cmd)
            }
            Seed::Noop | Seed::Rset if !words.is_empty() => Err(Error::Usage(format!(
                "{} takes no argument (outbox command '{} ...' sends one)",
                self.name(),
                self.name().to_uppercase()
            ))),
            Seed::Noop => Ok(Command::Noop),
            Seed::Rset => Ok(Command::Rset),
            Seed::Line if words.is_empty() => Err(Error::Usage(
                "command takes the line to send, as in outbox command 'HELP MAIL'".into(),
            )),
            Seed::Line => {
                let line = words.join(" ");
                let cmd = Command::line(&line).map_err(usage)?;
                refuse_data_that_must_follow(&line)?;
                if carries_secret(&cmd) {
                    // Other users see a command line (ps, /proc): a secret has no place
                    // there, and outbox takes none from it.
                    return Err(Error::Usage(
                        "an AUTH line with its response would put a secret on outbox's                          command line, where other users of this machine can read it: use                          outbox session (auth MECHANISM USER asks for the password), or                          --user with --password-command"
                            .into(),
                    ));
                }
                Ok(cmd)
            }
        }
    }
}

/// Checks an ETRN node (RFC 1985 §3): a domain, `@domain` for it and its
/// subdomains, or `#queue`, a queue's name.
pub fn etrn_node(node: &str) -> Result<(), String> {
    if let Some(queue) = node.strip_prefix('#') {
        return match queue {
            "" => Err("a queue's name follows the #".into()),
            q if q.chars().all(|c| c.is_ascii_graphic()) => Ok(()),
            _ => Err("a queue's name is printable ASCII, without spaces".into()),
        };
    }
    let domain = node.strip_prefix('@').unwrap_or(node);
    if !domain.is_ascii() {
        return Err(
            "an internationalised domain goes in its ASCII form (xn--..., RFC 5890)".into(),
        );
    }
    if domain.is_empty() || domain.len() > MAX_DOMAIN {
        return Err(format!("not a domain (1 to {MAX_DOMAIN} characters)"));
    }
    for label in domain.split('.') {
        let ok = (1..=MAX_LABEL).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "not a domain: {label:?} is not a label (letters, digits and inner hyphens, \
                 at most {MAX_LABEL})"
            ));
        }
    }
    Ok(())
}

/// A typed `BDAT` with a chunk size: the server would take the next bytes (our QUIT
/// among them) as the chunk, and answer only once it had them all (RFC 3030 §2).
fn refuse_data_that_must_follow(line: &str) -> Result<(), Error> {
    let mut words = line.split_whitespace();
    let (Some(verb), Some(size)) = (words.next(), words.next()) else {
        return Ok(());
    };
    if verb.eq_ignore_ascii_case("BDAT") && size.parse::<u64>().is_ok_and(|n| n > 0) {
        return Err(Error::Usage(format!(
            "{line:?} announces {size} octets that would have to follow the \
             line; only BDAT 0 can be sent this way"
        )));
    }
    Ok(())
}

/// The verb of a typed line, in capitals; the verb of any other command.
fn verb_of(cmd: &Command) -> String {
    match cmd {
        Command::Line(line) => line
            .as_str()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase(),
        other => other.verb().to_owned(),
    }
}

/// The replies `cmd` expects, as said in an error: RFC 5321 §4.3.2 for VRFY, EXPN,
/// NOOP and RSET, RFC 1985 §5 for ETRN; any 2xx or 3xx for a typed line, whose verb
/// may be anything.
fn expected(cmd: &Command) -> (fn(u16) -> bool, &'static str) {
    match cmd {
        Command::Vrfy(_) => (|c| matches!(c, 250..=252), "250, 251 or 252"),
        Command::Expn(_) => (|c| matches!(c, 250 | 252), "250 or 252"),
        Command::Etrn(_) => (|c| matches!(c, 250..=253), "250, 251, 252 or 253"),
        Command::Help(_) => (|c| matches!(c, 211 | 214), "211 or 214"),
        Command::Line(_) => (|c| (200..400).contains(&c), "2xx or 3xx"),
        _ => (|c| c == 250, "250"),
    }
}

/// What a reply says of the command that had it.
#[derive(Debug)]
pub struct Verdict {
    /// The exit code: 0 if the reply is one the command expects.
    pub code: u8,
    /// Why not, if not: the server's refusal, or an answer the command has no use for.
    pub error: Option<Error>,
}

/// Judges `reply` to `cmd`. A reply the command expects is 0; a 4xx is 75; a 550, 551
/// or 553 to VRFY or EXPN (typed or not) is 67, the address being what is wrong (RFC
/// 5321 §3.5.3, §4.2.3); any other 5xx is 69, "not implemented" (500, 502, 504)
/// among them; a code that is neither expected nor a refusal is 76.
pub fn judge(cmd: &Command, reply: &Reply) -> Verdict {
    let (accepts, shown) = expected(cmd);
    if accepts(reply.code) {
        return Verdict {
            code: exit::OK,
            error: None,
        };
    }
    let nouser = matches!(verb_of(cmd).as_str(), "VRFY" | "EXPN");
    let error = match reply.code {
        400..=599 => Error::Refused {
            stage: Stage::Command,
            reply: reply.clone(),
        },
        _ => Error::Unexpected {
            stage: Stage::Command,
            expected: shown,
            reply: reply.clone(),
        },
    };
    let code = match reply.code {
        550 | 551 | 553 if nouser => exit::NOUSER,
        _ => exit::code(&error),
    };
    Verdict {
        code,
        error: Some(error),
    }
}

/// The replies `cmd` expects, for saying so.
pub fn expected_text(cmd: &Command) -> &'static str {
    expected(cmd).1
}

/// How the session ends after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// In step: QUIT.
    Quit,
    /// A 334: the server waits for a SASL response. `*` cancels the exchange (RFC
    /// 4954 §4), then QUIT.
    CancelAuth,
    /// The server no longer reads commands: close without QUIT, for the reason given.
    HangUp(&'static str),
}

impl After {
    /// The key `--json` gives it.
    pub fn key(self) -> &'static str {
        match self {
            After::Quit => "quit",
            After::CancelAuth => "auth_cancelled",
            After::HangUp(_) => "closed",
        }
    }
}

/// How the session ends after `reply` to `cmd`: judged by the reply's code, whatever
/// the verb, as the server's state follows what it answered.
pub fn after(cmd: &Command, reply: &Reply) -> After {
    match reply.code {
        // RFC 5321 §4.1.1.4: every line up to <CRLF>.<CRLF> is message text; closing
        // before the dot makes the server drop the unfinished message.
        354 => After::HangUp(
            "after 354 the server takes every line as message text; \
             it drops the unfinished message",
        ),
        334 => After::CancelAuth,
        // RFC 3207 §4: after 220 the next bytes are the TLS handshake.
        220 => After::HangUp("after 220 the server waits for the TLS handshake"),
        // RFC 5321 §4.2.2: 221 closes the channel.
        221 => After::HangUp("the server has said goodbye (221)"),
        // RFC 5321 Appendix F.1, RFC 2645: after 250 to TURN or ATRN the roles are
        // reversed, and the server becomes the client.
        250 if matches!(verb_of(cmd).as_str(), "TURN" | "ATRN") => {
            After::HangUp("after 250 to TURN the server would act as the client")
        }
        _ => After::Quit,
    }
}

/// Whether `cmd` is a typed line that carries a secret (an AUTH initial response):
/// it was on outbox's command line, where other users can see it.
pub fn carries_secret(cmd: &Command) -> bool {
    matches!(cmd, Command::Line(line) if cmd.shown() != line.as_str())
}

/// A seed's session as one JSON object: what [`report::json_session`] says of the
/// server, TLS, AUTH, the extensions, timings and the error, with the command as
/// shown (a secret redacted), the reply, and how the session ended; each null where
/// the run did not get so far.
pub fn json(
    session: &Report,
    cmd: Option<&Command>,
    reply: Option<&Reply>,
    ended: Option<After>,
    error: Option<&Error>,
    exit_code: u8,
) -> serde_json::Value {
    let base = report::json_session(session, error, exit_code);
    let serde_json::Value::Object(fields) = base else {
        return base;
    };
    let mut out = serde_json::Map::new();
    for (key, value) in fields {
        let after_server = key == "server";
        out.insert(key, value);
        if after_server {
            out.insert(
                "command".into(),
                cmd.map_or(serde_json::Value::Null, |c| c.shown().into()),
            );
            out.insert(
                "reply".into(),
                reply.map_or(serde_json::Value::Null, report::reply_json),
            );
            out.insert(
                "ended".into(),
                ended.map_or(serde_json::Value::Null, |a| a.key().into()),
            );
        }
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
#[path = "seed_tests.rs"]
mod tests;
