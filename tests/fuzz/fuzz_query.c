/* fuzz_query.c - query string decoding, the router and request id checks
 * on a request whose query and path are the fuzz input.
 *
 * Oracles: a decoded value is never longer than the query; recorded field
 * errors always produce a parseable §3 error body; a router match captures
 * non-empty, slash-free parameters; an accepted request id really is
 * 1..128 characters of [A-Za-z0-9._-]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/fixture_util.h"
#include "stoa/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int handler(stoa_request_t *req)
{
    (void)req;
    return STOA_OK;
}

static const stoa_route_t routes[] = {
    {"GET", "/v1/items", handler, 0, NULL, NULL},
    {"POST", "/v1/items", handler, 0, NULL, NULL},
    {"GET", "/v1/items/{id}", handler, 0, NULL, NULL},
    {"GET", "/v1/items/{id}/parts/{part}", handler, 0, NULL, NULL},
    {"GET", "/{a}/{b}/{c}/{d}", handler, 0, NULL, NULL},
};

static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stoa_request_t req;
    test_request_init(&req, "GET", NULL, "fuzz");

    /* FastCGI params are C strings: the input up to its first NUL. */
    char *text = stoa_arena_strndup(req.arena, (const char *)data, size);
    size_t text_len = strlen(text);
    req.query = text;
    req.path = text;

    static const char *const keys[] = {"a", "b", "limit", "cursor",
                                       "q", "",  "a b",   "x&y"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = stoa_request_query(&req, keys[i]);
        if (v && strlen(v) > text_len)
            abort();
    }
    if (stoa_request_has_field_errors(&req)) {
        if (stoa_http_invalid_fields(&req) != STOA_DECLINED)
            abort();
        stoa_json_t *doc;
        char err[128];
        if (stoa_json_parse(req.arena, req.body_out.data, req.body_out.len,
                            STOA_JSON_MAX_DEPTH, &doc, err,
                            sizeof(err)) != STOA_OK ||
            !stoa_json_is_object(doc))
            abort();
    }

    const char *allow = NULL;
    int r = stoa_router_match(&req, routes, sizeof(routes) / sizeof(routes[0]),
                              &allow);
    if (r >= 0) {
        for (size_t i = 0; i < req.nparams; i++) {
            const char *v = req.params[i].value;
            if (!*v || strchr(v, '/'))
                abort();
        }
    } else if (r != -404 && r != -405) {
        abort();
    } else if (req.nparams != 0 || (r == -405 && (!allow || !*allow))) {
        abort();
    }

    if (stoa_request_id_valid(text)) {
        if (text_len == 0 || text_len > STOA_REQUEST_ID_MAX)
            abort();
        for (size_t i = 0; i < text_len; i++)
            if (!id_char(text[i]))
                abort();
    }

    test_request_free(&req);
    return 0;
}
