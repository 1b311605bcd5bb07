#!/usr/bin/env bash
# The push benchmark (docs/push.md): one `mailhaul watch` watching ACCOUNTS
# accounts (throwaway users with spools in /var/mail) on a private sshd, the
# system Postfix delivering (through procmail, under the spool lock).
#
#   latency  a message handed to the server's `sendmail` -> its file in the
#            account's local Maildir new/ (SAMPLES messages, one every 0.5-1 s,
#            round-robin over the accounts), p50 / p95 / max
#   idle     over IDLE_SECS with no mail: client CPU (the watch process),
#            server CPU (every process of the throwaway users: sshd's session
#            processes, the watcher's sh, inotifywait or ls/sleep), and bytes on
#            the wire per account and minute (the client sockets' TCP payload,
#            both ways, from `ss -ti`; with the link proxy, its counters)
#
# for the profiles: loopback (no proxy) and dsl (examples/link_proxy.rs: 10
# Mbit/s down, 1 Mbit/s up, 40 ms RTT), and the server's two watch modes:
# inotify and the stat loop (inotifywait hidden from the sessions in a mount
# namespace, as in tests/watch_server.rs).
#
#   bash bench/push.sh                       # as root
#   ACCOUNTS=20 SAMPLES=40 IDLE_SECS=600 PROFILES="loopback dsl" MODES="inotify poll" bash bench/push.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
ACCOUNTS=${ACCOUNTS:-20}
SAMPLES=${SAMPLES:-40}
IDLE_SECS=${IDLE_SECS:-600}   # the idle target is stated over 10 minutes
PROFILES=${PROFILES:-"loopback dsl"}
MODES=${MODES:-"inotify poll"}

[ "$(id -u)" -eq 0 ] || { echo "run as root (throwaway users, a private sshd, Postfix)" >&2; exit 1; }
for tool in /usr/sbin/sshd /usr/sbin/sendmail /usr/sbin/postfix procmail inotifywait python3 ss unshare; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install openssh-server postfix procmail inotify-tools python3 iproute2)" >&2; exit 1; }
done

cargo build --release --quiet --bin mailhaul --example link_proxy
mailhaul=${MAILHAUL_BIN:-$repo/target/release/mailhaul}
proxy_bin=$repo/target/release/examples/link_proxy

