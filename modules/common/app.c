/* app.c - the pool program skeleton: config, process context, the FastCGI
 * accept loop, dispatch, response writing and health routes. */
#include "stoa/app.h"

#include <errno.h>
#include <fcgiapp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stoa/crypto.h"
#include "stoa/format.h"
#include "stoa/log.h"
#include "stoa/audit.h"
#include "stoa/idempotency.h"
#include "stoa/outbox.h"
#include "stoa/revoke.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t in_request;

/* libfcgi's blocking accept and reads ignore SIGTERM, so the handler
 * leaves at once when no request is being served; otherwise the loop
 * exits after the response in flight. */
static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
    if (!in_request)
        _exit(0);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

const char *stoa_request_param(const stoa_request_t *req, const char *name)
{
    FCGX_Request *fr = req->transport;
    return fr ? FCGX_GetParam(name, fr->envp) : NULL;
}

static int health(stoa_request_t *req)
{
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "status", "ok");
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

static int ready(stoa_request_t *req)
{
    int db = stoa_db_ping(req->ctx->db);
    int kv = stoa_kv_ping(req->ctx->kv);
    const char *pg_state = db == STOA_OK ? "ok" : "down";
    const char *kv_state = kv == STOA_OK ? "ok" : "down";
    if (db != STOA_OK || kv != STOA_OK) {
        char *details = stoa_arena_sprintf(
            req->arena, "{\"postgres\":\"%s\",\"redis\":\"%s\"}", pg_state,
            kv_state);
        stoa_http_error_details(req, 503, "unavailable", "not ready", details);
        return STOA_OK;
    }
    stoa_db_result_t *jobs = NULL;
    if (stoa_db_exec(req->ctx->db, req->arena, "outbox_counts", NULL, &jobs) !=
        STOA_OK)
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
        stoa_jw_key(w, stoa_db_value(jobs, i, 0));
        stoa_jw_object_open(w);
        stoa_jw_kv_integer(w, "queued", atoll(stoa_db_value(jobs, i, 1)));
        stoa_jw_kv_integer(w, "running", atoll(stoa_db_value(jobs, i, 2)));
        stoa_jw_kv_integer(w, "dead", atoll(stoa_db_value(jobs, i, 3)));
        stoa_jw_object_close(w);
    }
    stoa_jw_object_close(w);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

/* Postgres refused a value of the request as its type (a data exception,
 * db.h): the client's mistake, so 400 by field when the handler named it,
 * else a general 400. Never the value itself in the log: it may be a
 * secret. */
static void answer_data_exception(stoa_request_t *req)
{
    stoa_db_t *db = req->ctx->db;
    const char *field = stoa_db_data_exception_field(db);
    stoa_log(STOA_LOG_NOTICE, "%s %s: a value was refused by Postgres (%s)",
             req->route->method, req->route->pattern, stoa_db_sqlstate(db));
    if (field) {
        stoa_buf_reset(&req->field_errors);
        stoa_request_field_error(req, field, "invalid");
        stoa_http_invalid_fields(req);
    } else {
        stoa_http_error(req, 400, "invalid_request",
                        "a value in the request is malformed or out of range");
    }
}

