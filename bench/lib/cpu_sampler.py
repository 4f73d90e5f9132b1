"""The CPU sampler of bench/session.sh and bench/sidecar.sh.

Every 50 ms, one line "unix_time ticks_pid1 ticks_pid2 ..." (utime + stime
of each process given, its threads included, plus its children's processes
if it has any, in clock ticks), until killed.

    python3 bench/lib/cpu_sampler.py PID...
"""
import sys
import time

pids = sys.argv[1:]


def ticks(pid):
    total = 0
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        total = int(rest[11]) + int(rest[12])
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for child in f.read().split():
                total += ticks(child)
    except (OSError, IndexError, ValueError):
        pass
    return total


while True:
    print(f"{time.time():.3f}", *[ticks(p) for p in pids], flush=True)
    time.sleep(0.05)
