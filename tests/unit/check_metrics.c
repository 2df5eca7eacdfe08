/* check_metrics.c - the per-program segment (slots, folds of dead
 * processes, restarts) and the text exposition. Forked children stand for
 * the processes of a pool. */
#include <signal.h>
#include <sys/wait.h>

#include "check_util.h"
#include "stoa/metrics.h"

static char dir[64];
static stoa_arena_t *arena;

static const char *const methods[] = {"GET", "DELETE"};
static const char *const patterns[] = {"/v1/me", "/v1/auth/sessions/{id}"};
static const char *const kinds[] = {"email.send", "odd\"kind\\"};
static const stoa_metrics_labels_t labels = {methods, patterns, 2, kinds, 2};

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/stoa-metrics-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    arena = stoa_arena_create(0);
}

static void teardown(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/auth.metrics", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/%s.metrics", dir, STOA_METRICS_GATEWAY);
    unlink(path);
    rmdir(dir);
    stoa_arena_destroy(arena);
}

static void open_or_fail(void)
{
    char err[256];
    ck_assert_msg(stoa_metrics_open(dir, "auth", &labels, err, sizeof(err)) ==
                      STOA_OK,
                  "%s", err);
}

/* A child process that counts `requests` answers of route 0 and then
 * dies by SIGKILL (or stops cleanly). */
static void child_counts(int requests, bool clean)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char err[256];
        if (stoa_metrics_open(dir, "auth", &labels, err, sizeof(err)) !=
            STOA_OK)
            _exit(3);
        for (int i = 0; i < requests; i++) {
            stoa_metrics_request_begin(0);
            stoa_metrics_request_end(0, 200, 700);
        }
        stoa_metrics_request_begin(1); /* in flight when it dies */
        stoa_metrics_job(0, STOA_METRICS_JOB_RUN);
        if (clean) {
            stoa_metrics_close();
            _exit(0);
        }
        raise(SIGKILL);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(clean ? WIFEXITED(status) && WEXITSTATUS(status) == 0
                    : WIFSIGNALED(status));
}

/* The exposition of the dir's files, of which there must be `files`. */
static stoa_buf_t expose_files(size_t files)
{
    stoa_metrics_snapshot_t **snaps;
    size_t n;
    ck_assert_int_eq(stoa_metrics_snapshot_dir(dir, arena, &snaps, &n),
                     STOA_OK);
    ck_assert_uint_eq(n, files);
    stoa_buf_t out;
    stoa_buf_init(&out);
    stoa_metrics_expose(&out, snaps, n);
    stoa_buf_append(&out, "", 1);
    return out;
}

static stoa_buf_t expose(void)
{
    return expose_files(1);
}

static void has_line(const stoa_buf_t *out, const char *line)
{
    char want[512];
    snprintf(want, sizeof(want), "\n%s\n", line);
    if (!strstr(out->data, want))
        fprintf(stderr, "%s", out->data);
    ck_assert_msg(strstr(out->data, want) != NULL, "missing: %s", line);
}

