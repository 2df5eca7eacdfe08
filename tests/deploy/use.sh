#!/usr/bin/env bash
# Uses a cluster deployed by run.sh (or kept by STOA_DEPLOY_KEEP=1), from
# the control side, as a client and a Prometheus would:
#
#   tests/deploy/use.sh WORK NAME=ADDRESS...
#
#  - registers, logs in and reads /v1/me through each gateway, and finds
#    the new user on the replica;
#  - the primary archives WAL through pgBackRest and its full backup unit
#    fills the repository;
#  - the live channel across hosts: streams opened (with tickets) on gw1
#    and gw2 hear the session.revoked of a logout made through gw2
#    (published by the jobs worker on worker1 to one gateway, carried to
#    the other by nchan's Redis store), then are closed (realtime.close);
#  - the gateways' internal publisher refuses this side (workers only), and
#    nchan's logs never hold the Redis password;
#  - each worker's metrics endpoint answers on its private address, and its
#    request counters (the pools' and the gateway's stub_status) rose with
#    the traffic above;
#  - each gateway's own metrics endpoint (stoa-metrics.service, stoa-jobs
#    --scrape-only: no database access) answers on its private address
#    with its stub_status and no outbox figures, promtool accepts it, and
#    its stoa_gateway_verifications_total rose with the /v1/me through it;
#  - with gw1 (worker1's first publisher) down, the live channel still
#    works through gw2.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/deploy/lib.sh
. "$HERE/lib.sh"
WORK=$1
shift
HOSTS=("$@")
# stoa_settings' defaults.
readonly METRICS_PORT=9145 REALTIME_PORT=9180

fail() {
    echo "test-deploy: FAIL: $*" >&2
    exit 1
}
c=(curl -sk --noproxy '*' --max-time 10 -H 'Content-Type: application/json')
json_field() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
# The sum of every sample of a metric family (all its label sets) in a
# scrape of host $1 (a worker, or a gateway's own scrape).
metric_sum() {
    curl -s --noproxy '*' --max-time 5 "http://$(addr "$1"):$METRICS_PORT/metrics" |
        awk -v name="$2" '$1 == name || index($1, name "{") == 1 { s += $NF } END { printf "%d\n", s }'
}
# Host $1's scrape into $WORK/metrics-$1.txt: it must answer, with a
# gateway's stub_status in it.
scrape_to_file() {
    local code
    code=$(curl -s --noproxy '*' --max-time 5 -o "$WORK/metrics-$1.txt" -w '%{http_code}' \
        "http://$(addr "$1"):$METRICS_PORT/metrics") || true
    [[ $code == 200 ]] || fail "$1: metrics on $(addr "$1"):$METRICS_PORT: $code"
    grep -q '^stoa_nginx_up 1$' "$WORK/metrics-$1.txt" ||
        fail "$1: the metrics lack a gateway's stub_status: $(grep stoa_nginx_up "$WORK/metrics-$1.txt")"
}
WORKERS=(worker1)
GATEWAYS=(gw1 gw2)

declare -A requests_before nginx_before
for w in "${WORKERS[@]}"; do
    scrape_to_file "$w"
    requests_before[$w]=$(metric_sum "$w" stoa_http_requests_total)
    nginx_before[$w]=$(metric_sum "$w" stoa_nginx_http_requests_total)
done
declare -A verified_before
for gw in "${GATEWAYS[@]}"; do
    scrape_to_file "$gw"
    grep -q '^stoa_gateway_verifications_total{pool="gateway",' "$WORK/metrics-$gw.txt" ||
        fail "$gw: its metrics lack the gateway module's counters"
    if grep -q '^stoa_outbox_' "$WORK/metrics-$gw.txt"; then
        fail "$gw: its scrape has outbox figures (it has no database access)"
    fi
    if command -v promtool >/dev/null; then
        promtool check metrics <"$WORK/metrics-$gw.txt" ||
            fail "$gw: promtool refuses its metrics"
    fi
    verified_before[$gw]=$(metric_sum "$gw" stoa_gateway_verifications_total)
done

