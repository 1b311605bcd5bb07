#!/usr/bin/env bash
# The README's run command: the demo. Builds mailhaul, starts a private sshd on
# loopback (its own host and client keys, nothing of the system's touched) with
# a spool seeded from assets/sample-spool.mbox, keeps new mail arriving through
# procmail (which takes the spool's dot-lock, as on a real server), points the
# SMTP forward at the local Postfix, and opens the dashboard on that account.
# Quitting the dashboard stops and removes everything the demo started.
#
#   bash assets/demo.sh            # as root: installs what is missing
#   MAILHAUL_DEMO_HEADLESS=1 ...   # fetch once without the dashboard (CI, scripts)
set -euo pipefail
# shellcheck source=assets/demo-env.sh
source "$(dirname "$0")/demo-env.sh"

if [ -n "${MAILHAUL_DEMO_HEADLESS:-}" ]; then
  "$mailhaul" --config "$config" fetch demo
  find "$demo/Maildir" -type f | sed "s|$demo/||" | cut -d/ -f1-2 | sort | uniq -c
else
  "$mailhaul" --config "$config"
fi