START_TEST(a_killed_process_counts_are_kept_and_its_restart_counted)
{
    child_counts(5, false);
    /* Before anyone folds it, the dead slot still counts; its in-flight
     * request does not, nor does it count as a live process. */
    stoa_buf_t out = expose();
    has_line(&out, "stoa_http_requests_total{pool=\"auth\",method=\"GET\","
                   "route=\"/v1/me\",status=\"2xx\"} 5");
    has_line(&out, "stoa_http_requests_in_flight{pool=\"auth\",method="
                   "\"DELETE\",route=\"/v1/auth/sessions/{id}\"} 0");
    has_line(&out, "stoa_pool_processes{pool=\"auth\"} 0");
    stoa_buf_free(&out);
    /* Its replacement folds it at start: same sums, one restart. */
    open_or_fail();
    stoa_metrics_request_begin(0);
    stoa_metrics_request_end(0, 503, 20);
    out = expose();
    has_line(&out, "stoa_http_requests_total{pool=\"auth\",method=\"GET\","
                   "route=\"/v1/me\",status=\"2xx\"} 5");
    has_line(&out, "stoa_http_requests_total{pool=\"auth\",method=\"GET\","
                   "route=\"/v1/me\",status=\"5xx\"} 1");
    has_line(&out, "stoa_pool_restarts_total{pool=\"auth\"} 1");
    has_line(&out, "stoa_pool_processes{pool=\"auth\"} 1");
    has_line(&out, "stoa_job_runs_total{pool=\"auth\",kind=\"email.send\"} 1");
    stoa_buf_free(&out);
    /* More deaths and clean stops: sums only grow; a clean stop is not a
     * restart. The second child folds the first, killed, at its start. */
    child_counts(3, false);
    child_counts(2, true);
    out = expose();
    has_line(&out, "stoa_http_requests_total{pool=\"auth\",method=\"GET\","
                   "route=\"/v1/me\",status=\"2xx\"} 10");
    has_line(&out, "stoa_pool_restarts_total{pool=\"auth\"} 2");
    stoa_buf_free(&out);
    child_counts(1, false); /* folds the cleanly stopped one: no restart */
    out = expose();
    has_line(&out, "stoa_http_requests_total{pool=\"auth\",method=\"GET\","
                   "route=\"/v1/me\",status=\"2xx\"} 11");
    has_line(&out, "stoa_pool_restarts_total{pool=\"auth\"} 2");
    stoa_buf_free(&out);
}
END_TEST

START_TEST(histograms_are_cumulative_and_labels_escaped)
{
    open_or_fail();
    static const uint64_t latencies_us[] = {100, 500, 501, 3000, 9000000};
    for (size_t i = 0; i < STOA_ARRAY_LEN(latencies_us); i++) {
        stoa_metrics_request_begin(1);
        stoa_metrics_request_end(1, 404, latencies_us[i]);
    }
    stoa_metrics_request_end(STOA_METRICS_UNMATCHED, 413, 10);
    stoa_metrics_stripe_lag(3);
    stoa_metrics_count(STOA_METRIC_STRIPE_WEBHOOK_RECEIVED);
    stoa_metrics_job(1, STOA_METRICS_JOB_RETRIED);
    stoa_buf_t out = expose();
#define ROUTE "pool=\"auth\",method=\"DELETE\",route=\"/v1/auth/sessions/{id}\""
    has_line(&out, "stoa_http_request_duration_seconds_bucket{" ROUTE
                   ",le=\"0.0005\"} 2");
    has_line(&out, "stoa_http_request_duration_seconds_bucket{" ROUTE
                   ",le=\"0.001\"} 3");
    has_line(&out, "stoa_http_request_duration_seconds_bucket{" ROUTE
                   ",le=\"0.005\"} 4");
    has_line(&out,
             "stoa_http_request_duration_seconds_bucket{" ROUTE ",le=\"5\"} 4");
    has_line(&out, "stoa_http_request_duration_seconds_bucket{" ROUTE
                   ",le=\"+Inf\"} 5");
    has_line(&out, "stoa_http_request_duration_seconds_count{" ROUTE "} 5");
    has_line(&out,
             "stoa_http_request_duration_seconds_sum{" ROUTE "} 9.004101");
    has_line(&out, "stoa_http_requests_in_flight{" ROUTE "} 0");
#undef ROUTE
    has_line(&out, "stoa_http_requests_total{pool=\"auth\",method=\"ANY\","
                   "route=\"unmatched\",status=\"4xx\"} 1");
    has_line(&out, "stoa_job_retries_total{pool=\"auth\",kind="
                   "\"odd\\\"kind\\\\\"} 1");
    has_line(&out, "stoa_stripe_webhook_lag_seconds_bucket{pool=\"auth\","
                   "le=\"2\"} 0");
    has_line(&out, "stoa_stripe_webhook_lag_seconds_bucket{pool=\"auth\","
                   "le=\"5\"} 1");
    /* Each family once, HELP before TYPE before its samples. */
    const char *type = strstr(out.data, "# TYPE stoa_http_requests_total "
                                        "counter\n");
    ck_assert_ptr_nonnull(type);
    ck_assert_ptr_null(
        strstr(type + 1, "# TYPE stoa_http_requests_total counter"));
    ck_assert_ptr_nonnull(strstr(out.data,
                                 "# TYPE stoa_http_request_duration_seconds "
                                 "histogram\n"));
    stoa_buf_free(&out);
}
END_TEST

