//! Service extensions announced in the EHLO reply (RFC 5321 §4.1.1.1).

use super::reply::Reply;

/// What the server said it supports. Keywords compare case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The domain the server named on the first line of its reply.
    pub domain: String,
    keywords: Vec<(String, Vec<String>)>,
}

impl Capabilities {
    /// Reads an EHLO reply: the first line names the server, each further line is
    /// `keyword *(SP param)`.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut lines = reply.lines.iter();
        let domain = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        let mut keywords: Vec<(String, Vec<String>)> = Vec::new();
        for line in lines {
            let mut words = line.split_whitespace();
            let Some(word) = words.next() else { continue };
            let mut params: Vec<String> = words.map(str::to_owned).collect();
            // Old servers announce "AUTH=LOGIN PLAIN" beside or instead of "AUTH LOGIN
            // PLAIN"; both name mechanisms, so they are merged under AUTH.
            let keyword = match word.split_once('=') {
                Some((k, first)) if k.eq_ignore_ascii_case("AUTH") => {
                    params.insert(0, first.to_owned());
                    "AUTH".to_owned()
                }
                _ => word.to_ascii_uppercase(),
            };
            match keywords.iter_mut().find(|(k, _)| *k == keyword) {
                Some((_, existing)) => {
                    for p in params {
                        if !existing.iter().any(|e| e.eq_ignore_ascii_case(&p)) {
                            existing.push(p);
                        }
                    }
                }
                None => keywords.push((keyword, params)),
            }
        }
        Capabilities { domain, keywords }
    }

    pub fn has(&self, keyword: &str) -> bool {
        self.params(keyword).is_some()
    }

    /// The parameters of `keyword`, if the server announced it.
    pub fn params(&self, keyword: &str) -> Option<&[String]> {
        self.keywords
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(keyword))
            .map(|(_, p)| p.as_slice())
    }

    /// The announced keywords, upper-cased, in the server's order.
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.keywords.iter().map(|(k, _)| k.as_str())
    }

    /// The SIZE limit (RFC 1870 §4): `Some(None)` when SIZE is announced without a
    /// limit or with 0, which means no fixed limit.
    pub fn size_limit(&self) -> Option<Option<u64>> {
        let params = self.params("SIZE")?;
        let limit = params
            .first()
            .and_then(|p| p.parse::<u64>().ok())
            .filter(|&n| n > 0);
        Some(limit)
    }

    /// The SASL mechanisms (RFC 4954 §3), upper-cased.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.params("AUTH")
            .unwrap_or_default()
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::parse_reply;

    fn caps(input: &str) -> Capabilities {
        let (reply, _) = parse_reply(input.as_bytes()).unwrap().unwrap();
        Capabilities::from_ehlo(&reply)
    }

    #[test]
    fn postfix_style_reply() {
        let c = caps(
            "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
             250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n\
             250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
        );
        assert_eq!(c.domain, "mx.example.test");
        for k in [
            "PIPELINING",
            "STARTTLS",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        ] {
            assert!(c.has(k), "{k}");
        }
        assert!(!c.has("AUTH"));
        assert_eq!(c.size_limit(), Some(Some(10_240_000)));
        assert_eq!(c.keywords().count(), 10);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let c = caps("250-mx\r\n250-pipelining\r\n250 Size 100\r\n");
        assert!(c.has("PIPELINING"));
        assert!(c.has("pipelining"));
        assert_eq!(c.size_limit(), Some(Some(100)));
    }

    #[test]
    fn size_without_limit() {
        assert_eq!(caps("250-mx\r\n250 SIZE\r\n").size_limit(), Some(None));
        assert_eq!(caps("250-mx\r\n250 SIZE 0\r\n").size_limit(), Some(None));
        assert_eq!(caps("250 mx\r\n").size_limit(), None);
    }

    #[test]
    fn old_auth_form_is_merged() {
        let c = caps("250-mx\r\n250-AUTH=LOGIN PLAIN\r\n250 AUTH plain CRAM-MD5\r\n");
        assert_eq!(c.auth_mechanisms(), vec!["LOGIN", "PLAIN", "CRAM-MD5"]);
    }

    #[test]
    fn helo_style_single_line_has_no_extensions() {
        let c = caps("250 mx.example.test Hello\r\n");
        assert_eq!(c.domain, "mx.example.test");
        assert_eq!(c.keywords().count(), 0);
    }
}
