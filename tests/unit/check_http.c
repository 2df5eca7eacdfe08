/* check_http.c - the router, query decoding, the SPEC §3 error contract,
 * JSON body checks, field validators and request id sanity (the list
 * writer and paging: check_http_list.c), driven through
 * a stoa_request_t built by hand (no FastCGI). */
#include "check_util.h"
#include "fixture_util.h"
#include "stoa/err.h"
#include "stoa/http.h"

static stoa_request_t req;

static void setup(void)
{
    test_request_init(&req, "GET", "/", "req-test-1");
}

static void teardown(void)
{
    test_request_free(&req);
}

static const stoa_json_t *parse_json(const char *text, size_t len)
{
    stoa_json_t *doc;
    char err[200];
    int rc = stoa_json_parse(req.arena, text, len, STOA_JSON_MAX_DEPTH, &doc,
                             err, sizeof(err));
    ck_assert_msg(rc == STOA_OK, "not JSON (%s): %s", err, text);
    return doc;
}

/* Checks the response is exactly the §3 error shape with this status and
 * code; returns error.details. */
static const stoa_json_t *expect_error(int status, const char *code)
{
    ck_assert_int_eq(req.status, status);
    ck_assert(req.responded);
    const stoa_json_t *doc = parse_json(req.body_out.data, req.body_out.len);
    ck_assert(stoa_json_is_object(doc));
    ck_assert_uint_eq(stoa_json_len(doc), 2);
    ck_assert_str_eq(stoa_json_string(stoa_json_get(doc, "request_id")),
                     req.request_id);
    const stoa_json_t *error = stoa_json_get(doc, "error");
    ck_assert(stoa_json_is_object(error));
    ck_assert_uint_eq(stoa_json_len(error), 3);
    ck_assert_str_eq(stoa_json_string(stoa_json_get(error, "code")), code);
    const char *message = stoa_json_string(stoa_json_get(error, "message"));
    ck_assert_ptr_nonnull(message);
    ck_assert_uint_gt(strlen(message), 0);
    const stoa_json_t *details = stoa_json_get(error, "details");
    ck_assert(stoa_json_is_object(details));
    return details;
}

/* Answers 400 invalid_fields and returns details.fields. */
static const stoa_json_t *recorded_fields(void)
{
    ck_assert_int_eq(stoa_http_invalid_fields(&req), STOA_DECLINED);
    const stoa_json_t *fields =
        stoa_json_get(expect_error(400, "invalid_request"), "fields");
    ck_assert(stoa_json_is_object(fields));
    return fields;
}

static const char *field_reason(const stoa_json_t *fields, const char *name)
{
    return stoa_json_string(stoa_json_get(fields, name));
}

typedef struct {
    const char *field, *reason;
} field_reason_t;

/* The request answers 400 invalid_request, listing at least these fields,
 * each with its reason. */
static void expect_reasons(const field_reason_t *want, size_t n)
{
    const stoa_json_t *fields = recorded_fields();
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(field_reason(fields, want[i].field), want[i].reason);
}

/* ---- router ------------------------------------------------------------ */

static int dummy_handler(stoa_request_t *r)
{
    (void)r;
    return STOA_OK;
}

static const stoa_route_t routes[] = {
    {"GET", "/v1/items", dummy_handler, STOA_ROUTE_PUBLIC, NULL, NULL},
    {"POST", "/v1/items", dummy_handler, STOA_ROUTE_AUTH, NULL, NULL},
    {"GET", "/v1/items/{id}", dummy_handler, STOA_ROUTE_AUTH, NULL, NULL},
    {"DELETE", "/v1/items/{id}", dummy_handler, STOA_ROUTE_AUTH, "admin", NULL},
    {"GET", "/v1/items/{id}/parts/{part}", dummy_handler, 0, NULL, NULL},
    {"GET", "/v1/items/export", dummy_handler, 0, NULL, NULL}, /* after {id} */
    {"GET", "/v1/healthz", dummy_handler, 0, NULL, NULL},
};

