# mailhaul's server side: POSIX sh, run by engine::ssh's stub (cached on
# the server, checked by sha256) as
#   sh -c STUB sh COMMAND ARG...
# through engine::ssh, which hex-encodes every argument on the command line
# and decodes it in a prelude, so no user data ever appears in a shell
# command line; paths in the output are hex-encoded too. Output is one
# record per line, `KEY VALUE...`; the last line is `ok` on success or
# `error CLASS MESSAGE` on failure, with a matching exit status:
#   0 ok, 3 bad request, 10 lock busy, 11 server lacks a tool (the message
#   names the Debian package), 12 any other failure.
# Commands:
#   probe SPOOL                 facts the client chooses a strategy from
#   recover SPOOL               list this spool's finished claims
#   survey SPOOL                probe, then recover when the server can hash
#   claim SPOOL STRATEGY WAIT OWNER STALE
#                               take the spool under its dot-lock (STRATEGY is
#                               rename or copy-truncate, WAIT the lock wait in
#                               seconds, OWNER the client installation's id,
#                               12 hex digits, or empty, STALE the age in
#                               seconds past which a lock whose holder is not
#                               alive is removed, 0 or empty: never), then
#                               list every finished claim
#   claim SPOOL STRATEGY WAIT OWNER STALE METHOD LEVEL
#                               the same, then, when it claimed something
#                               and no other finished claim of OWNER (or of
#                               no owner) is waiting (those go first),
#                               `send HEXPATH` after the `ok` line and that
#                               claim streamed as `send` does: claim and
#                               transfer in one step
#   claim SPOOL STRATEGY WAIT OWNER STALE METHOD LEVEL FACTS
#                               the same, first answering the probe's facts
#                               and their key (`facts KEY`); when KEY is not
#                               FACTS (the key of the facts the client chose
#                               STRATEGY and METHOD from, kept from an
#                               earlier fetch), nothing is claimed and the
#                               answer ends `resurvey` and `ok`: the client
#                               chooses again from the facts just sent
#   claim SPOOL STRATEGY WAIT OWNER STALE METHOD LEVEL FACTS DICT MAX DLEVEL
#                               the same, and when METHOD is zstd and the
#                               claim is at most MAX bytes, with the cached
#                               dictionary whose sha256 is DICT (zstd -DLEVEL
#                               -D) if the copy here has that sha256: the
#                               line is then `send HEXPATH dict`, or, when
#                               the copy is missing or differs, `send HEXPATH
#                               dict-missing` and the claim without it
#   claim SPOOL STRATEGY WAIT OWNER STALE METHOD LEVEL FACTS DICT MAX DLEVEL PATH...
#                               the same, after deleting each claim PATH (as
#                               `release`, DICT MAX DLEVEL empty when no
#                               dictionary goes with it): claims an earlier
#                               fetch sent the release of without waiting
#   dict-put DICT               store the dictionary arriving zstd-compressed
#                               on fd 3 (the channel's stdin) beside the
#                               cached scripts, if its sha256 is DICT
#   send PATH METHOD LEVEL OFFSET PREFIX
#                               stream a claim (METHOD zstd, zstd-adapt
#                               (LEVEL is the lowest), gzip or cat; zstd at
#                               level 19 adds --long=24, for slow links;
#                               zstd runs in one thread, so that its output
#                               starts with the first block) from
#                               byte OFFSET (0 or empty: all of it), once
#                               its first OFFSET bytes are seen to have the
#                               sha256 PREFIX (the client's kept prefix of
#                               a download cut short; otherwise nothing is
#                               sent and the error is prefix-changed); its
#                               errors go to stderr, not the stream
#   release PATH                delete a claim the client has verified
#   standby SPOOL               resolve SPOOL, answer nothing, and work out
#                               what every claim step of it needs first (the
#                               facts and their key, the copy claims' names,
#                               the cached dictionaries' sha256),
#                               then wait for a command line on fd 3 (the
#                               channel's stdin): hex words as on the exec
#                               line, run as if they had come with it, with
#                               that work done (the client keeps one waiting
#                               on an open session, engine::ssh's standby);
#                               end-of-file there: exit, doing nothing
# SPOOL may be empty (the default spool) or start with `~/`.
# A claim never overwrites anything: claim files are created with O_EXCL
# (`set -C`) or link(2), which fail on an existing name. Only regular files
# owned by the login user with a single link (no symbolic links) are ever
# taken as claims: in a sticky, world-writable spool directory other users
# can create any name, but not a file of ours, nor remove or rename ours.

set -u
umask 077
PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:${PATH:-}
LC_ALL=C
export PATH LC_ALL

locked=
lockf=
# 1 once `standby` has resolved $ready_spool and worked out its facts.
ready=
ready_spool=
ready_rand=
ready_dicts=

