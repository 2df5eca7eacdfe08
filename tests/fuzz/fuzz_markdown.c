/* fuzz_markdown.c - the Markdown subset renderer on any bytes.
 *
 * Oracles: the rendering succeeds, is the same twice and at most 16 bytes
 * per input byte (plus a constant); every '<' of the output opens or
 * closes a tag of the subset, closed in order and properly placed (an li
 * in a list, no block inside inline markup, nothing inside code, no link
 * in a link); an href starts with https://, http:// or mailto: and holds
 * no quote, angle bracket, space or backslash; outside tags there is no
 * '>', '"' or '\'', '&' only begins one of the five entities, and no
 * control byte but \n and \t; each '<', '>', '&', '"' and '\'' of the
 * input shows up as exactly one entity (nothing escapes escaping). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stoa/markdown.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;",
                                       "&#39;"};
static const char specials[] = "&<>\"'";

typedef enum { TAG_BLOCK, TAG_LIST, TAG_ITEM, TAG_INLINE, TAG_CODE } role_t;

static const struct {
    const char *name;
    role_t role;
} tags[] = {
    {"p", TAG_BLOCK},  {"h1", TAG_BLOCK},      {"h2", TAG_BLOCK},
    {"h3", TAG_BLOCK}, {"ul", TAG_LIST},       {"ol", TAG_LIST},
    {"li", TAG_ITEM},  {"strong", TAG_INLINE}, {"em", TAG_INLINE},
    {"a", TAG_INLINE}, {"code", TAG_CODE},
};

/* At most block > list > item (or block) > strong, em, link > code. */
#define MAX_DEPTH 8

static bool starts_with(const char *s, const char *end, const char *prefix)
{
    size_t n = strlen(prefix);
    return (size_t)(end - s) >= n && strncmp(s, prefix, n) == 0;
}

/* The tag of name..name_end, or -1. */
static int tag_index(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        if (strlen(tags[i].name) == len && memcmp(tags[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

/* An href value up to its closing quote: returns the quote, or aborts. */
static const char *check_href(const char *p, const char *end)
{
    const char *q = p;
    while (q < end && *q != '"') {
        if (*q == '<' || *q == '>' || *q == '\'' || *q == ' ' || *q == '\t' ||
            *q == '\n' || *q == '\\' || (unsigned char)*q < 0x20)
            abort();
        q++;
    }
    if (q == end)
        abort();
    size_t n = (size_t)(q - p);
    if (!((n > 8 && strncasecmp(p, "https://", 8) == 0) ||
          (n > 7 && strncasecmp(p, "http://", 7) == 0) ||
          (n > 7 && strncasecmp(p, "mailto:", 7) == 0)))
        abort();
    return q;
}

/* Whether a tag of role may open inside the open tags. */
static bool placed_well(role_t role, const int *stack, size_t depth)
{
    role_t top = depth ? tags[stack[depth - 1]].role : TAG_BLOCK;
    if (depth == 0)
        return role == TAG_BLOCK || role == TAG_LIST;
    if (top == TAG_CODE || role == TAG_BLOCK || role == TAG_LIST)
        return false;
    if (role == TAG_ITEM)
        return top == TAG_LIST;
    return top != TAG_LIST; /* inline and code: in a block or an item */
}

static void check_html(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    int stack[MAX_DEPTH];
    size_t depth = 0;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '&') {
            size_t k = 0;
            while (k < 5 && !starts_with(p, end, entities[k]))
                k++;
            if (k == 5)
                abort();
            p += strlen(entities[k]);
            continue;
        }
        if (c == '>' || c == '"' || c == '\'' ||
            (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
            abort();
        if (c != '<') {
            p++;
            continue;
        }
        if (starts_with(p, end, "<br>")) {
            if (!depth || tags[stack[depth - 1]].role != TAG_BLOCK)
                abort();
            p += 4;
            continue;
        }
        bool closing = starts_with(p, end, "</");
        const char *name = p + (closing ? 2 : 1);
        const char *q = name;
        while (q < end &&
               ((*q >= 'a' && *q <= 'z') || (*q >= '1' && *q <= '3')))
            q++;
        int tag = tag_index(name, (size_t)(q - name));
        if (tag < 0 || q == end)
            abort();
        if (closing) {
            if (*q != '>' || !depth || stack[depth - 1] != tag)
                abort();
            depth--;
        } else {
            if (strcmp(tags[tag].name, "a") == 0) {
                if (!starts_with(q, end, " href=\""))
                    abort();
                q = check_href(q + 7, end) + 1;
                for (size_t i = 0; i < depth; i++)
                    if (strcmp(tags[stack[i]].name, "a") == 0)
                        abort();
            }
            if (q == end || *q != '>' || depth == MAX_DEPTH ||
                !placed_well(tags[tag].role, stack, depth))
                abort();
            stack[depth++] = tag;
        }
        p = q + 1;
    }
    if (depth)
        abort();
}

static size_t count_byte(const uint8_t *s, size_t len, char c)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == (uint8_t)c;
    return n;
}

static size_t count_string(const char *s, size_t len, const char *needle)
{
    size_t n = 0, k = strlen(needle);
    for (size_t i = 0; i + k <= len; i++)
        if (memcmp(s + i, needle, k) == 0)
            n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stoa_buf_t first, second;
    stoa_buf_init(&first);
    stoa_buf_init(&second);
    if (stoa_markdown_html((const char *)data, size, &first) != STOA_OK ||
        stoa_markdown_html((const char *)data, size, &second) != STOA_OK)
        abort();
    if (first.len != second.len ||
        (first.len && memcmp(first.data, second.data, first.len) != 0))
        abort();
    if (first.len > 16 * size + 64)
        abort();
    if (first.len) {
        check_html(first.data, first.len);
        for (size_t k = 0; k < 5; k++)
            if (count_string(first.data, first.len, entities[k]) !=
                count_byte(data, size, specials[k]))
                abort();
    }
    stoa_buf_free(&first);
    stoa_buf_free(&second);
    return 0;
}
