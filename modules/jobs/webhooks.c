/* webhooks.c - domain events to outbound webhooks, signed per the
 * Standard Webhooks spec, with an SSRF guard that checks the address
 * actually connected to. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "jobs.h"
#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/log.h"
#include "stoa/metrics.h"
#include "stoa/net.h"

int jobs_event_fanout(jobs_thread_t *t, const jobs_job_t *job, char *err,
                      size_t errlen)
{
    const char *id = stoa_json_string(stoa_json_get(job->payload, "id"));
    const char *type = stoa_json_string(stoa_json_get(job->payload, "type"));
    if (!id || !type) {
        snprintf(err, errlen, "event needs id and type");
        return STOA_DECLINED;
    }
    const char *params[] = {id, type, job->payload_text};
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(WEBHOOKS_FANOUT), params,
                     NULL) != STOA_OK) {
        snprintf(err, errlen, "fan-out: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    /* Idempotent too (keyed by the event id), so the pair needs no
     * transaction: a retry after either redoes only what is missing. */
    return jobs_realtime_route_event(t, job, type, err, errlen);
}

/* Resolves host and picks the address to connect to; refuses the target
 * when any of its addresses is internal (unless the host is allow-listed).
 * The caller pins that address with CURLOPT_RESOLVE, so a second DNS
 * answer cannot redirect the connection (no rebinding gap). */
static int resolve_target(const stoa_conf_t *conf, const char *host,
                          const char *port, char *addr, size_t addrlen,
                          char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %.200s: %s", host,
                 gai_strerror(gai));
        return STOA_AGAIN;
    }
    bool allowed = stoa_net_host_listed(conf->webhook_allow_hosts, host);
    int rc = STOA_OK;
    addr[0] = '\0';
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (!allowed && stoa_net_address_forbidden(ai->ai_addr)) {
            snprintf(err, errlen, "%.200s resolves to an internal address",
                     host);
            rc = STOA_DECLINED;
            break;
        }
        if (!addr[0]) {
            const void *src =
                ai->ai_family == AF_INET
                    ? (const void *)&((struct sockaddr_in *)ai->ai_addr)
                          ->sin_addr
                    : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)
                          ->sin6_addr;
            if (!inet_ntop(ai->ai_family, src, addr, (socklen_t)addrlen))
                addr[0] = '\0';
        }
    }
    freeaddrinfo(res);
    if (rc == STOA_OK && !addr[0]) {
        snprintf(err, errlen, "no usable address for %.200s", host);
        rc = STOA_AGAIN;
    }
    return rc;
}

/* webhook-signature: v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>,
 * where the secret is the bytes behind "whsec_". */
static int sign(const char *secret, const char *id, const char *timestamp,
                const char *body, char *out, size_t outlen)
{
    if (strncmp(secret, "whsec_", 6) != 0)
        return STOA_DECLINED;
    uint8_t key[256];
    size_t key_len;
    const char *b64 = secret + 6;
    if (strlen(b64) > 300 ||
        stoa_b64_decode(b64, strlen(b64), key, &key_len) != STOA_OK)
        return STOA_DECLINED;
    stoa_buf_t msg;
    stoa_buf_init(&msg);
    stoa_buf_printf(&msg, "%s.%s.%s", id, timestamp, body);
    uint8_t mac[STOA_SHA256_LEN];
    stoa_hmac_sha256(key, key_len, msg.data, msg.len, mac);
    stoa_buf_free(&msg);
    stoa_wipe(key, sizeof(key));
    char enc[64];
    stoa_b64_encode(mac, sizeof(mac), enc);
    snprintf(out, outlen, "v1,%s", enc);
    return STOA_OK;
}

static size_t discard(char *ptr, size_t size, size_t n, void *arg)
{
    (void)ptr;
    (void)arg;
    return size * n;
}

typedef struct {
    long status;
    long latency_ms;
    char error[256];
} delivery_t;

