/* metrics.c - per-process slots in a per-program shared file, folded into
 * "retired" counts when their process is gone; the text exposition. */
#include "stoa/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEGMENT_MAGIC 0x73746f614d657472ull  /* "stoaMetr" */
#define ROUTE_ROWS (STOA_METRICS_ROUTES + 1) /* + the unmatched row */
#define STATUS_CLASSES 5                     /* 1xx .. 5xx */
#define METHOD_MAX 8
#define PATTERN_MAX 96
#define KIND_MAX 48
#define PROGRAM_MAX 32

static const double latency_bounds_s[STOA_METRICS_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
static const uint64_t latency_bounds_us[STOA_METRICS_LATENCY_BUCKETS] = {
    500,    1000,   2500,   5000,    10000,   25000,  50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000};
static const uint64_t lag_bounds_s[STOA_METRICS_LAG_BUCKETS] = {
    1, 2, 5, 10, 30, 60, 300, 900, 3600};

/* What a process counts. Written only by the slot's own process (relaxed
 * atomic adds from its threads), read by the collector, folded under the
 * exclusive flock once the process is gone. */
typedef struct {
    _Atomic uint64_t requests[ROUTE_ROWS][STATUS_CLASSES];
    _Atomic uint64_t latency[ROUTE_ROWS][STOA_METRICS_LATENCY_BUCKETS + 1];
    _Atomic uint64_t latency_sum_us[ROUTE_ROWS];
    _Atomic uint64_t events[STOA_METRIC_COUNT];
    _Atomic uint64_t jobs[STOA_METRICS_KINDS][STOA_METRICS_JOB_OUTCOMES];
    _Atomic uint64_t lag[STOA_METRICS_LAG_BUCKETS + 1];
    _Atomic uint64_t lag_sum_s;
} counters_t;

typedef struct {
    _Atomic int32_t pid;                   /* 0: free */
    _Atomic int32_t stopped;               /* the process stopped cleanly */
    _Atomic int64_t in_flight[ROUTE_ROWS]; /* a gauge: never folded */
    counters_t counts;
} slot_t;

typedef struct {
    uint64_t magic;
    uint64_t layout; /* hash of the labels and sizes this file was made for */
    _Atomic uint64_t restarts;
    char program[PROGRAM_MAX];
    uint32_t nroutes, nkinds;
    char methods[STOA_METRICS_ROUTES][METHOD_MAX];
    char patterns[STOA_METRICS_ROUTES][PATTERN_MAX];
    char kinds[STOA_METRICS_KINDS][KIND_MAX];
    counters_t retired;
    slot_t slots[STOA_METRICS_SLOTS];
} segment_t;

struct stoa_metrics_snapshot_s {
    char program[PROGRAM_MAX];
    uint32_t nroutes, nkinds;
    char methods[STOA_METRICS_ROUTES][METHOD_MAX];
    char patterns[STOA_METRICS_ROUTES][PATTERN_MAX];
    char kinds[STOA_METRICS_KINDS][KIND_MAX];
    uint64_t requests[ROUTE_ROWS][STATUS_CLASSES];
    uint64_t latency[ROUTE_ROWS][STOA_METRICS_LATENCY_BUCKETS + 1];
    uint64_t latency_sum_us[ROUTE_ROWS];
    uint64_t events[STOA_METRIC_COUNT];
    uint64_t jobs[STOA_METRICS_KINDS][STOA_METRICS_JOB_OUTCOMES];
    uint64_t lag[STOA_METRICS_LAG_BUCKETS + 1];
    uint64_t lag_sum_s;
    int64_t in_flight[ROUTE_ROWS];
    uint64_t processes, restarts;
};

/* A snapshot sums counters_t's in place: the same uint64_t run. */
_Static_assert(offsetof(struct stoa_metrics_snapshot_s, lag_sum_s) -
                       offsetof(struct stoa_metrics_snapshot_s, requests) ==
                   offsetof(counters_t, lag_sum_s),
               "a snapshot's counters mirror counters_t");

/* The process's own slot; NULL: counting is off. */
static slot_t *own;
static segment_t *own_segment;
static uint32_t own_nroutes;

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The header a program writes from its labels (into a zeroed segment). */
static void fill_labels(segment_t *s, const char *program,
                        const stoa_metrics_labels_t *l)
{
    snprintf(s->program, sizeof(s->program), "%s", program);
    s->nroutes =
        (uint32_t)(l->nroutes < STOA_METRICS_ROUTES ? l->nroutes
                                                    : STOA_METRICS_ROUTES);
    s->nkinds = (uint32_t)(l->nkinds < STOA_METRICS_KINDS ? l->nkinds
                                                          : STOA_METRICS_KINDS);
    for (uint32_t i = 0; i < s->nroutes; i++) {
        snprintf(s->methods[i], METHOD_MAX, "%s", l->methods[i]);
        snprintf(s->patterns[i], PATTERN_MAX, "%s", l->patterns[i]);
    }
    /* Routes beyond the table's room share its last row. */
    if (l->nroutes > STOA_METRICS_ROUTES) {
        snprintf(s->methods[STOA_METRICS_ROUTES - 1], METHOD_MAX, "ANY");
        snprintf(s->patterns[STOA_METRICS_ROUTES - 1], PATTERN_MAX, "other");
    }
    for (uint32_t i = 0; i < s->nkinds; i++)
        snprintf(s->kinds[i], KIND_MAX, "%s", l->kinds[i]);
}

static uint64_t layout_of(const segment_t *s)
{
    uint64_t h = 14695981039346656037ull;
    uint64_t size = sizeof(segment_t);
    h = fnv(h, &size, sizeof(size));
    h = fnv(h, s->program, sizeof(s->program));
    h = fnv(h, &s->nroutes, sizeof(s->nroutes));
    h = fnv(h, &s->nkinds, sizeof(s->nkinds));
    h = fnv(h, s->methods, sizeof(s->methods));
    h = fnv(h, s->patterns, sizeof(s->patterns));
    return fnv(h, s->kinds, sizeof(s->kinds));
}

static bool pid_alive(int32_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

#define ADD(dst, src)                                                          \
    atomic_fetch_add_explicit(&(dst), (src), memory_order_relaxed)
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* Adds one slot's counts to dst. Every counter is a uint64_t in a row:
 * walked as one array so a new counter cannot be forgotten here. */
static void counters_add(counters_t *dst, counters_t *src)
{
    _Atomic uint64_t *d = (_Atomic uint64_t *)(void *)dst;
    _Atomic uint64_t *s = (_Atomic uint64_t *)(void *)src;
    for (size_t i = 0; i < sizeof(counters_t) / sizeof(uint64_t); i++)
        ADD(d[i], LOAD(s[i]));
}

/* Under the exclusive lock: every slot whose process is gone is added to
 * the retired counts and freed. A process that died without stopping
 * cleanly (killed, crashed) counts as a restart. */
static void fold_dead(segment_t *s)
{
    for (size_t i = 0; i < STOA_METRICS_SLOTS; i++) {
        slot_t *slot = &s->slots[i];
        int32_t pid = LOAD(slot->pid);
        if (pid == 0 || pid_alive(pid))
            continue;
        counters_add(&s->retired, &slot->counts);
        if (!LOAD(slot->stopped))
            ADD(s->restarts, 1);
        memset(slot, 0, sizeof(*slot));
    }
}

static int map_file(const char *path, int *fd_out, segment_t **out, char *err,
                    size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "metrics file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return STOA_ERROR;
    }
    if ((size_t)st.st_size != sizeof(segment_t) &&
        ftruncate(fd, (off_t)sizeof(segment_t)) != 0) {
        snprintf(err, errlen, "metrics file %s: %s", path, strerror(errno));
        close(fd);
        return STOA_ERROR;
    }
    void *map = mmap(NULL, sizeof(segment_t), PROT_READ | PROT_WRITE,
                     MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "metrics file %s: %s", path, strerror(errno));
        close(fd);
        return STOA_ERROR;
    }
    *fd_out = fd;
    *out = map;
    return STOA_OK;
}

