#!/usr/bin/env bash
# Cost of hostile and big mboxes for `mailhaul filter` (the same splitter and
# pipeline a fetch uses): wall time and peak RSS under /usr/bin/time.
#
#   bench/lying-length.sh [BINARY]     (default: builds target/release/mailhaul)
#   INPUTS="lie-1000 big-60" bench/lying-length.sh   (only those inputs)
#
# Inputs, made under a temporary directory in /tmp and removed at the end:
#   lie-N      N messages of about 2 kB, each with `Content-Length: 999999999`
#              (a length past the end of the input), N = 1000, 4000, 16000;
#   plain-4000 the same 4000 messages without the header (the control);
#   near-lie   4000 such messages whose length (4,000,000) ends inside the
#              input, on no message boundary;
#   big-60     60 messages of 8,300,000 bytes (just under the 8 MiB at which
#              a message's content spills to a temporary file), filed with
#              and without fsync (big-60-fsync).
# Wall time includes making the Maildir files, which on a /tmp full of
# recently deleted inodes costs more than splitting (see bench/filter.sh);
# MAILDIR_PARENT=DIR puts the Maildirs in a new directory under DIR.
# Every run files into a new Maildir (with --no-fsync unless the name ends
# in -fsync) and checks the count.
# Prints a Markdown table (docs/reliability.md holds the committed figures).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=$PWD/target/release/mailhaul
fi
work=$(mktemp -d /tmp/mailhaul-lying-length.XXXXXX)
maildirs=$(mktemp -d "${MAILDIR_PARENT:-/tmp}/mailhaul-lying-length-maildirs.XXXXXX")
trap 'rm -rf "$work" "$maildirs"' EXIT

python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
def spool(name, count, length, body_bytes):
    line = b"x" * 75 + b"\n"
    body = line * (body_bytes // len(line))
    with open(f"{work}/{name}", "wb") as f:
        for i in range(count):
            f.write(b"From sender@example.com Mon Jan  1 00:00:00 2001\n")
            f.write(b"Subject: message %d\n" % i)
            if length is not None:
                f.write(b"Content-Length: %d\n" % length)
            f.write(b"\n" + body + b"\n")
spool("plain-4000", 4000, None, 1900)
for n in (1000, 4000, 16000):
    spool(f"lie-{n}", n, 999999999, 1900)
spool("near-lie", 4000, 4000000, 1900)
spool("big-60", 60, None, 8300000)
PY

echo "| input | messages | bytes | wall s | peak RSS MB |"
echo "|---|---:|---:|---:|---:|"
for input in ${INPUTS:-plain-4000 lie-1000 lie-4000 lie-16000 near-lie big-60 big-60-fsync}; do
  case $input in
    lie-*) want=${input#lie-} ;;
    plain-4000) want=4000 ;;
    near-lie) want=4000 ;;
    big-60*) want=60 ;;
  esac
  file=${input%-fsync}
  sync=--no-fsync
  [ "$file" = "$input" ] || sync=
  maildir=$maildirs/$input
  /usr/bin/time -f "%e %M" -o "$work/time" \
    "$bin" --config /dev/null filter $sync --maildir "$maildir" "$work/$file" >/dev/null 2>"$work/stderr"
  got=$(find "$maildir/new" -type f | wc -l)
  [ "$got" = "$want" ] || { echo "$input: $got messages filed, want $want" >&2; exit 1; }
  read -r secs kb < "$work/time"
  size=$(stat -c %s "$work/$file")
  printf '| %s | %d | %d | %s | %.1f |\n' "$input" "$want" "$size" "$secs" "$(echo "$kb / 1000" | bc -l)"
  rm -rf "$maildir"
done
