"""What dies with a credential: API-key tokens never manage credentials, and
the tokens of a key die with its session, its key, its user's role, status or
account, on every pool within the revocation deadline.

Each case here was an attack that worked against the stack before: a key
token minting a wider key, key tokens outliving a role change, a key's own
expiry, a suspension or an erasure.
"""

import ctypes
import ctypes.util
import os
import subprocess
import threading
import time
import unittest
import uuid
from datetime import datetime, timedelta, timezone

from authlib import (REVOCATION_DEADLINE_S, SourceClient, SourceClientTestCase,
                     assert_refused_within, count_rows, jwt_claims, mailed_tokens, query_json)
from billinglib import stoactl_env
from harness import BIN_DIR, wait_until

GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"


def slow_phc(password, iterations=40, memory_kib=65536):
    """An Argon2id PHC string of password that takes the pool ~1-2 s to
    verify (libargon2 itself, through ctypes): planted as a user's hash, it
    holds a request in its check long enough to change the account under
    it."""
    lib = ctypes.CDLL(ctypes.util.find_library("argon2") or "libargon2.so.1")
    encode = lib.argon2id_hash_encoded
    encode.argtypes = [ctypes.c_uint32] * 3 + [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
        ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    out = ctypes.create_string_buffer(256)
    raw = password.encode()
    salt = os.urandom(16)
    rc = encode(iterations, memory_kib, 1, raw, len(raw), salt, len(salt), 32, out, len(out))
    if rc != 0:
        raise AssertionError(f"argon2id_hash_encoded failed: {rc}")
    return out.value.decode()


class CredentialsTest(SourceClientTestCase):
    stack_env = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000"}

    # --- helpers -----------------------------------------------------------

    def new_account(self, c, tag):
        email = f"{tag}.{uuid.uuid4().hex[:12]}@example.com"
        user = self.assert_ok_json(c.request(
            "POST", "/v1/auth/register",
            {"email": email, "password": GOOD_PASSWORD, "name": "Key Owner"}), 201)["user"]
        tokens = self.assert_ok_json(c.request(
            "POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD}))
        return email, user["id"], tokens["access_token"]

    def create_key(self, c, token, **body):
        body.setdefault("name", "bot")
        return c.request("POST", "/v1/auth/api-keys", body, token=token)

    def key_token(self, c, key):
        return self.assert_ok_json(c.request(
            "POST", "/v1/auth/token", {"grant_type": "api_key", "api_key": key}))

    def exchange_status(self, c, key):
        return c.request("POST", "/v1/auth/token",
                         {"grant_type": "api_key", "api_key": key})

    def stoactl(self, *args):
        done = subprocess.run([os.path.join(BIN_DIR, "stoactl"), "--config",
                               self.stack.conf_path(), *args],
                              capture_output=True, text=True, timeout=60,
                              env=stoactl_env(), stdin=subprocess.DEVNULL)
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout

    # A route of the auth pool and one of the billing pool: a revocation
    # must hold on every pool, each with its own per-process cache.
    def pool_reads(self, c, token):
        return [c.request("GET", "/v1/me", token=token),
                c.request("GET", "/v1/billing/entitlements", token=token)]

    def assert_live(self, c, token):
        for resp in self.pool_reads(c, token):
            self.assert_ok_json(resp)

    def assert_refused_within_deadline(self, c, token):
        assert_refused_within(self, lambda: self.pool_reads(c, token))

    def keys_live(self, user_id):
        return count_rows(self.stack, """
            SELECT 1 FROM auth.api_keys WHERE user_id = :'id'::uuid
            AND revoked_at IS NULL""", id=user_id)

    # --- a key's token manages no credential --------------------------------

    def test_10_key_tokens_cannot_manage_credentials(self):
        c = self.client()
        email, user_id, login = self.new_account(c, "nocred")
        wide = self.assert_ok_json(self.create_key(c, login, scopes=["*"]), 201)
        narrow = self.assert_ok_json(self.create_key(c, login, scopes=["auth:write"]), 201)
        bare = self.assert_ok_json(self.create_key(c, login), 201)
        sessions = self.assert_ok_json(c.request("GET", "/v1/auth/sessions", token=login))
        login_sid = sessions["data"][0]["id"]
        keys_before = self.keys_live(user_id)
        calls = [
            ("POST", "/v1/auth/api-keys", {"name": "child", "scopes": ["*"]}),
            ("POST", "/v1/auth/api-keys", {"name": "child"}),
            ("DELETE", f"/v1/auth/api-keys/{wide['id']}", None),
            ("POST", "/v1/auth/password/change",
             {"current_password": GOOD_PASSWORD, "new_password": "An0ther-Long-Secret!x"}),
            ("POST", "/v1/auth/mfa/totp/enroll", {"password": GOOD_PASSWORD}),
            ("POST", "/v1/auth/mfa/totp/confirm", {"code": "123456", "password": GOOD_PASSWORD}),
            ("DELETE", "/v1/auth/mfa/totp", {"password": GOOD_PASSWORD}),
            ("DELETE", "/v1/auth/sessions", None),
            ("DELETE", f"/v1/auth/sessions/{login_sid}", None),
            ("DELETE", "/v1/me", {"password": GOOD_PASSWORD}),
        ]
        for label, key in (("scopes *", wide), ("no scopes", bare)):
            token = self.key_token(c, key["key"])["access_token"]
            self.assertEqual(jwt_claims(token)["scope"], "*")
            for method, path, body in calls:
                with self.subTest(key=label, route=f"{method} {path}"):
                    self.assert_error(c.request(method, path, body, token=token),
                                      403, "forbidden")
            # What a key may do, it still does.
            self.assert_ok_json(c.request("GET", "/v1/me", token=token))
            self.assert_ok_json(c.request("GET", "/v1/auth/api-keys", token=token))
        # A key scoped to auth:write is refused for the same reason.
        token = self.key_token(c, narrow["key"])["access_token"]
        self.assert_error(self.create_key(c, token, scopes=["*"]), 403, "forbidden")
        self.assert_error(self.create_key(c, token), 403, "forbidden")

        # Nothing was written or ended by any of it.
        self.assertEqual(self.keys_live(user_id), keys_before)
        self.assert_ok_json(c.request("GET", "/v1/me", token=login))
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.mfa_totp WHERE user_id = :'id'::uuid""", id=user_id), 0)
        self.assert_ok_json(c.request("POST", "/v1/auth/login",
                                      {"email": email, "password": GOOD_PASSWORD}))
        # The login that made the keys manages them.
        self.assertEqual(c.request("DELETE", f"/v1/auth/api-keys/{wide['id']}",
                                   token=login).status, 204)

    def test_11_empty_scopes_are_refused_not_read_as_everything(self):
        c = self.client()
        _, _, login = self.new_account(c, "emptyscopes")
        details = self.assert_error(self.create_key(c, login, scopes=[]), 400,
                                    "invalid_request")
        self.assertEqual(details["fields"], {"scopes": "invalid"})
        bare = self.assert_ok_json(self.create_key(c, login), 201)
        self.assertEqual(bare["scopes"], ["*"])
        listed = self.assert_ok_json(c.request("GET", "/v1/auth/api-keys", token=login))
        self.assertEqual([k["scopes"] for k in listed["data"] if k["id"] == bare["id"]],
                         [["*"]])

    def test_12_key_sessions_are_not_login_sessions(self):
        c = self.client()
        _, _, login = self.new_account(c, "keysess")
        key = self.assert_ok_json(self.create_key(c, login), 201)
        token = self.key_token(c, key["key"])["access_token"]
        listed = self.assert_ok_json(c.request("GET", "/v1/auth/sessions", token=login))
        self.assertEqual(len(listed["data"]), 1, listed)
        self.assertNotEqual(listed["data"][0]["id"], jwt_claims(token)["sid"])
        # A key's token has no login to end.
        self.assert_error(c.request("POST", "/v1/auth/logout", token=token), 400,
                          "invalid_request")

    def test_13_another_session_cannot_replay_a_key_secret(self):
        """A stored answer holding a key's secret opens only for the session
        that made it: another session of the same user, sending the same
        Idempotency-Key and body, gets a run of its own."""
        c = self.client()
        email, _, first = self.new_account(c, "idemsess")
        second = self.assert_ok_json(c.request(
            "POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD}))["access_token"]
        headers = {"Idempotency-Key": "key-" + uuid.uuid4().hex}
        body = {"name": "bot"}
        made = self.assert_ok_json(c.request("POST", "/v1/auth/api-keys", body,
                                             headers=headers, token=first), 201)
        again = c.request("POST", "/v1/auth/api-keys", body, headers=headers, token=first)
        self.assertEqual(self.assert_ok_json(again, 201)["key"], made["key"])
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        other = c.request("POST", "/v1/auth/api-keys", body, headers=headers, token=second)
        self.assertNotEqual(self.assert_ok_json(other, 201)["key"], made["key"])
        self.assertIsNone(other.header("Idempotent-Replayed"))

    # --- what ends a key's tokens --------------------------------------------

    def test_20_revoking_a_key_ends_its_tokens_on_every_pool(self):
        c = self.client()
        _, _, login = self.new_account(c, "revokekey")
        key = self.assert_ok_json(self.create_key(c, login), 201)
        first = self.key_token(c, key["key"])["access_token"]
        second = self.key_token(c, key["key"])["access_token"]
        self.assertNotEqual(jwt_claims(first)["sid"], jwt_claims(second)["sid"])
        self.assert_live(c, first)
        self.assert_live(c, second)
        self.assertEqual(c.request("DELETE", f"/v1/auth/api-keys/{key['id']}",
                                   token=login).status, 204)
        self.assert_refused_within_deadline(c, first)
        self.assert_refused_within_deadline(c, second)
        self.assert_error(self.exchange_status(c, key["key"]), 401, "invalid_credentials")

    def test_21_a_role_change_ends_key_tokens(self):
        c = self.client()
        email, _, login = self.new_account(c, "rolechange")
        key = self.assert_ok_json(self.create_key(c, login), 201)
        token = self.key_token(c, key["key"])["access_token"]
        self.assertEqual(jwt_claims(token)["role"], "client")
        self.assert_live(c, token)
        self.stoactl("user", "set-role", "--email", email, "--role", "finance")
        self.assert_refused_within_deadline(c, token)
        self.assert_refused_within_deadline(c, login)
        # The key itself stays, and trades for the new role.
        fresh = self.key_token(c, key["key"])["access_token"]
        self.assertEqual(jwt_claims(fresh)["role"], "finance")
        self.assert_live(c, fresh)

    def test_22_a_key_expiring_in_seconds_stops_then(self):
        c = self.client()
        _, _, login = self.new_account(c, "expiring")
        ends = (datetime.now(timezone.utc) + timedelta(seconds=4)).replace(microsecond=0)
        stamp = ends.strftime("%Y-%m-%dT%H:%M:%SZ")
        key = self.assert_ok_json(self.create_key(c, login, expires_at=stamp), 201)
        got = self.key_token(c, key["key"])
        token = got["access_token"]
        self.assertLessEqual(jwt_claims(token)["exp"], int(ends.timestamp()))
        self.assertLessEqual(got["expires_in"], 5)
        self.assert_live(c, token)
        # Past the key's end (the gateway's leeway does not stretch it).
        time.sleep(max(0.0, ends.timestamp() - time.time()) + 0.1)
        self.assert_refused_within_deadline(c, token)
        self.assert_error(self.exchange_status(c, key["key"]), 401, "invalid_credentials")

    def test_23_suspension_revokes_every_key(self):
        c = self.client()
        email, user_id, login = self.new_account(c, "suspend")
        key = self.assert_ok_json(self.create_key(c, login), 201)
        token = self.key_token(c, key["key"])["access_token"]
        self.assert_live(c, token)
        self.stoactl("user", "suspend", "--email", email)
        self.assert_refused_within_deadline(c, token)
        self.assert_refused_within_deadline(c, login)
        self.assertEqual(self.keys_live(user_id), 0)
        self.assert_error(self.exchange_status(c, key["key"]), 401, "invalid_credentials")
        self.assert_error(c.request("POST", "/v1/auth/login",
                                    {"email": email, "password": GOOD_PASSWORD}),
                          403, "account_suspended")
        # Reactivated: signs in again, the old key stays dead.
        self.stoactl("user", "activate", "--email", email)
        again = self.assert_ok_json(c.request(
            "POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD}))
        self.assert_live(c, again["access_token"])
        self.assert_error(self.exchange_status(c, key["key"]), 401, "invalid_credentials")
        actions = query_json(self.stack, """
            SELECT coalesce(json_agg(action ORDER BY id), '[]'::json)
            FROM admin.audit_log WHERE target_id = :'id'::uuid""", id=user_id)
        self.assertIn("user.suspended", actions)
        self.assertIn("user.activated", actions)

    def test_24_erasure_revokes_every_key(self):
        c = self.client()
        _, user_id, login = self.new_account(c, "erase")
        key = self.assert_ok_json(self.create_key(c, login), 201)
        token = self.key_token(c, key["key"])["access_token"]
        self.assert_live(c, token)
        resp = c.request("DELETE", "/v1/me", {"password": GOOD_PASSWORD}, token=login)
        self.assertEqual(resp.status, 204, repr(resp))
        self.assert_refused_within_deadline(c, token)
        self.assertEqual(self.keys_live(user_id), 0)
        self.assert_error(self.exchange_status(c, key["key"]), 401, "invalid_credentials")

    def test_25_a_password_reset_revokes_every_key(self):
        """Whoever registered an address first must not keep a way in once
        the mailbox's owner resets the password."""
        c = self.client()
        email, user_id, login = self.new_account(c, "reset")
        key = self.assert_ok_json(self.create_key(c, login), 201)
        token = self.key_token(c, key["key"])["access_token"]
        self.assert_live(c, token)
        self.assertEqual(c.request("POST", "/v1/auth/password/forgot",
                                   {"email": email}).status, 202)
        reset = mailed_tokens(self.stack, email, "reset_password")
        self.assertEqual(len(reset), 1)
        resp = c.request("POST", "/v1/auth/password/reset",
                         {"token": reset[0], "password": "Another-Long-Secret-42!"})
        self.assertEqual(resp.status, 204, repr(resp))
        self.assert_refused_within_deadline(c, token)
        self.assert_refused_within_deadline(c, login)
        self.assertEqual(self.keys_live(user_id), 0)
        self.assert_error(self.exchange_status(c, key["key"]), 401, "invalid_credentials")

    def test_26_a_password_change_ends_key_tokens_but_keeps_the_keys(self):
        c = self.client()
        _, user_id, login = self.new_account(c, "change")
        key = self.assert_ok_json(self.create_key(c, login), 201)
        token = self.key_token(c, key["key"])["access_token"]
        resp = c.request("POST", "/v1/auth/password/change",
                         {"current_password": GOOD_PASSWORD,
                          "new_password": "Another-Long-Secret-42!"}, token=login)
        self.assertEqual(resp.status, 204, repr(resp))
        # Other sessions end, the key's exchanges among them; the changer
        # knew the password, so the keys themselves stay.
        self.assert_refused_within_deadline(c, token)
        self.assert_live(c, login)
        self.assertEqual(self.keys_live(user_id), 1)
        self.assert_live(c, self.key_token(c, key["key"])["access_token"])

    # --- races: a session started while its credential dies -------------------

    def hammer(self, call, workers=4):
        """Runs call(client) in a loop on `workers` threads until stopped;
        returns (stop, threads, results)."""
        stop, results = threading.Event(), []

        def loop():
            client = SourceClient(self.stack)
            try:
                while not stop.is_set():
                    results.append(call(client))
            finally:
                client.close()

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(workers)]
        for t in threads:
            t.start()
        return stop, threads, results

    def finish(self, stop, threads):
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(30)

    def assert_no_token_survives(self, c, tokens):
        time.sleep(REVOCATION_DEADLINE_S)
        alive = [t for t in tokens if any(r.status == 200 for r in self.pool_reads(c, t))]
        self.assertEqual(alive, [], f"{len(alive)} of {len(tokens)} tokens still work")

    def test_30_exchanges_racing_a_revocation_leave_no_live_token(self):
        """An exchange waiting on the key's row while its revocation commits
        must not start a session after it (three keys, eight exchangers)."""
        c = self.client()
        _, _, login = self.new_account(c, "racerevoke")
        tokens = []
        for _ in range(3):
            key = self.assert_ok_json(self.create_key(c, login), 201)

            def exchange(client, key=key):
                r = self.exchange_status(client, key["key"])
                return r.json["access_token"] if r.status == 200 else None

            stop, threads, got = self.hammer(exchange, workers=8)
            time.sleep(0.3)
            self.assertEqual(c.request("DELETE", f"/v1/auth/api-keys/{key['id']}",
                                       token=login).status, 204)
            self.finish(stop, threads)
            tokens += [t for t in got if t]
        self.assertGreater(len(tokens), 12)
        self.assert_no_token_survives(c, tokens)

    def test_31_logins_racing_a_reset_leave_no_live_session(self):
        c = self.client()
        email, user_id, _ = self.new_account(c, "racereset")

        def login(client):
            r = client.request("POST", "/v1/auth/login",
                               {"email": email, "password": GOOD_PASSWORD})
            return r.json if r.status == 200 else None

        stop, threads, got = self.hammer(login)
        time.sleep(0.3)
        self.assertEqual(c.request("POST", "/v1/auth/password/forgot",
                                   {"email": email}).status, 202)
        reset = mailed_tokens(self.stack, email, "reset_password")
        resp = c.request("POST", "/v1/auth/password/reset",
                         {"token": reset[-1], "password": "Another-Long-Secret-42!"})
        self.assertEqual(resp.status, 204, repr(resp))
        self.finish(stop, threads)
        sessions = [s for s in got if s]
        self.assertGreater(len(sessions), 2)
        self.assert_no_token_survives(c, [s["access_token"] for s in sessions])
        for s in sessions:
            r = c.request("POST", "/v1/auth/refresh", {"refresh_token": s["refresh_token"]})
            self.assertEqual(r.status, 401, f"a refresh token from the old password works: {r!r}")
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.sessions WHERE user_id = :'id'::uuid
            AND revoked_at IS NULL AND expires_at > now()""", id=user_id), 0)

    def test_32_a_demotion_racing_exchanges_and_logins_leaves_no_old_role(self):
        c = self.client()
        email, _, login = self.new_account(c, "racerole")
        self.stoactl("user", "set-role", "--email", email, "--role", "finance")
        login = self.assert_ok_json(c.request(
            "POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD}))["access_token"]
        key = self.assert_ok_json(self.create_key(c, login), 201)

        def exchange_or_login(client):
            if threading.get_ident() % 2:
                r = self.exchange_status(client, key["key"])
            else:
                r = client.request("POST", "/v1/auth/login",
                                   {"email": email, "password": GOOD_PASSWORD})
            return r.json["access_token"] if r.status == 200 else None

        stop, threads, got = self.hammer(exchange_or_login)
        # The race needs tokens of the old role in flight: demote once a
        # few are out (a loaded machine makes them slowly), not after a
        # fixed time.
        wait_until(lambda: sum(1 for t in got if t) >= 4, 15, interval=0.05)
        self.stoactl("user", "set-role", "--email", email, "--role", "client")
        self.finish(stop, threads)
        time.sleep(REVOCATION_DEADLINE_S)
        finance_tokens = [t for t in got if t and jwt_claims(t)["role"] == "finance"]
        self.assertGreater(len(finance_tokens), 2)
        alive = [t for t in finance_tokens
                 if c.request("GET", "/v1/me", token=t).status == 200]
        self.assertEqual(alive, [], f"{len(alive)} tokens with the old role still work")


    # --- a credential changed while a request that it proved is running -------

    def run_beside(self, call, change, after_s=0.5):
        """Starts call(client) on a thread, runs change() after_s later
        (while call's password check hashes), and returns call's answer."""
        result = {}
        thread = threading.Thread(target=lambda: result.update(resp=call(self.client())))
        thread.start()
        time.sleep(after_s)
        change()
        thread.join(30)
        self.assertFalse(thread.is_alive(), "the request never answered")
        return result["resp"]

    def stored_hash(self, user_id):
        return query_json(self.stack, "SELECT to_json(password_hash) FROM auth.users "
                                      "WHERE id = :'id'::uuid", id=user_id)

    def plant_hash(self, user_id, phc):
        query_json(self.stack, """WITH u AS (UPDATE auth.users SET password_hash = :'h'
            WHERE id = :'id'::uuid RETURNING 1) SELECT to_json(count(*)) FROM u""",
                   h=phc, id=user_id)

    def change_call(self, login):
        return lambda client: client.request(
            "POST", "/v1/auth/password/change",
            {"current_password": GOOD_PASSWORD, "new_password": "Attacker-Chosen-Secret-77"},
            token=login)

    def test_40_a_change_proved_before_a_reset_does_not_undo_it(self):
        c = self.client()
        email, user_id, login = self.new_account(c, "changereset")
        self.plant_hash(user_id, slow_phc(GOOD_PASSWORD))
        reset_hash = slow_phc("Owner-Reset-Secret-31", iterations=1, memory_kib=8192)

        def reset():
            # What a reset commits: a new hash, every session revoked.
            query_json(self.stack, """WITH u AS (UPDATE auth.users SET password_hash = :'h'
                WHERE id = :'id'::uuid RETURNING 1), s AS (UPDATE auth.sessions
                SET revoked_at = now(), revoke_reason = 'password_changed'
                WHERE user_id = :'id'::uuid AND revoked_at IS NULL RETURNING 1)
                SELECT to_json((SELECT count(*) FROM u) + (SELECT count(*) FROM s))""",
                       h=reset_hash, id=user_id)

        resp = self.run_beside(self.change_call(login), reset)
        # 401 when the reset landed during the check (the case of this
        # test); 422 if a slow machine let it land before the check read
        # the hash. Never 204: that would put the old password's holder
        # back in charge.
        self.assertIn(resp.status, (401, 422), repr(resp))
        self.assertEqual(self.stored_hash(user_id), reset_hash)
        self.assertEqual(c.request("POST", "/v1/auth/login", {
            "email": email, "password": "Attacker-Chosen-Secret-77"}).status, 401)
        self.assertEqual(self.assert_ok_json(c.request("POST", "/v1/auth/login", {
            "email": email, "password": "Owner-Reset-Secret-31"}))["token_type"], "Bearer")

    def test_41_a_change_whose_session_was_revoked_meanwhile_is_refused(self):
        c = self.client()
        _, user_id, login = self.new_account(c, "changerevoked")
        planted = slow_phc(GOOD_PASSWORD)
        self.plant_hash(user_id, planted)
        sid = jwt_claims(login)["sid"]

        def revoke():
            query_json(self.stack, """WITH s AS (UPDATE auth.sessions SET revoked_at = now(),
                revoke_reason = 'logout' WHERE id = :'sid'::uuid RETURNING 1)
                SELECT to_json(count(*)) FROM s""", sid=sid)

        resp = self.run_beside(self.change_call(login), revoke)
        self.assert_error(resp, 401, "unauthenticated")
        self.assertEqual(self.stored_hash(user_id), planted)

    def test_42_an_erasure_proved_before_a_reset_does_not_go_through(self):
        c = self.client()
        email, user_id, login = self.new_account(c, "erasereset")
        self.plant_hash(user_id, slow_phc(GOOD_PASSWORD))
        reset_hash = slow_phc("Owner-Reset-Secret-31", iterations=1, memory_kib=8192)
        resp = self.run_beside(
            lambda client: client.request("DELETE", "/v1/me", {"password": GOOD_PASSWORD},
                                          token=login),
            lambda: self.plant_hash(user_id, reset_hash))
        # The old password no longer proves anything: the account stays.
        self.assertIn(resp.status, (401, 422), repr(resp))
        self.assertEqual(self.stored_hash(user_id), reset_hash)
        self.assertEqual(count_rows(self.stack, "SELECT 1 FROM auth.users WHERE id = :'id'::uuid "
                                    "AND email = :'e'", id=user_id, e=email), 1)

if __name__ == "__main__":
    unittest.main()