int stoa_metrics_open(const char *dir, const char *program,
                      const stoa_metrics_labels_t *labels, char *err,
                      size_t errlen)
{
    /* A forked child has its parent's slot: it takes one of its own. */
    if (own && atomic_load(&own->pid) == (int32_t)getpid())
        return STOA_OK;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.metrics", dir, program);
    int fd;
    segment_t *s;
    if (map_file(path, &fd, &s, err, errlen) != STOA_OK)
        return STOA_ERROR;
    /* Claims and folds are rare (a process start): one lock for them, and
     * the collector's shared lock sees either before or after a fold,
     * never a dead slot counted twice. */
    flock(fd, LOCK_EX);
    segment_t *want = stoa_xcalloc(1, sizeof(*want));
    fill_labels(want, program, labels);
    uint64_t layout = layout_of(want);
    if (s->magic != SEGMENT_MAGIC || s->layout != layout) {
        /* A new file, or one made by another build (other routes): its
         * counts would be mislabelled here; Prometheus takes the reset as
         * a counter restart. */
        memset(s, 0, sizeof(*s));
        fill_labels(s, program, labels);
        s->layout = layout;
        s->magic = SEGMENT_MAGIC;
    }
    free(want);
    fold_dead(s);
    slot_t *mine = NULL;
    for (size_t i = 0; i < STOA_METRICS_SLOTS && !mine; i++)
        if (LOAD(s->slots[i].pid) == 0)
            mine = &s->slots[i];
    if (mine)
        atomic_store(&mine->pid, (int32_t)getpid());
    flock(fd, LOCK_UN);
    close(fd);
    if (!mine) {
        snprintf(err, errlen, "metrics file %s: all %d slots are taken", path,
                 STOA_METRICS_SLOTS);
        munmap(s, sizeof(*s));
        return STOA_ERROR;
    }
    own_segment = s;
    own_nroutes = s->nroutes;
    own = mine;
    return STOA_OK;
}