say() { printf '%s\n' "$*"; }
# `send`'s stdout is the claim's bytes: its failures go to stderr, which the
# client quotes, instead of into the stream it decompresses.
stream=
fail() {
  if [ -n "$stream" ]; then say "error $1 $2" >&2; else say "error $1 $2"; fi
  exit "$3"
}
have() { command -v "$1" >/dev/null 2>&1; }
# The helpers below avoid forks where the shell alone can do the work: a
# claim step runs for every fetch, and on a loaded server each program
# started costs milliseconds (docs/bench-fetch.md, "The small fetch").
# Hex digits of the bytes a plain path is made of (keys are never in values).
hex_table=a61b62c63d64e65f66g67h68i69j6ak6bl6cm6dn6eo6fp70q71r72s73t74u75v76w77x78y79z7a
hex_table=${hex_table}A41B42C43D44E45F46G47H48I49J4aK4bL4cM4dN4eO4fP50Q51R52S53T54U55V56W57X58Y59Z5a-2d.2e/2f_5f
# Sets _hx to $1 hex-encoded: in the shell when it holds only letters,
# digits and -./_ (as paths mostly do), else with od.
hexv() {
  _hs=$1 _hx=
  case $_hs in
    *[!0-9A-Za-z./_-]*)
      set -- $(printf '%s' "$_hs" | od -An -v -tx1)
      for _hb do _hx=$_hx$_hb; done
      return ;;
  esac
  while [ -n "$_hs" ]; do
    _hr=${_hs#?}
    _hc=${_hs%"$_hr"}
    _hs=$_hr
    case $_hc in
      [0-9]) _hx=${_hx}3$_hc ;;
      *) _ht=${hex_table#*"$_hc"}; _hx=$_hx${_ht%"${_ht#??}"} ;;
    esac
  done
}
hex() { hexv "$1"; printf '%s\n' "$_hx"; }

# Sets _size to the size of file $1 (a symbolic link is followed).
size_of() {
  _size=$(wc -c < "$1") || return 1
  set -- $_size
  _size=${1-}
}
fsize() { size_of "$1" && printf '%s\n' "$_size"; }
# Sets _ino, _links, _uid and _size of a file itself (a symbolic link is not
# followed), from one ls.
lsn() {
  _ls=$(ls -ldni -- "$1" 2>/dev/null) || return 1
  set -f
  set -- $_ls
  set +f
  [ "$#" -ge 6 ] || return 1
  _ino=$1 _links=$3 _uid=$4 _size=$6
}
inode() { lsn "$1" && printf '%s\n' "$_ino"; }
# A regular file, not a symbolic link, owned by the login user (sets what
# lsn sets).
owned() {
  [ -f "$1" ] && [ ! -h "$1" ] && lsn "$1" && [ "$_uid" = "$uid" ]
}
# A claim of ours: owned, and no other name links to it.
mine() {
  owned "$1" && [ "$_links" = 1 ]
}
# Sets _dir and _base to what dirname and basename say of path $1.
split_path() {
  case $1 in
    *[!/]*) ;;
    '') _dir=. _base= ; return ;;
    *) _dir=/ _base=/ ; return ;;
  esac
  _p=${1%"${1##*[!/]}"}
  _base=${_p##*/}
  case $_p in
    */*) _dir=${_p%/*}; _dir=${_dir%"${_dir##*[!/]}"}; [ -n "$_dir" ] || _dir=/ ;;
    *) _dir=. ;;
  esac
}
sync_path() { sync -- "$1" 2>/dev/null || sync; }

# The sha256 of stdin, lower-case hex.
sha256_in() {
  if have sha256sum; then sha256sum | cut -c1-64
  elif have shasum; then shasum -a 256 | cut -c1-64
  elif have sha256; then sha256 -q
  elif have openssl; then openssl dgst -sha256 | sed 's/^.*= *//'
  else return 1
  fi
}

sha256_of() { sha256_in < "$1"; }

# Sets _sum to the sha256 of file $1 (sha256sum without a pipe when here).
sum_of() {
  if [ "$hasher" = sha256sum ]; then
    _sum=$(sha256sum < "$1") || return 1
    _sum=${_sum%% *}
  else
    _sum=$(sha256_in < "$1") || return 1
  fi
}

