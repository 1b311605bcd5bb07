#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (nightly): each target for a time budget, one job,
# seeded from the real-mail corpus; stops at the first crash or difference
# (libFuzzer keeps the input in fuzz/artifacts/TARGET/).
#
#   bench/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#       default 600 s each; targets: split split_reference rules config claim_reply
#   cargo install cargo-fuzz --locked    (once; needs the nightly toolchain)
#
# Seeds (made once into fuzz/corpus/TARGET, which is not committed): every
# message of assets/sample-spool.mbox and of ../shared/corpus (or
# $MAILHAUL_CORPUS) as an mbox of its own and in runs of three (split
# targets), their header sections (rules), the example configs (config),
# and fuzz/seeds/claim_reply (the server script's replies). libFuzzer adds
# what it finds to the same directories, so later runs go on from there.
# Prints one line per target with the executions of this run.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-600}
shift || true
targets=${*:-split split_reference rules config claim_reply}
corpus=${MAILHAUL_CORPUS:-../shared/corpus}

python3 - "$corpus" <<'PY'
import glob, os, sys
corpus = sys.argv[1]
files = ["assets/sample-spool.mbox"] + sorted(glob.glob(os.path.join(corpus, "*.mbox")))
def messages(path):
    data = open(path, "rb").read()
    starts = [0] + [i + 2 for i in range(len(data) - 7) if data[i:i + 7] == b"\n\nFrom "]
    return [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]
def seed(target, name, data):
    d = os.path.join("fuzz/corpus", target)
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, name)
    if not os.path.exists(p):
        open(p, "wb").write(data)
if not os.path.isdir("fuzz/corpus/split"):
    n = 0
    for path in files:
        ms = messages(path)
        for i, m in enumerate(ms):
            n += 1
            if len(m) <= 65536:
                seed("split", f"m{n}", bytes([n % 2]) + m)
                seed("split_reference", f"m{n}", m)
            header = m.split(b"\n\n", 1)[0] + b"\n\n"
            header = header.split(b"\n", 1)[1] if header.startswith(b"From ") else header
            seed("rules", f"h{n}", header[:16384])
            if i % 3 == 0 and len(b"".join(ms[i:i + 3])) <= 65536:
                seed("split", f"r{n}", bytes([n % 2]) + b"".join(ms[i:i + 3]))
                seed("split_reference", f"r{n}", b"".join(ms[i:i + 3]))
    for path in ["assets/config.example.toml", "bench/corpus-rules.toml"]:
        seed("config", os.path.basename(path), open(path, "rb").read())
    for path in glob.glob("fuzz/seeds/claim_reply/*"):
        seed("claim_reply", os.path.basename(path), open(path, "rb").read())
PY

cargo +nightly fuzz build -s none >/dev/null
for target in $targets; do
  case $target in
    split|split_reference) max_len=65536 ;;
    rules) max_len=16384 ;;
    *) max_len=8192 ;;
  esac
  log=$(mktemp /tmp/mailhaul-fuzz-$target.XXXXXX)
  if ! cargo +nightly fuzz run -s none "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$budget" -max_len="$max_len" -timeout=20 -print_final_stats=1 \
      >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "$target: FAILED (input in fuzz/artifacts/$target/, log $log)" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  echo "$target: $runs executions in $budget s, 0 crashes"
  rm -f "$log"
done
