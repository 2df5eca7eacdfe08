/* scrape.c - the host's metrics endpoint, served by stoa-jobs on
 * metrics_listen: the sums of every program's metrics file (metrics.h),
 * the outbox figures read from Postgres and nginx's stub_status, all
 * gathered at scrape time, so the request path pays nothing for them.
 *
 * One thread, one connection at a time: a scrape is rare (every few
 * seconds) and short. The listener is meant for an internal address
 * only; it is never the public TLS port. */
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "jobs.h"
#include "statements.h"
#include "stoa/buf.h"
#include "stoa/ctx.h"
#include "stoa/log.h"
#include "stoa/metrics.h"

#define REQUEST_MAX 4096
#define CLIENT_TIMEOUT_S 2
#define NGINX_STATUS_MAX 4096

typedef struct {
    stoa_ctx_t *ctx;
    int fd;
    const char *const *kinds;
    size_t nkinds;
    const volatile sig_atomic_t *stop;
} scrape_t;

static int listen_on(const char *spec, char *err, size_t errlen)
{
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1]) {
        snprintf(err, errlen, "metrics_listen %s: want host:port", spec);
        return -1;
    }
    char host[256];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
    /* [::1]:9145 */
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host, colon + 1, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "metrics_listen %s: %s", spec, gai_strerror(gai));
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
        snprintf(err, errlen, "metrics_listen %s: %s", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static void write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

static void outbox_figures(scrape_t *s, stoa_arena_t *arena, stoa_buf_t *out)
{
    stoa_db_t *db = stoa_ctx_db_take(s->ctx, 1000);
    stoa_db_result_t *res = NULL;
    int rc = db ? stoa_db_exec(db, arena, JOBS_SQL(METRICS_OUTBOX), NULL, &res)
                : STOA_AGAIN;
    if (db)
        stoa_ctx_db_give(s->ctx, db);
    stoa_metrics_family(out, "stoa_outbox_scrape_ok", "gauge",
                        "1 when the outbox figures below could be read from "
                        "Postgres.");
    stoa_metrics_sample(out, "stoa_outbox_scrape_ok", NULL,
                        rc == STOA_OK ? 1 : 0);
    if (rc != STOA_OK)
        return;
    static const struct {
        const char *name, *type, *help;
        int col;
    } families[] = {
        {"stoa_outbox_jobs", "gauge",
         "Outbox jobs not done and not dead (queued or running), by kind.",
         METRICS_OUTBOX_COL_OPEN},
        {"stoa_outbox_dead_jobs", "gauge",
         "Outbox jobs that failed for good and wait for an operator.",
         METRICS_OUTBOX_COL_DEAD},
        {"stoa_outbox_oldest_due_seconds", "gauge",
         "Age of the oldest job due now that no worker holds (0: none).",
         METRICS_OUTBOX_COL_OLDEST_DUE_S},
    };
    int rows = stoa_db_rows(res);
    for (size_t f = 0; f < STOA_ARRAY_LEN(families); f++) {
        stoa_metrics_family(out, families[f].name, families[f].type,
                            families[f].help);
        /* Every kind the worker knows shows, 0 when it has no row, so an
         * alert sees a series from the start; then kinds only rows name. */
        for (size_t k = 0; k < s->nkinds; k++) {
            double v = 0;
            for (int r = 0; r < rows; r++)
                if (strcmp(stoa_db_value(res, r, METRICS_OUTBOX_COL_KIND),
                           s->kinds[k]) == 0)
                    v = atof(stoa_db_value(res, r, families[f].col));
            stoa_buf_t labels;
            stoa_buf_init(&labels);
            stoa_buf_puts(&labels, "kind=\"");
            stoa_metrics_label_escape(&labels, s->kinds[k]);
            stoa_buf_puts(&labels, "\"");
            stoa_metrics_sample(out, families[f].name, labels.data, v);
            stoa_buf_free(&labels);
        }
        for (int r = 0; r < rows; r++) {
            const char *kind = stoa_db_value(res, r, METRICS_OUTBOX_COL_KIND);
            bool known = false;
            for (size_t k = 0; k < s->nkinds && !known; k++)
                known = strcmp(kind, s->kinds[k]) == 0;
            if (known)
                continue;
            stoa_buf_t labels;
            stoa_buf_init(&labels);
            stoa_buf_puts(&labels, "kind=\"");
            stoa_metrics_label_escape(&labels, kind);
            stoa_buf_puts(&labels, "\"");
            stoa_metrics_sample(out, families[f].name, labels.data,
                                atof(stoa_db_value(res, r, families[f].col)));
            stoa_buf_free(&labels);
        }
    }
}

static size_t collect_body(char *data, size_t size, size_t n, void *arg)
{
    stoa_buf_t *b = arg;
    if (b->len + size * n > NGINX_STATUS_MAX)
        return 0;
    stoa_buf_append(b, data, size * n);
    return size * n;
}

/* nginx's stub_status page, from the internal server that also takes the
 * live channel's publications: its unix socket (realtime_socket), or the
 * server of the first realtime_publish_url (another host's nginx). */
static void nginx_figures(scrape_t *s, stoa_buf_t *out)
{
    const char *sock = s->ctx->conf.realtime_socket;
    char url[512] = "http://localhost/stub_status";
    bool have_url = *sock != '\0';
    if (!have_url && jobs_realtime_url_at(s->ctx->conf.realtime_publish_url, 0,
                                          url, sizeof(url) - 16)) {
        /* scheme://host:port/publish -> scheme://host:port/stub_status */
        char *host = strstr(url, "://");
        char *path = host ? strchr(host + 3, '/') : NULL;
        size_t at = path ? (size_t)(path - url) : strlen(url);
        snprintf(url + at, sizeof(url) - at, "/stub_status");
        have_url = true;
    }
    stoa_buf_t page;
    stoa_buf_init(&page);
    bool ok = false;
    CURL *curl = have_url ? curl_easy_init() : NULL;
    if (curl) {
        if (*sock)
            curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, sock);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &page);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 1000L);
        long code = 0;
        if (curl_easy_perform(curl) == CURLE_OK &&
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code) ==
                CURLE_OK &&
            code == 200)
            ok = true;
        curl_easy_cleanup(curl);
    }
    stoa_buf_append(&page, "", 1);
    unsigned long long active, accepts, handled, requests, reading, writing,
        waiting;
    if (ok && sscanf(page.data,
                     "Active connections: %llu server accepts handled "
                     "requests %llu %llu %llu Reading: %llu Writing: %llu "
                     "Waiting: %llu",
                     &active, &accepts, &handled, &requests, &reading, &writing,
                     &waiting) != 7)
        ok = false;
    stoa_buf_free(&page);
    stoa_metrics_family(out, "stoa_nginx_up", "gauge",
                        "1 when nginx's stub_status could be read.");
    stoa_metrics_sample(out, "stoa_nginx_up", NULL, ok ? 1 : 0);
    if (!ok)
        return;
    stoa_metrics_family(out, "stoa_nginx_connections_accepted_total", "counter",
                        "Client connections nginx accepted.");
    stoa_metrics_sample(out, "stoa_nginx_connections_accepted_total", NULL,
                        (double)accepts);
    stoa_metrics_family(out, "stoa_nginx_connections_handled_total", "counter",
                        "Client connections nginx handled.");
    stoa_metrics_sample(out, "stoa_nginx_connections_handled_total", NULL,
                        (double)handled);
    stoa_metrics_family(out, "stoa_nginx_http_requests_total", "counter",
                        "Client requests nginx read.");
    stoa_metrics_sample(out, "stoa_nginx_http_requests_total", NULL,
                        (double)requests);
    stoa_metrics_family(out, "stoa_nginx_connections", "gauge",
                        "Client connections open now, by state.");
    stoa_metrics_sample(out, "stoa_nginx_connections", "state=\"active\"",
                        (double)active);
    stoa_metrics_sample(out, "stoa_nginx_connections", "state=\"reading\"",
                        (double)reading);
    stoa_metrics_sample(out, "stoa_nginx_connections", "state=\"writing\"",
                        (double)writing);
    stoa_metrics_sample(out, "stoa_nginx_connections", "state=\"waiting\"",
                        (double)waiting);
}

