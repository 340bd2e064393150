//! Standard output and error for what a run says along the way. A message that
//! cannot be shown (standard error on a full disk, a reader that has gone away as
//! `| head` does) must never change what the run did: the message went, or was
//! queued, all the same, and its exit code says so. `eprintln!` and `println!`
//! panic on such an error (Rust ignores SIGPIPE, so a closed pipe is an EPIPE
//! error), so the faces write through these instead.

use std::fmt;
use std::io::{self, Write};

/// A line on standard error; a failure to write it is ignored.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cmd::output::line(&mut ::std::io::stderr().lock(), format_args!($($arg)*))
    };
}

/// A line on standard output; a failure to write it is ignored.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cmd::output::line(&mut ::std::io::stdout().lock(), format_args!($($arg)*))
    };
}

pub(crate) use {out, say};

/// Writes `args` and a newline to `w` and flushes it, ignoring any failure: see the
/// module's comment for why.
pub fn line(w: &mut impl Write, args: fmt::Arguments<'_>) {
    let _ = w.write_fmt(args).and_then(|()| w.write_all(b"\n"));
    let _ = w.flush();
}

/// Writes `text` to standard output, for a command whose output is what it was
/// asked for (`queue list`). A reader that stopped early (`| head`) wanted no more,
/// which is no failure; any other error is returned, for the exit code to say.
pub fn stdout_text(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails every write, as standard error on a full disk does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(28))
        }
    }

    #[test]
    fn a_line_to_an_unwritable_stream_is_dropped_without_a_panic() {
        line(&mut Full, format_args!("outbox: {}", "lost"));
        let mut ok = Vec::new();
        line(&mut ok, format_args!("outbox: {}", 1));
        assert_eq!(ok, b"outbox: 1\n");
    }
}
