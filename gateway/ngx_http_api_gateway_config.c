/*
 * ngx_http_api_gateway_config.c - directives, and the main and location
 * configuration they build (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_api_gateway_config.h"


#define NGX_HTTP_API_GATEWAY_ROLE_MAX  32

/* 16M entries is some 4 GB per worker: anything above is a typo */
#define NGX_HTTP_API_GATEWAY_CACHE_MAX  (16 * 1024 * 1024)


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


static char *ngx_http_api_gateway_metrics_dir_check(ngx_conf_t *cf,
    void *post, void *data);


static ngx_conf_post_t  ngx_http_api_gateway_cache_size_post =
    { ngx_http_api_gateway_cache_size_check };
static ngx_conf_post_t  ngx_http_api_gateway_metrics_dir_post =
    { ngx_http_api_gateway_metrics_dir_check };


static ngx_conf_enum_t  ngx_http_api_gateway_modes[] = {
    { ngx_string("off"), NGX_HTTP_API_GATEWAY_OFF },
    { ngx_string("on"), NGX_HTTP_API_GATEWAY_ON },
    { ngx_string("optional"), NGX_HTTP_API_GATEWAY_OPTIONAL },
    { ngx_null_string, 0 }
};


ngx_command_t  ngx_http_api_gateway_commands[] = {

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

    { ngx_string("api_gateway_metrics_dir"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_api_gateway_main_conf_t, metrics_dir),
      &ngx_http_api_gateway_metrics_dir_post },

      ngx_null_command
};


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

    switch (ngx_http_api_gateway_jwks_get(cf, &gmcf->jwks, &path,
                                          &glcf->jwks, err, sizeof(err)))
    {
    case NGX_OK:
        return NGX_CONF_OK;

    case NGX_DECLINED:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: cannot use \"%V\": %s",
                           &cmd->name, &path, err);
        return NGX_CONF_ERROR;

    default:
        return NGX_CONF_ERROR;
    }
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


/* A role name: a lower-case letter, then letters, digits, _ or -. */
static ngx_uint_t
ngx_http_api_gateway_role_valid(ngx_str_t *name)
{
    u_char      c;
    ngx_uint_t  i;

    if (name->len == 0
        || name->len > NGX_HTTP_API_GATEWAY_ROLE_MAX
        || name->data[0] < 'a' || name->data[0] > 'z'
        || ngx_strcmp(name->data, "any") == 0)
    {
        return 0;
    }

    for (i = 1; i < name->len; i++) {
        c = name->data[i];

        if ((c < 'a' || c > 'z') && (c < '0' || c > '9')
            && c != '_' && c != '-')
        {
            return 0;
        }
    }

    return 1;
}


/* "any", or role names: a lower-case letter, then letters, digits, _ or -. */
static char *
ngx_http_api_gateway_roles(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_gateway_loc_conf_t *glcf = conf;

    ngx_str_t    *value;
    ngx_uint_t    i;
    const char  **role;

    if (glcf->roles != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "any") == 0) {
        glcf->roles = NULL;
        return NGX_CONF_OK;
    }

    glcf->roles = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                   sizeof(const char *));
    if (glcf->roles == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (!ngx_http_api_gateway_role_valid(&value[i])) {
            goto invalid;
        }

        role = ngx_array_push(glcf->roles);
        if (role == NULL) {
            return NGX_CONF_ERROR;
        }

        /* configuration tokens are NUL-terminated */
        *role = (const char *) value[i].data;
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


/*
 * The directory stoa's programs count into (stoa.conf's metrics_dir): an
 * absolute path, or "" for none. Whether it exists is a worker's concern
 * at start (it only logs): counting never stops nginx from serving.
 */
static char *
ngx_http_api_gateway_metrics_dir_check(ngx_conf_t *cf, void *post,
    void *data)
{
    ngx_str_t  *dir = data;

    if (dir->len == 0) {
        return NGX_CONF_OK;
    }

    if (dir->data[0] != '/' || dir->len >= 1024
        || ngx_strlchr(dir->data, dir->data + dir->len, '\0') != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"api_gateway_metrics_dir\" must be an absolute "
                           "path or \"\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


void *
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


void *
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


char *
ngx_http_api_gateway_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_api_gateway_main_conf_t  *gmcf = conf;

    ngx_conf_init_uint_value(gmcf->cache_size, 8192);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_api_gateway_str_eq(ngx_str_t *a, ngx_str_t *b)
{
    if (a->data == NULL || b->data == NULL) {
        return a->data == b->data;
    }

    return a->len == b->len && ngx_strncmp(a->data, b->data, a->len) == 0;
}


/*
 * The request id of error bodies: the inherited one, or $request_id
 * compiled once and shared with the outer levels.
 */
static ngx_int_t
ngx_http_api_gateway_merge_request_id(ngx_conf_t *cf,
    ngx_http_api_gateway_loc_conf_t *prev,
    ngx_http_api_gateway_loc_conf_t *conf)
{
    ngx_http_compile_complex_value_t  ccv;

    static ngx_str_t  request_id = ngx_string("$request_id");

    if (conf->request_id == NULL) {
        conf->request_id = prev->request_id;
    }

    if (conf->request_id != NULL) {
        return NGX_OK;
    }

    conf->request_id = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (conf->request_id == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &request_id;
    ccv.complex_value = conf->request_id;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the outer levels share it */
    prev->request_id = conf->request_id;

    return NGX_OK;
}


/* locations that verify alike share a profile, and so cache entries */
static ngx_http_api_gateway_profile_t *
ngx_http_api_gateway_profile(ngx_conf_t *cf,
    ngx_http_api_gateway_loc_conf_t *conf)
{
    ngx_uint_t                         i;
    ngx_http_api_gateway_profile_t    *profile, **profiles;
    ngx_http_api_gateway_main_conf_t  *gmcf;

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
            return profile;
        }
    }

    profile = ngx_palloc(cf->pool, sizeof(ngx_http_api_gateway_profile_t));
    if (profile == NULL) {
        return NULL;
    }

    profile->jwks = conf->jwks;
    profile->issuer = conf->issuer;
    profile->audience = conf->audience;
    profile->leeway = conf->leeway;

    profiles = ngx_array_push(&gmcf->profiles);
    if (profiles == NULL) {
        return NULL;
    }

    *profiles = profile;

    return profile;
}


char *
ngx_http_api_gateway_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_api_gateway_loc_conf_t *prev = parent;
    ngx_http_api_gateway_loc_conf_t *conf = child;

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

    if (ngx_http_api_gateway_merge_request_id(cf, prev, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
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

    conf->profile = ngx_http_api_gateway_profile(cf, conf);
    if (conf->profile == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
