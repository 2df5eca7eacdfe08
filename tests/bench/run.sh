#!/usr/bin/env bash
# FastCGI hop benchmark (SPEC §9): a throwaway stack on free loopback ports,
# measured with wrk over keep-alive TLS on three routes behind the same nginx:
#   static  /bench/static     nginx answers itself (return 200)
#   empty   /bench/empty      an empty libfcgi responder: the pool ceiling
#   pool    /v1/auth/healthz  a real pool (auth) on the same hop
#   me      /v1/me            an authenticated read: TLS, the gateway's token
#                             check (cached), the auth pool's revocation check
#                             and the Redis-cached profile (SPEC §9 bar)
# Each route is measured at every connection count of BENCH_CONNECTIONS
# (64, 256 and 1000 by default). Prints requests/s and p99 (median of the
# runs) per count, the ratios pool/empty, me/empty and empty/static, and
# PASS/FAIL for the SPEC §9 bars: /v1/me at least 0.70 of the empty
# responder at every count, p99 at most 10 ms at 64 and 256 connections for
# /v1/me and the pool's healthz. Writes the same figures as JSON to
# $BENCH_OUT if set.
# Exit status: 0 when every run was clean, 1 when a run had errors or
# stalled requests (or, with BENCH_STRICT=1, when a bar was missed), 2 on a
# setup failure.
#
# Environment:
#   STOA_BIN_DIR     stack binaries (<repo>/bin)
#   STOA_BENCH_BIN   directory holding stoa-empty-fcgi (<repo>/build/release/bench)
#   BENCH_PROCESSES  processes per pool and for the empty responder (2: the
#                    stack's default, one per core of this machine)
#   BENCH_KEEPALIVE  idle upstream connections kept per nginx worker for the
#                    empty responder: "pools" (the default: what the stack's
#                    nginx.conf gives the pools), a number, or 0 for none
#   BENCH_SECONDS    length of one measured run (8)
#   BENCH_RUNS       measured runs per route, interleaved (3)
#   BENCH_WARMUP     warm-up seconds per route before measuring (2)
#   BENCH_CONNECTIONS  wrk -c: the connection counts to measure at,
#                    space-separated ("64 256 1000")
#   BENCH_THREADS    wrk -t (2)
#   BENCH_STRICT     1: a missed bar makes the exit status 1
#   BENCH_STALL_MS   a request nginx logs as slower than this fails the
#                    run (1000)
#   BENCH_OUT        file to write the JSON result to
set -euo pipefail

PATH=$PATH:/usr/sbin:/sbin

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly REPO_DIR
BIN_DIR=${STOA_BIN_DIR:-$REPO_DIR/bin}
BENCH_BIN=${STOA_BENCH_BIN:-$REPO_DIR/build/release/bench}
readonly PROCESSES=${BENCH_PROCESSES:-2}
readonly KEEPALIVE_SETTING=${BENCH_KEEPALIVE:-pools}
readonly RUN_SECONDS=${BENCH_SECONDS:-8}
readonly RUNS=${BENCH_RUNS:-3}
readonly WARMUP_SECONDS=${BENCH_WARMUP:-2}
readonly CONNECTION_LIST=${BENCH_CONNECTIONS:-64 256 1000}
read -r -a CONNECTION_COUNTS <<<"${CONNECTION_LIST//,/ }"
readonly CONNECTION_COUNTS
readonly STRICT=${BENCH_STRICT:-0}
readonly THREADS=${BENCH_THREADS:-2}
readonly STALL_MS=${BENCH_STALL_MS:-1000}
readonly OUT=${BENCH_OUT:-}

readonly ROUTES=(static empty pool me)
declare -A ROUTE_PATH=(
    [static]=/bench/static
    [empty]=/bench/empty
    [pool]=/v1/auth/healthz
    [me]=/v1/me
)
# Extra request headers per route (the bearer token is added once known).
declare -A ROUTE_HEADER=()

note() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 2
}

is_count() { [[ $1 =~ ^[0-9]+$ ]]; }

for name in PROCESSES RUN_SECONDS RUNS WARMUP_SECONDS THREADS STALL_MS; do
    if ! is_count "${!name}" || ((${!name} == 0)); then
        die "$name must be a positive integer: ${!name}"
    fi
