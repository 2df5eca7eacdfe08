#!/usr/bin/env bash
# Brings the stoa dev stack up or down inside one run directory:
# Postgres 15, Redis 7, the four FastCGI pools (spawn-fcgi + multiwatch), the
# jobs worker and nginx in front. Every step is idempotent, so `start` on a
# running stack changes nothing and `start` after a crash (stale pid files and
# sockets, data kept) brings everything back.
#
#   scripts/stack.sh start|stop|status|reload
#
# Environment: STOA_RUN_DIR (<repo>/run), STOA_BIN_DIR (<repo>/bin),
# STOA_HTTPS_PORT (8443), STOA_HTTP_PORT (8080), STOA_POOL_PROCESSES (2),
# STOA_RATE_API (100r/s), STOA_BURST_API (200), STOA_RATE_AUTH (2r/s),
# STOA_BURST_AUTH (10), STOA_GATEWAY_MODULE (the gateway module nginx loads:
# <repo>/build/gateway/ngx_http_api_gateway_module.so), STOA_UPSTREAM_KEEPALIVE
# (idle FastCGI connections nginx keeps per worker and pool: a quarter of the
# pool's connection slots; 0 turns keep-alive off, for benches).
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
    STOA_GATEWAY_MODULE STOA_UPSTREAM_KEEPALIVE)

note() { printf 'stack.sh: %s\n' "$*" >&2; }
die() {
    printf 'stack.sh: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    printf 'usage: %s start|stop|status|reload\n' "$0" >&2
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
        [smtp_url]="file://$RUN/mail"
        [webhook_allow_hosts]="127.0.0.1,localhost"
        [pool_processes]="$POOL_PROCESSES"
        [mfa_encryption_key_file]="$RUN/keys/mfa.key"
        [idempotency_seal_key_file]="$RUN/keys/idempotency.key"
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
# Postgres

# The postmaster named by postmaster.pid is alive. Not `pg_ctl status`: it
# takes a zombie (a killed postmaster nobody reaped yet) for a live server.
pg_running() {
    local pid
    pid=$(read_pid "$RUN/pg/data/postmaster.pid") || return 1
    pid_matches "$pid" postgres
}

# Pids of live processes working in the data directory: every process of the
# cluster (postmaster and backends) runs with it as its working directory.
pg_cluster_procs() {
    local proc data
    # /proc shows working directories with every symlink resolved.
    data=$(cd "$RUN/pg/data" && pwd -P) || return 0
    for proc in /proc/[0-9]*; do
        if [[ $(readlink "$proc/cwd" 2>/dev/null) == "$data" ]] && pid_matches "${proc#/proc/}"; then
            printf '%s\n' "${proc#/proc/}"
        fi
    done
}

# A postmaster.pid left by a killed server makes Postgres refuse to start
# while that pid still exists, even as a zombie. It is removed once no
# process of the old cluster is left (backends quit soon after their
# postmaster dies), so two servers can never share the data directory.
clear_stale_pg_lock() {
    local lock=$RUN/pg/data/postmaster.pid
    [[ -f $lock ]] || return 0
    local deadline=$((SECONDS + 10)) left
    while :; do
        left=$(pg_cluster_procs)
        [[ -n $left ]] || break
        ((SECONDS < deadline)) || die "processes of the old Postgres server are still running: ${left//$'\n'/ }"
        sleep 0.2
    done
    note "removing the stale $lock"
    rm -f "$lock"
}

# Settings live in a file of their own, rewritten on every start and included
# from postgresql.conf, so a plain `pg_ctl start -D ...` keeps them.
write_pg_settings() {
    local data=$RUN/pg/data
    # Every pool process shares db_pool_size connections among its threads.
    local db_pool_size
    db_pool_size=$(conf_value db_pool_size 4)
    [[ $db_pool_size =~ ^[1-9][0-9]{0,2}$ ]] || die "db_pool_size must be an integer from 1 to 256: $db_pool_size"
    local max_connections=$((4 * POOL_PROCESSES * db_pool_size + 60))
    ((max_connections >= 200)) || max_connections=200
    cat >"$data/stoa-dev.conf.new" <<EOF
# Written by scripts/stack.sh on every start.
listen_addresses = ''
port = $PG_PORT
unix_socket_directories = '$RUN/pg/sock'
max_connections = $max_connections
# The collector keeps logging into the file even when the server is started
# by hand without -l.
logging_collector = on
log_directory = '$RUN/log'
log_filename = 'postgres.log'
log_file_mode = 0640
log_rotation_age = 0
log_rotation_size = 0
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    if ((IS_ROOT)); then
        chown postgres:postgres "$data/stoa-dev.conf.new"
    fi
    replace_if_changed "$data/stoa-dev.conf.new" "$data/stoa-dev.conf"
    if ! grep -q "^include_if_exists = 'stoa-dev.conf'" "$data/postgresql.conf"; then
        printf "\n# Dev stack settings (scripts/stack.sh).\ninclude_if_exists = 'stoa-dev.conf'\n" \
            >>"$data/postgresql.conf"
    fi
}

pg_psql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN/pg/sock" -p "$PG_PORT" \
        -U postgres -d postgres "$@"
}

