"""Product updates (SPEC §8): an admin sends an update to a list of users,
a role, a plan or everyone; stoa-jobs fans it out in batches (one feed row
per recipient, a mail to each who wants product mail); each user reads
their feed, newest first, marks items read or done; the admin sees the
counts. A worker killed mid-fan-out loses no recipient and writes none
twice. Bad input is refused by name, other users' items are 404.
"""

import json
import signal
import subprocess
import time
import unittest
import uuid

import billinglib as bl
from authlib import SourceClient, SourceClientTestCase, count_rows, wait_outbox_settled
from harness import OPEN_LIMITS, Db, wait_until
from jobslib import restart_stack_worker, stop_stack_worker
from realtimelib import HEAR_S, SseReader

GOOD_PASSWORD = bl.GOOD_PASSWORD
RANDOM_ID = "5b0c8f4e-3f0a-4c52-9d7e-1f2a3b4c5d6e"


class UpdatesTest(SourceClientTestCase):
    stack_env = OPEN_LIMITS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.db = Db(cls.stack)
            cls.admin_email = bl.unique_email("upd-admin")
            cls.finance_email = bl.unique_email("upd-finance")
            for email_, role in ((cls.admin_email, "admin"), (cls.finance_email, "finance")):
                proc = bl.create_user(cls.stack, email_, role)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr)
            c = cls.stack_client()
            cls.alice_email = bl.unique_email("upd-alice")
            cls.bob_email = bl.unique_email("upd-bob")
            cls.alice = cls.register(c, cls.alice_email, "Alice")
            cls.bob = cls.register(c, cls.bob_email, "Bob")
        except BaseException:
            cls._failed = True
            raise

    @classmethod
    def stack_client(cls):
        return SourceClient(cls.stack)

    @classmethod
    def register(cls, c, address, name):
        resp = c.request("POST", "/v1/auth/register",
                         {"email": address, "password": GOOD_PASSWORD, "name": name})
        if resp.status != 201:
            raise RuntimeError(f"register {address}: {resp.status} {resp.body!r}")
        return resp.json["user"]["id"]

    # --- helpers -----------------------------------------------------------

    def token(self, c, address):
        resp = c.request("POST", "/v1/auth/login", {"email": address, "password": GOOD_PASSWORD})
        return self.assert_ok_json(resp)["access_token"]

    def send(self, c, token, body, key=None, status=201):
        headers = {"Idempotency-Key": key or str(uuid.uuid4())}
        resp = c.request("POST", "/v1/admin/updates", body, headers=headers, token=token)
        return self.assert_ok_json(resp, status) if status else resp

    def update(self, title, audience, body="Hello", **extra):
        return {"title": title, "body": body, "audience": audience, **extra}

    def feed(self, c, token, query=""):
        return self.assert_ok_json(c.request("GET", "/v1/updates" + query, token=token))

    def detail(self, c, token, update_id):
        return self.assert_ok_json(c.request("GET", f"/v1/admin/updates/{update_id}", token=token))

    def wait_delivered(self, c, token, update_id, timeout=20.0):
        last = []

        def delivered():
            last[:] = [self.detail(c, token, update_id)]
            return last[0]["delivered_at"] is not None
        ok, _ = wait_until(delivered, timeout, interval=0.1)
        self.assertTrue(ok, f"update {update_id} was not delivered within {timeout}s: {last}")
        return last[0]

    def active_count(self, where="true", **params):
        return count_rows(self.stack, f"SELECT 1 FROM auth.users u WHERE u.status = 'active' "
                                      f"AND ({where})", **params)

    # --- sending and receiving ---------------------------------------------

    def test_01_to_ids_feed_read_done_counts_and_mail(self):
        c = self.client()
        admin = self.token(c, self.admin_email)
        alice = self.token(c, self.alice_email)
        bob = self.token(c, self.bob_email)
        key = str(uuid.uuid4())
        body = "**New** billing page.\n\nSee [the docs](https://example.com/docs?a=1&b=2)\n<script>x</script>"
        sent = self.send(c, admin, self.update("Billing is here", {"user_ids": [self.alice.upper()]},
                                               body=body, action_required=True), key=key)
        self.assertEqual(sent["recipients"], 1, sent)
        self.assertEqual(sent["audience"], {"user_ids": [self.alice]}, sent)
        self.assertTrue(sent["action_required"])
        for member in ("delivered", "mailed", "read", "done"):
            self.assertIn(member, sent)
        # The same key: the same update, not a second one.
        again = c.request("POST", "/v1/admin/updates",
                          self.update("Billing is here", {"user_ids": [self.alice.upper()]},
                                      body=body, action_required=True),
                          headers={"Idempotency-Key": key}, token=admin)
        self.assertEqual(again.status, 201)
        self.assertEqual(again.json["id"], sent["id"])
        self.assertEqual(self.db.count("SELECT 1 FROM admin.updates WHERE title = 'Billing is here'"),
                         1)

        self.wait_delivered(c, admin, sent["id"])
        wait_outbox_settled(self.stack)
        items = self.feed(c, alice)["data"]
        self.assertEqual([i["id"] for i in items], [sent["id"]])
        item = items[0]
        self.assertEqual(item["title"], "Billing is here")
        self.assertEqual(item["body"], body)
        self.assertIsNone(item["read_at"])
        self.assertIsNone(item["done_at"])
        self.assertEqual(self.feed(c, bob)["data"], [], "bob is not in the audience")

        # Someone else's item is not found; so is an unknown or malformed id.
        for path in (f"/v1/updates/{sent['id']}/read", f"/v1/updates/{sent['id']}/done"):
            self.assert_error(c.request("POST", path, token=bob), 404, "not_found")
        for bad in (RANDOM_ID, "nope", "1"):
            self.assert_error(c.request("POST", f"/v1/updates/{bad}/read", token=alice), 404,
                              "not_found")

        read = self.assert_ok_json(c.request("POST", f"/v1/updates/{sent['id']}/read", token=alice))
        self.assertIsNotNone(read["read_at"])
        self.assertIsNone(read["done_at"])
        again = self.assert_ok_json(c.request("POST", f"/v1/updates/{sent['id']}/read",
                                              token=alice))
        self.assertEqual(again["read_at"], read["read_at"], "read is idempotent")
        self.assertEqual(self.feed(c, alice, "?unread=true")["data"], [])
        self.assertEqual(len(self.feed(c, alice, "?unread=false")["data"]), 1)
        done = self.assert_ok_json(c.request("POST", f"/v1/updates/{sent['id']}/done", token=alice))
        self.assertIsNotNone(done["done_at"])
        again = self.assert_ok_json(c.request("POST", f"/v1/updates/{sent['id']}/done",
                                              token=alice))
        self.assertEqual(again["done_at"], done["done_at"], "done is idempotent")

        d = self.detail(c, admin, sent["id"])
        self.assertEqual((d["recipients"], d["delivered"], d["mailed"], d["read"], d["done"]),
                         (1, 1, 1, 1, 1), d)
        listed = self.assert_ok_json(c.request("GET", "/v1/admin/updates?limit=100", token=admin))
        self.assertIn(sent["id"], [u["id"] for u in listed["data"]])

        # The mail: the title as subject, the body's Markdown as HTML, and
        # nothing of the body passed through as markup.
        mails = bl.mails_to(self.stack, self.alice_email, part="html")
        subjects = [s for s, _ in mails]
        self.assertIn("Billing is here", subjects)
        html = [h for s, h in mails if s == "Billing is here"][0]
        self.assertIn("<strong>New</strong>", html)
        self.assertIn('<a href="https://example.com/docs?a=1&amp;b=2">the docs</a>', html)
        self.assertIn("&lt;script&gt;", html)
        self.assertNotIn("<script>", html)
        self.assertEqual([s for s, _ in bl.mails_to(self.stack, self.bob_email)
                          if s == "Billing is here"], [])
        audit = self.db.rows("SELECT action, actor_id::text FROM admin.audit_log "
                             "WHERE action = 'update.sent' AND details->>'update_id' = :'id'",
                             id=sent["id"])
        self.assertEqual(len(audit), 1, audit)

    def test_02_to_a_role_a_plan_and_everyone(self):
        c = self.client()
        admin = self.token(c, self.admin_email)
        finance = self.token(c, self.finance_email)
        alice = self.token(c, self.alice_email)
        bob = self.token(c, self.bob_email)

        # A role.
        sent = self.send(c, admin, self.update("For finance", {"role": "finance"}))
        self.assertEqual(sent["recipients"], self.active_count("u.role = 'finance'"))
        self.wait_delivered(c, admin, sent["id"])
        self.assertIn(sent["id"], [i["id"] for i in self.feed(c, finance)["data"]])
        self.assertNotIn(sent["id"], [i["id"] for i in self.feed(c, alice)["data"]])

        # A plan: bob holds a live subscription on it, alice a canceled one.
        plan = "upd-" + bl.rand(8)
        price = bl.stripe_id("price")
        self.db.exec("""
            WITH p AS (INSERT INTO billing.plans (key, name) VALUES (:'plan', 'Updates plan')
                       RETURNING id)
            INSERT INTO billing.prices (plan_id, amount, currency, interval, stripe_price_id)
            SELECT id, 1000, 'eur', 'month', :'price' FROM p""", plan=plan, price=price)
        for user_id, status in ((self.bob, "active"), (self.alice, "canceled")):
            self.db.exec("""
                INSERT INTO billing.subscriptions (stripe_subscription_id, user_id,
                    stripe_customer_id, status, stripe_price_id)
                VALUES (:'sub', :'user', :'cus', :'status', :'price')""",
                         sub=bl.stripe_id("sub"), user=user_id, cus=bl.stripe_id("cus"),
                         status=status, price=price)
        sent = self.send(c, admin, self.update("For the plan", {"plan": plan}))
        self.assertEqual(sent["recipients"], 1, sent)
        self.wait_delivered(c, admin, sent["id"])
        self.assertIn(sent["id"], [i["id"] for i in self.feed(c, bob)["data"]])
        self.assertNotIn(sent["id"], [i["id"] for i in self.feed(c, alice)["data"]])

        # Everyone: every active account, newest update first in each feed.
        sent = self.send(c, admin, self.update("For everyone", {"all": True}))
        self.assertEqual(sent["recipients"], self.active_count(), sent)
        d = self.wait_delivered(c, admin, sent["id"])
        self.assertEqual(d["delivered"], d["recipients"], d)
        for token in (alice, bob, finance, admin):
            self.assertEqual(self.feed(c, token)["data"][0]["id"], sent["id"])
        self.assertEqual(self.db.count("""
            SELECT 1 FROM auth.users u WHERE u.status = 'active' AND NOT EXISTS (
              SELECT 1 FROM admin.update_recipients r WHERE r.update_id = :'id'
              AND r.user_id = u.id)""", id=sent["id"]), 0, "an active account was missed")

    def test_03_opt_out_keeps_the_feed_and_drops_the_mail(self):
        c = self.client()
        admin = self.token(c, self.admin_email)
        bob = self.token(c, self.bob_email)
        resp = c.request("PATCH", "/v1/me", {"notification_prefs": {"product_updates": False}},
                         token=bob)
        self.assert_ok_json(resp)
        self.addCleanup(lambda: self.db.exec(
            "UPDATE auth.users SET notification_prefs = '{}' WHERE id = :'id'", id=self.bob))
        sent = self.send(c, admin, self.update("Quiet one", {"user_ids": [self.bob]}))
        self.wait_delivered(c, admin, sent["id"])
        wait_outbox_settled(self.stack)
        self.assertIn(sent["id"], [i["id"] for i in self.feed(c, bob)["data"]])
        self.assertEqual([s for s, _ in bl.mails_to(self.stack, self.bob_email)
                          if s == "Quiet one"], [])
        d = self.detail(c, admin, sent["id"])
        self.assertEqual((d["delivered"], d["mailed"]), (1, 0), d)

    def test_04_fanout_in_batches_survives_a_killed_worker(self):
        c = self.client()
        admin = self.token(c, self.admin_email)
        n = 20000
        tag = bl.rand(6)
        # Accounts written straight to the table (no password: they never
        # log in); all but every tenth have opted out of product mail.
        self.db.exec("""
            INSERT INTO auth.users (email, name, role, notification_prefs)
            SELECT 'bulk-' || :'tag' || '-' || i || '@example.com', 'Bulk ' || i, 'client',
                   CASE WHEN i % 10 = 0 THEN '{}'::jsonb
                        ELSE '{"product_updates": false}'::jsonb END
            FROM generate_series(1, :n) i""", tag=tag, n=n)
        stop_stack_worker(self.stack, signal.SIGKILL)
        self.addCleanup(restart_stack_worker, self.stack)
        sent = self.send(c, admin, self.update("Bulk " + tag, {"role": "client"}))
        expected = self.active_count("u.role = 'client'")
        self.assertEqual(sent["recipients"], expected)
        self.assertGreaterEqual(expected, n)
        restart_stack_worker(self.stack)
        # Kill the worker once some batches are written and others not.
        ok, _ = wait_until(lambda: 0 < self.db.count(
            "SELECT 1 FROM admin.update_recipients WHERE update_id = :'id'", id=sent["id"]),
            20, interval=0.005)
        self.assertTrue(ok, "the fan-out never started")
        stop_stack_worker(self.stack, signal.SIGKILL)
        written = self.db.count("SELECT 1 FROM admin.update_recipients WHERE update_id = :'id'",
                                id=sent["id"])
        self.assertLess(written, expected, "the kill came after the whole fan-out")
        restart_stack_worker(self.stack)
        d = self.wait_delivered(c, admin, sent["id"], timeout=60)
        self.assertEqual(d["delivered"], expected, d)
        self.assertEqual(self.db.count("SELECT 1 FROM admin.update_recipients "
                                       "WHERE update_id = :'id'", id=sent["id"]), expected)
        # One mail job per recipient who wants mail, none for the others.
        wanting = self.active_count(
            "u.role = 'client' AND coalesce(u.notification_prefs->>'product_updates', 'true') "
            "<> 'false'")
        self.assertEqual(self.db.count("SELECT 1 FROM jobs.outbox WHERE kind = 'updates.mail' "
                                       "AND payload->>'update_id' = :'id'", id=sent["id"]),
                         wanting)
        # Statistics on the fresh mails first: without them the planner
        # may scan the mails once per user (past psql's 30 s on a loaded
        # host).
        self.db.exec("ANALYZE jobs.outbox, auth.users")
        self.assertEqual(self.db.count(
            "SELECT 1 FROM jobs.outbox o JOIN (SELECT id::text AS id FROM auth.users WHERE "
            "notification_prefs->>'product_updates' = 'false' OFFSET 0) u "
            "ON u.id = o.payload->>'user_id' WHERE o.kind = 'updates.mail' "
            "AND o.payload->>'update_id' = :'id'", id=sent["id"]), 0)
        # One live event per batch of a thousand, each naming its batch's
        # recipients once (none twice across the runs before and after the
        # kill).
        channels = self.db.value("""
            SELECT json_agg(c) FROM jobs.outbox o,
              jsonb_array_elements_text(o.payload->'channels') c
            WHERE o.kind = 'realtime.publish' AND o.payload->'event'->'data'->>'id' = :'id'
            """, id=sent["id"])
        self.assertEqual(len(channels), expected)
        self.assertEqual(len(set(channels)), expected, "a recipient's event was queued twice")
        # The bulk accounts take no further part.
        self.db.exec("UPDATE auth.users SET status = 'suspended' WHERE email LIKE :'p'",
                     p=f"bulk-{tag}-%")
        self.db.exec("UPDATE jobs.outbox SET done_at = now() WHERE kind = 'updates.mail' "
                     "AND done_at IS NULL AND payload->>'update_id' = :'id'", id=sent["id"])

    # --- refusals ------------------------------------------------------------

    def test_05_bad_input_is_refused_by_name(self):
        c = self.client()
        admin = self.token(c, self.admin_email)
        ok = {"user_ids": [self.alice]}
        cases = [
            ({"body": "b", "audience": ok}, "title", "required"),
            (self.update("", ok), "title", "required"),
            (self.update("   ", ok), "title", "required"),
            (self.update("é" * 201, ok), "title", "too_long"),
            (self.update(7, ok), "title", None),
            (self.update("t", ok, body=""), "body", "required"),
            (self.update("t", ok, body="x" * 20001), "body", "too_long"),
            ({"title": "t", "body": "b"}, "audience", "required"),
            (self.update("t", {}), "audience", "empty"),
            (self.update("t", []), "audience", "invalid"),
            (self.update("t", {"role": "admin", "all": True}), "audience", "invalid"),
            (self.update("t", {"everyone": True}), "audience", "invalid"),
            (self.update("t", {"user_ids": []}), "audience.user_ids", "empty"),
            (self.update("t", {"user_ids": "x"}), "audience.user_ids", "empty"),
            (self.update("t", {"user_ids": ["not-a-uuid"]}), "audience.user_ids",
             "invalid_uuid"),
            (self.update("t", {"user_ids": [self.alice, 5]}), "audience.user_ids",
             "invalid_uuid"),
            (self.update("t", {"user_ids": [RANDOM_ID]}), "audience.user_ids", "unknown_user"),
            (self.update("t", {"user_ids": [str(uuid.uuid4()) for _ in range(1001)]}),
             "audience.user_ids", "too_many"),
            (self.update("t", {"role": "wizard"}), "audience.role", "unknown"),
            (self.update("t", {"role": 3}), "audience.role", "unknown"),
            (self.update("t", {"plan": "no-such-plan"}), "audience.plan", "unknown"),
            (self.update("t", {"plan": ""}), "audience.plan", "invalid"),
            (self.update("t", {"all": False}), "audience.all", "must_be_true"),
            (self.update("t", {"all": "yes"}), "audience.all", "must_be_true"),
            (self.update("t", ok, action_required="yes"), "action_required", None),
            (self.update("t", ok, colour="red"), "colour", "unknown_field"),
        ]
        before = self.db.count("SELECT 1 FROM admin.updates")
        for body, field, reason in cases:
            with self.subTest(field=field, reason=reason, body=str(body)[:80]):
                resp = self.send(c, admin, body, status=None)
                fields = self.assert_error(resp, 400, "invalid_request")["fields"]
                self.assertIn(field, fields)
                if reason:
                    self.assertEqual(fields[field], reason)
        for raw in (b"{", b"[]", b'"x"', b"\xff\xfe"):
            resp = c.request("POST", "/v1/admin/updates", raw, token=admin, raw=True,
                             headers={"Content-Type": "application/json",
                                      "Idempotency-Key": str(uuid.uuid4())})
            self.assertEqual(resp.status, 400, raw)
        self.assertEqual(self.db.count("SELECT 1 FROM admin.updates"), before,
                         "a refused update left a row")

        # Who may: admins only on the admin routes; anyone signed in on
        # their own feed.
        alice = self.token(c, self.alice_email)
        finance = self.token(c, self.finance_email)
        for token in (alice, finance):
            self.assert_error(self.send(c, token, self.update("t", ok), status=None), 403,
                              "forbidden")
            self.assert_error(c.request("GET", "/v1/admin/updates", token=token), 403,
                              "forbidden")
            self.assert_error(c.request("GET", f"/v1/admin/updates/{RANDOM_ID}", token=token),
                              403, "forbidden")
        for path, method in (("/v1/admin/updates", "GET"), ("/v1/updates", "GET"),
                             (f"/v1/updates/{RANDOM_ID}/read", "POST")):
            self.assert_error(c.request(method, path), 401, "unauthenticated")
        self.assert_error(c.request("GET", f"/v1/admin/updates/{RANDOM_ID}", token=admin), 404,
                          "not_found")
        self.assert_error(c.request("GET", "/v1/admin/updates/nope", token=admin), 404,
                          "not_found")
        for query, field in (("?unread=maybe", "unread"), ("?limit=0", "limit"),
                             ("?cursor=zzz", "cursor"), ("?colour=1", "colour")):
            details = self.assert_error(c.request("GET", "/v1/updates" + query, token=alice),
                                        400, "invalid_request")
            self.assertIn(field, details["fields"])

    def test_06_feed_pages_newest_first(self):
        c = self.client()
        admin = self.token(c, self.admin_email)
        alice = self.token(c, self.alice_email)
        ids = [self.send(c, admin, self.update(f"Page {i}", {"user_ids": [self.alice]}))["id"]
               for i in range(5)]
        for i in ids:
            self.wait_delivered(c, admin, i)
        seen, cursor = [], None
        while True:
            page = self.feed(c, alice, "?limit=2" + (f"&cursor={cursor}" if cursor else ""))
            seen += [i["id"] for i in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        self.assertEqual([i for i in seen if i in ids], list(reversed(ids)))
        self.assertEqual(len(seen), len(set(seen)), "a page repeated an item")

    def test_07_recipients_hear_it_live_and_no_one_else(self):
        c = self.client()
        admin = self.token(c, self.admin_email)
        readers = {}
        for name, address in (("alice", self.alice_email), ("bob", self.bob_email)):
            reader = SseReader(self.stack, "/v1/realtime",
                               {"Authorization": f"Bearer {self.token(c, address)}"})
            self.addCleanup(reader.close)
            self.assertEqual(reader.status, 200, reader.body)
            readers[name] = reader
        t0 = time.monotonic()
        sent = self.send(c, admin, self.update("Live one", {"user_ids": [self.alice]},
                                               body="Heard *now*", action_required=True))
        ev = readers["alice"].wait_type("update.created", timeout=HEAR_S)
        elapsed = time.monotonic() - t0
        self.assertIsNotNone(ev, f"alice heard nothing within {HEAR_S}s")
        self.assertLess(elapsed, HEAR_S)
        doc = json.loads(ev["data"])
        self.assertEqual(doc["type"], "update.created")
        self.assertRegex(doc["id"], r"^evt_[0-9a-f-]{36}$")
        self.assertEqual(doc["data"]["id"], sent["id"])
        self.assertEqual(doc["data"]["title"], "Live one")
        self.assertEqual(doc["data"]["body_preview"], "Heard *now*")
        self.assertFalse(doc["data"]["body_truncated"])
        self.assertTrue(doc["data"]["action_required"])
        # A long body: the event carries its first 280 characters.
        long_body = "é" * 300
        self.send(c, admin, self.update("Long one", {"user_ids": [self.alice]}, body=long_body))
        ev = readers["alice"].wait_type("update.created", timeout=HEAR_S)
        self.assertIsNotNone(ev)
        data = json.loads(ev["data"])["data"]
        self.assertEqual((data["body_preview"], data["body_truncated"]), ("é" * 280, True))
        self.assertEqual([e for e in readers["bob"].drain(1.0)
                          if e.get("event") == "update.created"], [],
                         "bob heard an update sent to alice")

    def test_08_a_statement_timeout_is_503_not_500(self):
        """A request stuck behind a lock past db_statement_timeout_ms (5 s)
        is answered 503 unavailable, and the pool goes on serving."""
        c = self.client()
        admin = self.token(c, self.admin_email)
        alice = self.token(c, self.alice_email)
        sent = self.send(c, admin, self.update("Locked one", {"user_ids": [self.alice]}))
        self.wait_delivered(c, admin, sent["id"])
        holder = subprocess.Popen(
            ["psql", "-X", "-q", "-h", self.stack.path("pg", "sock"), "-p", "5432", "-U", "stoa",
             "-d", "stoa", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(holder.kill)
        holder.stdin.write(f"BEGIN; SELECT 1 FROM admin.update_recipients WHERE update_id = "
                           f"'{sent['id']}' FOR UPDATE; SELECT pg_sleep(7); COMMIT;\n")
        holder.stdin.flush()
        time.sleep(0.5)
        t0 = time.monotonic()
        resp = c.request("POST", f"/v1/updates/{sent['id']}/read", token=alice)
        self.assert_error(resp, 503, "unavailable")
        self.assertGreater(time.monotonic() - t0, 4.0, "it did wait for the lock")
        holder.stdin.close()
        holder.wait(timeout=15)
        self.assert_ok_json(c.request("POST", f"/v1/updates/{sent['id']}/read", token=alice))


if __name__ == "__main__":
    unittest.main()
