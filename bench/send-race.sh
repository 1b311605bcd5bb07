#!/usr/bin/env bash
# The long form of tests/send_outbox.rs's exactly-once race: 500 real
# messages queued and flushed while the client is killed -9 and the link is
# cut at random moments; afterwards every message must be in the
# recipient's spool exactly once. Run as root (real sshd and Postfix), after
# `bash tests/run-all.sh` has installed the packages. Prints the seed and how
# many kills and cuts happened.
#   bash bench/send-race.sh [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
MAILHAUL_SEND_RACE_MESSAGES="${1:-500}" \
  cargo test --release --test send_outbox -- --exact \
  kills_and_cut_links_never_send_twice_or_lose_a_message --nocapture
