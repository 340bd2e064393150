//! The system spool against users other than root: what one user may do to another's
//! pending drop (nothing), hostile drops made by an unprivileged user, a drop swapped
//! for a symbolic link while the pickup looks at it, and the submit group.
//!
//! Each user is a child process started with `setpriv --reuid=UID --regid=GID
//! --clear-groups` (numeric ids need no passwd entry); the pickup runs in the test
//! itself, as root, where following a link would do the most harm. The suite runs as
//! root; run alone as another user these tests are skipped, saying so.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbox::envelope::{Address, Envelope};
use outbox::smtp::dsn::Dsn;
use outbox::spool::{DropEnvelope, Found, Limits, Owner, Pickup, SetAside, SetUp, Spool, encode};

use crate::support::TempDir;

const SERVICE: u32 = 64020;
const ALICE: u32 = 64021;
const MALLORY: u32 = 64022;
const SUBMIT_GROUP: u32 = 64030;
const SECRET: &str = "SECRET-root-only-never-to-be-read";

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A spool made by the set-up for the service user, in a directory every user can
/// reach, with a file only root may read beside it, and a legitimate drop's bytes
/// that users may copy.
struct Bench {
    dir: TempDir,
    spool: Spool,
}

impl Bench {
    fn new(submit_gid: Option<u32>) -> Bench {
        let dir = TempDir::new("outbox-spool-it");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let spool = Spool::at(dir.join("spool"));
        let owner = Owner {
            uid: SERVICE,
            gid: SERVICE,
        };
        spool.create(owner, submit_gid).unwrap();
        let secret = dir.join("secret");
        fs::write(&secret, SECRET).unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        let legit = dir.join("legit");
        fs::write(&legit, encode(&envelope(), message()).unwrap()).unwrap();
        fs::set_permissions(&legit, fs::Permissions::from_mode(0o644)).unwrap();
        for uid in [ALICE, MALLORY] {
            let home = dir.join(format!("home-{uid}"));
            fs::create_dir(&home).unwrap();
            std::os::unix::fs::chown(&home, Some(uid), Some(uid)).unwrap();
        }
        Bench { dir, spool }
    }

    fn maildrop(&self) -> PathBuf {
        self.spool.maildrop()
    }

    fn secret(&self) -> PathBuf {
        self.dir.join("secret")
    }

    fn legit(&self) -> PathBuf {
        self.dir.join("legit")
    }

    /// The pickup as the service runs it, but as root (the worst case).
    fn pickup(&self) -> Pickup {
        self.spool.pickup(&Limits::default())
    }

    /// A shell line that drops `legit` as `name`, as `Spool::drop` does: a `.tmp`
    /// made 0640, renamed into place.
    fn drop_line(&self, name: &str) -> String {
        let md = self.maildrop().display().to_string();
        format!(
            "umask 077; cat {legit} > {md}/{name}.tmp && chmod 640 {md}/{name}.tmp && \
             mv {md}/{name}.tmp {md}/{name}",
            legit = self.legit().display()
        )
    }
}

fn envelope() -> DropEnvelope {
    DropEnvelope {
        envelope: Envelope::new(
            Some(Address::new("alice@host.example").unwrap()),
            [Address::new("ops@example.com").unwrap()],
        ),
        dsn: Dsn::default(),
    }
}

fn message() -> &'static [u8] {
    b"Subject: pending\r\n\r\nonly the service may read this\r\n"
}

/// A drop's name, the `n`th.
fn name(n: u32) -> String {
    format!("1700000000.{n:06}.{n:016x}")
}

