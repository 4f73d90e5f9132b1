#!/usr/bin/env bash
# Sticky's session library (the demo app, `sticky web`) next to its floor
# and its peer, under one session workload driven by `sticky bench`, on
# loopback, in one run (issue 19 item 1):
#
#   sticky: 3 `sticky store` + 1 `sticky web` (MODE, REPLICAS; sync and R=2
#           by default): the demo app on the session library.
#   floor:  bench/peers/floor-app: the same JSON API and answers on bare
#           axum handlers with every session in a plain in-process HashMap
#           (no replication, no stores, no cookie signature, no expiry): the
#           least a session-keeping web server can cost.
#   peer:   redis-server (no persistence) + bench/peers/tower-sessions-app
#           (axum + tower-sessions + tower-sessions-redis-store).
#
#   bash bench/session.sh                            # full run (builds first; a few minutes)
#   DURATION=5s SKIP_BUILD=1 bash bench/session.sh   # quick trial
#
# For every round and load kind the three sides run back to back, the order
# rotating by round (sticky-peer-floor, peer-floor-sticky, floor-sticky-peer):
# first closed loop (as fast as each answers), then at a fixed rate (the same
# for all three). Each run reports requests per second, p50 and p99 (from
# `sticky bench --json`) and the CPU time per request of EVERY process of
# its side, summed (user + system from /proc/PID/stat, clock ticks): web +
# 3 stores, app + redis-server, or the floor app alone. The load
# generator's CPU is not counted. The CPU is taken over the measured window
# only: a sampler reads /proc every 50 ms, and the window is the last
# `elapsed_secs` (bench's measured time, its drain included) before `sticky
# bench` exits, the counts interpolated between samples at its ends (the
# fill and warm-up come before it).
#
# The script prints the ratios sticky/floor and sticky/peer (of the runs
# paired in a round: median and range) and says whether issue 19's goals
# are met: CPU per request at most 1.15x the floor's at 90% reads (judged
# closed loop and at the fixed rate); CPU per request and p99 at most 0.5x
# tower-sessions + Redis's at the fixed rate.
#
# Knobs (environment variables):
#   USERS=64          virtual users (one session and one keep-alive connection each)
#   WRITE_RATIO=0.1   share of writes (POST /api/counter); the rest are GET /api/counter
#   SESSION_BYTES=1024  session payload put in before measuring (cart items)
#   DURATION=20s      measured time per side, kind and round
#   WARMUP=3s         unmeasured load before each measurement
#   RATE=10000        after the closed-loop run (as fast as each side answers),
#                     a second run at this fixed total rate (open loop), where
#                     latency is service time rather than queueing; 0 skips
#                     it; auto = half the slowest side's closed-loop rate in round 1
#   THREADS=2         worker threads of `sticky web`, the floor app and the peer app
#   STORE_THREADS=1   worker threads of each `sticky store`
#   BENCH_THREADS=    worker threads of `sticky bench` (default: one per core)
#   POOL=4            Redis connections of the peer app
#   MODE=sync         replication mode of the Sticky cluster (sync or async)
#   REPLICAS=2        stores per session (1 or 2)
#   ROUNDS=1          repeat; the order of the sides rotates; tables show the
#                     mean, ratios the median of the per-round ratios
#   SKIP_BUILD=1      use the existing release binaries
#   STICKY_BIN=       the sticky binary (default: $CARGO_TARGET_DIR or
#                     target, /release/sticky)
#
# The builds: `cargo build --release -p sticky`, and each peer app in its
# own target dir (bench/peers/*/target), CARGO_TARGET_DIR notwithstanding.
# The report goes to stdout and to bench/results/session-<time>.md; each
# run's `sticky bench --json` output and the raw rows (.jsonl) go next to it.
set -euo pipefail

# The command as given (the knobs set in the environment), for the report.
command_line=
for knob in USERS WRITE_RATIO SESSION_BYTES DURATION WARMUP RATE THREADS STORE_THREADS BENCH_THREADS \
    POOL MODE REPLICAS ROUNDS SKIP_BUILD STICKY_BIN; do
    if [[ -n ${!knob+x} ]]; then command_line+="$knob=${!knob} "; fi
done
command_line+="bash bench/session.sh"

