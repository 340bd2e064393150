//! `outbox system setup`: every check first (names, paths, groups, what is at the
//! links' paths), so that a refusal leaves the machine as it was; then the steps, in
//! the order the service needs them.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use outbox::exit;
use outbox::spool::{self, Owner, Spool};
use outbox::system::links::{self, Setup};
use outbox::system::start::{self, Known, NotStarted, Start};
use outbox::system::unit::{self, UnitValues};
use outbox::system::{self, SYSTEMD_RUNNING, UNIT_MODE, UNIT_NAME, account, tool};

use super::config::{check_config_dir, check_config_file, config_step};
use super::{Failure, Service, SetupArgs, Steps, octal};

pub fn run(args: &SetupArgs) -> Result<(), Failure> {
    let places = &args.places;
    let (binary, spool_root, config) = places.checked()?;
    let submit_gid = match &args.submit_group {
        None => None,
        Some(name) => Some(
            account::find_group(name)?
                .ok_or_else(|| {
                    Failure::new(
                        exit::NOUSER,
                        format!(
                            "the group {name:?} does not exist: make it (groupadd {name}) \
                             and add the users who may submit, or leave out --submit-group"
                        ),
                    )
                })?
                .gid,
        ),
    };
    let spool_variable = (spool_root != Path::new(spool::DEFAULT_ROOT)).then_some(&*spool_root);
    let config_variable = (config != Path::new(system::DEFAULT_CONFIG)).then_some(&*config);
    // The unit's text is checked now with the user's name for both names: the group
    // is only known once the user is.
    unit::render(&UnitValues {
        binary: &binary,
        user: &places.user,
        group: &places.user,
        spool: &spool_root,
        spool_variable,
        config_variable,
    })
    .map_err(|e| Failure::new(exit::USAGE, e))?;
    let mut plans = Vec::new();
    let mut refusals = Vec::new();
    for path in places.links() {
        let found = links::examine(&path, &binary).map_err(|e| Failure::io("examine", &path, e))?;
        let saved = fs::symlink_metadata(links::saved_path(&path)).is_ok();
        match links::plan_setup(&path, &found, saved, args.force) {
            Setup::Refuse(why) => refusals.push(why),
            plan => plans.push((path, found, plan)),
        }
    }
    // What is at the configuration's place is checked before anything is made:
    // the service's uid is known only if the user exists already.
    let known_uid = account::find_user(&places.user)?.map(|u| u.uid);
    if let Some(dir) = config.parent()
        && let Ok(meta) = fs::symlink_metadata(dir)
    {
        check_config_dir(None, dir, &meta)?;
    }
    if let Ok(meta) = fs::symlink_metadata(&config) {
        check_config_file(&config, &meta, known_uid.unwrap_or(0))?;
    }
    let strangers = not_of_the_spool(&spool_root)?;
    if !strangers.is_empty() {
        refusals.push(format!(
            "{} holds what is not the spool's: {}. Root's own queue is there when it \
             has no other (its tmp/ and failed/, its messages): deliver them first \
             (outbox queue flush as root), move them away, or give another --spool",
            spool_root.display(),
            strangers.join(", ")
        ));
    }
    if !refusals.is_empty() {
        return Err(Failure::new(
            exit::CANTCREAT,
            format!("nothing was changed:\n  {}", refusals.join("\n  ")),
        ));
    }

    let mut steps = Steps::default();
    for (what, path) in [
        ("the binary", &*binary),
        ("the spool", &spool_root),
        ("the configuration", &config),
    ] {
        if let Some(line) = system::hidden_by_sandbox(path) {
            steps.warn(format!(
                "{what} {} is where the unit's {line} hides it from the service: the \
                 service started by systemd would not find it",
                path.display()
            ));
        }
    }
    let service = user(&mut steps, &places.user, &spool_root)?;
    let owner = Owner {
        uid: service.uid,
        gid: service.gid,
    };
    let submit = args.submit_group.as_deref().zip(submit_gid);
    spool_step(&mut steps, &Spool::at(&spool_root), owner, submit)?;
    config_step(&mut steps, &config, &service)?;
    let text = unit::render(&UnitValues {
        binary: &binary,
        user: &service.name,
        group: &service.group,
        spool: &spool_root,
        spool_variable,
        config_variable,
    })
    .map_err(|e| Failure::new(exit::USAGE, e))?;
    let unit_changed = unit_step(&mut steps, &places.unit_dir, &text)?;
    for (path, found, plan) in plans {
        link_step(&mut steps, &path, &found, &plan, &binary)?;
    }
    start_step(&mut steps, args, unit_changed, &spool_root, &config)?;
    if !steps.changed() {
        steps.found(
            "done",
            "nothing changed: the system set-up was complete already",
        );
    }
    Ok(())
}

