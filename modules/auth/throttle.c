/* throttle.c - failed-login throttling.
 * Per (account, IP): 5 failures in 15 minutes lock the pair out; each
 * further lockout within a day doubles the lock (15 min, 30 min, 1 h, ...
 * at most a day).
 *
 * Per IP, failures only slow the address down: one address is often a
 * whole office or a mobile carrier, and a lock on it would let one person
 * lock everyone behind it out. From the 20th failure in 15 minutes, each
 * failure opens a cool-down (1 s, doubling with every further failure, at
 * most 5 min) during which attempts from the address at accounts that
 * have failed from it are refused without being looked at. An account
 * without recent failures from the address is judged at once, so the
 * colleague with the right password gets in; every guess the attacker
 * makes lengthens its own wait and spends its next guesses at the
 * accounts it tried.
 *
 * Redis cannot answer, or has lost failures: every failure is also a row
 * in auth.login_failures, and the pair's lock is judged from those rows
 * (5 in the window: refused until the oldest of them leaves it) while
 * Redis is unreachable, and until Redis has held one whole window of
 * failures since it came back (the key lf:since says since when it has:
 * missing after a restart or a flush, moved on by a process that could not
 * reach it). The normal path asks Postgres nothing; a failure costs one
 * insert besides its audit line. Postgres knows no doubling and no address
 * cool-down: slower and coarser, but the pair's lock holds. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/log.h"

#define THROTTLE_WINDOW_S 900
#define THROTTLE_ACCOUNT_LIMIT 5
/* The same numbers as statement parameters (text). */
#define THROTTLE_TEXT_(n) #n
#define THROTTLE_TEXT(n) THROTTLE_TEXT_(n)
#define THROTTLE_WINDOW_PARAM THROTTLE_TEXT(THROTTLE_WINDOW_S)
#define THROTTLE_ACCOUNT_LIMIT_PARAM THROTTLE_TEXT(THROTTLE_ACCOUNT_LIMIT)
#define THROTTLE_MAX_LOCK_S 86400
#define THROTTLE_IP_SLOW_AFTER 20
#define THROTTLE_IP_MAX_WAIT_S 300
#define THROTTLE_SINCE_KEY "lf:since"

/* Where this process judges locks (auth_state_t.throttle_mode). */
enum {
    THROTTLE_ON_REDIS = 0, /* the zero value: a process starts trusting Redis */
    THROTTLE_REDIS_DOWN,
    THROTTLE_REDIS_WARMING
};

/* Records where the throttle looks now, and logs the change, once per
 * change and process rather than once per request. */
static void throttle_mode_set(stoa_request_t *req, int mode)
{
    int was = atomic_exchange(&auth_state(req)->throttle_mode, mode);
    if (was == mode)
        return;
    if (mode == THROTTLE_REDIS_DOWN)
        stoa_log(STOA_LOG_WARN,
                 "login throttle: Redis unreachable; failed logins are "
                 "judged from Postgres until it is back");
    else if (mode == THROTTLE_REDIS_WARMING)
        stoa_log(STOA_LOG_NOTICE,
                 "login throttle: Redis reachable but without a whole "
                 "window of failures (restarted, flushed or new); Postgres "
                 "is also asked for %d s",
                 THROTTLE_WINDOW_S);
    else
        stoa_log(STOA_LOG_NOTICE,
                 "login throttle: Redis holds a whole window again; "
                 "Postgres is no longer asked");
}

/* The identity of an account, as the Redis keys and the Postgres rows
 * name it: a hash, so neither stores the email. */
static char *subject_hash(stoa_request_t *req, const char *email)
{
    uint8_t d[STOA_SHA256_LEN];
    char *hex = stoa_arena_alloc(req->arena, 2 * 16 + 1);
    stoa_sha256(email, strlen(email), d);
    stoa_hex_encode(d, 16, hex);
    return hex;
}

