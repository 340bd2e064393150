//! `outbox system remove [--purge]`: the set-up undone, backwards. Mail is never
//! lost on the way: a spool in which messages wait is kept (and said), unless
//! `--purge` asks for it whatever it holds.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use outbox::exit;
use outbox::spool;
use outbox::system::account::{self, User};
use outbox::system::links::{self, Remove};
use outbox::system::{SYSTEMD_RUNNING, UNIT_NAME, start, tool};

use super::{Failure, RemoveArgs, Steps};

/// How deep below the spool's root the count of waiting messages looks: the queue's
/// `failed/` and `tmp/` are two levels down; nothing of outbox's is deeper.
const COUNT_DEPTH: usize = 4;

pub fn run(args: &RemoveArgs) -> Result<(), Failure> {
    let places = &args.places;
    let (binary, spool_root, config) = places.checked()?;
    let unit_file = places.unit_file();
    let systemd = Path::new(SYSTEMD_RUNNING).is_dir();
    let mut steps = Steps::default();

    let user = account::find_user(&places.user)?;
    if let (true, Some(root)) = (args.purge, user.as_ref().filter(|u| u.uid == 0)) {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "{} has uid 0: it is not the service's user, and --purge would remove it",
                root.name
            ),
        ));
    }
    let unit_there = fs::symlink_metadata(&unit_file).is_ok();
    let plan = start::plan_stop(systemd, places.unit_dir_is_systemds(), unit_there);
    for command in &plan.before {
        tool::run("systemctl", command)?;
    }
    if !plan.before.is_empty() {
        steps.did("stop", format!("stopped and disabled {UNIT_NAME}"));
    } else if !systemd {
        steps.found(
            "stop",
            "systemd is not running here: an `outbox serve` that the init starts must be \
             stopped there",
        );
    }
    if unit_there {
        fs::remove_file(&unit_file).map_err(|e| Failure::io("remove", &unit_file, e))?;
        steps.did("unit", format!("removed {}", unit_file.display()));
    } else {
        steps.found("unit", format!("{} is not there", unit_file.display()));
    }
    for command in &plan.after {
        tool::run("systemctl", command)?;
    }
    for path in places.links() {
        link_step(&mut steps, &path, &binary)?;
    }
    spool_step(&mut steps, &spool_root, user.as_ref(), args.purge)?;
    if args.purge {
        purge_config(&mut steps, &config)?;
        purge_user(&mut steps, &places.user, user.as_ref(), &spool_root)?;
    } else {
        if fs::symlink_metadata(&config).is_ok() {
            steps.found(
                "config",
                format!("kept {} (--purge removes it)", config.display()),
            );
        }
        if user.is_some() {
            steps.found("user", format!("kept {} (--purge removes it)", places.user));
        }
    }
    if !steps.changed() {
        steps.found(
            "done",
            "nothing changed: what is left, if anything, is said above",
        );
    }
    Ok(())
}

/// One link: removed if it is outbox's, and what `--force` moved aside put back.
fn link_step(steps: &mut Steps, path: &Path, binary: &Path) -> Result<(), Failure> {
    let found = links::examine(path, binary).map_err(|e| Failure::io("examine", path, e))?;
    let saved = links::saved_path(path);
    let plan = links::plan_remove(path, &found, fs::symlink_metadata(&saved).is_ok());
    let unlink = || fs::remove_file(path).map_err(|e| Failure::io("remove", path, e));
    let restore = || fs::rename(&saved, path).map_err(|e| Failure::io("restore", path, e));
    match plan {
        Remove::Nothing => steps.found("link", format!("{} is not there", path.display())),
        Remove::Unlink => {
            unlink()?;
            steps.did("link", format!("removed {}", path.display()));
        }
        Remove::UnlinkAndRestore => {
            unlink()?;
            restore()?;
            steps.did(
                "link",
                format!(
                    "removed {0}; put back what was there before outbox, from {1}",
                    path.display(),
                    saved.display()
                ),
            );
        }
        Remove::Restore => {
            restore()?;
            steps.did(
                "link",
                format!("put back {} from {}", path.display(), saved.display()),
            );
        }
        Remove::Leave(why) => steps.found("link", why),
    }
    Ok(())
}

