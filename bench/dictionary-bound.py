#!/usr/bin/env python3
"""How far any dictionary could go on small fetches (docs/bench-fetch.md,
"A dictionary for small fetches", "How far a dictionary can go").

Needs the CLIs zstd, xz, 7z (Debian: p7zip-full; PPMd) and zpaq (Debian:
zpaq); standard library otherwise. Reads the corpus at ../shared/corpus
(or MAILHAUL_CORPUS, or the first argument after the mode) and exits with a
message when it is absent.

Split as bench/dictionary.py: each corpus file is one user's mail in
arrival order, its first 70 % of messages are the filed mail (the history
H), fetches F of 1, 10 and 50 consecutive messages are drawn (seeded) from
the other 30 %. For adaptive compressors the cost of a fetch given the
filed mail is taken by the prefix method,

    cost(F | H) = size(compress(H + F)) - size(compress(H)),

which bounds what a dictionary made of H could give that compressor
(a few bytes of noise either way: the tail of H is coded a little
differently when more follows). Methods:

  none-9        zstd -9 F, no dictionary (today's send; the baseline)
  built-19      zstd -19 -D (last 1 MiB of H) F: the dictionary as built
  zstd22-D      zstd --ultra -22 --long=27 -D H F: all of H as a raw dictionary
  zstd22        zstd --ultra -22 --long=27, prefix
  xz            xz -9e, prefix
  ppmd16        7z PPMd order 16, 1 GB model memory, prefix (orders 24
                and 32 did worse in sum at every size; commit 87eecac ran them)
  zpaq5         zpaq -m5 (context mixing), prefix
  xz-alone, ppmd16-alone, zpaq5-alone
                the same compressors on F alone (prefix method with H one
                newline, which takes off the archive's own overhead): how
                much is the compressor rather than the filed mail

Modes:

  python3 bench/dictionary-bound.py            # the table; DRAWS=4 JOBS=2
  python3 bench/dictionary-bound.py parts      # where zpaq's bytes go, 10 messages

"parts" takes PART_DRAWS (default 2) 10-message fetches per user and gives
zpaq -m5's cost of the fetch's headers alone and bodies alone given H, and
the marginal cost of each kind of content: cost(F | H) - cost(F without
that kind | H), kinds being header fields (Received, DKIM/ARC signatures,
Message-ID/References/In-Reply-To, Date and the From_ line, the other
fields) and body lines (base64, HTML, quoted "> " lines, the other text).
"""
import collections
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
MODE = args.pop(0) if args and args[0] == "parts" else "table"
corpus = args[0] if args else os.environ.get(
    "MAILHAUL_CORPUS", os.path.join(here, "..", "..", "shared", "corpus"))
if not os.path.isfile(os.path.join(corpus, "MANIFEST.tsv")):
    sys.exit("skipped: needs the corpus at %s (or MAILHAUL_CORPUS)" % corpus)
for tool in ("zstd", "xz", "7z", "zpaq"):
    if not shutil.which(tool):
        sys.exit("skipped: needs %s (Debian: zstd xz-utils p7zip-full zpaq)" % tool)
DRAWS = int(os.environ.get("DRAWS", "4"))
PART_DRAWS = int(os.environ.get("PART_DRAWS", "2"))
JOBS = int(os.environ.get("JOBS", "2"))
SIZES = [1, 10, 50]
PREFIX = ["zstd22", "xz", "ppmd16", "zpaq5"]
ALONE = ["xz", "ppmd16", "zpaq5"]
METHODS = ["none-9", "built-19", "zstd22-D"] + PREFIX + [m + "-alone" for m in ALONE]
ZSTD22 = ["--ultra", "-22", "--long=27"]


def run(cmd, data=None, cwd=None):
    return subprocess.run(["nice", "-n", "10"] + cmd, input=data, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          check=True).stdout


def size(method, data, work):
    """Bytes of `data` compressed whole by one of the prefix methods."""
    if method == "zstd22":
        return len(run(["zstd", "-q", "-c", "--single-thread"] + ZSTD22, data))
    if method == "xz":
        return len(run(["xz", "-9e", "-T1", "-c"], data))
    src = os.path.join(work, "m")
    with open(src, "wb") as f:
        f.write(data)
    if method.startswith("ppmd"):
        out = os.path.join(work, "a.7z")
        if os.path.exists(out):
            os.remove(out)
        run(["7z", "a", "-bd", "-t7z", "-mhc=off",
             "-m0=PPMd:o=%s:mem=1g" % method[4:], out, "m"], cwd=work)
    else:
        out = os.path.join(work, "a.zpaq")
        if os.path.exists(out):
            os.remove(out)
        os.utime(src, (0, 0))
        run(["zpaq", "a", out, "m", "-m5", "-t1", "-noattributes"], cwd=work)
    return os.path.getsize(out)


