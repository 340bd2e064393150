//! The probe's TLS handshake: as outbox's own (the same context, trust store, SNI and
//! name check), except that a certificate that fails verification does not fail the
//! handshake. A verify callback records every error OpenSSL finds, at its depth, and
//! lets the handshake go on, so that the report can show the chain and say why it
//! would be refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream};
use std::sync::{Arc, Mutex};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::hash::MessageDigest;
use openssl::ssl::{HandshakeError, SslRef, SslVerifyMode};
use openssl::x509::X509Ref;

use super::{Began, Certificate, Pin, TlsReport, VerifyError};
use crate::error::Error;
use crate::smtp::pin::Fingerprint;
use crate::smtp::reply::sanitize;
use crate::smtp::stage::Stage;
use crate::smtp::tls::{self, Connection, Handshake, TlsClient};

/// Runs the TLS handshake over `tcp` as `client` says, and reports what was agreed and
/// what the certificate chain is worth. Fails only when TLS itself fails (no common
/// protocol, clear text, the connection lost, the time up).
pub(super) fn handshake(
    client: &TlsClient<'_>,
    tcp: TcpStream,
    began: Began,
) -> Result<(Connection, TlsReport), Error> {
    let server = format!("{}:{}", client.host, client.port);
    let tls_err = |detail: String| Error::Tls {
        server: server.clone(),
        detail,
    };
    // The name is checked inside verification, as for mail; its error is told apart
    // from the chain's by its code.
    let (mut ssl, tcp) = client.prepare(tcp, true)?;
    let found = Arc::new(Mutex::new(Vec::<VerifyError>::new()));
    let record = Arc::clone(&found);
    ssl.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
        if !ok {
            let error = ctx.error();
            let seen = VerifyError {
                depth: ctx.error_depth(),
                code: error.as_raw(),
                text: error.error_string().to_owned(),
            };
            if let Ok(mut all) = record.lock()
                && !all.contains(&seen)
            {
                all.push(seen);
            }
        }
        // Recorded; the report judges it.
        true
    });
    let kind = match began {
        Began::Implicit => Handshake::Implicit,
        Began::StartTls => Handshake::AfterStartTls,
    };
    match ssl.connect(tcp) {
        Ok(mut stream) => {
            // From here on the session gives each read and write its deadline.
            stream.get_mut().read_by(None);
            stream.get_mut().write_by(None);
            let errors = found.lock().map(|e| e.clone()).unwrap_or_default();
            let report = report_of(stream.ssl(), client, began, errors);
            Ok((Connection::Tls(Box::new(stream)), report))
        }
        Err(HandshakeError::Failure(mid)) => Err(tls_err(tls::diagnose(mid.error(), kind))),
        Err(HandshakeError::WouldBlock(_)) => Err(Error::Timeout {
            stage: Stage::TlsHandshake,
            after: client.timeout,
        }),
        Err(HandshakeError::SetupFailure(e)) => Err(tls_err(tls::reasons(&e))),
    }
}

fn report_of(
    ssl: &SslRef,
    client: &TlsClient<'_>,
    began: Began,
    errors: Vec<VerifyError>,
) -> TlsReport {
    // On the client's side the chain holds the server's own certificate first.
    let chain: Vec<Certificate> = match ssl.peer_cert_chain() {
        Some(chain) => chain.iter().map(certificate).collect(),
        None => ssl
            .peer_certificate()
            .map(|c| vec![certificate(&c)])
            .unwrap_or_default(),
    };
    let leaf_print = ssl.peer_certificate().as_deref().and_then(Fingerprint::of);
    TlsReport {
        began,
        version: ssl.version_str().to_owned(),
        cipher: ssl
            .current_cipher()
            .map_or_else(|| "unknown".to_owned(), |c| c.name().to_owned()),
        chain,
        errors,
        name: client.host.to_owned(),
        pinned: client.options.fingerprint.map(|f| Pin {
            fingerprint: f.to_string(),
            matches: leaf_print == Some(f),
        }),
        checked: !client.options.insecure,
    }
}

fn certificate(cert: &X509Ref) -> Certificate {
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    for name in cert.subject_alt_names().iter().flatten() {
        if let Some(dns) = name.dnsname() {
            dns_names.push(sanitize(dns));
        } else if let Some(ip) = name.ipaddress().and_then(ip_of) {
            ip_addresses.push(ip.to_string());
        }
    }
    Certificate {
        subject: tls::name_text(cert.subject_name()),
        issuer: tls::name_text(cert.issuer_name()),
        dns_names,
        ip_addresses,
        not_before: unix(cert.not_before()),
        not_after: unix(cert.not_after()),
        sha256: sha256(cert),
    }
}

