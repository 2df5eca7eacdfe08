/* ctx.h - the process context, below every part that does I/O: the
 * configuration, the program's name and the pools of Postgres and Redis
 * connections that a process's threads share.
 *
 * A pool process runs several handler threads (fcgi.h); a thread takes a
 * connection from its pool for the work that needs one and gives it back
 * when the request ends, so a request that touches neither Postgres nor
 * Redis holds none and a process needs far fewer connections than threads.
 * The jobs worker and stoactl build the same context and call the same
 * parts (audit, revoke, outbox, idempotency) with it.
 *
 * Ownership: the context owns the pools and every connection in them; a
 * connection taken with stoa_ctx_db_take() is the taker's alone until it
 * is given back with stoa_ctx_db_give(). */
#ifndef STOA_CTX_H
#define STOA_CTX_H

#include "stoa/conf.h"
#include "stoa/db.h"
#include "stoa/kv.h"

/* How long a thread waits for a free connection before the request is
 * answered 503: a pool that is this busy is overloaded, not slow. */
#define STOA_CTX_WAIT_MS 2000

typedef struct stoa_conn_pool_s stoa_conn_pool_t;

/* The library's statement tables (outbox, audit, revoke, idempotency,
 * accounts, events, gdpr) and a program's. */
#define STOA_CTX_TABLES 8
struct stoa_app_s;

typedef struct stoa_ctx_s {
    const struct stoa_app_s *app; /* pools only; NULL elsewhere */
    char program[64];             /* "stoa-auth", "stoa-jobs", "stoactl" */
    stoa_conf_t conf;
    stoa_conn_pool_t *db_pool;
    stoa_conn_pool_t *kv_pool;
    /* What every connection prepares: the library's tables, then the
     * program's own (checked at start-up, stoa_db_check_tables). */
    stoa_db_table_t tables[STOA_CTX_TABLES];
    size_t ntables;
    /* Copies of small answers, correct across the host's processes
     * (hostcache.h); NULL without host_cache_file. */
    struct stoa_hostcache_s *hostcache;
    void *data; /* the program's own process state */
} stoa_ctx_t;

/* Who acts, for the parts that record or revoke on someone's behalf:
 * audit entries, revocations, idempotency records. All fields borrowed and
 * may be NULL (the jobs worker and stoactl act without an address). */
typedef struct {
    const char *user_id;    /* the acting user; NULL: the system */
    const char *label;      /* a non-user actor ("stoactl", "jobs") */
    const char *address;    /* client address */
    const char *request_id; /* for the log and the audit trail */
} stoa_actor_t;

/* The one start-up of every program (pools, stoa-jobs, stoactl): loads
 * the configuration (config_path NULL: defaults and STOA_* only), checks
 * it, opens the log (<log_dir>/<program>.log, or standard error with
 * STOA_CTX_LOG_STDERR) and builds the pools, whose connections prepare the
 * library's statements (outbox, audit, revoke, idempotency) and then
 * `statements` (the program's own table of nstatements; borrowed, must
 * outlive the context), after checking every table (stoa_db_check_tables:
 * a statement whose parameters do not add up stops the start, logged).
 * db_size and kv_size 0 take the configuration's db_pool_size and
 * redis_pool_size. With STOA_CTX_CHECK_ONLY it stops after the checks
 * (nothing to close but the configuration). STOA_OK, or
 * STOA_ERROR with a message for the operator in err. */
#define STOA_CTX_LOG_STDERR 1u
#define STOA_CTX_CHECK_ONLY 2u
/* Tools (migrations): no statement_timeout on the connections. */
#define STOA_CTX_NO_TIMEOUT 4u
STOA_MUSTCHECK int stoa_ctx_open(stoa_ctx_t *ctx, const char *program,
                                 const char *config_path,
                                 const stoa_db_statement_t *statements,
                                 size_t nstatements, size_t db_size,
                                 size_t kv_size, unsigned flags, char *err,
                                 size_t errlen);
/* Frees what stoa_ctx_open made (no connection may be out). */
void stoa_ctx_close(stoa_ctx_t *ctx);

/* Builds the pools of ctx->conf (db_pool_size and redis_pool_size
 * connections; none connects yet) with the statement tables every
 * connection prepares (copied; their lists are borrowed and must outlive
 * the context). STOA_OK, or STOA_ERROR with a message in err when
 * redis_url is malformed. */
STOA_MUSTCHECK int stoa_ctx_pools_open(stoa_ctx_t *ctx,
                                       const stoa_db_table_t *tables,
                                       size_t ntables, size_t db_size,
                                       size_t kv_size, char *err,
                                       size_t errlen);
/* Frees both pools and their connections: call when no thread holds one. */
void stoa_ctx_pools_close(stoa_ctx_t *ctx);

/* Takes an idle connection, waiting at most wait_ms for one to be given
 * back; NULL when none became free (answer 503). The connection may be
 * disconnected: its own calls connect and report STOA_AGAIN as usual. */
stoa_db_t *stoa_ctx_db_take(stoa_ctx_t *ctx, long wait_ms);
/* Gives a connection back (rolling back a transaction left open). NULL is
 * ignored. */
void stoa_ctx_db_give(stoa_ctx_t *ctx, stoa_db_t *db);
stoa_kv_t *stoa_ctx_kv_take(stoa_ctx_t *ctx, long wait_ms);
void stoa_ctx_kv_give(stoa_ctx_t *ctx, stoa_kv_t *kv);

/* The connections one unit of work holds (a request, a job, a command):
 * taken from the context's pools at first use, the same one until
 * stoa_conns_release(). The parts that do I/O (revoke, idempotency) take
 * this, so they need neither a request nor a connection they may not use.
 * Zero-initialise, then set ctx. */
typedef struct {
    stoa_ctx_t *ctx;
    stoa_db_t *db;
    stoa_kv_t *kv;
    bool db_unavailable, kv_unavailable; /* the pool had none to give */
} stoa_conns_t;

/* The held Postgres connection, taken now if none is held yet; NULL when
 * the pool had none within STOA_CTX_WAIT_MS (every stoa_db_ call then
 * answers STOA_AGAIN, and later calls do not wait again). */
stoa_db_t *stoa_conns_db(stoa_conns_t *c);
/* The same for Redis: NULL acts as Redis being down. */
stoa_kv_t *stoa_conns_kv(stoa_conns_t *c);
/* Gives both back; the record may be used again. */
void stoa_conns_release(stoa_conns_t *c);

#endif
