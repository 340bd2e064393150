//! Addresses and the envelope: who the message is from and who gets it, as SMTP sees
//! it (RFC 5321 §2.3.1), apart from what the headers say.

use std::fmt;

/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path, brackets included (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// An address fit for `MAIL FROM` or `RCPT TO`: no control characters, no unquoted
/// white space or angle brackets, within the RFC 5321 length limits. A bare local name
/// (`root`) is allowed; the server decides what it means.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {shown:?}: {why}")]
pub struct AddressError {
    shown: String,
    why: &'static str,
}

impl Address {
    /// Checks `addr` against the path grammar of RFC 5321 §4.1.2 (with UTF-8 allowed
    /// in atoms and domain labels, as RFC 6531 §3.3 does).
    pub fn new(addr: &str) -> Result<Address, AddressError> {
        let fail = |why| AddressError {
            shown: addr.escape_debug().to_string(),
            why,
        };
        if addr.is_empty() {
            return Err(fail("it is empty"));
        }
        if addr.chars().any(|c| c.is_control()) {
            return Err(fail("it contains a control character (CR, LF, NUL...)"));
        }
        if addr.len() + 2 > MAX_PATH {
            return Err(fail("it is longer than 254 octets"));
        }
        let (local, domain) = match addr.rfind('@') {
            Some(at) => (&addr[..at], Some(&addr[at + 1..])),
            None => (addr, None),
        };
        if local.is_empty() {
            return Err(fail("the part before @ is empty"));
        }
        if local.len() > MAX_LOCAL_PART {
            return Err(fail("the part before @ is longer than 64 octets"));
        }
        check_local_part(local).map_err(fail)?;
        if let Some(domain) = domain {
            if domain.len() > MAX_DOMAIN {
                return Err(fail("the domain is longer than 255 octets"));
            }
            check_domain(domain).map_err(fail)?;
        }
        Ok(Address(addr.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain after the last `@`, if any.
    pub fn domain(&self) -> Option<&str> {
        self.0.rsplit_once('@').map(|(_, d)| d)
    }
}

/// `atext` (RFC 5322 §3.2.3), and any non-ASCII character (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// Local-part = Dot-string / Quoted-string (RFC 5321 §4.1.2).
fn check_local_part(local: &str) -> Result<(), &'static str> {
    if let Some(inner) = local.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or("a quoted local part must end with a quote")?;
        let mut escaped = false;
        for c in inner.chars() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => return Err("a quote inside a quoted local part must be escaped"),
                // Commands cannot carry white space (a path ends at the first space in
                // practice, whatever the grammar allows), so it is refused here.
                ' ' | '\t' => return Err("white space in a quoted local part is not supported"),
                _ => {}
            }
        }
        if escaped {
            return Err("a quoted local part ends in a lone backslash");
        }
        return Ok(());
    }
    if local.split('.').any(|atom| atom.is_empty()) {
        return Err("the part before @ has an empty atom (a leading, trailing or double dot)");
    }
    if !local.chars().all(|c| c == '.' || is_atext(c)) {
        return Err("the part before @ has a character that needs quoting");
    }
    Ok(())
}

/// Domain = sub-domain *("." sub-domain) / address-literal (RFC 5321 §4.1.2).
fn check_domain(domain: &str) -> Result<(), &'static str> {
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal
            .strip_suffix(']')
            .ok_or("an address literal must end with ]")?;
        let valid = match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if valid {
            Ok(())
        } else {
            Err("the address literal is neither [IPv4] nor [IPv6:address]")
        };
    }
    if domain.is_empty() {
        return Err("the domain after @ is empty");
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err("the domain has an empty label (a leading, trailing or double dot)");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || !c.is_ascii())
        {
            return Err("the domain has a character a domain cannot have");
        }
    }
    Ok(())
}

