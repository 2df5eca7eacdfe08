#!/usr/bin/env bash
# Brings the stoa dev stack up or down inside one run directory:
# Postgres 15, Redis 7, the four FastCGI pools (spawn-fcgi + multiwatch), the
# jobs worker and nginx in front. Every step is idempotent, so `start` on a
# running stack changes nothing and `start` after a crash (stale pid files and
# sockets, data kept) brings everything back.
#
#   scripts/stack.sh start|stop|status|reload
#   scripts/stack.sh fence|repoint|rejoin   (replica and fail-over: replica.sh)
#
# Environment: STOA_RUN_DIR (<repo>/run), STOA_BIN_DIR (<repo>/bin),
# STOA_HTTPS_PORT (8443), STOA_HTTP_PORT (8080), STOA_POOL_PROCESSES (2),
# STOA_RATE_API (100r/s), STOA_BURST_API (200), STOA_RATE_AUTH (2r/s),
# STOA_BURST_AUTH (10), STOA_GATEWAY_MODULE (the gateway module nginx loads:
# <repo>/build/gateway/ngx_http_api_gateway_module.so), STOA_UPSTREAM_KEEPALIVE
# (idle FastCGI connections nginx keeps per worker and pool: a quarter of the
# pool's connection slots; 0 turns keep-alive off, for benches),
# STOA_NCHAN_MODULE (nchan, for the live channel:
# /usr/lib/nginx/modules/ngx_nchan_module.so).
set -euo pipefail

umask 022
PATH=$PATH:/usr/sbin:/sbin

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_DIR
RUN=${STOA_RUN_DIR:-$REPO_DIR/run}
BIN=${STOA_BIN_DIR:-$REPO_DIR/bin}
readonly HTTPS_PORT=${STOA_HTTPS_PORT:-8443}
readonly HTTP_PORT=${STOA_HTTP_PORT:-8080}
# Processes per pool: the environment, else pool_processes of an existing
# run/stoa.conf (the operator's setting survives restarts), else 2.
conf_pool_processes() {
    local v=''
    if [[ -r $RUN/stoa.conf ]]; then
        v=$(sed -n 's/^[[:space:]]*pool_processes[[:space:]]*=[[:space:]]*\([0-9][0-9]*\)[[:space:]]*$/\1/p' \
            "$RUN/stoa.conf" | tail -n 1)
    fi
    printf '%s' "${v:-2}"
}
POOL_PROCESSES=${STOA_POOL_PROCESSES:-$(conf_pool_processes)}
readonly POOL_PROCESSES
readonly RATE_API=${STOA_RATE_API:-100r/s}
readonly BURST_API=${STOA_BURST_API:-200}
readonly RATE_AUTH=${STOA_RATE_AUTH:-2r/s}
readonly BURST_AUTH=${STOA_BURST_AUTH:-10}
GATEWAY_MODULE=${STOA_GATEWAY_MODULE:-$REPO_DIR/build/gateway/ngx_http_api_gateway_module.so}
# nchan (Debian libnginx-mod-nchan), for the live channel.
NCHAN_MODULE=${STOA_NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}

readonly PG_BIN=/usr/lib/postgresql/15/bin
readonly PG_PORT=5432
readonly POOLS=(auth billing analytics admin)
# How long a component may take to stop before it is killed.
readonly STOP_GRACE_S=10
# How long `start` waits for the stack to answer through nginx.
readonly READY_TIMEOUT_S=15

IS_ROOT=0
if [[ $(id -u) -eq 0 ]]; then
    IS_ROOT=1
fi
readonly IS_ROOT

# Variables that configure this script only. The programs treat STOA_<KEY>
# as a config override, so these are removed from their environment.
readonly STACK_ONLY_VARS=(STOA_RUN_DIR STOA_BIN_DIR STOA_HTTPS_PORT
    STOA_HTTP_PORT STOA_RATE_API STOA_BURST_API STOA_RATE_AUTH STOA_BURST_AUTH
    STOA_GATEWAY_MODULE STOA_UPSTREAM_KEEPALIVE STOA_NCHAN_MODULE)

note() { printf 'stack.sh: %s\n' "$*" >&2; }
die() {
    printf 'stack.sh: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    printf 'usage: %s start|stop|status|reload|fence|repoint|rejoin\n' "$0" >&2
    exit 2
}

# ---------------------------------------------------------------------------
# Settings

