#!/usr/bin/env bash
# Round trips of one fetch (docs/bench-fetch.md, "Round trips"): mailhaul
# fetches a small spool through the link emulator set to a long round-trip
# time (RTT_MS, default 300) and a fast rate, under strace; every wait of
# the client in poll(2) longer than a third of the RTT after it has sent
# something is a round trip: it waits for the server's answer (local work
# never waits in poll, and on a link this fast the transfer itself adds no
# wait). A wait can be longer than one RTT when the server is slow (the
# script's own run time, under load); it still counts once. Waits with
# nothing sent before them are the server working (a script running after
# it answered the exec request): counted apart, as server_waits.
#
#   bash bench/round-trips.sh                 # as root; MESSAGES=10 RUNS=3
#   MAILHAUL_BIN=/path/to/mailhaul bash bench/round-trips.sh
#   SESSION=open bash bench/round-trips.sh    # over watch's open session
#
# SESSION=open: one `mailhaul watch` (its worker keeps the session open)
# runs under strace; each run appends MESSAGES messages to the spool as an
# MDA would and waits until they are filed. Counted: the waits that began
# after the append and ended before the last message was filed (the
# Maildir file's mtime): "connect -> filed" on a session already open; the
# watcher's report itself is a server wait. wall_s is append -> filed.
#
# Prints one line per run: messages, wall seconds, round trips, bytes up and
# down (the proxy's counters), and the waits themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
RUNS=${RUNS:-3}
RTT_MS=${RTT_MS:-300}
MESSAGES=${MESSAGES:-10}
SESSION=${SESSION:-new}
[ "$(id -u)" -eq 0 ] || { echo "run as root (it starts a private sshd)" >&2; exit 1; }
for tool in /usr/sbin/sshd strace zstd python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install openssh-server strace zstd python3)" >&2; exit 1; }
done
cargo build --release --quiet --bin mailhaul --example link_proxy
mailhaul=${MAILHAUL_BIN:-$repo/target/release/mailhaul}
proxy_bin=$repo/target/release/examples/link_proxy

bench=$(mktemp -d /tmp/mailhaul-rtt-bench.XXXXXX)
chmod 700 "$bench"
sshd_pid=
proxy_pid=
cleanup() {
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  if [ -n "$sshd_pid" ]; then
    kill "$sshd_pid" 2>/dev/null || true
    pkill -P "$sshd_pid" 2>/dev/null || true
  fi
  rm -rf "$bench"
}
trap cleanup EXIT INT TERM

corpus=${MAILHAUL_CORPUS:-$repo/../shared/corpus}
src=$corpus/ham-spamassassin-01.mbox
[ -f "$src" ] || src=assets/sample-spool.mbox
awk -v n="$MESSAGES" '/^From /{ if (++k > n) exit } { print }' "$src" > "$bench/spool.orig"

user=$(id -un)
ssh-keygen -q -t ed25519 -N '' -f "$bench/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$bench/client_key"
cp "$bench/client_key.pub" "$bench/authorized_keys"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sshd_port=$(free_port)
proxy_port=$(free_port)
cat > "$bench/sshd_config" <<CFG
ListenAddress 127.0.0.1
Port $sshd_port
HostKey $bench/host_key
PidFile $bench/sshd.pid
AuthorizedKeysFile $bench/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
CFG
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$bench/sshd_config" 2>"$bench/sshd.log" &
sshd_pid=$!
echo "[127.0.0.1]:$proxy_port $(cut -d' ' -f1,2 "$bench/host_key.pub")" > "$bench/known_hosts"
for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$sshd_port") 2>/dev/null && break; sleep 0.1; done
"$proxy_bin" --listen "127.0.0.1:$proxy_port" --target "127.0.0.1:$sshd_port" \
  --down-bps 1000000000 --up-bps 1000000000 --rtt-ms "$RTT_MS" --stats "$bench/link.stats" > "$bench/proxy.log" &
proxy_pid=$!
for _ in $(seq 50); do grep -q listening "$bench/proxy.log" 2>/dev/null && break; sleep 0.05; done

spool_dir=$bench/spool
mkdir -p "$spool_dir" "$bench/run/Maildir"/{new,cur,tmp}
cat > "$bench/run/config.toml" <<CFG
[general]
maildir = "$bench/run/Maildir"

[filter]
format = "mboxrd"

