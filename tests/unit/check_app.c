/* check_app.c - the dispatcher (stoa_app_dispatch) over a route table,
 * with a fake Redis holding the revocation sentinel and a Postgres that
 * is down: 404 and 405 with Allow, the access flags in their order (AUTH:
 * 401 without a principal or when revoked; roles, scopes, LOGIN: 403),
 * what a handler's status becomes, and the admission gate of HASHES
 * routes (shed with 503 and Retry-After when full, other routes served
 * meanwhile, places given back). */
#include <time.h>

#include "check_fake_redis.h"
#include "fixture_util.h"
#include "stoa/app.h"
#include "stoa/revoke.h"

#define USER "6f1c0e7a-3b7e-4d0a-9a35-0b0e7c1d2a11"
#define SESSION "0a8f5c2e-1111-4222-8333-944455556666"

static stoa_ctx_t ctx;
static const stoa_app_t app = {.name = "billing"};

/* ---- handlers ----------------------------------------------------------- */

static int calls;

static int ok_handler(stoa_request_t *r)
{
    __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST);
    stoa_jw_t *w = stoa_http_json(r, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "ok", "yes");
    stoa_jw_object_close(w);
    return stoa_http_send(r);
}

static int again_handler(stoa_request_t *r)
{
    (void)r;
    calls++;
    return STOA_AGAIN;
}

static int error_handler(stoa_request_t *r)
{
    (void)r;
    calls++;
    return STOA_ERROR;
}

static int silent_handler(stoa_request_t *r)
{
    (void)r;
    calls++;
    return STOA_OK; /* wrote nothing */
}

static int own_503_handler(stoa_request_t *r)
{
    calls++;
    return stoa_http_error(r, 503, "mfa_unavailable", "not configured");
}

/* HASHES handler: holds its place until released (when hold is set). */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool hold;
    int inside;
} hashing = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

static int hashing_handler(stoa_request_t *r)
{
    pthread_mutex_lock(&hashing.lock);
    hashing.inside++;
    pthread_cond_broadcast(&hashing.cond);
    while (hashing.hold)
        pthread_cond_wait(&hashing.cond, &hashing.lock);
    hashing.inside--;
    pthread_mutex_unlock(&hashing.lock);
    return ok_handler(r);
}

static const stoa_route_t routes[] = {
    {"GET", "/v1/billing/open", ok_handler, STOA_ROUTE_PUBLIC, NULL, "billing"},
    {"GET", "/v1/billing/things", ok_handler, STOA_ROUTE_AUTH, NULL, "billing"},
    {"POST", "/v1/billing/things", ok_handler, STOA_ROUTE_AUTH, NULL,
     "billing"},
    {"GET", "/v1/billing/ledger/{id}", ok_handler, STOA_ROUTE_AUTH,
     "finance admin", "billing"},
    {"POST", "/v1/billing/keys", ok_handler, STOA_ROUTE_LOGIN, NULL, "billing"},
    {"DELETE", "/v1/billing/keys/{id}", ok_handler,
     STOA_ROUTE_LOGIN | STOA_ROUTE_AUTH, "admin", "billing"},
    {"GET", "/v1/billing/again", again_handler, STOA_ROUTE_PUBLIC, NULL,
     "billing"},
    {"GET", "/v1/billing/error", error_handler, STOA_ROUTE_PUBLIC, NULL,
     "billing"},
    {"GET", "/v1/billing/silent", silent_handler, STOA_ROUTE_PUBLIC, NULL,
     "billing"},
    {"GET", "/v1/billing/own503", own_503_handler, STOA_ROUTE_PUBLIC, NULL,
     "billing"},
    {"POST", "/v1/billing/hash", hashing_handler, STOA_ROUTE_HASHES, NULL,
     "billing"},
};

/* ---- requests ----------------------------------------------------------- */

static void request_init(stoa_request_t *r, const char *method,
                         const char *path)
{
    test_request_init(r, method, path, "req-app-1");
    r->ctx = &ctx;
    r->remote_addr = "192.0.2.1";
}

static void request_free(stoa_request_t *r)
{
    stoa_request_release(r);
    test_request_free(r);
}

