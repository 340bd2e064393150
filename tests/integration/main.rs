//! Integration tests for `outbox`.
//!
//! This is the single integration-test binary of the crate (cargo discovers
//! `tests/integration/main.rs` on its own). Shared helpers live in
//! [`support`]; every other module is a group of tests. To add a group,
//! create `tests/integration/<name>.rs` and declare it below with `mod <name>;`.
//!
//! Tests that need a mail server use the private Postfix instance from
//! [`support::postfix`]; see that module for what the server accepts and how
//! to read delivered mail back.

mod support;

mod compose;
mod errors;
mod postfix_smoke;
mod support_selftest;
