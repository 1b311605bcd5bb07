#!/usr/bin/env bash
# Processes and programs the server scripts start (docs/send.md, docs/push.md):
# strace -f of assets/remote/send.sh handing MESSAGES messages of RCPTS
# recipients each to a sendmail that is /bin/true, and of one report of
# assets/remote/watch.sh (inotify) with CLAIMS finished claims waiting.
# The scripts run under /bin/sh with their arguments as the prelude leaves
# them; the stub and the prelude (a few processes, the same for every
# script) are not counted. Counts only, no timing: no bench lock.
#
#   bash bench/remote-forks.sh                     # the scripts in assets/remote
#   SRC=/tmp/old MESSAGES=10 bash bench/remote-forks.sh   # KEEP=1 keeps the traces
#
# Prints `send MESSAGES RCPTS processes programs` and `watch-report CLAIMS
# processes programs`: processes are the forks (every child, subshells
# too), programs the successful execve calls (sendmail's among them).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${SRC:-assets/remote}
MESSAGES=${MESSAGES:-1}
RCPTS=${RCPTS:-1}
CLAIMS=${CLAIMS:-2}
for tool in strace xz sha256sum inotifywait; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
work=$(mktemp -d /tmp/mailhaul-forks.XXXXXX)
watch_pid=
cleanup() {
  [ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
# Cleaned up once, on the way out; an interrupt ends the run.
trap cleanup EXIT
trap 'exit 130' INT TERM

# processes: forks that returned a PID; programs: execve that returned 0.
count() {
  local procs progs
  procs=$(grep -cE '(clone3?|v?fork)(\(| resumed>).* = [1-9][0-9]*$' "$1" || true)
  progs=$(grep -cE 'execve(\(| resumed>).* = 0$' "$1" || true)
  echo "$procs $progs"
}
hexs() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }

# A send step: one group of MESSAGES messages, as relay.rs writes it, xz.
mkdir -p "$work/home" "$work/msgs"
: > "$work/table"
for i in $(seq "$MESSAGES"); do
  id=$(printf '%016x' "$i")
  printf 'Subject: message %d\n\nHello %d.\n' "$i" "$i" > "$work/msgs/$i"
  rcpts=
  for r in $(seq "$RCPTS"); do rcpts="$rcpts x$(hexs "user$r@example.org")"; done
  printf '%s %s x%s x%s%s\n' "$id" "$(wc -c < "$work/msgs/$i")" "$(hexs alice@example.org)" \
    "$(hexs 'Alice Example')" "$rcpts" >> "$work/table"
done
# shellcheck disable=SC2046
sum=$(cat "$work/table" $(seq -f "$work/msgs/%g" "$MESSAGES") | sha256sum | cut -d' ' -f1)
# shellcheck disable=SC2046
{ echo "g $MESSAGES"; cat "$work/table" $(seq -f "$work/msgs/%g" "$MESSAGES"); echo "v $sum"; } | xz > "$work/stream.xz"
HOME=$work/home strace -f -qq -e trace=execve,clone,clone3,fork,vfork -o "$work/send.trace" \
  /bin/sh "$SRC/send.sh" 2 xz /bin/true 3< "$work/stream.xz" > "$work/send.out"
grep -q "^ok $(printf '%016x' "$MESSAGES")\$" "$work/send.out" || { cat "$work/send.out" >&2; exit 1; }
echo "send $MESSAGES $RCPTS $(count "$work/send.trace")"

# A watcher report: the spool and CLAIMS claims (one beside the spool, the
# rest in the claims directory); a delivery appends to the spool.
mkdir -p "$work/spool" "$work/home/.mailhaul/claims"
spool=$work/spool/user
echo "From a" > "$spool"
for c in $(seq "$CLAIMS"); do
  if [ "$c" = 1 ]; then echo x > "$spool.mailhaul-claim.1"; else echo x > "$work/home/.mailhaul/claims/$c.mbox"; fi
done
mkfifo "$work/stdin"
# Its own session, as sshd gives it: it ends by killing its process group.
HOME=$work/home setsid strace -f -qq -e trace=execve,clone,clone3,fork,vfork -o "$work/watch.trace" \
  /bin/sh "$SRC/watch.sh" "$spool" "$work/home/.mailhaul/claims" 1 600 3< "$work/stdin" > "$work/watch.out" &
watch_pid=$!
exec 4> "$work/stdin"
for _ in $(seq 100); do grep -q '^spool ' "$work/watch.out" && break; sleep 0.1; done
sleep 1
before=$(wc -l < "$work/watch.trace")
echo "From b" >> "$spool"
for _ in $(seq 100); do [ "$(grep -c '^spool ' "$work/watch.out")" -ge 2 ] && break; sleep 0.1; done
sleep 1
grep -q "^spool 14 $CLAIMS\$" "$work/watch.out" || { cat "$work/watch.out" >&2; exit 1; }
tail -n +"$((before + 1))" "$work/watch.trace" > "$work/report.trace"
# The report's processes: the trace's lines after the delivery.
echo "watch-report $CLAIMS $(count "$work/report.trace")"
exec 4>&-
wait "$watch_pid" 2>/dev/null || true
watch_pid=