static const char *address_of(const stoa_request_t *req)
{
    return req->remote_addr ? req->remote_addr : "-";
}

static char *account_key(stoa_request_t *req, const char *prefix,
                         const char *email)
{
    return stoa_arena_sprintf(req->arena, "%s:a:%s:%s", prefix,
                              subject_hash(req, email), address_of(req));
}

static char *ip_key(stoa_request_t *req, const char *prefix)
{
    return stoa_arena_sprintf(req->arena, "%s:i:%s", prefix, address_of(req));
}

/* 429 too_many_attempts with Retry-After = seconds. */
static int refuse_with(stoa_request_t *req, long seconds)
{
    char *retry =
        stoa_arena_sprintf(req->arena, "%ld", seconds < 1 ? 1 : seconds);
    stoa_http_header(req, "Retry-After", retry);
    return stoa_http_fail(req, STOA_ERR_TOO_MANY_ATTEMPTS,
                          "too many failed attempts; retry later");
}

/* 429 too_many_attempts with Retry-After = what is left of key. */
static int refuse_for(stoa_request_t *req, const char *key)
{
    long ttl = 0;
    if (stoa_kv_ttl(stoa_request_kv(req), key, &ttl) != STOA_OK || ttl < 1)
        ttl = 1;
    return refuse_with(req, ttl);
}

/* The pair's lock as the rows in Postgres tell it. A Postgres that cannot
 * answer either leaves the attempt to be judged (the handler's own
 * queries then fail it). */
static int check_in_postgres(stoa_request_t *req, const char *email)
{
    const char *p[] = {subject_hash(req, email), address_of(req),
                       THROTTLE_WINDOW_PARAM, THROTTLE_ACCOUNT_LIMIT_PARAM};
    stoa_db_result_t *res;
    if (stoa_db_exec(stoa_request_db(req), req->arena,
                     AUTH_SQL(LOGIN_FAILURE_LOCK), p, &res) != STOA_OK) {
        stoa_log(STOA_LOG_ERR, "login throttle: Postgres could not judge "
                               "an attempt; the password alone decides");
        return STOA_OK;
    }
    if (stoa_db_rows(res) == 0)
        return STOA_OK;
    return refuse_with(req, atol(stoa_db_value(res, 0, LOCK_COL_SECONDS)));
}

/* Whether Redis has held every failure of the last window, from the
 * value of THROTTLE_SINCE_KEY (NULL: missing). A missing key (Redis
 * restarted empty or flushed), or this process back from not reaching
 * Redis (failures it had could not be counted there), starts the clock
 * anew for every process. */
static bool redis_holds_window(stoa_request_t *req, const char *since)
{
    long long now = (long long)time(NULL);
    bool was_down =
        atomic_load(&auth_state(req)->throttle_mode) == THROTTLE_REDIS_DOWN;
    if (!since || was_down) {
        char value[24];
        int n = snprintf(value, sizeof(value), "%lld", now);
        if (stoa_kv_set(stoa_request_kv(req), THROTTLE_SINCE_KEY, value,
                        (size_t)n, 0) != STOA_OK) {
            throttle_mode_set(req, THROTTLE_REDIS_DOWN);
            return false;
        }
        throttle_mode_set(req, THROTTLE_REDIS_WARMING);
        return false;
    }
    if (now - atoll(since) < THROTTLE_WINDOW_S) {
        throttle_mode_set(req, THROTTLE_REDIS_WARMING);
        return false;
    }
    throttle_mode_set(req, THROTTLE_ON_REDIS);
    return true;
}

