/* metrics.h - counters every process of a program keeps in memory that
 * outlives it, and their Prometheus text exposition.
 *
 * Each program of a host (a pool: auth, billing...; the jobs worker; the
 * nginx gateway module, whose workers are its processes) maps one file,
 * <metrics_dir>/<program>.metrics (on a local file system, ideally
 * tmpfs), holding a slot per process. A process counts only into
 * its own slot, with relaxed atomic adds: no lock and no syscall on the
 * hot path. When a process starts, it takes a free slot under an flock of
 * the file, and first folds every slot whose process is gone into the
 * file's "retired" counts (adding, never replacing), so a sum over the
 * slots never goes backwards when a process is killed and replaced. The
 * collector (stoa-jobs, serving metrics_listen) reads every file under a
 * shared flock and writes the sums.
 *
 * One process has one segment (stoa_metrics_open, once, at start); the
 * counting calls below use it and are no-ops when none is open (no
 * metrics_dir, stoactl, unit tests). Labels are the program's route
 * patterns (never raw paths) and its job kinds, fixed at start: bounded
 * cardinality. Thread-safe. */
#ifndef STOA_METRICS_H
#define STOA_METRICS_H

#include "stoa/arena.h"
#include "stoa/buf.h"
#include "stoa/core.h"

#define STOA_METRICS_ROUTES 64 /* routes of one program (more: "other") */
#define STOA_METRICS_KINDS 32  /* job kinds of one program */
#define STOA_METRICS_SLOTS 128 /* live processes of one program */
/* Request latency: 0.5 ms to 5 s; one more bucket holds the rest. */
#define STOA_METRICS_LATENCY_BUCKETS 13
/* Stripe webhook lag (event created to applied): 1 s to 1 h. */
#define STOA_METRICS_LAG_BUCKETS 9
/* The route index of a request no route matched (404, 405, 413...). */
#define STOA_METRICS_UNMATCHED STOA_METRICS_ROUTES

/* Counters without labels of their own (beyond the program's). */
typedef enum {
    STOA_METRIC_PG_ERRORS,
    STOA_METRIC_PG_POOL_WAITS,
    STOA_METRIC_REDIS_ERRORS,
    STOA_METRIC_REDIS_POOL_WAITS,
    STOA_METRIC_MAIL_SENT,
    STOA_METRIC_MAIL_FAILED,
    STOA_METRIC_STRIPE_WEBHOOK_RECEIVED,
    STOA_METRIC_STRIPE_WEBHOOK_DUPLICATE,
    STOA_METRIC_STRIPE_WEBHOOK_FAILED,
    STOA_METRIC_WEBHOOK_DELIVERED,
    STOA_METRIC_WEBHOOK_FAILED,
    STOA_METRIC_WEBHOOK_GAVE_UP,
    /* The gateway's, kept last (the nginx module's segment, program
     * STOA_METRICS_GATEWAY): a token it checked was accepted, refused,
     * or could not be checked (memory). */
    STOA_METRIC_GATEWAY_VERIFIED,
    STOA_METRIC_GATEWAY_REFUSED,
    STOA_METRIC_GATEWAY_FAILED,
    /* ... found in the worker's cache, or verified by the core. */
    STOA_METRIC_GATEWAY_CACHE_HIT,
    STOA_METRIC_GATEWAY_CACHE_MISS,
    /* Why the gateway answered 401 or 403: no token on a protected route,
     * more than one token, an Authorization that is not one Bearer token,
     * what the core refused (stoa_jwt_status_t's names), a role the route
     * does not take. */
    STOA_METRIC_GATEWAY_REFUSAL_MISSING,
    STOA_METRIC_GATEWAY_REFUSAL_MULTIPLE,
    STOA_METRIC_GATEWAY_REFUSAL_NOT_BEARER,
    STOA_METRIC_GATEWAY_REFUSAL_MALFORMED_HEADER,
    STOA_METRIC_GATEWAY_REFUSAL_MALFORMED,
    STOA_METRIC_GATEWAY_REFUSAL_TOO_LONG,
    STOA_METRIC_GATEWAY_REFUSAL_BAD_ALG,
    STOA_METRIC_GATEWAY_REFUSAL_UNKNOWN_KID,
    STOA_METRIC_GATEWAY_REFUSAL_BAD_SIGNATURE,
    STOA_METRIC_GATEWAY_REFUSAL_EXPIRED,
    STOA_METRIC_GATEWAY_REFUSAL_NOT_YET_VALID,
    STOA_METRIC_GATEWAY_REFUSAL_BAD_ISSUER,
    STOA_METRIC_GATEWAY_REFUSAL_BAD_AUDIENCE,
    STOA_METRIC_GATEWAY_REFUSAL_MISSING_CLAIM,
    STOA_METRIC_GATEWAY_REFUSAL_ROLE,
    STOA_METRIC_COUNT
} stoa_metric_t;

