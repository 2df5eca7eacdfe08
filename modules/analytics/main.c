/* main.c - the analytics pool: start-up (its routes: routes.manifest). */
#include "analytics.h"

STOA_APP_MAIN("analytics", analytics_statements, analytics_statements_len, NULL)
