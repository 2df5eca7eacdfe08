/* net.h - network address rules for outbound requests (SSRF guard). */
#ifndef STOA_NET_H
#define STOA_NET_H

#include "stoa/core.h"

struct sockaddr;

/* True for loopback, private, shared (CGNAT), link-local (cloud metadata
 * included), multicast, reserved and unspecified addresses, IPv4 and IPv6,
 * including IPv4 mapped into IPv6. */
bool stoa_net_address_forbidden(const struct sockaddr *sa);

/* The same for a host written as an IP literal; false for names. */
bool stoa_net_literal_forbidden(const char *host);

/* True when host is in a comma-separated list (case-insensitive). */
bool stoa_net_host_listed(const char *list, const char *host);

#endif
