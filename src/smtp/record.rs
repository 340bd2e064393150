//! What a session did, as it went: the greeting, the server's name and keywords, AUTH,
//! the extensions the last transaction used, each recipient's reply, the message's
//! size, and how long each phase took. The session keeps it; the client builds its
//! `--json` report from it.

use std::time::{Duration, Instant};

use super::receipt::RecipientResult;

/// A timed part of a session. With pipelining the stages overlap on the wire; each
/// is timed from when the client began it until the next began (or the session
/// ended), so the times add up to the whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Resolving the name and the TCP handshake.
    Connect,
    /// The TLS handshake of implicit TLS (port 465).
    Tls,
    Greeting,
    /// EHLO (or HELO), both times when STARTTLS is used.
    Ehlo,
    /// STARTTLS and its handshake.
    StartTls,
    Auth,
    /// MAIL FROM and the RCPTs.
    Envelope,
    /// DATA or BDAT, the message, and the reply to its end.
    Data,
    Rset,
    Quit,
    /// A command of the tester face (VRFY, ETRN, a typed line).
    Command,
}

impl Phase {
    pub fn key(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Greeting => "greeting",
            Phase::Ehlo => "ehlo",
            Phase::StartTls => "starttls",
            Phase::Auth => "auth",
            Phase::Envelope => "envelope",
            Phase::Data => "data",
            Phase::Rset => "rset",
            Phase::Quit => "quit",
            Phase::Command => "command",
        }
    }
}

/// Time spent in each phase, added up when a phase comes again (EHLO after STARTTLS,
/// several messages over one connection).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    running: Option<(Phase, Instant)>,
    spent: Vec<(Phase, Duration)>,
}

impl Timeline {
    /// Ends the running phase, if any, and starts `phase`.
    pub fn enter(&mut self, phase: Phase) {
        self.stop();
        self.running = Some((phase, Instant::now()));
    }

    /// Ends the running phase, if any.
    pub fn stop(&mut self) {
        if let Some((phase, since)) = self.running.take() {
            self.add(phase, since.elapsed());
        }
    }

    pub fn add(&mut self, phase: Phase, took: Duration) {
        match self.spent.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, total)) => *total += took,
            None => self.spent.push((phase, took)),
        }
    }

    /// Each phase that ran, in the order first begun, with its time (the running one
    /// counted up to now).
    pub fn spent(&self) -> Vec<(Phase, Duration)> {
        let mut spent = self.spent.clone();
        if let Some((phase, since)) = self.running {
            match spent.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, total)) => *total += since.elapsed(),
                None => spent.push((phase, since.elapsed())),
            }
        }
        spent
    }

    pub fn get(&self, phase: Phase) -> Option<Duration> {
        self.spent()
            .into_iter()
            .find_map(|(p, d)| (p == phase).then_some(d))
    }
}

/// What the session has done so far.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// The text of the greeting's first line.
    pub greeting: Option<String>,
    /// The name the server gave in its EHLO reply.
    pub server_name: Option<String>,
    /// The EHLO keywords, in the server's order.
    pub offered: Vec<String>,
    /// The SASL mechanism, when AUTH was done.
    pub auth: Option<String>,
    /// The extensions the last transaction used (PIPELINING, CHUNKING, SIZE, ...).
    pub used: Vec<&'static str>,
    /// Every recipient of the last transaction the server answered, in order.
    pub recipients: Vec<RecipientResult>,
    /// The last message's bytes and lines, as taken from the sender (before CRLF
    /// and dot-stuffing).
    pub message: Option<(u64, u64)>,
    pub timeline: Timeline,
}

impl Record {
    /// A new transaction: what the last one did is forgotten.
    pub fn begin_transaction(&mut self) {
        self.used.clear();
        self.recipients.clear();
        self.message = None;
    }

    pub fn uses(&mut self, extension: &'static str) {
        if !self.used.contains(&extension) {
            self.used.push(extension);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_adds_up_repeated_phases() {
        let mut t = Timeline::default();
        t.add(Phase::Ehlo, Duration::from_millis(2));
        t.enter(Phase::StartTls);
        t.enter(Phase::Ehlo);
        t.stop();
        t.add(Phase::Ehlo, Duration::from_millis(3));
        let spent = t.spent();
        assert_eq!(
            spent.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            [Phase::Ehlo, Phase::StartTls]
        );
        assert!(t.get(Phase::Ehlo).unwrap() >= Duration::from_millis(5));
    }
}
