"""End-to-end tests of the live channel (GET /v1/realtime): through nginx
over TLS, with the real nchan module, the auth pool's redirect, the jobs
worker's publisher and the trigger on auth.sessions.

Events come from real paths: signed Stripe webhooks (subscription.updated,
entitlements.changed), registrations (user.created, to admins), logouts
and password changes (session.revoked). Readers: a small Server-Sent
Events reader on http.client, and a minimal WebSocket client on an ssl
socket (Debian 12 has no python3-websockets in the base system).

One stack for the whole file. Python 3.11 standard library only.
"""

import hashlib
import json
import os
import re
import subprocess
import time
import unittest

import billinglib as bl
from authlib import query_json
from billinglib import WebhookSender
from harness import OPEN_LIMITS, StackTestCase
from realtimelib import HEAR_S, SseReader, WsClient

WEBHOOK_SECRET = "whsec_" + os.urandom(16).hex()
# A revoked session is refused everywhere within 1 s (SPEC §4).
REVOKED_WITHIN_S = 1.2


class RealtimeTest(StackTestCase):
    stack_env = dict(OPEN_LIMITS, STOA_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                     # The closing of a revoked session's stream is a job
                     # run ~2 s after the event: looked for twice a second.
                     STOA_JOBS_POLL_INTERVAL_MS="500")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.hooks = WebhookSender(cls.stack, WEBHOOK_SECRET)
        # A plan made in Stripe's dashboard, arriving by its events.
        cls.product = bl.stripe_id("prod_")
        cls.price = bl.stripe_id("price_")
        for event_type, obj in (
                ("product.created", bl.product_object(cls.product, "Live Pro",
                                                      features={"seats": 5},
                                                      plan_key="livepro")),
                ("price.created", bl.price_object(cls.price, cls.product, 1900))):
            resp, _ = cls.hooks.send(event_type, obj)
            if resp.status != 200:
                raise AssertionError(f"{event_type}: {resp!r}")
        admin_email = bl.unique_email("rt-admin")
        proc = bl.create_user(cls.stack, admin_email, "admin")
        if proc.returncode != 0:
            raise RuntimeError(f"stoactl user create: {proc.stderr}")
        cls.admin_token = cls.login(admin_email)["access_token"]

    # --- helpers -------------------------------------------------------------

    @classmethod
    def login(cls, email):
        resp = cls.stack.client.request("POST", "/v1/auth/login",
                                        {"email": email, "password": bl.GOOD_PASSWORD})
        if resp.status != 200:
            raise AssertionError(f"login {email}: {resp!r}")
        return resp.json

    def new_user(self, tag):
        email = bl.unique_email(tag)
        resp = self.request("POST", "/v1/auth/register",
                            {"email": email, "password": bl.GOOD_PASSWORD, "name": "Live"})
        self.assertEqual(resp.status, 201, resp)
        got = self.login(email)
        return {"id": resp.json["user"]["id"], "email": email, "token": got["access_token"]}

    def auth(self, token):
        return {"Authorization": f"Bearer {token}"}

    def subscribe(self, token=None, ticket=None, headers=None, query=""):
        hdrs = dict(headers or {})
        path = "/v1/realtime"
        if token:
            hdrs.update(self.auth(token))
        if ticket:
            path += f"?ticket={ticket}"
        if query:
            path += ("&" if "?" in path else "?") + query
        reader = SseReader(self.stack, path, hdrs)
        self.addCleanup(reader.close)
        return reader

    def ticket(self, token):
        resp = self.request("POST", "/v1/realtime/tickets", headers=self.auth(token))
        body = self.assert_ok_json(resp)
        self.assertEqual(body["expires_in"], 30)
        self.assertRegex(body["ticket"], r"^[A-Za-z0-9_-]{43}$")
        return body["ticket"]

    def subscription_event(self, user, status):
        """A signed Stripe event moving user's subscription to status; its
        entitlements follow (granted while active)."""
        if "sub" not in user:
            user["sub"], user["cus"] = bl.stripe_id("sub_"), bl.stripe_id("cus_")
            user["created"] = int(time.time())
        user["created"] += 1  # each event newer than the last
        obj = bl.subscription_object(user["sub"], user["cus"], status, self.price,
                                     user_id=user["id"])
        event_type = "customer.subscription.updated"
        resp, _ = self.hooks.send(event_type, obj, created=user["created"])
        self.assert_ok_json(resp)
        return time.monotonic()

    def redis(self, *args):
        proc = subprocess.run(["redis-cli", "-s", self.stack.redis_socket(), *args],
                              capture_output=True, text=True, timeout=10)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc.stdout.strip()

    def assert_stream(self, reader):
        self.assertEqual(reader.status, 200, getattr(reader, "body", b""))
        self.assertEqual(reader.headers.get("Content-Type").split(";")[0], "text/event-stream")
        self.assertRegex(reader.headers.get("X-Request-Id") or "", r"^[A-Za-z0-9._-]+$")
        self.assertIn("max-age", reader.headers.get("Strict-Transport-Security") or "")

    def assert_refused(self, reader, status, code):
        self.assertEqual(reader.status, status, reader.body)
        body = json.loads(reader.body)
        self.assertEqual(body["error"]["code"], code, body)
        return body

    # --- who may open a channel --------------------------------------------------

    def test_01_no_token_is_401(self):
        reader = self.subscribe()
        self.assert_refused(reader, 401, "unauthenticated")
        self.assertEqual(reader.headers.get("WWW-Authenticate"), "Bearer")

    def test_02_api_key_token_is_403(self):
        user = self.new_user("rt-key")
        key = self.assert_ok_json(self.request("POST", "/v1/auth/api-keys", {"name": "bot"},
                                               headers=self.auth(user["token"])), 201)["key"]
        key_token = self.assert_ok_json(self.request(
            "POST", "/v1/auth/token", {"grant_type": "api_key", "api_key": key}))["access_token"]
        self.assert_refused(self.subscribe(key_token), 403, "forbidden")
        self.assert_error(self.request("POST", "/v1/realtime/tickets",
                                       headers=self.auth(key_token)), 403, "forbidden")
        self.assert_error(self.request("POST", "/v1/realtime/tickets"), 401, "unauthenticated")

    def test_03_logged_out_token_is_401(self):
        user = self.new_user("rt-out")
        self.assertEqual(self.request("POST", "/v1/auth/logout",
                                      headers=self.auth(user["token"])).status, 204)
        # Refused on every pool within 1 s (a process trusts its last
        # check of a session for up to a second, SPEC §4).
        deadline = time.monotonic() + REVOKED_WITHIN_S
        while True:
            reader = self.subscribe(user["token"])
            if reader.status != 200 or time.monotonic() > deadline:
                break
            reader.close()
            time.sleep(0.05)
        self.assert_refused(reader, 401, "unauthenticated")
        self.assertEqual(reader.headers.get("WWW-Authenticate"), 'Bearer error="invalid_token"')

    def test_04_tickets(self):
        user = self.new_user("rt-ticket")
        # Single use.
        ticket = self.ticket(user["token"])
        self.assertIsNone(bl.redis_get(self.stack, "rt:ticket:" + ticket),
                          "the ticket itself is never a key")
        first = self.subscribe(ticket=ticket)
        self.assert_stream(first)
        self.assert_refused(self.subscribe(ticket=ticket), 401, "invalid_token")
        # Forged (well-formed, never minted) and malformed.
        self.assert_refused(self.subscribe(ticket="A" * 43), 401, "invalid_token")
        self.assert_refused(self.subscribe(ticket="x"), 401, "invalid_token")
        # Expired: its key gone from Redis as its 30 s TTL would.
        ticket = self.ticket(user["token"])
        key = "rt:ticket:" + hashlib.sha256(ticket.encode()).hexdigest()
        ttl = int(self.redis("TTL", key))
        self.assertTrue(0 < ttl <= 30, ttl)
        self.redis("PEXPIRE", key, "1")
        time.sleep(0.05)
        self.assert_refused(self.subscribe(ticket=ticket), 401, "invalid_token")
        # A token and a ticket at once.
        ticket = self.ticket(user["token"])
        self.assert_refused(self.subscribe(user["token"], ticket=ticket), 400,
                            "invalid_request")
        # Minted, then the session logged out: refused though unused.
        ticket = self.ticket(user["token"])
        self.assertEqual(self.request("POST", "/v1/auth/logout",
                                      headers=self.auth(user["token"])).status, 204)
        time.sleep(REVOKED_WITHIN_S)
        self.assert_refused(self.subscribe(ticket=ticket), 401, "unauthenticated")

    def test_05_bad_last_event_id_is_400(self):
        user = self.new_user("rt-leid")
        # Neither SSE nor a WebSocket: the API's error, not nchan's 403.
        self.assert_error(self.request("GET", "/v1/realtime", headers=self.auth(user["token"])),
                          400, "invalid_request")
        for bad in ("abc", "1%3Cscript%3E", "1" * 201, "1:0%0D%0AX-Evil:%201"):
            body = self.assert_refused(self.subscribe(user["token"], query=f"last_event_id={bad}"),
                                       400, "invalid_request")
            self.assertIn("last_event_id", body["error"]["details"]["fields"])
        body = self.assert_refused(self.subscribe(user["token"], query="channel=admin"),
                                   400, "invalid_request")
        self.assertIn("channel", body["error"]["details"]["fields"])

    # --- what each subscriber hears ------------------------------------------------

    def test_10_billing_events_reach_the_user_only(self):
        a, b = self.new_user("rt-a"), self.new_user("rt-b")
        reader_a = self.subscribe(a["token"])
        self.assert_stream(reader_a)
        reader_b = self.subscribe(ticket=self.ticket(b["token"]))
        self.assert_stream(reader_b)
        t0 = self.subscription_event(a, "active")
        got = {}
        for _ in range(2):
            ev = reader_a.next(HEAR_S)
            self.assertIsNotNone(ev, "the stream closed")
            got[ev["event"]] = (ev, time.monotonic() - t0)
        self.assertEqual(set(got), {"subscription.updated", "entitlements.changed"})
        for name, (ev, took) in got.items():
            self.assertLess(took, HEAR_S, name)
            data = json.loads(ev["data"])
            self.assertEqual(data["type"], name)
            self.assertRegex(data["id"], r"^evt_[0-9a-f-]{36}$")
            self.assertEqual(data["data"]["user_id"], a["id"])
            self.assertTrue(ev["id"], "every event carries an id for Last-Event-ID")
        ent = json.loads(got["entitlements.changed"][0]["data"])["data"]["entitlements"]
        self.assertEqual(ent, self.assert_ok_json(self.request(
            "GET", "/v1/billing/entitlements", headers=self.auth(a["token"]))))
        self.assertEqual(ent["plan"], "livepro")
        self.assertEqual(ent["features"], {"seats": 5})
        sub = json.loads(got["subscription.updated"][0]["data"])["data"]["object"]
        self.assertEqual(sub["status"], "active")
        self.assertEqual(reader_b.drain(0.5), [], "B heard A's events")

    def test_11_admins_hear_signups(self):
        admin = self.subscribe(self.admin_token)
        self.assert_stream(admin)
        client = self.new_user("rt-client")
        other = self.subscribe(client["token"])
        self.assert_stream(other)
        email = bl.unique_email("rt-signup")
        t0 = time.monotonic()
        resp = self.request("POST", "/v1/auth/register",
                            {"email": email, "password": bl.GOOD_PASSWORD, "name": "New"})
        self.assertEqual(resp.status, 201)
        while True:
            ev = admin.wait_type("user.created", max(0.01, HEAR_S - (time.monotonic() - t0)))
            self.assertIsNotNone(ev, "the admin did not hear the signup in time")
            if json.loads(ev["data"])["data"]["email"] == email:
                break
        self.assertEqual(other.drain(0.5), [], "a client heard the admins' channel")

    def test_12_logout_is_heard_then_the_stream_closes(self):
        user = self.new_user("rt-logout")
        session = query_json(self.stack, "SELECT to_json(id) FROM auth.sessions "
                             "WHERE user_id = :'u'::uuid", u=user["id"])
        reader = self.subscribe(ticket=self.ticket(user["token"]))
        self.assert_stream(reader)
        t0 = time.monotonic()
        self.assertEqual(self.request("POST", "/v1/auth/logout",
                                      headers=self.auth(user["token"])).status, 204)
        ev = reader.wait_type("session.revoked")
        self.assertIsNotNone(ev, "session.revoked not heard")
        self.assertLess(time.monotonic() - t0, HEAR_S)
        self.assertEqual(json.loads(ev["data"])["data"],
                         {"session_id": session, "reason": "logout"})
        self.assertTrue(reader.closed.wait(4.5), "the server kept the stream open")
        self.assertLess(time.monotonic() - t0, 4.5)

    def test_13_password_change_ends_the_other_sessions_streams(self):
        user = self.new_user("rt-pw")
        other_token = self.login(user["email"])["access_token"]
        other = self.subscribe(other_token)
        current = self.subscribe(user["token"])
        self.assert_stream(other)
        self.assert_stream(current)
        t0 = time.monotonic()
        resp = self.request("POST", "/v1/auth/password/change",
                            {"current_password": bl.GOOD_PASSWORD,
                             "new_password": "Zx9!qWe7#rTy-2uI"},
                            headers=self.auth(user["token"]))
        self.assertEqual(resp.status, 204, resp)
        ev = other.wait_type("session.revoked")
        self.assertIsNotNone(ev)
        self.assertLess(time.monotonic() - t0, HEAR_S)
        self.assertTrue(other.closed.wait(4.5), "the other session's stream stayed open")
        self.assertEqual([e for e in current.drain(0.3) if e.get("event") == "session.revoked"],
                         [], "the current session heard its own end")
        self.assertFalse(current.closed.is_set(), "the current session's stream was closed")

    def test_14_last_event_id_gets_what_was_missed(self):
        user = self.new_user("rt-resume")
        reader = self.subscribe(user["token"])
        self.subscription_event(user, "active")
        first = reader.wait_type("subscription.updated")
        self.assertIsNotNone(first)
        reader.drain(0.3)
        reader.close()
        # Missed while away: the subscription goes past due.
        self.subscription_event(user, "past_due")
        time.sleep(1.0)
        for how in ("header", "query"):
            with self.subTest(how=how):
                if how == "header":
                    back = self.subscribe(user["token"], headers={"Last-Event-ID": first["id"]})
                else:
                    back = self.subscribe(ticket=self.ticket(user["token"]),
                                          query="last_event_id=" + first["id"].replace(
                                              "[", "%5B").replace("]", "%5D").replace(
                                              ",", "%2C"))
                self.assert_stream(back)
                ev = back.wait_type("subscription.updated")
                self.assertIsNotNone(ev, "the missed event was not replayed")
                self.assertEqual(json.loads(ev["data"])["data"]["object"]["status"], "past_due")
                back.close()
        # Without Last-Event-ID a new connection starts at the newest.
        fresh = self.subscribe(user["token"])
        self.assertEqual(fresh.drain(0.5), [])

    def test_15_websocket_and_http2(self):
        user = self.new_user("rt-ws")
        ws = WsClient(self.stack, "/v1/realtime", self.auth(user["token"]))
        self.addCleanup(ws.close)
        self.assertEqual(ws.status, 101)
        self.assertTrue(ws.accept_ok)
        self.subscription_event(user, "active")
        seen = set()
        for _ in range(2):
            text = ws.recv_text()
            self.assertIsNotNone(text, "no event over the WebSocket")
            seen.add(json.loads(text)["type"])
        self.assertEqual(seen, {"subscription.updated", "entitlements.changed"})
        # A client's message publishes nothing: the other subscriber of
        # the same channels hears nothing, and the sender is disconnected.
        sse = self.subscribe(user["token"])
        talker = WsClient(self.stack, "/v1/realtime", self.auth(user["token"]))
        self.addCleanup(talker.close)
        self.assertEqual(talker.status, 101)
        talker.send(json.dumps({"id": "evt_forged", "type": "session.revoked", "data": {}}))
        self.assertIsNone(talker.recv_text(1.0))
        self.assertEqual(sse.drain(0.5), [], "a client's message reached a subscriber")
        self.assertEqual(ws.recv_text(0.2), None, "a client's message reached a subscriber")
        # The SSE stream also over HTTP/2 (curl negotiates h2 by ALPN).
        ticket = self.ticket(user["token"])
        proc = subprocess.run(
            ["curl", "-sS", "--http2", "-N", "--noproxy", "*", "--cacert",
             self.stack.path("tls", "cert.pem"), "-H", "Accept: text/event-stream",
             "-o", "/dev/null", "-w", "%{http_version} %{http_code} %{content_type}",
             "--max-time", "2", f"https://127.0.0.1:{self.stack.https_port}/v1/realtime?ticket={ticket}"],
            capture_output=True, text=True, timeout=10)
        version, code, ctype = proc.stdout.split(" ", 2)
        self.assertEqual((version, code), ("2", "200"), proc.stderr)
        self.assertTrue(ctype.startswith("text/event-stream"))

    # --- nothing else reaches nchan -----------------------------------------------

    def test_20_clients_cannot_publish_or_reach_internals(self):
        user = self.new_user("rt-pub")
        self.assert_error(self.request("POST", "/v1/realtime", {"x": 1},
                                       headers=self.auth(user["token"])), 405,
                          "method_not_allowed")
        for method in ("GET", "POST"):
            for path in ("/_stoa/realtime/user", f"/_stoa/realtime/sub/u.{user['id']}",
                         "/publish"):
                resp = self.request(method, path, {"x": 1} if method == "POST" else None,
                                    headers=self.auth(user["token"]))
                self.assertEqual(resp.status, 404, (method, path, resp))

    def test_21_publisher_is_a_private_unix_socket(self):
        sock = self.stack.path("sock", "realtime.sock")
        self.assertEqual(os.stat(sock).st_mode & 0o777, 0o600)
        with open(self.stack.path("nginx", "nginx.conf")) as f:
            conf = f.read()
        listens = re.findall(r"^\s*listen\s+([^;]+);", conf, re.M)
        tcp = {f"127.0.0.1:{self.stack.https_port}", f"127.0.0.1:{self.stack.http_port}"}
        for listen in listens:
            address = listen.split()[0]
            self.assertTrue(address in tcp or address == f"unix:{sock}", listen)
        # The ports nginx listens on are exactly the two of the stack.
        with open(self.stack.path("nginx", "nginx.pid")) as f:
            master = f.read().strip()
        out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
        ports = {int(m.group(1)) for line in out.splitlines()
                 if f"pid={master}," in line
                 for m in [re.search(r":(\d+)\s", line)] if m}
        self.assertEqual(ports, {self.stack.https_port, self.stack.http_port})


if __name__ == "__main__":
    unittest.main()