static const struct {
    const char *method;
    const char *path;
    int want; /* route index, -404 or -405 */
    const char *allow;
    const char *id;
    const char *part;
} route_cases[] = {
    {"GET", "/v1/items", 0, NULL, NULL, NULL},
    {"POST", "/v1/items", 1, NULL, NULL, NULL},
    {"PUT", "/v1/items", -405, "GET, POST", NULL, NULL},
    {"GET", "/v1/items/abc", 2, NULL, "abc", NULL},
    {"DELETE", "/v1/items/abc", 3, NULL, "abc", NULL},
    {"PATCH", "/v1/items/abc", -405, "GET, DELETE", NULL, NULL},
    {"GET", "/v1/items/a-1/parts/p.2", 4, NULL, "a-1", "p.2"},
    {"GET", "/v1/items/export", 2, NULL, "export", NULL}, /* table order */
    {"GET", "/v1/healthz", 6, NULL, NULL, NULL},
    {"POST", "/v1/healthz", -405, "GET", NULL, NULL},
    {"GET", "/v1/items/", -404, NULL, NULL, NULL},     /* trailing slash */
    {"GET", "/v1/items/abc/", -404, NULL, NULL, NULL}, /* trailing slash */
    {"GET", "/v1/healthz/", -404, NULL, NULL, NULL},
    {"GET", "/v1/items//parts/x", -404, NULL, NULL, NULL}, /* empty id */
    {"GET", "/v1/items/a/parts/", -404, NULL, NULL, NULL},
    {"GET", "/v1/items/a/parts", -404, NULL, NULL, NULL},
    {"GET", "/v1/items/a/b", -404, NULL, NULL, NULL},
    {"GET", "/v1/item", -404, NULL, NULL, NULL},
    {"GET", "/v1/itemsx", -404, NULL, NULL, NULL},
    {"GET", "/v1", -404, NULL, NULL, NULL},
    {"GET", "/", -404, NULL, NULL, NULL},
    {"GET", "", -404, NULL, NULL, NULL},
    {"GET", "v1/items", -404, NULL, NULL, NULL},
    {"GET", "//v1/items", -404, NULL, NULL, NULL},
    {"get", "/v1/items", -405, "GET, POST", NULL, NULL}, /* exact method */
};

START_TEST(router_table)
{
    req.method = route_cases[_i].method;
    req.path = route_cases[_i].path;
    const char *allow = NULL;
    int got = stoa_router_match(&req, routes, STOA_ARRAY_LEN(routes), &allow);
    ck_assert_msg(got == route_cases[_i].want, "%s %s: got %d, want %d",
                  req.method, req.path, got, route_cases[_i].want);
    if (route_cases[_i].allow) {
        ck_assert_ptr_nonnull(allow);
        ck_assert_str_eq(allow, route_cases[_i].allow);
    }
    if (got < 0) {
        ck_assert_uint_eq(req.nparams, 0);
        ck_assert_ptr_null(stoa_request_path_param(&req, "id"));
        return;
    }
    const char *id = stoa_request_path_param(&req, "id");
    const char *part = stoa_request_path_param(&req, "part");
    if (route_cases[_i].id)
        ck_assert_str_eq(id, route_cases[_i].id);
    else
        ck_assert_ptr_null(id);
    if (route_cases[_i].part)
        ck_assert_str_eq(part, route_cases[_i].part);
    else
        ck_assert_ptr_null(part);
    ck_assert_ptr_null(stoa_request_path_param(&req, "other"));
}
END_TEST

START_TEST(router_allow_may_be_null_and_params_reset)
{
    req.method = "GET";
    req.path = "/v1/items/x1/parts/y1";
    ck_assert_int_eq(
        stoa_router_match(&req, routes, STOA_ARRAY_LEN(routes), NULL), 4);
    ck_assert_uint_eq(req.nparams, 2);
    /* A later failed match does not leave the earlier params behind. */
    req.method = "PUT";
    ck_assert_int_eq(
        stoa_router_match(&req, routes, STOA_ARRAY_LEN(routes), NULL), -405);
    ck_assert_uint_eq(req.nparams, 0);
    ck_assert_int_eq(stoa_router_match(&req, routes, 0, NULL), -404);
}
END_TEST

