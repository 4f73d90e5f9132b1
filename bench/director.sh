#!/usr/bin/env bash
# Throughput and latency of `sticky director` next to HAProxy (cookie
# insert, health checks), in front of the same three backends, on loopback.
#
#   bash bench/director.sh                     # full run (about 4 minutes)
#   DURATION=5 bash bench/director.sh          # quick trial
#
# Knobs (environment variables):
#   DURATION=15       seconds per measured wrk run
#   WARMUP=3          seconds of unmeasured load before each measured run
#   CONNECTIONS=64    wrk keep-alive connections (-c)
#   WRK_THREADS=2     wrk threads (-t)
#   THREADS="1 2"     proxy worker threads to compare (director --threads,
#                     HAProxy nbthread)
#   ROUNDS=3          measured runs per proxy and thread count, alternating
#                     which proxy goes first; the report shows medians
#   PROTOCOLS="http https h2"
#                     what the clients speak to the proxies: plain HTTP/1.1
#                     (wrk), HTTP/1.1 over TLS (wrk), HTTP/2 over TLS
#                     (h2load, from Debian's nghttp2-client). Both proxies
#                     get the same certificate (ECDSA P-256, made here by
#                     openssl), TLS 1.3, ALPN h2 and http/1.1; both speak
#                     HTTP/1.1 to the backends.
#                     Also "http-rate": plain HTTP/1.1 at a fixed rate
#                     (FIXED_RATE), open loop per connection (h2load --h1
#                     --rps): the closed loop lets the faster proxy push
#                     more load into the backends, whose tail then sets
#                     both proxies' p99; at one offered load, p99 and CPU
#                     per request compare the proxies themselves.
#   FIXED_RATE=10000  requests/s of the http-rate runs, over all connections
#   H2_STREAMS=1      HTTP/2 streams each h2load connection keeps in flight
#                     (-m); 1 matches wrk's one request per connection
#   CACHESIM=N        instead of timed runs: each proxy (director, 1
#                     thread, and HAProxy, nbthread 1) under valgrind's
#                     callgrind with its cache simulation, HTTP/2 over TLS,
#                     3 x N requests (h2load -c21 -m1) counted after a
#                     warm-up; reports user-space instructions and L1
#                     misses per request, the director's over HAProxy's.
#                     Deterministic where the timed figures move with the
#                     host: for A/B runs of a change that touches memory
#                     traffic rather than instructions. Needs valgrind.
#   CACHESIM_LL=S,A,L with CACHESIM: the last-level cache valgrind
#                     models (size, ways, line), e.g. 1048576,8,64 for a
#                     1 MiB L2; default: the host's last-level cache
#   LAT_DIR=dir       keep every h2 and http-rate run's per-request log
#                     (h2load's: start in µs, status, latency in µs) as
#                     dir/PROXY-THREADSt-PROTOCOL-rROUND.log, for looking
#                     at whole distributions rather than two percentiles
#   DIRECTOR_TOML=s   extra lines for the director's [director] table, for
#                     A/B runs of a setting (e.g. "yield_before_sleep_us = 0")
#   SKIP_BUILD=1      use the existing release binaries
#   STICKY_BIN=path   the director binary to measure (default: the release
#                     build; for A/B runs of an older copy)
#
# The backends are the stand-in web servers of the director's integration
# tests (a tiny hyper server, one worker thread each, implementing
# /.sticky/health), run from the release build of a test binary. wrk sends
# every request with a valid sticky cookie for both proxies (the director's
# signed `sticky.route` and HAProxy's `SRV`), rotating over the three
# backends, so both measure the sticky path: cookie check, forwarding,
# X-Forwarded-* headers. A last run hits one backend directly: the
# overhead of a proxy hop.
#
# Each run also reports the proxy's CPU time per request (user + system,
# from /proc, over the measured run): unlike the rates, it hardly moves with
# what else shares the machine.
#
# The report goes to stdout and to bench/results/director-<time>.md.
set -euo pipefail

DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
THREADS=${THREADS:-"1 2"}
ROUNDS=${ROUNDS:-3}
PROTOCOLS=${PROTOCOLS:-"http https h2"}
H2_STREAMS=${H2_STREAMS:-1}
FIXED_RATE=${FIXED_RATE:-10000}
SKIP_BUILD=${SKIP_BUILD:-}
CACHESIM=${CACHESIM:-}
CACHESIM_LL=${CACHESIM_LL:-}
LAT_DIR=${LAT_DIR:-}
[[ -n $LAT_DIR ]] && { mkdir -p "$LAT_DIR"; LAT_DIR=$(cd "$LAT_DIR" && pwd); }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

tools="haproxy wrk python3 curl openssl"
[[ -n $CACHESIM ]] && { PROTOCOLS=h2; tools+=" valgrind callgrind_control"; }
[[ " $PROTOCOLS " == *" h2 "* || " $PROTOCOLS " == *" http-rate "* ]] && tools+=" h2load"
for tool in $tools; do
    command -v "$tool" >/dev/null || {
        echo "director.sh: $tool not found (apt-get install -y haproxy wrk python3 curl openssl nghttp2-client)" >&2
        exit 1
    }
done

log() { printf '[director.sh] %s\n' "$*" >&2; }

backend_test=director_routing
if [[ -z $SKIP_BUILD ]]; then
    log "building sticky and the test backend (release)"
    cargo build --release -p sticky >&2
    cargo test --release -p sticky --test "$backend_test" --no-run >&2
