/* main.c - the billing pool: wires its routes into the common skeleton. */
#include "stoa/app.h"

static const stoa_app_t billing_app = {
    .name = "billing",
    .routes = NULL,
    .nroutes = 0,
    .statements = NULL,
    .nstatements = 0,
    .init = NULL,
};

int main(int argc, char **argv)
{
    return stoa_app_main(argc, argv, &billing_app);
}
