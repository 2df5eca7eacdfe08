/*
 * ngx_http_api_gateway_config.h - the gateway's directives and the
 * configuration they build (gateway/README.md lists them).
 *
 * Every directive merges from http to server to location as usual. A
 * location that verifies tokens gets a profile: everything a verification
 * depends on (key set, issuer, audience, leeway). Locations that verify
 * alike share one, so a token verified for one is a cache hit for the
 * others, and a token verified for one profile is never taken from the
 * cache for another (the profile's address tags the entries).
 *
 * Bad values fail the configuration with a message naming the directive;
 * strings the verification core reads are kept NUL-terminated. Everything
 * here lives in the configuration's pool.
 */

#ifndef NGX_HTTP_API_GATEWAY_CONFIG_H
#define NGX_HTTP_API_GATEWAY_CONFIG_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_api_gateway_cache.h"
#include "ngx_http_api_gateway_jwks.h"


#define NGX_HTTP_API_GATEWAY_OFF       0
#define NGX_HTTP_API_GATEWAY_ON        1
#define NGX_HTTP_API_GATEWAY_OPTIONAL  2


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
    /* the directory of the host's metrics files; empty: not counted */
    ngx_str_t                        metrics_dir;
} ngx_http_api_gateway_main_conf_t;


typedef struct {
    ngx_uint_t                       mode;
    ngx_http_api_gateway_jwks_t     *jwks;
    ngx_str_t                        issuer;
    ngx_str_t                        audience;
    /* of const char * (NUL-terminated); NULL: any role */
    ngx_array_t                     *roles;
    time_t                           leeway;
    ngx_http_complex_value_t        *request_id;
    /* NULL when mode is off */
    ngx_http_api_gateway_profile_t  *profile;
} ngx_http_api_gateway_loc_conf_t;


extern ngx_module_t   ngx_http_api_gateway_module;
extern ngx_command_t  ngx_http_api_gateway_commands[];


/* The http module context's configuration callbacks. */
void *ngx_http_api_gateway_create_main_conf(ngx_conf_t *cf);
char *ngx_http_api_gateway_init_main_conf(ngx_conf_t *cf, void *conf);
void *ngx_http_api_gateway_create_loc_conf(ngx_conf_t *cf);
char *ngx_http_api_gateway_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

#endif /* NGX_HTTP_API_GATEWAY_CONFIG_H */
