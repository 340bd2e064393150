//! Test certificates, made at test time with the `openssl` command.
//!
//! [`TestPki::shared`] creates, once per test binary, a small PKI in a
//! temporary directory (EC P-256 keys, ECDSA-SHA256 signatures; about 20
//! `openssl` runs, well under a second):
//!
//! | files                                         | what                                                   |
//! |-----------------------------------------------|--------------------------------------------------------|
//! | [`ca_cert`](TestPki::ca_cert)                 | the test CA ([`CA_NAME`]); trust this one              |
//! | [`server_cert`](TestPki::server_cert) / `_key` | for `localhost`, `mx.outbox.test`, `127.0.0.1`, `::1` |
//! | [`wrong_host_cert`](TestPki::wrong_host_cert) / `_key` | same CA, only `wrong.example.test`            |
//! | [`untrusted_cert`](TestPki::untrusted_cert) / `_key` | server names, but signed by [`untrusted_ca_cert`](TestPki::untrusted_ca_cert) |
//! | [`expired_cert`](TestPki::expired_cert) / `_key` | server names, same CA, expired yesterday             |
//! | [`expiring_cert`](TestPki::expiring_cert) / `_key` | server names, same CA, expires in 10 days          |
//! | [`self_signed_cert`](TestPki::self_signed_cert) / `_key` | server names, self-signed (no CA)            |
//!
//! All server certificates are leaf certificates (`CA:FALSE`, critical key
//! usage `digitalSignature`, extended key usage `serverAuth`, subject and
//! authority key identifiers) with the names in the subject alternative
//! name extension (the CN repeats the first DNS name). They are valid from
//! one day ago to 30 days ahead; the CAs from 60 days ago to 90 days ahead.
//! The expired certificate was valid from 30 days ago to one day ago; the
//! expiring one is valid from one day ago to 10 days ahead. Keys
//! are unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`), mode 0600. Files are
//! PEM, the certificate files hold just the leaf (the CA is trusted
//! directly, there are no intermediates).
//!
//! Nothing here is in any system trust store. To make an OpenSSL-based
//! client trust the test CA without configuration, set `SSL_CERT_FILE` to
//! [`TestPki::ca_cert`] (or `SSL_CERT_DIR` to [`TestPki::ca_dir`], a hashed
//! directory) in its environment.
//!
//! ```ignore
//! let pki = TestPki::shared();
//! let server = SmtpServer::builder().starttls().start();  // uses server_cert()
//! outbox().env("SSL_CERT_FILE", pki.ca_cert()) ...
//! ```
//!
//! The directory is removed when the test process exits normally; if it
//! was killed, the next run removes the leftovers (`outbox-pki-<pid>-*`
//! directories whose process is gone).

use super::TempDir;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Subject CN of the trusted test CA.
pub const CA_NAME: &str = "outbox test CA";
/// Subject CN of the CA that nobody trusts.
pub const UNTRUSTED_CA_NAME: &str = "outbox untrusted test CA";
/// DNS names in the server certificate (and the untrusted, expired and
/// self-signed ones).
pub const SERVER_DNS_NAMES: [&str; 2] = ["localhost", "mx.outbox.test"];
/// IP addresses in the server certificate (and the untrusted, expired and
/// self-signed ones).
pub const SERVER_IPS: [&str; 2] = ["127.0.0.1", "::1"];
/// The only name in [`TestPki::wrong_host_cert`].
pub const WRONG_HOST_NAME: &str = "wrong.example.test";

const DAY: i64 = 24 * 60 * 60;

/// The test certificates; see the module documentation.
#[derive(Debug)]
pub struct TestPki {
    dir: TempDir,
    ca_cert: PathBuf,
    ca_key: PathBuf,
    ca_dir: PathBuf,
    server: (PathBuf, PathBuf),
    wrong_host: (PathBuf, PathBuf),
    untrusted_ca: (PathBuf, PathBuf),
    untrusted: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
    expiring: (PathBuf, PathBuf),
    self_signed: (PathBuf, PathBuf),
}

static SHARED: OnceLock<Result<TestPki, String>> = OnceLock::new();

