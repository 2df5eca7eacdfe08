/* check_net.c - the SSRF guard: every refused range at its first, last
 * and an inside address, the neighbours just outside it (which must pass,
 * unless they belong to the next refused range), each both as a literal
 * and as the sockaddr a resolver hands over; IPv4 carried in IPv6
 * (mapped, NAT64) judged by its IPv4 address, at the edges of both the
 * carrying prefix and every IPv4 range; and the allow-list. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "check_util.h"
#include "stoa/net.h"

/* below/above: the addresses just outside the range; NULL when that
 * neighbour is itself in a refused range (or there is none). */
static const struct {
    const char *range;
    const char *first, *inside, *last;
    const char *below, *above;
} ranges[] = {
    /* IPv4 */
    {"0.0.0.0/8", "0.0.0.0", "0.1.2.3", "0.255.255.255", NULL, "1.0.0.0"},
    {"10.0.0.0/8", "10.0.0.0", "10.20.30.40", "10.255.255.255", "9.255.255.255",
     "11.0.0.0"},
    {"100.64.0.0/10", "100.64.0.0", "100.100.1.1", "100.127.255.255",
     "100.63.255.255", "100.128.0.0"},
    {"127.0.0.0/8", "127.0.0.0", "127.0.0.1", "127.255.255.255",
     "126.255.255.255", "128.0.0.0"},
    {"169.254.0.0/16", "169.254.0.0", "169.254.169.254", "169.254.255.255",
     "169.253.255.255", "169.255.0.0"},
    {"172.16.0.0/12", "172.16.0.0", "172.20.1.1", "172.31.255.255",
     "172.15.255.255", "172.32.0.0"},
    {"192.0.0.0/24", "192.0.0.0", "192.0.0.8", "192.0.0.255", "191.255.255.255",
     "192.0.1.0"},
    {"192.0.2.0/24", "192.0.2.0", "192.0.2.55", "192.0.2.255", "192.0.1.255",
     "192.0.3.0"},
    {"192.88.99.0/24", "192.88.99.0", "192.88.99.1", "192.88.99.255",
     "192.88.98.255", "192.88.100.0"},
    {"192.168.0.0/16", "192.168.0.0", "192.168.1.1", "192.168.255.255",
     "192.167.255.255", "192.169.0.0"},
    {"198.18.0.0/15", "198.18.0.0", "198.19.0.1", "198.19.255.255",
     "198.17.255.255", "198.20.0.0"},
    {"198.51.100.0/24", "198.51.100.0", "198.51.100.7", "198.51.100.255",
     "198.51.99.255", "198.51.101.0"},
    {"203.0.113.0/24", "203.0.113.0", "203.0.113.9", "203.0.113.255",
     "203.0.112.255", "203.0.114.0"},
    {"224.0.0.0/4", "224.0.0.0", "230.1.2.3", "239.255.255.255",
     "223.255.255.255", NULL},
    {"240.0.0.0/4", "240.0.0.0", "250.0.0.1", "255.255.255.255", NULL, NULL},

    /* IPv6 */
    {"::/96", "::", "::1", "::ffff:ffff", NULL, "::1:0:0"},
    {"::ffff:0:0:0/96", "::ffff:0:0:0", "::ffff:0:a00:1", "::ffff:0:ffff:ffff",
     "::fffe:ffff:ffff:ffff", "::ffff:1:0:0"},
    {"64:ff9b:1::/48", "64:ff9b:1::", "64:ff9b:1::a00:1",
     "64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "64:ff9b:0:ffff:ffff:ffff:ffff:ffff",
     "64:ff9b:2::"},
    {"100::/64", "100::", "100::1", "100::ffff:ffff:ffff:ffff",
     "ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "100:0:0:1::"},
    {"2001::/32", "2001::", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
     "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
     "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:1::"},
    {"2001:2::/48", "2001:2::", "2001:2::1",
     "2001:2:0:ffff:ffff:ffff:ffff:ffff",
     "2001:1:ffff:ffff:ffff:ffff:ffff:ffff", "2001:2:1::"},
    {"2001:10::/28", "2001:10::", "2001:12::1",
     "2001:1f:ffff:ffff:ffff:ffff:ffff:ffff",
     "2001:f:ffff:ffff:ffff:ffff:ffff:ffff", NULL},
    {"2001:20::/28", "2001:20::", "2001:2a::1",
     "2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", NULL, "2001:30::"},
    {"2001:db8::/32", "2001:db8::", "2001:db8::1",
     "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
     "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::"},
    {"2002::/16", "2002::", "2002:c000:204::1",
     "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     "2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2003::"},
    {"3fff::/20", "3fff::", "3fff:123::1",
     "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
     "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "3fff:1000::"},
    {"5f00::/16", "5f00::", "5f00:1:2::3",
     "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     "5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "5f01::"},
    {"fc00::/7", "fc00::", "fd12:3456::1",
     "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::"},
    {"fe80::/10", "fe80::", "fe80::1",
     "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL},
    {"fec0::/10", "fec0::", "fec0::1",
     "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL, NULL},
    {"ff00::/8", "ff00::", "ff02::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     NULL, NULL},
};

/* The guard's answer for a literal given as the resolver would hand it
 * over (a sockaddr of its family). */
static bool sockaddr_forbidden(const char *text)
{
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    memset(&in4, 0, sizeof(in4));
    memset(&in6, 0, sizeof(in6));
    in4.sin_family = AF_INET;
    in6.sin6_family = AF_INET6;
    if (inet_pton(AF_INET, text, &in4.sin_addr) == 1)
        return stoa_net_address_forbidden((struct sockaddr *)&in4);
    ck_assert_msg(inet_pton(AF_INET6, text, &in6.sin6_addr) == 1,
                  "%s is not an address", text);
    return stoa_net_address_forbidden((struct sockaddr *)&in6);
}

START_TEST(range_table)
{
    const char *edges[] = {ranges[_i].first, ranges[_i].inside,
                           ranges[_i].last};
    for (size_t k = 0; k < STOA_ARRAY_LEN(edges); k++) {
        ck_assert_msg(stoa_net_literal_forbidden(edges[k]),
                      "%s (in %s) allowed", edges[k], ranges[_i].range);
        ck_assert_msg(sockaddr_forbidden(edges[k]),
                      "%s (in %s) allowed as a sockaddr", edges[k],
                      ranges[_i].range);
    }
    const char *outside[] = {ranges[_i].below, ranges[_i].above};
    for (size_t k = 0; k < STOA_ARRAY_LEN(outside); k++)
        if (outside[k]) {
            ck_assert_msg(!stoa_net_literal_forbidden(outside[k]),
                          "%s (next to %s) refused", outside[k],
                          ranges[_i].range);
            ck_assert_msg(!sockaddr_forbidden(outside[k]),
                          "%s (next to %s) refused as a sockaddr", outside[k],
                          ranges[_i].range);
        }
}
END_TEST

/* The two prefixes judged by the IPv4 address they carry, at their edges:
 * the first and last carried addresses (0.0.0.0 and 255.255.255.255, both
 * refused), a public one inside (allowed), and a private IPv4 address in
 * the /96 just below and just above the prefix, which is not read as IPv4
 * there (and those blocks belong to no refused range). */
static const struct {
    const char *prefix;
    const char *first, *last, *public_inside, *below, *above;
} carriers[] = {
    {"::ffff:0:0/96", "::ffff:0.0.0.0", "::ffff:255.255.255.255",
     "::ffff:93.184.216.34", "::fffe:a00:1", "::1:0:a00:1"},
    {"64:ff9b::/96", "64:ff9b::0.0.0.0", "64:ff9b::255.255.255.255",
     "64:ff9b::93.184.216.34", "64:ff9a:ffff:ffff:ffff:ffff:a00:1",
     "64:ff9b::1:a00:1"},
};

START_TEST(carrier_prefix_edges)
{
    const char *refused[] = {carriers[_i].first, carriers[_i].last};
    for (size_t k = 0; k < STOA_ARRAY_LEN(refused); k++) {
        ck_assert_msg(stoa_net_literal_forbidden(refused[k]), "%s allowed",
                      refused[k]);
        ck_assert_msg(sockaddr_forbidden(refused[k]),
                      "%s allowed as a sockaddr", refused[k]);
    }
    const char *allowed[] = {carriers[_i].public_inside, carriers[_i].below,
                             carriers[_i].above};
    for (size_t k = 0; k < STOA_ARRAY_LEN(allowed); k++) {
        ck_assert_msg(!stoa_net_literal_forbidden(allowed[k]),
                      "%s (by %s) refused", allowed[k], carriers[_i].prefix);
        ck_assert_msg(!sockaddr_forbidden(allowed[k]),
                      "%s (by %s) refused as a sockaddr", allowed[k],
                      carriers[_i].prefix);
    }
}
END_TEST

/* Every refused range again, carried in the two IPv6 forms: its first and
 * last IPv4 addresses are refused there too, and (where the neighbour is
 * public) the address just outside passes. */
START_TEST(v4_ranges_carried_in_ipv6)
{
    if (strchr(ranges[_i].range, ':'))
        return; /* an IPv6 row */
    static const char *const prefixes[] = {"::ffff:", "64:ff9b::"};
    for (size_t f = 0; f < STOA_ARRAY_LEN(prefixes); f++) {
        char text[64];
        const char *in[] = {ranges[_i].first, ranges[_i].last};
        for (size_t k = 0; k < STOA_ARRAY_LEN(in); k++) {
            snprintf(text, sizeof(text), "%s%s", prefixes[f], in[k]);
            ck_assert_msg(stoa_net_literal_forbidden(text), "%s allowed", text);
            ck_assert_msg(sockaddr_forbidden(text), "%s allowed as sockaddr",
                          text);
        }
        const char *out[] = {ranges[_i].below, ranges[_i].above};
        for (size_t k = 0; k < STOA_ARRAY_LEN(out); k++) {
            if (!out[k])
                continue;
            snprintf(text, sizeof(text), "%s%s", prefixes[f], out[k]);
            ck_assert_msg(!stoa_net_literal_forbidden(text), "%s refused",
                          text);
            ck_assert_msg(!sockaddr_forbidden(text), "%s refused as sockaddr",
                          text);
        }
    }
}
END_TEST

/* IPv4 inside IPv6: refused exactly when the IPv4 address is. */
static const struct {
    const char *v4;
    bool refused;
} carried[] = {
    {"0.0.0.0", true},         {"10.0.0.1", true},
    {"100.64.0.1", true},      {"127.0.0.1", true},
    {"169.254.169.254", true}, {"172.16.0.1", true},
    {"192.0.0.8", true},       {"192.168.1.1", true},
    {"198.18.0.1", true},      {"198.19.255.255", true},
    {"224.0.0.1", true},       {"255.255.255.255", true},
    {"8.8.8.8", false},        {"1.1.1.1", false},
    {"198.20.0.0", false},     {"93.184.216.34", false},
};

START_TEST(ipv4_carried_in_ipv6)
{
    static const char *const prefixes[] = {"::ffff:", "64:ff9b::"};
    for (size_t f = 0; f < STOA_ARRAY_LEN(prefixes); f++) {
        char text[64];
        snprintf(text, sizeof(text), "%s%s", prefixes[f], carried[_i].v4);
        ck_assert_msg(stoa_net_literal_forbidden(text) == carried[_i].refused,
                      "%s: want %s", text,
                      carried[_i].refused ? "refused" : "allowed");
        /* The same through the address form the resolver hands out. */
        struct sockaddr_in6 in6;
        memset(&in6, 0, sizeof(in6));
        in6.sin6_family = AF_INET6;
        ck_assert_int_eq(inet_pton(AF_INET6, text, &in6.sin6_addr), 1);
        ck_assert(stoa_net_address_forbidden((struct sockaddr *)&in6) ==
                  carried[_i].refused);
    }
    /* And as plain IPv4. */
    ck_assert(stoa_net_literal_forbidden(carried[_i].v4) ==
              carried[_i].refused);
}
END_TEST

START_TEST(public_addresses_pass)
{
    static const char *const ok[] = {
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82b::200e",
        "2001:4860:4860::8888",
        "64:ff9b::808:808",
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(ok); i++)
        ck_assert_msg(!stoa_net_literal_forbidden(ok[i]), "%s refused", ok[i]);
    /* Names are not literals: the resolver's answer is checked instead. */
    ck_assert(!stoa_net_literal_forbidden("hooks.example.com"));
    ck_assert(!stoa_net_literal_forbidden("localhost"));
}
END_TEST

START_TEST(other_families_refused)
{
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    ck_assert(stoa_net_address_forbidden((struct sockaddr *)&un));
}
END_TEST

START_TEST(allow_list)
{
    const char *list = "127.0.0.1, localhost,hooks.internal";
    ck_assert(stoa_net_host_listed(list, "127.0.0.1"));
    ck_assert(stoa_net_host_listed(list, "LOCALHOST"));
    ck_assert(stoa_net_host_listed(list, "hooks.internal"));
    ck_assert(!stoa_net_host_listed(list, "127.0.0.2"));
    ck_assert(!stoa_net_host_listed(list, "hooks.internal.evil.net"));
    ck_assert(!stoa_net_host_listed(list, "local"));
    ck_assert(!stoa_net_host_listed("", "localhost"));
}
END_TEST

static Suite *net_suite(void)
{
    Suite *s = suite_create("net");
    TEST_CASE_OF(s, "ssrf", NULL, NULL, LOOP(range_table, ranges),
                 LOOP(carrier_prefix_edges, carriers),
                 LOOP(v4_ranges_carried_in_ipv6, ranges),
                 LOOP(ipv4_carried_in_ipv6, carried),
                 ONCE(public_addresses_pass), ONCE(other_families_refused),
                 ONCE(allow_list));
    return s;
}

TEST_MAIN(net_suite)
