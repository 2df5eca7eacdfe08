/* admin.h - handlers and statements of the admin pool. */
#ifndef ADMIN_H
#define ADMIN_H

#include "stoa/app.h"

int admin_webhooks_create(stoa_request_t *req);
int admin_webhooks_list(stoa_request_t *req);
int admin_webhooks_delete(stoa_request_t *req);
int admin_webhooks_deliveries(stoa_request_t *req);
int admin_webhooks_rotate_secret(stoa_request_t *req);
int admin_audit_log(stoa_request_t *req);
int admin_users_export(stoa_request_t *req);
int admin_users_delete(stoa_request_t *req);
int admin_users_list(stoa_request_t *req);
int admin_users_get(stoa_request_t *req);
int admin_users_patch(stoa_request_t *req);
int admin_updates_create(stoa_request_t *req);
int admin_updates_list(stoa_request_t *req);
int admin_updates_get(stoa_request_t *req);
int admin_feed_list(stoa_request_t *req);
int admin_feed_read(stoa_request_t *req);
int admin_feed_done(stoa_request_t *req);

#include "statements.h"

#endif
