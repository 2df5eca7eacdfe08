"""Self-test of the Stripe fake: the wire format, idempotency, injected
failures, and signed webhooks in order against a tiny local receiver.

    python3 -m unittest tests/fakes/test_stripe_fake.py
"""

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from stripe_fake import StripeFake, parse_form, sign_payload  # noqa: E402

SECRET_KEY = "sk_test_selftest"
WEBHOOK_SECRET = "whsec_selftest"
# Nothing here may go through a proxy the environment happens to name.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def verify(header, body, secret, tolerance=300):
    """Checks a Stripe-Signature header the way a receiver must, written
    independently of the fake's signing code."""
    fields = [part.split("=", 1) for part in header.split(",")]
    t = int(dict(fields)["t"])
    expected = hmac.new(secret.encode(), b"%d." % t + body,
                        hashlib.sha256).hexdigest()
    return abs(time.time() - t) <= tolerance and any(
        k == "v1" and hmac.compare_digest(v, expected) for k, v in fields)


class Receiver:
    """A webhook endpoint that records (headers, raw body) and answers 200."""

    def __init__(self):
        self.received = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/v1/billing/webhooks/stripe" % (
            self.server.server_address[1])

    def events(self):
        return [json.loads(body) for _, body in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def request(base, method, path, form=None, key=None, auth=SECRET_KEY):
    """(status, headers, JSON) of one call; form: a list of pairs."""
    query = urllib.parse.urlencode(form or [])
    data = query.encode() if method == "POST" else None
    if method != "POST" and query:
        path += "?" + query
    req = urllib.request.Request(base + path, data=data, method=method)
    if auth:
        req.add_header("Authorization", f"Bearer {auth}")
    if key:
        req.add_header("Idempotency-Key", key)
    try:
        with OPENER.open(req, timeout=10) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, json.loads(e.read())


class PureFunctionsTest(unittest.TestCase):
    def test_sign_payload_matches_a_known_vector(self):
        # Computed with: printf '%s' '1700000000.{"id":"evt_1"}' |
        #   openssl dgst -sha256 -hmac whsec_test
        self.assertEqual(
            sign_payload("whsec_test", '{"id":"evt_1"}', 1700000000),
            "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd5"
            "8cea9022bd80ccc78230f3942d632925")

    def test_parse_form_bracket_notation(self):
        form = parse_form(
            "mode=subscription&metadata[user_id]=u1&metadata[7]=x"
            "&line_items[1][price]=p2&line_items[0][price]=p1"
            "&line_items[0][quantity]=1&expand[]=a&expand[]=b.c"
            "&subscription_data[metadata][user_id]=u1&empty=")
        self.assertEqual(form, {
            "mode": "subscription", "metadata": {"user_id": "u1", "7": "x"},
            "line_items": [{"price": "p1", "quantity": "1"}, {"price": "p2"}],
            "expand": ["a", "b.c"],
            "subscription_data": {"metadata": {"user_id": "u1"}}, "empty": ""})


class FakeTestCase(unittest.TestCase):
    def setUp(self):
        self.receiver = Receiver()
        self.addCleanup(self.receiver.close)
        self.fake = StripeFake(secret_key=SECRET_KEY,
                               webhook_url=self.receiver.url,
                               webhook_secret=WEBHOOK_SECRET)
        self.base = self.fake.start()
        self.addCleanup(self.fake.stop)

    def call(self, method, path, form=None, key=None, auth=SECRET_KEY):
        return request(self.base, method, path, form, key, auth)

    def ok(self, method, path, form=None, key=None):
        status, _, body = self.call(method, path, form, key)
        self.assertEqual(status, 200, body)
        return body

    def control(self, path, args):
        req = urllib.request.Request(self.base + "/__fake/" + path,
                                     data=json.dumps(args).encode(),
                                     method="POST")
        with OPENER.open(req, timeout=30) as resp:
            return json.loads(resp.read())

    def catalogue(self):
        product = self.ok("POST", "/v1/products", [
            ("name", "Pro"), ("description", "For teams"),
            ("metadata[plan_key]", "pro"), ("metadata[features]", '["api"]')])
        price = self.ok("POST", "/v1/prices", [
            ("product", product["id"]), ("unit_amount", "1500"),
            ("currency", "usd"), ("recurring[interval]", "month"),
            ("metadata[stoa_price_id]", "pr-1")])
        return product, price

    def checkout(self, price, customer):
        return self.ok("POST", "/v1/checkout/sessions", [
            ("mode", "subscription"), ("customer", customer["id"]),
            ("line_items[0][price]", price["id"]),
            ("line_items[0][quantity]", "1"),
            ("success_url", "https://app.test/ok"),
            ("cancel_url", "https://app.test/cancel"),
            ("client_reference_id", "user-1"), ("metadata[user_id]", "user-1"),
            ("subscription_data[metadata][user_id]", "user-1")])

    def subscribe(self):
        product, price = self.catalogue()
        customer = self.ok("POST", "/v1/customers", [
            ("email", "ada@example.test"), ("name", "Ada"),
            ("metadata[user_id]", "user-1")])
        session = self.checkout(price, customer)
        self.assertTrue(self.fake.flush())
        self.receiver.received.clear()
        done = self.control("complete_checkout", {"session_id": session["id"]})
        return price, customer, session, done


class ApiTest(FakeTestCase):
    def test_secret_key_is_required(self):
        for auth in (None, "sk_test_wrong"):
            status, headers, body = self.call("GET", "/v1/customers/cus_x",
                                              auth=auth)
            self.assertEqual(status, 401)
            self.assertEqual(body["error"]["type"], "invalid_request_error")
            self.assertTrue(headers["Request-Id"].startswith("req_"))
        status, _, body = self.call("GET", "/v1/customers/cus_x")
        self.assertEqual((status, body["error"]["code"]), (404, "resource_missing"))

    def test_objects_are_stripe_shaped_and_readable_back(self):
        product, price = self.catalogue()
        self.assertRegex(product["id"], r"^prod_[A-Za-z0-9]+$")
        self.assertEqual(product["metadata"], {"plan_key": "pro",
                                               "features": '["api"]'})
        self.assertRegex(price["id"], r"^price_")
        self.assertEqual((price["unit_amount"], price["currency"],
                          price["recurring"]["interval"], price["type"]),
                         (1500, "usd", "month", "recurring"))
        self.assertEqual(self.ok("GET", f"/v1/prices/{price['id']}"), price)
        customer = self.ok("POST", "/v1/customers", [("email", "a@b.test")])
        self.assertRegex(customer["id"], r"^cus_")
        portal = self.ok("POST", "/v1/billing_portal/sessions", [
            ("customer", customer["id"]), ("return_url", "https://app.test")])
        self.assertRegex(portal["id"], r"^bps_")
        self.assertTrue(portal["url"].startswith("https://"))
        method, path, form, headers = self.fake.requests[-1]
        self.assertEqual((method, path, form["customer"]),
                         ("POST", "/v1/billing_portal/sessions", customer["id"]))

    def test_errors_follow_stripe(self):
        product, price = self.catalogue()
        cases = [
            (("POST", "/v1/prices", [("product", product["id"]),
                                     ("unit_amount", "100")]),
             400, "parameter_missing", "currency"),
            (("POST", f"/v1/prices/{price['id']}", [("unit_amount", "5")]),
             400, "parameter_unknown", "unit_amount"),
            (("POST", "/v1/prices", [("product", "prod_none"),
                                     ("currency", "usd"),
                                     ("unit_amount", "1")]),
             400, "resource_missing", "product"),
            (("POST", "/v1/prices", [("product", product["id"]),
                                     ("currency", "usd"),
                                     ("unit_amount", "ten")]),
             400, "parameter_invalid_integer", "unit_amount"),
            (("GET", "/v1/subscriptions/sub_none", None),
             404, "resource_missing", "id"),
        ]
        for (method, path, form), status, code, param in cases:
            with self.subTest(path=path, code=code):
                got, _, body = self.call(method, path, form)
                self.assertEqual(got, status, body)
                self.assertEqual(body["error"]["code"], code)
                self.assertEqual(body["error"]["param"], param)
        self.ok("POST", f"/v1/prices/{price['id']}", [("active", "false")])
        customer = self.ok("POST", "/v1/customers", [("email", "a@b.test")])
        status, _, body = self.call("POST", "/v1/checkout/sessions", [
            ("mode", "subscription"), ("customer", customer["id"]),
            ("line_items[0][price]", price["id"]),
            ("line_items[0][quantity]", "1"), ("success_url", "https://x.test")])
        self.assertEqual((status, body["error"]["param"]),
                         (400, "line_items[0][price]"))
        status, _, body = self.call("DELETE", "/v1/customers")
        self.assertEqual(status, 404)
        self.assertIn("Unrecognized request URL", body["error"]["message"])

    def test_idempotency_key_replays_the_first_answer(self):
        form = [("email", "ada@example.test"), ("metadata[user_id]", "u1")]
        status, first_headers, first = self.call("POST", "/v1/customers", form,
                                                 key="k-1")
        self.assertEqual(status, 200)
        self.assertNotIn("Idempotent-Replayed", first_headers)
        status, headers, again = self.call("POST", "/v1/customers", form,
                                           key="k-1")
        self.assertEqual((status, again["id"]), (200, first["id"]))
        self.assertEqual(headers["Idempotent-Replayed"], "true")
        self.assertNotEqual(headers["Request-Id"], first_headers["Request-Id"])
        status, _, body = self.call("POST", "/v1/customers",
                                    [("email", "eve@example.test")], key="k-1")
        self.assertEqual((status, body["error"]["type"]),
                         (400, "idempotency_error"))
        customers = [o for o in self.fake.objects.values()
                     if o["object"] == "customer"]
        self.assertEqual(len(customers), 1)
        self.assertTrue(self.fake.flush())
        self.assertEqual([e["type"] for e in self.receiver.events()],
                         ["customer.created"])

    def test_injected_failures_then_success_without_double_effects(self):
        self.control("fail", {"path_prefix": "/v1/customers", "status": 503,
                              "times": 2})
        form = [("email", "ada@example.test")]
        for _ in range(2):
            status, headers, body = self.call("POST", "/v1/customers", form,
                                              key="retry-1")
            self.assertEqual((status, body["error"]["type"]), (503, "api_error"))
            self.assertEqual(headers["Stripe-Should-Retry"], "true")
        # Other paths are unaffected meanwhile.
        self.catalogue()
        status, _, created = self.call("POST", "/v1/customers", form,
                                       key="retry-1")
        self.assertEqual(status, 200)
        status, _, again = self.call("POST", "/v1/customers", form,
                                     key="retry-1")
        self.assertEqual(again["id"], created["id"])
        self.assertEqual(sum(o["object"] == "customer"
                             for o in self.fake.objects.values()), 1)
        self.assertEqual(sum(p == "/v1/customers"
                             for _, p, _, _ in self.fake.requests), 4)

        self.control("fail", {"path_prefix": "/v1/products", "status": 429,
                              "retry_after": 2})
        status, headers, body = self.call("POST", "/v1/products",
                                          [("name", "X")])
        self.assertEqual((status, body["error"]["code"]), (429, "rate_limit"))
        self.assertEqual(headers["Retry-After"], "2")
        self.ok("POST", "/v1/products", [("name", "X")])

        self.control("fail", {"path_prefix": "/v1/products", "status": 0})
        with self.assertRaises((urllib.error.URLError, ConnectionError)):
            self.call("POST", "/v1/products", [("name", "X")])


class WebhookTest(FakeTestCase):
    def test_catalogue_events_arrive_signed_after_the_answer(self):
        product, price = self.catalogue()
        self.assertTrue(self.fake.flush())
        events = self.receiver.events()
        self.assertEqual([e["type"] for e in events],
                         ["product.created", "price.created"])
        self.assertEqual(events[1]["data"]["object"]["id"], price["id"])
        self.assertTrue(events[0]["request"]["id"].startswith("req_"))
        for headers, body in self.receiver.received:
            self.assertTrue(verify(headers["Stripe-Signature"], body,
                                   WEBHOOK_SECRET))
        self.receiver.received.clear()
        self.ok("POST", f"/v1/products/{product['id']}",
                [("metadata[plan_key]", ""), ("name", "Pro 2")], key="u-1")
        self.assertTrue(self.fake.flush())
        (event,) = self.receiver.events()
        self.assertEqual(event["type"], "product.updated")
        self.assertEqual(event["data"]["object"]["metadata"],
                         {"features": '["api"]'})
        self.assertEqual(event["data"]["previous_attributes"]["name"], "Pro")
        self.assertEqual(event["request"]["idempotency_key"], "u-1")

    def test_completed_checkout_emits_signed_events_in_order(self):
        price, customer, session, done = self.subscribe()
        self.assertEqual(session["status"], "open")
        self.assertTrue(session["id"].startswith("cs_test_"))
        self.assertEqual(session["url"],
                         f"https://checkout.stripe.test/c/pay/{session['id']}")
        order = ["checkout.session.completed", "customer.subscription.created",
                 "invoice.finalized", "invoice.paid"]
        self.assertEqual([(e["type"], e["status"]) for e in done["events"]],
                         [(t, 200) for t in order])
        self.assertEqual(len(self.receiver.received), 4)
        for headers, body in self.receiver.received:
            self.assertTrue(verify(headers["Stripe-Signature"], body,
                                   WEBHOOK_SECRET))
            self.assertFalse(verify(headers["Stripe-Signature"], body,
                                    "whsec_other"))
            # Pretty-printed like Stripe's: receivers must not re-serialise.
            self.assertIn(b"\n  ", body)
        events = self.receiver.events()
        self.assertEqual([e["type"] for e in events], order)
        for e in events:
            self.assertRegex(e["id"], r"^evt_")
            self.assertEqual((e["object"], e["api_version"], e["livemode"]),
                             ("event", "2024-06-20", False))
            self.assertEqual(e["request"], {"id": None, "idempotency_key": None})

        completed = events[0]["data"]["object"]
        sub_id = done["subscription"]["id"]
        self.assertEqual((completed["client_reference_id"],
                          completed["metadata"], completed["customer"],
                          completed["subscription"], completed["status"]),
                         ("user-1", {"user_id": "user-1"}, customer["id"],
                          sub_id, "complete"))
        sub = events[1]["data"]["object"]
        self.assertEqual((sub["status"], sub["customer"], sub["metadata"],
                          sub["cancel_at_period_end"]),
                         ("active", customer["id"], {"user_id": "user-1"}, False))
        self.assertEqual(sub["items"]["data"][0]["price"], price)
        days = (sub["current_period_end"] - sub["current_period_start"]) / 86400
        self.assertTrue(28 <= days <= 31, days)
        finalized, paid = events[2]["data"]["object"], events[3]["data"]["object"]
        self.assertEqual((finalized["status"], finalized["amount_paid"]), ("open", 0))
        self.assertEqual((paid["status"], paid["amount_due"], paid["amount_paid"],
                          paid["currency"], paid["subscription"]),
                         ("paid", 1500, 1500, "usd", sub_id))
        self.assertRegex(paid["number"], r"^[A-Z0-9]{8}-0001$")
        self.assertTrue(paid["hosted_invoice_url"].startswith("https://"))
        self.assertTrue(paid["invoice_pdf"].endswith("/pdf"))
        self.assertEqual(self.fake.objects[paid["charge"]]["amount"], 1500)

        got = self.ok("GET", f"/v1/subscriptions/{sub_id}",
                      [("expand[]", "latest_invoice"), ("expand[]", "customer")])
        self.assertEqual((got["status"], got["latest_invoice"]["id"],
                          got["customer"]["email"]),
                         ("active", paid["id"], "ada@example.test"))
        status, _, body = request(self.base, "POST", "/__fake/complete_checkout",
                                  None)
        self.assertEqual(status, 400)   # a JSON body is required

    def test_cancel_at_period_end_emits_subscription_updated(self):
        _, _, _, done = self.subscribe()
        sub = done["subscription"]
        self.receiver.received.clear()
        path = f"/v1/subscriptions/{sub['id']}"
        updated = self.ok("POST", path, [("cancel_at_period_end", "true")],
                          key="cancel-1")
        self.assertTrue(updated["cancel_at_period_end"])
        self.assertIsNotNone(updated["canceled_at"])
        self.assertEqual(updated["cancel_at"], sub["current_period_end"])
        self.ok("POST", path, [("cancel_at_period_end", "true")], key="cancel-2")
        self.assertTrue(self.fake.flush())
        (event,) = self.receiver.events()   # the no-op repeat emits nothing
        self.assertEqual(event["type"], "customer.subscription.updated")
        self.assertIs(event["data"]["previous_attributes"]["cancel_at_period_end"],
                      False)
        self.assertEqual(event["request"]["idempotency_key"], "cancel-1")

    def test_emit_redeliver_and_forged_signatures(self):
        obj = {"id": "sub_x", "object": "subscription", "status": "past_due"}
        (result,) = self.control("emit", {"type": "customer.subscription.updated",
                                          "object": obj})["events"]
        self.assertEqual(result["status"], 200)
        self.control("redeliver", {"event_id": result["id"]})
        self.control("emit", {"type": "invoice.paid", "object": obj,
                              "signature_timestamp": int(time.time()) - 3600})
        self.control("emit", {"type": "invoice.paid", "object": obj,
                              "signing_secret": "whsec_forged"})
        (h1, b1), (h2, b2), (h3, b3), (h4, b4) = self.receiver.received
        self.assertEqual(b1, b2)   # a duplicate is the same event, same bytes
        self.assertEqual(json.loads(b1)["data"]["object"], obj)
        self.assertTrue(verify(h2["Stripe-Signature"], b2, WEBHOOK_SECRET))
        self.assertFalse(verify(h3["Stripe-Signature"], b3, WEBHOOK_SECRET))
        self.assertTrue(verify(h3["Stripe-Signature"], b3, WEBHOOK_SECRET,
                               tolerance=7200))
        self.assertFalse(verify(h4["Stripe-Signature"], b4, WEBHOOK_SECRET))


class CommandLineTest(unittest.TestCase):
    def start(self, state_file):
        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "stripe_fake.py"), "--port", "0",
             "--secret-key", SECRET_KEY, "--state-file", state_file],
            stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is not None or proc.kill())
        line = proc.stdout.readline()
        m = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", line)
        self.assertIsNotNone(m, line)
        return proc, m.group(1)

    def stop(self, proc):
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=10), 0)
        proc.stdout.close()

    def test_runs_as_a_program_and_keeps_its_state_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            state = os.path.join(tmp, "stripe.json")
            proc, base = self.start(state)
            status, _, customer = request(base, "POST", "/v1/customers",
                                          [("email", "a@b.test")], key="k")
            self.assertEqual(status, 200)
            self.stop(proc)
            proc, base = self.start(state)
            status, _, again = request(base, "GET",
                                       f"/v1/customers/{customer['id']}")
            self.assertEqual((status, again), (200, customer))
            _, headers, replay = request(base, "POST", "/v1/customers",
                                         [("email", "a@b.test")], key="k")
            self.assertEqual(replay["id"], customer["id"])
            self.assertEqual(headers["Idempotent-Replayed"], "true")
            self.stop(proc)


if __name__ == "__main__":
    unittest.main()
