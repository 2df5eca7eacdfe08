/* ingest.h - product-analytics event batches (SPEC §7): the items of
 * POST /v1/analytics/events checked one by one and written as rows of
 * COPY's text format for the analytics staging table.
 *
 * A batch is refused whole only when it is not an array of 1..
 * STOA_INGEST_MAX_EVENTS items; otherwise each bad item is rejected by its
 * index with a stable code and the others go on. Nothing here does I/O:
 * the pool claims the client-given ids, then copies the rows of the fresh
 * ones straight into the events table (stoa_db_copy_in). The parser
 * never aborts on bad input (fuzzed: tests/fuzz/fuzz_ingest.c). */
#ifndef STOA_INGEST_H
#define STOA_INGEST_H

#include "stoa/arena.h"
#include "stoa/buf.h"
#include "stoa/core.h"
#include "stoa/crypto.h"
#include "stoa/json.h"

#define STOA_INGEST_MAX_EVENTS 1000
/* An item's size: its name, distinct_id and properties as JSON text. */
#define STOA_INGEST_MAX_EVENT_BYTES (32 * 1024)
#define STOA_INGEST_NAME_MAX 200
#define STOA_INGEST_DISTINCT_ID_MAX 200
/* Clocks drift and devices send late; a day ahead is a bug. */
#define STOA_INGEST_MAX_FUTURE_US (23LL * 3600 * 1000000)

/* The columns of the rows written, in order (analytics.events'):
 *   id uuid, ts timestamptz, event text, distinct_id text, user_id uuid,
 *   properties jsonb. */
#define STOA_INGEST_COPY_COLUMNS                                               \
    "id, ts, event, distinct_id, user_id, properties"
/* "YYYY-MM-DD HH:MM:SS.ffffff+00" and its NUL. */
#define STOA_INGEST_TS_LEN 30

typedef struct {
    int64_t now_us;      /* the time of receipt, unix microseconds */
    int64_t oldest_us;   /* earlier events are past retention: too_old */
    const char *user_id; /* the signed-in sender (a UUID), or NULL */
} stoa_ingest_opts_t;

typedef struct {
    size_t index;
    /* not_an_object, unknown_field, invalid_id, invalid_event,
     * invalid_timestamp, too_far_in_future, too_old, invalid_distinct_id,
     * invalid_properties, too_large (static strings). */
    const char *error;
} stoa_ingest_reject_t;

typedef enum {
    STOA_INGEST_OK,
    STOA_INGEST_NOT_ARRAY, /* events missing or not an array */
    STOA_INGEST_EMPTY,
    STOA_INGEST_TOO_MANY,
} stoa_ingest_verdict_t;

/* One accepted item: where its COPY row lies in the batch's rows, and
 * what the pool needs to decide whether it is stored (a client-given id
 * is stored only if no earlier batch, nor an earlier item, had it). */
typedef struct {
    char id[STOA_UUID_STR_LEN + 1]; /* lower case, as Postgres prints it */
    bool id_given;                  /* false: generated here, fresh */
    int64_t ts_us;
    char ts[STOA_INGEST_TS_LEN]; /* ts_us as the row carries it */
    size_t offset, len;          /* the row's bytes in rows, its \n included */
} stoa_ingest_row_t;

typedef struct {
    stoa_buf_t *rows;               /* COPY rows appended here (caller's) */
    size_t accepted;                /* rows written */
    stoa_ingest_row_t *row;         /* arena-owned, accepted of them */
    stoa_ingest_reject_t *rejected; /* arena-owned, by increasing index */
    size_t nrejected;
} stoa_ingest_batch_t;

/* Checks each item of `events` (the body's "events" member; may be NULL)
 * and appends one row per good item to out->rows. An item without an id
 * gets a random one. With opts->user_id, distinct_id defaults to it. */
stoa_ingest_verdict_t stoa_ingest_batch(stoa_arena_t *arena,
                                        const stoa_json_t *events,
                                        const stoa_ingest_opts_t *opts,
                                        stoa_ingest_batch_t *out);

/* An RFC 3339 time ("2026-01-31T12:00:00Z", "...T12:00:00.25+02:00"):
 * a date that exists, a fraction of up to 9 digits (kept to the
 * microsecond), Z or an offset up to 23:59. True with *us, unix
 * microseconds. */
bool stoa_ingest_time_parse(const char *s, int64_t *us);

/* An event name: 1..STOA_INGEST_NAME_MAX of [A-Za-z0-9_.:$-]. */
bool stoa_ingest_name_valid(const char *s);

/* Appends a field of a CSV record (RFC 4180): quoted when it holds a
 * comma, a quote, CR or LF (quotes doubled), else as is. s NULL: an empty
 * field. */
void stoa_ingest_csv_field(stoa_buf_t *out, const char *s);

#endif
