/* markdown.c - the Markdown subset of markdown.h to HTML.
 *
 * Two levels, both single passes: lines are classed into blocks (paragraph,
 * heading, list item, blank), and each line's text goes through one
 * left-to-right inline scan. The scan never looks for a closer twice over
 * the same bytes: each kind of closer has a cursor that only moves forward
 * along the line (see next_closer), which keeps a line of 20,000 '*' or
 * '[' linear instead of quadratic. */
#include "stoa/markdown.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void stoa_markdown_escape(stoa_buf_t *out, const char *s, size_t len)
{
    size_t run = 0; /* start of the bytes not yet copied */
    for (size_t i = 0; i < len; i++) {
        const char *entity;
        switch (s[i]) {
        case '&':
            entity = "&amp;";
            break;
        case '<':
            entity = "&lt;";
            break;
        case '>':
            entity = "&gt;";
            break;
        case '"':
            entity = "&quot;";
            break;
        case '\'':
            entity = "&#39;";
            break;
        default:
            continue;
        }
        stoa_buf_append(out, s + run, i - run);
        stoa_buf_puts(out, entity);
        run = i + 1;
    }
    stoa_buf_append(out, s + run, len - run);
}

/* --- inline markup of one line ------------------------------------------ */

/* The kinds of closer the scan searches for. */
enum {
    CLOSE_CODE,     /* ` */
    CLOSE_EM_STAR,  /* a lone * after a non-space */
    CLOSE_STRONG,   /* a run of exactly ** after a non-space */
    CLOSE_EM_UNDER, /* a lone _ after a non-space, before a non-word byte */
    CLOSE_TEXT,     /* ] */
    CLOSE_URL,      /* ) */
    URL_FORBIDDEN,  /* a byte no href may hold */
    CLOSE_KINDS
};

typedef struct {
    const char *s;
    size_t len;
    /* Per kind: the first match at or after from is at pos (len: none).
     * Valid for any query in from..pos, so queries that move forward
     * scan each byte once per kind. */
    size_t from[CLOSE_KINDS];
    size_t pos[CLOSE_KINDS];
} line_t;

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Letters, digits and every byte of a multi-byte UTF-8 character: a '_'
 * next to one of them is inside a word. */
static bool is_word(char c)
{
    unsigned char u = (unsigned char)c;
    return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') ||
           (u >= 'A' && u <= 'Z') || u >= 0x80;
}

/* The length of the run of c starting at i (i included). */
static size_t run_length(const line_t *l, size_t i, char c)
{
    size_t n = 0;
    while (i + n < l->len && l->s[i + n] == c)
        n++;
    return n;
}

/* The byte before i, or a space at the start of the line. */
static char before(const line_t *l, size_t i)
{
    return i > 0 ? l->s[i - 1] : ' ';
}

static char at(const line_t *l, size_t i)
{
    return i < l->len ? l->s[i] : ' ';
}

/* Whether a closer of kind starts at i: a property of i and its
 * neighbours only, so a cursor can skip what it has passed. */
static bool closer_at(const line_t *l, int kind, size_t i)
{
    char c = l->s[i];
    switch (kind) {
    case CLOSE_CODE:
        return c == '`';
    case CLOSE_EM_STAR:
        return c == '*' && before(l, i) != '*' && at(l, i + 1) != '*' &&
               !is_space(before(l, i));
    case CLOSE_STRONG:
        return c == '*' && before(l, i) != '*' && run_length(l, i, '*') == 2 &&
               !is_space(before(l, i));
    case CLOSE_EM_UNDER:
        return c == '_' && before(l, i) != '_' && at(l, i + 1) != '_' &&
               !is_space(before(l, i)) && !is_word(at(l, i + 1));
    case CLOSE_TEXT:
        return c == ']';
    case CLOSE_URL:
        return c == ')';
    default: /* URL_FORBIDDEN; control bytes are gone already but for \t */
        return c == ' ' || c == '\t' || c == '"' || c == '\'' || c == '<' ||
               c == '>' || c == '\\';
    }
}

/* The first closer of kind at or after from (l->len: none). */
static size_t next_closer(line_t *l, int kind, size_t from)
{
    if (from >= l->from[kind] && from <= l->pos[kind])
        return l->pos[kind];
    size_t i = from;
    while (i < l->len && !closer_at(l, kind, i))
        i++;
    l->from[kind] = from;
    l->pos[kind] = i;
    return i;
}

typedef enum { OPEN_STRONG, OPEN_EM, OPEN_LINK } open_kind_t;

