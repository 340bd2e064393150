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
use crate::spool::{Owner, SetUp, Spool};

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
        if let Some(path) = Config::personal_path() {
            return Ok(Mode::Personal {
                why: format!("{} is this user's own configuration", path.display()),
            });
        }
        let spool = Spool::at(Spool::default_root());
        match spool.detect() {
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
                let name = crate::passwd::login_name(crate::passwd::read(), owner.uid)
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
