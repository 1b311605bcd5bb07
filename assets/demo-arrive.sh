# New mail for the demo's spool, delivered as an MTA delivers it (sourced by
# assets/demo-env.sh and tests/demo_arrivals.rs; bash).
#
#   demo_messages DIR N      one file per message of the sample spool (the
#                            first N), without its From_ line
#   demo_arrive RC MESSAGE   appends MESSAGE the way Postfix's local(8) does
#                            on Debian: a From_ line, Return-Path,
#                            X-Original-To, Delivered-To and Received headers,
#                            through procmail (RC sets DEFAULT=the spool), which
#                            takes the spool's dot-lock, quotes body `From `
#                            lines and ends the message with a blank line

demo_messages() {
  awk -v dir="$1" -v max="$2" '
    /^From / && (NR == 1 || blank) { n++; if (n > max) exit; file = sprintf("%s/%03d", dir, n); next }
    { blank = ($0 == ""); if (file) print > file }' "$(dirname "${BASH_SOURCE[0]}")/sample-spool.mbox"
}

demo_arrive() {
  local rc=$1 message=$2 sender user now id
  sender=$(sed -n '/^$/q; s/^From:.*<\([^>]*@[^>]*\)>.*/\1/p; s/^From: *\([^ <>]*@[^ <>]*\) *$/\1/p' "$message" | head -n 1)
  sender=${sender:-MAILER-DAEMON}
  user=$(id -un)
  now=$(LC_ALL=C date -u '+%a %b %e %H:%M:%S %Y')
  id=$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
  {
    printf 'From %s  %s\n' "$sender" "$now"
    printf 'Return-Path: <%s>\n' "$sender"
    printf 'X-Original-To: %s\n' "$user"
    printf 'Delivered-To: %s@mailhaul.test\n' "$user"
    printf 'Received: by mailhaul.test (Postfix, from userid 0)\n\tid %s; %s\n' "$id" \
      "$(LC_ALL=C date -u '+%a, %e %b %Y %H:%M:%S +0000 (UTC)')"
    cat -- "$message"
  } | procmail -m "$rc"
}
