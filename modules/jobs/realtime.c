/* realtime.c - the live channel's jobs (stoa/realtime.h): realtime.publish
 * posts an event to nchan's publisher, realtime.close deletes channels
 * (closing their subscribers).
 *
 * The publisher is nginx itself: on a unix socket (realtime_socket) when
 * nginx runs on this host, or over HTTP on a gateway's private address
 * (realtime_publish_url) when it does not; the gateways share their
 * channels through Redis, so one publish reaches the subscribers of
 * every gateway. Each worker thread keeps one curl handle, so consecutive
 * publishes reuse one kept-alive connection instead of a connect per job.
 * A request names at most REALTIME_CHANNELS_PER_REQUEST channels (they
 * travel in one header); a job of more is sent in several. A failure
 * retries the whole job, so a subscriber may hear an event twice: delivery
 * is at least once, and the event id lets the client drop a repeat. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "jobs.h"
#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/events.h"
#include "stoa/log.h"
#include "stoa/outbox.h"
#include "stoa/realtime.h"

/* ~38 bytes a channel: 200 fit the publisher's 16 KiB header buffer
 * (nginx.conf.in) with room to spare, and stay below nchan's limit of
 * 255 ids a request. */
#define REALTIME_CHANNELS_PER_REQUEST 200
/* A live event minutes late is noise: after this many tries it is
 * dropped. */
#define REALTIME_MAX_ATTEMPTS 4
#define REALTIME_TIMEOUT_MS 5000L

static pthread_once_t handle_once = PTHREAD_ONCE_INIT;
static pthread_key_t handle_key;

static void handle_free(void *curl)
{
    curl_easy_cleanup(curl);
}

static void handle_key_make(void)
{
    if (pthread_key_create(&handle_key, handle_free) != 0)
        STOA_ASSERT(!"pthread_key_create");
}

/* This thread's handle, reset to defaults but keeping its connection;
 * freed when the thread exits. NULL when curl cannot make one. */
static CURL *thread_handle(void)
{
    pthread_once(&handle_once, handle_key_make);
    CURL *curl = pthread_getspecific(handle_key);
    if (curl) {
        curl_easy_reset(curl);
        return curl;
    }
    curl = curl_easy_init();
    if (curl && pthread_setspecific(handle_key, curl) != 0) {
        curl_easy_cleanup(curl);
        curl = NULL;
    }
    return curl;
}

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data, (void)arg;
    return size * n;
}

bool jobs_realtime_url_at(const char *list, size_t index, char *out,
                          size_t outlen)
{
    size_t n = 0;
    for (const char *p = list; *p;) {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, ","), end = len;
        while (end && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        if (end && n++ == index) {
            if (end >= outlen)
                return false;
            memcpy(out, p, end);
            out[end] = '\0';
            return true;
        }
        p += len;
    }
    return false;
}

/* One request to the publisher for channels[from..to): POST body (with
 * its SSE event name) or, body NULL, DELETE. url NULL: realtime_socket. */
