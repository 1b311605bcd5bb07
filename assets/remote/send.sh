# send.sh: the server's half of `mailhaul send`: hands queued messages to the
# server's own sendmail, each exactly once.
#
# Run by mailhaul as a long script (see src/engine/outbox/relay.rs): the
# arguments arrive hex-encoded on a fixed command line, this text from the
# server's cached copy (checked by sha256; sent first when it is missing or
# different), and the messages on fd 3 (the channel's stdin) only after this
# script has said `ready`.
#
# Arguments: $1 protocol version (2); $2 the compressors the client can
# produce, best first ("xz zstd gzip", or "none"); $3 the sendmail command's
# path (empty: /usr/sbin/sendmail, /usr/lib/sendmail, /usr/bin/sendmail,
# else the PATH's).
#
# Protocol on fd 3: one stream, compressed as `ready` said, of groups of
# messages, each:
#   g COUNT                      the group's table: COUNT lines of
#   ID LEN xFROM xNAME xRCPT...  id (hex), size, envelope (hex-encoded as
#                                on the command line), one per message
#   BYTES                        the messages' bytes, one after the other
#                                (each LEN long, in the table's order)
#   v SHA256                     sha256 of the table's lines and all the
#                                bytes, as the client read them
# Nothing of a group reaches sendmail before its `v` line arrived and the
# sha256 of what was written here is that one; a stream that ends inside a
# group (the client died, the link broke) leaves that group unsent.
# Replies on stdout, one line per message:
#   ok ID                       sendmail exited 0 and the ledger says so
#   dup ID                      the ledger says it was accepted before
#   unsure ID                   an earlier run began it and died before it
#                               learnt sendmail's answer: not sent again
#   bad ID WHY                  the upload did not verify (the client retries)
#   fail ID STATUS HEXTEXT      sendmail refused it: its exit status and words
#
# Exactly once: every message's state is in the ledger
# ($HOME/.mailhaul/sent-ledger), read and written under one flock held for
# the whole run: `begin ID` is written and synced before sendmail runs,
# `done ID` (exit 0) or `undo ID` (refused) after it, synced again. A cut
# link cannot stop this script between sendmail's acceptance and the ledger
# line (HUP, PIPE, INT and TERM are ignored, and sendmail reads a file, not
# the link); only a kill -9 or a crash of the server can, and then the
# `begin` without an outcome makes any retry answer `unsure` instead of
# sending twice. An ID is the first 64 bits of the outbox's 128-bit id;
# a ledger line of protocol 1 (the whole id) counts for the id it starts
# with.

trap '' HUP INT PIPE TERM
umask 077
if [ "$1" != 2 ]; then
  echo "error version this server script speaks protocol 2, not $1"
  exit 2
fi
mh_dir=$HOME/.mailhaul
mh_out=$mh_dir/outgoing
mh_ledger=$mh_dir/sent-ledger
if ! mkdir -p "$mh_out" 2>/dev/null; then
  echo "error setup cannot create $mh_out"
  exit 1
fi
mh_sm=$3
if [ -n "$mh_sm" ]; then
  if [ ! -x "$mh_sm" ]; then
    echo "error nosendmail the configured sendmail $mh_sm is not an executable file"
    exit 1
  fi
else
  for mh_c in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/sendmail; do
    if [ -x "$mh_c" ]; then
      mh_sm=$mh_c
      break
    fi
  done
  if [ -z "$mh_sm" ]; then
    mh_sm=$(command -v sendmail 2>/dev/null) || mh_sm=
  fi
  if [ -z "$mh_sm" ]; then
    echo "error nosendmail the server has no sendmail command (Postfix, Exim and OpenSMTPD provide one)"
    exit 1
  fi
fi
if ! command -v flock >/dev/null 2>&1; then
  echo "error noflock the server has no flock (package util-linux)"
  exit 1
fi
if command -v sha256sum >/dev/null 2>&1; then
  mh_hash="sha256sum"
