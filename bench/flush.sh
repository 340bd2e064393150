#!/usr/bin/env bash
# `outbox queue flush` of N queued small messages (default 1000) over one connection to
# smtp-sink, beside Postfix's own load generator `smtp-source -m N -s 1 -d` against the
# same sink: messages per second for each, and the ratio.
# Usage: bench/flush.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
. bench/common.sh
build_outbox
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$(free_port)
printf '[default]\nserver = "127.0.0.1:%s"\nfrom = "bench@example.test"\n' "$port" >"$work/config.toml"
export OUTBOX_CONFIG=$work/config.toml OUTBOX_QUEUE_DIR=$work/queue

# The sink is not up yet: every message is queued (the sendmail face exits 0).
for i in $(seq "$n"); do
    printf 'Subject: flush %s\n\nbody %s\n' "$i" "$i" | "$outbox" sendmail rcpt@example.test
done
queued=$(find "$OUTBOX_QUEUE_DIR" -mindepth 1 -maxdepth 1 -name '1*' | wc -l)

start_sink "$port"

start=$EPOCHREALTIME
"$outbox" queue flush
end=$EPOCHREALTIME
left=$(find "$OUTBOX_QUEUE_DIR" -mindepth 1 -maxdepth 1 -name '1*' | wc -l)

sstart=$EPOCHREALTIME
smtp-source -m "$n" -s 1 -d 127.0.0.1:"$port"
send=$EPOCHREALTIME

awk -v n="$n" -v q="$queued" -v l="$left" -v a="$start" -v b="$end" -v c="$sstart" -v d="$send" 'BEGIN {
    ours = n / (b - a); theirs = n / (d - c)
    printf "queued %d, left after flush %d\n", q, l
    printf "outbox queue flush   %8.0f messages/s  (%.2f s for %d)\n", ours, b - a, n
    printf "smtp-source -s 1 -d  %8.0f messages/s  (%.2f s for %d)\n", theirs, d - c, n
    printf "outbox/smtp-source = %.2f\n", ours / theirs
}'
