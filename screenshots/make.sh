#!/usr/bin/env bash
# Screenshots of the real mailhaul binary in a real terminal: xterm (DejaVu
# Sans Mono) under Xvfb, showing the dashboard on the demo's private sshd and
# spool (assets/demo-env.sh). The dashboard runs inside tmux in that xterm
# (status line off) only so that this script can type keys and wait for what
# the screen shows; xterm draws every pixel. Writes screenshots/*.png:
#
#   idle.png          the spool check shows mail waiting; the account watched;
#                     three messages sent from the outbox; history of earlier fetches
#   transferring.png  a fetch mid-transfer (the shared corpus when present, zstd -19)
#   done.png          the fetch done, messages filed per folder
#   help.png          the help overlay (?)
#   forward.png       the SMTP forward on, after three SMTP sessions (swaks)
#   host-key.png      the first-contact prompt with the host key's fingerprint
#
#   bash screenshots/make.sh       # as root: installs what is missing
set -euo pipefail
out_dir=$(cd "$(dirname "$0")" && pwd)

# A spool big enough to watch a transfer: the real-mail corpus next to the
# clone (7,885 messages, 32 MB) when present, else the 315-message sample
# (a transfer then lasts about a second: the shot may need a retry).
corpus=${MAILHAUL_CORPUS:-$out_dir/../../shared/corpus}
if ls "$corpus"/*.mbox >/dev/null 2>&1; then
  DEMO_SPOOL_FILES=$(ls "$corpus"/*.mbox | tr '\n' ' ')
  export DEMO_SPOOL_FILES
else
  echo "make.sh: no corpus at $corpus (set MAILHAUL_CORPUS); using the small sample spool"
fi
export DEMO_ARRIVALS=0 DEMO_CHECK_INTERVAL=2
export DEMO_ACCOUNT_EXTRA='zstd_level = 19'
export DEMO_EXTRA_PACKAGES="xvfb xterm imagemagick tmux fonts-dejavu-core swaks"
# shellcheck source=assets/demo-env.sh
source "$(dirname "$0")/../assets/demo-env.sh"

cols=110 rows=32
socket="mailhaul-shots-$$"
tmux_() { tmux -L "$socket" "$@"; }
shots_cleanup() {
  local pid
  pid=$(tmux_ display-message -p '#{pid}' 2>/dev/null) && kill "$pid" 2>/dev/null || true
  demo_cleanup
}
trap shots_cleanup EXIT INT TERM

# A free X display.
display=99
while [ -e "/tmp/.X11-unix/X$display" ] || [ -e "/tmp/.X$display-lock" ]; do display=$((display + 1)); done
Xvfb ":$display" -screen 0 1400x900x24 -nolisten tcp >"$demo/xvfb.log" 2>&1 &
pids+=($!)
export DISPLAY=":$display"
for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X$display" ] && break; sleep 0.1; done

cat > "$demo/tmux.conf" <<'CONF'
set -g status off
set -g escape-time 0
set -g default-terminal "tmux-256color"
CONF

# The dashboard's environment: its own data dir (journal, history).
run_env=(env -u NO_COLOR XDG_DATA_HOME="$demo/data" "$mailhaul")

# Starts the dashboard with config $1 in a fresh xterm.
start_terminal() {
  # A palette close to common terminal defaults, readable on dark grey.
  xterm -geometry "${cols}x${rows}+0+0" -fa 'DejaVu Sans Mono' -fs 11 \
    -bg '#1d1f21' -fg '#d8d8d8' -cr '#d8d8d8' -b 6 +sb \
    -xrm 'XTerm*color0: #1d1f21' -xrm 'XTerm*color1: #e05561' -xrm 'XTerm*color2: #8cc265' \
    -xrm 'XTerm*color3: #d18f52' -xrm 'XTerm*color4: #4aa5f0' -xrm 'XTerm*color5: #c162de' \
    -xrm 'XTerm*color6: #42b3c2' -xrm 'XTerm*color7: #c0c0c0' -xrm 'XTerm*color8: #707880' \
    -xrm 'XTerm*color9: #ff616e' -xrm 'XTerm*color10: #a5e075' -xrm 'XTerm*color11: #f0a45d' \
    -xrm 'XTerm*color12: #4dc4ff' -xrm 'XTerm*color13: #de73ff' -xrm 'XTerm*color14: #4cd1e0' \
    -xrm 'XTerm*color15: #e6e6e6' \
    -e tmux -L "$socket" -f "$demo/tmux.conf" new-session -s ui "${run_env[*]} --config $1" &
  pids+=($!)
  for _ in $(seq 100); do tmux_ has-session -t ui 2>/dev/null && break; sleep 0.1; done
}

# Waits (up to $2 seconds, default 30) until the screen matches regex $1.
wait_screen() {
  local limit=$((${2:-30} * 10))
  for _ in $(seq "$limit"); do
    tmux_ capture-pane -p -t ui | grep -qE "$1" && return 0
    sleep 0.1
  done
  echo "make.sh: the screen never showed /$1/:" >&2
  tmux_ capture-pane -p -t ui >&2
  exit 1
}

# Captures the xterm window into screenshots/$1.png.
shot() {
  local window
  sleep 0.4 # let xterm draw the last frame
  window=$(tmux_ show-environment -t ui WINDOWID | cut -d= -f2)
  import -window "$window" "$out_dir/$1.png"
  echo "screenshots/$1.png: $(identify -format '%wx%h' "$out_dir/$1.png"), $(du -k "$out_dir/$1.png" | cut -f1) kB"
}

# Quits the dashboard and waits for the terminal to close.
quit() {
  tmux_ send-keys -t ui q
  for _ in $(seq 100); do tmux_ has-session -t ui 2>/dev/null || return 0; sleep 0.1; done
  echo "make.sh: the dashboard did not quit" >&2
  exit 1
}

# A history to chart: a few small fetches of new mail first, headless.
big_spool="$demo/big-spool"
mv "$spool" "$big_spool"
for n in 6 14 9 25 17 31; do
  : > "$spool"
  for m in $(ls "$demo"/messages/* | head -n "$n"); do procmail -m "$demo/procmailrc" < "$m"; done
  env XDG_DATA_HOME="$demo/data" "$mailhaul" --config "$config" fetch demo >/dev/null 2>&1
done
mv "$big_spool" "$spool"

# Outgoing mail for the outbox: three real messages queued with the
# sendmail drop-in (recipient given, so no header's address is used); the
# dashboard's worker hands them to the server's sendmail once connected.
for m in $(ls "$demo"/messages/* | head -n 3); do
  env XDG_DATA_HOME="$demo/data" "$mailhaul" --config "$config" send -i -f "$user@localhost" \
    -- "$user@localhost" < "$m"
done

start_terminal "$config"
wait_screen 'new: .*MB'
wait_screen 'sent today 3' 60
wait_screen 'watching|polling' 30
shot idle

tmux_ send-keys -t ui f
wait_screen 'transfer [2-6][0-9]%' 120
shot transferring

wait_screen 'ok [0-9]+ msgs' 300
wait_screen 'empty' 30
shot done

tmux_ send-keys -t ui '?'
wait_screen 'Keys \(Esc closes\)'
shot help
tmux_ send-keys -t ui Escape

tmux_ send-keys -t ui t
wait_screen 'on 127\.0\.0\.1:2525' 30
# A few SMTP sessions through it (to RCPT only: no mail is queued).
if command -v swaks >/dev/null; then
  for _ in 1 2 3; do
    swaks --server 127.0.0.1:2525 --from "$user@localhost" --to "$user@localhost" \
      --quit-after RCPT >/dev/null 2>&1 || true
  done
  wait_screen 'live/3 total' 30
fi
shot forward
tmux_ send-keys -t ui t
quit

# First contact: a known_hosts without the demo server's key.
: > "$demo/empty_known_hosts"
sed "s|^known_hosts_file = .*|known_hosts_file = \"$demo/empty_known_hosts\"|" "$config" > "$demo/first-contact.toml"
start_terminal "$demo/first-contact.toml"
wait_screen 'spool check'
tmux_ send-keys -t ui f
wait_screen 'Unknown host key'
shot host-key
tmux_ send-keys -t ui n
quit