[[account]]
name = "bench"
host = "127.0.0.1"
port = $proxy_port
user = "$user"
identity_file = "$bench/client_key"
use_agent = false
known_hosts_file = "$bench/known_hosts"
spool = "$spool_dir/$user"
CFG
stat_of() { awk -v k="$1" '$1 == k { print $2 }' "$bench/link.stats"; }
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg); RTT $RTT_MS ms; $MESSAGES message(s)" >&2
printf 'run\tmessages\twall_s\tround_trips\tserver_waits\tup_bytes\tdown_bytes\twaits_ms\n'
if [ "$SESSION" = open ]; then
  : > "$spool_dir/$user"
  HOME=$bench/run XDG_DATA_HOME=$bench/run/xdg-data XDG_STATE_HOME=$bench/run/xdg-state \
    strace -f -qq -tt -T -e trace=poll,ppoll,connect,sendto -o "$bench/strace.log" \
    "$mailhaul" --config "$bench/run/config.toml" watch bench > "$bench/watch.log" 2>&1 &
  strace_pid=$!
  for _ in $(seq 300); do grep -q 'watching the spool' "$bench/watch.log" && break; sleep 0.1; done
  grep -q 'watching the spool' "$bench/watch.log" || { cat "$bench/watch.log" >&2; exit 1; }
  sleep 2 # the fetch it makes once ready
  for run in $(seq 1 "$RUNS"); do
    before=$(find "$bench/run/Maildir" -type f | wc -l)
    up0=$(stat_of up_bytes 2>/dev/null || echo 0); down0=$(stat_of down_bytes 2>/dev/null || echo 0)
    t0=$(date +%s.%N)
    cat "$bench/spool.orig" >> "$spool_dir/$user"
    for _ in $(seq 600); do
      [ "$(find "$bench/run/Maildir" -type f | wc -l)" -ge $((before + MESSAGES)) ] && break
      sleep 0.05
    done
    t1=$(find "$bench/run/Maildir" -type f -printf '%T@\n' | sort -n | tail -n 1)
    sleep 2 # the release, then quiet
    python3 - "$bench/strace.log" "$RTT_MS" "$run" "$MESSAGES" "$t0" "$t1" "$(stat_of up_bytes 2>/dev/null || echo 0)" "$up0" <<'PY'
import datetime, re, sys
log, rtt, run, msgs, t0, t1, up, up0 = sys.argv[1:]
rtt = float(rtt) / 1000
t0, t1 = float(t0), float(t1)
day = datetime.datetime.fromtimestamp(t0).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
rtts, server, shown = 0, 0, []
sent = False
for l in open(log):
    m = re.match(r'\d+\s+(\d+):(\d+):([0-9.]+) ', l)
    if not m:
        continue
    start = day + int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    # A call another thread's output cut in two: its end is stamped.
    w = re.search(r'(poll\(|connect\(|poll resumed>).*<([0-9.]+)>\s*$', l)
    if w and 'resumed>' in l:
        start -= float(w.group(2))
    if start < t0 or start > t1:
        continue
    if 'sendto(' in l and 'EAGAIN' not in l:
        sent = True
    if w and float(w.group(2)) > rtt / 3 and start + float(w.group(2)) <= t1 + 0.01:
        ms = round(float(w.group(2)) * 1000)
        if sent:
            rtts += 1
            shown.append(str(ms))
        else:
            server += 1
            shown.append(f"({ms})")
        sent = False
# Bytes up: the proxy's totals are written when the connection closes, so
# they are not known per run here.
print(f"{run}\t{msgs}\t{t1 - t0:.2f}\t{rtts}\t{server}\t-\t-\t" + ",".join(shown))
PY
  done
  watch_pid=$(pgrep -P "$strace_pid" || true)
  [ -z "$watch_pid" ] || kill "$watch_pid"
  wait "$strace_pid" || true
  exit 0
fi
# Run 0 warms the server (the cached scripts) and is not printed.
for run in $(seq 0 "$RUNS"); do
  cp "$bench/spool.orig" "$spool_dir/$user"
  up0=$(stat_of up_bytes 2>/dev/null || echo 0); down0=$(stat_of down_bytes 2>/dev/null || echo 0)
  t0=$(date +%s.%N)
  HOME=$bench/run XDG_DATA_HOME=$bench/run/xdg-data XDG_STATE_HOME=$bench/run/xdg-state \
    strace -f -qq -T ${STRACE_ALL:+-tt} -e trace=${STRACE_ALL:-poll,ppoll,connect,sendto} -o "$bench/strace.log" \
    "$mailhaul" --config "$bench/run/config.toml" fetch bench > "$bench/fetch.log" 2>&1 \
    || { cat "$bench/fetch.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  sleep 0.5 # the proxy writes its totals when the connection closes
  [ -z "${KEEP_STRACE:-}" ] || cp "$bench/strace.log" "$KEEP_STRACE.$run"
  [ "$run" -gt 0 ] || continue
  python3 - "$bench/strace.log" "$RTT_MS" "$run" "$MESSAGES" "$t0" "$t1" \
    "$(( $(stat_of up_bytes) - up0 ))" "$(( $(stat_of down_bytes) - down0 ))" <<'PY'
import re, sys
log, rtt, run, msgs, t0, t1, up, down = sys.argv[1:]
rtt = float(rtt) / 1000
rtts, server, shown = 0, 0, []
sent = True  # the TCP connect
for l in open(log):
    if 'sendto(' in l and 'EAGAIN' not in l:
        sent = True
    m = re.search(r'(poll|connect)\(.*<([0-9.]+)>\s*$', l)
    if m and float(m.group(2)) > rtt / 3:
        w = round(float(m.group(2)) * 1000)
        if sent:
            rtts += 1
            shown.append(str(w))
        else:
            server += 1
            shown.append(f"({w})")
        sent = False
print(f"{run}\t{msgs}\t{float(t1) - float(t0):.2f}\t{rtts}\t{server}\t{up}\t{down}\t" + ",".join(shown))
PY
done
