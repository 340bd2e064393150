#!/usr/bin/env bash
# System mode end to end: N small messages (default 1000) submitted by P concurrent
# processes (default 10), each running the system's `sendmail -t -i` N/P times as an
# unprivileged user (nobody), delivered into one smtp-sink on loopback, for three
# systems in turn, each started fresh on private directories for every round:
#
#   postfix     Postfix as a null client: a private instance made from a copy of
#               /etc/postfix (its own queue and data directories, no listener, no local
#               delivery, `relayhost = [127.0.0.1]:SINK`), started with `postfix -c DIR
#               start`; submitted through its `sendmail -C DIR` and the setgid postdrop
#               as installed. A setgid program accepts another configuration directory
#               only if the default main.cf lists it, so the submitters run in a private
#               mount namespace where the instance's own directory is bind-mounted over
#               /etc/postfix (the system's Postfix is not touched);
#   nullmailer  a private copy extracted from its Debian package (it conflicts with
#               postfix, so it is never installed): its paths are compiled in, but
#               NULLMAILER_TEST_PREFIX=DIR moves them all under DIR (bin/, sbin/,
#               protocols/, conf/, queue/), and is ignored by a set-uid program, so the
#               copy's nullmailer-queue loses its set-uid bit and the queue belongs to
#               the submitting user; nullmailer-send runs as that user too;
#   outbox      system mode: `outbox system setup` with every path private and a
#               service user made for the run (or, where this build has no `system`
#               command, the same layout made by hand), `outbox serve` started as root
#               (it switches to the spool's owner) with OUTBOX_LOG=none, and the
#               submitters `outbox sendmail -t -i` with OUTBOX_SPOOL set, OUTBOX_CONFIG
#               unset and an empty HOME.
#
# Each message carries `X-Bench-Dropped: <epoch µs>`, taken just before its sendmail
# runs; smtp-sink (`-d`) writes each message to its own file, whose mtime is the end of
# DATA, i.e. the server's 250. Per system and round: messages per second from the first
# drop to the last arrival, the median and 90th percentile of arrival minus drop, and
# how long the submitters took until their last sendmail returned (what callers wait).
# Before the timed batch one warm-up message goes through each system, so every
# daemon is up and has met the sink once. The table gives the medians over the rounds
# (systems taken in a rotating order) and outbox's ratios to the other two; the goals
# are at least 2x Postfix's rate, at least nullmailer's, and a median under 20 ms.
#
# Runs as root (private Postfix, users, mount namespace). Needs postfix (smtp-sink),
# util-linux (unshare, setpriv) and python3; the nullmailer .deb is fetched with
# `apt-get download` into $BENCH_CACHE (default ~/.cache/outbox-bench).
# BENCH_SYSTEMS (default "postfix nullmailer outbox") picks the systems; BENCH_TIMEOUT
# (default 300) is how many seconds a batch may take before the bench fails;
# BENCH_KEEP=1 keeps each run's directories (the sink's messages, the logs).
# Usage: bench/system.sh [N] [P] [R]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
procs=${2:-10}
rounds=${3:-3}
systems=${BENCH_SYSTEMS:-postfix nullmailer outbox}
timeout=${BENCH_TIMEOUT:-300}
cache=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outbox-bench}
submitter_uid=65534
submitter_gid=65534

die() { echo "bench/system.sh: $*" >&2; exit 1; }
# Whether process PID still runs (a zombie does not).
alive() { local state; state=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${state:0:1}" != Z ]; }
[ "$(id -u)" = 0 ] || die "must run as root (private Postfix, a service user, a mount namespace)"
[ "$n" -ge "$procs" ] && [ "$procs" -ge 1 ] || die "N ($n) must be at least P ($procs), and P at least 1"

missing=()
command -v postfix >/dev/null || missing+=(postfix)
command -v setpriv >/dev/null && command -v unshare >/dev/null || missing+=(util-linux)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
. bench/common.sh
build_outbox
case " $systems " in
  *" outbox "*) "$outbox" serve --help 2>/dev/null | grep -q -i serve || die "this build of outbox has no \`serve\` command" ;;
esac

work=$(mktemp -d)
# The submitters (nobody) and the services' users must reach their directories below.
chmod 755 "$work"
submitters=() sink='' daemon='' pf_etc='' nm_send='' ob_serve='' svc_user='' svc_created=''

