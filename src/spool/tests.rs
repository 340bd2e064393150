//! The pickup: round trips, a crash left in incoming/, and each hostile drop set
//! aside unread.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{FileType, Mode};
use sha2::Digest as _;

use super::tests_spool::{Temp, as_user, is_root, me};
use super::*;
use crate::envelope::{Address, Envelope};
use crate::smtp::dsn::Dsn;

/// A spool made by [`Spool::create`] for the caller, removed when the test ends.
struct T {
    temp: Temp,
    spool: Spool,
}

impl T {
    fn new() -> T {
        let temp = Temp::new();
        let spool = temp.spool();
        spool.create(me(), None).unwrap();
        T { temp, spool }
    }

    fn maildrop(&self) -> PathBuf {
        self.spool.maildrop()
    }

    /// Where a test keeps files outside the spool.
    fn outside(&self, name: &str) -> PathBuf {
        self.temp.0.join(name)
    }

    /// A pickup that takes the test's own drops (the tests may run as root or not).
    fn pickup(&self) -> Pickup {
        Pickup {
            refuse_owner: None,
            ..self.spool.pickup(&Limits::default())
        }
    }

    fn pass(&self) -> Vec<Found> {
        pass(&self.pickup())
    }

    /// Writes a file into the drop directory as a drop is made: mode 0640 whatever
    /// the umask (the directory's setgid gives it the directory's group).
    fn put(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.maildrop().join(name);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(DROP_MODE)).unwrap();
        path
    }

    /// The one drop a pass set aside, checked to be in `bad/` with its reason file,
    /// and gone from `maildrop/` and `incoming/`.
    fn only_set_aside(&self, pickup: &Pickup) -> SetAside {
        let found = pass(pickup);
        let [Found::SetAside(aside)] = &found[..] else {
            panic!("expected one set aside, got {found:?}");
        };
        let moved_to = aside.moved_to.as_deref().expect("not moved");
        let bad = self.spool.bad();
        assert!(
            fs::symlink_metadata(bad.join(moved_to)).is_ok(),
            "{aside:?} is not in bad/"
        );
        let uid = aside.uid.map_or("unknown".into(), |u| u.to_string());
        assert_eq!(
            fs::read_to_string(bad.join(format!("{moved_to}.reason"))).unwrap(),
            format!("uid: {uid}\nreason: {}\n", aside.reason)
        );
        assert!(fs::symlink_metadata(self.maildrop().join(&aside.name)).is_err());
        assert!(fs::symlink_metadata(self.spool.incoming().join(&aside.name)).is_err());
        aside.clone()
    }

    fn reason(&self) -> String {
        self.only_set_aside(&self.pickup()).reason
    }

    fn names_in(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// Takes every waiting drop once, as the service's loop does.
fn pass(pickup: &Pickup) -> Vec<Found> {
    let now = SystemTime::now();
    pickup
        .waiting(now)
        .unwrap()
        .iter()
        .filter_map(|name| pickup.take(name, now).unwrap())
        .collect()
}

fn only_picked(found: Vec<Found>) -> Picked {
    match <[Found; 1]>::try_from(found) {
        Ok([Found::Picked(p)]) => p,
        other => panic!("expected one picked, got {other:?}"),
    }
}

/// A name such as a drop has, the `n`th in time order.
fn name(n: u64) -> String {
    format!("17000000{n:02}.000000.{n:016x}")
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

fn whole() -> Vec<u8> {
    encode(&envelope(), &message()).unwrap()
}

/// A drop written by hand, digest and all, with the envelope's TOML `toml`.
fn hand_made(toml: &str, message: &[u8]) -> Vec<u8> {
    let mut bytes = format!("outbox-drop 1 {}\n{toml}", toml.len()).into_bytes();
    bytes.extend_from_slice(message);
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    bytes.extend_from_slice(format!("\n.end {} {digest}\n", message.len()).as_bytes());
    bytes
}

#[test]
fn a_drop_comes_back_whole_with_its_owner() {
    let t = T::new();
    let name = t.spool.drop(&envelope(), &message()).unwrap();
    let picked = only_picked(t.pass());
    assert_eq!(picked.name, name);
    assert_eq!(picked.envelope, envelope());
    assert_eq!(picked.message, message());
    assert_eq!(picked.uid, me().uid);
    let age = SystemTime::now().duration_since(picked.dropped).unwrap();
    assert!(age < Duration::from_secs(60), "{age:?}");
    // Taking moved it into incoming/, where it stays until done.
    assert!(t.names_in(&t.maildrop()).is_empty());
    assert_eq!(t.names_in(&t.spool.incoming()), [name.as_str()]);
    t.pickup().done(&picked).unwrap();
    assert!(t.pass().is_empty());
    assert!(t.names_in(&t.spool.incoming()).is_empty());
}

#[test]
fn the_null_sender_and_no_dsn_come_back_as_such() {
    let t = T::new();
    let bounce = DropEnvelope {
        envelope: Envelope::new(None, [addr("a@example.com")]),
        dsn: Dsn::default(),
    };
    t.spool.drop(&bounce, b"").unwrap();
    let picked = only_picked(t.pass());
    assert_eq!(picked.envelope, bounce);
    assert!(picked.message.is_empty());
}

#[test]
fn the_uid_is_the_files_owner() {
    if !is_root() {
        eprintln!("skipped: chown to another user needs root");
        return;
    }
    let t = T::new();
    let name = t.spool.drop(&envelope(), &message()).unwrap();
    std::os::unix::fs::chown(t.maildrop().join(&name), Some(65534), None).unwrap();
    assert_eq!(only_picked(t.pass()).uid, 65534);
}

#[test]
fn a_crash_left_in_incoming_is_taken_again_first_under_its_name() {
    let t = T::new();
    let later = t.put(&name(9), whole());
    let first = t.put(&name(5), whole());
    let pickup = t.pickup();
    let now = SystemTime::now();
    let taken = pickup.take(&name(9), now).unwrap();
    assert!(matches!(taken, Some(Found::Picked(_))), "{taken:?}");
    // The service dies here, before done: a new one finds it in incoming/ first,
    // ahead of an older drop still in maildrop/.
    drop(pickup);
    assert!(!later.exists() && first.exists());
    let pickup = t.pickup();
    assert_eq!(pickup.waiting(now).unwrap(), [name(9), name(5)]);
    let again = only_picked(vec![pickup.take(&name(9), now).unwrap().unwrap()]);
    assert_eq!(again.name, name(9));
    pickup.done(&again).unwrap();
    assert_eq!(pickup.waiting(now).unwrap(), [name(5)]);
}

#[test]
fn drops_are_taken_oldest_name_first() {
    let t = T::new();
    let mut names: Vec<String> = (0..3)
        .map(|_| t.spool.drop(&envelope(), &message()).unwrap())
        .collect();
    let picked: Vec<String> = t
        .pass()
        .into_iter()
        .map(|f| match f {
            Found::Picked(p) => p.name,
            other => panic!("{other:?}"),
        })
        .collect();
    names.sort();
    assert_eq!(picked, names);
}

#[test]
fn a_drop_removed_or_renamed_between_waiting_and_take_is_gone() {
    let t = T::new();
    let removed = t.put(&name(1), whole());
    let renamed = t.put(&name(2), whole());
    let pickup = t.pickup();
    let now = SystemTime::now();
    assert_eq!(pickup.waiting(now).unwrap(), [name(1), name(2)]);
    // Their owner's to do: a sticky directory lets them.
    fs::remove_file(removed).unwrap();
    fs::rename(renamed, t.maildrop().join(name(3))).unwrap();
    assert_eq!(pickup.take(&name(1), now).unwrap(), None);
    assert_eq!(pickup.take(&name(2), now).unwrap(), None);
    assert!(t.names_in(&t.spool.bad()).is_empty());
    assert_eq!(pickup.waiting(now).unwrap(), [name(3)]);
}

#[test]
fn a_tmp_being_written_is_never_taken() {
    let t = T::new();
    let tmp_name = format!("{}.tmp", name(1));
    let tmp = t.put(&tmp_name, whole());
    let pickup = t.pickup();
    let now = SystemTime::now();
    assert!(pickup.waiting(now).unwrap().is_empty());
    assert_eq!(pickup.take(&tmp_name, now).unwrap(), None);
    assert_eq!(fs::read(&tmp).unwrap(), whole());
}

#[test]
fn a_stale_tmp_is_picked_when_whole_and_set_aside_when_not() {
    let t = T::new();
    let stale = Pickup {
        stale_tmp: Duration::ZERO,
        ..t.pickup()
    };
    // A whole one: a crash lost its rename, not its content. It keeps its name.
    let whole_name = format!("{}.tmp", name(1));
    t.put(&whole_name, whole());
    let picked = only_picked(pass(&stale));
    assert_eq!(
        (picked.name.as_str(), &picked.message),
        (&*whole_name, &message())
    );
    stale.done(&picked).unwrap();
    // A partial one: its writer died.
    let mut partial = whole();
    partial.truncate(partial.len() / 2);
    let partial_name = format!("{}.tmp", name(2));
    t.put(&partial_name, partial);
    let aside = t.only_set_aside(&stale);
    assert_eq!(aside.name, partial_name);
    assert_eq!(aside.reason, "cut short in the message");
}

#[test]
fn a_symlink_to_a_private_file_is_set_aside_unread() {
    let t = T::new();
    let secret = t.outside("shadow");
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
    std::os::unix::fs::symlink(&secret, t.maildrop().join(name(1))).unwrap();
    let aside = t.only_set_aside(&t.pickup());
    assert_eq!(
        aside.reason,
        "not a regular file: a symbolic link (not followed)"
    );
    assert!(!format!("{aside:?}").contains("SECRET"));
    let moved = t.spool.bad().join(aside.moved_to.as_deref().unwrap());
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
    let t = T::new();
    let dir = rustix::fs::open(
        t.maildrop(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    rustix::fs::mknodat(
        &dir,
        name(1).as_str(),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let pickup = t.pickup();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(pass(&pickup));
    });
    let found = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the pickup blocked on the FIFO");
    let [Found::SetAside(aside)] = &found[..] else {
        panic!("expected one set aside, got {found:?}");
    };
    assert_eq!(aside.reason, "not a regular file: a FIFO");
    let moved = t.spool.bad().join(name(1));
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::symlink_metadata(moved).unwrap().file_type()
    ));
}

#[test]
fn a_hard_link_is_set_aside_and_its_target_kept() {
    let t = T::new();
    let original = t.outside("someone-elses");
    fs::write(&original, whole()).unwrap();
    fs::set_permissions(&original, fs::Permissions::from_mode(DROP_MODE)).unwrap();
    fs::hard_link(&original, t.maildrop().join(name(1))).unwrap();
    assert_eq!(t.reason(), "2 links to the file (a hard link)");
    assert_eq!(fs::read(&original).unwrap(), whole());
}

#[test]
fn a_message_over_the_limit_is_set_aside() {
    let t = T::new();
    let small = Pickup {
        max_message_size: 1000,
        ..t.pickup()
    };
    // Within the file's bound (the envelope adds to it), over the message's.
    t.put(&name(1), encode(&envelope(), &[b'x'; 1001]).unwrap());
    let aside = t.only_set_aside(&small);
    assert_eq!(aside.reason, "over the size limit of 1000 bytes a message");
    // A file over the bound is refused on its size alone, unread: a sparse one.
    let huge = t.put(&name(2), "");
    fs::File::options()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(1000 + 2 * 1024 * 1024)
        .unwrap();
    let aside = t.only_set_aside(&small);
    assert_eq!(aside.reason, "over the size limit of 1000 bytes a message");
}

#[test]
fn a_half_written_drop_is_set_aside() {
    let t = T::new();
    let mut bytes = whole();
    bytes.truncate(bytes.len() - 1);
    t.put(&name(1), bytes);
    // The trailer's last newline is missing: the writer was not done.
    assert_eq!(t.reason(), "a bad trailer");
}

#[test]
fn a_drop_cut_in_its_message_is_set_aside() {
    let t = T::new();
    let mut bytes = whole();
    bytes.truncate(bytes.len() - 120);
    t.put(&name(1), bytes);
    assert_eq!(t.reason(), "cut short in the message");
}

#[test]
fn a_drop_with_a_flipped_byte_is_set_aside() {
    let t = T::new();
    let mut bytes = whole();
    let at = bytes.len() - 150;
    bytes[at] ^= 0x01;
    t.put(&name(1), bytes);
    assert_eq!(
        t.reason(),
        "the digest does not match the content (altered or cut short)"
    );
}

#[test]
fn garbage_is_set_aside() {
    let t = T::new();
    t.put(&name(1), b"GIF89a not a drop\n\x00\xff");
    assert_eq!(t.reason(), "not a drop (no outbox-drop line)");
}

#[test]
fn a_forged_recipient_is_set_aside() {
    let t = T::new();
    // The addresses are checked as any other's: this one would smuggle a command.
    let toml = "from = \"a@b\"\nrecipients = [\"a@b\\r\\nRCPT TO:<c@d>\"]\nsize = 1\n";
    t.put(&name(1), hand_made(toml, b"x"));
    let reason = t.reason();
    assert!(reason.starts_with("a recipient:"), "{reason}");
    assert!(
        !reason.contains('\r') && !reason.contains('\n'),
        "{reason:?}"
    );
}

#[test]
fn a_drop_for_too_many_recipients_is_refused_both_ways() {
    let many: Vec<Address> = (0..=MAX_RECIPIENTS)
        .map(|n| addr(&format!("r{n}@example.com")))
        .collect();
    let env = DropEnvelope {
        envelope: Envelope::new(None, many),
        dsn: Dsn::default(),
    };
    assert_eq!(
        encode(&env, b"x").unwrap_err(),
        "1001 recipients, over the 1000 a message may have"
    );
    let list: Vec<String> = (0..=MAX_RECIPIENTS)
        .map(|n| format!("\"r{n}@example.com\""))
        .collect();
    let toml = format!(
        "from = \"\"\nrecipients = [{}]\nsize = 1\n",
        list.join(", ")
    );
    assert_eq!(
        decode(&hand_made(&toml, b"x")).unwrap_err(),
        "1001 recipients, over the 1000 a message may have"
    );
}

#[test]
fn a_device_is_set_aside_unopened() {
    if !is_root() {
        eprintln!("skipped: mknod of a device needs root");
        return;
    }
    let t = T::new();
    let dir = rustix::fs::open(
        t.maildrop(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    // /dev/null's numbers: harmless if the code opened it, which it must not.
    rustix::fs::mknodat(
        &dir,
        name(1).as_str(),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o640),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    assert_eq!(t.reason(), "not a regular file: a character device");
}

#[test]
fn a_directory_is_set_aside() {
    let t = T::new();
    fs::create_dir(t.maildrop().join(name(1))).unwrap();
    assert_eq!(t.reason(), "not a regular file: a directory");
}

#[test]
fn a_name_no_drop_has_is_set_aside() {
    let t = T::new();
    t.put("junk", whole());
    assert_eq!(t.reason(), "a name no drop has");
}

#[test]
fn a_name_not_utf8_is_moved_once_and_set_aside() {
    let t = T::new();
    let raw = std::ffi::OsStr::from_bytes(b"\xff\xfe-drop");
    fs::write(t.maildrop().join(raw), whole()).unwrap();
    let pickup = t.pickup();
    let now = SystemTime::now();
    assert_eq!(pickup.waiting(now).unwrap(), ["\\xff\\xfe-drop"]);
    let aside = t.only_set_aside(&pickup);
    assert_eq!(
        (aside.name.as_str(), aside.reason.as_str()),
        ("\\xff\\xfe-drop", "a name no drop has")
    );
    assert!(pickup.waiting(now).unwrap().is_empty());
}

#[test]
fn a_drop_owned_by_the_service_is_set_aside() {
    let t = T::new();
    t.spool.drop(&envelope(), &message()).unwrap();
    let service = Pickup {
        refuse_owner: Some(me().uid),
        ..t.pickup()
    };
    assert_eq!(
        t.only_set_aside(&service).reason,
        "owned by the service itself"
    );
}

#[test]
fn setting_aside_keeps_an_earlier_one_of_the_same_name() {
    let t = T::new();
    t.put(&name(1), "first");
    let moved = |t: &T| t.only_set_aside(&t.pickup()).moved_to;
    assert_eq!(moved(&t).as_deref(), Some(name(1).as_str()));
    t.put(&name(1), "second");
    assert_eq!(moved(&t), Some(format!("{}.1", name(1))));
    let bad = t.spool.bad();
    assert_eq!(fs::read_to_string(bad.join(name(1))).unwrap(), "first");
    assert_eq!(
        fs::read_to_string(bad.join(format!("{}.1", name(1)))).unwrap(),
        "second"
    );
    // No set-aside drop is ever named like a reason file.
    t.put("x.reason", "third");
    assert_eq!(moved(&t).as_deref(), Some("x.reason.1"));
}

#[test]
fn bad_is_bounded_and_what_is_beyond_is_removed() {
    let t = T::new();
    let pickup = Pickup {
        max_bad: 2,
        ..t.pickup()
    };
    for n in 1..=2 {
        t.put(&name(n), "garbage\n");
        t.only_set_aside(&pickup);
    }
    t.put(&name(3), "garbage\n");
    let found = pass(&pickup);
    let [Found::SetAside(aside)] = &found[..] else {
        panic!("expected one set aside, got {found:?}");
    };
    assert_eq!(aside.moved_to, None);
    assert_eq!(
        aside.reason,
        "not a drop (no outbox-drop line); removed: bad/ holds 2 set-aside drops already"
    );
    assert!(t.names_in(&t.spool.incoming()).is_empty());
    assert!(t.names_in(&t.maildrop()).is_empty());
    assert_eq!(
        t.names_in(&t.spool.bad()).len(),
        4,
        "two drops, two reasons"
    );
}

#[test]
fn reasons_are_cleaned_and_capped() {
    assert_eq!(clean_reason("a\r\nb\u{1b}[31mc"), "a??b?[31mc");
    let long = clean_reason(&"é".repeat(MAX_REASON + 10));
    assert_eq!(long.chars().count(), MAX_REASON);
    assert!(long.ends_with("é…"), "{long}");
    assert_eq!(
        clean_reason(&"x".repeat(MAX_REASON)),
        "x".repeat(MAX_REASON)
    );
}

#[test]
fn done_removes_only_the_file_that_was_taken() {
    let t = T::new();
    t.put(&name(1), whole());
    let picked = only_picked(t.pass());
    let pickup = t.pickup();
    let path = t.spool.incoming().join(name(1));
    // Replaced meanwhile (by nothing but the service could, in a 0700 directory);
    // the first is kept elsewhere, so that its inode number is not reused.
    fs::rename(&path, t.outside("taken")).unwrap();
    fs::write(&path, "other").unwrap();
    let err = pickup.done(&picked).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("it is not the file that was taken"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "other");
    for bad_name in ["", ".", "..", "../x"] {
        let wrong = Picked {
            name: bad_name.into(),
            ..picked.clone()
        };
        assert!(pickup.done(&wrong).is_err(), "{bad_name:?}");
    }
    assert!(t.spool.bad().is_dir());
}

#[test]
fn take_refuses_a_name_outside_the_directory() {
    let t = T::new();
    let now = SystemTime::now();
    for n in ["", ".", "..", "../x", "a/b"] {
        assert!(t.pickup().take(n, now).is_err(), "{n:?}");
    }
}

/// A file of someone else's renamed in from elsewhere (by a user who may move it,
/// e.g. out of a shared directory without the sticky bit) keeps its group and mode:
/// it is set aside, and its owner is not taken for its submitter. Once, a drop
/// written elsewhere into a victim's 0666 file and moved in was picked as theirs.
#[test]
fn a_file_renamed_in_from_elsewhere_is_not_taken_for_its_owners() {
    let t = T::new();
    let victims = t.outside("victims-file");
    fs::write(&victims, whole()).unwrap();
    fs::set_permissions(&victims, fs::Permissions::from_mode(0o666)).unwrap();
    let dir_gid = fs::metadata(t.maildrop()).unwrap().gid();
    let other_gid = dir_gid.wrapping_add(1);
    // As root the test can give it another owner and group, as a victim's would be.
    let owned = std::os::unix::fs::chown(&victims, Some(65534), Some(other_gid)).is_ok();
    fs::rename(&victims, t.maildrop().join(name(1))).unwrap();
    let aside = t.only_set_aside(&t.pickup());
    if owned {
        assert!(aside.reason.contains("its group is"), "{aside:?}");
    } else {
        assert!(aside.reason.starts_with("mode 666"), "{aside:?}");
    }
    // The same with the directory's group, so that the mode alone must catch it.
    let again = t.outside("again");
    fs::write(&again, whole()).unwrap();
    fs::set_permissions(&again, fs::Permissions::from_mode(0o666)).unwrap();
    let _ = std::os::unix::fs::chown(&again, Some(65534), Some(dir_gid));
    fs::rename(&again, t.maildrop().join(name(2))).unwrap();
    let aside = t.only_set_aside(&t.pickup());
    assert!(aside.reason.starts_with("mode 666"), "{aside:?}");
}

/// As an unprivileged service: a user's directory cannot be moved out of maildrop/
/// (rename(2) of a directory needs write permission on it, for its `..`), so it is
/// reported once, then passed over; the user's drops go through as theirs.
#[test]
fn as_the_service_a_users_directory_is_reported_once_then_passed_over() {
    if !is_root() {
        eprintln!("skipped: acting as two other users needs root");
        return;
    }
    let (service, user) = (64011, 64012);
    let temp = Temp::reachable();
    let spool = temp.spool();
    spool
        .create(
            Owner {
                uid: service,
                gid: service,
            },
            None,
        )
        .unwrap();
    let s = spool.clone();
    let dropped = as_user(user, user, move || {
        fs::create_dir(s.maildrop().join(name(1))).unwrap();
        s.drop(&envelope(), &message()).unwrap()
    });
    let s = spool.clone();
    let (first, second) = as_user(service, service, move || {
        s.check().unwrap();
        let pickup = s.pickup(&s.limits());
        (pass(&pickup), pass(&pickup))
    });
    let [Found::SetAside(aside), Found::Picked(picked)] = &first[..] else {
        panic!("{first:?}");
    };
    assert_eq!(aside.name, name(1));
    assert_eq!(aside.uid, Some(user));
    assert_eq!(aside.moved_to, None);
    assert_eq!(
        aside.reason,
        "a directory that cannot be moved out of the drop directory (Permission denied \
         (os error 13)); passed over from now on"
    );
    assert_eq!((picked.name.as_str(), picked.uid), (dropped.as_str(), user));
    // The picked one stays in incoming/ until done; the directory is not met again.
    let [Found::Picked(again)] = &second[..] else {
        panic!("{second:?}");
    };
    assert_eq!(again.name, dropped);
}