def users():
    for name in sorted(f for f in os.listdir(corpus) if f.endswith(".mbox")):
        data = open(os.path.join(corpus, name), "rb").read()
        msgs = [m for m in re.split(rb"(?m)^(?=From )", data) if m]
        cut = int(len(msgs) * 0.7)
        yield name, msgs[:cut], msgs[cut:]


def draws(name, fresh, n, count):
    rng = random.Random("%s/%d" % (name, n))
    for _ in range(count):
        i = rng.randrange(max(1, len(fresh) - n))
        yield b"".join(fresh[i:i + n])


def table_user(name):
    _, filed, fresh = next(u for u in users() if u[0] == name)
    work = tempfile.mkdtemp(prefix="mailhaul-bound.")
    hist = b"".join(filed)
    hpath, rpath = os.path.join(work, "hist"), os.path.join(work, "recent")
    open(hpath, "wb").write(hist)
    open(rpath, "wb").write(hist[-(1 << 20):])
    base = {m: size(m, hist, work) for m in PREFIX}
    empty = {m: size(m, b"\n", work) for m in ALONE}
    totals = collections.defaultdict(int)
    for n in SIZES:
        for fetch in draws(name, fresh, n, DRAWS):
            totals[(n, "raw")] += len(fetch)
            totals[(n, "none-9")] += len(run(["zstd", "-q", "-c", "-9"], fetch))
            totals[(n, "built-19")] += len(run(["zstd", "-q", "-c", "-19", "-D", rpath], fetch))
            totals[(n, "zstd22-D")] += len(run(["zstd", "-q", "-c", "--single-thread"]
                                                + ZSTD22 + ["-D", hpath], fetch))
            for m in PREFIX:
                totals[(n, m)] += size(m, hist + fetch, work) - base[m]
            for m in ALONE:
                totals[(n, m + "-alone")] += size(m, b"\n" + fetch, work) - empty[m]
    shutil.rmtree(work)
    print("# %-24s H %s bytes; " % (name, format(len(hist), ",")) + "; ".join(
        "%d: %s" % (n, " ".join("%s %.3f" % (m, totals[(n, m)] / totals[(n, "none-9")])
                                for m in METHODS[1:])) for n in SIZES),
        file=sys.stderr, flush=True)
    return name, dict(totals)


def source(name):
    for key, label in (("ham-spamassassin", "SpamAssassin ham"), ("ham-enron", "Enron"),
                       ("ham-linux-mips", "linux-mips"), ("spam-", "spam (3 files)")):
        if name.startswith(key):
            return label
    return name


HEADER_KINDS = ["received", "signatures", "ids", "date", "other headers"]
BODY_KINDS = ["base64", "html", "quoted", "other body"]


def classify(msg):
    """Split one raw message into (kind, line) pairs, header fields unfolded."""
    lines = msg.splitlines(keepends=True)
    out, field, i = [], None, 0
    while i < len(lines) and lines[i].strip():
        line = lines[i]
        if line[:1] in (b" ", b"\t") and field:
            out.append((field, line))
        else:
            name = line.split(b":", 1)[0].lower()
            if line.startswith(b"From ") or name == b"date":
                field = "date"
            elif name in (b"received", b"x-received"):
                field = "received"
            elif (name in (b"dkim-signature", b"x-google-dkim-signature",
                           b"domainkey-signature", b"authentication-results")
                  or name.startswith(b"arc-")):
                field = "signatures"
            elif name in (b"message-id", b"references", b"in-reply-to"):
                field = "ids"
            else:
                field = "other headers"
            out.append((field, line))
        i += 1
    text = msg.decode("latin-1")
    bounds = set(b.encode("latin-1") for b in re.findall(
        r'(?i)boundary="?([^";\r\n]+)"?', text))
    head = b"".join(l for _, l in out).lower()
    kind = "other body"
    if re.search(rb"content-transfer-encoding:\s*base64", head):
        kind = "base64"
    elif re.search(rb"content-type:\s*text/html", head):
        kind = "html"
    in_part_head, part_head = False, b""
    for line in lines[i:]:
        s = line.rstrip(b"\r\n")
        if s.startswith(b"--") and any(s[2:].startswith(b) for b in bounds):
            in_part_head, part_head, kind = True, b"", "other body"
            out.append(("other body", line))
            continue
        if in_part_head:
            part_head += line.lower()
            if not s.strip():
                in_part_head = False
                if re.search(rb"content-transfer-encoding:\s*base64", part_head):
                    kind = "base64"
                elif re.search(rb"content-type:\s*text/html", part_head):
                    kind = "html"
            out.append(("other body", line))
            continue
        if kind == "other body" and s.startswith(b">"):
            out.append(("quoted", line))
        else:
            out.append((kind, line))
    return out


