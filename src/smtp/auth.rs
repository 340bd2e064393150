//! SASL mechanisms for SMTP AUTH (RFC 4954), client side, without I/O.
//!
//! An [`Exchange`] turns credentials into the raw bytes of each client response; the
//! session base64-encodes them, sends them, and feeds back each decoded 334 challenge.
//!
//! SCRAM-SHA-256 would have the password prepared with SASLprep (RFC 4013, RFC 5802
//! §2.2). That needs the stringprep tables, so the password is used as its UTF-8 bytes
//! instead. The result is the same for printable ASCII and for most other passwords; it
//! differs only where SASLprep maps or normalizes characters (non-ASCII spaces, soft
//! hyphens, compatibility forms), and most servers skip SASLprep themselves.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::digest::block_api::EagerHash;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

/// A secret (password or OAuth token). Debug never shows it, and there is no Display,
/// so it cannot end up in a message or a transcript by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: String,
    pub secret: Secret,
}

/// A user name fit for AUTH: not empty, no control characters.
pub fn valid_user(user: &str) -> bool {
    !user.is_empty() && !user.chars().any(char::is_control)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    CramMd5,
    ScramSha256,
    XOAuth2,
}

const ALL: [Mechanism; 5] = [
    Mechanism::Plain,
    Mechanism::Login,
    Mechanism::CramMd5,
    Mechanism::ScramSha256,
    Mechanism::XOAuth2,
];

/// Strongest first. XOAUTH2 is absent: it takes a token, not the password that
/// `--auth auto` has.
/// `--auth auto`'s order over TLS: SCRAM proves knowledge of the password without
/// sending it and checks the server too; PLAIN and LOGIN send it, but inside TLS and to
/// a server that stores it any way it likes; CRAM-MD5 rests on MD5 and obliges the
/// server to keep the password in clear, so it comes last.
const AUTO_OVER_TLS: [Mechanism; 4] = [
    Mechanism::ScramSha256,
    Mechanism::Plain,
    Mechanism::Login,
    Mechanism::CramMd5,
];

/// Without TLS (only ever to loopback) a mechanism that keeps the password off the
/// wire is better than one that sends it.
const AUTO_IN_CLEAR: [Mechanism; 4] = [
    Mechanism::ScramSha256,
    Mechanism::CramMd5,
    Mechanism::Plain,
    Mechanism::Login,
];

/// The values `--auth` and the `auth` key take, for messages.
pub const MECHANISM_CHOICES: &str = "auto, plain, login, cram-md5, scram-sha-256 or xoauth2";

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// Case-insensitive: servers and users write mechanism names in any case.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        ALL.into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// For `--auth auto`: the strongest mechanism among those the server offers (names
    /// as in the EHLO AUTH line, any case), by [`AUTO_OVER_TLS`] or [`AUTO_IN_CLEAR`].
    /// XOAUTH2 is never chosen: it takes a token, not a password. SCRAM is passed over
    /// for a password that is not ASCII, because outbox does not apply SASLprep (RFC
    /// 4013) and a server that does would derive other keys. None if there is no common
    /// one.
    pub fn strongest(offered: &[String], tls: bool, ascii_secret: bool) -> Option<Mechanism> {
        let order = if tls { AUTO_OVER_TLS } else { AUTO_IN_CLEAR };
        order.into_iter().find(|m| {
            (ascii_secret || *m != Mechanism::ScramSha256)
                && offered
                    .iter()
                    .any(|name| name.eq_ignore_ascii_case(m.name()))
        })
    }
}

/// Why an exchange cannot go on. The session should then cancel it with a `*` line
/// (RFC 4954 §4). No message carries the secret or anything derived from it.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the server sent a {mechanism} challenge the exchange has no answer for")]
    UnexpectedChallenge { mechanism: &'static str },
    #[error("malformed {mechanism} challenge: {problem}")]
    Malformed {
        mechanism: &'static str,
        problem: &'static str,
    },
    /// RFC 5802 §5.1: the server's nonce must begin with the client's.
    #[error("the SCRAM server nonce does not begin with the client nonce")]
    NonceMismatch,
    #[error(
        "the server asks for {0} SCRAM iterations; outside 1..={MAX_ITERATIONS}",
        MAX_ITERATIONS = MAX_ITERATIONS
    )]
    IterationCount(u64),
    /// RFC 5802 §5.1: an "m=" attribute must make the other end fail.
    #[error("the server requires a SCRAM extension this client does not know")]
    UnsupportedExtension,
    #[error(
        "the SCRAM server signature does not match: the server did not prove it knows the password"
    )]
    ServerSignatureMismatch,
    /// The "e=" value of server-final, printable ASCII only and shortened.
    #[error("the server rejected the SCRAM exchange: {0}")]
    ServerError(String),
    #[error(
        "the server accepted SCRAM authentication without sending its signature, so it never proved it knows the password"
    )]
    ServerNotVerified,
}