stop_sink() {
  if [ -n "$sink" ]; then kill "$sink" 2>/dev/null || true; wait "$sink" 2>/dev/null || true; sink=''; fi
}

stop_postfix() {
  [ -n "$pf_etc" ] || return 0
  local pid_file master
  pid_file=$(postconf -c "$pf_etc" -h queue_directory)/pid/master.pid
  master=$(tr -dc 0-9 <"$pid_file" 2>/dev/null || true)
  postfix -c "$pf_etc" stop >/dev/null 2>&1 || true
  # `postfix stop` signals master; its children leave with it, within seconds.
  if [ -n "$master" ]; then
    for _ in $(seq 100); do alive "$master" || break; sleep 0.1; done
    kill -KILL -- "-$master" 2>/dev/null || true
  fi
  pf_etc=''
}

stop_nullmailer() {
  if [ -n "$nm_send" ]; then kill "$nm_send" 2>/dev/null || true; wait "$nm_send" 2>/dev/null || true; nm_send=''; fi
}

stop_outbox() {
  if [ -n "$ob_serve" ]; then
    kill -TERM "$ob_serve" 2>/dev/null || true
    for _ in $(seq 100); do alive "$ob_serve" || break; sleep 0.1; done
    kill -KILL "$ob_serve" 2>/dev/null || true
    wait "$ob_serve" 2>/dev/null || true
    ob_serve=''
  fi
}

