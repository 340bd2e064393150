//! Progress of the message transfer. The session reports the bytes it writes to a
//! [`Progress`]; [`Bar`] draws them on a terminal (bytes, rate, time left) once the
//! message is large enough to be worth watching.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Told of the message's bytes as they are written to the server.
pub trait Progress: Send {
    /// The message begins to go out; `total` is its size on the wire, where known.
    fn start(&mut self, total: Option<u64>);
    /// `bytes` more were written.
    fn advance(&mut self, bytes: u64);
    /// The message is out (`ok`), or its transfer failed.
    fn finish(&mut self, ok: bool);
}

/// Messages smaller than this go without a bar: it would flash and vanish.
pub const THRESHOLD: u64 = 1024 * 1024;

/// A bar on standard error for the transfer of a message of at least `threshold`
/// bytes. Where the size is not known, a byte count and rate appear once that many
/// bytes are out.
pub struct Bar {
    threshold: u64,
    sent: u64,
    total: Option<u64>,
    bar: Option<ProgressBar>,
}

impl Bar {
    pub fn new(threshold: u64) -> Bar {
        Bar {
            threshold,
            sent: 0,
            total: None,
            bar: None,
        }
    }

    fn show(&mut self) {
        let (bar, template) = match self.total {
            Some(total) => (
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                "sending [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            ),
            None => (
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                "sending {bytes} {bytes_per_sec}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_position(self.sent);
        self.bar = Some(bar);
    }
}

impl Progress for Bar {
    fn start(&mut self, total: Option<u64>) {
        self.finish(false);
        self.sent = 0;
        self.total = total;
        if total.is_some_and(|t| t >= self.threshold) {
            self.show();
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.sent += bytes;
        match &self.bar {
            Some(bar) => bar.set_position(self.sent),
            None if self.total.is_none() && self.sent >= self.threshold => self.show(),
            None => {}
        }
    }

    fn finish(&mut self, ok: bool) {
        if let Some(bar) = self.bar.take() {
            if ok {
                bar.finish();
            } else {
                bar.abandon();
            }
        }
    }
}

/// A progress bar where one belongs: standard error is a terminal and the dialogue
/// is not being shown there (`-v`).
pub fn for_terminal(verbose: bool) -> Option<Box<dyn Progress>> {
    (!verbose && std::io::stderr().is_terminal())
        .then(|| Box::new(Bar::new(THRESHOLD)) as Box<dyn Progress>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_messages_get_no_bar() {
        let mut bar = Bar::new(100);
        bar.start(Some(99));
        bar.advance(99);
        assert!(bar.bar.is_none());
        bar.finish(true);
        bar.start(Some(100));
        assert!(bar.bar.is_some());
        bar.finish(true);
        assert!(bar.bar.is_none());
    }

    #[test]
    fn unknown_size_shows_once_past_the_threshold() {
        let mut bar = Bar::new(100);
        bar.start(None);
        bar.advance(60);
        assert!(bar.bar.is_none());
        bar.advance(60);
        assert_eq!(bar.bar.as_ref().map(ProgressBar::position), Some(120));
        bar.finish(false);
    }
}
