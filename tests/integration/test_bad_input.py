"""End-to-end tests of bad input (SPEC §3: bad input never gets a 500),
through nginx over TLS: header text stored sanitised (User-Agent), impossible
calendar dates refused by name, Postgres data exceptions answered 400, and a
table-driven sweep of every route of every pool with hostile headers, query
strings, path segments and JSON bodies.

The sweep's table is checked against the pools' route tables
(modules/*/main.c) and the nginx locations, so a new route cannot be left out.

Run from the repository root:
    STOA_BIN_DIR=$PWD/bin python3 -m unittest tests/integration/test_bad_input.py -v
"""

import json
import os
import re
import secrets
import time
import unittest
import urllib.parse
import uuid

import billinglib as bl
from authlib import SourceClient, query_json
from harness import POOLS, REPO, StackTestCase, free_port

OPEN_LIMITS = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000",
               "STOA_RATE_API": "10000r/s", "STOA_BURST_API": "10000"}
WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)
RANDOM_ID = "5b0c8f4e-3f0a-4c52-9d7e-1f2a3b4c5d6e"
# What the pools keep of a User-Agent (bytes, after sanitising).
USER_AGENT_MAX = 512


def quote_bytes(raw):
    """Percent-encodes raw bytes for a query string or a path segment."""
    return urllib.parse.quote_from_bytes(raw, safe="")


# --- the sweep's table ---------------------------------------------------------
#
# One row per route: method, path pattern, whose token it is called with
# (anon, client, finance, admin, or fresh: a session of its own per request,
# for a route that ends the session), the base body (None: no body), flags,
# the query keys the route reads (with their kind), and its JSON fields (with
# their kind). The base request is harmless and gives the same answer each
# time; every hostile variant is the base with one thing changed.

IDEMPOTENT = "idempotent"
BODY = "body"  # reads a JSON body (415 / invalid_json apply)

PAGED = {"limit": "limit", "cursor": "cursor"}
FINANCE_QUERY = dict(PAGED, status="word", plan="word", **{"from": "time", "to": "time"})


def route(method, path, role, body=None, flags=(), query=None, fields=None):
    return {"method": method, "path": path, "role": role, "body": body,
            "flags": set(flags), "query": query or {}, "fields": fields or {}}