bench=$(mktemp -d /tmp/mailhaul-push-bench.XXXXXX)
chmod 755 "$bench"
# shellcheck source=bench/sshd.sh
. "$repo/bench/sshd.sh"
users=()
proxy_pid=
watch_pid=
cleanup() {
  [ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null || true
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  bench_teardown
}
# Cleaned up once, on the way out; an interrupt ends the run.
trap cleanup EXIT
trap 'exit 130' INT TERM

postfix status >/dev/null 2>&1 || { newaliases; postfix start; }

# ACCOUNTS watched users, and one more nobody watches (the MTA's own latency).
for i in $(seq $((ACCOUNTS + 1))); do
  u=$(printf 'mhb%04d%04d' $$ "$i" | cut -c1-16)
  add_user "$u" /bin/sh login
  : > "/var/mail/$u"; chown "$u:mail" "/var/mail/$u"; chmod 660 "/var/mail/$u"
  users+=("$u")
done
baseline_user=${users[-1]}
watched=("${users[@]:0:$ACCOUNTS}")

ssh-keygen -q -t ed25519 -N '' -f "$bench/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$bench/client_key"
cp "$bench/client_key.pub" "$bench/authorized_keys"
chmod 644 "$bench/authorized_keys"
: > "$bench/blank"
proxy_port=$(free_port)
# Two sshds: one as is, one in a mount namespace where inotifywait is an
# empty file, so every session there watches with the stat loop.
start_mode_sshd() { # MODE PORT
  cat > "$bench/sshd_$1.conf" <<CFG
ListenAddress 127.0.0.1
Port $2
HostKey $bench/host_key
PidFile $bench/sshd_$1.pid
AuthorizedKeysFile $bench/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
MaxStartups 100
CFG
  if [ "$1" = poll ]; then
    unshare -m sh -c "mount --bind $bench/blank /usr/bin/inotifywait && exec /usr/sbin/sshd -D -e -f $bench/sshd_$1.conf" 2>"$bench/sshd_$1.log" &
  else
    /usr/sbin/sshd -D -e -f "$bench/sshd_$1.conf" 2>"$bench/sshd_$1.log" &
  fi
  sshd_pids+=($!)
  for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$2") 2>/dev/null && break; sleep 0.1; done
}
mkdir -p /run/sshd
declare -A sshd_port
for mode in $MODES; do
  sshd_port[$mode]=$(free_port)
  start_mode_sshd "$mode" "${sshd_port[$mode]}"
done

write_config() { # PORT
  {
    printf '[general]\nmaildir = "%s/Maildir"\n\n[filter]\nformat = "mboxo"\n' "$bench"
    for u in "${watched[@]}"; do
      printf '\n[[account]]\nname = "%s"\nhost = "127.0.0.1"\nport = %s\nuser = "%s"\n' "$u" "$1" "$u"
      printf 'identity_file = "%s/client_key"\nuse_agent = false\n' "$bench"
      printf 'known_hosts_file = "%s/known_hosts"\nmaildir = "%s/Maildir/%s"\n' "$bench" "$bench" "$u"
    done
  } > "$bench/config.toml"
  echo "[127.0.0.1]:$1 $(cut -d' ' -f1,2 "$bench/host_key.pub")" > "$bench/known_hosts"
}

printf "profile\tmode\taccounts\tsamples\tp50_s\tp95_s\tmax_s\tidle_s\tclient_cpu_pct\tserver_cpu_pct_per_account\tpayload_bytes_per_min_per_account\twire_bytes_per_min_per_account\tmta_p50_s\n" > "$bench/results.tsv"
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores" >&2

for profile in $PROFILES; do
  for mode in $MODES; do
    port=${sshd_port[$mode]}
    if [ "$profile" = dsl ]; then
      "$proxy_bin" --listen "127.0.0.1:$proxy_port" --target "127.0.0.1:$port" \
        --down-bps 10000000 --up-bps 1000000 --rtt-ms 40 > "$bench/proxy.log" &
      proxy_pid=$!
      for _ in $(seq 50); do grep -q listening "$bench/proxy.log" 2>/dev/null && break; sleep 0.05; done
      port=$proxy_port
    fi
    write_config "$port"
    rm -rf "$bench/Maildir" "$bench/data"
    HOME=$bench XDG_DATA_HOME=$bench/data XDG_CONFIG_HOME=$bench/xdg \
      "$mailhaul" --config "$bench/config.toml" watch > "$bench/watch.log" 2>&1 &
    watch_pid=$!
    for _ in $(seq 600); do
      [ "$(grep -c 'watching the spool' "$bench/watch.log")" -ge "$ACCOUNTS" ] && break
      sleep 0.1
    done
    want="watching the spool ($mode)"
    [ "$(grep -c "$want" "$bench/watch.log")" -ge "$ACCOUNTS" ] ||
      { echo "not every account is watching ($want):" >&2; cat "$bench/watch.log" >&2; exit 1; }
    sleep 2
    python3 "$repo/bench/push_measure.py" --profile "$profile" --mode "$mode" \
      --maildir "$bench/Maildir" --users "${watched[*]}" --baseline-user "$baseline_user" --samples "$SAMPLES" \
      --idle-secs "$IDLE_SECS" --watch-pid "$watch_pid" --port "$port" \
      >> "$bench/results.tsv"
    kill "$watch_pid"; wait "$watch_pid" || true; watch_pid=
    if [ -n "$proxy_pid" ]; then kill "$proxy_pid"; wait "$proxy_pid" || true; proxy_pid=; fi
    tail -n 1 "$bench/results.tsv" >&2
  done
done
cat "$bench/results.tsv"
