//! The spool's layout, its detection and checks, the limits and the public files.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::envelope::{Address, Envelope};
use crate::error::Error;
use crate::smtp::dsn::Dsn;

/// A temporary directory that holds a spool root, removed when the test ends.
pub(super) struct Temp(pub(super) PathBuf);

impl Temp {
    pub(super) fn new() -> Temp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "outbox-spool-layout-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Temp(dir)
    }

    pub(super) fn spool(&self) -> Spool {
        Spool::at(self.0.join("spool"))
    }

    /// As [`Temp::new`], for a test that acts as other users: the directory is the
    /// test's (root's), and they must reach what it holds.
    pub(super) fn reachable() -> Temp {
        let temp = Temp::new();
        fs::set_permissions(&temp.0, fs::Permissions::from_mode(0o755)).unwrap();
        temp
    }
}

impl std::ops::Drop for Temp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The caller as the service: the tests run as root or not, and the spool is theirs.
pub(super) fn me() -> Owner {
    Owner {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    }
}

/// Runs `f` on a thread of its own with the credentials of `uid`/`gid` and no
/// supplementary groups (Linux keeps them per thread; the raw syscalls change the
/// calling thread's alone), as the service or a user would run.
pub(super) fn as_user<R: Send + 'static>(
    uid: u32,
    gid: u32,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    std::thread::spawn(move || {
        rustix::thread::set_thread_groups(&[]).unwrap();
        let gid = rustix::process::Gid::from_raw(gid);
        rustix::thread::set_thread_res_gid(gid, gid, gid).unwrap();
        let uid = rustix::process::Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(uid, uid, uid).unwrap();
        f()
    })
    .join()
    .unwrap()
}

