"""End-to-end tests of the billing pool's finance views and admin plan routes
(SPEC §6) against the fake Stripe. The stack and helpers are test_billing.py's.

Run from the repository root:
    python3 -m unittest discover -s tests/integration -p 'test_billing_admin.py' -v
"""

import time
import unittest
import uuid

import billinglib as bl
from test_billing import UUID_RE, BillingFakeStripeCase, needs_gateway, rfc3339


class BillingAdminTest(BillingFakeStripeCase):
    """Finance views and admin plans, through nginx."""

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



if __name__ == "__main__":
    unittest.main()
