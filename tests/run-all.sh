#!/usr/bin/env bash
# The README's test command: installs what the tests need (Debian packages,
# as root or through sudo) and runs every test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential pkg-config libssl-dev   # ssh2 links the system OpenSSL
  openssh-server openssh-client           # the real sshd the tests start on loopback
  postfix procmail liblockfile-bin        # delivery agents and dotlockfile on the "server"
  zstd gzip swaks tmux python3            # remote compressors, SMTP client, terminal tests, server hook
  strace                                  # durability tests watch fsync/syncfs order
  time                                    # peak RSS in bench/filter.sh (/usr/bin/time -v)
  inotify-tools                           # the spool watcher's inotifywait on the "server"
  systemd                                 # systemd-analyze verify of assets/systemd/
  msmtp                                   # a sendmail that refuses at once, for mailhaul send
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  # Postfix asks questions on install: local delivery only, no relay.
  echo "postfix postfix/main_mailer_type select Local only" | $sudo debconf-set-selections
  echo "postfix postfix/mailname string mailhaul.test" | $sudo debconf-set-selections
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# A full debug build of every test takes about 4.7 GiB (measured in a CI
# run with CARGO_INCREMENTAL=0; more with incremental state), plus room for
# the tests' own files (fetch_big's 214 MB spool, its staged copy and its
# Maildir). A linker that hits a full disk
# dies with a bus error that names no cause, so say it before building.
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
have_k=$(df -Pk "$target" | awk 'NR == 2 { print $4 }')
used_k=$(du -sk "$target" | awk '{ print $1 }')
need_k=$((6 * 1024 * 1024 - used_k))
if [ "$have_k" -lt "$need_k" ]; then
  echo "tests/run-all.sh: only $((have_k / 1024)) MiB free on the disk that holds $target/;" \
    "building and running every test needs about $((need_k / 1024)) MiB more." \
    "Free some space (for example cargo clean in other checkouts) and run it again." >&2
  exit 1
fi

cargo test --all-targets -- --test-threads=2
