# Sourced by the bench scripts: builds outbox and gives them a Postfix smtp-sink.
#   build_outbox        cargo build --release; sets $outbox
#   free_port           prints a free loopback port
#   start_sink PORT     starts smtp-sink on 127.0.0.1:PORT (as nobody when root), waits
#                       until it answers; stopped when the script exits (with $work
#                       removed, if the script set it)

command -v smtp-sink >/dev/null || PATH=$PATH:/usr/sbin

build_outbox() {
  cargo build --release -q
  outbox=$PWD/target/release/outbox
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_sink() {
  command -v smtp-sink >/dev/null || { echo "smtp-sink not found: apt-get install postfix" >&2; exit 1; }
  local as_user=()
  if [ "$(id -u)" = 0 ]; then as_user=(-u nobody); fi
  smtp-sink "${as_user[@]}" 127.0.0.1:"$1" 256 >/dev/null 2>&1 &
  sink=$!
  trap 'kill $sink 2>/dev/null; [ -n "${work:-}" ] && rm -rf "$work"' EXIT
  for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return
    sleep 0.1
  done
  echo "smtp-sink did not come up on port $1" >&2
  exit 1
}
