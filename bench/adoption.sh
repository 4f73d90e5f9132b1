#!/usr/bin/env bash
# Adoption's cost (issue 19 item 5): how long the standby takes to claim
# every session of a killed web server, and the CPU it spends per claimed
# session, for one or two builds side by side in one run.
#
# Per build and round: `sticky up` (3 stores, R = 2, sync; 3 web servers
# and the standby ws4; a director) on ports from BASE_PORT; N sessions
# made through the director with `sticky bench --fresh-sessions` (about a
# third land on ws1); then ws1 is killed with kill -9 while `perf stat`
# counts ws4's task clock and its `writev` calls (its sends to the stores).
# The director declares ws1 dead and asks ws4 to adopt its sessions; the
# figures are ws4's own "adoption done" line (sessions claimed, ms) and
# the counters over the 4 s window, divided by the sessions claimed.
#
#   SKIP_BUILD=1 BEFORE_BIN=/path/to/old/sticky bash bench/adoption.sh
#
# Env: STICKY_BIN (default target/release/sticky, built unless
# SKIP_BUILD=1), BEFORE_BIN (a second build to compare, optional), N
# (sessions made, default 30000), ROUNDS (default 3), BASE_PORT (default
# 27500; `sticky up --port`). Needs `perf` (linux-perf) and root or a
# perf_event_paranoid that lets it count another process.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-30000}
ROUNDS=${ROUNDS:-3}
BASE_PORT=${BASE_PORT:-27500}
STICKY_BIN=${STICKY_BIN:-target/release/sticky}
if ! command -v perf > /dev/null; then
  echo "adoption.sh needs perf (apt-get install linux-perf)" >&2
  exit 1
fi
# shellcheck source=bench/lib/ab.sh
. bench/lib/ab.sh
ab_builds

work=$(mktemp -d /tmp/sticky-bench-adoption.XXXXXX)
up=""
cleanup() {
  if [ -n "$up" ]; then kill "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

run_round() { # name bin round
  local name=$1 bin=$2 round=$3 dir="$work/$1-$3"
  mkdir -p "$dir"
  "$bin" up --dir "$dir" --port "$BASE_PORT" --log info > "$dir/up.out" 2>&1 &
  up=$!
  ab_up_wait "$bin" "$dir"
  "$bin" bench --dir "$dir" --fresh-sessions --write-ratio 1 --warmup 0s \
    --requests "$N" --users 32 --no-progress > "$dir/bench.out" 2>&1
  local ws1 ws4
  ws1=$(ab_pid_of "$dir" ws1)
  ws4=$(ab_pid_of "$dir" ws4)
  perf stat -x, -e task-clock,syscalls:sys_enter_writev -p "$ws4" -o "$dir/perf.csv" -- sleep 4 &
  local perf_pid=$!
  sleep 0.3
  kill -9 "$ws1"
  for _ in $(seq 1 100); do
    grep -q 'adoption done' "$dir/logs/ws4.log" 2>/dev/null && break
    sleep 0.1
  done
  wait "$perf_pid"
  python3 - "$name" "$round" "$dir/logs/ws4.log" "$dir/perf.csv" >> "$work/results.jsonl" <<'PY'
import json, re, sys
name, rnd, log, csv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
line = next((l for l in open(log) if "adoption done" in l), None)
if line is None:
    raise SystemExit(f"{name} round {rnd}: ws4 logged no 'adoption done'")
claimed = int(re.search(r"claimed=(\d+)", line).group(1))
ms = int(re.search(r"ms=(\d+)", line).group(1))
counts = {}
for l in open(csv):
    parts = l.strip().split(",")
    if len(parts) > 2 and parts[0] and parts[0][0].isdigit():
        counts[parts[2]] = float(parts[0])
print(json.dumps({"build": name, "round": rnd, "claimed": claimed, "ms": ms,
                  "cpu_ms": counts.get("task-clock", 0.0),
                  "writev": counts.get("syscalls:sys_enter_writev", 0.0)}))
PY
  kill "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
  up=""
}

ab_rounds run_round

python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'build':8} {'round':>5} {'claimed':>8} {'ms':>6} {'ws4 CPU/claim':>14} {'writev/claim':>13}")
by = {}
for r in rows:
    per = r["cpu_ms"] * 1000 / r["claimed"]
    wv = r["writev"] / r["claimed"]
    by.setdefault(r["build"], []).append((r["ms"], per, wv))
    print(f"{r['build']:8} {r['round']:>5} {r['claimed']:>8} {r['ms']:>6} {per:>11.1f} us {wv:>13.2f}")
med = {}
for b, xs in by.items():
    med[b] = [statistics.median(x[i] for x in xs) for i in range(3)]
    print(f"{b}: median of rounds: adoption {med[b][0]:.0f} ms, ws4 CPU {med[b][1]:.1f} us and {med[b][2]:.2f} writev per claimed session")
if "before" in med and "after" in med:
    a, b = med["after"], med["before"]
    print(f"after/before: adoption time {a[0]/b[0]:.2f}x, ws4 CPU per claim {a[1]/b[1]:.2f}x, writev per claim {a[2]/b[2]:.2f}x")
PY
