//! What a session did, stage by stage, for `--json`: the server, TLS, the extensions
//! used, each recipient's reply, the queue id the server gave, and how long each
//! stage took. The session keeps a [`Record`] of what it did; the client joins it to
//! what it did before (connecting, TLS) in a [`Report`], and [`json`] turns that, with
//! the result, into one JSON object.

use std::time::Duration;

use serde::Serialize;

use crate::error::Error;
use crate::smtp::receipt::Receipt;
pub use crate::smtp::record::{Phase, Record, Timeline};
use crate::smtp::reply::{Reply, sanitize};
use crate::smtp::stage::QuitAfter;
use crate::smtp::tls::TlsInfo;

/// How TLS came to be on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsStart {
    Implicit,
    StartTls,
}

/// What the client did (connecting, TLS) and what the session did, for `--json`.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The server as configured (`host:port`).
    pub server: Option<String>,
    /// The address actually connected to.
    pub peer: Option<String>,
    pub tls: Option<(TlsStart, TlsInfo)>,
    /// The phases before the session: connecting, and implicit TLS ([`Report::spent`]
    /// gives these and the session's together).
    pub connecting: Timeline,
    /// What the session recorded: greeting, EHLO, AUTH, the last transaction.
    pub session: Record,
    /// From before connecting to after QUIT.
    pub total: Option<Duration>,
}

impl Report {
    pub fn for_server(server: impl ToString) -> Report {
        Report {
            server: Some(server.to_string()),
            ..Report::default()
        }
    }

    /// The extensions used: STARTTLS and AUTH for the session, then those of the
    /// transaction.
    pub fn extensions_used(&self) -> Vec<&'static str> {
        let mut used = Vec::new();
        if matches!(self.tls, Some((TlsStart::StartTls, _))) {
            used.push("STARTTLS");
        }
        if self.session.auth.is_some() {
            used.push("AUTH");
        }
        used.extend(self.session.used.iter().copied());
        used
    }

    /// Each phase that ran, the client's and then the session's, with its time.
    pub fn spent(&self) -> Vec<(Phase, Duration)> {
        let mut all = self.connecting.clone();
        for (phase, took) in self.session.timeline.spent() {
            all.add(phase, took);
        }
        all.spent()
    }
}

/// The queue id in the reply to the end of a message, where the server names one:
/// Postfix's `Ok: queued as 4Xyz`, Exim's `OK id=1tAbCd-000123-Ab`, Sendmail's and
/// OpenSMTPD's `<id> Message accepted for delivery`, Exchange's `[InternalId=...]`,
/// Gmail's `OK <time> <id> - gsmtp`, and `queued as`/`id=` wherever else they appear.
pub fn queue_id(reply: &Reply) -> Option<String> {
    if !(200..300).contains(&reply.code) {
        return None;
    }
    let text = reply.lines.join(" ");
    let words: Vec<&str> = text.split_whitespace().collect();
    // The enhanced code, if any, is not part of the text proper.
    let words = match (reply.enhanced, words.first()) {
        (Some(code), Some(first)) if *first == code.to_string() => &words[1..],
        _ => &words[..],
    };
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let at = |i: usize| lower.get(i).map(String::as_str);
    // "queued as ID"
    if let Some(i) = (0..lower.len()).find(|&i| at(i) == Some("queued") && at(i + 1) == Some("as"))
    {
        return words.get(i + 2).and_then(|w| token(w));
    }
    // "[InternalId=ID," (Exchange); "id=ID" (Exim)
    for w in words {
        let bare = w.trim_start_matches('[');
        if let Some((key, value)) = bare.split_once('=')
            && (key.eq_ignore_ascii_case("id") || key.eq_ignore_ascii_case("internalid"))
        {
            return token(value);
        }
    }
    // "ID Message accepted for delivery" (Sendmail, OpenSMTPD)
    if let Some(i) =
        (1..lower.len()).find(|&i| at(i) == Some("message") && at(i + 1) == Some("accepted"))
    {
        return token(words[i - 1]);
    }
    // "OK 1700000000 ID - gsmtp" (Gmail)
    if lower.last().map(String::as_str) == Some("gsmtp") && words.len() >= 3 {
        return token(words[words.len() - 3]);
    }
    None
}

