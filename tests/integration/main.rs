//! Integration tests for `outbox`.
//!
//! This is the single integration-test binary of the crate (cargo discovers
//! `tests/integration/main.rs` on its own). Shared helpers live in
//! [`support`]; every other module is a group of tests. To add a group,
//! create `tests/integration/<name>.rs` and declare it below with `mod <name>;`.
//!
//! Tests that need a mail server use the private Postfix instance from
//! [`support::postfix`]; see that module for what the server accepts and how
//! to read delivered mail back. For TLS, `Postfix::shared_tls()` adds
//! STARTTLS and implicit TLS with certificates from [`support::tls`]; for
//! SMTP AUTH (and TLS variants with AUTH), [`support::aiosmtpd`] starts an
//! aiosmtpd server that records who authenticated with which mechanism.

mod support;

mod bench;
mod big_attachment;
mod bounces;
mod command_line;
mod compose;
mod docs;
mod errors;
mod esmtp;
mod faults;
mod lmtp;
mod log;
mod postfix_smoke;
mod probe;
mod quit_after;
mod report;
mod seed;
mod sendmail;
mod sendmail_headers;
mod session;
mod smtputf8;
mod spool;
mod support_auth_selftest;
mod support_log_selftest;
mod support_selftest;
mod support_system_selftest;
mod support_tls_selftest;
mod system;
mod system_setup;
mod tls_auth;
mod unwritable;