void stoa_metrics_close(void)
{
    if (own)
        atomic_store(&own->stopped, 1);
}

static size_t route_row(size_t route)
{
    if (route >= own_nroutes)
        return route == STOA_METRICS_UNMATCHED || own_nroutes == 0
                   ? STOA_METRICS_UNMATCHED
                   : own_nroutes - 1;
    return route;
}

void stoa_metrics_request_begin(size_t route)
{
    if (own)
        atomic_fetch_add_explicit(&own->in_flight[route_row(route)], 1,
                                  memory_order_relaxed);
}

void stoa_metrics_request_end(size_t route, int status, uint64_t latency_us)
{
    slot_t *s = own;
    if (!s)
        return;
    size_t row = route_row(route);
    if (row != STOA_METRICS_UNMATCHED)
        atomic_fetch_sub_explicit(&s->in_flight[row], 1, memory_order_relaxed);
    int cls = status / 100 - 1;
    if (cls < 0 || cls >= STATUS_CLASSES)
        cls = STATUS_CLASSES - 1;
    size_t b = 0;
    while (b < STOA_METRICS_LATENCY_BUCKETS &&
           latency_us > latency_bounds_us[b])
        b++;
    ADD(s->counts.requests[row][cls], 1);
    ADD(s->counts.latency[row][b], 1);
    ADD(s->counts.latency_sum_us[row], latency_us);
}

void stoa_metrics_count(stoa_metric_t metric)
{
    if (own && (unsigned)metric < STOA_METRIC_COUNT)
        ADD(own->counts.events[metric], 1);
}

void stoa_metrics_job(size_t kind, stoa_metrics_job_outcome_t outcome)
{
    if (own && kind < own_segment->nkinds &&
        (unsigned)outcome < STOA_METRICS_JOB_OUTCOMES)
        ADD(own->counts.jobs[kind][outcome], 1);
}

void stoa_metrics_stripe_lag(uint64_t lag_s)
{
    if (!own)
        return;
    size_t b = 0;
    while (b < STOA_METRICS_LAG_BUCKETS && lag_s > lag_bounds_s[b])
        b++;
    ADD(own->counts.lag[b], 1);
    ADD(own->counts.lag_sum_s, lag_s);
}

/* The collector side. */

static void snapshot_add(uint64_t *dst, const counters_t *src)
{
    const _Atomic uint64_t *s = (const _Atomic uint64_t *)(const void *)src;
    for (size_t i = 0; i < sizeof(counters_t) / sizeof(uint64_t); i++)
        dst[i] += atomic_load_explicit(&s[i], memory_order_relaxed);
}

