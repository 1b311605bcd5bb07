#!/usr/bin/env bash
# The fetch benchmark (docs/bench-fetch.md): mailhaul against the manual recipe
#
#   ssh mv SPOOL SPOOL_fetchme; scp -C ...:SPOOL_fetchme newmail; formail -s procmail < newmail
#
# and against POP3/IMAP peers served by a private Dovecot on 127.0.0.1
# (bench/dovecot.sh) from the same mbox spool: fetchmail (POP3, each message
# through procmail), mpop (pipelined POP3) and mbsync (IMAP, COMPRESS=DEFLATE).
# Every candidate fetches the same spool (1,300 real messages, 4.92 MB) into a
# Maildir, whose count is checked, through the link emulator
# examples/link_proxy.rs in front of sshd or Dovecot, on the profiles of
# bench/link-profiles.sh (PROFILES, default "modem dsl"):
#   modem  1 Mbit/s down, 256 kbit/s up, 100 ms RTT
#   dsl   10 Mbit/s down,   1 Mbit/s up,  40 ms RTT
#   lan  100 Mbit/s both ways, 2 ms RTT
# Each run gets a fresh spool, a fresh Maildir and a fresh proxy (whose counters
# give the bytes each way); every variant runs RUNS times per profile.
#
#   bash bench/fetch.sh [RESULTS.tsv]      # as root (a private sshd on loopback)
#   RUNS=1 PROFILES=modem VARIANTS="recipe zstd19" KEEP_LOGS=/tmp/logs bash bench/fetch.sh
#
# The SSH candidates log in as a throwaway user made for the run with
# `useradd -m -s /bin/bash` (Debian's stock /etc/skel start-up files), who also
# owns the spool; the Dovecot candidates log in as the same user.
#
# Variants: recipe; fetchmail, mpop, mbsync (the peers); auto (mailhaul's default config: compression auto, which
# is remote zstd at the default level 9 on an account's first fetch); warm (the same config
# after an untimed first fetch of 150 messages: what every later fetch has, the
# scripts cached on the server, the server's facts and the link's rate, from
# which it picks the level); limit (no fetch: `ssh -C host true` through the
# link, and the limit it gives with the bytes of `zstd -19 --long`); ssh (compression = "ssh"); zstd3,
# zstd6, zstd9 and zstd19 (compression = "zstd", zstd_level = N); adapt
# (zstd_level = "adapt": zstd --adapt=min=9,max=19).
# Prints one TSV line per run, then the medians; bench/fetch-summary.py makes
# the tables of docs/bench-fetch.md from the TSV.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
results=${1:-$repo/bench/fetch-results.tsv}
RUNS=${RUNS:-3}
PROFILES=${PROFILES:-"modem dsl"}
VARIANTS=${VARIANTS:-"recipe auto fetchmail mpop mbsync"}

[ "$(id -u)" -eq 0 ] || { echo "run as root (it starts a private sshd and Dovecot, and makes a throwaway user)" >&2; exit 1; }

# The bench's own packages. A Dovecot that the package would start system-wide
# (listening on every address) is kept from starting while it installs: the
# bench runs its own instance on loopback with its own config.
packages=(openssh-server openssh-client procmail zstd python3 perl
  dovecot-core dovecot-pop3d dovecot-imapd fetchmail mpop isync)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "# installing: ${missing[*]}" >&2
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
for tool in /usr/sbin/sshd ssh scp formail procmail zstd python3 perl /usr/sbin/dovecot fetchmail mpop mbsync; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
# shellcheck source=bench/dovecot.sh
. "$repo/bench/dovecot.sh"

cargo build --release --quiet --bin mailhaul --example link_proxy
mailhaul=${MAILHAUL_BIN:-$repo/target/release/mailhaul}
proxy_bin=$repo/target/release/examples/link_proxy
if ! "$mailhaul" fetch --help >/dev/null 2>&1; then
  echo "note: this mailhaul has no 'fetch' command; running the recipe and the peers only" >&2
  VARIANTS=$(for v in $VARIANTS; do case $v in recipe|fetchmail|mpop|mbsync) printf '%s ' "$v" ;; esac; done)
fi

bench=$(mktemp -d /tmp/mailhaul-fetch-bench.XXXXXX)
# The login user must reach the spool and authorized_keys below it.
chmod 711 "$bench"
# shellcheck source=bench/sshd.sh
. "$repo/bench/sshd.sh"
proxy_pid=
cleanup() {
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  dovecot_stop
  bench_teardown
}
# Cleaned up once, on the way out; an interrupt ends the run.
trap cleanup EXIT
trap 'exit 130' INT TERM