/// A hostile or broken server must not make the client spin: a million iterations is
/// 250 times RFC 7677's recommended minimum of 4096 and about a second of work.
const MAX_ITERATIONS: u64 = 1_000_000;

/// 18 random bytes give 24 base64 characters, all valid in a SCRAM nonce.
const NONCE_BYTES: usize = 18;

/// The GS2 header "n,," (no channel binding, no authzid) in base64, for "c=".
const GS2_HEADER_B64: &str = "biws";

/// Where an exchange is. Responses are decided by this order, never by challenge text.
enum Step {
    /// Nothing produced yet.
    Start,
    /// `initial_response` produced the initial response. The session may still have
    /// withheld it and wait for an empty 334 instead, as RFC 4954 §4 allows when the
    /// AUTH line would be too long.
    InitialOffered,
    /// A 334 was answered with the first response: LOGIN's username, or the initial
    /// response of PLAIN, XOAUTH2 or SCRAM that the server asked for.
    FirstAnswered,
    /// SCRAM: client-final sent; what is needed to check server-final is kept.
    ScramFinal {
        server_key: [u8; 32],
        auth_message: String,
    },
    /// Nothing more to send. For SCRAM, only reached once the server signature matched.
    Done,
    /// A challenge could not be answered; every later one is refused too.
    Failed,
}

impl Step {
    fn label(&self) -> &'static str {
        match self {
            Step::Start => "start",
            Step::InitialOffered => "initial response offered",
            Step::FirstAnswered => "first challenge answered",
            Step::ScramFinal { .. } => "awaiting SCRAM server-final",
            Step::Done => "done",
            Step::Failed => "failed",
        }
    }
}

/// The client side of one AUTH exchange.
pub struct Exchange {
    mechanism: Mechanism,
    user: String,
    secret: Secret,
    /// SCRAM only; empty for the other mechanisms.
    nonce: String,
    step: Step,
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .field("step", &self.step.label())
            .finish_non_exhaustive()
    }
}

impl Exchange {
    pub fn new(mechanism: Mechanism, credentials: &Credentials) -> Exchange {
        let nonce = if mechanism == Mechanism::ScramSha256 {
            fresh_nonce()
        } else {
            String::new()
        };
        Exchange::build(mechanism, credentials, nonce)
    }

    /// With a fixed SCRAM client nonce, for test vectors. The nonce must be printable
    /// ASCII without ',' (RFC 5802 §7).
    #[cfg(test)]
    pub(crate) fn with_nonce(
        mechanism: Mechanism,
        credentials: &Credentials,
        nonce: &str,
    ) -> Exchange {
        Exchange::build(mechanism, credentials, nonce.to_owned())
    }

    fn build(mechanism: Mechanism, credentials: &Credentials, nonce: String) -> Exchange {
        Exchange {
            mechanism,
            user: credentials.user.clone(),
            secret: credentials.secret.clone(),
            nonce,
            step: Step::Start,
        }
    }

    /// The initial response to send with the AUTH command (RFC 4954 §4), raw bytes for
    /// the caller to base64-encode, or None when the mechanism starts with a bare AUTH
    /// line (LOGIN and CRAM-MD5 wait for a 334 challenge) or is past its start.
    pub fn initial_response(&mut self) -> Option<Vec<u8>> {
        if !matches!(self.step, Step::Start | Step::InitialOffered) {
            return None;
        }
        let response = match self.mechanism {
            Mechanism::Login | Mechanism::CramMd5 => return None,
            Mechanism::Plain => self.plain(),
            Mechanism::XOAuth2 => self.xoauth2(),
            Mechanism::ScramSha256 => self.scram_client_first(),
        };
        self.step = Step::InitialOffered;
        Some(response)
    }

