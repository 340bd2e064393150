//! The entry format: one file per message, as in nullmailer's queue and Postfix's.
//!
//! Its first line is `outbox-queue 3 N`, then come N bytes of envelope (delivery
//! marks, sender, recipients still to do, created, attempts, last error, next attempt,
//! size), then the message byte for byte as it will be sent. Format 2 is the same
//! without the marks; this code reads both and writes 3.
//!
//! One file makes each step one system call: an entry appears, changes and disappears
//! by one `rename(2)`; its lock is an flock(2) on the file itself; and removing a
//! delivered entry frees one file, where a directory of files cost four unlinks
//! (which, on a filesystem that discards freed blocks, cost more than sending the
//! message).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::marks::{self, Marks};
use crate::envelope::{Address, Envelope};
use crate::error::Error;
use crate::smtp::dsn::Dsn;

/// What an entry's first line begins with.
const MAGIC: &str = "outbox-queue";
/// The entry format this code writes. Format 3 added the delivery marks; an older
/// outbox, which would not heed them, refuses it rather than send a second copy.
const FORMAT: u32 = 3;
/// The oldest format this code reads (format 2: no marks).
const OLDEST_FORMAT: u32 = 2;
/// The longest first line: the magic, the format and the envelope's length.
const MAX_FIRST_LINE: usize = 64;
/// The longest envelope taken (a recipient list that long is not ours).
const MAX_ENVELOPE: usize = 4 * 1024 * 1024;
/// Bytes read at once from the start of an entry: the envelope, and the message too
/// when it is small.
pub(super) const HEAD_READ: usize = 64 * 1024;

/// What the envelope of an entry says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// `None`: the null sender `<>`.
    pub from: Option<String>,
    /// Still to be delivered; never empty.
    pub recipients: Vec<String>,
    pub created: SystemTime,
    /// Failed attempts from the queue.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt: SystemTime,
    /// Length of the message in bytes.
    pub size: u64,
    /// What the submission asked of delivery status notifications (RFC 3461: RET,
    /// NOTIFY, ENVID): the bounce a failure gets follows it.
    pub dsn: Dsn,
    /// In `failed`: what became of the bounce ("sent as …", "queued as …", "none: …").
    pub bounce: Option<String>,
    /// Whose settings carry it, when not its sender's (a bounce: the reported
    /// message's sender).
    pub via: Option<String>,
    /// One of outbox's notices to `bounce_to`: its failure is told to nobody.
    pub notice: bool,
    /// In the system queue: the uid of the local user who submitted it, as the
    /// kernel recorded it (the drop's owner); `None` in a personal queue, whose
    /// owner is the submitter.
    pub uid: Option<u32>,
}

impl Entry {
    pub fn is_due(&self, now: SystemTime) -> bool {
        self.next_attempt <= now
    }

    /// How long ago it was queued (zero if `now` is earlier).
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.created).unwrap_or_default()
    }

    /// The envelope to deliver it with.
    pub fn envelope(&self) -> Result<Envelope, Error> {
        let bad =
            |e: crate::envelope::AddressError| Error::Data(format!("queue entry {}: {e}", self.id));
        let from = self
            .from
            .as_deref()
            .map(Address::new)
            .transpose()
            .map_err(bad)?;
        let to = self
            .recipients
            .iter()
            .map(|r| Address::new(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        Ok(Envelope::new(from, to))
    }
}

/// The envelope. Times are seconds since the epoch; `from = ""` is the null sender,
/// so that a lost key is an error rather than a silent `<>`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct EnvelopeFile {
    /// The delivery marks: written by [`EnvelopeFile::head`] as the first line, where
    /// they can be overwritten in place.
    #[serde(default, skip_serializing)]
    done: Option<String>,
    from: String,
    recipients: Vec<String>,
    created: u64,
    attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    next_attempt: u64,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notify: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    envid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bounce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    via: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    notice: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
}

