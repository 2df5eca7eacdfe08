/*
 * ngx_http_api_gateway_module.c - verifies access tokens at the edge.
 *
 * In the access phase the module checks the request's bearer token (a
 * compact ES256 JWS, verified by the shared core in modules/common/jwt.c),
 * enforces the location's roles and answers 401/403 itself in the API's
 * JSON error shape. The identity it established is exposed as variables
 * ($gateway_sub, $gateway_sid, $gateway_role, $gateway_jti, $gateway_exp,
 * $gateway_scope)
 * for fastcgi_param and limit_req keys. The variables verify lazily, so
 * they already hold the identity in the preaccess phase where limit_req
 * runs, before the access phase has refused anything.
 *
 * Keys come from a JWKS file read at configuration time (nginx -t fails on
 * a bad one; nginx -s reload reads it again). A token naming an unknown kid
 * makes the worker look at the file again and re-read it when it changed,
 * at most once a second, so a key rotation needs no reload.
 *
 * This file ties the parts together: the module, the access handler, the
 * variables and the error answers. The parts:
 *   ngx_http_api_gateway_config    directives, main and location conf
 *   ngx_http_api_gateway_jwks      JWKS files and their key sets
 *   ngx_http_api_gateway_verify    Bearer tokens, refusals, roles
 *   ngx_http_api_gateway_cache     the token check and its cache
 *   ngx_http_api_gateway_guard     calls into the shared core that fail
 *                                  instead of aborting
 * A failure of our own (memory) answers 500, which the stack's error_page
 * turns into the API's JSON error; the worker never aborts.
 *
 * With api_gateway_metrics_dir, each worker counts the tokens it checked,
 * its cache hits and misses and its refusals by reason into a slot of the
 * host's gateway metrics file, with the very code the pools count with
 * (stoa/metrics.h, compiled in like the core): stoa-jobs' scrape reads it
 * with the others, and a worker killed and replaced leaves its counts
 * behind for its successor to fold, so the sums never go backwards.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "stoa/jwt.h"
#include "stoa/metrics.h"
#include "ngx_http_api_gateway_cache.h"
#include "ngx_http_api_gateway_config.h"
#include "ngx_http_api_gateway_guard.h"
#include "ngx_http_api_gateway_jwks.h"
#include "ngx_http_api_gateway_verify.h"


typedef enum {
    NGX_HTTP_API_GATEWAY_ANONYMOUS = 0,
    NGX_HTTP_API_GATEWAY_VERIFIED,
    NGX_HTTP_API_GATEWAY_REFUSED
} ngx_http_api_gateway_state_e;


typedef struct {
    ngx_http_api_gateway_profile_t  *profile;
    ngx_http_api_gateway_state_e     state;
    const char                      *reason;     /* for the log */
    ngx_str_t                        message;    /* for the client */
    stoa_metric_t                    metric;     /* counted when sent */
    ngx_http_api_gateway_identity_t  identity;
} ngx_http_api_gateway_ctx_t;


static ngx_http_api_gateway_ctx_t *ngx_http_api_gateway_authenticate(
    ngx_http_request_t *r, ngx_http_api_gateway_loc_conf_t *glcf);
static ngx_int_t ngx_http_api_gateway_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_api_gateway_send_error(ngx_http_request_t *r,
    ngx_http_api_gateway_loc_conf_t *glcf, ngx_uint_t status,
    ngx_str_t *code, ngx_str_t *message, ngx_str_t *challenge);
static ngx_int_t ngx_http_api_gateway_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_api_gateway_exp_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_api_gateway_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_api_gateway_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_api_gateway_init_process(ngx_cycle_t *cycle);
static void ngx_http_api_gateway_exit_process(ngx_cycle_t *cycle);


