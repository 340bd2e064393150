#!/usr/bin/env bash
# What the log costs the sendmail face: one small message per process into Postfix's
# smtp-sink, with the log nowhere, in a file and to a syslog socket (a private one, read
# by a small reader), beside msmtp without and with its --logfile. Medians and ratios.
# Usage: bench/log.sh [RUNS]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}

. bench/common.sh
build_outbox
port=$(free_port)
work=$(mktemp -d)
start_sink "$port"

msg="$work/msg"
printf 'From: a@example.test\r\nTo: b@example.test\r\nSubject: bench\r\n\r\nhello\r\n' >"$msg"
printf '[default]\nserver = "127.0.0.1:%s"\nsyslog_socket = "%s/log.sock"\n' "$port" "$work" >"$work/config.toml"
# A syslog daemon's stand-in: reads and drops each datagram.
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    s.recv(65536)
' "$work/log.sock" &
reader=$!
trap 'kill $sink $reader 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ -S "$work/log.sock" ] && break; sleep 0.1; done

# Prints the median wall time in milliseconds of RUNS runs of the shell command given.
median_ms() {
  local times=() start end
  for _ in $(seq "$runs"); do
    start=$EPOCHREALTIME
    sh -c "$1" >/dev/null 2>&1 </dev/null || { echo "failed: $1" >&2; return 1; }
    end=$EPOCHREALTIME
    times+=("$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", (e - s) * 1000 }')")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f\n", m}'
}

send="OUTBOX_CONFIG=$work/config.toml OUTBOX_QUEUE_DIR=$work/queue $outbox sendmail -i -f a@example.test b@example.test <$msg"
declare -A result
result[none]=$(median_ms "OUTBOX_LOG=none $send")
result[file]=$(median_ms "OUTBOX_LOG=$work/outbox.log $send")
result[syslog]=$(median_ms "OUTBOX_LOG=syslog $send")
lines=$(wc -l <"$work/outbox.log")
if command -v msmtp >/dev/null; then
  result[msmtp]=$(median_ms "msmtp --host=127.0.0.1 --port=$port --from=a@example.test b@example.test <$msg")
  result[msmtp-log]=$(median_ms "msmtp --host=127.0.0.1 --port=$port --from=a@example.test --logfile=$work/msmtp.log b@example.test <$msg")
fi

echo "sendmail face, one small message per process, median of $runs runs (smtp-sink on 127.0.0.1:$port):"
for kind in none file syslog; do
  ratio=$(awk -v a="${result[$kind]}" -v b="${result[none]}" 'BEGIN { print a / b }')
  printf '  outbox, log %-7s %8.2f ms   /none = %.3f\n' "$kind" "${result[$kind]}" "$ratio"
done
echo "  ($lines lines in the log file)"
if [ -n "${result[msmtp]:-}" ]; then
  printf '  msmtp              %8.2f ms\n' "${result[msmtp]}"
  ratio=$(awk -v a="${result[msmtp-log]}" -v b="${result[msmtp]}" 'BEGIN { print a / b }')
  printf '  msmtp --logfile    %8.2f ms   /without = %.3f\n' "${result[msmtp-log]}" "$ratio"
  ratio=$(awk -v a="${result[file]}" -v b="${result[msmtp-log]}" 'BEGIN { print a / b }')
  printf '  outbox (file) / msmtp (--logfile) = %.2f\n' "$ratio"
fi
