#!/usr/bin/env bash
# Where Portcullis' time per request goes, on one row of the benchmark: one Portcullis, one backend, wrk.
#
#   KEEP_WORK=1 BENCH_WORK=/tmp/pbench ROWS='portcullis-rs$' PASSES=1 bench/run.sh   # once: keys, config
#   bench/profile.sh cpu      /rs/      # req/s, user and system CPU us per request, p50/p99, audit-writer share
#   bench/profile.sh perf     /rs/      # + perf record -g (perf report -i $BENCH_WORK/perf.data)
#   bench/profile.sh mallocs  /rs/      # mallocs per request and their callers (a uprobe on libc's malloc)
#   bench/profile.sh syscalls /public/  # strace -c: syscalls per request
#   bench/profile.sh sched    /rs/      # perf sched: which threads share the proxy's core, and for how long
#
# Environment: BENCH_WORK (default /tmp/pbench: a work directory kept by run.sh), PORTCULLIS_BIN (default
# .build-release/release/portcullis), CONNECTIONS (64), DURATION (8), PROXY_CPU=0 LOAD_CPU=1. The token is the
# RS256 one for every path (run.sh's rows do the same). perf, strace and root are needed for the modes that
# use them. It stops what it started, by PID; it changes nothing in the work directory but its audit files.
set -euo pipefail

MODE=${1:?usage: bench/profile.sh cpu|perf|mallocs|syscalls|sched PATH}
URL_PATH=${2:-/rs/}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-/tmp/pbench}
BIN=${PORTCULLIS_BIN:-$ROOT/.build-release/release/portcullis}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-8}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BACKEND=${BENCH_HOME:-$HOME/.cache/portcullis-bench}/backend

