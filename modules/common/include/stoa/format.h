/* format.h - shapes of values that several programs accept: email
 * addresses and RFC 3339 times. One rule each, so an account made with
 * stoactl is found by the API's login, and every route reads times alike. */
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

#endif
