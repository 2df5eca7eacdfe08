/* user.c - `stoactl user create|set-role|suspend|activate`: accounts
 * made and changed by the operator. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "stoa/accounts.h"
#include "stoa/audit.h"
#include "stoa/crypto.h"
#include "stoa/events.h"
#include "stoa/format.h"
#include "stoa/json.h"
#include "stoa/password.h"
#include "stoa/principal.h"
#include "stoactl.h"

static const stoa_actor_t stoactl_actor = {.label = "stoactl"};

static int usage(void)
{
    fprintf(stderr, "usage: stoactl user create --email E --password-file F "
                    "[--role client|finance|admin] [--name N]\n"
                    "       stoactl user set-role --email E --role R\n"
                    "       stoactl user suspend|activate --email E\n");
    return 2;
}

static int create(stoactl_t *ctl, int argc, char **argv)
{
    const char *email = NULL, *password_file = NULL, *role = "client",
               *name = NULL;
    for (int i = 0; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--email") == 0)
            email = argv[++i];
        else if (strcmp(argv[i], "--password-file") == 0)
            password_file = argv[++i];
        else if (strcmp(argv[i], "--role") == 0)
            role = argv[++i];
        else if (strcmp(argv[i], "--name") == 0)
            name = argv[++i];
        else
            return usage();
    }
    if (!email || !password_file)
        return usage();
    if (!stoa_role_valid(role)) {
        fprintf(stderr, "stoactl: --role must be client, finance or admin\n");
        return 2;
    }
    char *normal = stoa_email_normalise(ctl->arena, email);
    if (!normal) {
        fprintf(stderr, "stoactl: --email is not a valid address\n");
        return 2;
    }
    size_t plen;
    char *password = stoa_arena_read_file(ctl->arena, password_file,
                                          STOACTL_FILE_MAX, &plen);
    if (!password) {
        fprintf(stderr, "stoactl: cannot read %s\n", password_file);
        return 1;
    }
    while (plen && (password[plen - 1] == '\n' || password[plen - 1] == '\r'))
        password[--plen] = '\0';
    if (!name) {
        name = stoa_arena_strndup(ctl->arena, normal,
                                  (size_t)(strchr(normal, '@') - normal));
    }
    /* The same rules as sign-up: an operator-made account is no weaker. */
    const char *refusal = stoa_password_refusal(password, normal, name);
    if (refusal) {
        fprintf(stderr,
                "stoactl: the password is refused (%s): at least %d "
                "characters, not a common password, not containing "
                "the address, and hard to guess\n",
                refusal, STOA_PASSWORD_MIN_CHARS);
        stoa_wipe(password, plen);
        return 2;
    }
    stoa_password_params_t params = {
        (uint32_t)ctl->conf->argon2_memory_kib,
        (uint32_t)ctl->conf->argon2_iterations,
        (uint32_t)ctl->conf->argon2_parallelism,
    };
    char hash[STOA_PASSWORD_HASH_MAX];
    int rc = stoa_password_hash(&params, password, hash);
    stoa_wipe(password, plen);
    if (rc != STOA_OK) {
        fprintf(stderr, "stoactl: password hashing failed\n");
        return 1;
    }
    if (stoa_db_begin(ctl->db) != STOA_OK) {
        fprintf(stderr, "stoactl: cannot reach Postgres: %s\n",
                stoa_db_last_error(ctl->db));
        return 1;
    }
    /* Operator-made accounts are verified: the operator vouches for the
     * address. The audit entry is written in the same transaction. */
    const char *p1[] = {normal, name, hash, role};
    stoa_db_result_t *res;
    rc = stoa_db_exec(ctl->db, ctl->arena, STOACTL_SQL(USER_CREATE), p1, &res);
    if (rc != STOA_OK) {
        fprintf(stderr, "stoactl: insert failed: %s\n",
                stoa_db_last_error(ctl->db));
        stoa_db_rollback(ctl->db);
        return 1;
    }
    if (stoa_db_rows(res) == 0) {
        stoa_db_rollback(ctl->db);
        fprintf(stderr, "stoactl: a user with email %s already exists\n",
                normal);
        return 3;
    }
    const char *id = stoa_db_value(res, 0, RETURNED_COL_ID);
    char *details = stoa_json_pair(ctl->arena, "role", role);
    if (stoa_audit(ctl->db, ctl->arena, &stoactl_actor, "user.created", id,
                   details) != STOA_OK ||
        stoa_event_user(ctl->db, ctl->arena, STOA_EVENT_USER_CREATED, id) !=
            STOA_OK ||
        stoa_db_commit(ctl->db) != STOA_OK) {
        fprintf(stderr, "stoactl: write failed: %s\n",
                stoa_db_last_error(ctl->db));
        stoa_db_rollback(ctl->db);
        return 1;
    }
    printf("created user %s (%s) with role %s\n", normal, id, role);
    return 0;
}