/* ---- query ------------------------------------------------------------- */

START_TEST(query_decoding)
{
    req.query = "a=1&b=x%20y&c=+&d&e=&f=%41%42&g=caf%C3%A9&h=a%2Bb%26c%3D&"
                "sp%61ced=k&a=second";
    static const struct {
        const char *key;
        const char *value;
    } cases[] = {
        {"a", "1"}, /* first occurrence wins */
        {"b", "x y"},    {"c", " "},      {"d", ""},
        {"e", ""},       {"f", "AB"},     {"g", "caf\xc3\xa9"},
        {"h", "a+b&c="}, {"spaced", "k"}, /* keys are decoded too */
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(cases); i++) {
        const char *v = stoa_request_query(&req, cases[i].key);
        ck_assert_msg(v != NULL, "%s missing", cases[i].key);
        ck_assert_str_eq(v, cases[i].value);
    }
    ck_assert_ptr_null(stoa_request_query(&req, "missing"));
    ck_assert_ptr_null(stoa_request_query(&req, "x"));
    ck_assert_ptr_null(stoa_request_query(&req, "")); /* no empty key */
    ck_assert(!stoa_request_has_field_errors(&req));
}
END_TEST

START_TEST(query_empty_and_null)
{
    ck_assert_ptr_null(stoa_request_query(&req, "a"));
    req.query = NULL;
    ck_assert_ptr_null(stoa_request_query(&req, "a"));
    req.query = "&&a=1&&";
    ck_assert_str_eq(stoa_request_query(&req, "a"), "1");
}
END_TEST

START_TEST(query_malformed_escape)
{
    static const char *const bad[] = {"%zz", "%4",  "%",  "abc%",
                                      "%G1", "%00", "a%0"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++) {
        stoa_buf_reset(&req.field_errors);
        req.query = stoa_arena_sprintf(req.arena, "ok=1&bad=%s&z=2", bad[i]);
        ck_assert_msg(stoa_request_query(&req, "bad") == NULL, "'%s' decoded",
                      bad[i]);
        ck_assert_msg(stoa_request_has_field_errors(&req),
                      "no field error for '%s'", bad[i]);
        /* Other keys still decode. */
        ck_assert_str_eq(stoa_request_query(&req, "ok"), "1");
        ck_assert_str_eq(stoa_request_query(&req, "z"), "2");
    }
    const stoa_json_t *fields = recorded_fields();
    ck_assert_str_eq(field_reason(fields, "bad"), "invalid_encoding");
}
END_TEST

START_TEST(query_value_not_utf8)
{
    static const char *const bad[] = {"%ff%fe",    "%c0%af", "%ed%a0%80",
                                      "abc%e2%82", "%80",    "%f4%90%80%80"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++) {
        stoa_buf_reset(&req.field_errors);
        req.query =
            stoa_arena_sprintf(req.arena, "plan=%s&ok=caf%%C3%%A9", bad[i]);
        ck_assert_msg(stoa_request_query(&req, "plan") == NULL, "'%s' decoded",
                      bad[i]);
        ck_assert_str_eq(stoa_request_query(&req, "ok"), "caf\xc3\xa9");
    }
    const stoa_json_t *fields = recorded_fields();
    ck_assert_str_eq(field_reason(fields, "plan"), "invalid_encoding");
}
END_TEST

/* ---- error contract ---------------------------------------------------- */

START_TEST(http_error_shape)
{
    ck_assert_int_eq(stoa_http_error(&req, 404, "not_found", "no such item"),
                     STOA_DECLINED);
    const stoa_json_t *details = expect_error(404, "not_found");
    ck_assert_uint_eq(stoa_json_len(details), 0);
    const stoa_json_t *doc = parse_json(req.body_out.data, req.body_out.len);
    ck_assert_str_eq(
        stoa_json_string(stoa_json_get(stoa_json_get(doc, "error"), "message")),
        "no such item");
    /* Exactly that text: no stray whitespace or extra members. */
    ck_assert_str_eq(req.body_out.data,
                     "{\"error\":{\"code\":\"not_found\",\"message\":"
                     "\"no such item\",\"details\":{}},\"request_id\":"
                     "\"req-test-1\"}");
}
END_TEST

