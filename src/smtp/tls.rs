//! TLS for SMTP: the policy (when to use it), the connection (plain or TLS, upgraded in
//! place after STARTTLS), and what a transcript may say about it.
//!
//! OpenSSL is used directly rather than through native-tls: native-tls hides the
//! protocol version, the cipher and the verification result, which `-v` shows and
//! the error messages need. On Linux it is the same library either way.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use openssl::error::ErrorStack;
use openssl::ssl::{
    HandshakeError, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslStream,
    SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509Store;
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::verify::X509CheckFlags;
use openssl::x509::{X509NameRef, X509Ref, X509VerifyResult};

pub use super::deadline::Timed;
use super::deadline::{IoTimeout, prepare_read, socket_timeout};
use crate::error::Error;
use crate::smtp::stage::Stage;

/// When to use TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Implicit TLS on port 465; STARTTLS elsewhere, required, unless the server is on
    /// loopback, where the connection never leaves the machine and it is not tried (a
    /// local MTA's self-signed certificate would otherwise stop every message).
    #[default]
    Auto,
    /// STARTTLS (RFC 3207), required: a server that does not offer it is an error,
    /// never a silent fallback to clear text. Risk: none beyond the certificate check.
    StartTls,
    /// TLS from the first byte (RFC 8314 §3.3), as on port 465.
    Implicit,
    /// No TLS at all. Risk: everything, the message and any credentials, can be read
    /// and changed on the way; outbox refuses to send credentials like this except to
    /// loopback.
    None,
}

impl TlsMode {
    pub fn parse(text: &str) -> Option<TlsMode> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Some(TlsMode::Auto),
            "starttls" => Some(TlsMode::StartTls),
            "implicit" => Some(TlsMode::Implicit),
            "none" => Some(TlsMode::None),
            _ => None,
        }
    }
}

/// What to trust.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: TlsMode,
    /// A CA certificate (PEM) trusted besides the system store.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. Risk: anyone in the path can pose as the server.
    pub insecure: bool,
    /// Accept the certificate with this fingerprint, and only it, in place of a CA's
    /// trust and the name check.
    pub fingerprint: Option<super::pin::Fingerprint>,
    /// A client certificate (PEM, with its chain) and its key, for a relay that
    /// authenticates its clients by certificate (RFC 8314 §5.2 allows either).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// What a transcript shows of a TLS session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
}

impl fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, cipher {}; certificate {} issued by {}, expires {}",
            self.version, self.cipher, self.subject, self.issuer, self.not_after
        )
    }
}

/// What the session needs of its stream beyond bytes: whether it is encrypted, where
/// it leads, and how to start TLS on it. [`Connection`] is the real one; tests give a
/// scripted peer.
pub trait Channel: Read + Write + IoTimeout {
    fn is_tls(&self) -> bool;
    /// Whether the other end is this machine, by the address actually connected to.
    fn peer_is_loopback(&self) -> bool;
    /// Starts TLS in place (after STARTTLS).
    fn start_tls(&mut self, client: &TlsClient<'_>) -> Result<(), Error>;
    fn tls_info(&self) -> Option<TlsInfo>;
}

/// The connection to the server, in clear or under TLS.
#[derive(Debug)]
pub enum Connection {
    Plain(TcpStream),
    /// Over a socket that keeps the session's deadlines within each TLS read and write.
    Tls(Box<SslStream<Timed>>),
    /// A Unix socket: this machine, and no TLS.
    Unix(std::os::unix::net::UnixStream),
}

impl Connection {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Connection::Plain(s) => Some(s),
            Connection::Tls(s) => Some(s.get_ref().get_ref()),
            Connection::Unix(_) => None,
        }
    }
}

impl Channel for Connection {
    fn is_tls(&self) -> bool {
        matches!(self, Connection::Tls(_))
    }

    fn peer_is_loopback(&self) -> bool {
        match self.tcp() {
            Some(tcp) => tcp.peer_addr().is_ok_and(|a| a.ip().is_loopback()),
            None => true,
        }
    }

    fn start_tls(&mut self, client: &TlsClient<'_>) -> Result<(), Error> {
        let tcp = match self {
            Connection::Plain(tcp) => tcp,
            Connection::Tls(_) => {
                return Err(Error::Protocol {
                    stage: Stage::StartTls,
                    detail: "TLS is already on".into(),
                });
            }
            Connection::Unix(_) => {
                return Err(Error::Usage(
                    "TLS over a Unix socket is not supported".into(),
                ));
            }
        };
        // The clone shares the socket; dropping the plain handle leaves it open.
        let tcp = tcp.try_clone().map_err(|source| Error::Network {
            stage: Stage::TlsHandshake,
            source,
        })?;
        *self = client.handshake(tcp, Handshake::AfterStartTls)?;
        Ok(())
    }

