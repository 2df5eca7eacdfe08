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
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "stoa/jwt.h"
#include "ngx_http_api_gateway_cache.h"


#define NGX_HTTP_API_GATEWAY_OFF       0
#define NGX_HTTP_API_GATEWAY_ON        1
#define NGX_HTTP_API_GATEWAY_OPTIONAL  2

/* a JWKS is a handful of public keys; anything bigger is not one */
#define NGX_HTTP_API_GATEWAY_JWKS_MAX  (256 * 1024)
#define NGX_HTTP_API_GATEWAY_ROLE_MAX  32
#define NGX_HTTP_API_GATEWAY_RELOAD_INTERVAL  1000


typedef struct {
    ngx_str_t                        path;       /* NUL-terminated */
    stoa_jwt_keyset_t                keys;
    /* bumped whenever keys change: cached verifications die with it */
    uint64_t                         generation;
    /* the file the keys came from, to notice a replacement */
    ngx_file_uniq_t                  uniq;
    off_t                            size;
    time_t                           mtime;
    ngx_msec_t                       reloaded;
    ngx_uint_t                       reloaded_once;
} ngx_http_api_gateway_jwks_t;


/* Everything a verification depends on; shared by equal locations. */
typedef struct {
    ngx_http_api_gateway_jwks_t     *jwks;
    ngx_str_t                        issuer;     /* data NULL: no check */
    ngx_str_t                        audience;   /* data NULL: no check */
    time_t                           leeway;
} ngx_http_api_gateway_profile_t;


typedef struct {
    ngx_array_t                      jwks;       /* of jwks_t * */
    ngx_array_t                      profiles;   /* of profile_t * */
    ngx_uint_t                       cache_size;
    ngx_http_api_gateway_cache_t    *cache;      /* per worker */
} ngx_http_api_gateway_main_conf_t;


typedef struct {
    ngx_uint_t                       mode;
    ngx_http_api_gateway_jwks_t     *jwks;
    ngx_str_t                        issuer;
    ngx_str_t                        audience;
    ngx_array_t                     *roles;      /* of ngx_str_t; NULL: any */
    time_t                           leeway;
    ngx_http_complex_value_t        *request_id;
    ngx_http_api_gateway_profile_t  *profile;
} ngx_http_api_gateway_loc_conf_t;


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
    ngx_http_api_gateway_identity_t  identity;
} ngx_http_api_gateway_ctx_t;


static ngx_http_api_gateway_ctx_t *ngx_http_api_gateway_authenticate(
    ngx_http_request_t *r, ngx_http_api_gateway_loc_conf_t *glcf);
static ngx_int_t ngx_http_api_gateway_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_api_gateway_send_error(ngx_http_request_t *r,
    ngx_http_api_gateway_loc_conf_t *glcf, ngx_uint_t status,
    ngx_str_t *code, ngx_str_t *message, ngx_str_t *challenge);
static ngx_int_t ngx_http_api_gateway_jwks_load(
    ngx_http_api_gateway_jwks_t *jwks, ngx_log_t *log, u_char *err,
    size_t errlen);
static void ngx_http_api_gateway_jwks_refresh(
    ngx_http_api_gateway_jwks_t *jwks, ngx_log_t *log);
