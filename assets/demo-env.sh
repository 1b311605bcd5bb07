# The demo's private mail server, sourced by assets/demo.sh and
# screenshots/make.sh (bash, `set -euo pipefail` in the caller).
#
# Builds mailhaul (release), starts a private sshd on loopback (its own host
# and client keys, nothing of the system's touched) with a spool seeded from
# assets/sample-spool.mbox, optionally keeps new mail arriving as an MTA
# delivers it (a From_ line and Postfix's headers, appended by procmail under
# the spool's dot-lock: assets/demo-arrive.sh), points the
# SMTP forward at the local Postfix, and writes a config for that account.
# Everything it starts is stopped, and its directory removed, on exit.
#
# Settings (environment, all optional):
#   DEMO_SPOOL_FILES="A B"  mbox files to seed the spool with (default the sample)
#   DEMO_ARRIVALS=0         no new mail arriving (default 1: one every 7 s)
#   DEMO_ARRIVAL_EVERY=S    seconds between arrivals (default 7)
#   DEMO_CHECK_INTERVAL=S   the dashboard's spool check interval (default 10)
#   DEMO_ACCOUNT_EXTRA=...  lines appended to the account's table
# Sets: repo, mailhaul (the binary), demo (its directory), port, spool,
# config (the config file), pids (what cleanup stops).

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

demo_packages=(build-essential pkg-config libssl-dev openssh-server openssh-client procmail zstd postfix)
missing=()
for p in "${demo_packages[@]}" ${DEMO_EXTRA_PACKAGES:-}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "The demo needs these Debian packages: ${missing[*]}" >&2
    echo "Install them with:  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string mailhaul.test" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "Rust is needed: see https://rustup.rs" >&2; exit 1; }

cargo build --release --quiet
mailhaul="$repo/target/release/mailhaul"

demo=$(mktemp -d /tmp/mailhaul-demo.XXXXXX)
chmod 700 "$demo"
pids=()
started_postfix=""
demo_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # sshd's session children outlive their parent: end them by parent PID.
  for pid in "${pids[@]}"; do pkill -P "$pid" 2>/dev/null || true; done
  if [ -n "$started_postfix" ]; then postfix stop >/dev/null 2>&1 || true; fi
  rm -rf "$demo"
}
trap demo_cleanup EXIT INT TERM

user=$(id -un)
mkdir -p "$demo/spool" "$demo/messages"
ssh-keygen -q -t ed25519 -N '' -f "$demo/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$demo/client_key"
cp "$demo/client_key.pub" "$demo/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$demo/sshd_config" <<CFG
ListenAddress 127.0.0.1
Port $port
HostKey $demo/host_key
PidFile $demo/sshd.pid
AuthorizedKeysFile $demo/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
Subsystem sftp /usr/lib/openssh/sftp-server
CFG
[ "$(id -u)" -ne 0 ] || mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$demo/sshd_config" 2>"$demo/sshd.log" &
pids+=($!)
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$demo/host_key.pub")" > "$demo/known_hosts"

# The spool, as an MTA leaves it, in a directory the demo user may write to
# (so the claim is a rename under the dot-lock).
spool="$demo/spool/$user"
: > "$spool"
for f in ${DEMO_SPOOL_FILES:-assets/sample-spool.mbox}; do cat "$f" >> "$spool"; done
chmod 600 "$spool"

# One file per message of the sample (the first 40), for new mail to arrive
# as an MTA delivers it (assets/demo-arrive.sh).
# shellcheck source=assets/demo-arrive.sh
source "$repo/assets/demo-arrive.sh"
demo_messages "$demo/messages" 40
cat > "$demo/procmailrc" <<RC
DEFAULT=$spool
LOGFILE=$demo/procmail.log
RC
if [ "${DEMO_ARRIVALS:-1}" != 0 ]; then
  (
    while true; do
      for m in "$demo"/messages/*; do
        sleep "${DEMO_ARRIVAL_EVERY:-7}"
        demo_arrive "$demo/procmailrc" "$m" || true
      done
    done
  ) &
  pids+=($!)
fi

# The SMTP forward's target: the local Postfix on port 25, if it can run.
if [ "$(id -u)" -eq 0 ] && ! postfix status >/dev/null 2>&1; then
  newaliases 2>/dev/null || true
  postfix start >/dev/null 2>&1 && started_postfix=1 || true
fi

config="$demo/config.toml"
cat > "$config" <<CFG
# The demo's config: one account on the private sshd.
[general]
maildir = "$demo/Maildir"
check_interval = ${DEMO_CHECK_INTERVAL:-10}

[filter]
format = "mboxrd"

[[filter.rule]]
name = "linux-mips list"
header = "List-Id"
contains = "linux-mips"
folder = "lists/linux-mips"

[[filter.rule]]
name = "spam"
header = "Subject"
regex = "(?i)(viagra|mortgage|weight loss|free money|casino)"
folder = "Junk"

[[account]]
name = "demo"
host = "127.0.0.1"
port = $port
user = "$user"
identity_file = "$demo/client_key"
use_agent = false
known_hosts_file = "$demo/known_hosts"
spool = "$spool"
${DEMO_ACCOUNT_EXTRA:-}

[account.forward]
listen = "127.0.0.1:2525"
target = "127.0.0.1:25"
CFG

for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