/* The program name of the gateway's segment: only its snapshot shows the
 * STOA_METRIC_GATEWAY_* families, and it shows no other counter family. */
#define STOA_METRICS_GATEWAY "gateway"

typedef enum {
    STOA_METRICS_JOB_RUN,     /* a job ran (whatever its outcome) */
    STOA_METRICS_JOB_FAILED,  /* ... and failed for good (dead) */
    STOA_METRICS_JOB_RETRIED, /* ... and failed, to be tried again */
    STOA_METRICS_JOB_OUTCOMES
} stoa_metrics_job_outcome_t;

/* The labels a program counts by, copied into the segment at open. */
typedef struct {
    const char *const *methods; /* nroutes of each; NULL with nroutes 0 */
    const char *const *patterns;
    size_t nroutes;
    const char *const *kinds; /* job kinds; NULL with nkinds 0 */
    size_t nkinds;
} stoa_metrics_labels_t;

/* Maps <dir>/<program>.metrics (created 0600), folds the slots of dead
 * processes and takes one for this process: the one counting calls
 * below then use. A file made for other labels (another build) is
 * started afresh. STOA_OK, or STOA_ERROR with err filled. */
STOA_MUSTCHECK int stoa_metrics_open(const char *dir, const char *program,
                                     const stoa_metrics_labels_t *labels,
                                     char *err, size_t errlen);
/* A clean stop: the slot is given back without counting a restart. */
void stoa_metrics_close(void);

/* A request matched route (an index of the open labels) and is running. */
void stoa_metrics_request_begin(size_t route);
/* A request ended: route as given to begin (which it balances), or
 * STOA_METRICS_UNMATCHED when none was. */
void stoa_metrics_request_end(size_t route, int status, uint64_t latency_us);
void stoa_metrics_count(stoa_metric_t metric);
void stoa_metrics_job(size_t kind, stoa_metrics_job_outcome_t outcome);
void stoa_metrics_stripe_lag(uint64_t lag_s);

/* The collector side. A snapshot is the sum of one file's slots. */
typedef struct stoa_metrics_snapshot_s stoa_metrics_snapshot_t;

/* Reads path: STOA_OK with *out (arena-owned), STOA_DECLINED when it is
 * not a metrics file of this build, STOA_ERROR when unreadable. */
STOA_MUSTCHECK int stoa_metrics_snapshot_read(const char *path,
                                              stoa_arena_t *arena,
                                              stoa_metrics_snapshot_t **out);
/* Every <program>.metrics under dir, sorted by program; *n of them. */
STOA_MUSTCHECK int stoa_metrics_snapshot_dir(const char *dir,
                                             stoa_arena_t *arena,
                                             stoa_metrics_snapshot_t ***out,
                                             size_t *n);

/* Appends the families of snaps (n of them) in Prometheus text format
 * 0.0.4: each family once, its HELP and TYPE first, label values
 * escaped. */
void stoa_metrics_expose(stoa_buf_t *out, stoa_metrics_snapshot_t *const *snaps,
                         size_t n);

/* Helpers for families the collector adds itself (outbox, nginx):
 * a HELP and TYPE header, then samples. labels: NULL, or the inside of
 * the braces (already escaped). */
void stoa_metrics_family(stoa_buf_t *out, const char *name, const char *type,
                         const char *help);
void stoa_metrics_sample(stoa_buf_t *out, const char *name, const char *labels,
                         double value);
/* Appends value as a label value: backslash, quote and newline escaped. */
void stoa_metrics_label_escape(stoa_buf_t *out, const char *value);

#endif
