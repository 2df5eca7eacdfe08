/* main.c - the analytics pool: start-up (its routes: routes.manifest). */
#include "analytics.h"

STOA_APP_MAIN("analytics", NULL, 0, NULL)