START_TEST(http_error_statuses_and_defaults)
{
    ck_assert_int_eq(stoa_http_error(&req, 405, "method_not_allowed", NULL),
                     STOA_DECLINED);
    expect_error(405, "method_not_allowed");
    ck_assert_int_eq(stoa_http_error(&req, 500, "internal", NULL), STOA_ERROR);
    expect_error(500, "internal");
    ck_assert_int_eq(stoa_http_error(&req, 503, "unavailable", NULL),
                     STOA_AGAIN);
    expect_error(503, "unavailable");
    ck_assert_int_eq(stoa_http_error(&req, 409, "some_custom_code", NULL),
                     STOA_DECLINED);
    expect_error(409, "some_custom_code");
}
END_TEST

START_TEST(http_error_escapes_message)
{
    ck_assert_int_eq(stoa_http_error(&req, 400, "invalid_request",
                                     "bad \"quote\" \\ and\nnewline"),
                     STOA_DECLINED);
    expect_error(400, "invalid_request");
    const stoa_json_t *doc = parse_json(req.body_out.data, req.body_out.len);
    ck_assert_str_eq(
        stoa_json_string(stoa_json_get(stoa_json_get(doc, "error"), "message")),
        "bad \"quote\" \\ and\nnewline");
}
END_TEST

START_TEST(http_error_replaces_partial_body)
{
    /* A handler that started its JSON and then failed. */
    stoa_jw_t *w = stoa_http_json(&req, 200);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "data");
    stoa_jw_array_open(w);
    stoa_jw_integer(w, 1);
    ck_assert_int_eq(stoa_http_error(&req, 503, "unavailable", NULL),
                     STOA_AGAIN);
    expect_error(503, "unavailable");
    ck_assert_ptr_null(strstr(req.body_out.data, "data"));
}
END_TEST

START_TEST(http_error_details_given)
{
    ck_assert_int_eq(stoa_http_error_details(&req, 409, "conflict", "taken",
                                             "{\"field\":\"email\"}"),
                     STOA_DECLINED);
    const stoa_json_t *details = expect_error(409, "conflict");
    ck_assert_str_eq(stoa_json_string(stoa_json_get(details, "field")),
                     "email");
}
END_TEST

START_TEST(invalid_fields_lists_fields)
{
    stoa_request_field_error(&req, "email", "required");
    stoa_request_field_error(&req, "password", "too_short");
    stoa_request_field_error(&req, "we\"ird", "bad\\reason");
    ck_assert(stoa_request_has_field_errors(&req));
    const stoa_json_t *fields = recorded_fields();
    ck_assert_uint_eq(stoa_json_len(fields), 3);
    ck_assert_str_eq(field_reason(fields, "email"), "required");
    ck_assert_str_eq(field_reason(fields, "password"), "too_short");
    ck_assert_str_eq(field_reason(fields, "we\"ird"), "bad\\reason");
}
END_TEST

START_TEST(invalid_fields_without_fields)
{
    ck_assert(!stoa_request_has_field_errors(&req));
    const stoa_json_t *fields = recorded_fields();
    ck_assert_uint_eq(stoa_json_len(fields), 0);
}
END_TEST

START_TEST(json_response_and_send)
{
    stoa_jw_t *w = stoa_http_json(&req, 201);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "id", "x");
    stoa_jw_object_close(w);
    ck_assert_int_eq(stoa_http_send(&req), STOA_OK);
    ck_assert(req.responded);
    ck_assert_int_eq(req.status, 201);
    ck_assert_str_eq(req.body_out.data, "{\"id\":\"x\"}");

    /* A broken body is not sent. */
    req.responded = false;
    w = stoa_http_json(&req, 200);
    stoa_jw_string(w, "\xff");
    ck_assert_int_eq(stoa_http_send(&req), STOA_ERROR);
    ck_assert(!req.responded);

    ck_assert_int_eq(stoa_http_empty(&req, 204), STOA_OK);
    ck_assert_int_eq(req.status, 204);
    ck_assert_uint_eq(req.body_out.len, 0);
    ck_assert(req.responded);
}
END_TEST