def sweep_routes(user_email, password, webhook_id):
    rows = []
    for pool in POOLS:
        rows.append(route("GET", f"/v1/{pool}/healthz", "anon"))
        rows.append(route("GET", f"/v1/{pool}/readyz", "anon"))
    rows += [
        route("GET", "/healthz", "anon"),
        # auth
        route("POST", "/v1/auth/register", "anon",
              {"email": user_email, "password": password, "name": "Sweep"},
              (BODY, IDEMPOTENT), fields={"email": "str", "password": "str", "name": "str"}),
        route("POST", "/v1/auth/verify-email", "anon", {"token": "not-a-token"}, (BODY,),
              fields={"token": "str"}),
        route("POST", "/v1/auth/login", "anon", {"email": user_email, "password": password},
              (BODY,), fields={"email": "str", "password": "str"}),
        route("POST", "/v1/auth/refresh", "anon", {"refresh_token": "not-a-token"}, (BODY,),
              fields={"refresh_token": "str"}),
        route("POST", "/v1/auth/logout", "fresh"),
        route("GET", "/v1/auth/sessions", "client"),
        route("DELETE", "/v1/auth/sessions", "client"),
        route("DELETE", "/v1/auth/sessions/{id}", "client"),
        route("POST", "/v1/auth/password/forgot", "anon", {"email": "nobody@example.com"},
              (BODY,), fields={"email": "str"}),
        route("POST", "/v1/auth/password/reset", "anon",
              {"token": "not-a-token", "password": password}, (BODY,),
              fields={"token": "str", "password": "str"}),
        route("POST", "/v1/auth/password/change", "client", {}, (BODY,),
              fields={"current_password": "str", "new_password": "str"}),
        route("GET", "/v1/me", "client"),
        route("PATCH", "/v1/me", "client", {"name": "Sweep"}, (BODY,),
              fields={"name": "str", "notification_prefs": "object"}),
        route("DELETE", "/v1/me", "client", {}, (BODY,), fields={"password": "str"}),
        route("GET", "/v1/me/export", "client"),
        route("GET", "/.well-known/jwks.json", "anon"),
        route("POST", "/v1/auth/mfa/totp/enroll", "client"),
        route("POST", "/v1/auth/mfa/totp/confirm", "client", {}, (BODY,), fields={"code": "str"}),
        route("DELETE", "/v1/auth/mfa/totp", "client", {}, (BODY,),
              fields={"code": "str", "password": "str"}),
        route("POST", "/v1/auth/mfa/verify", "anon", {"mfa_token": "not-a-token", "code": "123456"},
              (BODY,), fields={"mfa_token": "str", "code": "str", "recovery_code": "str"}),
        route("POST", "/v1/auth/api-keys", "client", {}, (BODY, IDEMPOTENT),
              fields={"name": "str", "scopes": "array", "expires_at": "time"}),
        route("GET", "/v1/auth/api-keys", "client"),
        route("DELETE", "/v1/auth/api-keys/{id}", "client"),
        # Not a wrong key as base: failures are throttled per address (429).
        route("POST", "/v1/auth/token", "anon", {}, (BODY,),
              fields={"grant_type": "str", "api_key": "str"}),
        # billing
        route("GET", "/v1/billing/plans", "anon"),
        route("POST", "/v1/billing/checkout", "client", {}, (BODY, IDEMPOTENT),
              fields={"price_id": "str", "success_url": "str", "cancel_url": "str"}),
        route("POST", "/v1/billing/portal", "client"),
        route("GET", "/v1/billing/subscription", "client"),
        route("POST", "/v1/billing/subscription/cancel", "client"),
        route("GET", "/v1/billing/invoices", "client", query=PAGED),
        route("GET", "/v1/billing/entitlements", "client"),
        route("POST", "/v1/billing/webhooks/stripe", "anon", {"id": "evt_sweep"}),
        route("POST", "/v1/admin/plans", "admin", {}, (BODY, IDEMPOTENT),
              fields={"key": "str", "name": "str", "description": "str", "features": "object",
                      "active": "bool", "sort_order": "int"}),
        route("PATCH", "/v1/admin/plans/{id}", "admin", {}, (BODY,)),
        route("POST", "/v1/admin/plans/{id}/prices", "admin", {}, (BODY, IDEMPOTENT),
              fields={"amount": "amount", "currency": "str", "interval": "str"}),
        route("POST", "/v1/admin/plans/{id}/sync", "admin"),
        route("GET", "/v1/admin/billing/subscriptions", "finance", query=FINANCE_QUERY),
        route("GET", "/v1/admin/billing/invoices", "finance", query=FINANCE_QUERY),
        # admin
        route("POST", "/v1/admin/webhooks", "admin", {}, (BODY, IDEMPOTENT),
              fields={"url": "str", "events": "array", "description": "str"}),
        route("GET", "/v1/admin/webhooks", "admin", query=PAGED),
        route("DELETE", "/v1/admin/webhooks/{id}", "admin"),
        route("GET", "/v1/admin/webhooks/" + webhook_id + "/deliveries", "admin",
              query={"limit": "limit", "cursor": "serial"}),
        route("POST", "/v1/admin/webhooks/{id}/rotate-secret", "admin",
              {"previous_valid_for_s": 60}, (BODY,), fields={"previous_valid_for_s": "int"}),
        route("GET", "/v1/admin/audit-log", "admin",
              query={"limit": "limit", "cursor": "serial", "actor": "uuid", "target": "uuid",
                     "action": "word", "from": "time", "to": "time"}),
        route("GET", "/v1/admin/users/{id}/export", "admin"),
        route("DELETE", "/v1/admin/users/{id}", "admin"),
        route("GET", "/v1/admin/users", "finance",
              query=dict(PAGED, email="word", role="word", status="word", plan="word",
                         created_from="time", created_to="time")),
        route("GET", "/v1/admin/users/{id}", "finance"),
        route("PATCH", "/v1/admin/users/{id}", "admin", {}, (BODY,),
              fields={"role": "str", "status": "str"}),
        # Served by the analytics and admin pools as they grow: whatever
        # they answer, hostile input must not turn it into a 500.
        # Anonymous: a malformed X-Ingest-Key is refused like none (401); a
        # token with a key is 400 by contract, and bad items are rejected
        # by index in a 202 (test_analytics).
        route("POST", "/v1/analytics/events", "anon", {"events": [{"event": "sweep"}]}),
        route("GET", "/v1/analytics/metrics", "finance",
              query={"event": "word", "interval": "word", "from": "time", "to": "time"}),
        route("GET", "/v1/analytics/dashboard", "admin", query={"from": "time", "to": "time"}),
        route("GET", "/v1/analytics/export", "admin",
              query={"event": "word", "from": "time", "to": "time"}),
        route("POST", "/v1/admin/ingest-keys", "admin", {"name": "sweep"}, (BODY, IDEMPOTENT),
              fields={"name": "str"}),
        route("GET", "/v1/admin/ingest-keys", "admin", query=PAGED),
        route("DELETE", "/v1/admin/ingest-keys/{id}", "admin"),
        # product updates
        route("POST", "/v1/admin/updates", "admin",
              {"title": "Sweep", "body": "b", "audience": {"role": "finance"}},
              (BODY, IDEMPOTENT), fields={"title": "str", "body": "str", "audience": "object",
                                          "action_required": "bool"}),
        route("GET", "/v1/admin/updates", "admin", query=PAGED),
        route("GET", "/v1/admin/updates/{id}", "admin"),
        route("GET", "/v1/updates", "client", query=dict(PAGED, unread="word")),
        route("POST", "/v1/updates/{id}/read", "client"),
        route("POST", "/v1/updates/{id}/done", "client"),
    ]
    return rows