/// An address of a subject alternative name: 4 bytes, or 16.
fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(bytes)
        .ok()
        .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

/// A certificate's time as Unix seconds; 0 if OpenSSL cannot read it.
fn unix(time: &Asn1TimeRef) -> i64 {
    Asn1Time::from_unix(0)
        .and_then(|epoch| epoch.diff(time))
        .map_or(0, |d| i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// `AB:CD:…`, as `openssl x509 -noout -fingerprint -sha256` prints it.
fn sha256(cert: &X509Ref) -> String {
    match cert.digest(MessageDigest::sha256()) {
        Ok(digest) => digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
        Err(_) => "(unknown)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::test_certs::{cert, key};
    use crate::smtp::tls::TlsOptions;
    use openssl::ssl::{SslAcceptor, SslMethod};
    use std::net::TcpListener;
    use std::time::Duration;

    /// The report of a handshake with a server showing a leaf signed by a CA of its
    /// own, as a client for `host` with `options` sees it.
    fn inspect(host: &str, trust_ca: bool, insecure: bool) -> TlsReport {
        let ca_key = key();
        let ca = cert("probe unit CA", &ca_key, None);
        let leaf_key = key();
        let leaf = cert("localhost", &leaf_key, Some((&ca, &ca_key)));
        let dir = std::env::temp_dir().join(format!(
            "outbox-inspect-{}-{host}-{trust_ca}-{insecure}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.to_pem().unwrap()).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acceptor.set_private_key(&leaf_key).unwrap();
        acceptor.set_certificate(&leaf).unwrap();
        let acceptor = acceptor.build();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            // The client may close at once; what it saw is what is tested.
            let _ = acceptor.accept(tcp);
        });
        let options = TlsOptions {
            ca_file: trust_ca.then(|| ca_file.clone()),
            insecure,
            ..TlsOptions::default()
        };
        let client = TlsClient {
            options: &options,
            host,
            port: addr.port(),
            timeout: Duration::from_secs(10),
        };
        let tcp = TcpStream::connect(addr).unwrap();
        let (connection, report) = handshake(&client, tcp, Began::Implicit).unwrap();
        drop(connection);
        server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let shown = &report.chain[0];
        assert_eq!(shown.sha256, sha256(&leaf));
        assert_eq!(
            Fingerprint::of(&leaf).unwrap().to_string(),
            format!("sha256:{}", shown.sha256)
        );
        report
    }

    #[test]
    fn a_trusted_certificate_for_the_name_shows_no_error_and_its_details() {
        let report = inspect("localhost", true, false);
        assert_eq!(report.errors, []);
        assert!(report.chain_trusted() && report.name_matches());
        assert!(report.checked);
        assert_eq!(report.began, Began::Implicit);
        assert!(report.version.starts_with("TLSv1."), "{}", report.version);
        let leaf = &report.chain[0];
        assert_eq!(leaf.subject, "CN=localhost");
        assert_eq!(leaf.issuer, "CN=probe unit CA");
        assert_eq!(leaf.dns_names, ["localhost"]);
        assert_eq!(leaf.ip_addresses, ["127.0.0.1"]);
        assert_eq!(leaf.not_after - leaf.not_before, 2 * 86_400);
    }

    #[test]
    fn an_untrusted_chain_is_recorded_and_the_name_still_checked() {
        let report = inspect("localhost", false, false);
        assert!(!report.chain_trusted());
        assert!(report.name_matches());
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.depth == 0 && e.text == "unable to get local issuer certificate"),
            "{:?}",
            report.errors
        );
        // By address: the IP address of the subject alternative names counts.
        assert!(inspect("127.0.0.1", true, false).name_matches());
    }

    #[test]
    fn another_name_is_a_name_error_alone() {
        let report = inspect("other.example.test", true, false);
        assert!(report.chain_trusted());
        assert!(!report.name_matches());
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert_eq!(report.errors[0].depth, 0);
    }

    #[test]
    fn insecure_still_shows_what_verification_finds() {
        let report = inspect("other.example.test", false, true);
        assert!(!report.checked);
        assert!(!report.chain_trusted() && !report.name_matches());
    }
}