/* One change of an account by the operator: the same library call as
 * the admin pool's (stoa/accounts.h), so the audit entries, the ended
 * sessions and keys, the revocation markers and the cache drop are the
 * same whoever makes it. */
static int apply_change(stoactl_t *ctl, const char *normal, const char *role,
                        const char *status, int *nrevoked)
{
    stoa_account_change_t change = {
        .email = normal, .role = role, .status = status};
    stoa_account_result_t result;
    int rc = stoa_account_change(&ctl->conns, ctl->arena, &stoactl_actor,
                                 &change, &result);
    if (rc == STOA_DECLINED &&
        result.refusal == STOA_ACCOUNT_REFUSED_LAST_ADMIN) {
        fprintf(stderr,
                "stoactl: %s is the last active admin; make "
                "another admin first\n",
                normal);
        return 3;
    }
    if (rc == STOA_DECLINED) {
        fprintf(stderr, "stoactl: no user with email %s\n", normal);
        return 1;
    }
    if (rc != STOA_OK) {
        fprintf(stderr, "stoactl: write failed: %s\n",
                stoa_db_last_error(ctl->db));
        return 1;
    }
    if (result.redis_warning)
        fprintf(stderr, "stoactl: warning: Redis unreachable; the jobs "
                        "worker's minute re-sync sets the markers and the "
                        "cached profile expires on its own\n");
    *nrevoked = result.sessions_revoked;
    return 0;
}

/* --email E [--role R]: the only options of set-role, suspend, activate. */
static int parse_email_role(stoactl_t *ctl, int argc, char **argv,
                            bool want_role, char **normal, const char **role)
{
    const char *email = NULL;
    *role = NULL;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--email") == 0)
            email = argv[i + 1];
        else if (want_role && strcmp(argv[i], "--role") == 0)
            *role = argv[i + 1];
        else
            return usage();
    }
    if (!email || (want_role && !*role) || argc % 2)
        return usage();
    if (want_role && !stoa_role_valid(*role)) {
        fprintf(stderr, "stoactl: --role must be client, finance or admin\n");
        return 2;
    }
    *normal = stoa_email_normalise(ctl->arena, email);
    return *normal ? 0 : usage();
}

/* A role lives in access tokens: changing it revokes every session of
 * the user (API-key exchanges included; the keys themselves stay and
 * trade for tokens with the new role), so no token with the old role
 * outlives the change by more than the revocation check's second. */
static int set_role(stoactl_t *ctl, int argc, char **argv)
{
    char *normal;
    const char *role;
    int n, rc = parse_email_role(ctl, argc, argv, true, &normal, &role);
    if (rc)
        return rc;
    if ((rc = apply_change(ctl, normal, role, NULL, &n)) != 0)
        return rc;
    printf("user %s is now %s; %d session(s) revoked\n", normal, role, n);
    return 0;
}

/* Suspension ends every session and revokes every API key: a reactivated
 * account signs in again and makes new keys. */
static int set_status(stoactl_t *ctl, int argc, char **argv, bool suspend)
{
    char *normal;
    const char *role;
    int n, rc = parse_email_role(ctl, argc, argv, false, &normal, &role);
    if (rc)
        return rc;
    const char *status = suspend ? "suspended" : "active";
    if ((rc = apply_change(ctl, normal, NULL, status, &n)) != 0)
        return rc;
    printf("user %s is now %s; %d session(s) revoked\n", normal, status, n);
    return 0;
}

int stoactl_user(stoactl_t *ctl, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "create") == 0)
        return create(ctl, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "set-role") == 0)
        return set_role(ctl, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "suspend") == 0)
        return set_status(ctl, argc - 1, argv + 1, true);
    if (argc >= 1 && strcmp(argv[0], "activate") == 0)
        return set_status(ctl, argc - 1, argv + 1, false);
    return usage();
}
