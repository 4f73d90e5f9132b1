#!/usr/bin/env bash
# The same web server (`sticky web`, sync mode, R=2 over three stores) with
# `sticky store`s and with `redis-server`s as its stores, driven by
# `sticky bench` in the same run. Reads are served from the local cache
# either way, so the writes-only line is where the backends differ.
#   DURATION=15s USERS=64 bash bench/backends.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
USERS=${USERS:-64}
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release -p sticky
B=target/release/sticky
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
for kind in sticky redis; do
  web=$(port)
  {
    echo "secret = \"$secret\""; echo "replicas = 2"; echo
    echo "[[web]]"; echo "name = \"ws-$kind\""; echo "listen = \"127.0.0.1:$web\""; echo
  } > "$work/$kind.toml"
  for i in 1 2 3; do
    p=$(port)
    if [ "$kind" = sticky ]; then
      "$B" store --listen "127.0.0.1:$p" --threads 1 --state-dir "$work/state-$i" >/dev/null 2>&1 & pids+=($!)
      printf '[[store]]\nname = "s%s"\nlisten = "127.0.0.1:%s"\n\n' "$i" "$p" >> "$work/$kind.toml"
    else
      redis-server --port "$p" --save '' --appendonly no >/dev/null 2>&1 & pids+=($!)
      printf '[[store]]\nname = "s%s"\nlisten = "127.0.0.1:%s"\nurl = "redis://127.0.0.1:%s"\n\n' "$i" "$p" "$p" >> "$work/$kind.toml"
    fi
    wait_port "$p"
  done
  "$B" web --config "$work/$kind.toml" --name "ws-$kind" --threads 1 >"$work/ws-$kind.log" 2>&1 & pids+=($!)
  wait_port "$web"
  echo "$web" > "$work/$kind.port"
done
echo "| backend | write ratio | req/s | p50 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|---:|"
for ratio in 0.1 1.0; do
  for kind in sticky redis; do
    "$B" bench --url "http://127.0.0.1:$(cat "$work/$kind.port")" --users "$USERS" --write-ratio "$ratio" \
      --session-bytes 1024 --duration "$DURATION" --warmup 3s --threads 1 --no-progress --json "$work/$kind-$ratio.json" >/dev/null
    python3 - "$work/$kind-$ratio.json" "$kind" "$ratio" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
def find(o, *names):
    for n in names:
        if isinstance(o, dict) and n in o: return o[n]
    return None
a = d["all"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {d['rps']:.0f} | {a.get('p50_ms')} | {a.get('p99_ms')} | {d['errors']} |")
PY
  done
done
