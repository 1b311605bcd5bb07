#!/usr/bin/env python3
"""What a zstd dictionary trained on a user's own mail would save on small
fetches (issue 14, must-show 4): docs/bench-fetch.md, "A dictionary for
small fetches".

Each corpus file stands for one user's mail in arrival order. Its first 70 %
of messages are the "filed mail" a dictionary is made from; fetches of 1,
5, 10, 20 and 50 consecutive messages are drawn (seeded) from the other
30 %, which no dictionary saw. Every fetch is compressed with the zstd CLI
as the server would run it:

  none-9      zstd -9, no dictionary (today's send; the baseline)
  trained-9   zstd -9 -D DICT, DICT = zstd --train --maxdict=112640 on the
              user's filed messages (one sample per message)
  trained-19  zstd -19 -D DICT, the same dictionary
  recent-19   zstd -19 -D RECENT, RECENT = the last 4 MB of the user's filed
              mail as a raw-content dictionary (no training)

and the bytes are summed over all users and draws; the table gives each
variant's bytes as a share of none-9's.

  python3 bench/dictionary.py [CORPUS_DIR]     # default ../shared/corpus
  DRAWS=20 python3 bench/dictionary.py
"""
import os
import random
import re
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
corpus = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "MAILHAUL_CORPUS", os.path.join(here, "..", "..", "shared", "corpus"))
if not os.path.isfile(os.path.join(corpus, "MANIFEST.tsv")):
    sys.exit("needs the corpus at %s (or MAILHAUL_CORPUS)" % corpus)
DRAWS = int(os.environ.get("DRAWS", "10"))
SIZES = [1, 5, 10, 20, 50]
VARIANTS = ["none-9", "trained-9", "trained-19", "recent-19"]


def zstd(args, data):
    out = subprocess.run(["zstd", "-q", "-c"] + args, input=data,
                         stdout=subprocess.PIPE, check=True)
    return len(out.stdout)


rng = random.Random(14)
totals = {(n, v): 0 for n in SIZES for v in VARIANTS}
work = tempfile.mkdtemp(prefix="mailhaul-dict-bench.")
version = subprocess.run(["zstd", "-V"], stdout=subprocess.PIPE, text=True).stdout.strip()
print("# %s; %d draws per user and size; load average %s" % (
    version, DRAWS, open("/proc/loadavg").read().split()[:3]), file=sys.stderr)
for name in sorted(f for f in os.listdir(corpus) if f.endswith(".mbox")):
    data = open(os.path.join(corpus, name), "rb").read()
    msgs = [m for m in re.split(rb"(?m)^(?=From )", data) if m]
    cut = int(len(msgs) * 0.7)
    filed, fresh = msgs[:cut], msgs[cut:]
    samples = os.path.join(work, name)
    os.makedirs(samples)
    for i, m in enumerate(filed):
        with open(os.path.join(samples, "%05d" % i), "wb") as f:
            f.write(m)
    trained = samples + ".dict"
    subprocess.run(["zstd", "-q", "--train", "--maxdict=112640", "-o", trained]
                   + [os.path.join(samples, s) for s in sorted(os.listdir(samples))],
                   check=True, stderr=subprocess.DEVNULL)
    recent = samples + ".recent"
    with open(recent, "wb") as f:
        f.write(b"".join(filed)[-4_000_000:])
    row = [name]
    for n in SIZES:
        base = dict_bytes = 0
        for _ in range(DRAWS):
            i = rng.randrange(max(1, len(fresh) - n))
            fetch = b"".join(fresh[i:i + n])
            sizes = {
                "none-9": zstd(["-9"], fetch),
                "trained-9": zstd(["-9", "-D", trained], fetch),
                "trained-19": zstd(["-19", "-D", trained], fetch),
                "recent-19": zstd(["-19", "-D", recent], fetch),
            }
            for v in VARIANTS:
                totals[(n, v)] += sizes[v]
            base += sizes["none-9"]
            dict_bytes += sizes["trained-9"]
        row.append("%d:%.3f" % (n, dict_bytes / base))
    print("# %-24s %d filed, %d fresh; trained-9/none-9 %s" % (
        name, len(filed), len(fresh), " ".join(row[1:])), file=sys.stderr)

print("| messages per fetch | none-9 bytes | " + " | ".join(VARIANTS[1:]) + " |")
print("|---:|---:|" + "---:|" * (len(VARIANTS) - 1))
for n in SIZES:
    base = totals[(n, "none-9")]
    print("| %d | %s | %s |" % (n, format(base, ","), " | ".join(
        "%.3fx" % (totals[(n, v)] / base) for v in VARIANTS[1:])))
subprocess.run(["rm", "-rf", work])
