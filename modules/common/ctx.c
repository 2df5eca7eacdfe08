/* ctx.c - the connection pools of the process context: a stack of idle
 * handles under one mutex, and a condition variable for the threads that
 * wait when every handle is out; the Redis handles share one circuit
 * breaker (kv.h), so one timeout spares every thread the next. */
#include "stoa/ctx.h"

#include "stoa/accounts.h"
#include "stoa/audit.h"
#include "stoa/events.h"
#include "stoa/gdpr.h"
#include "stoa/hostcache.h"
#include "stoa/idempotency.h"
#include "stoa/log.h"
#include "stoa/metrics.h"
#include "stoa/outbox.h"
#include "stoa/revoke.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct stoa_conn_pool_s {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    void **idle; /* a stack: the most recently used (warmest) on top */
    size_t nidle;
    size_t size;
    void **all; /* for freeing */
    void (*free_handle)(void *);
    stoa_kv_breaker_t *breaker; /* Redis pools: shared by every handle */
};

static void free_db(void *h)
{
    stoa_db_free(h);
}
static void free_kv(void *h)
{
    stoa_kv_free(h);
}

/* While the breaker was open, revocation markers were skipped at once
 * (revoke.c could not drop the sentinel either): a session revoked then
 * would pass once Redis answers. Drop the sentinel first, so checks ask
 * Postgres until the re-sync job has put every marker back. */
static void kv_breaker_closed(stoa_kv_t *kv, void *arg)
{
    (void)arg;
    if (stoa_kv_del(kv, STOA_REVOKE_SYNCED_KEY) != STOA_OK)
        stoa_log(STOA_LOG_ERR, "could not clear the revocation sentinel");
}

static stoa_conn_pool_t *pool_new(size_t size, void (*free_handle)(void *))
{
    stoa_conn_pool_t *p = stoa_xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->freed, &attr);
    pthread_condattr_destroy(&attr);
    p->idle = stoa_xcalloc(size, sizeof(void *));
    p->all = stoa_xcalloc(size, sizeof(void *));
    p->free_handle = free_handle;
    return p;
}

static void pool_add(stoa_conn_pool_t *p, void *h)
{
    p->all[p->size++] = h;
    p->idle[p->nidle++] = h;
}

static void pool_free(stoa_conn_pool_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->size; i++)
        p->free_handle(p->all[i]);
    stoa_kv_breaker_free(p->breaker);
    free(p->idle);
    free(p->all);
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static void *pool_take(stoa_conn_pool_t *p, long wait_ms, stoa_metric_t waits)
{
    pthread_mutex_lock(&p->lock);
    if (p->nidle == 0) {
        stoa_metrics_count(waits);
        struct timespec until = stoa_deadline_ms(CLOCK_MONOTONIC, wait_ms);
        while (p->nidle == 0)
            if (pthread_cond_timedwait(&p->freed, &p->lock, &until) ==
                ETIMEDOUT)
                break;
    }
    void *h = p->nidle ? p->idle[--p->nidle] : NULL;
    pthread_mutex_unlock(&p->lock);
    return h;
}