email="deploy-$RANDOM@example.com"
password="Deploy-test-$RANDOM-horse-battery"
for gw in gw1 gw2; do
    base="https://$(addr "$gw")"
    if [[ $gw == gw1 ]]; then
        code=$("${c[@]}" -o "$WORK/reg.json" -w '%{http_code}' -X POST "$base/v1/auth/register" \
            -d "{\"email\":\"$email\",\"password\":\"$password\",\"name\":\"Deploy Test\"}")
        [[ $code == 201 ]] || fail "register via $gw: $code $(cat "$WORK/reg.json")"
    fi
    code=$("${c[@]}" -o "$WORK/login.json" -w '%{http_code}' -X POST "$base/v1/auth/login" \
        -d "{\"email\":\"$email\",\"password\":\"$password\"}")
    [[ $code == 200 ]] || fail "login via $gw: $code $(cat "$WORK/login.json")"
    token=$(json_field "$WORK/login.json" access_token)
    me=$("${c[@]}" -H "Authorization: Bearer $token" "$base/v1/me")
    [[ $me == *"$email"* ]] || fail "/v1/me via $gw: $me"
    echo "test-deploy: $gw: register/login/me ok"
done
for ((i = 0; i < 50; i++)); do
    n=$("$WORK/bin/enter-db2" - runuser -u postgres -- psql -tAq -d stoa \
        -c "SELECT count(*) FROM auth.users WHERE email = '$email'" 2>/dev/null || true)
    [[ $n == 1 ]] && break
    sleep 0.2
done
[[ ${n:-} == 1 ]] || fail "the user did not reach the replica"
echo "test-deploy: the write reached the replica"

# Backups on the primary: WAL archiving works (pgbackrest check forces a
# segment out and waits for it in the repository), and the timers' full
# backup, run by hand through its unit, lands in the repository.
"$WORK/bin/enter-db1" - runuser -u postgres -- pgbackrest --stanza=stoa check ||
    fail "pgbackrest check on db1"
"$WORK/bin/enter-db1" - systemctl start stoa-backup@full.service ||
    fail "the full backup unit on db1"
info=$("$WORK/bin/enter-db1" - runuser -u postgres -- pgbackrest --stanza=stoa info)
[[ $info == *"full backup:"* ]] || fail "no full backup in db1's repository: $info"
for t in stoa-backup-full.timer stoa-backup-incr.timer; do
    "$WORK/bin/enter-db1" - systemctl is-enabled "$t" >/dev/null || fail "$t is not enabled on db1"
done
echo "test-deploy: db1 archives WAL and its full backup is in the repository"