    /// The response to one 334 challenge (already base64-decoded by the caller), raw
    /// bytes. After an error the exchange is over: every later challenge is refused.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, AuthError> {
        let result = match self.mechanism {
            Mechanism::Plain => self.respond_plain(),
            Mechanism::Login => self.respond_login(),
            Mechanism::CramMd5 => self.respond_cram_md5(challenge),
            Mechanism::XOAuth2 => self.respond_xoauth2(challenge),
            Mechanism::ScramSha256 => self.respond_scram(challenge),
        };
        if result.is_err() {
            self.step = Step::Failed;
        }
        result
    }

    /// Called when the server says 235. For SCRAM it is an error unless the server
    /// signature was verified: SMTP has no room for data in a 235, so RFC 4954 servers
    /// send server-final in a 334, and a server that skips it has not shown that it
    /// knows the password, which is what SCRAM adds over the other mechanisms. They
    /// authenticate only the client, so the 235 is all there is.
    pub fn finish(&mut self) -> Result<(), AuthError> {
        match (self.mechanism, &self.step) {
            (Mechanism::ScramSha256, Step::Done) => Ok(()),
            (Mechanism::ScramSha256, _) => Err(AuthError::ServerNotVerified),
            _ => Ok(()),
        }
    }

    fn unexpected(&self) -> AuthError {
        AuthError::UnexpectedChallenge {
            mechanism: self.mechanism.name(),
        }
    }

    fn malformed(&self, problem: &'static str) -> AuthError {
        AuthError::Malformed {
            mechanism: self.mechanism.name(),
            problem,
        }
    }

    /// RFC 4616 §2: empty authorization identity, so the server derives it.
    fn plain(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.user.len() + self.secret.expose().len() + 2);
        out.push(0);
        out.extend_from_slice(self.user.as_bytes());
        out.push(0);
        out.extend_from_slice(self.secret.expose().as_bytes());
        out
    }

    /// Google's and Microsoft's XOAUTH2 initial client response.
    fn xoauth2(&self) -> Vec<u8> {
        format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            self.user,
            self.secret.expose()
        )
        .into_bytes()
    }

    /// PLAIN's challenge is empty by RFC 4616, but some servers put text in it; it means
    /// nothing either way, so the first 334 gets the credentials whatever it says. That
    /// may repeat an initial response the server already has, which tells it nothing new.
    fn respond_plain(&mut self) -> Result<Vec<u8>, AuthError> {
        match self.step {
            Step::Start | Step::InitialOffered => {
                self.step = Step::Done;
                Ok(self.plain())
            }
            _ => Err(self.unexpected()),
        }
    }

    /// draft-murchison-sasl-login: username, then password, decided by order because
    /// the prompt texts vary between servers.
    fn respond_login(&mut self) -> Result<Vec<u8>, AuthError> {
        match self.step {
            Step::Start | Step::InitialOffered => {
                self.step = Step::FirstAnswered;
                Ok(self.user.as_bytes().to_vec())
            }
            Step::FirstAnswered => {
                self.step = Step::Done;
                Ok(self.secret.expose().as_bytes().to_vec())
            }
            _ => Err(self.unexpected()),
        }
    }

    /// RFC 2195 §2: "user " and the lowercase hex HMAC-MD5 of the challenge, keyed with
    /// the password. The challenge is what keeps the digest from being replayed, so an
    /// empty one is refused rather than answered.
    fn respond_cram_md5(&mut self, challenge: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.step, Step::Start | Step::InitialOffered) {
            return Err(self.unexpected());
        }
        if challenge.is_empty() {
            return Err(self.malformed("the challenge is empty"));
        }
        let digest = keyed::<Md5>(self.secret.expose().as_bytes())
            .chain_update(challenge)
            .finalize()
            .into_bytes();
        let mut out = self.user.clone().into_bytes();
        out.push(b' ');
        out.extend_from_slice(hex(&digest).as_bytes());
        self.step = Step::Done;
        Ok(out)
    }

    /// An empty 334 asks for the initial response that was withheld. Any other 334 is
    /// the server's error report (JSON); the client answers it with an empty response
    /// and the server then sends the failure reply.
    fn respond_xoauth2(&mut self, challenge: &[u8]) -> Result<Vec<u8>, AuthError> {
        match self.step {
            Step::Start | Step::InitialOffered if challenge.is_empty() => {
                self.step = Step::FirstAnswered;
                Ok(self.xoauth2())
            }
            Step::Start | Step::InitialOffered | Step::FirstAnswered if !challenge.is_empty() => {
                self.step = Step::Done;
                Ok(Vec::new())
            }
            _ => Err(self.unexpected()),
        }
    }

    fn respond_scram(&mut self, challenge: &[u8]) -> Result<Vec<u8>, AuthError> {
        match &self.step {
            // Server-first is never empty, so an empty 334 asks for client-first.
            Step::Start | Step::InitialOffered if challenge.is_empty() => {
                self.step = Step::FirstAnswered;
                Ok(self.scram_client_first())
            }
            Step::Start | Step::InitialOffered | Step::FirstAnswered if !challenge.is_empty() => {
                self.scram_client_final(challenge)
            }
            Step::ScramFinal {
                server_key,
                auth_message,
            } => {
                check_server_final(challenge, server_key, auth_message)?;
                self.step = Step::Done;
                Ok(Vec::new())
            }
            _ => Err(self.unexpected()),
        }
    }

    /// RFC 5802 §7 client-first-message-bare, without the GS2 header.
    fn scram_client_first_bare(&self) -> String {
        format!("n={},r={}", escape_saslname(&self.user), self.nonce)
    }

    fn scram_client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.scram_client_first_bare()).into_bytes()
    }

    /// RFC 5802 §3 and §5.1: check server-first, derive the keys, send the proof.
    fn scram_client_final(&mut self, server_first_raw: &[u8]) -> Result<Vec<u8>, AuthError> {
        let server_first = std::str::from_utf8(server_first_raw)
            .map_err(|_| self.malformed("server-first is not UTF-8"))?;
        let first = parse_server_first(server_first, &self.nonce)?;

        let salted_password = hi(
            self.secret.expose().as_bytes(),
            &first.salt,
            first.iterations,
        );
        let client_key = hmac_sha256(&salted_password, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac_sha256(&salted_password, b"Server Key");

        let without_proof = format!("c={GS2_HEADER_B64},r={}", first.nonce);
        let auth_message = format!(
            "{},{},{}",
            self.scram_client_first_bare(),
            server_first,
            without_proof
        );
        let client_signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(client_signature) {
            *p ^= s;
        }

        self.step = Step::ScramFinal {
            server_key,
            auth_message,
        };
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }
}

