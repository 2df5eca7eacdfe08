# shellcheck shell=bash
# scripts/stack/replica.sh - the local streaming replica of the stack's
# Postgres, the fence that keeps a failed-over primary down, and the
# re-join of a fenced server as the new primary's replica (fail-back).
# Sourced by scripts/stack.sh, whose settings and helpers it uses.
#
# Two slots hold a cluster each: $RUN/pg (socket $RUN/pg/sock, port 5432),
# where `start` makes the first primary, and $RUN/pg-replica (its own socket
# dir, port 5433), made by pg_basebackup when `replica = on`. Roles move
# between the slots: `stoactl failover` promotes the replica and fences the
# other slot (a `fenced` file in the slot, checked before any start), and
# `stack.sh rejoin` re-makes the fenced slot as the new primary's replica.
# A slot's role is read from its data directory: standby.signal = replica.

readonly REPLICA_SLOTS=(pg pg-replica)
readonly REPLICA_APPLICATION_NAME=stoa_replica

replica_wanted() {
    [[ $(conf_value replica off) == on ]]
}

replica_sync_wanted() {
    [[ $(conf_value replica_sync on) == on ]]
}

slot_port() {
    if [[ $1 == pg ]]; then printf '%s\n' "$PG_PORT"; else printf '%s\n' 5433; fi
}

slot_fenced() {
    [[ -e $RUN/$1/fenced ]]
}

slot_exists() {
    [[ -f $RUN/$1/data/PG_VERSION ]]
}

slot_standby() {
    [[ -f $RUN/$1/data/standby.signal ]]
}

slot_running() {
    local pid
    pid=$(read_pid "$RUN/$1/data/postmaster.pid") || return 1
    pid_matches "$pid" postgres
}

slot_ready() {
    "$PG_BIN/pg_isready" -q -h "$RUN/$1/sock" -p "$(slot_port "$1")" -U postgres -d postgres
}

# The slot serving writes now: not fenced, not a standby. Fails when none.
primary_slot() {
    local slot
    for slot in "${REPLICA_SLOTS[@]}"; do
        if slot_exists "$slot" && ! slot_fenced "$slot" && ! slot_standby "$slot"; then
            printf '%s\n' "$slot"
            return 0
        fi
    done
    return 1
}

other_slot() {
    if [[ $1 == pg ]]; then printf 'pg-replica\n'; else printf 'pg\n'; fi
}

# The libpq string of a slot as the programs use it (database_url,
# replica_url).
slot_url() {
    printf 'host=%s port=%s dbname=stoa user=stoa\n' "$RUN/$1/sock" "$(slot_port "$1")"
}

