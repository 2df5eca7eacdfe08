/* updates.h - product updates: who an audience is, and the jobs that
 * deliver an update, shared by the admin pool (which counts the audience
 * and queues the fan-out when an admin sends an update) and stoa-jobs
 * (which writes the recipients in batches and sends their mails).
 *
 * An update goes to the accounts that are active and match its audience
 * when it is sent; accounts created later do not receive it. Both
 * programs build their statements from the predicates below, so the count
 * shown to the admin and the rows written are the same set. */
#ifndef STOA_UPDATES_H
#define STOA_UPDATES_H

#include <stdbool.h>

/* Outbox kinds. updates.fanout: {"update_id", "after"} ("after" absent on
 * the first batch: the last user id of the previous one). updates.mail:
 * {"update_id", "user_id"}, one per recipient who wants product mail. */
#define STOA_UPDATES_FANOUT_KIND "updates.fanout"
#define STOA_UPDATES_MAIL_KIND "updates.mail"

/* The audience kinds, as the members of `audience` name them. */
typedef enum {
    STOA_AUDIENCE_USER_IDS,
    STOA_AUDIENCE_ROLE,
    STOA_AUDIENCE_PLAN,
    STOA_AUDIENCE_ALL,
} stoa_audience_kind_t;

/* The members, indexed by kind; NULL-terminated. */
extern const char *const stoa_audience_members[];

/* The kind named by the one member of audience `name`; false for any
 * other name. */
bool stoa_audience_kind(const char *name, stoa_audience_kind_t *out);

/* Predicates over auth.users aliased `u`, one per kind, each given the
 * SQL expression of its value: a uuid[] (ids), a role (text), a plan key
 * (text: a user whose current subscription is live on that plan), or a
 * text that must be NULL (all). */
#define STOA_AUDIENCE_SQL_USER_IDS(v) "u.id = ANY (" v ")"
#define STOA_AUDIENCE_SQL_ROLE(v) "u.role = " v
#define STOA_AUDIENCE_SQL_PLAN(v)                                              \
    "EXISTS (SELECT 1 FROM billing.subscriptions s JOIN billing.prices pr "    \
    "ON pr.stripe_price_id = s.stripe_price_id JOIN billing.plans pl ON "      \
    "pl.id = pr.plan_id WHERE s.user_id = u.id AND s.status IN ('trialing', "  \
    "'active', 'past_due') AND pl.key = " v ")"
#define STOA_AUDIENCE_SQL_ALL(v) "(" v ") IS NULL"
/* Who can receive anything at all. */
#define STOA_AUDIENCE_SQL_ACTIVE "u.status = 'active'"

/* Most ids one update may name; larger audiences are a role, a plan or
 * everyone. */
#define STOA_AUDIENCE_MAX_IDS 1000

#endif