struct ServerFirst<'a> {
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

const SCRAM: &str = "SCRAM-SHA-256";

fn scram_malformed(problem: &'static str) -> AuthError {
    AuthError::Malformed {
        mechanism: SCRAM,
        problem,
    }
}

/// RFC 5802 §7: server-first-message = [reserved-mext ","] nonce "," salt ","
/// iteration-count ["," extensions]. Attributes come in this order.
fn parse_server_first<'a>(
    message: &'a str,
    client_nonce: &str,
) -> Result<ServerFirst<'a>, AuthError> {
    let mut attributes = message.split(',');
    let mut next = attributes.next();
    if let Some(error) = next.and_then(|a| a.strip_prefix("e=")) {
        // Not in the grammar for server-first, but some servers report errors this early.
        return Err(AuthError::ServerError(printable(error)));
    }
    if next.is_some_and(|a| a.starts_with("m=")) {
        return Err(AuthError::UnsupportedExtension);
    }

    let nonce = next
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| scram_malformed("no nonce (r=) where expected"))?;
    if !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(scram_malformed(
            "the nonce has characters outside printable ASCII",
        ));
    }
    // The grammar makes the server's part optional ("r=" c-nonce [s-nonce]), so a nonce
    // equal to ours is accepted.
    if !nonce.starts_with(client_nonce) {
        return Err(AuthError::NonceMismatch);
    }

    next = attributes.next();
    let salt = next
        .and_then(|a| a.strip_prefix("s="))
        .ok_or_else(|| scram_malformed("no salt (s=) where expected"))?;
    let salt = BASE64
        .decode(salt)
        .map_err(|_| scram_malformed("the salt is not base64"))?;

    next = attributes.next();
    let count = next
        .and_then(|a| a.strip_prefix("i="))
        .ok_or_else(|| scram_malformed("no iteration count (i=) where expected"))?;
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(scram_malformed("the iteration count is not a number"));
    }
    // All digits, so only overflow can fail, and that is out of range anyway.
    let count = count.parse::<u64>().unwrap_or(u64::MAX);
    let iterations = match u32::try_from(count) {
        Ok(n) if (1..=MAX_ITERATIONS).contains(&count) => n,
        _ => return Err(AuthError::IterationCount(count)),
    };

    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// RFC 5802 §7: server-final-message = (server-error / verifier) ["," extensions].
fn check_server_final(
    challenge: &[u8],
    server_key: &[u8; 32],
    auth_message: &str,
) -> Result<(), AuthError> {
    let message =
        std::str::from_utf8(challenge).map_err(|_| scram_malformed("server-final is not UTF-8"))?;
    let first = message.split(',').next().unwrap_or_default();
    if let Some(error) = first.strip_prefix("e=") {
        return Err(AuthError::ServerError(printable(error)));
    }
    let verifier = first
        .strip_prefix("v=")
        .ok_or_else(|| scram_malformed("server-final has neither v= nor e="))?;
    let signature = BASE64
        .decode(verifier)
        .map_err(|_| scram_malformed("the server signature is not base64"))?;
    // Mac::verify_slice compares in constant time.
    keyed::<Sha256>(server_key)
        .chain_update(auth_message.as_bytes())
        .verify_slice(&signature)
        .map_err(|_| AuthError::ServerSignatureMismatch)
}

