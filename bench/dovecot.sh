# Sourced by bench/fetch.sh and bench/push-peers.sh: a private Dovecot (POP3,
# and IMAP with COMPRESS=DEFLATE) on 127.0.0.1, with its whole config, state
# and logs in a directory of the bench's own. The system's /etc/dovecot is
# never read or changed (`dovecot -c CONFIG`), and the daemon is stopped by
# its PID.
#
#   dovecot_start DIR USER PASSWORD INBOX POP3_PORT IMAP_PORT
#   dovecot_stop
#
# USER logs in with PASSWORD (a passwd-file in DIR: the password is a
# throwaway of the bench, not the user's); the mail processes run as USER;
# INBOX is the mbox spool (the same file the SSH candidates fetch). No TLS:
# this is loopback, and TLS would only add round trips and bytes to the
# peers' side of the comparison.

dovecot_pid=

dovecot_start() {
  local dir=$1 user=$2 password=$3 inbox=$4 pop3_port=$5 imap_port=$6
  local uid gid home
  uid=$(id -u "$user"); gid=$(id -g "$user"); home=$(getent passwd "$user" | cut -d: -f6)
  mkdir -p "$dir/run" "$dir/state" "$dir/index" "$dir/mail"
  chown "$user:" "$dir/index" "$dir/mail"
  chmod 755 "$dir"
  printf '%s:{PLAIN}%s\n' "$user" "$password" > "$dir/passwd"
  chgrp dovecot "$dir/passwd"; chmod 640 "$dir/passwd"   # the auth process runs as dovecot
  cat > "$dir/dovecot.conf" <<CFG
protocols = pop3 imap
listen = 127.0.0.1
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
instance_name = mailhaul-bench-$$
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$home
}
mail_location = mbox:$dir/mail:INBOX=$inbox:INDEX=$dir/index
mail_privileged_group = mail
mbox_write_locks = dotlock fcntl
pop3_uidl_format = %08Xu%08Xv
mail_plugins = zlib
protocol imap {
  mail_plugins = \$mail_plugins imap_zlib
}
service pop3-login {
  inet_listener pop3 {
    port = $pop3_port
  }
  inet_listener pop3s {
    port = 0
  }
}
service imap-login {
  inet_listener imap {
    port = $imap_port
  }
  inet_listener imaps {
    port = 0
  }
}
service submission-login {
  inet_listener submission {
    port = 0
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0600
  }
}
CFG
  /usr/sbin/dovecot -F -c "$dir/dovecot.conf" 2>>"$dir/dovecot.log" &
  dovecot_pid=$!
  local port
  for port in "$pop3_port" "$imap_port"; do
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
      { echo "dovecot did not listen on $port:" >&2; cat "$dir/dovecot.log" >&2; return 1; }
  done
}

dovecot_stop() {
  [ -n "$dovecot_pid" ] || return 0
  kill -TERM "$dovecot_pid" 2>/dev/null || true
  wait "$dovecot_pid" 2>/dev/null || true
  dovecot_pid=
}
