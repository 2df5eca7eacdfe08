/* plan.c - `stoactl plan list|seed-demo`: the catalogue from the shell. */
#include <stdio.h>
#include <string.h>

#include "stoa/audit.h"
#include "stoa/json.h"
#include "stoactl.h"

static const stoa_actor_t plan_actor = {.label = "stoactl"};

/* The demo catalogue of the dev stack; seeding twice changes nothing. */
static const struct {
    const char *key, *name, *description, *features;
    int sort;
    const char *monthly, *yearly; /* minor units, EUR; NULL: no price */
} demo[] = {
    {"free", "Free", "For trying things out",
     "{\"projects\":1,\"seats\":1,\"api_calls_per_day\":1000,\"support\":\"community\"}",
     0, NULL, NULL},
    {"pro", "Pro", "For professionals",
     "{\"projects\":20,\"seats\":3,\"api_calls_per_day\":100000,\"support\":\"email\",\"exports\":true}",
     1, "1900", "19000"},
    {"team", "Team", "For growing teams",
     "{\"projects\":200,\"seats\":25,\"api_calls_per_day\":1000000,\"support\":\"priority\",\"exports\":true,\"sso\":true}",
     2, "4900", "49000"},
};

static int seed(stoactl_t *ctl)
{
    if (stoa_db_begin(ctl->db) != STOA_OK)
        goto fail;
    int added = 0;
    for (size_t i = 0; i < STOA_ARRAY_LEN(demo); i++) {
        char sort[8];
        snprintf(sort, sizeof(sort), "%d", demo[i].sort);
        const char *p1[] = {demo[i].key, demo[i].name, demo[i].description,
                            demo[i].features, sort};
        stoa_db_result_t *res;
        if (stoa_db_exec(ctl->db, ctl->arena, STOACTL_SQL(PLAN_SEED), p1,
                         &res) != STOA_OK)
            goto fail;
        if (stoa_db_rows(res) == 0)
            continue; /* present already: left as the operator made it */
        added++;
        const char *id = stoa_db_value(res, 0, RETURNED_COL_ID);
        /* A catalogue change like the admin routes' own, on record. */
        if (stoa_audit(ctl->db, ctl->arena, &plan_actor, "plan.created", id,
                       stoa_json_pair(ctl->arena, "key", demo[i].key)) !=
            STOA_OK)
            goto fail;
        const char *amounts[] = {demo[i].monthly, demo[i].yearly};
        const char *intervals[] = {"month", "year"};
        for (int j = 0; j < 2; j++) {
            if (!amounts[j])
                continue;
            const char *p2[] = {id, amounts[j], intervals[j]};
            if (stoa_db_exec(ctl->db, NULL, STOACTL_SQL(PRICE_SEED), p2,
                             NULL) != STOA_OK)
                goto fail;
        }
    }
    if (stoa_db_commit(ctl->db) != STOA_OK)
        goto fail;
    printf("demo catalogue: %d plan(s) added\n", added);
    return 0;
fail:
    fprintf(stderr, "stoactl plan seed-demo: %s\n",
            stoa_db_last_error(ctl->db));
    stoa_db_rollback(ctl->db);
    return 1;
}

static int list(stoactl_t *ctl)
{
    stoa_db_result_t *res;
    if (stoa_db_exec(ctl->db, ctl->arena, STOACTL_SQL(PLANS_LIST), NULL,
                     &res) != STOA_OK) {
        fprintf(stderr, "stoactl plan list: %s\n", stoa_db_last_error(ctl->db));
        return 1;
    }
    printf("%-16s %-20s %-6s %-22s %s\n", "KEY", "NAME", "ACTIVE",
           "STRIPE PRODUCT", "PRICES (minor units)");
    for (int i = 0; i < stoa_db_rows(res); i++)
        printf("%-16s %-20s %-6s %-22s %s\n",
               stoa_db_value(res, i, PLANS_COL_KEY),
               stoa_db_value(res, i, PLANS_COL_NAME),
               stoa_db_value(res, i, PLANS_COL_ACTIVE)[0] == 't' ? "yes" : "no",
               stoa_db_value(res, i, PLANS_COL_STRIPE_PRODUCT_ID),
               stoa_db_value(res, i, PLANS_COL_PRICES));
    return 0;
}

int stoactl_plan(stoactl_t *ctl, int argc, char **argv)
{
    if (argc == 1 && strcmp(argv[0], "seed-demo") == 0)
        return seed(ctl);
    if (argc == 1 && strcmp(argv[0], "list") == 0)
        return list(ctl);
    fprintf(stderr, "usage: stoactl plan list|seed-demo\n");
    return 2;
}