impl EnvelopeFile {
    pub(super) fn of(entry: &Entry) -> EnvelopeFile {
        EnvelopeFile {
            done: None,
            from: entry.from.clone().unwrap_or_default(),
            recipients: entry.recipients.clone(),
            created: secs(entry.created),
            attempts: entry.attempts,
            last_error: entry.last_error.clone(),
            next_attempt: secs(entry.next_attempt),
            size: entry.size,
            ret: entry.dsn.ret.clone(),
            notify: entry.dsn.notify.clone(),
            envid: entry.dsn.envid.clone(),
            bounce: entry.bounce.clone(),
            via: entry.via.clone(),
            notice: entry.notice,
            uid: entry.uid,
        }
    }

    /// The head of an entry file: its first line and the envelope, whose own first
    /// line is the delivery marks, none settled.
    pub(super) fn head(&self) -> Result<Vec<u8>, Error> {
        let toml = toml::to_string(self).map_err(|e| Error::LocalIo {
            context: "cannot write a queue envelope".into(),
            source: io::Error::other(e),
        })?;
        let text = marks::fresh_line(self.recipients.len()) + &toml;
        let mut head = format!("{MAGIC} {FORMAT} {}\n", text.len()).into_bytes();
        head.extend_from_slice(text.as_bytes());
        Ok(head)
    }

