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


class BillingFakeStripeCase(BillingStackCase):
    """A stack whose billing pool talks to the fake Stripe, through nginx;
    its helpers send signed events and run checkouts (no tests of its own:
    test_billing*.py subclass it)."""

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

class BillingTest(BillingFakeStripeCase):
    """The billing pool against the fake Stripe, through nginx."""

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
