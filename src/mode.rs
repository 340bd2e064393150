//! Which of the two modes a face runs in, and why (`-v` says).
//!
//! - **Personal**: the caller's own configuration and queue, delivering in the
//!   caller's process (what outbox always did).
//! - **System**: the administrator has set up the system spool (`outbox system
//!   setup`); the sendmail face (and compose `--queue`) hand the message to the
//!   spool's drop directory, and the service (`outbox serve`) delivers it with a
//!   configuration no user can read.
//!
//! A caller with a configuration of its own (`$OUTBOX_CONFIG`, or
//! `~/.config/outbox/config.toml`) stays personal on a machine set up for system mode:
//! that file says how this user wants mail sent, and the drop would ignore it.

use std::path::PathBuf;

use crate::config::Config;
use crate::error::Error;
use crate::spool::{Owner, ROOT_ENV, SetUp, Spool};

/// The mode, with what decided it.
pub enum Mode {
    Personal {
        why: String,
    },
    System {
        spool: Spool,
        maildrop: PathBuf,
        owner: Owner,
    },
}

impl Mode {
    /// The mode of this caller. An error when the spool is set up but this user may
    /// not submit (77), or is there but not as the set-up makes it (78): falling back
    /// to personal mode then would leave mail where nobody looks.
    pub fn detect() -> Result<Mode, Error> {
        Mode::detect_in(
            Config::personal_path(),
            Spool::at(Spool::default_root()),
            false,
        )
    }

    /// The mode of the queue's commands (`queue list|flush|remove`, `sendmail -q`,
    /// `mailq`): as [`Mode::detect`], except that a spool named by `$OUTBOX_SPOOL`
    /// is the one they work on whatever configuration the caller names, so that root
    /// can flush the system queue with the configuration `$OUTBOX_CONFIG` names.
    pub fn detect_for_queue() -> Result<Mode, Error> {
        let named = std::env::var_os(ROOT_ENV).is_some_and(|v| !v.is_empty());
        Mode::detect_in(
            Config::personal_path(),
            Spool::at(Spool::default_root()),
            named,
        )
    }

    /// The mode for a caller whose own configuration is `personal`, on a machine whose
    /// spool would be `spool`. A spool `named` (for the queue's commands) is used
    /// when it is there, even by a caller with a configuration of its own.
    pub fn detect_in(personal: Option<PathBuf>, spool: Spool, named: bool) -> Result<Mode, Error> {
        let found = spool.detect();
        if named && !matches!(found, SetUp::Absent) {
            return Mode::of(spool, found);
        }
        if let Some(path) = personal {
            return Ok(Mode::Personal {
                why: format!("{} is this user's own configuration", path.display()),
            });
        }
        Mode::of(spool, found)
    }

    fn of(spool: Spool, found: SetUp) -> Result<Mode, Error> {
        match found {
            SetUp::Absent => Ok(Mode::Personal {
                why: format!("there is no system spool at {}", spool.root().display()),
            }),
            SetUp::Ready { maildrop, owner } => Ok(Mode::System {
                spool,
                maildrop,
                owner,
            }),
            SetUp::Denied(why) => Err(Error::Denied(why)),
            SetUp::Broken(why) => Err(Error::Config(why)),
        }
    }

    /// What `-v` says: the mode and why.
    pub fn describe(&self) -> String {
        match self {
            Mode::Personal { why } => format!("personal mode ({why})"),
            Mode::System {
                maildrop, owner, ..
            } => {
                let name = crate::passwd::name_of(owner.uid)
                    .unwrap_or_else(|| format!("uid {}", owner.uid));
                format!(
                    "system mode (the spool is set up: drops go to {}, delivered by the \
                     service running as {name})",
                    maildrop.display()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Owner;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "outbox-mode-{name}-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_caller_with_its_own_configuration_stays_personal_even_with_a_spool() {
        let dir = temp_dir("own");
        let spool = Spool::at(dir.join("spool"));
        let me = Owner {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        };
        spool.create(me, None).unwrap();
        let own = dir.join("config.toml");
        let mode = Mode::detect_in(Some(own.clone()), spool.clone(), false).unwrap();
        assert!(
            matches!(&mode, Mode::Personal { why } if why.contains("config.toml")),
            "{}",
            mode.describe()
        );
        // A spool named by $OUTBOX_SPOOL wins over the caller's configuration.
        let named = Mode::detect_in(Some(own), spool.clone(), true).unwrap();
        assert!(matches!(named, Mode::System { .. }), "{}", named.describe());
        // Without one, the spool decides.
        let mode = Mode::detect_in(None, spool, false).unwrap();
        match &mode {
            Mode::System {
                maildrop, owner, ..
            } => {
                assert_eq!(*maildrop, dir.join("spool/maildrop"));
                assert_eq!(*owner, me);
            }
            Mode::Personal { why } => panic!("personal: {why}"),
        }
        assert!(
            mode.describe().starts_with("system mode"),
            "{}",
            mode.describe()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_spool_means_personal_and_a_broken_one_is_an_error() {
        let dir = temp_dir("none");
        let mode = Mode::detect_in(None, Spool::at(dir.join("spool")), true).unwrap();
        assert!(
            mode.describe()
                .starts_with("personal mode (there is no system spool"),
            "{}",
            mode.describe()
        );
        // A named spool that is not there leaves the caller's own configuration in
        // charge.
        let own = Mode::detect_in(Some(dir.join("c.toml")), Spool::at(dir.join("spool")), true);
        assert!(
            matches!(own, Ok(Mode::Personal { ref why }) if why.contains("c.toml")),
            "personal expected"
        );
        // A maildrop that is a plain directory is not a set-up: refused, not ignored.
        std::fs::create_dir_all(dir.join("spool/maildrop")).unwrap();
        let err = Mode::detect_in(None, Spool::at(dir.join("spool")), false)
            .err()
            .expect("a broken spool is an error");
        assert!(matches!(err, Error::Config(_)), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
