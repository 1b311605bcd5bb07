#!/usr/bin/env python3
"""Bigger dictionaries and other levels for small fetches (docs/bench-fetch.md,
"A dictionary for small fetches"): the corpus files merged per source into
six users, the first 70 % of each user's messages as filed mail, fetches of
1, 10 and 50 consecutive messages drawn (seeded) from the rest, compressed
by the zstd CLI with raw-content dictionaries of the last 1, 4 and 8 MB of
filed mail and trained ones (110 KiB, 1 MiB) at several levels. Prints each
variant's bytes as a share of `zstd -9` and one run's mean wall time.

  python3 bench/dictionary-variants.py      # DRAWS=4; MAILHAUL_CORPUS
"""
import os, random, re, subprocess, sys, tempfile, time, collections
here = os.path.dirname(os.path.abspath(__file__))
corpus = os.environ.get("MAILHAUL_CORPUS", os.path.join(here, "..", "..", "shared", "corpus"))
if not os.path.isfile(os.path.join(corpus, "MANIFEST.tsv")):
    sys.exit("needs the corpus at %s (or MAILHAUL_CORPUS)" % corpus)
DRAWS = int(os.environ.get("DRAWS", "4"))
SIZES = [1, 10, 50]
def zstd(args, data):
    t = time.time()
    out = subprocess.run(["zstd", "-q", "-c"] + args, input=data, stdout=subprocess.PIPE, check=True)
    return len(out.stdout), time.time() - t
users = collections.defaultdict(list)
for name in sorted(f for f in os.listdir(corpus) if f.endswith(".mbox")):
    users[name.rsplit("-", 1)[0]].append(name)
work = tempfile.mkdtemp(prefix="dictx.")
rng = random.Random(14)
VARS = {}
totals = collections.defaultdict(int); times = collections.defaultdict(float)
for user, files in sorted(users.items()):
    data = b"".join(open(os.path.join(corpus, f), "rb").read() for f in files)
    msgs = [m for m in re.split(rb"(?m)^(?=From )", data) if m]
    cut = int(len(msgs) * 0.7)
    filed, fresh = msgs[:cut], msgs[cut:]
    fb = b"".join(filed)
    d = os.path.join(work, user); os.makedirs(d)
    for i, m in enumerate(filed[-3000:]):
        open(os.path.join(d, "%05d" % i), "wb").write(m)
    dicts = {}
    for mb in (1, 4, 8):
        p = d + ".raw%d" % mb
        open(p, "wb").write(fb[-mb * 1000000:])
        dicts["raw%d" % mb] = p
    for k in (110, 1000):
        p = d + ".tr%d" % k
        subprocess.run(["zstd", "-q", "--train", "--maxdict=%d" % (k * 1024), "-o", p] + [os.path.join(d, s) for s in sorted(os.listdir(d))], check=True, stderr=subprocess.DEVNULL)
        dicts["tr%d" % k] = p
    variants = {
        "none-9": ["-9"], "none-19": ["-19"],
        "raw1-19": ["-19", "-D", dicts["raw1"]], "raw4-19": ["-19", "-D", dicts["raw4"]],
        "raw8-19": ["-19", "-D", dicts["raw8"]], "raw4-9": ["-9", "-D", dicts["raw4"]],
        "raw4-3": ["-3", "-D", dicts["raw4"]],
        "tr110-19": ["-19", "-D", dicts["tr110"]], "tr1000-19": ["-19", "-D", dicts["tr1000"]],
        "tr1000-9": ["-9", "-D", dicts["tr1000"]],
    }
    VARS = list(variants)
    sz = {k: os.path.getsize(v) for k, v in dicts.items()}
    print("#", user, len(filed), len(fresh), len(fb), sz, file=sys.stderr, flush=True)
    for n in SIZES:
        for _ in range(DRAWS):
            i = rng.randrange(max(1, len(fresh) - n))
            fetch = b"".join(fresh[i:i + n])
            for v, a in variants.items():
                b, t = zstd(a, fetch)
                totals[(n, v)] += b; times[(n, v)] += t
for n in SIZES:
    base = totals[(n, "none-9")]
    print(n, base, " ".join("%s=%.3f(%.2fs)" % (v, totals[(n, v)] / base, times[(n, v)] / (DRAWS * len(users))) for v in VARS), flush=True)
subprocess.run(["rm", "-rf", work])