impl TestPki {
    /// The certificates of this test binary, made on first use. Panics if
    /// `openssl` is missing or fails.
    pub fn shared() -> &'static TestPki {
        let pki = SHARED.get_or_init(|| {
            let result = TestPki::create();
            if result.is_ok() {
                register_cleanup();
            }
            result
        });
        match pki {
            Ok(pki) => pki,
            Err(e) => panic!("cannot create the test certificates:\n{e}"),
        }
    }

    /// The directory holding everything.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The test CA's certificate (PEM): the trust anchor for all tests.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// The test CA's private key.
    pub fn ca_key(&self) -> &Path {
        &self.ca_key
    }

    /// A directory with just [`TestPki::ca_cert`], hashed for OpenSSL's
    /// `-CApath` / `SSL_CERT_DIR`.
    pub fn ca_dir(&self) -> &Path {
        &self.ca_dir
    }

    /// Server certificate for [`SERVER_DNS_NAMES`] and [`SERVER_IPS`],
    /// signed by the test CA.
    pub fn server_cert(&self) -> &Path {
        &self.server.0
    }

    pub fn server_key(&self) -> &Path {
        &self.server.1
    }

    /// Signed by the test CA, but only for [`WRONG_HOST_NAME`]: hostname
    /// verification against any of the server names must fail.
    pub fn wrong_host_cert(&self) -> &Path {
        &self.wrong_host.0
    }

    pub fn wrong_host_key(&self) -> &Path {
        &self.wrong_host.1
    }

    /// For the server names, but signed by [`TestPki::untrusted_ca_cert`],
    /// which is in no trust store: chain verification must fail.
    pub fn untrusted_cert(&self) -> &Path {
        &self.untrusted.0
    }

    pub fn untrusted_key(&self) -> &Path {
        &self.untrusted.1
    }

    /// The CA that signed [`TestPki::untrusted_cert`] ([`UNTRUSTED_CA_NAME`]).
    pub fn untrusted_ca_cert(&self) -> &Path {
        &self.untrusted_ca.0
    }

    pub fn untrusted_ca_key(&self) -> &Path {
        &self.untrusted_ca.1
    }

    /// For the server names, signed by the test CA, but `notAfter` was
    /// yesterday.
    pub fn expired_cert(&self) -> &Path {
        &self.expired.0
    }

    pub fn expired_key(&self) -> &Path {
        &self.expired.1
    }

    /// For the server names, signed by the test CA, valid for 10 more days (for
    /// the warnings of certificates about to expire).
    pub fn expiring_cert(&self) -> &Path {
        &self.expiring.0
    }

    pub fn expiring_key(&self) -> &Path {
        &self.expiring.1
    }

    /// For the server names, self-signed (issuer = subject, `CA:FALSE`).
    pub fn self_signed_cert(&self) -> &Path {
        &self.self_signed.0
    }

    pub fn self_signed_key(&self) -> &Path {
        &self.self_signed.1
    }

    fn create() -> Result<TestPki, String> {
        remove_stale_dirs();
        let dir = TempDir::new("outbox-pki");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("clock before 1970: {e}"))?
            .as_secs() as i64;
        let d = dir.path().to_path_buf();
        let server_names = server_san();

        let ca = Ca::new(&d.join("ca"), CA_NAME, now)?;
        let untrusted_ca = Ca::new(&d.join("untrusted-ca"), UNTRUSTED_CA_NAME, now)?;
        let valid = (now - DAY, now + 30 * DAY);
        let server = ca.issue(&d, "server", &server_names, valid)?;
        let wrong_host = ca.issue(&d, "wrong-host", &format!("DNS:{WRONG_HOST_NAME}"), valid)?;
        let untrusted = untrusted_ca.issue(&d, "untrusted", &server_names, valid)?;
        let expired = ca.issue(&d, "expired", &server_names, (now - 30 * DAY, now - DAY))?;
        let expiring = ca.issue(&d, "expiring", &server_names, (now - DAY, now + 10 * DAY))?;
        let self_signed = self_signed(&d, "self-signed", &server_names)?;

        let ca_dir = d.join("ca-dir");
        fs::create_dir(&ca_dir).map_err(|e| format!("cannot create {}: {e}", ca_dir.display()))?;
        fs::copy(&ca.cert, ca_dir.join("outbox-test-ca.pem"))
            .map_err(|e| format!("cannot copy the CA certificate: {e}"))?;
        openssl(&d, &["rehash".as_ref(), ca_dir.as_os_str()])?;

        Ok(TestPki {
            ca_cert: ca.cert.clone(),
            ca_key: ca.key.clone(),
            ca_dir,
            server,
            wrong_host,
            untrusted_ca: (untrusted_ca.cert.clone(), untrusted_ca.key.clone()),
            untrusted,
            expired,
            expiring,
            self_signed,
            dir,
        })
    }
}

