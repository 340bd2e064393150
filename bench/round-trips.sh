#!/usr/bin/env bash
# How many times outbox waits for the server in one session after its greeting,
# counted from the system calls on its socket (strace): every run of reads that
# follows a write is one wait, and so is a read of a 221 on its own (a wait for the
# reply to QUIT, which outbox no longer makes). Against smtp-sink, which offers
# PIPELINING but not CHUNKING, the goal is 3: EHLO, the envelope group, the end of
# data (QUIT leaves with the message and its reply is not awaited). With CHUNKING it
# is 2; the scripted-peer test pipelining_and_chunking_send_envelope_bdat_message_and_quit_in_one_write
# counts that.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v strace >/dev/null || apt-get install -y -q strace >/dev/null
. bench/common.sh
build_outbox
port=$(free_port)
start_sink "$port"
trace=$(mktemp)
strace -f -s 16 -e trace=connect,sendto,recvfrom,read,write -o "$trace" \
    "$outbox" --server 127.0.0.1:"$port" -f a@example.test --body hello b@example.test
python3 - "$trace" <<'PY'
import re, sys
fd = None
greeted = False
waits = 0
quit_waits = 0
last = "write"
for line in open(sys.argv[1]):
    m = re.search(r'connect\((\d+), \{sa_family=AF_INET', line)
    if m:
        fd = m.group(1)
        continue
    m = re.search(r'\b(sendto|recvfrom|read|write)\((\d+),(?: "((?:[^"\\]|\\.)*)")?', line)
    if not m or m.group(2) != fd:
        continue
    kind = "read" if m.group(1) in ("recvfrom", "read") else "write"
    data = m.group(3) or ""
    if kind == "read" and last == "write":
        if greeted:
            waits += 1
        greeted = True
    elif kind == "read" and data.startswith("221"):
        quit_waits += 1
    last = kind
print(f"waits for the server after its greeting, one session (PIPELINING, no CHUNKING): "
      f"{waits + quit_waits} ({quit_waits} of them for the reply to QUIT)")
PY
rm -f "$trace"
