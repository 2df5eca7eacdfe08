/* check_markdown.c - the Markdown subset to HTML: each construct, escaping
 * and hostile links, unclosed markers, line endings and control bytes,
 * pathological inputs and a full-size document. */
#include "check_util.h"
#include "stoa/markdown.h"

static stoa_buf_t out;

static void setup(void)
{
    stoa_buf_init(&out);
}

static void teardown(void)
{
    stoa_buf_free(&out);
}

/* The rendering of len bytes of text, NUL-terminated in out. */
static const char *render(const char *text, size_t len)
{
    stoa_buf_reset(&out);
    ck_assert_int_eq(stoa_markdown_html(text, len, &out), STOA_OK);
    return out.len ? out.data : "";
}

static void assert_renders(const char *in, const char *want)
{
    const char *got = render(in, strlen(in));
    ck_assert_msg(strcmp(got, want) == 0, "'%s'\n gave '%s'\n want '%s'", in,
                  got, want);
}

/* One table, in four parts: blocks, inline markup, unclosed markers,
 * escaping. */
static const struct {
    const char *in;
    const char *out;
} render_cases[] = {
    /* Blocks. */
    {"hello", "<p>hello</p>\n"},
    {"hello\n", "<p>hello</p>\n"},
    {"a\nb", "<p>a<br>\nb</p>\n"},
    {"a\n\nb", "<p>a</p>\n<p>b</p>\n"},
    {"a\n \t \nb", "<p>a</p>\n<p>b</p>\n"},
    {"\n\n\na\n\n\n", "<p>a</p>\n"},
    {"# One", "<h1>One</h1>\n"},
    {"## Two", "<h2>Two</h2>\n"},
    {"### Three", "<h3>Three</h3>\n"},
    {"#### Four", "<p>#### Four</p>\n"},
    {"####### Seven", "<p>####### Seven</p>\n"},
    {"#NoSpace", "<p>#NoSpace</p>\n"},
    {"#", "<p>#</p>\n"},
    {" # Indented", "<p> # Indented</p>\n"},
    {"# *New* plans", "<h1><em>New</em> plans</h1>\n"},
    {"intro\n# Head\nafter", "<p>intro</p>\n<h1>Head</h1>\n<p>after</p>\n"},
    {"- a\n- b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n"},
    {"* a\n- b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n"},
    {"1. a\n2. b\n10. c", "<ol>\n<li>a</li>\n<li>b</li>\n<li>c</li>\n</ol>\n"},
    {"1.a", "<p>1.a</p>\n"},
    {"1234567890. ten digits", "<p>1234567890. ten digits</p>\n"},
    {"-a", "<p>-a</p>\n"},
    {"- **bold** item", "<ul>\n<li><strong>bold</strong> item</li>\n</ul>\n"},
    /* A list ends at a blank line, ... */
    {"- a\n\n- b", "<ul>\n<li>a</li>\n</ul>\n<ul>\n<li>b</li>\n</ul>\n"},
    /* ... at a line that is no item (a paragraph starts), ... */
    {"- a\ntext\n- b",
     "<ul>\n<li>a</li>\n</ul>\n<p>text</p>\n<ul>\n<li>b</li>\n</ul>\n"},
    /* ... at a list of the other kind and at a heading. */
    {"- a\n1. b", "<ul>\n<li>a</li>\n</ul>\n<ol>\n<li>b</li>\n</ol>\n"},
    {"- a\n## H", "<ul>\n<li>a</li>\n</ul>\n<h2>H</h2>\n"},
    /* A paragraph ends where a list starts. */
    {"text\n- a", "<p>text</p>\n<ul>\n<li>a</li>\n</ul>\n"},
    /* No nesting: an indented item is text of a paragraph. */
    {"- a\n  - b", "<ul>\n<li>a</li>\n</ul>\n<p>  - b</p>\n"},

    /* Inline markup. */
    {"**bold**", "<p><strong>bold</strong></p>\n"},
    {"*em*", "<p><em>em</em></p>\n"},
    {"_em_", "<p><em>em</em></p>\n"},
    {"`code`", "<p><code>code</code></p>\n"},
    {"`**not** *markup* [a](https://x)`",
     "<p><code>**not** *markup* [a](https://x)</code></p>\n"},
    {"`<b>&`", "<p><code>&lt;b&gt;&amp;</code></p>\n"},
    {"*a **b** c*", "<p><em>a <strong>b</strong> c</em></p>\n"},
    {"**a _b_ c**", "<p><strong>a <em>b</em> c</strong></p>\n"},
    /* Tags nest, never cross: the inner opener whose closer lies past the
     * outer closer is text. */
    {"**a *b** c*", "<p><strong>a *b</strong> c*</p>\n"},
    {"[see **this**](https://example.com/a)",
     "<p><a href=\"https://example.com/a\">see <strong>this</strong></a></p>\n"},
    {"[a](http://x.org)", "<p><a href=\"http://x.org\">a</a></p>\n"},
    {"[mail us](mailto:team@example.com)",
     "<p><a href=\"mailto:team@example.com\">mail us</a></p>\n"},
    {"[A](HTTPS://X.ORG)", "<p><a href=\"HTTPS://X.ORG\">A</a></p>\n"},
    {"[q](https://x.org/?a=1&b=2)",
     "<p><a href=\"https://x.org/?a=1&amp;b=2\">q</a></p>\n"},
    {"go [here](https://a.b) and [there](https://c.d).",
     "<p>go <a href=\"https://a.b\">here</a> and <a "
     "href=\"https://c.d\">there</a>.</p>\n"},
    {"snake_case_name", "<p>snake_case_name</p>\n"},
    {"2 * 3 * 4", "<p>2 * 3 * 4</p>\n"},
    {"***x***", "<p>***x***</p>\n"},
    {"__x__", "<p>__x__</p>\n"},
    /* Markup does not span the lines of a paragraph. */
    {"*a\nb*", "<p>*a<br>\nb*</p>\n"},
    {"`a\nb`", "<p>`a<br>\nb`</p>\n"},
    /* Tabs are text. */
    {"a\tb", "<p>a\tb</p>\n"},

    /* Unclosed markers are text. */
    {"**bold", "<p>**bold</p>\n"},
    {"*em", "<p>*em</p>\n"},
    {"_em", "<p>_em</p>\n"},
    {"`code", "<p>`code</p>\n"},
    {"``", "<p>``</p>\n"},
    {"* ", "<ul>\n<li></li>\n</ul>\n"},
    {"a * b", "<p>a * b</p>\n"},
    {"[text", "<p>[text</p>\n"},
    {"[text]", "<p>[text]</p>\n"},
    {"[text](", "<p>[text](</p>\n"},
    {"[text](https://x", "<p>[text](https://x</p>\n"},
    {"[text] (https://x)", "<p>[text] (https://x)</p>\n"},
    {"[](https://x)", "<p>[](https://x)</p>\n"},
    {"[x](https://)", "<p>[x](https://)</p>\n"},
    {"**a *b**", "<p><strong>a *b</strong></p>\n"},
    {"*a **b*", "<p><em>a **b</em></p>\n"},

    /* Escaping: nothing of the input becomes markup; raw HTML and every
     * attempt to break out of the href or to smuggle another scheme stays
     * text. */
    {"<script>alert(1)</script>",
     "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"},
    {"a & b \"c\" 'd'", "<p>a &amp; b &quot;c&quot; &#39;d&#39;</p>\n"},
    {"&amp; &lt;", "<p>&amp;amp; &amp;lt;</p>\n"},
    {"# <img src=x onerror=alert(1)>",
     "<h1>&lt;img src=x onerror=alert(1)&gt;</h1>\n"},
    {"- <b>", "<ul>\n<li>&lt;b&gt;</li>\n</ul>\n"},
    {"[x](https://a\"onmouseover=x)",
     "<p>[x](https://a&quot;onmouseover=x)</p>\n"},
    {"[x](https://a'onmouseover=x)",
     "<p>[x](https://a&#39;onmouseover=x)</p>\n"},
    {"[x](https://a onmouseover=x)", "<p>[x](https://a onmouseover=x)</p>\n"},
    {"[x](https://a\tb)", "<p>[x](https://a\tb)</p>\n"},
    {"[x](https://a<b)", "<p>[x](https://a&lt;b)</p>\n"},
    {"[x](https://a>b)", "<p>[x](https://a&gt;b)</p>\n"},
    {"[x](https://a\\b)", "<p>[x](https://a\\b)</p>\n"},
    {"[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>\n"},
    {"[x](JaVaScRiPt:alert(1))", "<p>[x](JaVaScRiPt:alert(1))</p>\n"},
    {"[x]( https://a)", "<p>[x]( https://a)</p>\n"},
    {"[x](data:text/html;base64,PHNjcmlwdD4=)",
     "<p>[x](data:text/html;base64,PHNjcmlwdD4=)</p>\n"},
    {"[x](vbscript:msgbox)", "<p>[x](vbscript:msgbox)</p>\n"},
    {"[x](//evil.example)", "<p>[x](//evil.example)</p>\n"},
    {"[x](https:evil)", "<p>[x](https:evil)</p>\n"},
    {"[<script>](https://a)",
     "<p><a href=\"https://a\">&lt;script&gt;</a></p>\n"},
    {"[\"><b>](https://a)",
     "<p><a href=\"https://a\">&quot;&gt;&lt;b&gt;</a></p>\n"},
    {"[x](https://a&quot;)", "<p><a href=\"https://a&amp;quot;\">x</a></p>\n"},
    {"`</code><script>`", "<p><code>&lt;/code&gt;&lt;script&gt;</code></p>\n"},
};