/// What is at the spool's root besides the spool's own entries: the set-up would
/// hand it to the service's user. Sorted, directories with a trailing `/`.
fn not_of_the_spool(root: &Path) -> Result<Vec<String>, Failure> {
    let own = [
        spool::MAILDROP,
        spool::INCOMING,
        spool::BAD,
        spool::QUEUE,
        spool::USERS,
        spool::LIMITS,
    ];
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Failure::io("look into", root, e)),
    };
    let mut strangers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Failure::io("look into", root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if own.contains(&name.as_str()) {
            continue;
        }
        let dir = entry.file_type().is_ok_and(|t| t.is_dir());
        strangers.push(if dir { format!("{name}/") } else { name });
    }
    strangers.sort();
    Ok(strangers)
}

/// Step 1: the service's user, made with useradd(8) where missing.
fn user(steps: &mut Steps, name: &str, home: &Path) -> Result<Service, Failure> {
    let found = account::find_user(name)?;
    let made = found.is_none();
    let user = match found {
        Some(user) => user,
        None => {
            let home = home
                .to_str()
                .ok_or_else(|| Failure::new(exit::USAGE, "the spool's path is not UTF-8"))?;
            // A group of the name that exists already (made by hand, or left by an
            // earlier removal) becomes the user's group: --user-group would refuse.
            let group_exists = account::find_group(name)?.is_some();
            let mut useradd = vec!["--system"];
            if group_exists {
                useradd.extend(["--gid", name]);
            } else {
                useradd.push("--user-group");
            }
            useradd.extend([
                "--home-dir",
                home,
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--",
                name,
            ]);
            tool::run("useradd", &useradd)?;
            account::find_user(name)?.ok_or_else(|| {
                Failure::new(
                    system::EX_OSERR,
                    format!("useradd made the user {name}, but getent does not find it"),
                )
            })?
        }
    };
    if user.uid == 0 {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "{name} has uid 0: the service must not run as root (a user of its own \
                 cannot read other users' files nor change the system)"
            ),
        ));
    }
    let group = account::find_group(&user.gid.to_string())?
        .map(|g| g.name)
        .ok_or_else(|| {
            Failure::new(
                exit::NOUSER,
                format!(
                    "the group {} of the user {name} does not exist: give the user a group \
                     of its own",
                    user.gid
                ),
            )
        })?;
    let said = format!("{name} (uid {}, group {group}, gid {})", user.uid, user.gid);
    if made {
        steps.did("user", format!("made {said} with useradd"));
    } else {
        steps.found("user", format!("{said} exists; used as it is"));
    }
    Ok(Service {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
        group,
    })
}

/// Step 2: the spool's directories, their modes and owners.
fn spool_step(
    steps: &mut Steps,
    spool: &Spool,
    owner: Owner,
    submit: Option<(&str, u32)>,
) -> Result<(), Failure> {
    let before = snapshot(spool.root());
    spool.create(owner, submit.map(|(_, gid)| gid))?;
    let after = snapshot(spool.root());
    let root = spool.root().display();
    let who = match submit {
        Some((name, gid)) => format!("only the members of group {name} ({gid}) may submit"),
        None => "every local user may submit".to_owned(),
    };
    if before == after {
        steps.found("spool", format!("{root} as it should be ({who})"));
    } else {
        steps.did(
            "spool",
            format!(
                "{root} made or fixed: maildrop/ {}, incoming/ bad/ queue/ {}, users/ {} \
                 ({who})",
                octal(spool::DROP_DIR_MODE),
                octal(spool::PRIVATE_DIR_MODE),
                octal(spool::PUBLIC_DIR_MODE)
            ),
        );
    }
    Ok(())
}

/// The mode, owner and group of `root` and of what is in it: what
/// [`Spool::create`] may change, to tell whether it did.
fn snapshot(root: &Path) -> Vec<(PathBuf, u32, u32, u32)> {
    let mut seen = Vec::new();
    let mut add = |path: &Path| {
        if let Ok(meta) = fs::symlink_metadata(path) {
            seen.push((path.to_path_buf(), meta.mode(), meta.uid(), meta.gid()));
        }
    };
    add(root);
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        add(&entry.path());
    }
    seen.sort();
    seen
}

