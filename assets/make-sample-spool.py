#!/usr/bin/env python3
"""Rebuilds sample-spool.mbox and sample-spool.md5 from the shared corpus.

Usage: python3 assets/make-sample-spool.py [CORPUS_DIR]   (default ../shared/corpus)

Messages are copied byte for byte (From_ line, mboxrd body, separator line);
the md5 of each comes from the corpus's MANIFEST.tsv. Every From_ line in the
corpus starts a message (body From lines are all >-quoted), so splitting a
corpus file at lines starting with "From " is exact.
"""
import os
import re
import sys

# (file, first index, last index), 1-based and inclusive, in output order.
SELECTION = [
    ("ham-spamassassin-01.mbox", 1, 75),
    ("spam-bruceg-01.mbox", 20, 66),
    ("ham-enron-beck-01.mbox", 335, 390),
    ("spam-bruceg-01.mbox", 119, 125),
    ("ham-linux-mips-01.mbox", 95, 150),
    ("spam-gp-01.mbox", 170, 185),
    ("spam-bruceg-01.mbox", 235, 240),
    ("spam-spamassassin-01.mbox", 150, 160),
    ("spam-spamassassin-01.mbox", 179, 182),
    ("ham-enron-beck-02.mbox", 150, 155),
    ("spam-bruceg-01.mbox", 501, 515),
    ("ham-spamassassin-03.mbox", 515, 525),
    ("spam-bruceg-01.mbox", 736, 740),
]

here = os.path.dirname(os.path.abspath(__file__))
corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "corpus")
manifest = {}
with open(os.path.join(corpus, "MANIFEST.tsv")) as f:
    next(f)
    for row in f:
        file, index, _source, md5 = row.rstrip("\n").split("\t")
        manifest[(file, int(index))] = md5

out = bytearray()
md5s = []
for file, first, last in SELECTION:
    data = open(os.path.join(corpus, file), "rb").read()
    starts = [m.start() for m in re.finditer(rb"^From ", data, re.M)] + [len(data)]
    for index in range(first, last + 1):
        out += data[starts[index - 1]:starts[index]]
        md5s.append(manifest[(file, index)])

with open(os.path.join(here, "sample-spool.mbox"), "wb") as f:
    f.write(out)
with open(os.path.join(here, "sample-spool.md5"), "w") as f:
    for i, md5 in enumerate(md5s, 1):
        f.write(f"{i}\t{md5}\n")
print(f"{len(md5s)} messages, {len(out)} bytes")
