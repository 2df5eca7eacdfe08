/* stoactl.h - shared state of the operator CLI's commands. */
#ifndef STOACTL_H
#define STOACTL_H

#include "stoa/arena.h"
#include "stoa/conf.h"
#include "stoa/db.h"
#include "stoa/kv.h"

typedef struct {
    stoa_conf_t conf;
    stoa_db_t *db;
    stoa_kv_t *kv; /* NULL when redis_url is malformed */
    stoa_arena_t *arena;
} stoactl_t;

/* Each returns the process exit code: 0 ok, 1 failure, 2 usage,
 * 3 "already exists" where a command says so. */
int stoactl_migrate(stoactl_t *ctl, int argc, char **argv);
int stoactl_user(stoactl_t *ctl, int argc, char **argv);
int stoactl_keys(stoactl_t *ctl, int argc, char **argv);
int stoactl_jobs(stoactl_t *ctl, int argc, char **argv);
int stoactl_plan(stoactl_t *ctl, int argc, char **argv);

/* Reads a whole file into the arena (NUL-terminated); NULL on error. */
char *stoactl_read_file(stoa_arena_t *arena, const char *path, size_t *len);

#endif
