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

use openssl::ssl::{
    HandshakeError, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslStream,
    SslVerifyMode, SslVersion,
};
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::verify::X509CheckFlags;
use openssl::x509::{X509NameRef, X509VerifyResult};

use super::session::IoTimeout;
use crate::error::Error;

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

/// The connection to the server, in clear or under TLS.
#[derive(Debug)]
pub enum Connection {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl Connection {
    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Plain(s) => s,
            Connection::Tls(s) => s.get_ref(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Connection::Tls(_))
    }

    /// Whether the other end is this machine, by the address actually connected to.
    pub fn peer_is_loopback(&self) -> bool {
        self.tcp().peer_addr().is_ok_and(|a| a.ip().is_loopback())
    }

    pub fn tls_info(&self) -> Option<TlsInfo> {
        let Connection::Tls(s) = self else {
            return None;
        };
        let ssl = s.ssl();
        let cert = ssl.peer_certificate();
        Some(TlsInfo {
            version: ssl.version_str().to_owned(),
            cipher: ssl
                .current_cipher()
                .map_or_else(|| "unknown".to_owned(), |c| c.name().to_owned()),
            subject: cert
                .as_ref()
                .map_or_else(|| "(none)".to_owned(), |c| name_text(c.subject_name())),
            issuer: cert
                .as_ref()
                .map_or_else(|| "(none)".to_owned(), |c| name_text(c.issuer_name())),
            not_after: cert
                .as_ref()
                .map_or_else(|| "(unknown)".to_owned(), |c| c.not_after().to_string()),
        })
    }
}

/// `CN=mx.example.com, O=Example` from a certificate name, sanitised: it comes from
/// the network.
fn name_text(name: &X509NameRef) -> String {
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
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Plain(s) => s.write(buf),
            Connection::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Connection::Plain(s) => s.flush(),
            Connection::Tls(s) => s.flush(),
        }
    }
}

impl IoTimeout for Connection {
    fn set_io_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let t = Some(timeout.max(Duration::from_millis(1)));
        self.tcp().set_read_timeout(t)?;
        self.tcp().set_write_timeout(t)
    }
}

/// Where Debian and its kin keep the trusted CAs as hashed links, one file each.
const SYSTEM_CA_DIR: &str = "/etc/ssl/certs";

/// A TLS client context for `options`: the system's trusted CAs, plus `ca_file`; TLS
/// 1.2 at least (RFC 8996 retires 1.0 and 1.1).
///
/// The system store is used as a hashed directory where there is one, so OpenSSL reads
/// only the CA it needs when it needs it; the usual default parses the whole bundle of
/// some 150 certificates first, which costs more than a whole session in clear.
pub fn context(options: &TlsOptions) -> Result<SslContext, Error> {
    let config = |what: &str, e: openssl::error::ErrorStack| {
        Error::Config(format!("TLS set-up failed ({what}): {e}"))
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
    // OpenSSL's own variables keep their meaning: a file is loaded whole, and
    // SSL_CERT_DIR (colon-separated) replaces the system directory.
    let dirs = std::env::var("SSL_CERT_DIR").unwrap_or_else(|_| SYSTEM_CA_DIR.to_owned());
    let lazy_dir = std::env::var_os("SSL_CERT_FILE").is_none()
        && dirs.split(':').any(|d| has_hashed_links(Path::new(d)));
    if lazy_dir {
        let mut store = X509StoreBuilder::new().map_err(|e| config("trust store", e))?;
        store
            .add_lookup(X509Lookup::hash_dir())
            .and_then(|lookup| lookup.add_dir(&dirs, SslFiletype::PEM))
            .map_err(|e| config("system CA directory", e))?;
        builder.set_cert_store(store.build());
    } else {
        builder
            .set_default_verify_paths()
            .map_err(|e| config("system CA store", e))?;
    }
    if let Some(ca) = &options.ca_file {
        if let Err(source) = std::fs::metadata(ca) {
            return Err(Error::NoInput {
                path: ca.clone(),
                source,
            });
        }
        builder.set_ca_file(ca).map_err(|e| {
            Error::Config(format!("{} is not a PEM CA certificate: {e}", ca.display()))
        })?;
    }
    Ok(builder.build())
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

impl Connection {
    /// Starts TLS on a plain connection, in place (after STARTTLS).
    pub fn start_tls(&mut self, client: &TlsClient<'_>) -> Result<(), Error> {
        let Connection::Plain(tcp) = self else {
            return Err(Error::Protocol {
                stage: crate::error::Stage::StartTls,
                detail: "TLS is already on".into(),
            });
        };
        // The clone shares the socket; dropping the plain handle leaves it open.
        let tcp = tcp.try_clone().map_err(|e| Error::Network {
            stage: crate::error::Stage::TlsHandshake,
            source: e,
        })?;
        *self = client.handshake(tcp)?;
        Ok(())
    }
}

/// What a TLS handshake needs: the options, and the server's name and port as given.
pub struct TlsClient<'a> {
    pub options: &'a TlsOptions,
    pub host: &'a str,
    pub port: u16,
    pub timeout: Duration,
}

impl TlsClient<'_> {
    /// Runs the TLS handshake over `tcp`: the host name is sent as SNI (unless it is an
    /// IP address) and the certificate must name it: the name given, not the address
    /// it resolved to. The context is made here, only when TLS is really used.
    pub fn handshake(&self, tcp: TcpStream) -> Result<Connection, Error> {
        let context = context(self.options)?;
        handshake(
            &context,
            self.options,
            self.host,
            self.port,
            tcp,
            self.timeout,
        )
    }
}