void stoa_app_dispatch(stoa_ctx_t *ctx, stoa_request_t *req,
                       const stoa_route_t *routes, size_t nroutes)
{
    const char *allow = NULL;
    stoa_db_clear_data_exception(ctx->db);
    int idx = stoa_router_match(req, routes, nroutes, &allow);
    if (idx == -404) {
        stoa_http_error(req, 404, "not_found", NULL);
        return;
    }
    if (idx == -405) {
        stoa_http_header(req, "Allow", allow);
        stoa_http_error(req, 405, "method_not_allowed", NULL);
        return;
    }
    const stoa_route_t *route = &routes[idx];
    req->route = route;
    if (route->flags & STOA_ROUTE_AUTH) {
        if (!req->principal.present) {
            stoa_http_header(req, "WWW-Authenticate", "Bearer");
            stoa_http_error(req, 401, "unauthenticated", NULL);
            return;
        }
        int live = stoa_revoke_check(req);
        if (live == STOA_AGAIN) {
            stoa_http_error(req, 503, "unavailable", NULL);
            return;
        }
        if (live != STOA_OK) {
            stoa_http_header(req, "WWW-Authenticate",
                             "Bearer error=\"invalid_token\"");
            stoa_http_error(req, 401, "unauthenticated",
                            "the session has been revoked");
            return;
        }
        if (!stoa_principal_has_role(&req->principal, route->roles)) {
            stoa_http_error(req, 403, "forbidden", NULL);
            return;
        }
        if (!stoa_principal_scope_allows(&req->principal, ctx->app->name,
                                         req->method)) {
            stoa_http_error(req, 403, "insufficient_scope",
                            "this token's scopes do not cover this route");
            return;
        }
    }
    bool claimed = false;
    if (route->flags & STOA_ROUTE_IDEMPOTENT) {
        int idem = stoa_idempotency_begin(req, &claimed);
        if (idem == STOA_DECLINED)
            return;
        if (idem != STOA_OK) {
            stoa_http_error(req, 503, "unavailable", NULL);
            return;
        }
    }
    int rc = route->handler(req);
    /* Whatever the handler did, no transaction outlives its request (a
     * no-op, without a round trip, when none is open). */
    stoa_db_rollback(req->ctx->db);
    if (rc == STOA_AGAIN) {
        /* Keep a specific 503 the handler wrote (its own code). */
        if (!req->responded || req->status != 503)
            stoa_http_error(req, 503, "unavailable", NULL);
    } else if (rc == STOA_ERROR || !req->responded) {
        if (stoa_db_data_exception(req->ctx->db)) {
            answer_data_exception(req);
        } else if (!req->responded || req->status < 500) {
            stoa_log(STOA_LOG_ERR, "handler for %s %s failed", route->method,
                     route->pattern);
            stoa_http_error(req, 500, "internal", NULL);
        }
    }
    if (claimed)
        stoa_idempotency_end(req);
}

/* Fills the request from FastCGI params; returns false when the body is
 * refused (the answer is already set). */
static bool read_request(stoa_ctx_t *ctx, stoa_request_t *req,
                         FCGX_Request *fr)
{
    char **env = fr->envp;
    req->transport = fr;
    req->method = FCGX_GetParam("REQUEST_METHOD", env);
    req->path = FCGX_GetParam("DOCUMENT_URI", env);
    req->query = FCGX_GetParam("QUERY_STRING", env);
    req->content_type = FCGX_GetParam("CONTENT_TYPE", env);
    req->remote_addr = FCGX_GetParam("REMOTE_ADDR", env);
    /* Stored with a session and shown back: clean text only, once here
     * for every handler (Postgres refuses bytes that are not UTF-8). */
    req->user_agent = stoa_text_sanitise(req->arena,
                                         FCGX_GetParam("HTTP_USER_AGENT", env),
                                         STOA_USER_AGENT_MAX);
    req->idempotency_key = FCGX_GetParam("HTTP_IDEMPOTENCY_KEY", env);
    /* Copied: the access line is written after FCGX_Finish_r, which frees
     * the params. */
    req->method = stoa_arena_strdup(req->arena, req->method ? req->method
                                                           : "GET");
    if (!req->path) {
        /* Without nginx's normalised path, fall back to the raw URI. */
        const char *uri = FCGX_GetParam("REQUEST_URI", env);
        uri = uri ? uri : "/";
        req->path = stoa_arena_strndup(req->arena, uri, strcspn(uri, "?"));
    }
    if (!req->query)
        req->query = "";

    const char *rid = FCGX_GetParam("REQUEST_ID", env);
    if (stoa_request_id_valid(rid)) {
        /* Copied like the method: the access line outlives the params. */
        req->request_id = stoa_arena_strdup(req->arena, rid);
    } else {
        uint8_t raw[16];
        char *hex = stoa_arena_alloc(req->arena, 33);
        stoa_random_bytes(raw, sizeof(raw));
        stoa_hex_encode(raw, sizeof(raw), hex);
        req->request_id = hex;
    }
    stoa_log_set_request(req->request_id);

    const char *sub = FCGX_GetParam("GATEWAY_SUB", env);
    const char *role = FCGX_GetParam("GATEWAY_ROLE", env);
    if (sub && stoa_uuid_valid(sub) && stoa_role_valid(role)) {
        req->principal.present = true;
        req->principal.user_id = stoa_arena_strdup(req->arena, sub);
        req->principal.role = role;
        const char *sid = FCGX_GetParam("GATEWAY_SID", env);
        req->principal.session_id = sid && *sid ? sid : NULL;
        req->principal.token_id = FCGX_GetParam("GATEWAY_JTI", env);
        const char *exp = FCGX_GetParam("GATEWAY_EXP", env);
        req->principal.expires_at = exp ? strtoll(exp, NULL, 10) : 0;
        const char *scope = FCGX_GetParam("GATEWAY_SCOPE", env);
        req->principal.scope = scope && *scope ? scope : NULL;
    }

    const char *cl = FCGX_GetParam("CONTENT_LENGTH", env);
    long long length = 0;
    if (cl && *cl) {
        char *end;
        errno = 0;
        length = strtoll(cl, &end, 10);
        if (errno || *end || length < 0) {
            stoa_http_error(req, 400, "invalid_request",
                            "invalid Content-Length");
            return false;
        }
    }
    long cap = ctx->conf.max_body_bytes;
    if (strncmp(req->path, "/v1/analytics/events", 20) == 0)
        cap = ctx->conf.max_event_body_bytes;
    if (length > cap) {
        stoa_http_error(req, 413, "payload_too_large", NULL);
        return false;
    }
    char *body = stoa_arena_alloc(req->arena, (size_t)length + 1);
    size_t got = 0;
    while (got < (size_t)length) {
        int n = FCGX_GetStr(body + got, (int)((size_t)length - got), fr->in);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got != (size_t)length) {
        stoa_http_error(req, 400, "invalid_request", "truncated body");
        return false;
    }
    body[got] = '\0';
    req->body = body;
    req->body_len = got;
    return true;
}

