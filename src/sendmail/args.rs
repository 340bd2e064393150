//! sendmail(1)'s command line: the options that cron, PHP's `mail()`, git send-email,
//! mutt and daemons pass, read as Postfix's sendmail and sendmail 8 read them.

use crate::cli::Cli;
use crate::envelope::{Address, Mailbox};
use crate::error::Error;
use crate::smtp::dsn;

/// What a sendmail(1) command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Action {
    #[default]
    Deliver,
    ListQueue,
    FlushQueue,
}

/// What becomes of a recipient the server refuses for good, as sendmail 8's
/// ErrorMode option (`-oeX`) names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorMode {
    /// `m` (the default here), `e` and `w`: a bounce goes to the sender, and the exit
    /// code says the message was accepted (0), as an MTA's does.
    #[default]
    Mail,
    /// `p`: no bounce; the refusal is said on standard error and the exit code is
    /// the refusal's (67, 69), as the compose face does.
    Print,
    /// `q`: as `p`, without the message.
    Quiet,
}

impl ErrorMode {
    /// The mode a letter names; `None` for a letter sendmail 8 does not know.
    fn of(letter: &str) -> Option<ErrorMode> {
        match letter {
            "m" | "e" | "w" => Some(ErrorMode::Mail),
            "p" => Some(ErrorMode::Print),
            "q" => Some(ErrorMode::Quiet),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendmailArgs {
    /// As given, not yet parsed.
    pub recipients: Vec<String>,
    /// `-t`
    pub extract_recipients: bool,
    /// `-i`, `-oi`: without them a line holding only "." ends the input.
    pub ignore_dots: bool,
    /// `-f ADDR`, `-r ADDR`: the envelope sender, as given; see [`envelope_sender`].
    pub from: Option<String>,
    /// `-F NAME`
    pub full_name: Option<String>,
    /// `-v`
    pub verbose: bool,
    /// `-N`: `NEVER`, or some of `SUCCESS`, `FAILURE`, `DELAY` joined by commas, in
    /// upper case, ready for the NOTIFY parameter (RFC 3461 §4.1).
    pub notify: Option<String>,
    /// `-R`: `FULL` or `HDRS`, ready for the RET parameter (RFC 3461 §4.3).
    pub ret: Option<String>,
    /// `-V`: the ENVID (RFC 3461 §4.4), before xtext encoding.
    pub envid: Option<String>,
    /// `-B`: `7BIT` or `8BITMIME` (RFC 6152 §2).
    pub body_type: Option<String>,
    /// `-bm` (the default), `-bp` or `mailq`, `-q...`.
    pub action: Action,
    /// `-oeX`, `-O ErrorMode=X`: what becomes of a refused recipient.
    pub error_mode: ErrorMode,
    /// Options accepted but meaningless here, as given (for `-v`).
    pub ignored: Vec<String>,
}

impl SendmailArgs {
    /// The flags of the compose face that mean what these do, for the settings: the
    /// sender `from` (`-f`, already read by [`envelope_sender`]), `-v` and the DSN
    /// requests. The rest are the sendmail face's own.
    pub fn cli(&self, from: Option<&Address>) -> Cli {
        Cli {
            from: from.map(ToString::to_string),
            verbose: self.verbose,
            notify: self.notify.clone(),
            ret: self.ret.clone(),
            envid: self.envid.clone(),
            ..Cli::default()
        }
    }

    /// The envelope's recipients: those of the command line (each word a list, as
    /// `a@x, b@y`), then `from_header`, the ones `-t` took from the header. None at all
    /// is a usage error.
    pub fn recipients(&self, from_header: &[Address]) -> Result<Vec<Address>, Error> {
        let mut recipients = Vec::new();
        for r in &self.recipients {
            recipients.extend(
                Mailbox::parse_list(r)
                    .map_err(|e| Error::Usage(e.to_string()))?
                    .into_iter()
                    .map(|m| m.address),
            );
        }
        recipients.extend(from_header.iter().cloned());
        if recipients.is_empty() {
            return Err(Error::Usage(if self.extract_recipients {
                "no recipient: none on the command line, and none in To, Cc or Bcc".into()
            } else {
                "no recipient given (use -t to take them from the headers)".into()
            }));
        }
        Ok(recipients)
    }
}

/// What the value of each option that takes one is, for the message when it is missing.
fn value_name(option: char) -> Option<&'static str> {
    Some(match option {
        'f' | 'r' => "an address",
        'F' => "a full name",
        'N' => "never, or a list of success, failure and delay",
        'R' => "full or hdrs",
        'V' => "an envelope id",
        'B' => "7BIT or 8BITMIME",
        'L' => "a tag",
        'h' => "a hop count",
        'O' => "option=value",
        'X' | 'C' => "a file name",
        'o' => "an option letter",
        'b' => "a mode letter",
        'e' => "an error mode letter",
        'A' => "c or m",
        'p' => "a protocol",
        _ => return None,
    })
}

/// Parses the arguments after the program name. `program` is the name it was invoked
/// as ("sendmail", "mailq", ...): "mailq" means ListQueue.
///
/// Options and recipients may be interleaved, as GNU getopt permutes them, until `--`.
/// Single-letter flags may be grouped (`-ti`), and a letter that takes a value takes the
/// rest of its word, or else the next word (`-fme@example.com`, `-f me@example.com`).
pub fn parse_args(program: &str, args: &[String]) -> Result<SendmailArgs, String> {
    let mut out = SendmailArgs::default();
    match program.rsplit('/').next().unwrap_or(program) {
        "mailq" => out.action = Action::ListQueue,
        "newaliases" => {
            return Err(
                "newaliases is not supported: outbox keeps no alias database \
                        (map local names in the [aliases] table of the configuration)"
                    .into(),
            );
        }
        _ => {}
    }
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            out.recipients.extend(words.by_ref().cloned());
            break;
        }
        if word.starts_with("--") {
            return Err(format!("unknown option {word}"));
        }
        let Some(mut rest) = word.strip_prefix('-').filter(|r| !r.is_empty()) else {
            out.recipients.push(word.clone());
            continue;
        };
        while let Some(letter) = rest.chars().next() {
            rest = &rest[letter.len_utf8()..];
            match letter {
                't' => out.extract_recipients = true,
                'i' => out.ignore_dots = true,
                'v' => out.verbose = true,
                // -U initial submission, -G gateway, -n no aliasing, -m me too,
                // -c hold expensive: nothing for a submitter to do.
                'U' | 'G' | 'n' | 'm' | 'c' => out.ignored.push(format!("-{letter}")),
                // -q, -q30m, -qR..., -qS..., -qI..., -qf: the value is only ever attached.
                'q' => {
                    out.action = Action::FlushQueue;
                    break;
                }
                _ => {
                    let Some(wanted) = value_name(letter) else {
                        return Err(format!("unknown option -{letter}"));
                    };
                    let (value, given) = if rest.is_empty() {
                        let value = words
                            .next()
                            .ok_or_else(|| format!("-{letter} needs {wanted}"))?;
                        (value.as_str(), format!("-{letter} {value}"))
                    } else {
                        (rest, format!("-{letter}{rest}"))
                    };
                    apply(&mut out, letter, value, given)?;
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Sets what option `letter` with `value` means; `given` is how it was written.
fn apply(out: &mut SendmailArgs, letter: char, value: &str, given: String) -> Result<(), String> {
    match letter {
        // sendmail 8 refuses a second -f; Postfix takes the last, as here.
        'f' | 'r' => out.from = Some(value.to_owned()),
        'F' => {
            if value.chars().any(char::is_control) {
                return Err("-F: the name holds a control character (CR, LF, NUL...)".into());
            }
            out.full_name = Some(value.to_owned());
        }
        'N' => out.notify = Some(notify(value)?),
        'R' => {
            let ret =
                dsn::ret(value).ok_or_else(|| format!("-R takes full or hdrs, not {value:?}"))?;
            out.ret = Some(ret.to_owned());
        }
        'V' => {
            if !dsn::envid_is_valid(value) {
                return Err(format!("-V {value:?}: {}", dsn::ENVID_RULE));
            }
            out.envid = Some(value.to_owned());
        }
        'B' => {
            out.body_type = Some(match value.to_ascii_uppercase().as_str() {
                b @ ("7BIT" | "8BITMIME") => b.to_owned(),
                _ => return Err(format!("-B takes 7BIT or 8BITMIME, not {value:?}")),
            })
        }
        'o' => {
            if let Some(flag) = value.strip_prefix('i') {
                out.ignore_dots = sendmail_bool(flag);
            } else if let Some(mode) = value.strip_prefix('e').and_then(ErrorMode::of) {
                out.error_mode = mode;
            } else {
                out.ignored.push(given);
            }
        }
        'O' => {
            let (key, flag) = value.split_once('=').unwrap_or((value, ""));
            let key = key.trim();
            // As sendmail 8, which reads the value's first letter (`print`, `mail`).
            let letter = flag
                .trim()
                .get(..1)
                .unwrap_or_default()
                .to_ascii_lowercase();
            let mode = ErrorMode::of(&letter);
            if key.eq_ignore_ascii_case("IgnoreDots") {
                out.ignore_dots = sendmail_bool(flag.trim());
            } else if let (true, Some(mode)) = (key.eq_ignore_ascii_case("ErrorMode"), mode) {
                out.error_mode = mode;
            } else {
                out.ignored.push(given);
            }
        }
        'b' => match value {
            "m" => out.action = Action::Deliver,
            "p" => out.action = Action::ListQueue,
            _ => {
                let what = match value {
                    "s" => "SMTP on standard input",
                    "d" | "D" => "running as a daemon",
                    "i" => "an alias database",
                    "v" => "verifying addresses",
                    "t" => "address test mode",
                    "h" | "H" | "P" => "the host status and queue statistics of sendmail 8",
                    _ => return Err(format!("unknown option -b{value}")),
                };
                return Err(format!("-b{value} ({what}) is not supported"));
            }
        },
        // -L tag, -h hops, -X log file, -C config file, -e error mode, -A submit/MTA
        // config, -p protocol: all about a local MTA that outbox is not.
        _ => out.ignored.push(given),
    }
    Ok(())
}

/// A boolean option value as sendmail 8 reads it (`atobool` in readcf.c): empty, or
/// beginning with t or y, is true.
fn sendmail_bool(value: &str) -> bool {
    value.is_empty() || value.starts_with(['t', 'T', 'y', 'Y'])
}

/// The `-N` value in the form of RFC 3461 §4.1.
fn notify(value: &str) -> Result<String, String> {
    dsn::notify(value).ok_or_else(|| {
        format!("-N takes never, or a list of success, failure and delay, not {value:?}")
    })
}

/// The envelope sender from the value of `-f`/`-r`: `None` for the null sender (`<>`,
/// or an empty value as sendmail 8 takes it), the address otherwise, with or without
/// angle brackets.
pub fn envelope_sender(value: &str) -> Result<Option<Address>, Error> {
    let value = value.trim();
    let inner = value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(value)
        .trim();
    if inner.is_empty() {
        return Ok(None);
    }
    Address::new(inner)
        .map(Some)
        .map_err(|e| Error::Usage(format!("-f: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn parse(line: &str) -> Result<SendmailArgs, String> {
        parse_args("sendmail", &words(line))
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn error_modes() {
        for (line, mode) in [
            ("a", ErrorMode::Mail),
            ("-oem a", ErrorMode::Mail),
            ("-oee a", ErrorMode::Mail),
            ("-oew a", ErrorMode::Mail),
            ("-oep a", ErrorMode::Print),
            ("-oeq a", ErrorMode::Quiet),
            ("-o ep a", ErrorMode::Print),
            ("-O ErrorMode=q a", ErrorMode::Quiet),
            ("-O ErrorMode=print a", ErrorMode::Print),
            ("-OErrorMode=Mail a", ErrorMode::Mail),
            ("-oep -oem a", ErrorMode::Mail),
        ] {
            let args = parse(line).unwrap();
            assert_eq!(args.error_mode, mode, "{line}");
            assert!(args.ignored.is_empty(), "{line}: {:?}", args.ignored);
        }
        // A letter sendmail 8 does not know keeps the default, and -v lists it.
        let args = parse("-oex a").unwrap();
        assert_eq!(args.error_mode, ErrorMode::Mail);
        assert_eq!(args.ignored, ["-oex"]);
    }

    #[test]
    fn real_world_command_lines() {
        let d = SendmailArgs::default;
        let table: Vec<(&str, &str, SendmailArgs)> = vec![
            (
                "sendmail",
                "-FCronDaemon -i -B8BITMIME -oem root",
                SendmailArgs {
                    recipients: strings(&["root"]),
                    ignore_dots: true,
                    full_name: Some("CronDaemon".into()),
                    body_type: Some("8BITMIME".into()),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-t -i",
                SendmailArgs {
                    extract_recipients: true,
                    ignore_dots: true,
                    ..d()
                },
            ),
            (
                "sendmail",
                "-i -f me@example.com a@example.com b@example.com",
                SendmailArgs {
                    recipients: strings(&["a@example.com", "b@example.com"]),
                    ignore_dots: true,
                    from: Some("me@example.com".into()),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-oem -oi -- a@example.com",
                SendmailArgs {
                    recipients: strings(&["a@example.com"]),
                    ignore_dots: true,
                    ..d()
                },
            ),
            (
                "sendmail",
                "someone@example.com",
                SendmailArgs {
                    recipients: strings(&["someone@example.com"]),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-t",
                SendmailArgs {
                    extract_recipients: true,
                    ..d()
                },
            ),
            (
                "sendmail",
                "-bp",
                SendmailArgs {
                    action: Action::ListQueue,
                    ..d()
                },
            ),
            (
                "mailq",
                "",
                SendmailArgs {
                    action: Action::ListQueue,
                    ..d()
                },
            ),
            (
                "/usr/bin/mailq",
                "-v",
                SendmailArgs {
                    action: Action::ListQueue,
                    verbose: true,
                    ..d()
                },
            ),
            (
                "sendmail",
                "-q",
                SendmailArgs {
                    action: Action::FlushQueue,
                    ..d()
                },
            ),
            (
                "sendmail",
                "-q30m",
                SendmailArgs {
                    action: Action::FlushQueue,
                    ..d()
                },
            ),
            (
                "sendmail",
                "-qRexample.com",
                SendmailArgs {
                    action: Action::FlushQueue,
                    ..d()
                },
            ),
            (
                "sendmail",
                "-oi -f x -- a",
                SendmailArgs {
                    recipients: strings(&["a"]),
                    ignore_dots: true,
                    from: Some("x".into()),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-N success,delay -R hdrs -V abc a@example.com",
                SendmailArgs {
                    recipients: strings(&["a@example.com"]),
                    notify: Some("SUCCESS,DELAY".into()),
                    ret: Some("HDRS".into()),
                    envid: Some("abc".into()),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-Nnever -Rfull -Vid.1 -B7bit a",
                SendmailArgs {
                    recipients: strings(&["a"]),
                    notify: Some("NEVER".into()),
                    ret: Some("FULL".into()),
                    envid: Some("id.1".into()),
                    body_type: Some("7BIT".into()),
                    ..d()
                },
            ),
            // Options after recipients, as GNU getopt permutes them.
            (
                "sendmail",
                "a@example.com -t -i b@example.com -v",
                SendmailArgs {
                    recipients: strings(&["a@example.com", "b@example.com"]),
                    extract_recipients: true,
                    ignore_dots: true,
                    verbose: true,
                    ..d()
                },
            ),
            // After "--", everything is a recipient.
            (
                "sendmail",
                "-i -- -t a",
                SendmailArgs {
                    recipients: strings(&["-t", "a"]),
                    ignore_dots: true,
                    ..d()
                },
            ),
            (
                "sendmail",
                "-ti",
                SendmailArgs {
                    extract_recipients: true,
                    ignore_dots: true,
                    ..d()
                },
            ),
            (
                "sendmail",
                "-it -v -v",
                SendmailArgs {
                    extract_recipients: true,
                    ignore_dots: true,
                    verbose: true,
                    ..d()
                },
            ),
            (
                "sendmail",
                "-vi -tfme@example.com",
                SendmailArgs {
                    extract_recipients: true,
                    ignore_dots: true,
                    verbose: true,
                    from: Some("me@example.com".into()),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-r bounce@example.com -F Cron a",
                SendmailArgs {
                    recipients: strings(&["a"]),
                    from: Some("bounce@example.com".into()),
                    full_name: Some("Cron".into()),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-rbounce@example.com -f <> a",
                SendmailArgs {
                    recipients: strings(&["a"]),
                    from: Some("<>".into()),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-odi -odb -odq -oQ/var/spool -oee -om -O DeliveryMode=b -U -G -n -m -Ac -Am \
                 -L tag -h 5 -X /tmp/log -C /etc/mail/submit.cf -bm -em -ep a",
                SendmailArgs {
                    recipients: strings(&["a"]),
                    ignored: strings(&[
                        "-odi",
                        "-odb",
                        "-odq",
                        "-oQ/var/spool",
                        "-om",
                        "-O DeliveryMode=b",
                        "-U",
                        "-G",
                        "-n",
                        "-m",
                        "-Ac",
                        "-Am",
                        "-L tag",
                        "-h 5",
                        "-X /tmp/log",
                        "-C /etc/mail/submit.cf",
                        "-em",
                        "-ep",
                    ]),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-O IgnoreDots=True a",
                SendmailArgs {
                    recipients: strings(&["a"]),
                    ignore_dots: true,
                    ..d()
                },
            ),
            (
                "sendmail",
                "-i -oiFalse a",
                SendmailArgs {
                    recipients: strings(&["a"]),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-bp -bm a",
                SendmailArgs {
                    recipients: strings(&["a"]),
                    ..d()
                },
            ),
            (
                "sendmail",
                "-o i a",
                SendmailArgs {
                    recipients: strings(&["a"]),
                    ignore_dots: true,
                    ..d()
                },
            ),
        ];
        for (program, line, want) in table {
            assert_eq!(
                parse_args(program, &words(line)),
                Ok(want),
                "{program} {line}"
            );
        }
    }

    #[test]
    fn values_may_hold_spaces_as_separate_words() {
        let args = strings(&["-F", "Cron Daemon", "-f", "", "root"]);
        let got = parse_args("sendmail", &args).unwrap();
        assert_eq!(got.full_name.as_deref(), Some("Cron Daemon"));
        assert_eq!(got.from.as_deref(), Some(""));
        assert_eq!(got.recipients, ["root"]);
    }

    #[test]
    fn bad_command_lines_name_the_option() {
        for (line, want) in [
            ("-Z a", "unknown option -Z"),
            ("-tZ a", "unknown option -Z"),
            ("--help", "unknown option --help"),
            ("-f", "-f needs an address"),
            ("-i -r", "-r needs an address"),
            ("a -F", "-F needs a full name"),
            (
                "-N",
                "-N needs never, or a list of success, failure and delay",
            ),
            ("-bs", "-bs (SMTP on standard input) is not supported"),
            ("-bd", "-bd (running as a daemon) is not supported"),
            ("-bi", "-bi (an alias database) is not supported"),
            ("-bv a", "-bv (verifying addresses) is not supported"),
            ("-bt", "-bt (address test mode) is not supported"),
            ("-bx", "unknown option -bx"),
            (
                "-N never,success a",
                "-N takes never, or a list of success, failure and delay, not \"never,success\"",
            ),
            (
                "-N sucess a",
                "-N takes never, or a list of success, failure and delay, not \"sucess\"",
            ),
            ("-R body a", "-R takes full or hdrs, not \"body\""),
            (
                "-B binarymime a",
                "-B takes 7BIT or 8BITMIME, not \"binarymime\"",
            ),
        ] {
            assert_eq!(parse(line), Err(want.to_owned()), "{line}");
        }
        // -V and --envid share one rule: printable ASCII, at most 100 as xtext.
        let long = format!("-V {}", "x".repeat(101));
        assert!(parse(&long).unwrap_err().contains("at most 100"));
        assert!(parse(&format!("-V {}", "x".repeat(100))).is_ok());
        assert!(parse(&format!("-V {}", "+".repeat(34))).is_err());
        assert!(parse_args("sendmail", &strings(&["-V", "a\tb"])).is_err());
        assert!(parse_args("sendmail", &strings(&["-V", "a b"])).is_ok());
        assert!(parse_args("sendmail", &strings(&["-F", "a\nBcc: x"])).is_err());
        let err = parse_args("newaliases", &[]).unwrap_err();
        assert!(err.starts_with("newaliases is not supported"), "{err}");
    }

    #[test]
    fn envelope_sender_forms() {
        assert_eq!(envelope_sender("<>").unwrap(), None);
        assert_eq!(envelope_sender("").unwrap(), None);
        assert_eq!(
            envelope_sender("<me@example.com>").unwrap().unwrap(),
            "me@example.com"
        );
        assert_eq!(
            envelope_sender("me@example.com").unwrap().unwrap(),
            "me@example.com"
        );
        let err = envelope_sender("two words@example.com").unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err:?}");
    }

    #[test]
    fn recipients_of_the_command_line_then_of_the_header() {
        let a = |s: &str| Address::new(s).unwrap();
        let words = strings(&["-t", "\"A, Bee\" <a@example.test>,b@example.test", "c"]);
        let args = parse_args("sendmail", &words).unwrap();
        let got = args.recipients(&[a("h@example.test")]).unwrap();
        let got: Vec<&str> = got.iter().map(Address::as_str).collect();
        assert_eq!(
            got,
            ["a@example.test", "b@example.test", "c", "h@example.test"]
        );
        assert!(matches!(parse("a,,").unwrap().recipients(&[]), Ok(r) if r.len() == 1));
        let words = strings(&["two words@example.test"]);
        let err = parse_args("sendmail", &words).unwrap().recipients(&[]);
        assert!(matches!(err, Err(Error::Usage(_))), "{err:?}");
    }

    #[test]
    fn no_recipient_says_where_none_was_found() {
        let err = parse("-i").unwrap().recipients(&[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            Error::Usage("no recipient given (use -t to take them from the headers)".into())
                .to_string()
        );
        let err = parse("-t").unwrap().recipients(&[]).unwrap_err();
        assert!(err.to_string().contains("none in To, Cc or Bcc"), "{err}");
    }

    #[test]
    fn the_compose_flags_that_mean_the_same() {
        let args = parse("-v -N never -R full -V id.1 -F Cron -t").unwrap();
        let from = Address::new("me@example.test").unwrap();
        let cli = args.cli(Some(&from));
        assert_eq!(cli.from.as_deref(), Some("me@example.test"));
        assert!(cli.verbose);
        assert_eq!(cli.notify.as_deref(), Some("NEVER"));
        assert_eq!(cli.ret.as_deref(), Some("FULL"));
        assert_eq!(cli.envid.as_deref(), Some("id.1"));
        assert_eq!(args.cli(None).from, None);
    }
}