validate_settings() {
    case $RUN in
    /*) ;;
    *) RUN=$PWD/$RUN ;;
    esac
    while [[ $RUN == */ && $RUN != / ]]; do RUN=${RUN%/}; done
    case $BIN in
    /*) ;;
    *) BIN=$PWD/$BIN ;;
    esac
    case $GATEWAY_MODULE in
    /*) ;;
    *) GATEWAY_MODULE=$PWD/$GATEWAY_MODULE ;;
    esac
    readonly RUN BIN GATEWAY_MODULE

    # The run path is written into nginx, Postgres and Redis configs and sed
    # expressions; keep it to characters none of them treats specially.
    [[ $RUN =~ ^/[A-Za-z0-9._/+-]*$ ]] ||
        die "STOA_RUN_DIR must be a plain path ([A-Za-z0-9._/+-]): $RUN"
    # sun_path holds 107 bytes; the longest socket is Postgres'.
    local longest="$RUN/pg/sock/.s.PGSQL.$PG_PORT"
    ((${#longest} <= 100)) ||
        die "STOA_RUN_DIR is too long for unix socket paths: $RUN"

    local name value
    for name in HTTPS_PORT HTTP_PORT; do
        value=${!name}
        if ! [[ $value =~ ^[1-9][0-9]{0,4}$ ]] || ((value > 65535)); then
            die "STOA_$name must be a TCP port: $value"
        fi
    done
    [[ $HTTPS_PORT != "$HTTP_PORT" ]] || die "STOA_HTTPS_PORT and STOA_HTTP_PORT are equal"
    [[ $POOL_PROCESSES =~ ^[1-9][0-9]{0,2}$ ]] ||
        die "STOA_POOL_PROCESSES must be an integer from 1 to 999: $POOL_PROCESSES"
    for name in RATE_API RATE_AUTH; do
        [[ ${!name} =~ ^[0-9]+r/[sm]$ ]] || die "STOA_$name must look like 100r/s or 30r/m: ${!name}"
    done
    for name in BURST_API BURST_AUTH; do
        [[ ${!name} =~ ^[0-9]+$ ]] || die "STOA_$name must be a non-negative integer: ${!name}"
    done
}

# Runs one of the stoa programs without the variables meant for this script.
run_stoa() {
    local unset_args=() name
    for name in "${STACK_ONLY_VARS[@]}"; do
        unset_args+=(-u "$name")
    done
    env "${unset_args[@]}" "$@"
}

# Same, replacing the current (sub)shell, so no shell lingers as its parent.
exec_stoa() {
    local unset_args=() name
    for name in "${STACK_ONLY_VARS[@]}"; do
        unset_args+=(-u "$name")
    done
    exec env "${unset_args[@]}" "$@"
}

# Daemons started from here must not keep descriptors this script inherited
# (a make jobserver pipe, a caller's capture pipe): whoever waits for EOF on
# them would wait for as long as the stack runs.
close_inherited_fds() {
    local path fd
    for path in /proc/"$BASHPID"/fd/*; do
        fd=${path##*/}
        [[ $fd =~ ^[0-9]+$ ]] || continue
        # 0-2 are ours to keep; bash reads this script through 255.
        if ((fd > 2 && fd != 255)); then
            exec {fd}>&-
        fi
    done
}

# Runs a Postgres binary as the cluster owner: Postgres refuses to run as
# root, so as root everything goes through the postgres OS user. "cd /"
# because that user may not be able to enter the caller's directory.
as_pg() {
    if ((IS_ROOT)); then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# ---------------------------------------------------------------------------
# Processes

# Prints the pid stored in a pid file; fails when there is none.
read_pid() {
    local pid
    [[ -r $1 ]] || return 1
    read -r pid <"$1" || [[ -n ${pid:-} ]] || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "$pid"
}

# True when process $1 exists and its command line contains every one of the
# other arguments: a pid file left over from before a reboot may name an
# unrelated process that reused the pid.
pid_matches() {
    local pid=$1 cmdline pattern
    shift
    [[ -r /proc/$pid/cmdline ]] || return 1
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ -n $cmdline ]] || return 1 # a zombie
    for pattern in "$@"; do
        [[ $cmdline == *"$pattern"* ]] || return 1
    done
}

# alive PIDFILE PATTERN...: the pid file names a live process of ours.
alive() {
    local file=$1 pid
    shift
    pid=$(read_pid "$file") || return 1
    pid_matches "$pid" "$@"
}

