/* main.c - the admin pool: routes, statements and start-up. */
#include "admin.h"

#define ADMIN STOA_ROUTE_AUTH

static const stoa_route_t admin_routes[] = {
    {"POST", "/v1/admin/webhooks", admin_webhooks_create,
     ADMIN | STOA_ROUTE_IDEMPOTENT, "admin"},
    {"GET", "/v1/admin/webhooks", admin_webhooks_list, ADMIN, "admin"},
    {"DELETE", "/v1/admin/webhooks/{id}", admin_webhooks_delete, ADMIN, "admin"},
    {"GET", "/v1/admin/webhooks/{id}/deliveries", admin_webhooks_deliveries,
     ADMIN, "admin"},
    {"POST", "/v1/admin/webhooks/{id}/rotate-secret",
     admin_webhooks_rotate_secret, ADMIN, "admin"},
};

int main(int argc, char **argv)
{
    stoa_app_t app = {
        .name = "admin",
        .routes = admin_routes,
        .nroutes = STOA_ARRAY_LEN(admin_routes),
        .statements = admin_statements,
        .nstatements = admin_statements_len,
        .init = NULL,
    };
    return stoa_app_main(argc, argv, &app);
}
