/* http.h - request context, responses, router and the error contract.
 *
 * A request arrives as FastCGI params plus a body read with a size cap.
 * Every string in stoa_request_t is arena-owned or borrowed from the
 * FastCGI library and valid until the response is finished. Handlers
 * answer through stoa_http_* and return a status:
 *   STOA_OK / STOA_DECLINED  the handler has sent its answer;
 *   STOA_AGAIN               a dependency is down: 503 `unavailable`;
 *   STOA_ERROR               500 `internal` (logged).
 * Errors follow SPEC §3:
 *   {"error":{"code":..,"message":..,"details":{..}},"request_id":..}
 * with a code of the table in stoa/err.h, and every response carries
 * X-Request-Id. */
#ifndef STOA_HTTP_H
#define STOA_HTTP_H

#include "stoa/arena.h"
#include "stoa/buf.h"
#include "stoa/core.h"
#include "stoa/ctx.h"
#include "stoa/db.h"
#include "stoa/err.h"
#include "stoa/json.h"
#include "stoa/principal.h"

#define STOA_ROUTE_MAX_PARAMS 4
#define STOA_REQUEST_ID_MAX 128
/* Bytes of a User-Agent kept (stored with a session, shown in its list). */
#define STOA_USER_AGENT_MAX 512

typedef struct stoa_request_s stoa_request_t;
typedef int (*stoa_handler_fn)(stoa_request_t *req);

/* Route flags. */
#define STOA_ROUTE_PUBLIC 0u
#define STOA_ROUTE_AUTH 1u       /* needs a principal (401 otherwise) */
#define STOA_ROUTE_IDEMPOTENT 2u /* honours Idempotency-Key (idempotency.h) */
/* Takes bodies up to max_event_body_bytes (event batches) instead of
 * max_body_bytes. */
#define STOA_ROUTE_BULK 8u
/* Hashes a password (Argon2id, tens of ms of a core and ~19 MiB): admitted
 * by all handler threads but two (the hash itself runs one at a time per
 * process, password.c), so a login storm costs the host its hashing cores,
 * never every handler thread; beyond that the request is shed with 503
 * `unavailable` and Retry-After. */
#define STOA_ROUTE_HASHES 16u
/* Manages credentials (keys, password, MFA, other sessions, erasure): needs
 * a login session; a token traded from an API key gets 403 forbidden, so a
 * leaked key can never mint, widen or outlive itself. Implies AUTH. */
#define STOA_ROUTE_LOGIN 4u

typedef struct {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/auth/sessions/{id}" */
    stoa_handler_fn handler;
    unsigned flags;
    const char *roles; /* space-separated roles allowed; NULL: any */
    /* The API-key scope area ("auth", "billing", "analytics", "admin"):
     * follows the URL prefix, whichever pool serves it. NULL: only a "*"
     * key reaches the route. */
    const char *scope;
} stoa_route_t;

typedef struct {
    const char *name;
    const char *value;
} stoa_param_t;

struct stoa_request_s {
    stoa_arena_t *arena;
    stoa_ctx_t *ctx;
    const char *method;
    const char *path;  /* decoded-free raw path, no query */
    const char *query; /* raw query string, "" when none */
    const char *content_type;
    const char *remote_addr;
    const char *user_agent; /* sanitised text (stoa_text_sanitise), or NULL */
    const char *idempotency_key;
    const char *request_id;
    const char *body; /* NUL-terminated, body_len bytes; "" when none */
    size_t body_len;
    const stoa_route_t *route;
    stoa_param_t params[STOA_ROUTE_MAX_PARAMS];
    size_t nparams;
    stoa_principal_t principal;

    /* response state */
    int status;
    bool responded;
    bool streamed;      /* the answer went out piece by piece (stream below) */
    stoa_buf_t headers; /* extra header lines, CRLF-terminated */
    stoa_buf_t body_out;
    stoa_buf_t field_errors; /* JSON members "field":"reason", comma-joined */
    stoa_jw_t *jw;           /* writer bound to body_out */

    void *transport; /* FastCGI request (FCGX_Request *) */

    /* Connections taken from the context's pools at first use (through
     * stoa_request_db/kv) and given back when the request ends. */
    stoa_conns_t conns;
};

/* Who acts in this request, for audit and the like: the principal when
 * there is one, else actor_id (may be NULL: a failed login names only its
 * target), with the client address and the request id. Borrowed from req. */
