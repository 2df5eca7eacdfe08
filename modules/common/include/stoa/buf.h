/* buf.h - growable byte buffer for responses and builders.
 *
 * Owns its memory (malloc); reused across requests by resetting len, so a
 * pool process reaches a steady size and stops allocating. */
#ifndef STOA_BUF_H
#define STOA_BUF_H

#include "stoa/core.h"
#include <stdarg.h>

typedef struct {
    char *data; /* always NUL-terminated when cap > 0 */
    size_t len;
    size_t cap;
} stoa_buf_t;

void stoa_buf_init(stoa_buf_t *buf);
void stoa_buf_free(stoa_buf_t *buf);
void stoa_buf_reset(stoa_buf_t *buf);
void stoa_buf_reserve(stoa_buf_t *buf, size_t extra);
void stoa_buf_append(stoa_buf_t *buf, const void *data, size_t len);
void stoa_buf_puts(stoa_buf_t *buf, const char *s);
void stoa_buf_printf(stoa_buf_t *buf, const char *fmt, ...) STOA_PRINTF(2, 3);
/* Appends s as the inside of a JSON string (escaping quotes, backslashes
 * and control characters). */
void stoa_buf_json_escape(stoa_buf_t *buf, const char *s, size_t len);

#endif
