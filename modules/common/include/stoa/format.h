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

/* "2027-01-31T12:00:00Z" exactly, or also "2027-01-31" when date_only_ok.
 * Only the shape is checked: Postgres checks the calendar. */
bool stoa_time_shape_valid(const char *s, bool date_only_ok);

#endif
