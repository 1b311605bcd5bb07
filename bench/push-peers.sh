#!/usr/bin/env bash
# The peers of `mailhaul watch` (docs/push.md), measured on the same kind of
# setup as bench/push.sh: the system Postfix delivers to a throwaway user's
# /var/mail spool (through procmail, under the spool lock), and
#
#   fetchmail -d INTERVAL  (default 60) polls a private Dovecot's POP3 on
#            127.0.0.1 (bench/dovecot.sh, INBOX = that spool) through the link
#            proxy, each message through procmail into a local Maildir:
#            latency of SAMPLES messages handed to sendmail at random moments
#            (sendmail -> the file in Maildir/new), then IDLE_SECS without mail:
#            fetchmail's CPU, Dovecot's CPU (every process of the private
#            instance, reaped ones included), bytes on the link per minute
#            (the proxy's counters) and logins
#   cron     `mailhaul fetch` every 10 minutes: the latency follows from the
#            interval (mean 5 min, worst 10 min, plus one fetch); the cost is
#            that of one fetch of an empty spool (the usual case) through the
#            same link to a private sshd, measured RUNS times: bytes, client
#            CPU, server CPU (sshd's tree), wall time; per minute = / 10
#
# The link is "dsl" (examples/link_proxy.rs: 10 Mbit/s down, 1 Mbit/s up,
# 40 ms RTT) unless PROFILE=loopback (no delay, rates of 10 Gbit/s: the
# counters only).
#
#   bash bench/push-peers.sh                 # as root
#   SAMPLES=12 IDLE_SECS=600 INTERVAL=60 RUNS=5 PROFILE=dsl bash bench/push-peers.sh
#   PARTS=cron bash bench/push-peers.sh      # only cron's fetch (PARTS="fetchmail cron" by default)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
SAMPLES=${SAMPLES:-12}
IDLE_SECS=${IDLE_SECS:-600}
INTERVAL=${INTERVAL:-60}
RUNS=${RUNS:-5}
PROFILE=${PROFILE:-dsl}
PARTS=${PARTS:-"fetchmail cron"}

[ "$(id -u)" -eq 0 ] || { echo "run as root (a throwaway user, sshd, Dovecot, Postfix)" >&2; exit 1; }
packages=(openssh-server postfix procmail python3 dovecot-core dovecot-pop3d dovecot-imapd fetchmail)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  # As in bench/fetch.sh: the packaged Dovecot is kept from starting system-wide.
  echo "# installing: ${missing[*]}" >&2
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string mailhaul.test" | debconf-set-selections
  policy_made=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy_made=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  [ -z "$policy_made" ] || rm -f /usr/sbin/policy-rc.d
  if [[ " ${missing[*]} " == *" dovecot-core "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
  fi
fi
# shellcheck source=bench/dovecot.sh
. "$repo/bench/dovecot.sh"

cargo build --release --quiet --bin mailhaul --example link_proxy
mailhaul=${MAILHAUL_BIN:-$repo/target/release/mailhaul}
proxy_bin=$repo/target/release/examples/link_proxy

bench=$(mktemp -d /tmp/mailhaul-push-peers.XXXXXX)
chmod 711 "$bench"
# shellcheck source=bench/sshd.sh
. "$repo/bench/sshd.sh"
proxy_pid=
fetchmail_pid=
cleanup() {
  [ -z "$fetchmail_pid" ] || kill "$fetchmail_pid" 2>/dev/null || true
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  dovecot_stop
  bench_teardown
}
# Cleaned up once, on the way out; an interrupt ends the run.
trap cleanup EXIT
trap 'exit 130' INT TERM

postfix status >/dev/null 2>&1 || { newaliases; postfix start; }

user=$(printf 'mhq%d' $$ | cut -c1-16)
add_user "$user" /bin/bash login
: > "/var/mail/$user"; chown "$user:mail" "/var/mail/$user"; chmod 660 "/var/mail/$user"
password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

pop3_port=$(free_port)
imap_port=$(free_port)
sshd_port=$(free_port)
proxy_port=$(free_port)

case $PROFILE in
  dsl) link=(--down-bps 10000000 --up-bps 1000000 --rtt-ms 40) ;;
  loopback) link=(--down-bps 10000000000 --up-bps 10000000000 --rtt-ms 0) ;;
  *) echo "unknown PROFILE $PROFILE" >&2; exit 1 ;;
