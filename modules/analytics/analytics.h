/* analytics.h - the analytics pool's handlers (routes: routes.manifest)
 * and what they share: who sent an event batch (a user token or an ingest
 * key). */
#ifndef STOA_ANALYTICS_H
#define STOA_ANALYTICS_H

#include "stoa/app.h"

/* Ingest keys: "stoa_ik_" and 32 base64url characters (24 random bytes);
 * the first ANALYTICS_KEY_PREFIX_LEN characters are kept for display. */
#define ANALYTICS_KEY_TAG "stoa_ik_"
#define ANALYTICS_KEY_PREFIX_LEN 16
/* How long a process trusts a key it has looked up: a revoked key is
 * refused by every process within this (the contract says 1 s). */
#define ANALYTICS_KEY_CACHE_MS 500

int analytics_events_ingest(stoa_request_t *req);
int analytics_ingest_keys_create(stoa_request_t *req);
int analytics_ingest_keys_list(stoa_request_t *req);
int analytics_ingest_keys_delete(stoa_request_t *req);
int analytics_metrics(stoa_request_t *req);
int analytics_export(stoa_request_t *req);
int analytics_dashboard(stoa_request_t *req);

/* Reads ?from= and ?to= (required; RFC 3339 times or dates), recording
 * field errors; true when both are good and from is before to (compared
 * as text when both have one shape). */
bool analytics_query_range(stoa_request_t *req, const char **from,
                           const char **to);

/* STOA_OK when key (the X-Ingest-Key header's text, may be NULL) is a live
 * ingest key; STOA_DECLINED when it is not; STOA_AGAIN when Postgres
 * cannot tell. Looks in the process's cache first (ingest_keys.c). */
STOA_MUSTCHECK int analytics_ingest_key_check(stoa_request_t *req,
                                              const char *key);

#include "statements.h"

#endif
