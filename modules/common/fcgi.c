/* fcgi.c - the FastCGI transport: handler threads over libfcgi's
 * FCGX_Accept_r, request filling, response writing, draining shutdown. */
/* SCHED_BATCH is a Linux extension. */
#define _GNU_SOURCE

#include "stoa/fcgi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fastcgi.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "stoa/crypto.h"
#include "stoa/format.h"
#include "stoa/log.h"
#include "stoa/metrics.h"
#include "stoa/password.h"

static atomic_bool stopping;
static atomic_int in_flight;

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

const char *stoa_request_param(const stoa_request_t *req, const char *name)
{
    FCGX_Request *fr = req->transport;
    return fr ? FCGX_GetParam(name, fr->envp) : NULL;
}

/* Fills the request from FastCGI params; returns false when the body is
 * refused (the answer is already set). */
static bool read_request(stoa_ctx_t *ctx, stoa_request_t *req, FCGX_Request *fr,
                         const stoa_fcgi_handler_t *h)
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
    req->user_agent = stoa_text_sanitise(
        req->arena, FCGX_GetParam("HTTP_USER_AGENT", env), STOA_USER_AGENT_MAX);
    req->idempotency_key = FCGX_GetParam("HTTP_IDEMPOTENCY_KEY", env);
    /* Copied: the access line is written after FCGX_Finish_r, which frees
     * the params. */
    req->method =
        stoa_arena_strdup(req->arena, req->method ? req->method : "GET");
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
            stoa_http_fail(req, STOA_ERR_INVALID_REQUEST,
                           "invalid Content-Length");
            return false;
        }
    }
    if (length > h->body_cap(ctx, req, h->arg)) {
        stoa_http_fail(req, STOA_ERR_PAYLOAD_TOO_LARGE, NULL);
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
        stoa_http_fail(req, STOA_ERR_INVALID_REQUEST, "truncated body");
        return false;
    }
    body[got] = '\0';
    req->body = body;
    req->body_len = got;
    return true;
}

int stoa_http_stream_begin(stoa_request_t *req, int status,
                           const char *content_type)
{
    FCGX_Request *fr = req->transport;
    if (!fr)
        return STOA_AGAIN;
    req->status = status;
    req->responded = true;
    req->streamed = true;
    FCGX_FPrintF(fr->out,
                 "Status: %d %s\r\nX-Request-Id: %s\r\nContent-Type: %s\r\n"
                 "Cache-Control: no-store\r\n",
                 status, status_text(status), req->request_id, content_type);
    if (req->headers.len)
        FCGX_PutStr(req->headers.data, (int)req->headers.len, fr->out);
    FCGX_PutS("\r\n", fr->out);
    return FCGX_GetError(fr->out) == 0 ? STOA_OK : STOA_AGAIN;
}

int stoa_http_stream_write(stoa_request_t *req, const void *data, size_t len)
{
    FCGX_Request *fr = req->transport;
    if (!fr || !req->streamed)
        return STOA_AGAIN;
    if (len && FCGX_PutStr(data, (int)len, fr->out) != (int)len)
        return STOA_AGAIN;
    return STOA_OK;
}

void stoa_http_stream_abort(stoa_request_t *req)
{
    FCGX_Request *fr = req->transport;
    if (!fr || !req->streamed || fr->ipcFd < 0)
        return;
    /* Nothing more is read or written on it: libfcgi's flush and end
     * record fail, and it closes the descriptor without its lingering
     * wait. nginx never keeps a connection that did not end its request. */
    fr->keepConnection = 0;
    shutdown(fr->ipcFd, SHUT_RDWR);
}

/* The whole answer goes to libfcgi in one piece, so it leaves in as few
 * writes as libfcgi's buffering allows. A streamed answer is out already. */
