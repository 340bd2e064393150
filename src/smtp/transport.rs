//! Connecting to the server: name resolution, connect with a deadline, TCP_NODELAY.

use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::Error;

/// The port when none is given: SMTP's, as IANA assigns it.
pub const DEFAULT_PORT: u16 = 25;

/// Where the server is: a host name or IP address, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
}

impl ServerAddr {
    /// Parses `HOST`, `HOST:PORT`, `[IPv6]`, `[IPv6]:PORT` or a bare IPv6 address.
    pub fn parse(text: &str) -> Result<ServerAddr, String> {
        ServerAddr::parse_or(text, DEFAULT_PORT)
    }

    /// As [`ServerAddr::parse`], with `default_port` when the text names none.
    /// `unix:/path` names a Unix socket (for LMTP, as Dovecot and Cyrus offer).
    pub fn parse_or(text: &str, default_port: u16) -> Result<ServerAddr, String> {
        if let Some(path) = text.trim().strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("invalid server {text:?}: give unix:/absolute/path"));
            }
            return Ok(ServerAddr {
                host: format!("unix:{path}"),
                port: 0,
            });
        }
        let bad = |why: &str| format!("invalid server {text:?}: {why}");
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("missing ']' after an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected ':PORT' after ']'"))?,
                ),
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address between [ and ]"));
            }
            (host, port)
        } else if text.matches(':').count() > 1 {
            // More than one colon and no brackets: an IPv6 address without a port.
            if text.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("write an IPv6 address with a port as [ADDRESS]:PORT"));
            }
            (text, None)
        } else {
            match text.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host name"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(bad("the host name has a character a host name cannot have"));
        }
        let port = match port {
            None => default_port,
            Some(p) => Some(p)
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        };
        Ok(ServerAddr {
            host: host.to_owned(),
            port,
        })
    }

    /// The socket's path, when the server is a Unix socket.
    pub fn unix_path(&self) -> Option<&std::path::Path> {
        self.host.strip_prefix("unix:").map(std::path::Path::new)
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unix_path().is_some() {
            f.write_str(&self.host)
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Resolves the server's name; a failure here is "no such host" (EX_NOHOST).
pub fn resolve(server: &ServerAddr) -> Result<Vec<SocketAddr>, Error> {
    let addrs: Vec<SocketAddr> = (server.host.as_str(), server.port)
        .to_socket_addrs()
        .map_err(|e| {
            let detail = e.to_string();
            Error::NoHost {
                host: server.host.clone(),
                temporary: is_temporary_resolver_failure(&detail),
                detail,
            }
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::NoHost {
            host: server.host.clone(),
            detail: "the name has no address".into(),
            temporary: false,
        });
    }
    Ok(addrs)
}

/// Whether a resolver error means "try again" (EAI_AGAIN) rather than "no such name".
/// std gives only the text of getaddrinfo's error, gai_strerror's: "Temporary failure
/// in name resolution" for EAI_AGAIN in glibc and musl alike.
fn is_temporary_resolver_failure(detail: &str) -> bool {
    detail.contains("Temporary failure")
}

/// Which of the server's addresses to use, and from where (`-4`, `-6`,
/// `--source-address`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dial {
    pub family: Family,
    /// The local address to bind before connecting; only the server's addresses of
    /// its family are tried.
    pub source: Option<IpAddr>,
}

/// The address family to connect over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    #[default]
    Any,
    V4,
    V6,
}

impl Dial {
    /// Whether `addr` is one this dial may connect to.
    fn allows(&self, addr: &SocketAddr) -> bool {
        let family = match self.family {
            Family::Any => true,
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        };
        family && self.source.is_none_or(|s| s.is_ipv4() == addr.is_ipv4())
    }

