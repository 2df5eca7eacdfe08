/* ingest.c - event batches: per-item checks, RFC 3339 times, COPY rows,
 * CSV fields. */
#include "stoa/ingest.h"

#include <string.h>
#include <time.h>

#include "stoa/crypto.h"
#include "stoa/db.h"

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int month_days(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

bool stoa_ingest_time_parse(const char *s, int64_t *us)
{
    int y, mo, d, h, mi, se;
    if (!s || strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' ||
        !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d) ||
        (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &se))
        return false;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) ||
        h > 23 || mi > 59 || se > 60)
        return false;
    const char *p = s + 19;
    int64_t frac = 0;
    if (*p == '.') {
        int n = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 6)
                frac = frac * 10 + (*p - '0');
        if (n == 0 || n > 9)
            return false;
        for (; n < 6; n++)
            frac *= 10;
    }
    int64_t offset_s = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        offset_s = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || !digits(p + 4, 2, &om) || oh > 23 ||
            om > 59)
            return false;
        offset_s = (oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
    } else {
        return false;
    }
    int64_t secs =
        days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset_s;
    *us = secs * 1000000 + frac;
    return true;
}

bool stoa_ingest_name_valid(const char *s)
{
    if (!s)
        return false;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
              c == '$' || c == '-'))
            return false;
        if (n >= STOA_INGEST_NAME_MAX)
            return false;
    }
    return n > 0;
}

/* Writes v as n decimal digits at p (v fits them). */
static void put_digits(char *p, int n, long v)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
}

/* "YYYY-MM-DD HH:MM:SS.ffffff+00", which Postgres reads as timestamptz.
 * The year has four digits: stoa_ingest_time_parse and the retention
 * window keep it within 1..9999. By hand, not printf: it runs for every
 * event of every batch. */
static void format_time(char out[STOA_INGEST_TS_LEN], int64_t us)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    memcpy(out, "0000-00-00 00:00:00.000000+00", STOA_INGEST_TS_LEN);
    put_digits(out, 4, (tm.tm_year + 1900) % 10000);
    put_digits(out + 5, 2, tm.tm_mon + 1);
    put_digits(out + 8, 2, tm.tm_mday);
    put_digits(out + 11, 2, tm.tm_hour);
    put_digits(out + 14, 2, tm.tm_min);
    put_digits(out + 17, 2, tm.tm_sec);
    put_digits(out + 20, 6, (long)frac);
}

static const char *const item_members[] = {
    "id", "event", "timestamp", "distinct_id", "properties", NULL};

static bool member_known(const char *key)
{
    for (size_t i = 0; item_members[i]; i++)
        if (strcmp(key, item_members[i]) == 0)
            return true;
    return false;
}

typedef struct {
    const char *id; /* NULL: none given */
    int64_t ts_us;
    const char *name;
    const char *distinct_id;
    const char *props; /* JSON text, props_len bytes (not terminated) */
    size_t props_len;
} item_t;

/* True when text holds a backslash followed by u (a \u escape, or a
 * false alarm after an escaped backslash: either way the slow path). */
static bool has_u_escape(const char *text, size_t len)
{
    for (const char *p = text, *end = text + len;
         (p = memchr(p, '\\', (size_t)(end - p))) != NULL; p++)
        if (p + 1 < end && p[1] == 'u')
            return true;
    return false;
}

/* The properties' JSON text for the row: as the client wrote it when
 * that is safe to hand to Postgres as is, else written again from the
 * parsed tree. The body's text passed the parser and the strict UTF-8
 * check; what jsonb could still refuse in it is a \u escape (a lone
 * surrogate; \u0000 never gets this far), so a text with one is written
 * again (the writer emits the decoded characters). False when the tree
 * cannot be written. */
static bool properties_text(const stoa_json_t *p, stoa_jw_t *w,
                            stoa_buf_t *props, const char **text, size_t *len)
{
    if (stoa_json_source(p, text, len) && !has_u_escape(*text, *len))
        return true;
    stoa_jw_reset(w, props);
    stoa_jw_value(w, p);
    *text = props->data;
    *len = props->len;
    return stoa_jw_ok(w);
}

/* NULL when the item is good (its fields in *it, its properties' JSON
 * text in it->props), else the rejection code. */
