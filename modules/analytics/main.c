/* main.c - the analytics pool: start-up (its routes: routes.manifest). */
#include "analytics.h"

int main(int argc, char **argv)
{
    stoa_app_t app = {
        .name = "analytics",
        .routes = stoa_routes,
        .nroutes = stoa_routes_len,
        .statements = NULL,
        .nstatements = 0,
        .init = NULL,
    };
    return stoa_app_main(argc, argv, &app);
}
