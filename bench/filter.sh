#!/usr/bin/env bash
# Benchmark of `mailhaul filter` against `formail -s procmail` (the manual
# recipe it replaces), with equivalent rules, into a Maildir on the same disk.
#
#   bench/filter.sh [CORPUS_DIR]      (default: ../shared/corpus or $MAILHAUL_CORPUS)
#   MAILDIR_PARENT=/ bench/filter.sh  (make the Maildirs in a new top-level directory)
#   FRESH_EXT4=1 bench/filter.sh      (as root: make the Maildirs on a new ext4
#                                      file system with mkfs's defaults, journal
#                                      included, loop-mounted from a sparse file
#                                      in /tmp and removed at the end)
#
# Runs, each under /usr/bin/time -v (wall time, peak RSS):
#   1. the whole corpus concatenated (mboxrd): mailhaul with fsync (batched
#      commits, the default), mailhaul with --batch 1 (one fsync per message),
#      mailhaul --no-fsync, and formail -s procmail;
#   2. a ~1 GB mbox made by repeating the corpus: mailhaul with fsync and
#      without (formail+procmail would take about 12 minutes there).
# The mbox inputs live in a temporary directory under /tmp, the Maildirs in a
# temporary directory under $MAILDIR_PARENT (default /tmp); both are removed
# at the end. Why the choice matters: on this ext4 (no journal) a new file's inode is taken from
# its directory's block group, and the allocator skips inodes deleted in the
# last minute or so (longer while their inode table block is dirty), one by
# one; file creation in a directory whose group saw mass deletions (a shared
# /tmp where test suites create and delete thousands of files) costs
# milliseconds instead of tens of microseconds. A new top-level directory gets
# a group of its own (Orlov allocator), like a Maildir that is not next to
# such churn. Every program measured here suffers or gains alike.
# Prints a Markdown table (docs/bench-filter.md holds the committed figures).
set -euo pipefail
cd "$(dirname "$0")/.."

corpus=${1:-${MAILHAUL_CORPUS:-../shared/corpus}}
[ -f "$corpus/MANIFEST.tsv" ] || { echo "no corpus at $corpus" >&2; exit 1; }
for tool in /usr/bin/time formail procmail; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install time procmail)" >&2; exit 1; }
done

cargo build --release --quiet
bin=$PWD/target/release/mailhaul

inputs=$(mktemp -d /tmp/mailhaul-filter-bench-input.XXXXXX)
mnt=
if [ -n "${FRESH_EXT4:-}" ]; then
  # A file system with no history: no run inherits another program's (or an
  # earlier run's) recently deleted inodes, and it has the journal a default
  # Debian ext4 has (this machine's root file system has none).
  command -v mkfs.ext4 >/dev/null || { echo "missing mkfs.ext4 (apt-get install e2fsprogs)" >&2; exit 1; }
  truncate -s 32G "$inputs/fs.img"  # sparse; 2M inodes, room for every run
  mkfs.ext4 -q -F "$inputs/fs.img"
  mnt=$(mktemp -d /tmp/mailhaul-filter-bench-mnt.XXXXXX)
  mount -o loop "$inputs/fs.img" "$mnt"
  MAILDIR_PARENT=$mnt
fi
work=$(mktemp -d "${MAILDIR_PARENT:-/tmp}/mailhaul-filter-bench.XXXXXX")
trap 'rm -rf "$work"; if [ -n "$mnt" ]; then umount "$mnt"; rmdir "$mnt"; fi; rm -rf "$inputs"' EXIT