static int post(const stoa_conf_t *conf, const char *url, const char *id,
                const char *signature, const char *timestamp, const char *body,
                delivery_t *d)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = STOA_DECLINED;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
            CURLUE_OK) {
        snprintf(d->error, sizeof(d->error), "malformed url");
        goto out;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(d->error, sizeof(d->error), "only http and https");
        goto out;
    }
    /* IPv6 literals come back bracketed; getaddrinfo wants them bare. */
    char bare[256];
    size_t hl = strlen(host);
    if (hl >= sizeof(bare)) {
        snprintf(d->error, sizeof(d->error), "host too long");
        goto out;
    }
    if (host[0] == '[' && hl > 2) {
        memcpy(bare, host + 1, hl - 2);
        bare[hl - 2] = '\0';
    } else {
        memcpy(bare, host, hl + 1);
    }
    char addr[INET6_ADDRSTRLEN];
    rc = resolve_target(conf, bare, port, addr, sizeof(addr), d->error,
                        sizeof(d->error));
    if (rc != STOA_OK)
        goto out;
    /* A name is pinned to the address just checked; an IP literal is
     * already what curl connects to (and curl refuses to pin one). */
    char pin[512];
    snprintf(pin, sizeof(pin), "%s:%s:%s%s%s", host, port,
             strchr(addr, ':') ? "[" : "", addr, strchr(addr, ':') ? "]" : "");
    unsigned char probe[16];
    bool literal = inet_pton(AF_INET, bare, probe) == 1 ||
                   inet_pton(AF_INET6, bare, probe) == 1;
    CURL *curl = curl_easy_init();
    if (!curl) {
        rc = STOA_AGAIN;
        goto out;
    }
    struct curl_slist *resolve = literal ? NULL : curl_slist_append(NULL, pin);
    struct curl_slist *headers = NULL;
    char h[512];
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "User-Agent: stoa-webhooks/1");
    snprintf(h, sizeof(h), "webhook-id: %s", id);
    headers = curl_slist_append(headers, h);
    snprintf(h, sizeof(h), "webhook-timestamp: %s", timestamp);
    headers = curl_slist_append(headers, h);
    snprintf(h, sizeof(h), "webhook-signature: %s", signature);
    headers = curl_slist_append(headers, h);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    if (resolve)
        curl_easy_setopt(curl, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 15L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    uint64_t start = stoa_now_us();
    CURLcode cc = curl_easy_perform(curl);
    d->latency_ms = (long)((stoa_now_us() - start) / 1000);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &d->status);
    if (cc != CURLE_OK)
        snprintf(d->error, sizeof(d->error), "%s", curl_easy_strerror(cc));
    else if (d->status < 200 || d->status > 299)
        snprintf(d->error, sizeof(d->error), "HTTP %ld", d->status);
    rc = cc == CURLE_OK && d->status >= 200 && d->status <= 299 ? STOA_OK
                                                                : STOA_AGAIN;
    curl_slist_free_all(headers);
    curl_slist_free_all(resolve);
    curl_easy_cleanup(curl);
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

