#!/usr/bin/env python3
"""Waits (at most LIMIT seconds, default 60) until the machine has been idle for a second.

Benchmarks run this before they time anything: the previous benchmark (or this one's own
setup) leaves the kernel tearing down containers, writing back and discarding the blocks
of deleted data roots for a while, and the first commands timed would carry that load.
Busy is every CPU state but idle; I/O wait counts as busy, as the disk is not quiet then.
"""
import sys
import time


def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3], sum(v)


def main():
    limit = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    deadline = time.time() + limit
    while time.time() < deadline:
        b0, t0 = busy()
        time.sleep(1)
        b1, t1 = busy()
        if t1 > t0 and (b1 - b0) / (t1 - t0) < 0.05:
            return
    print(f"wait-idle: the machine stayed busy for {limit:.0f} s; timing anyway", file=sys.stderr)


main()