START_TEST(header_lines_and_injection_guard)
{
    stoa_http_header(&req, "Location", "/v1/items/1");
    stoa_http_header(&req, "X-Split", "a\r\nSet-Cookie: evil=1");
    stoa_http_header(&req, "X-Bad\nName", "v");
    stoa_http_header(&req, "X-Colon:", "v");
    stoa_http_header(&req, "Retry-After", "5");
    ck_assert_str_eq(req.headers.data,
                     "Location: /v1/items/1\r\nRetry-After: 5\r\n");
}
END_TEST

/* ---- JSON body --------------------------------------------------------- */

static const struct {
    const char *content_type;
    const char *body;
    int status; /* 0: accepted */
    const char *code;
} body_cases[] = {
    {"text/plain", "{}", 415, "unsupported_media_type"},
    {NULL, "{}", 415, "unsupported_media_type"},
    {"", "{}", 415, "unsupported_media_type"},
    {"application/jsonx", "{}", 415, "unsupported_media_type"},
    {"application/x-www-form-urlencoded", "a=1", 415, "unsupported_media_type"},
    {"application/json", "{\"a\":", 400, "invalid_json"},
    {"application/json", "{} x", 400, "invalid_json"},
    {"application/json", "", 400, "invalid_json"},
    {"application/json", "   ", 400, "invalid_json"},
    {"application/json", "{'a':1}", 400, "invalid_json"},
    {"application/json", "[1,2]", 400, "invalid_request"},
    {"application/json", "\"s\"", 400, "invalid_request"},
    {"application/json", "null", 400, "invalid_request"},
    {"application/json", "42", 400, "invalid_request"},
    {"application/json", "{\"a\":1}", 0, NULL},
    {"application/json; charset=utf-8", "{\"a\":1}", 0, NULL},
    {"Application/JSON", "{\"a\":1}", 0, NULL},
};

START_TEST(json_body_table)
{
    req.method = "POST";
    req.content_type = body_cases[_i].content_type;
    req.body = body_cases[_i].body;
    req.body_len = strlen(req.body);
    const stoa_json_t *obj = (const stoa_json_t *)&obj; /* poison */
    int rc = stoa_request_json_body(&req, &obj);
    if (body_cases[_i].status == 0) {
        ck_assert_int_eq(rc, STOA_OK);
        ck_assert(!req.responded);
        int64_t a = 0;
        ck_assert(stoa_json_integer(stoa_json_get(obj, "a"), &a));
        ck_assert_int_eq(a, 1);
    } else {
        ck_assert_msg(rc == STOA_DECLINED, "%s / '%s' accepted",
                      body_cases[_i].content_type ? body_cases[_i].content_type
                                                  : "(none)",
                      body_cases[_i].body);
        ck_assert_ptr_null(obj);
        expect_error(body_cases[_i].status, body_cases[_i].code);
    }
}
END_TEST

START_TEST(json_body_too_deep)
{
    stoa_buf_t b;
    stoa_buf_init(&b);
    stoa_buf_puts(&b, "{\"a\":");
    for (int i = 0; i < STOA_JSON_MAX_DEPTH; i++)
        stoa_buf_puts(&b, "[");
    for (int i = 0; i < STOA_JSON_MAX_DEPTH; i++)
        stoa_buf_puts(&b, "]");
    stoa_buf_puts(&b, "}");
    req.content_type = "application/json";
    req.body = stoa_arena_strdup(req.arena, b.data);
    req.body_len = b.len;
    stoa_buf_free(&b);
    const stoa_json_t *obj;
    ck_assert_int_eq(stoa_request_json_body(&req, &obj), STOA_DECLINED);
    expect_error(400, "invalid_json");
}
END_TEST

