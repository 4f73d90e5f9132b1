#!/usr/bin/env bash
# Instructions the director executes (user space, under valgrind's
# callgrind) for N HTTP/2-over-TLS requests of h2load -m1 (3 processes x 7
# connections, one route cookie each), in front of the stand-in backends of
# bench/director.sh. Unlike CPU time, the count does not move with the
# load of a shared machine: run it at two values of N and divide the
# difference by the difference of N for instructions per request, e.g.
#
#   for n in 3000 9000; do bash bench/director-callgrind.sh target/release/sticky /tmp/cg-$n.out $n; done
#   echo $(( ($(grep summary /tmp/cg-9000.out | cut -d' ' -f2) - $(grep summary /tmp/cg-3000.out | cut -d' ' -f2)) / 6000 ))
#
# Needs valgrind, h2load, openssl, curl, python3 and the release test binary
# of director_routing (bench/director.sh builds it). The kernel's share
# (system calls, loopback TCP) is not counted.
#
# usage: bench/director-callgrind.sh BIN OUTFILE [REQUESTS] [THREADS]
set -euo pipefail
BIN=$1; OUT=$2; N=${3:-6000}; T=${4:-1}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
backend_bin=$(ls -t $root/target/release/deps/director_routing-* | grep -v '\.d$' | head -n1)
work=$(mktemp -d "${TMPDIR:-/tmp}/sticky-director-callgrind.XXXXXX")
secret="bench-cluster-secret-0123456789abcdef-cg"
pids=()
cleanup() { for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf $work; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ports=()
for name in ws1 ws2 ws3; do
  STICKY_TEST_BACKEND=$name STICKY_TEST_BACKEND_PORT=0 STICKY_TEST_BACKEND_SECRET=$secret \
    $backend_bin director_test_backend --exact --nocapture --test-threads=1 >$work/$name.log 2>&1 &
  pids+=($!)
  for i in $(seq 1 100); do grep -q 'STICKY_TEST_BACKEND_LISTENING port=' $work/$name.log && break; sleep 0.1; done
  ports+=($(grep -o 'STICKY_TEST_BACKEND_LISTENING port=[0-9]*' $work/$name.log | head -n1 | cut -d= -f2))
done
read -r c1 c2 c3 < <(python3 - "$secret" <<'PY'
import hashlib, hmac, sys
key = sys.argv[1].encode()
print(*[n + "." + hmac.new(key, b"sticky/route/v1\0" + n.encode(), hashlib.sha256).hexdigest()[:32] for n in ("ws1","ws2","ws3")])
PY
)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout $work/key.pem -out $work/cert.pem 2>/dev/null
listen=$(free_port); admin=$(free_port)
{ printf 'secret = "%s"\n\n[director]\nlisten = "127.0.0.1:%s"\nadmin = "127.0.0.1:%s"\ntls_cert = "%s"\ntls_key = "%s"\n' "$secret" $listen $admin $work/cert.pem $work/key.pem
  i=0; for name in ws1 ws2 ws3; do printf '\n[[web]]\nname = "%s"\nlisten = "127.0.0.1:%s"\n' $name ${ports[$i]}; i=$((i+1)); done; } > $work/cluster.toml
valgrind --tool=callgrind --callgrind-out-file=$OUT $BIN --log warn director --config $work/cluster.toml --threads $T >$work/director.log 2>&1 &
vpid=$!; pids+=($vpid)
for i in $(seq 1 300); do curl -sf http://127.0.0.1:$admin/api/cluster 2>/dev/null | python3 -c 'import json,sys; c=json.load(sys.stdin); sys.exit(0 if c["director"]["servers_up"] == 3 else 1)' 2>/dev/null && break; sleep 0.2; done
url=https://127.0.0.1:$listen/
# warm-up: connections open and pools filled
per=$((N/3))
for c in $c1 $c2 $c3; do h2load -c7 -t1 -m1 -n$per -H "cookie: sticky.route=$c" $url > $work/h2load-$c.txt 2>&1 & hp+=($!); done
for p in "${hp[@]}"; do wait $p; done
grep -h "requests:" $work/h2load-*.txt
kill -INT $vpid; wait $vpid 2>/dev/null || true