pub(super) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn owner_of(path: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

fn envelope() -> DropEnvelope {
    DropEnvelope {
        envelope: Envelope::new(
            Some(Address::new("cron@host.example").unwrap()),
            [Address::new("ops@example.com").unwrap()],
        ),
        dsn: Dsn::default(),
    }
}

/// Every path of the layout and its mode, as the table of the README gives them.
fn layout(spool: &Spool, root_mode: u32) -> Vec<(PathBuf, u32)> {
    let r = spool.root();
    vec![
        (r.to_path_buf(), root_mode),
        (r.join("maildrop"), 0o3733),
        (r.join("incoming"), 0o700),
        (r.join("bad"), 0o700),
        (r.join("queue"), 0o700),
        (r.join("users"), 0o755),
    ]
}

#[test]
fn the_default_root_is_the_environments_else_var_spool() {
    assert_eq!(default_root_from(None), PathBuf::from("/var/spool/outbox"));
    assert_eq!(
        default_root_from(Some("".into())),
        PathBuf::from("/var/spool/outbox")
    );
    assert_eq!(
        default_root_from(Some("/tmp/s".into())),
        PathBuf::from("/tmp/s")
    );
    let spool = Spool::at("/x");
    assert_eq!(
        (
            spool.maildrop(),
            spool.queue_dir(),
            spool.incoming(),
            spool.bad()
        ),
        (
            PathBuf::from("/x/maildrop"),
            PathBuf::from("/x/queue"),
            PathBuf::from("/x/incoming"),
            PathBuf::from("/x/bad")
        )
    );
}

#[test]
fn create_makes_every_directory_with_its_mode_and_owner() {
    let temp = Temp::new();
    let spool = temp.spool();
    // As root, the service is another user; otherwise the caller.
    let owner = if is_root() {
        Owner {
            uid: 64001,
            gid: 64002,
        }
    } else {
        me()
    };
    spool.create(owner, None).unwrap();
    for (path, mode) in layout(&spool, 0o755) {
        assert_eq!(mode_of(&path), mode, "{}", path.display());
        assert_eq!(
            owner_of(&path),
            (owner.uid, owner.gid),
            "{}",
            path.display()
        );
    }
    assert_eq!(
        spool.detect(),
        SetUp::Ready {
            maildrop: spool.maildrop(),
            owner
        }
    );
    assert_eq!(spool.owner().unwrap(), owner);
}

#[test]
fn create_again_fixes_the_modes_and_tightens_the_queue() {
    let temp = Temp::new();
    let spool = temp.spool();
    spool.create(me(), None).unwrap();
    for (path, _) in layout(&spool, 0o755) {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
    }
    fs::write(spool.queue_dir().join("entry"), "kept").unwrap();
    spool.create(me(), None).unwrap();
    for (path, mode) in layout(&spool, 0o755) {
        assert_eq!(mode_of(&path), mode, "{}", path.display());
    }
    assert_eq!(
        fs::read_to_string(spool.queue_dir().join("entry")).unwrap(),
        "kept"
    );
    spool.check().unwrap();
}

#[test]
fn create_with_a_submit_group_closes_the_root_to_others() {
    let temp = Temp::new();
    let spool = temp.spool();
    let submit = if is_root() { 64003 } else { me().gid };
    spool.create(me(), Some(submit)).unwrap();
    assert_eq!(mode_of(spool.root()), 0o710);
    assert_eq!(owner_of(spool.root()), (me().uid, submit));
    // The drops' group stays the service's: the submit group cannot read them.
    assert_eq!(owner_of(&spool.maildrop()), (me().uid, me().gid));
    assert_eq!(spool.check().unwrap(), me());
    // Opened to all again when asked.
    spool.create(me(), None).unwrap();
    assert_eq!(mode_of(spool.root()), 0o755);
}

/// Runs `f` on a thread of its own whose umask is `mask`: unshare(CLONE_FS) gives the
/// thread its own, so the other tests keep theirs.
fn with_umask<R: Send + 'static>(mask: u32, f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(move || {
        // SAFETY: CLONE_FS unshares the working directory, root and umask alone, never
        // the descriptor table, which is what could make unsharing unsafe.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }.unwrap();
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn create_and_drop_set_the_modes_whatever_the_umask() {
    let temp = Temp::new();
    fs::create_dir(temp.0.join("kept")).unwrap();
    fs::set_permissions(temp.0.join("kept"), fs::Permissions::from_mode(0o750)).unwrap();
    let spool = Spool::at(temp.0.join("kept/a/b/spool"));
    let s = spool.clone();
    let name = with_umask(0o077, move || {
        s.create(me(), None).unwrap();
        s.drop(&envelope(), b"hi").unwrap()
    });
    assert_eq!(mode_of(&temp.0.join("kept/a")), 0o755);
    assert_eq!(mode_of(&temp.0.join("kept/a/b")), 0o755);
    // A parent that was there is not the set-up's to change.
    assert_eq!(mode_of(&temp.0.join("kept")), 0o750);
    for (path, mode) in layout(&spool, 0o755) {
        assert_eq!(mode_of(&path), mode, "{}", path.display());
    }
    assert_eq!(mode_of(&spool.maildrop().join(name)), DROP_MODE);
    let s = spool.clone();
    with_umask(0o077, move || s.publish_limits(&Limits::default())).unwrap();
    assert_eq!(mode_of(&spool.root().join("limits")), 0o644);
}

#[test]
fn create_refuses_a_symbolic_link_or_a_file_in_the_way() {
    let temp = Temp::new();
    let elsewhere = temp.0.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, temp.0.join("spool")).unwrap();
    let err = temp.spool().create(me(), None).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);

    let temp = Temp::new();
    let spool = temp.spool();
    fs::create_dir(spool.root()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, spool.root().join("bad")).unwrap();
    let err = spool.create(me(), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("spool/bad for the spool: not a directory"),
        "{err}"
    );
    // The drop directory was not made, let alone opened.
    assert!(!spool.maildrop().exists());
    fs::remove_file(spool.root().join("bad")).unwrap();
    fs::write(spool.root().join("bad"), "").unwrap();
    assert!(spool.create(me(), None).is_err());
}

#[test]
fn create_refuses_a_directory_another_user_made() {
    if !is_root() {
        eprintln!("skipped: giving a directory to another user needs root");
        return;
    }
    let temp = Temp::new();
    let spool = temp.spool();
    fs::create_dir_all(spool.bad()).unwrap();
    std::os::unix::fs::chown(spool.bad(), Some(64009), Some(64009)).unwrap();
    let owner = Owner {
        uid: 64001,
        gid: 64001,
    };
    let err = spool.create(owner, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot use {} for the spool: it belongs to another user (uid 64009); \
             remove it, or look at what it holds first",
            spool.bad().display()
        )
    );
    assert!(!spool.maildrop().exists());
    // One of the service's own is kept.
    std::os::unix::fs::chown(spool.bad(), Some(64001), Some(64001)).unwrap();
    spool.create(owner, None).unwrap();
}

