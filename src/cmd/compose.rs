//! The compose face: a message from flags and a body, sent (or shown) at once.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::time::SystemTime;

use outbox::cli::Cli;
use outbox::compose::{self, Attachment, Draft};
use outbox::envelope::{Envelope, Mailbox};
use outbox::error::{self, Error};
use outbox::mode::Mode;
use outbox::outcome::Outcome;
use outbox::smtp::command::Command;
use outbox::smtp::data::DotWriter;
use outbox::smtp::session::envelope_commands;
use outbox::{Message, Report, Settings, exit, settings};

use super::mta::{Attempt, LogDefault, Mta};
use super::output::say;

/// The compose face: build the message from flags and body, then send it (or show it).
/// With `--json`, standard output gets one JSON object whatever happens.
pub fn run(cli: &Cli) -> anyhow::Result<u8> {
    let result = compose_and_send(cli);
    if cli.json
        && let Err(e) = &result
    {
        // A failure before any session: the JSON says only the error.
        let err = e.downcast_ref::<Error>();
        let code = err.map_or(exit::SOFTWARE, exit::code);
        let json = outbox::report::json_error(&Report::default(), e.to_string(), err, code);
        super::print_json(&json);
    }
    result
}

/// Everything but the JSON of an early failure. Once a session has begun, its
/// failures are said here and the exit code returned, so that `run` does not speak
/// of them again.
fn compose_and_send(cli: &Cli) -> anyhow::Result<u8> {
    // Only `--queue` asks for what the system spool gives: without it the compose
    // face is a client, and says what the server answered, now.
    let mode = cli.queue.then(Mode::detect).transpose()?;
    if let (true, Some(mode)) = (cli.verbose, &mode) {
        say!("* {}", mode.describe());
    }
    let system = match mode {
        Some(Mode::System { spool, .. }) => Some(spool),
        _ => None,
    };
    let config = match system {
        Some(_) => None,
        None => super::load_config()?,
    };
    let settings = Settings::resolve(cli, config.as_ref())?;
    let (draft, envelope) = draft_and_envelope(cli, &settings)?;
    let message = compose::build(&draft, &settings::fqdn())?;
    if cli.dry_run {
        dry_run(&settings, &envelope, &message)?;
        return Ok(exit::OK);
    }
    if let Some(spool) = &system {
        let bytes = message.to_vec().map_err(|source| Error::LocalIo {
            context: "cannot read the message's attachments".into(),
            source,
        })?;
        return super::handoff::hand_off(spool, &settings, envelope, &bytes);
    }
    let show = super::Show {
        json: cli.json,
        progress: true,
    };
    // A client: it logs only where the configuration says.
    let mta = Mta::new(&settings, LogDefault::Nowhere);
    if settings.queue {
        let handling = super::Handling {
            keep: super::Keep::Say,
            show,
            refusals: super::Refusals::Report,
        };
        return super::deliver_or_keep(&settings, &mta, &envelope, &message, handling);
    }
    super::warn_about_tls(&settings);
    if settings.quit_after.is_some() {
        return Ok(super::rehearse::run(
            &settings, &envelope, &message, cli.json,
        ));
    }
    let arrival = SystemTime::now();
    let (result, report) = super::submit(&settings, &envelope, &message, show);
    let attempt = Attempt::new(
        &outbox::queue::new_id(arrival),
        &envelope,
        &settings,
        &report,
        message.len(),
        arrival,
    );
    let outcome = Outcome::of(&envelope, &result);
    mta.log_outcome(&attempt, &outcome, Some(super::NO_BOUNCE));
    let code = super::result_code(&result);
    if cli.json {
        super::print_json(&outbox::report::json(&report, &result, code));
    }
    let receipt = match result {
        Ok(receipt) => receipt,
        Err(e) => {
            say!("outbox: {e}");
            return Ok(code);
        }
    };
    let refused = receipt.refused();
    if !refused.is_empty() {
        say!(
            "outbox: {} of {} recipients refused; the message went to the others:\n{}",
            refused.len(),
            receipt.recipients.len(),
            error::list(&refused)
        );
    }
    if settings.verbose {
        let accepted = receipt.recipients.len() - refused.len();
        say!(
            "* accepted for {accepted} of {} recipients",
            receipt.recipients.len()
        );
    }
    Ok(code)
}

fn usage(e: impl std::fmt::Display) -> Error {
    Error::Usage(e.to_string())
}

fn mailboxes(values: &[String]) -> Result<Vec<Mailbox>, Error> {
    let mut out = Vec::new();
    for v in values {
        out.extend(Mailbox::parse_list(v).map_err(usage)?);
    }
    Ok(out)
}