int stoa_metrics_snapshot_read(const char *path, stoa_arena_t *arena,
                               stoa_metrics_snapshot_t **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return STOA_ERROR;
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size != sizeof(segment_t)) {
        close(fd);
        return STOA_DECLINED;
    }
    segment_t *s = mmap(NULL, sizeof(segment_t), PROT_READ, MAP_SHARED, fd, 0);
    if (s == MAP_FAILED) {
        close(fd);
        return STOA_ERROR;
    }
    int rc = STOA_DECLINED;
    flock(fd, LOCK_SH);
    if (s->magic == SEGMENT_MAGIC) {
        stoa_metrics_snapshot_t *snap =
            stoa_arena_calloc(arena, 1, sizeof(*snap));
        memcpy(snap->program, s->program, sizeof(snap->program));
        snap->program[PROGRAM_MAX - 1] = '\0';
        snap->nroutes =
            s->nroutes < STOA_METRICS_ROUTES ? s->nroutes : STOA_METRICS_ROUTES;
        snap->nkinds =
            s->nkinds < STOA_METRICS_KINDS ? s->nkinds : STOA_METRICS_KINDS;
        memcpy(snap->methods, s->methods, sizeof(snap->methods));
        memcpy(snap->patterns, s->patterns, sizeof(snap->patterns));
        memcpy(snap->kinds, s->kinds, sizeof(snap->kinds));
        for (size_t i = 0; i < STOA_METRICS_ROUTES; i++) {
            snap->methods[i][METHOD_MAX - 1] = '\0';
            snap->patterns[i][PATTERN_MAX - 1] = '\0';
        }
        for (size_t i = 0; i < STOA_METRICS_KINDS; i++)
            snap->kinds[i][KIND_MAX - 1] = '\0';
        /* The counters of a snapshot are laid out as counters_t's. */
        uint64_t *sums = (uint64_t *)(void *)snap->requests;
        snapshot_add(sums, &s->retired);
        for (size_t i = 0; i < STOA_METRICS_SLOTS; i++) {
            const slot_t *slot = &s->slots[i];
            int32_t pid = atomic_load(&slot->pid);
            if (pid == 0)
                continue;
            /* A dead process's counts still count (until a fold moves
             * them to retired); its in-flight requests do not. */
            snapshot_add(sums, &slot->counts);
            if (pid_alive(pid) && !atomic_load(&slot->stopped)) {
                snap->processes++;
                for (size_t r = 0; r < ROUTE_ROWS; r++)
                    snap->in_flight[r] += atomic_load(&slot->in_flight[r]);
            }
        }
        snap->restarts = atomic_load(&s->restarts);
        *out = snap;
        rc = STOA_OK;
    }
    flock(fd, LOCK_UN);
    munmap(s, sizeof(segment_t));
    close(fd);
    return rc;
}

static int by_program(const void *a, const void *b)
{
    const stoa_metrics_snapshot_t *x = *(stoa_metrics_snapshot_t *const *)a;
    const stoa_metrics_snapshot_t *y = *(stoa_metrics_snapshot_t *const *)b;
    return strcmp(x->program, y->program);
}

int stoa_metrics_snapshot_dir(const char *dir, stoa_arena_t *arena,
                              stoa_metrics_snapshot_t ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return STOA_ERROR;
    size_t cap = 8;
    stoa_metrics_snapshot_t **list =
        stoa_arena_calloc(arena, cap, sizeof(*list));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 8 || strcmp(e->d_name + len - 8, ".metrics") != 0)
            continue;
        char *path = stoa_arena_sprintf(arena, "%s/%s", dir, e->d_name);
        stoa_metrics_snapshot_t *snap;
        if (stoa_metrics_snapshot_read(path, arena, &snap) != STOA_OK)
            continue;
        if (*n == cap) {
            stoa_metrics_snapshot_t **bigger =
                stoa_arena_calloc(arena, cap * 2, sizeof(*list));
            memcpy(bigger, list, cap * sizeof(*list));
            list = bigger;
            cap *= 2;
        }
        list[(*n)++] = snap;
    }
    closedir(d);
    qsort(list, *n, sizeof(*list), by_program);
    *out = list;
    return STOA_OK;
}