cat "$corpus"/*.mbox > "$inputs/corpus.mbox"
messages=$(($(wc -l < "$corpus/MANIFEST.tsv") - 1))

# The rules: List-Id (substring), List-Id (regex), To, Cc, Subject (regex), size.
cp bench/corpus-rules.toml "$work/rules.toml"

# The same rules for procmail, into the same Maildir++ layout.
cat > "$work/procmailrc" <<EOF
MAILDIR=$work/procmail.1
DEFAULT=$work/procmail.1/
LOGFILE=/dev/null
:0
* ^List-Id:.*linux-mips
.lists.linux-mips/
:0
* ^List-Id:.*(fork|freshrpms|ilug|spamassassin|razor|exmh)
.lists.other/
:0
* ^To:.*sally\.beck@enron\.com
.enron/
:0
* ^Cc:.*sally\.beck@enron\.com
.enron/
:0
* ^Subject:.*(viagra|mortgage|\<free\>|\\\$\\\$\\\$|casino|weight loss)
.Junk/
:0
* > 100000
.big/
EOF

# run LABEL MESSAGES INPUT_BYTES DIR CMD... : times CMD (which files into
# DIR; `{}` in CMD stands for DIR), prints a table row. With RUNS=N (default
# 1) CMD runs N times, each into its own DIR.I, and the row is the run with
# the median wall time. Nothing is deleted between runs: on ext4, creating
# files right after a mass deletion is much slower (the inode allocator
# skips recently deleted inodes), which would bias the next run.
run() {
  local label=$1 msgs=$2 bytes=$3 dir=$4
  shift 4
  local i rows=()
  for i in $(seq "${RUNS:-1}"); do
    local d=$dir.$i
    mkdir -p "$d"
    sync
    /usr/bin/time -v -o "$work/time.txt" "${@//\{\}/$d}" > /dev/null 2> "$work/err.txt" || {
      echo "failed: $label" >&2; cat "$work/err.txt" >&2; exit 1; }
    local wall cpu rss filed
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$work/time.txt")
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$work/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$work/time.txt")
    filed=$(find "$d" -path '*/new/*' -type f | wc -l)
    rows+=("$wall $cpu $rss $filed")
  done
  local median
  median=$(printf '%s\n' "${rows[@]}" | sort -n | sed -n "$(( (${#rows[@]} + 1) / 2 ))p")
  local walls
  walls=$(printf '%s\n' "${rows[@]}" | awk '{print $1}' | paste -sd/)
  echo "$median" | awk -v l="$label" -v m="$msgs" -v b="$bytes" -v all="$walls" -v n="${RUNS:-1}" '{
    w = $1; if (n > 1) l = l " (median of " n ": " all " s)";
    printf "| %s | %d | %.2f | %.0f | %.1f | %.2f | %.0f | %s |\n", l, $4, w, m / w, b / 1e6 / w, $2, $2 * 1e6 / m, $3 }'
}

size=$(stat -c %s "$inputs/corpus.mbox")
batch=$(sed -n "s/^pub const DEFAULT_BATCH: usize = \([0-9]*\);/\1/p" src/engine/deliver.rs)
journal=$(dumpe2fs -h "$(df --output=source "$work" | tail -1)" 2>/dev/null | grep -q has_journal && echo "with journal" || echo "without journal")
echo "corpus: $messages messages, $size bytes; $(nproc) cores; $(uname -r); Maildirs in $work ($(df -T "$work" | awk 'NR==2 {print $2}') $journal); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | files in new/ | wall s | msgs/s | MB/s | CPU s (user+sys) | CPU µs/msg | peak RSS MB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
RUNS=3 run "mailhaul, fsync (default: batches of $batch)" "$messages" "$size" "$work/md1" \
  "$bin" filter -c "$work/rules.toml" --maildir {} "$inputs/corpus.mbox"
RUNS=3 run "mailhaul, --no-fsync" "$messages" "$size" "$work/md2" \
  "$bin" filter -c "$work/rules.toml" --maildir {} --no-fsync "$inputs/corpus.mbox"
RUNS=3 run "mailhaul, fsync each message (--batch 1)" "$messages" "$size" "$work/md3" \
  "$bin" filter -c "$work/rules.toml" --maildir {} --batch 1 "$inputs/corpus.mbox"
# (procmailrc names $work/procmail.1 itself.)
run "formail -s procmail (fsync each message)" "$messages" "$size" "$work/procmail" \
  sh -c "formail -s procmail -m '$work/procmailrc' < '$inputs/corpus.mbox'"

# ~1 GB: the corpus repeated; needs about 4 GB free (the input and two
# Maildirs of it, kept until the end), else skipped so as not to fill a disk
# shared with others.
repeats=$(( (1000000000 + size - 1) / size ))
free=$(df --output=avail -B1 "$work" | tail -1)
if [ "$free" -lt 4000000000 ]; then
  echo
  echo "1 GB runs skipped: only $((free / 1000000)) MB free on $work"
  exit 0
fi
for _ in $(seq "$repeats"); do cat "$inputs/corpus.mbox"; done > "$inputs/big.mbox"
rm "$inputs/corpus.mbox"
big=$(stat -c %s "$inputs/big.mbox")
run "mailhaul, fsync, $((big / 1000000)) MB mbox" $((messages * repeats)) "$big" "$work/md4" \
  "$bin" filter -c "$work/rules.toml" --maildir {} "$inputs/big.mbox"
run "mailhaul, --no-fsync, $((big / 1000000)) MB mbox" $((messages * repeats)) "$big" "$work/md5" \
  "$bin" filter -c "$work/rules.toml" --maildir {} --no-fsync "$inputs/big.mbox"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