/// The sender is `-f`, else the account's `from`, else `$USER@fqdn`; local names
/// among the recipients go through the aliases.
fn draft_and_envelope(cli: &Cli, settings: &Settings) -> Result<(Draft, Envelope), Error> {
    if let Some(word) = cli
        .recipients
        .iter()
        .find(|r| super::help::is_command_word(r.trim()))
    {
        return Err(super::help::not_a_recipient(word.trim()));
    }
    let to = mailboxes(&cli.recipients)?;
    let cc = mailboxes(&cli.cc)?;
    let bcc = mailboxes(&cli.bcc)?;
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(Error::Usage(
            "no recipient: name at least one (RECIPIENT, -c or -b)".into(),
        ));
    }
    // `-f '<>'`: the null reverse-path (RFC 5321 §4.5.5), as bounces and
    // auto-replies use; the header's From is then the one the account would give.
    let null_sender = cli.from.as_deref().is_some_and(|f| f.trim() == "<>");
    let given = cli
        .from
        .as_deref()
        .filter(|_| !null_sender)
        .map(Mailbox::parse)
        .transpose()
        .map_err(usage)?;
    let from = settings.sender(given)?;
    if let Some(subject) = &cli.subject
        && subject.chars().any(|c| c.is_control() && c != '\t')
    {
        return Err(Error::Usage(
            "the subject holds a control character (CR, LF, NUL...)".into(),
        ));
    }
    let reply_to = cli
        .reply_to
        .as_deref()
        .map(Mailbox::parse)
        .transpose()
        .map_err(usage)?;
    let headers = cli
        .headers
        .iter()
        .map(|h| compose::parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let attachments = cli
        .attach
        .iter()
        .map(|a| Attachment::parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    let html = match &cli.html {
        Some(path) => Some(std::fs::read(path).map_err(|source| Error::NoInput {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let text = read_body(cli)?;
    let envelope = Envelope::new(
        (!null_sender).then(|| from.address.clone()),
        super::expand_all(
            settings,
            to.iter().chain(&cc).chain(&bcc).map(|m| &m.address),
        ),
    );
    // The envelope takes bare names through the aliases; the header shows each with
    // the local domain, as the sendmail face writes cron's `To: root`.
    let qualified = |list: Vec<Mailbox>| -> Vec<Mailbox> {
        list.into_iter()
            .map(|m| Mailbox {
                name: m.name,
                address: settings.qualify(m.address),
            })
            .collect()
    };
    let draft = Draft {
        from: Some(from),
        to: qualified(to),
        cc: qualified(cc),
        reply_to: reply_to.map(|m| Mailbox {
            name: m.name,
            address: settings.qualify(m.address),
        }),
        subject: cli.subject.clone(),
        headers,
        text,
        html,
        attachments,
    };
    Ok((draft, envelope))
}

/// The body: `--body`, `--body-file`, or standard input. From a terminal, a line
/// holding only "." ends it, as in mail(1); from a pipe, everything up to the end.
fn read_body(cli: &Cli) -> Result<Vec<u8>, Error> {
    if let Some(body) = &cli.body {
        return Ok(body.clone().into_bytes());
    }
    if let Some(path) = &cli.body_file {
        return std::fs::read(path).map_err(|source| Error::NoInput {
            path: path.clone(),
            source,
        });
    }
    let stdin = io::stdin();
    let stdin_err = |source| Error::LocalIo {
        context: "cannot read the body from standard input".into(),
        source,
    };
    let mut body = Vec::new();
    // A rehearsal sends no message: a body is read where one is given (its size goes
    // in MAIL FROM), but nobody is asked to type one.
    if cli.quit_after.is_some() && stdin.is_terminal() {
        return Ok(body);
    }
    if stdin.is_terminal() {
        if io::stderr().is_terminal() {
            say!("(type the body; end it with a line holding only \".\" or with Ctrl-D)");
        }
        let mut lock = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            if lock.read_until(b'\n', &mut line).map_err(stdin_err)? == 0 {
                break;
            }
            if line == b".\n" || line == b".\r\n" || line == b"." {
                break;
            }
            body.extend_from_slice(&line);
        }
    } else {
        stdin.lock().read_to_end(&mut body).map_err(stdin_err)?;
        // Nothing from a pipe or a file is most often a mistake (`outbox help`, a
        // command run without its input); mail(1)'s -E skips such a message.
        if body.is_empty()
            && !cli.allow_empty
            && cli.quit_after.is_none()
            && cli.attach.is_empty()
            && cli.html.is_none()
        {
            return Err(Error::Data(
                "the body is empty: nothing came on standard input; give the text there \
                 or with --body or --body-file, or --allow-empty to send the message as \
                 it is"
                    .into(),
            ));
        }
    }
    Ok(body)
}

/// Shows what would go on the wire: the envelope commands, DATA, and the message
/// exactly as it would follow DATA (CRLF lines, dot-stuffed, with the final dot). The
/// server is taken to offer every extension the message could use.
fn dry_run(settings: &Settings, envelope: &Envelope, message: &Message) -> Result<(), Error> {
    let params = outbox::parameters(|_| true, None, envelope, message, &settings.dsn)?;
    let mail: Vec<&str> = params.mail.iter().map(String::as_str).collect();
    let rcpt: Vec<&str> = params.rcpt.iter().map(String::as_str).collect();
    let mut head = String::new();
    for cmd in envelope_commands(envelope, &mail, &rcpt)? {
        head.push_str(&cmd.to_string());
    }
    head.push_str(&Command::Data.to_string());
    let stdout_err = |source| Error::LocalIo {
        context: "cannot write to standard output".into(),
        source,
    };
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(head.as_bytes()) {
        return quiet_broken_pipe(e).map_err(stdout_err);
    }
    // The message streams through: its attachments are read and encoded a block at a
    // time, as when it is sent.
    let mut dot = DotWriter::new(io::BufWriter::with_capacity(64 * 1024, &mut out));
    let mut reader = message.reader();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Error::LocalIo {
                    context: "cannot read the message".into(),
                    source,
                });
            }
        };
        if let Err(e) = dot.write_all(&buf[..n]) {
            return quiet_broken_pipe(e).map_err(stdout_err);
        }
    }
    dot.finish()
        .and_then(|mut out| out.flush())
        .or_else(quiet_broken_pipe)
        .map_err(stdout_err)
}

/// A reader that stops early (`| head`) wanted no more; that is not a failure.
fn quiet_broken_pipe(e: io::Error) -> io::Result<()> {
    match e.kind() {
        io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(e),
    }
}