start_postgres() {
    local data=$RUN/pg/data log=$RUN/log/postgres.log
    # The server (not root) appends to the log file inside the root-owned
    # log directory.
    touch "$log"
    chmod 0640 "$log"
    if ((IS_ROOT)); then
        chown postgres:postgres "$log"
    fi

    if [[ ! -f $data/PG_VERSION ]]; then
        note "initialising the Postgres cluster in $data"
        # A directory without PG_VERSION is a half-done initdb.
        rm -rf "$data"
        mkdir -m 0700 "$data"
        if ((IS_ROOT)); then
            chown postgres:postgres "$data"
        fi
        run_logged "$log" as_pg "$PG_BIN/initdb" -D "$data" -U postgres \
            -E UTF8 --locale=C.UTF-8 --auth=trust --no-instructions ||
            die "initdb failed"
    fi
    write_pg_settings

    if ! pg_running; then
        clear_stale_pg_lock
        note "starting Postgres"
        local attempt
        for attempt in 1 2 3; do
            if run_logged "$log" as_pg "$PG_BIN/pg_ctl" start -w -t 60 -s \
                -D "$data" -l "$log"; then
                break
            fi
            # After a kill -9 the old backends may still hold the shared
            # memory for a moment.
            ((attempt < 3)) || die "Postgres did not start"
            sleep 1
        done
    fi

    local deadline=$((SECONDS + 10))
    until "$PG_BIN/pg_isready" -q -h "$RUN/pg/sock" -p "$PG_PORT"; do
        ((SECONDS < deadline)) || die "Postgres is not accepting connections"
        sleep 0.1
    done

    if [[ $(pg_psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'stoa'") != 1 ]]; then
        pg_psql -c "CREATE ROLE stoa LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
        note "created role stoa"
    fi
    if [[ $(pg_psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'stoa'") != 1 ]]; then
        pg_psql -c "CREATE DATABASE stoa OWNER stoa ENCODING 'UTF8' TEMPLATE template0"
        note "created database stoa"
    fi
}

stop_postgres() {
    local data=$RUN/pg/data
    pg_running || return 0
    if ! as_pg "$PG_BIN/pg_ctl" stop -D "$data" -m fast -w -t "$STOP_GRACE_S" -s \
        </dev/null >/dev/null 2>&1; then
        note "Postgres did not stop within ${STOP_GRACE_S}s; stopping it immediately"
        as_pg "$PG_BIN/pg_ctl" stop -D "$data" -m immediate -w -t 5 -s \
            </dev/null >/dev/null 2>&1 || true
        local pid
        if pid=$(read_pid "$data/postmaster.pid") && pid_matches "$pid" postgres; then
            kill_hard "$pid"
        fi
    fi
}

# ---------------------------------------------------------------------------
# Redis

redis_up() {
    alive "$RUN/pids/redis.pid" redis-server &&
        [[ $(redis-cli -s "$RUN/redis/redis.sock" ping 2>/dev/null) == PONG ]]
}

start_redis() {
    local conf=$RUN/redis/redis.conf
    # Redis only caches and counts (SPEC §1): no persistence, no TCP.
    cat >"$conf.new" <<EOF
# Written by scripts/stack.sh on every start.
port 0
unixsocket $RUN/redis/redis.sock
unixsocketperm 700
dir $RUN/redis
daemonize yes
pidfile $RUN/pids/redis.pid
logfile $RUN/log/redis.log
save ""
appendonly no
EOF
    replace_if_changed "$conf.new" "$conf"
    redis_up && return 0

    local pid
    if pid=$(read_pid "$RUN/pids/redis.pid") && pid_matches "$pid" redis-server "$RUN/redis/"; then
        # Alive but not answering: a wedged server is replaced.
        stop_pid redis TERM "$pid"
    fi
    rm -f "$RUN/pids/redis.pid" "$RUN/redis/redis.sock"
    note "starting Redis"
    run_logged "$RUN/log/redis.log" redis-server "$conf" || die "Redis did not start"
    local deadline=$((SECONDS + 10))
    until redis_up; do
        ((SECONDS < deadline)) || die "Redis is not answering on $RUN/redis/redis.sock"
        sleep 0.1
    done
}

stop_redis() {
    local pid
    if pid=$(read_pid "$RUN/pids/redis.pid") && pid_matches "$pid" redis-server; then
        stop_pid redis TERM "$pid"
    fi
    rm -f "$RUN/pids/redis.pid" "$RUN/redis/redis.sock"
}

# ---------------------------------------------------------------------------
# Schema and first admin

run_migrations() {
    run_logged "$RUN/log/stoactl.log" \
        run_stoa "$BIN/stoactl" --config "$RUN/stoa.conf" migrate \
            --dir "$REPO_DIR/migrations" ||
        die "migrations failed"
    # The dev stack is usable at once: a demo catalogue (free, pro, team),
    # added once and then left as the operator changes it.
    run_logged "$RUN/log/stoactl.log" \
        run_stoa "$BIN/stoactl" --config "$RUN/stoa.conf" plan seed-demo ||
        die "seeding the demo catalogue failed"
    # Token signing keys: created on first start, kept afterwards.
    run_logged "$RUN/log/stoactl.log" \
        run_stoa "$BIN/stoactl" --config "$RUN/stoa.conf" keys ensure ||
        die "creating the signing key failed"
}

random_password() {
    local pw=''
    # Filtering random bytes keeps every character equally likely.
    while ((${#pw} < 24)); do
        pw+=$(head -c 128 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
    done
    printf '%s' "${pw:0:24}"
}

# Creates admin@localhost once. The password is written to a pending file
# first and only becomes $RUN/admin-password after the account exists, so
# an interrupted start retries with the same password.
ensure_admin() {
    local final=$RUN/admin-password pending=$RUN/admin-password.pending
    [[ -e $final ]] && return 0
    local fresh=0
    if [[ ! -s $pending ]]; then
        rm -f "$pending"
        (
            umask 077
            set -o noclobber
            random_password >"$pending"
        )
        fresh=1
    fi
    chmod 0600 "$pending"

    local rc=0
    run_stoa "$BIN/stoactl" --config "$RUN/stoa.conf" user create \
        --email admin@localhost --password-file "$pending" --role admin \
        </dev/null >>"$RUN/log/stoactl.log" 2>&1 9>&- || rc=$?
    case $rc in
    0)
        mv "$pending" "$final"
        note "created the first admin (admin@localhost)"
        ;;
    3)
        if ((fresh)); then
            # The account predates this password: publishing it would
            # hand out a password that does not work.
            rm -f "$pending"
            note "admin@localhost already exists but $final is missing; its password is unchanged"
        else
            # A previous start created the account with this very password
            # and stopped before publishing it.
            mv "$pending" "$final"
        fi
        ;;
    *)
        tail -n 20 "$RUN/log/stoactl.log" >&2 || true
        die "stoactl user create failed (exit $rc)"
        ;;
    esac
}

# ---------------------------------------------------------------------------
# FastCGI pools and the jobs worker

pool_up() {
    alive "$RUN/pids/$1.pid" multiwatch "stoa-$1" "$RUN/stoa.conf"
}

# Programs of this stack (found by their exact command line) that no
# multiwatch supervises any more, such as the children of a multiwatch that
# was killed -9: they would keep serving an unlinked socket and holding
# database connections. Only called when the program's supervisor or pid
# file is gone.
reap_orphans() {
    local pid ppid
    for pid in $(procs_with_argv "$@"); do
        ppid=$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ') || continue
        [[ -n $ppid ]] || continue
        if ! pid_matches "$ppid" multiwatch; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

start_pool() {
    local pool=$1
    if pool_up "$pool"; then
        # nginx's keepalive is sized from the process count: a pool of
        # another size is restarted rather than left disagreeing with it.
        alive "$RUN/pids/$pool.pid" "multiwatch -f $POOL_PROCESSES " && return 0
        note "resizing the $pool pool to $POOL_PROCESSES processes"
        stop_pool "$pool"
    fi
    reap_orphans "$BIN/stoa-$pool" --config "$RUN/stoa.conf"
    rm -f "$RUN/sock/$pool.sock" "$RUN/pids/$pool.pid"
    note "starting the $pool pool (processes: $POOL_PROCESSES)"
    # multiwatch restarts a child that dies; -r raises its give-up limit
    # (deaths within 10 s of a start) from 3 so a few crashes in a row under
    # load do not shrink the pool for good. -s TERM: on shutdown it passes
    # the children SIGTERM (the pools' stop signal) instead of its default
    # SIGUSR1.
    run_logged "$RUN/log/spawn-fcgi.log" run_stoa spawn-fcgi \
        -s "$RUN/sock/$pool.sock" -M 0600 -P "$RUN/pids/$pool.pid" -- \
        /usr/bin/multiwatch -f "$POOL_PROCESSES" -r 10 -s TERM -- \
        "$BIN/stoa-$pool" --config "$RUN/stoa.conf" ||
        die "could not start the $pool pool"
}

stop_pool() {
    local pool=$1 pid children
    if pid=$(read_pid "$RUN/pids/$pool.pid") && pid_matches "$pid" multiwatch; then
        mapfile -t children < <(pgrep -P "$pid" || true)
        # multiwatch passes SIGTERM on to its children and exits after them.
        stop_pid "$pool pool" TERM "$pid" "${children[@]}"
    fi
    reap_orphans "$BIN/stoa-$pool" --config "$RUN/stoa.conf"
    rm -f "$RUN/pids/$pool.pid" "$RUN/sock/$pool.sock"
}

jobs_up() {
    alive "$RUN/pids/jobs.pid" stoa-jobs "$RUN/stoa.conf"
}

start_jobs() {
    jobs_up && return 0
    reap_orphans "$BIN/stoa-jobs" --config "$RUN/stoa.conf"
    rm -f "$RUN/pids/jobs.pid"
    note "starting the jobs worker"
    start_daemon "jobs worker" "$RUN/pids/jobs.pid" "$RUN/log/stoa-jobs.stderr" jobs_up \
        exec_stoa "$BIN/stoa-jobs" --config "$RUN/stoa.conf"
}

# start_daemon WHAT PID_FILE LOG UP_CHECK LAUNCHER CMD...: runs CMD through
# LAUNCHER (exec_stoa, or exec_plain for this script itself), output to LOG,
# and waits until UP_CHECK says it runs. The shell records its own pid and
# then becomes CMD (exec keeps the pid), in a session of its own so it
# outlives this script.
start_daemon() {
    local what=$1 pid_file=$2 log=$3 up_check=$4 launcher=$5
    shift 5
    (
        exec </dev/null >>"$log" 2>&1 9>&-
        # shellcheck disable=SC2016 # expanded by the inner shell
        "$launcher" setsid bash -c 'echo "$$" >"$1" && shift && exec "$@"' "$what" \
            "$pid_file" "$@"
    ) &
    local deadline=$((SECONDS + 5))
    until "$up_check"; do
        ((SECONDS < deadline)) || die "the $what did not start (see $log)"
        sleep 0.05
    done
}

exec_plain() {
    exec "$@"
}

stop_jobs() {
    local pid
    if pid=$(read_pid "$RUN/pids/jobs.pid") && pid_matches "$pid" stoa-jobs; then
        stop_pid "jobs worker" TERM "$pid"
    fi
    reap_orphans "$BIN/stoa-jobs" --config "$RUN/stoa.conf"
    rm -f "$RUN/pids/jobs.pid"
}

# ---------------------------------------------------------------------------
# Pool watchdog
#
# multiwatch respawns a pool process that dies, but gives a child up after
# 10 deaths within 10 s of its start and exits once it has no child left: a
# request that crashes every process it reaches (a poison request retried by
# a client) would leave the pool answering 502 until someone ran `start`.
# So the dev stack supervises the supervisors: a watchdog (this script run as
# `stack.sh watchdog RUN_DIR`, in a session of its own) checks every half
# second that each pool's multiwatch is alive and starts the pool again when
# it is not, waiting 0, 1, 2, 4 ... 30 s between restarts of a pool that
# keeps dying (a pool that stayed up for 60 s starts over at 0). It leaves
# the jobs worker alone: tests and operators stop and replace that one on
# purpose, and `start` brings it back. In production systemd does this job
# (docs/operations.md, "Fault: a crash loop").

readonly WATCHDOG_TICK_S=0.5
readonly WATCHDOG_MAX_DELAY_S=30
readonly WATCHDOG_STABLE_S=60

watchdog_up() {
    alive "$RUN/pids/watchdog.pid" stack.sh watchdog "$RUN"
}

start_watchdog() {
    watchdog_up && return 0
    rm -f "$RUN/pids/watchdog.pid"
    note "starting the pool watchdog"
    start_daemon "pool watchdog" "$RUN/pids/watchdog.pid" "$RUN/log/watchdog.log" watchdog_up \
        exec_plain bash "$REPO_DIR/scripts/stack.sh" watchdog "$RUN"
}

stop_watchdog() {
    local pid
    if pid=$(read_pid "$RUN/pids/watchdog.pid") && pid_matches "$pid" stack.sh watchdog; then
        stop_pid "pool watchdog" TERM "$pid"
    fi
    rm -f "$RUN/pids/watchdog.pid"
}

# The watchdog's loop. A restart takes the stack lock without waiting: while
# `start` or `stop` holds it, the pools are theirs and this round is skipped
# (`stop` ends the watchdog before it stops the pools).
cmd_watchdog() {
    local -A delay=() next_try=() restarted_at=()
    local pool now stopping=0
    # TERM arrives while a sleep runs; the loop ends after it.
    trap 'stopping=1' TERM INT
    note "watchdog $$ supervising the ${POOLS[*]} pools"
    while ((!stopping)); do
        now=$SECONDS
        for pool in "${POOLS[@]}"; do
            ((!stopping)) || break
            if pool_up "$pool"; then
                if [[ -v restarted_at[$pool] ]] &&
                    ((now - restarted_at[$pool] >= WATCHDOG_STABLE_S)); then
                    unset "delay[$pool]" "restarted_at[$pool]"
                fi
                continue
            fi
            ((now >= ${next_try[$pool]:-0})) || continue
            exec 9>"$RUN/.stack.lock"
            if ! flock -n 9; then
                exec 9>&-
                continue
            fi
            # Checked again under the lock: `start` may just have done it.
            if ! pool_up "$pool"; then
                note "the $pool pool has no supervisor; restarting it (back-off ${delay[$pool]:-0}s)"
                (start_pool "$pool") || note "restarting the $pool pool failed"
            fi
            exec 9>&-
            local d=${delay[$pool]:-0}
            next_try[$pool]=$((SECONDS + d))
            restarted_at[$pool]=$SECONDS
            if ((d == 0)); then
                delay[$pool]=1
            else
                delay[$pool]=$((d * 2 > WATCHDOG_MAX_DELAY_S ? WATCHDOG_MAX_DELAY_S : d * 2))
            fi
        done
        ((stopping)) || sleep "$WATCHDOG_TICK_S"
    done
    note "watchdog $$ stopped"
}

# ---------------------------------------------------------------------------
# nginx

# routes.conf is made from routes.manifest (scripts/gen-routes.py), the
# others from nginx/.
readonly NGINX_FILES=(nginx.conf routes.conf fastcgi_stoa.conf security_headers.conf errors.conf cors_headers.conf)

nginx_cmd() {
    nginx -p "$RUN/nginx/" -c "$RUN/nginx/nginx.conf" "$@"
}

nginx_up() {
    alive "$RUN/nginx/nginx.pid" "nginx: master process" "$RUN/nginx/nginx.conf"
}

# Fingerprint of everything nginx reads: the rendered files and the drop-in
# directories, so a file added to conf.d/ or http.d/ also triggers a reload.
nginx_fingerprint() {
    local files=() name
    for name in "${NGINX_FILES[@]}"; do
        files+=("$RUN/nginx/$name")
    done
    files+=("$RUN/nginx/cors_origins.conf")
    shopt -s nullglob
    files+=("$RUN"/nginx/conf.d/*.conf "$RUN"/nginx/http.d/*.conf)
    shopt -u nullglob
    # Names too, so that removing or renaming a drop-in counts as a change.
    {
        printf '%s\n' "${files[@]}"
        cat -- "${files[@]}" 2>/dev/null || true
    } | sha256sum | cut -d' ' -f1
}

# The value of a stoa.conf key as the programs see it: STOA_<KEY> in the
# environment wins over the file's last `key = value` line.
conf_value() {
    local key=$1 value=$2 env line
    env=STOA_${key^^}
    if [[ -n ${!env+set} ]]; then
        printf '%s\n' "${!env}"
        return 0
    fi
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line =~ ^[[:space:]]*$key[[:space:]]*=[[:space:]]*(.*)$ ]]; then
            value=${BASH_REMATCH[1]}
            value=${value%"${value##*[![:space:]]}"}
        fi
    done <"$RUN/stoa.conf"
    printf '%s\n' "$value"
}

# The lines of nginx's CORS map (nginx.conf.in), one for each origin of
# cors_origins (comma- or space-separated), mapped to itself. Origins are
# lower-cased (browsers send them so, and the answer must match byte for
# byte) and must be scheme://host[:port] exactly: a path, a wildcard,
# "null" or "*" stops the start instead of allowing nothing or too much.
cors_origin_lines() {
    local raw origin list=()
    raw=$(conf_value cors_origins "")
    IFS=', ' read -r -a list <<<"$raw"
    local label='[a-z0-9]([a-z0-9-]*[a-z0-9])?'
    local host="($label\.)*$label|\[[0-9a-f:.]+\]"
    local shape="^https?://($host)(:[0-9]{1,5})?$"
    printf '# Generated by scripts/stack.sh from cors_origins; do not edit.\n'
    for origin in "${list[@]}"; do
        [[ -n $origin ]] || continue
        origin=${origin,,}
        [[ $origin =~ $shape ]] ||
            die "cors_origins: '$origin' is not an origin (scheme://host[:port], no path, no wildcard)"
        printf '"%s" "%s";\n' "$origin" "$origin"
    done
}

# Renders nginx/*.in and the snippets into $RUN/nginx. Prints "changed" when
# the result differs from what nginx was last (re)loaded with.
render_nginx() {
    local keepalive_directive keepalive_note user_directive nofile hard
    # The gateway verifies tokens against the auth pool's published keys,
    # with the issuer and audience the auth pool signs with.
    [[ $GATEWAY_MODULE =~ ^/[A-Za-z0-9._/+-]*$ ]] ||
        die "STOA_GATEWAY_MODULE must be a plain path ([A-Za-z0-9._/+-]): $GATEWAY_MODULE"
    [[ -r $GATEWAY_MODULE ]] || die "missing $GATEWAY_MODULE (run make gateway)"
    local keys_dir jwt_issuer jwt_audience key
    keys_dir=$(conf_value keys_dir keys)
    jwt_issuer=$(conf_value jwt_issuer "https://127.0.0.1:8443")
    jwt_audience=$(conf_value jwt_audience stoa)
    [[ $keys_dir =~ ^/[A-Za-z0-9._/+-]*$ ]] ||
        die "keys_dir must be an absolute plain path ([A-Za-z0-9._/+-]) for nginx: $keys_dir"
    # Safe inside a double-quoted nginx string and a sed replacement.
    local plain_value='^[^[:space:][:cntrl:]"\|&]+$'
    for key in jwt_issuer jwt_audience; do
        [[ ${!key} =~ $plain_value ]] || die "$key cannot be handed to nginx: ${!key}"
    done
    # Each worker may keep this many idle connections per pool: the two
    # workers together hold at most half of the pool's connection slots
    # (64 per handler thread, modules/common/fcgi.h), so a new connection
    # always finds a free one. Idle kept connections wait in epoll, not in
    # threads.
    local threads handlers
    threads=$(conf_value pool_threads 8)
    [[ $threads =~ ^[1-9][0-9]{0,2}$ ]] || die "pool_threads must be an integer from 1 to 256: $threads"
    handlers=$((POOL_PROCESSES * threads))
    local slots=$((handlers * 64))
    local kept=${STOA_UPSTREAM_KEEPALIVE:-$((slots / 4))}
    [[ $kept =~ ^[0-9]{1,4}$ ]] || die "STOA_UPSTREAM_KEEPALIVE must be a count: $kept"
    if ((kept == 0)); then
        keepalive_directive="# keepalive off (STOA_UPSTREAM_KEEPALIVE=0)"
        keepalive_note="with keep-alive turned off nothing is kept idle,"
    elif ((handlers >= 4)); then
        keepalive_directive="keepalive $kept;"
        keepalive_note="$kept idle per worker, $((kept * 2)) at most for $slots connection slots ($POOL_PROCESSES processes x $threads threads x 64),"
    else
        keepalive_directive="# keepalive off: too few handler threads to keep any idle"
        keepalive_note="with fewer than 4 handler threads per pool nothing is kept idle,"
    fi
    if ((IS_ROOT)); then
        # Started as root, the pools' sockets belong to root (mode 0600), so
        # the workers run as root to reach them. Dev stack only: production
        # runs pools and nginx under dedicated users.
        user_directive="user root root;"
    else
        user_directive="# (not started as root: workers run as the invoking user)"
    fi
    # Not above the hard limit: even root may lack CAP_SYS_RESOURCE (containers).
    hard=$(ulimit -Hn)
    if [[ $hard == unlimited ]] || ((hard > 65536)); then
        nofile=65536
    else
        nofile=$hard
    fi
    local worker_connections=$((nofile - 256))
    ((worker_connections <= 16384)) || worker_connections=16384

    local name src dst
    for name in "${NGINX_FILES[@]}"; do
        src=$REPO_DIR/nginx/$name
        [[ $name == nginx.conf ]] && src=$REPO_DIR/nginx/nginx.conf.in
        if [[ $name == routes.conf ]]; then
            src=$RUN/nginx/routes.conf.src
            python3 "$REPO_DIR/scripts/gen-routes.py" nginx "$REPO_DIR/routes.manifest" \
                >"$src" || die "routes.manifest: cannot make the nginx locations"
        fi
        [[ -r $src ]] || die "missing $src"
        dst=$RUN/nginx/$name
        sed -e "s|@RUN@|$RUN|g" \
            -e "s|@HTTPS_PORT@|$HTTPS_PORT|g" \
            -e "s|@HTTP_PORT@|$HTTP_PORT|g" \
            -e "s|@KEEPALIVE_DIRECTIVE@|$keepalive_directive|g" \
            -e "s|@KEEPALIVE_NOTE@|$keepalive_note|g" \
            -e "s|@USER_DIRECTIVE@|$user_directive|g" \
            -e "s|@NOFILE@|$nofile|g" \
            -e "s|@WORKER_CONNECTIONS@|$worker_connections|g" \
            -e "s|@RATE_API@|$RATE_API|g" \
            -e "s|@BURST_API@|$BURST_API|g" \
            -e "s|@RATE_AUTH@|$RATE_AUTH|g" \
            -e "s|@BURST_AUTH@|$BURST_AUTH|g" \
            -e "s|@GATEWAY_MODULE@|$GATEWAY_MODULE|g" \
            -e "s|@GATEWAY_JWKS@|$keys_dir/jwks.json|g" \
            -e "s|@JWT_ISSUER@|$jwt_issuer|g" \
            -e "s|@JWT_AUDIENCE@|$jwt_audience|g" \
            "$src" >"$dst.new"
        if grep -q '@[A-Z_]*@' "$dst.new"; then
            die "unreplaced template token in $dst.new"
        fi
        replace_if_changed "$dst.new" "$dst"
    done
    cors_origin_lines >"$RUN/nginx/cors_origins.conf.new"
    replace_if_changed "$RUN/nginx/cors_origins.conf.new" "$RUN/nginx/cors_origins.conf"
    local stamp=$RUN/nginx/.loaded
    if [[ ! -f $stamp || $(<"$stamp") != "$(nginx_fingerprint)" ]]; then
        echo changed
    fi
}

start_nginx() {
    local changed
    changed=$(render_nginx)
    if nginx_up && [[ -z $changed ]]; then
        return 0
    fi
    local log=$RUN/log/nginx-error.log
    run_logged "$log" nginx_cmd -t -q || die "the nginx configuration is invalid"
    if nginx_up; then
        note "reloading nginx"
        local master old_workers
        master=$(read_pid "$RUN/nginx/nginx.pid")
        mapfile -t old_workers < <(pgrep -P "$master" || true)
        run_logged "$log" nginx_cmd -s reload || die "nginx reload failed"
        # Once the old workers are gone every answer comes from the new
        # configuration. A worker still finishing a long request is left
        # to finish it.
        wait_gone 5 "${old_workers[@]}" || true
    else
        rm -f "$RUN/nginx/nginx.pid"
        note "starting nginx on https://127.0.0.1:$HTTPS_PORT and http://127.0.0.1:$HTTP_PORT"
        run_logged "$log" nginx_cmd || die "nginx did not start"
    fi
    nginx_fingerprint >"$RUN/nginx/.loaded"
}

stop_nginx() {
    local pid children
    if pid=$(read_pid "$RUN/nginx/nginx.pid") && pid_matches "$pid" "nginx: master process"; then
        mapfile -t children < <(pgrep -P "$pid" || true)
        # QUIT: finish the requests in flight, then exit.
        stop_pid nginx QUIT "$pid" "${children[@]}"
    fi
    rm -f "$RUN/nginx/nginx.pid" "$RUN/nginx/.loaded"
}

# ---------------------------------------------------------------------------
# Health

http_status() {
    curl -sk --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true
}

wait_ready() {
    local base="https://127.0.0.1:$HTTPS_PORT" deadline=$((SECONDS + READY_TIMEOUT_S))
    until curl -fsk --noproxy '*' --max-time 2 -o /dev/null "$base/healthz" 2>/dev/null; do
        ((SECONDS < deadline)) || die "nginx does not answer $base/healthz (see $RUN/log/nginx-error.log)"
        sleep 0.1
    done
    local pool
    for pool in "${POOLS[@]}"; do
        until [[ $(http_status "$base/v1/$pool/healthz") == 200 ]]; do
            ((SECONDS < deadline)) || die "the $pool pool does not answer $base/v1/$pool/healthz (see $RUN/log/)"
            sleep 0.1
        done
    done
}

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
    start_postgres
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
    if pg_running && "$PG_BIN/pg_isready" -q -h "$RUN/pg/sock" -p "$PG_PORT"; then
        report postgres up
    else
        report postgres down
    fi
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
    *) usage ;;
    esac
}

main "$@"