/// Step 4: the unit file. Returns whether it was written.
fn unit_step(steps: &mut Steps, unit_dir: &Path, text: &str) -> Result<bool, Failure> {
    let path = unit_dir.join(UNIT_NAME);
    let same = fs::read(&path).is_ok_and(|old| old == text.as_bytes())
        && fs::symlink_metadata(&path)
            .is_ok_and(|m| m.is_file() && m.mode() & 0o7777 == UNIT_MODE && m.uid() == 0);
    if same {
        steps.found("unit", format!("{} as it should be", path.display()));
        return Ok(false);
    }
    let existed = fs::symlink_metadata(&path).is_ok();
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(unit_dir)
        .map_err(|e| Failure::io("create the directory", unit_dir, e))?;
    // Written aside and renamed: systemd never reads half a unit.
    let tmp = unit_dir.join(format!(".{UNIT_NAME}.tmp"));
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(UNIT_MODE)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.set_permissions(fs::Permissions::from_mode(UNIT_MODE))?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Failure::io("write", &path, e));
    }
    steps.did(
        "unit",
        format!(
            "{} {}",
            if existed { "rewrote" } else { "wrote" },
            path.display()
        ),
    );
    Ok(true)
}

/// Step 5: one link, as planned.
fn link_step(
    steps: &mut Steps,
    path: &Path,
    found: &links::Found,
    plan: &Setup,
    binary: &Path,
) -> Result<(), Failure> {
    let shown = format!("{} -> {}", path.display(), binary.display());
    match plan {
        Setup::Keep => steps.found("link", format!("{shown} as it should be")),
        Setup::Make => {
            std::os::unix::fs::symlink(binary, path)
                .map_err(|e| Failure::io("make the link", path, e))?;
            steps.did("link", format!("made {shown}"));
        }
        Setup::Replace => {
            // A new link renamed over the old: the name is never missing.
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".outbox-tmp");
            let tmp = PathBuf::from(tmp);
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(binary, &tmp)
                .and_then(|()| fs::rename(&tmp, path))
                .map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    Failure::io("replace the link", path, e)
                })?;
            let old = match found {
                links::Found::Earlier(old) => format!(" (it pointed to {})", old.display()),
                _ => String::new(),
            };
            steps.did("link", format!("made {shown}{old}"));
        }
        Setup::SaveAndMake => {
            let saved = links::saved_path(path);
            fs::rename(path, &saved).map_err(|e| Failure::io("move aside", path, e))?;
            if let Err(e) = std::os::unix::fs::symlink(binary, path) {
                let _ = fs::rename(&saved, path);
                return Err(Failure::io("make the link", path, e));
            }
            let what = match found {
                links::Found::Other(what) => what.as_str(),
                _ => "what was there",
            };
            steps.did(
                "link",
                format!(
                    "made {shown}; {what} was moved to {} (--force)",
                    saved.display()
                ),
            );
        }
        Setup::Refuse(why) => return Err(Failure::new(exit::CANTCREAT, why.clone())),
    }
    Ok(())
}

/// Step 6: the service started by systemd, or said how to start it.
fn start_step(
    steps: &mut Steps,
    args: &SetupArgs,
    unit_changed: bool,
    spool: &Path,
    config: &Path,
) -> Result<(), Failure> {
    let mut known = Known {
        no_start: args.no_start,
        systemd: Path::new(SYSTEMD_RUNNING).is_dir(),
        unit_in_systemds_dir: args.places.unit_dir_is_systemds(),
        unit_changed,
        ..Known::default()
    };
    if start::asks_systemd(&known) {
        known.enabled = tool::run("systemctl", &["is-enabled", "--quiet", UNIT_NAME]).is_ok();
        known.active = tool::run("systemctl", &["is-active", "--quiet", UNIT_NAME]).is_ok();
    }
    let why = match start::plan_start(&known) {
        Start::Running => {
            steps.found("start", format!("{UNIT_NAME} is enabled and running"));
            return Ok(());
        }
        Start::Systemctl(commands) => {
            for command in commands {
                tool::run("systemctl", &command)?;
            }
            steps.did("start", format!("{UNIT_NAME} enabled and running"));
            return Ok(());
        }
        Start::Say(NotStarted::NoStart) => "not started (--no-start)".to_owned(),
        Start::Say(NotStarted::NoSystemd) => "systemd is not running here".to_owned(),
        Start::Say(NotStarted::UnitElsewhere) => format!(
            "the unit is in {}, where systemd does not look for units",
            args.places.unit_dir.display()
        ),
    };
    let env = format!(
        "OUTBOX_SPOOL={} OUTBOX_CONFIG={}",
        spool.display(),
        config.display()
    );
    steps.found(
        "start",
        format!(
            "{why}. Start the service with `systemctl enable --now {UNIT_NAME}` where \
             systemd runs; else from the init, as root (it becomes the spool's owner \
             itself): `{env} outbox serve`; or, with no service, from root's cron: \
             `{env} outbox queue flush`"
        ),
    );
    Ok(())
}
