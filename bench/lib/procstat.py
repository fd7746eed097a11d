#!/usr/bin/env python3
"""procstat.py PID: CPU ticks (utime+stime, all threads) and peak RSS (VmHWM, KiB) of PID and its
descendants (nginx's master and worker), and the CPU ticks of the thread named audit-writer (Portcullis' audit
writer: sealing, the sinks, fsync), as "TICKS HWM_KIB CLK_TCK AUDIT_TICKS". Missing processes count zero."""
import os
import sys


def children(pid):
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


AUDIT_THREAD = "audit-writer"  # AuditPipeline.threadName


def audit_ticks(pid):
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    if f.read().strip() != AUDIT_THREAD:
                        continue
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                continue
    except OSError:
        pass
    return total


def main():
    ticks = hwm = audit = 0
    todo = [int(a) for a in sys.argv[1:]]
    seen = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
            audit += audit_ticks(pid)
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            continue
        todo += children(pid)
    print(ticks, hwm, os.sysconf("SC_CLK_TCK"), audit)


main()