/* An open construct: its closer starts at close and is skip bytes long. */
typedef struct {
    open_kind_t kind;
    size_t close;
    size_t skip;
} open_t;

static const char *const close_tags[] = {
    [OPEN_STRONG] = "</strong>",
    [OPEN_EM] = "</em>",
    [OPEN_LINK] = "</a>",
};

static bool has_scheme(const char *url, size_t len)
{
    static const char *const schemes[] = {"https://", "http://", "mailto:"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(schemes); i++) {
        size_t n = strlen(schemes[i]);
        /* Something must follow the scheme: a bare "https://" links to
         * nothing. */
        if (len > n && strncasecmp(url, schemes[i], n) == 0)
            return true;
    }
    return false;
}

/* Whether the '[' at i starts "[text](url)" with a non-empty text and a
 * safe url, all of it before limit; then the ']' is at *text_end and the
 * url is [*url_start, *url_end). Else the '[' is text. */
static bool link_at(line_t *l, size_t i, size_t limit, size_t *text_end,
                    size_t *url_start, size_t *url_end)
{
    size_t t = next_closer(l, CLOSE_TEXT, i + 1);
    if (t >= limit || t == i + 1 || at(l, t + 1) != '(')
        return false;
    size_t u = t + 2;
    size_t e = next_closer(l, CLOSE_URL, u);
    if (e >= limit || !has_scheme(l->s + u, e - u) ||
        next_closer(l, URL_FORBIDDEN, u) < e)
        return false;
    *text_end = t;
    *url_start = u;
    *url_end = e;
    return true;
}

/* Renders s[0..len) (one line, control bytes gone) as inline HTML. Every
 * construct opened here is closed here: an opener is taken only when its
 * closer lies before the closer of the innermost open construct, so tags
 * nest and the stack is empty at the end of the line. */
static void render_inline(stoa_buf_t *out, const char *s, size_t len)
{
    line_t l = {.s = s, .len = len};
    for (int k = 0; k < CLOSE_KINDS; k++) {
        l.from[k] = 1;
        l.pos[k] = 0; /* empty: the first query scans */
    }
    open_t stack[3]; /* one strong, one em, one link */
    size_t depth = 0;
    bool in[3] = {false, false, false};
    size_t i = 0;
    while (i < len) {
        size_t limit = depth ? stack[depth - 1].close : len;
        if (depth && i == limit) {
            open_t *top = &stack[--depth];
            stoa_buf_puts(out, close_tags[top->kind]);
            in[top->kind] = false;
            i += top->skip;
            continue;
        }
        char c = s[i];
        size_t run = (c == '*' || c == '_') ? run_length(&l, i, c) : 1;
        size_t end;
        if (c == '`') {
            end = next_closer(&l, CLOSE_CODE, i + 1);
            if (end < limit && end > i + 1) {
                stoa_buf_puts(out, "<code>");
                stoa_markdown_escape(out, s + i + 1, end - i - 1);
                stoa_buf_puts(out, "</code>");
                i = end + 1;
                continue;
            }
        } else if (c == '*' && (run == 1 || run == 2) &&
                   !in[run == 2 ? OPEN_STRONG : OPEN_EM] &&
                   !is_space(at(&l, i + run)) && i + run < limit) {
            open_kind_t kind = run == 2 ? OPEN_STRONG : OPEN_EM;
            end = next_closer(&l, run == 2 ? CLOSE_STRONG : CLOSE_EM_STAR,
                              i + run);
            if (end < limit) {
                stoa_buf_puts(out, kind == OPEN_STRONG ? "<strong>" : "<em>");
                stack[depth++] = (open_t){kind, end, run};
                in[kind] = true;
                i += run;
                continue;
            }
        } else if (c == '_' && run == 1 && !in[OPEN_EM] &&
                   !is_word(before(&l, i)) && !is_space(at(&l, i + 1)) &&
                   i + 1 < limit) {
            end = next_closer(&l, CLOSE_EM_UNDER, i + 1);
            if (end < limit) {
                stoa_buf_puts(out, "<em>");
                stack[depth++] = (open_t){OPEN_EM, end, 1};
                in[OPEN_EM] = true;
                i++;
                continue;
            }
        } else if (c == '[' && !in[OPEN_LINK]) {
            size_t text_end, url_start, url_end;
            if (link_at(&l, i, limit, &text_end, &url_start, &url_end)) {
                stoa_buf_puts(out, "<a href=\"");
                stoa_markdown_escape(out, s + url_start, url_end - url_start);
                stoa_buf_puts(out, "\">");
                stack[depth++] =
                    (open_t){OPEN_LINK, text_end, url_end + 1 - text_end};
                in[OPEN_LINK] = true;
                i++;
                continue;
            }
        }
        /* Text: a whole run of markers at once, so a closer (which starts
         * a run) is never stepped over. */
        stoa_markdown_escape(out, s + i, run);
        i += run;
    }
    /* Unreachable by the opener rule; kept so that no input can ever
     * leave a tag open. */
    while (depth)
        stoa_buf_puts(out, close_tags[stack[--depth].kind]);
}