static stoa_request_t req;

static void setup(void)
{
    fake_ctx_open(&ctx, fake_redis_start(), stoa_revoke_statements,
                  stoa_revoke_statements_len);
    ctx.app = &app;
    fake_redis_put(STOA_REVOKE_SYNCED_KEY, "1");
    calls = 0;
}

static void teardown(void)
{
    fake_ctx_close(&ctx);
    fake_redis_stop();
}

static void as_login(stoa_request_t *r, const char *role, const char *session)
{
    r->principal = (stoa_principal_t){.present = true,
                                      .user_id = USER,
                                      .session_id = session,
                                      .role = role,
                                      .token_id = "jti-1",
                                      .expires_at = stoa_unix_time() + 600};
}

static void as_key_token(stoa_request_t *r, const char *role, const char *scope)
{
    as_login(r, role, NULL);
    r->principal.scope = scope;
}

/* Dispatches method path as req (principal set by the caller through
 * prepare, may be NULL). */
static void dispatch(const char *method, const char *path,
                     void (*prepare)(stoa_request_t *))
{
    request_init(&req, method, path);
    if (prepare)
        prepare(&req);
    stoa_app_dispatch(&ctx, &req, routes, STOA_ARRAY_LEN(routes));
}

/* The error code of a §3 error body (arena-owned), or NULL. */
static const char *error_code(const stoa_request_t *r)
{
    stoa_json_t *doc;
    char err[128];
    if (stoa_json_parse(r->arena, r->body_out.data, r->body_out.len,
                        STOA_JSON_MAX_DEPTH, &doc, err, sizeof(err)) != STOA_OK)
        return NULL;
    return stoa_json_string(stoa_json_get(stoa_json_get(doc, "error"), "code"));
}

static void expect(int status, const char *code)
{
    ck_assert(req.responded);
    ck_assert_int_eq(req.status, status);
    if (code) {
        const char *got = error_code(&req);
        ck_assert_msg(got && strcmp(got, code) == 0, "code %s, want %s",
                      got ? got : "(none)", code);
    }
}

/* dispatch + expect, then the request is freed. */
static void answers(const char *method, const char *path,
                    void (*prepare)(stoa_request_t *), int status,
                    const char *code)
{
    dispatch(method, path, prepare);
    expect(status, code);
    request_free(&req);
}

static bool has_header(const stoa_request_t *r, const char *line)
{
    return r->headers.data && strstr(r->headers.data, line);
}

/* ---- routing ------------------------------------------------------------ */

START_TEST(unknown_path_404)
{
    static const char *const paths[] = {
        "/v1/billing/nothing",    "/v1/billing/things/extra",
        "/v1/billing/ledger/", /* {id} is one non-empty segment */
        "/v1/billing/ledger/1/2", "/v1/billing/thing",
        "/v1/billing/open/"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(paths); i++) {
        dispatch("GET", paths[i], NULL);
        expect(404, "not_found");
        request_free(&req);
    }
    ck_assert_int_eq(calls, 0);
}
END_TEST

START_TEST(other_method_405_with_allow)
{
    dispatch("DELETE", "/v1/billing/things", NULL);
    expect(405, "method_not_allowed");
    ck_assert_msg(has_header(&req, "Allow: GET, POST\r\n"), "headers: %s",
                  req.headers.data ? req.headers.data : "");
    request_free(&req);
    dispatch("PUT", "/v1/billing/keys/k1", NULL);
    expect(405, "method_not_allowed");
    ck_assert(has_header(&req, "Allow: DELETE\r\n"));
    request_free(&req);
    ck_assert_int_eq(calls, 0);
}
END_TEST

START_TEST(public_route_runs_without_principal)
{
    dispatch("GET", "/v1/billing/open", NULL);
    expect(200, NULL);
    ck_assert_int_eq(calls, 1);
    request_free(&req);
    /* Nothing asked of Redis for a public route. */
    ck_assert_uint_eq(fake_redis_count(), 0);
}
END_TEST

/* ---- access ------------------------------------------------------------- */