# Header values kept as sanitised text or ignored: the answer must be the
# base answer.
SANITISED_HEADERS = [
    ("User-Agent", b"Mozilla\xff\xfe"),
    ("User-Agent", b"half \xe2\x82 seq \xf0\x9f\x98 end \xc0\xaf \xed\xa0\x80"),
    ("User-Agent", b"ctl\x01\x08\x1b[31m\x7f\xc2\x9b"),
    ("User-Agent", "\u00e9".encode() * 4000),
    ("X-Request-Id", b"\xff\xfe\x01"),
    ("X-Ingest-Key", b"stoa_ik_\xff\xfe"),
]
BAD_IDEMPOTENCY_KEYS = [b"\xff\xfe", b"two words", b"k" * 300]
BAD_STRIPE_SIGNATURES = [b"t=\xff,v1=\xfe", b"t=99999999999999999999999,v1=00", b"v1=" + b"a" * 5000]
BAD_CONTENT_TYPES = [b"application/json\xff", b"\xff\xfe", b"text/plain"]

BAD_QUERY = {
    "limit": ["abc", "0", "101", "-1", "1.5", "1e2", "99999999999999999999", "", "%ff", "%00",
              "%2B1"],
    "cursor": ["junk", "%ff%fe", "1_not-a-uuid", "_" + RANDOM_ID,
               "99999999999999999999_" + RANDOM_ID, "-5_" + RANDOM_ID, "%00"],
    "serial": ["junk", "0", "-1", "1.5", "99999999999999999999", "%ff", "%00"],
    "time": ["2026-02-30", "2026-13-01", "2025-02-29", "2026-00-10", "2026-04-31",
             "2026-01-01T24:00:00Z", "2026-01-01T12:60:00Z", "2026-01-01T12:00:61Z",
             "2026-01-01T12:00:00+25:00", "0000-01-01", "yesterday", "%ff%fe"],
    "word": ["%ff%fe", "%c0%af", "%ed%a0%80", "x" * 300],
    "uuid": ["not-a-uuid", RANDOM_ID[:-1] + "z", RANDOM_ID + "0", "%ff%fe", "1234"],
}
# One value per kind, sent to routes that do not read the key: ignored.
IGNORED_QUERY = "limit=%ff&cursor=%ff%fe&from=2026-02-30&to=2026-13-45&plan=%ff&status=%fe"

BAD_PATH_IDS = [quote_bytes(b"\xff\xfe"), "x" * 300, RANDOM_ID[:-1] + "z", "%00"]

BAD_VALUES = {
    "str": [12345, 1.5, -1, 1e300, 99999999999999999999, True, {}, [], "x" * 70000],
    "time": [12345, True, "2099-13-45T99:99:99Z", "2099-02-29T00:00:00Z", "2099-04-31T10:00:00Z",
             "2099-01-01T24:00:00Z", "2099-01-01T10:60:00Z", "2099-01-01T10:00:60Z",
             "2099-01-01T10:00:00+99:00", "x" * 70000],
    "int": ["12", 1.5, 1e300, 99999999999999999999, -99999999999999999999, -9999999999, True, []],
    "amount": ["12", 1.5, 1e300, 99999999999999999999, -1, -99999999999999999999, True],
    "bool": ["true", 1, [], {}],
    "array": ["x", 1, {}, True, [1.5], ["x" * 70000]],
    "object": ["x", 1, [], True],
}
# (raw body, the error code it must get; None: any answer but a 5xx).
BAD_BODIES = [
    (b'{"name":"\xff\xfe"}', "invalid_json"),
    (b'{"\xc0\xaf":1}', "invalid_json"),
    (b'{"name":"a\\u0000b"}', "invalid_json"),
    (b'{"n":1e99999}', ("invalid_json", "invalid_request")),
    (b'[' * 40 + b']' * 40, "invalid_json"),
    (b'[1,2,3]', "invalid_request"),
    (b'{"a":', "invalid_json"),
    # The parser decodes a lone surrogate escape as "?": valid text.
    (b'{"name":"\\ud800"}', None),
]


