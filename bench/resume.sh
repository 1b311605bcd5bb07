#!/usr/bin/env bash
# The resume benchmark (docs/reliability.md, "Resume"): a 30 MB spool of real
# mail fetched over the "modem" link (1 Mbit/s down, 256 kbit/s up, 100 ms
# RTT; examples/link_proxy.rs), three runs:
#   full    a fetch from scratch, uncut: its bytes down are the whole cost;
#   cut     the same from scratch, the link cut once CUT_PERCENT (90) % of
#           the full run's bytes down have come through (link_proxy
#           --cut-down-after): it fails, the claim stays on the server;
#   resume  the next fetch with the same data dir: it continues from the
#           prefix the cut run kept and must cost the rest, not all.
# Prints the three runs (wall s, bytes up/down, messages filed) and the
# resume's bytes down as a share of the full run's.
#
#   bash bench/resume.sh                  # as root (a private sshd on loopback)
#   CUT_PERCENT=50 PROFILE=dsl bash bench/resume.sh
#   SKIP_BUILD=1 bash bench/resume.sh     # use target/release as it is
#
# mailhaul logs in as a throwaway user made for the run with `useradd -m -s
# /bin/bash` (Debian's stock /etc/skel start-up files), who owns the spool;
# not as root, whose ~/.bashrc may run anything (here `pyenv init`, ~0.35 s
# per exec step).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
CUT_PERCENT=${CUT_PERCENT:-90}
PROFILE=${PROFILE:-modem}
SPOOL_BYTES=${SPOOL_BYTES:-30000000}

[ "$(id -u)" -eq 0 ] || { echo "run as root (it starts a private sshd)" >&2; exit 1; }
for tool in /usr/sbin/sshd ssh-keygen zstd python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install openssh-server openssh-client zstd python3)" >&2; exit 1; }
done
corpus=${MAILHAUL_CORPUS:-$repo/../shared/corpus}
[ -f "$corpus/MANIFEST.tsv" ] || { echo "needs the corpus at $corpus (or MAILHAUL_CORPUS) for a 30 MB spool of real mail" >&2; exit 1; }

