#!/usr/bin/env bash
# Issue 17's benchmark: each example app behind Sticky's sidecar (`sticky
# web --app`, its session in headers, 3 `sticky store`s) next to the same
# JSON API on its ecosystem's usual Redis-backed sessions against a real
# redis-server, under bench/session.sh's workload, on loopback:
#
#   python: examples/python/app.py (Flask) behind the sidecar
#           vs bench/peers/flask-redis (Flask-Session's Redis backend)
#   node:   examples/node/app.js (Express) behind the sidecar
#           vs bench/peers/express-redis (express-session + connect-redis)
#
#   bash bench/sidecar.sh                                   # full run (builds first)
#   DURATION=10s ROUNDS=2 SKIP_BUILD=1 bash bench/sidecar.sh  # quick trial
#
# Each Flask app is served by Waitress with 8 threads, each Express app by
# plain `node` (one process), both Flask apps by the same interpreter and
# packages (the venv below). For every language, round and load kind the
# two sides run back to back, the order alternating by round: first closed
# loop (as fast as each answers), then at a fixed rate (the same for both).
# Each run reports requests per second, p50 and p99 (from `sticky bench
# --json`) and the CPU time per request of EVERY process of its side,
# summed (user + system from /proc/PID/stat, clock ticks): app + sidecar
# + 3 stores, or app + redis-server. The load generator's CPU is not
# counted. The CPU is taken over the measured window only: a sampler reads
# /proc every 50 ms and the window is the last DURATION before `sticky
# bench` exits (its fill and warm-up come first; the drain of the last
# requests, a few ms, is inside the window on both sides alike).
#
# Packages, installed here by the script when missing (never into the
# system Python):
#   bench/peers/flask-redis/.venv   python3 -m venv, then pip install -r
#                                   requirements.txt (Flask, Waitress,
#                                   Flask-Session, redis-py); if venv is
#                                   unavailable: pip install --user
#   bench/peers/express-redis/node_modules   npm ci (express, express-session,
#                                   connect-redis 9, redis 5)
#   examples/node/node_modules      npm ci (express), as .ci/run does
# Programs: redis-server, redis-cli, curl, python3, node, npm.
#
# Knobs (environment variables):
#   LANGS="python node"  which apps
#   USERS=64          virtual users (one session and one keep-alive connection each)
#   WRITE_RATIO=0.1   share of writes (POST /api/counter); the rest GET /api/counter
#   SESSION_BYTES=1024  session payload put in before measuring (cart items)
#   DURATION=20s      measured time per side, kind and round
#   WARMUP=3s         unmeasured load before each measurement
#   RATE=auto         the fixed total rate (open loop) of the second run:
#                     auto = half the slower side's closed-loop rate in round
#                     1 of that language; a number = that rate; 0 skips it
#   THREADS=1         worker threads of the sidecar (`sticky web --threads`;
#                     1 is its default with --app)
#   APP_SOCKET=1      the sidecar reaches its app on a Unix socket (`--app
#                     unix:PATH`, the app started with SOCKET=PATH); 0: by
#                     loopback TCP. The peer apps serve the load generator,
#                     so they stay on TCP.
#   STORE_THREADS=1   worker threads of each `sticky store`
#   MODE=sync         replication mode of the Sticky side (sync or async)
#   REPLICAS=2        stores per session on the Sticky side (1 or 2)
#   BENCH_THREADS=    worker threads of `sticky bench` (default: one per core)
#   ROUNDS=2          pairs per language and kind
#   SKIP_BUILD=1      use the existing release binary
#
# The report goes to stdout and to bench/results/sidecar-<time>.md; every
# run's `sticky bench --json` output and the raw rows go next to it.
set -euo pipefail

LANGS=${LANGS:-python node}
USERS=${USERS:-64}
WRITE_RATIO=${WRITE_RATIO:-0.1}
SESSION_BYTES=${SESSION_BYTES:-1024}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
RATE=${RATE:-auto}
THREADS=${THREADS:-1}
APP_SOCKET=${APP_SOCKET:-1}
STORE_THREADS=${STORE_THREADS:-1}
MODE=${MODE:-sync}
REPLICAS=${REPLICAS:-2}
BENCH_THREADS=${BENCH_THREADS:-}
ROUNDS=${ROUNDS:-2}
SKIP_BUILD=${SKIP_BUILD:-}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
flask_peer=bench/peers/flask-redis
express_peer=bench/peers/express-redis