/* The exposition. */

void stoa_metrics_label_escape(stoa_buf_t *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\')
            stoa_buf_puts(out, "\\\\");
        else if (*p == '"')
            stoa_buf_puts(out, "\\\"");
        else if (*p == '\n')
            stoa_buf_puts(out, "\\n");
        else
            stoa_buf_append(out, p, 1);
    }
}

void stoa_metrics_family(stoa_buf_t *out, const char *name, const char *type,
                         const char *help)
{
    stoa_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                    type);
}

static void put_value(stoa_buf_t *out, double value)
{
    if (value == (double)(int64_t)value)
        stoa_buf_printf(out, " %lld\n", (long long)value);
    else
        stoa_buf_printf(out, " %.17g\n", value);
}

void stoa_metrics_sample(stoa_buf_t *out, const char *name, const char *labels,
                         double value)
{
    stoa_buf_puts(out, name);
    if (labels && *labels)
        stoa_buf_printf(out, "{%s}", labels);
    put_value(out, value);
}

static void put_u64(stoa_buf_t *out, uint64_t value)
{
    stoa_buf_printf(out, " %llu\n", (unsigned long long)value);
}

/* `name{pool="p"` then, for a route row, `,method="M",route="R"`; the
 * caller closes the braces. */
static void open_route(stoa_buf_t *out, const char *name,
                       const stoa_metrics_snapshot_t *s, size_t row)
{
    stoa_buf_printf(out, "%s{pool=\"", name);
    stoa_metrics_label_escape(out, s->program);
    if (row == STOA_METRICS_UNMATCHED) {
        stoa_buf_puts(out, "\",method=\"ANY\",route=\"unmatched\"");
        return;
    }
    stoa_buf_puts(out, "\",method=\"");
    stoa_metrics_label_escape(out, s->methods[row]);
    stoa_buf_puts(out, "\",route=\"");
    stoa_metrics_label_escape(out, s->patterns[row]);
    stoa_buf_puts(out, "\"");
}

static void open_pool(stoa_buf_t *out, const char *name,
                      const stoa_metrics_snapshot_t *s)
{
    stoa_buf_printf(out, "%s{pool=\"", name);
    stoa_metrics_label_escape(out, s->program);
    stoa_buf_puts(out, "\"");
}

/* The rows worth writing: the program's routes, and the unmatched row
 * when it saw a request (pools only: a program without routes has no
 * requests at all). */
static bool row_used(const stoa_metrics_snapshot_t *s, size_t row)
{
    if (row < s->nroutes)
        return true;
    if (row != STOA_METRICS_UNMATCHED || s->nroutes == 0)
        return false;
    for (size_t c = 0; c < STATUS_CLASSES; c++)
        if (s->requests[row][c])
            return true;
    return false;
}

static void format_bound(char *buf, size_t len, double bound)
{
    snprintf(buf, len, "%g", bound);
}