static const char *check_item(const stoa_json_t *v,
                              const stoa_ingest_opts_t *opts, item_t *it,
                              stoa_jw_t *w, stoa_buf_t *props)
{
    if (!stoa_json_is_object(v))
        return "not_an_object";
    for (size_t i = 0; i < stoa_json_len(v); i++)
        if (!member_known(stoa_json_key_at(v, i)))
            return "unknown_field";
    const stoa_json_t *id = stoa_json_get(v, "id");
    if (id) {
        it->id = stoa_json_string(id);
        if (!stoa_uuid_valid(it->id))
            return "invalid_id";
    }
    it->name = stoa_json_string(stoa_json_get(v, "event"));
    if (!stoa_ingest_name_valid(it->name))
        return "invalid_event";
    const stoa_json_t *ts = stoa_json_get(v, "timestamp");
    it->ts_us = opts->now_us;
    if (ts && !stoa_ingest_time_parse(stoa_json_string(ts), &it->ts_us))
        return "invalid_timestamp";
    if (it->ts_us > opts->now_us + STOA_INGEST_MAX_FUTURE_US)
        return "too_far_in_future";
    if (it->ts_us < opts->oldest_us)
        return "too_old";
    const stoa_json_t *did = stoa_json_get(v, "distinct_id");
    it->distinct_id = opts->user_id;
    if (did) {
        it->distinct_id = stoa_json_string(did);
        size_t n = it->distinct_id ? strlen(it->distinct_id) : 0;
        if (n == 0 || n > STOA_INGEST_DISTINCT_ID_MAX)
            return "invalid_distinct_id";
    }
    const stoa_json_t *p = stoa_json_get(v, "properties");
    stoa_buf_reset(props);
    if (p && !stoa_json_is_object(p))
        return "invalid_properties";
    it->props = "{}";
    it->props_len = 2;
    /* A number beyond Postgres' numeric (131072 digits before the point,
     * 16383 after) would fail the batch's whole COPY: it fails its item. */
    if (p && (!stoa_json_numbers_fit(p, 131072, 16383) ||
              !properties_text(p, w, props, &it->props, &it->props_len)))
        return "invalid_properties";
    size_t size = strlen(it->name) + it->props_len +
                  (it->distinct_id ? strlen(it->distinct_id) : 0);
    if (size > STOA_INGEST_MAX_EVENT_BYTES)
        return "too_large";
    return NULL;
}

stoa_ingest_verdict_t stoa_ingest_batch(stoa_arena_t *arena,
                                        const stoa_json_t *events,
                                        const stoa_ingest_opts_t *opts,
                                        stoa_ingest_batch_t *out)
{
    out->accepted = 0;
    out->row = NULL;
    out->nrejected = 0;
    out->rejected = NULL;
    if (!stoa_json_is_array(events))
        return STOA_INGEST_NOT_ARRAY;
    size_t n = stoa_json_len(events);
    if (n == 0)
        return STOA_INGEST_EMPTY;
    if (n > STOA_INGEST_MAX_EVENTS)
        return STOA_INGEST_TOO_MANY;
    stoa_buf_t props;
    stoa_buf_init(&props);
    stoa_jw_t *w = stoa_jw_new(&props);
    /* Rows of ~300 bytes: one reservation instead of many growths. */
    stoa_buf_reserve(out->rows, n * 384);
    for (size_t i = 0; i < n; i++) {
        item_t it = {0};
        const char *error =
            check_item(stoa_json_at(events, i), opts, &it, w, &props);
        if (error) {
            if (!out->rejected)
                out->rejected =
                    stoa_arena_alloc(arena, n * sizeof(*out->rejected));
            out->rejected[out->nrejected].index = i;
            out->rejected[out->nrejected].error = error;
            out->nrejected++;
            continue;
        }
        stoa_buf_t *r = out->rows;
        if (!out->row)
            out->row = stoa_arena_alloc(arena, n * sizeof(*out->row));
        stoa_ingest_row_t *row = &out->row[out->accepted];
        row->id_given = it.id != NULL;
        if (it.id) {
            /* Postgres prints uuids in lower case: the pool matches the
             * ids it claimed against what the server answers. */
            for (size_t k = 0; k <= STOA_UUID_STR_LEN; k++)
                row->id[k] = (char)(it.id[k] >= 'A' && it.id[k] <= 'F'
                                        ? it.id[k] - 'A' + 'a'
                                        : it.id[k]);
        } else {
            stoa_uuid_v4(row->id);
        }
        row->ts_us = it.ts_us;
        format_time(row->ts, it.ts_us);
        row->offset = r->len;
        stoa_buf_append(r, row->id, STOA_UUID_STR_LEN);
        stoa_buf_append(r, "\t", 1);
        stoa_buf_puts(r, row->ts);
        stoa_buf_append(r, "\t", 1);
        stoa_buf_puts(r, it.name); /* its alphabet needs no escape */
        stoa_buf_append(r, "\t", 1);
        if (it.distinct_id)
            stoa_db_copy_escape(r, it.distinct_id, strlen(it.distinct_id));
        else
            stoa_buf_append(r, "\\N", 2);
        stoa_buf_append(r, "\t", 1);
        if (opts->user_id)
            stoa_buf_puts(r, opts->user_id);
        else
            stoa_buf_append(r, "\\N", 2);
        stoa_buf_append(r, "\t", 1);
        stoa_db_copy_escape(r, it.props, it.props_len);
        stoa_buf_append(r, "\n", 1);
        row->len = r->len - row->offset;
        out->accepted++;
    }
    stoa_jw_free(w);
    stoa_buf_free(&props);
    return STOA_INGEST_OK;
}

void stoa_ingest_csv_field(stoa_buf_t *out, const char *s)
{
    if (!s)
        return;
    if (!s[strcspn(s, ",\"\r\n")]) {
        stoa_buf_puts(out, s);
        return;
    }
    stoa_buf_append(out, "\"", 1);
    for (const char *q; (q = strchr(s, '"')) != NULL; s = q + 1) {
        stoa_buf_append(out, s, (size_t)(q - s) + 1);
        stoa_buf_append(out, "\"", 1);
    }
    stoa_buf_puts(out, s);
    stoa_buf_append(out, "\"", 1);
}
