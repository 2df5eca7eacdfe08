/* net.c - address classification for the outbound SSRF guard. */
#include "stoa/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static bool v4_forbidden(uint32_t a)
{
    return (a >> 24) == 0 ||                 /* 0.0.0.0/8 unspecified */
           (a >> 24) == 10 ||                /* private */
           (a >> 24) == 127 ||               /* loopback */
           (a >> 22) == (100u << 2 | 1) ||   /* 100.64.0.0/10 shared */
           (a >> 16) == (169u << 8 | 254) || /* link-local, metadata */
           (a >> 20) == (172u << 4 | 1) ||   /* 172.16.0.0/12 */
           (a >> 16) == (192u << 8 | 168) || /* private */
           (a >> 28) == 14 ||                /* 224.0.0.0/4 multicast */
           (a >> 28) == 15;                  /* reserved, broadcast */
}

bool stoa_net_address_forbidden(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return v4_forbidden(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family != AF_INET6)
        return true;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(b, mapped, 12) == 0)
        return v4_forbidden((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                            (uint32_t)b[14] << 8 | b[15]);
    static const uint8_t zero[15] = {0};
    if (memcmp(b, zero, 15) == 0)
        return true;                     /* :: and ::1 */
    return b[0] == 0xff ||               /* multicast */
           (b[0] & 0xfe) == 0xfc ||      /* fc00::/7 unique local */
           (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* fe80::/10 */
           (b[0] == 0x20 && b[1] == 0x02) ||          /* 6to4 tunnels */
           (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b);
}

bool stoa_net_literal_forbidden(const char *host)
{
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    memset(&in4, 0, sizeof(in4));
    memset(&in6, 0, sizeof(in6));
    if (inet_pton(AF_INET, host, &in4.sin_addr) == 1) {
        in4.sin_family = AF_INET;
        return stoa_net_address_forbidden((struct sockaddr *)&in4);
    }
    if (inet_pton(AF_INET6, host, &in6.sin6_addr) == 1) {
        in6.sin6_family = AF_INET6;
        return stoa_net_address_forbidden((struct sockaddr *)&in6);
    }
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