static void expose_requests(stoa_buf_t *out,
                            stoa_metrics_snapshot_t *const *snaps, size_t n)
{
    stoa_metrics_family(out, "stoa_http_requests_total", "counter",
                        "Requests answered by a pool, by route pattern and "
                        "status class.");
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < ROUTE_ROWS; r++) {
            if (!row_used(snaps[i], r))
                continue;
            for (size_t c = 0; c < STATUS_CLASSES; c++) {
                open_route(out, "stoa_http_requests_total", snaps[i], r);
                stoa_buf_printf(out, ",status=\"%zuxx\"}", c + 1);
                put_u64(out, snaps[i]->requests[r][c]);
            }
        }
    stoa_metrics_family(out, "stoa_http_request_duration_seconds", "histogram",
                        "Time a pool spent on a request, from its read to "
                        "its answer written.");
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < ROUTE_ROWS; r++) {
            if (!row_used(snaps[i], r))
                continue;
            uint64_t cumulative = 0;
            char le[32];
            for (size_t b = 0; b <= STOA_METRICS_LATENCY_BUCKETS; b++) {
                cumulative += snaps[i]->latency[r][b];
                if (b < STOA_METRICS_LATENCY_BUCKETS)
                    format_bound(le, sizeof(le), latency_bounds_s[b]);
                else
                    snprintf(le, sizeof(le), "+Inf");
                open_route(out, "stoa_http_request_duration_seconds_bucket",
                           snaps[i], r);
                stoa_buf_printf(out, ",le=\"%s\"}", le);
                put_u64(out, cumulative);
            }
            open_route(out, "stoa_http_request_duration_seconds_sum", snaps[i],
                       r);
            /* Exact seconds from the microseconds (a double would print
             * 9.0041010000000004). */
            uint64_t us = snaps[i]->latency_sum_us[r];
            stoa_buf_printf(out, "} %llu.%06llu\n",
                            (unsigned long long)(us / 1000000),
                            (unsigned long long)(us % 1000000));
            open_route(out, "stoa_http_request_duration_seconds_count",
                       snaps[i], r);
            stoa_buf_puts(out, "}");
            put_u64(out, cumulative);
        }
    stoa_metrics_family(out, "stoa_http_requests_in_flight", "gauge",
                        "Requests a pool is working on now.");
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < STOA_METRICS_ROUTES; r++) {
            if (!row_used(snaps[i], r))
                continue;
            open_route(out, "stoa_http_requests_in_flight", snaps[i], r);
            stoa_buf_puts(out, "}");
            put_value(out, (double)(snaps[i]->in_flight[r] < 0
                                        ? 0
                                        : snaps[i]->in_flight[r]));
        }
}

static void expose_processes(stoa_buf_t *out,
                             stoa_metrics_snapshot_t *const *snaps, size_t n)
{
    stoa_metrics_family(out, "stoa_pool_processes", "gauge",
                        "Live processes of a pool (or of the jobs worker).");
    for (size_t i = 0; i < n; i++) {
        open_pool(out, "stoa_pool_processes", snaps[i]);
        stoa_buf_puts(out, "}");
        put_u64(out, snaps[i]->processes);
    }
    stoa_metrics_family(out, "stoa_pool_restarts_total", "counter",
                        "Processes that died without a clean stop and were "
                        "replaced.");
    for (size_t i = 0; i < n; i++) {
        open_pool(out, "stoa_pool_restarts_total", snaps[i]);
        stoa_buf_puts(out, "}");
        put_u64(out, snaps[i]->restarts);
    }
}

/* The label-free counters, grouped into families (a family's samples
 * are contiguous, so rows of one family are consecutive here). */
