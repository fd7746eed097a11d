#!/usr/bin/env python3
"""record.py: the benchmark's rows, for bench/run.sh.

  record.py row MODE OUT PASS ID LABEL PROC GROUP STATUS BEFORE AFTER [VB VA LOADAVG]
      one JSON line for results.jsonl: the BENCH_RESULT line of OUT (wrk-report.lua or loadgen), the process's
      CPU and peak RSS between the procstat.py readings BEFORE and AFTER, and for MODE wrk the verification
      counter's delta (VB, VA; -1: not read) and the load average. MODE: wrk or same_load.
  record.py summary RESULTS
      one line on the last row of RESULTS, for the log.
"""
import json
import sys


def row(mode, out, pas, rid, label, proc, group, status, before, after, vb="-1", va="-1", load=None):
    r = {"pass": int(pas), "id": rid, "label": label, "process": proc, "group": group, "status": status}
    if mode == "same_load":
        r["mode"] = "same_load"
    else:
        r["loadavg"] = load
    for line in open(out).read().splitlines():
        if line.startswith("BENCH_RESULT "):
            r.update(json.loads(line[len("BENCH_RESULT "):]))
    if "requests" not in r:
        r["status"] = status if status != "ok" else ("no_loadgen_result" if mode == "same_load" else "no_wrk_result")
    tb, _, clk, ab = map(int, before.split())
    ta, ha, _, aa = map(int, after.split())
    r["cpu_seconds"] = (ta - tb) / clk
    r["peak_rss_kib"] = ha
    if mode != "same_load":
        r["audit_cpu_seconds"] = (aa - ab) / clk
        r["verifications"] = int(va) - int(vb) if int(vb) >= 0 and int(va) >= 0 else None
    print(json.dumps(r))


def summary(results):
    r = json.loads(open(results).read().splitlines()[-1])
    if "requests" not in r:
        print(r["status"])
    elif r.get("mode") == "same_load":
        bad = r["non2xx"] + r["errors"] + r["timeouts"]
        print(f"p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms, p99.9 {r['p999_us'] / 1000:.2f} ms"
              + (f", {bad} non-2xx/errors/timeouts" if bad else "") + (f", {r['late']} sent late" if r["late"] else ""))
    else:
        rps = r["requests"] / (r["duration_us"] / 1e6)
        bad = r["non2xx"] + r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
        extra = f", {bad} non-2xx/errors" if bad else ""
        if r.get("verifications") is not None:
            extra += f", {r['verifications'] / max(r['requests'], 1):.2f} verifications/request"
        print(f"{rps:,.0f} req/s, p99 {r['p99_us'] / 1000:.2f} ms, "
              f"{1000 * r['cpu_seconds'] / max(r['requests'], 1):.4f} CPU s/1k req{extra}")


if __name__ == "__main__":
    if sys.argv[1] == "row":
        row(*sys.argv[2:])
    else:
        summary(sys.argv[2])
