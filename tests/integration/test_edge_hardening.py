"""End-to-end tests of the edge hardening, through nginx over TLS:

- one-time secrets in the answers kept for Idempotency-Key replays (an API
  key, a webhook signing secret) are sealed: a dump of the whole database
  does not contain them, a replay still returns the first answer, and a
  sealed answer opens only in the row it was written for;
- access tokens are low-S only: the high-S twin of a valid token, which
  plain ECDSA accepts, is refused by the gateway;
- the SSRF guard on webhook URLs takes public IP literals and refuses the
  special ranges, IPv4 carried in IPv6 included;
- CORS: nginx answers preflights for the origins of cors_origins and adds
  the CORS headers to every answer for them, errors included; any other
  origin gets none.

Run from the repository root:
    STOA_BIN_DIR=$PWD/bin python3 -m unittest tests/integration/test_edge_hardening.py -v
"""

import base64
import json
import os
import subprocess
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from authlib import SourceClientTestCase, b64url_decode, count_rows, query_json  # noqa: E402
from harness import PG_BIN, Stack  # noqa: E402

GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"
WEBHOOKS = "/v1/admin/webhooks"
# P-256 group order (SEC 2, FIPS 186-4 D.1.2.3).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def pg_dump(stack, *extra):
    """The whole database as SQL text (data and schema), as an operator's
    backup would hold it."""
    argv = [os.path.join(PG_BIN, "pg_dump"), "--no-owner", "-h", stack.path("pg", "sock"),
            "-p", "5432", "-U", "stoa", "-d", "stoa", *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=stack.run)
    if proc.returncode != 0:
        raise AssertionError(f"pg_dump failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def secret_forms(secret):
    """The ways a secret could sit in a dump: as text, as the hex of its
    bytes (bytea), as base64."""
    raw = secret.encode("utf-8")
    return [secret, raw.hex(), base64.b64encode(raw).decode("ascii")]


def high_s_twin(token):
    """The same JWS with s replaced by n - s: a second valid ECDSA signature
    of the same signing input."""
    head, _, sig = token.rpartition(".")
    raw = b64url_decode(sig)
    assert len(raw) == 64, token
    s = int.from_bytes(raw[32:], "big")
    twin = raw[:32] + (P256_N - s).to_bytes(32, "big")
    return head + "." + base64.urlsafe_b64encode(twin).decode("ascii").rstrip("=")


class EdgeStackTestCase(SourceClientTestCase):
    """Auth routes opened up (these tests log in often); two CORS origins."""

    stack_env = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000",
                 "STOA_CORS_ORIGINS": "https://app.example.com, http://localhost:5173"}

    def new_account(self, client, tag):
        """Registers and logs in: (user id, access token)."""
        email = f"{tag}.{uuid.uuid4().hex[:12]}@example.com"
        resp = client.request("POST", "/v1/auth/register",
                              {"email": email, "password": GOOD_PASSWORD, "name": "Edge User"})
        user = self.assert_ok_json(resp, 201)["user"]
        resp = client.request("POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD})
        return user["id"], self.assert_ok_json(resp)["access_token"]

    def admin_token(self, client):
        with open(self.stack.path("admin-password")) as f:
            password = f.read().strip()
        resp = client.request("POST", "/v1/auth/login",
                              {"email": "admin@localhost", "password": password})
        return self.assert_ok_json(resp)["access_token"]

    def idempotency_rows(self, user_id):
        return query_json(self.stack, """
            SELECT coalesce(json_agg(to_json(k)), '[]'::json)
            FROM admin.idempotency_keys k WHERE scope LIKE 'session:' || :'id' || ':%'""", id=user_id)

    def assert_nowhere_in(self, text, secret, where):
        for form in secret_forms(secret):
            # Not assertNotIn: its message would print the whole dump.
            at = text.find(form)
            self.assertEqual(at, -1, f"the secret sits in {where}: "
                             f"...{text[max(0, at - 300):at + 100]}...")


class IdempotentSecretsTest(EdgeStackTestCase):
    """Item: the answers kept for Idempotency-Key replays are sealed."""

    def create_key(self, client, token, idem_key, name="deploy bot"):
        return client.request("POST", "/v1/auth/api-keys", {"name": name}, token=token,
                              headers={"Idempotency-Key": idem_key})

    def test_01_api_key_is_not_in_a_dump_and_replays(self):
        c = self.client()
        user_id, token = self.new_account(c, "idem-key")
        idem_key = "create-key-" + uuid.uuid4().hex
        first = self.create_key(c, token, idem_key)
        created = self.assert_ok_json(first, 201)
        self.assertIsNone(first.header("Idempotent-Replayed"))
        key = created["key"]
        # stoa_<hex prefix>_<secret>: the secret is base64url and may hold
        # underscores itself, so it is everything after the second one (a
        # split at the last would leave a few characters, which a random
        # token elsewhere in the dump can hold by chance).
        secret_part = key.split("_", 2)[2]
        self.assertGreaterEqual(len(secret_part), 32, key)

        # The record exists, and it is sealed.
        rows = self.idempotency_rows(user_id)
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0]["key"], idem_key)
        self.assertEqual(rows[0]["status"], 201)
        self.assertNotIn("body", rows[0], "no clear-text answer column")
        self.assertTrue(rows[0]["body_sealed"], rows[0])
        # Nothing in the whole database gives the key away.
        dump = pg_dump(self.stack)
        self.assertIn(idem_key, dump, "the dump covers the idempotency records")
        self.assert_nowhere_in(dump, key, "the database dump")
        self.assert_nowhere_in(dump, secret_part, "the database dump")

        # A replay is the first answer, secret included, and makes no key.
        again = self.create_key(c, token, idem_key)
        self.assertEqual(self.assert_ok_json(again, 201), created)
        self.assertEqual(again.header("Idempotent-Replayed"), "true", repr(again))
        self.assertEqual(count_rows(self.stack, "SELECT 1 FROM auth.api_keys WHERE "
                                    "user_id = :'id'::uuid", id=user_id), 1)
        # The same key with another body is still refused.
        self.assert_error(self.create_key(c, token, idem_key, name="other"), 422,
                          "idempotency_key_reused")
        # The key itself works (the replayed copy is the real one).
        resp = c.request("POST", "/v1/auth/token", {"grant_type": "api_key", "api_key": again.json["key"]})
        self.assert_ok_json(resp)

    def test_02_webhook_secret_is_not_in_the_idempotency_records(self):
        c = self.client()
        token = self.admin_token(c)
        idem_key = "create-hook-" + uuid.uuid4().hex
        body = {"url": f"http://127.0.0.1:9/hook-{uuid.uuid4().hex[:8]}",
                "events": ["invoice.paid"], "description": "sealed answer"}
        headers = {"Idempotency-Key": idem_key}
        first = c.request("POST", WEBHOOKS, body, token=token, headers=headers)
        created = self.assert_ok_json(first, 201)
        secret = created["secret"]
        self.assertTrue(secret.startswith("whsec_"), created)
        self.addCleanup(lambda: c.request("DELETE", f"{WEBHOOKS}/{created['id']}", token=token))

        # The endpoint table must hold it (deliveries are signed with it);
        # nothing else may, the idempotency records least of all.
        dump = pg_dump(self.stack, "--exclude-table-data=admin.webhook_endpoints")
        self.assertIn(idem_key, dump)
        self.assert_nowhere_in(dump, secret, "the dump outside admin.webhook_endpoints")
        records = json.dumps(query_json(self.stack, """
            SELECT coalesce(json_agg(to_json(k)), '[]'::json) FROM admin.idempotency_keys k"""))
        self.assert_nowhere_in(records, secret, "admin.idempotency_keys")

        again = c.request("POST", WEBHOOKS, body, token=token, headers=headers)
        self.assertEqual(self.assert_ok_json(again, 201), created)
        self.assertEqual(again.header("Idempotent-Replayed"), "true", repr(again))
        self.assertEqual(count_rows(self.stack, "SELECT 1 FROM admin.webhook_endpoints "
                                    "WHERE url = :'url'", url=body["url"]), 1)

    def test_03_a_sealed_answer_opens_only_in_its_own_row(self):
        """Copying another caller's sealed answer into one's own record (a
        database write, no key) yields no secret: the record key is bound
        to the caller and the Idempotency-Key."""
        c = self.client()
        victim_id, victim_token = self.new_account(c, "idem-victim")
        thief_id, thief_token = self.new_account(c, "idem-thief")
        idem_key = "same-key-" + uuid.uuid4().hex
        victim_key = self.assert_ok_json(self.create_key(c, victim_token, idem_key), 201)["key"]
        self.assert_ok_json(self.create_key(c, thief_token, idem_key), 201)
        moved = query_json(self.stack, """
            WITH v AS (SELECT body_sealed FROM admin.idempotency_keys
                       WHERE scope LIKE 'session:' || :'victim' || ':%' AND key = :'k'),
                 t AS (UPDATE admin.idempotency_keys SET body_sealed = v.body_sealed FROM v
                       WHERE scope LIKE 'session:' || :'thief' || ':%' AND key = :'k' RETURNING 1)
            SELECT to_json(count(*)) FROM t""", victim=victim_id, thief=thief_id, k=idem_key)
        self.assertEqual(moved, 1)
        resp = self.create_key(c, thief_token, idem_key)
        self.assert_error(resp, 409, "idempotency_replay_unavailable")
        self.assertNotIn(victim_key, resp.body.decode("utf-8", "replace"))
        # The victim's own replay is untouched.
        again = self.create_key(c, victim_token, idem_key)
        self.assertEqual(self.assert_ok_json(again, 201)["key"], victim_key)

    def test_04_a_changed_status_does_not_open(self):
        """The stored status is bound to the sealed answer too."""
        c = self.client()
        user_id, token = self.new_account(c, "idem-status")
        idem_key = "status-" + uuid.uuid4().hex
        self.assert_ok_json(self.create_key(c, token, idem_key), 201)
        query_json(self.stack, """
            WITH t AS (UPDATE admin.idempotency_keys SET status = 200
                       WHERE scope LIKE 'session:' || :'id' || ':%' AND key = :'k' RETURNING 1)
            SELECT to_json(count(*)) FROM t""", id=user_id, k=idem_key)
        self.assert_error(self.create_key(c, token, idem_key), 409,
                          "idempotency_replay_unavailable")


