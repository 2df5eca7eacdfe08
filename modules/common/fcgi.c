/* fcgi.c - the FastCGI transport: handler threads over libfcgi's
 * FCGX_Accept_r, request filling, response writing, draining shutdown. */
#include "stoa/fcgi.h"

#include <errno.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stoa/crypto.h"
#include "stoa/format.h"
#include "stoa/log.h"

static atomic_bool stopping;
static atomic_int in_flight;
/* Time of the last request start or end, for the quiet period. */
static atomic_uint_fast64_t last_activity_us;

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


/* Fills the request from FastCGI params; returns false when the body is
 * refused (the answer is already set). */
static bool read_request(stoa_ctx_t *ctx, stoa_request_t *req,
                         FCGX_Request *fr, const stoa_fcgi_handler_t *h)
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
    if (length > h->body_cap(ctx, req, h->arg)) {
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

/* The whole answer goes to libfcgi in one piece, so it leaves in as few
 * writes as libfcgi's buffering allows. */
static void write_response(stoa_request_t *req, FCGX_Request *fr,
                           stoa_buf_t *out)
{
    stoa_buf_t head = *out;
    stoa_buf_reset(&head);
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
    *out = head;
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


typedef struct {
    stoa_ctx_t *ctx;
    const stoa_fcgi_handler_t *handler;
} server_t;

static void *handler_thread(void *arg)
{
    const server_t *srv = arg;
    stoa_ctx_t *ctx = srv->ctx;
    FCGX_Request fr;
    FCGX_InitRequest(&fr, 0, 0);
    stoa_request_t req;
    memset(&req, 0, sizeof(req));
    req.arena = stoa_arena_create(0);
    req.ctx = ctx;
    stoa_buf_init(&req.headers);
    stoa_buf_init(&req.body_out);
    stoa_buf_init(&req.field_errors);
    req.jw = stoa_jw_new(&req.body_out);
    stoa_buf_t out;
    stoa_buf_init(&out);
    while (!atomic_load(&stopping)) {
        int rc = FCGX_Accept_r(&fr);
        if (rc < 0) {
            if (atomic_load(&stopping))
                break;
            stoa_log(STOA_LOG_ERR, "accept failed: %d", rc);
            usleep(10000);
            continue;
        }
        atomic_fetch_add(&in_flight, 1);
        uint64_t start = stoa_now_us();
        atomic_store(&last_activity_us, start);
        if (read_request(ctx, &req, &fr, srv->handler))
            srv->handler->handle(ctx, &req, srv->handler->arg);
        /* Connections go back before the answer leaves: the next request
         * of this thread may be seconds away on a kept connection. */
        stoa_request_release(&req);
        write_response(&req, &fr, &out);
        /* Draining: this connection is closed after its answer (nginx
         * then does not reuse it) and the thread takes no other. */
        if (atomic_load(&stopping))
            fr.keepConnection = 0;
        FCGX_Finish_r(&fr);
        uint64_t end = stoa_now_us();
        stoa_log_access(req.method, req.route ? req.route->pattern : NULL,
                        req.status, end - start,
                        req.principal.present ? req.principal.user_id : NULL);
        request_reset(&req);
        atomic_store(&last_activity_us, end);
        atomic_fetch_sub(&in_flight, 1);
    }
    stoa_buf_free(&out);
    stoa_jw_free(req.jw);
    stoa_buf_free(&req.headers);
    stoa_buf_free(&req.body_out);
    stoa_buf_free(&req.field_errors);
    stoa_arena_destroy(req.arena);
    stoa_log_thread_done();
    return NULL;
}

int stoa_fcgi_serve(stoa_ctx_t *ctx, size_t threads,
                    const stoa_fcgi_handler_t *handler)
{
    if (FCGX_Init() != 0) {
        stoa_log(STOA_LOG_CRIT, "FCGX_Init failed");
        return 1;
    }
    /* Every thread inherits the mask: only sigwait below sees the stop
     * signals. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    static server_t srv;
    srv.ctx = ctx;
    srv.handler = handler;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* Handlers keep their state in arenas: a small stack is plenty. */
    pthread_attr_setstacksize(&attr, 512 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    size_t started = 0;
    for (size_t i = 0; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, handler_thread, &srv) == 0)
            started++;
    }
    pthread_attr_destroy(&attr);
    if (started == 0) {
        stoa_log(STOA_LOG_CRIT, "no handler thread could start");
        return 1;
    }
    stoa_log(STOA_LOG_INFO, "serving with %zu threads", started);

    /* Waiting for a stop signal, this thread also writes the handlers'
     * buffered access lines out every 200 ms. */
    stoa_log_buffer_access(true);
    int sig;
    for (;;) {
        struct timespec tick = {0, 200 * 1000 * 1000};
        sig = sigtimedwait(&stop, NULL, &tick);
        if (sig > 0)
            break;
        stoa_log_flush();
    }
    atomic_store(&stopping, true);
    stoa_log(STOA_LOG_INFO, "stopping on signal %d", sig);
    uint64_t began = stoa_now_us();
    for (;;) {
        uint64_t now = stoa_now_us();
        if (now - began > (uint64_t)STOA_FCGI_DRAIN_MS * 1000) {
            stoa_log(STOA_LOG_WARN, "drain timed out with %d in flight",
                     atomic_load(&in_flight));
            break;
        }
        if (atomic_load(&in_flight) == 0 &&
            now - atomic_load(&last_activity_us) >
                (uint64_t)STOA_FCGI_QUIET_MS * 1000)
            break;
        usleep(2000);
    }
    stoa_log_flush();
    stoa_log(STOA_LOG_INFO, "stopped");
    /* Threads still blocked in accept or on an idle kept connection hold
     * nothing that needs undoing; the exit ends them. */
    _exit(0);
}