stoa_actor_t stoa_request_actor(const stoa_request_t *req,
                                const char *actor_id);
/* stoa_audit() on the request's connection with stoa_request_actor(). */
STOA_MUSTCHECK int stoa_request_audit(stoa_request_t *req, const char *actor_id,
                                      const char *action, const char *target_id,
                                      const char *details_json);

/* The request's Postgres connection: taken from the pool at first use,
 * the same one for the rest of the request (a transaction stays on it),
 * given back by stoa_request_release(). NULL when none became free within
 * STOA_CTX_WAIT_MS; every stoa_db_ call then answers STOA_AGAIN (503). */
stoa_db_t *stoa_request_db(stoa_request_t *req);
/* The same for Redis: NULL acts as Redis being down. */
stoa_kv_t *stoa_request_kv(stoa_request_t *req);
/* Gives both back (rolling back a transaction left open). Called by the
 * transport after the handler. */
void stoa_request_release(stoa_request_t *req);

/* A FastCGI param or request header by CGI name ("HTTP_USER_AGENT");
 * borrowed, NULL when absent. */
const char *stoa_request_param(const stoa_request_t *req, const char *name);

/* A path parameter by name, NULL when absent. Borrowed. */
const char *stoa_request_path_param(const stoa_request_t *req,
                                    const char *name);

/* The value of one query key, percent-decoded, arena-owned; NULL when
 * absent, or when its encoding is malformed or it is not UTF-8 (a field
 * error `invalid_encoding` is then recorded under the key). */
const char *stoa_request_query(stoa_request_t *req, const char *key);
/* Records `unknown_field` under each query key (percent-decoded) not in
 * the NULL-terminated list, for a route whose query keys are filters: a
 * misspelt filter is refused rather than silently widening the answer. */
void stoa_request_query_reject_unknown(stoa_request_t *req,
                                       const char *const *allowed);

/* List paging (SPEC §3): ?limit= in 1..100 (default 20) and ?cursor= of
 * the form "<microseconds>_<uuid>" (a (time, id) keyset position; *ts and
 * *id stay NULL without one). False, with a field error recorded, when a
 * value is malformed. */
bool stoa_request_limit(stoa_request_t *req, int *limit);
bool stoa_request_cursor(stoa_request_t *req, const char **ts, const char **id);

/* A page of a list, read from ?limit= and ?cursor= by stoa_request_page:
 *   STOA_PAGE_KEYSET  the cursor is a (time, id) position,
 *                     "<microseconds>_<uuid>" (stoa_request_cursor);
 *   STOA_PAGE_SERIAL  the cursor is the last id of the previous page, a
 *                     positive integer (Postgres checks its range: pass
 *                     "cursor" as its field to stoa_db_exec_fields).
 * The list statement takes `fetch` (limit + 1) as its LIMIT: the one row
 * more tells whether there is a next page. */
typedef enum { STOA_PAGE_KEYSET, STOA_PAGE_SERIAL } stoa_page_kind_t;
typedef struct {
    stoa_page_kind_t kind;
    int limit;
    const char *cursor_ts; /* KEYSET: NULL on the first page */
    const char *cursor_id; /* the uuid (KEYSET) or id (SERIAL); or NULL */
    char fetch[16];
} stoa_page_t;

/* Reads both parameters into *page as stoa_request_limit and
 * stoa_request_cursor do (or, SERIAL, a positive integer cursor); false
 * when a field error is recorded (by these or an earlier check: answer
 * stoa_http_invalid_fields). */
bool stoa_request_page(stoa_request_t *req, stoa_page_kind_t kind,
                       stoa_page_t *page);

/* How a result column is shown in a JSON object. */
typedef enum {
    STOA_COLUMN_TEXT,    /* a string (times come formatted: STOA_DB_TS) */
    STOA_COLUMN_INTEGER, /* a number */
    STOA_COLUMN_BOOL,    /* Postgres' t/f */
    STOA_COLUMN_JSON,    /* JSON text of our own (json, jsonb), as is */
} stoa_column_kind_t;

/* One member of a row's object: "name" from column `column`. SQL NULL is
 * written as null, whatever the kind. */
typedef struct {
    const char *name;
    int column;
    stoa_column_kind_t kind;
} stoa_column_t;