static ngx_http_module_t  ngx_http_api_gateway_module_ctx = {
    ngx_http_api_gateway_add_variables,      /* preconfiguration */
    ngx_http_api_gateway_init,               /* postconfiguration */

    ngx_http_api_gateway_create_main_conf,   /* create main configuration */
    ngx_http_api_gateway_init_main_conf,     /* init main configuration */

    NULL,                                    /* create server configuration */
    NULL,                                    /* merge server configuration */

    ngx_http_api_gateway_create_loc_conf,    /* create location configuration */
    ngx_http_api_gateway_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_api_gateway_module = {
    NGX_MODULE_V1,
    &ngx_http_api_gateway_module_ctx,        /* module context */
    ngx_http_api_gateway_commands,           /* module directives */
    NGX_HTTP_MODULE,                         /* module type */
    NULL,                                    /* init master */
    NULL,                                    /* init module */
    ngx_http_api_gateway_init_process,       /* init process */
    NULL,                                    /* init thread */
    NULL,                                    /* exit thread */
    ngx_http_api_gateway_exit_process,       /* exit process */
    NULL,                                    /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_api_gateway_vars[] = {

    { ngx_string("gateway_sub"), NULL, ngx_http_api_gateway_variable,
      offsetof(ngx_http_api_gateway_identity_t, sub),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gateway_sid"), NULL, ngx_http_api_gateway_variable,
      offsetof(ngx_http_api_gateway_identity_t, sid),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gateway_role"), NULL, ngx_http_api_gateway_variable,
      offsetof(ngx_http_api_gateway_identity_t, role),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gateway_jti"), NULL, ngx_http_api_gateway_variable,
      offsetof(ngx_http_api_gateway_identity_t, jti),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gateway_scope"), NULL, ngx_http_api_gateway_variable,
      offsetof(ngx_http_api_gateway_identity_t, scope),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gateway_exp"), NULL, ngx_http_api_gateway_exp_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_api_gateway_authorization_name =
    ngx_string("authorization");
static ngx_str_t  ngx_http_api_gateway_access_token =
    ngx_string("access_token");

static ngx_str_t  ngx_http_api_gateway_unauthenticated =
    ngx_string("unauthenticated");
static ngx_str_t  ngx_http_api_gateway_forbidden = ngx_string("forbidden");

static ngx_str_t  ngx_http_api_gateway_missing_message =
    ngx_string("an access token is required");
static ngx_str_t  ngx_http_api_gateway_forbidden_message =
    ngx_string("this resource is not available to your role");

static ngx_str_t  ngx_http_api_gateway_challenge = ngx_string("Bearer");
static ngx_str_t  ngx_http_api_gateway_invalid_challenge =
    ngx_string("Bearer error=\"invalid_token\"");


/* Request side */

static ngx_int_t
ngx_http_api_gateway_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_api_gateway_ctx_t       *ctx;
    ngx_http_api_gateway_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_api_gateway_module);

    if (glcf->mode == NGX_HTTP_API_GATEWAY_OFF) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_api_gateway_authenticate(r, glcf);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (ctx->state) {

    case NGX_HTTP_API_GATEWAY_ANONYMOUS:
        if (glcf->mode == NGX_HTTP_API_GATEWAY_OPTIONAL) {
            return NGX_DECLINED;
        }

        stoa_metrics_count(STOA_METRIC_GATEWAY_REFUSAL_MISSING);

        rc = ngx_http_api_gateway_send_error(r, glcf,
                                         NGX_HTTP_UNAUTHORIZED,
                                         &ngx_http_api_gateway_unauthenticated,
                                         &ngx_http_api_gateway_missing_message,
                                         &ngx_http_api_gateway_challenge);
        break;

    case NGX_HTTP_API_GATEWAY_REFUSED:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "api gateway refused the access token: %s",
                      ctx->reason);

        stoa_metrics_count(ctx->metric);

        rc = ngx_http_api_gateway_send_error(r, glcf,
                                     NGX_HTTP_UNAUTHORIZED,
                                     &ngx_http_api_gateway_unauthenticated,
                                     &ctx->message,
                                     &ngx_http_api_gateway_invalid_challenge);
        break;

    default: /* NGX_HTTP_API_GATEWAY_VERIFIED */

        if (ngx_http_api_gateway_role_allowed(
                glcf->roles ? glcf->roles->elts : NULL,
                glcf->roles ? glcf->roles->nelts : 0, ctx->identity.role))
        {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "api gateway refused role \"%s\" of user \"%s\"",
                      ctx->identity.role, ctx->identity.sub);

        stoa_metrics_count(STOA_METRIC_GATEWAY_REFUSAL_ROLE);

        rc = ngx_http_api_gateway_send_error(r, glcf, NGX_HTTP_FORBIDDEN,
                                      &ngx_http_api_gateway_forbidden,
                                      &ngx_http_api_gateway_forbidden_message,
                                      NULL);
        break;
    }

    /* the answer is ours, as a content handler's would be */
    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static void
ngx_http_api_gateway_refuse(ngx_http_api_gateway_ctx_t *ctx,
    const ngx_http_api_gateway_refusal_t *refusal)
{
    ctx->state = NGX_HTTP_API_GATEWAY_REFUSED;
    ctx->reason = refusal->reason;
    ctx->message.data = (u_char *) refusal->message;
    ctx->message.len = ngx_strlen(refusal->message);
    ctx->metric = refusal->metric;

    /* a token was checked: the refusal itself counts when it is sent */
    stoa_metrics_count(STOA_METRIC_GATEWAY_REFUSED);
}


/* The request's outcome for profile, undecided (anonymous until checked). */
static ngx_http_api_gateway_ctx_t *
ngx_http_api_gateway_ctx_reset(ngx_http_request_t *r,
    ngx_http_api_gateway_ctx_t *ctx, ngx_http_api_gateway_profile_t *profile)
{
    if (ctx == NULL) {
        ctx = ngx_palloc(r->pool, sizeof(ngx_http_api_gateway_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_api_gateway_module);
    }

    ctx->profile = profile;
    ctx->state = NGX_HTTP_API_GATEWAY_ANONYMOUS;
    ctx->reason = NULL;
    ngx_str_null(&ctx->message);

    return ctx;
}


/*
 * The Authorization header, when it is the request's one token: NGX_OK
 * with *authorization set; NGX_DECLINED when there is no Authorization
 * header; NGX_BUSY when the request carries more than one token.
 *
 * Count every place a token may hide: a request carrying two could
 * have them read differently by different parties, so it gets none.
 * nginx itself refuses a repeated Authorization header with 400; the
 * count below stays correct should that ever change.
 */
static ngx_int_t
ngx_http_api_gateway_authorization(ngx_http_request_t *r,
    ngx_table_elt_t **authorization)
{
    ngx_str_t         value;
    ngx_uint_t        i, tokens;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    tokens = 0;
    *authorization = NULL;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == ngx_http_api_gateway_authorization_name.len
            && ngx_strncasecmp(h[i].key.data,
                               ngx_http_api_gateway_authorization_name.data,
                               ngx_http_api_gateway_authorization_name.len)
               == 0)
        {
            tokens++;
            *authorization = &h[i];
        }
    }

    if (ngx_http_arg(r, ngx_http_api_gateway_access_token.data,
                     ngx_http_api_gateway_access_token.len, &value)
        == NGX_OK)
    {
        tokens++;
    }

    if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies,
                                          &ngx_http_api_gateway_access_token,
                                          &value)
        != NGX_DECLINED)
    {
        tokens++;
    }

    if (*authorization == NULL) {
        return NGX_DECLINED;
    }

    return tokens > 1 ? NGX_BUSY : NGX_OK;
}