START_TEST(json_body_with_nul)
{
    static const char body[] = "{\"a\":\"x\0\"}";
    req.content_type = "application/json";
    req.body = body;
    req.body_len = sizeof(body) - 1;
    const stoa_json_t *obj;
    ck_assert_int_eq(stoa_request_json_body(&req, &obj), STOA_DECLINED);
    expect_error(400, "invalid_json");
}
END_TEST

/* ---- field validators -------------------------------------------------- */

static const stoa_json_t *field_doc(void)
{
    const char *text = "{\"name\":\"Bob\",\"empty\":\"\",\"num\":5,"
                       "\"big\":1000,\"neg\":-1,\"flag\":true,"
                       "\"str_num\":\"5\",\"nul\":null,\"float\":1.5,"
                       "\"obj\":{}}";
    return parse_json(text, strlen(text));
}

START_TEST(field_string_cases)
{
    const stoa_json_t *o = field_doc();
    const char *s =
        stoa_field_string(&req, o, "name", STOA_FIELD_REQUIRED, 1, 10);
    ck_assert_str_eq(s, "Bob");
    ck_assert_str_eq(stoa_field_string(&req, o, "name", 0, 3, 3), "Bob");
    ck_assert(!stoa_request_has_field_errors(&req));

    /* Optional and absent or null: NULL, no error. */
    ck_assert_ptr_null(stoa_field_string(&req, o, "absent", 0, 0, 10));
    ck_assert_ptr_null(stoa_field_string(&req, o, "nul", 0, 0, 10));
    ck_assert(!stoa_request_has_field_errors(&req));

    ck_assert_ptr_null(
        stoa_field_string(&req, o, "missing", STOA_FIELD_REQUIRED, 1, 10));
    ck_assert_ptr_null(
        stoa_field_string(&req, o, "nul", STOA_FIELD_REQUIRED, 1, 10));
    ck_assert_ptr_null(stoa_field_string(&req, o, "num", 0, 0, 10));
    ck_assert_ptr_null(stoa_field_string(&req, o, "obj", 0, 0, 10));
    ck_assert_ptr_null(stoa_field_string(&req, o, "empty", 0, 1, 10));
    static const field_reason_t want[] = {{"missing", "required"},
                                          {"nul", "required"},
                                          {"num", "must_be_string"},
                                          {"obj", "must_be_string"},
                                          {"empty", "required"}};
    expect_reasons(want, STOA_ARRAY_LEN(want));
}
END_TEST

START_TEST(field_string_length_bounds)
{
    const stoa_json_t *o = field_doc();
    ck_assert_ptr_null(
        stoa_field_string(&req, o, "name", STOA_FIELD_REQUIRED, 4, 10));
    const stoa_json_t *fields = recorded_fields();
    ck_assert_str_eq(field_reason(fields, "name"), "too_short");

    stoa_buf_reset(&req.field_errors);
    ck_assert_ptr_null(
        stoa_field_string(&req, o, "name", STOA_FIELD_REQUIRED, 1, 2));
    fields = recorded_fields();
    ck_assert_str_eq(field_reason(fields, "name"), "too_long");

    /* Length is in bytes: "é" is two. */
    stoa_buf_reset(&req.field_errors);
    const char *text = "{\"s\":\"\xc3\xa9\"}";
    const stoa_json_t *u = parse_json(text, strlen(text));
    ck_assert_ptr_null(stoa_field_string(&req, u, "s", 0, 0, 1));
    ck_assert_str_eq(stoa_field_string(&req, u, "s", 0, 2, 2), "\xc3\xa9");
}
END_TEST

