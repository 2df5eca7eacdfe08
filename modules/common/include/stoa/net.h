/* net.h - network address rules for outbound requests (SSRF guard). */
#ifndef STOA_NET_H
#define STOA_NET_H

#include "stoa/core.h"

struct sockaddr;

/* True for loopback, private, shared (CGNAT), link-local (cloud metadata
 * included), benchmarking, documentation, multicast, reserved and
 * unspecified addresses, IPv4 and IPv6 (unique and site local, Teredo,
 * 6to4 and its relay anycast, IPv4-compatible, IPv4-translated, local-use
 * NAT64, discard, ORCHID, segment routing); an IPv4-mapped
 * (::ffff:0:0/96) or NAT64 (64:ff9b::/96) address is judged by the IPv4
 * address it carries. Families other than IPv4 and IPv6 are refused. */
bool stoa_net_address_forbidden(const struct sockaddr *sa);

/* The same for a host written as an IP literal; false for names. */
bool stoa_net_literal_forbidden(const char *host);

/* True when host is in a comma-separated list (case-insensitive). */
bool stoa_net_host_listed(const char *list, const char *host);

#endif
