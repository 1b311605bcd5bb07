# The private sshd of the bench scripts (sourced by fetch.sh, resume.sh,
# round-trips.sh, send.sh, dictionary-fetch.sh, push-peers.sh; free_port
# by push.sh and tunnel.sh too). Needs $bench, the script's own directory, holding
# host_key and authorized_keys.

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_sshd PORT [CONFIG_LINE...]: an `sshd -D` on 127.0.0.1:PORT with
# $bench/host_key, trusting $bench/authorized_keys, no passwords or PAM,
# and the extra config lines; sets sshd_pid (for the script's cleanup to
# kill) and returns once the port answers.
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
