#!/usr/bin/env bash
# The send benchmark (docs/bench-send.md): 100 real messages sent to a local
# user on the "server" through the link emulator examples/link_proxy.rs, on
# the profiles of bench/fetch.sh:
#   modem  1 Mbit/s down, 256 kbit/s up, 100 ms RTT
#   dsl   10 Mbit/s down,   1 Mbit/s up,  40 ms RTT
# Variants:
#   mailhaul  `mailhaul send` for each message (local, into the outbox), then
#             one `mailhaul queue flush` (the server's sendmail over the SSH
#             login); the time counted is the flush's
#   msmtp     `ssh -C -N -L PORT:localhost:25` up, then msmtp once per message
#             through it (what mutt with msmtp does), then the ssh down
#   forward   msmtp once per message through `mailhaul tunnel` (the SMTP
#             forward built into mailhaul)
#   smtp      as mailhaul, with `send = "smtp"`: the flush speaks SMTP
#             (pipelined) to localhost:25 over a direct-tcpip channel of the
#             SSH login instead of feeding the server's sendmail
# Every run starts a fresh proxy, whose counters give the bytes up and down,
# and checks that all 100 messages reached the user's spool.
# mailhaul and ssh log in as a throwaway user made for the run with
# `useradd -m -s /bin/bash` (Debian's stock /etc/skel start-up files, whose
# .bashrc returns at once for a non-interactive shell), not as root, whose
# ~/.bashrc may run anything (here `pyenv init`, ~0.35 s per exec step).
#
#   bash bench/send.sh [RESULTS.tsv]    # as root: private sshd, a throwaway user, Postfix
#   RUNS=1 PROFILES=dsl VARIANTS="mailhaul msmtp" bash bench/send.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
results=${1:-$repo/bench/send-results.tsv}
RUNS=${RUNS:-3}
PROFILES=${PROFILES:-"modem dsl"}
VARIANTS=${VARIANTS:-"mailhaul smtp msmtp forward"}
COUNT=${COUNT:-100}

[ "$(id -u)" -eq 0 ] || { echo "run as root (private sshd, useradd, Postfix)" >&2; exit 1; }
for tool in /usr/sbin/sshd ssh msmtp /usr/sbin/postfix python3 useradd; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (bash tests/run-all.sh installs the packages)" >&2; exit 1; }
done
cargo build --release --quiet --bin mailhaul --example link_proxy
mailhaul=$repo/target/release/mailhaul
proxy_bin=$repo/target/release/examples/link_proxy

bench=$(mktemp -d /tmp/mailhaul-send-bench.XXXXXX)
# The login user must reach authorized_keys in it.
chmod 711 "$bench"
rcpt_user=mhsb$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
# shellcheck source=bench/sshd.sh
. "$repo/bench/sshd.sh"
proxy_pid=
tunnel_pid=
cleanup() {
  [ -z "$tunnel_pid" ] || kill "$tunnel_pid" 2>/dev/null || true
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  bench_teardown
}
# Cleaned up once, on the way out; an interrupt ends the run.
trap cleanup EXIT
trap 'exit 130' INT TERM

# The recipient: a spool only, no login.
add_user "$rcpt_user" /bin/sh
/usr/sbin/postfix status >/dev/null 2>&1 || { newaliases; /usr/sbin/postfix start; }

# The messages: the first COUNT of the corpus's ham-enron-beck-02 (else the
# committed sample), each with its From_ line dropped.
corpus=${MAILHAUL_CORPUS:-$repo/../shared/corpus}
source_mbox=$corpus/ham-enron-beck-02.mbox
[ -f "$source_mbox" ] || source_mbox=assets/sample-spool.mbox
mkdir -p "$bench/msgs"
awk -v dir="$bench/msgs" -v max="$COUNT" '
  /^From / { n++; if (n > max) exit; file = sprintf("%s/%04d", dir, n); next }
  n > 0 { print > file }' "$source_mbox"
