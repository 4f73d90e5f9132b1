#!/usr/bin/env bash
# Sticky's session library (the demo app, `sticky web`) next to the same
# app on axum + tower-sessions + Redis, under one session workload driven
# by `sticky bench`, on loopback.
#
#   bash bench/session.sh                        # full run (builds first; a few minutes)
#   DURATION=5s SKIP_BUILD=1 bash bench/session.sh   # quick trial
#
# Sticky: 3 `sticky store` + 1 `sticky web` (MODE, REPLICAS; sync and R=2 by
# default). Peer: redis-server (no persistence) + bench/peers/tower-sessions-app.
#
# Knobs (environment variables):
#   USERS=64          virtual users (one session and one keep-alive connection each)
#   WRITE_RATIO=0.1   share of writes (POST /api/counter); the rest are GET /api/counter
#   SESSION_BYTES=1024  session payload put in before measuring (cart items)
#   DURATION=20s      measured time per server and round
#   WARMUP=3s         unmeasured load before each measurement
#   RATE=10000        after the closed-loop run (as fast as each server answers),
#                     a second run at this fixed total rate (open loop), where
#                     latency is service time rather than queueing; 0 skips it
#   THREADS=2         worker threads of `sticky web` and of the peer app
#   STORE_THREADS=1   worker threads of each `sticky store`
#   BENCH_THREADS=    worker threads of `sticky bench` (default: one per core)
#   POOL=4            Redis connections of the peer app
#   MODE=sync         replication mode of the Sticky cluster (sync or async)
#   REPLICAS=2        stores per session (1 or 2)
#   ROUNDS=1          repeat; the order of the servers alternates; the table shows the mean
#   SKIP_BUILD=1      use the existing release binaries
#
# The report goes to stdout and to bench/results/session-<time>.md; each
# run's `sticky bench --json` output goes next to it.
set -euo pipefail

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

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
peer_dir=bench/peers/tower-sessions-app

for tool in redis-server redis-cli curl python3; do
    command -v "$tool" >/dev/null || { echo "session.sh: $tool not found" >&2; exit 1; }
done

log() { printf '[session.sh] %s\n' "$*" >&2; }

if [[ -z $SKIP_BUILD ]]; then
    log "building sticky (release)"
    cargo build --release -p sticky >&2
    log "building the tower-sessions peer (release)"
    cargo build --release --manifest-path "$peer_dir/Cargo.toml" >&2
fi
sticky_bin=$root/target/release/sticky
peer_bin=$root/$peer_dir/target/release/tower-sessions-app
for b in "$sticky_bin" "$peer_bin"; do
    [[ -x $b ]] || { echo "session.sh: $b missing (run without SKIP_BUILD)" >&2; exit 1; }
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
report=bench/results/session-$stamp.md
work=$(mktemp -d "${TMPDIR:-/tmp}/sticky-session-bench.XXXXXX")

pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Six distinct free loopback ports (held open together so they differ).
read -r p_s1 p_s2 p_s3 p_web p_redis p_peer < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
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

log "starting 3 sticky stores and sticky web ($MODE, R=$REPLICAS)"
for s in s1 s2 s3; do
    # A state dir: a first start, not a restart (no recovery window, in
    # which the web server could not take its lease: docs/safety.md §3).
    STICKY_LOG=warn "$sticky_bin" store --config "$work/cluster.toml" --name "$s" --threads "$STORE_THREADS" \
        --state-dir "$work/$s-state" >"$work/$s.log" 2>&1 &
    pids+=($!)
done
wait_for s1 "${pids[0]}" redis_ping "$p_s1"
wait_for s2 "${pids[1]}" redis_ping "$p_s2"
wait_for s3 "${pids[2]}" redis_ping "$p_s3"
STICKY_LOG=warn "$sticky_bin" web --config "$work/cluster.toml" --name ws1 --threads "$THREADS" \
    >"$work/web.log" 2>&1 &
pids+=($!)
wait_for web $! http_ok "$p_web"

log "starting redis-server and the tower-sessions peer"
redis-server --port "$p_redis" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$work" \
    >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for redis $! redis_ping "$p_redis"
"$peer_bin" --listen "127.0.0.1:$p_peer" --redis "redis://127.0.0.1:$p_redis" --threads "$THREADS" \
    --pool "$POOL" --name peer >"$work/peer.log" 2>&1 &
pids+=($!)
wait_for peer $! http_ok "$p_peer"

