/* statements.c - every prepared query of the operator CLI. */
#include "stoactl.h"

/* The state of an outbox job as the jobs commands show and filter it. */
#define JOB_STATE                                                              \
    "CASE WHEN done_at IS NOT NULL THEN 'done' WHEN dead_at IS NOT NULL "      \
    "THEN 'dead' WHEN locked_until >= now() THEN 'running' ELSE 'queued' END"

const stoa_db_statement_t stoactl_statements[STOACTL_SQL_COUNT] = {
    /* Operator-made accounts are verified: the operator vouches for the
     * address. */
    [STOACTL_SQL_USER_CREATE] =
        {"ctl_user_create",
         "INSERT INTO auth.users (email, name, password_hash, role, "
         "email_verified_at) VALUES ($1, $2, $3, $4, now()) ON CONFLICT "
         "(lower(email)) DO NOTHING RETURNING id",
         4},
    [STOACTL_SQL_JOBS_LIST] =
        {"ctl_jobs_list",
         "SELECT id, kind, " JOB_STATE
         " AS state, attempts, max_attempts, " STOA_DB_TS(
             "run_at") ", coalesce(last_error, '') FROM jobs.outbox o "
                       "WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR " JOB_STATE
                       " = $2) ORDER BY id DESC LIMIT $3::int",
         3},
    /* A dead (or waiting) job runs again now, with a fresh attempt
     * budget; a running one is left to its worker. */
    [STOACTL_SQL_JOB_RETRY] =
        {"ctl_job_retry",
         "UPDATE jobs.outbox SET dead_at = NULL, attempts = 0, run_at = now(), "
         "locked_by = NULL, locked_until = NULL WHERE id = $1::bigint AND "
         "done_at IS NULL AND (locked_until IS NULL OR locked_until < now()) "
         "RETURNING kind",
         1},
    [STOACTL_SQL_PLAN_SEED] =
        {"ctl_plan_seed",
         "INSERT INTO billing.plans (key, name, description, features, "
         "sort_order) VALUES ($1, $2, $3, $4::jsonb, $5::int) ON CONFLICT (key) "
         "DO NOTHING RETURNING id",
         5},
    [STOACTL_SQL_PRICE_SEED] =
        {"ctl_price_seed",
         "INSERT INTO billing.prices (plan_id, amount, currency, interval) "
         "VALUES ($1::uuid, $2::bigint, 'eur', $3)",
         3},
    [STOACTL_SQL_PLANS_LIST] =
        {"ctl_plans_list",
         "SELECT p.key, p.name, p.active, coalesce(p.stripe_product_id, '-'), "
         "coalesce(string_agg(pr.amount || ' ' || pr.currency || '/' || "
         "pr.interval || CASE WHEN pr.active THEN '' ELSE ' (inactive)' END, "
         "', ' ORDER BY pr.amount), '') FROM billing.plans p LEFT JOIN "
         "billing.prices pr ON pr.plan_id = p.id GROUP BY p.id ORDER BY "
         "p.sort_order, p.key",
         0},
    /* stoactl restore: a transaction with an id, so a commit record newer
     * than any target time is in the WAL (replay to a time stops at the
     * first commit after it). */
    [STOACTL_SQL_WAL_MARK] = {"ctl_wal_mark", "SELECT txid_current()", 0},
    /* stoactl backup check, on the restored copy. */
    [STOACTL_SQL_COUNT_USERS] = {"ctl_count_users",
                                 "SELECT count(*) FROM auth.users", 0},
    [STOACTL_SQL_COUNT_SUBSCRIPTIONS] =
        {"ctl_count_subscriptions",
         "SELECT count(*) FROM billing.subscriptions", 0},
    [STOACTL_SQL_COUNT_OUTBOX] = {"ctl_count_outbox",
                                  "SELECT count(*) FROM jobs.outbox", 0},
    /* stoactl mfa reseal: every sealed TOTP secret, locked until the
     * transaction re-seals them. */
    [STOACTL_SQL_MFA_SECRETS] = {"ctl_mfa_secrets",
                                 "SELECT user_id, secret_sealed FROM "
                                 "auth.mfa_totp ORDER BY user_id FOR UPDATE",
                                 0},
    [STOACTL_SQL_MFA_RESEAL] = {"ctl_mfa_reseal",
                                "UPDATE auth.mfa_totp SET secret_sealed = "
                                "$2::bytea WHERE user_id = $1::uuid",
                                2},
};
const size_t stoactl_statements_len = STOA_ARRAY_LEN(stoactl_statements);
