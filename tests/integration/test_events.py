"""End-to-end tests of what domain events carry (SPEC §8): a snapshot of
their object, as Stripe's events do. Deliveries go to a test receiver
through an outbound webhook endpoint made with the admin API.

Run from tests/integration:
    STOA_BIN_DIR=<worktree>/bin python3 -m unittest test_events -v
"""

import json
import secrets
import subprocess
import os

import billinglib as bl
from harness import BIN_DIR, Db, StackTestCase
from jobslib import Receiver

WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)
USER_KEYS = {"id", "email", "name", "role", "status", "created_at"}


class EventPayloadTest(StackTestCase):
    stack_env = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000",
                 "STOA_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.db = bl.Db(cls.stack)
            email = bl.unique_email("events-admin")
            proc = bl.create_user(cls.stack, email, "admin")
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            cls.admin_token = bl.login(cls.stack.client, email)[0]
        except BaseException:
            cls._failed = True
            raise

    def register(self, email, name):
        """The user object of a new account (201)."""
        resp = self.stack.client.request("POST", "/v1/auth/register", body={
            "email": email, "password": bl.GOOD_PASSWORD, "name": name})
        self.assertEqual(resp.status, 201, repr(resp))
        return resp.json["user"]

    def receiver(self, events):
        """A receiver subscribed to events through POST /v1/admin/webhooks."""
        hook = Receiver()
        self.addCleanup(hook.close)
        auth = {"Authorization": "Bearer " + self.admin_token}
        resp = self.stack.client.request("POST", "/v1/admin/webhooks", headers=auth,
                                         body={"url": hook.url, "events": events})
        self.assertEqual(resp.status, 201, repr(resp))
        self.addCleanup(self.stack.client.request, "DELETE",
                        f"/v1/admin/webhooks/{resp.json['id']}", headers=auth)
        return hook

    def delivered(self, hook, n=1):
        self.assertTrue(hook.wait_for(n, 20), f"{hook.count()} deliveries, want {n}")
        return [json.loads(r["body"]) for r in hook.requests]

    def test_user_created_delivery_carries_the_user(self):
        hook = self.receiver(["user.created"])
        email = bl.unique_email("events-new")
        user = self.register(email, "Event \"Quoted\" Ünïcode")
        doc = self.delivered(hook)[0]
        self.assertEqual(doc["type"], "user.created")
        data = doc["data"]
        self.assertEqual(set(data), USER_KEYS, data)
        self.assertEqual(data, {"id": user["id"], "email": email, "name": user["name"],
                                "role": "client", "status": "active",
                                "created_at": user["created_at"]})

    def test_user_updated_and_suspended_carry_the_changed_user(self):
        email = bl.unique_email("events-change")
        user_id = self.register(email, "Before")["id"]
        hook = self.receiver(["user.updated", "user.suspended"])
        token = bl.login(self.stack.client, email)[0]
        resp = self.stack.client.request("PATCH", "/v1/me", body={"name": "After"},
                                         headers={"Authorization": "Bearer " + token})
        self.assertEqual(resp.status, 200, repr(resp))
        self.delivered(hook, 1)
        proc = subprocess.run([os.path.join(BIN_DIR, "stoactl"), "--config",
                               self.stack.conf_path(), "user", "suspend", "--email", email],
                              capture_output=True, text=True, timeout=30, env=bl.stoactl_env())
        self.assertEqual(proc.returncode, 0, proc.stderr)
        docs = self.delivered(hook, 2)
        by_type = {d["type"]: d["data"] for d in docs}
        self.assertEqual(by_type["user.updated"]["name"], "After")
        self.assertEqual(by_type["user.updated"]["status"], "active")
        self.assertEqual(by_type["user.suspended"]["id"], user_id)
        self.assertEqual(by_type["user.suspended"]["status"], "suspended")
        self.assertEqual(set(by_type["user.suspended"]), USER_KEYS)

    def test_subscription_updated_carries_the_subscription_as_the_api_shows_it(self):
        email = bl.unique_email("events-sub")
        user_id = self.register(email, "Subscriber")["id"]
        token = bl.login(self.stack.client, email)[0]
        price = bl.stripe_id("price_")
        self.db.exec("UPDATE billing.prices SET stripe_price_id = :'sp' WHERE id = (SELECT"
                     " pr.id FROM billing.prices pr JOIN billing.plans p ON p.id = pr.plan_id"
                     " WHERE p.key = 'pro' AND pr.interval = 'month' LIMIT 1)", sp=price)
        hook = self.receiver(["subscription.updated"])
        sub = bl.stripe_id("sub_")
        obj = bl.subscription_object(sub, bl.stripe_id("cus_"), "active", price,
                                     user_id=user_id, cancel_at_period_end=True)
        resp, _ = bl.WebhookSender(self.stack, WEBHOOK_SECRET).send(
            "customer.subscription.created", obj)
        self.assertEqual(resp.status, 200, repr(resp))
        doc = self.delivered(hook)[0]
        self.assertEqual(doc["type"], "subscription.updated")
        shown = self.stack.client.request("GET", "/v1/billing/subscription",
                                          headers={"Authorization": "Bearer " + token})
        self.assertEqual(shown.status, 200, repr(shown))
        self.assertEqual(doc["data"], {"user_id": user_id, "stripe_id": sub,
                                       "object": shown.json})
        self.assertEqual(doc["data"]["object"]["plan"]["key"], "pro")
        self.assertNotIn("items", doc["data"]["object"], "not Stripe's object")


if __name__ == "__main__":
    import unittest
    unittest.main()