/// RFC 5802 §2.2 Hi(): PBKDF2 with HMAC-SHA-256 and one output block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let keyed_once = keyed::<Sha256>(password);
    let mut u: [u8; 32] = keyed_once
        .clone()
        .chain_update(salt)
        .chain_update(1u32.to_be_bytes())
        .finalize()
        .into_bytes()
        .into();
    let mut result = u;
    for _ in 1..iterations {
        u = keyed_once
            .clone()
            .chain_update(u)
            .finalize()
            .into_bytes()
            .into();
        for (r, x) in result.iter_mut().zip(u) {
            *r ^= x;
        }
    }
    result
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    keyed::<Sha256>(key)
        .chain_update(data)
        .finalize()
        .into_bytes()
        .into()
}

/// HMAC takes keys of any length (RFC 2104 §2: longer ones are hashed first), so
/// `new_from_slice` cannot fail for it; the key is always ours, never the server's.
fn keyed<D: EagerHash>(key: &[u8]) -> Hmac<D> {
    Hmac::<D>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// RFC 5802 §5.1: in a saslname, '=' and ',' are written "=3D" and "=2C".
fn escape_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Server text for an error message: printable ASCII only, and not much of it.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(100)
        .collect()
}

/// RFC 5802 §5.1: the client nonce is random printable characters, new for every
/// exchange.
fn fresh_nonce() -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    if getrandom::fill(&mut bytes).is_err() {
        bytes.copy_from_slice(&fallback_entropy()[..NONCE_BYTES]);
    }
    BASE64.encode(bytes)
}

