/* main.c - the admin pool: start-up (its routes: routes.manifest). */
#include "admin.h"

int main(int argc, char **argv)
{
    stoa_app_t app = {
        .name = "admin",
        .routes = stoa_routes,
        .nroutes = stoa_routes_len,
        .statements = admin_statements,
        .nstatements = admin_statements_len,
        .init = NULL,
    };
    return stoa_app_main(argc, argv, &app);
}