bench_args=(--users "$USERS" --write-ratio "$WRITE_RATIO" --session-bytes "$SESSION_BYTES"
    --duration "$DURATION" --warmup "$WARMUP" --no-progress)
[[ -n $BENCH_THREADS ]] && bench_args+=(--threads "$BENCH_THREADS")

run_bench() { # server port kind round
    local out=bench/results/session-$stamp-$1-$3-$4.json extra=()
    [[ $3 == rate ]] && extra=(--rate "$RATE")
    log "$1, $3 loop (round $4): sticky bench --url http://127.0.0.1:$2 ${bench_args[*]} ${extra[*]}"
    "$sticky_bin" bench --url "http://127.0.0.1:$2" "${bench_args[@]}" "${extra[@]}" --json "$out" >&2
}

kinds=(closed)
((RATE > 0)) && kinds+=(rate)
{
    echo "# Session library: sticky web vs tower-sessions + Redis"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S') UTC; host: $(uname -sr), $(nproc) CPUs, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- sticky: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git status --porcelain 2>/dev/null) ]] && echo ' (dirty tree)'); 3 \`sticky store --threads $STORE_THREADS\` + \`sticky web --threads $THREADS\`, $MODE mode, R=$REPLICAS"
    echo "- peer: axum + tower-sessions 0.14 + tower-sessions-redis-store 0.16 (fred pool of $POOL), \`--threads $THREADS\`; $(redis-server --version | sed -E 's/.*v=([^ ]+).*/redis \1/') with --save '' --appendonly no"
    echo "- load: \`sticky bench ${bench_args[*]}\` (GET /api/counter, ${WRITE_RATIO} of requests POST /api/counter; each user its own cookie jar and connection), closed loop$( ((RATE > 0)) && echo ", then the same with --rate $RATE"); $ROUNDS round(s), order alternating"
    echo
} | tee "$report"

for round in $(seq 1 "$ROUNDS"); do
    for kind in "${kinds[@]}"; do
        # Alternate which server goes first.
        if ((round % 2 == 1)); then order=(sticky peer); else order=(peer sticky); fi
        for server in "${order[@]}"; do
            if [[ $server == sticky ]]; then port=$p_web; else port=$p_peer; fi
            run_bench "$server" "$port" "$kind" "$round"
        done
    done
done

python3 - "$stamp" "$ROUNDS" "$RATE" <<'EOF' | tee -a "$report"
import json, os, sys
stamp, rounds, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def runs(server, kind):
    out = []
    for r in range(1, rounds + 1):
        path = f"bench/results/session-{stamp}-{server}-{kind}-{r}.json"
        if os.path.exists(path):
            with open(path) as f:
                out.append(json.load(f))
    return out
def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")
def row(server):
    c, o = runs(server, "closed"), runs(server, "rate")
    return {
        "rps": mean([j["rps"] for j in c]),
        "p50": mean([j["all"]["p50_ms"] for j in c]),
        "p99": mean([j["all"]["p99_ms"] for j in c]),
        "rp50": mean([j["all"]["p50_ms"] for j in o]),
        "rp99": mean([j["all"]["p99_ms"] for j in o]),
        "errors": sum(j["errors"] for j in c + o),
        "has_rate": bool(o),
    }
names = {"sticky": "sticky web (session library)", "peer": "tower-sessions + Redis"}
rows = {s: row(s) for s in names}
with_rate = rows["sticky"]["has_rate"]
head = "| server | requests/s | p50 ms | p99 ms |"
rule = "|---|---:|---:|---:|"
if with_rate:
    head += f" p50 ms at {rate}/s | p99 ms at {rate}/s |"
    rule += "---:|---:|"
print(head + " errors |")
print(rule + "---:|")
for s, name in names.items():
    r = rows[s]
    line = f"| {name} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} |"
    if with_rate:
        line += f" {r['rp50']:.3f} | {r['rp99']:.3f} |"
    print(line + f" {r['errors']} |")
s, p = rows["sticky"], rows["peer"]
ratio = lambda a, b: f"{a / b:.2f}x" if b else "n/a"
line = f"| sticky / peer | {ratio(s['rps'], p['rps'])} | {ratio(s['p50'], p['p50'])} | {ratio(s['p99'], p['p99'])} |"
if with_rate:
    line += f" {ratio(s['rp50'], p['rp50'])} | {ratio(s['rp99'], p['rp99'])} |"
print(line + " |")
print()
EOF
log "report: $report"