int jobs_webhook_deliver(jobs_thread_t *t, const jobs_job_t *job, char *err,
                         size_t errlen)
{
    const char *endpoint_id =
        stoa_json_string(stoa_json_get(job->payload, "endpoint_id"));
    const stoa_json_t *event = stoa_json_get(job->payload, "event");
    const char *event_id = stoa_json_string(stoa_json_get(event, "id"));
    const char *event_type = stoa_json_string(stoa_json_get(event, "type"));
    if (!endpoint_id || !event_id || !event_type) {
        snprintf(err, errlen, "webhook.deliver needs endpoint_id and event");
        return STOA_DECLINED;
    }
    const char *p1[] = {endpoint_id};
    stoa_db_result_t *ep;
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(WEBHOOK_ENDPOINT), p1, &ep) !=
        STOA_OK) {
        snprintf(err, errlen, "endpoint lookup: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    if (stoa_db_rows(ep) == 0 ||
        stoa_db_value(ep, 0, ENDPOINT_COL_GONE)[0] == 't')
        return STOA_OK; /* endpoint gone or disabled: nothing to deliver */
    const char *url = stoa_db_value(ep, 0, ENDPOINT_COL_URL);
    const char *secret = stoa_db_value(ep, 0, ENDPOINT_COL_SECRET);

    /* The body is the stored event, serialised the same way every try
     * (jsonb gives it back in one canonical form). */
    stoa_buf_t body;
    stoa_buf_init(&body);
    stoa_jw_t *w = stoa_jw_new(&body);
    stoa_jw_value(w, event);
    stoa_jw_free(w);

    /* On record before anything is sent: a worker killed mid-delivery
     * leaves this row (no status, no latency) behind. */
    char attempt[16];
    snprintf(attempt, sizeof(attempt), "%d", job->attempt);
    const char *pb[] = {endpoint_id, event_id, event_type, attempt};
    stoa_db_result_t *logged;
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(WEBHOOK_DELIVERY_BEGIN), pb,
                     &logged) != STOA_OK ||
        stoa_db_rows(logged) != 1) {
        stoa_buf_free(&body);
        snprintf(err, errlen, "delivery log: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    const char *delivery_id = stoa_db_value(logged, 0, DELIVERY_BEGIN_COL_ID);

    /* During a rotation both secrets sign: "v1,<new> v1,<previous>". */
    const char *previous = stoa_db_value(ep, 0, ENDPOINT_COL_PREVIOUS_SECRET);
    char timestamp[24], signature[256], second[128];
    snprintf(timestamp, sizeof(timestamp), "%lld", (long long)stoa_unix_time());
    delivery_t d;
    memset(&d, 0, sizeof(d));
    int rc;
    if (sign(secret, event_id, timestamp, body.data, signature,
             sizeof(signature)) != STOA_OK ||
        (previous && sign(previous, event_id, timestamp, body.data, second,
                          sizeof(second)) != STOA_OK)) {
        snprintf(d.error, sizeof(d.error), "endpoint secret malformed");
        rc = STOA_DECLINED;
    } else {
        if (previous) {
            size_t n = strlen(signature);
            snprintf(signature + n, sizeof(signature) - n, " %s", second);
        }
        rc = post(t->conf, url, event_id, signature, timestamp, body.data, &d);
    }
    stoa_buf_free(&body);

    char status[16], latency[16];
    snprintf(status, sizeof(status), "%ld", d.status);
    snprintf(latency, sizeof(latency), "%ld", d.latency_ms);
    const char *p2[] = {delivery_id, d.status ? status : NULL, latency,
                        d.error[0] ? d.error : NULL};
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(WEBHOOK_DELIVERY_END), p2,
                     NULL) != STOA_OK)
        stoa_log(STOA_LOG_ERR, "delivery log not written");
    stoa_metrics_count(rc == STOA_OK ? STOA_METRIC_WEBHOOK_DELIVERED
                                     : STOA_METRIC_WEBHOOK_FAILED);
    if (rc == STOA_OK) {
        if (stoa_db_exec(t->db, t->arena, JOBS_SQL(WEBHOOK_SUCCEEDED), p1,
                         NULL) != STOA_OK)
            stoa_log(STOA_LOG_ERR, "endpoint health not updated");
        return STOA_OK;
    }
    snprintf(err, errlen, "%s", d.error[0] ? d.error : "delivery failed");
    stoa_db_result_t *failing;
    if (stoa_db_exec(t->db, t->arena, JOBS_SQL(WEBHOOK_FAILED), p1, &failing) ==
            STOA_OK &&
        stoa_db_rows(failing) == 1 &&
        stoa_db_value(failing, 0, FAILED_COL_FOR_LONG)[0] == 't') {
        /* Five days without a single success: switch it off, tell the
         * admins (the mail rows are deduplicated per endpoint). */
        stoa_db_result_t *disabled;
        if (stoa_db_exec(t->db, t->arena, JOBS_SQL(WEBHOOK_DISABLE), p1,
                         &disabled) == STOA_OK &&
            stoa_db_rows(disabled) == 1) {
            const char *p3[] = {endpoint_id, url};
            if (stoa_db_exec(t->db, t->arena, JOBS_SQL(WEBHOOK_DISABLED_MAIL),
                             p3, NULL) != STOA_OK)
                stoa_log(STOA_LOG_ERR, "admin mail about a disabled endpoint "
                                       "not queued");
        }
        stoa_metrics_count(STOA_METRIC_WEBHOOK_GAVE_UP);
        return STOA_DECLINED;
    }
    return rc;
}
