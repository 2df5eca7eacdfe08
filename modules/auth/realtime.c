/* realtime.c - GET /v1/realtime (the caller's live channel) and POST
 * /v1/realtime/tickets (a single-use ticket for browsers).
 *
 * The pool never streams: it decides who is calling and which channels
 * that caller hears, then answers an empty 200 with X-Accel-Redirect, and
 * nginx hands the connection to its internal nchan subscriber location
 * (nginx.conf.in). The channels come only from the verified identity
 * (stoa/realtime.h), so no client can name another's channel.
 *
 * EventSource and WebSocket cannot send an Authorization header, and an
 * access token must never sit in a URL (logs, history, Referer). So a
 * browser first trades its token for a ticket (a POST with the header),
 * and opens /v1/realtime?ticket=... within REALTIME_TICKET_TTL_S. Redis
 * holds only the ticket's SHA-256, and GETDEL serves it once. */
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/kv.h"
#include "stoa/realtime.h"
#include "stoa/revoke.h"

/* Long enough to open a connection after the POST, short enough that a
 * ticket left in a log or a history is worthless. */
#define REALTIME_TICKET_TTL_S 30
#define REALTIME_TICKET_BYTES 32
/* Where nginx's subscriber location lives (nginx.conf.in: internal, so
 * only this redirect reaches it). */
#define REALTIME_SUBSCRIBER_PATH "/_stoa/realtime/sub/"
/* nchan's message ids ("1700000000:0", "[1700000000:0,...]:1"...) are
 * far shorter; the cap keeps the redirect bounded. */
#define REALTIME_LAST_EVENT_ID_MAX 200

static char *ticket_key(stoa_request_t *req, const char *ticket)
{
    uint8_t digest[STOA_SHA256_LEN];
    stoa_sha256(ticket, strlen(ticket), digest);
    char hex[2 * STOA_SHA256_LEN + 1];
    stoa_hex_encode(digest, sizeof(digest), hex);
    hex[2 * STOA_SHA256_LEN] = '\0';
    return stoa_arena_sprintf(req->arena, STOA_KEY_REALTIME_TICKET_PREFIX "%s",
                              hex);
}

int auth_realtime_ticket(stoa_request_t *req)
{
    const stoa_principal_t *p = &req->principal;
    /* The route is login-only (no API-key token gets here), so the token
     * names a login session. */
    if (!p->session_id)
        return stoa_http_fail(req, STOA_ERR_FORBIDDEN,
                              "this token has no login session");
    char *ticket = stoa_random_token(req->arena, REALTIME_TICKET_BYTES);
    char *value = stoa_arena_sprintf(req->arena, "%s %s %s", p->user_id,
                                     p->session_id, p->role);
    int rc = stoa_kv_set(stoa_request_kv(req), ticket_key(req, ticket), value,
                         strlen(value), REALTIME_TICKET_TTL_S);
    if (rc != STOA_OK)
        return STOA_AGAIN;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "ticket", ticket);
    stoa_jw_kv_integer(w, "expires_in", REALTIME_TICKET_TTL_S);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

/* Redeems a ticket into *out (its strings arena-owned). STOA_DECLINED for
 * a malformed, unknown, used or expired ticket; STOA_AGAIN when Redis
 * cannot answer. */
static int redeem_ticket(stoa_request_t *req, const char *ticket,
                         stoa_principal_t *out)
{
    /* 32 bytes in base64url without padding: 43 characters. */
    if (strlen(ticket) != stoa_b64url_encoded_len(REALTIME_TICKET_BYTES))
        return STOA_DECLINED;
    for (const char *c = ticket; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
              (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
            return STOA_DECLINED;
    char *value;
    int rc = stoa_kv_getdel(stoa_request_kv(req), req->arena,
                            ticket_key(req, ticket), &value, NULL);
    if (rc == STOA_DECLINED)
        return STOA_DECLINED;
    if (rc != STOA_OK)
        return STOA_AGAIN;
    /* "<user id> <session id> <role>", written by auth_realtime_ticket. */
    char *session = strchr(value, ' ');
    char *role = session ? strchr(session + 1, ' ') : NULL;
    if (!role)
        return STOA_DECLINED;
    *session++ = '\0';
    *role++ = '\0';
    if (!stoa_uuid_valid(value) || !stoa_uuid_valid(session) ||
        !stoa_role_valid(role))
        return STOA_DECLINED;
    memset(out, 0, sizeof(*out));
    out->present = true;
    out->user_id = value;
    out->session_id = session;
    out->role = role;
    return STOA_OK;
}

/* An nchan message id as a client echoes it back: digits, ':', ',', '[',
 * ']' and '-' (a multiplexed id), at most REALTIME_LAST_EVENT_ID_MAX
 * bytes. Nothing else may reach the redirect's query string. */
static bool last_event_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REALTIME_LAST_EVENT_ID_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || *s == ':' || *s == ',' || *s == '[' ||
              *s == ']' || *s == '-'))
            return false;
    return true;
}

