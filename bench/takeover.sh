#!/usr/bin/env bash
# The takeover's own latency, one at a time (issue 19 item 5), against a
# cached request of the same sessions on the same server, for one or two
# builds side by side in one run.
#
# Per build and round: 3 `sticky store`s and 2 `sticky web`s (R = 2, sync)
# on loopback; N sessions made on ws1; ws1 killed with kill -9; then each
# session asked of ws2 in turn: the first request is a takeover (a claim
# at the stores), the second a cached read. The first takeover of a round
# also proves ws1 gone and releases its lease; it is reported apart.
# Requests go straight to the web servers (no director), one at a time,
# so the figures are the claim's round trips and work, not a burst's
# queueing (which `sticky chaos` measures).
#
#   SKIP_BUILD=1 BEFORE_BIN=/path/to/old/sticky bash bench/takeover.sh
#
# Env: STICKY_BIN (default target/release/sticky, built unless
# SKIP_BUILD=1), BEFORE_BIN (a second build to compare, optional),
# N (sessions per round, default 300), ROUNDS (default 3), BASE_PORT
# (default 27400; uses BASE_PORT..BASE_PORT+5).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-300}
ROUNDS=${ROUNDS:-3}
BASE_PORT=${BASE_PORT:-27400}
STICKY_BIN=${STICKY_BIN:-target/release/sticky}
# shellcheck source=bench/lib/ab.sh
. bench/lib/ab.sh
ab_builds

work=$(mktemp -d /tmp/sticky-bench-takeover.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/cluster.toml" <<EOF
secret = "bench-takeover-0123456789abcdef0123456789"
replicas = 2
mode = "sync"
[[web]]
name = "ws1"
listen = "127.0.0.1:$((BASE_PORT + 4))"
[[web]]
name = "ws2"
listen = "127.0.0.1:$((BASE_PORT + 5))"
[[store]]
name = "s1"
listen = "127.0.0.1:$((BASE_PORT + 1))"
[[store]]
name = "s2"
listen = "127.0.0.1:$((BASE_PORT + 2))"
[[store]]
name = "s3"
listen = "127.0.0.1:$((BASE_PORT + 3))"
EOF

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "port $1 did not open" >&2
  return 1
}

run_round() { # name bin round
  local name=$1 bin=$2 round=$3
  pids=()
  rm -rf "$work"/s*-state
  for s in 1 2 3; do
    STICKY_LOG=warn "$bin" store --config "$work/cluster.toml" --name "s$s" \
      --state-dir "$work/s$s-state" > "$work/s$s.log" 2>&1 &
    pids+=($!); disown $!
  done
  for s in 1 2 3; do wait_port $((BASE_PORT + s)); done
  for w in 1 2; do
    STICKY_LOG=warn "$bin" web --config "$work/cluster.toml" --name "ws$w" \
      > "$work/ws$w.log" 2>&1 &
    pids+=($!); disown $!
  done
  wait_port $((BASE_PORT + 4)); wait_port $((BASE_PORT + 5))
  local ws1_pid=${pids[3]}
  python3 - "$name" "$round" "$N" $((BASE_PORT + 4)) $((BASE_PORT + 5)) "$ws1_pid" \
    >> "$work/results.jsonl" <<'PY'
import http.client, json, os, signal, sys, time
name, rnd, n, p1, p2, ws1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])

def ask(port, method, cookie=None, deadline=10.0):
    end = time.monotonic() + deadline
    while True:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"cookie": cookie} if cookie else {}
        t = time.perf_counter()
        try:
            c.request(method, "/api/counter", body=b"" if method == "POST" else None, headers=headers)
            r = c.getresponse()
            body = r.read()
            took = time.perf_counter() - t
            if r.status == 200:
                return r, body, took
            if time.monotonic() > end:
                raise SystemExit(f"{method} on {port}: HTTP {r.status} {body[:200]!r}")
        finally:
            c.close()
        time.sleep(0.05)

cookies = []
for _ in range(n):
    r, _, _ = ask(p1, "POST")
    sid = [v for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("sticky.sid=")]
    cookies.append(sid[0].split(";")[0])
os.kill(ws1, signal.SIGKILL)
time.sleep(0.2)
takeover, cached = [], []
for i, ck in enumerate(cookies):
    r, body, took = ask(p2, "GET", ck)
    src = json.loads(body).get("source")
    if src != "store":
        raise SystemExit(f"session {i}: expected a takeover, got source {src!r}")
    takeover.append(took)
    r, body, took = ask(p2, "GET", ck)
    cached.append(took)
print(json.dumps({"build": name, "round": rnd, "first": takeover[0], "takeover": takeover[1:], "cached": cached}))
PY
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.02; done
  done
  pids=()
}

ab_rounds run_round

python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000
by = {}
for r in rows:
    by.setdefault(r["build"], []).append(r)
print(f"{'build':8} {'round':>5} {'takeover p50':>13} {'p99':>7} {'cached p50':>11} {'p99':>7} {'ratio p50':>10} {'ratio p99':>10} {'first':>7}  (ms)")
summary = {}
for b, rs in by.items():
    for r in rs:
        t50, t99 = pct(r["takeover"], 0.5), pct(r["takeover"], 0.99)
        c50, c99 = pct(r["cached"], 0.5), pct(r["cached"], 0.99)
        summary.setdefault(b, []).append((t50, t99, c50, c99))
        print(f"{b:8} {r['round']:>5} {t50:>13.3f} {t99:>7.3f} {c50:>11.3f} {c99:>7.3f} {t50/c50:>9.2f}x {t99/c99:>9.2f}x {r['first']*1000:>7.2f}")
for b, s in summary.items():
    med = [statistics.median(x[i] for x in s) for i in range(4)]
    print(f"{b}: median of rounds: takeover p50 {med[0]:.3f} ms, p99 {med[1]:.3f} ms; cached p50 {med[2]:.3f}, p99 {med[3]:.3f}; takeover/cached {med[0]/med[2]:.2f}x at p50, {med[1]/med[3]:.2f}x at p99")
if len(summary) == 2 and "before" in summary:
    a = [statistics.median(x[i] for x in summary["after"]) for i in range(2)]
    b = [statistics.median(x[i] for x in summary["before"]) for i in range(2)]
    print(f"after/before: takeover p50 {a[0]/b[0]:.2f}x, p99 {a[1]/b[1]:.2f}x")
PY