USERS=${USERS:-64}
WRITE_RATIO=${WRITE_RATIO:-0.1}
SESSION_BYTES=${SESSION_BYTES:-1024}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
RATE=${RATE:-10000}
THREADS=${THREADS:-2}
STORE_THREADS=${STORE_THREADS:-1}
BENCH_THREADS=${BENCH_THREADS:-}
POOL=${POOL:-4}
MODE=${MODE:-sync}
REPLICAS=${REPLICAS:-2}
ROUNDS=${ROUNDS:-1}
SKIP_BUILD=${SKIP_BUILD:-}
STICKY_BIN=${STICKY_BIN:-}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
peer_dir=bench/peers/tower-sessions-app
floor_dir=bench/peers/floor-app

log() { printf '[session.sh] %s\n' "$*" >&2; }
die() { printf 'session.sh: %s\n' "$*" >&2; exit 1; }

for tool in redis-server redis-cli curl python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[[ $RATE == auto || $RATE =~ ^[0-9]+([.][0-9]+)?$ ]] || die "RATE must be auto or a number"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number"

if [[ -z $SKIP_BUILD ]]; then
    log "building sticky (release)"
    cargo build --release -p sticky >&2
    log "building the tower-sessions peer and the floor app (release)"
    CARGO_TARGET_DIR=$root/$peer_dir/target cargo build --release --manifest-path "$peer_dir/Cargo.toml" >&2
    CARGO_TARGET_DIR=$root/$floor_dir/target cargo build --release --manifest-path "$floor_dir/Cargo.toml" >&2
fi
sticky_bin=${STICKY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/sticky}
peer_bin=$root/$peer_dir/target/release/tower-sessions-app
floor_bin=$root/$floor_dir/target/release/floor-app
for b in "$sticky_bin" "$peer_bin" "$floor_bin"; do
    [[ -x $b ]] || die "$b missing (run without SKIP_BUILD)"
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
report=bench/results/session-$stamp.md
rows=bench/results/session-$stamp.jsonl
: >"$rows"
work=$(mktemp -d "${TMPDIR:-/tmp}/sticky-session-bench.XXXXXX")