/// `word` without surrounding punctuation, if what is left looks like an id: letters,
/// digits, `.`, `-`, `_`, at most 64 of them.
fn token(word: &str) -> Option<String> {
    let word = word
        .trim_matches(|c: char| matches!(c, '(' | ')' | '[' | ']' | '<' | '>' | ',' | ';' | ':'));
    let word = word.strip_suffix('.').unwrap_or(word);
    let ok = !word.is_empty()
        && word.len() <= 64
        && word.chars().any(|c| c.is_ascii_alphanumeric())
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    ok.then(|| word.to_owned())
}

/// One reply as JSON: the code, the enhanced code, the text without either, and the
/// lines as sent after the code. Server text is sanitised as everywhere else.
#[derive(Serialize)]
struct ReplyJson {
    code: u16,
    enhanced: Option<String>,
    text: String,
    lines: Vec<String>,
}

impl ReplyJson {
    fn of(reply: &Reply) -> ReplyJson {
        ReplyJson {
            code: reply.code,
            enhanced: reply.enhanced.map(|e| e.to_string()),
            text: text(reply),
            lines: reply.lines.iter().map(|l| sanitize(l)).collect(),
        }
    }
}

/// The text of a reply, its lines joined by newlines, each without the enhanced code.
fn text(reply: &Reply) -> String {
    let code = reply.enhanced.map(|e| e.to_string());
    reply
        .lines
        .iter()
        .map(|l| {
            let l = match &code {
                Some(code) => l
                    .strip_prefix(code.as_str())
                    .filter(|rest| rest.is_empty() || rest.starts_with(' '))
                    .map_or(l.as_str(), str::trim_start),
                None => l.as_str(),
            };
            sanitize(l)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Serialize)]
struct RecipientJson {
    address: String,
    accepted: bool,
    code: u16,
    enhanced: Option<String>,
    text: String,
}

#[derive(Serialize)]
struct ServerJson {
    address: Option<String>,
    peer: Option<String>,
    name: Option<String>,
    greeting: Option<String>,
}

#[derive(Serialize)]
struct TlsJson {
    /// "implicit" or "starttls".
    started: &'static str,
    version: String,
    cipher: String,
    subject: String,
    issuer: String,
    not_after: String,
}

#[derive(Serialize)]
struct ExtensionsJson {
    offered: Vec<String>,
    used: Vec<&'static str>,
}

#[derive(Serialize)]
struct MessageJson {
    bytes: u64,
    lines: u64,
}

#[derive(Serialize)]
struct ErrorJson {
    message: String,
    /// Where it happened ("rcpt_to", "end_of_data", ...), when in the session.
    stage: Option<&'static str>,
    exit_code: u8,
    /// The server's reply, when the error is one.
    reply: Option<ReplyJson>,
}

#[derive(Serialize)]
struct Json {
    ok: bool,
    exit_code: u8,
    server: ServerJson,
    tls: Option<TlsJson>,
    auth: Option<String>,
    extensions: ExtensionsJson,
    message: Option<MessageJson>,
    recipients: Vec<RecipientJson>,
    /// The reply to the end of the message.
    reply: Option<ReplyJson>,
    queue_id: Option<String>,
    /// Milliseconds per stage, in the order begun, and `total`.
    timings_ms: serde_json::Map<String, serde_json::Value>,
    error: Option<ErrorJson>,
}

/// Milliseconds, to the microsecond, as every `--json` gives times.
pub(crate) fn millis(d: Duration) -> serde_json::Value {
    // Microsecond precision is plenty, and keeps the numbers short.
    let ms = (d.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    serde_json::Number::from_f64(ms).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// The session in `report`, with its `result` and the process's `exit_code`, as one
/// JSON object.
pub fn json(report: &Report, result: &Result<Receipt, Error>, exit_code: u8) -> serde_json::Value {
    let (receipt, error) = match result {
        Ok(receipt) => (Some(receipt), None),
        Err(e) => (None, Some(e)),
    };
    json_of(
        report,
        receipt,
        error.map(|e| error_json(e, exit_code)),
        exit_code,
    )
}

/// A session that stopped where `--quit-after` asked, as JSON: as [`json`] for a
/// message, with `stopped_after` (the stage) where it got there, and no reply to a
/// message that was never sent.
pub fn json_rehearsal(
    report: &Report,
    stopped_after: Result<QuitAfter, &Error>,
    exit_code: u8,
) -> serde_json::Value {
    let error = stopped_after.err().map(|e| error_json(e, exit_code));
    let mut json = json_of(report, None, error, exit_code);
    if let (Ok(stage), Some(map)) = (stopped_after, json.as_object_mut()) {
        map.insert("stopped_after".into(), stage.key().into());
    }
    json
}

/// An error that came before any session (a bad flag, an unreadable file), as JSON.
pub fn json_error(
    report: &Report,
    message: String,
    error: Option<&Error>,
    exit_code: u8,
) -> serde_json::Value {
    let e = match error {
        Some(e) => error_json(e, exit_code),
        None => ErrorJson {
            message,
            stage: None,
            exit_code,
            reply: None,
        },
    };
    json_of(report, None, Some(e), exit_code)
}

/// The session in `report` where no message was sent (the tester face's commands):
/// the fields of [`json`] but those of a message (its size, recipients, the reply to
/// its end, the queue id), and `error` if any.
pub fn json_session(report: &Report, error: Option<&Error>, exit_code: u8) -> serde_json::Value {
    let mut json = json_of(
        report,
        None,
        error.map(|e| error_json(e, exit_code)),
        exit_code,
    );
    if let Some(fields) = json.as_object_mut() {
        for key in ["message", "recipients", "reply", "queue_id"] {
            fields.shift_remove(key);
        }
    }
    json
}

/// One reply as JSON, as in [`json`]: its code, enhanced code, text and lines.
pub fn reply_json(reply: &Reply) -> serde_json::Value {
    serde_json::to_value(ReplyJson::of(reply)).unwrap_or(serde_json::Value::Null)
}

fn error_json(e: &Error, exit_code: u8) -> ErrorJson {
    ErrorJson {
        message: e.to_string(),
        stage: e.stage().map(|s| s.key()),
        exit_code,
        reply: e.reply().map(ReplyJson::of),
    }
}

fn json_of(
    report: &Report,
    receipt: Option<&Receipt>,
    error: Option<ErrorJson>,
    exit_code: u8,
) -> serde_json::Value {
    let recipients = match receipt {
        Some(r) => &r.recipients,
        None => &report.session.recipients,
    };
    let mut timings = serde_json::Map::new();
    for (phase, took) in report.spent() {
        timings.insert(phase.key().into(), millis(took));
    }
    if let Some(total) = report.total {
        timings.insert("total".into(), millis(total));
    }
    let json = Json {
        ok: error.is_none(),
        exit_code,
        server: ServerJson {
            address: report.server.clone(),
            peer: report.peer.clone(),
            name: report.session.server_name.as_deref().map(sanitize),
            greeting: report.session.greeting.as_deref().map(sanitize),
        },
        tls: report.tls.as_ref().map(|(how, info)| TlsJson {
            started: match how {
                TlsStart::Implicit => "implicit",
                TlsStart::StartTls => "starttls",
            },
            version: info.version.clone(),
            cipher: info.cipher.clone(),
            subject: info.subject.clone(),
            issuer: info.issuer.clone(),
            not_after: info.not_after.clone(),
        }),
        auth: report.session.auth.clone(),
        extensions: ExtensionsJson {
            offered: report.session.offered.iter().map(|k| sanitize(k)).collect(),
            used: report.extensions_used(),
        },
        message: report
            .session
            .message
            .map(|(bytes, lines)| MessageJson { bytes, lines }),
        recipients: recipients
            .iter()
            .map(|r| RecipientJson {
                address: r.recipient.to_string(),
                accepted: r.accepted,
                code: r.reply.code,
                enhanced: r.reply.enhanced.map(|e| e.to_string()),
                text: text(&r.reply),
            })
            .collect(),
        reply: receipt.map(|r| ReplyJson::of(&r.reply)),
        queue_id: receipt.and_then(|r| queue_id(&r.reply)),
        timings_ms: timings,
        error,
    };
    serde_json::to_value(json).unwrap_or_else(|e| serde_json::json!({ "ok": false, "exit_code": exit_code, "error": { "message": e.to_string() } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stage;
    use crate::smtp::reply::parse_reply;

    fn reply(text: &str) -> Reply {
        let wire = format!("{}\r\n", text.replace('\n', "\r\n"));
        parse_reply(wire.as_bytes()).unwrap().unwrap().0
    }

    fn id(text: &str) -> Option<String> {
        queue_id(&reply(text))
    }

    #[test]
    fn postfix() {
        assert_eq!(
            id("250 2.0.0 Ok: queued as 4bX9Yz1Qv2z9tkR").as_deref(),
            Some("4bX9Yz1Qv2z9tkR")
        );
        assert_eq!(
            id("250 2.0.0 Ok: queued as 3A1B2C4D5E").as_deref(),
            Some("3A1B2C4D5E")
        );
        // Without ENHANCEDSTATUSCODES, and smtp-sink's wording.
        assert_eq!(
            id("250 Ok: queued as ABCDEF0123").as_deref(),
            Some("ABCDEF0123")
        );
    }

    #[test]
    fn exim() {
        assert_eq!(
            id("250 OK id=1tAbCd-000123-Ab").as_deref(),
            Some("1tAbCd-000123-Ab")
        );
        assert_eq!(
            id("250 OK id=1tAbCd-00000000123-AbCd").as_deref(),
            Some("1tAbCd-00000000123-AbCd")
        );
    }

    #[test]
    fn sendmail_and_opensmtpd() {
        assert_eq!(
            id("250 2.0.0 5A1B2C3D012345 Message accepted for delivery").as_deref(),
            Some("5A1B2C3D012345")
        );
        assert_eq!(
            id("250 2.0.0 3f1c2b7a Message accepted for delivery").as_deref(),
            Some("3f1c2b7a")
        );
    }

    #[test]
    fn exchange() {
        assert_eq!(
            id(
                "250 2.6.0 <CAF=x1@mail.example.com> [InternalId=38903163207681, \
                Hostname=EX01.example.com] Queued mail for delivery"
            )
            .as_deref(),
            Some("38903163207681")
        );
        assert_eq!(
            id("250 2.6.0 <a@b> [InternalId=1086, Hostname=AM0PR01MB1234.eurprd01.prod.exchangelabs.com] \
                13288 bytes in 0.123, 105.5 KB/sec Queued mail for delivery")
            .as_deref(),
            Some("1086")
        );
    }

    #[test]
    fn gmail() {
        assert_eq!(
            id("250 2.0.0 OK  1700000000 a640c23a62f3a-a9a1b2c3d4e5f.123 - gsmtp").as_deref(),
            Some("a640c23a62f3a-a9a1b2c3d4e5f.123")
        );
    }

    #[test]
    fn none() {
        assert_eq!(id("250 OK"), None);
        assert_eq!(id("250 2.0.0 Ok"), None);
        assert_eq!(id("250 2.6.0 <a@b> Queued mail for delivery"), None);
        assert_eq!(id("250 Message accepted"), None);
        // Not a success: no id, whatever the text says.
        assert_eq!(id("451 4.3.0 queued as nothing"), None);
        // Odd characters are not an id.
        assert_eq!(id("250 Ok: queued as \u{1b}[31mX"), None);
    }

    #[test]
    fn text_drops_the_enhanced_code() {
        let r = reply("550-5.1.1 <x@example.test>: no such user\n550 5.1.1 see docs");
        assert_eq!(text(&r), "<x@example.test>: no such user\nsee docs");
        assert_eq!(text(&reply("250 ok")), "ok");
    }

    #[test]
    fn a_refusal_shows_code_enhanced_code_and_stage() {
        let mut report = Report::for_server("mx.example.test:25");
        report
            .connecting
            .add(Phase::Connect, Duration::from_micros(1500));
        let err = Error::Refused {
            stage: Stage::EndOfData,
            reply: reply("554 5.7.1 rejected: spam"),
        };
        let code = crate::exit::code(&err);
        let v = json(&report, &Err(err), code);
        assert_eq!(v["ok"], false);
        assert_eq!(v["exit_code"], 69);
        assert_eq!(v["server"]["address"], "mx.example.test:25");
        assert_eq!(v["timings_ms"]["connect"], 1.5);
        assert_eq!(v["error"]["stage"], "end_of_data");
        assert_eq!(v["error"]["reply"]["code"], 554);
        assert_eq!(v["error"]["reply"]["enhanced"], "5.7.1");
        assert_eq!(v["error"]["reply"]["lines"][0], "5.7.1 rejected: spam");
        assert!(v["error"]["message"].as_str().unwrap().contains("5.7.1"));
        assert_eq!(v["queue_id"], serde_json::Value::Null);
    }
}
