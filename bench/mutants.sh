#!/usr/bin/env bash
# Mutation testing of the engine's safety modules with cargo-mutants: each
# mutant (an operator flipped, a function body replaced by a default value)
# is built and run against the narrowest test set that is meant to defend
# that module; a mutant no test kills ("missed") is a promise no test checks.
#
#   bench/mutants.sh [MODULE...]          (default: every module below, in order)
#   MUTANTS_BUDGET=3600 bench/mutants.sh  (wall-clock budget in seconds for the
#                                          whole run, default 3600; a module that
#                                          does not finish in what is left is
#                                          stopped and its partial results kept)
#   MUTANTS_OUT=target/mutants            (where the tree, the build and the results
#                                          go; another directory lets a second run,
#                                          of other modules, go on at the same time)
#   MUTANTS_UNIT_TIMEOUT=60               (seconds before a run of the unit tests,
#   MUTANTS_TEST_TIMEOUT=300               or of the integration tests, counts as
#                                          a timeout: the mutant hangs)
#
# Each module is run in two passes: its mutants against the lib's unit tests,
# then the ones those missed against the module's integration tests too.
# Modules (name: files, by glob so that a module split into a folder is still
# found; integration test set of the second pass):
#   transfer   src/engine/transfer{.rs,/**}     lib + fetch_hostile_server + durability
#   journal    src/engine/journal{.rs,/**}      lib + fetch_crash + durability
#   claim      src/engine/claim{.rs,/**}        lib + fetch_hostile_server + fetch_server_tools
#   host_keys  src/engine/ssh/host_keys{.rs,/**} lib + ssh_connect
#   deliver    src/engine/deliver{.rs,/**}      lib + durability + filter_cli
#   mbox       src/engine/mbox{.rs,/**}         lib + corpus_roundtrip
#   tunnel     src/engine/tunnel{.rs,/**}, only the listener's functions
#              (TunnelSpec::from_account, Tunnel::start, local_addr) and
#              the same-user check of each client (Worker::refusal)
#                                               lib + tunnel_command + tunnel_peers
# Mutants are made in place in a private clone of the committed HEAD,
# target/mutants/tree (reset to HEAD at every start, so a mutant left behind
# by an interrupted run is undone; uncommitted changes are not tested), and
# built in target/mutants/build: the tree's path never changes, so
# dependencies, the vendored libssh2 included, are compiled once and reused
# by every pass and later runs. Results: target/mutants/MODULE/mutants.out/{caught,missed,timeout,
# unviable}.txt, and a summary printed at the end. docs/testing.md lists what
# survived the last full run and why.
#
# Needs cargo-mutants: `cargo install cargo-mutants --locked`. The integration
# test sets need what tests/run-all.sh installs, and root.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo mutants --version >/dev/null 2>&1; then
  echo "cargo-mutants is missing: cargo install cargo-mutants --locked" >&2
  exit 1
fi

budget=${MUTANTS_BUDGET:-3600}
test_timeout=${MUTANTS_TEST_TIMEOUT:-300}
unit_timeout=${MUTANTS_UNIT_TIMEOUT:-60}
out_root=${MUTANTS_OUT:-target/mutants}
mkdir -p "$out_root"
# One target dir for every pass and run: dependencies are built once. Seeded
# from the ordinary debug build when there is one.
export CARGO_TARGET_DIR=$PWD/$out_root/build
if [ ! -d "$CARGO_TARGET_DIR/debug" ] && [ -d target/debug/deps ]; then
  mkdir -p "$CARGO_TARGET_DIR"
  cp -a target/debug "$CARGO_TARGET_DIR/"
fi
# The tree the mutants are made in: HEAD, checked out (git keeps the files
# that did not change, and their times, so little is rebuilt).
tree=$PWD/$out_root/tree
repo=$PWD
if [ ! -d "$tree/.git" ]; then
  git clone --quiet --no-checkout --shared "$repo" "$tree"
fi
git -C "$tree" fetch --quiet "$repo" HEAD
git -C "$tree" checkout --quiet --force --detach FETCH_HEAD
git -C "$tree" clean --quiet -fdx
echo "mutating $(git -C "$tree" log --oneline -1)" >&2

# files_of MODULE: -f arguments for the module's files, whichever exist.
files_of() {
  local base
  case $1 in
    transfer) base=src/engine/transfer ;;
    journal) base=src/engine/journal ;;
    claim) base=src/engine/claim ;;
    host_keys) base=src/engine/ssh/host_keys ;;
    deliver) base=src/engine/deliver ;;
    mbox) base=src/engine/mbox ;;
    tunnel) base=src/engine/tunnel ;;
    *) echo "unknown module $1" >&2; exit 2 ;;
  esac
  [ -f "$base.rs" ] && printf -- '-f\n%s\n' "$base.rs"
  [ -d "$base" ] && printf -- '-f\n%s\n' "$base/**"
  return 0
}