esac
start_proxy() { # TARGET_PORT
  rm -f "$bench/link.stats"
  "$proxy_bin" --listen "127.0.0.1:$proxy_port" --target "127.0.0.1:$1" "${link[@]}" \
    --stats "$bench/link.stats" > "$bench/proxy.log" &
  proxy_pid=$!
  for _ in $(seq 50); do grep -q listening "$bench/proxy.log" 2>/dev/null && break; sleep 0.05; done
}
stop_proxy() { kill -TERM "$proxy_pid"; wait "$proxy_pid" || true; proxy_pid=; }

echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; profile $PROFILE" >&2

: > "$bench/fetchmail.tsv"
: > "$bench/cron.tsv"
if [[ " $PARTS " == *" fetchmail "* ]]; then
dovecot_start "$bench/dovecot" "$user" "$password" "/var/mail/$user" "$pop3_port" "$imap_port"
# fetchmail in daemon mode, in the foreground (-N) so that its PID is ours.
mkdir -p "$bench/Maildir"/{new,cur,tmp}
cat > "$bench/procmailrc" <<RC
MAILDIR=$bench/Maildir
DEFAULT=$bench/Maildir/
RC
cat > "$bench/fetchmailrc" <<RC
set no bouncemail
set no syslog
poll 127.0.0.1 with protocol POP3 port $proxy_port
  user "$user" there with password "$password" is root here
  sslproto ''
  fetchall
  mda "/usr/bin/procmail -m $bench/procmailrc"
RC
chmod 600 "$bench/fetchmailrc"
start_proxy "$pop3_port"
HOME=$bench fetchmail -N -d "$INTERVAL" -f "$bench/fetchmailrc" -i "$bench/fetchids" \
  --pidfile "$bench/fetchmail.pid" --nosyslog > "$bench/fetchmail.log" 2>&1 &
fetchmail_pid=$!
sleep 2
python3 "$repo/bench/push_peers_measure.py" fetchmail --user "$user" --maildir "$bench/Maildir" \
  --samples "$SAMPLES" --interval "$INTERVAL" --idle-secs "$IDLE_SECS" \
  --client-pid "$fetchmail_pid" --server-pid "$dovecot_pid" --stats "$bench/link.stats" \
  > "$bench/fetchmail.tsv"
kill "$fetchmail_pid"; wait "$fetchmail_pid" || true; fetchmail_pid=
stop_proxy
dovecot_stop
fi

# cron's fetch: mailhaul fetch of the (now empty) spool over a new SSH login.
if [[ " $PARTS " == *" cron "* ]]; then
ssh-keygen -q -t ed25519 -N '' -f "$bench/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$bench/client_key"
cp "$bench/client_key.pub" "$bench/authorized_keys"
chmod 644 "$bench/authorized_keys"
start_sshd "$sshd_port"
echo "[127.0.0.1]:$proxy_port $(cut -d' ' -f1,2 "$bench/host_key.pub")" > "$bench/known_hosts"
cat > "$bench/config.toml" <<CFG
[general]
maildir = "$bench/Maildir-cron"

[[account]]
name = "cron"
host = "127.0.0.1"
port = $proxy_port
user = "$user"
identity_file = "$bench/client_key"
use_agent = false
known_hosts_file = "$bench/known_hosts"
spool = "/var/mail/$user"
CFG
start_proxy "$sshd_port"
python3 "$repo/bench/push_peers_measure.py" cron --runs "$RUNS" --server-pid "$sshd_pid" \
  --stats "$bench/link.stats" -- \
  env HOME="$bench" XDG_DATA_HOME="$bench/data" XDG_CONFIG_HOME="$bench/xdg" XDG_STATE_HOME="$bench/state" \
  "$mailhaul" --config "$bench/config.toml" fetch cron > "$bench/cron.tsv"
stop_proxy
fi
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cat "$bench/fetchmail.tsv" "$bench/cron.tsv"
