/* markdown.h - a small, safe Markdown subset rendered to HTML, for the
 * bodies of product updates an admin writes (the HTML part of their mail).
 *
 * Nothing of the input is ever passed through as markup: every text byte
 * is HTML-escaped, raw HTML comes out as text, and only the tags listed
 * below are written, each closed in order. The subset:
 *   - blocks are separated by blank lines (empty or only spaces and tabs);
 *     the lines of a block become <p>...</p>, joined by <br>;
 *   - "# ", "## ", "### " at the start of a line: <h1>..<h3> of the rest of
 *     that line (a line of its own: it ends the paragraph or list before
 *     it); "#### " and deeper are text;
 *   - consecutive lines starting "- " or "* " become <ul><li>..</li></ul>,
 *     lines starting with 1 to 9 digits and ". " become <ol><li>; no
 *     nesting; a list ends at a blank line, a heading, a list of the other
 *     kind or a line that is not an item (which starts a paragraph);
 *   - inline, within ONE line (markup never spans a line break): **strong**,
 *     *em* and _em_, `code` (nothing interpreted inside), and
 *     [text](url) when url starts with https://, http:// or mailto:
 *     (any case), has something after it and holds no space, tab, '"',
 *     '\'', '<', '>' or backslash; the url ends at the first ')' and the
 *     text at the first ']'. An opening marker counts only when its closer
 *     is on the same line (and inside the construct around it: tags nest,
 *     they never cross); else it is text. A marker opens before a
 *     non-space and closes after one; '_' only at word edges (snake_case
 *     stays text); runs of three or more '*' and of two or more '_' are
 *     text; one strong, one em and one link at a time (no link in a link).
 * Control bytes other than \n and \t are dropped first (so \r\n is \n).
 * Bytes of 0x80 and above are copied as they are (the caller checks UTF-8).
 *
 * Cost: linear in the input, no recursion, the output at most 16 bytes per
 * input byte plus a constant. */
#ifndef STOA_MARKDOWN_H
#define STOA_MARKDOWN_H

#include "stoa/buf.h"
#include "stoa/core.h"

/* Renders text (len bytes, valid UTF-8 already checked by the caller, but
 * not trusted: any byte is safe) to HTML appended to out. text may be NULL
 * when len is 0; an empty input (or only blank lines) appends nothing.
 * Returns STOA_OK, or STOA_ERROR on allocation failure only (out then
 * holds a partial rendering the caller discards). Deterministic; never
 * reads past len. */
STOA_MUSTCHECK int stoa_markdown_html(const char *text, size_t len,
                                      stoa_buf_t *out);

/* Appends len bytes of s to out with & < > " ' as HTML entities (&amp;
 * &lt; &gt; &quot; &#39;), everything else as it is: safe as element text
 * and inside a double-quoted attribute value. */
void stoa_markdown_escape(stoa_buf_t *out, const char *s, size_t len);

#endif