static void write_response(stoa_request_t *req, FCGX_Request *fr,
                           stoa_buf_t *out)
{
    if (req->streamed)
        return;
    stoa_buf_t head = *out;
    stoa_buf_reset(&head);
    stoa_buf_printf(&head, "Status: %d %s\r\nX-Request-Id: %s\r\n", req->status,
                    status_text(req->status), req->request_id);
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

/* Reads what is left of the request's input up to its end record (the
 * empty FCGI_STDIN nginx always sends; the rest of a body a refusal did
 * not read). libfcgi does not: what stays on the socket would be read as
 * the next request's first record, a protocol error that closes a kept
 * connection from the pool's side, racing nginx's next request on it into
 * a 502. Usually the end record is in libfcgi's buffer already and this
 * costs no system call. */
static void drain_input(FCGX_Request *fr)
{
    char sink[4096];
    while (fr->in && !fr->in->isClosed &&
           FCGX_GetStr(sink, (int)sizeof(sink), fr->in) > 0)
        ;
}

/* Memory handling after a request. A large request (a long answer, query
 * results, the buffers that grew for them) leaves freed memory that glibc
 * keeps (the body and its parsed tree are in the arena, whose large blocks
 * are unmapped at reset): with eight threads sharing two malloc arenas the
 * freed space is rarely at the top of a heap, where free() would give it
 * back.
 * So once the thread idles after such a request, its buffers drop what
 * they grew past KEEP_BUF_BYTES and malloc_trim returns the freed pages;
 * ordinary requests (a few KiB) never pay for it. */
#define KEEP_BUF_BYTES (64 * 1024)
#define LARGE_BODY_BYTES (16 * 1024)
#define LARGE_ARENA_BYTES (64 * 1024)
#define TRIM_NUDGE_BYTES (128 * 1024)
#define IDLE_RELEASE_MS 100
/* The arena's large blocks a thread keeps between requests until it idles:
 * a batch of 1000 events (its body and parsed tree) fits. */
#define ARENA_SPARE_BYTES (2 * 1024 * 1024)

static void buf_shrink(stoa_buf_t *buf)
{
    if (buf->cap > KEEP_BUF_BYTES)
        stoa_buf_free(buf);
}

/* True when the request just answered was large enough to trim after:
 * a large body or arena, or a buffer of the thread's that grew past
 * KEEP_BUF_BYTES (a long answer). */
static bool request_was_large(const stoa_request_t *req, const stoa_buf_t *out)
{
    return req->body_len >= LARGE_BODY_BYTES ||
           stoa_arena_used(req->arena) >= LARGE_ARENA_BYTES ||
           req->headers.cap > KEEP_BUF_BYTES ||
           req->body_out.cap > KEEP_BUF_BYTES ||
           req->field_errors.cap > KEEP_BUF_BYTES || out->cap > KEEP_BUF_BYTES;
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

/* After request_reset, once the thread idles: gives back what large
 * requests left behind. */
static void request_release_memory(stoa_request_t *req, stoa_buf_t *out)
{
    stoa_arena_release(req->arena);
    buf_shrink(&req->headers);
    buf_shrink(&req->body_out);
    buf_shrink(&req->field_errors);
    buf_shrink(out);
    malloc_trim(0);
    /* malloc_trim gives back the main heap's top and the free pages inside
     * every heap, but not the top of the other arena's heap: glibc shrinks
     * that when a free of 64 KiB or more happens in it, so this thread's
     * arena gets one (volatile: the pair must not be optimised away). */
    void *volatile nudge = malloc(TRIM_NUDGE_BYTES);
    free(nudge);
}

/* Connection slots. A slot is an FCGX_Request: free (no connection), or
 * holding a connection nginx keeps open between requests. Idle kept
 * connections wait in epoll, not in a thread: every handler thread takes
 * the next ready connection (a kept one with a request in it, or the
 * listening socket with a new one in its queue) from one epoll set, so
 * requests are served in the order they became ready whatever connection
 * they came on, and an idle kept connection costs a slot, never a thread.
 * Every fd is registered EPOLLONESHOT: a ready connection goes to exactly
 * one thread, and is armed again when that thread is done with it. */
typedef struct {
    FCGX_Request fr;
    /* Who holds the slot (SLOT_*): a kept connection waiting in epoll is
     * held by nobody; the thread epoll hands it to, or the draining main
     * thread, takes it from SLOT_IDLE. */
    atomic_int state;
    /* Draining: nginx was told not to keep this connection (below). */
    atomic_bool told;
} slot_t;

enum { SLOT_FREE, SLOT_IDLE, SLOT_BUSY, SLOT_TELLING };

/*
 * Draining without a 502. nginx sends a POST on a kept connection once
 * and never again elsewhere: if the pool closed a kept connection as
 * nginx wrote a request on it, that request failed. So a stopping process
 * never closes a connection nginx keeps; it asks nginx to close it. nginx
 * keeps an upstream connection only when a response's end record is the
 * last thing it read; anything after it (here an empty FCGI_STDERR record)
 * makes it close the connection once the response is in, and on an idle
 * kept connection makes it close that connection at once. If nginx has
 * already sent a request on it, the record reads as an empty stderr
 * stream ahead of that request's answer (harmless), and the request is
 * served. The process exits when nginx has closed every connection.
 */
static const unsigned char CLOSE_HINT[FCGI_HEADER_LEN] = {
    FCGI_VERSION_1, FCGI_STDERR, 0, 1, 0, 0, 0, 0};

/* Tells nginx to close the connection of a slot the caller holds. The
 * record goes whole or the connection is cut: a part of it would be read
 * as the head of a record that swallows the next answer. A TCP socket with
 * a nearly full send buffer can take part of it; the rest then waits for
 * room (the socket is blocking, within pool_peer_timeout_s). */
static void tell_close(slot_t *slot)
{
    int fd = slot->fr.ipcFd;
    if (fd < 0)
        return;
    size_t sent = 0;
    while (sent < sizeof(CLOSE_HINT)) {
        ssize_t n = send(fd, CLOSE_HINT + sent, sizeof(CLOSE_HINT) - sent,
                         MSG_NOSIGNAL | (sent ? 0 : MSG_DONTWAIT));
        if (n > 0) {
            sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && sent == 0 &&
                   (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return; /* nothing sent: tried again later, or after an answer */
        } else {
            shutdown(fd, SHUT_RDWR); /* nginx sees the close, never a part */
            break;
        }
    }
    atomic_store(&slot->told, true);
}

/* Takes a kept connection epoll handed over; the main thread holds it
 * only while it writes CLOSE_HINT. */
static void slot_take(slot_t *slot)
{
    int idle = SLOT_IDLE;
    while (!atomic_compare_exchange_weak(&slot->state, &idle, SLOT_BUSY)) {
        idle = SLOT_IDLE;
        sched_yield();
    }
}

typedef struct {
    stoa_ctx_t *ctx;
    const stoa_fcgi_handler_t *handler;
    int epfd;
    pthread_mutex_t lock; /* guards free slots and listen_armed */
    slot_t **free;
    size_t nfree;
    slot_t *slots;
    size_t nslots;
    bool listen_armed;
    /* FCGI_WEB_SERVER_ADDRS as IPv6 addresses (IPv4 ones mapped), for the
     * IPv6 peers libfcgi lets through unchecked; NULL: no list set. */
    struct in6_addr *allowed;
    size_t nallowed;
} server_t;

/* libfcgi checks FCGI_WEB_SERVER_ADDRS for IPv4 peers only: an IPv6
 * listener would take any peer. The list is read once here, its IPv4
 * entries as v4-mapped addresses; an entry that is neither stops the
 * start. */
static bool read_allowed(server_t *srv)
{
    const char *env = getenv("FCGI_WEB_SERVER_ADDRS");
    if (!env)
        return true;
    size_t n = 1;
    for (const char *p = env; *p; p++)
        n += *p == ',';
    srv->allowed = stoa_xcalloc(n, sizeof(*srv->allowed));
    char *copy = strdup(env), *save = NULL;
    if (!copy)
        return false;
    bool ok = true;
    for (char *tok = strtok_r(copy, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        struct in6_addr *a = &srv->allowed[srv->nallowed];
        struct in_addr v4;
        if (inet_pton(AF_INET6, tok, a) == 1) {
            srv->nallowed++;
        } else if (inet_pton(AF_INET, tok, &v4) == 1) {
            memset(a, 0, sizeof(*a));
            a->s6_addr[10] = a->s6_addr[11] = 0xff;
            memcpy(&a->s6_addr[12], &v4, 4);
            srv->nallowed++;
        } else {
            stoa_log(STOA_LOG_CRIT, "FCGI_WEB_SERVER_ADDRS: not an address: %s",
                     tok);
            ok = false;
        }
    }
    free(copy);
    return ok;
}

/* Whether the peer of a connection just accepted may be served: always
 * but for an IPv6 peer missing from FCGI_WEB_SERVER_ADDRS (when set). */
static bool peer_allowed(const server_t *srv, int fd)
{
    if (!srv->allowed)
        return true;
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    if (getpeername(fd, (struct sockaddr *)&addr, &len) != 0)
        return false;
    if (addr.ss_family != AF_INET6)
        return true; /* IPv4: libfcgi checked it; unix: this host */
    const struct in6_addr *peer = &((struct sockaddr_in6 *)&addr)->sin6_addr;
    for (size_t i = 0; i < srv->nallowed; i++)
        if (memcmp(peer, &srv->allowed[i], sizeof(*peer)) == 0)
            return true;
    return false;
}

/* The listening socket is armed while a free slot can take what it
 * accepts; otherwise new connections wait in its queue. */
static void arm_listen_locked(server_t *srv)
{
    if (srv->listen_armed || srv->nfree == 0 || atomic_load(&stopping))
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT,
                             .data.ptr = NULL};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, FCGI_LISTENSOCK_FILENO, &ev) == 0)
        srv->listen_armed = true;
}

static void slot_free(server_t *srv, slot_t *slot)
{
    atomic_store(&slot->state, SLOT_FREE);
    pthread_mutex_lock(&srv->lock);
    srv->free[srv->nfree++] = slot;
    arm_listen_locked(srv);
    pthread_mutex_unlock(&srv->lock);
}

/* After a request: a connection nginx keeps goes back to epoll; a closed
 * one frees its slot. */
static void slot_done(server_t *srv, slot_t *slot)
{
    int fd = slot->fr.ipcFd;
    if (fd < 0) {
        slot_free(srv, slot);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                             .data.ptr = slot};
    /* Idle before it is armed: once armed, another thread may take it. */
    atomic_store(&slot->state, SLOT_IDLE);
    /* A slot's fd is new after each accept (closed fds leave the set by
     * themselves): MOD re-arms a known one, ADD registers a new one. */
    if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ||
        (errno == ENOENT && epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) == 0))
        return;
    int err = errno;
    slot_take(slot);
    stoa_log(STOA_LOG_ERR, "epoll_ctl failed on a kept connection: %s",
             strerror(err));
    FCGX_Free(&slot->fr, 1);
    slot_free(srv, slot);
}