static void write_response(stoa_request_t *req, FCGX_Request *fr)
{
    stoa_buf_t head;
    stoa_buf_init(&head);
    stoa_buf_printf(&head, "Status: %d %s\r\nX-Request-Id: %s\r\n",
                    req->status, status_text(req->status), req->request_id);
    if (req->status != 204) {
        stoa_buf_printf(&head,
                        "Content-Type: application/json\r\n"
                        "Content-Length: %zu\r\n",
                        req->body_out.len);
    }
    stoa_buf_puts(&head, "Cache-Control: no-store\r\n");
    stoa_buf_append(&head, req->headers.data ? req->headers.data : "",
                    req->headers.len);
    stoa_buf_puts(&head, "\r\n");
    if (req->status != 204 && req->body_out.len)
        stoa_buf_append(&head, req->body_out.data, req->body_out.len);
    FCGX_PutStr(head.data, (int)head.len, fr->out);
    stoa_buf_free(&head);
}

static void request_reset(stoa_request_t *req)
{
    stoa_arena_t *arena = req->arena;
    stoa_ctx_t *ctx = req->ctx;
    stoa_buf_t headers = req->headers, body = req->body_out,
               fields = req->field_errors;
    stoa_jw_t *jw = req->jw;
    stoa_arena_reset(arena);
    memset(req, 0, sizeof(*req));
    req->arena = arena;
    req->ctx = ctx;
    req->headers = headers;
    req->body_out = body;
    req->field_errors = fields;
    req->jw = jw;
    stoa_buf_reset(&req->headers);
    stoa_buf_reset(&req->body_out);
    stoa_buf_reset(&req->field_errors);
    stoa_log_set_request(NULL);
}

static stoa_route_t *build_routes(const stoa_app_t *app, size_t *n)
{
    size_t total = app->nroutes + 2;
    stoa_route_t *routes = stoa_xcalloc(total, sizeof(*routes));
    char path[128];
    snprintf(path, sizeof(path), "/v1/%s/healthz", app->name);
    routes[0] = (stoa_route_t){"GET", stoa_xstrdup(path), health,
                               STOA_ROUTE_PUBLIC, NULL};
    snprintf(path, sizeof(path), "/v1/%s/readyz", app->name);
    routes[1] = (stoa_route_t){"GET", stoa_xstrdup(path), ready,
                               STOA_ROUTE_PUBLIC, NULL};
    for (size_t i = 0; i < app->nroutes; i++)
        routes[2 + i] = app->routes[i];
    *n = total;
    return routes;
}

