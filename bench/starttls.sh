#!/usr/bin/env bash
# Wall time of one message over STARTTLS to the test suite's private Postfix (with its
# test CA), beside the same in clear and curl --ssl-reqd: medians of 50 runs.
# Usage: bench/starttls.sh   (needs what scripts/setup.sh --test installs)
#
# SSL_CERT_FILE and friends are unset, as on a stock Debian: when SSL_CERT_FILE is set,
# OpenSSL (for outbox and curl alike) parses the whole CA bundle it names on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
env -u SSL_CERT_FILE -u SSL_CERT_DIR -u CURL_CA_BUNDLE \
    cargo test --release --test integration bench_ -- --ignored --nocapture --test-threads 1 2>&1 |
    grep -E '^(one message|  )'
