/* check_principal.c - role checks on the identity the gateway passes. */
#include "check_util.h"
#include "stoa/principal.h"

static stoa_principal_t with_role(const char *role)
{
    stoa_principal_t p;
    memset(&p, 0, sizeof(p));
    p.present = true;
    p.user_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    p.role = role;
    return p;
}

static const struct {
    const char *role;
    const char *roles;
    bool allowed;
} role_cases[] = {
    {"admin", "admin finance", true},
    {"finance", "admin finance", true},
    {"client", "admin finance", false},
    {"admin", "admin", true},
    {"client", "client", true},
    {"client", NULL, true}, /* NULL: any authenticated role */
    {"admin", "  finance   admin  ", true},
    {"admin", "administrator", false},
    {"admin", "admi", false},
    {"admin", "finance,admin", false}, /* space-separated only */
    {"fin", "admin finance", false},
    {"finance", "admin finance_ro", false},
    {"admin", "", false},
    {"Admin", "admin", false},
};

START_TEST(has_role_table)
{
    stoa_principal_t p = with_role(role_cases[_i].role);
    ck_assert_msg(stoa_principal_has_role(&p, role_cases[_i].roles) ==
                      role_cases[_i].allowed,
                  "role '%s' with roles '%s' should be %s", role_cases[_i].role,
                  role_cases[_i].roles ? role_cases[_i].roles : "NULL",
                  role_cases[_i].allowed ? "allowed" : "refused");
}
END_TEST

START_TEST(missing_principal_has_no_role)
{
    stoa_principal_t p;
    memset(&p, 0, sizeof(p));
    ck_assert(!stoa_principal_has_role(&p, "admin finance"));
    ck_assert(!stoa_principal_has_role(&p, NULL));

    /* A role without the present flag is not trusted. */
    p.role = "admin";
    ck_assert(!stoa_principal_has_role(&p, "admin"));

    /* Present but no role at all. */
    p = with_role(NULL);
    ck_assert(!stoa_principal_has_role(&p, "admin"));
    ck_assert(!stoa_principal_has_role(&p, NULL));
}
END_TEST

START_TEST(role_valid)
{
    ck_assert(stoa_role_valid("client"));
    ck_assert(stoa_role_valid("finance"));
    ck_assert(stoa_role_valid("admin"));
    static const char *const bad[] = {"",     "Admin",   "admin ", " admin",
                                      "root", "clients", "fin",    "admin\n"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++)
        ck_assert_msg(!stoa_role_valid(bad[i]), "'%s' valid", bad[i]);
    ck_assert(!stoa_role_valid(NULL));
}
END_TEST

START_TEST(regression_empty_role_never_matches)
{
    /* principal.c: with trailing spaces in the roles list the scan ends
     * on an empty segment, whose length equals that of an empty role, so
     * role "" is let in. Expected: refused everywhere. */
    static const char *const lists[] = {"admin ", "admin finance  ", " "};
    stoa_principal_t p = with_role("");
    for (size_t i = 0; i < STOA_ARRAY_LEN(lists); i++)
        ck_assert_msg(!stoa_principal_has_role(&p, lists[i]),
                      "empty role allowed by '%s'", lists[i]);
}
END_TEST

START_TEST(scope_valid_table)
{
    static const struct {
        const char *scope;
        bool ok;
    } cases[] = {
        {"*", true},
        {"billing:read", true},
        {"auth:write", true},
        {"admin:*", true},
        {"analytics:read", true},
        {"billing", false},
        {"billing:", false},
        {"billing:delete", false},
        {"payments:read", false},
        {"", false},
        {":read", false},
        {"billing:read ", false},
        {"BILLING:read", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(stoa_scope_valid(cases[i].scope) == cases[i].ok,
                      "scope '%s'", cases[i].scope);
}
END_TEST

START_TEST(scope_allows_table)
{
    static const struct {
        const char *scope, *pool, *method;
        bool ok;
    } cases[] = {
        {NULL, "admin", "DELETE", true}, /* no claim: a login token */
        {"*", "admin", "DELETE", true},
        {"billing:read", "billing", "GET", true},
        {"billing:read", "billing", "HEAD", true},
        {"billing:read", "billing", "POST", false},
        {"billing:read", "auth", "GET", false},
        {"billing:write", "billing", "GET", false},
        {"billing:write", "billing", "PATCH", true},
        {"auth:read billing:*", "billing", "POST", true},
        {"auth:read billing:*", "admin", "GET", false},
        {"billingx:read", "billing", "GET", false},
        {"bill:read", "billing", "GET", false},
        {"billing:readx", "billing", "GET", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stoa_principal_t p = {0};
        p.present = true;
        p.role = "client";
        p.scope = cases[i].scope;
        ck_assert_msg(stoa_principal_scope_allows(
                          &p, cases[i].pool, cases[i].method) == cases[i].ok,
                      "scope '%s' on %s %s",
                      cases[i].scope ? cases[i].scope : "(none)",
                      cases[i].method, cases[i].pool);
    }
}
END_TEST

static Suite *principal_suite(void)
{
    Suite *s = suite_create("principal");
    TEST_CASE_OF(s, "roles", NULL, NULL, LOOP(has_role_table, role_cases),
                 ONCE(missing_principal_has_no_role), ONCE(role_valid),
                 ONCE(scope_valid_table), ONCE(scope_allows_table));

    TEST_CASE(s, "regression", NULL, NULL, regression_empty_role_never_matches);
    return s;
}

TEST_MAIN(principal_suite)