# The spool: whole corpus files in a fixed order, cut at 1,300 messages. The
# corpus is mboxrd, so every line starting "From " begins a message.
corpus=${MAILHAUL_CORPUS:-$repo/../shared/corpus}
if [ -f "$corpus/ham-spamassassin-01.mbox" ]; then
  { cat "$corpus/ham-spamassassin-01.mbox" "$corpus/ham-enron-beck-02.mbox"
    awk '/^From /{ if (++n > 105) exit } { print }' "$corpus/spam-spamassassin-01.mbox"
  } > "$bench/spool.orig"
  spool_source="corpus: ham-spamassassin-01 (837) + ham-enron-beck-02 (358) + spam-spamassassin-01 messages 1-105"
else
  cp assets/sample-spool.mbox "$bench/spool.orig"
  spool_source="assets/sample-spool.mbox (no corpus at $corpus)"
fi
expected=$(grep -c '^From ' "$bench/spool.orig")
echo "# spool: $spool_source; $expected messages, $(stat -c %s "$bench/spool.orig") bytes" >&2

# The login user: stock shell start-up (Debian's /etc/skel), made for this run.
user=$(printf 'mhf%d' $$ | cut -c1-16)
add_user "$user" /bin/bash login
password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

# The server: a private sshd on loopback with its own keys.
ssh-keygen -q -t ed25519 -N '' -f "$bench/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$bench/client_key"
cp "$bench/client_key.pub" "$bench/authorized_keys"
chmod 644 "$bench/authorized_keys"
sshd_port=$(free_port)
proxy_port=$(free_port)
start_sshd "$sshd_port" 'Subsystem sftp /usr/lib/openssh/sftp-server'
echo "[127.0.0.1]:$proxy_port $(cut -d' ' -f1,2 "$bench/host_key.pub")" > "$bench/known_hosts"

# The spool lives in a directory the login user owns: the recipe's `mv` works
# there, mailhaul's claim is a rename, and Dovecot serves it as INBOX.
spool_dir=$bench/spool
spool=$spool_dir/$user
pop3_port=$(free_port)
imap_port=$(free_port)
if [[ " $VARIANTS " =~ \ (fetchmail|mpop|mbsync)\  ]]; then
  dovecot_start "$bench/dovecot" "$user" "$password" "$spool" "$pop3_port" "$imap_port"
  echo "# dovecot $(/usr/sbin/dovecot --version | cut -d' ' -f1), fetchmail $(fetchmail --version 2>/dev/null | awk '/release/ { print $5; exit }'), $(mpop --version | head -1), $(mbsync --version)" >&2
fi

# shellcheck source=bench/link-profiles.sh
. "$repo/bench/link-profiles.sh"

start_proxy() { # PROFILE TARGET_PORT
  # shellcheck disable=SC2046
  "$proxy_bin" --listen "127.0.0.1:$proxy_port" --target "127.0.0.1:$2" \
    $(profile_args "$1") --stats "$bench/link.stats" > "$bench/proxy.log" &
  proxy_pid=$!
  for _ in $(seq 50); do grep -q listening "$bench/proxy.log" 2>/dev/null && break; sleep 0.05; done
}

# wait_link_closed N: waits (at most 5 s) until the proxy has closed N
# connections both ways. A one-shot fetch exits right after it sends its
# last release (docs/design.md, "The last release goes unanswered"); on a
# real link the request still arrives, so the proxy that plays the link is
# not killed while it holds it.
wait_link_closed() {
  for _ in $(seq 100); do
    [ "$(grep -c 'closed after' "$bench/proxy.log")" -ge "$1" ] && return
    sleep 0.05
  done
}

stop_proxy() {
  kill -TERM "$proxy_pid"
  wait "$proxy_pid" || true
  proxy_pid=
}

