//! Delivery status notification requests (RFC 3461): what is asked for ([`Dsn`]), and
//! the rules for NOTIFY, RET and ENVID as the command lines give them, checked and in
//! the form the MAIL and RCPT parameters carry them. Pure; the compose face's flags and
//! sendmail's `-N`, `-R`, `-V` share these rules.

/// Delivery status notification requests (RFC 3461), for servers that offer DSN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dsn {
    /// `NEVER`, or some of `SUCCESS`, `FAILURE`, `DELAY` joined by commas (§4.1).
    pub notify: Option<String>,
    /// `FULL` or `HDRS` (§4.3).
    pub ret: Option<String>,
    /// The envelope id (§4.4), as given; sent as xtext.
    pub envid: Option<String>,
}

impl Dsn {
    pub fn is_empty(&self) -> bool {
        self.notify.is_none() && self.ret.is_none() && self.envid.is_none()
    }

    /// The requests as a file gave them (a queue entry, a drop), checked by the rules
    /// the command lines' follow, since they go into MAIL and RCPT parameters and
    /// into bounces; the error says which value is wrong.
    pub fn checked(
        ret: Option<String>,
        notify: Option<String>,
        envid: Option<String>,
    ) -> Result<Dsn, String> {
        let ret = match ret.as_deref().map(self::ret) {
            Some(None) => return Err("the RET value is neither FULL nor HDRS".into()),
            other => other.flatten().map(str::to_owned),
        };
        let notify = match notify.as_deref().map(self::notify) {
            Some(None) => return Err("the NOTIFY value is not one of RFC 3461's".into()),
            other => other.flatten(),
        };
        if let Some(envid) = &envid
            && !envid_is_valid(envid)
        {
            return Err(format!("the ENVID: {ENVID_RULE}"));
        }
        Ok(Dsn { notify, ret, envid })
    }
}

/// A NOTIFY value (`-N`, `--notify`) in the form of RFC 3461 §4.1: NEVER alone, or any
/// of SUCCESS, FAILURE, DELAY; `None` if it is neither.
pub fn notify(value: &str) -> Option<String> {
    let words: Vec<String> = value
        .split(',')
        .map(|w| w.trim().to_ascii_uppercase())
        .collect();
    let valid = if words.iter().any(|w| w == "NEVER") {
        words.len() == 1
    } else {
        words
            .iter()
            .all(|w| ["SUCCESS", "FAILURE", "DELAY"].contains(&w.as_str()))
    };
    valid.then(|| words.join(","))
}

/// A RET value (`-R`, `--ret`) in the form of RFC 3461 §4.3: `FULL` or `HDRS`, from
/// either in any case; `None` if it is neither.
pub fn ret(value: &str) -> Option<&'static str> {
    match value.to_ascii_uppercase().as_str() {
        "FULL" => Some("FULL"),
        "HDRS" => Some("HDRS"),
        _ => None,
    }
}

/// What an envelope id must be, for error messages.
pub const ENVID_RULE: &str =
    "give printable ASCII characters, at most 100 once encoded as xtext (RFC 3461 §4.4)";

/// Longest ENVID, as sent in xtext (RFC 3461 §4.4).
const MAX_ENVID: usize = 100;

/// Whether `envid` can be an envelope id (`--envid`, sendmail's `-V`): printable ASCII,
/// at most 100 characters as sent, in xtext (RFC 3461 §4.4).
pub fn envid_is_valid(envid: &str) -> bool {
    !envid.is_empty()
        && envid.bytes().all(|b| (32..127).contains(&b))
        && xtext(envid).len() <= MAX_ENVID
}

/// xtext (RFC 3461 §4): `+`, `=` and anything outside `!`..`~` as `+XX`.
pub(crate) fn xtext(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'!'..=b'~' if b != b'+' && b != b'=' => (b as char).to_string(),
            _ => format!("+{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn requests_from_a_file_are_checked_as_the_command_lines_are() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            Dsn::checked(some("hdrs"), some("failure,delay"), some("id.1")),
            Ok(Dsn {
                notify: some("FAILURE,DELAY"),
                ret: some("HDRS"),
                envid: some("id.1"),
            })
        );
        assert_eq!(Dsn::checked(None, None, None), Ok(Dsn::default()));
        let err = Dsn::checked(some("MOST"), None, None).unwrap_err();
        assert!(err.contains("RET"), "{err}");
        let err = Dsn::checked(None, some("NEVER,FAILURE"), None).unwrap_err();
        assert!(err.contains("NOTIFY"), "{err}");
        let err = Dsn::checked(None, None, Some("x".repeat(200))).unwrap_err();
        assert!(err.contains("ENVID"), "{err}");
    }

    use super::*;

    #[test]
    fn notify_is_never_alone_or_a_list_of_the_others() {
        let cases: [(&str, Option<&str>); 7] = [
            ("never", Some("NEVER")),
            ("success,delay", Some("SUCCESS,DELAY")),
            (" Failure , success ", Some("FAILURE,SUCCESS")),
            ("never,success", None),
            ("sucess", None),
            ("", None),
            ("success,", None),
        ];
        for (value, want) in cases {
            assert_eq!(notify(value).as_deref(), want, "{value:?}");
        }
    }

    #[test]
    fn ret_is_full_or_hdrs() {
        assert_eq!(ret("full"), Some("FULL"));
        assert_eq!(ret("HdRs"), Some("HDRS"));
        assert_eq!(ret("headers"), None);
        assert_eq!(ret(""), None);
    }

    #[test]
    fn envid_is_printable_and_short_enough_as_xtext() {
        assert!(envid_is_valid("a b"));
        assert!(envid_is_valid(&"x".repeat(100)));
        assert!(!envid_is_valid(&"x".repeat(101)));
        // Each "+" is three octets in xtext.
        assert!(envid_is_valid(&"+".repeat(33)));
        assert!(!envid_is_valid(&"+".repeat(34)));
        assert!(!envid_is_valid(""));
        assert!(!envid_is_valid("a\tb"));
        assert!(!envid_is_valid("é"));
    }

    #[test]
    fn xtext_escapes_plus_equals_and_what_is_not_printable() {
        assert_eq!(xtext("id.1@host"), "id.1@host");
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }
}