/* 401 with the challenge of RFC 6750: a bare "Bearer" when no credential
 * came, error="invalid_token" for one that is bad, used or revoked. */
static int refuse_unauthenticated(stoa_request_t *req, stoa_err_t err,
                                  bool credential_sent, const char *message)
{
    stoa_http_header(req, "WWW-Authenticate",
                     credential_sent ? "Bearer error=\"invalid_token\""
                                     : "Bearer");
    return stoa_http_fail(req, err, message);
}

int auth_realtime(stoa_request_t *req)
{
    static const char *const allowed[] = {"ticket", "last_event_id", NULL};
    stoa_request_query_reject_unknown(req, allowed);
    const char *ticket = stoa_request_query(req, "ticket");
    const char *last_event_id = stoa_request_query(req, "last_event_id");
    if (last_event_id && !last_event_id_valid(last_event_id))
        stoa_request_field_error(req, "last_event_id", "invalid");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    /* nchan would answer anything else with a bare 403. */
    const char *accept = stoa_request_param(req, "HTTP_ACCEPT");
    const char *upgrade = stoa_request_param(req, "HTTP_UPGRADE");
    if (!(accept && strstr(accept, "text/event-stream")) &&
        !(upgrade && strcasecmp(upgrade, "websocket") == 0))
        return stoa_http_fail(req, STOA_ERR_INVALID_REQUEST,
                              "ask for Server-Sent Events (Accept: "
                              "text/event-stream) or a WebSocket upgrade");

    stoa_principal_t ticket_principal;
    const stoa_principal_t *p = &req->principal;
    if (p->present && ticket)
        return stoa_http_fail(req, STOA_ERR_INVALID_REQUEST,
                              "send an access token or a ticket, not both");
    if (ticket) {
        int rc = redeem_ticket(req, ticket, &ticket_principal);
        if (rc == STOA_AGAIN)
            return STOA_AGAIN;
        if (rc != STOA_OK)
            return refuse_unauthenticated(
                req, STOA_ERR_INVALID_TOKEN, true,
                "the ticket is unknown, used or expired");
        p = &ticket_principal;
    } else if (!p->present) {
        return refuse_unauthenticated(req, STOA_ERR_UNAUTHENTICATED, false,
                                      NULL);
    } else if (stoa_principal_from_api_key(p) || !p->session_id) {
        /* A key's token is for servers calling the API, not for holding
         * a user's live channel (whose session events it has none of). */
        return stoa_http_fail(req, STOA_ERR_FORBIDDEN,
                              "a token from an API key cannot open the live "
                              "channel; sign in");
    }
    /* The gateway checked the token's signature and times only: a
     * logged-out token, or a ticket minted by a session revoked since,
     * ends here. */
    req->conns.ctx = req->ctx;
    int live = stoa_revoke_check(&req->conns, req->arena, p);
    if (live == STOA_AGAIN)
        return STOA_AGAIN;
    if (live != STOA_OK)
        return refuse_unauthenticated(req, STOA_ERR_UNAUTHENTICATED, true,
                                      "the session has been revoked");

    stoa_buf_t target;
    stoa_buf_init(&target);
    stoa_buf_printf(&target, REALTIME_SUBSCRIBER_PATH "%s,%s",
                    stoa_realtime_channel_user(req->arena, p->user_id),
                    stoa_realtime_channel_session(req->arena, p->session_id));
    if (stoa_principal_has_role(p, "admin"))
        stoa_buf_printf(&target, "," STOA_REALTIME_CHANNEL_ADMIN);
    if (last_event_id)
        stoa_buf_printf(&target, "?last_event_id=%s", last_event_id);
    stoa_http_header(req, "X-Accel-Redirect", target.data);
    stoa_buf_free(&target);
    /* The stream must reach the client as it is written. */
    stoa_http_header(req, "X-Accel-Buffering", "no");
    return stoa_http_empty(req, 200);
}
