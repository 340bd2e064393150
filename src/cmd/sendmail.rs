//! The sendmail face: sendmail(1)'s command line, a finished message on standard input.

use std::ffi::OsString;

use outbox::envelope::Mailbox;
use outbox::error::Error;
use outbox::mode::Mode;
use outbox::sendmail::{
    Action, ErrorMode, Fixups, SendmailArgs, envelope_sender, from_name, parse_args, prepare,
    read_message,
};
use outbox::{Envelope, Message, Settings, settings};

use super::mta::{LogDefault, Mta};
use super::output::say;
use super::{Keep, Refusals};

pub fn run(program: &str, args: &[OsString]) -> anyhow::Result<u8> {
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.to_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::Usage(format!("argument {a:?} is not UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    // `-h` is sendmail's hop count; only the long form asks for help.
    if args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help")
    {
        return super::help::run(&["sendmail".into()]);
    }
    let parsed = parse_args(program, &args).map_err(Error::Usage)?;
    match parsed.action {
        Action::ListQueue => super::queue::list(false),
        // As Postfix's sendmail -q: every message, now, whatever its back-off.
        Action::FlushQueue => super::flush::flush(parsed.verbose, super::queue::Pick::Everything),
        Action::Deliver => deliver(&parsed),
    }
}

fn deliver(args: &SendmailArgs) -> anyhow::Result<u8> {
    // -f <> (or an empty -f) is the null sender, as bounces use (RFC 5321 §4.5.5).
    let sender_flag = args.from.as_deref().map(envelope_sender).transpose()?;
    let null_sender = matches!(sender_flag, Some(None));
    let from_flag = sender_flag.flatten().map(|address| Mailbox {
        name: None,
        address,
    });
    let cli = args.cli(from_flag.as_ref().map(|m| &m.address));
    let mode = Mode::detect()?;
    // In system mode the configuration is the service's: the message is made ready
    // with the built-in defaults, and the service applies the rest.
    let config = match mode {
        Mode::Personal { .. } => super::load_config()?,
        Mode::System { .. } => None,
    };
    let settings = Settings::resolve(&cli, config.as_ref())?;
    if settings.verbose {
        say!("* {}", mode.describe());
        if !args.ignored.is_empty() {
            say!("* accepted and ignored: {}", args.ignored.join(" "));
        }
    }

    let raw = read_message(&mut std::io::stdin().lock(), args.ignore_dots).map_err(|source| {
        Error::LocalIo {
            context: "cannot read the message from standard input".into(),
            source,
        }
    })?;
    // The From a message gets when it has none: the sender's address, with -F, the
    // account's or the user's name.
    let sender_box = settings.sender(from_flag)?;
    let header_from = Mailbox {
        name: from_name(
            args.full_name.as_deref(),
            settings.from.as_ref(),
            &sender_box,
            || settings::default_sender().and_then(|m| m.name),
        ),
        address: sender_box.address.clone(),
    };
    let fixups = Fixups {
        message_id_domain: header_from
            .address
            .domain()
            .map_or_else(settings::fqdn, str::to_owned),
        from: header_from.clone(),
        extract_recipients: args.extract_recipients,
        local_domain: settings.local_domain.clone(),
    };
    let prepared = prepare(&raw, &fixups)?;
    if settings.verbose {
        if !prepared.qualified.is_empty() {
            say!(
                "* gave the bare names in {} the domain {}",
                prepared.qualified.join(", "),
                fixups.local_domain
            );
        }
        if !prepared.folded.is_empty() {
            say!("* folded the long lines of {}", prepared.folded.join(", "));
        }
        if !prepared.added.is_empty() {
            say!("* added {}", prepared.added.join(", "));
        }
    }

    let recipients = args.recipients(&prepared.header_recipients)?;
    let sender = if null_sender {
        None
    } else {
        Some(sender_box.address)
    };
    if let Mode::System { spool, .. } = &mode {
        return super::handoff::hand_off(
            spool,
            &settings,
            Envelope::new(sender, recipients),
            &prepared.message,
        );
    }
    let envelope = Envelope::new(sender, super::expand_all(&settings, &recipients));
    let message = Message::from_bytes(prepared.message);
    let mta = Mta::new(&settings, LogDefault::Syslog);
    let handling = super::Handling {
        keep: Keep::Quietly,
        show: super::Show::default(),
        refusals: match args.error_mode {
            ErrorMode::Mail => Refusals::Bounce,
            ErrorMode::Print => Refusals::Report,
            ErrorMode::Quiet => Refusals::Quiet,
        },
    };
    super::deliver_or_keep(&settings, &mta, &envelope, &message, handling)
}
