# Sourced by the bench scripts that compare two builds side by side
# (takeover.sh, adoption.sh): STICKY_BIN (built unless SKIP_BUILD=1) and,
# optionally, BEFORE_BIN.

# Sets `bins` to "after=STICKY_BIN", preceded by "before=BEFORE_BIN" when
# that is set; builds STICKY_BIN first unless SKIP_BUILD=1.
ab_builds() {
  if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p sticky
  fi
  bins=("after=$STICKY_BIN")
  if [ -n "${BEFORE_BIN:-}" ]; then
    bins=("before=$BEFORE_BIN" "${bins[@]}")
  fi
}

# ab_rounds FN: for each of ROUNDS rounds and each build, runs `FN name
# bin round`; which build goes first alternates by round.
ab_rounds() {
  local run=$1 round order b
  for round in $(seq 1 "$ROUNDS"); do
    order=("${bins[@]}")
    if [ $((round % 2)) -eq 0 ] && [ "${#bins[@]}" -eq 2 ]; then order=("${bins[1]}" "${bins[0]}"); fi
    for b in "${order[@]}"; do
      "$run" "${b%%=*}" "${b#*=}" "$round"
    done
  done
}

# ab_up_wait BIN DIR: waits (30 s at most) until the `sticky up` whose run
# dir is DIR answers `sticky status`.
ab_up_wait() {
  for _ in $(seq 1 150); do
    "$1" status --dir "$2" > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "sticky up in $2 did not come up within 30 s" >&2
  return 1
}

# ab_pid_of DIR NAME: the pid of process NAME of the `sticky up` whose run
# dir is DIR.
ab_pid_of() {
  python3 -c 'import json,sys; print(next(p["pid"] for p in json.load(open(sys.argv[1]))["processes"] if p["name"] == sys.argv[2]))' "$1/up.json" "$2"
}
