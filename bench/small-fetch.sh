#!/usr/bin/env bash
# The small fetch (issue 14 item 3; docs/bench-fetch.md, "The small fetch"):
# 1, 10 and 100 new messages of real mail on each link profile, with a new
# session (`mailhaul fetch`, warm: cached scripts and kept server facts) and
# with a session already open (`mailhaul watch`; the messages appended to
# the spool under its dot-lock as an MDA would). Every measurement is a run
# of bench/round-trips.sh (which checks that each run files exactly the
# spool's messages, once):
#   - seconds and bytes without strace (STRACE=0), RUNS runs each;
#   - the open session's round trips under strace (STRACE=1), RUNS runs;
#   - the open session's seconds with `dictionary = false` (DICTIONARY=off).
# The account has filed 200 earlier messages of the same corpus file before
# (round-trips.sh's HISTORY), so it fetches with its dictionary, as an
# account with some mail does.
# Prints every run as TSV (kept in RESULTS.tsv), then a Markdown table of
# the medians with, for the open session, "2 RTT + bytes": twice the
# profile's RTT plus the run's bytes down at the down rate and bytes up at
# the up rate (the median of each).
#
#   bash bench/small-fetch.sh [RESULTS.tsv]     # as root; RUNS=3
#   PROFILES=dsl COUNTS=10 RUNS=1 bash bench/small-fetch.sh
#   LOGIN_RC=1 ...   # the login shell reads its rc files (see round-trips.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
RUNS=${RUNS:-3}
PROFILES=${PROFILES:-"modem dsl"}
COUNTS=${COUNTS:-"1 10 100"}
results=${1:-/tmp/small-fetch-$(date -u +%Y%m%dT%H%M%S).tsv}
# shellcheck source=bench/link-profiles.sh
. "$repo/bench/link-profiles.sh"

echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg); results: $results" >&2
printf 'profile\tsession\tstrace\tdictionary\trun\tmessages\twall_s\tfiled_s\tround_trips\tserver_waits\tup_bytes\tdown_bytes\tfiled\twaits_ms\n' > "$results"
for profile in $PROFILES; do
  for n in $COUNTS; do
    for pass in "new 0 on" "open 0 on" "open 1 on" "open 0 off"; do
      read -r session strace dictionary <<<"$pass"
      PROFILE=$profile MESSAGES=$n SESSION=$session STRACE=$strace DICTIONARY=$dictionary RUNS=$RUNS \
        bash "$repo/bench/round-trips.sh" \
        | tail -n +2 | sed "s/^/$profile\t$session\t$strace\t$dictionary\t/" | tee -a "$results" >&2
    done
  done
done
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

profiles=()
for profile in $PROFILES; do profiles+=("$profile=$(profile_args "$profile")"); done
python3 - "$results" "${profiles[@]}" <<'PY'
import csv, re, statistics, sys
results, *profiles = sys.argv[1:]
link = {}
for p in profiles:
    name, args = p.split("=", 1)
    opt = dict(re.findall(r"--([a-z-]+) (\d+)", args))
    link[name] = (int(opt["down-bps"]), int(opt["up-bps"]), int(opt["rtt-ms"]) / 1000)
rows = list(csv.DictReader(open(results), delimiter="\t"))
def pick(profile, session, strace, n, dictionary="on"):
    return [r for r in rows if (r["profile"], r["session"], r["strace"], r["messages"], r["dictionary"])
            == (profile, session, strace, n, dictionary)]
def med(*key, col, dictionary="on"):
    vals = [float(r[col]) for r in pick(*key, dictionary) if r[col] not in ("", "-")]
    return statistics.median(vals) if vals else float("nan")
def runs(*key, col):
    return " / ".join(r[col] for r in pick(*key))
print("| profile | msgs | new: connect → filed s | new: → exit s | new: bytes up / down "
      "| open: append → filed s | open: bytes up / down | open: round trips (strace runs) "
      "| 2 RTT + bytes s | open / (2 RTT + bytes) | open, no dictionary: s, bytes down |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for profile in link:
    down_bps, up_bps, rtt = link[profile]
    for n in dict.fromkeys(r["messages"] for r in rows if r["profile"] == profile):
        new, opened = (profile, "new", "0", n), (profile, "open", "0", n)
        nf, nw = med(*new, col="filed_s"), med(*new, col="wall_s")
        nu, nd = med(*new, col="up_bytes"), med(*new, col="down_bytes")
        of, ou, od = med(*opened, col="filed_s"), med(*opened, col="up_bytes"), med(*opened, col="down_bytes")
        xf, xd = med(*opened, col="filed_s", dictionary="off"), med(*opened, col="down_bytes", dictionary="off")
        limit = 2 * rtt + od * 8 / down_bps + ou * 8 / up_bps
        print(f"| {profile} | {n} | {nf:.2f} | {nw:.2f} | {nu:,.0f} / {nd:,.0f} | {of:.2f} "
              f"| {ou:,.0f} / {od:,.0f} | {runs(profile, 'open', '1', n, col='round_trips')} "
              f"| {limit:.2f} | {of / limit:.2f}x | {xf:.2f}, {xd:,.0f} |")
PY
