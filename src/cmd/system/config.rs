//! The set-up's configuration step: the file that holds the relay's credentials
//! goes to the service's user alone, and is never taken from someone else.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use outbox::exit;
use outbox::system::template::CONFIG_TEMPLATE;
use outbox::system::{CONFIG_DIR_MODE, CONFIG_MODE};

use super::{Failure, Service, Steps, octal};

/// Step 3: the configuration's directory (root's, 0755) and file (the service's,
/// 0600), the file made from the template where missing.
pub fn config_step(steps: &mut Steps, config: &Path, service: &Service) -> Result<(), Failure> {
    let dir = config.parent().unwrap_or(Path::new("/"));
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(CONFIG_DIR_MODE)
                .create(dir)
                .map_err(|e| Failure::io("create the directory", dir, e))?;
            // The umask may have cut the mode; root's group, not the caller's.
            fs::set_permissions(dir, fs::Permissions::from_mode(CONFIG_DIR_MODE))
                .map_err(|e| Failure::io("chmod", dir, e))?;
            std::os::unix::fs::chown(dir, Some(0), Some(0))
                .map_err(|e| Failure::io("chown", dir, e))?;
            steps.did(
                "config",
                format!("made the directory {} (root, 0755)", dir.display()),
            );
        }
        Err(e) => return Err(Failure::io("examine", dir, e)),
        Ok(meta) => check_config_dir(Some(steps), dir, &meta)?,
    }
    let file = match fs::symlink_metadata(config) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(CONFIG_MODE)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(config)
                .map_err(|e| Failure::io("create", config, e))?;
            std::os::unix::fs::fchown(&file, Some(service.uid), Some(service.gid))
                .map_err(|e| Failure::io("chown", config, e))?;
            // The umask may have cut the mode further; never wider than 0600.
            file.set_permissions(fs::Permissions::from_mode(CONFIG_MODE))
                .and_then(|()| file.write_all(CONFIG_TEMPLATE.as_bytes()))
                .and_then(|()| file.sync_all())
                .map_err(|e| Failure::io("write", config, e))?;
            steps.did(
                "config",
                format!(
                    "made {} from the template (server localhost, port 25: set the relay \
                     there), owned by {} with mode 0600",
                    config.display(),
                    service.name
                ),
            );
            return Ok(());
        }
        Err(e) => return Err(Failure::io("examine", config, e)),
        Ok(meta) => {
            check_config_file(config, &meta, service.uid)?;
            let file = File::options()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(config)
                .map_err(|e| Failure::io("open", config, e))?;
            let opened = file
                .metadata()
                .map_err(|e| Failure::io("examine", config, e))?;
            if opened.ino() != meta.ino() || opened.dev() != meta.dev() {
                return Err(Failure::new(
                    exit::CONFIG,
                    format!("{} changed while it was examined", config.display()),
                ));
            }
            file
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| Failure::io("examine", config, e))?;
    let right = meta.uid() == service.uid
        && meta.gid() == service.gid
        && meta.mode() & 0o7777 == CONFIG_MODE;
    if right {
        steps.found(
            "config",
            format!(
                "{} belongs to {} with mode 0600, as it should",
                config.display(),
                service.name
            ),
        );
        return Ok(());
    }
    std::os::unix::fs::fchown(&file, Some(service.uid), Some(service.gid))
        .map_err(|e| Failure::io("chown", config, e))?;
    file.set_permissions(fs::Permissions::from_mode(CONFIG_MODE))
        .map_err(|e| Failure::io("chmod", config, e))?;
    steps.did(
        "config",
        format!(
            "{} now belongs to {}:{} with mode 0600 (was uid {}, gid {}, mode {}): only \
             the service reads the relay's credentials",
            config.display(),
            service.name,
            service.group,
            meta.uid(),
            meta.gid(),
            octal(meta.mode())
        ),
    );
    Ok(())
}

/// An existing directory for the configuration is left as it is, but it must be
/// root's and closed to others' writes: who can write it can put their own
/// configuration in the service's place.
pub fn check_config_dir(
    steps: Option<&mut Steps>,
    dir: &Path,
    meta: &fs::Metadata,
) -> Result<(), Failure> {
    if !meta.is_dir() {
        return Err(Failure::new(
            exit::CONFIG,
            format!(
                "{} is not a directory: the configuration cannot go there",
                dir.display()
            ),
        ));
    }
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(Failure::new(
            exit::CONFIG,
            format!(
                "{} (uid {}, mode {}) can be written by others than root, who could put a \
                 configuration of their own in the service's: choose another --config, or \
                 chown root and chmod go-w the directory",
                dir.display(),
                meta.uid(),
                octal(meta.mode())
            ),
        ));
    }
    if let (Some(steps), true) = (steps, meta.mode() & 0o001 == 0) {
        steps.warn(format!(
            "{} has mode {}: the service's user may not reach the configuration in it",
            dir.display(),
            octal(meta.mode())
        ));
    }
    Ok(())
}

/// An existing configuration file is taken only if it is a plain file of its own
/// (not a symbolic or hard link to another, which chown would give away) made by
/// root or the service.
pub fn check_config_file(
    config: &Path,
    meta: &fs::Metadata,
    service_uid: u32,
) -> Result<(), Failure> {
    let problem = if meta.file_type().is_symlink() {
        Some("is a symbolic link".to_owned())
    } else if !meta.is_file() {
        Some("is not a file".to_owned())
    } else if meta.nlink() > 1 {
        Some(format!("has {} hard links", meta.nlink()))
    } else if meta.uid() != 0 && meta.uid() != service_uid {
        Some(format!(
            "belongs to uid {}, neither root nor the service",
            meta.uid()
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(Failure::new(
            exit::CONFIG,
            format!(
                "{} {problem}: the set-up gives the configuration to the service's user \
                 alone, and will not take this one; check what it holds, make it a plain \
                 file of root's, and run the set-up again",
                config.display()
            ),
        )),
    }
}