static void client_login(stoa_request_t *r)
{
    as_login(r, "client", SESSION);
}
static void admin_login(stoa_request_t *r)
{
    as_login(r, "admin", SESSION);
}
static void finance_login(stoa_request_t *r)
{
    as_login(r, "finance", SESSION);
}
static void admin_key_all(stoa_request_t *r)
{
    as_key_token(r, "admin", "*");
}
static void client_key_read(stoa_request_t *r)
{
    as_key_token(r, "client", "billing:read");
}
static void client_key_other_pool(stoa_request_t *r)
{
    as_key_token(r, "client", "auth:* analytics:write");
}
static void client_key_billing_all(stoa_request_t *r)
{
    as_key_token(r, "client", "billing:*");
}

START_TEST(auth_needs_a_principal)
{
    dispatch("GET", "/v1/billing/things", NULL);
    expect(401, "unauthenticated");
    ck_assert(has_header(&req, "WWW-Authenticate: Bearer\r\n"));
    request_free(&req);
    /* LOGIN implies AUTH. */
    answers("POST", "/v1/billing/keys", NULL, 401, "unauthenticated");
    ck_assert_int_eq(calls, 0);
    answers("GET", "/v1/billing/things", client_login, 200, NULL);
    ck_assert_int_eq(calls, 1);
}
END_TEST

START_TEST(revoked_session_401_and_redis_unsure_503)
{
    fake_redis_put("rv:s:" SESSION, "1");
    dispatch("GET", "/v1/billing/things", client_login);
    expect(401, "unauthenticated");
    ck_assert(
        has_header(&req, "WWW-Authenticate: Bearer error=\"invalid_token\""));
    request_free(&req);
    /* Another session, Redis without its sentinel, Postgres down: 503. */
    fake_redis_put(STOA_REVOKE_SYNCED_KEY, NULL);
    answers("GET", "/v1/billing/things", admin_key_all, 503, "unavailable");
    ck_assert_int_eq(calls, 0);
}
END_TEST

START_TEST(roles_403)
{
    answers("GET", "/v1/billing/ledger/1", client_login, 403, "forbidden");
    ck_assert_int_eq(calls, 0);
    answers("GET", "/v1/billing/ledger/1", finance_login, 200, NULL);
    answers("GET", "/v1/billing/ledger/1", admin_login, 200, NULL);
    ck_assert_int_eq(calls, 2);
}
END_TEST

START_TEST(scopes_403_insufficient_scope)
{
    /* billing:read covers GET, not POST. */
    answers("GET", "/v1/billing/things", client_key_read, 200, NULL);
    answers("POST", "/v1/billing/things", client_key_read, 403,
            "insufficient_scope");
    /* Scopes of other pools cover nothing here. */
    answers("GET", "/v1/billing/things", client_key_other_pool, 403,
            "insufficient_scope");
    answers("POST", "/v1/billing/things", client_key_billing_all, 200, NULL);
    ck_assert_int_eq(calls, 2);
}
END_TEST

START_TEST(login_routes_refuse_key_tokens)
{
    /* Even a key with every scope cannot manage credentials. */
    answers("POST", "/v1/billing/keys", admin_key_all, 403, "forbidden");
    answers("DELETE", "/v1/billing/keys/k1", admin_key_all, 403, "forbidden");
    ck_assert_int_eq(calls, 0);
    answers("POST", "/v1/billing/keys", client_login, 200, NULL);
    /* Roles still count on a LOGIN route. */
    answers("DELETE", "/v1/billing/keys/k1", client_login, 403, "forbidden");
    answers("DELETE", "/v1/billing/keys/k1", admin_login, 200, NULL);
    ck_assert_int_eq(calls, 2);
}
END_TEST

/* ---- what a handler's status becomes ------------------------------------ */

START_TEST(handler_status_mapping)
{
    answers("GET", "/v1/billing/again", NULL, 503, "unavailable");
    answers("GET", "/v1/billing/error", NULL, 500, "internal");
    answers("GET", "/v1/billing/silent", NULL, 500, "internal");
    /* A handler's own 503 code is kept. */
    answers("GET", "/v1/billing/own503", NULL, 503, "mfa_unavailable");
    ck_assert_int_eq(calls, 4);
}
END_TEST