raw_bytes=$(cat "$bench"/msgs/* | wc -c)
echo "# $COUNT messages from $source_mbox, $raw_bytes bytes" >&2

# The login user: stock shell start-up (Debian's /etc/skel), made for this run.
user=$(printf 'mhs%d' $$ | cut -c1-16)
add_user "$user" /bin/bash login
ssh-keygen -q -t ed25519 -N '' -f "$bench/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$bench/client_key"
cp "$bench/client_key.pub" "$bench/authorized_keys"
chmod 644 "$bench/authorized_keys"
sshd_port=$(free_port)
proxy_port=$(free_port)
fwd_port=$(free_port)
start_sshd "$sshd_port"
echo "[127.0.0.1]:$proxy_port $(cut -d' ' -f1,2 "$bench/host_key.pub")" > "$bench/known_hosts"

# shellcheck source=bench/link-profiles.sh
. "$repo/bench/link-profiles.sh"
start_proxy() {
  # shellcheck disable=SC2046
  "$proxy_bin" --listen "127.0.0.1:$proxy_port" --target "127.0.0.1:$sshd_port" \
    $(profile_args "$1") --stats "$bench/link.stats" > "$bench/proxy.log" &
  proxy_pid=$!
  for _ in $(seq 50); do grep -q listening "$bench/proxy.log" 2>/dev/null && break; sleep 0.05; done
}
stop_proxy() { kill -TERM "$proxy_pid"; wait "$proxy_pid" || true; proxy_pid=; }
stat_of() { awk -v k="$1" '$1 == k { print $2 }' "$bench/link.stats"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# Each message with a tag header naming the run, for the delivery count.
tagged() { printf 'X-Bench-Tag: %s\n' "$1"; cat "$2"; }

write_config() {
  rm -rf "$bench/run"
  mkdir -p "$bench/run"
  cat > "$bench/run/config.toml" <<CFG
[[account]]
name = "bench"
host = "127.0.0.1"
port = $proxy_port
user = "$user"
identity_file = "$bench/client_key"
use_agent = false
known_hosts_file = "$bench/known_hosts"

[account.forward]
listen = "127.0.0.1:$fwd_port"
CFG
}
mh() {
  HOME=$bench/run XDG_CONFIG_HOME=$bench/run/xdg-config XDG_DATA_HOME=$bench/run/xdg-data \
    "$mailhaul" --config "$bench/run/config.toml" "$@"
}

run_mailhaul() {
  local tag=$1 f
  for f in "$bench"/msgs/*; do
    tagged "$tag-$(basename "$f")" "$f" | mh send -oi -- "$rcpt_user@localhost"
  done
  local t0 t1
  t0=$(now)
  mh queue flush bench > "$bench/run/flush.log" 2>&1 || { cat "$bench/run/flush.log" >&2; }
  t1=$(now)
  wall=$(elapsed "$t0" "$t1")
  steps="flush=$(tr ' ' _ < "$bench/run/flush.log" | head -c 200)"
}

run_smtp() {
  sed -i 's/^use_agent = false$/use_agent = false\nsend = "smtp"/' "$bench/run/config.toml"
  grep -q '^send = "smtp"$' "$bench/run/config.toml" || { echo "config: send not set" >&2; exit 1; }
  run_mailhaul "$1"
}

msmtp_each() {
  local tag=$1 port=$2 f
  for f in "$bench"/msgs/*; do
    tagged "$tag-$(basename "$f")" "$f" | msmtp --host=127.0.0.1 --port="$port" \
      --auth=off --tls=off --from="$user@localhost" -- "$rcpt_user@localhost"
  done
}

run_msmtp() {
  local t0 t1
  t0=$(now)
  ssh -F /dev/null -i "$bench/client_key" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o UserKnownHostsFile="$bench/known_hosts" -o StrictHostKeyChecking=yes \
    -o ExitOnForwardFailure=yes -C -N -L "$fwd_port:localhost:25" -p "$proxy_port" "$user@127.0.0.1" &
  tunnel_pid=$!
  for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$fwd_port") 2>/dev/null && break; sleep 0.02; done
  msmtp_each "$1" "$fwd_port"
  kill "$tunnel_pid" 2>/dev/null || true; wait "$tunnel_pid" 2>/dev/null || true; tunnel_pid=
  t1=$(now)
  wall=$(elapsed "$t0" "$t1")
  steps=
}

run_forward() {
  local t0 t1
  t0=$(now)
  # exec: $! must be mailhaul itself, so that the kill below ends it.
  (HOME=$bench/run XDG_CONFIG_HOME=$bench/run/xdg-config XDG_DATA_HOME=$bench/run/xdg-data \
    exec "$mailhaul" --config "$bench/run/config.toml" tunnel bench) > "$bench/run/tunnel.log" 2>&1 &
  tunnel_pid=$!
  for _ in $(seq 500); do grep -q forwarding "$bench/run/tunnel.log" 2>/dev/null && break; sleep 0.02; done
  msmtp_each "$1" "$fwd_port"
  kill "$tunnel_pid" 2>/dev/null || true; wait "$tunnel_pid" 2>/dev/null || true; tunnel_pid=
  t1=$(now)
  wall=$(elapsed "$t0" "$t1")
  steps=
}

delivered() {
  local tag=$1 n=0
  for _ in $(seq 600); do
    n=$(grep -c "^X-Bench-Tag: $tag-" "/var/mail/$rcpt_user" 2>/dev/null || true)
    [ "${n:-0}" -ge "$COUNT" ] && break
    sleep 0.1
  done
  echo "${n:-0}"
}

printf 'profile\tvariant\trun\twall_s\tup_bytes\tdown_bytes\tconnections\tdelivered\texpected\tsteps\n' > "$results"
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for profile in $PROFILES; do
  for run in $(seq "$RUNS"); do
    for variant in $VARIANTS; do
      write_config
      start_proxy "$profile"
      tag="$profile-$variant-$run"
      case $variant in
        mailhaul) run_mailhaul "$tag" ;;
        msmtp) run_msmtp "$tag" ;;
        forward) run_forward "$tag" ;;
        smtp) run_smtp "$tag" ;;
        *) echo "unknown variant $variant" >&2; exit 1 ;;
      esac
      stop_proxy
      line=$(printf '%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s' "$profile" "$variant" "$run" "$wall" \
        "$(stat_of up_bytes)" "$(stat_of down_bytes)" "$(stat_of connections)" \
        "$(delivered "$tag")" "$COUNT" "$steps")
      echo "$line" >> "$results"
      echo "$line" >&2
    done
  done
done
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# Medians per profile and variant.
python3 - "$results" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
keys = sorted({(r["profile"], r["variant"]) for r in rows})
print("profile\tvariant\tmedian_wall_s\tmedian_up_bytes\tdelivered")
for p, v in keys:
    rs = [r for r in rows if (r["profile"], r["variant"]) == (p, v)]
    print(f'{p}\t{v}\t{statistics.median(float(r["wall_s"]) for r in rs):.2f}\t'
          f'{int(statistics.median(int(r["up_bytes"]) for r in rs))}\t'
          f'{",".join(r["delivered"] for r in rs)}/{rs[0]["expected"]}')
PY