int auth_throttle_check(stoa_request_t *req, const char *email)
{
    /* The pair's lock, the address's cool-down, the pair's failures, and
     * since when Redis has counted them all: one round trip. */
    char *keys[4] = {account_key(req, "ll", email), ip_key(req, "ll"),
                     account_key(req, "lf", email), THROTTLE_SINCE_KEY};
    char *values[4];
    if (stoa_kv_mget(stoa_request_kv(req), req->arena, 4,
                     (const char *const *)keys, values) != STOA_OK) {
        throttle_mode_set(req, THROTTLE_REDIS_DOWN);
        return check_in_postgres(req, email);
    }
    if (values[0])
        return refuse_for(req, keys[0]);
    if (values[1] && values[2])
        return refuse_for(req, keys[1]);
    if (redis_holds_window(req, values[3]))
        return STOA_OK;
    return check_in_postgres(req, email);
}

/* Each failure is a row whatever Redis does: the rows are what a Redis
 * restart cannot erase. */
static void record_failure(stoa_request_t *req, const char *email)
{
    const char *p[] = {subject_hash(req, email), address_of(req),
                       THROTTLE_WINDOW_PARAM};
    if (stoa_db_exec(stoa_request_db(req), req->arena,
                     AUTH_SQL(LOGIN_FAILURE_INSERT), p, NULL) != STOA_OK)
        stoa_log(STOA_LOG_ERR, "login throttle: a failure was not recorded "
                               "in Postgres");
}

static void count_account_failure(stoa_request_t *req, const char *email)
{
    char *counter = account_key(req, "lf", email);
    long long n = 0, locks = 0;
    if (stoa_kv_incr(stoa_request_kv(req), counter, THROTTLE_WINDOW_S, &n) !=
        STOA_OK) {
        throttle_mode_set(req, THROTTLE_REDIS_DOWN);
        return;
    }
    if (n < THROTTLE_ACCOUNT_LIMIT)
        return;
    if (stoa_kv_incr(stoa_request_kv(req), account_key(req, "lc", email), 86400,
                     &locks) != STOA_OK)
        locks = 1;
    long lock_s = THROTTLE_WINDOW_S;
    for (long long i = 1; i < locks && lock_s < THROTTLE_MAX_LOCK_S; i++)
        lock_s *= 2;
    if (lock_s > THROTTLE_MAX_LOCK_S)
        lock_s = THROTTLE_MAX_LOCK_S;
    if (stoa_kv_set(stoa_request_kv(req), account_key(req, "ll", email), "1", 1,
                    lock_s) == STOA_OK &&
        stoa_kv_del(stoa_request_kv(req), counter) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "could not reset a login failure counter");
}

static void count_address_failure(stoa_request_t *req)
{
    long long n = 0;
    if (stoa_kv_incr(stoa_request_kv(req), ip_key(req, "lf"), THROTTLE_WINDOW_S,
                     &n) != STOA_OK ||
        n < THROTTLE_IP_SLOW_AFTER)
        return;
    long wait_s = 1;
    for (long long i = THROTTLE_IP_SLOW_AFTER;
         i < n && wait_s < THROTTLE_IP_MAX_WAIT_S; i++)
        wait_s *= 2;
    if (wait_s > THROTTLE_IP_MAX_WAIT_S)
        wait_s = THROTTLE_IP_MAX_WAIT_S;
    if (stoa_kv_set(stoa_request_kv(req), ip_key(req, "ll"), "1", 1, wait_s) !=
        STOA_OK)
        stoa_log(STOA_LOG_WARN, "could not set a login cool-down");
}

void auth_throttle_fail(stoa_request_t *req, const char *email)
{
    record_failure(req, email);
    count_account_failure(req, email);
    count_address_failure(req);
}

void auth_throttle_clear(stoa_request_t *req, const char *email)
{
    const char *p[] = {subject_hash(req, email), address_of(req)};
    if (stoa_db_exec(stoa_request_db(req), req->arena,
                     AUTH_SQL(LOGIN_FAILURE_CLEAR), p, NULL) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "login throttle: failures in Postgres not "
                                "cleared");
    if (stoa_kv_del(stoa_request_kv(req), account_key(req, "lf", email)) !=
        STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "throttle counter not cleared");
}
