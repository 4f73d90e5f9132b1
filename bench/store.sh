#!/usr/bin/env bash
# Throughput and memory of `sticky store` next to redis-server, on loopback.
#
#   bash bench/store.sh                          # full run (several minutes)
#   N=20000 KEYS=50000 bash bench/store.sh       # quick trial
#
# Knobs (environment variables):
#   N=500000        requests per redis-benchmark test (-n)
#   CLIENTS=50      parallel connections (-c)
#   SIZE=1024       value size in bytes (-d, and the memory section's values)
#   KEYSPACE=100000 random key range for SET/GET (-r)
#   PIPELINE=16     the pipelined runs' depth (-P); unpipelined runs always run too
#   TESTS=ping,set,get
#   ROUNDS=5        pairs per test; the table shows medians (order alternates)
#   KEYS=1000000    distinct keys loaded for the memory section (0 skips it)
#   BENCH_THREADS=  redis-benchmark --threads (default: single-threaded)
#   STICKY_ARGS=    extra arguments for `sticky store` (e.g. "--threads 1")
#   REDIS_ARGS=     extra arguments for redis-server
#   SKIP_BUILD=1    use the existing target/release/sticky
#   STICKY_BIN=     run this sticky binary instead (e.g. an older build
#                   kept aside, to compare two builds back to back)
#
# The report goes to stdout and to bench/results/store-<time>.md; the raw
# redis-benchmark CSV of every run goes next to it (store-<time>.csv),
# with each server's CPU time over the run (from /proc/<pid>/task/*/schedstat:
# user and system time of all its threads, in ns).
set -euo pipefail

N=${N:-500000}
CLIENTS=${CLIENTS:-50}
SIZE=${SIZE:-1024}
KEYSPACE=${KEYSPACE:-100000}
PIPELINE=${PIPELINE:-16}
TESTS=${TESTS:-ping,set,get}
ROUNDS=${ROUNDS:-5}
KEYS=${KEYS:-1000000}
BENCH_THREADS=${BENCH_THREADS:-}
STICKY_ARGS=${STICKY_ARGS:-}
REDIS_ARGS=${REDIS_ARGS:-}
SKIP_BUILD=${SKIP_BUILD:-}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

for tool in redis-server redis-benchmark redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "store.sh: $tool not found" >&2; exit 1; }
done

log() { printf '[store.sh] %s\n' "$*" >&2; }

if [[ -z $SKIP_BUILD && -z ${STICKY_BIN:-} ]]; then
    log "building sticky (release)"
    cargo build --release -p sticky >&2
fi
sticky_bin=${STICKY_BIN:-$root/target/release/sticky}
[[ -x $sticky_bin ]] || { echo "store.sh: $sticky_bin missing" >&2; exit 1; }

stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
report=bench/results/store-$stamp.md
rawcsv=bench/results/store-$stamp.csv
work=$(mktemp -d "${TMPDIR:-/tmp}/sticky-bench.XXXXXX")

sticky_pid=
redis_pid=
stop_servers() {
    local pid
    for pid in $sticky_pid $redis_pid; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $sticky_pid $redis_pid; do
        wait "$pid" 2>/dev/null || true
    done
    sticky_pid=
    redis_pid=
}
cleanup() {
    stop_servers
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two distinct free loopback ports (held open together so they differ).
read -r sticky_port redis_port < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')

wait_ready() { # name port pid
    local i
    for i in $(seq 1 100); do
        if [[ $(redis-cli -h 127.0.0.1 -p "$2" ping 2>/dev/null) == PONG ]]; then
            return 0
        fi
        kill -0 "$3" 2>/dev/null || { echo "store.sh: $1 exited at start, see $work/$1.log" >&2; cat "$work/$1.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "store.sh: $1 not answering on port $2" >&2
    exit 1
}

start_servers() {
    # shellcheck disable=SC2086 # STICKY_ARGS / REDIS_ARGS are word lists
    STICKY_LOG=warn "$sticky_bin" store --listen "127.0.0.1:$sticky_port" $STICKY_ARGS \
        >>"$work/sticky.log" 2>&1 &
    sticky_pid=$!
    # shellcheck disable=SC2086
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$work" $REDIS_ARGS >>"$work/redis.log" 2>&1 &
    redis_pid=$!
    wait_ready sticky "$sticky_port" "$sticky_pid"
    wait_ready redis "$redis_port" "$redis_pid"
}

port_of() { if [[ $1 == sticky ]]; then echo "$sticky_port"; else echo "$redis_port"; fi; }

# INFO field of a server: info_field <port> <field>
info_field() {
    redis-cli -h 127.0.0.1 -p "$1" info all | tr -d '\r' | awk -F: -v f="$2" '$1 == f && !done { print $2; done = 1 }'
}
# Keys in db0 (0 when the keyspace section has no db0 line).
db0_keys() {
    local line
    line=$(info_field "$1" db0)
    if [[ -z $line ]]; then echo 0; else echo "$line" | sed -E 's/^keys=([0-9]+).*/\1/'; fi
}

host_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S') UTC; host: $(uname -sr), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    if [[ -n ${STICKY_BIN:-} ]]; then
        echo "- sticky: the binary $STICKY_BIN, args: \`store $STICKY_ARGS\`"
    else
        echo "- sticky: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git status --porcelain 2>/dev/null) ]] && echo ' (dirty tree)'), args: \`store $STICKY_ARGS\`"
    fi
    echo "- redis: $(redis-server --version | sed -E 's/.*v=([^ ]+).*malloc=([^ ]+).*/\1 (\2)/'), args: \`--save '' --appendonly no $REDIS_ARGS\`"
    echo "- redis-benchmark: -n $N -c $CLIENTS -d $SIZE -r $KEYSPACE -t $TESTS, pipelines 1 and $PIPELINE, rounds $ROUNDS${BENCH_THREADS:+, --threads $BENCH_THREADS}"
}

# ---------------------------------------------------------------- throughput
# One redis-benchmark run per test, the two servers back to back in a pair
# (which one goes first alternates, round by round for each line), so both
# halves of a pair share the machine's state. On a shared VM the rate of the
# same binary moves by up to 2x over tens of seconds; the ratio of a pair
# moves far less. The table shows the median rate of each server and the
# median (with the range) of the per-pair ratios, of the rates and of the
# servers' CPU time per request. (An unpipelined PING costs redis-benchmark
# more CPU than either server: its rate is mostly the client's, while the
# CPU per request is the server's own.)
pid_of() { if [[ $1 == sticky ]]; then echo "$sticky_pid"; else echo "$redis_pid"; fi; }

# CPU time of all the threads of a process so far, in ns.
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.0f\n", t }'
}