stat_of() { awk -v k="$1" '$1 == k { print $2 }' "$bench/link.stats"; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

fresh_run() {
  rm -rf "$spool_dir" "$bench/run"
  mkdir -p "$spool_dir" "$bench/run/Maildir"/{new,cur,tmp}
  cp "$bench/spool.orig" "$spool"
  chmod 600 "$spool"
  chown -R "$user:" "$spool_dir"
  chmod 700 "$spool_dir"
  # Dovecot starts each run cold: no index of an earlier run's spool.
  [ ! -d "$bench/dovecot/index" ] || find "$bench/dovecot/index" -mindepth 1 -delete
}

delivered() { find "$1/new" "$1/cur" -type f | wc -l; }

ssh_opts=(-F /dev/null -i "$bench/client_key" -o IdentitiesOnly=yes -o BatchMode=yes
  -o UserKnownHostsFile="$bench/known_hosts" -o StrictHostKeyChecking=yes
  -o ControlMaster=no -o ControlPath=none)

# (a) The manual recipe, as a user types it, each step a new SSH connection.
run_recipe() {
  cat > "$bench/run/procmailrc" <<RC
MAILDIR=$bench/run/Maildir
DEFAULT=$bench/run/Maildir/
RC
  local t0 t1 t2 t3
  t0=$(now)
  ssh "${ssh_opts[@]}" -p "$proxy_port" "$user@127.0.0.1" mv "$spool" "${spool}_fetchme"
  t1=$(now)
  scp -q -C "${ssh_opts[@]}" -P "$proxy_port" "$user@127.0.0.1:${spool}_fetchme" "$bench/run/newmail"
  t2=$(now)
  formail -s procmail -m "$bench/run/procmailrc" < "$bench/run/newmail"
  t3=$(now)
  steps="ssh=$(elapsed "$t0" "$t1") scp=$(elapsed "$t1" "$t2") deliver=$(elapsed "$t2" "$t3")"
  wall=$(elapsed "$t0" "$t3")
}

# The physical limit of issue 14: one `ssh -C host true` through the link
# (login, one exec step, logout) plus the bytes of `zstd -19 --long` of the
# spool at the link's rate (its steps give both; wall is the ssh alone).
run_limit() {
  local t0 t1 payload rate
  t0=$(now)
  ssh -C "${ssh_opts[@]}" -p "$proxy_port" "$user@127.0.0.1" true
  t1=$(now)
  payload=$(zstd -q -c -19 --long=24 "$bench/spool.orig" | wc -c)
  rate=$(profile_args "$profile" | awk '{ print $2 }')
  wall=$(elapsed "$t0" "$t1")
  steps="ssh_true=$wall zstd19long_bytes=$payload limit=$(awk -v w="$wall" -v b="$payload" -v r="$rate" 'BEGIN { printf "%.2f", w + b * 8 / r }')"
}

# (b) mailhaul fetch, one compression setting per variant.
run_mailhaul() {
  local compression=$1
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
spool = "$spool"
$compression
CFG
  local t0 t1
  t0=$(now)
  # Each log line gets the seconds since the start, for the stage times.
  HOME=$bench/run XDG_CONFIG_HOME=$bench/run/xdg-config XDG_DATA_HOME=$bench/run/xdg-data \
    XDG_STATE_HOME=$bench/run/xdg-state XDG_CACHE_HOME=$bench/run/xdg-cache \
    "$mailhaul" --config "$bench/run/config.toml" fetch --verbose bench 2>&1 \
    | perl -MTime::HiRes=time -ne "BEGIN { \$| = 1 } printf '%6.2f %s', time - $t0, \$_" \
    > "$bench/run/mailhaul.log" \
    || { echo "mailhaul failed:" >&2; cat "$bench/run/mailhaul.log" >&2; }
  t1=$(now)
  at() { awk -v s="$1" 'index($0, s) { print $1; exit }' "$bench/run/mailhaul.log"; }
  steps="method=$(grep -o -m1 -E 'compression (zstd -[0-9]+|zstd --adapt=[0-9.]+|gzip -[0-9]+|ssh|none)' "$bench/run/mailhaul.log" | cut -d' ' -f2- | tr ' ' _)"
  steps="$steps transfer_from=$(at ': transferring') verify_from=$(at ': verifying') deliver_from=$(at ': delivering') done=$(at ': done')"
  wall=$(elapsed "$t0" "$t1")
}

# The account's earlier fetches, untimed, through the same link: a first
# fetch of the spool's first 150 messages (0.6 MB) caches the remote scripts
# on the server and keeps the server's facts and the link's measured rate in
# the data directory, as every fetch after an account's first has them. Then
# the Maildir is emptied and the whole spool put back.
warm_up() { # CONFIG_LINE
  awk '/^From /{ if (++n > 150) exit } { print }' "$bench/spool.orig" > "$spool"
  chown "$user:" "$spool"
  chmod 600 "$spool"
  run_mailhaul "$1"
  find "$bench/run/Maildir" -type f -delete
  cp "$bench/spool.orig" "$spool"
  chown "$user:" "$spool"
  chmod 600 "$spool"
}

# (c) The peers, from Dovecot through the same link proxy, each into the run's
# Maildir. The password sits in the run's own 0600 files (the peers have no
# SSH keys to use); Dovecot's passwd-file holds the same throwaway password.
peer_rc() { # FILE: the peer's config from stdin, 0600 as the tools demand
  cat > "$1"; chmod 600 "$1"
}

run_peer() { # TOOL: the peer's command, timed; steps names it and its exit code
  local t0 t1 rc=0
  t0=$(now)
  case $1 in
    fetchmail)
      # POP3, one message at a time, each handed to procmail (Maildir delivery):
      # what a fetchmail user with a .procmailrc runs.
      cat > "$bench/run/procmailrc" <<RC
MAILDIR=$bench/run/Maildir
DEFAULT=$bench/run/Maildir/
RC
      peer_rc "$bench/run/fetchmailrc" <<RC
set no bouncemail
set no syslog
poll 127.0.0.1 with protocol POP3 port $proxy_port
  user "$user" there with password "$password" is root here
  sslproto ''
  fetchall
  mda "/usr/bin/procmail -m $bench/run/procmailrc"
RC
      HOME=$bench/run fetchmail -f "$bench/run/fetchmailrc" -i "$bench/run/fetchids" \
        --pidfile "$bench/run/fetchmail.pid" --nosyslog > "$bench/run/peer.log" 2>&1 || rc=$? ;;
    mpop)
      # POP3 with PIPELINING (Dovecot offers it), straight into the Maildir;
      # messages are deleted on the server after delivery (keep off).
      peer_rc "$bench/run/mpoprc" <<RC
