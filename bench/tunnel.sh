#!/usr/bin/env bash
# Benchmarks mailhaul's SMTP forward against OpenSSH's `ssh -C -N -L`, both
# over a throwaway sshd on loopback, optionally through a user-space
# delay/rate proxy (this kernel has no netem):
#   - throughput: real mail (../shared/corpus, else generated text) pushed to
#     a sink behind the forward, half-closed, until the sink's answer;
#   - latency: 1-byte round trips to an echo service behind the forward;
#   - SMTP: sequential transactions (new connection each) to the system
#     Postfix behind the forward.
# Usage: bench/tunnel.sh [DELAY_MS RATE_KBIT]   (as root; results on stdout)
# Example: bench/tunnel.sh            # loopback
#          bench/tunnel.sh 25 20000   # 25 ms each way (50 ms RTT), 20 Mbit/s
set -euo pipefail
cd "$(dirname "$0")/.."
delay=${1:-0}
rate=${2:-0}
[ "$(id -u)" -eq 0 ] || { echo "run as root: it starts an sshd and adds a user" >&2; exit 1; }
postfix status >/dev/null 2>&1 || { echo "Postfix must be running (postfix start)" >&2; exit 1; }

cargo build --release --quiet
bin=$PWD/target/release/mailhaul
tool="python3 $PWD/bench/tunnel_tool.py"
work=$(mktemp -d /tmp/mailhaul-bench.XXXXXX)
pids=()
user=mhbench$$
# shellcheck source=bench/sshd.sh
. bench/sshd.sh
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  remove_users
  rm -rf "$work"
}
trap cleanup EXIT
wait_port() {
  for _ in $(seq 200); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never opened" >&2; exit 1
}

# The recipient of the SMTP runs: a spool only (the forwards log in as root).
add_user "$user" /bin/sh

# The server: sshd on loopback with its own keys.
ssh-keygen -q -t ed25519 -N '' -f "$work/host"
ssh-keygen -q -t ed25519 -N '' -f "$work/id"
cp "$work/id.pub" "$work/authorized_keys"
sshd_port=$(free_port)
cat > "$work/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $sshd_port
HostKey $work/host
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
pids+=($!)
wait_port "$sshd_port"
ssh_port=$sshd_port
if [ "$delay" != 0 ] || [ "$rate" != 0 ]; then
  ssh_port=$(free_port)
  $tool proxy "$ssh_port" "127.0.0.1:$sshd_port" "$delay" "$rate" &
  pids+=($!)
  wait_port "$ssh_port"
fi
echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$work/host.pub")" > "$work/known_hosts"

# Services on the server side.
sink=$(free_port); echo_port=$(free_port)
$tool sink "$sink" & pids+=($!)
$tool echo "$echo_port" & pids+=($!)
wait_port "$sink"; wait_port "$echo_port"

# Payload: real mail if the corpus is there.
corpus=${MAILHAUL_CORPUS:-$PWD/../shared/corpus}
if ls "$corpus"/*.mbox >/dev/null 2>&1; then
  cat "$corpus"/*.mbox > "$work/payload"
else
  python3 -c "
import random; r = random.Random(1)
w = [''.join(r.choice('etaoinshrdlucmfwyp') for _ in range(r.randint(2, 9))) for _ in range(3000)]
print('\n'.join(' '.join(r.choice(w) for _ in range(12)) for _ in range(400000)))" > "$work/payload"
fi
if [ "$delay" != 0 ] || [ "$rate" != 0 ]; then
  head -c 8000000 "$work/payload" > "$work/p" && mv "$work/p" "$work/payload"
  pushes=2; pings=50; smtps=20
else
  pushes=5; pings=3000; smtps=200
fi

# Three forwards each: sink, echo, SMTP (port 25 on the server).
declare -A mh_port ssh_port_of
for t in sink echo smtp; do mh_port[$t]=$(free_port); ssh_port_of[$t]=$(free_port); done
target_of() { case $1 in sink) echo "127.0.0.1:$sink";; echo) echo "127.0.0.1:$echo_port";; smtp) echo "127.0.0.1:25";; esac; }
: > "$work/config.toml"
for t in sink echo smtp; do
  cat >> "$work/config.toml" <<EOF
[[account]]
name = "$t"
host = "127.0.0.1"
port = $ssh_port
user = "root"
identity_file = "$work/id"
use_agent = false
known_hosts_file = "$work/known_hosts"
[account.forward]
listen = "127.0.0.1:${mh_port[$t]}"
target = "$(target_of $t)"
EOF
done
declare -A mh_pid
for t in sink echo smtp; do
  "$bin" --config "$work/config.toml" tunnel "$t" --stats-every 3600 >"$work/mailhaul-$t.log" 2>&1 &
  mh_pid[$t]=$!
  pids+=($!)
done
ssh_forwards=()
for t in sink echo smtp; do ssh_forwards+=(-L "127.0.0.1:${ssh_port_of[$t]}:$(target_of $t)"); done
ssh -F /dev/null -i "$work/id" -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
  -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes \
  -C -N "${ssh_forwards[@]}" -p "$ssh_port" root@127.0.0.1 &
ssh_pid=$!
pids+=($!)
for t in sink echo smtp; do wait_port "${mh_port[$t]}"; wait_port "${ssh_port_of[$t]}"; done

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores; delay ${delay} ms each way, rate ${rate} kbit/s (0 = loopback speed)"
echo "# payload $(stat -c %s "$work/payload") bytes; OpenSSH $(ssh -V 2>&1)"
# Warm up each forward (the session's first channel, Postfix's smtpd).
both() { echo "127.0.0.1:${ssh_port_of[$1]},127.0.0.1:${mh_port[$1]}"; }
$tool ping "$(both echo)" openssh,mailhaul 10 >/dev/null
$tool smtp "$(both smtp)" openssh,mailhaul 2 "$user@localhost" >/dev/null
echo "== OpenSSH and mailhaul forwards, runs alternating"
# CPU time (user+sys ticks) of each client process over the pushes.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ssh_t0=$(ticks "$ssh_pid"); mh_t0=$(ticks "${mh_pid[sink]}")
$tool push "$(both sink)" openssh,mailhaul "$work/payload" "$pushes"
ssh_t1=$(ticks "$ssh_pid"); mh_t1=$(ticks "${mh_pid[sink]}")
hz=$(getconf CLK_TCK)
mb=$(( $(stat -c %s "$work/payload") * pushes / 1000000 ))
echo "cpu over the pushes ($mb MB each): openssh $(( (ssh_t1 - ssh_t0) * 1000 / hz )) ms, mailhaul $(( (mh_t1 - mh_t0) * 1000 / hz )) ms"
$tool ping "$(both echo)" openssh,mailhaul "$pings"
$tool smtp "$(both smtp)" openssh,mailhaul "$smtps" "$user@localhost"
$tool burst "$(both smtp)" openssh,mailhaul 20
kill -TERM "${mh_pid[sink]}"
wait "${mh_pid[sink]}" || true
echo "# mailhaul's counters (sink forward, all runs):"
grep ' total; ' "$work/mailhaul-sink.log" | tail -n 1
