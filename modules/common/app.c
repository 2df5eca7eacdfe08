/* app.c - the pool program skeleton: config, process context, dispatch
 * and the health routes; the FastCGI transport is fcgi.c. */
#include "stoa/app.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stoa/audit.h"
#include "stoa/crypto.h"
#include "stoa/fcgi.h"
#include "stoa/format.h"
#include "stoa/idempotency.h"
#include "stoa/log.h"
#include "stoa/metrics.h"
#include "stoa/outbox.h"
#include "stoa/revoke.h"

int stoa_app_healthz(stoa_request_t *req)
{
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "status", "ok");
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

int stoa_app_readyz(stoa_request_t *req)
{
    int db = stoa_db_ping(stoa_request_db(req));
    int kv = stoa_kv_ping(stoa_request_kv(req));
    const char *pg_state = db == STOA_OK ? "ok" : "down";
    const char *kv_state = kv == STOA_OK ? "ok" : "down";
    if (db != STOA_OK || kv != STOA_OK) {
        stoa_jw_t *d = stoa_jw_arena(req->arena);
        stoa_jw_object_open(d);
        stoa_jw_kv_string(d, "postgres", pg_state);
        stoa_jw_kv_string(d, "redis", kv_state);
        stoa_jw_object_close(d);
        stoa_http_fail_details(req, STOA_ERR_UNAVAILABLE, "not ready",
                               stoa_jw_arena_text(req->arena, d));
        return STOA_OK;
    }
    stoa_db_result_t *jobs = NULL;
    if (stoa_db_exec(stoa_request_db(req), req->arena,
                     STOA_OUTBOX_SQL(JOB_COUNTS), NULL, &jobs) != STOA_OK)
        jobs = NULL;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "status", "ready");
    stoa_jw_key(w, "checks");
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "postgres", pg_state);
    stoa_jw_kv_string(w, "redis", kv_state);
    stoa_jw_object_close(w);
    /* Open outbox jobs per kind: a growing queue or dead jobs show here. */
    stoa_jw_key(w, "jobs");
    stoa_jw_object_open(w);
    for (int i = 0; i < stoa_db_rows(jobs); i++) {
        stoa_jw_key(w, stoa_db_value(jobs, i, STOA_OUTBOX_COUNTS_COL_KIND));
        stoa_jw_object_open(w);
        stoa_jw_kv_integer(
            w, "queued",
            atoll(stoa_db_value(jobs, i, STOA_OUTBOX_COUNTS_COL_QUEUED)));
        stoa_jw_kv_integer(
            w, "running",
            atoll(stoa_db_value(jobs, i, STOA_OUTBOX_COUNTS_COL_RUNNING)));
        stoa_jw_kv_integer(
            w, "dead",
            atoll(stoa_db_value(jobs, i, STOA_OUTBOX_COUNTS_COL_DEAD)));
        stoa_jw_object_close(w);
    }
    stoa_jw_object_close(w);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

/* The admission gate of STOA_ROUTE_HASHES routes: at most `capacity`
 * such requests are inside at once in a process (the hash itself runs one
 * at a time, password.c, and they queue there); the rest are shed at once
 * with 503. Handler threads beyond those stay free for every other route,
 * whatever the storm. */
static struct {
    pthread_mutex_t lock;
    long running, capacity;
} gate = {PTHREAD_MUTEX_INITIALIZER, 0, 4};

static bool gate_enter(void)
{
    pthread_mutex_lock(&gate.lock);
    bool in = gate.running < gate.capacity;
    if (in)
        gate.running++;
    pthread_mutex_unlock(&gate.lock);
    return in;
}

static void gate_leave(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.running--;
    pthread_mutex_unlock(&gate.lock);
}

/* Postgres refused a value of the request as its type (a data exception,
 * db.h): the client's mistake, so 400 by field when the handler named it,
 * else a general 400. Never the value itself in the log: it may be a
 * secret. */
static void answer_data_exception(stoa_request_t *req)
{
    stoa_db_t *db = req->conns.db;
    const char *field = stoa_db_data_exception_field(db);
    stoa_log(STOA_LOG_NOTICE, "%s %s: a value was refused by Postgres (%s)",
             req->route->method, req->route->pattern, stoa_db_sqlstate(db));
    if (field) {
        stoa_buf_reset(&req->field_errors);
        stoa_request_field_error(req, field, "invalid");
        stoa_http_invalid_fields(req);
    } else {
        stoa_http_fail(req, STOA_ERR_INVALID_REQUEST,
                       "a value in the request is malformed or out of range");
    }
}

/* Idempotency-Key handling around a STOA_ROUTE_IDEMPOTENT handler
 * (idempotency.h): keys are scoped to the caller's session (a stored
 * answer may hold a one-time secret: another session of the same user,
 * guessing the key, must not read it back), else the user, else the
 * client address. */