START_TEST(field_integer_cases)
{
    const stoa_json_t *o = field_doc();
    int64_t v = 0;
    ck_assert(
        stoa_field_integer(&req, o, "num", STOA_FIELD_REQUIRED, 1, 10, &v));
    ck_assert_int_eq(v, 5);
    ck_assert(stoa_field_integer(&req, o, "num", 0, 5, 5, &v)); /* inclusive */
    ck_assert(!stoa_field_integer(&req, o, "absent", 0, 0, 10, &v));
    ck_assert(!stoa_field_integer(&req, o, "nul", 0, 0, 10, &v));
    ck_assert(!stoa_request_has_field_errors(&req));

    v = 77;
    ck_assert(!stoa_field_integer(&req, o, "big", 0, 0, 999, &v));
    ck_assert(!stoa_field_integer(&req, o, "neg", 0, 0, 10, &v));
    ck_assert(!stoa_field_integer(&req, o, "str_num", 0, 0, 10, &v));
    ck_assert(!stoa_field_integer(&req, o, "float", 0, 0, 10, &v));
    ck_assert(!stoa_field_integer(&req, o, "flag", 0, 0, 10, &v));
    ck_assert(!stoa_field_integer(&req, o, "missing", STOA_FIELD_REQUIRED, 0,
                                  10, &v));
    ck_assert_int_eq(v, 77); /* untouched on failure */
    static const field_reason_t want[] = {
        {"big", "out_of_range"},        {"neg", "out_of_range"},
        {"str_num", "must_be_integer"}, {"float", "must_be_integer"},
        {"flag", "must_be_integer"},    {"missing", "required"}};
    expect_reasons(want, STOA_ARRAY_LEN(want));
}
END_TEST

START_TEST(field_bool_cases)
{
    const stoa_json_t *o = field_doc();
    bool b = false;
    ck_assert(stoa_field_bool(&req, o, "flag", STOA_FIELD_REQUIRED, &b));
    ck_assert(b);
    ck_assert(!stoa_field_bool(&req, o, "absent", 0, &b));
    ck_assert(!stoa_request_has_field_errors(&req));
    ck_assert(!stoa_field_bool(&req, o, "num", 0, &b));
    ck_assert(!stoa_field_bool(&req, o, "missing", STOA_FIELD_REQUIRED, &b));
    const stoa_json_t *fields = recorded_fields();
    ck_assert_str_eq(field_reason(fields, "num"), "must_be_boolean");
    ck_assert_str_eq(field_reason(fields, "missing"), "required");
}
END_TEST

START_TEST(field_reject_unknown)
{
    const char *text = "{\"email\":\"a@b.c\",\"x\":1,\"password\":\"p\","
                       "\"role\":\"admin\"}";
    const stoa_json_t *o = parse_json(text, strlen(text));
    static const char *const allowed[] = {"email", "password", "name", NULL};
    stoa_field_reject_unknown(&req, o, allowed);
    const stoa_json_t *fields = recorded_fields();
    ck_assert_uint_eq(stoa_json_len(fields), 2);
    ck_assert_str_eq(field_reason(fields, "x"), "unknown_field");
    ck_assert_str_eq(field_reason(fields, "role"), "unknown_field");
    ck_assert_ptr_null(stoa_json_get(fields, "email"));

    /* Only allowed keys: nothing recorded. */
    stoa_buf_reset(&req.field_errors);
    const char *good = "{\"email\":\"a@b.c\"}";
    stoa_field_reject_unknown(&req, parse_json(good, strlen(good)), allowed);
    ck_assert(!stoa_request_has_field_errors(&req));
}
END_TEST

/* ---- request ids ------------------------------------------------------- */

START_TEST(request_id_valid_table)
{
    char *max = test_repeat('a', STOA_REQUEST_ID_MAX);
    char *over = test_repeat('b', STOA_REQUEST_ID_MAX + 1);
    const text_case_t cases[] = {
        {"a", true},
        {"abc-DEF_123.x", true},
        {"0f8fad5b-d9cb-469f-a165-70867728950e", true},
        {max, true},
        {over, false},
        {"", false},
        {NULL, false},
        {"has space", false},
        {"a<b", false},
        {"<script>", false},
        {"caf\xc3\xa9", false},
        {"a/b", false},
        {"a\nb", false},
        {"a\r", false},
        {"a\"b", false},
        {"a:b", false},
        {"a+b", false},
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(cases); i++)
        ck_assert_msg(stoa_request_id_valid(cases[i].s) == cases[i].valid,
                      "case %zu ('%s') should be %s", i,
                      cases[i].s ? cases[i].s : "NULL",
                      cases[i].valid ? "valid" : "invalid");
    free(max);
    free(over);
}
END_TEST