# Pids whose argv is exactly "$@": a program of this stack found by its
# full command line (it names this run directory's config).
procs_with_argv() {
    local proc pid argv i same
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        argv=()
        mapfile -d '' -t argv 2>/dev/null <"$proc/cmdline" || continue
        ((${#argv[@]} == $#)) || continue
        same=1
        for ((i = 0; i < $#; i++)); do
            if [[ ${argv[i]} != "${*:i+1:1}" ]]; then
                same=0
                break
            fi
        done
        if ((same)); then
            printf '%s\n' "$pid"
        fi
    done
}

# Waits until none of the pids exists; fails after $1 seconds.
wait_gone() {
    local seconds=$1 pid left
    shift
    local deadline=$((SECONDS + seconds))
    while :; do
        left=0
        for pid in "$@"; do
            if kill -0 "$pid" 2>/dev/null && pid_matches "$pid"; then
                left=1
            fi
        done
        ((left)) || return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# Kills a process and, when it leads its own process group (every daemon of
# this stack does: setsid), the whole group, so no child survives it.
kill_hard() {
    local pid=$1 pgid
    pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') || true
    if [[ $pgid == "$pid" ]]; then
        kill -KILL -- "-$pid" 2>/dev/null || true
    else
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

# stop_pid NAME SIGNAL PID [EXTRA_PID...]: signals PID, waits for it and the
# extra pids (its children) to exit, and kills what is left after the grace
# period.
stop_pid() {
    local name=$1 signal=$2 pid=$3 extra
    shift 3
    kill "-$signal" "$pid" 2>/dev/null || true
    if ! wait_gone "$STOP_GRACE_S" "$pid" "$@"; then
        note "$name did not stop within ${STOP_GRACE_S}s; killing it"
        kill_hard "$pid"
        for extra in "$@"; do
            kill -KILL "$extra" 2>/dev/null || true
        done
        wait_gone 5 "$pid" "$@" || note "$name: some processes are still alive"
    fi
}

# run_logged LOG CMD...: runs a command with its output appended to LOG (a
# file, never a pipe: a daemon keeping the descriptor open must not hang the
# caller); on failure shows the end of LOG.
run_logged() {
    local log=$1
    shift
    if ! "$@" </dev/null >>"$log" 2>&1 9>&-; then
        note "failed: $* (last lines of $log follow)"
        tail -n 20 "$log" >&2 || true
        return 1
    fi
}

# Moves NEW over FILE unless both are the same, so that a second start
# leaves every file (and its timestamp) as it was.
replace_if_changed() {
    local new=$1 file=$2
    if cmp -s "$new" "$file"; then
        rm -f "$new"
    else
        mv "$new" "$file"
    fi
}

# ---------------------------------------------------------------------------
# Run directory, config, TLS

ensure_dirs() {
    mkdir -p "$RUN"
    chmod 0755 "$RUN"
    local dir
    for dir in pg pg/sock redis nginx nginx/conf.d nginx/http.d nginx/tmp \
        sock pids log tls; do
        mkdir -p "$RUN/$dir"
    done
    ensure_metrics_dir
    mkdir -p "$RUN/keys" "$RUN/mail"
    chmod 0700 "$RUN/keys" "$RUN/mail"
    chmod 0755 "$RUN/pg" "$RUN/pg/sock"
    if ((IS_ROOT)); then
        # The postgres user owns the cluster directory; root needs no grant
        # to read the socket, logs or anything else.
        chown postgres:postgres "$RUN/pg" "$RUN/pg/sock"
        if ! runuser -u postgres -- test -w "$RUN/pg"; then
            die "the postgres user cannot reach $RUN/pg: every parent directory of $RUN must be searchable by others (chmod o+x)"
        fi
    fi
}

# The metrics segments are shared file mappings (stoa/metrics.h): on a disk
# file system the kernel writes their pages back, and a counter written
# while its page is under writeback waits for the disk (about ten points
# of /v1/me's ratio in bench-metrics-me). So $RUN/metrics leads into
# memory (/dev/shm, where there is one), and stop removes it again.
ensure_metrics_dir() {
    local link=$RUN/metrics
    if [[ -L $link ]]; then
        mkdir -p "$(readlink "$link")"
        return 0
    fi
    # A directory from before, or no tmpfs to point into: kept as it is.
    if [[ -e $link || ! -d /dev/shm || ! -w /dev/shm ]]; then
        mkdir -p "$link"
        return 0
    fi
    ln -s "$(mktemp -d /dev/shm/stoa-metrics.XXXXXX)" "$link"
}

remove_metrics_dir() {
    local link=$RUN/metrics target
    [[ -L $link ]] || return 0
    target=$(readlink "$link")
    [[ $target == /dev/shm/stoa-metrics.* ]] && rm -rf -- "$target"
    rm -f -- "$link"
}

# Writes $RUN/stoa.conf from stoa.conf.example once, pointing every path and
# URL into the run directory. An existing file is never touched: it may hold
# the operator's edits.
ensure_config() {
    local conf=$RUN/stoa.conf
    [[ -e $conf ]] && return 0
    local example=$REPO_DIR/stoa.conf.example
    [[ -r $example ]] || die "missing $example"

    local -A values=(
        [database_url]="host=$RUN/pg/sock port=$PG_PORT dbname=stoa user=stoa"
        [redis_url]="unix://$RUN/redis/redis.sock"
        [public_url]="https://127.0.0.1:$HTTPS_PORT"
        [jwt_issuer]="https://127.0.0.1:$HTTPS_PORT"
        [log_dir]="$RUN/log"
        [keys_dir]="$RUN/keys"
        [host_cache_file]="$RUN/host-cache"
        [metrics_dir]="$RUN/metrics"
        [smtp_url]="file://$RUN/mail"
        [webhook_allow_hosts]="127.0.0.1,localhost"
        [realtime_socket]="$RUN/sock/realtime.sock"
        [pool_processes]="$POOL_PROCESSES"
        [mfa_encryption_key_file]="$RUN/keys/mfa.key"
        [idempotency_seal_key_file]="$RUN/keys/idempotency.key"
        [pg_data_dir]="$RUN/pg/data"
        [backup_config]="$RUN/backup/pgbackrest.conf"
    )
    local -A seen=()
    local tmp line key
    tmp=$(mktemp "$RUN/.stoa.conf.XXXXXX")
    chmod 0600 "$tmp"
    {
        printf '# Generated by scripts/stack.sh from stoa.conf.example; edit freely,\n'
        printf '# it is never overwritten.\n'
        while IFS= read -r line || [[ -n $line ]]; do
            if [[ $line =~ ^[[:space:]]*([a-z0-9_]+)[[:space:]]*= ]]; then
                key=${BASH_REMATCH[1]}
                if [[ -v values[$key] ]]; then
                    line="$key = ${values[$key]}"
                    seen[$key]=1
                fi
            fi
            printf '%s\n' "$line"
        done <"$example"
        for key in "${!values[@]}"; do
            if [[ ! -v seen[$key] ]]; then
                printf '%s = %s\n' "$key" "${values[$key]}"
            fi
        done
    } >"$tmp"
    mv "$tmp" "$conf"
    note "wrote $conf"
}

# A 256-bit key as 64 hex digits, made once and never replaced: the TOTP
# sealing key (a new one would make every enrolled authenticator
# unreadable) and the key sealing stored Idempotency-Key answers (a new
# one only makes the last day's replays answer 409).
ensure_secret_key() {
    local key=$1 what=$2
    [[ -s $key ]] && return 0
    (umask 077 && openssl rand -hex 32 >"$key.tmp") && mv "$key.tmp" "$key"
    note "generated the $what $key"
}

# Self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost. It is its
# own trust anchor: clients verify it with --cacert $RUN/tls/cert.pem.
ensure_tls() {
    local cert=$RUN/tls/cert.pem key=$RUN/tls/key.pem
    if [[ -s $cert && -s $key ]]; then
        chmod 0600 "$key"
        return 0
    fi
    local tmp_cert=$RUN/tls/.cert.pem.tmp tmp_key=$RUN/tls/.key.pem.tmp
    rm -f "$tmp_cert" "$tmp_key"
    (
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$tmp_key" -out "$tmp_cert" -days 825 -sha256 \
            -subj "/CN=localhost" \
            -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
            -addext "basicConstraints=critical,CA:FALSE" \
            -addext "keyUsage=critical,digitalSignature" \
            -addext "extendedKeyUsage=serverAuth" >/dev/null 2>&1
    ) || die "openssl could not create the TLS certificate"
    chmod 0600 "$tmp_key"
    chmod 0644 "$tmp_cert"
    mv "$tmp_key" "$key"
    mv "$tmp_cert" "$cert"
    note "created self-signed certificate $cert"
}

# ---------------------------------------------------------------------------
# The services, each in its own file

# shellcheck source=stack/data.sh
source "$REPO_DIR/scripts/stack/data.sh"
# shellcheck source=stack/processes.sh
source "$REPO_DIR/scripts/stack/processes.sh"
# shellcheck source=stack/nginx.sh
source "$REPO_DIR/scripts/stack/nginx.sh"
# shellcheck source=stack/backup.sh
source "$REPO_DIR/scripts/stack/backup.sh"
# shellcheck source=stack/replica.sh
source "$REPO_DIR/scripts/stack/replica.sh"

# ---------------------------------------------------------------------------
# Commands

check_binaries() {
    local program missing=()
    for program in stoactl stoa-jobs "${POOLS[@]/#/stoa-}"; do
        [[ -x $BIN/$program ]] || missing+=("$program")
    done
    ((${#missing[@]} == 0)) || die "missing in $BIN: ${missing[*]} (run make first)"
    local tool
    for tool in nginx redis-server redis-cli spawn-fcgi openssl curl flock pgrep; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    [[ -x /usr/bin/multiwatch ]] || die "multiwatch is not installed"
    if ((IS_ROOT)); then
        command -v runuser >/dev/null || die "runuser is not installed"
    fi
    [[ -x $PG_BIN/pg_ctl ]] || die "PostgreSQL 15 is not installed ($PG_BIN)"
}

# Serialises concurrent start/stop on one run directory. Daemons are started
# with fd 9 closed, so the lock dies with this script.
take_lock() {
    exec 9>"$RUN/.stack.lock"
    flock -w 120 9 || die "another stack.sh is busy with $RUN"
}

cmd_start() {
    check_binaries
    ensure_dirs
    take_lock
    ensure_config
    # A bad cors_origins stops the start before anything runs.
    cors_origin_lines >/dev/null
    ensure_secret_key "$RUN/keys/mfa.key" "TOTP sealing key"
    ensure_secret_key "$RUN/keys/idempotency.key" "idempotency answer sealing key"
    ensure_tls
    ensure_backup_config
    start_postgres
    start_replica
    start_redis
    run_migrations
    ensure_admin
    local pool
    for pool in "${POOLS[@]}"; do
        start_pool "$pool"
    done
    start_jobs
    start_watchdog
    start_nginx
    wait_ready
    printf 'stoa is up: https://127.0.0.1:%s\n' "$HTTPS_PORT"
    printf 'first admin: admin@localhost (password in %s)\n' "$RUN/admin-password"
}

cmd_stop() {
    if [[ ! -d $RUN ]]; then
        return 0
    fi
    take_lock
    # First, or it would start again the pools stopped below.
    stop_watchdog
    stop_nginx
    local pool
    for pool in "${POOLS[@]}"; do
        stop_pool "$pool"
    done
    stop_jobs
    stop_redis
    stop_postgres
    stop_replica
    remove_metrics_dir
    note "stopped"
}

cmd_reload() {
    [[ -d $RUN/nginx ]] || die "no stack in $RUN"
    take_lock
    nginx_up || die "nginx is not running"
    rm -f "$RUN/nginx/.loaded"
    start_nginx
}

cmd_status() {
    local all=0 state pool count pid
    report() {
        printf '%-10s %s\n' "$1" "$2"
        [[ $2 == up* ]] || all=1
    }
    if [[ -e $RUN/pg/fenced ]]; then
        printf '%-10s %s\n' postgres "fenced (old primary: scripts/stack.sh rejoin)"
    elif pg_running && "$PG_BIN/pg_isready" -q -h "$RUN/pg/sock" -p "$PG_PORT"; then
        report postgres up
    else
        report postgres down
    fi
    [[ ! -r $RUN/stoa.conf ]] || replica_status || all=1
    if [[ -d $RUN ]] && redis_up; then report redis up; else report redis down; fi
    for pool in "${POOLS[@]}"; do
        if pool_up "$pool"; then
            pid=$(read_pid "$RUN/pids/$pool.pid")
            count=$(pgrep -c -P "$pid" || true)
            if ((count == 1)); then
                state="up (1 process)"
            else
                state="up ($count processes)"
            fi
        else
            state=down
        fi
        report "$pool" "$state"
    done
    if jobs_up; then report jobs up; else report jobs down; fi
    if [[ -d $RUN ]] && watchdog_up; then report watchdog up; else report watchdog down; fi
    if nginx_up; then
        report nginx "up (https://127.0.0.1:$HTTPS_PORT)"
    else
        report nginx down
    fi
    return "$all"
}

main() {
    # `watchdog RUN_DIR` is started by `start` only; the run dir in its
    # command line tells one stack's watchdog from another's.
    if (($# == 2)) && [[ $1 == watchdog ]]; then
        validate_settings
        [[ $2 == "$RUN" ]] || die "watchdog: $2 is not this stack's run directory ($RUN)"
        close_inherited_fds
        cmd_watchdog
        return 0
    fi
    (($# == 1)) || usage
    validate_settings
    close_inherited_fds
    case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reload) cmd_reload ;;
    fence) cmd_fence ;;
    repoint) cmd_repoint ;;
    rejoin) cmd_rejoin ;;
    *) usage ;;
    esac
}

main "$@"
