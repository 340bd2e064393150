#!/usr/bin/env bash
# How many times outbox waits for the server in one session after its greeting,
# counted from the system calls on its socket (strace): every run of reads that
# follows a write is one wait, and so is a read that begins with a 221 on its own (a
# wait for the reply to QUIT). Two servers, both offering PIPELINING but not CHUNKING:
#
#   smtp-sink, which answers the dot and QUIT in one segment;
#   a small server here that, like Exim, holds its 221 for 200 ms in case the client
#   closes first; a client that waits for the 221 spends those 200 ms.
#
# The goal is 3 with both: EHLO, the envelope group, the end of data (QUIT leaves with
# the message and its reply is not awaited). With CHUNKING it is 2; the scripted-peer
# test pipelining_and_chunking_send_envelope_bdat_message_and_quit_in_one_write
# counts that.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v strace >/dev/null || apt-get install -y -q strace >/dev/null
. bench/common.sh
build_outbox
port=$(free_port)
start_sink "$port"
work=$(mktemp -d)

# The server that holds its 221: one connection, then it exits.
cat >"$work/holding.py" <<'PY'
import socket, sys, time
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(1)
print("ready", flush=True)
conn, _ = listener.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
reader = conn.makefile("rb")
conn.sendall(b"220 holding.example.test ESMTP\r\n")
in_data = False
for line in reader:
    if in_data:
        if line == b".\r\n":
            in_data = False
            conn.sendall(b"250 2.0.0 queued\r\n")
        continue
    verb = line[:4].upper()
    if verb == b"EHLO":
        conn.sendall(b"250-holding.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
    elif verb == b"DATA":
        in_data = True
        conn.sendall(b"354 go ahead\r\n")
    elif verb == b"QUIT":
        conn.settimeout(0.2)
        try:
            closed = conn.recv(1) == b""
        except socket.timeout:
            closed = False
        if not closed:
            conn.sendall(b"221 2.0.0 bye\r\n")
        break
    else:
        conn.sendall(b"250 ok\r\n")
conn.close()
PY

count_waits() {
  python3 - "$1" <<'PY'
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
print(f"{waits + quit_waits} ({quit_waits} of them for the reply to QUIT)", end="")
PY
}

session() {
  strace -f -s 16 -e trace=connect,sendto,recvfrom,read,write -o "$work/trace" \
      "$outbox" --server 127.0.0.1:"$1" -f a@example.test --body hello b@example.test
}

session "$port"
echo "smtp-sink: waits after the greeting: $(count_waits "$work/trace")"

hport=$(free_port)
python3 "$work/holding.py" "$hport" >"$work/ready" &
holding=$!
for _ in $(seq 50); do grep -q ready "$work/ready" 2>/dev/null && break; sleep 0.1; done
start=$(date +%s%N)
session "$hport"
took=$(( ($(date +%s%N) - start) / 1000000 ))
wait "$holding"
echo "a server holding its 221 for 200 ms: waits after the greeting: $(count_waits "$work/trace"); session ${took} ms under strace"
