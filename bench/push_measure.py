#!/usr/bin/env python3
"""The measuring half of bench/push.sh: latency samples, then an idle window.

Prints one TSV line: profile, mode, accounts, samples, p50, p95, max latency
(s), idle seconds, client CPU % (the watch process), server CPU % per
account (every process of the accounts' users, reaped children included),
TCP payload bytes per minute per account (client sockets, both ways, from
`ss -ti`), the same with 52 bytes of IPv4+TCP headers per segment, and the
MTA's own median latency (sendmail -> spool written and unlocked, for an
unwatched user whose spool is empty each time).
"""
import argparse
import os
import pwd
import random
import re
import subprocess
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid, children=True):
    """utime+stime (+ cutime+cstime) of a process, in clock ticks; 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # fields[0] is the state (field 3); utime is field 14.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def user_pids(uids):
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) in uids:
                            pids.append(int(name))
                        break
        except OSError:
            pass
    return pids


def server_ticks(uids):
    return sum(cpu_ticks(p) for p in user_pids(uids))


def socket_counters(port):
    """(payload bytes both ways, segments both ways) of client sockets to port."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( dport = :{port} )"],
        capture_output=True, text=True, check=True).stdout
    payload = segs = 0
    for key, value in re.findall(r"\b(bytes_acked|bytes_received|segs_out|segs_in):(\d+)", out):
        if key.startswith("bytes"):
            payload += int(value)
        else:
            segs += int(value)
    return payload, segs


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser()
    for a in ["profile", "mode", "maildir", "users", "baseline-user"]:
        ap.add_argument("--" + a, default="")
    for a in ["samples", "idle-secs", "watch-pid", "port"]:
        ap.add_argument("--" + a, type=int, default=0)
    args = ap.parse_args()
    users = args.users.split()
    uids = {pwd.getpwnam(u).pw_uid for u in users}

    # The MTA alone: sendmail -> the message in an unwatched user's spool and
    # the spool's lock gone (the floor of any fetcher's latency).
    baseline = []
    if args.baseline_user:
        spool = f"/var/mail/{args.baseline_user}"
        for k in range(min(args.samples, 10)):
            with open(spool, "w"):
                pass  # empty, as after a fetch (procmail treats that case its own way)
            message = f"From: bench@example.org\nSubject: baseline-{k}\n\nbaseline {k}\n"
            t0 = time.time()
            subprocess.run(["/usr/sbin/sendmail", "-i", args.baseline_user],
                           input=message.encode(), check=True)
            while not (os.path.getsize(spool) > 0 and not os.path.exists(spool + ".lock")):
                if time.time() - t0 > 60:
                    raise SystemExit("baseline delivery not done within 60 s")
                time.sleep(0.002)
            baseline.append(time.time() - t0)
            time.sleep(random.uniform(0.5, 1.0))

    latencies = []
    for k in range(args.samples):
        user = users[k % len(users)]
        new = os.path.join(args.maildir, user, "new")
        before = len(os.listdir(new)) if os.path.isdir(new) else 0
        tag = f"push-bench-{k}"
        message = (f"From: bench@example.org\nTo: {user}\nSubject: {tag}\n"
                   f"Message-ID: <{tag}@example.org>\n\nlatency sample {k}\n")
        t0 = time.time()
        subprocess.run(["/usr/sbin/sendmail", "-i", user], input=message.encode(), check=True)
        while True:
            have = len(os.listdir(new)) if os.path.isdir(new) else 0
            if have > before:
                latencies.append(time.time() - t0)
                break
            if time.time() - t0 > 60:
                raise SystemExit(f"sample {k} for {user} not filed within 60 s")
            time.sleep(0.005)
        time.sleep(random.uniform(0.5, 1.0))

    time.sleep(3)  # the last fetch's tail
    c0, s0 = cpu_ticks(args.watch_pid, children=False), server_ticks(uids)
    b0, g0 = socket_counters(args.port)
    t0 = time.time()
    time.sleep(args.idle_secs)
    elapsed = time.time() - t0
    c1, s1 = cpu_ticks(args.watch_pid, children=False), server_ticks(uids)
    b1, g1 = socket_counters(args.port)
    n = len(users)
    minutes = elapsed / 60
    client_pct = 100 * (c1 - c0) / TICK / elapsed
    server_pct = 100 * (s1 - s0) / TICK / elapsed / n
    payload = (b1 - b0) / minutes / n
    wire = (b1 - b0 + 52 * (g1 - g0)) / minutes / n
    row = [args.profile, args.mode, n, len(latencies),
           f"{percentile(latencies, 0.5):.3f}" if latencies else "-",
           f"{percentile(latencies, 0.95):.3f}" if latencies else "-",
           f"{max(latencies):.3f}" if latencies else "-",
           f"{elapsed:.0f}", f"{client_pct:.3f}", f"{server_pct:.4f}",
           f"{payload:.0f}", f"{wire:.0f}",
           f"{percentile(baseline, 0.5):.3f}" if baseline else "-"]
    print("\t".join(str(x) for x in row), flush=True)


if __name__ == "__main__":
    main()
