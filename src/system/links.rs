//! The `sendmail` and `mailq` links: what is at each path, and what the set-up and
//! the removal do about it. A file that is not outbox's is never overwritten: it is
//! refused, or with `--force` kept beside as `<path>.before-outbox`, which the
//! removal puts back.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use super::tool;

/// What is appended to the name of a file that `--force` moves aside.
pub const SAVED_SUFFIX: &str = ".before-outbox";

/// The links when `--links-in` names no directory: where programs look for sendmail
/// (the FHS's `/usr/sbin/sendmail`, the historical `/usr/lib/sendmail`) and mailq.
pub const DEFAULT_LINKS: &[&str] = &["/usr/sbin/sendmail", "/usr/bin/mailq", "/usr/lib/sendmail"];

/// The links that `--links-in DIR` makes.
pub fn links_in(dir: &Path) -> Vec<PathBuf> {
    ["sendmail", "mailq"].iter().map(|n| dir.join(n)).collect()
}

/// Where a file moved aside from `path` is kept.
pub fn saved_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(SAVED_SUFFIX);
    PathBuf::from(name)
}

/// What is at a link's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Missing,
    /// A symbolic link to this binary.
    Ours,
    /// A symbolic link to another binary named outbox (moved, or gone since): a
    /// link of an earlier set-up.
    Earlier(PathBuf),
    /// Anything else, in words.
    Other(String),
}

/// What the set-up does at a link's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setup {
    /// It is this binary's link already.
    Keep,
    Make,
    /// Replace an earlier set-up's link.
    Replace,
    /// Move what is there to [`saved_path`], then make the link (`--force`).
    SaveAndMake,
    /// Touch nothing, for this reason.
    Refuse(String),
}

/// What the removal does at a link's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remove {
    Nothing,
    /// Remove outbox's link.
    Unlink,
    /// Remove outbox's link and put the saved file back.
    UnlinkAndRestore,
    /// Nothing is there: put the saved file back.
    Restore,
    /// What is there is not outbox's: leave it (and the saved file), for this reason.
    Leave(String),
}

/// The set-up's decision for `path`, where `found` is there, `saved` says whether
/// [`saved_path`] exists, and `force` is `--force`.
pub fn plan_setup(path: &Path, found: &Found, saved: bool, force: bool) -> Setup {
    match found {
        Found::Ours => Setup::Keep,
        Found::Missing => Setup::Make,
        Found::Earlier(_) => Setup::Replace,
        Found::Other(what) if !force => Setup::Refuse(format!(
            "{} is {what}, not outbox's: left as it is; --force moves it to {} and puts \
             it back on `outbox system remove`",
            path.display(),
            saved_path(path).display()
        )),
        // One saved file only: the first is what the machine had before outbox.
        Found::Other(what) if saved => Setup::Refuse(format!(
            "{} is {what}, and {} already holds what was there before outbox: move one \
             of them away first",
            path.display(),
            saved_path(path).display()
        )),
        Found::Other(_) => Setup::SaveAndMake,
    }
}

/// The removal's decision for `path`.
pub fn plan_remove(path: &Path, found: &Found, saved: bool) -> Remove {
    match (found, saved) {
        (Found::Ours | Found::Earlier(_), false) => Remove::Unlink,
        (Found::Ours | Found::Earlier(_), true) => Remove::UnlinkAndRestore,
        (Found::Missing, true) => Remove::Restore,
        (Found::Missing, false) => Remove::Nothing,
        (Found::Other(what), _) => Remove::Leave(if saved {
            format!(
                "{} is {what}, not outbox's: left as it is, and so is {}",
                path.display(),
                saved_path(path).display()
            )
        } else {
            format!("{} is {what}, not outbox's: left as it is", path.display())
        }),
    }
}

/// What is at `path`, for `binary` (absolute, its links resolved).
pub fn examine(path: &Path, binary: &Path) -> io::Result<Found> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_symlink() {
        let kind = if meta.is_dir() {
            "a directory"
        } else if meta.is_file() {
            "a file"
        } else {
            "a special file"
        };
        return Ok(Found::Other(describe(
            kind,
            None,
            installed_by(path).as_deref(),
        )));
    }
    let target = std::fs::read_link(path)?;
    let absolute = match path.parent() {
        Some(dir) => dir.join(&target),
        None => target.clone(),
    };
    if absolute.canonicalize().is_ok_and(|t| t == binary) {
        return Ok(Found::Ours);
    }
    if target.file_name().is_some_and(|n| n == "outbox") {
        return Ok(Found::Earlier(target));
    }
    Ok(Found::Other(describe(
        "a symbolic link",
        Some(&target),
        installed_by(path).as_deref(),
    )))
}

/// The words for what is at a link's path: its kind, where a symbolic link points,
/// and the package that installed it (Postfix's sendmail says "the package postfix").
pub fn describe(kind: &str, target: Option<&Path>, package: Option<&str>) -> String {
    let mut text = kind.to_owned();
    if let Some(target) = target {
        text.push_str(&format!(" to {}", target.display()));
    }
    match package {
        Some(package) => text.push_str(&format!(" installed by the package {package}")),
        None => text.push_str(" that no package installed"),
    }
    text
}

/// The Debian package that installed `path`, where dpkg knows it.
fn installed_by(path: &Path) -> Option<String> {
    let path = path.to_str()?;
    tool::run("dpkg-query", &["-S", path])
        .ok()
        .and_then(|out| dpkg_owner(&out))
}

