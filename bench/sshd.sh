# shellcheck shell=bash
# The private sshd of the bench scripts, the throwaway users it logs in, and
# the clean-up of both (sourced by fetch.sh, resume.sh, round-trips.sh,
# send.sh, dictionary-fetch.sh, push-peers.sh, push.sh; tunnel.sh uses
# free_port and the users). One copy, so that every script makes its users
# alike and, on EXIT, INT or TERM, leaves no sshd, session process, user,
# spool or temporary directory behind. Source it before the script sets its
# trap. Needs $bench, the script's own directory, holding host_key and
# authorized_keys.

# The PIDs of the private sshds (start_sshd sets sshd_pid; a script with
# more sshds adds their PIDs to sshd_pids) and the users made by add_user.
sshd_pid=
sshd_pids=()
bench_users=()

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_sshd PORT [CONFIG_LINE...]: an `sshd -D` on 127.0.0.1:PORT with
# $bench/host_key, trusting $bench/authorized_keys, no passwords or PAM,
# and the extra config lines; sets sshd_pid (for stop_sshds to kill) and
# returns once the port answers.
start_sshd() {
  local port=$1
  shift
  {
    printf '%s\n' "ListenAddress 127.0.0.1" "Port $port" "HostKey $bench/host_key" \
      "PidFile $bench/sshd.pid" "AuthorizedKeysFile $bench/authorized_keys" \
      "UsePAM no" "StrictModes no" "PasswordAuthentication no"
    if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi
  } > "$bench/sshd_config"
  mkdir -p /run/sshd
  /usr/sbin/sshd -D -e -f "$bench/sshd_config" 2>"$bench/sshd.log" &
  sshd_pid=$!
  for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
}

# add_user NAME SHELL [login]: a throwaway user NAME made for this run, with
# its own group, login shell SHELL and a home made from Debian's /etc/skel
# (the stock shell start-up files: mailhaul logs in as such a user, not as
# root, whose ~/.bashrc may run anything, here `pyenv init`). With "login",
# its password becomes '*' instead of useradd's '!', which sshd without PAM
# takes for a locked account: the user may then log in with a key. The user
# is recorded for remove_users.
add_user() {
  useradd -m -s "$2" -U "$1"
  bench_users+=("$1")
  if [ "${3:-}" = login ]; then usermod -p '*' "$1"; fi
}

# stop_sshds: every private sshd by its PID, then its session processes
# (which outlive it) by parent PID.
stop_sshds() {
  local pid
  for pid in ${sshd_pid:+"$sshd_pid"} "${sshd_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    pkill -P "$pid" 2>/dev/null || true
  done
}

# remove_users: every user add_user made, after killing what still runs as
# it, with its home and its spool in /var/mail.
remove_users() {
  local u
  for u in "${bench_users[@]}"; do
    pkill -KILL -U "$u" 2>/dev/null || true
    userdel -r -f "$u" >/dev/null 2>&1 || true
    rm -f "/var/mail/$u"
  done
}

# bench_teardown: the end of a script's clean-up, once it has stopped its
# own servers (proxy, Dovecot...): the sshds, the users, and $bench.
bench_teardown() {
  stop_sshds
  remove_users
  rm -rf "$bench"
}
