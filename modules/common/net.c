/* net.c - address classification for the outbound SSRF guard.
 *
 * Two tables of refused prefixes (IANA special-purpose registries, RFC
 * 6890 and successors) and one rule for IPv6 forms that carry an IPv4
 * address: those are judged by the address they carry, so a private IPv4
 * target cannot slip through as ::ffff:10.0.0.1 or 64:ff9b::10.0.0.1. */
#include "stoa/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

typedef struct {
    uint32_t base;
    unsigned bits;
} v4_range_t;

/* Never a public webhook receiver. */
static const v4_range_t v4_refused[] = {
    {0x00000000u, 8},  /* 0.0.0.0/8 "this network", unspecified */
    {0x0a000000u, 8},  /* 10.0.0.0/8 private */
    {0x64400000u, 10}, /* 100.64.0.0/10 shared address space (CGNAT) */
    {0x7f000000u, 8},  /* 127.0.0.0/8 loopback */
    {0xa9fe0000u, 16}, /* 169.254.0.0/16 link-local, cloud metadata */
    {0xac100000u, 12}, /* 172.16.0.0/12 private */
    {0xc0000000u, 24}, /* 192.0.0.0/24 IETF protocol assignments */
    {0xc0000200u, 24}, /* 192.0.2.0/24 documentation */
    {0xc0586300u, 24}, /* 192.88.99.0/24 6to4 relay anycast (deprecated):
                        * a tunnel into IPv6 we do not get to check */
    {0xc0a80000u, 16}, /* 192.168.0.0/16 private */
    {0xc6120000u, 15}, /* 198.18.0.0/15 benchmarking (often internal) */
    {0xc6336400u, 24}, /* 198.51.100.0/24 documentation */
    {0xcb007100u, 24}, /* 203.0.113.0/24 documentation */
    {0xe0000000u, 4},  /* 224.0.0.0/4 multicast */
    {0xf0000000u, 4},  /* 240.0.0.0/4 reserved, broadcast */
};

typedef struct {
    uint8_t prefix[16];
    unsigned bits;
} v6_range_t;

static const v6_range_t v6_refused[] = {
    /* ::/96 IPv4-compatible (deprecated), with :: and ::1 */
    {{0}, 96},
    /* ::ffff:0:0:0/96 IPv4-translated (SIIT): a translator hands it to
     * the IPv4 address it carries, which is never a public receiver's
     * published address */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96},
    /* 64:ff9b:1::/48 local-use IPv4/IPv6 translation */
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48},
    /* 100::/64 discard-only */
    {{0x01, 0x00}, 64},
    /* 2001::/32 Teredo: the tunnel endpoint is an IPv4 address we do not
     * get to check */
    {{0x20, 0x01}, 32},
    /* 2001:2::/48 benchmarking, like 198.18.0.0/15 */
    {{0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48},
    /* 2001:10::/28 ORCHID (deprecated) and 2001:20::/28 ORCHIDv2:
     * identifiers, never routed as destinations */
    {{0x20, 0x01, 0x00, 0x10}, 28},
    {{0x20, 0x01, 0x00, 0x20}, 28},
    /* 2001:db8::/32 documentation */
    {{0x20, 0x01, 0x0d, 0xb8}, 32},
    /* 2002::/16 6to4, same reason as Teredo */
    {{0x20, 0x02}, 16},
    /* 3fff::/20 documentation (the second block) */
    {{0x3f, 0xff, 0x00}, 20},
    /* 5f00::/16 segment routing identifiers, local to an operator */
    {{0x5f, 0x00}, 16},
    /* fc00::/7 unique local */
    {{0xfc}, 7},
    /* fe80::/10 link-local */
    {{0xfe, 0x80}, 10},
    /* fec0::/10 site-local (deprecated, still routed inside some sites) */
    {{0xfe, 0xc0}, 10},
    /* ff00::/8 multicast */
    {{0xff}, 8},
};

/* IPv6 prefixes whose last 32 bits are an IPv4 address reached through
 * them: ::ffff:0:0/96 (IPv4-mapped) and 64:ff9b::/96 (NAT64). */
static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
static const uint8_t v4_nat64[12] = {0x00, 0x64, 0xff, 0x9b};

static bool v4_forbidden(uint32_t a)
{
    for (size_t i = 0; i < STOA_ARRAY_LEN(v4_refused); i++) {
        uint32_t mask = ~0u << (32 - v4_refused[i].bits);
        if ((a & mask) == v4_refused[i].base)
            return true;
    }
    return false;
}

static bool v6_in(const uint8_t a[16], const v6_range_t *r)
{
    unsigned whole = r->bits / 8, rest = r->bits % 8;
    if (memcmp(a, r->prefix, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == r->prefix[whole];
}

static bool v6_forbidden(const uint8_t b[16])
{
    if (memcmp(b, v4_mapped, 12) == 0 || memcmp(b, v4_nat64, 12) == 0)
        return v4_forbidden((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                            (uint32_t)b[14] << 8 | b[15]);
    for (size_t i = 0; i < STOA_ARRAY_LEN(v6_refused); i++)
        if (v6_in(b, &v6_refused[i]))
            return true;
    return false;
}

bool stoa_net_address_forbidden(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return v4_forbidden(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family != AF_INET6)
        return true;
    return v6_forbidden(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
}

/* Parsed into the address types themselves, never into a sockaddr read
 * back through a struct sockaddr pointer: with the stores in sight, the
 * compiler may assume the two struct types do not alias and read a stale
 * family (which refused every literal in optimised builds). */
bool stoa_net_literal_forbidden(const char *host)
{
    struct in_addr in4;
    struct in6_addr in6;
    if (inet_pton(AF_INET, host, &in4) == 1)
        return v4_forbidden(ntohl(in4.s_addr));
    if (inet_pton(AF_INET6, host, &in6) == 1)
        return v6_forbidden(in6.s6_addr);
    return false;
}

bool stoa_net_host_listed(const char *list, const char *host)
{
    size_t hlen = strlen(host);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n && n == hlen && strncasecmp(p, host, n) == 0)
            return true;
        p += n;
    }
    return false;
}
