//! Asking for a password on the terminal, without echo, for `auth MECHANISM USER`.
//!
//! The terminal is put in non-canonical mode with echo and signals off, and the
//! keys are read one by one: Ctrl-C then cancels the question (as it clears a line at
//! the session's prompt) instead of killing outbox with the terminal's echo still off,
//! which a prompt that leaves signals on risks. The terminal's mode is put back
//! however the question ends.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};

use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex, Termios};

use outbox::error::Error;
use outbox::smtp::auth::Secret;

/// The controlling terminal, whatever standard input is.
const TTY: &str = "/dev/tty";

/// Asks `prompt` on the terminal. `None`: the person cancelled (Ctrl-C, or Ctrl-D
/// with nothing typed). An error when there is no terminal to ask on.
pub fn ask(prompt: &str) -> Result<Option<Secret>, Error> {
    let no_terminal = |e: io::Error| {
        Error::Config(format!(
            "no terminal to ask for the password on ({TTY}: {e}); for a session \
             without one, give --user with --password-command (or OUTBOX_PASSWORD), \
             and outbox logs in as the session opens"
        ))
    };
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open(TTY)
        .map_err(no_terminal)?;
    let quiet = Quiet::new(&tty).map_err(|e| no_terminal(e.into()))?;
    let asked = read_secret(quiet.tty, prompt);
    drop(quiet);
    asked.map_err(|source| Error::LocalIo {
        context: "cannot read the password from the terminal".into(),
        source,
    })
}

fn read_secret(mut tty: &File, prompt: &str) -> io::Result<Option<Secret>> {
    tty.write_all(prompt.as_bytes())?;
    tty.flush()?;
    let mut line = SecretLine::default();
    let mut byte = [0u8; 1];
    let fed = loop {
        match tty.read(&mut byte) {
            Ok(0) => break Fed::Cancelled,
            Ok(_) => match line.feed(byte[0]) {
                Fed::More => continue,
                done => break done,
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    tty.write_all(b"\n")?;
    Ok(match fed {
        Fed::Done => Some(line.into_secret()?),
        _ => None,
    })
}

/// The terminal with echo, line editing and signals off, until dropped.
struct Quiet<'a> {
    tty: &'a File,
    saved: Termios,
}

impl<'a> Quiet<'a> {
    fn new(tty: &'a File) -> rustix::io::Result<Quiet<'a>> {
        let saved = termios::tcgetattr(tty)?;
        let mut quiet = saved.clone();
        quiet.local_modes &=
            !(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG | LocalModes::IEXTEN);
        quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
        quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
        // As getpass(3): what was typed before the question (and shown) is dropped,
        // not taken for the password.
        termios::tcsetattr(tty, OptionalActions::Flush, &quiet)?;
        Ok(Quiet { tty, saved })
    }
}

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        // Nothing better can be done if the terminal will not take its mode back.
        let _ = termios::tcsetattr(self.tty, OptionalActions::Now, &self.saved);
    }
}

/// What one key did to the password being typed.
#[derive(Debug, PartialEq, Eq)]
enum Fed {
    More,
    /// Enter: the password is complete.
    Done,
    Cancelled,
}

/// The password as it is typed, key by key.
#[derive(Default)]
struct SecretLine {
    bytes: Vec<u8>,
}

impl SecretLine {
    fn feed(&mut self, byte: u8) -> Fed {
        const CTRL_C: u8 = 0x03;
        const CTRL_D: u8 = 0x04;
        const CTRL_U: u8 = 0x15;
        const BACKSPACE: u8 = 0x08;
        const DELETE: u8 = 0x7f;
        match byte {
            b'\r' | b'\n' => Fed::Done,
            CTRL_C => Fed::Cancelled,
            CTRL_D if self.bytes.is_empty() => Fed::Cancelled,
            CTRL_D => Fed::More,
            CTRL_U => {
                self.bytes.clear();
                Fed::More
            }
            BACKSPACE | DELETE => {
                // One character back: its UTF-8 continuation bytes, then its first.
                while self.bytes.pop().is_some_and(|b| b & 0xc0 == 0x80) {}
                Fed::More
            }
            other => {
                self.bytes.push(other);
                Fed::More
            }
        }
    }

    fn into_secret(self) -> io::Result<Secret> {
        String::from_utf8(self.bytes).map(Secret::new).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "what was typed is not UTF-8 (is the terminal set to another encoding?)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(keys: &[u8]) -> (Fed, Option<String>) {
        let mut line = SecretLine::default();
        for &k in keys {
            match line.feed(k) {
                Fed::More => continue,
                Fed::Done => {
                    let secret = line.into_secret().ok().map(|s| s.expose().to_owned());
                    return (Fed::Done, secret);
                }
                Fed::Cancelled => return (Fed::Cancelled, None),
            }
        }
        (Fed::More, None)
    }

    #[test]
    fn enter_ends_the_password() {
        assert_eq!(typed(b"hunter2\r"), (Fed::Done, Some("hunter2".into())));
        assert_eq!(typed(b"a b\n"), (Fed::Done, Some("a b".into())));
        assert_eq!(typed(b"\r"), (Fed::Done, Some(String::new())));
    }

    #[test]
    fn backspace_takes_back_a_whole_character() {
        assert_eq!(typed(b"abd\x7fc\r"), (Fed::Done, Some("abc".into())));
        let keys = [b"p\xc3\xa4".as_slice(), b"\x08\x08ok\r"].concat();
        assert_eq!(typed(&keys), (Fed::Done, Some("ok".into())));
        assert_eq!(
            typed("\u{65e5}\u{672c}\x7f\r".as_bytes()),
            (Fed::Done, Some("\u{65e5}".into()))
        );
        assert_eq!(typed(b"\x7f\x7fx\r"), (Fed::Done, Some("x".into())));
        assert_eq!(
            typed(b"wrong\x15right\r"),
            (Fed::Done, Some("right".into()))
        );
    }

    #[test]
    fn ctrl_c_or_ctrl_d_on_nothing_cancels() {
        assert_eq!(typed(b"half\x03"), (Fed::Cancelled, None));
        assert_eq!(typed(b"\x04"), (Fed::Cancelled, None));
        assert_eq!(typed(b"x\x04y\r"), (Fed::Done, Some("xy".into())));
    }

    #[test]
    fn a_password_that_is_not_utf8_is_an_error_that_does_not_show_it() {
        let (fed, secret) = typed(b"s3cr\xff\r");
        assert_eq!((fed, secret), (Fed::Done, None));
        let mut line = SecretLine::default();
        for &k in b"s3cr\xff" {
            line.feed(k);
        }
        let err = line.into_secret().map(|_| ()).unwrap_err().to_string();
        assert!(!err.contains("s3cr"), "{err}");
    }
}
