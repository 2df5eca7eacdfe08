/* stripe.c - Stripe API calls over libcurl; webhook signatures. */
#include "stoa/stripe.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stoa/crypto.h"
#include "stoa/log.h"

#define STRIPE_TRIES 3
#define STRIPE_IDLE_HANDLES 4

/* Shared by a process's threads: a call takes an idle curl handle (each
 * keeps its TLS connection to Stripe alive) and puts it back after. */
struct stoa_stripe_s {
    pthread_mutex_t lock;
    CURL *idle[STRIPE_IDLE_HANDLES];
    int nidle;
    char *api_base;
    char *auth_header;
};

static CURL *take_handle(stoa_stripe_t *s)
{
    pthread_mutex_lock(&s->lock);
    CURL *c = s->nidle ? s->idle[--s->nidle] : NULL;
    pthread_mutex_unlock(&s->lock);
    return c ? c : curl_easy_init();
}

static void give_handle(stoa_stripe_t *s, CURL *c)
{
    pthread_mutex_lock(&s->lock);
    if (s->nidle < STRIPE_IDLE_HANDLES) {
        s->idle[s->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (c)
        curl_easy_cleanup(c);
}

stoa_stripe_t *stoa_stripe_new(const char *api_base, const char *secret_key)
{
    /* Once, before any thread runs: curl_easy_init would otherwise do it
     * on first use, racing other threads on older libcurls. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    stoa_stripe_t *s = stoa_xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->api_base = stoa_xstrdup(api_base);
    size_t n = strlen(secret_key) + 32;
    s->auth_header = stoa_xmalloc(n);
    snprintf(s->auth_header, n, "Authorization: Bearer %s", secret_key);
    return s;
}

void stoa_stripe_free(stoa_stripe_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nidle; i++)
        curl_easy_cleanup(s->idle[i]);
    pthread_mutex_destroy(&s->lock);
    stoa_wipe(s->auth_header, strlen(s->auth_header));
    free(s->auth_header);
    free(s->api_base);
    free(s);
}

static void form_escape(stoa_buf_t *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
            c == '~') {
            stoa_buf_append(out, s, 1);
        } else {
            char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
            stoa_buf_append(out, enc, 3);
        }
    }
}

void stoa_stripe_form(stoa_buf_t *form, const char *key, const char *value)
{
    if (form->len)
        stoa_buf_puts(form, "&");
    form_escape(form, key);
    stoa_buf_puts(form, "=");
    form_escape(form, value);
}

static size_t collect(char *ptr, size_t size, size_t n, void *arg)
{
    stoa_buf_t *b = arg;
    if (b->len + size * n > 4 * 1024 * 1024)
        return 0; /* Stripe objects are small; refuse a runaway answer */
    stoa_buf_append(b, ptr, size * n);
    return size * n;
}

static void copy_field(const stoa_json_t *obj, const char *key, char *out,
                       size_t cap)
{
    const char *v = stoa_json_string(stoa_json_get(obj, key));
    snprintf(out, cap, "%s", v ? v : "");
}

static void parse_error(stoa_arena_t *arena, const stoa_buf_t *body,
                        stoa_stripe_error_t *err)
{
    stoa_json_t *doc;
    char perr[64];
    if (body->len && stoa_json_parse(arena, body->data, body->len, 16, &doc,
                                     perr, sizeof(perr)) == STOA_OK) {
        const stoa_json_t *e = stoa_json_get(doc, "error");
        copy_field(e, "type", err->type, sizeof(err->type));
        copy_field(e, "code", err->code, sizeof(err->code));
        copy_field(e, "param", err->param, sizeof(err->param));
        copy_field(e, "message", err->message, sizeof(err->message));
    }
    if (!err->message[0])
        snprintf(err->message, sizeof(err->message), "HTTP %d from Stripe",
                 err->http_status);
}

int stoa_stripe_call(stoa_stripe_t *s, stoa_arena_t *arena, const char *method,
                     const char *path, const char *form,
                     const char *idempotency_key, const stoa_json_t **out,
                     stoa_stripe_error_t *err)
{
    memset(err, 0, sizeof(*err));
    *out = NULL;
    bool post = strcmp(method, "POST") == 0;
    STOA_ASSERT(!post || idempotency_key);
    CURL *c = take_handle(s);
    if (!c) {
        snprintf(err->message, sizeof(err->message), "curl init failed");
        return STOA_AGAIN;
    }
    char url[2048], idem[320];
    snprintf(url, sizeof(url), "%s%s", s->api_base, path);
    struct curl_slist *headers = curl_slist_append(NULL, s->auth_header);
    headers = curl_slist_append(headers, "Stripe-Version: 2024-06-20");
    if (post) {
        snprintf(idem, sizeof(idem), "Idempotency-Key: %s", idempotency_key);
        headers = curl_slist_append(headers, idem);
        headers = curl_slist_append(
            headers, "Content-Type: application/x-www-form-urlencoded");
    }
    stoa_buf_t body;
    stoa_buf_init(&body);
    int rc = STOA_AGAIN;
    for (int attempt = 1; attempt <= STRIPE_TRIES; attempt++) {
        curl_easy_reset(c);
        stoa_buf_reset(&body);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
        if (post) {
            curl_easy_setopt(c, CURLOPT_POST, 1L);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, form ? form : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE,
                             (long)(form ? strlen(form) : 0));
        }
        CURLcode cc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        err->http_status = (int)status;
        if (cc == CURLE_OK && status >= 200 && status < 300) {
            stoa_json_t *doc;
            char perr[128];
            if (stoa_json_parse(arena, body.data ? body.data : "", body.len,
                                STOA_JSON_MAX_DEPTH, &doc, perr,
                                sizeof(perr)) != STOA_OK ||
                !stoa_json_is_object(doc)) {
                snprintf(err->message, sizeof(err->message),
                         "unreadable answer from Stripe");
                rc = STOA_AGAIN;
                break;
            }
            *out = doc;
            rc = STOA_OK;
            break;
        }
        if (cc == CURLE_OK && status >= 400 && status < 500 && status != 429) {
            parse_error(arena, &body, err);
            rc = STOA_DECLINED;
            break;
        }
        /* Network error, 429 or 5xx: the same key makes a retry safe. */
        if (cc != CURLE_OK)
            snprintf(err->message, sizeof(err->message),
                     "Stripe unreachable: %s", curl_easy_strerror(cc));
        else
            parse_error(arena, &body, err);
        stoa_log(STOA_LOG_WARN, "stripe %s %s attempt %d failed: %s", method,
                 path, attempt, err->message);
        if (attempt < STRIPE_TRIES) {
            long ms = 250L << attempt; /* 500 ms, 1 s */
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    give_handle(s, c);
    curl_slist_free_all(headers);
    stoa_buf_free(&body);
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

#define MAX_SIGNATURES 8

int stoa_stripe_verify_signature(const char *header, const char *body,
                                 size_t len, const char *secrets, int64_t now,
                                 int64_t tolerance_s)
{
    if (!header || !secrets || !*secrets || strlen(header) > 2048)
        return STOA_DECLINED;
    int64_t t = -1;
    uint8_t sigs[MAX_SIGNATURES][STOA_SHA256_LEN];
    int nsigs = 0;
    const char *p = header;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 2 && p[0] == 't' && p[1] == '=') {
            if (t != -1)
                return STOA_DECLINED; /* one timestamp only */
            int64_t v = 0;
            for (size_t i = 2; i < n; i++) {
                if (p[i] < '0' || p[i] > '9' || i > 14)
                    return STOA_DECLINED;
                v = v * 10 + (p[i] - '0');
            }
            t = v;
        } else if (n == 3 + 2 * STOA_SHA256_LEN && strncmp(p, "v1=", 3) == 0 &&
                   nsigs < MAX_SIGNATURES) {
            for (size_t i = 0; i < STOA_SHA256_LEN; i++) {
                int hi = hexval(p[3 + 2 * i]), lo = hexval(p[4 + 2 * i]);
                if (hi < 0 || lo < 0)
                    return STOA_DECLINED;
                sigs[nsigs][i] = (uint8_t)(hi << 4 | lo);
            }
            nsigs++;
        }
        /* other schemes (v0) and unknown parts are ignored, as Stripe
         * documents */
        p += n;
        if (*p == ',')
            p++;
    }
    if (t < 0 || nsigs == 0)
        return STOA_DECLINED;
    if (now - t > tolerance_s || t - now > tolerance_s)
        return STOA_DECLINED;
    char prefix[24];
    int plen = snprintf(prefix, sizeof(prefix), "%lld.", (long long)t);
    stoa_buf_t signed_payload;
    stoa_buf_init(&signed_payload);
    stoa_buf_append(&signed_payload, prefix, (size_t)plen);
    stoa_buf_append(&signed_payload, body, len);
    bool ok = false;
    /* Every configured secret is tried (rotation); no early exit on a
     * match's position, so timing says nothing about which one matched. */
    for (const char *s = secrets; *s;) {
        while (*s == ',' || *s == ' ')
            s++;
        size_t slen = strcspn(s, ", ");
        if (!slen)
            break;
        uint8_t mac[STOA_SHA256_LEN];
        stoa_hmac_sha256(s, slen, signed_payload.data, signed_payload.len, mac);
        for (int i = 0; i < nsigs; i++)
            ok |= stoa_ct_equal(mac, sigs[i], STOA_SHA256_LEN);
        s += slen;
    }
    stoa_buf_free(&signed_payload);
    return ok ? STOA_OK : STOA_DECLINED;
}