    /// The entry it describes, with every address checked, since they go into SMTP
    /// commands.
    fn into_entry(self, id: &str) -> Result<Entry, String> {
        let from = if self.from.is_empty() {
            None
        } else {
            Address::new(&self.from).map_err(|e| format!("the sender: {e}"))?;
            Some(self.from)
        };
        if self.recipients.is_empty() {
            return Err("the envelope has no recipient".into());
        }
        for r in &self.recipients {
            Address::new(r).map_err(|e| format!("a recipient: {e}"))?;
        }
        let time = |s: u64| {
            UNIX_EPOCH
                .checked_add(Duration::from_secs(s))
                .ok_or_else(|| format!("the time {s} is out of range"))
        };
        let dsn = Dsn::checked(self.ret, self.notify, self.envid)?;
        // Only outbox's own bounces (from <>) go over another sender's account or
        // are notices: on a message with a sender these would be a forgery.
        if (self.via.is_some() || self.notice) && from.is_some() {
            return Err("via and notice belong to a bounce, which has no sender".into());
        }
        if let Some(via) = &self.via {
            Address::new(via).map_err(|e| format!("the account's sender (via): {e}"))?;
        }
        Ok(Entry {
            id: id.to_owned(),
            from,
            recipients: self.recipients,
            created: time(self.created)?,
            attempts: self.attempts,
            last_error: self.last_error,
            next_attempt: time(self.next_attempt)?,
            size: self.size,
            dsn,
            bounce: self.bounce,
            via: self.via,
            notice: self.notice,
            uid: self.uid,
        })
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Why an entry could not be read.
pub(super) enum Unreadable {
    /// It was moved or removed while we looked: not a problem, just not there.
    Gone,
    /// Every recipient is marked settled: only its removal failed.
    Settled,
    Corrupt(String),
}

/// An entry as read from its file.
pub(super) struct Loaded {
    /// With the recipients still to do.
    pub(super) entry: Entry,
    pub(super) marks: Marks,
    /// The place of each of `entry.recipients` in the envelope's list (and marks).
    pub(super) places: Vec<usize>,
    /// Where the message begins in the file.
    pub(super) start: u64,
    /// The message, when it was read along with the envelope.
    pub(super) message: Option<Vec<u8>>,
}

/// Reads and checks the entry open as `file`. With `message`, a message small enough
/// comes along, read in the same system call as the envelope.
pub(super) fn read_entry(
    file: &File,
    meta: &fs::Metadata,
    id: &str,
    message: bool,
) -> Result<Loaded, Unreadable> {
    let unreadable = |e: io::Error| Unreadable::Corrupt(format!("cannot read it: {e}"));
    if meta.is_dir() {
        return Err(Unreadable::Corrupt(
            "it is a directory, not a queue file".into(),
        ));
    }
    let len = meta.len();
    let first = if message { HEAD_READ } else { 4096 };
    let mut head = vec![0u8; usize::try_from(len).map_or(first, |l| l.min(first))];
    file.read_exact_at(&mut head, 0).map_err(unreadable)?;
    let (start, envelope_len) = parse_first_line(&head).map_err(Unreadable::Corrupt)?;
    let end = start + envelope_len;
    if head.len() < end {
        if len < end as u64 {
            return Err(Unreadable::Corrupt("its envelope is cut short".into()));
        }
        let have = head.len();
        head.resize(end, 0);
        file.read_exact_at(&mut head[have..], have as u64)
            .map_err(unreadable)?;
    }
    let text = std::str::from_utf8(&head[start..end])
        .map_err(|_| Unreadable::Corrupt("its envelope is not UTF-8".into()))?;
    let envelope: EnvelopeFile = toml::from_str(text).map_err(|e| {
        Unreadable::Corrupt(format!("its envelope is not valid: {}", e.message().trim()))
    })?;
    let marks = Marks::read(
        envelope.done.as_deref(),
        envelope.recipients.len(),
        text,
        start as u64,
    )
    .map_err(Unreadable::Corrupt)?;
    let mut entry = envelope.into_entry(id).map_err(Unreadable::Corrupt)?;
    let places = marks.todo();
    if places.is_empty() {
        return Err(Unreadable::Settled);
    }
    entry.recipients = places
        .iter()
        .filter_map(|&i| entry.recipients.get(i).cloned())
        .collect();
    let size = len - end as u64;
    if size != entry.size {
        return Err(Unreadable::Corrupt(format!(
            "its message has {size} bytes, its envelope says {}",
            entry.size
        )));
    }
    let message = (message && head.len() as u64 == len).then(|| head.split_off(end));
    Ok(Loaded {
        entry,
        marks,
        places,
        start: end as u64,
        message,
    })
}

/// `outbox-queue 2 N\n`: where the envelope begins, and its length N.
fn parse_first_line(head: &[u8]) -> Result<(usize, usize), String> {
    let not_ours = || "it is not a queue file of this outbox".to_owned();
    let nl = head
        .iter()
        .take(MAX_FIRST_LINE)
        .position(|&b| b == b'\n')
        .ok_or_else(not_ours)?;
    let line = std::str::from_utf8(&head[..nl]).map_err(|_| not_ours())?;
    let mut words = line.split(' ');
    if words.next() != Some(MAGIC) {
        return Err(not_ours());
    }
    let format: u32 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(not_ours)?;
    if !(OLDEST_FORMAT..=FORMAT).contains(&format) {
        return Err(format!(
            "it has format {format}; this outbox reads formats {OLDEST_FORMAT} to {FORMAT}"
        ));
    }
    let len: usize = words
        .next()
        .and_then(|w| w.parse().ok())
        .filter(|&n| n <= MAX_ENVELOPE)
        .ok_or_else(not_ours)?;
    if words.next().is_some() {
        return Err(not_ours());
    }
    Ok((nl + 1, len))
}

pub(super) fn corrupt(id: &str, problem: String) -> Error {
    Error::LocalIo {
        context: format!("queue entry {id} is corrupt"),
        source: io::Error::new(io::ErrorKind::InvalidData, problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Listed;
    use crate::queue::testing::*;

    #[test]
    fn corrupt_entries_are_listed_as_such_and_do_not_stop_the_others() {
        let t = TempDir::new();
        let q = t.queue();
        let good = enqueue_to(&q, &["a@example.test"], at(T0 + 5));
        let head = |id: &str| {
            let bytes = fs::read(q.dir().join(id)).unwrap();
            let text = String::from_utf8(bytes).unwrap();
            let body = text.find("Subject").unwrap();
            (text[..body].to_owned(), text[body..].to_owned())
        };
        // The envelope's length in the first line is kept right, to reach the TOML.
        let with_envelope = |id: &str, toml: &str| {
            let (_, body) = head(id);
            let text = format!("{MAGIC} {FORMAT} {}\n{toml}{body}", toml.len());
            fs::write(q.dir().join(id), text).unwrap();
        };
        let garbage = enqueue_to(&q, &["a@example.test"], at(T0 + 1));
        with_envelope(&garbage, "from = [[[\n");
        let not_ours = enqueue_to(&q, &["a@example.test"], at(T0 + 2));
        fs::write(q.dir().join(&not_ours), "Subject: x\r\n\r\nbody\r\n").unwrap();
        let truncated = enqueue_to(&q, &["a@example.test"], at(T0 + 3));
        let (first, _) = head(&truncated);
        fs::write(q.dir().join(&truncated), format!("{first}Subj")).unwrap();
        let bad_rcpt = enqueue_to(&q, &["a@example.test"], at(T0 + 4));
        let (first, _) = head(&bad_rcpt);
        let toml = first.split_once('\n').unwrap().1;
        with_envelope(&bad_rcpt, &toml.replace("a@example.test", "a@x\\r\\nRSET"));
        let cut = format!("{T0}.000000.0000000e");
        fs::write(q.dir().join(&cut), format!("{MAGIC} {FORMAT} 500\nfrom = ")).unwrap();
        let future = format!("{T0}.000000.0000000f");
        fs::write(
            q.dir().join(&future),
            format!("{MAGIC} 4 10\nfrom = \"\"\n"),
        )
        .unwrap();
        let dir = format!("{T0}.000000.00000000");
        fs::create_dir(q.dir().join(&dir)).unwrap();
        fs::write(q.dir().join(&dir).join("message"), "x").unwrap();
        let empty = format!("{T0}.000000.00000001");
        fs::write(q.dir().join(&empty), "").unwrap();
        // Not named like an entry: not one.
        fs::create_dir(q.dir().join(".hidden")).unwrap();

        let listed = q.list().unwrap();
        let problem = |id: &str| match listed.iter().find(|l| l.id() == id) {
            Some(Listed::Corrupt { problem, .. }) => problem.clone(),
            other => panic!("{id}: {other:?}"),
        };
        assert!(problem(&garbage).starts_with("its envelope is not valid"));
        assert_eq!(problem(&not_ours), "it is not a queue file of this outbox");
        assert_eq!(
            problem(&truncated),
            "its message has 4 bytes, its envelope says 20"
        );
        assert!(problem(&bad_rcpt).contains("control character"));
        assert_eq!(problem(&cut), "its envelope is cut short");
        assert_eq!(
            problem(&future),
            "it has format 4; this outbox reads formats 2 to 3"
        );
        assert_eq!(problem(&dir), "it is a directory, not a queue file");
        assert_eq!(problem(&empty), "it is not a queue file of this outbox");
        assert_eq!(listed.len(), 9);
        assert!(matches!(listed.last(), Some(Listed::Entry(e)) if e.id == good));

        let err = q.lock(&garbage).unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
        // Corrupt entries can be removed.
        for id in [&garbage, &not_ours, &dir, &empty] {
            q.remove(id).unwrap();
        }
        assert_eq!(q.list().unwrap().len(), 5);
    }

    /// An entry of format 2 (before the marks) is read as before; marking it records
    /// nothing in its file, and its next envelope has marks.
    #[test]
    fn format_2_entries_are_read_and_get_marks_when_rewritten() {
        let t = TempDir::new();
        let q = t.queue();
        let id = enqueue_to(&q, &["a@example.test", "b@example.test"], at(T0));
        let path = q.dir().join(&id);
        let text = lossy(&fs::read(&path).unwrap());
        let (first, rest) = text.split_once('\n').unwrap();
        let (_, rest) = rest.split_once('\n').unwrap();
        let len: usize = first.rsplit(' ').next().unwrap().parse().unwrap();
        let old_len = len - "done = \"--\"\n".len();
        fs::write(&path, format!("{MAGIC} 2 {old_len}\n{rest}")).unwrap();
        let old = fs::read(&path).unwrap();

        let mut locked = q.lock(&id).unwrap().unwrap();
        assert_eq!(locked.entry().recipients.len(), 2);
        locked.settle_in_place(&[addr("a@example.test")]).unwrap();
        assert_eq!(locked.entry().recipients, ["b@example.test"]);
        drop(locked);
        assert_eq!(fs::read(&path).unwrap(), old);

        q.lock(&id)
            .unwrap()
            .unwrap()
            .retry_later(&["b@example.test".into()], "451", at(T0))
            .unwrap();
        let new = lossy(&fs::read(&path).unwrap());
        assert!(new.starts_with(&format!("{MAGIC} 3 ")), "{new}");
        assert_eq!(entries(q.list().unwrap())[0].recipients, ["b@example.test"]);
    }
}
