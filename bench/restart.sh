#!/usr/bin/env bash
# A web server's restart on a busy machine: the time from its exec to
# its first "ready" health answer, and the CPU it spends in that time,
# for one or two builds side by side in one run.
#
# Session 22 found a restarted web server spending 45-190 ms of a core in
# `quanta`'s clock calibration (the Prometheus recorder's clock) under
# load; this measures that path (docs/benchmarks.md, session 23).
#
# One `sticky up` from STICKY_BIN (3 stores, R = 2, sync; ws1-ws3, the
# standby ws4, a director) on ports from BASE_PORT; its ws4 is killed and
# then, ROUNDS times per build (which build goes first alternates), a ws4
# of that build is started by hand with the same command line, polled at
# /.sticky/health every 2 ms until it says ready, its CPU read from
# /proc/<pid>/task/*/schedstat, and killed. During every start either
# LOAD busy loops run (default: one per core), or with TRAFFIC=RATE the
# cluster serves `sticky bench` users at RATE requests/s through its
# director (many short wake-ups, as in a chaos run), or both.
#
#   SKIP_BUILD=1 BEFORE_BIN=/path/to/old/sticky bash bench/restart.sh
#
# Env: STICKY_BIN (default target/release/sticky, built unless
# SKIP_BUILD=1), BEFORE_BIN (optional), ROUNDS (default 20), LOAD
# (default nproc; 0 for none), TRAFFIC (requests/s, default none),
# BASE_PORT (default 27600).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-20}
LOAD=${LOAD:-$(nproc)}
BASE_PORT=${BASE_PORT:-27600}
STICKY_BIN=${STICKY_BIN:-target/release/sticky}
# shellcheck source=bench/lib/ab.sh
. bench/lib/ab.sh
ab_builds

work=$(mktemp -d /tmp/sticky-bench-restart.XXXXXX)
up=""
loops=()
cleanup() {
  for p in "${loops[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$up" ]; then kill "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$STICKY_BIN" up --dir "$work/up" --port "$BASE_PORT" --log info > "$work/up.out" 2>&1 &
up=$!
ab_up_wait "$STICKY_BIN" "$work/up"
ws4=$(ab_pid_of "$work/up" ws4)
kill -9 "$ws4"

for _ in $(seq 1 "$LOAD"); do
  (while :; do :; done) &
  loops+=($!)
done
if [ -n "${TRAFFIC:-}" ]; then
  "$STICKY_BIN" bench --dir "$work/up" --users 60 --rate "$TRAFFIC" --duration 1h \
    --no-progress > "$work/traffic.out" 2>&1 &
  loops+=($!)
  sleep 3
fi

one_start() { # name bin round
  python3 - "$1" "$2" "$3" "$work/up/cluster.toml" >> "$work/results.jsonl" <<'PY'
import glob, hashlib, hmac, json, os, re, subprocess, sys, time, urllib.request
name, binary, rnd, config = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
text = open(config).read()
secret = re.search(r'^secret = "(.*)"', text, re.M).group(1)
token = hmac.new(secret.encode(), b"sticky/admin/v1", hashlib.sha256).hexdigest()
addr = re.search(r'name = "ws4"\s*\nlisten = "(.*)"', text).group(1)

def cpu_ns(pid):
    total = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            total += int(open(f).read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total

t0 = time.monotonic()
proc = subprocess.Popen([binary, "web", "--config", config, "--name", "ws4"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ready = None
deadline = t0 + 20
while time.monotonic() < deadline:
    try:
        req = urllib.request.Request(f"http://{addr}/.sticky/health",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=1) as r:
            if json.load(r).get("ready"):
                ready = time.monotonic() - t0
                break
    except OSError:
        pass
    time.sleep(0.002)
cpu = cpu_ns(proc.pid)
proc.kill()
proc.wait()
if ready is None:
    raise SystemExit(f"{name} round {rnd}: ws4 not ready within 20 s")
print(json.dumps({"build": name, "round": rnd, "ready_ms": ready * 1000, "cpu_ms": cpu / 1e6}))
PY
}

ab_rounds one_start

python3 - "$work/results.jsonl" "$LOAD" "${TRAFFIC:-0}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
load = f"{sys.argv[2]} busy loop(s), {sys.argv[3]} requests/s of traffic"
by = {}
for r in rows:
    by.setdefault(r["build"], []).append(r)
print(f"web server restart, {load}, {len(rows)} starts")
print(f"{'build':8} {'starts':>6} {'ready p50':>10} {'ready max':>10} {'CPU p50':>9} {'CPU max':>9}")
med = {}
for b, xs in by.items():
    ready = sorted(x["ready_ms"] for x in xs)
    cpu = sorted(x["cpu_ms"] for x in xs)
    med[b] = (statistics.median(ready), statistics.median(cpu))
    print(f"{b:8} {len(xs):>6} {med[b][0]:>7.1f} ms {ready[-1]:>7.1f} ms {med[b][1]:>6.1f} ms {cpu[-1]:>6.1f} ms")
if "before" in med and "after" in med:
    a, b = med["after"], med["before"]
    print(f"after/before (medians): time to ready {a[0]/b[0]:.2f}x, CPU to ready {a[1]/b[1]:.2f}x")
PY
