#!/usr/bin/env bash
# Wall time of one small message per process against Postfix's smtp-sink on loopback,
# outbox beside curl, msmtp, swaks and s-nail (those installed), medians and ratios.
# Usage: bench/small-message.sh [RUNS]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}

. bench/common.sh
build_outbox
port=$(free_port)
start_sink "$port"

msg=$(mktemp)
printf 'From: a@example.test\r\nTo: b@example.test\r\nSubject: bench\r\n\r\nhello\r\n' >"$msg"

# Prints the median wall time in milliseconds of RUNS runs of the command given.
median_ms() {
  local times=() start end
  for _ in $(seq "$runs"); do
    start=$EPOCHREALTIME
    "$@" >/dev/null 2>&1 </dev/null || { echo "failed: $*" >&2; return 1; }
    end=$EPOCHREALTIME
    times+=("$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", (e - s) * 1000 }')")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f\n", m}'
}

declare -A result
result[outbox]=$(median_ms "$outbox" --server 127.0.0.1:"$port" -f a@example.test -s bench --body hello b@example.test)
if command -v curl >/dev/null; then
  result[curl]=$(median_ms curl -s smtp://127.0.0.1:"$port" --mail-from a@example.test --mail-rcpt b@example.test -T "$msg")
fi
if command -v msmtp >/dev/null; then
  result[msmtp]=$(median_ms sh -c "msmtp --host=127.0.0.1 --port=$port --from=a@example.test b@example.test <'$msg'")
fi
if command -v swaks >/dev/null; then
  result[swaks]=$(median_ms swaks --server 127.0.0.1 --port "$port" --from a@example.test --to b@example.test --data "$msg")
fi
if command -v s-nail >/dev/null; then
  result[s-nail]=$(median_ms sh -c "printf 'hello\n' | s-nail -n -# -S v15-compat -S nosave -S smtp-auth=none -S mta=smtp://127.0.0.1:$port -r a@example.test -s bench b@example.test")
fi
rm -f "$msg"

echo "one small message, one process, median of $runs runs (smtp-sink on 127.0.0.1:$port):"
printf '  %-7s %8.2f ms\n' outbox "${result[outbox]}"
for tool in curl msmtp swaks s-nail; do
  [ -n "${result[$tool]:-}" ] || continue
  ratio=$(awk -v a="${result[outbox]}" -v b="${result[$tool]}" 'BEGIN { print a / b }')
  printf '  %-7s %8.2f ms   outbox/%s = %.2f\n' "$tool" "${result[$tool]}" "$tool" "$ratio"
done
