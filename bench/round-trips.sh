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
#   PROFILE=dsl STRACE=0 bash bench/round-trips.sh  # seconds on a link profile
#   LOGIN_RC=1 ...                            # the login shell reads its rc files (below)
#   KEEP_LOGS=/tmp/logs ...                   # keeps the fetch's, watch's, sshd's logs,
#       strace.log, runs.log and the data directory; SESSION=open:
#       python3 bench/open-timeline.py /tmp/logs prints each run's timeline
#
# PROFILE=modem|dsl (bench/link-profiles.sh) sets the link's rates and RTT
# instead of RTT_MS at 1 Gbit/s; STRACE=0 runs mailhaul without strace (its
# seconds undisturbed; no round trips counted). bench/small-fetch.sh runs
# this script for each profile, message count and session and makes the
# table of docs/bench-fetch.md.
#
# SESSION=open: one `mailhaul watch` (its worker keeps the session open)
# runs under strace; each run appends MESSAGES messages to the spool as an
# MDA would (under the spool's dot-lock) and waits until they are filed.
# Counted: the waits that began after the append and ended before the last
# message was filed: "connect -> filed" on a session already open; the
# watcher's report itself is a server wait. Run 0 (not printed) warms the
# server and the session, in both modes: a new session's run 0 leaves the
# cached scripts and the kept server facts, as every fetch after an
# account's first has them.
#
# New mail is new: every run fetches its own MESSAGES messages of the corpus
# file, in order. Before run 0 the account fetches HISTORY (default 200)
# earlier messages of the same file with a new session: its filed mail,
# from which mailhaul makes the account's dictionary; run 0 then finds the
# server without it and sends it up, so runs 1 and later fetch as an
# account does every day (cached scripts, kept server facts, the dictionary
# on the server, the link's measured rate; DICTIONARY=off: the account has
# `dictionary = false`). Each run starts with an empty
# Maildir and checks that it then holds exactly that run's messages (their
# Message-IDs, each once); it stops with exit 1 if not.
#
# Prints one line per run: messages, wall seconds (new session: to the
# process's exit; open: append -> filed), seconds to the last message filed
# (the latest ctime in the Maildir: a file's rename into new/ sets it),
# round trips, bytes up and down (new session: the proxy's counters; open:
# the watch's TCP connection's bytes_sent/bytes_received from ss(8), from
# the append to filed), messages filed, and the waits themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
RUNS=${RUNS:-3}
RTT_MS=${RTT_MS:-300}
MESSAGES=${MESSAGES:-10}
HISTORY=${HISTORY:-200}
DICTIONARY=${DICTIONARY:-on}
SESSION=${SESSION:-new}
STRACE=${STRACE:-1}
PROFILE=${PROFILE:-}
# shellcheck source=bench/link-profiles.sh
. "$repo/bench/link-profiles.sh"
if [ -n "$PROFILE" ]; then
  link_args=$(profile_args "$PROFILE")
  RTT_MS=$(sed -E 's/.*--rtt-ms ([0-9]+).*/\1/' <<<"$link_args")
else
  link_args="--down-bps 1000000000 --up-bps 1000000000 --rtt-ms $RTT_MS"
fi
[ "$(id -u)" -eq 0 ] || { echo "run as root (it starts a private sshd)" >&2; exit 1; }
for tool in /usr/sbin/sshd strace zstd python3 lockfile ss; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install openssh-server strace zstd python3 procmail iproute2)" >&2; exit 1; }
done
cargo build --release --quiet --bin mailhaul --example link_proxy
mailhaul=${MAILHAUL_BIN:-$repo/target/release/mailhaul}
proxy_bin=$repo/target/release/examples/link_proxy