static void pool_give(stoa_conn_pool_t *p, void *h)
{
    pthread_mutex_lock(&p->lock);
    STOA_ASSERT(p->nidle < p->size);
    p->idle[p->nidle++] = h;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

int stoa_ctx_pools_open(stoa_ctx_t *ctx, const stoa_db_table_t *tables,
                        size_t ntables, size_t db_size, size_t kv_size,
                        char *err, size_t errlen)
{
    STOA_ASSERT(ntables <= STOA_CTX_TABLES);
    if (tables != ctx->tables) {
        memcpy(ctx->tables, tables, ntables * sizeof(*tables));
        ctx->ntables = ntables;
    }
    const stoa_conf_t *c = &ctx->conf;
    stoa_conn_pool_t *kv = pool_new(kv_size, free_kv);
    kv->breaker = stoa_kv_breaker_new();
    stoa_kv_breaker_on_close(kv->breaker, kv_breaker_closed, NULL);
    for (size_t i = 0; i < kv_size; i++) {
        stoa_kv_t *h = stoa_kv_new(c->redis_url, c->redis_timeout_ms);
        if (!h) {
            snprintf(err, errlen, "redis_url is malformed");
            pool_free(kv);
            return STOA_ERROR;
        }
        stoa_kv_share_breaker(h, kv->breaker);
        pool_add(kv, h);
    }
    stoa_conn_pool_t *db = pool_new(db_size, free_db);
    for (size_t i = 0; i < db_size; i++)
        pool_add(db, stoa_db_new(c->database_url, ctx->tables, ctx->ntables,
                                 c->db_statement_timeout_ms,
                                 c->db_connect_timeout_s));
    ctx->db_pool = db;
    ctx->kv_pool = kv;
    return STOA_OK;
}

void stoa_ctx_pools_close(stoa_ctx_t *ctx)
{
    pool_free(ctx->db_pool);
    pool_free(ctx->kv_pool);
    ctx->db_pool = ctx->kv_pool = NULL;
}

stoa_db_t *stoa_ctx_db_take(stoa_ctx_t *ctx, long wait_ms)
{
    return pool_take(ctx->db_pool, wait_ms, STOA_METRIC_PG_POOL_WAITS);
}

void stoa_ctx_db_give(stoa_ctx_t *ctx, stoa_db_t *db)
{
    if (!db)
        return;
    /* No transaction, and no data exception (db.h), outlives its taker. */
    stoa_db_rollback(db);
    stoa_db_clear_data_exception(db);
    pool_give(ctx->db_pool, db);
}

stoa_kv_t *stoa_ctx_kv_take(stoa_ctx_t *ctx, long wait_ms)
{
    return pool_take(ctx->kv_pool, wait_ms, STOA_METRIC_REDIS_POOL_WAITS);
}

void stoa_ctx_kv_give(stoa_ctx_t *ctx, stoa_kv_t *kv)
{
    if (kv)
        pool_give(ctx->kv_pool, kv);
}

int stoa_ctx_open(stoa_ctx_t *ctx, const char *program, const char *config_path,
                  const stoa_db_statement_t *statements, size_t nstatements,
                  size_t db_size, size_t kv_size, unsigned flags, char *err,
                  size_t errlen)
{
    snprintf(ctx->program, sizeof(ctx->program), "%s", program);
    char why[512];
    if (stoa_conf_load(&ctx->conf, config_path, why, sizeof(why)) != STOA_OK) {
        snprintf(err, errlen, "configuration error: %s", why);
        stoa_conf_free(&ctx->conf);
        return STOA_ERROR;
    }
    stoa_kv_t *probe =
        stoa_kv_new(ctx->conf.redis_url, ctx->conf.redis_timeout_ms);
    if (!probe) {
        snprintf(err, errlen, "configuration error: redis_url is malformed");
        stoa_conf_free(&ctx->conf);
        return STOA_ERROR;
    }
    stoa_kv_free(probe);
    if (flags & STOA_CTX_CHECK_ONLY)
        return STOA_OK;
    const char *dir = (flags & STOA_CTX_LOG_STDERR) ? "-" : ctx->conf.log_dir;
    if (stoa_log_open(program, dir, (int)ctx->conf.log_level) != STOA_OK) {
        snprintf(err, errlen, "cannot open log in %s", ctx->conf.log_dir);
        stoa_conf_free(&ctx->conf);
        return STOA_ERROR;
    }
    /* The library's own statements are prepared alongside the program's,
     * on every connection. */
    const stoa_db_table_t tables[STOA_CTX_TABLES] = {
        {stoa_outbox_statements, stoa_outbox_statements_len},
        {stoa_audit_statements, stoa_audit_statements_len},
        {stoa_revoke_statements, stoa_revoke_statements_len},
        {stoa_idempotency_statements, stoa_idempotency_statements_len},
        {stoa_event_statements, stoa_event_statements_len},
        {stoa_gdpr_statements, stoa_gdpr_statements_len},
        {stoa_accounts_statements, stoa_accounts_statements_len},
        {statements, nstatements},
    };
    if (stoa_db_check_tables(tables, STOA_CTX_TABLES, why, sizeof(why)) !=
        STOA_OK) {
        stoa_log(STOA_LOG_CRIT, "statement table error: %s", why);
        snprintf(err, errlen, "statement table error: %s", why);
        stoa_log_close();
        stoa_conf_free(&ctx->conf);
        return STOA_ERROR;
    }
    if (flags & STOA_CTX_NO_TIMEOUT)
        ctx->conf.db_statement_timeout_ms = 0;
    if (!db_size)
        db_size = (size_t)ctx->conf.db_pool_size;
    if (!kv_size)
        kv_size = (size_t)ctx->conf.redis_pool_size;
    if (stoa_ctx_pools_open(ctx, tables, STOA_CTX_TABLES, db_size, kv_size, err,
                            errlen) != STOA_OK) {
        stoa_conf_free(&ctx->conf);
        return STOA_ERROR;
    }
    if (ctx->conf.host_cache_file[0] &&
        stoa_hostcache_open(ctx->conf.host_cache_file, &ctx->hostcache, err,
                            errlen) != STOA_OK) {
        stoa_ctx_pools_close(ctx);
        stoa_conf_free(&ctx->conf);
        return STOA_ERROR;
    }
    return STOA_OK;
}

void stoa_ctx_close(stoa_ctx_t *ctx)
{
    stoa_hostcache_close(ctx->hostcache);
    ctx->hostcache = NULL;
    stoa_ctx_pools_close(ctx);
    stoa_conf_free(&ctx->conf);
    stoa_log_close();
}

stoa_db_t *stoa_conns_db(stoa_conns_t *c)
{
    if (!c->db && !c->db_unavailable) {
        c->db = stoa_ctx_db_take(c->ctx, STOA_CTX_WAIT_MS);
        if (!c->db) {
            c->db_unavailable = true;
            stoa_log(STOA_LOG_ERR, "no free Postgres connection in %d ms",
                     STOA_CTX_WAIT_MS);
        }
    }
    return c->db;
}

stoa_kv_t *stoa_conns_kv(stoa_conns_t *c)
{
    if (!c->kv && !c->kv_unavailable) {
        c->kv = stoa_ctx_kv_take(c->ctx, STOA_CTX_WAIT_MS);
        if (!c->kv) {
            c->kv_unavailable = true;
            stoa_log(STOA_LOG_ERR, "no free Redis connection in %d ms",
                     STOA_CTX_WAIT_MS);
        }
    }
    return c->kv;
}

void stoa_conns_release(stoa_conns_t *c)
{
    stoa_ctx_db_give(c->ctx, c->db);
    c->db = NULL;
    stoa_ctx_kv_give(c->ctx, c->kv);
    c->kv = NULL;
    c->db_unavailable = c->kv_unavailable = false;
}
