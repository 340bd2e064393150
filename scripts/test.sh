#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run).
#
#   scripts/test.sh [ARGS...]
#
# 1. Installs the Debian packages the tests need, if missing: postfix (the
#    integration tests start a private instance on loopback; no system
#    Postfix is configured or started), python3-aiosmtpd (the AUTH/TLS test
#    server), openssl (the command: test certificates are made at test
#    time), tzdata (the Date tests name zones), libssl-dev, pkg-config. Uses
#    sudo when not root.
# 2. cargo fmt --check, cargo clippy -D warnings, cargo test.
#
# ARGS are passed to `cargo test`, e.g. `scripts/test.sh postfix_smoke` or
# `scripts/test.sh -- --nocapture`.
#
# The integration tests start Postfix as root: run this as root, or as a
# user with passwordless sudo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh --test

echo "==> cargo fmt --all -- --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "==> cargo test --all-targets --no-fail-fast $*"
cargo test --all-targets --no-fail-fast "$@" 2>&1 | tee "$log"

# --all-targets leaves out doctests; run them when there is a library.
if [[ -f src/lib.rs ]]; then
    echo "==> cargo test --doc"
    cargo test --doc 2>&1 | tee -a "$log"
fi

# One closing line for every test binary together.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
