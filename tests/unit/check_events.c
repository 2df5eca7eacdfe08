/* check_events.c - the table of domain-event names. */
#include "check_util.h"
#include "stoa/core.h"
#include "stoa/events.h"

/* lower-case words joined by one dot each side: "noun.verb_phrase" */
static bool well_formed(const char *name)
{
    const char *dot = strchr(name, '.');
    if (!dot || dot == name || !dot[1] || strchr(dot + 1, '.'))
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_' || *p == '.'))
            return false;
    return true;
}

START_TEST(table_entries_are_complete_and_unique)
{
    ck_assert_uint_gt(stoa_events_len, 0);
    for (size_t i = 0; i < stoa_events_len; i++) {
        const stoa_event_t *e = &stoa_events[i];
        ck_assert_msg(e->name && well_formed(e->name), "entry %zu: bad name",
                      i);
        ck_assert_msg(e->meaning && *e->meaning, "%s: no meaning", e->name);
        ck_assert_msg(e->data == STOA_EVENT_DATA_USER ||
                          e->data == STOA_EVENT_DATA_SUBSCRIPTION ||
                          e->data == STOA_EVENT_DATA_INVOICE ||
                          e->data == STOA_EVENT_DATA_ENTITLEMENTS,
                      "%s: no data kind", e->name);
        ck_assert_ptr_eq(stoa_event_find(e->name), e);
        for (size_t j = i + 1; j < stoa_events_len; j++)
            ck_assert_msg(strcmp(e->name, stoa_events[j].name) != 0,
                          "%s listed twice", e->name);
    }
}
END_TEST

START_TEST(every_constant_is_in_the_table)
{
    static const char *const names[] = {
        STOA_EVENT_USER_CREATED,   STOA_EVENT_USER_UPDATED,
        STOA_EVENT_USER_DELETED,   STOA_EVENT_SUBSCRIPTION_UPDATED,
        STOA_EVENT_INVOICE_PAID,   STOA_EVENT_INVOICE_PAYMENT_FAILED,
        STOA_EVENT_USER_SUSPENDED, STOA_EVENT_ENTITLEMENTS_CHANGED};
    ck_assert_uint_eq(STOA_ARRAY_LEN(names), stoa_events_len);
    for (size_t i = 0; i < STOA_ARRAY_LEN(names); i++)
        ck_assert_msg(stoa_event_find(names[i]), "%s not in the table",
                      names[i]);
    ck_assert_str_eq(stoa_event_find("user.created")->name, "user.created");
    ck_assert_int_eq(stoa_event_find("invoice.paid")->data,
                     STOA_EVENT_DATA_INVOICE);
    ck_assert_int_eq(stoa_event_find("subscription.updated")->data,
                     STOA_EVENT_DATA_SUBSCRIPTION);
    ck_assert_int_eq(stoa_event_find("user.created")->data,
                     STOA_EVENT_DATA_USER);
    ck_assert_int_eq(stoa_event_find("entitlements.changed")->data,
                     STOA_EVENT_DATA_ENTITLEMENTS);
}
END_TEST

START_TEST(unknown_names_are_not_found)
{
    ck_assert_ptr_null(stoa_event_find(NULL));
    ck_assert_ptr_null(stoa_event_find(""));
    ck_assert_ptr_null(stoa_event_find(STOA_EVENT_ALL));
    ck_assert_ptr_null(stoa_event_find("user.created "));
    ck_assert_ptr_null(stoa_event_find("User.Created"));
    /* Stripe's own event names are not ours. */
    ck_assert_ptr_null(stoa_event_find("customer.subscription.updated"));
}
END_TEST

TEST_MAIN_ONE_CASE("events", NULL, NULL, table_entries_are_complete_and_unique,
                   every_constant_is_in_the_table, unknown_names_are_not_found)
