#!/usr/bin/env bash
# Bytes of real small fetches with and without the dictionary
# (docs/bench-fetch.md, "A dictionary for small fetches"): a private sshd
# on loopback; per corpus file (one user), mailhaul fetches its first 70 %
# of messages (the filed mail, from which it makes the dictionary), one
# more message (which sends the dictionary up), and then, DRAWS times per
# size, 1, 10 and 50 consecutive messages drawn (seeded) from the other
# 30 %, once through account `dict` (dictionary on, at level 19 as on a
# slow link) and once through
# account `plain` (dictionary = false: zstd -9, today's default). Bytes are
# the history's payload (compressed stream) and socket (TCP_INFO) columns.
# mailhaul logs in as a throwaway user made for the run with `useradd -m -s
# /bin/bash` (Debian's stock /etc/skel start-up files), who owns the spools;
# not as root, whose ~/.bashrc may run anything (here `pyenv init`).
#
#   flock /tmp/mailhaul-bench.lock nice -n 5 bash bench/dictionary-fetch.sh   # as root; DRAWS=3
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
DRAWS=${DRAWS:-3}
[ "$(id -u)" -eq 0 ] || { echo "run as root (it starts a private sshd)" >&2; exit 1; }
corpus=${MAILHAUL_CORPUS:-$repo/../shared/corpus}
[ -f "$corpus/MANIFEST.tsv" ] || { echo "needs the corpus at $corpus (or MAILHAUL_CORPUS)" >&2; exit 1; }
[ -n "${MAILHAUL_BIN:-}" ] || cargo build --release --quiet --bin mailhaul
mailhaul=${MAILHAUL_BIN:-$repo/target/release/mailhaul}

bench=$(mktemp -d /tmp/mailhaul-dict-bench.XXXXXX)
# The login user must reach the spools and authorized_keys below it.
chmod 711 "$bench"
# shellcheck source=bench/sshd.sh
. "$repo/bench/sshd.sh"
# Cleaned up once, on the way out; an interrupt ends the run.
trap bench_teardown EXIT
trap 'exit 130' INT TERM
# The login user: stock shell start-up (Debian's /etc/skel), made for this run.
user=$(printf 'mhd%d' $$ | cut -c1-16)
add_user "$user" /bin/bash login
ssh-keygen -q -t ed25519 -N '' -f "$bench/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$bench/client_key"
cp "$bench/client_key.pub" "$bench/authorized_keys"
chmod 644 "$bench/authorized_keys"
port=$(free_port)
start_sshd "$port"
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$bench/host_key.pub")" > "$bench/known_hosts"
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg); $(zstd -V)" >&2
python3 - "$bench" "$port" "$mailhaul" "$corpus" "$DRAWS" "$user" <<'PY'
import os, pwd, random, re, subprocess, sys
bench, port, mailhaul, corpus, draws, user = sys.argv[1:]
draws = int(draws)
rng = random.Random(14)
login = pwd.getpwnam(user)
totals = {}
for name in sorted(f for f in os.listdir(corpus) if f.endswith(".mbox")):
    home = os.path.join(bench, name)
    os.makedirs(home)
    # The spools' directory is the login user's (a claim renames the spool).
    spool_dir = os.path.join(home, "spool")
    os.makedirs(spool_dir, mode=0o700)
    os.chown(spool_dir, login.pw_uid, login.pw_gid)
    spools = {a: os.path.join(spool_dir, "spool-" + a) for a in ("dict", "plain")}
    config = os.path.join(home, "config.toml")
    with open(config, "w") as f:
        f.write('[general]\nmaildir = "%s/Maildir"\n\n[filter]\nformat = "mboxrd"\n' % home)
        for a in ("dict", "plain"):
            f.write('\n[[account]]\nname = "%s"\nhost = "127.0.0.1"\nport = %s\nuser = "%s"\n'
                    'identity_file = "%s/client_key"\nuse_agent = false\nknown_hosts_file = "%s/known_hosts"\n'
                    'spool = "%s"\nmaildir = "%s/Maildir-%s"\n%s'
                    % (a, port, user, bench, bench, spools[a], home, a,
                       "dictionary = false\n" if a == "plain" else
                       # The level a slow link gets (loopback measures no rate).
                       "zstd_level = 19\n"))
    env = dict(os.environ, HOME=home, XDG_DATA_HOME=home + "/data", XDG_CONFIG_HOME=home + "/config")
    def fetch(account, data):
        open(spools[account], "wb").write(data)
        os.chmod(spools[account], 0o600)
        os.chown(spools[account], login.pw_uid, login.pw_gid)
        out = subprocess.run([mailhaul, "--config", config, "fetch", account], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("fetch failed: %s %s" % (out.stdout, out.stderr))
        row = open(home + "/data/mailhaul/history.tsv").read().splitlines()[-1].split("\t")
        return int(row[5]), int(row[6]), row[7]
    data = open(os.path.join(corpus, name), "rb").read()
    msgs = [m for m in re.split(rb"(?m)^(?=From )", data) if m]
    cut = int(len(msgs) * 0.7)
    filed, fresh = msgs[:cut], msgs[cut:]
    fetch("dict", b"".join(filed))
    fetch("dict", fresh[0])  # the server lacks the dictionary: sent up after it
    fresh = fresh[1:]
    for n in (1, 10, 50):
        for _ in range(draws):
            i = rng.randrange(max(1, len(fresh) - n))
            batch = b"".join(fresh[i:i + n])
            d = fetch("dict", batch)
            p = fetch("plain", batch)
            t = totals.setdefault(n, [0, 0, 0, 0, 0, 0])
            for k, v in enumerate((d[0], d[1], p[0], p[1], len(batch), "dictionary" in d[2])):
                t[k] += v
            print("# %s %d msgs: dict %d payload %d socket (%s); plain %d payload %d socket (%s)"
                  % (name, n, d[0], d[1], d[2], p[0], p[1], p[2]), file=sys.stderr, flush=True)
print("| messages per fetch | fetches | raw bytes | plain (zstd -9) payload | with dictionary payload | ratio | socket bytes plain | socket bytes with | ratio | fetches that used it |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n, (dp, ds, pp, ps, raw, used) in sorted(totals.items()):
    count = draws * len([f for f in os.listdir(corpus) if f.endswith(".mbox")])
    print("| %d | %d | %s | %s | %s | %.3fx | %s | %s | %.3fx | %d |" % (
        n, count, format(raw, ","), format(pp, ","), format(dp, ","), dp / pp,
        format(ps, ","), format(ds, ","), ds / ps, used))
PY