struct stoa_db_result_s;

/* Writes the members of row `row` of res, one per descriptor, into the
 * object open in w. */
void stoa_http_write_columns(stoa_jw_t *w, const struct stoa_db_result_s *res,
                             int row, const stoa_column_t *columns,
                             size_t ncolumns);

/* A list answer: which columns each object shows and where the next
 * cursor comes from. */
typedef struct {
    const stoa_column_t *columns;
    size_t ncolumns;
    /* Members not read from one column, written after the columns in each
     * row's object (NULL: none). */
    void (*more)(stoa_request_t *req, stoa_jw_t *w,
                 const struct stoa_db_result_s *res, int row);
    int cursor_column;    /* KEYSET: the microseconds; SERIAL: the id */
    int cursor_id_column; /* KEYSET: the uuid */
} stoa_list_t;

/* Answers 200 {"data":[<row objects>],"next_cursor":...}. With a page,
 * at most page->limit rows are shown and next_cursor is the position of
 * the last one shown when res holds more ("<ts>_<uuid>", or the id), else
 * null; without one (a short list that is not paged) every row is shown
 * and next_cursor is null. Returns stoa_http_send()'s result. */
int stoa_http_list(stoa_request_t *req, const struct stoa_db_result_s *res,
                   const stoa_page_t *page, const stoa_list_t *list);

/* A whole keyset-paged list without filters: reads the page (400 on a bad
 * limit or cursor), runs st with ($1 the cursor's microseconds, $2 its
 * uuid, $3 the rows to fetch) and answers as stoa_http_list. */
int stoa_http_keyset_list(stoa_request_t *req, const stoa_db_statement_t *st,
                          const stoa_list_t *list);

/* The one shape of a handler that changes something (CONVENTIONS,
 * Transactions): begin -> statements -> (nothing found: rollback, 404) ->
 * audit and outbox in the transaction -> commit -> only then the answer.
 * Every handler ends its transaction before it answers: a refusal found
 * midway rolls back (stoa_db_rollback) before its error, a failure status
 * (STOA_AGAIN, STOA_ERROR) is returned up as is and the dispatcher rolls
 * back and answers it, and a success answer is written only after
 * stoa_request_commit() returned STOA_OK.
 *
 * stoa_request_begin: begins on the request's connection, then runs st
 * when not NULL (params as for stoa_db_exec; *res may be NULL if
 * unwanted). STOA_DECLINED when st returned no row: rolled back, the
 * caller answers (its 404). Else STOA_OK or the failure. */
STOA_MUSTCHECK int stoa_request_begin(stoa_request_t *req,
                                      const stoa_db_statement_t *st,
                                      const char *const *params,
                                      struct stoa_db_result_s **res);
/* Writes the audit entry of the principal (action NULL: none; as
 * stoa_request_audit with actor_id NULL) and commits. STOA_OK: committed,
 * answer now; else the failure (rolled back). */
STOA_MUSTCHECK int stoa_request_commit(stoa_request_t *req, const char *action,
                                       const char *target_id,
                                       const char *details_json);

/* Checks Content-Type (415) and syntax (400 invalid_json) and that the
 * body is a JSON object; sends the error itself. (The size cap, 413, is
 * applied when the body is read.) STOA_OK with *out or STOA_DECLINED. */
STOA_MUSTCHECK int stoa_request_json_body(stoa_request_t *req,
                                          const stoa_json_t **out);

/* Field validation: each failed check records details.fields[name] =
 * reason. After the checks, stoa_http_invalid_fields() answers 400
 * `invalid_request` when any field failed. */
void stoa_request_field_error(stoa_request_t *req, const char *field,
                              const char *reason);
bool stoa_request_has_field_errors(const stoa_request_t *req);

#define STOA_FIELD_OPTIONAL 0u
#define STOA_FIELD_REQUIRED 1u

/* A string member with length bounds (in bytes, after no trimming);
 * NULL when absent or invalid (an error is recorded when required or the
 * type/length is wrong). */
const char *stoa_field_string(stoa_request_t *req, const stoa_json_t *obj,
                              const char *name, unsigned flags, size_t min_len,
                              size_t max_len);
/* An integer member within [min, max]; false when absent or invalid. */
bool stoa_field_integer(stoa_request_t *req, const stoa_json_t *obj,
                        const char *name, unsigned flags, int64_t min,
                        int64_t max, int64_t *out);
