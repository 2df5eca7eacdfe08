/* statements.h - the operator CLI's statements (statements.c) by id, and
 * the columns each reading statement returns. Migrations keep their own
 * ad hoc bookkeeping (stoa_db_query: CREATE TABLE cannot be prepared). */
#ifndef STOACTL_STATEMENTS_H
#define STOACTL_STATEMENTS_H

#include "stoa/db.h"

enum {
    STOACTL_SQL_USER_CREATE,
    STOACTL_SQL_JOBS_LIST,
    STOACTL_SQL_JOB_RETRY,
    STOACTL_SQL_PLAN_SEED,
    STOACTL_SQL_PRICE_SEED,
    STOACTL_SQL_PLANS_LIST,
    STOACTL_SQL_WAL_MARK,
    STOACTL_SQL_COUNT_USERS,
    STOACTL_SQL_COUNT_SUBSCRIPTIONS,
    STOACTL_SQL_COUNT_OUTBOX,
    STOACTL_SQL_MFA_SECRETS,
    STOACTL_SQL_MFA_RESEAL,
    STOACTL_SQL_COUNT
};

/* The statement of an id: STOACTL_SQL(JOBS_LIST). */
#define STOACTL_SQL(id) (&stoactl_statements[STOACTL_SQL_##id])

extern const stoa_db_statement_t stoactl_statements[STOACTL_SQL_COUNT];
extern const size_t stoactl_statements_len;

/* STOACTL_SQL_USER_CREATE, _PLAN_SEED: the row's id. */
enum { RETURNED_COL_ID };
/* STOACTL_SQL_JOBS_LIST */
enum {
    JOBS_COL_ID,
    JOBS_COL_KIND,
    JOBS_COL_STATE,
    JOBS_COL_ATTEMPTS,
    JOBS_COL_MAX_ATTEMPTS,
    JOBS_COL_RUN_AT,
    JOBS_COL_LAST_ERROR
};
/* STOACTL_SQL_JOB_RETRY */
enum { RETRY_COL_KIND };
/* STOACTL_SQL_PLANS_LIST */
enum {
    PLANS_COL_KEY,
    PLANS_COL_NAME,
    PLANS_COL_ACTIVE,
    PLANS_COL_STRIPE_PRODUCT_ID,
    PLANS_COL_PRICES
};
/* STOACTL_SQL_MFA_SECRETS */
enum { MFA_COL_USER_ID, MFA_COL_SEALED };

#endif
