/* fuzz_ingest.c - the event-batch parser behind POST /v1/analytics/events.
 *
 * The input is the request body. Oracles (abort() on violation): every
 * item is accepted or rejected exactly once, rejections come by
 * increasing index, and every row written has the seven fields of the
 * staging table, one line, with no raw tab or newline inside a field. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stoa/arena.h"
#include "stoa/buf.h"
#include "stoa/ingest.h"
#include "stoa/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    /* The parser reads a NUL-terminated body, as the transport gives it. */
    char *text = stoa_arena_alloc(arena, size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    stoa_json_t *doc;
    char err[128];
    if (stoa_json_parse(arena, text, size, STOA_JSON_MAX_DEPTH, &doc, err,
                        sizeof(err)) != STOA_OK) {
        stoa_arena_destroy(arena);
        return 0;
    }
    const stoa_json_t *events = stoa_json_get(doc, "events");
    stoa_buf_t rows;
    stoa_buf_init(&rows);
    stoa_ingest_batch_t b = {.rows = &rows};
    /* 2026-01-31T12:00:00Z, 90 days of retention, a user. */
    int64_t now = 1769860800LL * 1000000;
    stoa_ingest_opts_t o = {now, now - 90LL * 86400 * 1000000,
                            "11111111-2222-4333-8444-555555555555"};
    if (stoa_ingest_batch(arena, events, &o, &b) == STOA_INGEST_OK) {
        if (b.accepted + b.nrejected != stoa_json_len(events))
            abort();
        for (size_t i = 1; i < b.nrejected; i++)
            if (b.rejected[i].index <= b.rejected[i - 1].index)
                abort();
        size_t lines = 0;
        const char *stop = rows.data + rows.len;
        for (const char *line = rows.data; rows.len && line < stop;) {
            const char *end = memchr(line, '\n', (size_t)(stop - line));
            if (!end)
                abort();
            int tabs = 0;
            for (const char *c = line; c < end; c++)
                tabs += *c == '\t';
            if (tabs != 5 || memchr(line, '\r', (size_t)(end - line)))
                abort();
            /* Each row's record says where its line is. */
            if (lines >= b.accepted ||
                b.row[lines].offset != (size_t)(line - rows.data) ||
                b.row[lines].len != (size_t)(end + 1 - line))
                abort();
            lines++;
            line = end + 1;
        }
        if (lines != b.accepted)
            abort();
    } else if (rows.len) {
        abort();
    }
    stoa_buf_free(&rows);
    stoa_arena_destroy(arena);
    return 0;
}