cleanup() {
  [ ${#submitters[@]} -eq 0 ] || kill "${submitters[@]}" 2>/dev/null || true
  stop_postfix
  stop_nullmailer
  stop_outbox
  stop_sink
  if [ -n "$svc_created" ] && getent passwd "$svc_user" >/dev/null; then
    userdel "$svc_user" >/dev/null 2>&1 || true
    getent group "$svc_user" >/dev/null && groupdel "$svc_user" >/dev/null 2>&1 || true
  fi
  if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a fresh smtp-sink (as nobody) writing each message to its own file in $1.
start_dump_sink() {
  local dump=$1
  mkdir -p "$dump"
  chown nobody "$dump"
  sink_port=$(free_port)
  smtp-sink -u nobody -d "$dump/m." 127.0.0.1:"$sink_port" 256 >/dev/null 2>&1 &
  sink=$!
  for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$sink_port") 2>/dev/null && return
    sleep 0.1
  done
  die "smtp-sink did not come up on port $sink_port"
}

# --- Postfix as a null client ----------------------------------------------------------

start_postfix() {
  local dir=$work/postfix
  mkdir -p "$dir"
  cp -a /etc/postfix "$dir/etc"
  rm -f "$dir/etc/main.cf"
  cat >"$dir/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
meta_directory = $dir/etc
alternate_config_directories = $dir/etc
myhostname = client.bench.test
myorigin = \$myhostname
mydestination =
relayhost = [127.0.0.1]:$sink_port
inet_interfaces = loopback-only
inet_protocols = ipv4
local_transport = error:local delivery is disabled on this null client
alias_maps =
alias_database =
smtp_dns_support_level = disabled
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
biff = no
EOF
  # The installed master.cf without its smtpd listener (a null client takes no mail
  # from the network) and without chroot (this instance has no chroot to run in).
  awk '
    /^[^#[:space:]]/ { skip = ($1 == "smtp" && $2 == "inet"); if (!skip && NF >= 8) $5 = "n" }
    /^[[:space:]]/ && skip { next }
    !skip { print }
  ' /etc/postfix/master.cf >"$dir/etc/master.cf"
  install -d -o root -m 755 "$dir/queue" "$dir/queue/pid"
  for s in active bounce corrupt defer deferred flush hold incoming private saved trace; do
    install -d -o postfix -m 700 "$dir/queue/$s"
  done
  install -d -o postfix -g postdrop -m 730 "$dir/queue/maildrop"
  install -d -o postfix -g postdrop -m 710 "$dir/queue/public"
  install -d -o postfix -m 700 "$dir/data"
  install -o root -m 644 /dev/null "$dir/maillog"
  postfix -c "$dir/etc" start >"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; die "Postfix did not start"; }
  pf_etc=$dir/etc
  daemon=$(tr -dc 0-9 <"$dir/queue/pid/master.pid")
  # The submitters' view: this instance's configuration as the default one.
  submit_prefix=(unshare -m --propagation private sh -c 'mount --bind "$0" /etc/postfix && exec "$@"' "$dir/etc")
  submit_cmd="/usr/sbin/sendmail -C $dir/etc -t -i"
  submit_env=()
  sys_log=$dir/maillog
}

# --- nullmailer ----------------------------------------------------------------------

nullmailer_root=''
extract_nullmailer() {
  [ -n "$nullmailer_root" ] && return
  mkdir -p "$cache"
  local deb
  deb=$(find "$cache" -maxdepth 1 -name 'nullmailer_*.deb' | sort | tail -n 1)
  if [ -z "$deb" ]; then
    (cd "$cache" && { apt-get download -q nullmailer >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get download -q nullmailer >/dev/null; }; }) \
      || die "cannot download the nullmailer package into $cache"
    deb=$(find "$cache" -maxdepth 1 -name 'nullmailer_*.deb' | sort | tail -n 1)
  fi
  nullmailer_root=$work/nullmailer-root
  dpkg -x "$deb" "$nullmailer_root"
  # NULLMAILER_TEST_PREFIX is ignored when the real and effective uids differ.
  chmod u-s "$nullmailer_root/usr/sbin/nullmailer-queue" "$nullmailer_root/usr/bin/mailq"
  nullmailer_version=$(dpkg-deb -f "$deb" Version)
}

start_nullmailer() {
  extract_nullmailer
  local dir=$work/nullmailer
  mkdir -p "$dir/conf" "$dir/queue/queue" "$dir/queue/tmp" "$dir/queue/failed"
  ln -s "$nullmailer_root/usr/bin" "$dir/bin"
  ln -s "$nullmailer_root/usr/sbin" "$dir/sbin"
  ln -s "$nullmailer_root/usr/lib/nullmailer" "$dir/protocols"
  mkfifo "$dir/queue/trigger"
  echo "127.0.0.1 smtp --port=$sink_port" >"$dir/conf/remotes"
  # Debian's build reads the host name from the mailname file beside conf/.
  echo client.bench.test >"$dir/mailname"
  echo client.bench.test >"$dir/conf/defaulthost"
  echo client.bench.test >"$dir/conf/helohost"
  chown -R "$submitter_uid:$submitter_gid" "$dir/queue"
  setpriv --reuid=$submitter_uid --regid=$submitter_gid --clear-groups \
    env -i PATH=/usr/bin:/bin NULLMAILER_TEST_PREFIX="$dir" "$dir/sbin/nullmailer-send" >"$dir/send.log" 2>&1 &
  nm_send=$!
  daemon=$nm_send
  submit_prefix=()
  submit_cmd="$dir/sbin/sendmail -t -i"
  submit_env=(NULLMAILER_TEST_PREFIX="$dir")
  sys_log=$dir/send.log
}

# --- outbox in system mode -----------------------------------------------------------

start_outbox() {
  local dir=$work/outbox
  local spool=$dir/spool config=$dir/config.toml
  mkdir -p "$dir/units" "$dir/home"
  if [ -z "$svc_user" ]; then
    svc_user=obench$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
    getent passwd "$svc_user" >/dev/null || svc_created=yes
  fi
  printf '[default]\nserver = "127.0.0.1:%s"\n' "$sink_port" >"$config"
  # (An older build takes `system` for a recipient and prints its general help.)
  if "$outbox" system setup --help 2>/dev/null | grep -q -e --unit-dir; then
    "$outbox" system setup --spool "$spool" --user "$svc_user" --config "$config" \
      --unit-dir "$dir/units" --no-links --no-start >"$dir/setup.log" 2>&1 \
      || { cat "$dir/setup.log" >&2; die "outbox system setup failed"; }
  else
    # The layout `system setup` makes, for a build that has no `system` command.
    getent passwd "$svc_user" >/dev/null || useradd --system --user-group --home-dir "$spool" \
      --no-create-home --shell /usr/sbin/nologin "$svc_user"
    install -d -o "$svc_user" -g "$svc_user" -m 755 "$spool" "$spool/users"
    install -d -o "$svc_user" -g "$svc_user" -m 3733 "$spool/maildrop"
    install -d -o "$svc_user" -g "$svc_user" -m 700 "$spool/incoming" "$spool/bad" "$spool/queue"
    chown "$svc_user:$svc_user" "$config"
    chmod 600 "$config"
  fi
  OUTBOX_SPOOL=$spool OUTBOX_CONFIG=$config OUTBOX_LOG=none "$outbox" serve >"$dir/serve.log" 2>&1 &
  ob_serve=$!
  daemon=$ob_serve
  submit_prefix=()
  submit_cmd="$outbox sendmail -t -i"
  submit_env=(OUTBOX_SPOOL="$spool" HOME="$dir/home")
  sys_log=$dir/serve.log
}

stop_system() {
  case $1 in
    postfix) stop_postfix ;;
    nullmailer) stop_nullmailer ;;
    outbox) stop_outbox ;;
  esac
}