class BadInputCase(StackTestCase):
    """One stack with a client, a finance and an admin account."""

    @classmethod
    def setUpClass(cls):
        # Stripe is a closed port: calls fail fast (503), never hang.
        cls.stack_env = dict(OPEN_LIMITS, STOA_STRIPE_API_BASE=f"http://127.0.0.1:{free_port()}",
                             STOA_STRIPE_SECRET_KEY="sk_test_" + secrets.token_hex(8),
                             STOA_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
        super().setUpClass()
        try:
            cls._accounts()
        except BaseException:
            cls._failed = True
            raise

    @classmethod
    def _accounts(cls):
        stack = cls.stack
        cls.client_email = bl.unique_email("bad-input")
        resp = stack.client.request("POST", "/v1/auth/register", body={
            "email": cls.client_email, "password": bl.GOOD_PASSWORD, "name": "Bad Input"})
        if resp.status != 201:
            raise RuntimeError(f"register: {resp!r}")
        cls.client_id = resp.json["user"]["id"]
        cls.client_token = cls.login(cls.client_email)
        finance_email = bl.unique_email("bad-input-finance")
        proc = bl.create_user(stack, finance_email, "finance")
        if proc.returncode != 0:
            raise RuntimeError(f"stoactl user create (finance): {proc.stderr}")
        cls.finance_token = cls.login(finance_email)
        admin_email = bl.unique_email("bad-input-admin")
        proc = bl.create_user(stack, admin_email, "admin")
        if proc.returncode != 0:
            raise RuntimeError(f"stoactl user create (admin): {proc.stderr}")
        cls.admin_token = cls.login(admin_email)

    @classmethod
    def login(cls, email, user_agent=None):
        headers = {"User-Agent": user_agent} if user_agent is not None else None
        resp = cls.stack.client.request("POST", "/v1/auth/login", headers=headers, body={
            "email": email, "password": bl.GOOD_PASSWORD})
        if resp.status != 200:
            raise AssertionError(f"login {email}: {resp!r}")
        return resp.json["access_token"]

    def call(self, method, path, token=None, body=None, headers=None, raw=False):
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        return self.stack.client.request(method, path, body=body, headers=hdrs, raw=raw)

    def assert_fields(self, resp, *names):
        """400 invalid_request naming (at least) these fields."""
        details = self.assert_error(resp, 400, "invalid_request")
        fields = details.get("fields")
        self.assertIsInstance(fields, dict, repr(resp))
        for name in names:
            self.assertIn(name, fields, repr(resp))
        return fields


class BadInputTest(BadInputCase):
    """Each item of SPEC §3's bad-input rule, then the sweep of every route."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        resp = cls.stack.client.request(
            "POST", "/v1/admin/webhooks", headers={"Authorization": "Bearer " + cls.admin_token},
            body={"url": "http://127.0.0.1:9/hook", "events": ["user.created"]})
        if resp.status != 201:
            cls._failed = True
            raise AssertionError(f"webhook create: {resp!r}")
        cls.webhook_id = resp.json["id"]

    # User-Agent is stored with the session: as valid UTF-8, without control
    # characters, and capped.

    def sessions_by_agent(self, token):
        resp = self.call("GET", "/v1/auth/sessions", token)
        doc = self.assert_ok_json(resp)
        return {s["id"]: s for s in doc["data"]}

    def login_with(self, user_agent):
        """Logs in with the raw header bytes; returns (token, stored agent)."""
        resp = self.stack.client.request(
            "POST", "/v1/auth/login", headers={"User-Agent": user_agent},
            body={"email": self.client_email, "password": bl.GOOD_PASSWORD})
        self.assertEqual(resp.status, 200, repr(resp))
        token = resp.json["access_token"]
        current = [s for s in self.sessions_by_agent(token).values() if s.get("current")]
        self.assertEqual(len(current), 1, "one current session")
        return token, current[0]["user_agent"]

    def test_user_agent_invalid_utf8_is_stored_replaced(self):
        _, agent = self.login_with(b"Mozilla\xff\xfe")
        self.assertEqual(agent, "Mozilla\ufffd\ufffd")

    def test_user_agent_truncated_and_overlong_sequences_are_replaced(self):
        _, agent = self.login_with(b"a\xe2\x82b\xc0\xafc\xed\xa0\x80d \xe2\x82\xac")
        self.assertNotIn("\xc0", agent)
        self.assertTrue(agent.startswith("a\ufffdb"), agent)
        self.assertTrue(agent.endswith("d \u20ac"), agent)
        self.assertNotIn("\ud800", agent)

    def test_user_agent_control_characters_are_removed(self):
        _, agent = self.login_with(b"curl/8\x01\x1b[31m\x7f red\xc2\x9b\tend")
        self.assertEqual(agent, "curl/8[31m red end")

    def test_user_agent_capped_on_a_character_boundary(self):
        _, agent = self.login_with("\u00e9".encode() * 3000)
        encoded = agent.encode("utf-8")
        self.assertLessEqual(len(encoded), USER_AGENT_MAX)
        self.assertGreaterEqual(len(encoded), USER_AGENT_MAX - 1)
        self.assertEqual(set(agent), {"\u00e9"})

    def test_user_agent_in_the_database_is_the_sanitised_text(self):
        token, agent = self.login_with(b"Stored\xff")
        sid = [s for s in self.sessions_by_agent(token).values() if s.get("current")][0]["id"]
        stored = query_json(self.stack, "SELECT to_json(user_agent) FROM auth.sessions "
                                        "WHERE id = :'id'", id=sid)
        self.assertEqual(stored, "Stored\ufffd")
        self.assertEqual(agent, stored)

    # Impossible dates and times are refused by name (400), possible ones
    # taken.

    IMPOSSIBLE_TIMES = ["2099-13-45T99:99:99Z", "2099-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
                        "2099-04-31T00:00:00Z", "2099-00-10T00:00:00Z", "2099-01-00T00:00:00Z",
                        "2099-01-01T24:00:00Z", "2099-01-01T23:60:00Z", "2099-01-01T23:59:61Z",
                        "2099-01-01T12:00:60Z", "2099-01-01T12:00:00+25:00"]

    def test_calendar_api_key_expiry_must_be_a_real_time(self):
        for value in self.IMPOSSIBLE_TIMES:
            with self.subTest(expires_at=value):
                resp = self.call("POST", "/v1/auth/api-keys", self.client_token,
                                 body={"name": "calendar", "expires_at": value})
                fields = self.assert_fields(resp, "expires_at")
                self.assertEqual(fields["expires_at"], "invalid_time", repr(resp))

    def test_calendar_api_key_expiry_on_real_edges_is_taken(self):
        for value in ("2096-02-29T23:59:59Z", "2099-12-31T23:59:59Z", "2098-12-31T23:59:60Z"):
            with self.subTest(expires_at=value):
                resp = self.call("POST", "/v1/auth/api-keys", self.client_token,
                                 body={"name": "edge", "expires_at": value})
                self.assert_ok_json(resp, 201)

    def test_calendar_finance_filters_must_be_real_dates(self):
        for path in ("/v1/admin/billing/subscriptions", "/v1/admin/billing/invoices"):
            for key in ("from", "to"):
                for value in ("2026-02-30", "2026-13-01", "2025-02-29", "2026-04-31",
                              "2026-01-01T24:00:00Z", "2026-01-01T10:61:00Z"):
                    with self.subTest(path=path, key=key, value=value):
                        resp = self.call("GET", f"{path}?{key}={value}", self.finance_token)
                        fields = self.assert_fields(resp, key)
                        self.assertEqual(fields[key], "invalid_time", repr(resp))

    def test_calendar_finance_filters_on_real_edges_are_taken(self):
        for value in ("2024-02-29", "2000-02-29", "2026-12-31T23:59:59Z"):
            with self.subTest(value=value):
                resp = self.call("GET", f"/v1/admin/billing/invoices?from={value}&to={value}",
                                 self.finance_token)
                self.assert_ok_json(resp)

    # Query values that are not UTF-8 are refused by name.

    def test_query_value_not_utf8_is_refused(self):
        for value in ("%ff%fe", "%c0%af", "%ed%a0%80", "abc%e2%82"):
            with self.subTest(plan=value):
                resp = self.call("GET", f"/v1/admin/billing/subscriptions?plan={value}",
                                 self.finance_token)
                fields = self.assert_fields(resp, "plan")
                self.assertEqual(fields["plan"], "invalid_encoding", repr(resp))

    def test_utf8_query_value_is_taken(self):
        resp = self.call("GET", "/v1/admin/billing/subscriptions?plan=%C3%A9t%C3%A9",
                         self.finance_token)
        self.assertEqual(self.assert_ok_json(resp)["data"], [])


    # A value Postgres cannot take as its type (SQLSTATE class 22) is the
    # client's mistake: 400 invalid_request, never a 500, nothing written.

    def signed_event(self, event_type, obj, event_id=None):
        """Posts one Stripe event signed with the stack's secret."""
        event_id, body = bl.event_body(event_type, obj, event_id=event_id)
        resp = self.stack.client.request("POST", bl.WEBHOOK_PATH, body=body, raw=True, headers={
            "Stripe-Signature": bl.sign_payload(WEBHOOK_SECRET, body),
            "Content-Type": "application/json"})
        return event_id, resp

    def test_data_exception_rolls_back_the_transaction(self):
        db = bl.Db(self.stack)
        sub_id, customer = bl.stripe_id("sub_"), bl.stripe_id("cus_")
        obj = bl.subscription_object(sub_id, customer, "active", bl.stripe_id("price_"),
                                     user_id=self.client_id)
        # Past the last timestamp Postgres has: the event's insert ran
        # before the subscription's, in the same transaction.
        obj["current_period_end"] = 99999999999999
        event_id, resp = self.signed_event("customer.subscription.updated", obj)
        self.assert_error(resp, 400, "invalid_request")
        self.assertEqual(db.count("SELECT 1 FROM billing.stripe_events WHERE id = :'id'",
                                  id=event_id), 0, "the event's row was rolled back")
        self.assertEqual(db.count("SELECT 1 FROM billing.subscriptions"
                                  " WHERE stripe_subscription_id = :'id'", id=sub_id), 0)
        # So a corrected delivery of the same event is applied, not taken
        # for a duplicate.
        obj["current_period_end"] = int(time.time()) + 86400
        _, resp = self.signed_event("customer.subscription.updated", obj, event_id=event_id)
        self.assertFalse(self.assert_ok_json(resp)["duplicate"], repr(resp))
        self.assertEqual(db.count("SELECT 1 FROM billing.subscriptions"
                                  " WHERE stripe_subscription_id = :'id'", id=sub_id), 1)

    def test_data_exception_names_its_field(self):
        resp = self.call("GET", f"/v1/admin/webhooks/{self.webhook_id}/deliveries"
                                "?cursor=99999999999999999999", self.admin_token)
        fields = self.assert_fields(resp, "cursor")
        self.assertEqual(fields["cursor"], "invalid", repr(resp))

    def test_data_exception_leaves_the_pool_serving(self):
        resp = self.call("GET", f"/v1/admin/webhooks/{self.webhook_id}/deliveries"
                                "?cursor=99999999999999999999", self.admin_token)
        self.assert_error(resp, 400, "invalid_request")
        resp = self.call("GET", f"/v1/admin/webhooks/{self.webhook_id}/deliveries",
                         self.admin_token)
        self.assertEqual(self.assert_ok_json(resp)["data"], [])


    # The sweep: every route with hostile headers, query strings, path
    # segments and bodies: never a 500, always the JSON error shape with the
    # right status, and no pool process lost.

    def token_for(self, role):
        if role == "anon":
            return None
        if role == "fresh":
            return self.login(self.client_email)
        return {"client": self.client_token, "finance": self.finance_token,
                "admin": self.admin_token}[role]

    def send(self, r, path=None, body=None, headers=None, query=None, raw_body=None):
        """The route's base request with the given changes."""
        path = path or r["path"].replace("{id}", RANDOM_ID)
        if query:
            path += "?" + query
        hdrs = dict(headers or {})
        token = self.token_for(r["role"])
        if raw_body is not None:
            hdrs.setdefault("Content-Type", "application/json")
            return self.call(r["method"], path, token, body=raw_body, headers=hdrs, raw=True)
        body = r["body"] if body is None else body
        if body is None:
            return self.call(r["method"], path, token, headers=hdrs)
        if "Content-Type" in hdrs:
            return self.call(r["method"], path, token, body=json.dumps(body).encode(),
                             headers=hdrs, raw=True)
        return self.call(r["method"], path, token, body=body, headers=hdrs)

    def check_shape(self, resp):
        """No 5xx; an error is the SPEC §3 shape. Returns a problem or None.
        The one 5xx allowed is the stack's Stripe being unreachable (a
        closed port, by design here): a dependency down, not bad input."""
        err = resp.json.get("error") if isinstance(resp.json, dict) else None
        code = err.get("code") if isinstance(err, dict) else None
        if resp.status >= 500 and not (resp.status == 503
                                       and code == "payment_provider_unavailable"):
            return f"{resp.status}: {resp.body[:300]!r}"
        if resp.status >= 400:
            try:
                self.assert_error(resp, resp.status, code)
            except AssertionError as e:
                return f"bad error shape: {e}"
        return None

    def expect(self, problems, what, resp, status=None, code=None, field=None):
        problem = self.check_shape(resp)
        if problem is None and status is not None and resp.status != status:
            problem = f"want {status}, got {resp.status}: {resp.body[:300]!r}"
        if problem is None and code is not None:
            got = resp.json["error"]["code"]
            codes = code if isinstance(code, tuple) else (code,)
            if got not in codes:
                problem = f"want code {code}, got {got}: {resp.body[:300]!r}"
            elif got == "invalid_request" and field is not None:
                fields = resp.json["error"]["details"].get("fields") or {}
                if field not in fields:
                    problem = f"want field {field} named: {resp.body[:300]!r}"
        if problem:
            problems.append(f"{what}: {problem}")

    def sweep_route(self, r, problems):
        name = f"{r['method']} {r['path']}"
        base = self.send(r)
        self.expect(problems, f"{name} (base)", base)
        status = base.status

        for header, value in SANITISED_HEADERS:
            resp = self.send(r, headers={header: value})
            self.expect(problems, f"{name} {header}={value[:40]!r}", resp, status)
        for value in BAD_IDEMPOTENCY_KEYS:
            resp = self.send(r, headers={"Idempotency-Key": value})
            what = f"{name} Idempotency-Key={value[:40]!r}"
            if IDEMPOTENT in r["flags"]:
                self.expect(problems, what, resp, 400, "invalid_request", "Idempotency-Key")
            else:
                self.expect(problems, what, resp, status)
        for value in BAD_STRIPE_SIGNATURES:
            resp = self.send(r, headers={"Stripe-Signature": value})
            what = f"{name} Stripe-Signature={value[:40]!r}"
            if r["path"] == bl.WEBHOOK_PATH:
                self.expect(problems, what, resp, 400, "invalid_signature")
            else:
                self.expect(problems, what, resp, status)

        if BODY in r["flags"]:
            for value in BAD_CONTENT_TYPES:
                resp = self.send(r, headers={"Content-Type": value})
                self.expect(problems, f"{name} Content-Type={value!r}", resp, 415,
                            "unsupported_media_type")
            for raw, code in BAD_BODIES:
                resp = self.send(r, raw_body=raw)
                self.expect(problems, f"{name} body {raw[:40]!r}", resp,
                            400 if code else None, code)
            for field, kind in r["fields"].items():
                for value in BAD_VALUES[kind]:
                    body = dict(r["body"], **{field: value})
                    resp = self.send(r, body=body)
                    self.expect(problems, f"{name} {field}={str(value)[:40]}", resp, 400,
                                ("invalid_request", "invalid_json"), field)

        if r["query"]:
            for key, kind in r["query"].items():
                for value in BAD_QUERY[kind]:
                    resp = self.send(r, query=f"{key}={value}")
                    self.expect(problems, f"{name} ?{key}={value[:40]}", resp, 400,
                                "invalid_request", key)
        elif r["method"] == "GET" or r["body"] is None:
            resp = self.send(r, query=IGNORED_QUERY)
            self.expect(problems, f"{name} ?{IGNORED_QUERY}", resp, status)

        if "{id}" in r["path"]:
            for value in BAD_PATH_IDS:
                resp = self.send(r, path=r["path"].replace("{id}", value))
                # nginx itself refuses an encoded NUL in a path (400).
                want = (400, "bad_request") if value == "%00" else (404, "not_found")
                self.expect(problems, f"{name} id={value[:40]}", resp, *want)

    def hostile_stripe_events(self):
        """Signed events whose numbers and strings no real Stripe object has:
        refused (400) or recorded as not applicable (200), never a 500."""
        customer = bl.stripe_id("cus_")
        far = 99999999999999
        sub = lambda **kw: dict(bl.subscription_object(  # noqa: E731
            bl.stripe_id("sub_"), customer, "active", bl.stripe_id("price_"),
            user_id=self.client_id), **kw)
        inv = lambda **kw: dict(bl.invoice_object(  # noqa: E731
            bl.stripe_id("in_"), customer, "paid", 1900), **kw)
        product = bl.stripe_id("prod_")
        events = [
            ("customer.subscription.updated", sub(current_period_end=far)),
            ("customer.subscription.updated", sub(current_period_start=-far)),
            ("customer.subscription.updated", sub(trial_end=far, canceled_at=far)),
            ("customer.subscription.updated", sub(current_period_end=1.5e300)),
            ("customer.subscription.updated", sub(status="x" * 5000)),
            ("customer.subscription.updated", sub(customer="\u00e9" * 3000)),
            ("invoice.paid", inv(created=far)),
            ("invoice.paid", inv(amount_due=99999999999999999999, amount_paid=-5)),
            ("invoice.paid", inv(currency="\u00e9\u00e9\u00e9\u00e9")),
            ("invoice.payment_failed", inv(number="n" * 10000)),
            ("charge.refunded", {"id": bl.stripe_id("ch_"), "object": "charge",
                                 "invoice": "in_" + "x" * 5000, "amount_refunded": far * far}),
            ("product.created", bl.product_object(product, "P" * 5000)),
            ("product.created", bl.product_object(bl.stripe_id("prod_"), "")),
            ("product.updated", dict(bl.product_object(product, "ok"), description="d" * 5000)),
            ("price.created", bl.price_object(bl.stripe_id("price_"), product, -5)),
            ("price.created", bl.price_object(bl.stripe_id("price_"), product, 100,
                                              currency="e1r")),
            ("price.created", bl.price_object(bl.stripe_id("price_"), product,
                                              99999999999999999999)),
            ("checkout.session.completed", {"id": bl.stripe_id("cs_"), "object": "checkout.session",
                                            "client_reference_id": self.client_id,
                                            "customer": "c" * 5000}),
        ]
        return events

    def test_sweep_every_route_survives_hostile_input(self):
        before = {pool: self.stack.pool_children(pool) for pool in POOLS}
        problems = []
        routes = sweep_routes(self.client_email, bl.GOOD_PASSWORD, self.webhook_id)
        for r in routes:
            self.sweep_route(r, problems)
        for event_type, obj in self.hostile_stripe_events():
            _, resp = self.signed_event(event_type, obj)
            what = f"Stripe {event_type} {json.dumps(obj)[:120]}"
            self.expect(problems, what, resp)
            if resp.status not in (200, 400):
                problems.append(f"{what}: want 200 or 400, got {resp.status}")
        self.assertEqual(problems, [], "\n".join(problems))
        # No pool process died (was replaced) and every pool is ready.
        after = {pool: self.stack.pool_children(pool) for pool in POOLS}
        self.assertEqual(after, before)
        for pool in POOLS:
            self.assert_ok_json(self.call("GET", f"/v1/{pool}/readyz"))

    def test_sweep_table_covers_every_route(self):
        """Every (method, pattern) of the pools' route tables and every exact
        nginx location is in the sweep."""
        table = {(r["method"], r["path"]) for r in
                 sweep_routes("x@example.com", "x", "{id}")}
        declared = set()
        for pool in os.listdir(os.path.join(REPO, "modules")):
            main = os.path.join(REPO, "modules", pool, "main.c")
            if not os.path.exists(main):
                continue
            with open(main) as f:
                text = f.read()
            declared |= set(re.findall(r'\{"(GET|POST|PUT|PATCH|DELETE)",\s*"([^"]+)"', text))
        with open(os.path.join(REPO, "nginx", "nginx.conf.in")) as f:
            for path in re.findall(r"location = (/\S+)", f.read()):
                if path.startswith("/v1/") and path.count("/") > 2 or path == "/healthz":
                    declared.add((None, path))
        paths = {p for _, p in table}
        missing = sorted(str(d) for d in declared
                         if (d[0] is None and d[1] not in paths)
                         or (d[0] is not None and d not in table))
        self.assertEqual(missing, [], "routes missing from the sweep")


if __name__ == "__main__":
    unittest.main()
