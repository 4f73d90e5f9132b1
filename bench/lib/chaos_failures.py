#!/usr/bin/env python3
"""Which faults a `sticky chaos` run's failed operations ran under.

Reads the run's history (`chaos-history.jsonl`, printed at the end of the
run) and prints, for each fault kind, the failed (or unknown) operations
that ran while a fault of that kind was active (from its start to its
settle), a failure under several kinds split evenly among them; then the
user-seconds with a failure (a user and a whole second in which at least
one of its operations failed); and the user-seconds without service: for
each user, the time between two successful answers (or the run's start or
end) beyond one second, summed. The last counts a request that hangs as
much as requests that fail fast, and does not grow when failures come back
faster: it is the one to compare between runs.

    python3 bench/lib/chaos_failures.py /tmp/sticky-chaos-PID/chaos-history.jsonl
"""

import collections
import json
import sys


def main(path):
    events = [json.loads(line) for line in open(path)]
    open_faults = {}
    intervals = []
    for e in events:
        if e.get("type") != "fault":
            continue
        key = (e["fault"], e["process"], e.get("detail"))
        if e["phase"] == "start":
            open_faults[key] = e["at"]
        elif e["phase"] == "settled" and key in open_faults:
            intervals.append((open_faults.pop(key), e["at"], e["fault"]))
    ops = [e for e in events if e.get("type") == "op"]
    by_kind = collections.Counter()
    user_seconds = set()
    failed = 0
    for op in ops:
        if op.get("outcome") == "ok":
            continue
        failed += 1
        user_seconds.add((op["user"], op["at"] // 1000))
        kinds = {kind for start, end, kind in intervals if start <= op["at"] <= end}
        for kind in kinds:
            by_kind[kind] += 1 / len(kinds)
        if not kinds:
            by_kind["(no fault active)"] += 1
    # Time without a successful answer, beyond a second, per user.
    started = {}
    answered = collections.defaultdict(list)
    run_end = 0.0
    for op in ops:
        end = op["at"] + op["latency_us"] / 1000
        run_end = max(run_end, end)
        started.setdefault(op["user"], op["at"])
        if op.get("outcome") == "ok":
            answered[op["user"]].append(end)
    without = 0.0
    for user, first in started.items():
        previous = first
        for end in sorted(answered[user]) + [run_end]:
            without += max(0.0, end - previous - 1000)
            previous = end
    print(
        f"{len(ops)} operations, {failed} not ok, {len(user_seconds)} user-seconds with one, "
        f"{without / 1000:.0f} user-seconds without service (beyond 1 s between successes)"
    )
    for kind, n in by_kind.most_common():
        print(f"{kind:24} {n:8.0f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
