"""The open session's timeline, run by run (docs/bench-fetch.md, "The small
fetch on each link profile"): from the logs that

    KEEP_LOGS=DIR SESSION=open bash bench/round-trips.sh

keeps (strace.log of `mailhaul watch`, runs.log: each run's append and
filed times), prints for each counted run every send and every wait of
more than 10 ms in poll(2) between the append and the last message filed,
as milliseconds after the append:

    thread:sendBYTES@ms   thread:waitMS@ms(end)

and the fetch's own time: from the watcher's report (the end of the
first wait after the append that a send follows: the fetch's first
request) to the last message filed.

    python3 bench/open-timeline.py DIR
"""

import datetime
import re
import sys


def main(folder):
    runs = [line.split() for line in open(f"{folder}/runs.log")]
    lines = open(f"{folder}/strace.log").read().splitlines()
    for run, t0, t1 in runs:
        if run == "0":
            continue
        t0, t1 = float(t0), float(t1)
        day = (
            datetime.datetime.fromtimestamp(t0)
            .replace(hour=0, minute=0, second=0, microsecond=0)
            .timestamp()
        )
        events = []
        # The watcher's report: the end of the first wait in poll(2) after
        # the append that a send follows (the fetch's first request).
        report = None
        waited = None
        for line in lines:
            m = re.match(r"(\d+)\s+(\d+):(\d+):([0-9.]+) (.*)", line)
            if not m:
                continue
            start = day + int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
            d = re.search(r"<([0-9.]+)>\s*$", line)
            took = float(d.group(1)) if d else 0.0
            # A call another thread's output cut in two: its end is stamped.
            if "resumed>" in line:
                start -= took
            if start + took < t0 - 0.001 or start > t1 + 0.05:
                continue
            call, thread = m.group(5), m.group(1)[-2:]
            if call.startswith("sendto") and "EAGAIN" not in call and report is None:
                report = waited
            elif took > 0.01 and start + took >= t0:
                waited = start + took
            if call.startswith("sendto") and "EAGAIN" not in call:
                n = re.search(r"\) = (\d+)", call)
                events.append(f"{thread}:send{n.group(1) if n else '?'}@{(start - t0) * 1000:.0f}")
            elif took > 0.01:
                events.append(f"{thread}:wait{took * 1000:.0f}@{(start + took - t0) * 1000:.0f}")
        fetch = f", report -> filed {(t1 - report) * 1000:.0f} ms" if report else ""
        print(f"run {run} filed +{(t1 - t0) * 1000:.0f} ms{fetch}: " + " ".join(events))


if __name__ == "__main__":
    main(sys.argv[1])