static void idem_call(stoa_request_t *req, stoa_idem_call_t *call)
{
    const stoa_principal_t *p = &req->principal;
    call->key = req->idempotency_key;
    if (p->present && p->session_id)
        call->scope = stoa_arena_sprintf(req->arena, "session:%s:%s",
                                         p->user_id, p->session_id);
    else if (p->present)
        call->scope = stoa_arena_sprintf(req->arena, "user:%s", p->user_id);
    else
        call->scope = stoa_arena_sprintf(
            req->arena, "ip:%s", req->remote_addr ? req->remote_addr : "-");
    call->hash = stoa_idempotency_hash(req->arena, req->method, req->path,
                                       req->body, req->body_len);
    call->seal_key = req->ctx->conf.idempotency_seal_key;
}

/* STOA_OK: run the handler (*claimed when a key was claimed);
 * STOA_DECLINED: answered (replay or refusal); STOA_AGAIN/ERROR. */
static int idempotency_begin(stoa_request_t *req, stoa_idem_call_t *call,
                             bool *claimed)
{
    *claimed = false;
    if (!req->idempotency_key)
        return STOA_OK;
    if (!stoa_idempotency_key_sane(req->idempotency_key)) {
        stoa_request_field_error(req, "Idempotency-Key", "invalid");
        stoa_http_invalid_fields(req);
        return STOA_DECLINED;
    }
    idem_call(req, call);
    stoa_idem_outcome_t out;
    int rc =
        stoa_idempotency_claim(stoa_request_db(req), req->arena, call, &out);
    if (rc != STOA_OK)
        return rc;
    switch (out.state) {
    case STOA_IDEM_RUN:
        *claimed = true;
        return STOA_OK;
    case STOA_IDEM_REUSED:
        stoa_http_fail(req, STOA_ERR_IDEMPOTENCY_KEY_REUSED,
                       "this Idempotency-Key was used with another request");
        break;
    case STOA_IDEM_RUNNING:
        stoa_http_fail(req, STOA_ERR_IDEMPOTENCY_IN_PROGRESS,
                       "a request with this Idempotency-Key is still running");
        break;
    case STOA_IDEM_LOST:
        stoa_http_fail(req, STOA_ERR_IDEMPOTENCY_REPLAY_UNAVAILABLE,
                       "the request with this Idempotency-Key was done, but "
                       "its answer was not kept; use a new key to run it "
                       "again");
        break;
    case STOA_IDEM_REPLAY:
        stoa_http_raw_json(req, out.status, out.body, out.body_len);
        stoa_wipe(out.body, out.body_len);
        stoa_http_header(req, "Idempotent-Replayed", "true");
        break;
    }
    return STOA_DECLINED;
}

static void idempotency_end(stoa_request_t *req, const stoa_idem_call_t *call)
{
    int status = req->responded ? req->status : 0;
    if (stoa_idempotency_finish(stoa_request_db(req), req->arena, call, status,
                                req->body_out.data ? req->body_out.data : "",
                                req->body_out.len) != STOA_OK)
        stoa_log(STOA_LOG_ERR, "idempotency record not updated");
}

