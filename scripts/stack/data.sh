# shellcheck shell=bash
# scripts/stack/data.sh - Postgres and Redis of the stack: settings, start, stop.
# Sourced by scripts/stack.sh, whose settings and helpers it uses.

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
    pg_archive_settings >>"$data/stoa-dev.conf.new"
    install_pg_settings "$data" stoa-dev.conf "Dev stack settings (scripts/stack.sh)."
}

# install_pg_settings DATA FILE COMMENT: DATA/FILE.new becomes DATA/FILE
# (when it changed), owned by the cluster's owner and included from
# postgresql.conf (the include added once, after what is there).
install_pg_settings() {
    local data=$1 file=$2 comment=$3
    if ((IS_ROOT)); then
        chown postgres:postgres "$data/$file.new"
    fi
    replace_if_changed "$data/$file.new" "$data/$file"
    if ! grep -q "^include_if_exists = '$file'" "$data/postgresql.conf"; then
        printf "\n# %s\ninclude_if_exists = '%s'\n" "$comment" "$file" >>"$data/postgresql.conf"
    fi
}

pg_psql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN/pg/sock" -p "$PG_PORT" \
        -U postgres -d postgres "$@"
}

start_postgres() {
    local data=$RUN/pg/data log=$RUN/log/postgres.log
    # A failed-over primary stays down (scripts/stack/replica.sh).
    if [[ -e $RUN/pg/fenced ]]; then
        note "$RUN/pg is fenced: not starting it"
        return 0
    fi
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
