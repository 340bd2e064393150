//! The local user as the passwd file names it: the login name of a uid.

/// The passwd file's text, read once per process (the default sender and the log
/// both ask); empty when it cannot be read (a login name is then unknown, which
/// callers can live with).
pub fn read() -> &'static str {
    static PASSWD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PASSWD.get_or_init(|| std::fs::read_to_string("/etc/passwd").unwrap_or_default())
}

/// The login name of `uid` in this machine's passwd file.
pub fn name_of(uid: u32) -> Option<String> {
    login_name(read(), uid)
}

/// A user as messages name one: "uid 1000 (alice)", or "uid 1000" with no name.
pub fn describe(uid: u32, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// The login name of `uid` in the passwd file `passwd`: the first entry that has it.
pub fn login_name(passwd: &str, uid: u32) -> Option<String> {
    let uid = uid.to_string();
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// The real uid of this process: who ran it, whatever it may act as.
pub fn real_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The effective uid of this process: whose rights it has (and whose files it makes).
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Becomes `uid` and `gid` for good (real, effective and saved ids, and no
/// supplementary groups), as root handing a job to a service's user. Linux keeps the
/// ids per thread and these are the raw system calls, so this is for a process that
/// has started no thread yet; the groups go first, while there is still the right
/// to change them.
pub fn become_user(uid: u32, gid: u32) -> std::io::Result<()> {
    use rustix::process::{Gid, Uid};
    let gid = Gid::from_raw(gid);
    let uid = Uid::from_raw(uid);
    rustix::thread::set_thread_groups(&[])?;
    rustix::thread::set_thread_res_gid(gid, gid, gid)?;
    rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_by_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # a comment:x:5\n\
                      short:x\n\
                      :x:7:7::/:/bin/sh\n\
                      alice:x:1000:1000:Alice,,,:/home/alice:/bin/sh\n\
                      alias:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(login_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(login_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(login_name(passwd, 7), None);
        assert_eq!(login_name(passwd, 100), None);
        assert_eq!(login_name("", 0), None);
    }

    #[test]
    fn this_process_has_a_uid_and_a_name() {
        // The test runs as some user that has a passwd entry on any sane machine.
        let uid = real_uid();
        assert!(login_name(read(), uid).is_some(), "uid {uid}");
        use std::os::unix::fs::MetadataExt;
        let proc_uid = std::fs::metadata("/proc/self").unwrap().uid();
        assert_eq!(effective_uid(), proc_uid);
    }
}