/// The spool: removed when no message waits in it (or with `--purge`), else kept
/// and said. Only a directory that is outbox's spool is ever removed: one of the
/// service's user (of some user not root, when the user is gone) with a
/// `maildrop/`.
fn spool_step(
    steps: &mut Steps,
    root: &Path,
    user: Option<&User>,
    purge: bool,
) -> Result<(), Failure> {
    let meta = match fs::symlink_metadata(root) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            steps.found("spool", format!("{} is not there", root.display()));
            return Ok(());
        }
        Err(e) => return Err(Failure::io("examine", root, e)),
    };
    let owner_ok = match user {
        Some(user) => meta.uid() == user.uid,
        None => meta.uid() != 0,
    };
    let has_maildrop = fs::symlink_metadata(root.join(spool::MAILDROP)).is_ok_and(|m| m.is_dir());
    if !meta.is_dir() || !owner_ok || !has_maildrop {
        steps.found(
            "spool",
            format!(
                "{} is not outbox's spool (uid {}{}): left as it is",
                root.display(),
                meta.uid(),
                if has_maildrop { "" } else { ", no maildrop/" }
            ),
        );
        return Ok(());
    }
    let waiting = count_waiting(root).map_err(|e| Failure::io("look into", root, e))?;
    let total: usize = waiting.values().sum();
    if total > 0 && !purge {
        let places = waiting
            .iter()
            .map(|(dir, n)| format!("{n} in {dir}/"))
            .collect::<Vec<_>>()
            .join(", ");
        steps.found(
            "spool",
            format!(
                "kept {}: {total} message{} wait{} there ({places}); let the service \
                 deliver {} (`outbox serve`, or `outbox queue flush` as root), or run \
                 `outbox system remove --purge` to remove {} with the spool",
                root.display(),
                plural(total),
                if total == 1 { "s" } else { "" },
                if total == 1 { "it" } else { "them" },
                if total == 1 { "it" } else { "them" },
            ),
        );
        return Ok(());
    }
    fs::remove_dir_all(root).map_err(|e| Failure::io("remove", root, e))?;
    if total > 0 {
        steps.did(
            "spool",
            format!(
                "removed {} with the {total} message{} in it (--purge)",
                root.display(),
                plural(total)
            ),
        );
    } else {
        steps.did(
            "spool",
            format!("removed {} (no message waited in it)", root.display()),
        );
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The files below the spool's root that are messages (queued, dropped, being
/// taken, failed, set aside), by the directory that holds them, relative to the
/// root. The public files (`limits`, `users/`) are not, nor the reasons beside the
/// drops set aside in `bad/`.
fn count_waiting(root: &Path) -> io::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    let mut dirs = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap_or(&path);
            if relative == Path::new(spool::LIMITS) || relative == Path::new(spool::USERS) {
                continue;
            }
            // file_type() is lstat's: a symbolic link is counted, never followed.
            if entry.file_type()?.is_dir() {
                if depth + 1 < COUNT_DEPTH {
                    dirs.push((path, depth + 1));
                }
                continue;
            }
            // A set-aside drop's reason is about the drop, not a message of its own.
            let in_bad = relative.starts_with(spool::BAD);
            if in_bad
                && entry
                    .file_name()
                    .to_string_lossy()
                    .ends_with(spool::REASON_SUFFIX)
            {
                continue;
            }
            let holder = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
            let holder = if holder.is_empty() {
                ".".to_owned()
            } else {
                holder
            };
            *counts.entry(holder).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// `--purge`: the configuration file, and its directory when it is outbox's own
/// (named `outbox`) and left empty.
fn purge_config(steps: &mut Steps, config: &Path) -> Result<(), Failure> {
    match fs::symlink_metadata(config) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            steps.found("config", format!("{} is not there", config.display()));
        }
        Err(e) => return Err(Failure::io("examine", config, e)),
        Ok(meta) if meta.is_dir() => {
            return Err(Failure::new(
                exit::CONFIG,
                format!("{} is a directory: left as it is", config.display()),
            ));
        }
        Ok(_) => {
            fs::remove_file(config).map_err(|e| Failure::io("remove", config, e))?;
            steps.did("config", format!("removed {}", config.display()));
        }
    }
    let Some(dir) = config
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n == "outbox"))
    else {
        return Ok(());
    };
    let empty = fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    if empty {
        fs::remove_dir(dir).map_err(|e| Failure::io("remove", dir, e))?;
        steps.did("config", format!("removed the directory {}", dir.display()));
    }
    Ok(())
}

/// `--purge`: the service's user, and its group where userdel(8) left it.
fn purge_user(
    steps: &mut Steps,
    name: &str,
    user: Option<&User>,
    spool_root: &Path,
) -> Result<(), Failure> {
    let Some(user) = user else {
        steps.found("user", format!("{name} does not exist"));
        return Ok(());
    };
    // The set-up makes its user with the spool as home; a user found with another
    // home was there before (say www-data) and is not the set-up's to delete.
    if Path::new(&user.home) != spool_root {
        steps.found(
            "user",
            format!(
                "kept {name}: its home is {}, not the spool, so the set-up did not make it",
                user.home
            ),
        );
        return Ok(());
    }
    tool::run("userdel", &["--", name])?;
    steps.did(
        "user",
        format!("removed the user {name} (uid {})", user.uid),
    );
    // userdel removes the user's own group (USERGROUPS_ENAB) only where nobody else
    // is in it; a group of the name that was the user's is the set-up's to remove.
    if let Some(group) = account::find_group(name)?.filter(|g| g.gid == user.gid) {
        tool::run("groupdel", &["--", name])?;
        steps.did(
            "user",
            format!("removed the group {name} (gid {})", group.gid),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_messages_are_counted_where_they_are() {
        let root = std::env::temp_dir().join(format!("outbox-count-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in [
            "maildrop",
            "bad",
            "incoming",
            "queue/failed",
            "queue/tmp",
            "users",
        ] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "maildrop/a",
            "maildrop/b.tmp",
            "bad/c",
            "bad/c.reason",
            "queue/1",
            "queue/2",
            "queue/failed/3",
            "users/1000",
            "limits",
        ] {
            fs::write(root.join(file), b"x").unwrap();
        }
        std::os::unix::fs::symlink("/etc/shadow", root.join("incoming/link")).unwrap();
        let counts = count_waiting(&root).unwrap();
        let want: BTreeMap<String, usize> = [
            ("bad".to_owned(), 1),
            ("incoming".to_owned(), 1),
            ("maildrop".to_owned(), 2),
            ("queue".to_owned(), 2),
            ("queue/failed".to_owned(), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(counts, want);
        fs::remove_dir_all(&root).unwrap();
        let empty = std::env::temp_dir().join(format!("outbox-count-e-{}", std::process::id()));
        fs::create_dir_all(empty.join("queue/tmp")).unwrap();
        fs::create_dir_all(empty.join("users")).unwrap();
        fs::write(empty.join("users/0"), b"").unwrap();
        assert!(count_waiting(&empty).unwrap().is_empty());
        fs::remove_dir_all(&empty).unwrap();
    }
}