bench=$(mktemp -d /tmp/mailhaul-rtt-bench.XXXXXX)
chmod 700 "$bench"
# shellcheck source=bench/sshd.sh
. "$repo/bench/sshd.sh"
proxy_pid=
watch_pid=
cleanup() {
  [ -z "${KEEP_LOGS:-}" ] || { mkdir -p "$KEEP_LOGS"; cp "$bench"/*.log "$KEEP_LOGS"/ 2>/dev/null || true
    cp -r "$bench/run/xdg-data" "$KEEP_LOGS"/ 2>/dev/null || true; }
  [ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null || true
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  bench_teardown
}
# Cleaned up once, on the way out; an interrupt ends the run.
trap cleanup EXIT
trap 'exit 130' INT TERM

corpus=${MAILHAUL_CORPUS:-$repo/../shared/corpus}
src=$corpus/ham-spamassassin-01.mbox
[ -f "$src" ] || src=assets/sample-spool.mbox
# spool.history: messages 1..HISTORY; spool.RUN: the next MESSAGES each.
awk -v h="$HISTORY" -v n="$MESSAGES" -v runs="$RUNS" -v out="$bench/spool." '
  /^From / { k++ }
  { i = k <= h ? "history" : int((k - h - 1) / n); if (i == "history" || i <= runs) print > (out i) }
' "$src"
for run in $(seq 0 "$RUNS"); do
  [ "$(grep -c '^From ' "$bench/spool.$run" 2>/dev/null)" = "$MESSAGES" ] \
    || { echo "$src has fewer than HISTORY + (RUNS + 1) x MESSAGES messages" >&2; exit 1; }
done

user=$(id -un)
ssh-keygen -q -t ed25519 -N '' -f "$bench/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$bench/client_key"
cp "$bench/client_key.pub" "$bench/authorized_keys"
sshd_port=$(free_port)
proxy_port=$(free_port)
# Every step is an exec request, which sshd runs with the login's shell;
# bash, run by sshd, reads ~/.bashrc even for `bash -c` (Debian builds it
# so). A mail account's .bashrc returns at once when not interactive, but
# the account here is root of the bench machine, whose ~/.bashrc may run
# anything (here `pyenv init`, ~0.35 s per step). SHLVL=1 from sshd makes
# bash a nested shell, which reads no rc file: the steps cost what they
# cost an account with a quiet shell start. LOGIN_RC=1 keeps the rc files read.
if [ "${LOGIN_RC:-0}" = 1 ]; then start_sshd "$sshd_port"; else start_sshd "$sshd_port" "SetEnv SHLVL=1"; fi
echo "[127.0.0.1]:$proxy_port $(cut -d' ' -f1,2 "$bench/host_key.pub")" > "$bench/known_hosts"
# shellcheck disable=SC2086
"$proxy_bin" --listen "127.0.0.1:$proxy_port" --target "127.0.0.1:$sshd_port" \
  $link_args --stats "$bench/link.stats" > "$bench/proxy.log" &
proxy_pid=$!
for _ in $(seq 50); do grep -q listening "$bench/proxy.log" 2>/dev/null && break; sleep 0.05; done

spool_dir=$bench/spool
maildir=$bench/run/Maildir
mkdir -p "$spool_dir" "$maildir"/{new,cur,tmp}
cat > "$bench/run/config.toml" <<CFG
[general]
maildir = "$maildir"

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
$([ "$DICTIONARY" = on ] || echo "dictionary = false")
CFG
run_env=(env HOME="$bench/run" XDG_DATA_HOME="$bench/run/xdg-data" XDG_STATE_HOME="$bench/run/xdg-state")
stat_of() { awk -v k="$1" '$1 == k { print $2 }' "$bench/link.stats"; }
# The watch's connection to the proxy: "SENT RECEIVED" (TCP payload bytes,
# what the proxy counts).
conn_bytes() {
  ss -tinH state established "( dport = :$proxy_port )" \
    | awk '{ for (i = 1; i <= NF; i++) {
               if ($i ~ /^bytes_sent:/) { sub(/.*:/, "", $i); s = $i }
               if ($i ~ /^bytes_received:/) { sub(/.*:/, "", $i); r = $i } } }
           END { print s + 0, r + 0 }'
}
empty_maildir() { find "$maildir"/new "$maildir"/cur -type f -delete; }
count_filed() { find "$maildir"/new "$maildir"/cur -type f | wc -l; }
last_filed() { find "$maildir"/new "$maildir"/cur -type f -printf '%C@\n' | sort -n | tail -n 1; }
# Exactly run RUN's messages, each once: prints the count filed, or fails.
check_filed() { # RUN
  python3 - "$bench/spool.$1" "$maildir" <<'PY'
import collections, email.parser, mailbox, os, sys
spool, maildir = sys.argv[1:]
parse = email.parser.BytesHeaderParser()
want = collections.Counter((m.get("Message-ID") or "").strip() for m in mailbox.mbox(spool))
got = collections.Counter()
for d in ("new", "cur"):
    for name in os.listdir(os.path.join(maildir, d)):
        with open(os.path.join(maildir, d, name), "rb") as f:
            got[(parse.parse(f).get("Message-ID") or "").strip()] += 1
if got != want:
    sys.exit(f"filed {sum(got.values())} messages, want exactly the spool's {sum(want.values())}: "
             f"{sum((want - got).values())} missing, {sum((got - want).values())} extra")
print(sum(got.values()))
PY
}
# An MDA's delivery: the spool's dot-lock taken with O_EXCL (procmail's
# lockfile, as procmail and Postfix local take it), the messages appended,
# the lock removed.
mda_append() { # RUN
  lockfile -1 -r 30 "$spool_dir/$user.lock"
  cat "$bench/spool.$1" >> "$spool_dir/$user"
  rm -f "$spool_dir/$user.lock"
}
fetch() { # the account's fetch with a new session, its output in fetch.log
  "${run_env[@]}" "$@" "$mailhaul" --config "$bench/run/config.toml" fetch bench > "$bench/fetch.log" 2>&1 \
    || { cat "$bench/fetch.log" >&2; exit 1; }
}
if [ "$HISTORY" -gt 0 ]; then
  cp "$bench/spool.history" "$spool_dir/$user"
  fetch
  [ -f "$bench/run/xdg-data/mailhaul/accounts/bench/dictionary" ] \
    || echo "# note: no dictionary made from the $HISTORY messages of history" >&2
fi
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg); link: $link_args; $MESSAGES message(s) from $src after $HISTORY; dictionary $DICTIONARY; $SESSION session; strace $STRACE" >&2
printf 'run\tmessages\twall_s\tfiled_s\tround_trips\tserver_waits\tup_bytes\tdown_bytes\tfiled\twaits_ms\n'
if [ "$SESSION" = open ]; then
  : > "$spool_dir/$user"
  traced=()
  [ "$STRACE" = 0 ] || traced=(strace -f -qq -tt -T -e trace=poll,ppoll,connect,sendto -o "$bench/strace.log")
  "${run_env[@]}" "${traced[@]}" "$mailhaul" --config "$bench/run/config.toml" watch bench > "$bench/watch.log" 2>&1 &
  watch_job=$!
  for _ in $(seq 300); do grep -qs 'watching the spool' "$bench/watch.log" && break; sleep 0.1; done
  grep -q 'watching the spool' "$bench/watch.log" || { cat "$bench/watch.log" >&2; exit 1; }
  # mailhaul itself: under strace, the tracer's child.
  if [ "$STRACE" = 0 ]; then watch_pid=$watch_job; else watch_pid=$(pgrep -P "$watch_job"); fi
  sleep 2 # the fetch it makes once ready
  for run in $(seq 0 "$RUNS"); do
    empty_maildir
    fetches=$(grep -c ': filed ' "$bench/watch.log" || true)
    read -r up0 down0 < <(conn_bytes)
    t0=$(date +%s.%N)
    mda_append "$run"
    for _ in $(seq 600); do
      [ "$(count_filed)" -ge "$MESSAGES" ] && break
      sleep 0.05
    done
    read -r up1 down1 < <(conn_bytes)
    t1=$(last_filed)
    # The fetch's end (the release; after run 0, the dictionary sent up:
    # seconds on a modem), then quiet.
    for _ in $(seq 600); do
      [ "$(grep -c ': filed ' "$bench/watch.log" || true)" -gt "$fetches" ] && break
      sleep 0.05
    done
    sleep 1
    filed=$(check_filed "$run") || { tail -n 20 "$bench/watch.log" >&2; exit 1; }
    echo "$run $t0 $t1" >> "$bench/runs.log" # append and filed, for KEEP_LOGS
    [ "$run" -gt 0 ] || continue
    counted=$'-\t-\t'
    [ "$STRACE" = 0 ] || counted=$(python3 - "$bench/strace.log" "$RTT_MS" "$t0" "$t1" <<'PY'
import datetime, re, sys
log, rtt, t0, t1 = sys.argv[1:]
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
print(f"{rtts}\t{server}\t" + ",".join(shown))
PY
)
    IFS=$'\t' read -r rtts waits shown <<<"$counted" || true
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$MESSAGES" "$secs" "$secs" \
      "$rtts" "$waits" "$((up1 - up0))" "$((down1 - down0))" "$filed" "$shown"
  done
  kill "$watch_pid"
  wait "$watch_job" || true
  watch_pid=
  exit 0
fi
traced=()
[ "$STRACE" = 0 ] || traced=(strace -f -qq -T ${STRACE_ALL:+-tt} -e "trace=${STRACE_ALL:-poll,ppoll,connect,sendto}" -o "$bench/strace.log")
for run in $(seq 0 "$RUNS"); do
  cp "$bench/spool.$run" "$spool_dir/$user"
  empty_maildir
  up0=$(stat_of up_bytes 2>/dev/null || echo 0); down0=$(stat_of down_bytes 2>/dev/null || echo 0)
  t0=$(date +%s.%N)
  fetch "${traced[@]}"
  t1=$(date +%s.%N)
  tf=$(last_filed)
  sleep 0.5 # the proxy writes its totals when the connection closes
  filed=$(check_filed "$run") || { cat "$bench/fetch.log" >&2; exit 1; }
  [ -z "${KEEP_STRACE:-}" ] || [ "$STRACE" = 0 ] || cp "$bench/strace.log" "$KEEP_STRACE.$run"
  [ "$run" -gt 0 ] || continue
  counted=$'-\t-\t'
  [ "$STRACE" = 0 ] || counted=$(python3 - "$bench/strace.log" "$RTT_MS" <<'PY'
import re, sys
log, rtt = sys.argv[1:]
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
print(f"{rtts}\t{server}\t" + ",".join(shown))
PY
)
  IFS=$'\t' read -r rtts waits shown <<<"$counted" || true
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$MESSAGES" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
    "$(awk -v a="$t0" -v b="$tf" 'BEGIN { printf "%.2f", b - a }')" \
    "$rtts" "$waits" "$(($(stat_of up_bytes) - up0))" "$(($(stat_of down_bytes) - down0))" "$filed" "$shown"
done