# Sets spool, spool_dir, base, cdir (copy claims), user from the SPOOL argument.
resolve() {
  # Done already by standby for this spool.
  if [ "$ready" = 1 ] && [ "$1" = "$ready_spool" ]; then return 0; fi
  ready=
  # One id for both: `uid=N(NAME) ...` (POSIX's format), else id -un, id -u.
  _id=$(id)
  case $_id in
    'uid='[0-9]*'('*')'*)
      _id=${_id#uid=}
      uid=${_id%%"("*}
      user=${_id#*"("}
      user=${user%%")"*} ;;
    *) user=$(id -un); uid=$(id -u) ;;
  esac
  HOME=${HOME:-$(cd ~ && pwd)}
  case $1 in
    '') spool=
        for s in "/var/mail/$user" "/var/spool/mail/$user"; do
          if [ -e "$s" ]; then spool=$s; break; fi
        done
        if [ -z "$spool" ]; then
          if [ -d /var/mail ]; then spool=/var/mail/$user; else spool=/var/spool/mail/$user; fi
        fi ;;
    '~/'*) spool=$HOME/${1#'~/'} ;;
    /*) spool=$1 ;;
    *) fail bad-request "spool path must be absolute or start with ~/" 3 ;;
  esac
  split_path "$spool"
  spool_dir=$_dir
  base=$_base
  cdir=$HOME/.mailhaul/claims
  lockf=$spool.lock
}

# Sets cprefix: copy claims of this spool are $cprefix.ID.part/.mbox in
# $cdir, named after the spool plus a hash of its canonical path, so that
# spools of one login with the same name in different directories never
# see (recover, repair, send) each other's claims. Needs a sha256 tool.
set_cprefix() {
  if [ "$ready" = 1 ] && [ -n "${cprefix-}" ]; then return 0; fi
  if _canon=$(cd -- "$spool_dir" 2>/dev/null && pwd -P); then
    _canon=$_canon/$base
  else
    _canon=$spool
  fi
  if [ "$hasher" = sha256sum ]; then
    _pkey=$(printf '%s' "$_canon" | sha256sum)
  else
    _pkey=$(printf '%s' "$_canon" | sha256_in)
  fi
  _pkey=${_pkey%"${_pkey#????????????}"}
  [ "${#_pkey}" = 12 ] || fail unsupported "no sha256 tool (install coreutils)" 11
  cprefix=$cdir/$base.$_pkey
}

# A claim's id: time, pid, randomness, and `-o` + the owner's id when the
# client gave one (a client only takes its own claims and unowned ones).
new_id() {
  if [ -n "$ready_rand" ]; then
    set -- "$ready_rand"
    ready_rand=
  else
    set -- $(od -An -N4 -tu4 /dev/urandom)
  fi
  id=$(date -u +%Y%m%dT%H%M%S)-$$-${1-}${owner:+-o$owner}
}

# True when the process with pid $1 runs (also one of another user, which
# kill -0 cannot signal).
alive() {
  [ "$1" -gt 0 ] 2>/dev/null || return 1
  kill -0 "$1" 2>/dev/null || [ -d "/proc/$1" ] || ps -p "$1" >/dev/null 2>&1
}

# True when the existing dot-lock is stale as Postfix's local(8) judges it:
# untouched for more than $stale seconds (stale_lock_time, 0: never), and,
# when it holds a process id (dotlockfile -p, liblockfile), that process is
# not running here. Sets _age and _holder for the log, _stale_ino to the
# lock's inode.
stale_lock() {
  case $stale in ''|0) return 1 ;; esac
  [ -f "$lockf" ] && [ ! -h "$lockf" ] || return 1
  _now=$(date +%s 2>/dev/null) || return 1
  _mt=$(stat -c %Y -- "$lockf" 2>/dev/null || stat -f %m -- "$lockf" 2>/dev/null) || return 1
  case $_now:$_mt in *[!0-9:]* | :* | *:) return 1 ;; esac
  _age=$((_now - _mt))
  [ "$_age" -gt "$stale" ] || return 1
  _holder=$(head -n 1 -- "$lockf" 2>/dev/null | tr -d ' \t\r')
  case $_holder in
    '') _holder=none ;;
    *[!0-9]*) _holder=unreadable ;;
    *) if alive "$_holder"; then return 1; fi
       _holder="pid-$_holder" ;;
  esac
  _stale_ino=$(inode "$lockf")
}

# Removes a stale dot-lock (see stale_lock) with what may remove it here:
# dotlockfile or procmail's lockfile (setgid mail) in a spool directory the
# user cannot write, else rm. Says `stale-lock HEXPATH AGE HOLDER`.
break_stale_lock() {
  # Not the lock judged a moment ago any more: leave it to the next round.
  [ "$(inode "$lockf" 2>/dev/null)" = "$_stale_ino" ] || return 1
  case $1 in
    dotlockfile) dotlockfile -u "$lockf" 2>/dev/null || rm -f -- "$lockf" 2>/dev/null ;;
    lockfile)
      if [ "$spool" = "/var/mail/$user" ] || [ "$spool" = "/var/spool/mail/$user" ]; then
        lockfile -mu 2>/dev/null || rm -f -- "$lockf" 2>/dev/null
      else rm -f -- "$lockf" 2>/dev/null; fi ;;
    *) rm -f -- "$lockf" 2>/dev/null ;;
  esac
  [ ! -e "$lockf" ] || return 1
  say "stale-lock $(hex "$lockf") $_age $_holder"
}

# Takes the dot-lock with the given method, waiting up to $wait seconds.
# dotlockfile (liblockfile) removes a lock it deems stale (older than 5
# minutes, or holding the pid of a dead process); the helpers are only run
# when no lock exists, so that no other rule than stale_lock_time (Postfix's,
# see stale_lock) ever breaks anyone's lock: an existing lock is waited on,
# removed once it is stale by that rule, else reported.
lock() {
  _i=0
  _broken=
  while :; do
    if [ -e "$lockf" ] && stale_lock; then
      break_stale_lock "$1" || _broken=" (stale after ${stale}s, but it could not be removed)"
    fi
    case $1 in
      excl)
        if (set -C; printf '%s\n' "$$" > "$lockf") 2>/dev/null; then locked=excl; return 0; fi
        [ -d "$spool_dir" ] && [ -w "$spool_dir" ] ||
          fail failed "cannot create $lockf: the spool directory is not writable" 12 ;;
      dotlockfile)
        if [ ! -e "$lockf" ]; then
          _rc=0
          _err=$(dotlockfile -p -r 0 -l "$lockf" 2>&1) || _rc=$?
          if [ "$_rc" -eq 0 ]; then locked=dotlockfile; return 0; fi
          # Exit 4 (L_MAXTRYS) means another program held the lock at that
          # moment: a delivery agent may take and release it between our
          # look and dotlockfile's try, so it is waited on like a lock seen.
          [ "$_rc" -eq 4 ] || [ -e "$lockf" ] ||
            fail failed "dotlockfile could not lock $lockf (exit $_rc): $_err" 12
        fi ;;
      lockfile)
        if [ ! -e "$lockf" ]; then
          if [ "$spool" = "/var/mail/$user" ] || [ "$spool" = "/var/spool/mail/$user" ]; then
            if _err=$(lockfile -r 0 -ml 2>&1); then locked=lockfile-ml; return 0; fi
          elif _err=$(lockfile -r 0 "$lockf" 2>&1); then locked=excl; return 0; fi
          [ -e "$lockf" ] || fail failed "lockfile could not lock $lockf: $_err" 12
        fi ;;
    esac
    if [ "$_i" -ge "$wait" ]; then
      _age=
      if _m=$(ls -ld -- "$lockf" 2>/dev/null); then _age=" (lock: ${_m#* * * * * })"; fi
      fail lock-busy "$lockf is held by another program; waited ${wait}s$_age$_broken" 10
    fi
    _i=$((_i + 1))
    sleep 1
  done
}

unlock() {
  case $locked in
    excl) rm -f -- "$lockf" ;;
    dotlockfile) dotlockfile -u "$lockf" ;;
    lockfile-ml) lockfile -mu ;;
  esac
  locked=
}

# Under the lock: finishes or undoes claims cut short by a crash of this
# script (a power loss on the server; a dropped connection does not stop it).
repair() {
  # rename: link made, spool not yet removed -> finish the rename.
  for f in "$spool".mailhaul-claim.*; do
    owned "$f" || continue
    if [ -e "$spool" ] && [ "$(inode "$f")" = "$(inode "$spool")" ]; then
      rm -f -- "$spool"
      say "repaired $(hex "$f") renamed"
    fi
  done
  # copy-truncate: a .part that is still the spool's prefix was not truncated
  # yet (or the copy was cut short): the spool keeps the mail, drop the copy.
  # Otherwise the spool was truncated after a complete copy: finish the claim.
  for p in "$cprefix".*.part; do
    owned "$p" || continue
    _ps=$(fsize "$p")
    if [ -e "$spool" ] && [ "$(fsize "$spool")" -ge "$_ps" ] &&
       head -c "$_ps" -- "$spool" | cmp -s - "$p"; then
      rm -f -- "$p"
      say "repaired $(hex "$p") dropped"
    else
      ln -- "$p" "${p%.part}.mbox" && rm -f -- "$p" ||
        fail failed "cannot finish interrupted claim $p" 12
      say "repaired $(hex "${p%.part}.mbox") finished"
    fi
  done
}

# Nothing to claim and nothing to repair: then the lock is not taken, so a
# delivery agent arriving now is not made to back off (procmail waits about
# 8 s for a busy lock). Mail it appends meanwhile waits for the next fetch,
# as it would behind the lock.
idle_spool() {
  [ ! -s "$spool" ] && ! repair_due
}

# True when an interrupted claim of this spool is waiting for `repair`.
repair_due() {
  for f in "$spool".mailhaul-claim.*; do
    owned "$f" && [ -e "$spool" ] && [ "$(inode "$f")" = "$(inode "$spool")" ] && return 0
  done
  for p in "$cprefix".*.part; do
    owned "$p" && return 0
  done
  return 1
}

# Prints `claim HEXPATH SIZE SHA256` for every finished claim of this spool,
# and `ignored HEXPATH` for anything named like one that is not the user's
# regular file (another user's file, a symbolic link, a directory), which is
# never opened.
list_claims() {
  for f in "$cprefix".*.mbox "$spool".mailhaul-claim.*; do
    if mine "$f"; then
      _fsz=$_size
      sum_of "$f" || fail unsupported "no sha256 tool (install coreutils)" 11
      if [ "$f" = "${claim-}" ]; then
        _h=$claim_hex
        claim_size=$_fsz
      else
        hexv "$f"
        _h=$_hx
      fi
      say "claim $_h $_fsz $_sum"
    elif [ -h "$f" ] || { [ -e "$f" ] && ! owned "$f"; }; then
      hexv "$f"
      say "ignored $_hx"
    fi
    # Files of ours with a second link are claims cut short: left to repair.
  done
}

need_hasher() {
  have sha256sum || have shasum || have sha256 || have openssl ||
    fail unsupported "no sha256 tool on the server (install coreutils)" 11
}

# The probe's facts (`resolve` first), and `facts KEY`: a checksum of all of
# them but the spool's size and count, which the client keeps with them, so
# that a later claim step can check that nothing it chose from has changed.
# (The key's lines are the same as when the size and count were among
# them, so a key kept from an earlier version of this script still holds.)
facts() {
  [ "$ready" = 1 ] || facts_key
  say "$_f"
  if [ -f "$spool" ]; then
    size_of "$spool"
    say "spool-size $_size"
    # From_ lines: the message count of an mbox (bodies quote theirs).
    if [ -r "$spool" ]; then say "spool-messages $(grep -c '^From ' "$spool")"; fi
  else
    say "spool-size missing"
  fi
  say "facts $_key"
}

# Sets _f to the facts but the spool's size and count, and _key to their
# checksum.
facts_key() {
  if have zstd; then _zv=$(zstd -V 2>/dev/null); fi
  _f=$(facts_lines)
  set -- $(printf '%s\n' "$_f" | cksum)
  _key=${1-}-${2-}
}

# The facts but the spool's size and count.
facts_lines() {
  hexv "$user"
  say "user $_hx"
  hexv "$HOME"
  say "home $_hx"
  hexv "$spool"
  say "spool $_hx"
  if [ -h "$spool" ]; then say "spool-symlink 1"; fi
  # World-writable (others may create, and without the sticky bit also
  # remove or rename, names there) and sticky (t) bits of the directory:
  # the mode's characters 9 and 10.
  _m=$(ls -ld -- "$spool_dir/" 2>/dev/null)
  case ${_m#????????} in
    w[tT]*) say "spool-dir-shared sticky" ;;
    w?*) say "spool-dir-shared open" ;;
  esac
  if [ -w "$spool_dir" ]; then say "spool-dir-writable 1"; else say "spool-dir-writable 0"; fi
  if [ ! -e "$spool" ] || [ -w "$spool" ]; then say "spool-writable 1"; else say "spool-writable 0"; fi
  for t in dotlockfile lockfile zstd gzip; do
    if have "$t"; then say "tool $t 1"; else say "tool $t 0"; fi
  done
  if have sha256sum || have shasum || have sha256 || have openssl; then say "tool sha256 1"; else say "tool sha256 0"; fi
  if have head && have cmp; then say "tool head-cmp 1"; else say "tool head-cmp 0"; fi
  if have zstd; then
    # The digits and dots after the last `v` followed by a digit.
    case $_zv in
      *v[0-9]*) _v=${_zv%v[0-9]*}; _v=${_zv#"$_v"v}; _v=${_v%%[!0-9.]*} ;;
      *) _v= ;;
    esac
    say "zstd-version $_v"
  fi
}

# A claim step ahead of need: what the next step on SPOOL needs is worked
# out while the link is idle, then the step's command line is awaited on
# fd 3 (checked to be hex words, decoded by the stub's prelude function).
# The facts may then be as old as the client lets a standby wait; the
# claim step checks its strategy's needs again when it runs.
cmd_standby() {
  resolve "$1"
  ready_spool=$1
  facts_key
  if have sha256sum || have shasum || have sha256 || have openssl; then set_cprefix; hash_dicts; fi
  set -- $(od -An -N4 -tu4 /dev/urandom)
  ready_rand=${1-} ready=1
  IFS= read -r _go <&3 || exit 0
  case $_go in
    x*) ;;
    *) fail bad-request "no command after standby" 3 ;;
  esac
  case $_go in *[!0-9a-fx' ']*) fail bad-request "the command after standby must be hex words" 3 ;; esac
  set -f
  set -- $_go
  set +f
  mh_args "$@"
  eval "$mh_f"
  unset mh_a mh_h mh_f mh_r mh_n
  main "$@"
}

cmd_probe() {
  resolve "$1"
  facts
  say ok
}

# probe and recover in one step (one exec less before the mail flows).
cmd_survey() {
  resolve "$1"
  facts
  if have sha256sum || have shasum || have sha256 || have openssl; then
    set_cprefix
    list_claims
  fi
  say ok
}

cmd_recover() {
  resolve "$1"
  need_hasher
  set_cprefix
  list_claims
  say ok
}

cmd_claim() {
  resolve "$1"
  strategy=$2
  wait=$3
  owner=$4
  stale=$5
  claim=
  case $wait in ''|*[!0-9]*) fail bad-request "lock wait must be a number of seconds" 3 ;; esac
  case $stale in *[!0-9]*) fail bad-request "stale lock time must be a number of seconds" 3 ;; esac
  case $owner in *[!0-9a-f]*) fail bad-request "owner must be hex digits" 3 ;; esac
  if [ -n "${9:-}" ]; then
    case $9 in *[!0-9a-f]*) fail bad-request "dictionary must be a sha256" 3 ;; esac
    [ "${#9}" = 64 ] || fail bad-request "dictionary must be a sha256" 3
    case ${10:-}:${11:-} in
      *[!0-9:]* | :* | *:) fail bad-request "dictionary size and level must be numbers" 3 ;;
    esac
  fi
  if [ -n "$8" ]; then
    facts
    if [ "$_key" != "$8" ]; then say resurvey; say ok; return; fi
  fi
  need_hasher
  set_cprefix
  have head && have cmp || fail unsupported "head and cmp are missing (install coreutils and diffutils)" 11
  trap unlock EXIT
  trap 'exit 12' HUP INT TERM PIPE
  case $strategy in
    rename)
      [ -w "$spool_dir" ] ||
        fail unsupported "rename needs a writable spool directory; $spool_dir is not (use copy-truncate)" 11
      [ ! -h "$spool" ] ||
        fail unsupported "$spool is a symbolic link: renaming it would move the link and leave the mail where it points (use copy-truncate)" 11
      if idle_spool; then say "empty"; list_claims; say ok; return; fi
      lock excl
      repair
      if [ -s "$spool" ]; then
        while :; do
          new_id
          claim=$spool.mailhaul-claim.$id
          [ -e "$claim" ] && continue
          ln -- "$spool" "$claim" 2>/dev/null && break
          [ -e "$claim" ] || [ -h "$claim" ] || fail failed "cannot link $spool to $claim" 12
        done
        # The new name is the spool's own inode and ours (O_EXCL-like link(2)
        # made it; nobody may have swapped it since).
        owned "$claim" && _ci=$_ino && lsn "$spool" && [ "$_ino" = "$_ci" ] ||
          fail failed "$claim is not the link to $spool just made; nothing claimed" 12
        rm -f -- "$spool" || fail failed "cannot remove $spool after linking it to $claim" 12
        sync_path "$spool_dir"
        hexv "$claim"
        claim_hex=$_hx
        say "claimed $claim_hex"
      else
        say "empty"
      fi ;;
    copy-truncate)
      if have dotlockfile; then method=dotlockfile
      elif have lockfile; then method=lockfile
      else fail unsupported "copy-truncate needs dotlockfile or lockfile to take the mail spool lock: install liblockfile-bin (or procmail)" 11
      fi
      if [ -e "$spool" ] && [ ! -w "$spool" ]; then
        fail unsupported "$spool is not writable by $user, so it cannot be truncated" 11
      fi
      mkdir -p -- "$cdir" && chmod 700 -- "$HOME/.mailhaul" "$cdir" ||
        fail failed "cannot create $cdir" 12
      if idle_spool; then say "empty"; list_claims; say ok; return; fi
      # dotlockfile refuses to lock a mailbox that does not exist. Without a
      # spool now, nothing is claimed, even if an MDA creates one meanwhile
      # (unlocked, it could be mid-append): that mail waits for the next fetch.
      if [ -e "$spool" ]; then lock "$method"; has_mail=1; else has_mail=0; fi
      repair
      if [ "$has_mail" = 1 ] && [ -s "$spool" ]; then
        while :; do
          new_id
          part=$cprefix.$id.part
          claim=$cprefix.$id.mbox
          [ -e "$claim" ] && continue
          # Made with O_EXCL: another run's name is left alone, a new one picked.
          (set -C; : > "$part") 2>/dev/null && break
          [ -e "$part" ] || [ -h "$part" ] || fail failed "cannot create $part" 12
        done
        # The name is ours: a copy that fails (a full disk) is removed and
        # named, and the spool keeps the mail. (Retrying under new names
        # made empty files without end while the lock held the MDA off.)
        if ! err=$(cat -- "$spool" 2>&1 >> "$part"); then
          rm -f -- "$part"
          fail failed "cannot copy $spool to $part: $err" 12
        fi
        sync_path "$part"
        size_of "$part" && _ps=$_size && size_of "$spool" || _ps=x
        if [ "$_ps" != "$_size" ]; then
          rm -f -- "$part"
          fail failed "$spool changed while it was copied, although locked; nothing claimed" 12
        fi
        : >| "$spool" || { rm -f -- "$part"; fail failed "cannot truncate $spool" 12; }
        sync_path "$spool"
        ln -- "$part" "$claim" && rm -f -- "$part" ||
          fail failed "cannot name claim $claim (it is safe as $part)" 12
        sync_path "$cdir"
        hexv "$claim"
        claim_hex=$_hx
        say "claimed $claim_hex"
      else
        say "empty"
      fi ;;
    *) fail bad-request "unknown strategy $strategy" 3 ;;
  esac
  unlock
  list_claims
  say ok
  # Claim and transfer in one step: the lock is already released.
  if [ -n "$6" ] && [ -n "$claim" ] && ! others_waiting; then
    dict_for "$claim" "$6" "${9:-}" "${10:-}"
    if [ -n "$dict" ]; then
      say "send $claim_hex dict"
      stream=1
      zstd_streaming
      exec zstd -q -c "-${11}" -D "$dict" $_st -- "$claim"
    fi
    say "send $claim_hex$dict_said"
    # The claim this run just made and listed as its own: not checked again.
    cmd_send "$claim" "$6" "$7"
  fi
}

# Sets _st to --single-thread where zstd knows it (1.3.4 and later): those
# versions compress in a second thread by default, which holds back the
# first output until a whole job is done (0.8 s for a 4.9 MB spool at -19
# --long here, a whole second of a slow link left idle); one thread writes
# each block as soon as it is compressed. Older ones have only that mode.
# (--adapt needs the second thread and keeps it.)
zstd_streaming() {
  case ${_zv-$(zstd -V 2>/dev/null)} in
    *' v0.'* | *' v1.'[0-2].* | *' v1.3.'[0-3],* | *' v1.3.'[0-3]' '*) _st= ;;
    *) _st=--single-thread ;;
  esac
}

# The cached dictionary whose sha256 is $1 (dict-put stores it).
dict_path() {
  _dp=$HOME/.mailhaul/scripts/dict-${1%"${1#????????????????}"}.zdict
}

# Sets dict to the cached dictionary for claim $1 sent with method $2 when
# the client named one ($3, its sha256) for claims of at most $4 bytes and
# the copy here has that sha256; else dict_said is ` dict-missing` when
# one was named and would have been used, and empty otherwise.
dict_for() {
  dict= dict_said=
  [ "$2" = zstd ] && [ -n "$3" ] || return 0
  # The claim's size as list_claims saw it, if it listed it.
  if [ "$1" = "${claim-}" ] && [ -n "${claim_size-}" ]; then _size=$claim_size; else size_of "$1"; fi
  [ "$_size" -le "$4" ] || return 0
  dict_path "$3"
  if [ -f "$_dp" ] && [ ! -h "$_dp" ] && dict_sum_is "$3"; then
    dict=$_dp
  else
    dict_said=" dict-missing"
  fi
}

# True when the cached dictionary $_dp has the sha256 $1: as standby hashed
# it while the link was idle (a copy is only ever replaced by one with the
# same sha256), else hashed now.
dict_sum_is() {
  case " $ready_dicts " in
    *" $_dp=$1 "*) return 0 ;;
  esac
  sum_of "$_dp" && [ "$_sum" = "$1" ]
}

# Sets ready_dicts to `PATH=SHA256` of every cached dictionary (PATH
# without a space: the names dict_path makes, under a $HOME without one).
hash_dicts() {
  ready_dicts=
  case $HOME in *[[:space:]]*) return 0 ;; esac
  for _d in "$HOME"/.mailhaul/scripts/dict-*.zdict; do
    [ -f "$_d" ] && [ ! -h "$_d" ] && sum_of "$_d" && ready_dicts="$ready_dicts $_d=$_sum"
  done
}

cmd_dict_put() {
  case $1 in *[!0-9a-f]* | '') fail bad-request "dictionary must be a sha256" 3 ;; esac
  [ "${#1}" = 64 ] || fail bad-request "dictionary must be a sha256" 3
  have zstd || fail unsupported "no zstd on the server" 11
  need_hasher
  HOME=${HOME:-$(cd ~ && pwd)}
  _dd=$HOME/.mailhaul/scripts
  mkdir -p -- "$_dd" && chmod 700 -- "$HOME/.mailhaul" "$_dd" || fail failed "cannot create $_dd" 12
  _t=$_dd/.dict.$$
  if ! zstd -q -dc <&3 > "$_t"; then rm -f -- "$_t"; fail failed "the dictionary did not decompress" 12; fi
  [ "$(sha256_of "$_t")" = "$1" ] || { rm -f -- "$_t"; fail failed "the dictionary arrived damaged (its sha256 differs)" 12; }
  # Other dictionaries (another machine's, older ones) untouched for 30 days go.
  find "$_dd" -name 'dict-*.zdict' -mtime +30 -exec rm -f {} + 2>/dev/null
  dict_path "$1"
  mv -f -- "$_t" "$_dp" || { rm -f -- "$_t"; fail failed "cannot store the dictionary" 12; }
  say stored
  say ok
}

# True when a finished claim other than $claim is one the client takes
# (made by OWNER or by no installation): leftovers are fetched first.
others_waiting() {
  _x='[0-9a-f]'
  _o=$_x$_x$_x$_x$_x$_x$_x$_x$_x$_x$_x$_x
  for f in "$cprefix".*.mbox "$spool".mailhaul-claim.*; do
    [ "$f" != "$claim" ] && mine "$f" || continue
    case ${f%.mbox} in
      *-o"$owner") return 0 ;;
      *-o$_o) ;;
      *) return 0 ;;
    esac
  done
  return 1
}

# A claim path this script made, and nothing else: guards send and release.
check_claim_path() {
  case $1 in
    */.mailhaul/claims/*.mbox | *.mailhaul-claim.*) ;;
    *) fail bad-request "not a claim path" 3 ;;
  esac
  case $1 in */../* | *'/..') fail bad-request "not a claim path" 3 ;; esac
  uid=$(id -u)
  mine "$1" || fail missing "no such claim" 12
}

cmd_send() {
  stream=1
  case $3 in ''|*[!0-9]*) fail bad-request "level must be a number" 3 ;; esac
  case $2 in zstd|zstd-adapt|gzip|cat) ;; *) fail bad-request "unknown method $2" 3 ;; esac
  off=${4:-0}
  case $off in ''|*[!0-9]*) fail bad-request "offset must be a number" 3 ;; esac
  # Level 19 is for slow links: --long finds the repeats of a big spool.
  _long=
  if [ "$3" -ge 19 ]; then _long=--long=24; fi
  zstd_streaming
  if [ "$off" = 0 ]; then
    case $2 in
      zstd) exec zstd -q -c "-$3" $_long $_st -- "$1" ;;
      zstd-adapt) exec zstd -q -c "--adapt=min=$3,max=19" -- "$1" ;;
      gzip) exec gzip -c "-$3" < "$1" ;;
      cat) exec cat -- "$1" ;;
    esac
  fi
  # Resume: only the rest, and only of the claim whose prefix the client
  # holds (a claim that is not the same file is never mixed into it).
  case $5 in *[!0-9a-f]*|'') fail bad-request "prefix must be a sha256" 3 ;; esac
  [ "$(fsize "$1")" -gt "$off" ] || fail prefix-changed "the claim is not longer than $off bytes" 12
  _pre=$(head -c "$off" -- "$1" | sha256_in) || fail unsupported "no sha256 tool (install coreutils)" 11
  [ "$_pre" = "$5" ] || fail prefix-changed "the claim's first $off bytes are not the client's" 12
  case $2 in
    zstd) tail -c "+$((off + 1))" -- "$1" | zstd -q -c "-$3" $_long $_st ;;
    zstd-adapt) tail -c "+$((off + 1))" -- "$1" | zstd -q -c "--adapt=min=$3,max=19" ;;
    gzip) tail -c "+$((off + 1))" -- "$1" | gzip -c "-$3" ;;
    cat) tail -c "+$((off + 1))" -- "$1" ;;
  esac
}

# Deletes the claim PATH the client has filed (nothing when it is gone).
release_claim() {
  case $1 in
    */.mailhaul/claims/*.mbox | *.mailhaul-claim.*) ;;
    *) fail bad-request "not a claim path" 3 ;;
  esac
  case $1 in */../* | *'/..') fail bad-request "not a claim path" 3 ;; esac
  if [ -e "$1" ] || [ -h "$1" ]; then
    mine "$1" || fail bad-request "not a claim of this login" 3
    rm -f -- "$1" || fail failed "cannot remove $1" 12
    split_path "$1"
    sync_path "$_dir"
  fi
}

cmd_release() {
  uid=$(id -u)
  release_claim "$1"
  say released
  say ok
}

main() {
  [ "$#" -ge 1 ] || fail bad-request "no command" 3
  hasher=
  if have sha256sum; then hasher=sha256sum; fi
  command=$1
  arg1=${2:-} arg2=${3:-} arg3=${4:-} arg4=${5:-} arg5=${6:-} arg6=${7:-} arg7=${8:-} arg8=${9:-}
  arg9=${10:-} arg10=${11:-} arg11=${12:-}
  case $command in
    probe) cmd_probe "$arg1" ;;
    survey) cmd_survey "$arg1" ;;
    recover) cmd_recover "$arg1" ;;
    claim)
      # Arguments after the eleventh: claims whose release an earlier fetch
      # sent without waiting for it; deleted first, so that they are not
      # listed and hold back no stream even if that request has not run yet.
      if [ "$#" -gt 12 ]; then
        shift 12
        uid=$(id -u)
        for _r in "$@"; do release_claim "$_r"; done
      fi
      cmd_claim "$arg1" "$arg2" "$arg3" "$arg4" "$arg5" "$arg6" "$arg7" "$arg8" "$arg9" "$arg10" "$arg11" ;;
    dict-put) cmd_dict_put "$arg1" ;;
    send) stream=1; check_claim_path "$arg1"; cmd_send "$arg1" "$arg2" "$arg3" "$arg4" "$arg5" ;;
    release) cmd_release "$arg1" ;;
    standby) cmd_standby "$arg1" ;;
    *) fail bad-request "unknown command $command" 3 ;;
  esac
}

main "$@"
