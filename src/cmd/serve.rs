//! `outbox serve`: system mode's delivery service. It takes each drop from the spool
//! into the system queue as soon as it appears, delivers with the queue's flush (one
//! connection per server, pipelined), retries with its back-off, bounces and logs.
//!
//! - **Waking:** inotify on the drop directory (a drop appears by rename(2):
//!   `IN_MOVED_TO`), else a poll every [`POLL`]; and the next retry's time.
//! - **Signals:** SIGTERM and SIGINT finish the message on the wire and stop; SIGHUP
//!   reads the configuration again; SIGUSR1 tries every queued message now, whatever
//!   its back-off (the relay is back), as `postqueue -f` asks of Postfix. A handler only sets a flag and writes to a pipe
//!   the wait watches (signal-hook), so nothing is done inside a handler.
//! - **Crashes:** nothing is lost at any point: a drop is removed only once its queue
//!   entry is on disk, and an entry only once the server took it. A drop taken again
//!   after a crash finds its entry (the same id) and is not queued twice.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use clap::Parser;
use rustix::event::{PollFd, PollFlags};
use rustix::fs::inotify;

use outbox::log::Target;
use outbox::queue::Pick;
use outbox::spool::Spool;
use outbox::{Error, exit};

use super::intake::Service;
use super::output::say;

/// How often the drop directory is looked at where inotify cannot watch it.
const POLL: Duration = Duration::from_millis(500);
/// The shortest wait for an entry's next attempt; drops wake the service at once
/// whatever the wait.
const SHORTEST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait with inotify: a `.tmp` whose writer died is taken once it is
/// stale, which no event announces.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// The delivery service of system mode.
#[derive(Parser, Debug)]
#[command(name = "outbox serve")]
struct ServeCli {
    /// The system spool [default: $OUTBOX_SPOOL, else /var/spool/outbox]
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// Where the log goes: syslog, stderr (for a container), none, or a file
    /// [default: the configuration's `log`, else syslog]
    #[arg(long, value_name = "TARGET")]
    log: Option<String>,
    /// Show each SMTP dialogue on standard error
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Take what waits, deliver what is due, and stop
    #[arg(long)]
    once: bool,
}

/// The command's clap definition, named as a subcommand of `outbox`, for the man
/// page and the completions.
pub fn command() -> clap::Command {
    <ServeCli as clap::CommandFactory>::command().name("serve")
}

pub fn run(args: &[OsString]) -> anyhow::Result<u8> {
    let cli: ServeCli = match super::parse_subcommand("outbox serve", args) {
        Ok(cli) => cli,
        Err(code) => return Ok(code),
    };
    let spool = Spool::at(cli.spool.clone().unwrap_or_else(Spool::default_root));
    // Before any thread starts: the switch is made per thread.
    super::system_queue::become_service(&spool)?;
    let log = cli
        .log
        .as_deref()
        .map(|v| Target::parse(v, None).map_err(|e| Error::Usage(format!("--log: {e}"))))
        .transpose()?;
    // Before anything that takes time: SIGHUP's and SIGUSR1's default is to kill.
    let signals = Signals::register()?;
    let mut service = Service::start(spool, log.clone(), cli.verbose)?;
    if cli.once {
        while service.pass(None, Pick::Due).more {}
        return Ok(exit::OK);
    }
    let watch = watch(&service);
    say!(
        "outbox: serving the spool {} (drops seen by {})",
        service.spool().root().display(),
        if watch.is_some() {
            "inotify"
        } else {
            "polling"
        }
    );
    loop {
        if signals.hup.swap(false, Ordering::Relaxed) {
            match service.reload(log.clone()) {
                Ok(()) => say!("outbox: the configuration was read again"),
                Err(e) => say!("outbox: the configuration was not read again: {e}"),
            }
        }
        if let Some(fd) = &watch {
            drain(fd);
        }
        let pick = if signals.usr1.swap(false, Ordering::Relaxed) {
            Pick::Everything
        } else {
            Pick::Due
        };
        let pass = service.pass(Some(&signals.stop), pick);
        if signals.stop.load(Ordering::Relaxed) {
            break;
        }
        let longest = if watch.is_some() { LONGEST_WAIT } else { POLL };
        // An entry still due after a pass was not taken (another flush holds it, or
        // its settings cannot be made): it is looked at again after SHORTEST_WAIT,
        // not at once, or the service would spin.
        let wait = if pass.more {
            Duration::ZERO
        } else {
            pass.next
                .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
                .map_or(longest, |d| d.max(SHORTEST_WAIT).min(longest))
        };
        wait_for(watch.as_ref(), &signals.wake, wait);
        drain(&signals.wake);
    }
    say!("outbox: stopped; what was not delivered waits in the queue");
    Ok(exit::OK)
}

/// The flags the signals set, and the pipe they write to, to end the wait.
struct Signals {
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
    wake: OwnedFd,
}

impl Signals {
    fn register() -> Result<Signals, Error> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
        let fail = |e: std::io::Error| Error::LocalIo {
            context: "cannot handle signals".into(),
            source: e,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        let usr1 = Arc::new(AtomicBool::new(false));
        let (wake, writer) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .map_err(|e| fail(e.into()))?;
        // The flag first: the wait, woken by the pipe, then finds it set.
        for signal in [SIGTERM, SIGINT] {
            signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(fail)?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&hup)).map_err(fail)?;
        signal_hook::flag::register(SIGUSR1, Arc::clone(&usr1)).map_err(fail)?;
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGUSR1] {
            let writer = writer.try_clone().map_err(fail)?;
            signal_hook::low_level::pipe::register(signal, writer).map_err(fail)?;
        }
        Ok(Signals {
            stop,
            hup,
            usr1,
            wake,
        })
    }
}

/// An inotify descriptor watching the drop directory for drops renamed into place,
/// or `None` (the service then polls). Only renames: a close(2) in the directory
/// is no drop yet, and any user could wake the service with one at will.
fn watch(service: &Service) -> Option<OwnedFd> {
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
    let maildrop = service.spool().maildrop();
    match inotify::add_watch(&fd, &maildrop, inotify::WatchFlags::MOVED_TO) {
        Ok(_) => Some(fd),
        Err(e) => {
            say!(
                "outbox: cannot watch {} ({e}); looking every {} ms instead",
                maildrop.display(),
                POLL.as_millis()
            );
            None
        }
    }
}

/// Waits until `watch` or `wake` is readable, or `timeout` has passed.
fn wait_for(watch: Option<&OwnedFd>, wake: &OwnedFd, timeout: Duration) {
    let mut fds = vec![PollFd::new(wake, PollFlags::IN)];
    if let Some(fd) = watch {
        fds.push(PollFd::new(fd, PollFlags::IN));
    }
    let timeout = rustix::event::Timespec::try_from(timeout).ok();
    // EINTR (a signal) is one of the ends of the wait.
    let _ = rustix::event::poll(&mut fds, timeout.as_ref());
}

/// Reads what is waiting on a non-blocking descriptor: the events only say that
/// something changed, and the pass that follows looks at everything.
fn drain(fd: &impl AsFd) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = rustix::io::read(fd, &mut buf) {
        if n == 0 {
            break;
        }
    }
}
