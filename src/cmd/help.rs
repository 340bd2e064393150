//! `outbox help [COMMAND]`, the sendmail face's `--help`, and the words that name a
//! command: such a word is never taken for a recipient.

use std::ffi::OsString;

use clap::CommandFactory;

use outbox::cli::{COMMAND_WORDS, Cli};
use outbox::error::Error;
use outbox::{exit, settings};

use super::output::out;

/// `outbox help`, `outbox help sendmail`, `outbox help queue [list|flush|remove]`,
/// `outbox help system [setup|remove]`, `outbox help serve`, `outbox help probe`, and the
/// tester face's others (`session`, `vrfy`...).
pub fn run(args: &[OsString]) -> anyhow::Result<u8> {
    let word = args.first().map(|a| a.to_string_lossy().into_owned());
    match word.as_deref() {
        None | Some("help") => {
            let _ = Cli::command().print_help();
            Ok(exit::OK)
        }
        Some("sendmail") => {
            out!("{SENDMAIL_HELP}");
            Ok(exit::OK)
        }
        Some("queue") => {
            let mut queue_args = args[1..].to_vec();
            queue_args.push("--help".into());
            super::queue::run(&queue_args)
        }
        Some("system") => {
            let mut system_args = args[1..].to_vec();
            system_args.push("--help".into());
            super::system::run(&system_args)
        }
        Some("serve") => super::serve::run(&["--help".into()]),
        Some("probe") => super::probe::run(&["--help".into()]),
        Some("session") => super::session::run(&["--help".into()]),
        Some(name) if outbox::seed::Seed::from_name(name).is_some() => {
            super::seed::run(name, &["--help".into()])
        }
        Some(word) => Err(unknown_command(word).into()),
    }
}

/// Whether `word` names a command of outbox (one it has or is to have).
pub fn is_command_word(word: &str) -> bool {
    COMMAND_WORDS.iter().any(|c| c.eq_ignore_ascii_case(word))
}

/// The error for a command word where a command of this version is not: say so, and
/// how to write a recipient of that name.
pub fn unknown_command(word: &str) -> Error {
    let lower = word.to_ascii_lowercase();
    let what = if lower != word && COMMAND_WORDS.contains(&lower.as_str()) {
        format!("unknown command {word:?}: outbox's commands are in lower case, as {lower:?}")
    } else if is_command_word(word) {
        format!("the command {word:?} is not available in this version of outbox")
    } else {
        format!("unknown command {word:?}")
    };
    Error::Usage(format!(
        "{what} (outbox has sendmail, queue, system, serve, probe, session, vrfy, expn, etrn, \
         noop, rset, command and help; see outbox --help); to \
         send mail to a user named {word}, write the full address: {word}@{}",
        settings::fqdn()
    ))
}

/// The error for a command word among the recipients of the compose face.
pub fn not_a_recipient(word: &str) -> Error {
    Error::Usage(format!(
        "{word:?} names an outbox command, not a recipient: to send mail to a user of \
         that name, write the full address ({word}@{}); for the command, put it first \
         (outbox --help lists them)",
        settings::fqdn()
    ))
}

/// What `outbox sendmail --help` prints. `-h` is not taken for help: sendmail(8) has
/// it for the hop count, which outbox accepts and ignores.
const SENDMAIL_HELP: &str = "\
outbox sendmail: sendmail(1)'s command line, for programs written to call sendmail.
The whole message (headers, a blank line, the body) comes on standard input; Date,
Message-ID and From are added where missing, and no Bcc header is sent. The server,
TLS and account come from the configuration file, as for outbox itself.

Usage: outbox sendmail [OPTION...] [--] [RECIPIENT...]
       sendmail ...   (outbox installed or linked under that name; as mailq, it lists
                       the queue)

Options:
  -t                 Send to the addresses in To, Cc and Bcc as well
  -i, -oi            A line holding only \".\" does not end the message
  -f ADDR, -r ADDR   The envelope sender; -f '<>' is the null sender of bounces
  -F NAME            The display name of a From header that outbox adds
  -v                 Show the SMTP dialogue on standard error
  -N WHEN            Delivery status notifications: never, or some of
                     success,failure,delay
  -R full|hdrs       What a bounce returns: the whole message or its headers
  -V ID              An envelope id for delivery status notifications
  -B 7BIT|8BITMIME   The body type
  -bm                Deliver the message (what is done without -b)
  -bp                List the queue (as mailq)
  -q                 Deliver the queued messages (as outbox queue flush)
  -o..., -O...       Accepted; -oi and -O IgnoreDots are read, the rest ignored
  -U -G -n -m -c     Accepted and ignored, as are -L, -h, -X, -C, -e, -A and -p
                     with their values
  --help             This help

A message that cannot be delivered now is queued, and the exit code is 0, as a
sendmail that has taken the message for delivery; a refusal is 67 or 69.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_words_are_known_whatever_their_case() {
        for word in ["help", "Probe", "COMPLETIONS", "queue", "vrfy"] {
            assert!(is_command_word(word), "{word}");
        }
        for word in ["root", "helpdesk", "help@example.test", ""] {
            assert!(!is_command_word(word), "{word}");
        }
    }

    #[test]
    fn an_unknown_command_says_so_and_how_to_write_a_recipient() {
        let text = unknown_command("VRFY").to_string();
        assert!(text.contains("in lower case, as \"vrfy\""), "{text}");
        assert!(text.contains("VRFY@"), "{text}");
        let text = unknown_command("lsit").to_string();
        assert!(text.starts_with("unknown command \"lsit\""), "{text}");
        assert!(text.contains("lsit@"), "{text}");
    }
}