account bench
host 127.0.0.1
port $proxy_port
tls off
auth plain
user $user
password $password
delivery maildir $bench/run/Maildir
uidls_file $bench/run/mpop_uidls
keep off
RC
      HOME=$bench/run mpop -C "$bench/run/mpoprc" bench > "$bench/run/peer.log" 2>&1 || rc=$? ;;
    mbsync)
      # IMAP, pipelined, COMPRESS=DEFLATE (isync uses it when the server offers
      # it); Sync Pull copies the mailbox and deletes nothing on the server.
      peer_rc "$bench/run/mbsyncrc" <<RC
IMAPAccount bench
Host 127.0.0.1
Port $proxy_port
User $user
Pass $password
SSLType None
AuthMechs PLAIN

IMAPStore remote
Account bench

MaildirStore local
Path $bench/run/mail/
Inbox $bench/run/Maildir

Channel bench
Far :remote:INBOX
Near :local:INBOX
Sync Pull
Create Near
SyncState $bench/run/mbsync-state/
RC
      mkdir -p "$bench/run/mbsync-state" "$bench/run/mail"
      HOME=$bench/run mbsync -c "$bench/run/mbsyncrc" bench > "$bench/run/peer.log" 2>&1 || rc=$? ;;
  esac
  t1=$(now)
  [ "$rc" -eq 0 ] || { echo "$1 exited $rc:" >&2; tail -n 5 "$bench/run/peer.log" >&2; }
  steps="tool=$1 exit=$rc"
  wall=$(elapsed "$t0" "$t1")
}

printf 'profile\tvariant\trun\twall_s\tup_bytes\tdown_bytes\tconnections\tdelivered\texpected\tsteps\n' > "$results"
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for profile in $PROFILES; do
  for run in $(seq "$RUNS"); do
    for variant in $VARIANTS; do
      fresh_run
      case $variant in
        fetchmail|mpop) target=$pop3_port ;;
        mbsync) target=$imap_port ;;
        *) target=$sshd_port ;;
      esac
      start_proxy "$profile" "$target"
      case $variant in
        fetchmail|mpop|mbsync) run_peer "$variant" ;;
        recipe) run_recipe ;;
        limit) run_limit ;;
        auto) run_mailhaul 'compression = "auto"' ;;
        warm) warm_up 'compression = "auto"'; wait_link_closed 1; stop_proxy; start_proxy "$profile" "$target"
          run_mailhaul 'compression = "auto"' ;;
        ssh) run_mailhaul 'compression = "ssh"' ;;
        zstd[0-9]*) run_mailhaul $'compression = "zstd"\nzstd_level = '"${variant#zstd}" ;;
        adapt) run_mailhaul $'compression = "zstd"\nzstd_level = "adapt"' ;;
        *) echo "unknown variant $variant" >&2; exit 1 ;;
      esac
      stop_proxy
      if [ -n "${KEEP_LOGS:-}" ]; then
        mkdir -p "$KEEP_LOGS"
        cp "$bench/proxy.log" "$KEEP_LOGS/$profile-$variant-$run.proxy.log"
        [ ! -f "$bench/run/peer.log" ] || cp "$bench/run/peer.log" "$KEEP_LOGS/$profile-$variant-$run.peer.log"
        [ ! -f "$bench/run/mailhaul.log" ] || cp "$bench/run/mailhaul.log" "$KEEP_LOGS/$profile-$variant-$run.mailhaul.log"
      fi
      line=$(printf '%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s' "$profile" "$variant" "$run" "$wall" \
        "$(stat_of up_bytes)" "$(stat_of down_bytes)" "$(stat_of connections)" \
        "$(delivered "$bench/run/Maildir")" "$expected" "$steps")
      echo "$line" >> "$results"
      echo "$line" >&2
    done
  done
done
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 "$repo/bench/fetch-summary.py" "$results"
