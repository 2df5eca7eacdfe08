/* mail.h - the templated-mail job (`email.send`): the one payload every
 * producer writes and stoa-jobs reads.
 *
 * A pool (or the worker itself) enqueues a mail in the transaction of the
 * change that causes it; stoa-jobs renders the template and delivers it.
 * The payload is
 *
 *   {"template": name, "to": address, "data": {...},
 *    "link": {"purpose": p, "user_id": id}}          ("link" optional)
 *
 * template: a file of modules/jobs/templates/ (the worker declines an
 * unknown one); data: the template's variables, a JSON object; link: asks
 * the worker to mint a single-use link of purpose p for that user when it
 * sends (stoa/mail_link.h: the token never sits in the outbox) and to add
 * "link", "expires_in_minutes" and "expires_in_hours" to data.
 *
 * Producers: the auth pool (verification, notices), the billing pool
 * (billing events), stoa-jobs (password reset) through stoa_mail_enqueue;
 * one statement of stoa-jobs (webhook_disabled_mail, a mail to every
 * admin) writes the same shape in SQL. Reader: stoa-jobs through
 * stoa_mail_read. */
#ifndef STOA_MAIL_H
#define STOA_MAIL_H

#include "stoa/arena.h"
#include "stoa/db.h"
#include "stoa/json.h"
#include "stoa/mail_link.h"

/* The outbox kind of a templated mail. */
#define STOA_MAIL_JOB_KIND "email.send"

typedef struct {
    const char *template_name; /* required */
    const char *to;            /* required: the recipient's address */
    const char *data_json;     /* a JSON object of our own making; NULL: {} */
    /* NULL, or a link purpose (stoa_mail_link_find) for link_user_id; the
     * purpose is also the template's name. */
    const char *link_purpose;
    const char *link_user_id;
    /* NULL, or a key that makes the enqueue idempotent: one mail per key. */
    const char *dedupe_key;
} stoa_mail_t;

/* The payload text of mail, arena-owned; NULL when it cannot be written
 * (no template or address, or a data_json that is not valid JSON). */
char *stoa_mail_payload(stoa_arena_t *arena, const stoa_mail_t *mail);

/* Enqueues mail in the caller's open transaction. Returns STOA_OK (also
 * when the dedupe key was already used), STOA_AGAIN or STOA_ERROR. */
STOA_MUSTCHECK int stoa_mail_enqueue(stoa_db_t *db, stoa_arena_t *arena,
                                     const stoa_mail_t *mail);

/* An email.send payload as read by the worker; every pointer borrowed
 * from the payload. */
typedef struct {
    const char *template_name;
    const char *to;
    const stoa_json_t *data;
    const stoa_mail_link_t *link; /* NULL: no link asked for */
    const char *link_user_id;     /* set with link */
} stoa_mail_job_t;

/* Reads payload into out: STOA_OK, or STOA_DECLINED with *why (static
 * text, for the job's error) when it lacks template, to or data, or asks
 * for an unknown link or no user. A declined mail can never be sent. */
STOA_MUSTCHECK int stoa_mail_read(const stoa_json_t *payload,
                                  stoa_mail_job_t *out, const char **why);

#endif
