//! The drop directory: round trips, and each hostile drop set aside unread.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{FileType, Mode};

use super::*;
use crate::envelope::{Address, Envelope};
use crate::smtp::dsn::Dsn;

/// A drop directory made by [`create_drop_dir`], removed when the test ends.
struct Spool(PathBuf);

impl Spool {
    fn new() -> Spool {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "outbox-spool-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        create_drop_dir(&root.join("maildrop"), None).unwrap();
        Spool(root)
    }

    fn dir(&self) -> PathBuf {
        self.0.join("maildrop")
    }

    /// Where a test keeps files outside the drop directory.
    fn outside(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A pickup that takes the test's own drops (the tests may run as root or not).
    fn pickup(&self) -> Pickup {
        Pickup {
            refuse_owner: None,
            ..Pickup::new(self.dir())
        }
    }

    fn scan(&self) -> Vec<Found> {
        self.pickup().scan(SystemTime::now()).unwrap()
    }

    /// The one drop a scan set aside, checked to be in `bad/` and gone from the
    /// drop directory.
    fn only_set_aside(&self, pickup: &Pickup) -> SetAside {
        let found = pickup.scan(SystemTime::now()).unwrap();
        let [Found::SetAside(aside)] = &found[..] else {
            panic!("expected one set aside, got {found:?}");
        };
        let moved_to = aside.moved_to.as_deref().expect("not moved");
        assert!(
            fs::symlink_metadata(self.dir().join(BAD).join(moved_to)).is_ok(),
            "{aside:?} is not in bad/"
        );
        assert!(fs::symlink_metadata(self.dir().join(&aside.name)).is_err());
        aside.clone()
    }
}

impl std::ops::Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn addr(a: &str) -> Address {
    Address::new(a).unwrap()
}

fn envelope() -> DropEnvelope {
    DropEnvelope {
        envelope: Envelope::new(
            Some(addr("cron@host.example")),
            [addr("ops@example.com"), addr("admin@example.org")],
        ),
        dsn: Dsn {
            notify: Some("FAILURE,DELAY".into()),
            ret: Some("HDRS".into()),
            envid: Some("job-42".into()),
        },
    }
}

/// Every byte value, CRLF and bare LF, lone dots and a line `.end 0 0`: the
/// message comes back exactly, whatever it holds.
fn message() -> Vec<u8> {
    let mut m = b"Subject: report\r\n\r\n.\r\n.end 0 0\n..\nlast".to_vec();
    m.extend(0..=255u8);
    m
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn reason_of(spool: &Spool) -> String {
    spool.only_set_aside(&spool.pickup()).reason
}

#[test]
fn a_drop_comes_back_whole_with_its_owner() {
    let spool = Spool::new();
    let name = drop(&spool.dir(), &envelope(), &message()).unwrap();
    let meta = fs::symlink_metadata(spool.dir().join(&name)).unwrap();
    assert_eq!(meta.mode() & 0o7777, DROP_MODE);
    let found = spool.scan();
    let [Found::Picked(picked)] = &found[..] else {
        panic!("expected one picked, got {found:?}");
    };
    assert_eq!(picked.name, name);
    assert_eq!(picked.envelope, envelope());
    assert_eq!(picked.message, message());
    assert_eq!(picked.uid, rustix::process::geteuid().as_raw());
    // Picking alone keeps it: only done removes it.
    assert_eq!(spool.scan().len(), 1);
    spool.pickup().done(&name).unwrap();
    assert!(spool.scan().is_empty());
    assert!(fs::symlink_metadata(spool.dir().join(&name)).is_err());
}

#[test]
fn the_null_sender_and_no_dsn_come_back_as_such() {
    let spool = Spool::new();
    let bounce = DropEnvelope {
        envelope: Envelope::new(None, [addr("a@example.com")]),
        dsn: Dsn::default(),
    };
    drop(&spool.dir(), &bounce, b"").unwrap();
    let found = spool.scan();
    let [Found::Picked(picked)] = &found[..] else {
        panic!("expected one picked, got {found:?}");
    };
    assert_eq!(picked.envelope, bounce);
    assert!(picked.message.is_empty());
}

#[test]
fn the_uid_is_the_files_owner() {
    if !is_root() {
        eprintln!("skipped: chown to another user needs root");
        return;
    }
    let spool = Spool::new();
    let name = drop(&spool.dir(), &envelope(), &message()).unwrap();
    std::os::unix::fs::chown(spool.dir().join(&name), Some(65534), None).unwrap();
    let found = spool.scan();
    let [Found::Picked(picked)] = &found[..] else {
        panic!("expected one picked, got {found:?}");
    };
    assert_eq!(picked.uid, 65534);
}

#[test]
fn drops_are_taken_oldest_name_first() {
    let spool = Spool::new();
    let names: Vec<String> = (0..3)
        .map(|_| drop(&spool.dir(), &envelope(), &message()).unwrap())
        .collect();
    let picked: Vec<String> = spool
        .scan()
        .into_iter()
        .map(|f| match f {
            Found::Picked(p) => p.name,
            other => panic!("{other:?}"),
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(picked, sorted);
    assert_eq!(names.len(), 3);
}

#[test]
fn a_tmp_being_written_is_never_picked() {
    let spool = Spool::new();
    let whole = encode(&envelope(), &message()).unwrap();
    let tmp = spool.dir().join("0000000001.000000.00000000000000aa.tmp");
    put(&tmp, &whole).unwrap();
    assert!(spool.scan().is_empty());
    assert_eq!(fs::read(&tmp).unwrap(), whole);
}

#[test]
fn a_stale_tmp_is_picked_when_whole_and_set_aside_when_not() {
    let spool = Spool::new();
    let stale = Pickup {
        stale_tmp: Duration::ZERO,
        ..spool.pickup()
    };
    // A whole one: a crash lost its rename, not its content.
    let whole = spool.dir().join("a.tmp");
    put(&whole, encode(&envelope(), &message()).unwrap()).unwrap();
    let found = stale.scan(SystemTime::now()).unwrap();
    let [Found::Picked(picked)] = &found[..] else {
        panic!("expected one picked, got {found:?}");
    };
    assert_eq!(
        (picked.name.as_str(), &picked.message),
        ("a.tmp", &message())
    );
    stale.done("a.tmp").unwrap();
    // A partial one: its writer died.
    let mut partial = encode(&envelope(), &message()).unwrap();
    partial.truncate(partial.len() / 2);
    put(&spool.dir().join("b.tmp"), partial).unwrap();
    let aside = spool.only_set_aside(&stale);
    assert_eq!(aside.name, "b.tmp");
    assert!(aside.reason.contains("cut short"), "{aside:?}");
}

#[test]
fn a_symlink_to_a_private_file_is_set_aside_unread() {
    let spool = Spool::new();
    let secret = spool.outside("shadow");
    fs::write(&secret, "SECRET-HASH-never-to-be-read").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    // An access time older than the modification time: relatime would update it
    // on any read.
    let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(&secret)
        .unwrap()
        .set_times(fs::FileTimes::new().set_accessed(old))
        .unwrap();
    std::os::unix::fs::symlink(&secret, spool.dir().join("evil")).unwrap();
    let found = spool.scan();
    let [Found::SetAside(aside)] = &found[..] else {
        panic!("expected one set aside, got {found:?}");
    };
    assert!(aside.reason.contains("symbolic link"), "{aside:?}");
    assert!(!format!("{found:?}").contains("SECRET"));
    let moved = spool
        .dir()
        .join(BAD)
        .join(aside.moved_to.as_deref().unwrap());
    assert!(
        fs::symlink_metadata(&moved)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // The access time first: reading the content here would change it.
    assert_eq!(fs::metadata(&secret).unwrap().accessed().unwrap(), old);
    assert_eq!(
        fs::read_to_string(&secret).unwrap(),
        "SECRET-HASH-never-to-be-read"
    );
}

#[test]
fn a_fifo_is_set_aside_without_blocking() {
    let spool = Spool::new();
    let dir = rustix::fs::open(
        spool.dir(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    rustix::fs::mknodat(&dir, "fifo", FileType::Fifo, Mode::from_raw_mode(0o640), 0).unwrap();
    let pickup = spool.pickup();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(pickup.scan(SystemTime::now()));
    });
    let found = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the scan blocked on the FIFO")
        .unwrap();
    let [Found::SetAside(aside)] = &found[..] else {
        panic!("expected one set aside, got {found:?}");
    };
    assert!(aside.reason.contains("FIFO"), "{aside:?}");
    let moved = spool.dir().join(BAD).join("fifo");
    assert!(
        fs::symlink_metadata(moved)
            .unwrap()
            .file_type()
            .is_fifo_like()
    );
}

/// `FileTypeExt::is_fifo`, named so that the assertion reads plainly.
trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn a_hard_link_is_set_aside_and_its_target_kept() {
    let spool = Spool::new();
    let original = spool.outside("someone-elses");
    let whole = encode(&envelope(), &message()).unwrap();
    fs::write(&original, &whole).unwrap();
    fs::hard_link(&original, spool.dir().join("linked")).unwrap();
    let reason = reason_of(&spool);
    assert!(reason.contains("2 links"), "{reason}");
    assert_eq!(fs::read(&original).unwrap(), whole);
}

#[test]
fn a_drop_over_the_limit_is_set_aside() {
    let spool = Spool::new();
    drop(&spool.dir(), &envelope(), &[b'x'; 2000]).unwrap();
    let small = Pickup {
        max_size: 1000,
        ..spool.pickup()
    };
    let aside = spool.only_set_aside(&small);
    assert_eq!(aside.reason, "over the size limit of 1000 bytes");
}

#[test]
fn a_truncated_drop_is_set_aside() {
    let spool = Spool::new();
    let name = drop(&spool.dir(), &envelope(), &message()).unwrap();
    let path = spool.dir().join(&name);
    let len = fs::metadata(&path).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let reason = reason_of(&spool);
    assert!(
        reason.contains("trailer") || reason.contains("digest"),
        "{reason}"
    );
}

#[test]
fn a_drop_cut_in_its_message_is_set_aside() {
    let spool = Spool::new();
    let mut bytes = encode(&envelope(), &message()).unwrap();
    bytes.truncate(bytes.len() - 120);
    put(&spool.dir().join("cut"), bytes).unwrap();
    assert_eq!(reason_of(&spool), "cut short in the message");
}

#[test]
fn a_drop_with_a_flipped_byte_is_set_aside() {
    let spool = Spool::new();
    let mut bytes = encode(&envelope(), &message()).unwrap();
    let at = bytes.len() - 150;
    bytes[at] ^= 0x01;
    put(&spool.dir().join("flipped"), bytes).unwrap();
    assert_eq!(
        reason_of(&spool),
        "the digest does not match the content (altered or cut short)"
    );
}

#[test]
fn garbage_is_set_aside() {
    let spool = Spool::new();
    put(&spool.dir().join("junk"), b"GIF89a not a drop\n\x00\xff").unwrap();
    assert_eq!(reason_of(&spool), "not a drop (no outbox-drop line)");
}

#[test]
fn a_forged_recipient_is_set_aside() {
    let spool = Spool::new();
    // A drop written by hand, digest and all, whose recipient would smuggle a
    // command: the addresses are checked as any other's.
    let good = encode(&envelope(), b"x").unwrap();
    let text = String::from_utf8(good).unwrap();
    let toml_start = text.find('\n').unwrap() + 1;
    let toml_len: usize = text[..toml_start - 1]
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let toml = &text[toml_start..toml_start + toml_len];
    let forged = toml.replace("ops@example.com", "a@b\\r\\nRCPT TO:<c@d>");
    let mut bytes = format!("outbox-drop 1 {}\n{forged}x", forged.len()).into_bytes();
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    bytes.extend_from_slice(format!("\n.end 1 {digest}\n").as_bytes());
    put(&spool.dir().join("forged"), bytes).unwrap();
    let reason = reason_of(&spool);
    assert!(reason.starts_with("a recipient:"), "{reason}");
}

use sha2::Digest as _;

#[test]
fn a_device_is_set_aside_unopened() {
    if !is_root() {
        eprintln!("skipped: mknod of a device needs root");
        return;
    }
    let spool = Spool::new();
    let dir = rustix::fs::open(
        spool.dir(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    // /dev/null's numbers: harmless if the code opened it, which it must not.
    let dev = rustix::fs::makedev(1, 3);
    rustix::fs::mknodat(
        &dir,
        "null",
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o640),
        dev,
    )
    .unwrap();
    assert_eq!(reason_of(&spool), "not a regular file: a character device");
}

#[test]
fn a_directory_is_set_aside() {
    let spool = Spool::new();
    fs::create_dir(spool.dir().join("sub")).unwrap();
    assert_eq!(reason_of(&spool), "not a regular file: a directory");
}

#[test]
fn a_drop_owned_by_the_service_is_set_aside() {
    let spool = Spool::new();
    drop(&spool.dir(), &envelope(), &message()).unwrap();
    let service = Pickup {
        refuse_owner: Some(rustix::process::geteuid().as_raw()),
        ..spool.pickup()
    };
    assert_eq!(
        spool.only_set_aside(&service).reason,
        "owned by the service itself"
    );
}

#[test]
fn setting_aside_keeps_an_earlier_one_of_the_same_name() {
    let spool = Spool::new();
    put(&spool.dir().join("junk"), "first").unwrap();
    let moved = |spool: &Spool| spool.only_set_aside(&spool.pickup()).moved_to;
    assert_eq!(moved(&spool).as_deref(), Some("junk"));
    put(&spool.dir().join("junk"), "second").unwrap();
    assert_eq!(moved(&spool).as_deref(), Some("junk.1"));
    let bad = spool.dir().join(BAD);
    assert_eq!(fs::read_to_string(bad.join("junk")).unwrap(), "first");
    assert_eq!(fs::read_to_string(bad.join("junk.1")).unwrap(), "second");
}

#[test]
fn done_refuses_a_name_outside_the_directory() {
    let spool = Spool::new();
    let pickup = spool.pickup();
    for name in ["", ".", "..", "../x", BAD] {
        assert!(pickup.done(name).is_err(), "{name:?}");
    }
    assert!(pickup.done("no-such-drop").is_err());
    assert!(spool.dir().join(BAD).is_dir());
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn create_drop_dir_sets_the_modes_whatever_was_there() {
    let spool = Spool::new();
    let dir = spool.dir();
    assert_eq!(mode_of(&dir), DROP_DIR_MODE);
    assert_eq!(mode_of(&dir.join(BAD)), BAD_MODE);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(dir.join(BAD), fs::Permissions::from_mode(0o755)).unwrap();
    create_drop_dir(&dir, None).unwrap();
    assert_eq!(mode_of(&dir), DROP_DIR_MODE);
    assert_eq!(mode_of(&dir.join(BAD)), BAD_MODE);
}

#[test]
fn create_drop_dir_refuses_a_file() {
    let spool = Spool::new();
    let file = spool.outside("file");
    fs::write(&file, "").unwrap();
    assert!(create_drop_dir(&file, None).is_err());
}

#[test]
fn a_drop_takes_the_directorys_group() {
    if !is_root() {
        eprintln!("skipped: giving the directory another group needs root");
        return;
    }
    let spool = Spool::new();
    let dir = spool.outside("grouped");
    create_drop_dir(&dir, Some(65534)).unwrap();
    let meta = fs::symlink_metadata(&dir).unwrap();
    // chown(2) clears setgid: the mode must be set after the group.
    assert_eq!((meta.gid(), meta.mode() & 0o7777), (65534, DROP_DIR_MODE));
    let name = drop(&dir, &envelope(), &message()).unwrap();
    let drop_meta = fs::symlink_metadata(dir.join(name)).unwrap();
    assert_eq!(
        (drop_meta.gid(), drop_meta.mode() & 0o7777),
        (65534, DROP_MODE)
    );
}

#[test]
fn decode_refuses_what_is_not_one_drop() {
    let whole = encode(&envelope(), b"hi").unwrap();
    let cases: [(&[u8], &str); 4] = [
        (b"", "no first line"),
        (
            b"outbox-drop 2 10\n",
            "an unknown format: \"outbox-drop 2 10\"",
        ),
        (b"outbox-drop 1 99\nfrom", "cut short in the envelope"),
        (
            b"outbox-drop 1 x\n",
            "a bad first line: \"outbox-drop 1 x\"",
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(decode(bytes).unwrap_err(), want);
    }
    let mut extra = whole.clone();
    extra.extend_from_slice(&[b'x'; 200]);
    assert_eq!(decode(&extra).unwrap_err(), "bytes after the message's end");
    let (env, msg) = decode(&whole).unwrap();
    assert_eq!((env, msg), (envelope(), &b"hi"[..]));
}

/// Runs `script` under `sh` as nobody (uid and gid 65534; std drops root's
/// supplementary groups when it sets the uid), and returns whether it succeeded.
fn as_nobody(script: &str) -> bool {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .uid(65534)
        .gid(65534)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn another_user_can_drop_but_not_list_read_or_remove() {
    if !is_root() {
        eprintln!("skipped: acting as another user needs root");
        return;
    }
    let spool = Spool::new();
    // The parent must be searchable for nobody to reach the drop directory.
    fs::set_permissions(&spool.0, fs::Permissions::from_mode(0o711)).unwrap();
    let dir = spool.dir();
    create_drop_dir(&dir, Some(0)).unwrap();
    let name = drop(&dir, &envelope(), &message()).unwrap();
    let d = dir.display();
    assert!(
        !as_nobody(&format!("ls {d}")),
        "nobody listed the directory"
    );
    assert!(!as_nobody(&format!("cat {d}/{name}")), "nobody read a drop");
    assert!(!as_nobody(&format!(
        "rm -f {d}/{name} && test ! -e {d}/{name}"
    )));
    assert!(!as_nobody(&format!("mv {d}/{name} {d}/stolen")));
    assert!(!as_nobody(&format!("echo x >> {d}/{name}")));
    assert!(!as_nobody(&format!("ls {d}/{BAD}")));
    assert_eq!(
        fs::read(dir.join(&name)).unwrap(),
        encode(&envelope(), &message()).unwrap()
    );
    // But nobody may drop, and the drop takes the directory's group.
    assert!(as_nobody(&format!("umask 077; echo x > {d}/mine.tmp")));
    let mine = fs::symlink_metadata(dir.join("mine.tmp")).unwrap();
    assert_eq!((mine.uid(), mine.gid()), (65534, 0));
}

#[test]
fn a_drop_that_cannot_be_moved_is_still_reported() {
    let spool = Spool::new();
    put(&spool.dir().join("junk"), "GIF89a\n").unwrap();
    fs::remove_dir(spool.dir().join(BAD)).unwrap();
    let found = spool.scan();
    let [Found::SetAside(aside)] = &found[..] else {
        panic!("expected one set aside, got {found:?}");
    };
    assert_eq!(aside.moved_to, None);
    assert!(
        aside
            .reason
            .starts_with("not a drop (no outbox-drop line); not moved: cannot open"),
        "{aside:?}"
    );
    assert!(spool.dir().join("junk").exists());
}

/// Writes a file into the drop directory as a drop is made: mode 0640 whatever the
/// umask (the directory's setgid gives it the directory's group).
fn put(path: &Path, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    fs::write(path, bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(DROP_MODE))
}

/// A file of someone else's renamed in from elsewhere (by a user who may move it,
/// e.g. out of a shared directory without the sticky bit) keeps its group and mode:
/// it is set aside, and its owner is not taken for its submitter. Once, a drop
/// written elsewhere into a victim's 0666 file and moved in was picked as theirs.
#[test]
fn a_file_renamed_in_from_elsewhere_is_not_taken_for_its_owners() {
    let spool = Spool::new();
    let victims = spool.outside("victims-file");
    fs::write(&victims, encode(&envelope(), &message()).unwrap()).unwrap();
    fs::set_permissions(&victims, fs::Permissions::from_mode(0o666)).unwrap();
    let dir_gid = fs::metadata(spool.dir()).unwrap().gid();
    let other_gid = dir_gid.wrapping_add(1);
    // As root the test can give it another owner and group, as a victim's would be.
    let owned = std::os::unix::fs::chown(&victims, Some(65534), Some(other_gid)).is_ok();
    fs::rename(&victims, spool.dir().join("moved-in")).unwrap();
    let aside = spool.only_set_aside(&spool.pickup());
    assert_eq!(aside.name, "moved-in");
    if owned {
        assert!(aside.reason.contains("its group is"), "{aside:?}");
    } else {
        assert!(aside.reason.starts_with("mode 666"), "{aside:?}");
    }
    // The same with the directory's group, so that the mode alone must catch it.
    let again = spool.outside("again");
    fs::write(&again, encode(&envelope(), &message()).unwrap()).unwrap();
    fs::set_permissions(&again, fs::Permissions::from_mode(0o666)).unwrap();
    let _ = std::os::unix::fs::chown(&again, Some(65534), Some(dir_gid));
    fs::rename(&again, spool.dir().join("moved-in-2")).unwrap();
    let aside = spool.only_set_aside(&spool.pickup());
    assert!(aside.reason.starts_with("mode 666"), "{aside:?}");
}

/// A `bad/` that someone else made (before the set-up, or in a window of it) would
/// let them list and remove the drops set aside: the set-up refuses it.
#[test]
fn create_drop_dir_refuses_a_bad_directory_of_another_user() {
    let root = Spool::new();
    let dir = root.outside("other-maildrop");
    fs::create_dir_all(dir.join(BAD)).unwrap();
    if std::os::unix::fs::chown(dir.join(BAD), Some(65534), Some(65534)).is_err() {
        eprintln!("skipped: giving a directory to another user needs root");
        return;
    }
    let err = create_drop_dir(&dir, None).unwrap_err();
    assert!(err.to_string().contains("belongs to another user"), "{err}");
    // The drop directory was not opened to all.
    let mode = fs::metadata(&dir).unwrap().mode() & 0o7777;
    assert_eq!(mode & 0o022, 0, "{mode:o}");
}