[ -f "$WORK/portcullis.yaml" ] || { echo "no $WORK/portcullis.yaml: run bench/run.sh with KEEP_WORK=1 BENCH_WORK=$WORK first" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no binary $BIN (PORTCULLIS_BIN)" >&2; exit 2; }
BACKEND_PORT=$(grep -o 'upstream: http://127.0.0.1:[0-9]*' "$WORK/portcullis.yaml" | head -n1 | cut -d: -f4)
PROXY_PORT=$(grep -A2 'name: web' "$WORK/portcullis.yaml" | grep -o '127.0.0.1:[0-9]*' | cut -d: -f2)
AUTH="Authorization: Bearer $(cat "$WORK/keys/tokens/${TOKEN:-rs-good}")"
URL="http://127.0.0.1:$PROXY_PORT$URL_PATH"

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

taskset -c "$LOAD_CPU" "$BACKEND" "$BACKEND_PORT" >"$WORK/profile-backend.log" 2>&1 &
PIDS+=($!)
rm -f "$WORK"/portcullis/audit*
(cd "$WORK" && exec taskset -c "$PROXY_CPU" "$BIN" serve --config "$WORK/portcullis.yaml") >"$WORK/profile-portcullis.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
for _ in $(seq 1 50); do curl -fs -o /dev/null -H "$AUTH" "$URL" && break; sleep 0.2; done
load() { timeout --foreground -k 5 $(($1 + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$1s" --latency -H "$AUTH" "$URL"; }
load 2 >/dev/null   # warm-up

ticks() { awk '{ print $14, $15 }' "/proc/$PROXY/stat"; }
audit_ticks() {
    local t
    for t in /proc/"$PROXY"/task/*; do
        if [ "$(cat "$t/comm")" = audit-writer ]; then awk '{ print $14 + $15 }' "$t/stat"; fi
    done
}

read -r U0 S0 < <(ticks)
A0=$(audit_ticks)
case "$MODE" in
    cpu) ;;
    perf) perf record -e "${PERF_EVENT:-cpu-clock}" -F 2000 -g -p "$PROXY" -o "$WORK/perf.data" -- sleep $((DURATION + 1)) >/dev/null 2>&1 & PIDS+=($!) ;;
    mallocs)
        perf probe -q -x "$(ldd "$BIN" | awk '/libc.so/ { print $3 }')" --add malloc 2>/dev/null || true
        # perf stat counts every call; perf record (for the callers) may lose samples at this rate.
        perf stat -x, -e probe_libc:malloc -p "$PROXY" -o "$WORK/malloc-count.txt" -- sleep $((DURATION + 1)) >/dev/null 2>&1 & PIDS+=($!)
        perf record -e probe_libc:malloc -g -p "$PROXY" -o "$WORK/malloc.data" -- sleep $((DURATION + 1)) >/dev/null 2>&1 & PIDS+=($!) ;;
    syscalls) timeout -s INT $((DURATION + 2)) strace -c -f -p "$PROXY" -o "$WORK/strace.txt" & PIDS+=($!) ;;
    sched) perf sched record -o "$WORK/sched.data" -- sleep $((DURATION + 1)) >/dev/null 2>&1 & PIDS+=($!) ;;
    *) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
load "$DURATION" >"$WORK/profile-wrk.txt"
read -r U1 S1 < <(ticks)
A1=$(audit_ticks)
sleep 2.5   # the recorder (a second longer than the load) finishes
REQUESTS=$(grep -o '[0-9]* requests in' "$WORK/profile-wrk.txt" | cut -d' ' -f1)
CLK=$(getconf CLK_TCK)
python3 - "$REQUESTS" "$U0" "$S0" "$U1" "$S1" "${A0:-0}" "${A1:-0}" "$CLK" <<'EOF'
import sys
req, u0, s0, u1, s1, a0, a1, clk = (float(v) for v in sys.argv[1:])
us = 1e6 / clk / req
print(f"requests {req:.0f}; per request: user {(u1 - u0) * us:.1f} us, system {(s1 - s0) * us:.1f} us, "
      f"of which the audit-writer thread {(a1 - a0) * us:.1f} us")
EOF
grep -E 'Requests/sec|50%|99%' "$WORK/profile-wrk.txt"

case "$MODE" in
    perf) echo "perf report -i $WORK/perf.data --no-children --sort dso,symbol" ;;
    mallocs)
        awk -F, -v r="$REQUESTS" '$3 ~ /malloc/ { printf "mallocs per request (perf stat, every call; the count covers the load and a second of idle): %.1f\n", $1 / r }' "$WORK/malloc-count.txt"
        perf script -i "$WORK/malloc.data" -F ip,sym 2>/dev/null | python3 -c '
import collections, re, subprocess, sys
requests = int(sys.argv[1]) * 1.0
internal = re.compile(r"malloc|swift_slowAlloc|swift_allocObject|Storage|_allocate|createNewbuffer|reserveCapacity|_ContiguousArrayBuffer|_consumeAndCreateNew|Array\.|"
                      r"_StringGuts|String\.init|ByteBuffer|append|copy|outlined|__swift_")
samples = [s for s in sys.stdin.read().split("\n\n") if s.strip()]
callers = collections.Counter()
for sample in samples:
    frames = [line.strip().split(" ", 1)[-1] for line in sample.strip().split("\n")[1:]]
    callers[next((f for f in frames if not internal.search(f)), "?")[:140]] += 1
print(f"recorded calls per request (callers below; a busy probe loses some): {len(samples) / requests:.1f}")
top = callers.most_common(25)
names = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(n for n, _ in top),
                       capture_output=True, text=True).stdout.split("\n")
for (_, count), name in zip(top, names):
    print(f"{count / requests:6.2f}  {name[:140]}")
' "$REQUESTS" ;;
    syscalls) sleep 1; echo "syscalls per request:"; awk -v r="$REQUESTS" '$4 ~ /^[0-9]+$/ && NF >= 5 { printf "%8.2f  %s\n", $4 / r, $NF }' "$WORK/strace.txt" | head -n 12 ;;
    sched) echo "perf sched timehist -i $WORK/sched.data | grep '\\[000$PROXY_CPU\\]'   (runs and waits on the proxy's core)" ;;
esac
