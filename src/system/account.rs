//! Users and groups, as `getent` finds them (so through NSS, wherever the machine
//! keeps them), and the names outbox passes to `useradd`.

use super::tool::{self, ToolError};

/// getent(1)'s exit code for a key that is not in the database.
const GETENT_NOT_FOUND: i32 = 2;

/// The longest user or group name `useradd` takes (shadow's default).
pub const NAME_MAX: usize = 32;

/// A user's passwd entry, as far as the set-up needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    pub home: String,
}

/// A group's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Whether `name` may name the service's user or group: what `useradd` takes with
/// no `--badname` and a unit file can hold as it is. The first character is never
/// `-`, so the name is never read as an option.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.len() <= NAME_MAX
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A passwd line (`name:password:uid:gid:gecos:home:shell`).
pub fn parse_user(line: &str) -> Option<User> {
    let fields: Vec<&str> = line.trim_end_matches('\n').split(':').collect();
    let [name, _, uid, gid, _, home, _] = fields.as_slice() else {
        return None;
    };
    Some(User {
        name: (*name).to_owned(),
        uid: uid.parse().ok()?,
        gid: gid.parse().ok()?,
        home: (*home).to_owned(),
    })
}

/// A group line (`name:password:gid:member,member`).
pub fn parse_group(line: &str) -> Option<Group> {
    let fields: Vec<&str> = line.trim_end_matches('\n').split(':').collect();
    let [name, _, gid, members] = fields.as_slice() else {
        return None;
    };
    Some(Group {
        name: (*name).to_owned(),
        gid: gid.parse().ok()?,
        members: members
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// The user named (or numbered) `key`, if there is one.
pub fn find_user(key: &str) -> Result<Option<User>, ToolError> {
    lookup("passwd", key, parse_user)
}

/// The group named (or numbered) `key`, if there is one.
pub fn find_group(key: &str) -> Result<Option<Group>, ToolError> {
    lookup("group", key, parse_group)
}

fn lookup<T>(
    database: &str,
    key: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, ToolError> {
    // "--" so that a key that begins with "-" is a key; getent prints one line.
    match tool::run("getent", &[database, "--", key]) {
        Ok(text) => match text.lines().next().and_then(parse) {
            Some(entry) => Ok(Some(entry)),
            None => Err(ToolError {
                command: format!("getent {database} -- {key}"),
                detail: format!("cannot read its answer {:?}", text.trim_end()),
                code: Some(0),
            }),
        },
        Err(e) if e.code == Some(GETENT_NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_useradd_takes() {
        for good in ["outbox", "_outbox", "obt1a2b3c", "mail-out", "Out.box", "a"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "a".repeat(NAME_MAX + 1);
        for bad in [
            "",
            "-outbox",
            "1outbox",
            "out box",
            "out:box",
            "out/box",
            "outbox$",
            "o\nx",
            "é",
            long.as_str(),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name(&"a".repeat(NAME_MAX)));
    }

    #[test]
    fn passwd_and_group_lines() {
        assert_eq!(
            parse_user("outbox:x:998:997::/var/spool/outbox:/usr/sbin/nologin\n"),
            Some(User {
                name: "outbox".into(),
                uid: 998,
                gid: 997,
                home: "/var/spool/outbox".into(),
            })
        );
        assert_eq!(parse_user("outbox:x:998:997::/var/spool/outbox"), None);
        assert_eq!(parse_user("outbox:x:uid:997::/:/bin/sh"), None);
        assert_eq!(
            parse_group("submit:x:1001:alice,bob\n"),
            Some(Group {
                name: "submit".into(),
                gid: 1001,
                members: vec!["alice".into(), "bob".into()],
            })
        );
        assert_eq!(
            parse_group("outbox:x:997:"),
            Some(Group {
                name: "outbox".into(),
                gid: 997,
                members: vec![],
            })
        );
        assert_eq!(parse_group("outbox:x:997"), None);
    }

    #[test]
    fn root_is_found_and_a_stranger_is_not() {
        let root = find_user("root").unwrap().unwrap();
        assert_eq!((root.name.as_str(), root.uid, root.gid), ("root", 0, 0));
        assert_eq!(find_user("0").unwrap().unwrap().name, "root");
        assert_eq!(find_group("root").unwrap().unwrap().gid, 0);
        assert_eq!(find_user("no-such-user-of-outbox").unwrap(), None);
        assert_eq!(find_group("no-such-group-of-outbox").unwrap(), None);
        assert_eq!(find_user("-x").unwrap(), None);
    }
}