static void *handler_thread(void *arg)
{
    server_t *srv = arg;
    stoa_ctx_t *ctx = srv->ctx;
    stoa_request_t req;
    memset(&req, 0, sizeof(req));
    req.arena = stoa_arena_create(0);
    stoa_arena_keep_spare(req.arena, ARENA_SPARE_BYTES);
    req.ctx = ctx;
    stoa_buf_init(&req.headers);
    stoa_buf_init(&req.body_out);
    stoa_buf_init(&req.field_errors);
    req.jw = stoa_jw_new(&req.body_out);
    stoa_buf_t out;
    stoa_buf_init(&out);
    /* What a large request left behind is given back when this thread
     * has had no work for IDLE_RELEASE_MS, not at once: under a stream of
     * large requests (event batches) each would fault its pages in again
     * after the trim. Likewise the last password hash's memory, kept for
     * the next hash while hashes follow each other (password.c). */
    bool trim_pending = false;
    for (;;) {
        struct epoll_event ev;
        bool argon2_kept = stoa_password_release_idle();
        int wait_ms = trim_pending || argon2_kept ? IDLE_RELEASE_MS : -1;
        int n = epoll_wait(srv->epfd, &ev, 1, wait_ms);
        if (n == 0 && trim_pending) {
            request_release_memory(&req, &out);
            trim_pending = false;
        }
        if (n < 0 && errno != EINTR) {
            stoa_log(STOA_LOG_ERR, "epoll_wait failed: %s", strerror(errno));
            usleep(10000);
        }
        if (n <= 0)
            continue;
        slot_t *slot = ev.data.ptr;
        bool accepting = slot == NULL;
        if (accepting) {
            pthread_mutex_lock(&srv->lock);
            srv->listen_armed = false;
            slot = srv->nfree && !atomic_load(&stopping)
                       ? srv->free[--srv->nfree]
                       : NULL;
            pthread_mutex_unlock(&srv->lock);
            if (!slot)
                continue; /* armed again when a slot frees */
            atomic_store(&slot->state, SLOT_BUSY);
            atomic_store(&slot->told, false);
        } else {
            slot_take(slot);
        }
        /* When nginx closed a kept connection, libfcgi's FCGX_Accept_r
         * would go on to accept a new one on that slot, bypassing the
         * peer check below and, while stopping, taking work it must not:
         * a kept slot reads its connection only, and fails once it is
         * closed; only a slot taken for the listening socket accepts. */
        slot->fr.listen_sock = accepting ? FCGI_LISTENSOCK_FILENO : -1;
        /* A kept connection with data reads its next request; a free slot
         * accepts (the socket is non-blocking: another process may have
         * taken the connection first) - libfcgi does both. */
        int rc = FCGX_Accept_r(&slot->fr);
        if (accepting) {
            pthread_mutex_lock(&srv->lock);
            arm_listen_locked(srv);
            pthread_mutex_unlock(&srv->lock);
        }
        if (rc >= 0 && accepting && !peer_allowed(srv, slot->fr.ipcFd)) {
            stoa_log(STOA_LOG_WARN, "refused a FastCGI connection from an "
                                    "address not in FCGI_WEB_SERVER_ADDRS");
            FCGX_Free(&slot->fr, 1);
            slot_done(srv, slot);
            continue;
        }
        if (rc < 0) {
            /* Nothing to accept, or nginx closed a kept connection. */
            if (rc != -EAGAIN && rc != -EWOULDBLOCK && !accepting &&
                slot->fr.ipcFd >= 0)
                stoa_log(STOA_LOG_WARN, "FastCGI read failed: %d", rc);
            slot_done(srv, slot);
            continue;
        }
        FCGX_Request *fr = &slot->fr;
        atomic_fetch_add(&in_flight, 1);
        uint64_t start = stoa_now_us();
        if (read_request(ctx, &req, fr, srv->handler))
            srv->handler->handle(ctx, &req, srv->handler->arg);
        /* Connections go back before the answer leaves. */
        stoa_request_release(&req);
        write_response(&req, fr, &out);
        drain_input(fr);
        FCGX_Finish_r(fr);
        /* Draining: nginx closes this connection once the answer is in. */
        if (atomic_load(&stopping))
            tell_close(slot);
        uint64_t end = stoa_now_us();
        stoa_log_access(req.method, req.route ? req.route->pattern : NULL,
                        req.status, end - start,
                        req.principal.present ? req.principal.user_id : NULL);
        if (srv->handler->done)
            srv->handler->done(&req, end - start, srv->handler->arg);
        trim_pending |= request_was_large(&req, &out);
        request_reset(&req);
        slot_done(srv, slot);
        atomic_fetch_sub(&in_flight, 1);
    }
    return NULL;
}