#[test]
fn detect_finds_no_set_up_where_the_root_or_maildrop_is_missing() {
    let temp = Temp::new();
    let spool = temp.spool();
    assert_eq!(spool.detect(), SetUp::Absent);
    // A root without maildrop/, whatever its mode: root's personal queue lives at
    // /var/spool/outbox, 0700.
    fs::create_dir(spool.root()).unwrap();
    fs::set_permissions(spool.root(), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(spool.detect(), SetUp::Absent);
    assert_eq!(fs::read_dir(spool.root()).unwrap().count(), 0, "it created");
    if is_root() {
        // Nor for another user, who may not even look into it.
        fs::set_permissions(&temp.0, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(spool.maildrop()).unwrap();
        let s = spool.clone();
        assert_eq!(as_user(64018, 64018, move || s.detect()), SetUp::Absent);
    }
}

#[test]
fn detect_says_what_is_not_as_create_makes_it() {
    let temp = Temp::new();
    let spool = temp.spool();
    spool.create(me(), None).unwrap();
    let md = spool.maildrop().display().to_string();
    fs::set_permissions(spool.maildrop(), fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        spool.detect(),
        SetUp::Broken(format!("{md}: its mode is 0777, not 3733"))
    );
    fs::remove_dir(spool.maildrop()).unwrap();
    fs::write(spool.maildrop(), "").unwrap();
    assert_eq!(
        spool.detect(),
        SetUp::Broken(format!("{md}: not a directory"))
    );
    fs::set_permissions(spool.root(), fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        spool.detect(),
        SetUp::Broken(format!(
            "{}: its mode is 0777, not 0755 or 0710",
            spool.root().display()
        ))
    );
}

#[test]
fn detect_refuses_a_maildrop_of_another_owner() {
    if !is_root() {
        eprintln!("skipped: giving a directory to another user needs root");
        return;
    }
    let temp = Temp::new();
    let spool = temp.spool();
    spool.create(me(), None).unwrap();
    std::os::unix::fs::chown(spool.maildrop(), Some(64001), None).unwrap();
    // chown(2) cleared the setgid bit; put it back so that the owner alone differs.
    fs::set_permissions(spool.maildrop(), fs::Permissions::from_mode(0o3733)).unwrap();
    let SetUp::Broken(why) = spool.detect() else {
        panic!("{:?}", spool.detect());
    };
    assert!(why.contains("belongs to uid 64001"), "{why}");
}

#[test]
fn check_verifies_every_directory() {
    let temp = Temp::new();
    let spool = temp.spool();
    let err = spool.check().unwrap_err();
    assert!(err.to_string().contains("cannot examine it"), "{err}");
    spool.create(me(), None).unwrap();
    assert_eq!(spool.check().unwrap(), me());
    for (path, mode) in layout(&spool, 0o755).into_iter().skip(1) {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o757)).unwrap();
        let err = spool.check().unwrap_err();
        assert_eq!(crate::exit::code(&err), 78);
        assert_eq!(
            err.to_string(),
            format!(
                "the spool {} is not as `outbox system setup` makes it: {}: its mode is \
                 0757, not {mode:04o}",
                spool.root().display(),
                path.display()
            )
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    spool.check().unwrap();
}

#[test]
fn check_refuses_a_spool_of_another_user() {
    if !is_root() {
        eprintln!("skipped: giving the spool to another user needs root");
        return;
    }
    let temp = Temp::new();
    let spool = temp.spool();
    let owner = Owner {
        uid: 64001,
        gid: 64001,
    };
    spool.create(owner, None).unwrap();
    let err = spool.check().unwrap_err();
    assert!(
        err.to_string()
            .ends_with("it belongs to uid 64001, and the service runs as uid 0"),
        "{err}"
    );
    assert_eq!(spool.owner().unwrap(), owner);
}

#[test]
fn limits_are_the_defaults_until_published() {
    let temp = Temp::new();
    let spool = temp.spool();
    spool.create(me(), None).unwrap();
    assert_eq!(
        spool.limits(),
        Limits {
            max_message_size: 64 << 20,
            max_queued: 1000,
            max_queued_bytes: 1 << 30
        }
    );
    assert_eq!(spool.usage(1000), Usage::default());
    let limits = Limits {
        max_message_size: 10,
        max_queued: 2,
        max_queued_bytes: 100,
    };
    spool.publish_limits(&limits).unwrap();
    assert_eq!(spool.limits(), limits);
    let file = spool.root().join("limits");
    assert_eq!(mode_of(&file), 0o644);
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "max_message_size = 10\nmax_queued = 2\nmax_queued_bytes = 100\n"
    );
    // Garbage, or a file too long, counts as no file.
    fs::write(&file, "max_queued = \"many\"\n").unwrap();
    assert_eq!(spool.limits(), Limits::default());
    fs::write(&file, format!("max_queued = 1\n#{}\n", "x".repeat(5000))).unwrap();
    assert_eq!(spool.limits(), Limits::default());
    // A key left out keeps its default.
    fs::write(&file, "max_queued = 7\n").unwrap();
    assert_eq!(
        spool.limits(),
        Limits {
            max_queued: 7,
            ..Limits::default()
        }
    );
}

#[test]
fn publishing_writes_only_what_changed() {
    let temp = Temp::new();
    let spool = temp.spool();
    spool.create(me(), None).unwrap();
    let file = spool.root().join("limits");
    spool.publish_limits(&Limits::default()).unwrap();
    let first = fs::metadata(&file).unwrap().ino();
    spool.publish_limits(&Limits::default()).unwrap();
    assert_eq!(fs::metadata(&file).unwrap().ino(), first, "rewritten");
    let other = Limits {
        max_queued: 5,
        ..Limits::default()
    };
    spool.publish_limits(&other).unwrap();
    assert_ne!(fs::metadata(&file).unwrap().ino(), first, "not replaced");
    assert_eq!(spool.limits(), other);
}

#[test]
fn publish_usage_writes_each_user_and_removes_the_others() {
    let temp = Temp::new();
    let spool = temp.spool();
    spool.create(me(), None).unwrap();
    let users = spool.root().join("users");
    fs::write(users.join("4242"), "queued = 9\n").unwrap();
    fs::write(users.join("007"), "").unwrap();
    fs::write(users.join(".1000.tmp"), "").unwrap();
    let usage = BTreeMap::from([
        (
            1000,
            Usage {
                queued: 3,
                bytes: 12345,
            },
        ),
        (33, Usage::default()),
    ]);
    spool.publish_usage(&usage).unwrap();
    let mut names: Vec<String> = fs::read_dir(&users)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["1000", "33"]);
    assert_eq!(
        fs::read_to_string(users.join("1000")).unwrap(),
        "queued = 3\nbytes = 12345\n"
    );
    assert_eq!(mode_of(&users.join("1000")), 0o644);
    assert_eq!(spool.usage(1000), usage[&1000]);
    assert_eq!(spool.usage(4242), Usage::default());
    spool.publish_usage(&BTreeMap::new()).unwrap();
    assert_eq!(fs::read_dir(&users).unwrap().count(), 0);
}