# tests_of MODULE: the cargo test arguments.
tests_of() {
  case $1 in
    transfer) echo "--lib --test fetch_hostile_server --test durability" ;;
    journal) echo "--lib --test fetch_crash --test durability" ;;
    claim) echo "--lib --test fetch_hostile_server --test fetch_server_tools" ;;
    host_keys) echo "--lib --test ssh_connect" ;;
    deliver) echo "--lib --test durability --test filter_cli" ;;
    mbox) echo "--lib --test corpus_roundtrip" ;;
    tunnel) echo "--lib --test tunnel_command --test tunnel_peers" ;;
  esac
}

# extra_of MODULE: further cargo-mutants filters.
extra_of() {
  case $1 in
    tunnel) printf -- '-F\n%s\n' 'from_account|Tunnel::start|local_addr|refusal' ;;
  esac
}

modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
  modules=(transfer journal claim host_keys deliver mbox tunnel)
fi

deadline=$(($(date +%s) + budget))
for m in "${modules[@]}"; do
  left=$((deadline - $(date +%s)))
  if [ "$left" -le 60 ]; then
    echo "== $m: skipped, the budget is spent" >&2
    continue
  fi
  mapfile -t files < <(files_of "$m")
  mapfile -t extra < <(extra_of "$m")
  if [ ${#files[@]} -eq 0 ]; then
    echo "== $m: no files found" >&2
    continue
  fi
  read -r -a test_args <<<"$(tests_of "$m")"
  echo "== $m: ${files[*]} (${left}s of budget left; tests: ${test_args[*]})" >&2
  rm -rf "${out_root:?}/$m"
  # Two passes: the lib's unit tests first (one small build and a few
  # seconds of tests per mutant), then the module's integration tests for
  # the mutants the unit tests missed only (--iterate skips those caught).
  # Test targets go in as cargo arguments, so that each mutant's build
  # compiles only them (after `--` they would reach `cargo test` alone and
  # every integration test binary would be built for every mutant).
  # The baseline (unmutated tests) is skipped: run the suite before this.
  for pass in unit full; do
    left=$((deadline - $(date +%s)))
    [ "$left" -gt 60 ] || break
    if [ "$pass" = unit ]; then
      cargo_args=(--cargo-arg=--lib)
      iterate=()
      timeout_s=$unit_timeout
    else
      missed=$out_root/$m/mutants.out/missed.txt
      [ -s "$missed" ] || break
      cargo_args=()
      for a in "${test_args[@]}"; do cargo_args+=("--cargo-arg=$a"); done
      iterate=(--iterate)
      # Mutants that hung the unit tests are detected already: not again.
      while read -r hung; do
        [ -n "$hung" ] && iterate+=(--exclude-re "^$(printf '%s' "$hung" | sed 's/[][\.*^$(){}?+|/]/\\&/g')\$")
      done <"$out_root/$m/mutants.out/timeout.txt"
      timeout_s=$test_timeout
    fi
    timeout --foreground "$left" cargo mutants --in-place --dir "$tree" \
      --no-shuffle --baseline skip \
      --timeout "$timeout_s" --build-timeout 900 \
      --output "$PWD/$out_root/$m" "${iterate[@]}" "${files[@]}" "${extra[@]}" \
      "${cargo_args[@]}" -- -- --test-threads=2 || true
    # An interrupted run can leave its mutant in the tree.
    git -C "$tree" checkout --quiet --force --detach FETCH_HEAD
  done
done

# After a second pass, mutants.out.old holds the first (cargo-mutants moves
# it aside): caught counts both, missed only the second.
echo
echo "| module | mutants tested | caught | missed | timeout | unviable |"
echo "|---|---:|---:|---:|---:|---:|"
lines() { cat "$@" 2>/dev/null | sort -u | grep -c . || true; }
for m in "${modules[@]}"; do
  d=$out_root/$m/mutants.out
  [ -d "$d" ] || continue
  o=$out_root/$m/mutants.out.old
  caught=$(lines "$d/caught.txt" "$o/caught.txt")
  missed=$(lines "$d/missed.txt")
  timeouts=$(lines "$d/timeout.txt" "$o/timeout.txt")
  unviable=$(lines "$d/unviable.txt" "$o/unviable.txt")
  echo "| $m | $((caught + missed + timeouts + unviable)) | $caught | $missed | $timeouts | $unviable |"
done
for m in "${modules[@]}"; do
  d=$out_root/$m/mutants.out
  if [ -s "$d/missed.txt" ]; then
    echo
    echo "missed in $m:"
    sed 's/^/  /' "$d/missed.txt"
  fi
done
