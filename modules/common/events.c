/* events.c - the table of domain events. */
#include "stoa/events.h"

#include <string.h>

#include "stoa/core.h"

const stoa_event_t stoa_events[] = {
    {STOA_EVENT_USER_CREATED, "an account was registered",
     STOA_EVENT_DATA_USER_ID},
    {STOA_EVENT_USER_UPDATED, "a user changed their profile",
     STOA_EVENT_DATA_USER_ID},
    {STOA_EVENT_USER_DELETED, "an account was erased at its owner's request",
     STOA_EVENT_DATA_USER_ID},
    {STOA_EVENT_SUBSCRIPTION_UPDATED,
     "a subscription was created, changed, canceled or nears its trial end",
     STOA_EVENT_DATA_STRIPE_OBJECT},
    {STOA_EVENT_INVOICE_PAID, "an invoice was paid",
     STOA_EVENT_DATA_STRIPE_OBJECT},
    {STOA_EVENT_INVOICE_PAYMENT_FAILED, "an invoice's payment failed",
     STOA_EVENT_DATA_STRIPE_OBJECT},
};
const size_t stoa_events_len = STOA_ARRAY_LEN(stoa_events);

const stoa_event_t *stoa_event_find(const char *name)
{
    for (size_t i = 0; name && i < stoa_events_len; i++)
        if (strcmp(stoa_events[i].name, name) == 0)
            return &stoa_events[i];
    return NULL;
}