/*
 * Checks token for profile: a cached verification, else the shared core.
 * A token naming an unknown kid makes the worker look at the JWKS file,
 * and is checked again when the keys changed. NGX_OK with *status set, or
 * NGX_ERROR (logged) when the core failed.
 */
static ngx_int_t
ngx_http_api_gateway_verify_token(ngx_http_request_t *r,
    ngx_http_api_gateway_profile_t *profile, const char *token, size_t len,
    ngx_http_api_gateway_identity_t *identity, stoa_jwt_status_t *status)
{
    ngx_http_api_gateway_jwks_t       *jwks;
    ngx_http_api_gateway_check_t       check;
    ngx_http_api_gateway_main_conf_t  *gmcf;

    jwks = profile->jwks;
    gmcf = ngx_http_get_module_main_conf(r, ngx_http_api_gateway_module);

    check.keys = &jwks->keys;
    check.profile = (uintptr_t) profile;
    check.issuer = (const char *) profile->issuer.data;
    check.audience = (const char *) profile->audience.data;
    check.leeway = profile->leeway;

    for ( ;; ) {
        check.generation = jwks->generation;

        if (ngx_http_api_gateway_guarded_check(gmcf->cache, &check, token,
                                               len, (int64_t) ngx_time(),
                                               identity, status)
            != STOA_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "api gateway: the token check failed: %s",
                          ngx_http_api_gateway_guard_failure());
            return NGX_ERROR;
        }

        if (*status != STOA_JWT_UNKNOWN_KID) {
            return NGX_OK;
        }

        /* the keys may have been rotated since they were read */
        ngx_http_api_gateway_jwks_refresh(jwks, r->connection->log);

        if (check.generation == jwks->generation) {
            return NGX_OK;
        }
    }
}


