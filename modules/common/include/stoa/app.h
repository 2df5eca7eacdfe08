/* app.h - the skeleton every pool program runs.
 *
 * main() of a pool names its routes (the table scripts/gen-routes.py makes
 * from routes.manifest: stoa_routes below) and statements and calls
 * stoa_app_main(): config -> process context (log, pools of Postgres and
 * Redis connections) -> handler threads accepting FastCGI on fd 0 (the
 * socket spawn-fcgi hands over; fcgi.h) -> dispatch -> arena reset. Every
 * pool's manifest lists GET /v1/<name>/healthz and /v1/<name>/readyz,
 * served by the handlers below. SIGTERM drains the requests in flight,
 * then exits.
 *
 * Handlers run on several threads at once: they keep no static mutable
 * state; what a process shares (ctx->data) is read-only after init or
 * guarded by its own lock. */
#ifndef STOA_APP_H
#define STOA_APP_H

#include "stoa/conf.h"
#include "stoa/db.h"
#include "stoa/http.h"
#include "stoa/kv.h"

typedef struct stoa_app_s {
    const char *name; /* "auth": program stoa-auth, prefix /v1/auth */
    const stoa_route_t *routes;
    size_t nroutes;
    const stoa_db_statement_t *statements;
    size_t nstatements;
    /* Optional: runs once after the context is built. */
    int (*init)(stoa_ctx_t *ctx);
} stoa_app_t;

/* The program's route table, generated from routes.manifest into
 * build/.../gen/routes_<pool>.c and linked into stoa-<pool> only. */
extern const stoa_route_t stoa_routes[];
extern const size_t stoa_routes_len;

/* The probes every pool serves: liveness ({"status":"ok"}) and readiness
 * (Postgres, Redis and the outbox per kind; 503 when a dependency is
 * down). */
int stoa_app_healthz(stoa_request_t *req);
int stoa_app_readyz(stoa_request_t *req);

/* Parses --config FILE and --check-config, builds the context and serves
 * until SIGTERM. Returns the process exit code. */
int stoa_app_main(int argc, char **argv, const stoa_app_t *app);

/* The whole main() of a pool program: its name, its statement table (NULL,
 * 0 for none) and its init hook (NULL for none). A macro, not a function,
 * because each program must define the main symbol itself; the route table
 * is the generated one linked into that program only. */
#define STOA_APP_MAIN(pool_name, stmts, nstmts, init_fn)                       \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        stoa_app_t app = {.name = (pool_name),                                 \
                          .routes = stoa_routes,                               \
                          .nroutes = stoa_routes_len,                          \
                          .statements = (stmts),                               \
                          .nstatements = (nstmts),                             \
                          .init = (init_fn)};                                  \
        return stoa_app_main(argc, argv, &app);                                \
    }

/* Handles one request already filled from the transport (exposed so tests
 * and benches can drive the dispatcher without a socket). */
void stoa_app_dispatch(stoa_ctx_t *ctx, stoa_request_t *req,
                       const stoa_route_t *routes, size_t nroutes);

#endif
