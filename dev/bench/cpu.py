#!/usr/bin/env python3
"""dev/bench/cpu.py snapshot FILE | diff BEFORE AFTER

CPU time of every process in this network namespace (the stack, the services
and the load tools of one `make bench`; other stacks on the machine run in
other namespaces), by command name. `snapshot` writes one JSON object of
cumulative seconds per process; `diff` prints seconds spent between two
snapshots, per command name, as JSON. A process's own time (utime + stime)
and its reaped children's (cutime + cstime) both count, so short-lived
PostgreSQL backends still add to the postmaster. Standard library only.
"""

import json
import os
import sys

TICK = os.sysconf("SC_CLK_TCK")


def netns():
    return os.stat("/proc/self/ns/net").st_ino


def snapshot():
    mine = netns()
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino != mine:
                continue
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command sits in parentheses and may hold spaces.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime are fields 14-17 (1-based) of the line.
        secs = sum(int(x) for x in fields[11:15]) / TICK
        out[pid] = {"comm": comm, "secs": secs}
    return out


def diff(before, after):
    spent = {}
    for pid, p in after.items():
        base = before.get(pid)
        start = base["secs"] if base and base["comm"] == p["comm"] else 0.0
        spent[p["comm"]] = spent.get(p["comm"], 0.0) + max(p["secs"] - start, 0.0)
    return {k: round(v, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v > 0}


if __name__ == "__main__":
    if sys.argv[1:2] == ["snapshot"]:
        with open(sys.argv[2], "w") as f:
            json.dump(snapshot(), f)
    elif sys.argv[1:2] == ["diff"]:
        with open(sys.argv[2]) as a, open(sys.argv[3]) as b:
            print(json.dumps(diff(json.load(a), json.load(b))))
    else:
        sys.exit(__doc__)