static const struct {
    const char *family, *help, *label; /* label: NULL, or `k="v"` */
} events[STOA_METRIC_COUNT] = {
    [STOA_METRIC_PG_ERRORS] = {"stoa_postgres_errors_total",
                               "Postgres statements or connections that "
                               "failed.",
                               NULL},
    [STOA_METRIC_PG_POOL_WAITS] = {"stoa_postgres_pool_waits_total",
                                   "Times a thread waited for a free Postgres "
                                   "connection.",
                                   NULL},
    [STOA_METRIC_REDIS_ERRORS] = {"stoa_redis_errors_total",
                                  "Redis commands or connections that "
                                  "failed.",
                                  NULL},
    [STOA_METRIC_REDIS_POOL_WAITS] = {"stoa_redis_pool_waits_total",
                                      "Times a thread waited for a free Redis "
                                      "connection.",
                                      NULL},
    [STOA_METRIC_MAIL_SENT] = {"stoa_mail_total", "Mail handed to SMTP.",
                               "result=\"sent\""},
    [STOA_METRIC_MAIL_FAILED] = {"stoa_mail_total", "Mail handed to SMTP.",
                                 "result=\"failed\""},
    [STOA_METRIC_STRIPE_WEBHOOK_RECEIVED] = {"stoa_stripe_webhooks_total",
                                             "Stripe webhook deliveries by "
                                             "outcome.",
                                             "result=\"received\""},
    [STOA_METRIC_STRIPE_WEBHOOK_DUPLICATE] = {"stoa_stripe_webhooks_total",
                                              "Stripe webhook deliveries by "
                                              "outcome.",
                                              "result=\"duplicate\""},
    [STOA_METRIC_STRIPE_WEBHOOK_FAILED] = {"stoa_stripe_webhooks_total",
                                           "Stripe webhook deliveries by "
                                           "outcome.",
                                           "result=\"failed\""},
    [STOA_METRIC_WEBHOOK_DELIVERED] = {"stoa_webhook_deliveries_total",
                                       "Outbound webhook delivery attempts by "
                                       "result.",
                                       "result=\"delivered\""},
    [STOA_METRIC_WEBHOOK_FAILED] = {"stoa_webhook_deliveries_total",
                                    "Outbound webhook delivery attempts by "
                                    "result.",
                                    "result=\"failed\""},
    [STOA_METRIC_WEBHOOK_GAVE_UP] = {"stoa_webhook_deliveries_total",
                                     "Outbound webhook delivery attempts by "
                                     "result.",
                                     "result=\"gave_up\""},
/* The gateway's families: their name and help, then each sample's label. */
#define VERIFICATIONS                                                          \
    "stoa_gateway_verifications_total",                                        \
        "Access tokens the gateway checked, by result."
#define CACHE                                                                  \
    "stoa_gateway_cache_total",                                                \
        "Token checks answered from a worker's cache (hit) or by a "           \
        "signature verification (miss)."
#define REFUSALS                                                               \
    "stoa_gateway_refusals_total",                                             \
        "Requests the gateway answered 401 or 403, by reason."
    [STOA_METRIC_GATEWAY_VERIFIED] = {VERIFICATIONS, "result=\"ok\""},
    [STOA_METRIC_GATEWAY_REFUSED] = {VERIFICATIONS, "result=\"refused\""},
    [STOA_METRIC_GATEWAY_FAILED] = {VERIFICATIONS, "result=\"error\""},
    [STOA_METRIC_GATEWAY_CACHE_HIT] = {CACHE, "result=\"hit\""},
    [STOA_METRIC_GATEWAY_CACHE_MISS] = {CACHE, "result=\"miss\""},
    [STOA_METRIC_GATEWAY_REFUSAL_MISSING] = {REFUSALS, "reason=\"missing\""},
    [STOA_METRIC_GATEWAY_REFUSAL_MULTIPLE] = {REFUSALS, "reason=\"multiple\""},
    [STOA_METRIC_GATEWAY_REFUSAL_NOT_BEARER] = {REFUSALS,
                                                "reason=\"not_bearer\""},
    [STOA_METRIC_GATEWAY_REFUSAL_MALFORMED_HEADER] =
        {REFUSALS, "reason=\"malformed_header\""},
    [STOA_METRIC_GATEWAY_REFUSAL_MALFORMED] = {REFUSALS,
                                               "reason=\"malformed\""},
    [STOA_METRIC_GATEWAY_REFUSAL_TOO_LONG] = {REFUSALS, "reason=\"too_long\""},
    [STOA_METRIC_GATEWAY_REFUSAL_BAD_ALG] = {REFUSALS, "reason=\"bad_alg\""},
    [STOA_METRIC_GATEWAY_REFUSAL_UNKNOWN_KID] = {REFUSALS,
                                                 "reason=\"unknown_kid\""},
    [STOA_METRIC_GATEWAY_REFUSAL_BAD_SIGNATURE] = {REFUSALS,
                                                   "reason=\"bad_signature\""},
    [STOA_METRIC_GATEWAY_REFUSAL_EXPIRED] = {REFUSALS, "reason=\"expired\""},
    [STOA_METRIC_GATEWAY_REFUSAL_NOT_YET_VALID] = {REFUSALS,
                                                   "reason=\"not_yet_valid\""},
    [STOA_METRIC_GATEWAY_REFUSAL_BAD_ISSUER] = {REFUSALS,
                                                "reason=\"bad_issuer\""},
    [STOA_METRIC_GATEWAY_REFUSAL_BAD_AUDIENCE] = {REFUSALS,
                                                  "reason=\"bad_audience\""},
    [STOA_METRIC_GATEWAY_REFUSAL_MISSING_CLAIM] = {REFUSALS,
                                                   "reason=\"missing_claim\""},
    [STOA_METRIC_GATEWAY_REFUSAL_ROLE] = {REFUSALS, "reason=\"role\""},
#undef VERIFICATIONS
#undef CACHE
#undef REFUSALS
};

