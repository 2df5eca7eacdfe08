/* mail_link.h - mailed single-use links (email verification, password
 * reset): their purposes, the forgotten-password job, and the hash a
 * link's token is stored under.
 *
 * A link's token exists only in the mail. A pool enqueues a mail that asks
 * for a link (a purpose and a user: stoa/mail.h); stoa-jobs creates the token
 * when it sends that mail, stores only its SHA-256 (auth.email_tokens) in the
 * same transaction, and commits only once the mail is out. Nothing that grants
 * access is written to the outbox, so none sits in a database dump.
 *
 * The forgotten-password request goes one step further: it enqueues the
 * same job whether or not the address has an account, and the worker
 * decides (SPEC §4: the request takes as long either way). */
#ifndef STOA_MAIL_LINK_H
#define STOA_MAIL_LINK_H

#include "stoa/arena.h"
#include "stoa/db.h"
#include "stoa/json.h"

/* The forgotten-password job. */
#define STOA_MAIL_LINK_RESET_JOB_KIND "auth.password_reset"

typedef struct {
    const char *purpose; /* auth.email_tokens.purpose and the mail template */
    const char *path;    /* appended to public_url, then "?token=" */
    long ttl_s;
} stoa_mail_link_t;

/* "verify_email" (24 h) or "reset_password" (1 h); NULL for anything else.
 * Borrowed (static). */
const stoa_mail_link_t *stoa_mail_link_find(const char *purpose);

/* What a forgotten-password job carries; ip and request_id (for the
 * audit entry) may be NULL. */
typedef struct {
    const char *email; /* normalised */
    const char *ip;
    const char *request_id;
} stoa_mail_link_reset_t;

/* Enqueues the forgotten-password job for a normalised address, in the
 * caller's transaction: one row of the same shape for every address. */
STOA_MUSTCHECK int
stoa_mail_link_request_reset(stoa_db_t *db, stoa_arena_t *arena,
                             const stoa_mail_link_reset_t *reset);

/* Reads a forgotten-password job's payload into out (strings borrowed from
 * payload): STOA_OK, or STOA_DECLINED when it has no address. */
STOA_MUSTCHECK int stoa_mail_link_reset_read(const stoa_json_t *payload,
                                             stoa_mail_link_reset_t *out);

/* The bytea literal ("\x" then hex) of SHA-256(token), under which mailed
 * links (and the other tokens the auth pool hands out) are stored and
 * looked up. Arena-owned. */
char *stoa_mail_link_token_hash(stoa_arena_t *arena, const char *token);

#endif