/// `DNS:localhost,DNS:mx.outbox.test,IP:127.0.0.1,IP:::1`.
fn server_san() -> String {
    let dns = SERVER_DNS_NAMES.iter().map(|n| format!("DNS:{n}"));
    let ips = SERVER_IPS.iter().map(|ip| format!("IP:{ip}"));
    dns.chain(ips).collect::<Vec<_>>().join(",")
}

/// The first DNS name of a SAN value (for the CN).
fn first_name(san: &str) -> &str {
    san.split(',')
        .find_map(|e| e.strip_prefix("DNS:"))
        .unwrap_or("outbox test server")
}

/// A CA made with `openssl ca` (which, unlike `openssl x509` in OpenSSL
/// 3.0, can set both validity dates).
struct Ca {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str, now: i64) -> Result<Ca, String> {
        fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        fs::create_dir(dir.join("db")).map_err(|e| format!("cannot create db dir: {e}"))?;
        write(&dir.join("db/index.txt"), "")?;
        write(&dir.join("db/serial"), "01\n")?;
        let db = dir.join("db").display().to_string();
        write(
            &dir.join("ca.cnf"),
            &format!(
                "[ ca ]\n\
                 default_ca = test_ca\n\
                 [ test_ca ]\n\
                 database = {db}/index.txt\n\
                 new_certs_dir = {db}\n\
                 serial = {db}/serial\n\
                 default_md = sha256\n\
                 policy = policy_any\n\
                 unique_subject = no\n\
                 email_in_dn = no\n\
                 copy_extensions = none\n\
                 [ policy_any ]\n\
                 commonName = supplied\n\
                 [ ext_ca ]\n\
                 basicConstraints = critical,CA:TRUE\n\
                 keyUsage = critical,keyCertSign,cRLSign\n\
                 subjectKeyIdentifier = hash\n"
            ),
        )?;
        let ca = Ca {
            dir: dir.to_path_buf(),
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
        };
        gen_key(dir, &ca.key)?;
        let csr = dir.join("ca.csr");
        make_csr(dir, &ca.key, name, &csr)?;
        let cnf = dir.join("ca.cnf");
        let (start, end) = (openssl_time(now - 60 * DAY), openssl_time(now + 90 * DAY));
        openssl(
            dir,
            &[
                "ca".as_ref(),
                "-batch".as_ref(),
                "-config".as_ref(),
                cnf.as_os_str(),
                "-selfsign".as_ref(),
                "-keyfile".as_ref(),
                ca.key.as_os_str(),
                "-in".as_ref(),
                csr.as_os_str(),
                "-out".as_ref(),
                ca.cert.as_os_str(),
                "-startdate".as_ref(),
                start.as_ref(),
                "-enddate".as_ref(),
                end.as_ref(),
                "-extensions".as_ref(),
                "ext_ca".as_ref(),
                "-notext".as_ref(),
                "-rand_serial".as_ref(),
            ],
        )?;
        Ok(ca)
    }

    /// Key and certificate `<out>/<name>.key`, `<out>/<name>.pem` for
    /// `san`, valid over `(not_before, not_after)` (Unix seconds).
    fn issue(
        &self,
        out: &Path,
        name: &str,
        san: &str,
        (not_before, not_after): (i64, i64),
    ) -> Result<(PathBuf, PathBuf), String> {
        let key = out.join(format!("{name}.key"));
        let cert = out.join(format!("{name}.pem"));
        let csr = self.dir.join(format!("{name}.csr"));
        let ext = self.dir.join(format!("{name}.ext"));
        write(
            &ext,
            &format!(
                "[ ext ]\n\
                 basicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\n\
                 extendedKeyUsage = serverAuth, clientAuth\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid:always\n\
                 subjectAltName = {san}\n"
            ),
        )?;
        gen_key(out, &key)?;
        make_csr(out, &key, first_name(san), &csr)?;
        let cnf = self.dir.join("ca.cnf");
        let (start, end) = (openssl_time(not_before), openssl_time(not_after));
        openssl(
            &self.dir,
            &[
                "ca".as_ref(),
                "-batch".as_ref(),
                "-config".as_ref(),
                cnf.as_os_str(),
                "-cert".as_ref(),
                self.cert.as_os_str(),
                "-keyfile".as_ref(),
                self.key.as_os_str(),
                "-in".as_ref(),
                csr.as_os_str(),
                "-out".as_ref(),
                cert.as_os_str(),
                "-startdate".as_ref(),
                start.as_ref(),
                "-enddate".as_ref(),
                end.as_ref(),
                "-extfile".as_ref(),
                ext.as_os_str(),
                "-extensions".as_ref(),
                "ext".as_ref(),
                "-notext".as_ref(),
                "-rand_serial".as_ref(),
            ],
        )?;
        Ok((cert, key))
    }
}