void stoa_app_dispatch(stoa_ctx_t *ctx, stoa_request_t *req,
                       const stoa_route_t *routes, size_t nroutes)
{
    const char *allow = NULL;
    int idx = stoa_router_match(req, routes, nroutes, &allow);
    if (idx == -404) {
        stoa_http_fail(req, STOA_ERR_NOT_FOUND, NULL);
        return;
    }
    if (idx == -405) {
        stoa_http_header(req, "Allow", allow);
        stoa_http_fail(req, STOA_ERR_METHOD_NOT_ALLOWED, NULL);
        return;
    }
    const stoa_route_t *route = &routes[idx];
    req->route = route;
    /* Balanced by request_done (the transport's done hook) */
    stoa_metrics_request_begin((size_t)idx);
    if (route->flags & (STOA_ROUTE_AUTH | STOA_ROUTE_LOGIN)) {
        if (!req->principal.present) {
            stoa_http_header(req, "WWW-Authenticate", "Bearer");
            stoa_http_fail(req, STOA_ERR_UNAUTHENTICATED, NULL);
            return;
        }
        req->conns.ctx = ctx;
        int live = stoa_revoke_check(&req->conns, req->arena, &req->principal);
        if (live == STOA_AGAIN) {
            stoa_http_fail(req, STOA_ERR_UNAVAILABLE, NULL);
            return;
        }
        if (live != STOA_OK) {
            stoa_http_header(req, "WWW-Authenticate",
                             "Bearer error=\"invalid_token\"");
            stoa_http_fail(req, STOA_ERR_UNAUTHENTICATED,
                           "the session has been revoked");
            return;
        }
        if (!stoa_principal_has_role(&req->principal, route->roles)) {
            stoa_http_fail(req, STOA_ERR_FORBIDDEN, NULL);
            return;
        }
        if (!stoa_principal_scope_allows(&req->principal, route->scope,
                                         req->method)) {
            stoa_http_fail(req, STOA_ERR_INSUFFICIENT_SCOPE,
                           "this token's scopes do not cover this route");
            return;
        }
        if ((route->flags & STOA_ROUTE_LOGIN) &&
            stoa_principal_from_api_key(&req->principal)) {
            stoa_http_fail(req, STOA_ERR_FORBIDDEN,
                           "a token from an API key cannot manage "
                           "credentials; sign in");
            return;
        }
    }
    bool gated = false;
    if (route->flags & STOA_ROUTE_HASHES) {
        if (!gate_enter()) {
            stoa_http_header(req, "Retry-After", "1");
            stoa_http_fail(req, STOA_ERR_UNAVAILABLE,
                           "too many password checks at once; retry");
            return;
        }
        gated = true;
    }
    bool claimed = false;
    stoa_idem_call_t idem_record;
    if (route->flags & STOA_ROUTE_IDEMPOTENT) {
        int idem = idempotency_begin(req, &idem_record, &claimed);
        if (idem == STOA_DECLINED) {
            if (gated)
                gate_leave();
            return;
        }
        if (idem != STOA_OK) {
            stoa_http_fail(req, STOA_ERR_UNAVAILABLE, NULL);
            if (gated)
                gate_leave();
            return;
        }
    }
    int rc = route->handler(req);
    /* Whatever the handler did, no transaction outlives its request (a
     * no-op, without a round trip, when none is open). */
    if (req->conns.db)
        stoa_db_rollback(req->conns.db);
    if (rc == STOA_AGAIN) {
        /* Keep a specific 503 the handler wrote (its own code). */
        if (!req->responded || req->status != 503)
            stoa_http_fail(req, STOA_ERR_UNAVAILABLE, NULL);
    } else if (rc == STOA_ERROR || !req->responded) {
        if (stoa_db_data_exception(req->conns.db)) {
            answer_data_exception(req);
        } else if (!req->responded || req->status < 500) {
            stoa_log(STOA_LOG_ERR, "handler for %s %s failed", route->method,
                     route->pattern);
            stoa_http_fail(req, STOA_ERR_INTERNAL, NULL);
        }
    }
    if (claimed)
        idempotency_end(req, &idem_record);
    if (gated)
        gate_leave();
}

typedef struct {
    const stoa_app_t *app;
    const stoa_route_t *routes;
    size_t nroutes;
} app_server_t;

static void serve_one(stoa_ctx_t *ctx, stoa_request_t *req, void *arg)
{
    const app_server_t *srv = arg;
    stoa_app_dispatch(ctx, req, srv->routes, srv->nroutes);
}

/* Routes flagged STOA_ROUTE_BULK take the larger body limit (event
 * batches); the rest, and paths that match no route, the ordinary one. */
static long body_cap(stoa_ctx_t *ctx, const stoa_request_t *req, void *arg)
{
    const app_server_t *srv = arg;
    for (size_t i = 0; i < srv->nroutes; i++)
        if ((srv->routes[i].flags & STOA_ROUTE_BULK) &&
            strcmp(srv->routes[i].method, req->method) == 0 &&
            stoa_route_pattern_matches(srv->routes[i].pattern, req->path))
            return ctx->conf.max_event_body_bytes;
    return ctx->conf.max_body_bytes;
}

/* Counts the request under its route's pattern, never its path: the
 * cardinality of the metrics is the route table's. */
static void request_done(const stoa_request_t *req, uint64_t latency_us,
                         void *arg)
{
    const app_server_t *srv = arg;
    size_t row = STOA_METRICS_UNMATCHED;
    if (req->route && req->route >= srv->routes &&
        req->route < srv->routes + srv->nroutes)
        row = (size_t)(req->route - srv->routes);
    stoa_metrics_request_end(row, req->status, latency_us);
}