elif command -v shasum >/dev/null 2>&1; then
  mh_hash="shasum -a 256"
else
  echo "error nosha256 the server has neither sha256sum nor shasum"
  exit 1
fi
mh_z=none
for mh_c in $2; do
  case $mh_c in
    xz | zstd | gzip)
      if command -v "$mh_c" >/dev/null 2>&1; then
        mh_z=$mh_c
        break
      fi
      ;;
  esac
done
exec 9>>"$mh_ledger.lock"
if ! flock -w 60 9; then
  echo "error busy another mailhaul has been sending for this login for 60 s"
  exit 75
fi
: >>"$mh_ledger"

# The envelope's values are decoded without a fork where the shell alone
# can do it: every message of a step pays for each program started, and on
# a loaded server each costs milliseconds.
# Prints hex value $1 (an x first) decoded, and an x (so that $(...) keeps
# a final line break): any byte but NUL, in a subshell.
mh_unhex() {
  mh_h=${1#x} mh_f=
  while [ -n "$mh_h" ]; do
    mh_r=${mh_h#??}
    mh_n=$((0x${mh_h%"$mh_r"}))
    mh_f="$mh_f\\$((mh_n / 64))$((mh_n / 8 % 8))$((mh_n % 8))"
    mh_h=$mh_r
  done
  printf "${mh_f}x"
}
# Sets mh_v to hex value $1 (an x first) decoded: in the shell when every
# byte is printable ASCII (as addresses and names mostly are), else by
# mh_unhex. Byte N (0x20 to 0x7e) is the positional parameter N - 31 of
# the `set --` below; eval is given only that number.
mh_unhexv() {
  mh_h=${1#x} mh_v= mh_in=$1
  set -- ' ' '!' '"' '#' '$' '%' '&' \' '(' ')' '*' '+' ',' '-' '.' '/' 0 1 2 3 4 5 6 7 8 9 ':' ';' '<' '=' '>' '?' '@' A B C D E F G H I J K L M N O P Q R S T U V W X Y Z '[' '\' ']' '^' '_' '`' a b c d e f g h i j k l m n o p q r s t u v w x y z '{' '|' '}' '~'
  while [ -n "$mh_h" ]; do
    mh_r=${mh_h#??}
    case ${mh_h%"$mh_r"} in
      [2-7][0-9a-f]) mh_o=$((0x${mh_h%"$mh_r"} - 31)) ;;
      *) mh_o=0 ;;
    esac
    if [ "$mh_o" -lt 1 ] || [ "$mh_o" -gt 95 ]; then
      mh_v=$(mh_unhex "$mh_in")
      mh_v=${mh_v%x}
      return
    fi
    eval "mh_c=\${$mh_o}"
    mh_v=$mh_v$mh_c
    mh_h=$mh_r
  done
}
mh_sync() {
  sync "$mh_ledger" 2>/dev/null || sync
}
mh_decompress() {
  case $mh_z in
    xz) xz -dcq ;;
    zstd) zstd -dcq ;;
    gzip) gzip -dc ;;
    *) cat ;;
  esac
}

echo "ready $mh_z"
mh_group=$mh_out/group
# Each message of the table on fd 5: the id, its file, its size, its envelope.
mh_each() {
  while read -r mh_id mh_len mh_rest <&5; do
    mh_t=$mh_out/$mh_id
    "$@"
  done 5<"$mh_group"
}
mh_drop() {
  rm -f "$mh_t"
}
mh_bad() {
  echo "bad $mh_id $mh_why"
  rm -f "$mh_t"
}
mh_receive() {
  head -c "$mh_len" >"$mh_t"
}
# The group's table and its messages' bytes, in the table's order: one cat
# for up to 100 messages.
mh_cat_group() {
  set -- "$mh_group"
  while read -r mh_id mh_len mh_rest <&5; do
    set -- "$@" "$mh_out/$mh_id"
    if [ "$#" -ge 100 ]; then
      cat -- "$@"
      set --
    fi
  done 5<"$mh_group"
  if [ "$#" -gt 0 ]; then
    cat -- "$@"
  fi
}
mh_send() {
  set -- $mh_rest
  mh_unhexv "$1"
  mh_from=$mh_v
  mh_unhexv "$2"
  mh_name=$mh_v
  shift 2
  mh_i=$#
  while [ "$mh_i" -gt 0 ]; do
    mh_unhexv "$1"
    shift
    set -- "$@" "$mh_v"
    mh_i=$((mh_i - 1))
  done
  set -- -- "$@"
  if [ -n "$mh_from" ]; then
    set -- -f "$mh_from" "$@"
  fi
  if [ -n "$mh_name" ]; then
    set -- -F "$mh_name" "$@"
  fi
  # The id's last line in the ledger (the lines grep gives hold only
  # [0-9a-z ], so the last one follows the last other character).
  mh_state=$(grep -E "^(begin|done|undo) $mh_id[0-9a-f]*\$" "$mh_ledger")
  mh_state=${mh_state##*[!0-9a-z ]}
  case ${mh_state%% *} in
    done)
      echo "dup $mh_id"
      rm -f "$mh_t"
      return
      ;;
    begin)
      echo "unsure $mh_id"
      rm -f "$mh_t"
      return
      ;;
  esac
  if ! { echo "begin $mh_id" >>"$mh_ledger" && mh_sync; }; then
    echo "error ledger cannot write $mh_ledger"
    exit 1
  fi
  "$mh_sm" -oi "$@" <"$mh_t" >"$mh_t.err" 2>&1
  mh_s=$?
  if [ "$mh_s" -eq 0 ]; then
    echo "done $mh_id" >>"$mh_ledger"
  else
    echo "undo $mh_id" >>"$mh_ledger"
  fi
  mh_sync
  if [ "$mh_s" -eq 0 ]; then
    echo "ok $mh_id"
  else
    echo "fail $mh_id $mh_s x$(head -c 2000 "$mh_t.err" | od -An -tx1 | tr -d ' \n')"
  fi
  rm -f "$mh_t" "$mh_t.err"
}
mh_decompress <&3 2>/dev/null | {
while read -r mh_k mh_n; do
  if [ "$mh_k" != g ]; then
    echo "error protocol expected a group, got '$mh_k'"
    exit 1
  fi
  case $mh_n in
    '' | *[!0-9]*)
      echo "error protocol bad group size"
      exit 1
      ;;
  esac
  : >"$mh_group"
  while [ "$mh_n" -gt 0 ] && read -r mh_id mh_len mh_rest; do
    case $mh_id in
      '' | *[!0-9a-f]*)
        echo "error protocol bad message id"
        exit 1
        ;;
    esac
    case $mh_len in
      '' | *[!0-9]*)
        echo "error protocol bad message size"
        exit 1
        ;;
    esac
    printf '%s %s %s\n' "$mh_id" "$mh_len" "$mh_rest" >>"$mh_group"
    mh_n=$((mh_n - 1))
  done
  mh_each mh_receive
  mh_k=
  if ! read -r mh_k mh_sum || [ "$mh_k" != v ]; then
    # The stream ended inside the group: the client is gone.
    mh_each mh_drop
    break
  fi
  mh_got=$(mh_cat_group | $mh_hash)
  if [ "${mh_got%% *}" != "$mh_sum" ]; then
    mh_why="the upload did not verify (sha256 of the group differs)"
    mh_each mh_bad
    continue
  fi
  mh_each mh_send
done
rm -f "$mh_group"
# Keep the ledger small: the newest 20,000 lines (10,000 messages) stay.
if [ "$(wc -c <"$mh_ledger")" -gt 2000000 ]; then
  tail -n 20000 "$mh_ledger" >"$mh_ledger.new" && mv "$mh_ledger.new" "$mh_ledger"
fi
}
exit 0