START_TEST(renders_as)
{
    assert_renders(render_cases[_i].in, render_cases[_i].out);
}
END_TEST

START_TEST(empty_input_renders_nothing)
{
    ck_assert_int_eq(stoa_markdown_html(NULL, 0, &out), STOA_OK);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_str_eq(render("\n\n  \n\t\n", 6), "");
    /* Only control bytes: nothing is left of them. */
    ck_assert_str_eq(render("\x01\x02\r\x7f", 4), "");
}
END_TEST

START_TEST(appends_to_out)
{
    stoa_buf_puts(&out, "<html>");
    ck_assert_int_eq(stoa_markdown_html("*x*", 3, &out), STOA_OK);
    ck_assert_str_eq(out.data, "<html><p><em>x</em></p>\n");
}
END_TEST

START_TEST(crlf_is_newline)
{
    assert_renders("a\r\nb\r\n\r\n- x\r\n- y\r\n\r\n# T\r\n",
                   "<p>a<br>\nb</p>\n<ul>\n<li>x</li>\n<li>y</li>\n</ul>\n"
                   "<h1>T</h1>\n");
    /* A lone \r is a control byte, dropped: no line break. */
    assert_renders("a\rb", "<p>ab</p>\n");
}
END_TEST

START_TEST(control_bytes_are_dropped)
{
    static const char in[] = "a\0b\x01"
                             "c\x1b[31m\x7f"
                             "d\ne\tf\x0b\x0c";
    ck_assert_str_eq(render(in, sizeof(in) - 1), "<p>abc[31md<br>\ne\tf</p>\n");
    /* Dropped before markup is read: a NUL cannot hide a closer or a
     * forbidden url byte. */
    static const char link[] = "[x](https://a\0b) *e\x01*";
    ck_assert_str_eq(render(link, sizeof(link) - 1),
                     "<p><a href=\"https://ab\">x</a> <em>e</em></p>\n");
}
END_TEST