# The loop one submitter runs (as nobody): COUNT messages, each stamped (in the header
# field named STAMP) just before its sendmail starts; the first failure stops it with
# sendmail's status.
# shellcheck disable=SC2016
submit_loop='
  system=$1 proc=$2 count=$3 stamp=$4; shift 4
  for i in $(seq "$count"); do
    now=${EPOCHREALTIME/./}
    printf "From: bench@example.test\nTo: rcpt@example.test\nSubject: %s %s %s\n%s: %s\n\nmessage %s of submitter %s\n" \
      "$system" "$proc" "$i" "$stamp" "$now" "$i" "$proc" | "$@" || exit
  done
'

# Submits N messages from P processes as nobody, or with "yes" one warm-up message.
submit() {
  local system=$1 warmup=$2 p count stamp=X-Bench-Dropped
  submitters=()
  for p in $(seq "$procs"); do
    if [ "$warmup" = yes ]; then
      [ "$p" = 1 ] || break
      count=1 stamp=X-Bench-Warmup
    else
      count=$((n / procs + (p <= n % procs ? 1 : 0)))
    fi
    "${submit_prefix[@]}" setpriv --reuid=$submitter_uid --regid=$submitter_gid --clear-groups \
      env -i PATH=/usr/sbin:/usr/bin:/bin "${submit_env[@]}" \
      bash -c "$submit_loop" submitter "$system" "$p" "$count" "$stamp" $submit_cmd \
      >>"$work/submit.log" 2>&1 &
    submitters+=($!)
  done
  for p in "${submitters[@]}"; do
    wait "$p" || { tail -n 20 "$work/submit.log" >&2; die "$system: a sendmail failed"; }
  done
}

# Waits until DIR holds COUNT messages, or fails the bench after $timeout seconds.
await() {
  local system=$1 dir=$2 want=$3 deadline=$((SECONDS + timeout)) have
  while :; do
    have=$(find "$dir" -type f | wc -l)
    [ "$have" -ge "$want" ] && return
    if [ "$SECONDS" -ge "$deadline" ] || ! alive "$daemon"; then
      echo "--- $system: last lines of $sys_log ---" >&2
      tail -n 20 "$sys_log" >&2 || true
      alive "$daemon" || die "$system: its daemon (pid $daemon) stopped; $have of $want messages reached the sink"
      die "$system: $have of $want messages reached the sink within ${timeout} s"
    fi
    sleep 0.05
  done
}

