"""End-to-end tests of the billing pool (SPEC §6) against the fake Stripe.

One stack talks to an in-process fake Stripe (tests/fakes/stripe_fake.py):
the pool's Stripe client calls it, and it posts signed webhooks back to the
stack through nginx. Events whose id, `created` time or signature matter are
built and signed here instead. A second stack points stripe_api_base at a
closed port (Stripe unreachable).

Tests that need an access token (checkout, the caller's billing, the admin
and finance routes) run only when the gateway module verifies tokens: the
class setup logs in and asks GET /v1/billing/entitlements. The webhook tests
and the public catalogue run regardless.

Run from the repository root:
    python3 -m unittest discover -s tests/integration -p 'test_billing.py' -v
"""

import concurrent.futures
import functools
import json
import re
import secrets
import threading
import time
import unittest
import uuid

import billinglib as bl
from billinglib import StripeFake, WebhookSender, sign_payload
from harness import StackTestCase, free_port

SECRET_KEY = "sk_test_" + secrets.token_hex(12)
# Two webhook secrets, as during a rotation: the fake signs with the first.
WEBHOOK_SECRETS = ("whsec_" + secrets.token_hex(16), "whsec_" + secrets.token_hex(16))
OPEN_LIMITS = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000",
               "STOA_RATE_API": "10000r/s", "STOA_BURST_API": "10000"}

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

# The demo catalogue `stoactl plan seed-demo` makes at stack start.
DEMO_FEATURES = {
    "free": {"projects": 1, "seats": 1, "api_calls_per_day": 1000, "support": "community"},
    "pro": {"projects": 20, "seats": 3, "api_calls_per_day": 100000, "support": "email",
            "exports": True},
    "team": {"projects": 200, "seats": 25, "api_calls_per_day": 1000000,
             "support": "priority", "exports": True, "sso": True},
}
DEMO_PRICES = {"free": [], "pro": [(1900, "eur", "month"), (19000, "eur", "year")],
               "team": [(4900, "eur", "month"), (49000, "eur", "year")]}


def rfc3339(unix):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def needs_gateway(test):
    """Runs the test only when the stack verifies access tokens."""
    @functools.wraps(test)
    def wrapper(self, *args, **kwargs):
        cls = type(self)
        if not cls.gateway:
            self.skipTest(f"needs the gateway module: {cls.gateway_reason}")
        return test(self, *args, **kwargs)
    return wrapper


class BillingStackCase(StackTestCase):
    """A stack plus the accounts every billing test uses."""

    gateway = False
    gateway_reason = "not probed"
    admin_token = None

    @classmethod
    def _set_up_accounts(cls):
        stack = cls.stack
        with open(stack.conf_path()) as f:
            conf = dict((part.strip() for part in line.split("=", 1)) for line in f
                        if "=" in line and not line.lstrip().startswith("#"))
        cls.public_url = conf["public_url"].rstrip("/")
        cls.db = bl.Db(stack)

        probe = cls.new_user("probe", login=True)
        if not probe["token"]:
            cls.gateway, cls.gateway_reason = False, f"login refused: {probe['login']!r}"
            return
        resp = stack.client.request("GET", "/v1/billing/entitlements",
                                    headers={"Authorization": "Bearer " + probe["token"]})
        cls.gateway = resp.status == 200
        cls.gateway_reason = f"GET /v1/billing/entitlements with a token: {resp!r}"
        if not cls.gateway:
            return
        cls.admin_token = cls._admin_token()

    @classmethod
    def _admin_token(cls):
        """admin@localhost's token; when that account cannot log in, a second
        admin made by stoactl stands in (the failure is printed)."""
        with open(cls.stack.path("admin-password")) as f:
            password = f.read().strip()
        token, resp = bl.login(cls.stack.client, "admin@localhost", password)
        if token:
            return token
        print(f"\nbilling tests: admin@localhost cannot log in ({resp.status} "
              f"{resp.body[:160]!r}); using an admin made by stoactl", flush=True)
        email = bl.unique_email("billing-admin")
        proc = bl.create_user(cls.stack, email, "admin")
        if proc.returncode != 0:
            raise RuntimeError(f"stoactl user create (admin): {proc.stderr}")
        token, resp = bl.login(cls.stack.client, email)
        if not token:
            raise RuntimeError(f"admin login: {resp!r}")
        return token

    @classmethod
    def new_user(cls, tag, login=None):
        """A client account registered through the API; logged in (token)
        when the gateway is there or login is True."""
        email = bl.unique_email(tag)
        resp = cls.stack.client.request("POST", "/v1/auth/register", body={
            "email": email, "password": bl.GOOD_PASSWORD, "name": "Bill Payer"})
        if resp.status != 201:
            raise AssertionError(f"register {email}: {resp!r}")
        user = {"id": resp.json["user"]["id"], "email": email, "token": None, "login": None}
        if login or (login is None and cls.gateway):
            user["token"], user["login"] = bl.login(cls.stack.client, email)
        return user

    def api(self, method, path, token=None, body=None, headers=None, raw=False, client=None):
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        return (client or self.stack.client).request(method, path, body=body, headers=hdrs,
                                                      raw=raw)

    def assert_fields(self, resp, expected):
        """400 invalid_request naming exactly these fields (a dict of
        field -> code, or a set of field names)."""
        details = self.assert_error(resp, 400, "invalid_request")
        fields = details.get("fields")
        self.assertIsInstance(fields, dict, repr(resp))
        if isinstance(expected, dict):
            self.assertEqual(fields, expected, repr(resp))
        else:
            self.assertEqual(set(fields), set(expected), repr(resp))

    def checkout_body(self, price_id, **changes):
        body = {"price_id": price_id,
                "success_url": self.public_url + "/billing/done?session={CHECKOUT_SESSION_ID}",
                "cancel_url": self.public_url + "/billing"}
        body.update(changes)
        return {k: v for k, v in body.items() if v is not None}