def parts_user(name):
    _, filed, fresh = next(u for u in users() if u[0] == name)
    work = tempfile.mkdtemp(prefix="mailhaul-bound.")
    hist = b"".join(filed)
    base = size("zpaq5", hist, work)

    def cost(data):
        return size("zpaq5", hist + data, work) - base

    totals = collections.Counter()
    for fetch in draws(name, fresh, 10, PART_DRAWS):
        msgs = [m for m in re.split(rb"(?m)^(?=From )", fetch) if m]
        tagged = [p for m in msgs for p in classify(m)]
        assert b"".join(l for _, l in tagged) == fetch
        whole = cost(fetch)
        totals["raw"] += len(fetch)
        totals["none-9"] += len(run(["zstd", "-q", "-c", "-9"], fetch))
        totals["zpaq5"] += whole
        for label, keep in (("headers", HEADER_KINDS), ("bodies", BODY_KINDS)):
            part = b"".join(l for k, l in tagged if k in keep)
            totals["raw " + label] += len(part)
            totals["alone " + label] += cost(part)
        for kind in HEADER_KINDS + BODY_KINDS:
            present = sum(len(l) for k, l in tagged if k == kind)
            totals["raw " + kind] += present
            if present:
                totals["marginal " + kind] += whole - cost(
                    b"".join(l for k, l in tagged if k != kind))
    shutil.rmtree(work)
    print("# %-24s %s" % (name, " ".join("%s=%d" % kv for kv in sorted(totals.items()))),
          file=sys.stderr, flush=True)
    return name, totals


def main():
    names = [u[0] for u in users()]
    version = run(["zstd", "-V"]).decode().strip()
    print("# %s; %s; %s; %s draws per user and size; load average %s" % (
        version, run(["xz", "-V"]).decode().splitlines()[0],
        "zpaq 7.15, p7zip 7z", DRAWS if MODE == "table" else PART_DRAWS,
        " ".join(open("/proc/loadavg").read().split()[:3])), file=sys.stderr, flush=True)
    with multiprocessing.Pool(JOBS) as pool:
        results = pool.map(table_user if MODE == "table" else parts_user, names, chunksize=1)
    print("# done; load average %s" % " ".join(open("/proc/loadavg").read().split()[:3]),
          file=sys.stderr)
    if MODE == "parts":
        report_parts(results)
        return
    groups = [("all %d users" % len(names), names)] + [
        (label, [n for n in names if source(n) == label])
        for label in dict.fromkeys(source(n) for n in names)]
    print("| users | messages | `zstd -9` bytes | " + " | ".join(METHODS[1:]) + " |")
    print("|---|---:|---:|" + "---:|" * (len(METHODS) - 1))
    for label, members in groups:
        for n in SIZES:
            t = collections.Counter()
            for name, totals in results:
                if name in members:
                    t.update({m: totals[(n, m)] for m in METHODS})
            print("| %s | %d | %s | %s |" % (label, n, format(t["none-9"], ","), " | ".join(
                "%.3fx" % (t[m] / t["none-9"]) for m in METHODS[1:])))


def report_parts(results):
    groups = [("all", [n for n, _ in results])] + [
        (label, [n for n, _ in results if source(n) == label])
        for label in dict.fromkeys(source(n) for n, _ in results)]
    sums = []
    for label, members in groups:
        t = collections.Counter()
        for name, totals in results:
            if name in members:
                t.update(totals)
        sums.append((label, t))
    print("| users | raw bytes | `zstd -9` | zpaq -m5 given H | headers: raw, alone given H | "
          "bodies: raw, alone given H |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, t in sums:
        print("| %s | %s | %s | %s (%.3fx) | %s, %s | %s, %s |" % (
            label, format(t["raw"], ","), format(t["none-9"], ","), format(t["zpaq5"], ","),
            t["zpaq5"] / t["none-9"], format(t["raw headers"], ","),
            format(t["alone headers"], ","), format(t["raw bodies"], ","),
            format(t["alone bodies"], ",")))
    print()
    print("| kind | " + " | ".join(label for label, _ in sums) + " |")
    print("|---|" + "---:|" * len(sums))
    for kind in HEADER_KINDS + BODY_KINDS:
        print("| %s | %s |" % (kind, " | ".join(
            "%s raw, %s" % (format(t["raw " + kind], ","), format(t["marginal " + kind], ","))
            for _, t in sums)))


if __name__ == "__main__":
    main()
