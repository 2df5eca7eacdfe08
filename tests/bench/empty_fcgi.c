/*
 * stoa-empty-fcgi: the cheapest correct libfcgi responder, used by the
 * benchmarks as the ceiling a pool process can reach behind the same nginx.
 * It answers every request with 200 {"status":"ok"} and does no other work.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* sigaction under -std=c11 */
#endif
#define _GNU_SOURCE /* SCHED_BATCH */

#include <fcgiapp.h>

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a waiting connection is left for a free process to accept
 * before an idle one gives its kept connection up for it. */
#define YIELD_GRACE_MS 2

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t answering;

/*
 * SIGTERM (or multiwatch's SIGUSR1) ends the process with status 0. libfcgi
 * retries its blocking reads when a signal interrupts them, so a process
 * waiting for the next request on a kept connection would never notice a
 * flag: between requests there is nothing to lose and the handler exits at
 * once (a request FCGX_Accept_r is still reading is dropped, and nginx
 * sees its connection close); while a request is being answered it only
 * asks the loop to stop after the response.
 */
static void on_terminate(int signo)
{
    (void) signo;
    stop_requested = 1;
    if (!answering) {
        _exit(0);
    }
}

/* Closes the kept connection so the process can accept another. A plain
 * close: the response went out in full and nothing is unread, so there is
 * nothing for libfcgi's lingering close (shutdown, then wait up to seconds
 * for the peer) to protect. */
static void give_up_connection(FCGX_Request *request)
{
    close(request->ipcFd);
    request->ipcFd = -1;
}

/*
 * libfcgi serves one connection at a time, while nginx keeps connections
 * open (fastcgi_keep_conn) and reuses them. A process bound to a kept
 * connection cannot accept the connection another nginx worker has just
 * opened; left alone, that one waits in the listen queue for as long as the
 * load lasts, because the kept connections never fall idle. So between two
 * requests on a kept connection the process decides whether to keep it:
 * - right after a response, a connection already waiting in the queue
 *   means the other processes are busy (a free one sits in accept() and
 *   takes it at once): the kept connection is given up, unless its next
 *   request is already there;
 * - while idle, a connection that starts waiting is left YIELD_GRACE_MS
 *   for a free process, then the idle connection is given up for it.
 * nginx sees the close on its cached connection and opens a fresh one when
 * it needs one (a request it had just sent there is retried if idempotent).
 */
static void wait_for_next_request(FCGX_Request *request)
{
    struct pollfd both[2];
    struct pollfd kept;
    struct pollfd queue;

    both[0].fd = request->ipcFd;
    both[0].events = POLLIN;
    both[1].fd = request->listen_sock;
    both[1].events = POLLIN;
    kept = both[0];
    queue = both[1];

    if (poll(both, 2, 0) > 0 && both[0].revents == 0 && (both[1].revents & POLLIN) != 0) {
        give_up_connection(request);
        return;
    }
    for (;;) {
        if (poll(both, 2, -1) < 0) {
            return; /* FCGX_Accept_r reports what is wrong */
        }
        if (both[0].revents != 0) {
            return; /* the next request, or nginx closed the connection */
        }
        if ((both[1].revents & POLLIN) == 0) {
            continue;
        }
        if (poll(&kept, 1, YIELD_GRACE_MS) != 0) {
            return;
        }
        if (poll(&queue, 1, 0) == 1 && (queue.revents & POLLIN) != 0) {
            give_up_connection(request);
            return;
        }
    }
}

int main(void)
{
    /* Headers and body in one buffer: one FCGX_PutStr, one stdout record. */
    static const char response[] =
        "Status: 200 OK\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 15\r\n"
        "\r\n"
        "{\"status\":\"ok\"}";
    struct sigaction action;
    FCGX_Request request;
    char discard[4096];

    memset(&action, 0, sizeof(action));
    action.sa_handler = on_terminate;
    sigemptyset(&action.sa_mask);
    /* multiwatch asks its children to stop with SIGUSR1 unless told
     * otherwise (-s); without a handler of ours libfcgi would take it and
     * only mark a shutdown that a blocked read never sees. */
    if (sigaction(SIGTERM, &action, NULL) != 0 || sigaction(SIGINT, &action, NULL) != 0
        || sigaction(SIGUSR1, &action, NULL) != 0) {
        return 1;
    }

    /* The pools' scheduling policy (pool_batch_scheduling, on unless
     * STOA_POOL_BATCH_SCHEDULING=off), so that the ceiling and the pools
     * are scheduled alike. */
    const char *batch = getenv("STOA_POOL_BATCH_SCHEDULING");
    if (!batch || strcmp(batch, "off") != 0) {
        struct sched_param param = {.sched_priority = 0};
        (void) sched_setscheduler(0, SCHED_BATCH, &param);
    }

    if (FCGX_Init() != 0 || FCGX_InitRequest(&request, 0, 0) != 0) {
        return 1;
    }

    for (;;) {
        answering = 0;
        if (stop_requested) {
            break;
        }
        if (request.ipcFd >= 0) {
            wait_for_next_request(&request);
        }
        if (FCGX_Accept_r(&request) < 0) {
            break;
        }
        answering = 1;
        /*
         * Read the body to its end even though it is ignored: on a kept
         * connection the next request's records follow it, so unread stdin
         * would desynchronise the stream.
         */
        while (FCGX_GetStr(discard, (int) sizeof(discard), request.in) > 0) {
        }
        FCGX_PutStr(response, (int) sizeof(response) - 1, request.out);
        FCGX_Finish_r(&request);
    }

    FCGX_Free(&request, 1);
    return stop_requested ? 0 : 1;
}