bool stoa_field_bool(stoa_request_t *req, const stoa_json_t *obj,
                     const char *name, unsigned flags, bool *out);
/* Records `unknown_field` for each member not in the NULL-terminated list. */
void stoa_field_reject_unknown(stoa_request_t *req, const stoa_json_t *obj,
                               const char *const *allowed);
/* A body that is exactly {"<name>": "<1 to max_len bytes>"} (a password,
 * an email, a token): the string, or NULL once the request has been
 * answered (415 or 400 with the field's reason, unknown members named). */
const char *stoa_request_only_string(stoa_request_t *req, const char *name,
                                     size_t max_len);

/* Responses. */
void stoa_http_header(stoa_request_t *req, const char *name, const char *value);
/* Starts a JSON body: returns the writer; finish with stoa_http_send(). */
stoa_jw_t *stoa_http_json(stoa_request_t *req, int status);
/* Marks the JSON body complete. Returns STOA_OK. */
int stoa_http_send(stoa_request_t *req);
/* A body that is already JSON of our own making (a cached answer).
 * Returns STOA_OK. */
int stoa_http_raw_json(stoa_request_t *req, int status, const char *json,
                       size_t len);
/* An empty answer (204, 202). Returns STOA_OK. */
int stoa_http_empty(stoa_request_t *req, int status);
/* The error contract: answers the error err of stoa/err.h with its
 * status; message may be NULL (the table's default). Returns
 * STOA_DECLINED for 4xx, STOA_AGAIN for 503, else STOA_ERROR. */
int stoa_http_fail(stoa_request_t *req, stoa_err_t err, const char *message);
/* The same with a details object given as JSON text of our own making. */
int stoa_http_fail_details(stoa_request_t *req, stoa_err_t err,
                           const char *message, const char *details_json);
/* The same code at another status than the table's, for a route whose
 * contract says so (a mailed link's bad token is a 400: it came in the
 * body, not as a credential). */
int stoa_http_fail_as(stoa_request_t *req, int status, stoa_err_t err,
                      const char *message);
/* The underlying form, by status and code text: for codes outside the
 * table (tests, tools); message may be NULL (the table's default for a
 * code it has, else the code). Handlers use stoa_http_fail. */
int stoa_http_error(stoa_request_t *req, int status, const char *code,
                    const char *message);
int stoa_http_error_details(stoa_request_t *req, int status, const char *code,
                            const char *message, const char *details_json);
/* 400 invalid_request with details.fields; returns STOA_DECLINED. */
int stoa_http_invalid_fields(stoa_request_t *req);

/* Streamed answers, for bodies too large to build in memory (a CSV
 * export): stoa_http_stream_begin sends the head at once (status,
 * content_type, the headers added so far, no Content-Length: nginx frames
 * the body), then each stoa_http_stream_write sends a piece (buffered by
 * the transport, written as it fills). Every other answer keeps the one
 * write of the whole response. Once begun, the answer is this stream: an
 * error can only end it early, with stoa_http_stream_abort (the handler
 * logs it and returns STOA_OK). Both return STOA_OK, or STOA_AGAIN when
 * the client has gone. */
STOA_MUSTCHECK int stoa_http_stream_begin(stoa_request_t *req, int status,
                                          const char *content_type);
STOA_MUSTCHECK int stoa_http_stream_write(stoa_request_t *req, const void *data,
                                          size_t len);
/* Ends a begun stream as broken: its connection to nginx is cut without
 * the FastCGI end of request, so nginx drops the client's connection
 * without the chunked body's last chunk and the client knows the answer
 * is incomplete (instead of taking a short file for the whole one). */
void stoa_http_stream_abort(stoa_request_t *req);

/* Router: matches method and path against a table. Returns the index of
 * the route, or -404 when no pattern matches the path, or -405 when one
 * matches with another method (allow gets "GET, POST" style text, arena). */
/* True when path matches pattern ("{name}" matches one non-empty
 * segment); captures nothing. */
bool stoa_route_pattern_matches(const char *pattern, const char *path);
int stoa_router_match(stoa_request_t *req, const stoa_route_t *routes,
                      size_t nroutes, const char **allow);

/* True when s is a sane client request id: 1..128 of [A-Za-z0-9._-]. */
bool stoa_request_id_valid(const char *s);

#endif
