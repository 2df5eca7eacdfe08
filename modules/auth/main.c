/* main.c - the auth pool: wires its routes into the common skeleton. */
#include "stoa/app.h"

static const stoa_app_t auth_app = {
    .name = "auth",
    .routes = NULL,
    .nroutes = 0,
    .statements = NULL,
    .nstatements = 0,
    .init = NULL,
};

int main(int argc, char **argv)
{
    return stoa_app_main(argc, argv, &auth_app);
}