static int send_request(jobs_thread_t *t, const char *url,
                        const stoa_json_t *channels, size_t from, size_t to,
                        const char *event_type, const char *body, char *err,
                        size_t errlen)
{
    CURL *curl = thread_handle();
    if (!curl) {
        snprintf(err, errlen, "no curl handle");
        return STOA_AGAIN;
    }
    stoa_buf_t h;
    stoa_buf_init(&h);
    stoa_buf_printf(&h, "X-Stoa-Channels: ");
    for (size_t i = from; i < to; i++)
        stoa_buf_printf(&h, "%s%s", i > from ? "," : "",
                        stoa_json_string(stoa_json_at(channels, i)));
    struct curl_slist *headers = curl_slist_append(NULL, h.data);
    char line[160];
    if (body) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        snprintf(line, sizeof(line), "X-EventSource-Event: %s", event_type);
        headers = curl_slist_append(headers, line);
    }
    /* nchan answers in plain text; nothing in it is needed. */
    headers = curl_slist_append(headers, "Accept: text/plain");
    if (url) {
        curl_easy_setopt(curl, CURLOPT_URL, url);
        /* Plain HTTP on the private network; never sent anywhere else. */
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    } else {
        curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH,
                         t->conf->realtime_socket);
        curl_easy_setopt(curl, CURLOPT_URL, "http://localhost/publish");
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, REALTIME_TIMEOUT_MS);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    stoa_buf_free(&h);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "publisher%s%s: %s", url ? " " : "",
                 url ? url : "", curl_easy_strerror(rc));
        /* Not reached at all: the next publisher may be. */
        return rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT ||
                       rc == CURLE_COULDNT_RESOLVE_HOST
                   ? STOA_DECLINED
                   : STOA_AGAIN;
    }
    /* Published: 201 (someone heard it) or 202 (buffered for a
     * reconnect). Deleted: 200, or 404 for a channel nobody had opened. */
    bool ok = body ? (status == 201 || status == 202)
                   : (status == 200 || status == 404);
    if (!ok) {
        snprintf(err, errlen, "publisher answered %ld", status);
        return STOA_AGAIN;
    }
    return STOA_OK;
}

/* The payload's "channels": 1..STOA_REALTIME_MAX_CHANNELS names of the
 * contract, or NULL (a producer's bug: retrying cannot help). */
static const stoa_json_t *channels_of(const jobs_job_t *job, char *err,
                                      size_t errlen)
{
    const stoa_json_t *channels = stoa_json_get(job->payload, "channels");
    size_t n = stoa_json_is_array(channels) ? stoa_json_len(channels) : 0;
    if (n == 0 || n > STOA_REALTIME_MAX_CHANNELS) {
        snprintf(err, errlen, "channels must list 1 to %d names",
                 STOA_REALTIME_MAX_CHANNELS);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!stoa_realtime_channel_valid(
                stoa_json_string(stoa_json_at(channels, i)))) {
            snprintf(err, errlen, "channel %zu is not a channel name", i);
            return NULL;
        }
    return channels;
}

/* An event type goes into a header line: dotted lower-case names only. */
static bool event_type_valid(const char *type)
{
    size_t n = type ? strlen(type) : 0;
    if (n == 0 || n > 100)
        return false;
    for (const char *p = type; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '.' || *p == '_'))
            return false;
    return true;
}

/* send_request to the publisher: the unix socket, or each URL of
 * realtime_publish_url in turn until one is reached. */
static int send_one(jobs_thread_t *t, const stoa_json_t *channels, size_t from,
                    size_t to, const char *event_type, const char *body,
                    char *err, size_t errlen)
{
    if (*t->conf->realtime_socket) {
        int rc = send_request(t, NULL, channels, from, to, event_type, body,
                              err, errlen);
        return rc == STOA_DECLINED ? STOA_AGAIN : rc;
    }
    char url[512];
    int rc = STOA_AGAIN;
    for (size_t i = 0; jobs_realtime_url_at(t->conf->realtime_publish_url, i,
                                            url, sizeof(url));
         i++) {
        rc = send_request(t, url, channels, from, to, event_type, body, err,
                          errlen);
        if (rc != STOA_DECLINED)
            return rc;
    }
    if (rc == STOA_AGAIN)
        snprintf(err, errlen, "realtime_publish_url names no usable URL");
    return STOA_AGAIN;
}

static int send_all(jobs_thread_t *t, const jobs_job_t *job,
                    const stoa_json_t *channels, const char *type,
                    const char *body, char *err, size_t errlen)
{
    if (!*t->conf->realtime_socket && !*t->conf->realtime_publish_url)
        return STOA_OK; /* the live channel is off (logged at start) */
    size_t n = stoa_json_len(channels);
    for (size_t from = 0; from < n; from += REALTIME_CHANNELS_PER_REQUEST) {
        size_t to = from + REALTIME_CHANNELS_PER_REQUEST;
        int rc = send_one(t, channels, from, to < n ? to : n, type, body, err,
                          errlen);
        if (rc != STOA_OK)
            return job->attempt >= REALTIME_MAX_ATTEMPTS ? STOA_DECLINED : rc;
    }
    return STOA_OK;
}

