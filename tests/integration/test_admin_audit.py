"""End-to-end tests of the admin audit log (GET /v1/admin/audit-log) and of
GDPR on behalf of a user (GET /v1/admin/users/{id}/export, DELETE
/v1/admin/users/{id}), through nginx over TLS.

Run from tests/integration:
    STOA_BIN_DIR=<worktree>/bin python3 -m unittest test_admin_audit -v
"""

import time
import unittest
import uuid

import billinglib as bl
from harness import Db, StackTestCase, wait_until

AUDIT = "/v1/admin/audit-log"
OPEN_LIMITS = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000",
               "STOA_RATE_API": "10000r/s", "STOA_BURST_API": "10000"}


class AdminAuditTest(StackTestCase):
    stack_env = OPEN_LIMITS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.db = Db(cls.stack)
            cls.admin_email = bl.unique_email("audit-admin")
            cls.admin_id, cls.admin_token = cls.operator_account(cls.admin_email, "admin")
            _, cls.finance_token = cls.operator_account(bl.unique_email("audit-fin"), "finance")
            _, cls.client_email, cls.client_token = cls.register("audit-client")
        except BaseException:
            cls._failed = True
            raise

    @classmethod
    def operator_account(cls, email, role):
        proc = bl.create_user(cls.stack, email, role)
        if proc.returncode != 0:
            raise RuntimeError(f"stoactl user create: {proc.stderr}")
        token = cls.login(email)
        user_id = cls.stack.client.request(
            "GET", "/v1/me", headers={"Authorization": "Bearer " + token}).json["id"]
        return user_id, token

    @classmethod
    def register(cls, tag):
        email = bl.unique_email(tag)
        resp = cls.stack.client.request("POST", "/v1/auth/register", body={
            "email": email, "password": bl.GOOD_PASSWORD, "name": "Audit " + tag})
        if resp.status != 201:
            raise RuntimeError(f"register: {resp!r}")
        return resp.json["user"]["id"], email, cls.login(email)

    @classmethod
    def login(cls, email, password=bl.GOOD_PASSWORD):
        resp = cls.stack.client.request("POST", "/v1/auth/login",
                                        body={"email": email, "password": password})
        if resp.status != 200:
            raise AssertionError(f"login {email}: {resp!r}")
        return resp.json["access_token"]

    def call(self, method, path, token, body=None):
        return self.stack.client.request(method, path, body=body,
                                         headers={"Authorization": "Bearer " + token})

    def audit(self, query=""):
        return self.assert_ok_json(self.call("GET", AUDIT + ("?" + query if query else ""),
                                             self.admin_token))

    # --- the audit log ----------------------------------------------------

    def test_audit_log_lists_auth_events_of_a_user_newest_first(self):
        user_id, email, _ = self.register("events")
        bad = self.stack.client.request("POST", "/v1/auth/login",
                                        body={"email": email, "password": "wrong-password-1"})
        self.assertEqual(bad.status, 401, repr(bad))
        self.login(email)
        doc = self.audit(f"target={user_id}")
        actions = [e["action"] for e in doc["data"]]
        # register() signs in once itself.
        self.assertEqual(actions, ["login.succeeded", "login.failed", "login.succeeded",
                                   "user.registered"], doc)
        ids = [e["id"] for e in doc["data"]]
        self.assertEqual(ids, sorted(ids, reverse=True), "newest first")
        entry = doc["data"][0]
        self.assertEqual(set(entry), {"id", "at", "actor_id", "actor", "action", "target_id",
                                      "ip", "request_id", "details"}, entry)
        self.assertEqual(entry["actor_id"], user_id)
        self.assertEqual(entry["target_id"], user_id)
        self.assertIsInstance(entry["details"], dict)
        self.assertRegex(entry["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    def test_audit_log_filters_by_actor_action_and_time(self):
        user_id, email, _ = self.register("filters")
        doc = self.audit(f"actor={user_id}&action=user.registered")
        self.assertEqual([(e["actor_id"], e["action"]) for e in doc["data"]],
                         [(user_id, "user.registered")], doc)
        at = doc["data"][0]["at"]
        self.assertTrue(self.audit(f"target={user_id}&from={at}")["data"])
        self.assertEqual(self.audit(f"target={user_id}&to={at}")["data"], [])
        self.assertEqual(self.audit(f"target={user_id}&from=2999-01-01")["data"], [])
        self.assertEqual(self.audit(f"actor={uuid.uuid4()}")["data"], [])

    def test_audit_log_pages_with_a_cursor(self):
        user_id, email, _ = self.register("pages")
        for _ in range(3):
            self.login(email)
        seen, cursor = [], None
        while True:
            doc = self.audit(f"target={user_id}&limit=2" + (f"&cursor={cursor}" if cursor else ""))
            self.assertLessEqual(len(doc["data"]), 2)
            seen += [e["id"] for e in doc["data"]]
            cursor = doc["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(len(seen), 5, seen)  # registered, 4 logins
        self.assertEqual(seen, sorted(seen, reverse=True))
        self.assertEqual(len(set(seen)), 5)

    def test_audit_log_refuses_unknown_and_bad_filters(self):
        cases = [("acter=" + self.admin_id, "acter"), ("actor=not-a-uuid", "actor"),
                 ("target=123", "target"), ("from=2026-02-30", "from"),
                 ("to=2026-13-01T00:00:00Z", "to"), ("limit=1000", "limit"),
                 ("limit=0", "limit"), ("cursor=junk", "cursor"),
                 ("cursor=99999999999999999999", "cursor"), ("action=" + "x" * 100, "action")]
        for query, field in cases:
            with self.subTest(query=query):
                resp = self.call("GET", AUDIT + "?" + query, self.admin_token)
                details = self.assert_error(resp, 400, "invalid_request")
                self.assertIn(field, details.get("fields", {}), repr(resp))

    def test_audit_log_is_for_admins_only(self):
        for token in (self.client_token, self.finance_token):
            for method, path in (("GET", AUDIT),
                                 ("GET", f"/v1/admin/users/{self.admin_id}/export"),
                                 ("DELETE", f"/v1/admin/users/{self.admin_id}")):
                with self.subTest(path=path, method=method):
                    self.assert_error(self.call(method, path, token), 403, "forbidden")
        self.assert_error(self.stack.client.request("GET", AUDIT), 401, "unauthenticated")

    def test_audit_log_refuses_update_delete_and_truncate(self):
        for sql in ("UPDATE admin.audit_log SET action = 'x'",
                    "DELETE FROM admin.audit_log",
                    "TRUNCATE admin.audit_log"):
            with self.subTest(sql=sql):
                with self.assertRaisesRegex(AssertionError, "append-only"):
                    self.db.exec(sql)
        self.assertGreater(self.db.count("SELECT 1 FROM admin.audit_log"), 0)

    def test_audit_log_records_admin_actions(self):
        resp = self.call("POST", "/v1/admin/webhooks", self.admin_token,
                         {"url": "http://127.0.0.1:9/hook", "events": ["user.created"]})
        self.assertEqual(resp.status, 201, repr(resp))
        hook = resp.json["id"]
        self.assertEqual(self.call("POST", f"/v1/admin/webhooks/{hook}/rotate-secret",
                                   self.admin_token).status, 200)
        self.assertEqual(self.call("DELETE", f"/v1/admin/webhooks/{hook}",
                                   self.admin_token).status, 204)
        doc = self.audit(f"actor={self.admin_id}")
        actions = {e["action"] for e in doc["data"] if (e["details"] or {}).get("webhook_id") == hook}
        self.assertEqual(actions, {"webhook.created", "webhook.secret_rotated", "webhook.deleted"})

    def test_audit_log_records_the_operators_catalogue_seed(self):
        # The stack seeds the demo catalogue with stoactl at start.
        entries = self.audit("action=plan.created")["data"]
        keys = {e["details"].get("key") for e in entries if e["actor"] == "stoactl"}
        self.assertLessEqual({"free", "pro", "team"}, keys, entries)

    # --- GDPR on behalf of a user -----------------------------------------

    def test_admin_export_is_the_users_own_export_and_is_audited(self):
        user_id, _, token = self.register("export")
        resp = self.call("GET", f"/v1/admin/users/{user_id}/export", self.admin_token)
        admin_doc = self.assert_ok_json(resp)
        self.assertIn("attachment", resp.header("Content-Disposition", ""))
        own = self.assert_ok_json(self.call("GET", "/v1/me/export", token))
        self.assertEqual(admin_doc["user"], own["user"])
        self.assertEqual(admin_doc["sessions"], own["sessions"])
        self.assertEqual(own["audit_log"][:len(admin_doc["audit_log"])], admin_doc["audit_log"])
        self.assertEqual(admin_doc["user"]["id"], user_id)
        entries = self.audit(f"target={user_id}&action=user.exported")["data"]
        self.assertEqual([e["actor_id"] for e in entries], [self.admin_id])

    def test_admin_delete_erases_the_account_and_is_audited(self):
        user_id, email, token = self.register("erase")
        key = self.call("POST", "/v1/auth/api-keys", token, {"name": "k"})
        self.assertEqual(key.status, 201, repr(key))
        resp = self.call("DELETE", f"/v1/admin/users/{user_id}", self.admin_token)
        self.assertEqual(resp.status, 204, repr(resp))
        row = self.db.row("SELECT email, name, status, password_hash FROM auth.users"
                          " WHERE id = :'id'::uuid", id=user_id)
        self.assertEqual(row["status"], "deleted")
        self.assertNotIn(email.split("@")[0], row["email"])
        self.assertIsNone(row["password_hash"])
        self.assertEqual(self.db.count("SELECT 1 FROM auth.api_keys WHERE user_id = :'id'::uuid"
                                       " AND revoked_at IS NULL", id=user_id), 0)
        self.assertEqual(self.db.count("SELECT 1 FROM auth.sessions WHERE user_id = :'id'::uuid"
                                       " AND revoked_at IS NULL", id=user_id), 0)
        got, _ = wait_until(lambda: self.call("GET", "/v1/me", token).status == 401, 3)
        self.assertTrue(got, "the erased user's token still works")
        bad = self.stack.client.request("POST", "/v1/auth/login",
                                        body={"email": email, "password": bl.GOOD_PASSWORD})
        self.assertEqual(bad.status, 401, repr(bad))
        entries = self.audit(f"target={user_id}&action=user.deleted")["data"]
        self.assertEqual([e["actor_id"] for e in entries], [self.admin_id])
        # Gone for the admin routes too.
        self.assert_error(self.call("DELETE", f"/v1/admin/users/{user_id}", self.admin_token),
                          404, "not_found")
        self.assert_error(self.call("GET", f"/v1/admin/users/{user_id}/export",
                                    self.admin_token), 404, "not_found")

    def test_admin_gdpr_routes_answer_404_for_unknown_and_malformed_ids(self):
        for ident in (str(uuid.uuid4()), "not-a-uuid", "1234"):
            for method, path in (("GET", f"/v1/admin/users/{ident}/export"),
                                 ("DELETE", f"/v1/admin/users/{ident}")):
                with self.subTest(method=method, path=path):
                    self.assert_error(self.call(method, path, self.admin_token), 404, "not_found")

    def test_the_last_active_admin_cannot_be_erased(self):
        other_id, _ = self.operator_account(bl.unique_email("audit-admin2"), "admin")
        # Only the class's admin and the new one stay active admins.
        suspended = self.db.rows(
            "UPDATE auth.users SET status = 'suspended' WHERE role = 'admin' AND status ="
            " 'active' AND id NOT IN (:'a'::uuid, :'b'::uuid) RETURNING id",
            a=self.admin_id, b=other_id)
        for r in suspended:
            self.addCleanup(self.db.exec, "UPDATE auth.users SET status = 'active'"
                            " WHERE id = :'id'::uuid", id=r["id"])
        self.assertEqual(self.call("DELETE", f"/v1/admin/users/{other_id}",
                                   self.admin_token).status, 204)
        resp = self.call("DELETE", f"/v1/admin/users/{self.admin_id}", self.admin_token)
        self.assert_error(resp, 409, "last_admin")
        self.assertEqual(self.db.value("SELECT status FROM auth.users WHERE id = :'id'::uuid",
                                       id=self.admin_id), "active")


if __name__ == "__main__":
    unittest.main()