/*
 * Finds the request's bearer token and checks it, once per request and
 * location profile. Returns the outcome, or NULL on an internal failure
 * (memory), after which the next call tries again.
 */
static ngx_http_api_gateway_ctx_t *
ngx_http_api_gateway_authenticate(ngx_http_request_t *r,
    ngx_http_api_gateway_loc_conf_t *glcf)
{
    size_t                           len;
    ngx_int_t                        rc;
    const char                      *token;
    ngx_table_elt_t                 *authorization;
    stoa_jwt_status_t                status;
    ngx_http_api_gateway_ctx_t      *ctx;
    ngx_http_api_gateway_refusal_t   refusal;

    ctx = ngx_http_get_module_ctx(r, ngx_http_api_gateway_module);

    if (ctx && ctx->profile == glcf->profile) {
        return ctx;
    }

    ctx = ngx_http_api_gateway_ctx_reset(r, ctx, glcf->profile);
    if (ctx == NULL) {
        return NULL;
    }

    rc = ngx_http_api_gateway_authorization(r, &authorization);

    if (rc == NGX_DECLINED) {
        /*
         * A token only in the query string or a cookie is not accepted:
         * the request is anonymous, and no pool ever sees that token.
         */
        return ctx;
    }

    if (rc == NGX_BUSY) {
        ngx_http_api_gateway_refuse(ctx,
                                    &ngx_http_api_gateway_refusal_multiple);
        return ctx;
    }

    if (ngx_http_api_gateway_bearer((const char *) authorization->value.data,
                                    authorization->value.len, &token, &len,
                                    &refusal)
        != STOA_OK)
    {
        ngx_http_api_gateway_refuse(ctx, &refusal);
        return ctx;
    }

    if (ngx_http_api_gateway_verify_token(r, glcf->profile, token, len,
                                          &ctx->identity, &status)
        != NGX_OK)
    {
        /* undecided: not remembered as anonymous */
        ctx->profile = NULL;
        stoa_metrics_count(STOA_METRIC_GATEWAY_FAILED);
        return NULL;
    }

    if (ngx_http_api_gateway_status_refusal(status, &refusal) != STOA_OK) {
        ngx_http_api_gateway_refuse(ctx, &refusal);
        return ctx;
    }

    ctx->state = NGX_HTTP_API_GATEWAY_VERIFIED;
    stoa_metrics_count(STOA_METRIC_GATEWAY_VERIFIED);

    return ctx;
}