/// The package in what `dpkg-query -S PATH` prints (`postfix: /usr/sbin/sendmail`;
/// a diversion is said on lines of their own, which name no owner).
pub fn dpkg_owner(output: &str) -> Option<String> {
    output
        .lines()
        .filter(|l| !l.starts_with("diversion by") && !l.starts_with("local diversion"))
        .find_map(|l| l.split_once(": ").map(|(owner, _)| owner.trim().to_owned()))
        .filter(|owner| !owner.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_paths() {
        assert_eq!(
            links_in(Path::new("/opt/bin")),
            [Path::new("/opt/bin/sendmail"), Path::new("/opt/bin/mailq")]
        );
        assert_eq!(
            saved_path(Path::new("/usr/sbin/sendmail")),
            Path::new("/usr/sbin/sendmail.before-outbox")
        );
    }

    #[test]
    fn setup_decisions() {
        let path = Path::new("/usr/sbin/sendmail");
        let postfix = Found::Other(describe("a file", None, Some("postfix")));
        assert_eq!(plan_setup(path, &Found::Ours, false, false), Setup::Keep);
        assert_eq!(plan_setup(path, &Found::Ours, true, true), Setup::Keep);
        assert_eq!(plan_setup(path, &Found::Missing, false, false), Setup::Make);
        let earlier = Found::Earlier("/opt/old/outbox".into());
        assert_eq!(plan_setup(path, &earlier, false, false), Setup::Replace);
        assert_eq!(
            plan_setup(path, &postfix, false, false),
            Setup::Refuse(
                "/usr/sbin/sendmail is a file installed by the package postfix, not \
                 outbox's: left as it is; --force moves it to \
                 /usr/sbin/sendmail.before-outbox and puts it back on `outbox system \
                 remove`"
                    .into()
            )
        );
        assert_eq!(plan_setup(path, &postfix, false, true), Setup::SaveAndMake);
        assert_eq!(
            plan_setup(path, &postfix, true, true),
            Setup::Refuse(
                "/usr/sbin/sendmail is a file installed by the package postfix, and \
                 /usr/sbin/sendmail.before-outbox already holds what was there before \
                 outbox: move one of them away first"
                    .into()
            )
        );
    }

    #[test]
    fn remove_decisions() {
        let path = Path::new("/usr/bin/mailq");
        let earlier = Found::Earlier("/opt/old/outbox".into());
        assert_eq!(plan_remove(path, &Found::Ours, false), Remove::Unlink);
        assert_eq!(plan_remove(path, &earlier, false), Remove::Unlink);
        assert_eq!(
            plan_remove(path, &Found::Ours, true),
            Remove::UnlinkAndRestore
        );
        assert_eq!(plan_remove(path, &Found::Missing, true), Remove::Restore);
        assert_eq!(plan_remove(path, &Found::Missing, false), Remove::Nothing);
        let other = Found::Other("a file that no package installed".into());
        assert_eq!(
            plan_remove(path, &other, false),
            Remove::Leave(
                "/usr/bin/mailq is a file that no package installed, not outbox's: left \
                 as it is"
                    .into()
            )
        );
        assert_eq!(
            plan_remove(path, &other, true),
            Remove::Leave(
                "/usr/bin/mailq is a file that no package installed, not outbox's: left \
                 as it is, and so is /usr/bin/mailq.before-outbox"
                    .into()
            )
        );
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            describe("a symbolic link", Some(Path::new("../lib/x")), None),
            "a symbolic link to ../lib/x that no package installed"
        );
        assert_eq!(
            describe("a file", None, Some("postfix")),
            "a file installed by the package postfix"
        );
    }

    #[test]
    fn dpkg_owners() {
        assert_eq!(
            dpkg_owner("postfix: /usr/sbin/sendmail\n").as_deref(),
            Some("postfix")
        );
        assert_eq!(
            dpkg_owner(
                "diversion by foo from: /usr/sbin/sendmail\n\
                 diversion by foo to: /usr/sbin/sendmail.real\n\
                 bar, baz: /usr/sbin/sendmail\n"
            )
            .as_deref(),
            Some("bar, baz")
        );
        assert_eq!(dpkg_owner(""), None);
    }

    #[test]
    fn a_packaged_file_names_its_package() {
        let path = Path::new("/usr/bin/dpkg-query");
        if !path.exists() {
            println!("skipped: no dpkg here");
            return;
        }
        assert_eq!(
            examine(path, Path::new("/usr/local/bin/outbox")).unwrap(),
            Found::Other("a file installed by the package dpkg".into())
        );
    }

    #[test]
    fn what_is_found_at_a_path() {
        let dir = std::env::temp_dir().join(format!("outbox-links-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join("outbox");
        std::fs::write(&binary, b"").unwrap();
        let binary = binary.canonicalize().unwrap();
        let ours = dir.join("sendmail");
        std::os::unix::fs::symlink(&binary, &ours).unwrap();
        assert_eq!(examine(&ours, &binary).unwrap(), Found::Ours);
        let relative = dir.join("mailq");
        std::os::unix::fs::symlink("outbox", &relative).unwrap();
        assert_eq!(examine(&relative, &binary).unwrap(), Found::Ours);
        let gone = dir.join("old");
        std::os::unix::fs::symlink("/nonexistent/outbox", &gone).unwrap();
        assert_eq!(
            examine(&gone, &binary).unwrap(),
            Found::Earlier("/nonexistent/outbox".into())
        );
        let file = dir.join("file");
        std::fs::write(&file, b"#!/bin/sh\n").unwrap();
        assert_eq!(
            examine(&file, &binary).unwrap(),
            Found::Other("a file that no package installed".into())
        );
        let elsewhere = dir.join("elsewhere");
        std::os::unix::fs::symlink("file", &elsewhere).unwrap();
        assert_eq!(
            examine(&elsewhere, &binary).unwrap(),
            Found::Other("a symbolic link to file that no package installed".into())
        );
        assert_eq!(
            examine(&dir.join("missing"), &binary).unwrap(),
            Found::Missing
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