impl PartialEq<&str> for Address {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Address {
    /// The address with its domain in A-labels (RFC 5890 §2.3.2.1, Punycode per RFC
    /// 3492), for a server without SMTPUTF8. `None` if the local part is not ASCII: no
    /// encoding can carry that to such a server. Labels are only lower-cased before
    /// encoding, not mapped as UTS #46 would; that covers names as people type them.
    pub fn to_ascii(&self) -> Option<Address> {
        let (local, domain) = match self.0.rsplit_once('@') {
            Some((l, d)) => (l, Some(d)),
            None => (self.0.as_str(), None),
        };
        if !local.is_ascii() {
            return None;
        }
        let Some(domain) = domain else {
            return Some(self.clone());
        };
        Address::new(&format!("{local}@{}", domain_to_ascii(domain)?)).ok()
    }
}

/// A domain with each label that is not ASCII as its A-label (see
/// [`Address::to_ascii`]); `None` if one is too long for a label.
pub(crate) fn domain_to_ascii(domain: &str) -> Option<String> {
    let labels: Option<Vec<String>> = domain
        .split('.')
        .map(|label| {
            if label.is_ascii() {
                Some(label.to_owned())
            } else {
                punycode(&label.to_lowercase())
                    .map(|p| format!("xn--{p}"))
                    // RFC 1035 §2.3.4: 63 octets a label, A-labels included.
                    .filter(|a| a.len() <= 63)
            }
        })
        .collect();
    Some(labels?.join("."))
}

/// Punycode (RFC 3492 §6.3) of one label.
fn punycode(label: &str) -> Option<String> {
    const BASE: u32 = 36;
    const TMIN: u32 = 1;
    const TMAX: u32 = 26;
    const SKEW: u32 = 38;
    const DAMP: u32 = 700;
    let digit = |d: u32| -> char {
        match d {
            0..=25 => char::from(b'a' + d as u8),
            _ => char::from(b'0' + (d - 26) as u8),
        }
    };
    // §6.1: bias adaptation.
    let adapt = |delta: u32, points: u32, first: bool| -> u32 {
        let mut delta = if first { delta / DAMP } else { delta / 2 };
        delta += delta / points;
        let mut k = 0;
        while delta > ((BASE - TMIN) * TMAX) / 2 {
            delta /= BASE - TMIN;
            k += BASE;
        }
        k + ((BASE - TMIN + 1) * delta) / (delta + SKEW)
    };
    let input: Vec<u32> = label.chars().map(u32::from).collect();
    let mut output: String = label.chars().filter(char::is_ascii).collect();
    let basic = output.chars().count() as u32;
    let mut handled = basic;
    if basic > 0 {
        output.push('-');
    }
    let (mut n, mut delta, mut bias) = (128u32, 0u32, 72u32);
    while (handled as usize) < input.len() {
        let m = input.iter().copied().filter(|&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for &c in &input {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        TMIN
                    } else if k >= bias + TMAX {
                        TMAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    output.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                output.push(digit(q));
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n = n.checked_add(1)?;
    }
    Some(output)
}

/// An address with an optional display name, as written in a header:
/// `"Ops Team" <ops@example.com>`, `Ops <ops@example.com>` or `ops@example.com`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: Address,
}

impl Mailbox {
    pub fn parse(text: &str) -> Result<Mailbox, AddressError> {
        let text = text.trim();
        if let Some(open) = text.rfind('<')
            && let Some(inner) = text[open + 1..].strip_suffix('>')
        {
            let name = text[..open].trim();
            if name.chars().any(char::is_control) {
                return Err(AddressError {
                    shown: text.escape_debug().to_string(),
                    why: "the display name contains a control character (CR, LF, NUL...)",
                });
            }
            let name = name
                .strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .map(|n| n.replace("\\\"", "\"").replace("\\\\", "\\"))
                .unwrap_or_else(|| name.to_owned());
            return Ok(Mailbox {
                name: (!name.is_empty()).then_some(name),
                address: Address::new(inner.trim())?,
            });
        }
        // An angle bracket outside quotes that the form above did not take is half of
        // a pair: say which half is missing, not that the address is malformed.
        let outside_quotes = |at: usize| text[..at].matches('"').count().is_multiple_of(2);
        let missing = if text.rfind('<').is_some_and(outside_quotes) {
            Some("the > that closes <...> is missing")
        } else if text.find('>').is_some_and(outside_quotes) {
            Some("there is a > without its <")
        } else {
            None
        };
        if let Some(why) = missing {
            return Err(AddressError {
                shown: text.escape_debug().to_string(),
                why,
            });
        }
        Ok(Mailbox {
            name: None,
            address: Address::new(text)?,
        })
    }

    /// Parses a comma-separated list, as mail programs accept for `-c` and `-b`; commas
    /// inside quotes or angle brackets do not split.
    pub fn parse_list(text: &str) -> Result<Vec<Mailbox>, AddressError> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut quoted = false;
        let mut angle = false;
        let mut escaped = false;
        for (i, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '<' if !quoted => angle = true,
                '>' if !quoted => angle = false,
                ',' if !quoted && !angle => {
                    push_nonempty(&mut out, &text[start..i])?;
                    start = i + 1;
                }
                _ => {}
            }
        }
        push_nonempty(&mut out, &text[start..])?;
        Ok(out)
    }
}