class NoSealKeyTest(EdgeStackTestCase):
    """Without idempotency_seal_key no answer is kept, and the work is still
    done once."""

    stack_env = dict(EdgeStackTestCase.stack_env, STOA_IDEMPOTENCY_SEAL_KEY="")

    def test_01_no_answer_kept_and_no_second_run(self):
        c = self.client()
        user_id, token = self.new_account(c, "idem-nokey")
        idem_key = "nokey-" + uuid.uuid4().hex
        body, headers = {"name": "bot"}, {"Idempotency-Key": idem_key}
        created = self.assert_ok_json(c.request("POST", "/v1/auth/api-keys", body, token=token,
                                                headers=headers), 201)
        rows = self.idempotency_rows(user_id)
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0]["status"], 201)
        self.assertIsNone(rows[0]["body_sealed"], rows[0])
        self.assert_nowhere_in(pg_dump(self.stack), created["key"], "the database dump")
        again = c.request("POST", "/v1/auth/api-keys", body, token=token, headers=headers)
        self.assert_error(again, 409, "idempotency_replay_unavailable")
        self.assertEqual(count_rows(self.stack, "SELECT 1 FROM auth.api_keys WHERE "
                                    "user_id = :'id'::uuid", id=user_id), 1)


class LowSTokensTest(EdgeStackTestCase):
    """Item: one signing, one valid token string."""

    def test_01_issued_tokens_are_low_s(self):
        c = self.client()
        for i in range(16):
            _, token = self.new_account(c, f"lows{i}")
            s = int.from_bytes(b64url_decode(token.rpartition(".")[2])[32:], "big")
            self.assertLessEqual(s, P256_N // 2, f"token {i} is high-S")

    def test_02_the_high_s_twin_is_refused_at_the_gateway(self):
        c = self.client()
        _, token = self.new_account(c, "twin")
        twin = high_s_twin(token)
        self.assertNotEqual(twin, token)
        # The original first, so a cached verification cannot stand in.
        self.assert_ok_json(c.request("GET", "/v1/me", token=token))
        for path in ("/v1/me", "/v1/auth/sessions", "/v1/billing/entitlements"):
            with self.subTest(path=path):
                self.assert_error(c.request("GET", path, token=twin), 401, "unauthenticated")
        self.assert_ok_json(c.request("GET", "/v1/me", token=token))


class WebhookTargetsTest(EdgeStackTestCase):
    """Item: the SSRF guard on webhook URLs (the admin API's literal check;
    the jobs worker runs the same rules on every resolved address)."""

    def test_01_special_ranges_refused_public_literals_taken(self):
        c = self.client()
        token = self.admin_token(c)
        refused = ["http://198.18.0.1/", "http://198.19.255.255/", "http://192.0.2.1/",
                   "http://[::ffff:10.0.0.1]/", "http://[64:ff9b::a00:1]/",
                   "http://[64:ff9b::a9fe:a9fe]/", "http://[64:ff9b:1::1]/",
                   "http://[::10.0.0.1]/", "http://[2001::1]/", "http://[fec0::1]/",
                   "http://[2002:a00:1::1]/", "http://[fd00::1]/"]
        for url in refused:
            with self.subTest(url=url):
                resp = c.request("POST", WEBHOOKS, {"url": url, "events": ["invoice.paid"]},
                                 token=token)
                details = self.assert_error(resp, 400, "invalid_request")
                self.assertEqual(details.get("fields", {}).get("url"), "internal_address", details)
        for url in ("https://93.184.216.34/hook", "https://[2606:4700:4700::1111]/hook",
                    "https://[64:ff9b::5db8:d822]/hook"):
            with self.subTest(url=url):
                resp = c.request("POST", WEBHOOKS, {"url": url, "events": ["invoice.paid"]},
                                 token=token)
                created = self.assert_ok_json(resp, 201)
                resp = c.request("DELETE", f"{WEBHOOKS}/{created['id']}", token=token)
                self.assertEqual(resp.status, 204, repr(resp))


# --- CORS ------------------------------------------------------------------

LISTED = ("https://app.example.com", "http://localhost:5173")
# Neither listed nor a listed origin's spelling: tricks on a listed name,
# other schemes and ports, the opaque origin, a trailing slash.
UNLISTED = ("https://evil.example", "https://app.example.com.evil.net",
            "https://evilapp.example.com", "https://app.example.co",
            "https://xapp.example.com", "http://app.example.com",
            "https://app.example.com:8443", "https://app.example.com/",
            "null", "http://localhost:5174", "http://localhost")
ALLOW_HEADERS = ("authorization", "content-type", "idempotency-key", "x-request-id")


def header_list(resp, name):
    """The comma-separated values of a header, lower-cased, over all its
    lines."""
    out = []
    for line in resp.header_all(name):
        out += [v.strip().lower() for v in line.split(",") if v.strip()]
    return out


def cors_headers(resp):
    return {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}


class CorsTest(EdgeStackTestCase):
    """Item: CORS answered by nginx for the origins of cors_origins. The
    strict per-address limit of the auth routes stays as shipped (2 r/s,
    burst 10), so a 429 is easy to provoke."""

    stack_env = {"STOA_CORS_ORIGINS": ", ".join(LISTED)}

    def preflight(self, client, origin, path, method="POST",
                  request_headers="authorization, content-type, idempotency-key"):
        headers = {"Origin": origin, "Access-Control-Request-Method": method}
        if request_headers:
            headers["Access-Control-Request-Headers"] = request_headers
        return client.request("OPTIONS", path, headers=headers)

    def assert_cors(self, resp, origin):
        """The headers of an ordinary answer to a listed origin."""
        self.assertEqual(resp.header_all("Access-Control-Allow-Origin"), [origin], repr(resp))
        self.assertIn("origin", header_list(resp, "Vary"), repr(resp))
        exposed = header_list(resp, "Access-Control-Expose-Headers")
        for name in ("x-request-id", "retry-after"):
            self.assertIn(name, exposed, repr(resp))
        self.assertNotIn("*", resp.header("Access-Control-Allow-Origin", ""))

    def assert_no_cors(self, resp):
        self.assertEqual(cors_headers(resp), {}, repr(resp))

    PATHS = ("/v1/auth/login", "/v1/auth/api-keys", "/v1/me", "/v1/billing/checkout",
             "/v1/analytics/events", "/v1/admin/webhooks", "/v1/admin/plans", "/v1/updates",
             "/.well-known/jwks.json", "/healthz", "/v1/nothing-here")

    def test_01_preflight_from_a_listed_origin(self):
        c = self.client()
        for origin in LISTED:
            for path in self.PATHS:
                with self.subTest(origin=origin, path=path):
                    resp = self.preflight(c, origin, path)
                    self.assertEqual(resp.status, 204, repr(resp))
                    self.assertEqual(resp.body, b"")
                    self.assert_request_id(resp)
                    self.assertEqual(resp.header_all("Access-Control-Allow-Origin"), [origin])
                    methods = header_list(resp, "Access-Control-Allow-Methods")
                    for m in ("get", "post", "patch", "delete"):
                        self.assertIn(m, methods, repr(resp))
                    allowed = header_list(resp, "Access-Control-Allow-Headers")
                    for h in ALLOW_HEADERS:
                        self.assertIn(h, allowed, repr(resp))
                    self.assertGreater(int(resp.header("Access-Control-Max-Age")), 0)
                    self.assertIn("origin", header_list(resp, "Vary"))
                    # Bearer tokens, not cookies: no credentials mode.
                    self.assertIsNone(resp.header("Access-Control-Allow-Credentials"))
                    # The security headers are there as on any answer.
                    self.assertEqual(resp.header("X-Content-Type-Options"), "nosniff")
        # A preflight that asks for DELETE without extra headers.
        resp = self.preflight(c, LISTED[0], "/v1/auth/sessions", "DELETE", None)
        self.assertEqual(resp.status, 204, repr(resp))
        self.assertEqual(resp.header("Access-Control-Allow-Origin"), LISTED[0])

    def test_02_preflight_from_any_other_origin_gets_no_allow_headers(self):
        c = self.client()
        for path in ("/v1/auth/login", "/v1/me", "/v1/admin/webhooks", "/v1/nothing-here"):
            # The same preflight from a listed origin is answered...
            resp = self.preflight(c, LISTED[0], path)
            self.assertEqual(resp.status, 204, repr(resp))
            self.assertEqual(resp.header("Access-Control-Allow-Origin"), LISTED[0])
            # ...and from any other origin it is not.
            for origin in UNLISTED:
                with self.subTest(origin=origin, path=path):
                    resp = self.preflight(c, origin, path)
                    self.assertNotEqual(resp.status, 204, repr(resp))
                    self.assertLess(resp.status, 500, repr(resp))
                    self.assert_no_cors(resp)
        # Without Access-Control-Request-Method it is no preflight either.
        resp = c.request("OPTIONS", "/v1/me", headers={"Origin": LISTED[0]})
        self.assertNotEqual(resp.status, 204, repr(resp))
        self.assertIsNone(resp.header("Access-Control-Allow-Methods"))

    def ordinary_answers(self, client, origin):
        """(label, expected status, response) for answers of every kind:
        nginx's own, the gateway's refusals, the pools' successes and
        errors."""
        o = {"Origin": origin}
        _, token = self.new_account(client, "cors")
        json_type = {"Content-Type": "application/json"}
        out = [
            ("healthz", 200, client.request("GET", "/healthz", headers=o)),
            ("pool", 200, client.request("GET", "/v1/billing/plans", headers=o)),
            ("pool with token", 200, client.request("GET", "/v1/me", headers=o, token=token)),
            ("gateway, no token", 401, client.request("GET", "/v1/me", headers=o)),
            ("gateway, role", 403, client.request("GET", "/v1/admin/webhooks", headers=o,
                                                  token=token)),
            ("pool, bad login", 401, client.request(
                "POST", "/v1/auth/login", {"email": "nobody@example.com", "password": "x" * 12},
                headers=o)),
            ("nginx, no route", 404, client.request("GET", "/v1/nothing-here", headers=o)),
            ("nginx, body cap", 413, client.request("POST", "/v1/auth/register",
                                                    "x" * (1024 * 1024 + 10), raw=True,
                                                    headers=dict(o, **json_type))),
        ]
        # The strict auth zone: 2 r/s, burst 10.
        for _ in range(40):
            resp = client.request("POST", "/v1/auth/token", {}, headers=o)
            if resp.status == 429:
                break
        out.append(("nginx, rate limit", 429, resp))
        return out

    def test_03_every_answer_to_a_listed_origin_carries_cors(self):
        for origin in LISTED:
            c = self.client()
            for label, status, resp in self.ordinary_answers(c, origin):
                with self.subTest(origin=origin, answer=label):
                    self.assertEqual(resp.status, status, repr(resp))
                    self.assert_cors(resp, origin)
                    if status >= 400:
                        self.assertIsInstance(resp.json, dict, repr(resp))
                        self.assertIn("error", resp.json, repr(resp))

    def test_04_other_origins_get_no_cors_headers(self):
        # Control: the same answer for a listed origin has them.
        resp = self.client().request("GET", "/v1/me", headers={"Origin": LISTED[1]})
        self.assert_cors(resp, LISTED[1])
        for origin in UNLISTED[:4] + ("null",):
            c = self.client()
            for label, status, resp in self.ordinary_answers(c, origin):
                with self.subTest(origin=origin, answer=label):
                    self.assertEqual(resp.status, status, repr(resp))
                    self.assert_no_cors(resp)

    def test_05_no_origin_no_cors_and_no_vary(self):
        c = self.client()
        for path in ("/healthz", "/v1/billing/plans", "/v1/me", "/v1/nothing-here"):
            with self.subTest(path=path):
                resp = c.request("GET", path)
                self.assert_no_cors(resp)
                self.assertNotIn("origin", header_list(resp, "Vary"))
                # Control: with a listed Origin the same answer has them.
                resp = c.request("GET", path, headers={"Origin": LISTED[0]})
                self.assert_cors(resp, LISTED[0])


class CorsOriginsCheckedTest(unittest.TestCase):
    """stack.sh refuses a cors_origins entry that is not an exact origin
    rather than render a map that allows nothing, or too much."""

    def test_01_bad_entries_stop_the_start(self):
        for bad in ("*", "null", "https://app.example.com/", "https://*.example.com",
                    "app.example.com"):
            with self.subTest(entry=bad):
                stack = Stack(env={"STOA_CORS_ORIGINS": f"https://ok.example.com, {bad}"})
                try:
                    with self.assertRaises(RuntimeError) as caught:
                        stack.start()
                    self.assertIn("cors_origins", str(caught.exception))
                finally:
                    stack.destroy()