fn self_signed(out: &Path, name: &str, san: &str) -> Result<(PathBuf, PathBuf), String> {
    let key = out.join(format!("{name}.key"));
    let cert = out.join(format!("{name}.pem"));
    gen_key(out, &key)?;
    let subject = format!("/CN={}", first_name(san));
    let san_ext = format!("subjectAltName={san}");
    openssl(
        out,
        &[
            "req".as_ref(),
            "-x509".as_ref(),
            "-new".as_ref(),
            "-key".as_ref(),
            key.as_os_str(),
            "-subj".as_ref(),
            subject.as_ref(),
            "-days".as_ref(),
            "30".as_ref(),
            "-sha256".as_ref(),
            "-addext".as_ref(),
            "basicConstraints=critical,CA:FALSE".as_ref(),
            "-addext".as_ref(),
            "keyUsage=critical,digitalSignature".as_ref(),
            "-addext".as_ref(),
            "extendedKeyUsage=serverAuth".as_ref(),
            "-addext".as_ref(),
            san_ext.as_ref(),
            "-out".as_ref(),
            cert.as_os_str(),
        ],
    )?;
    Ok((cert, key))
}

fn gen_key(dir: &Path, key: &Path) -> Result<(), String> {
    openssl(
        dir,
        &[
            "genpkey".as_ref(),
            "-algorithm".as_ref(),
            "EC".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:P-256".as_ref(),
            "-out".as_ref(),
            key.as_os_str(),
        ],
    )?;
    fs::set_permissions(key, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", key.display()))
}

fn make_csr(dir: &Path, key: &Path, cn: &str, csr: &Path) -> Result<(), String> {
    let subject = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req".as_ref(),
            "-new".as_ref(),
            "-key".as_ref(),
            key.as_os_str(),
            "-subj".as_ref(),
            subject.as_ref(),
            "-out".as_ref(),
            csr.as_os_str(),
        ],
    )
}

/// Run `openssl ARGS` in `dir`; the error carries its output.
fn openssl(dir: &Path, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        // Do not let a user's or the system's openssl.cnf interfere.
        .env("OPENSSL_CONF", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "the `openssl` command is not installed; run scripts/test.sh, which \
                 installs it, or: apt-get install openssl"
                    .to_string()
            } else {
                format!("cannot run openssl: {e}")
            }
        })?;
    if out.status.success() {
        Ok(())
    } else {
        let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        Err(format!(
            "`openssl {}` failed ({}):\n{}{}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Unix seconds as `YYYYMMDDHHMMSSZ` (UTC), the form `openssl ca
/// -startdate/-enddate` takes.
/// The path of the shared test CA's certificate, for `--tls-ca-file`.
pub fn ca() -> String {
    TestPki::shared().ca_cert().display().to_string()
}

/// `localhost:PORT` for `127.0.0.1:PORT`: the name the test certificates carry.
pub fn by_name(addr: &str) -> String {
    let port = addr.rsplit(':').next().unwrap_or_default();
    format!("localhost:{port}")
}

pub fn openssl_time(unix: i64) -> String {
    let days = unix.div_euclid(DAY);
    let secs = unix.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 -> (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Remove `outbox-pki-<pid>-*` directories left by test processes that
/// were killed (their pid is gone).
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("outbox-pki-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

/// Remove the shared PKI's directory when the process exits normally
/// (statics are never dropped).
fn register_cleanup() {
    extern "C" fn cleanup() {
        if let Some(Ok(pki)) = SHARED.get() {
            let _ = fs::remove_dir_all(pki.dir());
        }
    }
    // SAFETY: `atexit` from the C library, given a plain function that
    // only touches a `static`.
    unsafe {
        atexit(cleanup);
    }
}
