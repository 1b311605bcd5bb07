#!/usr/bin/env python3
"""The measuring half of bench/push-peers.sh.

    push_peers_measure.py fetchmail --user U --maildir DIR --samples N --interval S
        --idle-secs S --client-pid PID --server-pid PID --stats FILE
    push_peers_measure.py cron --runs N --server-pid PID --stats FILE -- COMMAND...

fetchmail: hands SAMPLES tagged messages to sendmail for USER at random
moments (gaps of 2-25 s, so that they land at every phase of the poll),
times each from sendmail to its file in DIR/new, then measures an idle
window with no mail. Prints one TSV line: what, samples, p50, p95, max,
mean latency (s), idle seconds, client CPU %, server CPU %, link bytes per
minute (both ways, the proxy's payload counters), logins per minute.

cron: runs COMMAND (one fetch of an empty spool) RUNS times through the
proxy; prints one TSV line: what, runs, median wall s, median bytes per
fetch, median client CPU ms, median server CPU ms, and the same per minute
for a fetch every 10 minutes (CPU as %, bytes per minute).

Server CPU is the daemon's whole tree (the master's own time, the time of
children it reaped, and every live descendant's), so short-lived login
processes are counted.
"""
import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def tree_ticks(root):
    """CPU ticks of root and its descendants, reaped children included."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                children.setdefault(int(stat_fields(name)[1]), []).append(int(name))
            except (OSError, IndexError):
                pass
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            f = stat_fields(pid)
        except OSError:
            continue
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        todo.extend(children.get(pid, []))
    return total


def link_bytes(path):
    """(bytes both ways, connections) from the proxy's stats file."""
    values = {}
    try:
        with open(path) as f:
            for line in f:
                k, v = line.split()
                values[k] = int(v)
    except OSError:
        pass
    return values.get("up_bytes", 0) + values.get("down_bytes", 0), values.get("connections", 0)


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def fetchmail(args):
    new = os.path.join(args.maildir, "new")
    sent = {}
    filed = {}
    done = threading.Event()

    def scan():
        seen = set()
        while not done.is_set():
            for name in os.listdir(new):
                if name in seen:
                    continue
                seen.add(name)
                now = time.time()
                with open(os.path.join(new, name), "rb") as f:
                    for line in f:
                        if line.startswith(b"Subject: peer-bench-"):
                            filed[line.split()[1].decode()] = now
                            break
            time.sleep(0.05)

    scanner = threading.Thread(target=scan, daemon=True)
    scanner.start()
    for k in range(args.samples):
        tag = f"peer-bench-{k}"
        message = (f"From: bench@example.org\nTo: {args.user}\nSubject: {tag}\n"
                   f"Message-ID: <{tag}@example.org>\n\nlatency sample {k}\n")
        sent[tag] = time.time()
        subprocess.run(["/usr/sbin/sendmail", "-i", args.user], input=message.encode(), check=True)
        time.sleep(random.uniform(2, 25))
    deadline = time.time() + 3 * args.interval + 60
    while len(filed) < len(sent) and time.time() < deadline:
        time.sleep(0.2)
    done.set()
    missing = sorted(set(sent) - set(filed))
    if missing:
        raise SystemExit(f"not filed within {3 * args.interval + 60} s of the last send: {missing}")
    latencies = [filed[t] - sent[t] for t in sent]
    print("# latencies (s): " + " ".join(f"{x:.1f}" for x in latencies), file=sys.stderr)

    # The idle window starts just after a poll (the proxy counted its login).
    _, c = link_bytes(args.stats)
    while link_bytes(args.stats)[1] == c:
        time.sleep(0.2)
    time.sleep(2)
    c0, s0 = tree_ticks(args.client_pid), tree_ticks(args.server_pid)
    b0, n0 = link_bytes(args.stats)
    t0 = time.time()
    time.sleep(args.idle_secs)
    elapsed = time.time() - t0
    c1, s1 = tree_ticks(args.client_pid), tree_ticks(args.server_pid)
    b1, n1 = link_bytes(args.stats)
    minutes = elapsed / 60
    row = ["fetchmail -d %d" % args.interval, len(latencies),
           f"{percentile(latencies, 0.5):.1f}", f"{percentile(latencies, 0.95):.1f}",
           f"{max(latencies):.1f}", f"{statistics.mean(latencies):.1f}",
           f"{elapsed:.0f}", f"{100 * (c1 - c0) / TICK / elapsed:.4f}",
           f"{100 * (s1 - s0) / TICK / elapsed:.4f}",
           f"{(b1 - b0) / minutes:.0f}", f"{(n1 - n0) / minutes:.2f}"]
    print("\t".join(str(x) for x in row), flush=True)


def cron(args):
    walls, sizes, client_ms, server_ms = [], [], [], []
    for _ in range(args.runs):
        b0, _ = link_bytes(args.stats)
        s0 = tree_ticks(args.server_pid)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        subprocess.run(args.command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.time() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        time.sleep(1)  # the proxy writes its counters when the connection closes
        b1, _ = link_bytes(args.stats)
        s1 = tree_ticks(args.server_pid)
        sizes.append(b1 - b0)
        client_ms.append(1000 * (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime))
        server_ms.append(1000 * (s1 - s0) / TICK)
    wall, size = statistics.median(walls), statistics.median(sizes)
    cms, sms = statistics.median(client_ms), statistics.median(server_ms)
    print("# cron runs: bytes " + " ".join(str(s) for s in sizes), file=sys.stderr)
    row = ["cron: mailhaul fetch every 10 min (empty spool)", args.runs, f"{wall:.2f}",
           f"{size:.0f}", f"{cms:.0f}", f"{sms:.0f}",
           f"{100 * cms / 1000 / 600:.4f}", f"{100 * sms / 1000 / 600:.4f}", f"{size / 10:.0f}"]
    print("\t".join(str(x) for x in row), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fetchmail")
    f.add_argument("--user", required=True)
    f.add_argument("--maildir", required=True)
    f.add_argument("--stats", required=True)
    for a in ["samples", "interval", "idle-secs", "client-pid", "server-pid"]:
        f.add_argument("--" + a, type=int, required=True)
    c = sub.add_parser("cron")
    c.add_argument("--runs", type=int, required=True)
    c.add_argument("--server-pid", type=int, required=True)
    c.add_argument("--stats", required=True)
    c.add_argument("command", nargs="+")
    args = ap.parse_args()
    {"fetchmail": fetchmail, "cron": cron}[args.what](args)


if __name__ == "__main__":
    main()