fn push_nonempty(out: &mut Vec<Mailbox>, part: &str) -> Result<(), AddressError> {
    if !part.trim().is_empty() {
        out.push(Mailbox::parse(part)?);
    }
    Ok(())
}

/// The SMTP envelope: the reverse-path and the recipients, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// `None` is the null reverse-path `<>` (RFC 5321 §4.5.5), used for bounces.
    pub from: Option<Address>,
    pub to: Vec<Address>,
}

impl Envelope {
    /// An envelope; a recipient named twice is kept once, where it first appears.
    /// Local parts are case-sensitive (RFC 5321 §2.4), so only exact repeats go.
    /// A set beside the list keeps this linear: `sendmail -t` may bring tens of
    /// thousands of recipients.
    pub fn new(from: Option<Address>, recipients: impl IntoIterator<Item = Address>) -> Envelope {
        let mut seen = std::collections::HashSet::new();
        let to = recipients
            .into_iter()
            .filter(|r| seen.insert(r.clone()))
            .collect();
        Envelope { from, to }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_angle_bracket_is_named() {
        for (text, why) in [
            (
                "Bob <bob@example.test",
                "the > that closes <...> is missing",
            ),
            ("<bob@example.test", "the > that closes <...> is missing"),
            ("Bob bob@example.test>", "there is a > without its <"),
        ] {
            let e = Mailbox::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
        // In quotes, a bracket is the name's own.
        let m = Mailbox::parse("\"a <b\" <bob@example.test>").unwrap();
        assert_eq!(m.name.as_deref(), Some("a <b"));
        assert_eq!(m.address.as_str(), "bob@example.test");
        assert!(Mailbox::parse("Bob <bob@example.test>").is_ok());
    }

    #[test]
    fn envelope_dedup_keeps_the_first_of_each_recipient_in_the_order_given() {
        let a = |s: &str| Address::new(s).unwrap();
        let e = Envelope::new(
            None,
            [
                a("b@example.test"),
                a("a@example.test"),
                a("B@example.test"),
                a("b@example.test"),
                a("c@example.test"),
                a("a@example.test"),
                a("b@EXAMPLE.test"),
            ],
        );
        let to: Vec<&str> = e.to.iter().map(Address::as_str).collect();
        // Exact repeats only, as before: local parts are case-sensitive (RFC 5321
        // §2.4), and a domain written otherwise is kept as the caller wrote it.
        assert_eq!(
            to,
            [
                "b@example.test",
                "a@example.test",
                "B@example.test",
                "c@example.test",
                "b@EXAMPLE.test"
            ]
        );
        let many = Envelope::new(
            None,
            (0..1000).chain(0..1000).map(|i| a(&format!("r{i}@x.test"))),
        );
        assert_eq!(many.to.len(), 1000);
        assert_eq!(many.to[999].as_str(), "r999@x.test");
    }

    #[test]
    fn plain_addresses() {
        for ok in [
            "a@example.test",
            "first.last+tag@sub.example.test",
            "root",
            "\"john..doe\"@example.test",
            "\"a\\\"b\"@example.test",
            "a@[127.0.0.1]",
            "a@[IPv6:::1]",
            "o'brien+x@sub-domain.example.test",
            "jörg@例え.jp",
        ] {
            assert!(Address::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn bad_addresses() {
        for bad in [
            "",
            "a@example.test\r\nRCPT TO:<b@example.test>",
            "a\n@example.test",
            "a\0@example.test",
            "two words@example.test",
            "a>b@example.test",
            "@example.test",
            "a@",
            "a@exa mple.test",
            "\"john doe\"@example.test",
            "x@[a>b]",
            "x@[300.1.1.1]",
            "x@a..b",
            "x@.a",
            "x@a.",
            ".a@example.test",
            "a.@example.test",
            "a..b@example.test",
            "\"a\"b\"@example.test",
            "\"unterminated@example.test",
        ] {
            assert!(Address::new(bad).is_err(), "{bad:?}");
        }
        let long_local = format!("{}@example.test", "a".repeat(65));
        assert!(Address::new(&long_local).is_err());
        let long = format!("a@{}.test", "b".repeat(250));
        assert!(Address::new(&long).is_err());
    }

    #[test]
    fn punycode_matches_rfc_3492_and_known_names() {
        assert_eq!(punycode("bücher").as_deref(), Some("bcher-kva"));
        assert_eq!(punycode("münchen").as_deref(), Some("mnchen-3ya"));
        assert_eq!(punycode("例え").as_deref(), Some("r8jz45g"));
        assert_eq!(punycode("テスト").as_deref(), Some("zckzah"));
        // RFC 3492 §7.1 (A), Arabic (Egyptian).
        assert_eq!(
            punycode("\u{0644}\u{064A}\u{0647}\u{0645}\u{0627}\u{0628}\u{062A}\u{0643}\u{0644}\u{0645}\u{0648}\u{0634}\u{0639}\u{0631}\u{0628}\u{064A}\u{061F}").as_deref(),
            Some("egbpdaj6bu4bxfgehfvwxn")
        );
    }

    #[test]
    fn addresses_in_a_labels() {
        let a = |s: &str| Address::new(s).unwrap();
        assert_eq!(
            a("info@例え.テスト").to_ascii(),
            Some(a("info@xn--r8jz45g.xn--zckzah"))
        );
        assert_eq!(
            a("x@Bücher.example").to_ascii(),
            Some(a("x@xn--bcher-kva.example"))
        );
        assert_eq!(
            a("plain@example.test").to_ascii(),
            Some(a("plain@example.test"))
        );
        assert_eq!(a("jörg@example.test").to_ascii(), None);
        let long = format!("x@{}.example", "ü".repeat(60));
        assert_eq!(a(&long).to_ascii(), None);
    }

    #[test]
    fn mailbox_forms() {
        let m = Mailbox::parse("Ops Team <ops@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Ops Team"));
        assert_eq!(m.address.as_str(), "ops@example.com");
        let m = Mailbox::parse("\"Last, First\" <lf@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Last, First"));
        let m = Mailbox::parse("  <x@example.com> ").unwrap();
        assert_eq!(m.name, None);
        assert_eq!(m.address.as_str(), "x@example.com");
        let m = Mailbox::parse("x@example.com").unwrap();
        assert_eq!(m.name, None);
        assert!(Mailbox::parse("Name <bad\r\n@example.com>").is_err());
        assert!(Mailbox::parse("Evil\r\nBcc: e@example.com <a@example.com>").is_err());
    }

    #[test]
    fn lists_split_on_commas_outside_quotes() {
        let list =
            Mailbox::parse_list("a@example.test, \"B, Bee\" <b@example.test>,,c@example.test")
                .unwrap();
        let addrs: Vec<_> = list.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(
            addrs,
            ["a@example.test", "b@example.test", "c@example.test"]
        );
        assert_eq!(list[1].name.as_deref(), Some("B, Bee"));
    }

    #[test]
    fn envelope_keeps_order_and_drops_repeats() {
        let a = |s| Address::new(s).unwrap();
        let e = Envelope::new(
            Some(a("f@example.test")),
            [
                a("z@example.test"),
                a("a@example.test"),
                a("z@example.test"),
                a("Z@example.test"),
            ],
        );
        assert_eq!(
            e.to,
            vec![
                a("z@example.test"),
                a("a@example.test"),
                a("Z@example.test")
            ]
        );
    }
}
