//! Who this host and its user are, for the EHLO name and the default sender: the
//! host's fully qualified name (from the kernel and /etc/hosts, never DNS), the
//! user's login and full name (from the environment and the passwd file).

use std::net::IpAddr;

use crate::envelope::Mailbox;
use crate::smtp::command::Command;

/// This host's name, as the kernel has it.
pub fn hostname() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    if Command::ehlo(&name).is_err() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// This host's fully qualified name: the kernel's name if it has a dot, else the first
/// dotted name /etc/hosts gives for it (as `hostname -f` finds it on most systems;
/// no DNS query is made), else the kernel's name as it is.
pub fn fqdn() -> String {
    let name = hostname();
    if name.contains('.') {
        return name;
    }
    std::fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|hosts| fqdn_from_hosts(&hosts, &name))
        .unwrap_or(name)
}

pub(super) fn fqdn_from_hosts(hosts: &str, name: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return None;
        }
        names
            .iter()
            .find(|n| n.contains('.') && Command::ehlo(n).is_ok())
            .map(|n| (*n).to_owned())
    })
}

/// The EHLO name when none is set: this host's fully qualified name, else the
/// address literal of our end of the connection, which RFC 5321 §4.1.4 allows when
/// the host has no meaningful name.
pub fn default_ehlo_name(local: Option<IpAddr>) -> String {
    ehlo_name_for(fqdn(), local)
}

pub(super) fn ehlo_name_for(fqdn: String, local: Option<IpAddr>) -> String {
    if fqdn.contains('.') {
        return fqdn;
    }
    match local {
        Some(IpAddr::V4(ip)) => format!("[{ip}]"),
        Some(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
        None => fqdn,
    }
}

/// The sender when none is given: `USER@fqdn`, the user from `$USER`, `$LOGNAME`, or
/// the passwd entry of the process's owner (daemons and cron jobs may set neither),
/// whichever first makes a valid address; with that user's full name from the passwd
/// entry (see [`gecos_name`]) as the display name, as sendmail and mailx put it.
pub fn default_sender() -> Option<Mailbox> {
    let host = fqdn();
    let passwd = crate::passwd::read();
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .chain(passwd_name(passwd))
        .find_map(|user| {
            let address = Mailbox::parse(&format!("<{user}@{host}>")).ok()?.address;
            Some(Mailbox {
                name: gecos_name(passwd, &user),
                address,
            })
        })
}

/// The full name of `login` in the passwd file `passwd`: the first comma-separated
/// part of its GECOS field (the others are room, telephone...), with `&` standing for
/// the login name capitalised, as finger and sendmail read it. `None` when it is
/// empty, holds a control character, or there is no such user.
pub fn gecos_name(passwd: &str, login: &str) -> Option<String> {
    let gecos = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 5 && fields[0] == login).then(|| fields[4])
    })?;
    let first = gecos.split(',').next().unwrap_or_default();
    let mut chars = login.chars();
    let capitalised: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    let name = first.replace('&', &capitalised).trim().to_owned();
    (!name.is_empty() && !name.chars().any(char::is_control)).then_some(name)
}

/// The login name of the process's owner in the passwd file `passwd`.
pub(super) fn passwd_name(passwd: &str) -> Option<String> {
    crate::passwd::login_name(passwd, crate::passwd::effective_uid())
}
