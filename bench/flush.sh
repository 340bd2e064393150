#!/usr/bin/env bash
# `outbox queue flush` of N queued small messages (default 1000) over one connection to
# smtp-sink, beside Postfix's own load generator `smtp-source -m N -s 1 -d` against the
# same sink: messages per second for each (medians of R rounds, default 5, taken in
# turn), and the ratio.
#
# The N messages are queued once, through the sendmail face while no server listens;
# each round flushes a fresh copy of that queue, written back to disk first (`sync`),
# so that every round finds its files as a real queue would have them.
# Usage: bench/flush.sh [N] [R]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
rounds=${2:-5}
. bench/common.sh
build_outbox
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$(free_port)
printf '[default]\nserver = "127.0.0.1:%s"\nfrom = "bench@example.test"\n' "$port" >"$work/config.toml"
export OUTBOX_CONFIG=$work/config.toml

# The sink is not up yet: every message is queued (the sendmail face exits 0).
export OUTBOX_QUEUE_DIR=$work/master
for i in $(seq "$n"); do
    printf 'Subject: flush %s\n\nbody %s\n' "$i" "$i" | "$outbox" sendmail rcpt@example.test
done
queued=$(find "$OUTBOX_QUEUE_DIR" -mindepth 1 -maxdepth 1 -name '1*' | wc -l)

start_sink "$port"

export OUTBOX_QUEUE_DIR=$work/queue
ours=() theirs=() left=0
for _ in $(seq "$rounds"); do
    rm -rf "$OUTBOX_QUEUE_DIR"
    cp -a "$work/master" "$OUTBOX_QUEUE_DIR"
    sync
    start=$EPOCHREALTIME
    "$outbox" queue flush
    end=$EPOCHREALTIME
    ours+=("$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')")
    left=$((left + $(find "$OUTBOX_QUEUE_DIR" -mindepth 1 -maxdepth 1 -name '1*' | wc -l)))

    start=$EPOCHREALTIME
    smtp-source -m "$n" -s 1 -d 127.0.0.1:"$port"
    end=$EPOCHREALTIME
    theirs+=("$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')")
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
a=$(median "${ours[@]}")
b=$(median "${theirs[@]}")
awk -v n="$n" -v q="$queued" -v l="$left" -v r="$rounds" -v a="$a" -v b="$b" 'BEGIN {
    printf "queued %d; left in the queue after the flushes: %d\n", q, l
    printf "median of %d rounds, %d messages over one connection:\n", r, n
    printf "  outbox queue flush   %6.0f messages/s  (%.3f s)\n", n / a, a
    printf "  smtp-source -s 1 -d  %6.0f messages/s  (%.3f s)\n", n / b, b
    printf "  outbox/smtp-source = %.2f\n", b / a
}'
