/* buf.c - growable byte buffer. */
#include "stoa/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void stoa_buf_init(stoa_buf_t *buf)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void stoa_buf_free(stoa_buf_t *buf)
{
    free(buf->data);
    stoa_buf_init(buf);
}

void stoa_buf_reset(stoa_buf_t *buf)
{
    buf->len = 0;
    if (buf->cap)
        buf->data[0] = '\0';
}

void stoa_buf_reserve(stoa_buf_t *buf, size_t extra)
{
    size_t need = buf->len + extra + 1;
    if (need <= buf->cap)
        return;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < need)
        cap *= 2;
    buf->data = stoa_xrealloc(buf->data, cap);
    buf->cap = cap;
}

void stoa_buf_append(stoa_buf_t *buf, const void *data, size_t len)
{
    stoa_buf_reserve(buf, len);
    if (len)
        memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
}

void stoa_buf_puts(stoa_buf_t *buf, const char *s)
{
    stoa_buf_append(buf, s, strlen(s));
}

void stoa_buf_printf(stoa_buf_t *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    stoa_buf_reserve(buf, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->len += (size_t)n;
}

void stoa_buf_json_escape(stoa_buf_t *buf, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    stoa_buf_reserve(buf, len + 8);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            stoa_buf_append(buf, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            stoa_buf_append(buf, esc, 6);
        } else {
            stoa_buf_append(buf, &s[i], 1);
        }
    }
}