/// `script` under `sh` as `uid`/`gid` with no supplementary groups but `groups`.
fn as_user(uid: u32, gid: u32, groups: &[u32], script: &str) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.args(["sh", "-c", script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run setpriv: {e}"))
}

/// Runs `script` as `uid` and asserts that it succeeds.
fn may(uid: u32, script: &str) -> String {
    let out = as_user(uid, uid, &[], script);
    assert!(
        out.status.success(),
        "uid {uid} could not: {script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `script` as `uid` and asserts that it fails.
fn may_not(uid: u32, script: &str) {
    let out = as_user(uid, uid, &[], script);
    assert!(
        !out.status.success(),
        "uid {uid} could: {script}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn pass(pickup: &Pickup) -> Vec<Found> {
    let now = SystemTime::now();
    pickup
        .waiting(now)
        .unwrap()
        .iter()
        .filter_map(|n| pickup.take(n, now).unwrap())
        .collect()
}

fn set_aside(found: &[Found]) -> Vec<&SetAside> {
    found
        .iter()
        .filter_map(|f| match f {
            Found::SetAside(a) => Some(a),
            Found::Picked(_) => None,
        })
        .collect()
}

/// An access time older than the modification time, so that relatime would move it
/// on any read.
fn age_access_time(path: &Path) -> SystemTime {
    let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(fs::FileTimes::new().set_accessed(old))
        .unwrap();
    old
}

#[test]
fn another_user_can_neither_list_read_rename_nor_remove_a_pending_drop() {
    if !is_root() {
        eprintln!("skipped: acting as other users needs root");
        return;
    }
    let bench = Bench::new(None);
    let md = bench.maildrop().display().to_string();
    let root = bench.spool.root().display().to_string();
    let drop = name(1);
    may(ALICE, &bench.drop_line(&drop));
    let meta = fs::symlink_metadata(bench.maildrop().join(&drop)).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (ALICE, SERVICE, 0o640)
    );
    for attempt in [
        format!("ls {md}"),
        format!("cat {md}/{drop}"),
        format!("mv {md}/{drop} {md}/stolen"),
        format!("rm -f {md}/{drop} && test ! -e {md}/{drop}"),
        format!("echo x >> {md}/{drop}"),
        // fs.protected_hardlinks: no link to a file one may neither read nor write.
        format!("ln {md}/{drop} /tmp/outbox-stolen-{}", std::process::id()),
        format!("ls {root}/incoming"),
        format!("ls {root}/bad"),
        format!("ls {root}/queue"),
        format!("touch {root}/users/{MALLORY}"),
        format!("touch {root}/limits"),
    ] {
        may_not(MALLORY, &attempt);
    }
    assert_eq!(
        fs::read(bench.maildrop().join(&drop)).unwrap(),
        fs::read(bench.legit()).unwrap()
    );
    // The public files are public: the limits, and (the one leak) how much another
    // user has queued.
    bench.spool.publish_limits(&Limits::default()).unwrap();
    let usage = outbox::spool::Usage {
        queued: 1,
        bytes: 100,
    };
    bench
        .spool
        .publish_usage(&[(ALICE, usage)].into_iter().collect())
        .unwrap();
    assert_eq!(
        may(MALLORY, &format!("cat {root}/users/{ALICE}")),
        "queued = 1\nbytes = 100\n"
    );
    may(MALLORY, &format!("cat {root}/limits"));
    // The service takes it as Alice's; from incoming/ not even she can touch it.
    let pickup = bench.pickup();
    let now = SystemTime::now();
    let Some(Found::Picked(picked)) = pickup.take(&drop, now).unwrap() else {
        panic!("not picked");
    };
    assert_eq!((picked.uid, &picked.message[..]), (ALICE, message()));
    // Without -f: rm then fails on EACCES, which `test -e` could not tell apart
    // from a file gone (incoming/ is not searchable to her).
    may_not(ALICE, &format!("rm {root}/incoming/{drop}"));
    may_not(ALICE, &format!("cat {root}/incoming/{drop}"));
    assert!(bench.spool.incoming().join(&drop).exists());
    pickup.done(&picked).unwrap();
}

#[test]
fn hostile_drops_by_an_unprivileged_user_are_set_aside_unread() {
    if !is_root() {
        eprintln!("skipped: acting as other users needs root");
        return;
    }
    let bench = Bench::new(None);
    let old = age_access_time(&bench.secret());
    let md = bench.maildrop().display().to_string();
    let secret = bench.secret().display().to_string();
    let legit = bench.legit().display().to_string();
    let elsewhere = bench
        .dir
        .join(format!("home-{MALLORY}"))
        .display()
        .to_string();
    let cases = [
        (
            format!("ln -s {secret} {md}/{}", name(1)),
            "not a regular file: a symbolic link (not followed)",
        ),
        (
            format!(
                "cp {legit} {elsewhere}/a && chmod 640 {elsewhere}/a && ln {elsewhere}/a {md}/{}",
                name(2)
            ),
            "2 links to the file (a hard link)",
        ),
        (
            format!("mkfifo -m 640 {md}/{}", name(3)),
            "not a regular file: a FIFO",
        ),
        (
            format!("mkdir {md}/{}", name(4)),
            "not a regular file: a directory",
        ),
        (
            format!("umask 027; echo garbage > {md}/{}", name(5)),
            "not a drop (no outbox-drop line)",
        ),
        (
            format!("umask 027; head -c 40 {legit} > {md}/{}", name(6)),
            "cut short in the envelope",
        ),
        (
            format!(
                "umask 027; : > {md}/{n} && truncate -s 200M {md}/{n}",
                n = name(7)
            ),
            "over the size limit of 67108864 bytes a message",
        ),
        (
            format!(
                "cp {legit} {elsewhere}/b && chmod 640 {elsewhere}/b && mv {elsewhere}/b {md}/{}",
                name(8)
            ),
            "its group is 64022, not the drop directory's 64020: not made there",
        ),
    ];
    let script: Vec<&str> = cases.iter().map(|(s, _)| s.as_str()).collect();
    may(MALLORY, &script.join(" && "));
    let pickup = bench.pickup();
    let found = pass(&pickup);
    let asides = set_aside(&found);
    assert_eq!(asides.len(), cases.len(), "{found:?}");
    for (n, (_, reason)) in cases.iter().enumerate() {
        let aside = asides[n];
        assert_eq!(aside.name, name(n as u32 + 1));
        assert_eq!((aside.reason.as_str(), aside.uid), (*reason, Some(MALLORY)));
        assert_eq!(aside.moved_to.as_deref(), Some(aside.name.as_str()));
        let reason_file = bench.spool.bad().join(format!("{}.reason", aside.name));
        assert_eq!(
            fs::read_to_string(reason_file).unwrap(),
            format!("uid: {MALLORY}\nreason: {reason}\n")
        );
    }
    assert!(!format!("{found:?}").contains(SECRET));
    assert_eq!(
        fs::metadata(bench.secret()).unwrap().accessed().unwrap(),
        old
    );
    assert_eq!(fs::read_dir(bench.maildrop()).unwrap().count(), 0);
    assert_eq!(fs::read_dir(bench.spool.incoming()).unwrap().count(), 0);
    // Mallory can neither see nor take back what was set aside.
    let bad = bench.spool.bad().display().to_string();
    may_not(MALLORY, &format!("ls {bad}"));
    may_not(MALLORY, &format!("cat {bad}/{}", name(8)));
}

/// Mallory swaps each drop between a symbolic link to a root-only file and a real
/// drop as fast as she can, while the pickup (as root) takes them: it never reads
/// through a link, and what it picks is only ever the real drop, as hers.
#[test]
fn a_drop_swapped_for_a_link_while_the_pickup_looks_is_never_followed() {
    if !is_root() {
        eprintln!("skipped: acting as other users needs root");
        return;
    }
    let bench = Bench::new(None);
    let old = age_access_time(&bench.secret());
    let md = bench.maildrop().display().to_string();
    let rounds = 300;
    let script = format!(
        "i=0; while [ $i -lt {rounds} ]; do \
           n=$(printf '1700000000.%06d.%016x' $i $i); \
           ln -s {secret} {md}/$n; \
           cat {legit} > {md}/$n.new && chmod 640 {md}/$n.new && mv -f {md}/$n.new {md}/$n; \
           ln -s {secret} {md}/$n.link && mv -f {md}/$n.link {md}/$n; \
           cat {legit} > {md}/$n.new && chmod 640 {md}/$n.new && mv -f {md}/$n.new {md}/$n; \
           i=$((i+1)); \
         done",
        secret = bench.secret().display(),
        legit = bench.legit().display(),
    );
    let mut child = Command::new("setpriv")
        .args([
            &format!("--reuid={MALLORY}"),
            &format!("--regid={MALLORY}"),
            "--clear-groups",
            "sh",
            "-c",
            &script,
        ])
        .umask_027()
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pickup = bench.pickup();
    let mut found = Vec::new();
    let mut finished = false;
    while !finished {
        finished = child.try_wait().unwrap().is_some();
        for f in pass(&pickup) {
            // As the service does: each picked drop is stored, then done.
            if let Found::Picked(p) = &f {
                pickup.done(p).unwrap();
            }
            found.push(f);
        }
    }
    // Reaped already by try_wait; its status is that of the last round's swaps,
    // which the pickup may have broken by taking a file first.
    child.wait().unwrap();
    let mut picked = 0;
    for f in &found {
        match f {
            Found::Picked(p) => {
                assert_eq!((p.uid, &p.message[..]), (MALLORY, message()));
                picked += 1;
            }
            Found::SetAside(a) => {
                // A name of the script's own (`.new`, `.link`) taken mid-swap is no
                // drop's; anything else is a link, set aside as one.
                assert!(
                    a.reason
                        .starts_with("not a regular file: a symbolic link (not followed)")
                        || a.reason.starts_with("a name no drop has"),
                    "{a:?}"
                );
            }
        }
    }
    assert!(picked > 0, "nothing picked in {rounds} rounds");
    // The race was run: links were met where drops had been, and the other way.
    let links = set_aside(&found)
        .iter()
        .filter(|a| a.reason.contains("symbolic link"))
        .count();
    assert!(links > 0, "no link met in {rounds} rounds");
    assert!(!format!("{found:?}").contains(SECRET));
    assert_eq!(
        fs::metadata(bench.secret()).unwrap().accessed().unwrap(),
        old
    );
}

/// `Command::umask`, which std lacks: the child's files are made 0640 at most.
trait Umask {
    fn umask_027(&mut self) -> &mut Self;
}

impl Umask for Command {
    fn umask_027(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: umask(2) is async-signal-safe and touches nothing but the child.
        unsafe {
            self.pre_exec(|| {
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o027));
                Ok(())
            })
        }
    }
}

#[test]
fn only_the_submit_group_reaches_the_drop_directory() {
    if !is_root() {
        eprintln!("skipped: acting as other users needs root");
        return;
    }
    let bench = Bench::new(Some(SUBMIT_GROUP));
    let md = bench.maildrop().display().to_string();
    let outsider = as_user(ALICE, ALICE, &[], &bench.drop_line(&name(1)));
    assert!(!outsider.status.success(), "an outsider dropped");
    let member = as_user(ALICE, ALICE, &[SUBMIT_GROUP], &bench.drop_line(&name(1)));
    assert!(
        member.status.success(),
        "{}",
        String::from_utf8_lossy(&member.stderr)
    );
    // The drop takes the service's group, not the submit group: another member
    // cannot read it.
    let meta = fs::symlink_metadata(bench.maildrop().join(name(1))).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (ALICE, SERVICE));
    let other = as_user(
        MALLORY,
        MALLORY,
        &[SUBMIT_GROUP],
        &format!("cat {md}/{}", name(1)),
    );
    assert!(!other.status.success(), "another member read a drop");
    assert_eq!(
        bench.spool.detect(),
        SetUp::Ready {
            maildrop: bench.maildrop(),
            owner: Owner {
                uid: SERVICE,
                gid: SERVICE
            }
        }
    );
}