# Live processes of a slot's cluster (they all work in its data directory).
# One find over /proc: a readlink per process costs seconds on a busy host,
# and the fence runs while writes wait.
slot_procs() {
    local data link pid
    data=$(cd "$RUN/$1/data" 2>/dev/null && pwd -P) || return 0
    while IFS= read -r link; do
        pid=${link#/proc/}
        pid=${pid%/cwd}
        if pid_matches "$pid"; then
            printf '%s\n' "$pid"
        fi
    done < <(find /proc/[0-9]*/cwd -maxdepth 0 -lname "$data" 2>/dev/null || true)
}

slot_psql() {
    local slot=$1
    shift
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN/$slot/sock" -p "$(slot_port "$slot")" \
        -U postgres -d postgres "$@"
}

# Sets `key = value` in stoa.conf: the last line of the key is replaced (the
# one the programs read), or the line is appended. The file stays 0600.
set_conf_key() {
    local key=$1 value=$2 conf=$RUN/stoa.conf tmp
    tmp=$(mktemp "$RUN/.stoa.conf.XXXXXX")
    chmod 0600 "$tmp"
    awk -v key="$key" -v line="$key = $value" '
        { lines[NR] = $0 }
        $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { last = NR }
        END {
            for (i = 1; i <= NR; i++) print (i == last ? line : lines[i])
            if (!last) print line
        }' "$conf" >"$tmp"
    mv "$tmp" "$conf"
}

# The per-slot settings, included after stoa-dev.conf (so they win) and
# rewritten on every start: where the replica slot listens and logs, how a
# standby reaches its primary, and whether the primary waits for its standby.
write_slot_settings() {
    local slot=$1 data=$RUN/$1/data sync_names=''
    {
        printf '# Written by scripts/stack.sh (replica.sh) on every start.\n'
        if [[ $slot != pg ]]; then
            printf "port = %s\nunix_socket_directories = '%s'\nlog_filename = 'postgres-%s.log'\n" \
                "$(slot_port "$slot")" "$RUN/$slot/sock" "$slot"
        fi
        printf 'hot_standby = on\nwal_level = replica\nmax_wal_senders = 10\n'
        if slot_standby "$slot"; then
            local primary
            primary=$(other_slot "$slot")
            printf "primary_conninfo = 'host=%s port=%s user=postgres application_name=%s'\n" \
                "$RUN/$primary/sock" "$(slot_port "$primary")" "$REPLICA_APPLICATION_NAME"
        elif replica_wanted && replica_sync_wanted && slot_exists "$(other_slot "$slot")" &&
            slot_standby "$(other_slot "$slot")" && ! slot_fenced "$(other_slot "$slot")"; then
            # Only with a standby to wait for: a name with no standby
            # behind it would hold every commit forever.
            sync_names=$REPLICA_APPLICATION_NAME
        fi
        # A promoted standby keeps this file: '' there means it never waits
        # for a standby it does not have.
        printf "synchronous_standby_names = '%s'\n" "$sync_names"
    } >"$data/stoa-replication.conf.new"
    install_pg_settings "$data" stoa-replication.conf "Replica settings (scripts/stack/replica.sh)."
}

# pg_basebackup of the primary slot into slot $1, made a standby. The copy
# is made beside the slot's data and moved in only when complete, so an
# interrupted copy never leaves a half cluster that a start would run.
make_standby() {
    local slot=$1 primary=$2 log=$RUN/log/postgres-$1.log
    mkdir -p "$RUN/$slot" "$RUN/$slot/sock"
    chmod 0755 "$RUN/$slot" "$RUN/$slot/sock"
    touch "$log"
    chmod 0640 "$log"
    if ((IS_ROOT)); then
        chown postgres:postgres "$RUN/$slot" "$RUN/$slot/sock" "$log"
    fi
    rm -rf "$RUN/$slot/data.new"
    note "copying the $primary cluster into $RUN/$slot (pg_basebackup)"
    run_logged "$log" as_pg "$PG_BIN/pg_basebackup" -D "$RUN/$slot/data.new" \
        -h "$RUN/$primary/sock" -p "$(slot_port "$primary")" -U postgres \
        -X stream -c fast --no-password ||
        die "pg_basebackup from $primary failed"
    as_pg touch "$RUN/$slot/data.new/standby.signal"
    rm -f "$RUN/$slot/data.new/postmaster.pid" "$RUN/$slot/data.new/postmaster.opts"
    rm -rf "$RUN/$slot/data"
    mv "$RUN/$slot/data.new" "$RUN/$slot/data"
}

start_slot() {
    local slot=$1 data=$RUN/$1/data log=$RUN/log/postgres-$1.log
    [[ $slot == pg ]] && log=$RUN/log/postgres.log
    write_slot_settings "$slot"
    if ! slot_running "$slot"; then
        local left
        left=$(slot_procs "$slot")
        [[ -z $left ]] || die "processes of the old $slot server are still running: ${left//$'\n'/ }"
        rm -f "$data/postmaster.pid"
        note "starting Postgres in $RUN/$slot"
        run_logged "$log" as_pg "$PG_BIN/pg_ctl" start -w -t 60 -s -D "$data" -l "$log" ||
            die "Postgres in $RUN/$slot did not start"
    fi
    local deadline=$((SECONDS + 10))
    until slot_ready "$slot"; do
        ((SECONDS < deadline)) || die "Postgres in $RUN/$slot is not accepting connections"
        sleep 0.1
    done
}

stop_slot() {
    local slot=$1 data=$RUN/$1/data pid
    slot_running "$slot" || return 0
    if ! as_pg "$PG_BIN/pg_ctl" stop -D "$data" -m fast -w -t "$STOP_GRACE_S" -s \
        </dev/null >/dev/null 2>&1; then
        as_pg "$PG_BIN/pg_ctl" stop -D "$data" -m immediate -w -t 5 -s \
            </dev/null >/dev/null 2>&1 || true
        if pid=$(read_pid "$data/postmaster.pid") && pid_matches "$pid" postgres; then
            kill_hard "$pid"
        fi
    fi
}

# After start_postgres: the other slot (a replica, or the primary since a
# fail-over), made when `replica = on` asks for one and there is none yet,
# then the primary told whether to wait for it.
start_replica() {
    local primary slot
    # A stack that never asked for a replica is left exactly as it was.
    if ! replica_wanted && ! slot_exists pg-replica && ! slot_fenced pg; then
        return 0
    fi
    if ! primary=$(primary_slot); then
        note "no Postgres server may take writes (every slot is fenced or a standby)"
        return 0
    fi
    if [[ $primary != pg ]]; then
        # Since a fail-over the primary lives in the replica slot.
        start_slot "$primary"
    fi
    slot=$(other_slot "$primary")
    if slot_fenced "$slot"; then
        note "$RUN/$slot is fenced (a failed-over primary); scripts/stack.sh rejoin makes it a replica"
    elif replica_wanted; then
        if ! slot_exists "$slot"; then
            # The stoa role reads replication state (replica status) and
            # promotes (failover); granted on the primary, replicated.
            slot_psql "$primary" -d stoa -c "GRANT pg_monitor TO stoa" \
                -c "GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO stoa" >/dev/null
            make_standby "$slot" "$primary"
        fi
        start_slot "$slot"
        replica_write_conf "$slot"
    elif slot_running "$slot" && slot_standby "$slot"; then
        note "replica = off: stopping the replica in $RUN/$slot"
        stop_slot "$slot"
    fi
    write_slot_settings "$primary"
    as_pg "$PG_BIN/pg_ctl" reload -s -D "$RUN/$primary/data" </dev/null >/dev/null 2>&1 || true
}

# stoa.conf names the replica and the dev stack's fence and repoint
# commands for `stoactl replica status` and `stoactl failover`.
replica_write_conf() {
    local slot=$1 stack="STOA_RUN_DIR=$RUN STOA_BIN_DIR=$BIN bash $REPO_DIR/scripts/stack.sh"
    [[ $(conf_value replica_url '') == "$(slot_url "$slot")" ]] ||
        set_conf_key replica_url "$(slot_url "$slot")"
    [[ -n $(conf_value replica_fence_command '') ]] ||
        set_conf_key replica_fence_command "$stack fence"
    [[ -n $(conf_value replica_repoint_command '') ]] ||
        set_conf_key replica_repoint_command "$stack repoint"
}

stop_replica() {
    local slot
    for slot in "${REPLICA_SLOTS[@]}"; do
        [[ $slot == pg ]] || stop_slot "$slot"
    done
}

replica_status() {
    local slot role mode
    for slot in "${REPLICA_SLOTS[@]}"; do
        if slot_fenced "$slot"; then
            role=fenced
        elif ! slot_exists "$slot"; then
            continue
        elif slot_standby "$slot"; then
            role=replica
        else
            role=primary
        fi
        if [[ $slot == pg && $role != replica ]]; then
            continue # the postgres line shows it
        fi
        if [[ $role == fenced ]]; then
            printf '%-10s %s\n' "$slot" "fenced (old primary: scripts/stack.sh rejoin)"
        elif slot_running "$slot" && slot_ready "$slot"; then
            mode=async
            replica_sync_wanted && mode=sync
            [[ $role == primary ]] && mode="since a fail-over"
            printf '%-10s %s\n' "$slot" "up ($role, $mode; $RUN/$slot/sock port $(slot_port "$slot"))"
        elif [[ $role == replica ]] && ! replica_wanted; then
            printf '%-10s %s\n' "$slot" "stopped (replica = off)"
        else
            printf '%-10s %s\n' "$slot" "down ($role)"
            return 1
        fi
    done
}

# `stack.sh fence` (stoactl failover's replica_fence_command): the slot
# that was primary is marked fenced first, so no start brings it back, then
# stopped, and every process left of it killed (a backend outliving a
# killed postmaster must not acknowledge anything more).
cmd_fence() {
    local primary pid
    take_lock
    if ! primary=$(primary_slot); then
        # Run again after a fail-over stopped half way: the fence is up.
        if slot_fenced pg || slot_fenced pg-replica; then
            return 0
        fi
        die "no primary to fence"
    fi
    printf 'fenced by stoactl failover at %s\n' "$(date -u +%FT%TZ)" >"$RUN/$primary/fenced"
    note "fencing the primary in $RUN/$primary"
    stop_slot "$primary"
    for pid in $(slot_procs "$primary"); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + 10))
    while [[ -n $(slot_procs "$primary") ]]; do
        ((SECONDS < deadline)) || die "processes of $RUN/$primary survive"
        sleep 0.1
    done
}