pids=()
sampler=
cleanup() {
    local pid
    [[ -n $sampler ]] && kill "$sampler" 2>/dev/null
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Seven distinct free loopback ports (held open together so they differ).
read -r p_s1 p_s2 p_s3 p_web p_redis p_peer p_floor < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/cluster.toml" <<EOF
secret = "bench-$secret"
replicas = $REPLICAS
mode = "$MODE"

[[web]]
name = "ws1"
listen = "127.0.0.1:$p_web"

[[store]]
name = "s1"
listen = "127.0.0.1:$p_s1"

[[store]]
name = "s2"
listen = "127.0.0.1:$p_s2"

[[store]]
name = "s3"
listen = "127.0.0.1:$p_s3"
EOF

wait_for() { # name pid command...
    local name=$1 pid=$2 i
    shift 2
    for i in $(seq 1 200); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { echo "session.sh: $name exited at start:" >&2; cat "$work/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "session.sh: $name not ready; log:" >&2
    cat "$work/$name.log" >&2
    exit 1
}
redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }
http_ok() { curl -sf -o /dev/null "http://127.0.0.1:$1/api/counter"; }

# Each side's processes: their PIDs and names (for the CPU breakdown).
declare -A side_pids side_names side_port
side_port=([sticky]=$p_web [peer]=$p_peer [floor]=$p_floor)

log "starting 3 sticky stores and sticky web ($MODE, R=$REPLICAS)"
store_pids=()
for s in s1 s2 s3; do
    # A state dir: a first start, not a restart (no recovery window, in
    # which the web server could not take its lease: docs/safety.md §3).
    STICKY_LOG=warn "$sticky_bin" store --config "$work/cluster.toml" --name "$s" --threads "$STORE_THREADS" \
        --state-dir "$work/$s-state" >"$work/$s.log" 2>&1 &
    pids+=($!)
    store_pids+=($!)
done
wait_for s1 "${store_pids[0]}" redis_ping "$p_s1"
wait_for s2 "${store_pids[1]}" redis_ping "$p_s2"
wait_for s3 "${store_pids[2]}" redis_ping "$p_s3"
STICKY_LOG=warn "$sticky_bin" web --config "$work/cluster.toml" --name ws1 --threads "$THREADS" \
    >"$work/web.log" 2>&1 &
pids+=($!)
wait_for web $! http_ok "$p_web"
side_pids[sticky]="$! ${store_pids[*]}"
side_names[sticky]=web,store1,store2,store3

log "starting redis-server and the tower-sessions peer"
redis-server --port "$p_redis" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$work" \
    >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
wait_for redis "$redis_pid" redis_ping "$p_redis"
"$peer_bin" --listen "127.0.0.1:$p_peer" --redis "redis://127.0.0.1:$p_redis" --threads "$THREADS" \
    --pool "$POOL" --name peer >"$work/peer.log" 2>&1 &
pids+=($!)
wait_for peer $! http_ok "$p_peer"
side_pids[peer]="$! $redis_pid"
side_names[peer]=app,redis

log "starting the floor app"
"$floor_bin" --listen "127.0.0.1:$p_floor" --threads "$THREADS" --name floor >"$work/floor.log" 2>&1 &
pids+=($!)
wait_for floor $! http_ok "$p_floor"
side_pids[floor]=$!
side_names[floor]=app

# The CPU sampler (bench/lib/cpu_sampler.py): a line of CPU ticks per
# process every 50 ms.
clk_tck=$(getconf CLK_TCK)

bench_args=(--users "$USERS" --write-ratio "$WRITE_RATIO" --session-bytes "$SESSION_BYTES"
    --duration "$DURATION" --warmup "$WARMUP" --no-progress)
[[ -n $BENCH_THREADS ]] && bench_args+=(--threads "$BENCH_THREADS")

# sampled_after T: waits (up to 10 s) until the sampler has written a
# sample taken after unix time T.
sampled_after() {
    local i
    for i in $(seq 1 200); do
        if tail -n 1 "$samples" 2>/dev/null | awk -v t="$1" 'NF > 1 && $1 > t { ok = 1 } END { exit !ok }'; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# measure side kind round rate: one `sticky bench` run against the side,
# its CPU per process over the measured window, one JSON row appended to $rows.
measure() {
    local side=$1 kind=$2 round=$3 rate=$4 port=${side_port[$1]}
    local out=bench/results/session-$stamp-$side-$kind-$round.json extra=() t_end
    samples=$work/samples-$side-$kind-$round
    [[ $kind == rate ]] && extra=(--rate "$rate")
    log "$side, $kind loop (round $round): sticky bench --url http://127.0.0.1:$port ${bench_args[*]} ${extra[*]}"
    # shellcheck disable=SC2086 # the PIDs are words
    : >"$samples" # now, not in the child: sampled_after must not see an old file
    python3 bench/lib/cpu_sampler.py ${side_pids[$side]} >>"$samples" &
    sampler=$!
    # The window must lie between two samples: the load starts only after
    # the first one (python's start can take a while on a busy machine),
    # and the sampler stops only after one taken once bench has exited.
    sampled_after 0 || die "the CPU sampler wrote nothing in 10 s"
    "$sticky_bin" bench --url "http://127.0.0.1:$port" "${bench_args[@]}" "${extra[@]}" --json "$out" >&2
    t_end=$(date +%s.%N)
    sampled_after "$t_end" || die "the CPU sampler wrote nothing for 10 s"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    sampler=
    python3 - "$out" "$samples" "$t_end" "$clk_tck" "$side" "$kind" "$round" "$rate" "${side_names[$side]}" >>"$rows" <<'EOF'
import json, sys
out, samples, t_end, hz, side, kind, rnd, rate, names = sys.argv[1:]
t_end, hz, names = float(t_end), int(hz), names.split(",")
with open(out) as f:
    j = json.load(f)
rows = []
with open(samples) as f:
    for line in f:
        parts = line.split()
        if len(parts) == len(names) + 1:
            rows.append((float(parts[0]), [int(x) for x in parts[1:]]))
if len(rows) < 2:
    sys.exit("session.sh: the CPU sampler recorded fewer than two samples")
start = t_end - j["elapsed_secs"]
if not rows[0][0] <= start < t_end <= rows[-1][0]:
    sys.exit(f"session.sh: the CPU samples ({rows[0][0]:.3f} to {rows[-1][0]:.3f}) do not cover "
             f"the measured window ({start:.3f} to {t_end:.3f})")
def at(t):
    """Each process's ticks at time t, interpolated between samples."""
    for (t0, a), (t1, b) in zip(rows, rows[1:]):
        if t0 <= t <= t1:
            w = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
            return [x + (y - x) * w for x, y in zip(a, b)]
    return rows[-1][1]
before, after = at(start), at(t_end)
requests = max(j["requests"], 1)
per_proc = {n: (a - b) / hz * 1e6 / requests for n, a, b in zip(names, after, before)}
print(json.dumps({
    "side": side, "kind": kind, "round": int(rnd), "rate": float(rate) if kind == "rate" else None,
    "rps": j["rps"], "p50": j["all"]["p50_ms"], "p99": j["all"]["p99_ms"], "errors": j["errors"],
    "requests": j["requests"], "window_s": t_end - start,
    "cpu_us": sum(per_proc.values()), "cpu_us_by_process": per_proc,
}))
EOF
    python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print("[session.sh]   {rps:.0f} req/s, p50 {p50:.3f} ms, p99 {p99:.3f} ms, CPU {cpu_us:.1f} us/request, {errors} errors".format(**r), file=sys.stderr)' "$rows"
}

kinds=(closed)
[[ $RATE != 0 ]] && kinds+=(rate)
{
    echo "# Session library: sticky web vs its floor and tower-sessions + Redis"
    echo
    echo "- command: \`$command_line\`"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S') UTC; host: $(uname -sr), $(nproc) CPUs, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- sticky: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git status --porcelain 2>/dev/null) ]] && echo ' (dirty tree)'); 3 \`sticky store --threads $STORE_THREADS\` + \`sticky web --threads $THREADS\`, $MODE mode, R=$REPLICAS"
    echo "- floor: bench/peers/floor-app, the same API on bare axum handlers, sessions in an in-process HashMap (no stores), \`--threads $THREADS\`"
    echo "- peer: axum + tower-sessions 0.14 + tower-sessions-redis-store 0.16 (fred pool of $POOL), \`--threads $THREADS\`; $(redis-server --version | sed -E 's/.*v=([^ ]+).*/redis \1/') with --save '' --appendonly no"
    echo "- load: \`sticky bench ${bench_args[*]}\` (GET /api/counter, ${WRITE_RATIO} of requests POST /api/counter; each user its own cookie jar and connection), closed loop$( [[ $RATE != 0 ]] && echo ", then at a fixed rate (RATE=$RATE)"); $ROUNDS round(s), order rotating; CPU = user + system time of every process of the side (sticky: web + 3 stores; peer: app + redis-server; floor: app), per request, over the measured window"
    echo
} | tee "$report"

sides=(sticky peer floor)
rate=$RATE
for round in $(seq 1 "$ROUNDS"); do
    for kind in "${kinds[@]}"; do
        if [[ $kind == rate && $rate == auto ]]; then
            rate=$(python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
c = [r["rps"] for r in rs if r["kind"] == "closed" and r["round"] == 1]
print(max(10, round(min(c) / 2 / 10) * 10))' "$rows")
            log "fixed rate $rate/s (half the slowest side's closed-loop rate in round 1)"
        fi
        # Rotate which side goes first.
        k=$(((round - 1) % 3))
        for side in "${sides[@]:k}" "${sides[@]:0:k}"; do
            measure "$side" "$kind" "$round" "$rate"
        done
    done
done

python3 - "$rows" "$WRITE_RATIO" <<'EOF' | tee -a "$report"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
write_ratio = float(sys.argv[2])
names = {
    "sticky": "sticky web (session library)",
    "floor": "floor (axum + HashMap)",
    "peer": "tower-sessions + Redis",
}
def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")
def pick(side, kind):
    return [r for r in rows if r["side"] == side and r["kind"] == kind]
def paired(other, kind, key):
    out = []
    for s in pick("sticky", kind):
        for o in pick(other, kind):
            if o["round"] == s["round"] and o[key]:
                out.append(s[key] / o[key])
    return out
def med(v):
    return statistics.median(v) if v else None
def ratio(v):
    if not v:
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.2f}x"
    return f"{statistics.median(v):.2f}x ({min(v):.2f}-{max(v):.2f})"
rates = sorted({r["rate"] for r in rows if r["kind"] == "rate"})
rate = f"{rates[0]:.0f}/s" if rates else None

head = "| side | req/s | p50 ms | p99 ms | CPU us/req |"
rule = "|---|---:|---:|---:|---:|"
if rate:
    head += f" p50 ms at {rate} | p99 ms at {rate} | CPU us/req at {rate} |"
    rule += "---:|---:|---:|"
print(head + " errors |")
print(rule + "---:|")
for side, label in names.items():
    c, o = pick(side, "closed"), pick(side, "rate")
    line = (f"| {label} | {mean([r['rps'] for r in c]):.0f} | {mean([r['p50'] for r in c]):.3f} |"
            f" {mean([r['p99'] for r in c]):.3f} | {mean([r['cpu_us'] for r in c]):.1f} |")
    if rate:
        line += (f" {mean([r['p50'] for r in o]):.3f} | {mean([r['p99'] for r in o]):.3f} |"
                 f" {mean([r['cpu_us'] for r in o]):.1f} |")
    print(line + f" {sum(r['errors'] for r in c + o)} |")
print()
print("Ratios of sticky web to each of the other two, of the runs paired in a round, "
      "median (min-max); below 1 is better for sticky web except for req/s:")
print()
print("| sticky web / | load | req/s | p50 | p99 | CPU/req |")
print("|---|---|---:|---:|---:|---:|")
for other in ("floor", "peer"):
    for kind, label in (("closed", "closed loop"), ("rate", f"at {rate}")):
        if pick("sticky", kind):
            print(f"| {names[other]} | {label} | {ratio(paired(other, kind, 'rps')) if kind == 'closed' else '-'} |"
                  f" {ratio(paired(other, kind, 'p50'))} | {ratio(paired(other, kind, 'p99'))} |"
                  f" {ratio(paired(other, kind, 'cpu_us'))} |")
print()
print("CPU us per request by process (mean over rounds):")
print()
for side, label in names.items():
    for kind in ("closed", "rate"):
        rs = pick(side, kind)
        if not rs:
            continue
        procs = rs[0]["cpu_us_by_process"].keys()
        parts = ", ".join(f"{p} {mean([r['cpu_us_by_process'][p] for r in rs]):.1f}" for p in procs)
        print(f"- {label}, {'closed loop' if kind == 'closed' else 'at ' + rate}: {parts}")
print()

# Issue 19's goals, judged on the median of the paired ratios.
def verdict(v, bar):
    m = med(v)
    if m is None:
        return "not measured"
    return f"{ratio(v)}: {'met' if m <= bar else 'NOT met'} (goal <= {bar}x)"
print("Goals (issue 19 item 1), on the median of the paired ratios:")
print()
note = "" if abs(write_ratio - 0.1) < 1e-9 else f" (the goal is set at 90% reads; this run has WRITE_RATIO={write_ratio})"
print(f"- CPU per request, sticky web / floor, closed loop: {verdict(paired('floor', 'closed', 'cpu_us'), 1.15)}{note}")
if rate:
    print(f"- CPU per request, sticky web / floor, at {rate}: {verdict(paired('floor', 'rate', 'cpu_us'), 1.15)}{note}")
    print(f"- CPU per request, sticky web / tower-sessions + Redis, at {rate}: {verdict(paired('peer', 'rate', 'cpu_us'), 0.5)}")
    print(f"- p99, sticky web / tower-sessions + Redis, at {rate}: {verdict(paired('peer', 'rate', 'p99'), 0.5)}")
else:
    print("- the fixed-rate goals (CPU per request and p99 <= 0.5x tower-sessions + Redis): not measured (RATE=0)")
warnings = []
for r in rows:
    if r["errors"]:
        warnings.append(f"{names[r['side']]}, {r['kind']} round {r['round']}: {r['errors']} errors")
    if r["kind"] == "rate" and r["rps"] < 0.95 * r["rate"]:
        warnings.append(f"{names[r['side']]}, round {r['round']}: {r['rps']:.0f} req/s, below the rate of "
                        f"{r['rate']:.0f}/s (it fell behind: its latency includes queueing)")
if warnings:
    print()
    print("Warnings:")
    print()
    for w in warnings:
        print(f"- {w}")
print()
EOF
log "report: $report"
