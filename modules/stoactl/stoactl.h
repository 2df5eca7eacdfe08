/* stoactl.h - shared state of the operator CLI's commands. */
#ifndef STOACTL_H
#define STOACTL_H

#include "stoa/arena.h"
#include "stoa/conf.h"
#include "stoa/ctx.h"
#include "stoa/db.h"
#include "stoa/kv.h"

#include "statements.h"

/* The command's context is built by stoa_ctx_open like every program's,
 * with one connection of each kind; commands act through the library
 * (audit, revoke) with the actor "stoactl". */
typedef struct {
    stoa_ctx_t ctx;
    const stoa_conf_t *conf; /* &ctx.conf */
    stoa_conns_t conns;
    stoa_db_t *db;
    stoa_kv_t *kv;
    stoa_arena_t *arena;
    const char *config_path; /* the --config file (or run/stoa.conf); NULL */
} stoactl_t;

/* Each returns the process exit code: 0 ok, 1 failure, 2 usage,
 * 3 "already exists" where a command says so. */
int stoactl_migrate(stoactl_t *ctl, int argc, char **argv);
int stoactl_user(stoactl_t *ctl, int argc, char **argv);
int stoactl_keys(stoactl_t *ctl, int argc, char **argv);
int stoactl_jobs(stoactl_t *ctl, int argc, char **argv);
int stoactl_plan(stoactl_t *ctl, int argc, char **argv);
int stoactl_backup(stoactl_t *ctl, int argc, char **argv);
int stoactl_restore(stoactl_t *ctl, int argc, char **argv);
int stoactl_mfa(stoactl_t *ctl, int argc, char **argv);
int stoactl_replica(stoactl_t *ctl, int argc, char **argv);
int stoactl_failover(stoactl_t *ctl, int argc, char **argv);

/* The largest file a command reads (a migration, a password file) with
 * stoa_arena_read_file(). */
#define STOACTL_FILE_MAX (64u * 1024 * 1024)

#endif