static void answer(int fd, const char *status, const char *type,
                   const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: "
                     "%zu\r\nConnection: close\r\n\r\n",
                     status, type, len);
    write_all(fd, head, (size_t)n);
    write_all(fd, body, len);
}

static void serve_client(scrape_t *s, int fd, stoa_arena_t *arena)
{
    struct timeval tv = {CLIENT_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char req[REQUEST_MAX + 1];
    size_t len = 0;
    while (len < REQUEST_MAX) {
        ssize_t n = read(fd, req + len, REQUEST_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
            break;
    }
    req[len] = '\0';
    static const char metrics_get[] = "GET /metrics";
    size_t ml = sizeof(metrics_get) - 1;
    if (strncmp(req, metrics_get, ml) != 0 ||
        (req[ml] != ' ' && req[ml] != '?')) {
        static const char nf[] = "not found: GET /metrics\n";
        answer(fd, "404 Not Found", "text/plain", nf, sizeof(nf) - 1);
        return;
    }
    stoa_buf_t body;
    stoa_buf_init(&body);
    stoa_metrics_snapshot_t **snaps = NULL;
    size_t n = 0;
    if (*s->ctx->conf.metrics_dir &&
        stoa_metrics_snapshot_dir(s->ctx->conf.metrics_dir, arena, &snaps,
                                  &n) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "metrics_dir %s unreadable",
                 s->ctx->conf.metrics_dir);
    stoa_metrics_expose(&body, snaps, n);
    /* No pools: stoa-jobs --scrape-only on a host without database
     * access, whose scrape has no outbox figures (and must not try). */
    if (s->ctx->db_pool)
        outbox_figures(s, arena, &body);
    nginx_figures(s, &body);
    answer(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8",
           body.data ? body.data : "", body.len);
    stoa_buf_free(&body);
}

static void *scrape_main(void *arg)
{
    scrape_t *s = arg;
    stoa_arena_t *arena = stoa_arena_create(0);
    while (!*s->stop) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 500) <= 0)
            continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            continue;
        serve_client(s, fd, arena);
        close(fd);
        stoa_arena_reset(arena);
    }
    stoa_arena_destroy(arena);
    close(s->fd);
    stoa_log_thread_done();
    return NULL;
}

int jobs_scrape_start(stoa_ctx_t *ctx, const char *const *kinds, size_t nkinds,
                      const volatile sig_atomic_t *stop, pthread_t *thread)
{
    if (!*ctx->conf.metrics_listen)
        return STOA_DECLINED;
    char err[512];
    int fd = listen_on(ctx->conf.metrics_listen, err, sizeof(err));
    if (fd < 0) {
        stoa_log(STOA_LOG_ERR, "metrics are not served: %s", err);
        return STOA_ERROR;
    }
    static scrape_t s;
    s.ctx = ctx;
    s.fd = fd;
    s.kinds = kinds;
    s.nkinds = nkinds;
    s.stop = stop;
    if (pthread_create(thread, NULL, scrape_main, &s) != 0) {
        close(fd);
        return STOA_ERROR;
    }
    stoa_log(STOA_LOG_INFO, "serving metrics on %s", ctx->conf.metrics_listen);
    return STOA_OK;
}