# `stack.sh repoint` (replica_repoint_command): the pools and the jobs
# worker read database_url again. Every pool process gets SIGTERM at once:
# each finishes the requests it holds and exits, and multiwatch forks a
# fresh one that reads stoa.conf. The pool's socket stays open all along
# (multiwatch holds it), so requests arriving meanwhile wait in its backlog
# instead of being refused; at once rather than one by one because the old
# processes can only answer 503 (their server is fenced).
cmd_repoint() {
    take_lock
    local pool pid child deadline
    local -A supervisor=() count=() old=()
    for pool in "${POOLS[@]}"; do
        if ! pid=$(read_pid "$RUN/pids/$pool.pid") || ! pid_matches "$pid" multiwatch; then
            continue
        fi
        supervisor[$pool]=$pid
        count[$pool]=$(pgrep -c -P "$pid" || true)
        old[$pool]=$(pgrep -P "$pid" | tr '\n' ' ' || true)
    done
    for pool in "${!old[@]}"; do
        for child in ${old[$pool]}; do
            kill -TERM "$child" 2>/dev/null || true
        done
    done
    # The jobs worker meanwhile (it takes a second or two to stop).
    stop_jobs
    start_jobs
    deadline=$((SECONDS + 30))
    for pool in "${!old[@]}"; do
        for child in ${old[$pool]}; do
            while kill -0 "$child" 2>/dev/null; do
                ((SECONDS < deadline)) || die "process $child of the $pool pool did not stop"
                sleep 0.02
            done
        done
        while (($(pgrep -c -P "${supervisor[$pool]}" || true) < count[$pool])); do
            ((SECONDS < deadline)) || die "the $pool pool did not fork its processes again"
            sleep 0.02
        done
    done
    note "pools and jobs worker restarted on $(conf_value database_url '?' | sed 's/password=[^ ]*/password=<redacted>/')"
}

# `stack.sh rejoin` (fail-back, step one): the fenced slot becomes a fresh
# replica of the current primary. Its old data is replaced: whatever it
# held beyond what the replica had received is gone (docs/operations.md).
cmd_rejoin() {
    take_lock
    local primary slot
    primary=$(primary_slot) || die "no primary to rejoin"
    slot_running "$primary" || die "the primary in $RUN/$primary is not running"
    slot=$(other_slot "$primary")
    slot_fenced "$slot" || die "$RUN/$slot is not fenced; nothing to rejoin"
    [[ -z $(slot_procs "$slot") ]] || die "processes of $RUN/$slot are still running"
    make_standby "$slot" "$primary"
    rm -f "$RUN/$slot/fenced"
    if [[ $slot == pg ]]; then
        # The copy carries the primary's listen settings; pg's are its own.
        write_pg_settings
    fi
    start_slot "$slot"
    replica_write_conf "$slot"
    write_slot_settings "$primary"
    as_pg "$PG_BIN/pg_ctl" reload -s -D "$RUN/$primary/data" </dev/null >/dev/null 2>&1 || true
    note "$RUN/$slot is now a replica of $RUN/$primary"
}