[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin mailhaul --example link_proxy
mailhaul=$repo/target/release/mailhaul
proxy_bin=$repo/target/release/examples/link_proxy

bench=$(mktemp -d /tmp/mailhaul-resume-bench.XXXXXX)
# The login user must reach the spool and authorized_keys below it.
chmod 711 "$bench"
# shellcheck source=bench/sshd.sh
. "$repo/bench/sshd.sh"
proxy_pid=
cleanup() {
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  bench_teardown
}
# Cleaned up once, on the way out; an interrupt ends the run.
trap cleanup EXIT
trap 'exit 130' INT TERM

# The spool: the corpus files in name order, cut at the first message that
# starts past SPOOL_BYTES (the corpus is mboxrd: "From " starts a message).
# shellcheck disable=SC2046
awk -v max="$SPOOL_BYTES" '/^From / { if (n >= max) exit } { n += length($0) + 1; print }' \
  $(ls "$corpus"/*.mbox | sort) > "$bench/spool.orig"
expected=$(grep -c '^From ' "$bench/spool.orig")
echo "# spool: $expected messages, $(stat -c %s "$bench/spool.orig") bytes (corpus files in name order)" >&2

# The login user: stock shell start-up (Debian's /etc/skel), made for this run.
user=$(printf 'mhr%d' $$ | cut -c1-16)
add_user "$user" /bin/bash login
ssh-keygen -q -t ed25519 -N '' -f "$bench/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$bench/client_key"
cp "$bench/client_key.pub" "$bench/authorized_keys"
chmod 644 "$bench/authorized_keys"
sshd_port=$(free_port)
proxy_port=$(free_port)
start_sshd "$sshd_port"
echo "[127.0.0.1]:$proxy_port $(cut -d' ' -f1,2 "$bench/host_key.pub")" > "$bench/known_hosts"

case $PROFILE in
  modem) link="--down-bps 1000000 --up-bps 256000 --rtt-ms 100" ;;
  dsl) link="--down-bps 10000000 --up-bps 1000000 --rtt-ms 40" ;;
  *) echo "unknown profile $PROFILE" >&2; exit 1 ;;
esac

start_proxy() {
  # shellcheck disable=SC2086
  "$proxy_bin" --listen "127.0.0.1:$proxy_port" --target "127.0.0.1:$sshd_port" \
    $link --stats "$bench/link.stats" "$@" > "$bench/proxy.log" &
  proxy_pid=$!
  for _ in $(seq 50); do grep -q listening "$bench/proxy.log" 2>/dev/null && break; sleep 0.05; done
}
stop_proxy() { kill -TERM "$proxy_pid"; wait "$proxy_pid" || true; proxy_pid=; }
# A one-shot fetch exits right after it sends its last release, unanswered
# (docs/design.md, "The last release goes unanswered"): the proxy that plays
# the link is stopped only once it has closed the connection (at most 5 s).
wait_link_closed() {
  for _ in $(seq 100); do
    grep -q 'closed after' "$bench/proxy.log" 2>/dev/null && return
    sleep 0.05
  done
}
stat_of() { awk -v k="$1" '$1 == k { print $2 }' "$bench/link.stats"; }
now() { date +%s.%N; }

spool_dir=$bench/spool
# A fresh spool and a fresh client (data dir, Maildir).
fresh() {
  rm -rf "$spool_dir" "$bench/run"
  mkdir -p "$spool_dir" "$bench/run/Maildir"
  cp "$bench/spool.orig" "$spool_dir/$user"
  chmod 600 "$spool_dir/$user"
  chown -R "$user:" "$spool_dir"
  chmod 700 "$spool_dir"
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
compression = "zstd"
zstd_level = 9
CFG
}

# One fetch through the proxy (extra proxy args: "$@"); sets the result line.
run() {
  local name=$1 t0 t1 status=0
  shift
  start_proxy "$@"
  t0=$(now)
  HOME=$bench/run XDG_DATA_HOME=$bench/run/data XDG_CONFIG_HOME=$bench/run/config \
    "$mailhaul" --config "$bench/run/config.toml" fetch bench > "$bench/$name.log" 2>&1 || status=$?
  t1=$(now)
  wait_link_closed
  stop_proxy
  local filed
  filed=$(find "$bench/run/Maildir" -path '*/new/*' -type f -o -path '*/cur/*' -type f | wc -l)
  printf '%s\t%.2f\t%s\t%s\t%s\t%s\n' "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
    "$(stat_of up_bytes)" "$(stat_of down_bytes)" "$filed" "$status"
  sed 's/^/#   /' "$bench/$name.log" >&2
  eval "${name}_down=$(stat_of down_bytes)"
}

echo "# $(date -u +%FT%TZ) profile $PROFILE, load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
printf 'run\twall_s\tup_bytes\tdown_bytes\tfiled\texit\n'
fresh
run full
fresh
cut_at=$((full_down * CUT_PERCENT / 100))
run cut --cut-down-after "$cut_at"
run resume
# The server removes the last claim once the release has arrived: wait for
# it (at most 5 s).
for _ in $(seq 50); do
  claims=$(find "$spool_dir" -name '*.mailhaul-claim.*' | wc -l)
  [ "$claims" -eq 0 ] && break
  sleep 0.1
done
filed=$(find "$bench/run/Maildir" -path '*/new/*' -type f -o -path '*/cur/*' -type f | wc -l)
echo "# cut at $cut_at bytes down ($CUT_PERCENT % of the full run's $full_down)" >&2
echo "# resume: $resume_down bytes down = $(awk -v r="$resume_down" -v f="$full_down" 'BEGIN { printf "%.3f", r / f }')x the full run's; filed $filed of $expected, claims left on the server: $claims" >&2
[ "$filed" -eq "$expected" ] && [ "$claims" -eq 0 ] || { echo "FAILED: every message once, nothing left" >&2; exit 1; }
