/* main.c - the admin pool: start-up (its routes: routes.manifest). */
#include "admin.h"

STOA_APP_MAIN("admin", admin_statements, admin_statements_len, NULL)
