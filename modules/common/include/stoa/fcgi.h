/* fcgi.h - the FastCGI transport of a pool process: handler threads, each
 * with its own FCGX_Request, arena and request, accepting on the socket
 * spawn-fcgi hands over as fd 0.
 *
 * Why threads: libfcgi serves one connection at a time per FCGX_Request,
 * and nginx keeps upstream connections open between requests. With one
 * handler per process, a request could wait in the listen queue while
 * every handler sat on an idle kept connection. A process runs
 * conf.pool_threads handlers, and nginx keeps fewer idle connections per
 * pool than the pool has handlers (scripts/stack.sh sizes both), so a
 * fresh connection always finds a free handler: the tail is set by the
 * work, not by which connection nginx picked.
 *
 * Shutdown: SIGTERM and SIGINT are taken by the calling thread (sigwait;
 * libfcgi's blocking accept would not notice them). Handlers finish the
 * request in flight, close their connection and stop; the process exits
 * once no request has been in flight for STOA_FCGI_QUIET_MS, or after
 * STOA_FCGI_DRAIN_MS at the latest. */
#ifndef STOA_FCGI_H
#define STOA_FCGI_H

#include "stoa/ctx.h"
#include "stoa/http.h"

#define STOA_FCGI_QUIET_MS 50
#define STOA_FCGI_DRAIN_MS 10000

typedef struct {
    /* Answers a request whose params are read; the body is read before
     * the call (up to body_cap's bytes, else 413). */
    void (*handle)(stoa_ctx_t *ctx, stoa_request_t *req, void *arg);
    /* The body limit of a request, from its method and path. */
    long (*body_cap)(stoa_ctx_t *ctx, const stoa_request_t *req, void *arg);
    void *arg;
} stoa_fcgi_handler_t;

/* Serves until SIGTERM/SIGINT with `threads` handler threads; returns the
 * process exit code (it does not return while serving). */
int stoa_fcgi_serve(stoa_ctx_t *ctx, size_t threads,
                    const stoa_fcgi_handler_t *handler);

#endif
