/* statements.h - the admin pool's statements (statements.c) by id, and
 * the columns each reading statement returns, in its SELECT or RETURNING
 * order. */
#ifndef ADMIN_STATEMENTS_H
#define ADMIN_STATEMENTS_H

#include "stoa/db.h"

enum {
    ADMIN_SQL_WEBHOOK_INSERT,
    ADMIN_SQL_WEBHOOK_LIST,
    ADMIN_SQL_WEBHOOK_DELETE,
    ADMIN_SQL_WEBHOOK_ROTATE,
    ADMIN_SQL_WEBHOOK_EXISTS,
    ADMIN_SQL_WEBHOOK_DELIVERIES,
    ADMIN_SQL_AUDIT_LOG,
    ADMIN_SQL_USERS_LIST,
    ADMIN_SQL_USERS_LIST_BY_EMAIL,
    ADMIN_SQL_USER_DETAIL,
    ADMIN_SQL_COUNT
};

/* The statement of an id: ADMIN_SQL(WEBHOOK_LIST). */
#define ADMIN_SQL(id) (&admin_statements[ADMIN_SQL_##id])

extern const stoa_db_statement_t admin_statements[ADMIN_SQL_COUNT];
extern const size_t admin_statements_len;

/* ADMIN_SQL_WEBHOOK_INSERT */
enum { WEBHOOK_INSERT_COL_ID, WEBHOOK_INSERT_COL_CREATED_AT };
/* ADMIN_SQL_WEBHOOK_LIST */
enum {
    WEBHOOK_COL_ID,
    WEBHOOK_COL_URL,
    WEBHOOK_COL_DESCRIPTION,
    WEBHOOK_COL_EVENTS, /* a JSON array */
    WEBHOOK_COL_CREATED_AT,
    WEBHOOK_COL_DISABLED_AT,
    WEBHOOK_COL_DISABLED_REASON,
    WEBHOOK_COL_FAILING_SINCE,
    WEBHOOK_COL_LAST_SUCCESS_AT,
    WEBHOOK_COL_CURSOR_US /* the keyset cursor's time */
};
/* ADMIN_SQL_WEBHOOK_ROTATE */
enum { ROTATE_COL_PREVIOUS_VALID_UNTIL };
/* ADMIN_SQL_WEBHOOK_DELIVERIES */
enum {
    DELIVERY_COL_ID,
    DELIVERY_COL_EVENT_ID,
    DELIVERY_COL_EVENT_TYPE,
    DELIVERY_COL_ATTEMPT,
    DELIVERY_COL_AT,
    DELIVERY_COL_STATUS,
    DELIVERY_COL_LATENCY_MS,
    DELIVERY_COL_ERROR
};
/* ADMIN_SQL_AUDIT_LOG */
enum {
    AUDIT_COL_ID,
    AUDIT_COL_AT,
    AUDIT_COL_ACTOR_ID,
    AUDIT_COL_ACTOR,
    AUDIT_COL_ACTION,
    AUDIT_COL_TARGET_ID,
    AUDIT_COL_IP,
    AUDIT_COL_REQUEST_ID,
    AUDIT_COL_DETAILS /* a JSON object */
};
/* ADMIN_SQL_USERS_LIST, _USERS_LIST_BY_EMAIL, and the first columns of
 * ADMIN_SQL_USER_DETAIL */
enum {
    USER_COL_ID,
    USER_COL_EMAIL,
    USER_COL_NAME,
    USER_COL_ROLE,
    USER_COL_STATUS,
    USER_COL_CREATED_AT,
    USER_COL_EMAIL_VERIFIED_AT,
    USER_COL_PLAN,                /* the current subscription's plan key */
    USER_COL_SUBSCRIPTION_STATUS, /* and its status */
    USER_COL_CURSOR_US,           /* the keyset cursor's time */
    /* ADMIN_SQL_USER_DETAIL only */
    USER_COL_SESSIONS,       /* live login sessions */
    USER_COL_LAST_LOGIN_AT,  /* from the audit log */
    USER_COL_LAST_LOGIN_IP,
    USER_COL_MFA_ENABLED,
    USER_COL_API_KEYS        /* live API keys */
};

#endif