/// Only for a system whose random source fails, where panicking would stop the user
/// from sending mail: the hash of what differs between processes and calls (clock,
/// process id, stack address under ASLR, a counter) is still unique per exchange and
/// hard to guess from outside.
fn fallback_entropy() -> [u8; 32] {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let marker = 0u8;
    let mut hasher = Sha256::new();
    hasher.update(now.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update((std::ptr::addr_of!(marker) as usize).to_le_bytes());
    hasher.update(CALLS.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(format!("{:?}", std::thread::current().id()).as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "Zq9-distinctive-pw";

    fn creds(user: &str, secret: &str) -> Credentials {
        Credentials {
            user: user.to_owned(),
            secret: Secret::new(secret.to_owned()),
        }
    }

    fn rfc7677() -> Exchange {
        Exchange::with_nonce(
            Mechanism::ScramSha256,
            &creds("user", "pencil"),
            "rOprNGfwEbeRWgbNEkqO",
        )
    }

    const RFC7677_SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC7677_CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC7677_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    #[test]
    fn names_round_trip_case_insensitively() {
        for m in ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(Mechanism::from_name(&m.name().to_lowercase()), Some(m));
        }
        assert_eq!(Mechanism::from_name("Cram-Md5"), Some(Mechanism::CramMd5));
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
        assert_eq!(Mechanism::from_name(""), None);
    }

    #[test]
    fn strongest_follows_preference_order() {
        let offer =
            |names: &[&str]| -> Vec<String> { names.iter().map(|s| s.to_string()).collect() };
        let all = offer(&["LOGIN", "PLAIN", "CRAM-MD5", "SCRAM-SHA-256"]);
        let tls = |names: &[&str]| Mechanism::strongest(&offer(names), true, true);
        assert_eq!(
            Mechanism::strongest(&all, true, true),
            Some(Mechanism::ScramSha256)
        );
        assert_eq!(
            Mechanism::strongest(&all, false, true),
            Some(Mechanism::ScramSha256)
        );
        assert_eq!(tls(&["login", "plain", "cram-md5"]), Some(Mechanism::Plain));
        assert_eq!(
            Mechanism::strongest(&offer(&["login", "plain", "cram-md5"]), false, true),
            Some(Mechanism::CramMd5)
        );
        assert_eq!(tls(&["LOGIN", "cram-md5"]), Some(Mechanism::Login));
        assert_eq!(tls(&["CRAM-MD5"]), Some(Mechanism::CramMd5));
        assert_eq!(tls(&["XOAUTH2", "LOGIN"]), Some(Mechanism::Login));
        assert_eq!(tls(&["XOAUTH2", "OAUTHBEARER"]), None);
        assert_eq!(tls(&["SCRAM-SHA-1", "GSSAPI"]), None);
        assert_eq!(tls(&[]), None);
        // Without SASLprep, SCRAM is left out for a password that is not ASCII.
        assert_eq!(
            Mechanism::strongest(&all, true, false),
            Some(Mechanism::Plain)
        );
        assert_eq!(
            Mechanism::strongest(&offer(&["SCRAM-SHA-256"]), true, false),
            None
        );
    }

    #[test]
    fn plain_initial_response_is_exact() {
        let mut ex = Exchange::new(Mechanism::Plain, &creds("tim", "tanstaaf"));
        assert_eq!(ex.initial_response(), Some(b"\0tim\0tanstaaf".to_vec()));
        assert!(ex.finish().is_ok());
    }

    #[test]
    fn plain_answers_an_empty_challenge_once() {
        let mut ex = Exchange::new(Mechanism::Plain, &creds("tim", "tanstaaf"));
        assert_eq!(ex.respond(b"").unwrap(), b"\0tim\0tanstaaf");
        assert!(matches!(
            ex.respond(b""),
            Err(AuthError::UnexpectedChallenge { .. })
        ));
    }

    #[test]
    fn plain_answers_after_a_withheld_initial_response() {
        let mut ex = Exchange::new(Mechanism::Plain, &creds("tim", "tanstaaf"));
        assert!(ex.initial_response().is_some());
        assert_eq!(ex.respond(b"").unwrap(), b"\0tim\0tanstaaf");
    }

    #[test]
    fn plain_sends_non_ascii_password_as_utf8() {
        let mut ex = Exchange::new(Mechanism::Plain, &creds("jö", "pässwörd✓"));
        let mut expected = b"\0j\xc3\xb6\0".to_vec();
        expected.extend_from_slice("pässwörd✓".as_bytes());
        assert_eq!(ex.initial_response(), Some(expected));
    }

    #[test]
    fn xoauth2_initial_response_is_exact() {
        let mut ex = Exchange::new(
            Mechanism::XOAuth2,
            &creds(
                "someuser@example.com",
                "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
            ),
        );
        assert_eq!(
            ex.initial_response(),
            Some(
                b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
                    .to_vec()
            )
        );
        assert!(ex.finish().is_ok());
    }

    #[test]
    fn xoauth2_error_challenge_gets_an_empty_response() {
        let mut ex = Exchange::new(Mechanism::XOAuth2, &creds("u@example.com", "token"));
        assert!(ex.initial_response().is_some());
        let json = br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
        assert_eq!(ex.respond(json).unwrap(), b"");
        assert!(matches!(
            ex.respond(json),
            Err(AuthError::UnexpectedChallenge { .. })
        ));
    }

    #[test]
    fn xoauth2_empty_challenge_asks_for_the_withheld_response() {
        let mut ex = Exchange::new(Mechanism::XOAuth2, &creds("u", "tok"));
        assert_eq!(
            ex.respond(b"").unwrap(),
            b"user=u\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(ex.respond(b"{\"status\":\"400\"}").unwrap(), b"");
    }

    #[test]
    fn login_sends_user_then_password_by_order() {
        let mut ex = Exchange::new(Mechanism::Login, &creds("alice", PASSWORD));
        assert_eq!(ex.initial_response(), None);
        // Prompts swapped on purpose: order decides, not text.
        assert_eq!(ex.respond(b"Password:").unwrap(), b"alice");
        assert_eq!(ex.respond(b"Username:").unwrap(), PASSWORD.as_bytes());
        assert!(matches!(
            ex.respond(b"Password:"),
            Err(AuthError::UnexpectedChallenge { mechanism: "LOGIN" })
        ));
    }

    #[test]
    fn cram_md5_rfc2195_example() {
        let mut ex = Exchange::new(Mechanism::CramMd5, &creds("tim", "tanstaaftanstaaf"));
        assert_eq!(ex.initial_response(), None);
        assert_eq!(
            ex.respond(b"<1896.697170952@postoffice.reston.mci.net>")
                .unwrap(),
            b"tim b913a602c7eda7a495b4e6e7334d3890"
        );
        assert!(ex.finish().is_ok());
        assert!(ex.respond(b"<1@x>").is_err());
    }

    #[test]
    fn cram_md5_non_ascii_password() {
        // HMAC-MD5(key = UTF-8 of "pässwörd✓", "<1896.697170952@postoffice.reston.mci.net>"),
        // computed independently with Python's hmac module.
        let mut ex = Exchange::new(Mechanism::CramMd5, &creds("tim", "pässwörd✓"));
        let response = ex
            .respond(b"<1896.697170952@postoffice.reston.mci.net>")
            .unwrap();
        assert_eq!(response, b"tim 23a60c7c75a0a3c19fcf7bc1dc84d3ea");
    }

    #[test]
    fn cram_md5_refuses_an_empty_challenge() {
        let mut ex = Exchange::new(Mechanism::CramMd5, &creds("tim", PASSWORD));
        assert!(matches!(ex.respond(b""), Err(AuthError::Malformed { .. })));
    }

    #[test]
    fn scram_rfc7677_example() {
        let mut ex = rfc7677();
        assert_eq!(
            ex.initial_response(),
            Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO".to_vec())
        );
        assert!(matches!(ex.finish(), Err(AuthError::ServerNotVerified)));
        assert_eq!(
            ex.respond(RFC7677_SERVER_FIRST).unwrap(),
            RFC7677_CLIENT_FINAL
        );
        assert!(matches!(ex.finish(), Err(AuthError::ServerNotVerified)));
        assert_eq!(ex.respond(RFC7677_SERVER_FINAL).unwrap(), b"");
        assert!(ex.finish().is_ok());
        assert!(matches!(
            ex.respond(RFC7677_SERVER_FINAL),
            Err(AuthError::UnexpectedChallenge { .. })
        ));
    }

    #[test]
    fn scram_sends_client_first_on_an_empty_challenge() {
        let mut ex = rfc7677();
        assert_eq!(
            ex.respond(b"").unwrap(),
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        assert_eq!(
            ex.respond(RFC7677_SERVER_FIRST).unwrap(),
            RFC7677_CLIENT_FINAL
        );
        assert_eq!(ex.respond(RFC7677_SERVER_FINAL).unwrap(), b"");
        assert!(ex.finish().is_ok());
    }

    #[test]
    fn scram_rejects_a_tampered_server_signature() {
        let mut ex = rfc7677();
        ex.initial_response();
        ex.respond(RFC7677_SERVER_FIRST).unwrap();
        // First character changed: still well-formed base64, a different 32-byte value.
        let err = ex
            .respond(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert!(matches!(err, AuthError::ServerSignatureMismatch));
        assert!(matches!(ex.finish(), Err(AuthError::ServerNotVerified)));
        // The exchange is over after an error, even for the right signature.
        assert!(ex.respond(RFC7677_SERVER_FINAL).is_err());
    }

    #[test]
    fn scram_rejects_short_or_garbled_signatures() {
        for bad in [&b"v="[..], b"v=AAAA", b"v=!!notbase64", b"x=1", b""] {
            let mut ex = rfc7677();
            ex.initial_response();
            ex.respond(RFC7677_SERVER_FIRST).unwrap();
            assert!(
                ex.respond(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(ex.finish().is_err());
        }
    }

    #[test]
    fn scram_reports_server_error() {
        let mut ex = rfc7677();
        ex.initial_response();
        ex.respond(RFC7677_SERVER_FIRST).unwrap();
        let err = ex.respond(b"e=invalid-proof").unwrap_err();
        assert!(matches!(&err, AuthError::ServerError(e) if e == "invalid-proof"));
        assert!(err.to_string().contains("invalid-proof"));
    }

    #[test]
    fn scram_rejects_a_nonce_not_extending_ours() {
        let mut ex = rfc7677();
        ex.initial_response();
        let err = ex
            .respond(b"r=XXprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap_err();
        assert!(matches!(err, AuthError::NonceMismatch));

        let mut ex = rfc7677();
        ex.initial_response();
        // A prefix of our nonce is not ours.
        let err = ex
            .respond(b"r=rOprNGfwEbeRWgbNEk,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap_err();
        assert!(matches!(err, AuthError::NonceMismatch));
    }

    #[test]
    fn scram_rejects_absurd_iteration_counts() {
        for count in ["0", "1000001", "4294967296", "99999999999999999999999999"] {
            let mut ex = rfc7677();
            ex.initial_response();
            let server_first =
                format!("r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={count}");
            let err = ex.respond(server_first.as_bytes()).unwrap_err();
            assert!(
                matches!(err, AuthError::IterationCount(_)),
                "{count}: {err}"
            );
        }
        for count in ["", "-1", "+5", "4096x", " 4096"] {
            let mut ex = rfc7677();
            ex.initial_response();
            let server_first =
                format!("r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={count}");
            let err = ex.respond(server_first.as_bytes()).unwrap_err();
            assert!(
                matches!(err, AuthError::Malformed { .. }),
                "{count:?}: {err}"
            );
        }
    }

    #[test]
    fn scram_rejects_malformed_server_first() {
        let cases: &[&[u8]] = &[
            b"s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOabc,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOabc,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOabc,s=***,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            b"r=rOprNGfwEbeRWgbNEkqO\x01,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqO\xff,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            b"garbage",
        ];
        for case in cases {
            let mut ex = rfc7677();
            ex.initial_response();
            let err = ex.respond(case).unwrap_err();
            assert!(
                matches!(err, AuthError::Malformed { .. }),
                "{:?}: {err}",
                String::from_utf8_lossy(case)
            );
        }

        let mut ex = rfc7677();
        ex.initial_response();
        assert!(matches!(
            ex.respond(b"m=ext,r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            Err(AuthError::UnsupportedExtension)
        ));
    }

    #[test]
    fn scram_ignores_trailing_extensions() {
        let mut ex = rfc7677();
        ex.initial_response();
        let mut server_first = RFC7677_SERVER_FIRST.to_vec();
        server_first.extend_from_slice(b",x=future");
        let response = ex.respond(&server_first).unwrap();
        assert!(
            response.starts_with(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=")
        );
    }

    #[test]
    fn scram_escapes_the_username() {
        let mut ex = Exchange::with_nonce(Mechanism::ScramSha256, &creds("a=b,c", "pencil"), "abc");
        assert_eq!(
            ex.initial_response(),
            Some(b"n,,n=a=3Db=2Cc,r=abc".to_vec())
        );
        assert_eq!(escape_saslname("=,=="), "=3D=2C=3D=3D");
        assert_eq!(escape_saslname("plain"), "plain");
    }

    #[test]
    fn scram_nonce_is_fresh_and_valid() {
        let c = creds("user", "pencil");
        let a = Exchange::new(Mechanism::ScramSha256, &c);
        let b = Exchange::new(Mechanism::ScramSha256, &c);
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(a.nonce.len(), 24);
        assert!(
            a.nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        );
        assert_ne!(fallback_entropy(), fallback_entropy());
    }

    #[test]
    fn other_mechanisms_finish_without_verification() {
        for m in [
            Mechanism::Plain,
            Mechanism::Login,
            Mechanism::CramMd5,
            Mechanism::XOAuth2,
        ] {
            let mut ex = Exchange::new(m, &creds("u", PASSWORD));
            assert!(ex.finish().is_ok(), "{m:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = creds("alice", PASSWORD);
        assert_eq!(format!("{:?}", c.secret), "Secret(<redacted>)");
        assert!(!format!("{c:?}").contains(PASSWORD));
        assert!(!format!("{c:#?}").contains(PASSWORD));
        for m in ALL {
            let mut ex = Exchange::new(m, &c);
            ex.initial_response();
            let _ = ex.respond(b"<1@x>");
            let shown = format!("{ex:?} {ex:#?}");
            assert!(!shown.contains(PASSWORD), "{shown}");
            assert!(shown.contains("alice"));
        }
    }

    #[test]
    fn errors_never_show_the_secret() {
        let c = creds("alice", PASSWORD);
        let mut errors = Vec::new();
        let challenges: &[&[u8]] = &[
            b"",
            b"garbage",
            b"e=other-error",
            b"r=nope,s=AAAA,i=1",
            b"r=x,s=AAAA,i=0",
        ];
        for m in ALL {
            for challenge in challenges {
                let mut ex = Exchange::new(m, &c);
                ex.initial_response();
                for _ in 0..4 {
                    if let Err(e) = ex.respond(challenge) {
                        errors.push(e);
                    }
                }
                if let Err(e) = ex.finish() {
                    errors.push(e);
                }
            }
        }
        let mut ex = Exchange::with_nonce(Mechanism::ScramSha256, &c, "abc");
        ex.initial_response();
        ex.respond(b"r=abcdef,s=AAAA,i=1").unwrap();
        errors.push(ex.respond(b"v=AAAA").unwrap_err());
        assert!(errors.len() > 10);
        for e in &errors {
            assert!(!e.to_string().contains(PASSWORD), "{e}");
            assert!(!format!("{e:?}").contains(PASSWORD), "{e:?}");
        }
    }

    #[test]
    fn hi_matches_pbkdf2_sha256_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256 (P="passwd", S="salt", c=1), first 32 bytes.
        assert_eq!(
            hex(&hi(b"passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }
}
