"""The back office's accounts (SPEC §8): GET /v1/admin/users with its
filters and keyset paging, the detail GET /v1/admin/users/{id}, and PATCH
of role and status: a suspension or a role change refuses every token of
the user (logins and API-key exchanges) on every pool within the
revocation deadline, the last active admin stays one (also when two admins
demote each other at once), each change is audited with the acting admin,
the old and the new value, and bad input is refused by name.
"""

from harness import OPEN_LIMITS
import threading
import time
import unittest
import uuid

import billinglib as bl
from authlib import (SourceClientTestCase, assert_refused_within, count_rows, jwt_claims,
                     query_json)

GOOD_PASSWORD = bl.GOOD_PASSWORD
RANDOM_ID = "5b0c8f4e-3f0a-4c52-9d7e-1f2a3b4c5d6e"


class AdminUsersTest(SourceClientTestCase):
    stack_env = OPEN_LIMITS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.admin_email = bl.unique_email("users-admin")
            proc = bl.create_user(cls.stack, cls.admin_email, "admin")
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            cls.finance_email = bl.unique_email("users-finance")
            proc = bl.create_user(cls.stack, cls.finance_email, "finance")
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
        except BaseException:
            cls._failed = True
            raise

    # --- helpers -----------------------------------------------------------

    def login(self, c, email):
        resp = c.request("POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD})
        return self.assert_ok_json(resp)

    def admin(self, c):
        return self.login(c, self.admin_email)["access_token"]

    def register(self, c, email, name="Listed User"):
        resp = c.request("POST", "/v1/auth/register",
                         {"email": email, "password": GOOD_PASSWORD, "name": name})
        return self.assert_ok_json(resp, 201)["user"]["id"]

    def staff(self, email, role):
        proc = bl.create_user(self.stack, email, role)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return query_json(self.stack, "SELECT to_json(id) FROM auth.users WHERE email = :'e'",
                          e=email)

    def patch(self, c, token, user_id, body):
        return c.request("PATCH", f"/v1/admin/users/{user_id}", body, token=token)

    def key_token(self, c, login_token):
        key = self.assert_ok_json(c.request("POST", "/v1/auth/api-keys", {"name": "bot"},
                                            token=login_token), 201)["key"]
        got = self.assert_ok_json(c.request("POST", "/v1/auth/token",
                                            {"grant_type": "api_key", "api_key": key}))
        return key, got["access_token"]

    # One route on each pool the token's role (finance) may read.
    def pool_reads(self, c, token):
        return [c.request("GET", "/v1/me", token=token),
                c.request("GET", "/v1/billing/entitlements", token=token),
                c.request("GET", "/v1/admin/users?limit=1", token=token)]

    def assert_refused_within_deadline(self, c, token):
        assert_refused_within(self, lambda: self.pool_reads(c, token))

    def audit(self, user_id, action):
        return query_json(self.stack, """
            SELECT coalesce(json_agg(json_build_object('actor_id', actor_id, 'actor', actor,
                   'details', details) ORDER BY id), '[]'::json)
            FROM admin.audit_log WHERE target_id = :'id'::uuid AND action = :'a'""",
                          id=user_id, a=action)

    def list_ids(self, c, token, query):
        doc = self.assert_ok_json(c.request("GET", "/v1/admin/users?" + query, token=token))
        return [u["id"] for u in doc["data"]], doc

    # --- list and detail ------------------------------------------------------

    def test_10_detail_shows_profile_plan_sessions_login_mfa_and_keys(self):
        c = self.client()
        token = self.admin(c)
        email = self.unique_email("detail")
        user_id = self.register(c, email, "Detail User")
        login = self.login(c, email)["access_token"]
        self.key_token(c, login)
        for caller in (token, self.login(c, self.finance_email)["access_token"]):
            got = self.assert_ok_json(c.request("GET", f"/v1/admin/users/{user_id}", token=caller))
            self.assertEqual(got["id"], user_id)
            self.assertEqual(got["email"], email)
            self.assertEqual(got["name"], "Detail User")
            self.assertEqual((got["role"], got["status"]), ("client", "active"))
            self.assertIsNone(got["email_verified_at"])
            self.assertRegex(got["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            self.assertIsNone(got["plan"])
            self.assertIsNone(got["subscription_status"])
            self.assertEqual(got["sessions"], 1)  # the login; not the key's exchange
            self.assertEqual(got["last_login"]["ip"], c.source_address)
            self.assertFalse(got["mfa_enabled"])
            self.assertEqual(got["api_keys"], 1)

    def test_11_list_filters_and_pages_newest_first(self):
        c = self.client()
        token = self.admin(c)
        tag = "flt" + uuid.uuid4().hex[:8]
        ids = [self.register(c, f"{tag}.{i}@example.com") for i in range(5)]
        # Prefix, case-insensitive; pages of 2 across 3 pages, newest first.
        seen, cursor, pages = [], None, 0
        while True:
            q = f"email={tag.upper()}&limit=2" + (f"&cursor={cursor}" if cursor else "")
            page, doc = self.list_ids(c, token, q)
            seen += page
            pages += 1
            cursor = doc["next_cursor"]
            if not cursor:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(seen, list(reversed(ids)))
        self.assertEqual(self.list_ids(c, token, f"email={tag}.3%40EXAMPLE")[0], [ids[3]])
        # A prefix is a prefix: a tail matches nothing; % and _ are text.
        self.assertEqual(self.list_ids(c, token, f"email={tag[2:]}")[0], [])
        self.assertEqual(self.list_ids(c, token, f"email={tag[:3]}%25{tag[4:]}")[0], [])
        self.assertEqual(self.list_ids(c, token, f"email={tag[:3]}_")[0], [])
        # role and status.
        self.assertEqual(self.list_ids(c, token, f"email={tag}&role=finance")[0], [])
        self.assertEqual(len(self.list_ids(c, token, f"email={tag}&role=client")[0]), 5)
        self.assert_ok_json(self.patch(c, token, ids[1], {"status": "suspended"}))
        self.assertEqual(self.list_ids(c, token, f"email={tag}&status=suspended")[0], [ids[1]])
        self.assertNotIn(ids[1], self.list_ids(c, token, f"email={tag}&status=active")[0])
        # Creation time bounds.
        self.assertEqual(self.list_ids(c, token, f"email={tag}&created_to=2000-01-01")[0], [])
        self.assertEqual(self.list_ids(c, token,
                                       f"email={tag}&created_from=2999-01-01T00:00:00Z")[0], [])
        self.assertEqual(len(self.list_ids(c, token, f"email={tag}&created_from=2000-01-01"
                                                      f"&created_to=2999-01-01")[0]), 5)
        # plan: the billing plan key of the current subscription.
        plan_key = "plan" + uuid.uuid4().hex[:8]
        query_json(self.stack, """
            WITH p AS (INSERT INTO billing.plans (key, name) VALUES (:'k', 'Pro') RETURNING id),
            pr AS (INSERT INTO billing.prices (plan_id, amount, currency, interval,
                   stripe_price_id) SELECT id, 900, 'eur', 'month', :'price' FROM p
                   RETURNING stripe_price_id),
            s AS (INSERT INTO billing.subscriptions (stripe_subscription_id, user_id,
                  stripe_customer_id, status, stripe_price_id)
                  SELECT :'sub', :'uid'::uuid, 'cus_x', 'active', stripe_price_id FROM pr
                  RETURNING id)
            SELECT to_json(count(*)) FROM s""", k=plan_key, price=bl.stripe_id("price_"),
                   sub=bl.stripe_id("sub_"), uid=ids[2])
        page, doc = self.list_ids(c, token, f"plan={plan_key}")
        self.assertEqual(page, [ids[2]])
        self.assertEqual((doc["data"][0]["plan"], doc["data"][0]["subscription_status"]),
                         (plan_key, "active"))
        got = self.assert_ok_json(c.request("GET", f"/v1/admin/users/{ids[2]}", token=token))
        self.assertEqual((got["plan"], got["subscription_status"]), (plan_key, "active"))
        # finance reads the list too.
        finance = self.login(c, self.finance_email)["access_token"]
        self.assertEqual(len(self.list_ids(c, finance, f"email={tag}")[0]), 5)

    # --- suspension and role changes ------------------------------------------

    def test_20_suspension_refuses_every_token_on_every_pool(self):
        c = self.client()
        admin_token = self.admin(c)
        admin_id = jwt_claims(admin_token)["sub"]
        email = self.unique_email("suspended")
        user_id = self.staff(email, "finance")
        login = self.login(c, email)["access_token"]
        key, key_token = self.key_token(c, login)
        for t in (login, key_token):
            for resp in self.pool_reads(c, t):
                self.assert_ok_json(resp)
        got = self.assert_ok_json(self.patch(c, admin_token, user_id, {"status": "suspended"}))
        self.assertEqual(got["status"], "suspended")
        self.assertEqual((got["sessions"], got["api_keys"]), (0, 0))
        self.assert_refused_within_deadline(c, login)
        self.assert_refused_within_deadline(c, key_token)
        self.assert_error(c.request("POST", "/v1/auth/login",
                                    {"email": email, "password": GOOD_PASSWORD}),
                          403, "account_suspended")
        self.assert_error(c.request("POST", "/v1/auth/token",
                                    {"grant_type": "api_key", "api_key": key}),
                          401, "invalid_credentials")
        # Reactivated: signs in again; the revoked key stays dead.
        got = self.assert_ok_json(self.patch(c, admin_token, user_id, {"status": "active"}))
        self.assertEqual(got["status"], "active")
        again = self.login(c, email)["access_token"]
        for resp in self.pool_reads(c, again):
            self.assert_ok_json(resp)
        self.assert_error(c.request("POST", "/v1/auth/token",
                                    {"grant_type": "api_key", "api_key": key}),
                          401, "invalid_credentials")
        # Audited with the acting admin, the old and the new value.
        [suspended] = self.audit(user_id, "user.suspended")
        self.assertEqual(suspended["actor_id"], admin_id)
        self.assertEqual(suspended["details"], {"status": "suspended", "old_status": "active"})
        [activated] = self.audit(user_id, "user.activated")
        self.assertEqual(activated["actor_id"], admin_id)
        self.assertEqual(activated["details"], {"status": "active", "old_status": "suspended"})

    def test_21_a_role_change_ends_tokens(self):
        c = self.client()
        admin_token = self.admin(c)
        email = self.unique_email("demoted")
        user_id = self.staff(email, "finance")
        login = self.login(c, email)["access_token"]
        key, key_token = self.key_token(c, login)
        got = self.assert_ok_json(self.patch(c, admin_token, user_id, {"role": "client"}))
        self.assertEqual(got["role"], "client")
        self.assert_refused_within_deadline(c, login)
        self.assert_refused_within_deadline(c, key_token)
        fresh = self.login(c, email)
        self.assertEqual(jwt_claims(fresh["access_token"])["role"], "client")
        # The key stays and trades for the new role.
        got = self.assert_ok_json(c.request("POST", "/v1/auth/token",
                                            {"grant_type": "api_key", "api_key": key}))
        self.assertEqual(jwt_claims(got["access_token"])["role"], "client")
        [entry] = self.audit(user_id, "user.role_changed")
        self.assertEqual(entry["actor_id"], jwt_claims(admin_token)["sub"])
        self.assertEqual(entry["details"], {"role": "client", "old_role": "finance"})
        # The same value again changes nothing: no entry, no session ended.
        self.assert_ok_json(self.patch(c, admin_token, user_id, {"role": "client"}))
        self.assertEqual(len(self.audit(user_id, "user.role_changed")), 1)
        self.assert_ok_json(c.request("GET", "/v1/me", token=fresh["access_token"]))

    def test_22_stoactl_changes_through_the_same_call(self):
        c = self.client()
        email = self.unique_email("ctl")
        user_id = self.staff(email, "client")
        login = self.login(c, email)["access_token"]
        proc = bl.subprocess.run(
            [bl.os.path.join(bl.BIN_DIR, "stoactl"), "--config", self.stack.conf_path(),
             "user", "set-role", "--email", email, "--role", "finance"],
            capture_output=True, text=True, timeout=60, env=bl.stoactl_env(),
            stdin=bl.subprocess.DEVNULL)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        [entry] = self.audit(user_id, "user.role_changed")
        self.assertEqual((entry["actor"], entry["details"]),
                         ("stoactl", {"role": "finance", "old_role": "client"}))
        self.assert_error(c.request("GET", "/v1/me", token=login), 401, "unauthenticated")

    # --- bad input --------------------------------------------------------------

    def test_40_bad_input_is_refused_by_name(self):
        c = self.client()
        admin_token = self.admin(c)
        finance = self.login(c, self.finance_email)["access_token"]
        email = self.unique_email("badin")
        user_id = self.register(c, email)
        client_token = self.login(c, email)["access_token"]

        def fields(resp, name, reason=None):
            details = self.assert_error(resp, 400, "invalid_request")
            self.assertIn(name, details["fields"], repr(resp))
            if reason:
                self.assertEqual(details["fields"][name], reason, repr(resp))

        for bad in ("not-a-uuid", RANDOM_ID[:-1] + "z", "x" * 300):
            self.assert_error(c.request("GET", f"/v1/admin/users/{bad}", token=admin_token),
                              404, "not_found")
            self.assert_error(self.patch(c, admin_token, bad, {"role": "client"}),
                              404, "not_found")
        self.assert_error(c.request("GET", f"/v1/admin/users/{RANDOM_ID}", token=admin_token),
                          404, "not_found")
        self.assert_error(self.patch(c, admin_token, RANDOM_ID, {"status": "active"}),
                          404, "not_found")
        get = lambda q: c.request("GET", "/v1/admin/users?" + q, token=admin_token)  # noqa: E731
        for key in ("created_from", "created_to"):
            for value in ("2026-02-30", "2026-13-01", "2025-02-29", "2026-01-01T24:00:00Z",
                          "yesterday"):
                fields(get(f"{key}={value}"), key, "invalid_time")
        fields(get("emial=a"), "emial", "unknown_field")
        fields(get("limit=1000"), "limit")
        fields(get("limit=0"), "limit")
        fields(get("cursor=junk"), "cursor")
        fields(get("role=root"), "role", "unknown")
        fields(get("status=gone"), "status", "unknown")
        fields(get("email=" + "x" * 300), "email")
        for token, status in ((client_token, 403), (None, 401)):
            resp = c.request("GET", "/v1/admin/users", token=token)
            self.assertEqual(resp.status, status, repr(resp))
            resp = c.request("GET", f"/v1/admin/users/{user_id}", token=token)
            self.assertEqual(resp.status, status, repr(resp))
            resp = self.patch(c, token, user_id, {"role": "admin"})
            self.assertEqual(resp.status, status, repr(resp))
        self.assert_error(self.patch(c, finance, user_id, {"status": "suspended"}),
                          403, "forbidden")
        fields(self.patch(c, admin_token, user_id, {"role": "root"}), "role", "unknown")
        fields(self.patch(c, admin_token, user_id, {"status": "deleted"}), "status", "unknown")
        fields(self.patch(c, admin_token, user_id, {"status": "gone"}), "status", "unknown")
        fields(self.patch(c, admin_token, user_id, {"nickname": "x"}), "nickname",
               "unknown_field")
        for value in (5, True, [], {}):
            fields(self.patch(c, admin_token, user_id, {"role": value}), "role")
            fields(self.patch(c, admin_token, user_id, {"status": value}), "status")
        # Nothing of it changed the account.
        got = self.assert_ok_json(c.request("GET", f"/v1/admin/users/{user_id}",
                                            token=admin_token))
        self.assertEqual((got["role"], got["status"]), ("client", "active"))
        self.assert_ok_json(c.request("GET", "/v1/me", token=client_token))

    # --- the last active admin (runs last: it leaves the admins it made) -------

    def test_90_the_last_active_admin_stays_one(self):
        c = self.client()
        token = self.admin(c)
        me = jwt_claims(token)["sub"]
        # The stack's own admin steps down first: ours is then the last.
        others = query_json(self.stack, """SELECT coalesce(json_agg(id), '[]'::json)
            FROM auth.users WHERE role = 'admin' AND status = 'active' AND id <> :'me'""", me=me)
        for other in others:
            self.assert_ok_json(self.patch(c, token, other, {"role": "client"}))
        admins = count_rows(self.stack, "SELECT 1 FROM auth.users WHERE role = 'admin' "
                                        "AND status = 'active'")
        self.assertEqual(admins, 1, "the class's admin is the only one")
        self.assert_error(self.patch(c, token, me, {"role": "finance"}), 409, "last_admin")
        self.assert_error(self.patch(c, token, me, {"status": "suspended"}), 409, "last_admin")
        self.assert_ok_json(c.request("GET", "/v1/me", token=token))
        self.assertEqual(self.audit(me, "user.role_changed"), [])

        # Two admins demoting each other at once leave one admin.
        for _ in range(3):
            other_email = self.unique_email("admin2")
            other = self.staff(other_email, "admin")
            tokens = {me: self.admin(c), other: self.login(c, other_email)["access_token"]}
            barrier = threading.Barrier(2)
            answers = {}

            def demote(actor, target):
                client = self.client()
                barrier.wait()
                answers[actor] = self.patch(client, tokens[actor], target, {"role": "client"})

            threads = [threading.Thread(target=demote, args=(me, other)),
                       threading.Thread(target=demote, args=(other, me))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            statuses = sorted(r.status for r in answers.values())
            self.assertEqual(len(statuses), 2)
            self.assertIn(200, statuses, [repr(r) for r in answers.values()])
            self.assertNotEqual(statuses, [200, 200], [repr(r) for r in answers.values()])
            for r in answers.values():
                if r.status == 409:
                    self.assert_error(r, 409, "last_admin")
            left = query_json(self.stack, """SELECT coalesce(json_agg(id), '[]'::json)
                FROM auth.users WHERE role = 'admin' AND status = 'active'""")
            self.assertEqual(len(left), 1, left)
            # The survivor makes the class's admin admin again for the next round.
            if left[0] != me:
                survivor = tokens[left[0]]
                self.assert_ok_json(self.patch(c, survivor, me, {"role": "admin"}))
                self.assert_ok_json(self.patch(c, self.admin(c), left[0], {"role": "client"}))


if __name__ == "__main__":
    unittest.main()
