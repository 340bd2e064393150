#!/usr/bin/env bash
# Installs the Debian packages outbox needs, when they are missing:
#
#   scripts/setup.sh          what the build needs (OpenSSL headers, pkg-config)
#   scripts/setup.sh --test   that, and what the test suite needs (postfix,
#                             python3-aiosmtpd, the openssl command, tzdata
#                             for the time zones the Date tests name, man-db
#                             and zsh to render the man page and load the
#                             completions)
#
# Uses sudo when not root. Postfix is installed without configuring or starting
# a system instance: the tests start private ones on loopback.
set -euo pipefail

packages=(libssl-dev pkg-config)
if [[ ${1:-} == --test ]]; then
    packages+=(postfix python3-aiosmtpd openssl tzdata man-db zsh)
fi

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done
((${#missing[@]} == 0)) && exit 0

echo "==> installing missing packages: ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "error: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi
echo "postfix postfix/main_mailer_type select No configuration" |
    "${as_root[@]}" debconf-set-selections
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