static bool is_gateway_metric(size_t m)
{
    return m >= STOA_METRIC_GATEWAY_VERIFIED;
}

static void expose_events(stoa_buf_t *out,
                          stoa_metrics_snapshot_t *const *snaps, size_t n)
{
    for (size_t m = 0; m < STOA_METRIC_COUNT; m++) {
        if (m == 0 || strcmp(events[m].family, events[m - 1].family) != 0)
            stoa_metrics_family(out, events[m].family, "counter",
                                events[m].help);
        for (size_t i = 0; i < n; i++) {
            /* The gateway's families are its own, and the pools' are not
             * the gateway's: no series that can only ever be 0. */
            if (is_gateway_metric(m) !=
                (strcmp(snaps[i]->program, STOA_METRICS_GATEWAY) == 0))
                continue;
            open_pool(out, events[m].family, snaps[i]);
            if (events[m].label)
                stoa_buf_printf(out, ",%s", events[m].label);
            stoa_buf_puts(out, "}");
            put_u64(out, snaps[i]->events[m]);
        }
    }
}

static void expose_jobs(stoa_buf_t *out, stoa_metrics_snapshot_t *const *snaps,
                        size_t n)
{
    static const char *const names[STOA_METRICS_JOB_OUTCOMES] = {
        "stoa_job_runs_total", "stoa_job_failures_total",
        "stoa_job_retries_total"};
    static const char *const helps[STOA_METRICS_JOB_OUTCOMES] = {
        "Outbox jobs run, by kind.",
        "Outbox jobs that failed for good (dead), by kind.",
        "Outbox job attempts that failed and will be retried, by kind."};
    for (size_t o = 0; o < STOA_METRICS_JOB_OUTCOMES; o++) {
        stoa_metrics_family(out, names[o], "counter", helps[o]);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < snaps[i]->nkinds; k++) {
                open_pool(out, names[o], snaps[i]);
                stoa_buf_puts(out, ",kind=\"");
                stoa_metrics_label_escape(out, snaps[i]->kinds[k]);
                stoa_buf_puts(out, "\"}");
                put_u64(out, snaps[i]->jobs[k][o]);
            }
    }
}

static void expose_lag(stoa_buf_t *out, stoa_metrics_snapshot_t *const *snaps,
                       size_t n)
{
    const char *name = "stoa_stripe_webhook_lag_seconds";
    stoa_metrics_family(out, name, "histogram",
                        "Seconds from a Stripe event's creation to its "
                        "effect applied.");
    for (size_t i = 0; i < n; i++) {
        /* Only a program that saw a Stripe webhook has a lag to show. */
        if (!snaps[i]->events[STOA_METRIC_STRIPE_WEBHOOK_RECEIVED])
            continue;
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= STOA_METRICS_LAG_BUCKETS; b++) {
            cumulative += snaps[i]->lag[b];
            open_pool(out, "stoa_stripe_webhook_lag_seconds_bucket", snaps[i]);
            if (b < STOA_METRICS_LAG_BUCKETS)
                stoa_buf_printf(out, ",le=\"%llu\"}",
                                (unsigned long long)lag_bounds_s[b]);
            else
                stoa_buf_puts(out, ",le=\"+Inf\"}");
            put_u64(out, cumulative);
        }
        open_pool(out, "stoa_stripe_webhook_lag_seconds_sum", snaps[i]);
        stoa_buf_puts(out, "}");
        put_u64(out, snaps[i]->lag_sum_s);
        open_pool(out, "stoa_stripe_webhook_lag_seconds_count", snaps[i]);
        stoa_buf_puts(out, "}");
        put_u64(out, cumulative);
    }
}

void stoa_metrics_expose(stoa_buf_t *out, stoa_metrics_snapshot_t *const *snaps,
                         size_t n)
{
    expose_requests(out, snaps, n);
    expose_processes(out, snaps, n);
    expose_events(out, snaps, n);
    expose_jobs(out, snaps, n);
    expose_lag(out, snaps, n);
}