    /// A connection to `addr` within `timeout`, from the source address if any.
    fn open(&self, addr: &SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
        let Some(source) = self.source else {
            return TcpStream::connect_timeout(addr, timeout);
        };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(*addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind to {source}: {e}")))?;
        socket.connect_timeout(&(*addr).into(), timeout)?;
        Ok(socket.into())
    }
}

/// Connects to the first address that answers within `timeout`, and turns Nagle's
/// algorithm off: commands are written whole, so there is nothing to gain from
/// holding them back, and a delayed ACK would stall every round trip.
/// `timeout` bounds the whole attempt, over every address the name has; `dial`
/// says which of them, and from where.
pub fn connect(server: &ServerAddr, timeout: Duration, dial: Dial) -> Result<TcpStream, Error> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    let all = resolve(server)?;
    let addrs: Vec<SocketAddr> = all.iter().copied().filter(|a| dial.allows(a)).collect();
    if addrs.is_empty() {
        let which = match (dial.family, dial.source) {
            (_, Some(source)) => format!("of the family of {source}"),
            (Family::V6, None) => "IPv6".into(),
            _ => "IPv4".into(),
        };
        // As a name with no address at all: 68, which no retry cures.
        return Err(Error::NoHost {
            host: server.host.clone(),
            detail: format!(
                "it has no {which} address (it has {})",
                all.iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            temporary: false,
        });
    }
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last = Some(std::io::Error::from(std::io::ErrorKind::TimedOut));
            break;
        }
        match dial.open(&addr, left) {
            Ok(stream) => {
                stream.set_nodelay(true).map_err(|source| Error::Connect {
                    server: server.to_string(),
                    source,
                })?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Connect {
        server: server.to_string(),
        source: last.unwrap_or_else(|| std::io::Error::other("no address to connect to")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (String, u16) {
        let a = ServerAddr::parse(s).unwrap();
        (a.host, a.port)
    }

    #[test]
    fn forms() {
        assert_eq!(parse("localhost"), ("localhost".into(), 25));
        assert_eq!(
            parse("mx.example.test:2525"),
            ("mx.example.test".into(), 2525)
        );
        assert_eq!(parse("127.0.0.1:587"), ("127.0.0.1".into(), 587));
        assert_eq!(parse("[::1]:2525"), ("::1".into(), 2525));
        assert_eq!(parse("[::1]"), ("::1".into(), 25));
        assert_eq!(parse("::1"), ("::1".into(), 25));
    }

    #[test]
    fn bad_forms() {
        for bad in [
            "",
            ":25",
            "host:",
            "host:0",
            "host:70000",
            "host:x",
            "host:+25",
            "[::1",
            "[nothost]:25",
            "[::1]25",
            "a:b:c",
            "ho st",
        ] {
            assert!(ServerAddr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unix_sockets() {
        let a = ServerAddr::parse("unix:/run/dovecot/lmtp").unwrap();
        assert_eq!(
            a.unix_path(),
            Some(std::path::Path::new("/run/dovecot/lmtp"))
        );
        assert_eq!(a.to_string(), "unix:/run/dovecot/lmtp");
        assert!(ServerAddr::parse("unix:relative").is_err());
        assert_eq!(
            ServerAddr::parse("mx.example.test").unwrap().unix_path(),
            None
        );
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(
            ServerAddr::parse("[::1]:2525").unwrap().to_string(),
            "[::1]:2525"
        );
        assert_eq!(ServerAddr::parse("h:1").unwrap().to_string(), "h:1");
    }

    #[test]
    fn connection_refused_is_a_connect_error() {
        // Bind then drop, so the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = ServerAddr::parse(&format!("127.0.0.1:{port}")).unwrap();
        match connect(&server, Duration::from_secs(5), Dial::default()) {
            Err(Error::Connect { .. }) => {}
            other => panic!("expected a connect error, got {other:?}"),
        }
    }

    #[test]
    fn a_dial_takes_only_the_addresses_of_its_family_and_source() {
        let v4: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let v6: SocketAddr = "[::1]:25".parse().unwrap();
        let dial = |family, source: Option<&str>| Dial {
            family,
            source: source.map(|s| s.parse().unwrap()),
        };
        let any = dial(Family::Any, None);
        assert!(any.allows(&v4) && any.allows(&v6));
        assert!(dial(Family::V4, None).allows(&v4) && !dial(Family::V4, None).allows(&v6));
        assert!(!dial(Family::V6, None).allows(&v4) && dial(Family::V6, None).allows(&v6));
        let from_v4 = dial(Family::Any, Some("127.0.0.2"));
        assert!(from_v4.allows(&v4) && !from_v4.allows(&v6));
    }

    #[test]
    fn a_server_with_no_address_of_the_family_is_nohost_and_says_so() {
        let server = ServerAddr::parse("127.0.0.1:25").unwrap();
        let dial = Dial {
            family: Family::V6,
            source: None,
        };
        match connect(&server, Duration::from_secs(1), dial) {
            Err(Error::NoHost {
                detail, temporary, ..
            }) => {
                assert_eq!(detail, "it has no IPv6 address (it has 127.0.0.1)");
                assert!(!temporary);
            }
            other => panic!("expected NoHost, got {other:?}"),
        }
    }

    #[test]
    fn the_source_address_is_the_connections_own() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = ServerAddr::parse(&format!("127.0.0.1:{port}")).unwrap();
        let dial = Dial {
            family: Family::Any,
            source: Some("127.0.0.2".parse().unwrap()),
        };
        let stream = connect(&server, Duration::from_secs(5), dial).unwrap();
        assert_eq!(stream.local_addr().unwrap().ip().to_string(), "127.0.0.2");
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
    }

    #[test]
    fn unknown_host_is_nohost() {
        // A label over 63 octets (RFC 1035 §2.3.4) fails in the resolver library
        // itself, so no query leaves this machine.
        let server = ServerAddr::parse(&format!("{}.invalid", "a".repeat(64))).unwrap();
        assert!(matches!(resolve(&server), Err(Error::NoHost { .. })));
    }
}