class BillingTest(BillingStackCase):
    """The billing pool against the fake Stripe, through nginx."""

    @classmethod
    def setUpClass(cls):
        cls.fake = StripeFake(secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRETS[0])
        base = cls.fake.start()
        cls.addClassCleanup(cls.fake.stop)
        cls.stack_env = dict(OPEN_LIMITS, STOA_STRIPE_API_BASE=base,
                             STOA_STRIPE_SECRET_KEY=SECRET_KEY,
                             STOA_STRIPE_WEBHOOK_SECRET=",".join(WEBHOOK_SECRETS))
        super().setUpClass()
        try:
            # The stack's port is known only now.
            cls.fake.webhook_url = (f"https://127.0.0.1:{cls.stack.https_port}"
                                    + bl.WEBHOOK_PATH)
            cls.hooks = WebhookSender(cls.stack, WEBHOOK_SECRETS[0])
            cls._set_up_accounts()
            cls._synced = None
            cls._sync_lock = threading.Lock()
        except BaseException:
            cls._failed = True
            raise

    # --- helpers ---------------------------------------------------------------

    def public_plans(self):
        resp = self.request("GET", "/v1/billing/plans")
        doc = self.assert_ok_json(resp)
        self.assertIsInstance(doc.get("data"), list, repr(resp))
        return {p["key"]: p for p in doc["data"]}, resp

    def send(self, event_type, obj, **kwargs):
        """A signed event that must be accepted as new; returns its id."""
        resp, event_id = self.hooks.send(event_type, obj, **kwargs)
        self.assertEqual(self.assert_ok_json(resp), {"received": True, "duplicate": False},
                         f"{event_type}: {resp!r}")
        return event_id

    def stored_event(self, event_id):
        return self.db.row("SELECT id, type, created, processed_at IS NOT NULL AS processed,"
                           " error FROM billing.stripe_events WHERE id = :'id'", id=event_id)

    def dashboard_plan(self, tag, features, amount=2500, currency="eur", interval="month"):
        """A product and a price as if made in Stripe's dashboard (signed
        events sent here); returns (plan key, product id, price id)."""
        key = f"{tag}-{bl.rand(8)}"
        product, price = bl.stripe_id("prod_"), bl.stripe_id("price_")
        self.send("product.created", bl.product_object(product, f"Plan {key}", features, key))
        self.send("price.created", bl.price_object(price, product, amount, currency, interval))
        return key, product, price

    def link_customer(self, user_id, customer):
        """checkout.session.completed linking a Stripe customer to a user."""
        self.send("checkout.session.completed", {
            "id": bl.stripe_id("cs_test_"), "object": "checkout.session", "mode": "subscription",
            "status": "complete", "client_reference_id": user_id, "customer": customer,
            "subscription": None, "metadata": {"user_id": user_id}})

    def synced_pro(self):
        """Syncs the demo `pro` plan once (admin route); returns
        {"plan_id", "product", "month": (price uuid, stripe id), "year": ...}."""
        cls = type(self)
        with cls._sync_lock:
            if cls._synced is None:
                plans, _ = self.public_plans()
                pro = plans["pro"]
                resp = self.api("POST", f"/v1/admin/plans/{pro['id']}/sync", cls.admin_token)
                doc = self.assert_ok_json(resp)
                self.assertTrue(self.fake.flush(30), "the fake's webhooks did not drain")
                synced = {"plan_id": pro["id"], "product": doc.get("stripe_product_id"),
                          "answer": doc}
                for price in doc.get("prices", []):
                    synced[price["interval"]] = (price["id"], price.get("stripe_price_id"))
                cls._synced = synced
            return cls._synced

    def subscribe(self, user, interval="month"):
        """Checkout of pro for user, paid in the fake; returns the completion."""
        price_id = self.synced_pro()[interval][0]
        resp = self.api("POST", "/v1/billing/checkout", user["token"],
                        body=self.checkout_body(price_id))
        doc = self.assert_ok_json(resp, 201)
        done = self.fake.complete_checkout(doc["session_id"])
        for ev in done["events"]:
            self.assertEqual(ev["status"], 200, f"webhook {ev!r}")
        return done

    # --- 1. the public catalogue -------------------------------------------------

    def test_01_public_plans(self):
        plans, resp = self.public_plans()
        self.assertEqual([k for k in plans if k in DEMO_FEATURES], ["free", "pro", "team"],
                         "demo plans in sort order")
        for key, features in DEMO_FEATURES.items():
            plan = plans[key]
            self.assertRegex(plan["id"], UUID_RE)
            self.assertEqual(plan["features"], features, key)
            self.assertEqual(set(plan), {"id", "key", "name", "description", "features",
                                         "prices"}, f"public plan fields of {key}")
            got = []
            for price in plan["prices"]:
                self.assertEqual(set(price), {"id", "amount", "currency", "interval"},
                                 f"public price fields of {key}")
                self.assertRegex(price["id"], UUID_RE)
                got.append((price["amount"], price["currency"], price["interval"]))
            self.assertEqual(got, DEMO_PRICES[key], key)
        text = resp.body.decode()
        for leak in ("stripe", "prod_", "price_"):
            self.assertNotIn(leak, text, "provider ids in the public view")
        # Wrong method on the route.
        resp = self.request("POST", "/v1/billing/plans", body={})
        self.assert_error(resp, 405, "method_not_allowed")
        self.assertIn("GET", resp.header("Allow", ""), repr(resp))

    def test_01_plans_cache_and_webhook_drop(self):
        _, first = self.public_plans()
        self.assertEqual(bl.redis_get(self.stack, "billing:plans"), first.body,
                         "the answer is cached under billing:plans")
        # A change behind the pool's back is not seen while the cache holds...
        self.db.exec("UPDATE billing.plans SET description = 'changed in the database'"
                     " WHERE key = 'team'")
        try:
            plans, again = self.public_plans()
            self.assertEqual(again.body, first.body, "served from the cache")
            # ...until a product event drops it (an inactive product: it
            # changes nothing shown).
            product = bl.stripe_id("prod_")
            self.send("product.created", bl.product_object(product, "Hidden", {"x": 1},
                                                           active=False))
            self.assertIsNone(bl.redis_get(self.stack, "billing:plans"),
                              "a product event drops the cache")
            plans, _ = self.public_plans()
            self.assertEqual(plans["team"]["description"], "changed in the database")
            self.assertNotIn(product.lower(), plans, "inactive products stay hidden")
            # A price event drops it as well.
            self.public_plans()
            self.assertIsNotNone(bl.redis_get(self.stack, "billing:plans"))
            self.send("price.created", bl.price_object(bl.stripe_id("price_"), product, 100))
            self.assertIsNone(bl.redis_get(self.stack, "billing:plans"),
                              "a price event drops the cache")
        finally:
            self.db.exec("UPDATE billing.plans SET description = 'For growing teams'"
                         " WHERE key = 'team'")
            bl.redis_del(self.stack, "billing:plans")

    @needs_gateway
    def test_01_plans_cache_dropped_by_admin_patch(self):
        plans, _ = self.public_plans()
        self.assertIsNotNone(bl.redis_get(self.stack, "billing:plans"))
        plan_id = plans["team"]["id"]
        resp = self.api("PATCH", f"/v1/admin/plans/{plan_id}", self.admin_token,
                        body={"description": "Teams of any size"})
        doc = self.assert_ok_json(resp)
        self.assertEqual(doc["description"], "Teams of any size")
        self.assertIsNone(bl.redis_get(self.stack, "billing:plans"), "PATCH drops the cache")
        plans, _ = self.public_plans()
        self.assertEqual(plans["team"]["description"], "Teams of any size")
        resp = self.api("PATCH", f"/v1/admin/plans/{plan_id}", self.admin_token,
                        body={"description": "For growing teams"})
        self.assert_ok_json(resp)

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

    # --- 3. the whole flow through the fake --------------------------------------

    @needs_gateway
    def test_03_1_sync_pro_plan(self):
        synced = self.synced_pro()
        product = synced["product"]
        self.assertTrue(product and product.startswith("prod_"), repr(synced["answer"]))
        products = bl.fake_objects(self.fake, "product", metadata__plan_key="pro")
        self.assertEqual([p["id"] for p in products], [product], "one product in Stripe")
        self.assertEqual(products[0]["name"], "Pro")
        self.assertEqual(json.loads(products[0]["metadata"]["features"]), DEMO_FEATURES["pro"])
        prices = bl.fake_objects(self.fake, "price", product=product)
        self.assertEqual(sorted((p["unit_amount"], p["currency"], p["recurring"]["interval"])
                                for p in prices), DEMO_PRICES["pro"])
        # Our database records the ids Stripe gave.
        self.assertEqual(self.db.value("SELECT stripe_product_id FROM billing.plans"
                                       " WHERE key = 'pro'"), product)
        rows = self.db.rows("SELECT pr.stripe_price_id, pr.amount FROM billing.prices pr"
                            " JOIN billing.plans p ON p.id = pr.plan_id WHERE p.key = 'pro'"
                            " ORDER BY pr.amount")
        self.assertEqual(sorted(r["stripe_price_id"] for r in rows),
                         sorted(p["id"] for p in prices))
        self.assertEqual({synced["month"][1], synced["year"][1]}, {p["id"] for p in prices})
        # The webhooks of those creations came back and made no second plan.
        self.assertEqual(self.db.count("SELECT 1 FROM billing.plans WHERE stripe_product_id"
                                       " = :'p'", p=product), 1)
        self.assertEqual(len(rows), 2)
        # A second sync creates nothing new.
        before = (len(bl.fake_objects(self.fake, "product")),
                  len(bl.fake_objects(self.fake, "price")))
        resp = self.api("POST", f"/v1/admin/plans/{synced['plan_id']}/sync", self.admin_token)
        with self.subTest("second sync answers 200"):
            doc = self.assert_ok_json(resp)
            self.assertEqual(doc["stripe_product_id"], product)
        self.assertTrue(self.fake.flush(30))
        after = (len(bl.fake_objects(self.fake, "product")),
                 len(bl.fake_objects(self.fake, "price")))
        self.assertEqual(after, before, "a second sync creates nothing in Stripe")
        self.assertEqual(self.db.count("SELECT 1 FROM billing.prices pr JOIN billing.plans p"
                                       " ON p.id = pr.plan_id WHERE p.key = 'pro'"), 2)
        # The admin view shows provider ids; the public one still does not.
        self.assertIn(product, json.dumps(synced["answer"]))
        _, resp = self.public_plans()
        self.assertNotIn(product, resp.body.decode())
        # Sync of an unknown plan.
        resp = self.api("POST", f"/v1/admin/plans/{uuid.uuid4()}/sync", self.admin_token)
        self.assert_error(resp, 404, "not_found")

    @needs_gateway
    def test_03_2_checkout_flow(self):
        synced = self.synced_pro()
        month_id, month_stripe = synced["month"]
        user = self.new_user("flow")
        # Nothing yet.
        self.assert_error(self.api("GET", "/v1/billing/subscription", user["token"]), 404,
                          "no_subscription")
        self.assert_error(self.api("POST", "/v1/billing/portal", user["token"]), 404,
                          "no_customer")
        ent = self.assert_ok_json(self.api("GET", "/v1/billing/entitlements", user["token"]))
        self.assertEqual(ent, {"plan": "free", "subscription_status": "none",
                               "features": DEMO_FEATURES["free"]})

        resp = self.api("POST", "/v1/billing/checkout", user["token"],
                        body=self.checkout_body(month_id))
        doc = self.assert_ok_json(resp, 201)
        self.assertEqual(set(doc), {"url", "session_id"})
        session = self.fake.objects[doc["session_id"]]
        self.assertEqual(doc["url"], session["url"])
        self.assertEqual(session["client_reference_id"], user["id"])
        self.assertEqual(session["metadata"].get("user_id"), user["id"])
        forms = [f for f, _ in bl.fake_requests(self.fake, "POST", "/v1/checkout/sessions")
                 if f.get("client_reference_id") == user["id"]]
        self.assertEqual(len(forms), 1)
        self.assertEqual(forms[0]["line_items"], [{"price": month_stripe, "quantity": "1"}])
        self.assertEqual(forms[0]["mode"], "subscription")
        customer = self.fake.objects[session["customer"]]
        self.assertEqual(customer["email"], user["email"])
        self.assertEqual(customer["metadata"].get("user_id"), user["id"])

        done = self.fake.complete_checkout(doc["session_id"])
        self.assertEqual([(e["type"], e["status"]) for e in done["events"]],
                         [("checkout.session.completed", 200),
                          ("customer.subscription.created", 200),
                          ("invoice.finalized", 200), ("invoice.paid", 200)])
        sub, invoice = done["subscription"], done["invoice"]

        got = self.assert_ok_json(self.api("GET", "/v1/billing/subscription", user["token"]))
        self.assertEqual(got["status"], "active", repr(got))
        self.assertEqual(got["plan"], {"key": "pro", "name": "Pro"})
        self.assertEqual(got["price"], {"id": month_id, "amount": 1900, "currency": "eur",
                                        "interval": "month"})
        self.assertEqual(got["current_period_end"], rfc3339(sub["current_period_end"]))
        self.assertIs(got["cancel_at_period_end"], False)
        self.assertIsNone(got["trial_end"])

        ent = self.assert_ok_json(self.api("GET", "/v1/billing/entitlements", user["token"]))
        self.assertEqual(ent, {"plan": "pro", "subscription_status": "active",
                               "features": DEMO_FEATURES["pro"]})

        inv = self.assert_ok_json(self.api("GET", "/v1/billing/invoices", user["token"]))
        self.assertIsNone(inv["next_cursor"])
        self.assertEqual(len(inv["data"]), 1, repr(inv))
        row = inv["data"][0]
        self.assertEqual({k: row.get(k) for k in ("number", "amount_due", "amount_paid",
                                                   "currency", "status", "hosted_invoice_url",
                                                   "invoice_pdf")},
                         {"number": invoice["number"], "amount_due": 1900,
                          "amount_paid": 1900, "currency": "eur", "status": "paid",
                          "hosted_invoice_url": invoice["hosted_invoice_url"],
                          "invoice_pdf": invoice["invoice_pdf"]})
        self.assertRegex(row["created"], RFC3339_RE)

        # Domain events for outbound webhooks, and the receipt.
        events = self.db.outbox_events("subscription.updated", sub["id"])
        self.assertTrue(events, "subscription.updated in the outbox")
        self.assertEqual(events[-1]["payload"]["data"]["user_id"], user["id"])
        events = self.db.outbox_events("invoice.paid", invoice["id"])
        self.assertEqual(len(events), 1, "invoice.paid in the outbox")
        self.assertEqual(events[0]["payload"]["data"]["user_id"], user["id"])
        mails = bl.wait_for_mail(self.stack, user["email"], "Your receipt")
        self.assertTrue(mails, f"no receipt .eml for {user['email']} in {self.stack.path('mail')}")
        self.assertIn("19.00", mails[0][1])

        # The customer portal now has a customer to open.
        portal = self.assert_ok_json(self.api("POST", "/v1/billing/portal", user["token"]))
        self.assertTrue(portal["url"].startswith("https://billing.stripe.test/"), repr(portal))

        # Checkout again: refused.
        resp = self.api("POST", "/v1/billing/checkout", user["token"],
                        body=self.checkout_body(synced["year"][0]))
        self.assert_error(resp, 409, "already_subscribed")

    @needs_gateway
    def test_03_3_checkout_bad_input(self):
        synced = self.synced_pro()
        month_id = synced["month"][0]
        user = self.new_user("badcheckout")
        token = user["token"]
        origin = self.public_url

        def post(body, **kw):
            return self.api("POST", "/v1/billing/checkout", token, body=body, **kw)

        url_cases = {
            "another origin": "https://evil.example/billing",
            "lookalike host": origin + ".evil.example/billing",
            "userinfo trick": origin + "@evil.example/billing",
            "plain http of ours": origin.replace("https://", "http://") + "/x",
            "javascript": "javascript:alert(1)",
            "relative": "/billing/done",
        }
        for name, url in url_cases.items():
            with self.subTest(success_url=name):
                self.assert_fields(post(self.checkout_body(month_id, success_url=url)),
                                   {"success_url": "not_allowed"})
            with self.subTest(cancel_url=name):
                self.assert_fields(post(self.checkout_body(month_id, cancel_url=url)),
                                   {"cancel_url": "not_allowed"})
        with self.subTest("unknown price"):
            self.assert_fields(post(self.checkout_body(str(uuid.uuid4()))), {"price_id"})
        with self.subTest("price id not a uuid"):
            self.assert_fields(post(self.checkout_body(synced["month"][1])), {"price_id"})
        with self.subTest("missing fields"):
            self.assert_fields(post({}), {"price_id", "success_url", "cancel_url"})
        with self.subTest("unknown field"):
            self.assert_fields(post(self.checkout_body(month_id, coupon="FREE")), {"coupon"})
        with self.subTest("wrong types"):
            self.assert_fields(post(self.checkout_body(month_id, success_url=7)),
                               {"success_url"})
        with self.subTest("malformed JSON"):
            self.assert_error(post('{"price_id": ', raw=True,
                                   headers={"Content-Type": "application/json"}),
                              400, "invalid_json")
        with self.subTest("no Content-Type"):
            self.assert_error(post(json.dumps(self.checkout_body(month_id)), raw=True),
                              415, "unsupported_media_type")
        with self.subTest("price of a plan never synced"):
            plans, _ = self.public_plans()
            if self.db.value("SELECT stripe_product_id FROM billing.plans WHERE key = 'team'"):
                self.skipTest("team was synced by another test")
            team_price = plans["team"]["prices"][0]["id"]
            self.assert_error(post(self.checkout_body(team_price)), 409, "price_not_synced")
        # None of this reached Stripe or made a customer.
        self.assertEqual(bl.fake_objects(self.fake, "customer", metadata__user_id=user["id"]), [])
        self.assertEqual(self.db.count("SELECT 1 FROM billing.customers WHERE user_id ="
                                       " :'u'", u=user["id"]), 0)

    @needs_gateway
    def test_03_4_checkout_idempotency_key(self):
        month_id = self.synced_pro()["month"][0]
        user = self.new_user("idem")
        key = "checkout-" + bl.rand(16)
        body = self.checkout_body(month_id)
        first = self.api("POST", "/v1/billing/checkout", user["token"], body=body,
                         headers={"Idempotency-Key": key})
        doc = self.assert_ok_json(first, 201)
        self.assertIsNone(first.header("Idempotent-Replayed"))
        again = self.api("POST", "/v1/billing/checkout", user["token"], body=body,
                         headers={"Idempotency-Key": key})
        self.assertEqual(self.assert_ok_json(again, 201)["session_id"], doc["session_id"])
        self.assertEqual(again.header("Idempotent-Replayed"), "true", repr(again))
        sessions = bl.fake_objects(self.fake, "checkout.session", client_reference_id=user["id"])
        self.assertEqual(len(sessions), 1, "one Checkout session in Stripe")
        other = self.api("POST", "/v1/billing/checkout", user["token"],
                         body=self.checkout_body(month_id, cancel_url=self.public_url + "/x"),
                         headers={"Idempotency-Key": key})
        self.assert_error(other, 422, "idempotency_key_reused")
        # Another user may use the same key for their own request.
        stranger = self.new_user("idem2")
        resp = self.api("POST", "/v1/billing/checkout", stranger["token"], body=body,
                        headers={"Idempotency-Key": key})
        self.assertNotEqual(self.assert_ok_json(resp, 201)["session_id"], doc["session_id"])
        # An unusable key.
        resp = self.api("POST", "/v1/billing/checkout", user["token"], body=body,
                        headers={"Idempotency-Key": "x" * 300})
        self.assert_error(resp, 400, "invalid_request")

    # --- 4. cancellation ---------------------------------------------------------

    @needs_gateway
    def test_04_cancel_at_period_end(self):
        user = self.new_user("cancel")
        self.assert_error(self.api("POST", "/v1/billing/subscription/cancel", user["token"]),
                          404, "no_subscription")
        done = self.subscribe(user)
        sub_id = done["subscription"]["id"]
        path = f"/v1/subscriptions/{sub_id}"

        resp = self.api("POST", "/v1/billing/subscription/cancel", user["token"])
        doc = self.assert_ok_json(resp)
        self.assertIs(doc["cancel_at_period_end"], True, repr(doc))
        self.assertEqual(doc["status"], "active")
        self.assertIs(self.fake.objects[sub_id]["cancel_at_period_end"], True,
                      "Stripe recorded the cancellation")
        calls = bl.fake_requests(self.fake, "POST", path)
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0][0], {"cancel_at_period_end": "true"})
        first_key = calls[0][1].get("Idempotency-Key")
        self.assertTrue(first_key)

        resp = self.api("POST", "/v1/billing/subscription/cancel", user["token"])
        self.assertIs(self.assert_ok_json(resp)["cancel_at_period_end"], True)
        calls = bl.fake_requests(self.fake, "POST", path)
        self.assertEqual(len(calls), 2)
        self.assertEqual(calls[1][1].get("Idempotency-Key"), first_key,
                         "the repeat uses the same Stripe idempotency key")
        self.assertTrue(self.fake.flush(30))
        updates = [e for e in self.fake.events if e["type"] == "customer.subscription.updated"
                   and e["data"]["object"]["id"] == sub_id]
        self.assertEqual(len(updates), 1, "Stripe changed the subscription once")
        got = self.assert_ok_json(self.api("GET", "/v1/billing/subscription", user["token"]))
        self.assertIs(got["cancel_at_period_end"], True)
        self.assertEqual(got["status"], "active")

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

    # --- 6. refunds -------------------------------------------------------------------

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

    # --- 8. Stripe failures -----------------------------------------------------------

    @needs_gateway
    def test_08_stripe_failures(self):
        month_id = self.synced_pro()["month"][0]
        user = self.new_user("retry")
        # 500 twice on customer creation: the third try succeeds.
        self.fake.fail("/v1/customers", 500, times=2)
        resp = self.api("POST", "/v1/billing/checkout", user["token"],
                        body=self.checkout_body(month_id))
        self.assert_ok_json(resp, 201)
        calls = [h.get("Idempotency-Key") for f, h in bl.fake_requests(self.fake, "POST",
                                                                        "/v1/customers")
                 if (f or {}).get("metadata", {}).get("user_id") == user["id"]]
        self.assertEqual(len(calls), 3, "two failures, then success")
        self.assertEqual(len(set(calls)), 1, "retries reuse the idempotency key")
        self.assertEqual(len(bl.fake_objects(self.fake, "customer",
                                             metadata__user_id=user["id"])), 1)

        user = self.new_user("refused")
        body = self.checkout_body(month_id)
        path = "/v1/checkout/sessions"
        with self.subTest("Stripe refuses (400): 502"):
            self.fake.fail(path, 400, times=1)
            details = self.assert_error(self.api("POST", "/v1/billing/checkout", user["token"],
                                                 body=body), 502, "payment_provider_error")
            self.assertEqual(details.get("provider_status"), 400, repr(details))
        with self.subTest("Stripe down (503 on every try): 503"):
            self.fake.fail(path, 503, times=3)
            before = len(bl.fake_requests(self.fake, "POST", path))
            t0 = time.monotonic()
            resp = self.api("POST", "/v1/billing/checkout", user["token"], body=body)
            elapsed = time.monotonic() - t0
            self.assertEqual(len(bl.fake_requests(self.fake, "POST", path)) - before, 3,
                             "three tries")
            self.assertLess(elapsed, 10)
            self.assert_error(resp, 503, "payment_provider_unavailable")
        with self.subTest("connection dropped on every try: 503"):
            # libcurl itself retries once when a reused connection turns
            # out dead, so three tries can take up to six requests.
            self.fake.fail(path, 0, times=6)
            self.assert_error(self.api("POST", "/v1/billing/checkout", user["token"],
                                       body=body), 503, "payment_provider_unavailable")
        with self.subTest("Stripe back: the same request succeeds"):
            self.assert_ok_json(self.api("POST", "/v1/billing/checkout", user["token"],
                                         body=body), 201)

    # --- 9. finance views -------------------------------------------------------------

    @needs_gateway
    def test_09_finance_views(self):
        email = bl.unique_email("finance")
        proc = bl.create_user(self.stack, email, "finance")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        finance, resp = bl.login(self.stack.client, email)
        self.assertTrue(finance, repr(resp))

        key, _, price = self.dashboard_plan("fin", {"finance": True}, amount=3000)
        now = int(time.time())
        subs = []
        for status in ("active", "active", "past_due"):
            user = self.new_user("finsub", login=False)
            customer, sub = bl.stripe_id("cus_"), bl.stripe_id("sub_")
            self.link_customer(user["id"], customer)
            self.send("customer.subscription.created",
                      bl.subscription_object(sub, customer, status, price, user["id"]))
            subs.append((sub, customer, user, status))
        invoices = []
        for (sub, customer, _, _), status, age in zip(subs, ("paid", "open"), (7200, 3600)):
            invoice_id = bl.stripe_id("in_")
            self.send("invoice.finalized" if status == "open" else "invoice.paid",
                      bl.invoice_object(invoice_id, customer, status, 3000, subscription=sub,
                                        created=now - age))
            invoices.append((invoice_id, status, now - age))

        def listing(what, query, token=finance):
            resp = self.api("GET", f"/v1/admin/billing/{what}?{query}", token)
            doc = self.assert_ok_json(resp)
            self.assertEqual(set(doc), {"data", "next_cursor"}, repr(resp))
            return doc

        everything = listing("subscriptions", f"plan={key}")
        self.assertEqual(sorted(r["stripe_subscription_id"] for r in everything["data"]),
                         sorted(s[0] for s in subs))
        self.assertIsNone(everything["next_cursor"])
        by_sub = {r["stripe_subscription_id"]: r for r in everything["data"]}
        for sub, _, user, status in subs:
            self.assertEqual((by_sub[sub]["status"], by_sub[sub]["plan"],
                              by_sub[sub]["email"], by_sub[sub]["user_id"]),
                             (status, key, user["email"], user["id"]))
        active = listing("subscriptions", f"plan={key}&status=active")
        self.assertEqual(sorted(r["stripe_subscription_id"] for r in active["data"]),
                         sorted(s[0] for s in subs if s[3] == "active"))
        self.assertEqual(listing("subscriptions", f"plan={key}&from=2000-01-01")["data"],
                         everything["data"])
        self.assertEqual(listing("subscriptions", f"plan={key}&to=2000-01-01T00:00:00Z")["data"],
                         [])
        self.assertEqual(listing("subscriptions",
                                 f"plan={key}&from={rfc3339(now + 86400)}")["data"], [])
        # Paging: one row a page, following next_cursor.
        seen, cursor = [], None
        for _ in range(4):
            query = f"plan={key}&limit=1" + (f"&cursor={cursor}" if cursor else "")
            page = listing("subscriptions", query)
            self.assertEqual(len(page["data"]), 1 if len(seen) < 3 else 0, repr(page))
            seen += [r["id"] for r in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(seen, [r["id"] for r in everything["data"]], "pages in list order")
        self.assertIsNone(cursor, "the last page has no next_cursor")

        inv = listing("invoices", f"plan={key}")
        self.assertEqual([r["number"] is not None for r in inv["data"]], [True, True])
        self.assertEqual([r["status"] for r in inv["data"]], ["open", "paid"], "newest first")
        self.assertEqual({r["plan"] for r in inv["data"]}, {key})
        self.assertEqual([r["status"] for r in listing("invoices",
                                                       f"plan={key}&status=paid")["data"]],
                         ["paid"])
        middle = rfc3339(now - 5400)
        self.assertEqual([r["status"] for r in listing("invoices",
                                                       f"plan={key}&from={middle}")["data"]],
                         ["open"])
        self.assertEqual([r["status"] for r in listing("invoices",
                                                       f"plan={key}&to={middle}")["data"]],
                         ["paid"])
        page1 = listing("invoices", f"plan={key}&limit=1")
        self.assertEqual(len(page1["data"]), 1)
        self.assertIsNotNone(page1["next_cursor"])
        page2 = listing("invoices", f"plan={key}&limit=1&cursor={page1['next_cursor']}")
        self.assertEqual([r["id"] for r in page1["data"] + page2["data"]],
                         [r["id"] for r in inv["data"]])
        self.assertIsNone(page2["next_cursor"])
        # Admins see the same.
        self.assertEqual(listing("invoices", f"plan={key}", self.admin_token)["data"],
                         inv["data"])

        bad = {"status=bogus": "status", "limit=0": "limit",
               "limit=101": "limit", "limit=abc": "limit", "cursor=nope": "cursor",
               "from=yesterday": "from", "to=2026-13": "to", "plan=": "plan"}
        for what in ("subscriptions", "invoices"):
            for query, field in bad.items():
                with self.subTest(what=what, query=query):
                    self.assert_fields(self.api("GET", f"/v1/admin/billing/{what}?{query}",
                                                finance), {field})
            with self.subTest(what=what, status="a status of the other list"):
                other = "paid" if what == "subscriptions" else "past_due"
                self.assert_fields(self.api("GET", f"/v1/admin/billing/{what}?status={other}",
                                            finance), {"status"})
            client = self.new_user("nofinance")
            with self.subTest(what=what, role="client"):
                self.assert_error(self.api("GET", f"/v1/admin/billing/{what}", client["token"]),
                                  403, "forbidden")
            with self.subTest(what=what, role="none"):
                self.assert_error(self.api("GET", f"/v1/admin/billing/{what}"), 401,
                                  "unauthenticated")

    # --- 10. admin plans --------------------------------------------------------------

    @needs_gateway
    def test_10_admin_plans(self):
        admin = self.admin_token
        key = "starter-" + bl.rand(8)
        body = {"key": key, "name": "Starter", "description": "Small",
                "features": {"projects": 3, "beta": False, "support": "forum"}}
        resp = self.api("POST", "/v1/admin/plans", admin, body=body)
        plan = self.assert_ok_json(resp, 201)
        self.assertRegex(plan["id"], UUID_RE)
        self.assertEqual((plan["key"], plan["name"], plan["features"], plan["prices"],
                          plan["active"], plan["stripe_product_id"]),
                         (key, "Starter", body["features"], [], True, None))
        self.assert_error(self.api("POST", "/v1/admin/plans", admin,
                                   body=dict(body, name="Again")), 409, "plan_exists")
        # Idempotent replay of a create.
        idem_key = "plan-" + bl.rand(12)
        body2 = dict(body, key=key + "-b")
        first = self.assert_ok_json(self.api("POST", "/v1/admin/plans", admin, body=body2,
                                             headers={"Idempotency-Key": idem_key}), 201)
        replay = self.api("POST", "/v1/admin/plans", admin, body=body2,
                          headers={"Idempotency-Key": idem_key})
        self.assertEqual(self.assert_ok_json(replay, 201)["id"], first["id"])
        self.assertEqual(replay.header("Idempotent-Replayed"), "true")

        bad_creates = {
            "key with spaces": (dict(body, key="Bad Key"), "key"),
            "key upper case": (dict(body, key="Starter"), "key"),
            "key leading dash": (dict(body, key="-x"), "key"),
            "key too long": (dict(body, key="k" * 65), "key"),
            "key empty": (dict(body, key=""), "key"),
            "features an array": (dict(body, key="ok-key", features=[1]), "features"),
            "features nested": (dict(body, key="ok-key", features={"a": {"b": 1}}), "features"),
            "features a string": (dict(body, key="ok-key", features="all"), "features"),
            "feature float": (dict(body, key="ok-key", features={"a": 1.5}), "features"),
            "no name": ({"key": "ok-key"}, "name"),
            "unknown field": (dict(body, key="ok-key", color="red"), "color"),
        }
        for name, (payload, field) in bad_creates.items():
            with self.subTest(create=name):
                self.assert_fields(self.api("POST", "/v1/admin/plans", admin, body=payload),
                                   {field})
        self.assertEqual(self.db.count("SELECT 1 FROM billing.plans WHERE key = 'ok-key'"), 0)

        # PATCH.
        resp = self.api("PATCH", f"/v1/admin/plans/{plan['id']}", admin,
                        body={"name": "Starter Plus", "features": {"projects": 5}})
        patched = self.assert_ok_json(resp)
        self.assertEqual((patched["name"], patched["features"], patched["description"]),
                         ("Starter Plus", {"projects": 5}, "Small"))
        self.assert_error(self.api("PATCH", f"/v1/admin/plans/{uuid.uuid4()}", admin,
                                   body={"name": "X"}), 404, "not_found")
        self.assert_error(self.api("PATCH", "/v1/admin/plans/not-a-uuid", admin,
                                   body={"name": "X"}), 404, "not_found")
        for payload, field in (({"key": "rekey"}, "key"), ({"features": [1]}, "features"),
                               ({"name": ""}, "name"), ({"active": "yes"}, "active")):
            with self.subTest(patch=payload):
                self.assert_fields(self.api("PATCH", f"/v1/admin/plans/{plan['id']}", admin,
                                            body=payload), {field})

        # Prices.
        prices = f"/v1/admin/plans/{plan['id']}/prices"
        resp = self.api("POST", prices, admin,
                        body={"amount": 900, "currency": "EUR", "interval": "month"})
        with_price = self.assert_ok_json(resp, 201)
        self.assertEqual([(p["amount"], p["currency"], p["interval"], p["stripe_price_id"])
                          for p in with_price["prices"]], [(900, "eur", "month", None)])
        good = {"amount": 9000, "currency": "eur", "interval": "year"}
        bad_prices = {
            "currency too short": (dict(good, currency="eu"), "currency"),
            "currency too long": (dict(good, currency="euro"), "currency"),
            "currency digits": (dict(good, currency="e1r"), "currency"),
            "interval week": (dict(good, interval="week"), "interval"),
            "interval missing": ({"amount": 1, "currency": "eur"}, "interval"),
            "amount negative": (dict(good, amount=-1), "amount"),
            "amount string": (dict(good, amount="9"), "amount"),
            "amount float": (dict(good, amount=1.5), "amount"),
            "unknown field": (dict(good, trial_days=7), "trial_days"),
        }
        for name, (payload, field) in bad_prices.items():
            with self.subTest(price=name):
                self.assert_fields(self.api("POST", prices, admin, body=payload), {field})
        self.assert_error(self.api("POST", f"/v1/admin/plans/{uuid.uuid4()}/prices", admin,
                                   body=good), 404, "not_found")
        self.assertEqual(self.db.count("SELECT 1 FROM billing.prices pr JOIN billing.plans p"
                                       " ON p.id = pr.plan_id WHERE p.key = :'k'", k=key), 1)

        # The public catalogue shows it at once.
        plans, _ = self.public_plans()
        self.assertEqual(plans[key]["name"], "Starter Plus")
        self.assertEqual([(p["amount"], p["interval"]) for p in plans[key]["prices"]],
                         [(900, "month")])

        # Other roles.
        client = self.new_user("notadmin")
        for method, path, payload in (
                ("POST", "/v1/admin/plans", dict(body, key="nope-" + bl.rand(6))),
                ("PATCH", f"/v1/admin/plans/{plan['id']}", {"name": "Hijack"}),
                ("POST", prices, good),
                ("POST", f"/v1/admin/plans/{plan['id']}/sync", None)):
            with self.subTest(role="client", route=f"{method} {path}"):
                self.assert_error(self.api(method, path, client["token"], body=payload), 403,
                                  "forbidden")
            with self.subTest(role="none", route=f"{method} {path}"):
                self.assert_error(self.api(method, path, body=payload), 401, "unauthenticated")
        self.assertEqual(self.db.value("SELECT name FROM billing.plans WHERE key = :'k'",
                                       k=key), "Starter Plus")

    # --- 11. the caller's routes refuse anonymous and bad queries --------------------

    def test_11_protected_routes_need_a_token(self):
        for method, path in (("POST", "/v1/billing/checkout"), ("POST", "/v1/billing/portal"),
                             ("GET", "/v1/billing/subscription"),
                             ("POST", "/v1/billing/subscription/cancel"),
                             ("GET", "/v1/billing/invoices"),
                             ("GET", "/v1/billing/entitlements")):
            with self.subTest(route=f"{method} {path}"):
                body = {} if method == "POST" else None
                self.assert_error(self.api(method, path, body=body), 401, "unauthenticated")

    @needs_gateway
    def test_11_invoice_list_queries(self):
        user = self.new_user("invq")
        token = user["token"]
        doc = self.assert_ok_json(self.api("GET", "/v1/billing/invoices", token))
        self.assertEqual(doc, {"data": [], "next_cursor": None})
        for query, field in (("limit=0", "limit"), ("limit=500", "limit"),
                             ("cursor=abc", "cursor"), ("cursor=1_notauuid", "cursor")):
            with self.subTest(query=query):
                self.assert_fields(self.api("GET", f"/v1/billing/invoices?{query}", token),
                                   {field})
        # Two invoices of the user's own, one a page.
        customer = bl.stripe_id("cus_")
        self.link_customer(user["id"], customer)
        now = int(time.time())
        ids = []
        for age in (200, 100):
            invoice_id = bl.stripe_id("in_")
            self.send("invoice.paid", bl.invoice_object(invoice_id, customer, "paid", 1200,
                                                        created=now - age))
            ids.append(invoice_id)
        page1 = self.assert_ok_json(self.api("GET", "/v1/billing/invoices?limit=1", token))
        self.assertEqual(len(page1["data"]), 1)
        self.assertIsNotNone(page1["next_cursor"])
        page2 = self.assert_ok_json(self.api(
            "GET", f"/v1/billing/invoices?limit=1&cursor={page1['next_cursor']}", token))
        self.assertEqual(len(page2["data"]), 1)
        self.assertIsNone(page2["next_cursor"])
        self.assertNotEqual(page1["data"][0]["id"], page2["data"][0]["id"])
        self.assertGreater(page1["data"][0]["created"], page2["data"][0]["created"])


class BillingUnreachableStripeTest(BillingStackCase):
    """stripe_api_base at a loopback port nobody listens on."""

    @classmethod
    def setUpClass(cls):
        cls.closed_port = free_port()
        cls.stack_env = dict(OPEN_LIMITS,
                             STOA_STRIPE_API_BASE=f"http://127.0.0.1:{cls.closed_port}",
                             STOA_STRIPE_SECRET_KEY=SECRET_KEY,
                             STOA_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRETS[0])
        super().setUpClass()
        try:
            cls._set_up_accounts()
        except BaseException:
            cls._failed = True
            raise

    @needs_gateway
    def test_checkout_and_sync_answer_503(self):
        plans = {p["key"]: p for p in self.assert_ok_json(
            self.request("GET", "/v1/billing/plans"))["data"]}
        pro = plans["pro"]
        t0 = time.monotonic()
        resp = self.api("POST", f"/v1/admin/plans/{pro['id']}/sync", self.admin_token)
        self.assertLess(time.monotonic() - t0, 10, "retries are bounded")
        with self.subTest("sync"):
            self.assert_error(resp, 503, "payment_provider_unavailable")
        self.assertIsNone(self.db.value("SELECT stripe_product_id FROM billing.plans"
                                        " WHERE key = 'pro'"))
        # A price with a Stripe id, as if synced earlier, so that checkout
        # gets as far as calling Stripe.
        price_id = pro["prices"][0]["id"]
        self.db.exec("UPDATE billing.prices SET stripe_price_id = :'s' WHERE id = :'id'",
                     s=bl.stripe_id("price_"), id=price_id)
        user = self.new_user("unreachable")
        key = "unreachable-" + bl.rand(8)
        for attempt in range(2):
            with self.subTest(attempt=attempt):
                resp = self.api("POST", "/v1/billing/checkout", user["token"],
                                body=self.checkout_body(price_id),
                                headers={"Idempotency-Key": key})
                self.assert_error(resp, 503, "payment_provider_unavailable")
        self.assertEqual(self.db.count("SELECT 1 FROM billing.customers WHERE user_id = :'u'",
                                       u=user["id"]), 0)

    def test_webhooks_need_no_stripe_api(self):
        hooks = WebhookSender(self.stack, WEBHOOK_SECRETS[0])
        resp, event_id = hooks.send("product.created", bl.product_object(
            bl.stripe_id("prod_"), "Offline", {}, active=False))
        self.assertEqual(self.assert_ok_json(resp), {"received": True, "duplicate": False})
        # Only the one configured secret is accepted here.
        event_id, body = bl.event_body("product.created", bl.product_object(
            bl.stripe_id("prod_"), "Other", {}, active=False))
        self.assert_error(hooks.post(body, sign_payload(WEBHOOK_SECRETS[1], body)), 400,
                          "invalid_signature")


if __name__ == "__main__":
    unittest.main()
