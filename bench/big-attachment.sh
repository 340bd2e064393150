#!/usr/bin/env bash
# Wall time and peak memory of composing and sending one message with a large attachment
# against Postfix's smtp-sink on loopback: outbox beside `s-nail -a` (installed with
# apt-get when missing and possible), medians of wall time, largest peak RSS, ratios.
# Peak RSS is GNU time's "Maximum resident set size" (%M).
#
# Usage: bench/big-attachment.sh [RUNS] [MB]   (default 5 runs of a 100 MB attachment)
#
# The goal (issue 5, goal 4): outbox's peak RSS <= 16 MiB and its wall time <= 0.5 x
# s-nail's; a larger attachment (e.g. `bench/big-attachment.sh 3 1000`) must not need
# more memory.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
mb=${2:-100}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi
}
# Installs Debian packages if possible; says so and goes on without them if not.
install() {
  echo "==> installing $*" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
    >/dev/null 2>&1 || echo "   (could not install $*)" >&2
}
[ -x /usr/bin/time ] || install time
[ -x /usr/bin/time ] || { echo "GNU time (/usr/bin/time) is needed: apt-get install time" >&2; exit 1; }
command -v s-nail >/dev/null || install s-nail

. bench/common.sh
build_outbox
work=$(mktemp -d)
port=$(free_port)
start_sink "$port"

file=$work/attachment.bin
head -c $((mb * 1000 * 1000)) /dev/urandom >"$file"
echo "Attached." >"$work/body.txt"

# Runs the command RUNS times after one untimed run (which also warms the page cache);
# prints "median-wall-seconds max-rss-KiB".
measure() {
  local out=$work/time.txt walls=() rss=0 r
  "$@" <"$work/body.txt" >/dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }
  for _ in $(seq "$runs"); do
    /usr/bin/time -f '%e %M' -o "$out" "$@" <"$work/body.txt" >/dev/null 2>&1 ||
      { echo "failed: $*" >&2; cat "$out" >&2; return 1; }
    read -r wall r <"$out"
    walls+=("$wall")
    ((r > rss)) && rss=$r
  done
  printf '%s\n' "${walls[@]}" | sort -g |
    awk -v rss="$rss" '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f %d\n", m, rss}'
}

declare -A wall rss
read -r wall[outbox] rss[outbox] < <(measure "$outbox" --server 127.0.0.1:"$port" \
  -f a@example.test -s bench --body Attached. -a "$file" b@example.test)
if command -v s-nail >/dev/null; then
  # -n: no system mail.rc; -#: batch mode; smtp-sink offers AUTH, which is not wanted.
  read -r wall[s-nail] rss[s-nail] < <(measure s-nail -n -# -S v15-compat -S nosave \
    -S mta=smtp://127.0.0.1:"$port" -S smtp-auth=none -S from=a@example.test -S sendwait \
    -a "$file" -s bench b@example.test)
fi

echo "one message with a $mb MB attachment, compose + send, $runs runs (smtp-sink on 127.0.0.1:$port):"
printf '  %-7s %8s   %12s\n' "" "wall" "peak RSS"
for tool in outbox s-nail; do
  [ -n "${wall[$tool]:-}" ] || continue
  printf '  %-7s %7.3fs   %8.1f MiB' "$tool" "${wall[$tool]}" "$(awk -v k="${rss[$tool]}" 'BEGIN { print k / 1024 }')"
  if [ "$tool" != outbox ]; then
    awk -v a="${wall[outbox]}" -v b="${wall[$tool]}" -v c="${rss[outbox]}" -v d="${rss[$tool]}" \
      'BEGIN { printf "   outbox/%s: wall %.2f, RSS %.2f", "'"$tool"'", a / b, c / d }'
  fi
  echo
done
