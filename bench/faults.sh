#!/usr/bin/env bash
# The long campaign of tests/fetch_faults.rs: for each claim strategy
# (copy-truncate on Debian's /var/mail, rename in a spool directory the user
# owns) the real Postfix delivers MESSAGES real, tagged messages of the
# corpus through procmail while `mailhaul fetch` runs in a loop, every other
# run through a proxy that cuts the link at a random byte offset (at least
# CUTS cuts per strategy, and every other run while mail is on its way);
# after a final fetch every tag must be filed exactly once. Prints the seed,
# what each cut run said, and the totals. The single faults (compressor
# killed, corrupt stream, full disks) run too, once each.
#
#   bash bench/faults.sh [MESSAGES [CUTS]]      # default 5000 30; as root,
#                                               # after tests/run-all.sh
#   MAILHAUL_FAULTS_SEED=N bash bench/faults.sh # replays the cut offsets
#
# Needs the corpus (../shared/corpus or MAILHAUL_CORPUS) for more than 315
# messages: without it the campaign says SKIPPED.
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-5000}
cuts=${2:-30}
started=$(date +%s)
echo "load before: $(uptime)"
MAILHAUL_FAULTS_MESSAGES=$messages MAILHAUL_FAULTS_CUTS=$cuts \
  cargo test --test fetch_faults -- --nocapture --test-threads=1 2>&1 |
  grep --line-buffered -E '^(seed|FAULTS|SKIPPED|NOTE|  +[0-9]+  )|: [0-9]+ messages delivered|cut at byte|the fetch said|filed before|^test |test result|panicked|not every'
echo "wall time: $(($(date +%s) - started)) s; load after: $(uptime)"
