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
#   MAILHAUL_DEMO_WATCH=1 ...      # push: `mailhaul watch` files each arrival
#                                  # by itself, a second or so after it lands
set -euo pipefail
# shellcheck source=assets/demo-env.sh
source "$(dirname "$0")/demo-env.sh"

if [ -n "${MAILHAUL_DEMO_WATCH:-}" ]; then
  echo "mailhaul watch: new mail arrives every ${DEMO_ARRIVAL_EVERY:-7} s and is filed by itself; Ctrl-C ends the demo"
  "$mailhaul" --config "$config" watch demo || true
  find "$demo/Maildir" -type f | sed "s|$demo/||" | cut -d/ -f1-2 | sort | uniq -c
elif [ -n "${MAILHAUL_DEMO_HEADLESS:-}" ]; then
  "$mailhaul" --config "$config" fetch demo
  find "$demo/Maildir" -type f | sed "s|$demo/||" | cut -d/ -f1-2 | sort | uniq -c
else
  "$mailhaul" --config "$config"
fi