START_TEST(no_segment_counts_nothing_and_bad_dirs_fail)
{
    /* Without an open segment every call is a no-op. */
    stoa_metrics_request_begin(0);
    stoa_metrics_request_end(0, 200, 1);
    stoa_metrics_count(STOA_METRIC_PG_ERRORS);
    stoa_metrics_close();
    char err[256];
    ck_assert_int_eq(stoa_metrics_open("/nonexistent-dir", "auth", &labels, err,
                                       sizeof(err)),
                     STOA_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "metrics file"));
    stoa_metrics_snapshot_t **snaps;
    size_t n;
    ck_assert_int_eq(stoa_metrics_snapshot_dir(dir, arena, &snaps, &n),
                     STOA_OK);
    ck_assert_uint_eq(n, 0);
}
END_TEST

/* An nginx worker of the gateway: no routes, no kinds; counts what the
 * module counts per request, then is killed like a crashed worker. */
static void gateway_worker_counts(int verified, int hits, int expired)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        static const stoa_metrics_labels_t none = {NULL, NULL, 0, NULL, 0};
        char err[256];
        if (stoa_metrics_open(dir, STOA_METRICS_GATEWAY, &none, err,
                              sizeof(err)) != STOA_OK)
            _exit(3);
        for (int i = 0; i < verified; i++)
            stoa_metrics_count(STOA_METRIC_GATEWAY_VERIFIED);
        for (int i = 0; i < hits; i++)
            stoa_metrics_count(STOA_METRIC_GATEWAY_CACHE_HIT);
        for (int i = 0; i < expired; i++) {
            stoa_metrics_count(STOA_METRIC_GATEWAY_REFUSED);
            stoa_metrics_count(STOA_METRIC_GATEWAY_REFUSAL_EXPIRED);
        }
        stoa_metrics_count(STOA_METRIC_PG_ERRORS); /* not the gateway's */
        raise(SIGKILL);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
}

START_TEST(the_gateway_families_are_the_gateways_alone)
{
    gateway_worker_counts(3, 2, 1);
    gateway_worker_counts(1, 1, 0); /* folds the first: sums kept */
    child_counts(1, true);          /* a pool beside it */
    stoa_buf_t out = expose_files(2);
    has_line(&out, "stoa_gateway_verifications_total{pool=\"gateway\","
                   "result=\"ok\"} 4");
    has_line(&out, "stoa_gateway_verifications_total{pool=\"gateway\","
                   "result=\"refused\"} 1");
    has_line(&out, "stoa_gateway_verifications_total{pool=\"gateway\","
                   "result=\"error\"} 0");
    has_line(&out, "stoa_gateway_cache_total{pool=\"gateway\","
                   "result=\"hit\"} 3");
    has_line(&out, "stoa_gateway_cache_total{pool=\"gateway\","
                   "result=\"miss\"} 0");
    has_line(&out, "stoa_gateway_refusals_total{pool=\"gateway\","
                   "reason=\"expired\"} 1");
    has_line(&out, "stoa_gateway_refusals_total{pool=\"gateway\","
                   "reason=\"role\"} 0");
    /* The second death is counted when a worker replaces it. */
    has_line(&out, "stoa_pool_restarts_total{pool=\"gateway\"} 1");
    has_line(&out, "stoa_postgres_errors_total{pool=\"auth\"} 0");
    /* No pool series for the gateway, no gateway series for a pool, no
     * request series for a program without routes. */
    ck_assert_ptr_null(strstr(out.data, "stoa_postgres_errors_total{pool="
                                        "\"gateway\""));
    ck_assert_ptr_null(strstr(out.data, "stoa_gateway_cache_total{pool="
                                        "\"auth\""));
    ck_assert_ptr_null(strstr(out.data, "stoa_http_requests_total{pool="
                                        "\"gateway\""));
    stoa_buf_free(&out);
}
END_TEST

TEST_MAIN_ONE_CASE("metrics", setup, teardown,
                   the_gateway_families_are_the_gateways_alone,
                   a_killed_process_counts_are_kept_and_its_restart_counted,
                   histograms_are_cumulative_and_labels_escaped,
                   no_segment_counts_nothing_and_bad_dirs_fail)