/* --- blocks ------------------------------------------------------------- */

typedef enum {
    BLOCK_NONE,
    BLOCK_PARAGRAPH,
    BLOCK_BULLETS,
    BLOCK_NUMBERS
} block_t;

static const char *const block_close[] = {
    [BLOCK_NONE] = "",
    [BLOCK_PARAGRAPH] = "</p>\n",
    [BLOCK_BULLETS] = "</ul>\n",
    [BLOCK_NUMBERS] = "</ol>\n",
};

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_space(s[i]))
            return false;
    return true;
}

/* The heading level of a line ("# " .. "### "), or 0. */
static int heading_level(const char *s, size_t len)
{
    size_t n = 0;
    while (n < len && n < 4 && s[n] == '#')
        n++;
    return n >= 1 && n <= 3 && n < len && s[n] == ' ' ? (int)n : 0;
}

/* The list a line is an item of, with the length of its marker in *skip,
 * or BLOCK_NONE. */
static block_t list_item(const char *s, size_t len, size_t *skip)
{
    if (len >= 2 && (s[0] == '-' || s[0] == '*') && s[1] == ' ') {
        *skip = 2;
        return BLOCK_BULLETS;
    }
    size_t n = 0;
    while (n < len && n < 10 && s[n] >= '0' && s[n] <= '9')
        n++;
    if (n >= 1 && n <= 9 && n + 1 < len && s[n] == '.' && s[n + 1] == ' ') {
        *skip = n + 2;
        return BLOCK_NUMBERS;
    }
    return BLOCK_NONE;
}

/* Copies text without the control bytes other than \n and \t; returns the
 * copy's length. Done first so that the line and inline scans see the
 * neighbours a reader sees. */
static size_t drop_controls(const char *text, size_t len, char *copy)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c >= 0x20 && c != 0x7f) || c == '\n' || c == '\t')
            copy[n++] = (char)c;
    }
    return n;
}

int stoa_markdown_html(const char *text, size_t len, stoa_buf_t *out)
{
    if (len == 0)
        return STOA_OK;
    char *s = malloc(len);
    if (!s)
        return STOA_ERROR;
    size_t n = drop_controls(text, len, s);
    block_t open = BLOCK_NONE;
    size_t start = 0;
    while (start < n) {
        const char *nl = memchr(s + start, '\n', n - start);
        size_t end = nl ? (size_t)(nl - s) : n;
        const char *line = s + start;
        size_t line_len = end - start;
        start = end + 1;

        /* A heading or a blank line is no block that continues. */
        size_t skip = 0;
        int level = heading_level(line, line_len);
        block_t kind = BLOCK_NONE;
        if (!level && !blank(line, line_len)) {
            kind = list_item(line, line_len, &skip);
            if (kind == BLOCK_NONE)
                kind = BLOCK_PARAGRAPH;
        }

        if (open != kind || kind == BLOCK_NONE) {
            stoa_buf_puts(out, block_close[open]);
            open = BLOCK_NONE;
        }
        if (level) {
            stoa_buf_printf(out, "<h%d>", level);
            render_inline(out, line + level + 1, line_len - level - 1);
            stoa_buf_printf(out, "</h%d>\n", level);
            continue;
        }
        if (kind == BLOCK_NONE)
            continue;
        if (open == BLOCK_NONE) {
            stoa_buf_puts(out, kind == BLOCK_PARAGRAPH ? "<p>"
                               : kind == BLOCK_BULLETS ? "<ul>\n"
                                                       : "<ol>\n");
            open = kind;
        } else if (kind == BLOCK_PARAGRAPH) {
            stoa_buf_puts(out, "<br>\n");
        }
        if (kind == BLOCK_PARAGRAPH) {
            render_inline(out, line, line_len);
        } else {
            stoa_buf_puts(out, "<li>");
            render_inline(out, line + skip, line_len - skip);
            stoa_buf_puts(out, "</li>\n");
        }
    }
    stoa_buf_puts(out, block_close[open]);
    free(s);
    return STOA_OK;
}