START_TEST(never_reads_past_len)
{
    /* An exact-size heap copy: ASan catches a read of the byte after. */
    const char src[] = "*a*b**c";
    char *text = malloc(3);
    ck_assert_ptr_nonnull(text);
    memcpy(text, src, 3);
    ck_assert_str_eq(render(text, 3), "<p><em>a</em></p>\n");
    memcpy(text, "[a]", 3);
    ck_assert_str_eq(render(text, 3), "<p>[a]</p>\n");
    free(text);
}
END_TEST

START_TEST(bytes_above_ascii_are_kept)
{
    assert_renders("caf\xc3\xa9 _na\xc3\xafve_ x_\xc3\xa9_y",
                   "<p>caf\xc3\xa9 <em>na\xc3\xafve</em> x_\xc3\xa9_y</p>\n");
    /* Not valid UTF-8, still no markup. */
    assert_renders("\xff<\xfe", "<p>\xff&lt;\xfe</p>\n");
}
END_TEST

/* 20,000 bytes of one pattern, rendered many times: linear work takes
 * milliseconds, a quadratic rescan would run past the test's timeout. */
#define PATHOLOGICAL_LEN 20000
#define PATHOLOGICAL_ROUNDS 100

static char *repeat_pattern(const char *pattern, size_t len)
{
    size_t n = strlen(pattern);
    char *s = malloc(len + 1);
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < len; i++)
        s[i] = pattern[i % n];
    s[len] = '\0';
    return s;
}