#[test]
fn check_limits_says_which_limit_and_the_figures() {
    let limits = Limits {
        max_message_size: 100,
        max_queued: 2,
        max_queued_bytes: 150,
    };
    let none = Usage::default();
    assert!(check_limits(&limits, &none, 100).is_ok());
    let err = check_limits(&limits, &none, 101).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the message is 101 bytes, over the system's limit of 100 bytes a message \
         (max_message_size); it was not queued: send it smaller, or ask the administrator \
         to raise the limit"
    );
    assert_eq!(crate::exit::code(&err), 73);
    let full = Usage {
        queued: 2,
        bytes: 10,
    };
    let err = check_limits(&limits, &full, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "you have 2 messages in the system queue, the system's limit per user \
         (max_queued_per_user = 2); it was not queued: try again once some are delivered, or ask \
         the administrator"
    );
    assert_eq!(crate::exit::code(&err), 75);
    let heavy = Usage {
        queued: 1,
        bytes: 100,
    };
    assert!(check_limits(&limits, &heavy, 50).is_ok());
    let err = check_limits(&limits, &heavy, 51).unwrap_err();
    assert_eq!(
        err.to_string(),
        "you have 100 bytes in the system queue, and this message's 51 would be over the \
         system's limit of 150 bytes per user (max_queued_bytes_per_user); it was not queued: try \
         again once some are delivered, or ask the administrator"
    );
    assert_eq!(crate::exit::code(&err), 75);
}

#[test]
fn a_message_over_the_queues_byte_limit_alone_is_refused_for_good() {
    let limits = Limits {
        max_message_size: 1000,
        max_queued: 10,
        max_queued_bytes: 100,
    };
    let err = check_limits(&limits, &Usage::default(), 101).unwrap_err();
    assert!(
        matches!(err, Error::OverLimit { lasting: true, .. }),
        "{err:?}"
    );
}