int jobs_realtime_publish(jobs_thread_t *t, const jobs_job_t *job, char *err,
                          size_t errlen)
{
    const stoa_json_t *channels = channels_of(job, err, errlen);
    if (!channels)
        return STOA_DECLINED;
    const stoa_json_t *event = stoa_json_get(job->payload, "event");
    const char *type = stoa_json_string(stoa_json_get(event, "type"));
    const char *id = stoa_json_string(stoa_json_get(event, "id"));
    if (!stoa_json_is_object(event) || !id || !event_type_valid(type)) {
        snprintf(err, errlen, "event needs an id and a dotted type");
        return STOA_DECLINED;
    }
    /* The event object as the client reads it, written again from the
     * parsed payload (Postgres' jsonb text of it, not the producer's). */
    stoa_jw_t *w = stoa_jw_arena(t->arena);
    stoa_jw_value(w, event);
    char *body = stoa_jw_arena_text(t->arena, w);
    if (!body) {
        snprintf(err, errlen, "event cannot be written");
        return STOA_DECLINED;
    }
    return send_all(t, job, channels, type, body, err, errlen);
}

int jobs_realtime_close(jobs_thread_t *t, const jobs_job_t *job, char *err,
                        size_t errlen)
{
    const stoa_json_t *channels = channels_of(job, err, errlen);
    if (!channels)
        return STOA_DECLINED;
    return send_all(t, job, channels, NULL, NULL, err, errlen);
}

/* Which domain events (stoa/events.h) the live channel carries, and to
 * whom: the user named by data.user_id, or the admins. */
static const struct {
    const char *type;
    bool to_admins;
} routed_events[] = {
    {STOA_EVENT_SUBSCRIPTION_UPDATED, false},
    {STOA_EVENT_ENTITLEMENTS_CHANGED, false},
    {STOA_EVENT_USER_CREATED, true},
    {STOA_EVENT_INVOICE_PAYMENT_FAILED, true},
};

int jobs_realtime_route_event(jobs_thread_t *t, const jobs_job_t *job,
                              const char *type, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < STOA_ARRAY_LEN(routed_events) &&
           strcmp(routed_events[i].type, type) != 0)
        i++;
    if (i == STOA_ARRAY_LEN(routed_events))
        return STOA_OK;
    const char *channel = STOA_REALTIME_CHANNEL_ADMIN;
    if (!routed_events[i].to_admins) {
        const char *user_id = stoa_json_string(
            stoa_json_get(stoa_json_get(job->payload, "data"), "user_id"));
        /* A subscription not linked to an account yet has no one to
         * tell. */
        if (!user_id || !stoa_uuid_valid(user_id))
            return STOA_OK;
        channel = stoa_realtime_channel_user(t->arena, user_id);
    }
    stoa_jw_t *w = stoa_jw_arena(t->arena);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "channels");
    stoa_jw_array_open(w);
    stoa_jw_string(w, channel);
    stoa_jw_array_close(w);
    stoa_jw_key(w, "event");
    stoa_jw_value(w, job->payload);
    stoa_jw_object_close(w);
    char *payload = stoa_jw_arena_text(t->arena, w);
    if (!payload) {
        snprintf(err, errlen, "live event cannot be written");
        return STOA_DECLINED;
    }
    /* Keyed by the event id: a re-run of the fan-out adds nothing. */
    const char *id = stoa_json_string(stoa_json_get(job->payload, "id"));
    if (stoa_outbox_enqueue(t->db, t->arena, STOA_REALTIME_JOB_PUBLISH, payload,
                            id, 0) != STOA_OK) {
        snprintf(err, errlen, "live event: %s", stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    return STOA_OK;
}