/*
 * Under SCHED_BATCH a handler thread woken by a request does not preempt
 * the task running on its CPU (nginx, most often, in the middle of its
 * event loop); it runs when that task sleeps or its slice ends, and by
 * then it often finds several requests ready. Without it, each request
 * cost two extra process switches on a busy host: nginx preempted by the
 * woken handler, then switched back in when the handler slept again
 * (docs/architecture.md, "Process model", for the figures). The handler
 * threads inherit the policy from this thread.
 */
static void use_batch_scheduling(const stoa_conf_t *conf)
{
    if (strcmp(conf->pool_batch_scheduling, "on") != 0)
        return;
    struct sched_param param = {.sched_priority = 0};
    if (sched_setscheduler(0, SCHED_BATCH, &param) != 0)
        stoa_log(STOA_LOG_WARN, "cannot use SCHED_BATCH: %s", strerror(errno));
}

/*
 * A pool behind nginx on another host listens on TCP. If that host
 * vanishes (no FIN, no RST), a thread reading a request from it would
 * wait forever, and its idle kept connections would hold their slots
 * forever: enough such losses and the listening socket stays disarmed.
 * So a TCP listener is given, for every connection it accepts (Linux
 * copies these options to accepted sockets): keep-alive probes after 60
 * s idle (3 lost, 10 s apart, end a kept connection to a dead host, which
 * epoll then reports), a user timeout for data nginx never acknowledges,
 * and receive and send timeouts, all of pool_peer_timeout_s, for a
 * request in progress (nginx sends a request whole, so a read that waits
 * that long waits for a dead peer). A unix socket's peer is on this host:
 * nothing to do.
 */