run_bench() { # server pipeline round test
    local server=$1 pipeline=$2 round=$3 test=$4 port pid out name rps cpu0 cpu1
    port=$(port_of "$server")
    pid=$(pid_of "$server")
    log "$server: -t $test -P $pipeline (round $round)"
    cpu0=$(cpu_ns "$pid")
    out=$(redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -n "$N" -c "$CLIENTS" \
        -d "$SIZE" -r "$KEYSPACE" -P "$pipeline" ${BENCH_THREADS:+--threads "$BENCH_THREADS"} \
        --csv 2>"$work/bench.err") || { cat "$work/bench.err" >&2; exit 1; }
    cpu1=$(cpu_ns "$pid")
    while IFS=, read -r name rps _; do
        name=${name//\"/}
        rps=${rps//\"/}
        [[ $name == test || -z $name ]] && continue
        printf '%s,%s,%s,%s,%s,%s\n' "$server" "$pipeline" "$round" "$name" "$rps" "$((cpu1 - cpu0))" >>"$rawcsv"
    done <<<"$out"
}

{
    echo "# sticky store vs redis-server"
    echo
    host_info
    echo
} | tee "$report"

echo "server,pipeline,round,test,rps,cpu_ns" >"$rawcsv"
start_servers
IFS=, read -r -a test_list <<<"$TESTS"
# `ping` is two tests; run each on its own, so that a run's CPU time is
# one test's.
expanded=()
for test in "${test_list[@]}"; do
    if [[ ${test,,} == ping ]]; then expanded+=(ping_inline ping_mbulk); else expanded+=("$test"); fi
done
test_list=("${expanded[@]}")
for round in $(seq 1 "$ROUNDS"); do
    slot=$round
    for pipeline in 1 "$PIPELINE"; do
        for test in "${test_list[@]}"; do
            # Alternate which server goes first, so neither always runs on a
            # warmer (or busier) machine: from one line to the next, and for
            # each line from one round to the next (a counter running over
            # all the rounds would give a line the same order every round
            # whenever a round has an even number of lines).
            if ((slot % 2 == 0)); then order=(sticky redis); else order=(redis sticky); fi
            slot=$((slot + 1))
            for server in "${order[@]}"; do
                run_bench "$server" "$pipeline" "$round" "$test"
            done
        done
    done
done

{
    echo "## Throughput (requests per second)"
    echo
    python3 - "$rawcsv" "$N" <<'EOF'
import csv, statistics, sys
rate, cpu, order = {}, {}, []
for r in csv.DictReader(open(sys.argv[1])):
    key = (r["test"], int(r["pipeline"]))
    if key not in order:
        order.append(key)
    rate.setdefault(key, {}).setdefault(r["round"], {})[r["server"]] = float(r["rps"])
    cpu.setdefault(key, {}).setdefault(r["round"], {})[r["server"]] = int(r["cpu_ns"])
order.sort(key=lambda k: k[1])
n = int(sys.argv[2])
print("| test | pipeline | sticky rps (median) | redis rps (median) | sticky/redis rate (median of pairs) | min-max | "
      "sticky CPU µs/req | redis CPU µs/req | sticky/redis CPU per request (median of pairs) | min-max | pairs |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for key in order:
    rounds = [k for k, v in rate[key].items() if "sticky" in v and "redis" in v and v["redis"] > 0]
    if not rounds:
        continue
    pairs = [rate[key][k] for k in rounds]
    ratios = [p["sticky"] / p["redis"] for p in pairs]
    s = statistics.median(p["sticky"] for p in pairs)
    r = statistics.median(p["redis"] for p in pairs)
    costs = [cpu[key][k] for k in rounds if cpu[key][k]["redis"] > 0]
    if costs:
        cratios = [c["sticky"] / c["redis"] for c in costs]
        cs = statistics.median(c["sticky"] for c in costs) / n / 1000
        cr = statistics.median(c["redis"] for c in costs) / n / 1000
        ctext = (f"{cs:.2f} | {cr:.2f} | {statistics.median(cratios):.2f} "
                 f"| {min(cratios):.2f}-{max(cratios):.2f}")
    else:
        ctext = "n/a | n/a | n/a | n/a"
    print(f"| {key[0]} | {key[1]} | {s:.0f} | {r:.0f} | {statistics.median(ratios):.2f} "
          f"| {min(ratios):.2f}-{max(ratios):.2f} | {ctext} | {len(pairs)} |")
EOF
    echo
} | tee -a "$report"
stop_servers

# -------------------------------------------------------------------- memory
load_keys() { # port
    python3 - "$KEYS" "$SIZE" <<'EOF' | redis-cli -h 127.0.0.1 -p "$1" --pipe
import sys
keys, size = int(sys.argv[1]), int(sys.argv[2])
value = b"v" * size
tail = b"\r\n$%d\r\n%s\r\n" % (size, value)
out = sys.stdout.buffer
batch = []
for i in range(keys):
    k = b"key:%d" % i
    batch.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s%s" % (len(k), k, tail))
    if len(batch) == 4096:
        out.write(b"".join(batch))
        batch.clear()
out.write(b"".join(batch))
out.flush()
EOF
}

if ((KEYS > 0)); then
    # Fresh servers: the empty RSS is the baseline for the per-key delta.
    start_servers
    declare -A rss0 rss used nkeys
    for server in sticky redis; do
        port=$(port_of "$server")
        sleep 1 # redis refreshes used_memory_rss from its cron
        rss0[$server]=$(info_field "$port" used_memory_rss)
        log "$server: loading $KEYS keys of $SIZE bytes"
        load_keys "$port" >"$work/load-$server.log" 2>&1 || { cat "$work/load-$server.log" >&2; exit 1; }
        grep -q 'errors: 0,' "$work/load-$server.log" || { echo "store.sh: loading $server:" >&2; cat "$work/load-$server.log" >&2; exit 1; }
        sleep 1
        rss[$server]=$(info_field "$port" used_memory_rss)
        used[$server]=$(info_field "$port" used_memory)
        nkeys[$server]=$(db0_keys "$port")
    done
    {
        echo "## Memory ($KEYS keys, $SIZE-byte values)"
        echo
        echo "| server | keys | used_memory_rss | rss / key | (rss - empty rss) / key | used_memory / key |"
        echo "|---|---:|---:|---:|---:|---:|"
        for server in sticky redis; do
            awk -v s="$server" -v k="${nkeys[$server]}" -v r="${rss[$server]}" -v r0="${rss0[$server]}" -v u="${used[$server]}" \
                'BEGIN {
                    if (k == 0) { printf "| %s | 0 | %d | n/a | n/a | n/a |\n", s, r; exit }
                    printf "| %s | %d | %d | %.0f | %.0f | %.0f |\n", s, k, r, r / k, (r - r0) / k, u / k
                }'
        done
        awk -v sk="${nkeys[sticky]}" -v rk="${nkeys[redis]}" -v s="${rss[sticky]}" -v r="${rss[redis]}" \
            -v s0="${rss0[sticky]}" -v r0="${rss0[redis]}" -v su="${used[sticky]}" -v ru="${used[redis]}" \
            'BEGIN {
                if (sk == 0 || rk == 0) exit
                printf "| sticky/redis | | | %.2f | %.2f | %.2f |\n", (s / sk) / (r / rk), ((s - s0) / sk) / ((r - r0) / rk), (su / sk) / (ru / rk)
            }'
        if [[ ${nkeys[sticky]} != "$KEYS" || ${nkeys[redis]} != "$KEYS" ]]; then
            echo
            echo "Warning: expected $KEYS keys, got sticky=${nkeys[sticky]} redis=${nkeys[redis]}."
        fi
        echo
    } | tee -a "$report"
    stop_servers
fi

log "report: $report (raw runs: $rawcsv)"