    fn tls_info(&self) -> Option<TlsInfo> {
        let Connection::Tls(s) = self else {
            return None;
        };
        let ssl = s.ssl();
        let cert = ssl.peer_certificate();
        let name = |f: fn(&X509Ref) -> &X509NameRef| {
            cert.as_ref()
                .map_or_else(|| "(none)".to_owned(), |c| name_text(f(c)))
        };
        Some(TlsInfo {
            version: ssl.version_str().to_owned(),
            cipher: ssl
                .current_cipher()
                .map_or_else(|| "unknown".to_owned(), |c| c.name().to_owned()),
            subject: name(X509Ref::subject_name),
            issuer: name(X509Ref::issuer_name),
            not_after: cert
                .as_ref()
                .map_or_else(|| "(unknown)".to_owned(), |c| c.not_after().to_string()),
        })
    }
}

/// `CN=mx.example.com, O=Example` from a certificate name, sanitised: it comes from
/// the network.
pub(crate) fn name_text(name: &X509NameRef) -> String {
    let parts: Vec<String> = name
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_else(|_| "?".to_owned());
            format!("{key}={}", super::reply::sanitize(&value))
        })
        .collect();
    parts.join(", ")
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Connection::Plain(s) => s.read(buf),
            Connection::Tls(s) => s.read(buf),
            Connection::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Plain(s) => s.write(buf),
            Connection::Tls(s) => s.write(buf),
            Connection::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Connection::Plain(s) => s.flush(),
            Connection::Tls(s) => s.flush(),
            Connection::Unix(s) => s.flush(),
        }
    }
}

impl IoTimeout for Connection {
    fn prepare_read(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Unix(s) => match timeout {
                Some(t) => s.set_read_timeout(Some(socket_timeout(t))),
                None => Ok(()),
            },
            Connection::Plain(s) => prepare_read(s, timeout),
            // The socket's timeout follows the deadline (`read_by`), read by read.
            Connection::Tls(s) => prepare_read(s.get_ref().get_ref(), None),
        }
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let t = Some(socket_timeout(timeout));
        match self {
            Connection::Unix(s) => s.set_write_timeout(t),
            Connection::Plain(s) => TcpStream::set_write_timeout(s, t),
            // As for reads: `write_by` sets it.
            Connection::Tls(_) => Ok(()),
        }
    }

    fn read_by(&mut self, deadline: Option<std::time::Instant>) {
        if let Connection::Tls(s) = self {
            s.get_mut().read_by(deadline);
        }
    }

    fn write_by(&mut self, deadline: Option<std::time::Instant>) {
        if let Connection::Tls(s) = self {
            s.get_mut().write_by(deadline);
        }
    }
}

/// Where Debian and its kin keep the trusted CAs as hashed links, one file each.
const SYSTEM_CA_DIR: &str = "/etc/ssl/certs";

/// A TLS client context for `options`: the system's trusted CAs, plus `ca_file`; TLS
/// 1.2 at least (RFC 8996 retires 1.0 and 1.1).
///
/// Without `SSL_CERT_FILE` or `SSL_CERT_DIR` in the environment, the system store is
/// used as a hashed directory where there is one, so OpenSSL reads only the CA it needs
/// when it needs it; its usual default first parses the whole bundle of some 150
/// certificates, which costs more than a whole session in clear. With either variable
/// set, OpenSSL's own loading is kept, with its meaning.
pub fn context(options: &TlsOptions) -> Result<SslContext, Error> {
    let config = |what: &str, e: ErrorStack| {
        Error::Config(format!("TLS set-up failed ({what}): {}", reasons(&e)))
    };
    let mut builder =
        SslContextBuilder::new(SslMethod::tls_client()).map_err(|e| config("library", e))?;
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| config("protocol version", e))?;
    builder.set_verify(if options.insecure {
        SslVerifyMode::NONE
    } else {
        SslVerifyMode::PEER
    });
    let environment_set =
        std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some();
    if !environment_set && has_hashed_links(Path::new(SYSTEM_CA_DIR)) {
        let store =
            hashed_dir_store(SYSTEM_CA_DIR).map_err(|e| config("system CA directory", e))?;
        builder.set_cert_store(store);
    } else {
        builder
            .set_default_verify_paths()
            .map_err(|e| config("system CA store", e))?;
    }
    if let Some((cert, key)) = &options.client_cert {
        let unusable = |what: &Path, e: ErrorStack| {
            Error::Config(format!(
                "{} cannot be used as the client certificate's {}: {}",
                what.display(),
                if what == cert.as_path() {
                    "certificate"
                } else {
                    "key"
                },
                reasons(&e)
            ))
        };
        builder
            .set_certificate_chain_file(cert)
            .map_err(|e| unusable(cert, e))?;
        builder
            .set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| unusable(key, e))?;
        builder.check_private_key().map_err(|e| {
            Error::Config(format!(
                "the key {} is not the one of the certificate {}: {}",
                key.display(),
                cert.display(),
                reasons(&e)
            ))
        })?;
    }
    if let Some(ca) = &options.ca_file {
        builder.set_ca_file(ca).map_err(|e| {
            Error::Config(format!(
                "{} is not a PEM CA certificate: {}",
                ca.display(),
                reasons(&e)
            ))
        })?;
    }
    Ok(builder.build())
}