fn handshake(
    context: &SslContext,
    options: &TlsOptions,
    host: &str,
    port: u16,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<Connection, Error> {
    let server = format!("{host}:{port}");
    let tls_err = |detail: String| Error::Tls {
        server: server.clone(),
        detail,
    };
    let t = Some(timeout.max(Duration::from_millis(1)));
    tcp.set_read_timeout(t)
        .and_then(|()| tcp.set_write_timeout(t))
        .map_err(|e| tls_err(e.to_string()))?;
    let mut ssl = Ssl::new(context).map_err(|e| tls_err(e.to_string()))?;
    let ip = host.parse::<IpAddr>().ok();
    // RFC 6066 §3: SNI carries host names only, never addresses.
    if ip.is_none() {
        ssl.set_hostname(host).map_err(|e| tls_err(e.to_string()))?;
    }
    if !options.insecure {
        let param = ssl.param_mut();
        param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
        match ip {
            Some(ip) => param.set_ip(ip),
            None => param.set_host(host),
        }
        .map_err(|e| tls_err(e.to_string()))?;
    }
    match ssl.connect(tcp) {
        Ok(stream) => Ok(Connection::Tls(Box::new(stream))),
        Err(HandshakeError::Failure(mid)) => {
            let verify = mid.ssl().verify_result();
            if verify != X509VerifyResult::OK {
                return Err(Error::Certificate {
                    server,
                    detail: verify.error_string().to_owned(),
                });
            }
            Err(tls_err(diagnose(&mid.error().to_string())))
        }
        Err(HandshakeError::WouldBlock(_)) => Err(Error::Timeout {
            stage: crate::error::Stage::TlsHandshake,
            after: timeout,
        }),
        Err(HandshakeError::SetupFailure(e)) => Err(tls_err(e.to_string())),
    }
}

/// Turns OpenSSL's words for "that was not TLS" into advice.
fn diagnose(detail: &str) -> String {
    const PLAIN_TEXT_SIGNS: [&str; 3] = [
        "wrong version number",
        "packet length too long",
        "record layer failure",
    ];
    if PLAIN_TEXT_SIGNS.iter().any(|s| detail.contains(s)) {
        format!(
            "{detail}: the server answered in clear text, so this port does not speak \
             implicit TLS; use --tls starttls (or --tls auto with the submission port 587)"
        )
    } else {
        detail.to_owned()
    }
}
