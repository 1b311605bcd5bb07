# mailhaul's spool watcher: POSIX sh, run on one long-lived exec channel by
# engine::ssh's stub (cached on the server, checked by sha256) as
#   sh -c STUB sh SPOOL CLAIMS_DIR POLL_SECONDS HEARTBEAT_SECONDS
# through engine::ssh, which hex-encodes every argument on the command line
# and decodes it in a prelude (no user data in a shell line). SPOOL is the
# absolute spool path the claim script's probe resolved, CLAIMS_DIR where
# copy-truncate claims live (~/.mailhaul/claims).
#
# It prints one line per record:
#   ready inotify|poll   watching has begun (inotify watches are in place)
#   spool SIZE CLAIMS    the spool holds SIZE bytes (0: empty or missing)
#                        and CLAIMS finished claims wait on the server;
#                        printed at start, on every change (inotify: on
#                        every delivery, claim, or removal), never while
#                        a delivery agent still holds the lock
#   alive                nothing changed for HEARTBEAT_SECONDS: the link
#                        carries a few bytes, so both ends notice a dead one
#
# It never takes the spool's lock and never reads mail: it looks at names,
# sizes and inodes only (inotify events, or `ls -ln` every POLL_SECONDS
# where inotifywait is missing or cannot watch).
#
# It dies with its channel: the client never closes the channel's stdin,
# which this script keeps on fd 3; when the channel or the connection goes
# (the client closes it, is killed, or sshd drops it), sshd closes that
# pipe, `cat` below sees end-of-file, and every process of this script's
# process group (sshd makes each session its own) is killed.

set -u
PATH=/usr/local/bin:/usr/bin:/bin:${PATH:-}
LC_ALL=C
export PATH LC_ALL

spool=$1
cdir=$2
poll=$3
heartbeat=$4
case $poll in ''|*[!0-9]*|0) poll=1 ;; esac
case $heartbeat in ''|*[!0-9]*|0) heartbeat=60 ;; esac
spool_dir=${spool%/*}
[ -n "$spool_dir" ] || spool_dir=/

say() { printf '%s\n' "$*"; }

# A report runs for every delivery: it starts no program per claim, since on
# a loaded server each costs milliseconds. `test -O` (not POSIX, but dash,
# bash, ksh and busybox sh have it; status 2 where it is unknown) checks a
# file's owner without one; without it, one `ls` per claim.
if [ -O / ] 2>/dev/null || [ "$?" = 1 ]; then
  test_owner=1 uid=
else
  test_owner= uid=$(id -u)
fi
# Whether file $1 is owned by this login (the effective user).
owned() {
  if [ -n "$test_owner" ]; then
    [ -O "$1" ]
  else
    _o=$(ls -ldn -- "$1" 2>/dev/null) || return 1
    set -f
    # shellcheck disable=SC2086
    set -- $_o
    set +f
    [ "${3-}" = "$uid" ]
  fi
}

# Sets `size`, `claims` and `sig` (what the poll loop compares) from one
# `ls` of the spool and a glob of the claims: no lock, no read of the mail.
look() {
  size=0 sig=missing
  if _l=$(ls -lnid -- "$spool" 2>/dev/null); then
    sig=$_l
    set -f
    # shellcheck disable=SC2086
    set -- $_l
    set +f
    size=${6:-0}
  fi
  claims=0
  # Claims as claim.sh takes them: regular files of this login, no symbolic
  # links (another user's file planted in a shared spool directory is none).
  for _f in "$spool".mailhaul-claim.* "$cdir"/*.mbox; do
    [ -f "$_f" ] && [ ! -h "$_f" ] && owned "$_f" && claims=$((claims + 1))
  done
  sig="$sig $claims"
}

report() {
  look
  say "spool $size $claims"
}

# Where inotifywait runs: every event on our spool, our claims or the end of
# a delivery (its lock removed) prints the state, even an unchanged one (a
# claim and a new delivery of the same size between two looks must not
# cancel out). Other users' files in a shared spool directory are skipped
# without a fork. Returns when inotifywait ends (it could not watch).
watch_inotify() {
  _dirs=$spool_dir
  [ -d "$cdir" ] && _dirs="$spool_dir $cdir"
  # shellcheck disable=SC2086
  inotifywait -m -e close_write -e moved_to -e moved_from -e create -e delete \
      --format '%w%f' $_dirs 2>&1 | {
    while IFS= read -r _p; do
      case $_p in
        'Watches established.')
          say "ready inotify"
          report
          (while sleep "$heartbeat"; do say alive || exit 0; done) & ;;
        'Setting up watches.'*) ;;
        # A delivery or a claim ends by removing the lock: report then.
        "$spool" | "$spool.lock" | "$spool".mailhaul-claim.* | "$cdir"/*)
          [ -e "$spool.lock" ] || report ;;
        "$spool_dir"/*) ;;
        *) say "note $_p" ;;
      esac
    done
  }
}

# Without inotify: one `ls` every POLL_SECONDS, a line when it changed (or
# `alive` after HEARTBEAT_SECONDS of no change).
watch_poll() {
  say "ready poll"
  look
  say "spool $size $claims"
  _last=$sig _quiet=0
  while sleep "$poll"; do
    look
    _quiet=$((_quiet + poll))
    if [ "$sig" != "$_last" ]; then
      # Not while a delivery agent holds the lock: the next look sees the end.
      if [ -e "$spool.lock" ]; then continue; fi
      _last=$sig _quiet=0
      say "spool $size $claims" || exit 0
    elif [ "$_quiet" -ge "$heartbeat" ]; then
      _quiet=0
      say alive || exit 0
    fi
  done
}

{
  if [ -d "$spool_dir" ] && command -v inotifywait >/dev/null 2>&1; then
    watch_inotify
  fi
  watch_poll
} </dev/null 3<&- &

# The channel's end: end-of-file on its stdin.
cat <&3 >/dev/null 2>&1
trap '' TERM
kill -TERM 0 2>/dev/null
exit 0