/// A trust store that looks CAs up by subject hash in `dir` when a chain needs one.
fn hashed_dir_store(dir: &str) -> Result<X509Store, ErrorStack> {
    let mut store = X509StoreBuilder::new()?;
    store
        .add_lookup(X509Lookup::hash_dir())?
        .add_dir(dir, SslFiletype::PEM)?;
    Ok(store.build())
}

/// Whether `dir` holds OpenSSL's hashed links (`5ad8a5d6.0` and the like).
fn has_hashed_links(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.len() == 10
                && name.ends_with(".0")
                && name[..8].bytes().all(|b| b.is_ascii_hexdigit())
        })
    })
}

/// Which handshake this is, for what to advise when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// TLS from the first byte.
    Implicit,
    AfterStartTls,
}

/// Implicit TLS for submission (RFC 8314 §3.3).
pub const IMPLICIT_TLS_PORT: u16 = 465;

/// What a TLS handshake needs: the options, and the server's name and port as given.
pub struct TlsClient<'a> {
    pub options: &'a TlsOptions,
    pub host: &'a str,
    pub port: u16,
    pub timeout: Duration,
}

impl TlsClient<'_> {
    /// What every handshake with the server begins with: the context, the host name as
    /// SNI (unless it is an IP address), with `check_name` the name the certificate
    /// must carry (the name given, not the address it resolved to), and the stream
    /// with the whole handshake due within the limit, however many reads and writes
    /// it takes.
    pub(crate) fn prepare(&self, tcp: TcpStream, check_name: bool) -> Result<(Ssl, Timed), Error> {
        let tls_err = |detail: String| Error::Tls {
            server: format!("{}:{}", self.host, self.port),
            detail,
        };
        let context = context(self.options)?;
        prepare_read(&tcp, None).map_err(|e| tls_err(e.to_string()))?;
        let tcp = Timed::new(tcp, self.timeout);
        let mut ssl = Ssl::new(&context).map_err(|e| tls_err(reasons(&e)))?;
        let ip = self.host.parse::<IpAddr>().ok();
        // RFC 6066 §3: SNI carries host names only, never addresses.
        if ip.is_none() {
            ssl.set_hostname(self.host)
                .map_err(|e| tls_err(reasons(&e)))?;
        }
        if check_name {
            let param = ssl.param_mut();
            param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
            match ip {
                Some(ip) => param.set_ip(ip),
                None => param.set_host(self.host),
            }
            .map_err(|e| tls_err(reasons(&e)))?;
        }
        Ok((ssl, tcp))
    }

    /// Runs the TLS handshake over `tcp`: the host name is sent as SNI (unless it is an
    /// IP address) and the certificate must name it: the name given, not the address
    /// it resolved to. The context is made here, only when TLS is really used.
    pub fn handshake(&self, tcp: TcpStream, kind: Handshake) -> Result<Connection, Error> {
        let server = format!("{}:{}", self.host, self.port);
        let tls_err = |detail: String| Error::Tls {
            server: server.clone(),
            detail,
        };
        let check_name = !self.options.insecure && self.options.fingerprint.is_none();
        let (mut ssl, tcp) = self.prepare(tcp, check_name)?;
        let pinned = self
            .options
            .fingerprint
            .map(|f| (f, super::pin::pin(&mut ssl, f)));
        match ssl.connect(tcp) {
            Ok(mut stream) => {
                // From here on the session gives each read and write its deadline.
                stream.get_mut().read_by(None);
                stream.get_mut().write_by(None);
                Ok(Connection::Tls(Box::new(stream)))
            }
            Err(HandshakeError::Failure(mid)) => {
                if let Some((wanted, seen)) = &pinned {
                    let seen = seen.lock().ok().and_then(|s| *s);
                    if seen != Some(*wanted) {
                        let shown = seen.map_or_else(|| "none".to_owned(), |f| f.to_string());
                        return Err(Error::Certificate {
                            server,
                            detail: format!(
                                "its certificate's fingerprint is {shown}, not the pinned \
                                 {wanted}"
                            ),
                        });
                    }
                }
                let verify = mid.ssl().verify_result();
                // With verification off OpenSSL still records what it found; that is not
                // why the handshake failed.
                if !self.options.insecure && verify != X509VerifyResult::OK {
                    return Err(Error::Certificate {
                        server,
                        detail: verify.error_string().to_owned(),
                    });
                }
                Err(tls_err(diagnose(mid.error(), kind)))
            }
            Err(HandshakeError::WouldBlock(_)) => Err(Error::Timeout {
                stage: Stage::TlsHandshake,
                after: self.timeout,
            }),
            Err(HandshakeError::SetupFailure(e)) => Err(tls_err(reasons(&e))),
        }
    }
}

