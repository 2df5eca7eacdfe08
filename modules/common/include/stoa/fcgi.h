/* fcgi.h - the FastCGI transport of a pool process: handler threads, each
 * with its own FCGX_Request, arena and request, accepting on the socket
 * spawn-fcgi hands over as fd 0.
 *
 * Why this shape: libfcgi serves one connection per FCGX_Request, and
 * nginx keeps upstream connections open between requests. A thread that
 * waited on its own kept connection would serve that connection's next
 * request before anything queued on a new connection, and under load the
 * queued ones waited up to a second (the kept ones jumped the queue). So
 * connections live in slots (an FCGX_Request each, STOA_FCGI_SLOTS_PER_
 * THREAD per thread) watched by one epoll set, and conf.pool_threads
 * handler threads each take the next ready one, a kept connection with a
 * request or the listening socket with a new connection: requests are
 * served in the order they arrived, an idle kept connection costs a slot
 * and a file descriptor, never a thread. nginx keeps at most half the
 * slots idle (scripts/stack.sh), so a new connection finds a free slot.
 *
 * Shutdown: SIGTERM and SIGINT are taken by the calling thread (sigwait;
 * libfcgi's blocking accept would not notice them). The process accepts no
 * new connection, finishes the requests in flight and serves those that
 * still come on kept connections, and asks nginx to close every kept
 * connection (after an answer, or at once when idle); it never closes
 * one itself, which could race a request nginx is sending on it into a
 * 502. It exits when nginx has closed them all, or after
 * STOA_FCGI_DRAIN_MS at the latest. */
#ifndef STOA_FCGI_H
#define STOA_FCGI_H

#include "stoa/ctx.h"
#include "stoa/http.h"

/* Connection slots per handler thread: idle kept connections wait in
 * them (in epoll), not in threads. A connection that finds no free slot
 * waits in the listen queue behind requests on kept connections, so there
 * are enough for every connection nginx opens at a thousand clients
 * (2 processes x 8 threads x 64). */
#define STOA_FCGI_SLOTS_PER_THREAD 64
#define STOA_FCGI_DRAIN_MS 10000

typedef struct {
    /* Answers a request whose params are read; the body is read before
     * the call (up to body_cap's bytes, else 413). */
    void (*handle)(stoa_ctx_t *ctx, stoa_request_t *req, void *arg);
    /* The body limit of a request, from its method and path. */
    long (*body_cap)(stoa_ctx_t *ctx, const stoa_request_t *req, void *arg);
    void *arg;
    /* Optional: after the answer left, with the request's whole time. */
    void (*done)(const stoa_request_t *req, uint64_t latency_us, void *arg);
} stoa_fcgi_handler_t;

/* Serves until SIGTERM/SIGINT with `threads` handler threads; returns the
 * process exit code (it does not return while serving). */
int stoa_fcgi_serve(stoa_ctx_t *ctx, size_t threads,
                    const stoa_fcgi_handler_t *handler);

#endif
