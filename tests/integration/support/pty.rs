//! `outbox` at a pseudo-terminal, as a person would type at it: the pty's echo is on,
//! as a terminal's is, so whatever outbox failed to hide would show. Everything the
//! terminal showed is kept, for a test to search (the password must not be in it) and
//! for a failure to print.

use std::time::Duration;

use expectrl::process::Termios;
use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession;
use expectrl::{Eof, Expect, Regex};

use super::Cmd;

/// How long one expected text is waited for.
const WAIT: Duration = Duration::from_secs(30);

pub struct Terminal {
    session: OsSession,
    /// What the terminal has shown so far.
    seen: Vec<u8>,
    cmdline: String,
}

/// Keys as a terminal sends them.
pub const ENTER: &str = "\r";
pub const CTRL_C: &str = "\x03";
pub const CTRL_D: &str = "\x04";
/// The terminal's literal-next: the key after it is taken as it is (Ctrl-V).
pub const CTRL_V: &str = "\x16";

impl Terminal {
    /// Starts `cmd` with the pty as its standard input, output and error and as its
    /// controlling terminal (`/dev/tty`), under a terminal type that line editing
    /// knows.
    pub fn spawn(cmd: &Cmd) -> Terminal {
        let cmdline = cmd.cmdline();
        let mut command = cmd.std_command();
        command.env("TERM", "xterm");
        let mut session = OsSession::spawn(command)
            .unwrap_or_else(|e| panic!("cannot start `{cmdline}` at a pseudo-terminal: {e}"));
        session
            .get_process_mut()
            .set_echo(true)
            .unwrap_or_else(|e| panic!("cannot turn the pty's echo on: {e}"));
        session.set_expect_timeout(Some(WAIT));
        Terminal {
            session,
            seen: Vec::new(),
            cmdline,
        }
    }

    /// Waits until the terminal shows `text`; what it showed from the last wait to the
    /// end of `text`.
    #[track_caller]
    pub fn expect(&mut self, text: &str) -> String {
        match self.session.expect(text) {
            Ok(found) => {
                let start = self.seen.len();
                self.seen.extend_from_slice(found.as_bytes());
                String::from_utf8_lossy(&self.seen[start..]).into_owned()
            }
            Err(e) => self.fail(&format!("waiting for {text:?}: {e}")),
        }
    }

    /// Waits until the terminal shows `prompt` at the start of a line (after any
    /// CRs and escape sequences), as a new prompt is drawn; not the same prompt redrawn as
    /// the line is edited. `prompt` is taken as a regular expression: plain words,
    /// `>` and spaces match themselves.
    #[track_caller]
    pub fn prompt(&mut self, prompt: &str) -> String {
        let start = self.seen.len();
        let pattern = format!(r"\n(?:\r|\x1b\[[0-9;?]*[A-Za-z])*{prompt}");
        match self.session.expect(Regex(pattern.as_str())) {
            Ok(found) => {
                self.seen.extend_from_slice(found.as_bytes());
                String::from_utf8_lossy(&self.seen[start..]).into_owned()
            }
            Err(e) => self.fail(&format!("waiting for the prompt {prompt:?}: {e}")),
        }
    }

    /// Types `keys`.
    #[track_caller]
    pub fn send(&mut self, keys: &str) {
        if let Err(e) = self.session.send(keys) {
            self.fail(&format!("typing {keys:?}: {e}"));
        }
    }

    /// Types `text` and Enter.
    #[track_caller]
    pub fn line(&mut self, text: &str) {
        self.send(&format!("{text}{ENTER}"));
    }

    /// Waits for the program to end: its exit code, and all the terminal showed.
    #[track_caller]
    pub fn wait(mut self) -> (i32, String) {
        match self.session.expect(Eof) {
            Ok(found) => self.seen.extend_from_slice(found.as_bytes()),
            Err(e) => self.fail(&format!("waiting for the end: {e}")),
        }
        let status = self.session.get_process().wait();
        let seen = self.seen();
        match status {
            Ok(WaitStatus::Exited(_, code)) => (code, seen),
            other => panic!("`{}` did not exit: {other:?}\n{seen}", self.cmdline),
        }
    }

    /// All the terminal has shown so far.
    pub fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        panic!(
            "`{}` at a pseudo-terminal: {what}\n--- the terminal showed ---\n{}\n--- end ---",
            self.cmdline,
            self.seen()
        )
    }
}