/* ---- errors by table id (stoa/err.h) ---------------------------------- */

/* An answer: the handler's result, the status, and a piece of the body
 * (NULL: not checked). */
static void assert_answer(int rc, int want_rc, int status, const char *needle)
{
    ck_assert_int_eq(rc, want_rc);
    ck_assert_int_eq(req.status, status);
    if (needle)
        ck_assert_msg(strstr(req.body_out.data, needle), "%s not in %s", needle,
                      req.body_out.data);
}

START_TEST(fail_takes_status_and_message_from_the_table)
{
    ck_assert_int_eq(stoa_http_fail(&req, STOA_ERR_EMAIL_TAKEN, NULL),
                     STOA_DECLINED);
    ck_assert_int_eq(req.status, 409);
    ck_assert_str_eq(req.body_out.data,
                     "{\"error\":{\"code\":\"email_taken\",\"message\":\"an "
                     "account with this email already exists\",\"details\":"
                     "{}},\"request_id\":\"req-test-1\"}");
}
END_TEST

START_TEST(fail_keeps_an_explicit_message)
{
    assert_answer(stoa_http_fail(&req, STOA_ERR_NOT_FOUND, "no such plan"),
                  STOA_DECLINED, 404,
                  "\"code\":\"not_found\",\"message\":\"no such plan\"");
}
END_TEST

START_TEST(fail_statuses_map_to_results)
{
    assert_answer(stoa_http_fail(&req, STOA_ERR_UNAVAILABLE, NULL), STOA_AGAIN,
                  503, NULL);
    assert_answer(stoa_http_fail(&req, STOA_ERR_INTERNAL, NULL), STOA_ERROR,
                  500, NULL);
    assert_answer(stoa_http_fail_details(&req, STOA_ERR_PAYMENT_PROVIDER_ERROR,
                                         NULL, "{\"provider_status\":402}"),
                  STOA_ERROR, 502, "\"details\":{\"provider_status\":402}");
}
END_TEST

START_TEST(fail_as_keeps_the_code_at_another_status)
{
    assert_answer(stoa_http_fail_as(&req, 400, STOA_ERR_INVALID_TOKEN, NULL),
                  STOA_DECLINED, 400, "\"code\":\"invalid_token\"");
}
END_TEST

START_TEST(code_text_form_uses_the_table_default)
{
    ck_assert_int_eq(stoa_http_error(&req, 409, "plan_exists", NULL),
                     STOA_DECLINED);
    ck_assert_ptr_nonnull(strstr(req.body_out.data,
                                 stoa_err_info(STOA_ERR_PLAN_EXISTS)->message));
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TEST_CASE_OF(s, "router", setup, teardown, LOOP(router_table, route_cases),
                 ONCE(router_allow_may_be_null_and_params_reset));

    TEST_CASE(s, "query", setup, teardown, query_decoding, query_empty_and_null,
              query_malformed_escape, query_value_not_utf8);

    TEST_CASE(s, "responses", setup, teardown, http_error_shape,
              http_error_statuses_and_defaults, http_error_escapes_message,
              http_error_replaces_partial_body, http_error_details_given,
              fail_takes_status_and_message_from_the_table,
              fail_keeps_an_explicit_message, fail_statuses_map_to_results,
              fail_as_keeps_the_code_at_another_status,
              code_text_form_uses_the_table_default,
              invalid_fields_lists_fields, invalid_fields_without_fields,
              json_response_and_send, header_lines_and_injection_guard);

    TEST_CASE_OF(s, "body", setup, teardown, LOOP(json_body_table, body_cases),
                 ONCE(json_body_too_deep), ONCE(json_body_with_nul));

    TEST_CASE(s, "fields", setup, teardown, field_string_cases,
              field_string_length_bounds, field_integer_cases, field_bool_cases,
              field_reject_unknown, request_id_valid_table);
    return s;
}

TEST_MAIN(http_suite)