# The live channel: a stream on each gateway, a logout through gw2. The
# jobs worker publishes to one gateway (worker1: gw1 first), so the other
# gateway's stream hears it only through the channels shared in Redis.
# $token is the session logged in through gw2.
declare -A stream
for gw in gw1 gw2; do
    base="https://$(addr "$gw")"
    code=$("${c[@]}" -o "$WORK/ticket.json" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $token" "$base/v1/realtime/tickets")
    [[ $code == 200 ]] || fail "ticket via $gw: $code $(cat "$WORK/ticket.json")"
    ticket=$(json_field "$WORK/ticket.json" ticket)
    : >"$WORK/stream-$gw.txt"
    curl -skN --noproxy '*' --max-time 30 -H 'Accept: text/event-stream' \
        "$base/v1/realtime?ticket=$ticket" >"$WORK/stream-$gw.txt" 2>&1 &
    stream[$gw]=$!
    # nchan's first line (a comment) says the subscriber is in place.
    for ((i = 0; i < 50; i++)); do
        [[ -s $WORK/stream-$gw.txt ]] && break
        sleep 0.1
    done
    [[ -s $WORK/stream-$gw.txt ]] || fail "the stream on $gw did not open"
done
code=$("${c[@]}" -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
    "https://$(addr gw2)/v1/auth/logout")
[[ $code == 204 ]] || fail "logout via gw2: $code"
for gw in gw1 gw2; do
    for ((i = 0; i < 100; i++)); do
        grep -q '^event: session.revoked' "$WORK/stream-$gw.txt" && break
        sleep 0.1
    done
    grep -q '^event: session.revoked' "$WORK/stream-$gw.txt" ||
        fail "$gw's subscriber did not hear the logout made on gw2: $(cat "$WORK/stream-$gw.txt")"
done
echo "test-deploy: streams on gw1 and gw2 heard a logout made on gw2"
# Then the jobs worker deletes the session's channels: nchan ends both
# streams (well before curl's own limit).
for gw in gw1 gw2; do
    for ((i = 0; i < 200; i++)); do
        kill -0 "${stream[$gw]}" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "${stream[$gw]}" 2>/dev/null; then
        kill "${stream[$gw]}"
        fail "the stream on $gw stayed open after the session ended"
    fi
done
echo "test-deploy: both streams were closed"

# nchan names its Redis server in its log lines: never with the password.
password_file=$WORK/secrets/redis.password
for gw in gw1 gw2; do
    if grep -rqF -f "$password_file" "$WORK/hosts/$gw/root/srv/stoa/log/"; then
        fail "$gw's nginx logs hold the Redis password"
    fi
done

# The internal publisher takes the workers only.
for gw in gw1 gw2; do
    code=$(curl -s --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' -X POST \
        -H 'X-Stoa-Channels: admin' -d '{}' "http://$(addr "$gw"):$REALTIME_PORT/publish") || true
    [[ $code == 403 ]] || fail "$gw's internal publisher answered $code to a non-worker"
done

# The counters rose: the pools' (summed over the host's processes) and the
# gateway's requests as stub_status counts them.
for w in "${WORKERS[@]}"; do
    after=$(metric_sum "$w" stoa_http_requests_total)
    ((after >= requests_before[$w] + 5)) ||
        fail "$w: stoa_http_requests_total went from ${requests_before[$w]} to $after"
    nginx_after=$(metric_sum "$w" stoa_nginx_http_requests_total)
    ((nginx_after > nginx_before[$w])) ||
        fail "$w: stoa_nginx_http_requests_total went from ${nginx_before[$w]} to $nginx_after"
    echo "test-deploy: $w: metrics ok (requests ${requests_before[$w]} -> $after," \
        "gateway ${nginx_before[$w]} -> $nginx_after)"
done

# Each gateway checked the tokens of the /v1/me, ticket and logout
# requests through it: its own scrape counted them.
for gw in "${GATEWAYS[@]}"; do
    after=$(metric_sum "$gw" stoa_gateway_verifications_total)
    ((after > verified_before[$gw])) ||
        fail "$gw: stoa_gateway_verifications_total went from ${verified_before[$gw]} to $after"
    echo "test-deploy: $gw: metrics ok (verifications ${verified_before[$gw]} -> $after)"
done

# A gateway down: worker1's first publisher (gw1) stops, and a stream on
# gw2 still hears a logout (the jobs worker moves on to gw2).
"$WORK/bin/enter-gw1" - systemctl stop stoa-nginx.service
base="https://$(addr gw2)"
code=$("${c[@]}" -o "$WORK/login.json" -w '%{http_code}' -X POST "$base/v1/auth/login" \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}")
[[ $code == 200 ]] || fail "login via gw2: $code $(cat "$WORK/login.json")"
token=$(json_field "$WORK/login.json" access_token)
: >"$WORK/stream-failover.txt"
curl -skN --noproxy '*' --max-time 30 -H 'Accept: text/event-stream' \
    -H "Authorization: Bearer $token" "$base/v1/realtime" >"$WORK/stream-failover.txt" 2>&1 &
failover_stream=$!
for ((i = 0; i < 50; i++)); do
    [[ -s $WORK/stream-failover.txt ]] && break
    sleep 0.1
done
code=$("${c[@]}" -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
    "$base/v1/auth/logout")
[[ $code == 204 ]] || fail "logout via gw2: $code"
for ((i = 0; i < 100; i++)); do
    grep -q '^event: session.revoked' "$WORK/stream-failover.txt" && break
    sleep 0.1
done
grep -q '^event: session.revoked' "$WORK/stream-failover.txt" ||
    fail "with gw1 down, gw2's subscriber did not hear a logout: $(cat "$WORK/stream-failover.txt")"
kill "$failover_stream" 2>/dev/null || true
"$WORK/bin/enter-gw1" - systemctl start stoa-nginx.service
echo "test-deploy: with gw1 down, the live channel went through gw2"
