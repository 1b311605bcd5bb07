#!/usr/bin/env bash
# The long version of tests/watch_command.rs's bulk test: Postfix delivers
# MAILHAUL_PUSH_BULK (default 2,000) tagged messages to one user while
# `mailhaul watch` runs; every message must end up filed exactly once.
#
#   bash bench/push-bulk.sh          # as root (throwaway user, sshd, Postfix)
set -euo pipefail
cd "$(dirname "$0")/.."
MAILHAUL_PUSH_BULK=${MAILHAUL_PUSH_BULK:-2000} \
  cargo test --release --test watch_command postfix_delivering_hundreds_while_watched_files_each_once \
  -- --nocapture 2>&1 | grep -E 'messages sent and filed|test result|panicked|not filed'