# Prints "rate median_ms p90_ms" for the stamped messages in DIR, and fails unless
# there are exactly N of them (a message lost or sent twice).
measure() {
  python3 - "$1" "$n" <<'EOF'
import os, sys

dump, want = sys.argv[1], int(sys.argv[2])
drops, arrivals, latencies = [], [], []
for name in os.listdir(dump):
    path = os.path.join(dump, name)
    arrived = os.stat(path).st_mtime_ns
    stamp = None
    with open(path, "rb") as f:
        for line in f:
            if line.strip() == b"":
                break
            if line.startswith(b"X-Bench-Dropped:"):
                stamp = int(line.split()[1]) * 1000
    if stamp is None:
        continue  # the warm-up message
    drops.append(stamp)
    arrivals.append(arrived)
    latencies.append((arrived - stamp) / 1e6)
if len(latencies) != want:
    sys.exit(f"{len(latencies)} stamped messages arrived, {want} were sent")
latencies.sort()
span = (max(arrivals) - min(drops)) / 1e9
rate = want / span
median = latencies[(want - 1) // 2] if want % 2 else (latencies[want // 2 - 1] + latencies[want // 2]) / 2
p90 = latencies[-(-9 * want // 10) - 1]
print(f"{rate:.1f} {median:.2f} {p90:.2f}")
EOF
}

# One fresh run of SYSTEM; appends "rate median p90" to the system's results.
run_one() {
  local system=$1 round=$2 dump=$work/dump-$1-$2 result
  start_dump_sink "$dump"
  "start_$system"
  : >"$work/submit.log"
  submit "$system" yes
  await "$system" "$dump" 1
  local start=$EPOCHREALTIME end
  submit "$system" no
  end=$EPOCHREALTIME
  await "$system" "$dump" $((n + 1))
  stop_system "$system"
  stop_sink
  result=$(measure "$dump") || die "$system, round $round: the sink's messages do not add up"
  result+=" $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')"
  results[$system]+="$result"$'\n'
  read -r rate median p90 submitted <<<"$result"
  printf '  round %d %-10s %8.1f msg/s  median %8.2f ms  p90 %8.2f ms  (sendmails done in %.2f s)\n' \
    "$round" "$system" "$rate" "$median" "$p90" "$submitted"
  if [ -n "${BENCH_KEEP:-}" ]; then
    mkdir -p "$work/kept"
    mv "$dump" "$work/kept/"
    for d in postfix nullmailer outbox; do
      if [ -e "$work/$d" ]; then mv "$work/$d" "$work/kept/$d-$round"; fi
    done
  else
    rm -rf "$dump" "$work/postfix" "$work/nullmailer" "$work/outbox"
  fi
}

# The arrival times are file mtimes: say so if this kernel keeps them only to its tick
# (as before multigrain timestamps), which rounds each arrival down by up to a tick.
python3 - "$work" <<'EOF'
import os, sys, time
# Written first and looked at afterwards, as the sink's files are.
paths = [os.path.join(sys.argv[1], f"clock.{i}") for i in range(20)]
for path in paths:
    with open(path, "w") as f:
        f.write("x")
    time.sleep(0.0002)
times = {os.stat(path).st_mtime_ns for path in paths}
for path in paths:
    os.unlink(path)
if len(times) < 20:
    print(f"note: file times here are coarse ({len(times)} distinct of 20 writes 0.2 ms apart);"
          " drop-to-250 times are rounded down to the kernel's tick", file=sys.stderr)
EOF

declare -A results
read -r -a order <<<"$systems"
echo "$n messages from $procs processes as nobody (sendmail -t -i), $rounds rounds, into smtp-sink:"
for round in $(seq "$rounds"); do
  # A rotating order, so no system always runs first or last.
  k=$(((round - 1) % ${#order[@]}))
  for system in "${order[@]:k}" "${order[@]:0:k}"; do
    run_one "$system" "$round"
  done
done

median_of() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A rate med p90 sub
echo
printf 'median of %d rounds:\n' "$rounds"
printf '  %-22s %10s %11s %9s %12s\n' system msg/s "median ms" "p90 ms" "sendmails s"
for system in "${order[@]}"; do
  rate[$system]=$(printf '%s' "${results[$system]}" | awk '{ print $1 }' | median_of)
  med[$system]=$(printf '%s' "${results[$system]}" | awk '{ print $2 }' | median_of)
  p90[$system]=$(printf '%s' "${results[$system]}" | awk '{ print $3 }' | median_of)
  sub[$system]=$(printf '%s' "${results[$system]}" | awk '{ print $4 }' | median_of)
  case $system in
    postfix) label="postfix $(postconf -d -h mail_version)" ;;
    nullmailer) label="nullmailer $nullmailer_version" ;;
    outbox) label="outbox serve" ;;
  esac
  printf '  %-22s %10.1f %11.2f %9.2f %12.2f\n' "$label" "${rate[$system]}" "${med[$system]}" "${p90[$system]}" "${sub[$system]}"
done
if [ -n "${rate[outbox]:-}" ]; then
  for peer in postfix nullmailer; do
    [ -n "${rate[$peer]:-}" ] || continue
    awk -v p="$peer" -v ar="${rate[outbox]}" -v br="${rate[$peer]}" -v am="${med[outbox]}" -v bm="${med[$peer]}" 'BEGIN {
      printf "  outbox/%s: rate %.2f x, median %.2f x\n", p, ar / br, am / bm
    }'
  done
  awk -v o="${rate[outbox]}" -v p="${rate[postfix]:-0}" -v m="${rate[nullmailer]:-0}" -v d="${med[outbox]}" 'BEGIN {
    printf "  goals: rate >= 2 x postfix %s, >= nullmailer %s, median < 20 ms %s\n",
      p ? (o >= 2 * p ? "met" : "missed") : "n/a", m ? (o >= m ? "met" : "missed") : "n/a", d < 20 ? "met" : "missed"
  }'
fi
