"""End-to-end tests of the billing pool's webhooks (SPEC §6) against the fake
Stripe: signature verification, ordering, refunds and the catalogue made in
Stripe's dashboard. The stack and helpers are test_billing.py's.

Run from the repository root:
    python3 -m unittest discover -s tests/integration -p 'test_billing_webhooks.py' -v
"""

import concurrent.futures
import json
import threading
import time
import unittest

import billinglib as bl
from harness import wait_until
from billinglib import sign_payload
from test_billing import (DEMO_FEATURES, SECRET_KEY, WEBHOOK_SECRETS, BillingFakeStripeCase,
                          needs_gateway)


class BillingWebhookTest(BillingFakeStripeCase):
    """Webhooks from (or signed as) Stripe, through nginx."""

    # --- 2. webhook verification -----------------------------------------------

    def test_02_valid_event_and_duplicate(self):
        sub = bl.stripe_id("sub_")
        obj = bl.subscription_object(sub, bl.stripe_id("cus_"), "active", bl.stripe_id("price_"))
        event_id, body = bl.event_body("customer.subscription.created", obj)
        signature = sign_payload(WEBHOOK_SECRETS[0], body)
        resp = self.hooks.post(body, signature)
        self.assertEqual(self.assert_ok_json(resp), {"received": True, "duplicate": False})
        stored = self.stored_event(event_id)
        self.assertIsNotNone(stored, "the event is stored by its id")
        self.assertEqual(stored["type"], "customer.subscription.created")
        self.assertTrue(stored["processed"], repr(stored))
        self.assertEqual(len(self.db.outbox_events("subscription.updated", sub)), 1)
        self.assertEqual(self.db.value("SELECT status FROM billing.subscriptions"
                                       " WHERE stripe_subscription_id = :'s'", s=sub), "active")

        # The same bytes again: acknowledged as a duplicate, nothing applied.
        resp = self.hooks.post(body, sign_payload(WEBHOOK_SECRETS[0], body))
        self.assertEqual(self.assert_ok_json(resp), {"received": True, "duplicate": True})
        # The same id with other content (a newer status) does nothing either.
        obj2 = dict(obj, status="past_due")
        _, body2 = bl.event_body("customer.subscription.updated", obj2,
                                 created=int(time.time()) + 5, event_id=event_id)
        resp = self.hooks.post(body2, sign_payload(WEBHOOK_SECRETS[0], body2))
        self.assertEqual(self.assert_ok_json(resp), {"received": True, "duplicate": True})
        self.assertEqual(self.db.count("SELECT 1 FROM billing.stripe_events WHERE id = :'id'",
                                       id=event_id), 1)
        self.assertEqual(len(self.db.outbox_events("subscription.updated", sub)), 1,
                         "no second domain event")
        self.assertEqual(self.db.value("SELECT status FROM billing.subscriptions"
                                       " WHERE stripe_subscription_id = :'s'", s=sub), "active")

    def test_02_fake_delivery_and_redelivery(self):
        # The fake's own signing and envelope (pretty-printed, charset in
        # the Content-Type), then the same event byte for byte.
        invoice = bl.invoice_object(bl.stripe_id("in_"), bl.stripe_id("cus_"), "open", 700)
        sent = self.fake.emit("invoice.finalized", invoice)
        self.assertEqual([d["status"] for d in sent], [200], repr(sent))
        again = self.fake.redeliver(sent[0]["id"])
        self.assertEqual([d["status"] for d in again], [200], repr(again))
        self.assertEqual(self.db.count("SELECT 1 FROM billing.invoices"
                                       " WHERE stripe_invoice_id = :'i'", i=invoice["id"]), 1)
        self.assertTrue(self.stored_event(sent[0]["id"])["processed"])

    def test_02_concurrent_deliveries_apply_once(self):
        sub = bl.stripe_id("sub_")
        obj = bl.subscription_object(sub, bl.stripe_id("cus_"), "active", bl.stripe_id("price_"))
        event_id, body = bl.event_body("customer.subscription.created", obj)
        signature = sign_payload(WEBHOOK_SECRETS[0], body)
        n = 10
        barrier = threading.Barrier(n)

        def deliver(_):
            client = self.hooks.client(timeout=10)
            try:
                barrier.wait(10)
                return self.hooks.post(body, signature, client=client)
            except OSError as e:  # includes timeouts
                return e
            finally:
                client.close()

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(deliver, range(n)))
        failed = [a if isinstance(a, Exception) else (a.status, a.body[:120]) for a in answers
                  if isinstance(a, Exception) or a.status != 200]
        self.assertEqual(failed, [], f"{len(failed)} of {n} concurrent deliveries failed")
        flags = sorted(resp.json["duplicate"] for resp in answers)
        self.assertEqual(flags, [False] + [True] * (n - 1), "exactly one delivery applied")
        self.assertEqual(self.db.count("SELECT 1 FROM billing.stripe_events WHERE id = :'id'",
                                       id=event_id), 1)
        self.assertEqual(len(self.db.outbox_events("subscription.updated", sub)), 1,
                         "one effect")

    def test_02_bad_signatures_are_refused(self):
        now = int(time.time())
        s1 = WEBHOOK_SECRETS[0]

        def sig(body, t=None, secret=s1):
            return sign_payload(secret, body, now if t is None else t)

        def mac(body, t):
            return bl.hmac_hex(s1, b"%d." % t + body)

        cases = {
            "wrong secret": lambda b: sig(b, secret="whsec_" + "0" * 32),
            "missing header": lambda b: None,
            "empty header": lambda b: "",
            "stale (301 s old)": lambda b: sig(b, t=now - 301),
            "future (400 s ahead)": lambda b: sig(b, t=now + 400),
            "t=abc": lambda b: f"t=abc,v1={mac(b, now)}",
            "no v1": lambda b: f"t={now}",
            "no t": lambda b: f"v1={mac(b, now)}",
            "v0 only": lambda b: f"t={now},v0={mac(b, now)}",
            "v1 not hex": lambda b: f"t={now},v1=" + "zz" * 32,
            "v1 truncated": lambda b: f"t={now},v1={mac(b, now)[:-2]}",
            "two timestamps": lambda b: f"t={now},t={now},v1={mac(b, now)}",
            "garbage": lambda b: "\x01nonsense, v1",
        }
        for name, make in cases.items():
            with self.subTest(name):
                event_id, body = bl.event_body("product.created", bl.product_object(
                    bl.stripe_id("prod_"), "Forged", {"evil": True}, active=False))
                resp = self.hooks.post(body, make(body))
                self.assert_error(resp, 400, "invalid_signature")
                self.assertIsNone(self.stored_event(event_id), "a refused event is not stored")
        with self.subTest("body altered after signing"):
            event_id, body = bl.event_body("product.created", bl.product_object(
                bl.stripe_id("prod_"), "Altered", {"seats": 1}, active=False))
            signature = sig(body)
            altered = body.replace(b'"name": "Altered"', b'"name": "Alterer"')
            self.assertNotEqual(altered, body)
            self.assert_error(self.hooks.post(altered, signature), 400, "invalid_signature")
            self.assertIsNone(self.stored_event(event_id))
        with self.subTest("one good v1 among bad ones"):
            event_id, body = bl.event_body("product.created", bl.product_object(
                bl.stripe_id("prod_"), "Multi", {}, active=False))
            header = f"t={now},v1={'ab' * 32},v1={mac(body, now)}"
            self.assertEqual(self.assert_ok_json(self.hooks.post(body, header)),
                             {"received": True, "duplicate": False})

    def test_02_rotation_second_secret(self):
        event_id, body = bl.event_body("product.created", bl.product_object(
            bl.stripe_id("prod_"), "Rotated", {}, active=False))
        resp = self.hooks.post(body, sign_payload(WEBHOOK_SECRETS[1], body))
        self.assertEqual(self.assert_ok_json(resp), {"received": True, "duplicate": False})
        self.assertIsNotNone(self.stored_event(event_id))

    def test_02_signed_bad_bodies(self):
        body = b"this is not JSON {"
        resp = self.hooks.post(body, sign_payload(WEBHOOK_SECRETS[0], body))
        self.assert_error(resp, 400, "invalid_json")
        # Signed JSON that is no Stripe event.
        for doc in ({"hello": "world"}, {"id": "evt_x", "type": "x", "created": 1, "data": {}},
                    [1, 2, 3]):
            with self.subTest(doc=doc):
                body = json.dumps(doc).encode()
                resp = self.hooks.post(body, sign_payload(WEBHOOK_SECRETS[0], body))
                self.assert_error(resp, 400, "invalid_request")
        # Signed, but not declared as JSON.
        event_id, body = bl.event_body("product.created", bl.product_object(
            bl.stripe_id("prod_"), "Typed", {}, active=False))
        resp = self.hooks.post(body, sign_payload(WEBHOOK_SECRETS[0], body),
                               content_type="text/plain")
        self.assert_error(resp, 415, "unsupported_media_type")
        self.assertIsNone(self.stored_event(event_id))
        # Wrong method.
        resp = self.request("GET", bl.WEBHOOK_PATH)
        self.assert_error(resp, 405, "method_not_allowed")

    def test_02_unknown_event_type_is_stored(self):
        event_id = self.send("radar.early_fraud_warning.created",
                             {"id": bl.stripe_id("issfr_"), "object": "radar.early_fraud_warning",
                              "charge": bl.stripe_id("ch_"), "fraud_type": "misc"})
        stored = self.stored_event(event_id)
        self.assertIsNotNone(stored)
        self.assertEqual(stored["type"], "radar.early_fraud_warning.created")
        self.assertTrue(stored["processed"], repr(stored))

    # --- 5. ordering ----------------------------------------------------------------

    def ordering_fixture(self, tag):
        user = self.new_user(tag)
        key, _, price = self.dashboard_plan(tag, {"ordering": True, "seats": 2})
        customer, sub = bl.stripe_id("cus_"), bl.stripe_id("sub_")
        self.link_customer(user["id"], customer)
        return user, key, price, customer, sub

    def sub_status(self, sub):
        return self.db.value("SELECT status FROM billing.subscriptions"
                             " WHERE stripe_subscription_id = :'s'", s=sub)

    def test_05_out_of_order_updates(self):
        user, _, price, customer, sub = self.ordering_fixture("order")
        t0 = int(time.time()) - 600

        def obj(status):
            return bl.subscription_object(sub, customer, status, price, user["id"])

        self.send("customer.subscription.created", obj("active"), created=t0)
        self.assertEqual(self.sub_status(sub), "active")
        self.send("customer.subscription.updated", obj("past_due"), created=t0 + 20)
        stale = self.send("customer.subscription.updated", obj("active"), created=t0 + 10)
        self.assertEqual(self.sub_status(sub), "past_due", "an older event cannot move it back")
        self.assertTrue(self.stored_event(stale)["processed"], "the stale event is stored")
        self.assertEqual(self.db.value("SELECT user_id::text FROM billing.subscriptions"
                                       " WHERE stripe_subscription_id = :'s'", s=sub), user["id"])

        self.send("customer.subscription.deleted", obj("canceled"), created=t0 + 30)
        self.send("customer.subscription.updated", obj("active"), created=t0 + 25)
        self.assertEqual(self.sub_status(sub), "canceled")
        # At the same second, a terminal status is not undone either.
        self.send("customer.subscription.updated", obj("active"), created=t0 + 30)
        self.assertEqual(self.sub_status(sub), "canceled")

    def test_05_same_second_events_never_move_a_subscription_back(self):
        user, _, price, customer, sub = self.ordering_fixture("samesecond")
        t0 = int(time.time()) - 600

        def obj(status):
            return bl.subscription_object(sub, customer, status, price, user["id"])

        # Created (incomplete) and paid (active) in one second, delivered
        # the wrong way round: the subscription stays active.
        self.send("customer.subscription.updated", obj("active"), created=t0)
        self.send("customer.subscription.created", obj("incomplete"), created=t0)
        self.assertEqual(self.sub_status(sub), "active")
        # Between live statuses of one second the later delivery wins.
        self.send("customer.subscription.updated", obj("past_due"), created=t0)
        self.assertEqual(self.sub_status(sub), "past_due")
        self.send("customer.subscription.updated", obj("active"), created=t0)
        self.assertEqual(self.sub_status(sub), "active")
        # The right order still moves it forward.
        sub2 = sub + "b"
        obj2 = bl.subscription_object(sub2, customer, "incomplete", price, user["id"])
        self.send("customer.subscription.created", obj2, created=t0)
        self.assertEqual(self.sub_status(sub2), "incomplete")
        obj2 = bl.subscription_object(sub2, customer, "active", price, user["id"])
        self.send("customer.subscription.updated", obj2, created=t0)
        self.assertEqual(self.sub_status(sub2), "active")
        obj2 = bl.subscription_object(sub2, customer, "canceled", price, user["id"])
        self.send("customer.subscription.deleted", obj2, created=t0)
        self.assertEqual(self.sub_status(sub2), "canceled")

    @needs_gateway
    def test_05_entitlements_follow_status(self):
        user, key, price, customer, sub = self.ordering_fixture("entitle")
        token = user["token"]
        features = {"ordering": True, "seats": 2}
        t0 = int(time.time()) - 600

        def obj(status):
            return bl.subscription_object(sub, customer, status, price, user["id"])

        def entitlements():
            return self.assert_ok_json(self.api("GET", "/v1/billing/entitlements", token))

        self.send("customer.subscription.created", obj("active"), created=t0)
        self.assertEqual(entitlements(), {"plan": key, "subscription_status": "active",
                                          "features": features})
        self.send("customer.subscription.updated", obj("past_due"), created=t0 + 20)
        self.send("customer.subscription.updated", obj("active"), created=t0 + 10)
        self.assertEqual(entitlements(), {"plan": key, "subscription_status": "past_due",
                                          "features": features},
                         "past_due keeps the features")
        got = self.assert_ok_json(self.api("GET", "/v1/billing/subscription", token))
        self.assertEqual(got["status"], "past_due")
        self.assertEqual(got["plan"]["key"], key)

        self.send("customer.subscription.deleted", obj("canceled"), created=t0 + 30)
        self.send("customer.subscription.updated", obj("active"), created=t0 + 25)
        self.assertEqual(entitlements(), {"plan": "free", "subscription_status": "none",
                                          "features": DEMO_FEATURES["free"]},
                         "canceled falls back to free")
        got = self.assert_ok_json(self.api("GET", "/v1/billing/subscription", token))
        self.assertEqual(got["status"], "canceled")
        self.assert_error(self.api("POST", "/v1/billing/subscription/cancel", token), 409,
                          "not_cancelable")

    @needs_gateway
    def test_05_entitlements_changed_only_when_they_change(self):
        """entitlements.changed is written in the event's transaction when
        what the plan grants differs from before, with what it grants
        after; an event that leaves them as they were writes none. Also for
        trial_will_end, which has no domain event of its own."""
        user, key, price, customer, sub = self.ordering_fixture("entchg")
        features = {"ordering": True, "seats": 2}
        t0 = int(time.time()) - 600

        def changes():
            return [row["payload"]["data"]["entitlements"] for row in self.db.rows(
                "SELECT payload FROM jobs.outbox WHERE kind = 'event'"
                " AND payload->>'type' = 'entitlements.changed'"
                " AND payload->'data'->>'user_id' = :'u' ORDER BY id", u=user["id"])]

        def obj(sub_id, status, **kw):
            return bl.subscription_object(sub_id, customer, status, price, user["id"], **kw)

        self.send("customer.subscription.created", obj(sub, "active"), created=t0)
        active = {"plan": key, "subscription_status": "active", "features": features}
        self.assertEqual(changes(), [active])
        self.send("customer.subscription.updated",
                  obj(sub, "active", cancel_at_period_end=True), created=t0 + 10)
        self.assertEqual(changes(), [active], "the same grants: no event")
        self.assertEqual(len(self.db.outbox_events("subscription.updated", sub)), 2)
        self.send("customer.subscription.updated", obj(sub, "past_due"), created=t0 + 20)
        past_due = dict(active, subscription_status="past_due")
        self.assertEqual(changes(), [active, past_due])
        # A stale event changes nothing and says nothing.
        self.send("customer.subscription.updated", obj(sub, "active"), created=t0 + 15)
        self.assertEqual(changes(), [active, past_due])
        self.send("customer.subscription.deleted", obj(sub, "canceled"), created=t0 + 30)
        free = {"plan": "free", "subscription_status": "none",
                "features": DEMO_FEATURES["free"]}
        self.assertEqual(changes(), [active, past_due, free])
        # A subscription first heard of by its trial_will_end.
        sub2 = bl.stripe_id("sub_")
        self.send("customer.subscription.trial_will_end", obj(sub2, "trialing"),
                  created=t0 + 40)
        trialing = dict(active, subscription_status="trialing")
        self.assertEqual(changes(), [active, past_due, free, trialing])
        self.assertEqual(changes()[-1], self.assert_ok_json(
            self.api("GET", "/v1/billing/entitlements", user["token"])))

    @needs_gateway
    def test_05_concurrent_events_of_one_user_end_on_what_it_has(self):
        """An upgrade arrives as two events at once, the old subscription's
        deletion and the new one's creation: they apply one after the
        other (the user's entitlements lock), so the last
        entitlements.changed written tells what the user has."""
        user, key, price, customer, sub = self.ordering_fixture("upgrade")
        key2, _, price2 = self.dashboard_plan("upgrade2", {"seats": 9})
        t0 = int(time.time()) - 600

        def last_change():
            rows = self.db.rows(
                "SELECT payload FROM jobs.outbox WHERE kind = 'event'"
                " AND payload->>'type' = 'entitlements.changed'"
                " AND payload->'data'->>'user_id' = :'u' ORDER BY id DESC LIMIT 1",
                u=user["id"])
            return rows[0]["payload"]["data"]["entitlements"] if rows else None

        def deliver(event_type, obj, created):
            _, body = bl.event_body(event_type, obj, created)
            client = self.hooks.client(timeout=15)
            try:
                barrier.wait(10)
                return self.hooks.post(body, sign_payload(WEBHOOK_SECRETS[0], body),
                                       client=client).status
            finally:
                client.close()

        self.send("customer.subscription.created",
                  bl.subscription_object(sub, customer, "active", price, user["id"]), created=t0)
        prices = [price, price2]
        for n in range(1, 9):
            new_sub = bl.stripe_id("sub_")
            barrier = threading.Barrier(2)
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                gone = pool.submit(deliver, "customer.subscription.deleted",
                                   bl.subscription_object(sub, customer, "canceled",
                                                          prices[(n - 1) % 2], user["id"]),
                                   t0 + n)
                made = pool.submit(deliver, "customer.subscription.created",
                                   bl.subscription_object(new_sub, customer, "active",
                                                          prices[n % 2], user["id"]),
                                   t0 + n)
                self.assertEqual([gone.result(), made.result()], [200, 200])
            has = self.assert_ok_json(self.api("GET", "/v1/billing/entitlements", user["token"]))
            self.assertEqual(has["plan"], [key, key2][n % 2], f"round {n}")
            self.assertEqual(last_change(), has, f"round {n}: the last event says otherwise")
            sub = new_sub

    @needs_gateway
    def test_05_an_answer_cached_from_before_a_change_is_never_served(self):
        """A reader that read the database before a webhook's commit and
        stores its answer after it (a plain delete cannot stop that) stores
        it under the old generation: it is not served. A catalogue change
        renews every user's answer the same way."""
        user, key, price, customer, sub = self.ordering_fixture("stalecache")
        token = user["token"]
        cache_key = f"billing:ent:{user['id']}"
        t0 = int(time.time()) - 600

        def entitlements():
            return self.assert_ok_json(self.api("GET", "/v1/billing/entitlements", token))

        self.assertEqual(entitlements()["plan"], "free")
        stale = bl.redis_get(self.stack, cache_key)
        self.assertIsNotNone(stale, "the answer is cached")
        self.assertEqual(entitlements()["plan"], "free")  # served from the cache
        self.send("customer.subscription.created",
                  bl.subscription_object(sub, customer, "active", price, user["id"]), created=t0)
        # The late store of a reader that read before the commit.
        bl.redis_set(self.stack, cache_key, stale)
        self.assertEqual(entitlements()["plan"], key)
        self.assertEqual(entitlements()["plan"], key)  # and cached anew
        fresh = bl.redis_get(self.stack, cache_key)
        self.assertNotEqual(fresh, stale)
        # A catalogue change (a product's features edited at Stripe) makes
        # the cached answer old too.
        self.send("product.updated", bl.product_object(
            bl.stripe_id("prod_"), "an unrelated product"), created=t0 + 5)
        bl.redis_set(self.stack, cache_key, fresh)
        self.assertEqual(entitlements()["plan"], key)
        self.assertNotEqual(bl.redis_get(self.stack, cache_key), fresh,
                            "the answer from before the catalogue change was served")

    def entitlement_changes(self, user_id):
        """The entitlements of each entitlements.changed about a user, in
        the order they were written."""
        return [row["payload"]["data"]["entitlements"] for row in self.db.rows(
            "SELECT payload FROM jobs.outbox WHERE kind = 'event'"
            " AND payload->>'type' = 'entitlements.changed'"
            " AND payload->'data'->>'user_id' = :'u' ORDER BY id", u=user_id)]

    def fanouts_of(self, plan_id):
        return self.db.rows(
            "SELECT id, payload, done_at IS NOT NULL AS done, last_error FROM jobs.outbox"
            " WHERE kind = 'billing.entitlements_fanout' AND payload->>'plan_id' = :'p'"
            " ORDER BY id", p=plan_id)

    def wait_fanouts_done(self, plan_id):
        """The plan's fan-out jobs, once the jobs worker has done them all."""
        ok, _ = wait_until(lambda: all(j["done"] for j in self.fanouts_of(plan_id)),
                           20.0, interval=0.1)
        jobs = self.fanouts_of(plan_id)
        self.assertTrue(ok, f"fan-outs not done: {jobs!r}")
        return jobs

    @needs_gateway
    def test_05_a_catalogue_change_tells_the_users_it_touches(self):
        """A plan's features changed at Stripe (product.updated) or by an
        admin (PATCH) send entitlements.changed to every user whose
        entitlements come from that plan, with what they have now, and to
        no one else; a change that leaves the features as they were sends
        nothing. A price that arrives after subscriptions named it tells
        their users too."""
        features = {"seats": 1}
        key, product, price = self.dashboard_plan("catalogue", features)
        plan_id = self.db.value("SELECT id FROM billing.plans WHERE key = :'k'", k=key)
        other_key, _, other_price = self.dashboard_plan("bystander", {"seats": 3})
        t0 = int(time.time())
        users = []
        for n, p in enumerate([price, price, other_price]):
            user = self.new_user(f"catalogue{n}", login=True)
            customer = bl.stripe_id("cus_")
            self.link_customer(user["id"], customer)
            self.send("customer.subscription.created", bl.subscription_object(
                bl.stripe_id("sub_"), customer, "active", p, user["id"]), created=t0)
            users.append(user)
        on_plan, bystander = users[:2], users[2]
        before = {u["id"]: len(self.entitlement_changes(u["id"])) for u in users}
        jobs_before = len(self.wait_fanouts_done(plan_id))

        def new_changes(user):
            return self.entitlement_changes(user["id"])[before[user["id"]]:]

        # At Stripe: the features change.
        self.send("product.updated", bl.product_object(
            product, f"Plan {key}", {"seats": 5}, key), created=t0 + 10)
        self.assertEqual(len(self.wait_fanouts_done(plan_id)), jobs_before + 1)
        for user in on_plan:
            has = self.assert_ok_json(self.api("GET", "/v1/billing/entitlements", user["token"]))
            self.assertEqual(has, {"plan": key, "subscription_status": "active",
                                   "features": {"seats": 5}})
            self.assertEqual(new_changes(user), [has])
        self.assertEqual(new_changes(bystander), [], "a user of another plan was told")

        # The same features under another name: no fan-out, no event.
        self.send("product.updated", bl.product_object(
            product, f"Renamed {key}", {"seats": 5}, key), created=t0 + 20)
        self.assertEqual(len(self.wait_fanouts_done(plan_id)), jobs_before + 1,
                         self.fanouts_of(plan_id))

        # By an admin: a PATCH of the features tells them; one of the name
        # alone does not.
        resp = self.api("PATCH", f"/v1/admin/plans/{plan_id}", self.admin_token,
                        body={"features": {"seats": 7}})
        self.assert_ok_json(resp)
        resp = self.api("PATCH", f"/v1/admin/plans/{plan_id}", self.admin_token,
                        body={"name": "Seven seats"})
        self.assert_ok_json(resp)
        jobs = self.wait_fanouts_done(plan_id)
        self.assertEqual(len(jobs), jobs_before + 2)
        for user in on_plan:
            self.assertEqual([c["features"] for c in new_changes(user)],
                             [{"seats": 5}, {"seats": 7}])
        self.assertEqual(new_changes(bystander), [])

        # A fan-out run again (a worker killed before it recorded the job
        # done) writes no event twice.
        last = jobs[-1]
        self.db.exec("INSERT INTO jobs.outbox (kind, payload) VALUES"
                     " ('billing.entitlements_fanout', :'p'::jsonb)",
                     p=json.dumps(last["payload"]))
        self.assertEqual(len(self.wait_fanouts_done(plan_id)), jobs_before + 3)
        for user in on_plan:
            self.assertEqual(len(new_changes(user)), 2, "a repeated fan-out wrote again")

        # A subscription on a price not known yet entitles to nothing; the
        # price's arrival tells its user.
        late_price = bl.stripe_id("price_")
        user = self.new_user("catalogue-late", login=True)
        customer = bl.stripe_id("cus_")
        self.link_customer(user["id"], customer)
        self.send("customer.subscription.created", bl.subscription_object(
            bl.stripe_id("sub_"), customer, "active", late_price, user["id"]), created=t0)
        self.assertEqual(self.assert_ok_json(self.api(
            "GET", "/v1/billing/entitlements", user["token"]))["plan"], "free")
        told = len(self.entitlement_changes(user["id"]))
        self.send("price.created", bl.price_object(late_price, product, 900))
        self.wait_fanouts_done(plan_id)
        has = self.assert_ok_json(self.api("GET", "/v1/billing/entitlements", user["token"]))
        self.assertEqual(has["plan"], key)
        self.assertEqual(self.entitlement_changes(user["id"])[told:], [has])

    @needs_gateway
    def test_05_a_catalogue_change_reaches_users_in_batches(self):
        """1,200 subscribers of one plan (made in the database: the webhook
        path is not under test here) are all told of a features change,
        once each, across batches of 500; 10 erased accounts among them
        are not. A job naming its price with a number is refused, not
        widened to the whole plan."""
        key, product, price = self.dashboard_plan("crowd", {"seats": 1})
        plan_id = self.db.value("SELECT id FROM billing.plans WHERE key = :'k'", k=key)
        tag = bl.rand(8)
        self.db.exec("""
            WITH u AS (
                INSERT INTO auth.users (email, name)
                SELECT 'crowd-' || :'t' || '-' || n || '@example.com', 'Crowd'
                FROM generate_series(1, 1200) n RETURNING id)
            INSERT INTO billing.subscriptions
                (stripe_subscription_id, user_id, stripe_customer_id, status, stripe_price_id)
            SELECT 'sub_crowd_' || u.id, u.id, 'cus_crowd_' || u.id, 'active', :'p' FROM u""",
                     t=tag, p=price)
        self.db.exec("UPDATE auth.users SET status = 'deleted' WHERE id IN (SELECT id FROM"
                     " auth.users WHERE email LIKE 'crowd-' || :'t' || '-%' LIMIT 10)", t=tag)
        jobs_before = len(self.wait_fanouts_done(plan_id))
        self.send("product.updated", bl.product_object(
            product, f"Plan {key}", {"seats": 40}, key), created=int(time.time()) + 10)
        self.wait_fanouts_done(plan_id)
        told = self.db.rows(
            "SELECT payload->'data'->>'user_id' AS u, count(*) AS n,"
            " min(payload->'data'->'entitlements'->>'features') AS f"
            " FROM jobs.outbox WHERE kind = 'event'"
            " AND payload->>'type' = 'entitlements.changed'"
            " AND payload->'data'->>'user_id' IN"
            "  (SELECT id::text FROM auth.users WHERE email LIKE 'crowd-' || :'t' || '-%'"
            "   AND status = 'active')"
            " GROUP BY 1", t=tag)
        self.assertEqual(len(told), 1190)
        self.assertEqual(self.db.count(
            "SELECT 1 FROM jobs.outbox WHERE kind = 'event'"
            " AND payload->'data'->>'user_id' IN"
            "  (SELECT id::text FROM auth.users WHERE email LIKE 'crowd-' || :'t' || '-%'"
            "   AND status = 'deleted')", t=tag), 0, "an erased account was told")
        self.assertEqual({(r["n"], r["f"]) for r in told}, {(1, '{"seats": 40}')})
        self.assertGreaterEqual(len(self.fanouts_of(plan_id)) - jobs_before, 1)
        bad = self.db.value(
            "INSERT INTO jobs.outbox (kind, payload) VALUES ('billing.entitlements_fanout',"
            " jsonb_build_object('plan_id', :'p', 'price_id', 7, 'change', gen_random_uuid()))"
            " RETURNING id", p=plan_id)
        ok, _ = wait_until(lambda: self.db.count(
            "SELECT 1 FROM jobs.outbox WHERE id = :'i' AND dead_at IS NOT NULL", i=bad) == 1,
            20.0, interval=0.1)
        self.assertTrue(ok, self.db.rows("SELECT done_at, dead_at, last_error, attempts"
                                         " FROM jobs.outbox WHERE id = :'i'", i=bad))

    # --- 6. refunds -------------------------------------------------------------------

    @needs_gateway
    def test_05_entitlements_among_many_subscriptions(self):
        """The newest entitling subscription on a catalogue price decides;
        newer ones on prices the catalogue does not know, and hundreds of
        them, change nothing (the lookup walks the catalogue, not the
        user's subscriptions)."""
        user, key, price, customer, sub = self.ordering_fixture("many")
        key2, _, price2 = self.dashboard_plan("many2", {"seats": 9})
        token = user["token"]
        t0 = int(time.time()) - 600

        def entitlements():
            return self.assert_ok_json(self.api("GET", "/v1/billing/entitlements", token))

        self.send("customer.subscription.created",
                  bl.subscription_object(sub, customer, "active", price, user["id"]), created=t0)
        # Many newer subscriptions on a price that is not in the catalogue,
        # written directly (their events would take a while).
        self.db.exec("INSERT INTO billing.subscriptions (stripe_subscription_id, user_id,"
                     " stripe_customer_id, status, stripe_price_id, updated_at)"
                     " SELECT 'sub_unknown_' || :'u' || '_' || n, :'u'::uuid, :'c', 'active',"
                     " 'price_not_in_catalogue', now() + interval '1 hour'"
                     " FROM generate_series(1, 500) n", u=user["id"], c=customer)
        self.assertEqual(self.db.value("SELECT count(*) FROM billing.subscriptions"
                                       " WHERE user_id = :'u'::uuid", u=user["id"]), 501)
        self.assertEqual(entitlements(), {"plan": key, "subscription_status": "active",
                                          "features": {"ordering": True, "seats": 2}},
                         "subscriptions on unknown prices do not entitle")
        # A second subscription, on another catalogue price, newer: it decides.
        sub2 = bl.stripe_id("sub_")
        self.send("customer.subscription.created",
                  bl.subscription_object(sub2, customer, "trialing", price2, user["id"]),
                  created=t0 + 10)
        self.assertEqual(entitlements(), {"plan": key2, "subscription_status": "trialing",
                                          "features": {"seats": 9}})
        # It ends: the older one decides again.
        self.send("customer.subscription.deleted",
                  bl.subscription_object(sub2, customer, "canceled", price2, user["id"]),
                  created=t0 + 20)
        self.assertEqual(entitlements()["plan"], key)

    def test_06_refunds_only_grow(self):
        customer, invoice_id, charge = (bl.stripe_id("cus_"), bl.stripe_id("in_"),
                                        bl.stripe_id("ch_"))
        t0 = int(time.time()) - 300
        self.send("invoice.paid", bl.invoice_object(invoice_id, customer, "paid", 5000,
                                                    created=t0), created=t0)

        def charge_obj(refunded):
            return {"id": charge, "object": "charge", "amount": 5000, "amount_captured": 5000,
                    "amount_refunded": refunded, "currency": "eur", "customer": customer,
                    "invoice": invoice_id, "paid": True, "refunded": refunded == 5000,
                    "status": "succeeded", "created": t0}

        # The later, larger refund arrives first.
        self.send("charge.refunded", charge_obj(3000), created=t0 + 20)
        self.send("charge.refunded", charge_obj(1000), created=t0 + 10)
        self.assertEqual(self.db.value("SELECT amount_refunded FROM billing.invoices"
                                       " WHERE stripe_invoice_id = :'i'", i=invoice_id), 3000)
        self.assertEqual(self.db.value("SELECT amount_refunded FROM billing.charges"
                                       " WHERE stripe_charge_id = :'c'", c=charge), 3000)
        # The full refund then lands.
        self.send("charge.refunded", charge_obj(5000), created=t0 + 30)
        row = self.db.row("SELECT amount_refunded, refunded FROM billing.charges"
                          " WHERE stripe_charge_id = :'c'", c=charge)
        self.assertEqual(row, {"amount_refunded": 5000, "refunded": True})
        self.assertEqual(self.db.value("SELECT amount_refunded FROM billing.invoices"
                                       " WHERE stripe_invoice_id = :'i'", i=invoice_id), 5000)

    # --- 7. catalogue from the Stripe dashboard -------------------------------------

    def test_07_dashboard_products_and_prices(self):
        self.public_plans()  # fills the cache: the events must drop it
        mark = len(self.fake.deliveries)
        key = "dash-" + bl.rand(8)
        features = {"dashboard": True, "seats": 7, "support": "phone"}
        status, product = bl.stripe_api(self.fake, "POST", "/v1/products", {
            "name": "Dashboard Plan", "description": "Made in Stripe",
            "metadata[plan_key]": key, "metadata[features]": json.dumps(features)}, SECRET_KEY)
        self.assertEqual(status, 200, repr(product))
        status, price = bl.stripe_api(self.fake, "POST", "/v1/prices", {
            "product": product["id"], "unit_amount": "2500", "currency": "usd",
            "recurring[interval]": "month"}, SECRET_KEY)
        self.assertEqual(status, 200, repr(price))
        # A one-off price is not a plan price.
        status, _ = bl.stripe_api(self.fake, "POST", "/v1/prices", {
            "product": product["id"], "unit_amount": "999", "currency": "usd"}, SECRET_KEY)
        self.assertEqual(status, 200)
        self.assertTrue(self.fake.flush(30))
        for d in self.fake.deliveries[mark:]:
            self.assertEqual(d["status"], 200, repr(d))
        plans, _ = self.public_plans()
        self.assertIn(key, plans, f"dashboard product not in {sorted(plans)}")
        plan = plans[key]
        self.assertEqual(plan["name"], "Dashboard Plan")
        self.assertEqual(plan["features"], features)
        self.assertEqual([(p["amount"], p["currency"], p["interval"]) for p in plan["prices"]],
                         [(2500, "usd", "month")])

        # A price event before its product's.
        key2 = "late-" + bl.rand(8)
        product2, price2 = bl.stripe_id("prod_"), bl.stripe_id("price_")
        sent = self.fake.emit("price.created", bl.price_object(price2, product2, 4200, "eur",
                                                               "year"))
        self.assertEqual([d["status"] for d in sent], [200], repr(sent))
        plans, _ = self.public_plans()
        self.assertFalse([p for p in plans.values()
                          if any(pr["amount"] == 4200 for pr in p["prices"])],
                         "a price without its product is not offered yet")
        sent = self.fake.emit("product.created", bl.product_object(
            product2, "Late Product", {"late": True}, plan_key=key2))
        self.assertEqual([d["status"] for d in sent], [200], repr(sent))
        plans, _ = self.public_plans()
        late = [p for p in plans.values() if p["name"] == "Late Product"]
        self.assertEqual(len(late), 1, f"plans: {sorted(plans)}")
        self.assertEqual(late[0]["features"], {"late": True})
        self.assertEqual([(p["amount"], p["currency"], p["interval"]) for p in late[0]["prices"]],
                         [(4200, "eur", "year")])
        self.assertEqual(late[0]["key"], key2,
                         "the plan key from metadata.plan_key, whatever the order")

        # A plan_key the schema refuses (leading '-') falls back to the
        # product id instead of failing the event for ever.
        product3 = bl.stripe_id("prod_")
        sent = self.fake.emit("product.created", bl.product_object(
            product3, "Odd Key Product", {"odd": True}, plan_key="-odd"))
        self.assertEqual([d["status"] for d in sent], [200], repr(sent))
        plans, _ = self.public_plans()
        odd = [p for p in plans.values() if p["name"] == "Odd Key Product"]
        self.assertEqual([p["key"] for p in odd], [product3.lower()], f"plans: {sorted(plans)}")



if __name__ == "__main__":
    unittest.main()
