#!/usr/bin/env bash
# How many times outbox waits for the server in one session, counted from the system
# calls on its socket (strace): every run of reads that follows a write (or opens the
# session) is one wait. Against smtp-sink, which offers PIPELINING but not CHUNKING,
# the goal is 4: greeting, EHLO, the envelope group, the end of data with QUIT.
# (With CHUNKING it is 3; the scripted-peer test pipelined_bdat counts that.)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v strace >/dev/null || apt-get install -y -q strace >/dev/null
. bench/common.sh
build_outbox
port=$(free_port)
start_sink "$port"
trace=$(mktemp)
strace -f -e trace=connect,sendto,recvfrom,read,write -o "$trace" \
    "$outbox" --server 127.0.0.1:"$port" -f a@example.test --body hello b@example.test
python3 - "$trace" <<'PY'
import re, sys
fd = None
waits = 0
last = "write"
for line in open(sys.argv[1]):
    m = re.search(r'connect\((\d+), \{sa_family=AF_INET', line)
    if m:
        fd = m.group(1)
        continue
    m = re.search(r'\b(sendto|recvfrom|read|write)\((\d+),', line)
    if not m or m.group(2) != fd:
        continue
    kind = "read" if m.group(1) in ("recvfrom", "read") else "write"
    if kind == "read" and last == "write":
        waits += 1
    last = kind
print(f"waits for the server in one session (PIPELINING, no CHUNKING): {waits}")
PY
rm -f "$trace"
