# shellcheck shell=bash
# scripts/stack/processes.sh - the schema and first admin, the FastCGI pools, the jobs worker and the pool watchdog.
# Sourced by scripts/stack.sh, whose settings and helpers it uses.

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
