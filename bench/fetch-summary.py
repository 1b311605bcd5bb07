#!/usr/bin/env python3
"""Medians of bench/fetch.sh's runs as the Markdown table of docs/bench-fetch.md,
with the targets (bytes down <= 0.8x the recipe's, wall time below the
recipe's) checked for mailhaul's variants against the recipe on the same
profile, and the peers (fetchmail, mpop, mbsync) beside them.

    python3 bench/fetch-summary.py bench/fetch-results.tsv
"""
import csv
import statistics
import sys

LABELS = {
    "recipe": "recipe: ssh mv + scp -C + formail -s procmail",
    "fetchmail": "fetchmail (POP3, each message to procmail)",
    "mpop": "mpop (pipelined POP3, Maildir)",
    "mbsync": "mbsync (IMAP, COMPRESS=DEFLATE, Maildir)",
    "auto": "mailhaul, default config (compression = \"auto\")",
    "ssh": "mailhaul, compression = \"ssh\"",
    "zstd3": "mailhaul, zstd_level = 3",
    "zstd6": "mailhaul, zstd_level = 6",
    "zstd9": "mailhaul, zstd_level = 9",
    "zstd19": "mailhaul, zstd_level = 19",
    "adapt": "mailhaul, zstd_level = \"adapt\" (--adapt=min=9,max=19)",
}


PEERS = ("fetchmail", "mpop", "mbsync")


def main():
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    groups = {}
    for r in rows:
        groups.setdefault((r["profile"], r["variant"]), []).append(r)
    profiles = list(dict.fromkeys(r["profile"] for r in rows))
    seen = list(dict.fromkeys(r["variant"] for r in rows))
    variants = [v for v in LABELS if v in seen] + [v for v in seen if v not in LABELS]
    print("| profile | variant | runs | wall s (median; min–max) | bytes down | bytes up "
          "| down vs recipe | wall vs recipe | delivered / in spool | targets |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in profiles:
        base = groups.get((p, "recipe"))
        base_wall = statistics.median(float(r["wall_s"]) for r in base) if base else None
        base_down = statistics.median(int(r["down_bytes"]) for r in base) if base else None
        for v in variants:
            g = groups.get((p, v))
            if not g:
                continue
            walls = [float(r["wall_s"]) for r in g]
            wall = statistics.median(walls)
            down = statistics.median(int(r["down_bytes"]) for r in g)
            up = statistics.median(int(r["up_bytes"]) for r in g)
            counts = sorted({r["delivered"] for r in g})
            expected = g[0]["expected"]
            delivered = "/".join(counts) + f" / {expected}"
            if base is None or v == "recipe":
                vs_down = vs_wall = targets = "–"
            elif v in PEERS:
                vs_down = f"{down / base_down:.2f}x"
                vs_wall = f"{wall / base_wall:.2f}x"
                targets = "–"
            else:
                vs_down = f"{down / base_down:.2f}x"
                vs_wall = f"{wall / base_wall:.2f}x"
                ok_down = down <= 0.8 * base_down
                ok_wall = wall < base_wall
                ok_count = counts == [expected]
                targets = ("met" if ok_down and ok_wall and ok_count else
                           "NOT met (" + ", ".join(
                               n for n, ok in (("bytes", ok_down), ("time", ok_wall),
                                               ("count", ok_count)) if not ok) + ")")
            print(f"| {p} | {LABELS.get(v, v)} | {len(g)} | {wall:.1f} ({min(walls):.1f}–{max(walls):.1f}) "
                  f"| {down:,.0f} | {up:,.0f} | {vs_down} | {vs_wall} | {delivered} | {targets} |")

    print()
    print("Where the time goes (medians, seconds). Recipe: `ssh mv`, `scp -C`, "
          "`formail -s procmail`. mailhaul: connect + survey (probe + recover) + claim, "
          "transfer, verify + release, split + deliver.")
    print()
    print("| profile | variant | step 1 | step 2 | step 3 | step 4 |")
    print("|---|---|---:|---:|---:|---:|")
    for p in profiles:
        for v in variants:
            g = groups.get((p, v))
            if not g or v in PEERS:
                continue
            steps = [dict(kv.split("=", 1) for kv in r["steps"].split()) for r in g]
            if v == "recipe":
                cols = [statistics.median(float(s[k]) for s in steps) for k in ("ssh", "scp", "deliver")]
                cols.append(None)
            else:
                def med(a, b):
                    # A stage whose log line a run lacks (the log changed) shows as "–".
                    try:
                        return statistics.median(float(s[b]) - float(s[a]) if a else float(s[b])
                                                 for s in steps)
                    except (KeyError, ValueError):
                        return None
                cols = [med(None, "transfer_from"), med("transfer_from", "verify_from"),
                        med("verify_from", "deliver_from"), med("deliver_from", "done")]
            print(f"| {p} | {LABELS.get(v, v)} | " + " | ".join("–" if c is None else f"{c:.2f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
