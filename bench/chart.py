#!/usr/bin/env python3
"""Draws the fetch benchmark's medians (bench/fetch-results.tsv) as an SVG bar
chart for the README: wall time and bytes down per candidate (mailhaul, the
manual recipe, and the POP3/IMAP peers), per link profile. Bars are drawn on a
log scale, so that fetchmail's minutes and mailhaul's seconds both read.
Pure Python, no dependencies: python3 bench/chart.py > docs/img/bench-fetch.svg
"""
import csv
import math
import statistics
import sys
from collections import defaultdict

path = sys.argv[1] if len(sys.argv) > 1 else "bench/fetch-results.tsv"
runs = defaultdict(list)
with open(path) as f:
    for row in csv.DictReader(f, delimiter="\t"):
        runs[(row["profile"], row["variant"])].append(row)

profiles = [p for p in ("modem", "dsl") if any(k[0] == p for k in runs)]
variants = []
for _, v in runs:
    if v not in variants:
        variants.append(v)
ORDER = ["auto", "recipe", "mbsync", "mpop", "fetchmail"]
variants.sort(key=lambda v: (ORDER.index(v) if v in ORDER else len(ORDER), v))
PEERS = ("fetchmail", "mpop", "mbsync")


def label(variant):
    """The variant as a reader knows it: `auto` is the default config."""
    if variant == "auto":
        return "mailhaul (default config)"
    if variant == "fetchmail":
        return "fetchmail (POP3 + procmail)"
    if variant == "mpop":
        return "mpop (pipelined POP3)"
    if variant == "mbsync":
        return "mbsync (IMAP COMPRESS)"
    if variant == "ssh":
        return "SSH compression"
    if variant == "adapt":
        return "zstd --adapt"
    if variant.startswith("zstd"):
        return "zstd -" + variant[4:]
    return "ssh mv + scp -C + formail" if variant == "recipe" else "mailhaul, " + variant


def median(profile, variant, key):
    rows = runs.get((profile, variant))
    return statistics.median(float(r[key]) for r in rows) if rows else None


W, BAR, GAP, LEFT, TOP = 900, 16, 6, 230, 40
panels = [("wall time (s), median of 3, log scale", "wall_s", 1, "{:.1f} s"),
          ("bytes down (MB), median of 3, log scale", "down_bytes", 1e6, "{:.2f} MB")]
group_h = len(variants) * (BAR + GAP) + 18
panel_h = len(profiles) * group_h + 30
H = TOP + len(panels) * panel_h + 10
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
       f'font-family="DejaVu Sans, sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="10" y="22" font-size="15" font-weight="bold">Fetching 1,300 real messages '
       f'(4.9 MB) into a Maildir through an emulated link</text>']
y = TOP
for title, key, scale, fmt in panels:
    out.append(f'<text x="10" y="{y + 14}" font-weight="bold">{title}</text>')
    y += 24
    values = [median(p, v, key) / scale for p in profiles for v in variants if median(p, v, key)]
    top = max(values) if values else 1
    bottom = min(values) / 2 if values else 0.5
    for p in profiles:
        out.append(f'<text x="10" y="{y + 12}" fill="#444">{p}</text>')
        for v in variants:
            m = median(p, v, key)
            if m is None:
                continue
            value = m / scale
            frac = math.log(value / bottom) / math.log(top / bottom) if value > bottom else 0
            width = (W - LEFT - 90) * frac
            colour = "#c0504d" if v == "recipe" else "#9b9b9b" if v in PEERS else "#4f81bd"
            out.append(f'<text x="{LEFT - 6}" y="{y + 12}" text-anchor="end">{label(v)}</text>')
            out.append(f'<rect x="{LEFT}" y="{y}" width="{width:.1f}" height="{BAR}" fill="{colour}"/>')
            out.append(f'<text x="{LEFT + width + 4:.1f}" y="{y + 12}">{fmt.format(value)}</text>')
            y += BAR + GAP
        y += 18
    y += 6
out.append("</svg>")
print("\n".join(out))