static void usage(const char *program)
{
    fprintf(stderr,
            "usage: %s [--config FILE] [--check-config]\n"
            "Serves FastCGI on the socket passed as file descriptor 0.\n",
            program);
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
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    static stoa_ctx_t ctx;
    ctx.app = app;
    snprintf(ctx.program, sizeof(ctx.program), "stoa-%s", app->name);
    char err[512];
    if (stoa_conf_load(&ctx.conf, config, err, sizeof(err)) != STOA_OK) {
        fprintf(stderr, "%s: configuration error: %s\n", ctx.program, err);
        stoa_conf_free(&ctx.conf);
        return 1;
    }
    ctx.kv = stoa_kv_new(ctx.conf.redis_url, ctx.conf.redis_timeout_ms);
    if (!ctx.kv) {
        fprintf(stderr, "%s: configuration error: redis_url is malformed\n",
                ctx.program);
        stoa_conf_free(&ctx.conf);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration ok\n", ctx.program);
        stoa_kv_free(ctx.kv);
        stoa_conf_free(&ctx.conf);
        return 0;
    }
    if (stoa_log_open(ctx.program, ctx.conf.log_dir,
                      (int)ctx.conf.log_level) != STOA_OK) {
        fprintf(stderr, "%s: cannot open log in %s\n", ctx.program,
                ctx.conf.log_dir);
        return 1;
    }
    /* The library's own statements are prepared alongside the pool's, on
     * the same connection. */
    const struct {
        const stoa_db_statement_t *list;
        size_t len;
    } tables[] = {
        {stoa_outbox_statements, stoa_outbox_statements_len},
        {stoa_audit_statements, stoa_audit_statements_len},
        {stoa_revoke_statements, stoa_revoke_statements_len},
        {stoa_idempotency_statements, stoa_idempotency_statements_len},
        {app->statements, app->nstatements},
    };
    size_t nstatements = 0;
    for (size_t i = 0; i < STOA_ARRAY_LEN(tables); i++)
        nstatements += tables[i].len;
    stoa_db_statement_t *statements =
        stoa_xcalloc(nstatements, sizeof(*statements));
    for (size_t i = 0, at = 0; i < STOA_ARRAY_LEN(tables); i++) {
        if (tables[i].len)
            memcpy(statements + at, tables[i].list,
                   tables[i].len * sizeof(*statements));
        at += tables[i].len;
    }
    ctx.db = stoa_db_new(ctx.conf.database_url, statements, nstatements,
                         ctx.conf.db_statement_timeout_ms,
                         ctx.conf.db_connect_timeout_s);
    /* Connect eagerly so the first request does not pay for it; an outage
     * now is not fatal: requests answer 503 until it ends. */
    if (stoa_db_connect(ctx.db) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "postgres not reachable at start");
    if (stoa_kv_ping(ctx.kv) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "redis not reachable at start");
    if (app->init && app->init(&ctx) != STOA_OK) {
        stoa_log(STOA_LOG_CRIT, "initialisation failed");
        return 1;
    }
    size_t nroutes;
    stoa_route_t *routes = build_routes(app, &nroutes);
    install_signals();
    if (FCGX_Init() != 0) {
        stoa_log(STOA_LOG_CRIT, "FCGX_Init failed");
        return 1;
    }
    FCGX_Request fr;
    FCGX_InitRequest(&fr, 0, 0);
    stoa_request_t req;
    memset(&req, 0, sizeof(req));
    req.arena = stoa_arena_create(0);
    req.ctx = &ctx;
    stoa_buf_init(&req.headers);
    stoa_buf_init(&req.body_out);
    stoa_buf_init(&req.field_errors);
    req.jw = stoa_jw_new(&req.body_out);
    stoa_log(STOA_LOG_INFO, "serving");

    while (!stop_requested) {
        in_request = 0;
        if (stop_requested)
            break;
        int rc = FCGX_Accept_r(&fr);
        in_request = 1;
        if (rc < 0) {
            if (stop_requested)
                break;
            stoa_log(STOA_LOG_ERR, "accept failed: %d", rc);
            usleep(10000);
            continue;
        }
        uint64_t start = stoa_now_us();
        if (read_request(&ctx, &req, &fr))
            stoa_app_dispatch(&ctx, &req, routes, nroutes);
        write_response(&req, &fr);
        FCGX_Finish_r(&fr);
        stoa_log_access(req.method, req.route ? req.route->pattern : NULL,
                        req.status, stoa_now_us() - start,
                        req.principal.present ? req.principal.user_id : NULL);
        request_reset(&req);
    }
    stoa_log(STOA_LOG_INFO, "stopping");
    stoa_jw_free(req.jw);
    stoa_buf_free(&req.headers);
    stoa_buf_free(&req.body_out);
    stoa_buf_free(&req.field_errors);
    stoa_arena_destroy(req.arena);
    stoa_db_free(ctx.db);
    stoa_kv_free(ctx.kv);
    stoa_conf_free(&ctx.conf);
    free(routes);
    free(statements);
    stoa_log_close();
    return 0;
}