#[test]
fn drop_refuses_over_the_published_limits_and_drops_nothing() {
    let temp = Temp::new();
    let spool = temp.spool();
    spool.create(me(), None).unwrap();
    spool
        .publish_limits(&Limits {
            max_message_size: 10,
            ..Limits::default()
        })
        .unwrap();
    let err = spool.drop(&envelope(), &[b'x'; 11]).unwrap_err();
    assert_eq!(crate::exit::code(&err), 73, "{err}");
    let name = spool.drop(&envelope(), &[b'x'; 10]).unwrap();
    assert!(is_drop_name(&name), "{name}");
    let usage = BTreeMap::from([(
        me().uid,
        Usage {
            queued: 1000,
            bytes: 0,
        },
    )]);
    spool.publish_usage(&usage).unwrap();
    let err = spool.drop(&envelope(), b"x").unwrap_err();
    assert_eq!(crate::exit::code(&err), 75, "{err}");
    // Only the one that fitted is there.
    let names: Vec<_> = fs::read_dir(spool.maildrop())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from(&name)]);
    let meta = fs::symlink_metadata(spool.maildrop().join(&name)).unwrap();
    assert_eq!(meta.mode() & 0o7777, DROP_MODE);
    assert_eq!(
        decode(&fs::read(spool.maildrop().join(&name)).unwrap())
            .unwrap()
            .1,
        &[b'x'; 10][..]
    );
}

#[test]
fn drop_names_are_recognised_and_nothing_else() {
    assert!(is_drop_name("1764642000.123456.0123456789abcdef"));
    assert!(is_drop_name("1764642000.123456.0123456789abcdef.tmp"));
    for name in [
        "",
        "junk",
        "1764642000.123456.0123456789ABCDEF",
        "1764642000.12345.0123456789abcdef",
        "1764642000.123456.0123456789abcde",
        "1764642000.123456.0123456789abcdef.1",
        "1764642000.123456.0123456789abcdef.tmp.tmp",
        "x764642000.123456.0123456789abcdef",
        "1764642000.123456.0123456789abcdef\n",
    ] {
        assert!(!is_drop_name(name), "{name:?}");
    }
}

#[test]
fn detect_denies_a_user_outside_the_submit_group() {
    if !is_root() {
        eprintln!("skipped: acting as another user needs root");
        return;
    }
    let temp = Temp::reachable();
    let spool = temp.spool();
    let service = Owner {
        uid: 64013,
        gid: 64013,
    };
    spool.create(service, Some(64014)).unwrap();
    let s = spool.clone();
    let outsider = as_user(64015, 64015, move || s.detect());
    assert_eq!(
        outsider,
        SetUp::Denied(format!(
            "the system spool {} takes mail only from the members of group 64014 (the \
             group of the spool), and you are not one: ask the administrator to add you, \
             or give yourself a configuration of your own",
            spool.root().display()
        ))
    );
    let s = spool.clone();
    let member = as_user(64015, 64014, move || s.detect());
    assert_eq!(
        member,
        SetUp::Ready {
            maildrop: spool.maildrop(),
            owner: service
        }
    );
    // A member may drop; the drop is theirs, in the service's group.
    let s = spool.clone();
    let name = as_user(64015, 64014, move || s.drop(&envelope(), b"hi")).unwrap();
    assert_eq!(owner_of(&spool.maildrop().join(name)), (64015, 64013));
}

#[test]
fn check_refuses_a_service_outside_the_maildrop_group() {
    if !is_root() {
        eprintln!("skipped: acting as another user needs root");
        return;
    }
    let temp = Temp::reachable();
    let spool = temp.spool();
    spool
        .create(
            Owner {
                uid: 64016,
                gid: 64017,
            },
            None,
        )
        .unwrap();
    let s = spool.clone();
    let err = as_user(64016, 64016, move || s.check().unwrap_err().to_string());
    assert!(
        err.ends_with("its group is 64017, which the service is not in (it could not read drops)"),
        "{err}"
    );
    let s = spool.clone();
    let ok = as_user(64016, 64017, move || s.check());
    assert_eq!(
        ok.unwrap(),
        Owner {
            uid: 64016,
            gid: 64017
        }
    );
}
