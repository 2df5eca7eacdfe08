# shellcheck shell=bash
# scripts/stack/backup.sh - the stack's pgBackRest repository and WAL
# archiving. Sourced by scripts/stack.sh, whose settings and helpers it uses.
#
# Everything lives in $RUN/backup: pgbackrest.conf (stanza "stoa"), the
# repository (repo/), pgBackRest's logs and locks. Nothing goes to /etc or
# /tmp, so stacks side by side never share a lock or a repository.
#
# The stanza is not created here but by the first `stoactl backup` (its
# stanza-create is idempotent): a start costs no pgBackRest run at all, and
# most stacks never take a backup. Until the stanza exists the archive
# command succeeds without copying (see pg_archive_settings), because WAL
# older than the first backup can never be replayed: a restore starts from
# a backup, and the backup's own start is archived once the stanza exists.

readonly BACKUP_STANZA=stoa

backup_conf_path() { printf '%s\n' "$RUN/backup/pgbackrest.conf"; }

# Writes $RUN/backup/pgbackrest.conf (rewritten on every start, unchanged
# files kept as they are) and the directories pgBackRest writes to, owned by
# the cluster's user: archive-push runs as the server, and stoactl runs
# pgBackRest as that user too.
ensure_backup_config() {
    local dir=$RUN/backup conf
    conf=$(backup_conf_path)
    mkdir -p "$dir/repo" "$dir/log" "$dir/lock"
    chmod 0750 "$dir" "$dir/repo" "$dir/log" "$dir/lock"
    cat >"$conf.new" <<EOF
# Written by scripts/stack.sh on every start.
[global]
repo1-path=$dir/repo
repo1-retention-full=2
log-path=$dir/log
lock-path=$dir/lock
log-level-console=warn
log-level-file=info
# The dev stack's backups are small and local: fast beats small.
compress-type=lz4
process-max=2
start-fast=y
delta=y

[$BACKUP_STANZA]
pg1-path=$RUN/pg/data
pg1-socket-path=$RUN/pg/sock
pg1-port=$PG_PORT
pg1-user=postgres
EOF
    chmod 0640 "$conf.new"
    replace_if_changed "$conf.new" "$conf"
    if ((IS_ROOT)); then
        # Not -R: what is inside was written by the cluster's user, and a
        # large repository would cost every start a walk over it.
        chown postgres:postgres "$dir" "$dir/repo" "$dir/log" "$dir/lock" "$conf"
    fi
}

# Postgres settings for WAL archiving, appended to stoa-dev.conf. A segment
# is closed at least every archive_timeout seconds when anything was
# written, which bounds the data a restore can lose (the RPO) to about a
# minute. The command copies nothing before the stanza exists (its
# archive.info is missing): failing instead would make Postgres retry the
# same segment every second and keep every WAL file until someone takes a
# backup.
pg_archive_settings() {
    local conf info pgbackrest
    conf=$(backup_conf_path)
    pgbackrest=$(command -v pgbackrest || printf pgbackrest)
    info=$RUN/backup/repo/archive/$BACKUP_STANZA/archive.info
    cat <<EOF
# WAL archiving into $RUN/backup (scripts/stack/backup.sh).
wal_level = replica
archive_mode = on
archive_timeout = 60
archive_command = '[ ! -f $info ] || exec $pgbackrest --config=$conf --stanza=$BACKUP_STANZA archive-push %p'
EOF
}