/* ---- the admission gate of HASHES routes -------------------------------- */

#define GATE_TRIES 64

typedef struct {
    pthread_t thread;
    stoa_request_t r;
    bool done;
} gate_try_t;

static gate_try_t tries[GATE_TRIES];

static void *gate_try(void *arg)
{
    gate_try_t *t = arg;
    stoa_app_dispatch(&ctx, &t->r, routes, STOA_ARRAY_LEN(routes));
    pthread_mutex_lock(&hashing.lock);
    t->done = true;
    pthread_cond_broadcast(&hashing.cond);
    pthread_mutex_unlock(&hashing.lock);
    return NULL;
}

START_TEST(hashes_gate_sheds_when_full)
{
    hashing.hold = true;
    int started = 0, admitted = 0;
    gate_try_t *refused = NULL;
    /* Requests until one is shed: each either gets inside the handler (and
     * waits there) or comes back at once. */
    while (!refused && started < GATE_TRIES) {
        gate_try_t *t = &tries[started++];
        request_init(&t->r, "POST", "/v1/billing/hash");
        pthread_mutex_lock(&hashing.lock);
        int before = hashing.inside;
        ck_assert_int_eq(pthread_create(&t->thread, NULL, gate_try, t), 0);
        while (hashing.inside == before && !t->done)
            pthread_cond_wait(&hashing.cond, &hashing.lock);
        if (t->done)
            refused = t;
        else
            admitted++;
        pthread_mutex_unlock(&hashing.lock);
    }
    ck_assert_msg(refused, "no request shed after %d", started);
    ck_assert_int_ge(admitted, 1);
    ck_assert_int_eq(refused->r.status, 503);
    ck_assert_str_eq(error_code(&refused->r), "unavailable");
    ck_assert(has_header(&refused->r, "Retry-After: 1\r\n"));

    /* While the gate is full, every other route is served. */
    answers("GET", "/v1/billing/open", NULL, 200, NULL);

    pthread_mutex_lock(&hashing.lock);
    hashing.hold = false;
    pthread_cond_broadcast(&hashing.cond);
    pthread_mutex_unlock(&hashing.lock);
    for (int i = 0; i < started; i++) {
        pthread_join(tries[i].thread, NULL);
        if (&tries[i] != refused)
            ck_assert_int_eq(tries[i].r.status, 200);
        request_free(&tries[i].r);
    }

    /* Every place was given back: as many as were admitted before get in
     * again at once. */
    hashing.hold = true;
    for (int i = 0; i < admitted; i++) {
        gate_try_t *t = &tries[i];
        memset(t, 0, sizeof(*t));
        request_init(&t->r, "POST", "/v1/billing/hash");
        pthread_mutex_lock(&hashing.lock);
        ck_assert_int_eq(pthread_create(&t->thread, NULL, gate_try, t), 0);
        while (hashing.inside == i && !t->done)
            pthread_cond_wait(&hashing.cond, &hashing.lock);
        ck_assert_msg(!t->done, "place %d not given back", i);
        pthread_mutex_unlock(&hashing.lock);
    }
    pthread_mutex_lock(&hashing.lock);
    hashing.hold = false;
    pthread_cond_broadcast(&hashing.cond);
    pthread_mutex_unlock(&hashing.lock);
    for (int i = 0; i < admitted; i++) {
        pthread_join(tries[i].thread, NULL);
        request_free(&tries[i].r);
    }
}
END_TEST

START_TEST(hashes_gate_sequential_requests_pass)
{
    /* One at a time, requests never fill the gate: each leaves it. */
    for (int i = 0; i < GATE_TRIES; i++) {
        answers("POST", "/v1/billing/hash", NULL, 200, NULL);
    }
}
END_TEST

TEST_MAIN_ONE_CASE("app", setup, teardown, unknown_path_404,
                   other_method_405_with_allow,
                   public_route_runs_without_principal, auth_needs_a_principal,
                   revoked_session_401_and_redis_unsure_503, roles_403,
                   scopes_403_insufficient_scope,
                   login_routes_refuse_key_tokens, handler_status_mapping,
                   hashes_gate_sheds_when_full,
                   hashes_gate_sequential_requests_pass)