done
((${#CONNECTION_COUNTS[@]} > 0)) || die "BENCH_CONNECTIONS lists no connection count"
MAX_CONNECTIONS=0
for c in "${CONNECTION_COUNTS[@]}"; do
    if ! is_count "$c" || ((c == 0)); then
        die "BENCH_CONNECTIONS must list positive integers: $CONNECTION_LIST"
    fi
    ((c >= THREADS)) || die "every BENCH_CONNECTIONS count must be at least BENCH_THREADS"
    if ((c > MAX_CONNECTIONS)); then MAX_CONNECTIONS=$c; fi
done
readonly MAX_CONNECTIONS
# wrk holds one descriptor per connection: raise the soft limit (for this
# script and what it starts only) when the largest count needs it. nginx
# sizes its own limits from the hard limit (scripts/stack.sh).
if (($(ulimit -n) < MAX_CONNECTIONS + 256)); then
    ulimit -n "$((MAX_CONNECTIONS + 256))" 2>/dev/null ||
        die "wrk needs $((MAX_CONNECTIONS + 256)) open files; the hard limit is $(ulimit -Hn)"
fi

[[ $KEEPALIVE_SETTING == pools ]] || is_count "$KEEPALIVE_SETTING" ||
    die "BENCH_KEEPALIVE must be \"pools\" or a number: $KEEPALIVE_SETTING"

command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v spawn-fcgi >/dev/null || die "spawn-fcgi is not installed"
[[ -x /usr/bin/multiwatch ]] || die "multiwatch is not installed"
command -v nginx >/dev/null || die "nginx is not installed"
command -v python3 >/dev/null || die "python3 is required"
readonly EMPTY_BIN=$BENCH_BIN/stoa-empty-fcgi
[[ -x $EMPTY_BIN ]] || die "missing $EMPTY_BIN (build it, or set STOA_BENCH_BIN)"
[[ -x $BIN_DIR/stoa-auth ]] || die "missing $BIN_DIR/stoa-auth (build it, or set STOA_BIN_DIR)"

# ---------------------------------------------------------------------------
# Throwaway stack, always torn down

# Short on purpose: the Postgres socket path must fit in sun_path.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stoa-bench.XXXXXX")
readonly WORK
# Postgres runs as its own user when we are root and must traverse it.
chmod 0755 "$WORK"
readonly RUN=$WORK/run
readonly EMPTY_PID_FILE=$WORK/empty.pid
STACK_STARTED=0

stack() {
    STOA_RUN_DIR=$RUN STOA_BIN_DIR=$BIN_DIR STOA_HTTPS_PORT=$HTTPS_PORT \
        STOA_HTTP_PORT=$HTTP_PORT STOA_POOL_PROCESSES=$PROCESSES \
        STOA_RATE_API=100000r/s STOA_BURST_API=100000 \
        STOA_RATE_AUTH=100000r/s STOA_BURST_AUTH=100000 \
        "$REPO_DIR/scripts/stack.sh" "$@"
}

# A process that has exited but not been reaped yet (a zombie) counts as gone.
running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}

stop_empty_responder() {
    local pid
    [[ -s $EMPTY_PID_FILE ]] || return 0
    pid=$(<"$EMPTY_PID_FILE")
    rm -f "$EMPTY_PID_FILE"
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    # multiwatch passes SIGTERM on to its children and waits for them.
    kill -TERM "$pid" 2>/dev/null || return 0
    local tries=0
    while running "$pid" && ((tries < 50)); do
        sleep 0.1
        tries=$((tries + 1))
    done
    if running "$pid"; then
        note "the empty responder ignored SIGTERM; killing it"
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_empty_responder
    if ((STACK_STARTED)) && ! stack stop >"$WORK/stack-stop.log" 2>&1; then
        # Removing the directory under a live Postgres would only hide it.
        cat "$WORK/stack-stop.log" >&2 || true
        note "stack.sh stop failed; left $WORK in place (stop it with STOA_RUN_DIR=$RUN scripts/stack.sh stop)"
        exit 2
    fi
    rm -rf -- "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two distinct free loopback ports (the kernel picks them; they are
# released just before nginx binds them).
read -r HTTPS_PORT HTTP_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
readonly HTTPS_PORT HTTP_PORT
readonly BASE=https://127.0.0.1:$HTTPS_PORT

note "starting a throwaway stack in $WORK ($PROCESSES processes per pool)"
STACK_STARTED=1
stack start >"$WORK/stack-start.log" 2>&1 || {
    cat "$WORK/stack-start.log" >&2
    die "scripts/stack.sh start failed"
}

# ---------------------------------------------------------------------------
# The empty responder and its nginx routes

readonly FASTCGI_SNIPPET=$RUN/nginx/fastcgi_stoa.conf
[[ -r $FASTCGI_SNIPPET ]] || die "the stack has no FastCGI snippet at $FASTCGI_SNIPPET"

# The idle cache nginx really gives the pools, read from the rendered config
# rather than recomputed, so the ceiling is kept alive exactly like (c).
POOL_KEEPALIVE=$(awk '
    /^[[:space:]]*upstream[[:space:]]+stoa_auth[[:space:]]*[{]/ { inside = 1; next }
    inside && /[}]/ { exit }
    inside && $1 == "keepalive" { sub(/;.*/, "", $2); print $2; exit }
' "$RUN/nginx/nginx.conf")
POOL_KEEPALIVE=${POOL_KEEPALIVE:-0}
is_count "$POOL_KEEPALIVE" || die "cannot read the auth upstream's keepalive: $POOL_KEEPALIVE"
readonly POOL_KEEPALIVE
# Each nginx worker keeps its own idle cache; reported with the settings.
NGINX_WORKERS=$(awk '$1 == "worker_processes" { sub(/;.*/, "", $2); print $2; exit }' \
    "$RUN/nginx/nginx.conf")
readonly NGINX_WORKERS=${NGINX_WORKERS:-1}
if [[ $KEEPALIVE_SETTING == pools ]]; then
    readonly EMPTY_KEEPALIVE=$POOL_KEEPALIVE
else
    readonly EMPTY_KEEPALIVE=$KEEPALIVE_SETTING
fi

spawn-fcgi -s "$RUN/sock/empty.sock" -M 0600 -P "$EMPTY_PID_FILE" -- \
    /usr/bin/multiwatch -f "$PROCESSES" -- "$EMPTY_BIN" >"$WORK/spawn-fcgi.log" 2>&1 || {
    cat "$WORK/spawn-fcgi.log" >&2
    die "spawn-fcgi failed"
}

if ((EMPTY_KEEPALIVE > 0)); then
    keepalive_line="keepalive $EMPTY_KEEPALIVE;"
else
    keepalive_line="# no idle connections kept"
fi
cat >"$RUN/nginx/http.d/bench.conf" <<EOF
# Written by tests/bench/run.sh: the empty responder.
upstream bench_empty {
    server unix:$RUN/sock/empty.sock;
    $keepalive_line
    keepalive_requests 20;
    keepalive_timeout 100ms;
}
EOF
cat >"$RUN/nginx/conf.d/bench.conf" <<EOF
# Written by tests/bench/run.sh.
location = /bench/static {
    default_type application/json;
    return 200 '{"status":"ok"}';
}
location = /bench/empty {
    fastcgi_pass bench_empty;
    include $FASTCGI_SNIPPET;
}
EOF

nginx -p "$RUN/nginx/" -c "$RUN/nginx/nginx.conf" -t >"$WORK/nginx-t.log" 2>&1 || {
    cat "$WORK/nginx-t.log" >&2
    die "nginx rejects the bench configuration"
}
nginx -p "$RUN/nginx/" -c "$RUN/nginx/nginx.conf" -s reload

wait_for_200() {
    local url=$1 deadline=$((SECONDS + 15)) code
    while :; do
        code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        [[ $code == 200 ]] && return 0
        ((SECONDS < deadline)) || die "$url answers $code, not 200"
        sleep 0.1
    done
}
# A user for the authenticated route: registered and logged in once; its
# token outlives the bench (15 min).
bench_email="bench-$RANDOM$RANDOM@example.com"
bench_password="bench password $RANDOM$RANDOM"
curl -sk --max-time 10 -H 'Content-Type: application/json' \
    -d "{\"email\":\"$bench_email\",\"password\":\"$bench_password\",\"name\":\"Bench\"}" \
    "$BASE/v1/auth/register" >/dev/null || die "register failed"
token=$(curl -sk --max-time 10 -H 'Content-Type: application/json' \
    -d "{\"email\":\"$bench_email\",\"password\":\"$bench_password\"}" \
    "$BASE/v1/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') ||
    die "login failed"
ROUTE_HEADER[me]="Authorization: Bearer $token"

for route in "${ROUTES[@]}"; do
    if [[ -v ROUTE_HEADER[$route] ]]; then
        code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 \
            -H "${ROUTE_HEADER[$route]}" "$BASE${ROUTE_PATH[$route]}" || true)
        [[ $code == 200 ]] || die "${ROUTE_PATH[$route]} answers $code, not 200"
    else
        wait_for_200 "$BASE${ROUTE_PATH[$route]}"
    fi
done

# ---------------------------------------------------------------------------
# Measurements

readonly ACCESS_LOG=$RUN/log/nginx-access.log
# nginx buffers the access log and flushes it every second.
readonly LOG_FLUSH_WAIT=1.5

log_size() { stat -c %s "$ACCESS_LOG" 2>/dev/null || echo 0; }

# One wrk run. Its output is kept, and the slice of nginx's access log it
# produced is recorded, so requests still stuck when wrk stops (nginx logs
# them when wrk hangs up, status 499) are seen too: wrk's own histogram
# only holds requests that completed.
measure() {
    local route=$1 run=$2 seconds=$3 conns=$4 start end
    start=$(log_size)
    local header=()
    if [[ -v ROUTE_HEADER[$route] ]]; then
        header=(-H "${ROUTE_HEADER[$route]}")
    fi
    local out=$WORK/wrk-$route-$conns-$run.txt
    wrk -t"$THREADS" -c"$conns" -d"${seconds}s" --timeout 5s --latency \
        "${header[@]}" "$BASE${ROUTE_PATH[$route]}" >"$out" 2>&1 || {
        cat "$out" >&2
        die "wrk failed on ${ROUTE_PATH[$route]}"
    }
    sleep "$LOG_FLUSH_WAIT"
    end=$(log_size)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$route" "$run" "$start" "$end" "$out" "$conns" \
        >>"$WORK/runs.tsv"
}

: >"$WORK/runs.tsv"
note "warm-up: ${WARMUP_SECONDS}s per route"
for route in "${ROUTES[@]}"; do
    measure "$route" warmup "$WARMUP_SECONDS" "${CONNECTION_COUNTS[0]}"
done
: >"$WORK/runs.tsv"
for conns in "${CONNECTION_COUNTS[@]}"; do
    note "measuring: $RUNS x ${RUN_SECONDS}s per route, interleaved, wrk -t$THREADS -c$conns"
    for ((run = 1; run <= RUNS; run++)); do
        for route in "${ROUTES[@]}"; do
            measure "$route" "$run" "$RUN_SECONDS" "$conns"
        done
    done
done

# ---------------------------------------------------------------------------
# Report

export BENCH_PROCESSES_USED=$PROCESSES BENCH_EMPTY_KEEPALIVE=$EMPTY_KEEPALIVE
export BENCH_POOL_KEEPALIVE=$POOL_KEEPALIVE BENCH_NGINX_WORKERS=$NGINX_WORKERS
export BENCH_CONNECTIONS_USED="${CONNECTION_COUNTS[*]}" BENCH_THREADS_USED=$THREADS
export BENCH_STRICT_USED=$STRICT
export BENCH_SECONDS_USED=$RUN_SECONDS BENCH_RUNS_USED=$RUNS BENCH_STALL_MS_USED=$STALL_MS
export BENCH_ACCESS_LOG=$ACCESS_LOG BENCH_RUNS_FILE=$WORK/runs.tsv BENCH_OUT_FILE=$OUT
export BENCH_PATH_STATIC=${ROUTE_PATH[static]} BENCH_PATH_EMPTY=${ROUTE_PATH[empty]}
export BENCH_PATH_POOL=${ROUTE_PATH[pool]} BENCH_PATH_ME=${ROUTE_PATH[me]}

# wrk's figures are read by benchlib.parse_wrk(), as the Python benchmarks read them.
PYTHONPATH="$REPO_DIR/tests/bench" python3 - <<'EOF'
import json
import os
import sys

from benchlib import parse_wrk

env = os.environ
routes = ("static", "empty", "pool", "me")
paths = {r: env["BENCH_PATH_" + r.upper()] for r in routes}
stall_s = int(env["BENCH_STALL_MS_USED"]) / 1000.0


def scan_log(path, start, end, uri):
    """Requests of one run as nginx logged them: slow ones and failures."""
    seen = slow = failed = 0
    slowest = 0.0
    try:
        with open(path, "rb") as f:
            f.seek(start)
            chunk = f.read(max(0, end - start))
    except OSError:
        return None
    for line in chunk.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("uri") != uri:
            continue
        seen += 1
        t = float(entry.get("request_time", 0))
        slowest = max(slowest, t)
        if t >= stall_s:
            slow += 1
        status = int(entry.get("status", 0))
        # 499: wrk hung up with the request in flight, as it does to every
        # busy connection when a run ends; only a slow one is a problem.
        if not 200 <= status < 300 and status != 499:
            failed += 1
    if seen == 0:
        return None
    return {"logged": seen, "stalled": slow, "failed": failed,
            "slowest_ms": round(slowest * 1000.0, 1)}


counts = [int(c) for c in env["BENCH_CONNECTIONS_USED"].split()]
runs = {(r, c): [] for r in routes for c in counts}
unchecked = []
with open(env["BENCH_RUNS_FILE"]) as f:
    for line in f:
        route, run, start, end, wrk_file, conns = line.rstrip("\n").split("\t")
        with open(wrk_file) as w:
            result = parse_wrk(w.read())
        result["run"] = int(run)
        logged = scan_log(env["BENCH_ACCESS_LOG"], int(start), int(end), paths[route])
        result["nginx_log"] = logged
        problems = []
        if result["requests_per_second"] is None:
            problems.append("no wrk figures")
        if result["non_2xx"]:
            problems.append("%d non-2xx" % result["non_2xx"])
        if result["socket_errors"]:
            problems.append("%d socket errors" % result["socket_errors"])
        if logged and logged["failed"]:
            problems.append("%d failed in nginx's log" % logged["failed"])
        if logged and logged["stalled"]:
            problems.append("%d requests >= %d ms (slowest %.0f ms)"
                            % (logged["stalled"], stall_s * 1000, logged["slowest_ms"]))
        result["problems"] = problems
        if logged is None:
            unchecked.append("%s at %s connections, run %s" % (route, conns, run))
        runs[(route, int(conns))].append(result)


def summarise(r, c):
    good = [x for x in runs[(r, c)] if x["requests_per_second"] is not None]
    ordered = sorted(good, key=lambda x: x["requests_per_second"])
    median = ordered[(len(ordered) - 1) // 2] if ordered else None
    return {
        "path": paths[r],
        "requests_per_second": median["requests_per_second"] if median else None,
        "p99_ms": median["p99_ms"] if median else None,
        "median_run": median["run"] if median else None,
        "failed": any(x["problems"] for x in runs[(r, c)]),
        "runs": runs[(r, c)],
    }


summary = {c: {r: summarise(r, c) for r in routes} for c in counts}


def ratio(c, a, b):
    sa, sb = summary[c][a]["requests_per_second"], summary[c][b]["requests_per_second"]
    return round(sa / sb, 3) if sa and sb else None


ratios = {c: {"pool_over_empty": ratio(c, "pool", "empty"),
              "me_over_empty": ratio(c, "me", "empty"),
              "empty_over_static": ratio(c, "empty", "static")} for c in counts}
failed = any(summary[c][r]["failed"] for c in counts for r in routes)

# SPEC §9: /v1/me at least 0.70 of the empty responder (at every count
# measured); p99 at most 10 ms at 64 and 256 connections for /v1/me and a
# pool's healthz alike.
bars = []


def bar(label, value, op, limit):
    ok = value is not None and (value >= limit if op == ">=" else value <= limit)
    bars.append({"bar": label, "value": value, "op": op, "limit": limit, "passed": ok})


for c in counts:
    bar("(d)/(b) /v1/me vs ceiling at %d connections" % c,
        ratios[c]["me_over_empty"], ">=", 0.70)
for c in counts:
    if c in (64, 256):
        bar("(d) /v1/me p99 ms at %d connections" % c, summary[c]["me"]["p99_ms"], "<=", 10)
        bar("(c) healthz p99 ms at %d connections" % c, summary[c]["pool"]["p99_ms"], "<=", 10)

settings = {
    "processes": int(env["BENCH_PROCESSES_USED"]),
    # A number, or "auto" when nginx picks one per core.
    "nginx_workers": (int(env["BENCH_NGINX_WORKERS"])
                      if env["BENCH_NGINX_WORKERS"].isdigit() else env["BENCH_NGINX_WORKERS"]),
    "empty_keepalive_per_worker": int(env["BENCH_EMPTY_KEEPALIVE"]),
    "pool_keepalive_per_worker": int(env["BENCH_POOL_KEEPALIVE"]),
    "connections": counts,
    "threads": int(env["BENCH_THREADS_USED"]),
    "seconds": int(env["BENCH_SECONDS_USED"]),
    "runs": int(env["BENCH_RUNS_USED"]),
    "stall_ms": int(env["BENCH_STALL_MS_USED"]),
    "transport": "https (TLS, keep-alive)",
}

labels = {"static": "(a) nginx return 200",
          "empty": "(b) empty FastCGI responder",
          "pool": "(c) auth pool healthz",
          "me": "(d) GET /v1/me with a token"}
fmt = lambda v: "%.3f" % v if v is not None else "-"
for c in counts:
    print()
    print("== %d connections" % c)
    # wrk keeps every connection's request in flight, so by Little's law
    # the mean latency it sees is connections / throughput: a floor under
    # the p99 that no responder below that throughput can go beneath.
    print("%-30s %-18s %12s %10s %10s  %s" % ("route", "path", "req/s", "p99 ms",
                                            "c/rps ms", "status"))
    for r in routes:
        s = summary[c][r]
        rps = "%.0f" % s["requests_per_second"] if s["requests_per_second"] else "-"
        p99 = "%.2f" % s["p99_ms"] if s["p99_ms"] is not None else "-"
        mean = ("%.2f" % (1000.0 * c / s["requests_per_second"])
                if s["requests_per_second"] else "-")
        print("%-30s %-18s %12s %10s %10s  %s" % (labels[r], s["path"], rps, p99, mean,
                                                  "FAILED" if s["failed"] else "ok"))
    print("(c)/(b) pool vs ceiling:   %s" % fmt(ratios[c]["pool_over_empty"]))
    print("(d)/(b) /v1/me vs ceiling: %s" % fmt(ratios[c]["me_over_empty"]))
    print("(b)/(a) hop vs static:     %s" % fmt(ratios[c]["empty_over_static"]))
print()
print("bars (SPEC §9):")
for b in bars:
    v = "-" if b["value"] is None else ("%.3f" % b["value"])
    print("  %s  %s: %s %s %s" % ("PASS" if b["passed"] else "FAIL", b["bar"], v,
                                 b["op"], b["limit"]))
print()
print("settings: %d processes per pool and for the empty responder; %s nginx workers;"
      % (settings["processes"], settings["nginx_workers"]))
print("          upstream keepalive per worker: empty %d, pools %d;"
      % (settings["empty_keepalive_per_worker"], settings["pool_keepalive_per_worker"]))
print("          wrk -t%d -c%s -d%ds over TLS, %d interleaved runs, median shown"
      % (settings["threads"], "/".join(map(str, counts)), settings["seconds"], settings["runs"]))
for c in counts:
    for r in routes:
        for x in runs[(r, c)]:
            p99 = "%.2f" % x["p99_ms"] if x["p99_ms"] is not None else "-"
            mx = "%.1f" % x["max_ms"] if x["max_ms"] is not None else "-"
            rps = "%.0f" % x["requests_per_second"] if x["requests_per_second"] else "-"
            line = "  c%-5d run %d %-6s %9s req/s  p99 %8s ms  max %8s ms" % (
                c, x["run"], r, rps, p99, mx)
            if x["problems"]:
                line += "  FAILED: " + "; ".join(x["problems"])
            print(line)

if settings["empty_keepalive_per_worker"] != settings["pool_keepalive_per_worker"]:
    print("note: (b) and (c) keep a different number of idle upstream connections,")
    print("      so (c)/(b) compares two different hops")
if unchecked:
    print("warning: nginx's access log had no entries for %s: stalls not checked"
          % ", ".join(unchecked))

result = {"settings": settings,
          "results": {str(c): summary[c] for c in counts},
          "ratios": {str(c): ratios[c] for c in counts},
          "bars": bars, "failed": failed}
if env.get("BENCH_OUT_FILE"):
    with open(env["BENCH_OUT_FILE"], "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
missed = [b for b in bars if not b["passed"]]
strict = env.get("BENCH_STRICT_USED") == "1"
if missed:
    print("\nbench: %d bar(s) missed%s" % (len(missed), "" if strict else
          " (BENCH_STRICT=1 makes that an error)"))
if failed:
    print("\nbench: FAILED: some runs had errors or stalled requests (see above)")
sys.exit(1 if failed or (strict and missed) else 0)
EOF
