"""End-to-end tests of the account routes behind the gateway (SPEC §4), through
nginx over TLS: the profile, its export, sessions, logout, password change,
erasure, and revocation while Redis is down. The stack and helpers are
test_auth.py's; every test uses fresh accounts and its own client address.

Run from the repository root:
    python3 -m unittest discover -s tests/integration -p 'test_auth_account.py' -v
"""
import time
import unittest
import uuid

from authlib import RFC3339_UTC_RE, jwt_claims
from test_auth import GOOD_PASSWORD, NEW_PASSWORD, SESSION_KEYS, AuthStackTestCase


class AuthAccountTest(AuthStackTestCase):

    # --- 6. behind the gateway ----------------------------------------------

    def test_60_me_shows_the_profile(self):
        c = self.client()
        email, doc = self.new_account(c, "me")
        me = self.assert_ok_json(self.me(c, doc["access_token"]))
        self.assert_user(me, email, "Test User")
        self.assertEqual(me, doc["user"])
        self.assertIs(me["email_verified"], False)
        self.assert_error(c.request("GET", "/v1/me"), 401, "unauthenticated")
        self.assert_error(self.me(c, "not-a-token"), 401, "unauthenticated")
        self.assert_error(self.me(c, doc["refresh_token"]), 401, "unauthenticated")
        # A token with a flipped signature byte is not accepted.
        access = doc["access_token"]
        tampered = access[:-6] + ("A" if access[-6] != "A" else "B") + access[-5:]
        self.assert_error(self.me(c, tampered), 401, "unauthenticated")

    def test_61_me_patch_updates_name_and_known_preferences(self):
        c = self.client()
        email, doc = self.new_account(c, "patch")
        token = doc["access_token"]
        self.assert_ok_json(self.me(c, token))  # cached from here on

        resp = c.request("PATCH", "/v1/me", {"name": "Renamed",
                                             "notification_prefs": {"marketing": False,
                                                                    "product_updates": True}},
                         token=token)
        me = self.assert_ok_json(resp)
        self.assertEqual(me["name"], "Renamed")
        self.assertEqual(me["notification_prefs"], {"marketing": False, "product_updates": True})
        # Preferences merge; the cached profile follows the change.
        me = self.assert_ok_json(c.request("PATCH", "/v1/me",
                                           {"notification_prefs": {"billing": True}},
                                           token=token))
        expected = {"marketing": False, "product_updates": True, "billing": True}
        self.assertEqual(me["notification_prefs"], expected)
        self.assertEqual(me["name"], "Renamed")
        self.assertEqual(self.assert_ok_json(self.me(c, token)), me)

        self.assert_field_cases(c, "PATCH", "/v1/me", [
            ("unknown preference", {"notification_prefs": {"colour": True}},
             {"notification_prefs.colour": "unknown_field"}),
            ("non-boolean preference", {"notification_prefs": {"marketing": "yes"}},
             {"notification_prefs.marketing": "must_be_boolean"}),
            ("null preference", {"notification_prefs": {"billing": None}},
             {"notification_prefs.billing": "must_be_boolean"}),
            ("preferences not an object", {"notification_prefs": ["marketing"]},
             {"notification_prefs": "must_be_object"}),
            ("name number", {"name": 7}, {"name": "must_be_string"}),
            ("blank name", {"name": "  "}, {"name": "invalid"}),
            ("name over 200", {"name": "n" * 201}, {"name": "too_long"}),
            ("email is not editable", {"email": "other@example.com"}, {"email": "unknown_field"}),
            ("role is not editable", {"role": "admin"}, {"role": "unknown_field"}),
        ], token=token)
        self.assert_body_contract(c, "PATCH", "/v1/me", token=token)
        self.assertEqual(self.assert_ok_json(self.me(c, token)), me, "a refused PATCH changed it")
        self.assertEqual(self.user_row(me["id"])["role"], "client")

    def test_62_me_export_holds_user_sessions_and_audit_log(self):
        c = self.client()
        email, doc = self.new_account(c, "export")
        resp = c.request("GET", "/v1/me/export", token=doc["access_token"])
        export = self.assert_ok_json(resp)
        self.assertLessEqual({"user", "sessions", "audit_log"}, set(export), export)
        self.assertEqual(export["user"]["id"], doc["user"]["id"])
        self.assertEqual(export["user"]["email"], email)
        sid = jwt_claims(doc["access_token"])["sid"]
        self.assertIn(sid, [s["id"] for s in export["sessions"]])
        actions = [a["action"] for a in export["audit_log"]]
        self.assertIn("user.registered", actions)
        self.assertIn("login.succeeded", actions)
        self.assertNotIn("password_hash", resp.body.decode())
        self.assertNotIn("$argon2", resp.body.decode())

    def test_63_sessions_list_and_revoke_one(self):
        c = self.client(user_agent="stoa-it/first")
        email, first = self.new_account(c, "sessions")
        other_client = self.client(user_agent="stoa-it/second")
        second = self.login(other_client, email)
        third = self.login(other_client, email)
        sids = [jwt_claims(d["access_token"])["sid"] for d in (first, second, third)]

        listing = self.assert_ok_json(c.request("GET", "/v1/auth/sessions",
                                                token=first["access_token"]))
        rows = {s["id"]: s for s in listing["data"]}
        self.assertEqual(set(rows), set(sids), listing)
        for s in listing["data"]:
            self.assertEqual(set(s), SESSION_KEYS, s)
            self.assertRegex(s["created_at"], RFC3339_UTC_RE)
            self.assertRegex(s["last_used_at"], RFC3339_UTC_RE)
        self.assertEqual([s["current"] for s in listing["data"] if s["current"]], [True])
        self.assertIs(rows[sids[0]]["current"], True)
        self.assertEqual(rows[sids[0]]["ip"], c.source_address)
        self.assertEqual(rows[sids[0]]["user_agent"], "stoa-it/first")
        self.assertEqual(rows[sids[1]]["ip"], other_client.source_address)
        self.assertEqual(rows[sids[1]]["user_agent"], "stoa-it/second")

        self.assert_ok_json(self.me(other_client, second["access_token"]))
        resp = c.request("DELETE", f"/v1/auth/sessions/{sids[1]}", token=first["access_token"])
        self.assertEqual(resp.status, 204, repr(resp))
        self.assert_refused_within(other_client, second["access_token"])
        self.assert_error(self.refresh(other_client, second["refresh_token"]),
                          401, "invalid_token")
        self.assert_ok_json(self.me(c, first["access_token"]))
        self.assert_ok_json(self.me(other_client, third["access_token"]))

        # Nobody revokes what is not theirs, and odd ids are just unknown.
        _, stranger = self.new_account(self.client(), "stranger")
        stranger_sid = jwt_claims(stranger["access_token"])["sid"]
        for label, sid in (("another user's session", stranger_sid),
                           ("unknown id", str(uuid.uuid4())),
                           ("already revoked", sids[1]), ("not a uuid", "12345")):
            with self.subTest(label):
                self.assert_error(c.request("DELETE", f"/v1/auth/sessions/{sid}",
                                            token=first["access_token"]), 404, "not_found")
        self.assert_ok_json(self.me(c, stranger["access_token"]))

        # DELETE /v1/auth/sessions ends all but the current one.
        resp = c.request("DELETE", "/v1/auth/sessions", token=first["access_token"])
        self.assertEqual(resp.status, 204, repr(resp))
        self.assert_refused_within(other_client, third["access_token"])
        self.assert_ok_json(self.me(c, first["access_token"]))
        listing = self.assert_ok_json(c.request("GET", "/v1/auth/sessions",
                                                token=first["access_token"]))
        self.assertEqual([s["id"] for s in listing["data"]], [sids[0]])

    def test_64_logout_ends_the_session(self):
        c = self.client()
        email, doc = self.new_account(c, "logout")
        other = self.login(c, email)
        self.assert_ok_json(self.me(c, doc["access_token"]))
        resp = c.request("POST", "/v1/auth/logout", token=doc["access_token"])
        self.assertEqual(resp.status, 204, repr(resp))
        self.assert_refused_within(c, doc["access_token"])
        self.assert_error(self.refresh(c, doc["refresh_token"]), 401, "invalid_token")
        self.assert_error(c.request("POST", "/v1/auth/logout", token=doc["access_token"]),
                          401, "unauthenticated")
        self.assert_error(c.request("POST", "/v1/auth/logout"), 401, "unauthenticated")
        # Only that session.
        self.assert_ok_json(self.me(c, other["access_token"]))

    def test_65_password_change_keeps_only_the_current_session(self):
        c = self.client()
        email, current = self.new_account(c, "change")
        other = self.login(c, email)
        token = current["access_token"]
        path = "/v1/auth/password/change"
        self.assert_fields(c.request("POST", path, {"current_password": "Not-the-password-1",
                                                    "new_password": NEW_PASSWORD}, token=token),
                           {"current_password": "incorrect"})
        self.assert_fields(c.request("POST", path, {"current_password": GOOD_PASSWORD,
                                                    "new_password": "short"}, token=token),
                           {"new_password": "too_short"})
        self.assert_field_cases(c, "POST", path, [
            ("empty object", {}, {"current_password": "required", "new_password": "required"}),
            ("number", {"current_password": GOOD_PASSWORD, "new_password": 123456789012},
             {"new_password": "must_be_string"}),
            ("unknown field", {"current_password": GOOD_PASSWORD, "new_password": NEW_PASSWORD,
                               "logout_others": False}, {"logout_others": "unknown_field"}),
            ("over 4096", {"current_password": "p" * 4097, "new_password": NEW_PASSWORD},
             {"current_password": "too_long"}),
        ], token=token)
        self.assert_body_contract(c, "POST", path, token=token)
        self.assert_error(c.request("POST", path, {"current_password": GOOD_PASSWORD,
                                                   "new_password": NEW_PASSWORD}),
                          401, "unauthenticated")
        self.login(c, email)  # nothing changed so far

        resp = c.request("POST", path, {"current_password": GOOD_PASSWORD,
                                        "new_password": NEW_PASSWORD}, token=token)
        self.assertEqual(resp.status, 204, repr(resp))
        self.assert_refused_within(c, other["access_token"])
        self.assert_error(self.refresh(c, other["refresh_token"]), 401, "invalid_token")
        self.assert_ok_json(self.me(c, token))
        self.assert_ok_json(self.refresh(c, current["refresh_token"]))
        self.assert_error(self.login_response(c, email, GOOD_PASSWORD), 401,
                          "invalid_credentials")
        self.login(c, email, NEW_PASSWORD)
        self.assertIn("password.changed", self.audit_actions(current["user"]["id"]))

    def test_66_delete_me_erases_the_account(self):
        c = self.client()
        email, doc = self.new_account(c, "erase")
        user_id = doc["user"]["id"]
        token = doc["access_token"]
        self.assert_fields(c.request("DELETE", "/v1/me", {"password": "Not-the-password-1"},
                                     token=token), {"password": "incorrect"})
        self.assert_field_cases(c, "DELETE", "/v1/me", [
            ("empty object", {}, {"password": "required"}),
            ("number", {"password": 1}, {"password": "must_be_string"}),
            ("unknown field", {"password": GOOD_PASSWORD, "confirm": True},
             {"confirm": "unknown_field"}),
        ], token=token)
        self.assert_body_contract(c, "DELETE", "/v1/me", token=token)
        self.assert_ok_json(self.me(c, token))  # still there

        resp = c.request("DELETE", "/v1/me", {"password": GOOD_PASSWORD}, token=token)
        self.assertEqual(resp.status, 204, repr(resp))
        self.assert_refused_within(c, token)
        self.assert_error(self.refresh(c, doc["refresh_token"]), 401, "invalid_token")
        self.assert_error(self.login_response(c, email), 401, "invalid_credentials")
        row = self.user_row(user_id)
        self.assertNotEqual(row["email"], email)
        self.assertNotEqual(row["name"], "Test User")
        self.assertIsNone(row["password_hash"])
        # The address is free again, for a new account.
        again = self.register(c, email)
        self.assertNotEqual(again["id"], user_id)
        self.login(c, email)

    # --- 7. revocation while Redis is down -----------------------------------

    def test_70_revocation_holds_while_redis_is_down(self):
        c = self.client()
        email, keeper = self.new_account(c, "redis-down")
        victim_client = self.client()
        victim = self.login(victim_client, email)
        logged_out = self.login(victim_client, email)
        for d in (keeper, victim, logged_out):
            self.assert_ok_json(self.me(c, d["access_token"]))
        victim_sid = jwt_claims(victim["access_token"])["sid"]
        self.stop_redis()
        try:
            resp = c.request("DELETE", f"/v1/auth/sessions/{victim_sid}",
                             token=keeper["access_token"])
            self.assertEqual(resp.status, 204, repr(resp))
            resp = victim_client.request("POST", "/v1/auth/logout",
                                         token=logged_out["access_token"])
            self.assertEqual(resp.status, 204, repr(resp))
            self.assert_refused_within(victim_client, victim["access_token"])
            self.assert_refused_within(victim_client, logged_out["access_token"])
            self.assert_ok_json(self.me(c, keeper["access_token"]))
        finally:
            self.start_redis()

    def test_71_revocations_survive_a_redis_restart(self):
        # Redis holds no durable fact (SPEC §1): a session revoked before or
        # during an outage stays refused after Redis comes back empty.
        c = self.client()
        email, keeper = self.new_account(c, "redis-back")
        before = self.login(c, email)
        during = self.login(c, email)
        resp = c.request("POST", "/v1/auth/logout", token=before["access_token"])
        self.assertEqual(resp.status, 204, repr(resp))
        self.assert_refused_within(c, before["access_token"])
        self.stop_redis()
        try:
            resp = c.request("POST", "/v1/auth/logout", token=during["access_token"])
            self.assertEqual(resp.status, 204, repr(resp))
            self.assert_refused_within(c, during["access_token"])
        finally:
            self.start_redis()
        time.sleep(1.1)  # past any per-process cache of the checks above
        for label, d in (("revoked before the outage", before),
                         ("revoked during the outage", during)):
            with self.subTest(label):
                self.assert_error(self.me(c, d["access_token"]), 401, "unauthenticated")
        self.assert_ok_json(self.me(c, keeper["access_token"]))


if __name__ == "__main__":
    unittest.main()
