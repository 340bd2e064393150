//! The system queue, for root and the service's user: what `queue list|flush|remove`
//! and `sendmail -q` work on in system mode, and how the service starts.

use std::path::PathBuf;

use outbox::config::{self, Config};
use outbox::spool::{Owner, SetUp, Spool};
use outbox::{Error, passwd};

use super::output::say;

/// Makes this process the spool's owner when it runs as root, so that what it writes
/// in the spool (queue entries, bounces) stays the service's to read. Run by another
/// user, it must be that owner already. Before any thread starts.
pub fn become_service(spool: &Spool) -> Result<Owner, Error> {
    let owner = match spool.detect() {
        SetUp::Ready { owner, .. } => owner,
        SetUp::Absent => {
            return Err(Error::Config(format!(
                "there is no system spool at {} (outbox system setup makes one)",
                spool.root().display()
            )));
        }
        SetUp::Denied(why) => return Err(Error::Denied(why)),
        SetUp::Broken(why) => return Err(Error::Config(why)),
    };
    let me = passwd::effective_uid();
    if me == owner.uid {
        return Ok(owner);
    }
    if me != 0 {
        let name = passwd::name_of(owner.uid).unwrap_or_else(|| format!("uid {}", owner.uid));
        return Err(Error::Denied(format!(
            "the system queue in {} is the service's: run this as root or as {name}",
            spool.root().display()
        )));
    }
    if owner.uid != 0 {
        passwd::become_user(owner.uid, owner.gid).map_err(|source| Error::LocalIo {
            context: format!("cannot become the service's user (uid {})", owner.uid),
            source,
        })?;
    }
    Ok(owner)
}

/// The service's configuration (`$OUTBOX_CONFIG`, else `/etc/outbox/config.toml`,
/// read as the service's user), with the spool's queue as the queue whatever the
/// file says. A file that is there but cannot be read is an error (78): going on
/// without it would send the mail to localhost:25, past the relay and its login.
pub fn config(spool: &Spool) -> Result<Config, Error> {
    let path = std::env::var_os("OUTBOX_CONFIG")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(config::SYSTEM_PATH), PathBuf::from);
    let config = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            say!(
                "outbox: warning: there is no {}; the service uses the built-in defaults",
                path.display()
            );
            Config::empty(&path)
        }
        _ => Config::load(&path)?,
    };
    for warning in &config.warnings {
        say!("outbox: warning: {warning}");
    }
    Ok(config.with_queue_dir(spool.queue_dir()))
}