static ngx_int_t
ngx_http_api_gateway_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value, ngx_table_elt_t **slot)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    if (slot) {
        *slot = h;
    }

    return NGX_OK;
}


/*
 * The API's error document:
 * {"error":{"code":...,"message":...,"details":{}},"request_id":...}
 * in a buffer from the request's pool, or NULL.
 */
static ngx_buf_t *
ngx_http_api_gateway_error_body(ngx_http_request_t *r, ngx_str_t *code,
    ngx_str_t *message, ngx_str_t *request_id)
{
    size_t      len;
    u_char     *p;
    ngx_buf_t  *b;

    len = sizeof("{\"error\":{\"code\":\"\",\"message\":\"\","
                 "\"details\":{}},\"request_id\":\"\"}\n") - 1
          + code->len
          + message->len + ngx_escape_json(NULL, message->data, message->len)
          + request_id->len
          + ngx_escape_json(NULL, request_id->data, request_id->len);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NULL;
    }

    p = ngx_cpymem(b->last, "{\"error\":{\"code\":\"",
                   sizeof("{\"error\":{\"code\":\"") - 1);
    p = ngx_cpymem(p, code->data, code->len);
    p = ngx_cpymem(p, "\",\"message\":\"", sizeof("\",\"message\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, message->data, message->len);
    p = ngx_cpymem(p, "\",\"details\":{}},\"request_id\":\"",
                   sizeof("\",\"details\":{}},\"request_id\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, request_id->data, request_id->len);
    p = ngx_cpymem(p, "\"}\n", sizeof("\"}\n") - 1);

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    return b;
}


/* WWW-Authenticate (when challenge is set), X-Request-Id, Cache-Control. */
static ngx_int_t
ngx_http_api_gateway_error_headers(ngx_http_request_t *r,
    ngx_str_t *challenge, ngx_str_t *request_id)
{
    static ngx_str_t  no_store = ngx_string("no-store");

    if (challenge
        && ngx_http_api_gateway_add_header(r, "WWW-Authenticate", challenge,
                                           &r->headers_out.www_authenticate)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (request_id->len
        && ngx_http_api_gateway_add_header(r, "X-Request-Id", request_id,
                                           NULL)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_api_gateway_add_header(r, "Cache-Control", &no_store,
                                           NULL);
}


/*
 * Answers with the API's error document. The request id is the one the
 * rest of the configuration uses, so the body, the X-Request-Id header
 * and the access log agree.
 */
static ngx_int_t
ngx_http_api_gateway_send_error(ngx_http_request_t *r,
    ngx_http_api_gateway_loc_conf_t *glcf, ngx_uint_t status,
    ngx_str_t *code, ngx_str_t *message, ngx_str_t *challenge)
{
    ngx_int_t     rc;
    ngx_str_t     request_id;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_complex_value(r, glcf->request_id, &request_id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_http_api_gateway_error_body(r, code, message, &request_id);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_http_api_gateway_error_headers(r, challenge, &request_id)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The identity behind a variable: NGX_OK with *ctx set when the request
 * carries a verified token, NGX_DECLINED (v marked not found) when the
 * location does not check tokens or the token was absent or refused.
 */
static ngx_int_t
ngx_http_api_gateway_variable_ctx(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, ngx_http_api_gateway_ctx_t **ctx)
{
    ngx_http_api_gateway_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_api_gateway_module);

    if (glcf->mode == NGX_HTTP_API_GATEWAY_OFF) {
        v->not_found = 1;
        return NGX_DECLINED;
    }

    *ctx = ngx_http_api_gateway_authenticate(r, glcf);
    if (*ctx == NULL) {
        return NGX_ERROR;
    }

    if ((*ctx)->state != NGX_HTTP_API_GATEWAY_VERIFIED) {
        v->not_found = 1;
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_api_gateway_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                      *s;
    ngx_int_t                    rc;
    ngx_http_api_gateway_ctx_t  *ctx;

    rc = ngx_http_api_gateway_variable_ctx(r, v, &ctx);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : rc;
    }

    s = (u_char *) &ctx->identity + data;

    v->len = ngx_strlen(s);
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = (v->len == 0);
    v->data = s;

    return NGX_OK;
}


static ngx_int_t
ngx_http_api_gateway_exp_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_http_api_gateway_ctx_t  *ctx;

    rc = ngx_http_api_gateway_variable_ctx(r, v, &ctx);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : rc;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%L", ctx->identity.exp) - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_api_gateway_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_api_gateway_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* Module */

static ngx_int_t
ngx_http_api_gateway_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_api_gateway_handler;

    return NGX_OK;
}


typedef struct {
    char                             dir[1024];
    int                              rc;
    char                             err[512];
} ngx_http_api_gateway_metrics_open_t;


static void
ngx_http_api_gateway_metrics_open_run(void *data)
{
    ngx_http_api_gateway_metrics_open_t  *mo = data;

    /* the gateway counts by fixed reasons only: no routes, no kinds */
    static const stoa_metrics_labels_t  labels = { NULL, NULL, 0, NULL, 0 };

    mo->rc = stoa_metrics_open(mo->dir, STOA_METRICS_GATEWAY, &labels,
                               mo->err, sizeof(mo->err));
}


/*
 * Takes this worker's slot in <dir>/gateway.metrics, folding the slots of
 * workers that are gone. Guarded: the library allocates with the core's
 * aborting functions. A failure only logs; the worker serves uncounted.
 */
static void
ngx_http_api_gateway_metrics_open(ngx_cycle_t *cycle, ngx_str_t *dir)
{
    ngx_http_api_gateway_metrics_open_t  mo;

    /* cache managers and loaders answer no request */
    if (dir->len == 0
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE))
    {
        return;
    }

    ngx_memzero(&mo, sizeof(mo));
    ngx_snprintf((u_char *) mo.dir, sizeof(mo.dir) - 1, "%V", dir);
    mo.rc = STOA_ERROR;

    if (ngx_http_api_gateway_guard_run(ngx_http_api_gateway_metrics_open_run,
                                       &mo)
        != STOA_OK)
    {
        ngx_snprintf((u_char *) mo.err, sizeof(mo.err) - 1, "%s",
                     ngx_http_api_gateway_guard_failure());
        mo.rc = STOA_ERROR;
    }

    if (mo.rc != STOA_OK) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "api gateway: nothing is counted: %s", mo.err);
    }
}


static ngx_int_t
ngx_http_api_gateway_init_process(ngx_cycle_t *cycle)
{
    ngx_http_api_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_api_gateway_module);

    if (gmcf == NULL) {
        return NGX_OK;
    }

    ngx_http_api_gateway_metrics_open(cycle, &gmcf->metrics_dir);

    if (gmcf->profiles.nelts == 0 || gmcf->cache_size == 0) {
        return NGX_OK;
    }

    /* each worker caches what it verified itself: no locks, no sharing */
    gmcf->cache = ngx_http_api_gateway_cache_create(gmcf->cache_size);

    if (gmcf->cache == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "api gateway: no memory for a cache of %ui tokens, "
                      "every token will be verified",
                      gmcf->cache_size);
    }

    return NGX_OK;
}


static void
ngx_http_api_gateway_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_api_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_api_gateway_module);

    if (gmcf && gmcf->cache) {
        ngx_http_api_gateway_cache_destroy(gmcf->cache);
        gmcf->cache = NULL;
    }

    /* a clean stop (a reload's old worker, a shutdown): not a restart */
    stoa_metrics_close();
}