/// OpenSSL's reasons, without its codes, function names and source file positions.
pub(crate) fn reasons(stack: &ErrorStack) -> String {
    let reasons: Vec<&str> = stack.errors().iter().filter_map(|e| e.reason()).collect();
    if reasons.is_empty() {
        stack.to_string()
    } else {
        reasons.join("; ")
    }
}

/// Says why a handshake failed, and what to try where the cause is a known mistake.
pub(crate) fn diagnose(error: &openssl::ssl::Error, kind: Handshake) -> String {
    let detail = match error.ssl_error() {
        Some(stack) => reasons(stack),
        None => match error.io_error() {
            Some(io) => io.to_string(),
            None => "the connection ended during the handshake".to_owned(),
        },
    };
    const CLEAR_TEXT_SIGNS: [&str; 3] = [
        "wrong version number",
        "packet length too long",
        "record layer failure",
    ];
    let clear_text = CLEAR_TEXT_SIGNS.iter().any(|s| detail.contains(s));
    match (clear_text, kind) {
        (true, Handshake::Implicit) => format!(
            "{detail}: the server answered in clear text, so this port does not speak \
             implicit TLS; use --tls starttls (or --tls auto with the submission port 587)"
        ),
        (true, Handshake::AfterStartTls) => {
            format!("{detail}: the server sent clear text after agreeing to start TLS")
        }
        (false, _) => detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::test_certs::{cert, key};
    use openssl::x509::{X509, X509StoreContext};

    #[test]
    fn the_hashed_directory_store_finds_the_issuer_when_asked() {
        let dir = std::env::temp_dir().join(format!("outbox-hashdir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = key();
        let ca = cert("outbox unit CA", &ca_key, None);
        let leaf = cert("mx.example.test", &key(), Some((&ca, &ca_key)));
        let other_key = key();
        let other_ca = cert("other CA", &other_key, None);
        let stranger = cert("mx.example.test", &key(), Some((&other_ca, &other_key)));
        // Named as OpenSSL's rehash names it: the subject hash, then ".0".
        let link = dir.join(format!("{:08x}.0", ca.subject_name_hash()));
        std::fs::write(&link, ca.to_pem().unwrap()).unwrap();
        assert!(has_hashed_links(&dir));

        let store = hashed_dir_store(dir.to_str().unwrap()).unwrap();
        let verify = |cert: &X509| {
            let chain = openssl::stack::Stack::new().unwrap();
            let mut ctx = X509StoreContext::new().unwrap();
            ctx.init(&store, cert, &chain, |c| c.verify_cert()).unwrap()
        };
        let trusted = verify(&leaf);
        let untrusted = verify(&stranger);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(trusted);
        assert!(!untrusted);
    }

    #[test]
    fn hashed_links_are_told_from_other_files() {
        let dir = std::env::temp_dir().join(format!("outbox-nohash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca-bundle.crt"), "x").unwrap();
        std::fs::write(dir.join("zz.0"), "x").unwrap();
        let found = has_hashed_links(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!found);
    }

    #[test]
    fn tls_modes_parse_in_any_case() {
        assert_eq!(TlsMode::parse("STARTTLS"), Some(TlsMode::StartTls));
        assert_eq!(TlsMode::parse("Implicit"), Some(TlsMode::Implicit));
        assert_eq!(TlsMode::parse("sometimes"), None);
    }
}
