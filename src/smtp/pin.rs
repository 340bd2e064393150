//! Certificate pinning (`--tls-fingerprint sha256:…`): the server's certificate is
//! accepted when its SHA-256 fingerprint is the one given, in place of a CA's trust
//! and the name check, as msmtp's `tls_fingerprint` and curl's `--pinnedpubkey` do —
//! for a relay with a self-signed certificate, or one whose CA is not to be trusted
//! for anything else.

use std::fmt;
use std::sync::{Arc, Mutex};

use openssl::hash::MessageDigest;
use openssl::ssl::{SslRef, SslVerifyMode};
use openssl::x509::{X509Ref, X509VerifyResult};

/// A SHA-256 fingerprint of a certificate (of its DER encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// `sha256:` and 64 hex digits, with or without colons between the bytes (as
    /// `openssl x509 -fingerprint -sha256` prints them); the prefix may be left out.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let text = text.trim();
        let hex = match text.split_once(':') {
            Some((algorithm, rest)) if algorithm.eq_ignore_ascii_case("sha256") => rest,
            Some((algorithm, _)) if !algorithm.bytes().all(|b| b.is_ascii_hexdigit()) => {
                return Err(format!(
                    "{algorithm:?} is not a fingerprint outbox takes: give sha256:HEX"
                ));
            }
            _ => text,
        };
        let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
        if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!(
                "{text:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
            ));
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            bytes[i] = u8::from_str_radix(pair, 16).map_err(|e| e.to_string())?;
        }
        Ok(Fingerprint(bytes))
    }

    /// The fingerprint of `cert`.
    pub fn of(cert: &X509Ref) -> Option<Fingerprint> {
        let digest = cert.digest(MessageDigest::sha256()).ok()?;
        <[u8; 32]>::try_from(&*digest).ok().map(Fingerprint)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Makes `ssl` accept the server's certificate when, and only when, its fingerprint
/// is `pinned`. What the server showed instead is kept in the returned cell, for the
/// error to say.
pub fn pin(ssl: &mut SslRef, pinned: Fingerprint) -> Arc<Mutex<Option<Fingerprint>>> {
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    ssl.set_verify_callback(SslVerifyMode::PEER, move |_, ctx| {
        // The chain above the server's own certificate is not what is pinned: the
        // pin stands for it, whoever issued it.
        if ctx.error_depth() != 0 {
            return true;
        }
        let found = ctx.current_cert().and_then(Fingerprint::of);
        if let Ok(mut cell) = record.lock() {
            *cell = found;
        }
        let matches = found == Some(pinned);
        if !matches {
            ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
        }
        matches
    });
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_as_openssl_prints_them_and_bare() {
        let colons = "sha256:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:\
                      AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let f = Fingerprint::parse(colons).unwrap();
        assert_eq!(f.to_string(), colons);
        let bare = colons
            .trim_start_matches("sha256:")
            .replace(':', "")
            .to_lowercase();
        assert_eq!(Fingerprint::parse(&bare).unwrap(), f);
        assert_eq!(Fingerprint::parse(&format!("SHA256:{bare}")).unwrap(), f);
        for bad in [
            "",
            "sha256:",
            "sha1:AB:CD",
            "md5:0123456789abcdef0123456789abcdef",
            &bare[..62],
            &format!("{bare}00"),
            &format!("{}zz", &bare[..62]),
        ] {
            assert!(Fingerprint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