log() { printf '[sidecar.sh] %s\n' "$*" >&2; }
die() { printf 'sidecar.sh: %s\n' "$*" >&2; exit 1; }

for tool in redis-server redis-cli curl python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
for lang in $LANGS; do
    case $lang in
        python) ;;
        node) command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed for LANGS=node" ;;
        *) die "unknown language $lang (python or node)" ;;
    esac
done
[[ $RATE == auto || $RATE =~ ^[0-9]+([.][0-9]+)?$ ]] || die "RATE must be auto or a number"

# --- packages -----------------------------------------------------------------
py=python3
if [[ " $LANGS " == *" python "* ]]; then
    if [[ ! -x $flask_peer/.venv/bin/python ]] || ! "$flask_peer/.venv/bin/python" -c 'import flask, waitress, flask_session, redis' 2>/dev/null; then
        log "installing $flask_peer/requirements.txt into $flask_peer/.venv"
        if python3 -m venv "$flask_peer/.venv" >&2; then
            "$flask_peer/.venv/bin/python" -m pip install --quiet -r "$flask_peer/requirements.txt" >&2
        else
            rm -rf "$flask_peer/.venv"
            log "no venv (python3-venv missing?): pip install --user instead"
            python3 -m pip install --quiet --user -r "$flask_peer/requirements.txt" >&2
        fi
    fi
    [[ -x $flask_peer/.venv/bin/python ]] && py=$root/$flask_peer/.venv/bin/python
    "$py" -c 'import flask, waitress, flask_session, redis' || die "$py lacks Flask, Waitress, Flask-Session or redis"
fi
if [[ " $LANGS " == *" node "* ]]; then
    for dir in "$express_peer" examples/node; do
        if [[ ! -d $dir/node_modules ]]; then
            log "npm ci in $dir"
            (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
        fi
    done
fi

if [[ -z $SKIP_BUILD ]]; then
    log "building sticky (release)"
    cargo build --release -p sticky >&2
fi
sticky_bin=${CARGO_TARGET_DIR:-$root/target}/release/sticky
[[ -x $sticky_bin ]] || die "$sticky_bin missing (run without SKIP_BUILD)"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
report=bench/results/sidecar-$stamp.md
rows=bench/results/sidecar-$stamp.jsonl
: >"$rows"
work=$(mktemp -d "${TMPDIR:-/tmp}/sticky-sidecar-bench.XXXXXX")

pids=()
stop_all() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    [[ -n ${sampler:-} ]] && kill "$sampler" 2>/dev/null
    stop_all
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_ports() { # n: prints n distinct free loopback ports (held open together so they differ)
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])' "$1"
}

wait_for() { # name pid command...
    local name=$1 pid=$2 i
    shift 2
    for i in $(seq 1 300); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { echo "sidecar.sh: $name exited at start:" >&2; cat "$work/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "sidecar.sh: $name not ready; log:" >&2
    cat "$work/$name.log" >&2
    exit 1
}
redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }
http_ok() { curl -sf -o /dev/null "http://127.0.0.1:$1/api/counter"; }

# The CPU sampler (bench/lib/cpu_sampler.py): a line of CPU ticks per
# process every 50 ms.
clk_tck=$(getconf CLK_TCK)

bench_args=(--users "$USERS" --write-ratio "$WRITE_RATIO" --session-bytes "$SESSION_BYTES"
    --duration "$DURATION" --warmup "$WARMUP" --no-progress)
