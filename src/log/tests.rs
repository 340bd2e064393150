use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::envelope::Address;

/// A directory of its own for one test, removed at the end.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "outbox-log-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a test's log puts its warnings.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<u8>>>);

impl Warnings {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Warnings {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn log_with_warnings(target: Target) -> (Log, Warnings) {
    let warnings = Warnings::default();
    (
        Log::with_warnings(target, Box::new(warnings.clone())),
        warnings,
    )
}

fn line(status: Status, to: &str) -> Line {
    Line {
        id: "Q1".into(),
        queued_as: None,
        uid: 1000,
        user: Some("alice".into()),
        from: Some(Address::new("alice@example.test").unwrap()),
        to: vec![Address::new(to).unwrap()],
        server: "localhost:25".into(),
        peer: Some("127.0.0.1:25".into()),
        tls: None,
        auth: None,
        size: 300,
        delay: Duration::from_millis(1500),
        status,
        dsn: Some("2.0.0".into()),
        reply: "250 2.0.0 Ok".into(),
        notes: Vec::new(),
    }
}

/// Whether `stamp` has the shape of `Mmm dd hh:mm:ss` (the day padded with a space).
fn is_syslog_stamp(stamp: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = stamp.as_bytes();
    stamp.len() == 15
        && MONTHS.contains(&&stamp[..3])
        && b[3] == b' '
        && (b[4] == b' ' || (b'1'..=b'3').contains(&b[4]))
        && b[5].is_ascii_digit()
        && b[6] == b' '
        && [7, 8, 10, 11, 13, 14]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
        && b[9] == b':'
        && b[12] == b':'
}

#[test]
fn syslog_gets_one_datagram_per_line_as_syslog_3_sends_it() {
    let dir = TempDir::new("syslog");
    let path = dir.path().join("log");
    let server = UnixDatagram::bind(&path).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (log, warnings) = log_with_warnings(Target::Syslog(path.clone()));
    let sent = line(Status::Sent, "bob@example.test");
    let bounced = line(Status::Bounced, "carol@example.test");
    log.write(&sent);
    log.write(&bounced);
    let pid = std::process::id();
    for (line, pri) in [(&sent, "<22>"), (&bounced, "<20>")] {
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        let rest = got.strip_prefix(pri).unwrap_or_else(|| panic!("{got}"));
        let (stamp, rest) = rest.split_at(15);
        assert!(is_syslog_stamp(stamp), "{got}");
        assert_eq!(rest, format!(" outbox[{pid}]: {}", line.texts()[0]));
    }
    assert_eq!(warnings.text(), "");
}

#[test]
fn the_syslog_stamp_shape_is_checked() {
    assert!(is_syslog_stamp("Dec  1 22:40:00"));
    assert!(is_syslog_stamp("Jan 31 01:02:03"));
    for bad in [
        "Dec 01 22:40:00x",
        "Dez  1 22:40:00",
        "Dec  1 22-40-00",
        "2026-12-01T22:4",
    ] {
        assert!(!is_syslog_stamp(bad), "{bad}");
    }
}

#[test]
fn no_syslog_daemon_is_said_once_and_the_write_returns() {
    let dir = TempDir::new("nodaemon");
    let path = dir.path().join("log");
    let (log, warnings) = log_with_warnings(Target::Syslog(path.clone()));
    log.write(&line(Status::Sent, "bob@example.test"));
    let first = warnings.text();
    assert_eq!(
        first,
        format!(
            "outbox: warning: cannot write the log to syslog ({}): No such file or \
             directory (os error 2); mail goes on\n",
            path.display()
        )
    );
    log.write(&line(Status::Sent, "bob@example.test"));
    assert_eq!(warnings.text(), first);
    // Later lines are tried again: a daemon that comes up gets them.
    let server = UnixDatagram::bind(&path).unwrap();
    server.set_nonblocking(true).unwrap();
    log.write(&line(Status::Deferred, "bob@example.test"));
    let mut buf = [0u8; 4096];
    let n = server.recv(&mut buf).unwrap();
    assert!(
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .contains("status=deferred")
    );
    assert_eq!(warnings.text(), first);
}

#[test]
fn a_syslog_daemon_that_restarted_gets_the_next_line() {
    let dir = TempDir::new("restart");
    let path = dir.path().join("log");
    let (log, warnings) = log_with_warnings(Target::Syslog(path.clone()));
    let first = UnixDatagram::bind(&path).unwrap();
    log.write(&line(Status::Sent, "bob@example.test"));
    drop(first);
    std::fs::remove_file(&path).unwrap();
    let second = UnixDatagram::bind(&path).unwrap();
    second.set_nonblocking(true).unwrap();
    log.write(&line(Status::Sent, "carol@example.test"));
    let mut buf = [0u8; 4096];
    let n = second.recv(&mut buf).unwrap();
    assert!(std::str::from_utf8(&buf[..n]).unwrap().contains("carol@"));
    assert_eq!(warnings.text(), "");
}

#[test]
fn a_full_syslog_queue_drops_lines_and_never_blocks() {
    let dir = TempDir::new("full");
    let path = dir.path().join("log");
    // Bound and never read: its queue fills after a few hundred datagrams.
    let _server = UnixDatagram::bind(&path).unwrap();
    let (log, warnings) = log_with_warnings(Target::Syslog(path.clone()));
    let (done, finished) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        for _ in 0..5000 {
            log.write(&line(Status::Sent, "bob@example.test"));
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("5000 writes to a full socket finish without waiting");
    writer.join().unwrap();
    let text = warnings.text();
    assert_eq!(text.matches("warning").count(), 1, "{text}");
    assert!(text.contains("queue is full"), "{text}");
}

#[test]
fn a_file_gets_the_lines_appended() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("file");
    let path = dir.path().join("outbox.log");
    std::fs::write(&path, "earlier\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (log, warnings) = log_with_warnings(Target::File(path.clone()));
    let mut many = line(Status::Sent, "bob@example.test");
    many.to = (0..200)
        .map(|i| Address::new(&format!("user{i:03}@long-domain.example.test")).unwrap())
        .collect();
    log.write(&line(Status::Sent, "bob@example.test"));
    log.write(&many);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "earlier");
    let expected: Vec<String> =
        [line(Status::Sent, "bob@example.test").texts(), many.texts()].concat();
    assert!(expected.len() > 2);
    assert_eq!(lines.len(), 1 + expected.len());
    let pid = std::process::id();
    for (got, text) in lines[1..].iter().zip(&expected) {
        let (stamp, rest) = got.split_once(' ').unwrap();
        assert!(
            jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%:z", stamp).is_ok(),
            "{got}"
        );
        assert_eq!(
            stamp.len(),
            "2026-12-01T22:40:00.123456+01:00".len(),
            "{got}"
        );
        assert_eq!(rest, format!("outbox[{pid}]: {text}"));
    }
    // An existing file keeps its mode; a new one is made 0640.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    let fresh = dir.path().join("fresh.log");
    Log::new(Target::File(fresh.clone())).write(&line(Status::Sent, "bob@example.test"));
    assert_eq!(mode(&fresh), 0o640);
    assert_eq!(warnings.text(), "");
}

#[test]
fn writers_at_the_same_time_never_mix_within_a_line() {
    let dir = TempDir::new("concurrent");
    let path = dir.path().join("outbox.log");
    // Half the threads share a log, as a flush's threads would; the others have a log
    // each, as separate processes would.
    let shared = Arc::new(Log::new(Target::File(path.clone())));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let path = path.clone();
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let log = if t % 2 == 0 {
                    shared
                } else {
                    Arc::new(Log::new(Target::File(path)))
                };
                let mut one = line(Status::Sent, "bob@example.test");
                one.id = format!("T{t}");
                one.reply = format!("250 {}", t.to_string().repeat(1500));
                for _ in 0..100 {
                    log.write(&one);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 800);
    for got in lines {
        let (_, rest) = got.split_once(" id=T").unwrap();
        let t = &rest[..1];
        let mut one = line(Status::Sent, "bob@example.test");
        one.id = format!("T{t}");
        one.reply = format!("250 {}", t.repeat(1500));
        assert!(got.ends_with(&one.texts()[0]), "{got}");
    }
}

#[test]
fn an_unwritable_file_is_said_once_and_the_write_returns() {
    let dir = TempDir::new("unwritable");
    // A directory where the file would be: it cannot be opened for writing, as root
    // too (a permission test would pass as root).
    let path = dir.path().join("is-a-directory");
    std::fs::create_dir(&path).unwrap();
    let (log, warnings) = log_with_warnings(Target::File(path.clone()));
    log.write(&line(Status::Sent, "bob@example.test"));
    log.write(&line(Status::Bounced, "bob@example.test"));
    assert_eq!(
        warnings.text(),
        format!(
            "outbox: warning: cannot write the log to {}: Is a directory (os error 21); \
             mail goes on\n",
            path.display()
        )
    );
    // A full disk is the same: /dev/full fails every write.
    let (log, warnings) = log_with_warnings(Target::File("/dev/full".into()));
    log.write(&line(Status::Sent, "bob@example.test"));
    log.write(&line(Status::Sent, "bob@example.test"));
    let text = warnings.text();
    assert_eq!(text.matches("warning").count(), 1, "{text}");
    assert!(text.contains("No space left on device"), "{text}");
}

#[test]
fn a_named_pipe_with_no_reader_is_said_once_and_never_waited_for() {
    let dir = TempDir::new("fifo");
    let path = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let (log, warnings) = log_with_warnings(Target::File(path.clone()));
    let (done, finished) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        log.write(&line(Status::Sent, "bob@example.test"));
        log.write(&line(Status::Sent, "bob@example.test"));
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("a pipe nobody reads does not hold up the write");
    writer.join().unwrap();
    assert_eq!(
        warnings.text(),
        format!(
            "outbox: warning: cannot write the log to {}: No such device or address \
             (os error 6); mail goes on\n",
            path.display()
        )
    );
}

#[test]
fn nowhere_writes_nothing_and_warns_of_nothing() {
    let (log, warnings) = log_with_warnings(Target::None);
    log.write(&line(Status::Sent, "bob@example.test"));
    assert_eq!(warnings.text(), "");
    assert_eq!(format!("{:?}", Log::none()), "Log { target: None }");
}

#[test]
fn the_local_user_is_the_real_one_with_its_name() {
    let (uid, name) = local_user();
    // Checked against what the kernel and id(1) say, not against the same lookup.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let real: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap();
    assert_eq!(uid, real);
    let id = std::process::Command::new("id").arg("-un").output().unwrap();
    let login = String::from_utf8(id.stdout).unwrap();
    assert_eq!(name.as_deref(), Some(login.trim()));
}