/* Renders text PATHOLOGICAL_ROUNDS times; each time the output must be
 * <p>want</p> (want NULL: the text itself). */
static void assert_pathological(const char *text, const char *want)
{
    stoa_buf_t expect;
    stoa_buf_init(&expect);
    stoa_buf_puts(&expect, "<p>");
    stoa_buf_puts(&expect, want ? want : text);
    stoa_buf_puts(&expect, "</p>\n");
    for (int round = 0; round < PATHOLOGICAL_ROUNDS; round++) {
        const char *got = render(text, strlen(text));
        ck_assert_uint_eq(out.len, expect.len);
        ck_assert_msg(memcmp(got, expect.data, expect.len) == 0,
                      "pattern starting '%.12s' rendered wrong", text);
    }
    stoa_buf_free(&expect);
}

START_TEST(pathological_inputs_are_linear)
{
    /* Runs and lone openers without a closer: all text. */
    static const char *const literal[] = {
        "*",     "_",     "`",   "[",  "**a ",           "*a ",
        "_a ",   "[a](",  "[a]", "](", "[a](https://x ", "_a_b",
        "**a *", "*a **",
    };
    for (size_t k = 0; k < STOA_ARRAY_LEN(literal); k++) {
        char *s = repeat_pattern(literal[k], PATHOLOGICAL_LEN);
        assert_pathological(s, NULL);
        free(s);
    }
    /* Openers each with a closer right after. */
    char *s = repeat_pattern("*a", PATHOLOGICAL_LEN);
    char *want = repeat_pattern("<em>a</em>a", 5000 * strlen("<em>a</em>a"));
    assert_pathological(s, want);
    free(s);
    free(want);
    /* Every byte escaped. */
    s = repeat_pattern("<", PATHOLOGICAL_LEN);
    want = repeat_pattern("&lt;", PATHOLOGICAL_LEN * 4);
    assert_pathological(s, want);
    free(s);
    free(want);
    /* A link whose url runs to the one ')' at the very end. */
    s = repeat_pattern("[a](https://x", PATHOLOGICAL_LEN);
    s[PATHOLOGICAL_LEN - 1] = ')';
    render(s, PATHOLOGICAL_LEN);
    ck_assert(strncmp(out.data, "<p><a href=\"https://x[a](https://x", 34) ==
              0);
    const char *tail = "[a](h\">a</a></p>\n";
    ck_assert(strcmp(out.data + out.len - strlen(tail), tail) == 0);
    free(s);
    /* 20,000 lines of one marker each: blocks are linear too. */
    s = repeat_pattern("- *\n", PATHOLOGICAL_LEN);
    render(s, PATHOLOGICAL_LEN);
    ck_assert_uint_eq(out.len, strlen("<ul>\n") + strlen("</ul>\n") +
                                   5000 * strlen("<li>*</li>\n"));
    free(s);
}
END_TEST

