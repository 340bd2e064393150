//! Tests of the system-mode helpers themselves ([`crate::support::system`]): the
//! spool and configuration they make, the user commands run as, and the guard that
//! kills the service.

use std::fs;
use std::path::Path;

use crate::support::system::{
    NOBODY, System, User, any_file_contains, mode_and_owner, seq_numbers, service_ids,
};
use crate::support::{TempDir, free_port};

/// Whether a process with this pid exists (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn system_support_makes_the_spool_and_a_configuration_only_the_service_reads() {
    let sys = System::new("127.0.0.1:25", "max_message_size = 1000\n");
    let service = sys.service_user();
    assert!(service.uid >= 64100, "{service:?}");
    let root = sys.root();
    let want = [
        (root.clone(), 0o755),
        (sys.maildrop(), 0o3733),
        (root.join("incoming"), 0o700),
        (sys.bad(), 0o700),
        (root.join("queue"), 0o700),
        (root.join("users"), 0o755),
        (sys.config(), 0o600),
    ];
    for (path, mode) in want {
        assert_eq!(
            mode_and_owner(&path),
            (mode, service.uid, service.gid),
            "{}",
            path.display()
        );
    }
    // Every parent is searchable by others, as a submitter needs.
    for dir in root.ancestors().skip(1) {
        let (mode, _, _) = mode_and_owner(dir);
        assert_eq!(mode & 0o001, 0o001, "{} is {mode:o}", dir.display());
    }
    let config = fs::read_to_string(sys.config()).unwrap();
    assert_eq!(
        config,
        "[default]\nserver = \"127.0.0.1:25\"\ntimeout = 10\nmax_message_size = 1000\n"
    );
    let as_nobody = sys.as_user(NOBODY, "/bin/cat").arg(sys.config()).run();
    as_nobody
        .assert_failure()
        .assert_stderr_contains("Permission denied");
    let as_service = sys.as_user(service, "/bin/cat").arg(sys.config()).run();
    as_service.assert_success();
    assert_eq!(as_service.stdout_str(), config);

    // Rewritten whole, with the same mode and owner.
    sys.configure("127.0.0.1:2525", "");
    assert_eq!(
        fs::read_to_string(sys.config()).unwrap(),
        "[default]\nserver = \"127.0.0.1:2525\"\ntimeout = 10\n"
    );
    assert_eq!(
        mode_and_owner(&sys.config()),
        (0o600, service.uid, service.gid)
    );
}

#[test]
fn system_support_runs_commands_as_the_user_in_system_mode() {
    let sys = System::new("127.0.0.1:25", "");
    let id = sys.as_user(User::numeric(64002), "/usr/bin/id").run();
    id.assert_success();
    assert_eq!(id.stdout_str(), "uid=64002 gid=64002 groups=64002\n");
    let env = sys.as_user(NOBODY, "/usr/bin/env").run();
    env.assert_success();
    let vars: Vec<String> = env.stdout_str().lines().map(str::to_owned).collect();
    let root = format!("OUTBOX_SPOOL={}", sys.root().display());
    for want in [root.as_str(), "HOME=/nonexistent", "USER=nobody"] {
        assert!(vars.iter().any(|v| v == want), "no {want} in {vars:?}");
    }
    for gone in ["OUTBOX_CONFIG=", "XDG_CONFIG_HOME="] {
        assert!(
            !vars.iter().any(|v| v.starts_with(gone)),
            "{gone} in {vars:?}"
        );
    }
    // The submitters' log is open to every user.
    let append = sys.shell(
        NOBODY,
        r#"printf 'x\n' >> "$1""#,
        &[&sys.submit_log().to_string_lossy()],
    );
    append.assert_success();
    assert_eq!(fs::read_to_string(sys.submit_log()).unwrap(), "x\n");
}

#[test]
fn system_support_service_ids_are_unique() {
    let (a, b) = (service_ids(), service_ids());
    assert_ne!(a, b);
    assert_eq!((a.uid, b.uid), (a.gid, b.gid));
}

#[test]
fn system_support_the_service_guard_kills_the_service() {
    let sys = System::new(&format!("127.0.0.1:{}", free_port()), "");
    let pid = {
        let mut service = sys.serve();
        assert!(service.is_running(), "{}", service.report());
        let pid = service.pid();
        assert!(alive(pid), "pid {pid}");
        pid
    };
    assert!(!alive(pid), "`outbox serve` (pid {pid}) outlived its guard");
}

#[test]
fn system_support_seq_numbers_counts_each_value() {
    let msgs: Vec<Vec<u8>> = [
        "Subject: a\nX-Seq: 3\n\nbody\n",
        "x-seq: 1\n\nX-Seq: 9 (in the body, not a header)\n",
        "X-Seq: 3\n\n",
        "Subject: none\n\nX-Seq: 4\n",
    ]
    .iter()
    .map(|m| m.as_bytes().to_vec())
    .collect();
    let seen = seq_numbers(&msgs, "X-Seq");
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [(1, 1), (3, 2)]);
}

#[test]
fn system_support_any_file_contains_looks_in_subdirectories() {
    let dir = TempDir::new("outbox-sys-grep");
    fs::create_dir_all(dir.join("a/b")).unwrap();
    fs::write(dir.join("a/b/file"), b"one two SECRET three").unwrap();
    fs::write(dir.join("top"), b"nothing").unwrap();
    assert!(any_file_contains(dir.path(), b"SECRET"));
    assert!(!any_file_contains(dir.path(), b"SECRET!"));
    assert!(!any_file_contains(Path::new("/nonexistent/dir"), b"x"));
}