[[ -n $BENCH_THREADS ]] && bench_args+=(--threads "$BENCH_THREADS")
duration_secs=$(python3 -c '
import re, sys
m = re.fullmatch(r"([\d.]+)(ms|s|m)?", sys.argv[1])
if not m: sys.exit("DURATION must look like 20s, 500ms or 1m")
v, u = float(m.group(1)), m.group(2) or "s"
print(v * {"ms": 0.001, "s": 1, "m": 60}[u])' "$DURATION")

# measure lang side kind round rate port names pids: one `sticky bench` run,
# its CPU per process, one JSON row appended to $rows.
measure() {
    local lang=$1 side=$2 kind=$3 round=$4 rate=$5 port=$6 names=$7 pidlist=$8
    local out=bench/results/sidecar-$stamp-$lang-$side-$kind-$round.json extra=() t_end
    [[ $kind == rate ]] && extra=(--rate "$rate")
    log "$lang/$side, $kind (round $round): sticky bench --url http://127.0.0.1:$port ${bench_args[*]} ${extra[*]}"
    # shellcheck disable=SC2086 # the PIDs are words
    python3 bench/lib/cpu_sampler.py $pidlist >"$work/samples" &
    sampler=$!
    "$sticky_bin" bench --url "http://127.0.0.1:$port" "${bench_args[@]}" "${extra[@]}" --json "$out" >&2
    t_end=$(python3 -c 'import time; print(f"{time.time():.3f}")')
    sleep 0.06
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    sampler=
    python3 - "$out" "$work/samples" "$t_end" "$duration_secs" "$clk_tck" "$lang" "$side" "$kind" "$round" "$rate" "$names" >>"$rows" <<'EOF'
import json, sys
out, samples, t_end, dur, hz, lang, side, kind, rnd, rate, names = sys.argv[1:]
t_end, dur, hz = float(t_end), float(dur), int(hz)
with open(out) as f:
    j = json.load(f)
rows = []
with open(samples) as f:
    for line in f:
        parts = line.split()
        if len(parts) == len(names.split(",")) + 1:
            rows.append((float(parts[0]), [int(x) for x in parts[1:]]))
start = t_end - dur
before = max((r for r in rows if r[0] <= start), key=lambda r: r[0], default=rows[0])
after = max(rows, key=lambda r: r[0])
requests = max(j["requests"], 1)
per_proc = {n: (a - b) / hz * 1e6 / requests for n, a, b in zip(names.split(","), after[1], before[1])}
print(json.dumps({
    "lang": lang, "side": side, "kind": kind, "round": int(rnd), "rate": float(rate) if kind == "rate" else None,
    "rps": j["rps"], "p50": j["all"]["p50_ms"], "p99": j["all"]["p99_ms"], "errors": j["errors"],
    "requests": j["requests"], "window_s": after[0] - before[0],
    "cpu_us": sum(per_proc.values()), "cpu_us_by_process": per_proc,
}))
EOF
    python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print("[sidecar.sh]   {rps:.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, CPU {cpu_us:.0f} us/request, {errors} errors".format(**r), file=sys.stderr)' "$rows"
}

# start_sidecar_side lang: 3 stores, the app, `sticky web --app`; sets
# sc_port, sc_pids, sc_names.
start_sidecar_side() {
    local lang=$1 p_s1 p_s2 p_s3 p_web p_app s secret app_pid
    read -r p_s1 p_s2 p_s3 p_web p_app < <(free_ports 5)
    secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    cat >"$work/$lang-cluster.toml" <<EOF
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
    sc_pids=""
    for s in s1 s2 s3; do
        local port_var=p_$s
        # A state dir: a first start, not a restart (docs/safety.md §3).
        STICKY_LOG=warn "$sticky_bin" store --config "$work/$lang-cluster.toml" --name "$s" --threads "$STORE_THREADS" \
            --state-dir "$work/$lang-$s-state" >"$work/$lang-$s.log" 2>&1 &
        pids+=($!)
        sc_pids+=" $!"
        wait_for "$lang-$s" $! redis_ping "${!port_var}"
    done
    local app_env=(PORT="$p_app") app_url=http://127.0.0.1:$p_app
    if [[ $APP_SOCKET == 1 ]]; then
        app_env=(SOCKET="$work/$lang-app.sock")
        app_url=unix:$work/$lang-app.sock
    fi
    if [[ $lang == python ]]; then
        env "${app_env[@]}" "$py" examples/python/app.py >"$work/$lang-app.log" 2>&1 &
    else
        env "${app_env[@]}" node examples/node/app.js >"$work/$lang-app.log" 2>&1 &
    fi
    app_pid=$!
    pids+=("$app_pid")
    if [[ $APP_SOCKET == 1 ]]; then
        for _ in $(seq 1 100); do [[ -S $work/$lang-app.sock ]] && break; sleep 0.1; done
    fi
    STICKY_LOG=warn "$sticky_bin" web --config "$work/$lang-cluster.toml" --name ws1 --threads "$THREADS" \
        --app "$app_url" --session-prefix /api/ >"$work/$lang-web.log" 2>&1 &
    pids+=($!)
    sc_pids="$app_pid $! $sc_pids"
    wait_for "$lang-web" $! http_ok "$p_web"
    sc_port=$p_web
    sc_names=app,sidecar,store1,store2,store3
}

# start_peer_side lang: redis-server and the peer app; sets peer_port,
# peer_pids, peer_names.
start_peer_side() {
    local lang=$1 p_redis p_peer redis_pid
    read -r p_redis p_peer < <(free_ports 2)
    redis-server --port "$p_redis" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$work" \
        >"$work/$lang-redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    wait_for "$lang-redis" "$redis_pid" redis_ping "$p_redis"
    if [[ $lang == python ]]; then
        PORT=$p_peer REDIS_URL=redis://127.0.0.1:$p_redis "$py" "$flask_peer/app.py" >"$work/$lang-peer.log" 2>&1 &
    else
        PORT=$p_peer REDIS_URL=redis://127.0.0.1:$p_redis node "$express_peer/app.js" >"$work/$lang-peer.log" 2>&1 &
    fi
    pids+=($!)
    wait_for "$lang-peer" $! http_ok "$p_peer"
    peer_port=$p_peer
    peer_pids="$! $redis_pid"
    peer_names=app,redis
}

py_version=$("$py" -c 'import sys
from importlib.metadata import version as v
print("Python", sys.version.split()[0] + ", Flask", v("flask") + ", Waitress", v("waitress") + ", Flask-Session", v("flask-session") + ", redis-py", v("redis"))' 2>/dev/null || echo "Python ?")
node_version=$( (cd "$express_peer" && node -e '
const v = (p) => JSON.parse(require("fs").readFileSync(`node_modules/${p}/package.json`, "utf8")).version;
console.log(`Node ${process.version}, Express ${v("express")}, express-session ${v("express-session")}, connect-redis ${v("connect-redis")}, redis ${v("redis")}`)') 2>/dev/null || echo "Node ?")
{
    echo "# Sidecar vs Redis-backed sessions (issue 17)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S') UTC; host: $(uname -sr), $(nproc) CPUs, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- sticky: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git status --porcelain 2>/dev/null) ]] && echo ' (dirty tree)'); sidecar side: the example app + \`sticky web --app --threads $THREADS --session-prefix /api/\`, the app on $( [[ $APP_SOCKET == 1 ]] && echo "a Unix socket" || echo "loopback TCP") + 3 \`sticky store --threads $STORE_THREADS\`, $MODE mode, R=$REPLICAS"
    echo "- peer side: the same API on the ecosystem's Redis-backed sessions + $(redis-server --version | sed -E 's/.*v=([^ ]+).*/redis-server \1/') (--save '' --appendonly no)"
    [[ " $LANGS " == *" python "* ]] && echo "- python: $py_version; both apps on Waitress, 8 threads"
    [[ " $LANGS " == *" node "* ]] && echo "- node: $node_version; both apps on node's http, one process"
    echo "- load: \`sticky bench ${bench_args[*]}\` (GET /api/counter, ${WRITE_RATIO} of requests POST /api/counter; each user its own cookie jar and connection), closed loop$( [[ $RATE != 0 ]] && echo ", then at a fixed rate (RATE=$RATE)"); $ROUNDS round(s), order alternating; CPU = user + system time of every process of the side, per request"
    echo
} | tee "$report"

for lang in $LANGS; do
    log "== $lang: starting the sidecar side and the Redis side"
    start_sidecar_side "$lang"
    start_peer_side "$lang"
    rate=$RATE
    kinds=(closed)
    [[ $RATE != 0 ]] && kinds+=(rate)
    for round in $(seq 1 "$ROUNDS"); do
        for kind in "${kinds[@]}"; do
            if [[ $kind == rate && $rate == auto ]]; then
                rate=$(python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
c = [r["rps"] for r in rs if r["lang"] == sys.argv[2] and r["kind"] == "closed" and r["round"] == 1]
print(max(10, round(min(c) / 2 / 10) * 10))' "$rows" "$lang")
                log "$lang: fixed rate $rate/s (half the slower side's closed-loop rate in round 1)"
            fi
            if ((round % 2 == 1)); then order=(sidecar peer); else order=(peer sidecar); fi
            for side in "${order[@]}"; do
                if [[ $side == sidecar ]]; then
                    measure "$lang" sidecar "$kind" "$round" "$rate" "$sc_port" "$sc_names" "$sc_pids"
                else
                    measure "$lang" peer "$kind" "$round" "$rate" "$peer_port" "$peer_names" "$peer_pids"
                fi
            done
        done
    done
    stop_all
done

python3 - "$rows" <<'EOF' | tee -a "$report"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = {
    "python": ("Flask behind the sidecar", "Flask + Flask-Session + Redis"),
    "node": ("Express behind the sidecar", "Express + express-session + connect-redis"),
}
def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")
def pick(lang, side, kind):
    return [r for r in rows if r["lang"] == lang and r["side"] == side and r["kind"] == kind]
def paired(lang, kind, key):
    out = []
    for s in pick(lang, "sidecar", kind):
        for p in pick(lang, "peer", kind):
            if p["round"] == s["round"] and p[key]:
                out.append(s[key] / p[key])
    return out
def ratio(v):
    if not v:
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.2f}x"
    return f"{statistics.median(v):.2f}x ({min(v):.2f}-{max(v):.2f})"
for lang in dict.fromkeys(r["lang"] for r in rows):
    rates = sorted({r["rate"] for r in rows if r["lang"] == lang and r["kind"] == "rate"})
    rate = f"{rates[0]:.0f}/s" if rates else None
    print(f"### {lang}")
    print()
    head = "| side | req/s | p50 ms | p99 ms | CPU us/req |"
    rule = "|---|---:|---:|---:|---:|"
    if rate:
        head += f" p50 ms at {rate} | p99 ms at {rate} | CPU us/req at {rate} |"
        rule += "---:|---:|---:|"
    print(head + " errors |")
    print(rule + "---:|")
    for side, label in zip(("sidecar", "peer"), names[lang]):
        c, o = pick(lang, side, "closed"), pick(lang, side, "rate")
        line = (f"| {label} | {mean([r['rps'] for r in c]):.0f} | {mean([r['p50'] for r in c]):.2f} |"
                f" {mean([r['p99'] for r in c]):.2f} | {mean([r['cpu_us'] for r in c]):.0f} |")
        if rate:
            line += (f" {mean([r['p50'] for r in o]):.2f} | {mean([r['p99'] for r in o]):.2f} |"
                     f" {mean([r['cpu_us'] for r in o]):.0f} |")
        print(line + f" {sum(r['errors'] for r in c + o)} |")
    print()
    print("Ratios sidecar / Redis peer of the runs paired in a round, median (min-max); "
          "below 1 is better for the sidecar except for req/s:")
    print()
    print("| load | req/s | p50 | p99 | CPU/req |")
    print("|---|---:|---:|---:|---:|")
    for kind, label in (("closed", "closed loop"), ("rate", f"at {rate}")):
        if pick(lang, "sidecar", kind):
            print(f"| {label} | {ratio(paired(lang, kind, 'rps')) if kind == 'closed' else '-'} |"
                  f" {ratio(paired(lang, kind, 'p50'))} | {ratio(paired(lang, kind, 'p99'))} |"
                  f" {ratio(paired(lang, kind, 'cpu_us'))} |")
    print()
    print("CPU us per request by process (mean over rounds):")
    print()
    for side, label in zip(("sidecar", "peer"), names[lang]):
        for kind in ("closed", "rate"):
            rs = pick(lang, side, kind)
            if not rs:
                continue
            procs = rs[0]["cpu_us_by_process"].keys()
            parts = ", ".join(f"{p} {mean([r['cpu_us_by_process'][p] for r in rs]):.0f}" for p in procs)
            print(f"- {label}, {'closed loop' if kind == 'closed' else 'at ' + rate}: {parts}")
    print()
EOF
log "report: $report"