/* A section of an update with every construct; whole sections are
 * independent blocks, so n of them render as n renderings of one. */
static const char section[] =
    "## What's new in *March*\n"
    "\n"
    "We shipped **faster exports** and a new `--since` flag. Read the\n"
    "[release notes](https://example.com/notes?from=2026-03&to=2026-04)\n"
    "or [write to us](mailto:team@example.com). Tables <b>are</b> next.\n"
    "\n"
    "- exports are _twice_ as fast\n"
    "* the `stoa_export` tool takes `--since`\n"
    "- fixed: 2 * 3 * 4 in snake_case_names\n"
    "\n"
    "1. sign in\n"
    "2. open **Settings**\n"
    "3. pick [Billing](https://example.com/billing)\n"
    "\n"
    "Thanks & see you soon, \"the team\"!\n"
    "\n";

START_TEST(full_size_document)
{
    size_t n = strlen(section);
    size_t copies = 20000 / n;
    char *doc = malloc(copies * n + 1);
    ck_assert_ptr_nonnull(doc);
    for (size_t i = 0; i < copies; i++)
        memcpy(doc + i * n, section, n);
    doc[copies * n] = '\0';
    ck_assert_uint_gt(copies * n, 19000);

    render(section, n);
    char *one = strdup(out.data);
    ck_assert_ptr_nonnull(one);
    ck_assert_str_eq(
        one,
        "<h2>What&#39;s new in <em>March</em></h2>\n"
        "<p>We shipped <strong>faster exports</strong> and a new "
        "<code>--since</code> flag. Read the<br>\n"
        "<a href=\"https://example.com/notes?from=2026-03&amp;to=2026-04\">"
        "release notes</a><br>\n"
        "or <a href=\"mailto:team@example.com\">write to us</a>. Tables "
        "&lt;b&gt;are&lt;/b&gt; next.</p>\n"
        "<ul>\n<li>exports are <em>twice</em> as fast</li>\n"
        "<li>the <code>stoa_export</code> tool takes <code>--since</code>"
        "</li>\n<li>fixed: 2 * 3 * 4 in snake_case_names</li>\n</ul>\n"
        "<ol>\n<li>sign in</li>\n<li>open <strong>Settings</strong></li>\n"
        "<li>pick <a href=\"https://example.com/billing\">Billing</a></li>\n"
        "</ol>\n"
        "<p>Thanks &amp; see you soon, &quot;the team&quot;!</p>\n");
    size_t one_len = strlen(one);

    render(doc, copies * n);
    ck_assert_uint_eq(out.len, copies * one_len);
    for (size_t i = 0; i < copies; i++)
        ck_assert(memcmp(out.data + i * one_len, one, one_len) == 0);
    free(one);
    free(doc);
}
END_TEST

START_TEST(deterministic)
{
    const char *in = "# a\n*b* [c](https://d) `e`\n- f\n1. g";
    render(in, strlen(in));
    char *first = strdup(out.data);
    ck_assert_ptr_nonnull(first);
    ck_assert_str_eq(render(in, strlen(in)), first);
    free(first);
}
END_TEST

static Suite *markdown_suite(void)
{
    Suite *s = suite_create("markdown");
    TEST_CASE_OF(s, "constructs", setup, teardown,
                 LOOP(renders_as, render_cases), ONCE(appends_to_out),
                 ONCE(deterministic));
    TEST_CASE_OF(s, "safety", setup, teardown,
                 ONCE(empty_input_renders_nothing), ONCE(crlf_is_newline),
                 ONCE(control_bytes_are_dropped), ONCE(never_reads_past_len),
                 ONCE(bytes_above_ascii_are_kept));
    TEST_CASE(s, "size", setup, teardown, pathological_inputs_are_linear,
              full_size_document);
    return s;
}

TEST_MAIN(markdown_suite)
