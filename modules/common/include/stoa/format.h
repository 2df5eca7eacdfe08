/* format.h - shapes of values that several programs accept: email
 * addresses, RFC 3339 times and UTF-8 text. One rule each, so an account
 * made with stoactl is found by the API's login, every route reads times
 * alike, and no text Postgres would refuse reaches a statement. */
#ifndef STOA_FORMAT_H
#define STOA_FORMAT_H

#include "stoa/arena.h"
#include "stoa/core.h"

/* The stored form of an address: trimmed, lower case. NULL when it is not
 * a plausible address (3..254 bytes, one '@', a local part of 1..64, a
 * domain without empty labels, no spaces, quotes, angle brackets, commas,
 * semicolons or backslashes). Dotless domains (admin@localhost) pass.
 * Arena-owned. */
char *stoa_email_normalise(stoa_arena_t *arena, const char *in);

/* "2027-01-31T12:00:00Z" exactly (UTC, no fraction, no other offset), or
 * also "2027-01-31" when date_only_ok, and a time that exists: month
 * 01..12, a day the month has (Feb 29 in leap years only), year 0001 and
 * later, hour 00..23, minute 00..59, second 00..59 or the leap second
 * 23:59:60. A value that passes is always taken by Postgres as a date or
 * timestamptz, so callers answer 400 for the rest and never a 500. */
bool stoa_time_shape_valid(const char *s, bool date_only_ok);

/* True when len bytes of s are well-formed UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). */
bool stoa_utf8_valid(const char *s, size_t len);

/* Client text we keep or show back (a User-Agent stored with a session):
 * each ill-formed UTF-8 sequence becomes U+FFFD, tabs become spaces, other
 * C0 and C1 control characters and DEL are dropped, and the result is cut
 * to at most max_bytes on a character boundary. NULL when in is NULL or
 * nothing is left. Arena-owned. */
char *stoa_text_sanitise(stoa_arena_t *arena, const char *in, size_t max_bytes);

#endif