static void ngx_http_api_gateway_jwks_cleanup(void *data);
static ngx_int_t ngx_http_api_gateway_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_api_gateway_exp_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static char *ngx_http_api_gateway_mode(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_api_gateway_jwks(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_api_gateway_string(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_api_gateway_roles(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_api_gateway_cache_size_check(ngx_conf_t *cf,
    void *post, void *data);
static ngx_int_t ngx_http_api_gateway_add_variables(ngx_conf_t *cf);
static void *ngx_http_api_gateway_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_api_gateway_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_api_gateway_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_api_gateway_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_api_gateway_init_process(ngx_cycle_t *cycle);
static void ngx_http_api_gateway_exit_process(ngx_cycle_t *cycle);


/* 16M entries is some 4 GB per worker: anything above is a typo */
#define NGX_HTTP_API_GATEWAY_CACHE_MAX  (16 * 1024 * 1024)

static ngx_conf_post_t  ngx_http_api_gateway_cache_size_post =
    { ngx_http_api_gateway_cache_size_check };


static ngx_conf_enum_t  ngx_http_api_gateway_modes[] = {
    { ngx_string("off"), NGX_HTTP_API_GATEWAY_OFF },
    { ngx_string("on"), NGX_HTTP_API_GATEWAY_ON },
    { ngx_string("optional"), NGX_HTTP_API_GATEWAY_OPTIONAL },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_api_gateway_commands[] = {

    { ngx_string("api_gateway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_api_gateway_mode,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_api_gateway_loc_conf_t, mode),
      &ngx_http_api_gateway_modes },

    { ngx_string("api_gateway_jwks"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_api_gateway_jwks,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_gateway_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_api_gateway_string,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_api_gateway_loc_conf_t, issuer),
      NULL },

    { ngx_string("api_gateway_audience"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_api_gateway_string,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_api_gateway_loc_conf_t, audience),
      NULL },

    { ngx_string("api_gateway_roles"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_api_gateway_roles,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_gateway_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_api_gateway_loc_conf_t, leeway),
      NULL },

    { ngx_string("api_gateway_request_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_api_gateway_loc_conf_t, request_id),
      NULL },

    { ngx_string("api_gateway_cache_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_api_gateway_main_conf_t, cache_size),
      &ngx_http_api_gateway_cache_size_post },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_api_gateway_module_ctx = {
    ngx_http_api_gateway_add_variables,      /* preconfiguration */
    ngx_http_api_gateway_init,               /* postconfiguration */

    ngx_http_api_gateway_create_main_conf,   /* create main configuration */
    NULL,                                    /* init main configuration */

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


static ngx_str_t  ngx_http_api_gateway_authorization =
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
    ngx_str_t                        *role;
    ngx_uint_t                        i;
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

        rc = ngx_http_api_gateway_send_error(r, glcf,
                                     NGX_HTTP_UNAUTHORIZED,
                                     &ngx_http_api_gateway_unauthenticated,
                                     &ctx->message,
                                     &ngx_http_api_gateway_invalid_challenge);
        break;

    default: /* NGX_HTTP_API_GATEWAY_VERIFIED */

        if (glcf->roles == NULL) {
            return NGX_DECLINED;
        }

        role = glcf->roles->elts;
        for (i = 0; i < glcf->roles->nelts; i++) {
            if (ngx_strcmp(role[i].data, ctx->identity.role) == 0) {
                return NGX_DECLINED;
            }
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "api gateway refused role \"%s\" of user \"%s\"",
                      ctx->identity.role, ctx->identity.sub);

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
    const char *reason, const char *message)
{
    ctx->state = NGX_HTTP_API_GATEWAY_REFUSED;
    ctx->reason = reason;
    ctx->message.data = (u_char *) message;
    ctx->message.len = ngx_strlen(message);
}


/*
 * Finds the request's bearer token and checks it, once per request and
 * location profile. Returns the outcome, or NULL on allocation failure.
 */
static ngx_http_api_gateway_ctx_t *
ngx_http_api_gateway_authenticate(ngx_http_request_t *r,
    ngx_http_api_gateway_loc_conf_t *glcf)
{
    u_char                            *p, *last;
    ngx_str_t                          value, token;
    ngx_uint_t                         i, tokens;
    ngx_list_part_t                   *part;
    ngx_table_elt_t                   *h, *authorization;
    stoa_jwt_status_t                  st;
    ngx_http_api_gateway_ctx_t        *ctx;
    ngx_http_api_gateway_jwks_t       *jwks;
    ngx_http_api_gateway_check_t       check;
    ngx_http_api_gateway_profile_t    *profile;
    ngx_http_api_gateway_main_conf_t  *gmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_api_gateway_module);

    if (ctx && ctx->profile == glcf->profile) {
        return ctx;
    }

    if (ctx == NULL) {
        ctx = ngx_palloc(r->pool, sizeof(ngx_http_api_gateway_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_api_gateway_module);
    }

    ctx->profile = glcf->profile;
    ctx->state = NGX_HTTP_API_GATEWAY_ANONYMOUS;
    ctx->reason = NULL;
    ngx_str_null(&ctx->message);

    /*
     * Count every place a token may hide: a request carrying two could
     * have them read differently by different parties, so it gets none.
     * nginx itself refuses a repeated Authorization header with 400; the
     * count below stays correct should that ever change.
     */
    tokens = 0;
    authorization = NULL;

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

        if (h[i].key.len == ngx_http_api_gateway_authorization.len
            && ngx_strncasecmp(h[i].key.data,
                               ngx_http_api_gateway_authorization.data,
                               ngx_http_api_gateway_authorization.len) == 0)
        {
            tokens++;
            authorization = &h[i];
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

    if (authorization == NULL) {
        /*
         * A token only in the query string or a cookie is not accepted:
         * the request is anonymous, and no pool ever sees that token.
         */
        return ctx;
    }

    if (tokens > 1) {
        ngx_http_api_gateway_refuse(ctx, "more than one token",
                                    "the request carries more than one "
                                    "access token");
        return ctx;
    }

    /* "Bearer" 1*SP token, the scheme in any case (RFC 7235, RFC 6750) */

    p = authorization->value.data;
    last = p + authorization->value.len;

    if (last - p < 7
        || ngx_strncasecmp(p, (u_char *) "Bearer ", 7) != 0)
    {
        ngx_http_api_gateway_refuse(ctx, "not a Bearer authorization",
                                    "the Authorization header must hold "
                                    "a Bearer token");
        return ctx;
    }

    p += 7;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    token.data = p;
    token.len = last - p;

    if (token.len == 0
        || ngx_strlchr(token.data, last, ' ') != NULL
        || ngx_strlchr(token.data, last, '\t') != NULL)
    {
        ngx_http_api_gateway_refuse(ctx, "malformed Bearer authorization",
                                    "the Authorization header must hold "
                                    "a Bearer token");
        return ctx;
    }

    profile = glcf->profile;
    jwks = profile->jwks;
    gmcf = ngx_http_get_module_main_conf(r, ngx_http_api_gateway_module);

    check.keys = &jwks->keys;
    check.profile = (uintptr_t) profile;
    check.issuer = (const char *) profile->issuer.data;
    check.audience = (const char *) profile->audience.data;
    check.leeway = profile->leeway;

    for ( ;; ) {
        check.generation = jwks->generation;

        st = ngx_http_api_gateway_check(gmcf->cache, &check,
                                        (const char *) token.data,
                                        token.len, (int64_t) ngx_time(),
                                        &ctx->identity);

        if (st != STOA_JWT_UNKNOWN_KID) {
            break;
        }

        /* the keys may have been rotated since they were read */
        ngx_http_api_gateway_jwks_refresh(jwks, r->connection->log);

        if (check.generation == jwks->generation) {
            break;
        }
    }

    switch (st) {

    case STOA_JWT_OK:
        ctx->state = NGX_HTTP_API_GATEWAY_VERIFIED;
        break;

    case STOA_JWT_EXPIRED:
        ngx_http_api_gateway_refuse(ctx, stoa_jwt_status_name(st),
                                    "the access token has expired");
        break;

    case STOA_JWT_NOT_YET_VALID:
        ngx_http_api_gateway_refuse(ctx, stoa_jwt_status_name(st),
                                    "the access token is not valid yet");
        break;

    default:
        ngx_http_api_gateway_refuse(ctx, stoa_jwt_status_name(st),
                                    "the access token is invalid");
        break;
    }

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
 * Answers with the API's error document:
 * {"error":{"code":...,"message":...,"details":{}},"request_id":...}
 * The request id is the one the rest of the configuration uses, so the
 * body, the X-Request-Id header and the access log agree.
 */
static ngx_int_t
ngx_http_api_gateway_send_error(ngx_http_request_t *r,
    ngx_http_api_gateway_loc_conf_t *glcf, ngx_uint_t status,
    ngx_str_t *code, ngx_str_t *message, ngx_str_t *challenge)
{
    size_t        len;
    u_char       *p;
    ngx_int_t     rc;
    ngx_str_t     request_id;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    static ngx_str_t  no_store = ngx_string("no-store");

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_complex_value(r, glcf->request_id, &request_id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof("{\"error\":{\"code\":\"\",\"message\":\"\","
                 "\"details\":{}},\"request_id\":\"\"}\n") - 1
          + code->len
          + message->len + ngx_escape_json(NULL, message->data, message->len)
          + request_id.len
          + ngx_escape_json(NULL, request_id.data, request_id.len);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(b->last, "{\"error\":{\"code\":\"",
                   sizeof("{\"error\":{\"code\":\"") - 1);
    p = ngx_cpymem(p, code->data, code->len);
    p = ngx_cpymem(p, "\",\"message\":\"", sizeof("\",\"message\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, message->data, message->len);
    p = ngx_cpymem(p, "\",\"details\":{}},\"request_id\":\"",
                   sizeof("\",\"details\":{}},\"request_id\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, request_id.data, request_id.len);
    p = ngx_cpymem(p, "\"}\n", sizeof("\"}\n") - 1);

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (challenge
        && ngx_http_api_gateway_add_header(r, "WWW-Authenticate", challenge,
                                           &r->headers_out.www_authenticate)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (request_id.len
        && ngx_http_api_gateway_add_header(r, "X-Request-Id", &request_id,
                                           NULL)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_api_gateway_add_header(r, "Cache-Control", &no_store, NULL)
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


/* Keys */

/*
 * Reads and parses the JWKS file; on success the new keys replace the old
 * ones and the generation moves on. On failure the old keys stay and err
 * says why.
 */
static ngx_int_t
ngx_http_api_gateway_jwks_load(ngx_http_api_gateway_jwks_t *jwks,
    ngx_log_t *log, u_char *err, size_t errlen)
{
    char               reason[256];
    u_char            *text;
    off_t              size;
    ssize_t            n;
    ngx_fd_t           fd;
    ngx_int_t          rc;
    ngx_file_info_t    fi;
    stoa_jwt_keyset_t  keys;

    fd = ngx_open_file(jwks->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_snprintf(err, errlen, "cannot open: %s%Z", strerror(ngx_errno));
        return NGX_ERROR;
    }

    text = NULL;
    rc = NGX_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_snprintf(err, errlen, "cannot stat: %s%Z", strerror(ngx_errno));
        goto done;
    }

    size = ngx_file_size(&fi);

    if (!ngx_is_file(&fi) || size > NGX_HTTP_API_GATEWAY_JWKS_MAX) {
        ngx_snprintf(err, errlen, "not a regular file of at most %d bytes%Z",
                     NGX_HTTP_API_GATEWAY_JWKS_MAX);
        goto done;
    }

    text = ngx_alloc((size_t) size + 1, log);
    if (text == NULL) {
        ngx_snprintf(err, errlen, "out of memory%Z");
        goto done;
    }

    n = ngx_read_fd(fd, text, (size_t) size + 1);

    if (n != (ssize_t) size) {
        ngx_snprintf(err, errlen, "cannot read: %s%Z",
                     n == -1 ? strerror(ngx_errno) : "changed while read");
        goto done;
    }

    reason[0] = '\0';

    if (stoa_jwt_keyset_from_jwks(&keys, (const char *) text, (size_t) n,
                                  reason, sizeof(reason))
        != STOA_OK)
    {
        ngx_snprintf(err, errlen, "%s%Z", reason);
        goto done;
    }

    stoa_jwt_keyset_free(&jwks->keys);
    jwks->keys = keys;
    jwks->generation++;
    jwks->uniq = ngx_file_uniq(&fi);
    jwks->size = size;
    jwks->mtime = ngx_file_mtime(&fi);

    rc = NGX_OK;

done:

    if (text) {
        ngx_free(text);
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", jwks->path.data);
    }

    return rc;
}


/*
 * Called when a token names a kid the keys lack. Looking at the file is one
 * stat and happens every time; reading it happens only when it was
 * replaced (key files are switched with a rename) and at most once a
 * second, so unknown kids cannot make a worker parse the file in a loop.
 */
static void
ngx_http_api_gateway_jwks_refresh(ngx_http_api_gateway_jwks_t *jwks,
    ngx_log_t *log)
{
    u_char           err[512];
    ngx_file_info_t  fi;

    if (jwks->reloaded_once
        && ngx_current_msec - jwks->reloaded
           < NGX_HTTP_API_GATEWAY_RELOAD_INTERVAL)
    {
        return;
    }

    if (ngx_file_info(jwks->path.data, &fi) == NGX_FILE_ERROR) {
        /* logged at most once a second too */
        jwks->reloaded = ngx_current_msec;
        jwks->reloaded_once = 1;

        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "api gateway: " ngx_file_info_n " \"%s\" failed",
                      jwks->path.data);
        return;
    }

    if (ngx_file_uniq(&fi) == jwks->uniq
        && ngx_file_size(&fi) == jwks->size
        && ngx_file_mtime(&fi) == jwks->mtime)
    {
        return;
    }

    jwks->reloaded = ngx_current_msec;
    jwks->reloaded_once = 1;

    if (ngx_http_api_gateway_jwks_load(jwks, log, err, sizeof(err))
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "api gateway: keys in \"%s\" not reloaded, the "
                      "previous ones stay: %s", jwks->path.data, err);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "api gateway: reloaded %uz keys from \"%s\"",
                  jwks->keys.nkeys, jwks->path.data);
}


static void
ngx_http_api_gateway_jwks_cleanup(void *data)
{
    ngx_http_api_gateway_jwks_t  *jwks = data;

    stoa_jwt_keyset_free(&jwks->keys);
}


/* Configuration */

/* ngx_conf_set_enum_slot(), with an error that names the directive */
static char *
ngx_http_api_gateway_mode(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t        *value;
    ngx_uint_t       *mode, i;
    ngx_conf_enum_t  *e;

    mode = (ngx_uint_t *) (p + cmd->offset);

    if (*mode != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (e = cmd->post, i = 0; e[i].name.len != 0; i++) {
        if (e[i].name.len == value[1].len
            && ngx_strcasecmp(e[i].name.data, value[1].data) == 0)
        {
            *mode = e[i].value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, "
                       "it must be \"on\", \"off\" or \"optional\"",
                       &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}

static char *
ngx_http_api_gateway_jwks(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_gateway_loc_conf_t *glcf = conf;

    u_char                             err[512];
    ngx_str_t                         *value, path;
    ngx_uint_t                         i;
    ngx_pool_cleanup_t                *cln;
    ngx_http_api_gateway_jwks_t       *jwks, **jwksp;
    ngx_http_api_gateway_main_conf_t  *gmcf;

    if (glcf->jwks != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive needs a file name", &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* ngx_conf_full_name() leaves the name NUL-terminated */
    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_api_gateway_module);

    /* one key set per file, however many locations name it */
    jwksp = gmcf->jwks.elts;
    for (i = 0; i < gmcf->jwks.nelts; i++) {
        if (jwksp[i]->path.len == path.len
            && ngx_strncmp(jwksp[i]->path.data, path.data, path.len) == 0)
        {
            glcf->jwks = jwksp[i];
            return NGX_CONF_OK;
        }
    }

    jwks = ngx_pcalloc(cf->pool, sizeof(ngx_http_api_gateway_jwks_t));
    if (jwks == NULL) {
        return NGX_CONF_ERROR;
    }

    jwks->path = path;

    if (ngx_http_api_gateway_jwks_load(jwks, cf->log, err, sizeof(err))
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: cannot use \"%V\": %s",
                           &cmd->name, &path, err);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        stoa_jwt_keyset_free(&jwks->keys);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_api_gateway_jwks_cleanup;
    cln->data = jwks;

    jwksp = ngx_array_push(&gmcf->jwks);
    if (jwksp == NULL) {
        return NGX_CONF_ERROR;
    }

    *jwksp = jwks;
    glcf->jwks = jwks;

    return NGX_CONF_OK;
}


/* A string setting, kept NUL-terminated for the verification core. */
static char *
ngx_http_api_gateway_string(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    u_char     *s;
    ngx_str_t  *field, *value;

    field = (ngx_str_t *) (p + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || ngx_strlchr(value[1].data,
                                         value[1].data + value[1].len, '\0'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive needs a non-empty value",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    s = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (s == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(s, value[1].data, value[1].len);
    s[value[1].len] = '\0';

    field->data = s;
    field->len = value[1].len;

    return NGX_CONF_OK;
}


/* "any", or role names: a lower-case letter, then letters, digits, _ or -. */
static char *
ngx_http_api_gateway_roles(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_gateway_loc_conf_t *glcf = conf;

    ngx_str_t   *value, *role;
    ngx_uint_t   i, j;
    u_char       c;

    if (glcf->roles != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "any") == 0) {
        glcf->roles = NULL;
        return NGX_CONF_OK;
    }

    glcf->roles = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                   sizeof(ngx_str_t));
    if (glcf->roles == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 0
            || value[i].len > NGX_HTTP_API_GATEWAY_ROLE_MAX
            || value[i].data[0] < 'a' || value[i].data[0] > 'z'
            || ngx_strcmp(value[i].data, "any") == 0)
        {
            goto invalid;
        }

        for (j = 1; j < value[i].len; j++) {
            c = value[i].data[j];

            if ((c < 'a' || c > 'z') && (c < '0' || c > '9')
                && c != '_' && c != '-')
            {
                goto invalid;
            }
        }

        role = ngx_array_push(glcf->roles);
        if (role == NULL) {
            return NGX_CONF_ERROR;
        }

        /* configuration tokens are NUL-terminated */
        *role = value[i];
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid role \"%V\" in \"%V\" directive, a role is "
                       "a lower-case letter and up to %d more letters, "
                       "digits, \"_\" or \"-\", or \"any\" alone",
                       &value[i], &cmd->name,
                       NGX_HTTP_API_GATEWAY_ROLE_MAX - 1);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_api_gateway_cache_size_check(ngx_conf_t *cf, void *post, void *data)
{
    ngx_uint_t  *np = data;

    if (*np > NGX_HTTP_API_GATEWAY_CACHE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"api_gateway_cache_size\" directive value must "
                           "be at most %d", NGX_HTTP_API_GATEWAY_CACHE_MAX);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
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


static void *
ngx_http_api_gateway_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_api_gateway_main_conf_t  *gmcf;

    gmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_api_gateway_main_conf_t));
    if (gmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&gmcf->jwks, cf->pool, 2,
                       sizeof(ngx_http_api_gateway_jwks_t *))
        != NGX_OK
        || ngx_array_init(&gmcf->profiles, cf->pool, 4,
                          sizeof(ngx_http_api_gateway_profile_t *))
           != NGX_OK)
    {
        return NULL;
    }

    gmcf->cache_size = NGX_CONF_UNSET_UINT;

    return gmcf;
}


static void *
ngx_http_api_gateway_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_api_gateway_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_api_gateway_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->issuer = { 0, NULL };
     *     conf->audience = { 0, NULL };
     *     conf->request_id = NULL;
     *     conf->profile = NULL;
     */

    conf->mode = NGX_CONF_UNSET_UINT;
    conf->jwks = NGX_CONF_UNSET_PTR;
    conf->roles = NGX_CONF_UNSET_PTR;
    conf->leeway = NGX_CONF_UNSET;

    return conf;
}


static ngx_int_t
ngx_http_api_gateway_str_eq(ngx_str_t *a, ngx_str_t *b)
{
    if (a->data == NULL || b->data == NULL) {
        return a->data == b->data;
    }

    return a->len == b->len && ngx_strncmp(a->data, b->data, a->len) == 0;
}


static char *
ngx_http_api_gateway_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_api_gateway_loc_conf_t *prev = parent;
    ngx_http_api_gateway_loc_conf_t *conf = child;

    ngx_uint_t                         i;
    ngx_http_api_gateway_profile_t    *profile, **profiles;
    ngx_http_api_gateway_main_conf_t  *gmcf;
    ngx_http_compile_complex_value_t   ccv;

    static ngx_str_t  request_id = ngx_string("$request_id");

    ngx_conf_merge_uint_value(conf->mode, prev->mode,
                              NGX_HTTP_API_GATEWAY_OFF);
    ngx_conf_merge_ptr_value(conf->jwks, prev->jwks, NULL);
    ngx_conf_merge_ptr_value(conf->roles, prev->roles, NULL);
    ngx_conf_merge_sec_value(conf->leeway, prev->leeway, 30);

    if (conf->issuer.data == NULL) {
        conf->issuer = prev->issuer;
    }

    if (conf->audience.data == NULL) {
        conf->audience = prev->audience;
    }

    if (conf->request_id == NULL) {
        conf->request_id = prev->request_id;
    }

    if (conf->request_id == NULL) {
        conf->request_id = ngx_palloc(cf->pool,
                                      sizeof(ngx_http_complex_value_t));
        if (conf->request_id == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &request_id;
        ccv.complex_value = conf->request_id;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        /* the outer levels share it */
        prev->request_id = conf->request_id;
    }

    if (conf->mode == NGX_HTTP_API_GATEWAY_OFF) {
        return NGX_CONF_OK;
    }

    if (conf->jwks == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"api_gateway\" is enabled but no "
                           "\"api_gateway_jwks\" is set");
        return NGX_CONF_ERROR;
    }

    /* locations that verify alike share a profile, and so cache entries */

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_api_gateway_module);

    profiles = gmcf->profiles.elts;
    for (i = 0; i < gmcf->profiles.nelts; i++) {
        profile = profiles[i];

        if (profile->jwks == conf->jwks
            && profile->leeway == conf->leeway
            && ngx_http_api_gateway_str_eq(&profile->issuer, &conf->issuer)
            && ngx_http_api_gateway_str_eq(&profile->audience,
                                           &conf->audience))
        {
            conf->profile = profile;
            return NGX_CONF_OK;
        }
    }

    profile = ngx_palloc(cf->pool, sizeof(ngx_http_api_gateway_profile_t));
    if (profile == NULL) {
        return NGX_CONF_ERROR;
    }

    profile->jwks = conf->jwks;
    profile->issuer = conf->issuer;
    profile->audience = conf->audience;
    profile->leeway = conf->leeway;

    profiles = ngx_array_push(&gmcf->profiles);
    if (profiles == NULL) {
        return NGX_CONF_ERROR;
    }

    *profiles = profile;
    conf->profile = profile;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_api_gateway_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt               *h;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_api_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_api_gateway_module);

    ngx_conf_init_uint_value(gmcf->cache_size, 8192);

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_api_gateway_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_api_gateway_init_process(ngx_cycle_t *cycle)
{
    ngx_http_api_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_api_gateway_module);

    if (gmcf == NULL || gmcf->profiles.nelts == 0 || gmcf->cache_size == 0) {
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
}