/* The pool's segment (metrics.h), labelled with its route table. */
static void metrics_open(stoa_ctx_t *ctx, const stoa_app_t *app)
{
    if (!*ctx->conf.metrics_dir)
        return;
    const char **methods = stoa_xcalloc(app->nroutes + 1, sizeof(char *));
    const char **patterns = stoa_xcalloc(app->nroutes + 1, sizeof(char *));
    for (size_t i = 0; i < app->nroutes; i++) {
        methods[i] = app->routes[i].method;
        patterns[i] = app->routes[i].pattern;
    }
    stoa_metrics_labels_t labels = {methods, patterns, app->nroutes, NULL, 0};
    char err[512];
    if (stoa_metrics_open(ctx->conf.metrics_dir, app->name, &labels, err,
                          sizeof(err)) != STOA_OK)
        stoa_log(STOA_LOG_ERR, "metrics are off: %s", err);
    free(methods);
    free(patterns);
}

static void usage(const char *program)
{
    fprintf(stderr,
            "usage: %s [--config FILE] [--check-config] [--routes]\n"
            "Serves FastCGI on the socket passed as file descriptor 0.\n"
            "--routes prints the route table the program was built with.\n",
            program);
}

/* One line a route: method, pattern, access, roles, flags, scope, as the
 * manifest spells them, so a test can hold the built program to it. */
static void print_routes(const stoa_app_t *app)
{
    for (size_t i = 0; i < app->nroutes; i++) {
        const stoa_route_t *r = &app->routes[i];
        const char *access = (r->flags & STOA_ROUTE_LOGIN)  ? "login"
                             : (r->flags & STOA_ROUTE_AUTH) ? "user"
                                                            : "public";
        char roles[128] = "-", flags[64] = "";
        if (r->roles) {
            snprintf(roles, sizeof(roles), "%s", r->roles);
            for (char *c = roles; *c; c++)
                if (*c == ' ')
                    *c = ',';
        }
        static const struct {
            unsigned bit;
            const char *name;
        } names[] = {{STOA_ROUTE_IDEMPOTENT, "idempotent"},
                     {STOA_ROUTE_HASHES, "hashes"},
                     {STOA_ROUTE_BULK, "bulk"}};
        for (size_t k = 0; k < STOA_ARRAY_LEN(names); k++)
            if (r->flags & names[k].bit) {
                size_t n = strlen(flags);
                snprintf(flags + n, sizeof(flags) - n, "%s%s", n ? "," : "",
                         names[k].name);
            }
        printf("%s %s %s %s %s %s\n", r->method, r->pattern, access, roles,
               flags[0] ? flags : "-", r->scope ? r->scope : "-");
    }
}

int stoa_app_main(int argc, char **argv, const stoa_app_t *app)
{
    const char *config = NULL;
    bool check_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = true;
        } else if (strcmp(argv[i], "--routes") == 0) {
            print_routes(app);
            return 0;
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    static stoa_ctx_t ctx;
    ctx.app = app;
    char program[64], err[512];
    snprintf(program, sizeof(program), "stoa-%s", app->name);
    if (stoa_ctx_open(&ctx, program, config, app->statements, app->nstatements,
                      0, 0, check_only ? STOA_CTX_CHECK_ONLY : 0, err,
                      sizeof(err)) != STOA_OK) {
        fprintf(stderr, "%s: %s\n", program, err);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration ok\n", program);
        stoa_conf_free(&ctx.conf);
        return 0;
    }
    /* Connect one of each eagerly so the first request does not pay for
     * it; an outage now is not fatal: requests answer 503 until it ends. */
    stoa_db_t *db = stoa_ctx_db_take(&ctx, 0);
    if (stoa_db_connect(db) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "postgres not reachable at start");
    stoa_ctx_db_give(&ctx, db);
    stoa_kv_t *kv = stoa_ctx_kv_take(&ctx, 0);
    if (stoa_kv_ping(kv) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "redis not reachable at start");
    stoa_ctx_kv_give(&ctx, kv);
    if (app->init && app->init(&ctx) != STOA_OK) {
        stoa_log(STOA_LOG_CRIT, "initialisation failed");
        return 1;
    }
    /* Large buffers (Argon2id's, ~19 MiB a hash) always come from mmap
     * and go back to the system when freed: a fixed threshold stops glibc
     * from raising it after the first free and keeping such buffers in
     * the heap; two malloc arenas keep threads from each growing one. */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    mallopt(M_ARENA_MAX, 2);
    /* All threads but two at most in password routes (queued at the hash,
     * password.c): two always serve everything else, which takes them
     * microseconds (idle kept connections wait in epoll, not in threads:
     * fcgi.h). */
    gate.capacity = ctx.conf.pool_threads - 2;
    if (gate.capacity < 1)
        gate.capacity = 1;
    static app_server_t server;
    server.app = app;
    server.routes = app->routes;
    server.nroutes = app->nroutes;
    metrics_open(&ctx, app);
    static const stoa_fcgi_handler_t handler = {serve_one, body_cap, &server,
                                                request_done};
    return stoa_fcgi_serve(&ctx, (size_t)ctx.conf.pool_threads, &handler);
}