fi
sticky_bin=${STICKY_BIN:-$root/target/release/sticky}
backend_bin=$(ls -t "$root"/target/release/deps/"$backend_test"-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
[[ -x $sticky_bin ]] || { echo "director.sh: $sticky_bin missing" >&2; exit 1; }
[[ -n $backend_bin && -x $backend_bin ]] || { echo "director.sh: release test binary $backend_test missing" >&2; exit 1; }

stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
report=bench/results/director-$stamp.md
work=$(mktemp -d "${TMPDIR:-/tmp}/sticky-director-bench.XXXXXX")
secret="bench-cluster-secret-$(date +%s)-0123456789abcdef"

backend_pids=()
proxy_pid=
stop_proxy() {
    if [[ -n $proxy_pid ]]; then
        kill "$proxy_pid" 2>/dev/null || true
        wait "$proxy_pid" 2>/dev/null || true
        proxy_pid=
    fi
}
cleanup() {
    stop_proxy
    local pid
    for pid in "${backend_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${backend_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # what, log file, command...
    local what=$1 logfile=$2; shift 2
    for _ in $(seq 1 200); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "director.sh: timed out waiting for $what; $logfile says:" >&2
    tail -n 20 "$logfile" >&2 || true
    exit 1
}

# --- backends -------------------------------------------------------------
names=(ws1 ws2 ws3)
ports=()
for name in "${names[@]}"; do
    STICKY_TEST_BACKEND=$name STICKY_TEST_BACKEND_PORT=0 STICKY_TEST_BACKEND_SECRET=$secret \
        "$backend_bin" director_test_backend --exact --nocapture --test-threads=1 \
        >"$work/$name.log" 2>&1 &
    backend_pids+=($!)
    wait_for "backend $name" "$work/$name.log" grep -q 'STICKY_TEST_BACKEND_LISTENING port=' "$work/$name.log"
    port=$(grep -o 'STICKY_TEST_BACKEND_LISTENING port=[0-9]*' "$work/$name.log" | head -n 1 | cut -d= -f2)
    ports+=("$port")
done
log "backends: ${names[*]} on ports ${ports[*]}"

# Admin token and route cookies, as docs/protocol.md and docs/director.md
# define them.
read -r token cookie1 cookie2 cookie3 < <(python3 - "$secret" <<'EOF'
import hashlib, hmac, sys
key = sys.argv[1].encode()
token = hmac.new(key, b"sticky/admin/v1", hashlib.sha256).hexdigest()
cookies = [n + "." + hmac.new(key, b"sticky/route/v1\0" + n.encode(), hashlib.sha256).hexdigest()[:32]
           for n in ("ws1", "ws2", "ws3")]
print(token, *cookies)
EOF
)

cat >"$work/cookies.lua" <<EOF
-- Every request carries a valid cookie for both proxies, rotating over the
-- three backends. The requests are built once.
local cookies = {
  "sticky.route=$cookie1; SRV=ws1",
  "sticky.route=$cookie2; SRV=ws2",
  "sticky.route=$cookie3; SRV=ws3",
}
local reqs = {}
local i = 0
init = function(args)
  for n = 1, 3 do
    reqs[n] = wrk.format("GET", "/", { ["Cookie"] = cookies[n] })
  end
end
request = function()
  i = i % 3 + 1
  return reqs[i]
end
EOF

# One certificate for both proxies: ECDSA P-256, self-signed for localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"

# --- the two proxies ------------------------------------------------------
scheme() { # protocol
    if [[ $1 == http || $1 == http-rate ]]; then echo http; else echo https; fi
}

start_director() { # threads protocol
    local listen admin
    listen=$(free_port); admin=$(free_port)
    {
        printf 'secret = "%s"\n\n[director]\nlisten = "127.0.0.1:%s"\nadmin = "127.0.0.1:%s"\n' "$secret" "$listen" "$admin"
        if [[ $(scheme "$2") == https ]]; then
            printf 'tls_cert = "%s"\ntls_key = "%s"\n' "$work/cert.pem" "$work/key.pem"
        fi
        if [[ -n ${DIRECTOR_TOML:-} ]]; then printf '%s\n' "$DIRECTOR_TOML"; fi
        local i
        for i in 0 1 2; do
            printf '\n[[web]]\nname = "%s"\nlisten = "127.0.0.1:%s"\n' "${names[$i]}" "${ports[$i]}"
        done
    } >"$work/cluster.toml"
    ${under_valgrind:+"${under_valgrind[@]}" --callgrind-out-file="$work/director.cg"} \
        "$sticky_bin" --log warn director --config "$work/cluster.toml" --threads "$1" >"$work/director.log" 2>&1 &
    proxy_pid=$!
    proxy_url=$(scheme "$2")://127.0.0.1:$listen/
    wait_for "the director's servers" "$work/director.log" sh -c \
        "curl -sf http://127.0.0.1:$admin/api/cluster | python3 -c 'import json,sys; c=json.load(sys.stdin); sys.exit(0 if c[\"director\"][\"servers_up\"] == 3 else 1)'"
}

start_haproxy() { # threads protocol
    local listen stats bind_tls="" proto=http
    listen=$(free_port); stats=$(free_port)
    if [[ $(scheme "$2") == https ]]; then
        bind_tls="ssl crt $work/haproxy.pem alpn h2,http/1.1"
        proto=https
    fi
    cat >"$work/haproxy.cfg" <<EOF
global
    nbthread $1
    maxconn 8000
    log stdout format raw local0 emerg

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 10s
    option http-keep-alive

frontend public
    bind 127.0.0.1:$listen $bind_tls
    # The same header work as the director.
    option forwardfor
    http-request set-header X-Forwarded-Proto $proto
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend web

backend web
    balance leastconn
    cookie SRV insert
    option httpchk
    http-check send meth GET uri /.sticky/health hdr Authorization "Bearer $token"
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
    server ws1 127.0.0.1:${ports[0]} check cookie ws1
    server ws2 127.0.0.1:${ports[1]} check cookie ws2
    server ws3 127.0.0.1:${ports[2]} check cookie ws3

listen stats
    bind 127.0.0.1:$stats
    stats enable
    stats uri /stats
EOF
    haproxy -c -f "$work/haproxy.cfg" >&2
    if [[ -n $CACHESIM ]]; then
        # One process (no master-worker), so that valgrind sees the work.
        "${under_valgrind[@]}" --callgrind-out-file="$work/haproxy.cg" \
            haproxy -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
    else
        haproxy -Ws -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
    fi
    proxy_pid=$!
    proxy_url=$(scheme "$2")://127.0.0.1:$listen/
    wait_for "HAProxy's servers" "$work/haproxy.log" sh -c \
        "test \$(curl -sf 'http://127.0.0.1:$stats/stats;csv' | grep -c '^web,ws[123],.*,UP,') -eq 3"
}

# --- measuring --------------------------------------------------------------
# CPU time (user + system, in clock ticks) used so far by a process and its
# running children (HAProxy's master forks the worker that does the work).
cpu_ticks() { # pid
    local total=0 p f rest
    for p in "$1" $(pgrep -P "$1" || true); do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        # After the ")" that closes the command name, utime is the 12th
        # field and stime the 13th.
        read -r -a rest <<<"${f##*) }"
        total=$((total + rest[11] + rest[12]))
    done
    echo "$total"
}
clk_tck=$(getconf CLK_TCK)

# Prints "rps p50_ms p99_ms cpu_us_per_request" of one wrk run against $1;
# the CPU is that of process $2 (and its children) during the measured run.
measure() {
    local url=$1 pid=$2 out before after
    if (( WARMUP > 0 )); then
        wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$work/cookies.lua" "$url" >/dev/null
    fi
    before=$(cpu_ticks "$pid")
    out=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/cookies.lua" "$url")
    after=$(cpu_ticks "$pid")
    echo "$out" >>"$work/wrk.txt"
    if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
        log "errors during the run:"; grep 'Non-2xx\|Socket errors' <<<"$out" >&2
    fi
    python3 - "$out" "$((after - before))" "$clk_tck" <<'EOF'
import re, sys
out, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
requests = int(re.search(r"(\d+) requests in", out).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
cpu_us = ticks / hz * 1e6 / max(requests, 1)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {cpu_us:.2f}")
EOF
}

# The same over HTTP/2, with h2load: three h2load processes, one per route
# cookie (h2load sends one header set), each with a third of the
# connections and H2_STREAMS streams in flight per connection (1: as wrk's
# one request per connection); the rate is their sum, the percentiles those of every
# request in their per-request logs. With "h1": HTTP/1.1 at FIXED_RATE in
# all (each connection sends its share of it, one request at a time).
measure_h2() {
    local url=$1 pid=$2 mode=${3:-h2} before after n c=$((CONNECTIONS / 3))
    local cookies=("$cookie1; SRV=ws1" "$cookie2; SRV=ws2" "$cookie3; SRV=ws3") pids=()
    local flags=(-m"$H2_STREAMS") want=h2
    if [[ $mode == h1 ]]; then
        # --rps is per connection; at least 1.
        flags=(--h1 -m1 --rps="$(( (FIXED_RATE + CONNECTIONS - 1) / CONNECTIONS ))")
        want=http/1.1
    fi
    if (( WARMUP > 0 )); then
        for n in 0 1 2; do
            h2load -c"$c" -t1 "${flags[@]}" -D"$WARMUP" -H "cookie: sticky.route=${cookies[$n]}" "$url" >/dev/null 2>&1 &
            pids+=($!)
        done
        wait "${pids[@]}"; pids=()
    fi
    # h2load appends to an existing --log-file: without this, a run's
    # percentiles would include every earlier run's requests.
    rm -f "$work"/h2-?.log
    before=$(cpu_ticks "$pid")
    for n in 0 1 2; do
        h2load -c"$c" -t1 "${flags[@]}" -D"$DURATION" -H "cookie: sticky.route=${cookies[$n]}" \
            --log-file="$work/h2-$n.log" "$url" >"$work/h2-$n.out" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}"
    after=$(cpu_ticks "$pid")
    cat "$work"/h2-?.out >>"$work/wrk.txt"
    [[ -n $LAT_DIR ]] && cat "$work"/h2-?.log >"$LAT_DIR/$run_tag.log"
    python3 - "$work" "$((after - before))" "$clk_tck" "$want" <<'EOF'
import re, sys
work, ticks, hz, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rps, requests, lat, bad = 0.0, 0, [], 0
for n in range(3):
    out = open(f"{work}/h2-{n}.out").read()
    proto = re.search(r"Application protocol: (\S+)", out)
    if not proto or proto.group(1) != want:
        sys.exit(f"h2load did not speak {want}:\n{out}")
    rps += float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", out)
    requests += int(m.group(2))
    bad += int(m.group(1)) - int(m.group(2))
    for line in open(f"{work}/h2-{n}.log"):
        f = line.split()
        if len(f) >= 3:
            lat.append(int(f[2]))
if bad:
    print(f"[director.sh] {bad} requests did not succeed", file=sys.stderr)
lat.sort()
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0
cpu_us = ticks / hz * 1e6 / max(requests, 1)
print(f"{rps:.0f} {pct(0.50):.3f} {pct(0.99):.3f} {cpu_us:.2f}")
EOF
}

results=$work/results.txt
: >"$results"
run() { # proxy threads protocol
    local proxy=$1 threads=$2 protocol=$3 r r50 r99 cpu
    run_tag="$proxy-${threads}t-$protocol-r$round"
    log "$proxy, $threads thread(s), $protocol: ${DURATION}s"
    "start_$proxy" "$threads" "$protocol"
    if [[ $protocol == h2 ]]; then
        read -r r r50 r99 cpu < <(measure_h2 "$proxy_url" "$proxy_pid")
    elif [[ $protocol == http-rate ]]; then
        read -r r r50 r99 cpu < <(measure_h2 "$proxy_url" "$proxy_pid" h1)
    else
        read -r r r50 r99 cpu < <(measure "$proxy_url" "$proxy_pid")
    fi
    stop_proxy
    [[ -n $r ]] || { echo "director.sh: the $proxy run ($threads thread(s), $protocol) measured nothing" >&2; exit 1; }
    echo "$proxy $threads $r $r50 $r99 $cpu $protocol" >>"$results"
    log "  $r req/s, p50 $r50 ms, p99 $r99 ms, proxy CPU $cpu us/request"
}

if [[ -n $CACHESIM ]]; then
    under_valgrind=(valgrind --tool=callgrind --cache-sim=yes ${CACHESIM_LL:+--LL="$CACHESIM_LL"})
    cachesim() { # proxy
        local cookies=("$cookie1; SRV=ws1" "$cookie2; SRV=ws2" "$cookie3; SRV=ws3") pids=() n
        log "$1 under callgrind: 3 x $CACHESIM HTTP/2 requests"
        "start_$1" 1 h2
        for n in 0 1 2; do
            h2load -c7 -t1 -m1 -n 600 -H "cookie: sticky.route=${cookies[$n]}" "$proxy_url" >/dev/null 2>&1 &
            pids+=($!)
        done
        wait "${pids[@]}"; pids=()
        callgrind_control -z "$proxy_pid" >/dev/null 2>&1
        for n in 0 1 2; do
            h2load -c21 -t1 -m1 -n "$CACHESIM" -H "cookie: sticky.route=${cookies[$n]}" "$proxy_url" >"$work/h2-$n.out" 2>&1 &
            pids+=($!)
        done
        wait "${pids[@]}"
        if [[ $(cat "$work"/h2-?.out | grep -c " $CACHESIM succeeded") -ne 3 ]]; then
            echo "director.sh: not every request of the $1 run succeeded:" >&2
            grep -h "requests:" "$work"/h2-?.out >&2
            exit 1
        fi
        callgrind_control -d "$proxy_pid" >/dev/null 2>&1
        # The dump made after the zeroing is the second part.
        for _ in $(seq 1 100); do [[ -s $work/$1.cg.1 ]] && break; sleep 0.1; done
        stop_proxy
        python3 - "$work/$1.cg.1" "$((3 * CACHESIM))" "$1" >>"$work/cachesim.txt" <<'EOF'
import sys
events = summary = None
for line in open(sys.argv[1]):
    if line.startswith("events:"):
        events = line.split()[1:]
    elif line.startswith("summary:"):
        summary = [int(v) for v in line.split()[1:]]
n = int(sys.argv[2])
print(sys.argv[3], *(f"{e}={v / n:.1f}" for e, v in zip(events, summary)))
EOF
    }
    : >"$work/cachesim.txt"
    cachesim director
    cachesim haproxy
    {
        echo "## Director vs HAProxy under callgrind's cache simulation — $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "\`CACHESIM=$CACHESIM bash bench/director.sh\`: 3 x $CACHESIM HTTP/2 requests (h2load -c21 -m1) per proxy after a warm-up, 1 thread each; $(haproxy -v | head -n 1 | cut -d' ' -f1-3); $("$sticky_bin" --version). User space only, per request${CACHESIM_LL:+; last-level cache modelled as $CACHESIM_LL (size,ways,line)}."
        echo
        python3 - "$work/cachesim.txt" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, *pairs = line.split()
    rows[name] = {k: float(v) for k, v in (p.split("=") for p in pairs)}
d, h = rows["director"], rows["haproxy"]
names = {"Ir": "instructions", "Dr": "data reads", "Dw": "data writes",
         "I1mr": "L1 instruction misses", "D1mr": "L1 read misses", "D1mw": "L1 write misses",
         "DLmr": "last-level read misses", "DLmw": "last-level write misses"}
print("| event | director | HAProxy | director/HAProxy |")
print("|---|---:|---:|---:|")
for k, label in names.items():
    if k in d and k in h:
        ratio = f"{d[k] / h[k]:.2f}x" if h[k] else "-"
        print(f"| {label} | {d[k]:,.0f} | {h[k]:,.0f} | {ratio} |")
EOF
    } | tee "$report"
    log "report: $report"
    exit 0
fi

for round in $(seq 1 "$ROUNDS"); do
    for protocol in $PROTOCOLS; do
        for t in $THREADS; do
            if (( (round + t) % 2 == 0 )); then
                run director "$t" "$protocol"; run haproxy "$t" "$protocol"
            else
                run haproxy "$t" "$protocol"; run director "$t" "$protocol"
            fi
        done
    done
done
log "direct to ws1: ${DURATION}s"
read -r direct_rps direct_p50 direct_p99 direct_cpu < <(measure "http://127.0.0.1:${ports[0]}/" "${backend_pids[0]}")
echo "direct 0 $direct_rps $direct_p50 $direct_p99 $direct_cpu http" >>"$results"

# --- report -----------------------------------------------------------------
cat >"$work/report.py" <<'PYEOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
threads = sys.argv[2].split()
protocols = sys.argv[3].split()
names = {"http": "HTTP/1.1", "https": "HTTP/1.1 + TLS", "h2": "HTTP/2 + TLS",
         "http-rate": f"HTTP/1.1 at {sys.argv[4]}/s"}
def sel(proxy, p, t):
    return [r for r in rows if r[0] == proxy and r[1] == t and r[6] == p]
def med(proxy, p, t, col):
    return statistics.median(float(r[col]) for r in sel(proxy, p, t))
def runs(proxy, p, t):
    return ", ".join(f"{float(r[2]):.0f}" for r in sel(proxy, p, t))
def pair_ratios(p, t, col):
    # The k-th director run and the k-th HAProxy run of a protocol and
    # thread count ran back to back in one round: their ratio is less moved
    # by the machine's slow and fast stretches than the ratio of the medians.
    d = [float(r[col]) for r in sel("director", p, t)]
    h = [float(r[col]) for r in sel("haproxy", p, t)]
    return [a / b for a, b in zip(d, h) if b > 0]
def spread(p, t, col):
    v = pair_ratios(p, t, col)
    return f"{statistics.median(v):.2f}x ({min(v):.2f}-{max(v):.2f})"
print("| protocol | threads | director req/s | HAProxy req/s | director/HAProxy | director p50 | HAProxy p50 | director p99 | HAProxy p99 | director CPU/req | HAProxy CPU/req |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for p in protocols:
    for t in threads:
        d, h = med("director", p, t, 2), med("haproxy", p, t, 2)
        print(f"| {names[p]} | {t} | {d:.0f} | {h:.0f} | {d / h:.2f}x | {med('director', p, t, 3):.2f} ms | {med('haproxy', p, t, 3):.2f} ms "
              f"| {med('director', p, t, 4):.2f} ms | {med('haproxy', p, t, 4):.2f} ms "
              f"| {med('director', p, t, 5):.1f} us | {med('haproxy', p, t, 5):.1f} us |")
print()
print("Ratios of the runs paired in a round, director/HAProxy, median (min-max): lower is better for p99 and CPU.")
print()
print("| protocol | threads | req/s | p99 | CPU/req |")
print("|---|---|---|---|---|")
for p in protocols:
    for t in threads:
        print(f"| {names[p]} | {t} | {spread(p, t, 2)} | {spread(p, t, 4)} | {spread(p, t, 5)} |")
direct = [r for r in rows if r[0] == "direct"][0]
dr, d50 = float(direct[2]), float(direct[3])
print()
print(f"Direct to one backend (plain HTTP, no proxy, one run): {dr:.0f} req/s, p50 {d50:.2f} ms, p99 {float(direct[4]):.2f} ms; "
      f"the backend used {float(direct[5]):.1f} us of CPU per request.")
if "http" in protocols:
    for t in threads:
        print(f"With {t} thread(s), plain HTTP: the director delivers {med('director', 'http', t, 2) / dr:.2f}x the direct rate, HAProxy "
              f"{med('haproxy', 'http', t, 2) / dr:.2f}x; the hop adds {med('director', 'http', t, 3) - d50:.2f} ms (director) and "
              f"{med('haproxy', 'http', t, 3) - d50:.2f} ms (HAProxy) to the median latency.")
print()
print("Every run, req/s: " + "; ".join(f"{p} {q} x{t}: {runs(q, p, t)}" for p in protocols for t in threads for q in ("director", "haproxy")) + ".")
PYEOF
{
    echo "## Director vs HAProxy — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "\`DURATION=$DURATION ROUNDS=$ROUNDS PROTOCOLS=\"$PROTOCOLS\"$( [[ " $PROTOCOLS " == *" http-rate "* ]] && echo " FIXED_RATE=$FIXED_RATE") bash bench/director.sh\`: wrk -t$WRK_THREADS -c$CONNECTIONS (h2load: 3 x -c$((CONNECTIONS / 3)) -m$H2_STREAMS; at a fixed rate: 3 x -c$((CONNECTIONS / 3)) --h1 --rps $(( (FIXED_RATE + CONNECTIONS - 1) / CONNECTIONS )) per connection), keep-alive,"
    echo "every request with a valid sticky cookie, rotating over 3 backends; $(nproc) cores shared by"
    echo "wrk, the proxy and the backends. $(haproxy -v | head -n 1 | cut -d' ' -f1-3); $("$sticky_bin" --version)."
    echo "Medians of $ROUNDS runs of ${DURATION}s each (after ${WARMUP}s of warm-up), the two proxies alternating."
    echo
    python3 "$work/report.py" "$results" "$THREADS" "$PROTOCOLS" "$FIXED_RATE"
} | tee "$report"
cp "$work/wrk.txt" "bench/results/director-$stamp-wrk.txt"
log "report: $report"