static void set_peer_timeouts(int fd, long timeout_s)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0 ||
        (addr.ss_family != AF_INET && addr.ss_family != AF_INET6))
        return;
    int on = 1, idle = 60, interval = 10, count = 3;
    unsigned user_ms = (unsigned)timeout_s * 1000u;
    struct timeval tv = {.tv_sec = timeout_s, .tv_usec = 0};
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval,
                   sizeof(interval)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms,
                   sizeof(user_ms)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
        stoa_log(STOA_LOG_WARN, "cannot set the FastCGI socket's timeouts: %s",
                 strerror(errno));
}

/* Draining, from the main thread: tells nginx to close each idle kept
 * connection not told yet (one a handler answered since was told then);
 * returns how many connections are still open. */
static size_t tell_idle_to_close(server_t *srv)
{
    for (size_t i = 0; i < srv->nslots; i++) {
        slot_t *slot = &srv->slots[i];
        int idle = SLOT_IDLE;
        if (atomic_load(&slot->told) ||
            !atomic_compare_exchange_strong(&slot->state, &idle, SLOT_TELLING))
            continue;
        tell_close(slot);
        atomic_store(&slot->state, SLOT_IDLE);
    }
    pthread_mutex_lock(&srv->lock);
    size_t open = srv->nslots - srv->nfree;
    pthread_mutex_unlock(&srv->lock);
    return open;
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
    stoa_signals_block_stop(&stop, NULL);

    static server_t srv;
    srv.ctx = ctx;
    srv.handler = handler;
    pthread_mutex_init(&srv.lock, NULL);
    size_t nslots = threads * STOA_FCGI_SLOTS_PER_THREAD;
    /* A descriptor per slot: raise the soft limit as far as needed (and
     * allowed), else use fewer slots. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        rlim_t want = (rlim_t)nslots + 64;
        if (nofile.rlim_cur < want) {
            nofile.rlim_cur = want < nofile.rlim_max ? want : nofile.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
                getrlimit(RLIMIT_NOFILE, &nofile);
        }
        if (nofile.rlim_cur < want && nofile.rlim_cur > 128) {
            nslots = (size_t)nofile.rlim_cur - 64;
            stoa_log(STOA_LOG_WARN, "open-file limit %lu: %zu connection slots",
                     (unsigned long)nofile.rlim_cur, nslots);
        }
    }
    srv.free = stoa_xcalloc(nslots, sizeof(*srv.free));
    srv.slots = stoa_xcalloc(nslots, sizeof(*srv.slots));
    srv.nslots = nslots;
    for (size_t i = 0; i < nslots; i++) {
        FCGX_InitRequest(&srv.slots[i].fr, FCGI_LISTENSOCK_FILENO, 0);
        atomic_init(&srv.slots[i].state, SLOT_FREE);
        srv.free[srv.nfree++] = &srv.slots[i];
    }
    /* Shared with the pool's other processes (one socket from
     * spawn-fcgi): whoever loses the race for a connection gets EAGAIN
     * instead of blocking in accept. Accepted sockets stay blocking. */
    int fl = fcntl(FCGI_LISTENSOCK_FILENO, F_GETFL);
    srv.epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN | EPOLLONESHOT,
                              .data.ptr = NULL};
    if (fl < 0 ||
        fcntl(FCGI_LISTENSOCK_FILENO, F_SETFL, fl | O_NONBLOCK) != 0 ||
        srv.epfd < 0 ||
        epoll_ctl(srv.epfd, EPOLL_CTL_ADD, FCGI_LISTENSOCK_FILENO, &lev) != 0) {
        stoa_log(STOA_LOG_CRIT, "cannot watch the FastCGI socket: %s",
                 strerror(errno));
        return 1;
    }
    srv.listen_armed = true;
    if (!read_allowed(&srv))
        return 1;
    set_peer_timeouts(FCGI_LISTENSOCK_FILENO, ctx->conf.pool_peer_timeout_s);
    use_batch_scheduling(&ctx->conf);
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
        size_t open = tell_idle_to_close(&srv);
        if (open == 0 && atomic_load(&in_flight) == 0)
            break;
        if (stoa_now_us() - began > (uint64_t)STOA_FCGI_DRAIN_MS * 1000) {
            stoa_log(STOA_LOG_WARN,
                     "drain timed out with %d in flight, %zu connections open",
                     atomic_load(&in_flight), open);
            break;
        }
        usleep(2000);
    }
    stoa_log_flush();
    stoa_metrics_close();
    stoa_log(STOA_LOG_INFO, "stopped");
    /* Threads still blocked in accept or on an idle kept connection hold
     * nothing that needs undoing; the exit ends them. */
    _exit(0);
}
