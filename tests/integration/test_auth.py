"""End-to-end tests of the auth pool (SPEC §4), through nginx over TLS:
registration and its verification mail, login and its throttle, refresh
token rotation with reuse detection and password reset (the routes behind the
gateway and revocation while Redis is down: test_auth_account.py).

Every test uses fresh accounts and its own client address, so the tests do
not depend on each other's order; the per-IP failed-login limit of the pool
never trips because no address sees more than a few failures.

Run from the repository root:
    python3 -m unittest discover -s tests/integration -p 'test_auth.py' -v
"""

import os
import statistics
import threading
import time
import unittest
import uuid

from authlib import (BASE64URL_RE, RFC3339_UTC_RE, SourceClientTestCase, UUID_RE, count_rows,
                     es256_signature_valid, jwt_claims, jwt_parts, mailed_tokens, outbox_mails,
                     query_json, sha256_hex)
from harness import REPO

GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"
NEW_PASSWORD = "Vb4$kNw8@rTy-2Qe"
# 12 characters and in the shipped list (checked by test_11).
COMMON_PASSWORD = "qwerty123456"
COMMON_PASSWORDS_FILE = os.path.join(REPO, "modules", "auth", "data", "common-passwords.txt")

USER_KEYS = {"id", "email", "name", "role", "email_verified", "mfa_enabled", "created_at",
             "notification_prefs"}
TOKEN_KEYS = {"access_token", "token_type", "expires_in", "refresh_token"}
SESSION_KEYS = {"id", "created_at", "last_used_at", "user_agent", "ip", "current"}

# SPEC §4: a revoked session is refused on every pool within 1 s. The poll
# allows a little scheduling slack on a loaded two-core machine.
REVOCATION_DEADLINE_S = 1.5


class AuthStackTestCase(SourceClientTestCase):
    """A stack with the strict nginx limit on auth routes opened up (the suite
    logs in and registers far more often than 2r/s); the pool's own login
    throttle is what test_32 checks."""

    stack_env = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000"}

    # clients and accounts

    def register(self, client, email, password=GOOD_PASSWORD, name="Test User"):
        resp = client.request("POST", "/v1/auth/register",
                              {"email": email, "password": password, "name": name})
        return self.assert_ok_json(resp, 201)["user"]

    def login_response(self, client, email, password=GOOD_PASSWORD):
        return client.request("POST", "/v1/auth/login", {"email": email, "password": password})

    def login(self, client, email, password=GOOD_PASSWORD):
        return self.assert_ok_json(self.login_response(client, email, password))

    def assert_locked(self, client, email, password):
        """The login throttle's refusal: 429 with a Retry-After within the
        15-minute window."""
        resp = self.login_response(client, email, password)
        self.assert_error(resp, 429, "too_many_attempts")
        retry_after = resp.header("Retry-After")
        self.assertIsNotNone(retry_after, repr(resp))
        self.assertRegex(retry_after, r"^\d+$")
        self.assertGreater(int(retry_after), 0)
        self.assertLessEqual(int(retry_after), 15 * 60)

    def new_account(self, client, tag):
        """Registers and logs in; returns (email, login answer)."""
        email = self.unique_email(tag)
        self.register(client, email)
        return email, self.login(client, email)

    def refresh(self, client, refresh_token):
        return client.request("POST", "/v1/auth/refresh", {"refresh_token": refresh_token})

    def me(self, client, token):
        return client.request("GET", "/v1/me", token=token)

    def mail_tokens(self, email, template):
        """Tokens of the mails of one template sent to email, oldest first
        (from the mail itself: the outbox never holds them)."""
        return mailed_tokens(self.stack, email, template)

    def user_row(self, user_id):
        return query_json(self.stack, """
            SELECT row_to_json(u) FROM (SELECT id, email, name, role, status,
                password_hash, email_verified_at, notification_prefs
                FROM auth.users WHERE id = :'id'::uuid) u""", id=user_id)

    def email_token_ttls(self, user_id, purpose):
        """Lifetimes (s) of the user's mailed tokens of one purpose."""
        return query_json(self.stack, """
            SELECT coalesce(json_agg(extract(epoch FROM expires_at - created_at)::int), '[]')
            FROM auth.email_tokens WHERE user_id = :'id'::uuid AND purpose = :'purpose'""",
                          id=user_id, purpose=purpose)

    def expire_email_tokens(self, user_id):
        """Moves the user's mailed tokens past their expiry."""
        query_json(self.stack, """
            WITH t AS (UPDATE auth.email_tokens SET expires_at = now() - interval '1 second'
                       WHERE user_id = :'id'::uuid RETURNING 1)
            SELECT to_json(count(*)) FROM t""", id=user_id)

    def audit_actions(self, user_id):
        return query_json(self.stack, """
            SELECT coalesce(json_agg(action ORDER BY id), '[]'::json)
            FROM admin.audit_log WHERE target_id = :'id'::uuid""", id=user_id)

    # assertions

    def assert_fields(self, resp, expected):
        """400 invalid_request naming exactly the expected fields and reasons."""
        details = self.assert_error(resp, 400, "invalid_request")
        self.assertEqual(details.get("fields"), expected, repr(resp))

    def assert_user(self, user, email, name):
        self.assertEqual(set(user), USER_KEYS, user)
        self.assertRegex(user["id"], UUID_RE)
        self.assertEqual(user["email"], email)
        self.assertEqual(user["name"], name)
        self.assertEqual(user["role"], "client")
        self.assertIs(user["mfa_enabled"], False)
        self.assertRegex(user["created_at"], RFC3339_UTC_RE)
        self.assertIsInstance(user["notification_prefs"], dict)

    def assert_body_contract(self, client, method, path, token=None):
        """The SPEC §3 body contract on one route: malformed JSON, an escaped
        NUL (which a C string would silently cut), no body, a non-object
        body and a missing JSON media type."""
        cases = [
            ("truncated", '{"email":', 400, "invalid_json"),
            ("trailing garbage", '{} {}', 400, "invalid_json"),
            ("single quotes", "{'token': 'x'}", 400, "invalid_json"),
            ("escaped NUL", '{"token":"ab\\u0000cd","email":"a\\u0000@example.com"}',
             400, "invalid_json"),
            ("empty body", "", 400, "invalid_json"),
            ("array", "[]", 400, "invalid_request"),
            ("string", '"text"', 400, "invalid_request"),
        ]
        for label, body, status, code in cases:
            with self.subTest(path=path, case=label):
                resp = client.request(method, path, body, raw=True, token=token,
                                      headers={"Content-Type": "application/json"})
                self.assert_error(resp, status, code)
        with self.subTest(path=path, case="text/plain"):
            resp = client.request(method, path, "{}", raw=True, token=token,
                                  headers={"Content-Type": "text/plain"})
            self.assert_error(resp, 415, "unsupported_media_type")

    def assert_field_cases(self, client, method, path, cases, token=None):
        """cases: [(label, body, {field: reason})]."""
        for label, body, expected in cases:
            with self.subTest(path=path, case=label):
                self.assert_fields(client.request(method, path, body, token=token), expected)

    def assert_refused_within(self, client, token, deadline=REVOCATION_DEADLINE_S):
        """GET /v1/me with token turns 401 unauthenticated within deadline.
        Until then the token may still pass the (cached) revocation check, so
        the answer may be the profile, or 404 once the account is gone; never
        a server error."""
        t0 = time.monotonic()
        seen = []
        while True:
            resp = self.me(client, token)
            seen.append(resp.status)
            if resp.status == 401 or time.monotonic() - t0 > deadline:
                break
            time.sleep(0.05)
        took = time.monotonic() - t0
        self.assertTrue(all(s in (200, 401, 404) for s in seen),
                        f"answers while the revocation spread: {seen}")
        self.assert_error(resp, 401, "unauthenticated")
        self.assertLessEqual(took, deadline, f"still accepted after {took:.2f}s: {seen}")
        return took


class AuthTest(AuthStackTestCase):

    # --- 1. register ------------------------------------------------------

    def test_10_register_normalises_email_and_queues_one_verification_mail(self):
        c = self.client()
        local = f"Alice.{uuid.uuid4().hex[:10]}"
        email = f"{local.lower()}@example.com"
        user = self.register(c, f"  {local}@Example.COM ", name="Alice Liddell")
        self.assert_user(user, email, "Alice Liddell")
        self.assertIs(user["email_verified"], False)
        self.assertEqual(user["notification_prefs"], {})

        row = self.user_row(user["id"])
        self.assertEqual(row["email"], email)
        self.assertEqual(row["status"], "active")
        self.assertIsNone(row["email_verified_at"])
        self.assertTrue(row["password_hash"].startswith("$argon2id$"), row["password_hash"])
        self.assertNotIn(GOOD_PASSWORD, row["password_hash"])

        mails = outbox_mails(self.stack, email)
        self.assertEqual(len(mails), 1, mails)
        self.assertEqual(mails[0]["template"], "verify_email")
        self.assertNotIn("link", mails[0]["data"], "a token in the outbox")
        [token] = self.mail_tokens(email, "verify_email")
        self.assertRegex(token, BASE64URL_RE)
        self.assertIn("user.registered", self.audit_actions(user["id"]))

        # The same address in another case is the same account.
        resp = c.request("POST", "/v1/auth/register",
                         {"email": f"{local.upper()}@EXAMPLE.com", "password": NEW_PASSWORD,
                          "name": "Impostor"})
        self.assert_error(resp, 409, "email_taken")
        self.assertEqual(count_rows(self.stack,
                                    "SELECT 1 FROM auth.users WHERE lower(email) = :'e'",
                                    e=email), 1)
        self.assertEqual(len(outbox_mails(self.stack, email)), 1, "a refused sign-up sent mail")

    def test_11_register_enforces_the_password_policy(self):
        with open(COMMON_PASSWORDS_FILE, encoding="utf-8") as f:
            shipped = {line.strip().lower() for line in f}
        self.assertIn(COMMON_PASSWORD, shipped)
        self.assertGreaterEqual(len(COMMON_PASSWORD), 12)

        c = self.client()
        local = f"zebrastripe{uuid.uuid4().hex[:6]}"
        email = f"{local}@example.com"
        cases = [
            ("11 characters", "Xy7!pQ2#wE9", "too_short"),
            # Characters are counted, not bytes: 11 two-byte characters.
            ("11 non-ASCII characters", "é" * 11, "too_short"),
            ("common", COMMON_PASSWORD, "too_common"),
            ("common, upper case", COMMON_PASSWORD.upper(), "too_common"),
            ("contains the local part", f"My-{local}-Pass!", "contains_email"),
            ("contains the local part, upper case", f"{local.upper()}#2024", "contains_email"),
            ("over 1024 bytes", "Zq9!" * 300, "too_long"),
        ]
        for label, password, reason in cases:
            with self.subTest(label):
                resp = c.request("POST", "/v1/auth/register",
                                 {"email": email, "password": password, "name": "Zeb"})
                self.assert_fields(resp, {"password": reason})
        self.assertEqual(count_rows(self.stack, "SELECT 1 FROM auth.users WHERE email = :'e'",
                                    e=email), 0)
        self.assertEqual(outbox_mails(self.stack, email), [])
        # Exactly 12 characters is long enough.
        self.register(c, email, password="Xy7!pQ2#wE9k", name="Zeb")

    def test_12_register_refuses_bad_input_and_writes_nothing(self):
        c = self.client()
        users_before = count_rows(self.stack, "SELECT 1 FROM auth.users")
        mails_before = count_rows(self.stack,
                                  "SELECT 1 FROM jobs.outbox WHERE kind = 'email.send'")
        email = self.unique_email("bad-input")

        def doc(**changes):
            d = {"email": email, "password": GOOD_PASSWORD, "name": "Bad Input"}
            d.update(changes)
            return {k: v for k, v in d.items() if v is not ...}

        cases = [
            ("empty object", {}, {"email": "required", "password": "required",
                                  "name": "required"}),
            ("missing name", doc(name=...), {"name": "required"}),
            ("null password", doc(password=None), {"password": "required"}),
            ("email number", doc(email=1), {"email": "must_be_string"}),
            ("password number", doc(password=123456789012), {"password": "must_be_string"}),
            ("name array", doc(name=["x"]), {"name": "must_be_string"}),
            ("name object", doc(name={"first": "x"}), {"name": "must_be_string"}),
            ("unknown field", doc(role="admin"), {"role": "unknown_field"}),
            ("two unknown fields", doc(role="admin", email_verified=True),
             {"role": "unknown_field", "email_verified": "unknown_field"}),
            ("empty name", doc(name=""), {"name": "required"}),
            ("blank name", doc(name="   "), {"name": "invalid"}),
            ("control character in name", doc(name="a\tb"), {"name": "invalid"}),
            ("name over 200", doc(name="n" * 201), {"name": "too_long"}),
            ("email over 320", doc(email="a" * 310 + "@example.com"), {"email": "too_long"}),
            ("email over 254", doc(email="a" * 60 + "@" + "b" * 200 + ".com"),
             {"email": "invalid"}),
            ("password over 4096", doc(password="p" * 4097), {"password": "too_long"}),
        ]
        # (A dotless domain is fine: the dev stack's first admin is admin@localhost.)
        for bad in ("not-an-email", "x@", "@example.com", "x@@example.com", "x@example.",
                    "x@exa..mple.com", "a b@example.com", "<x>@example.com", "x@.com", ""):
            expected = "required" if bad == "" else "invalid"
            cases.append((f"email {bad!r}", doc(email=bad), {"email": expected}))
        self.assert_field_cases(c, "POST", "/v1/auth/register", cases)
        self.assert_body_contract(c, "POST", "/v1/auth/register")

        self.assertEqual(count_rows(self.stack, "SELECT 1 FROM auth.users"), users_before)
        self.assertEqual(count_rows(self.stack,
                                    "SELECT 1 FROM jobs.outbox WHERE kind = 'email.send'"),
                         mails_before, "refused sign-ups queued mail")

    # --- 2. verify email ---------------------------------------------------

    def test_20_verify_email_with_the_mailed_token_once(self):
        c = self.client()
        email = self.unique_email("verify")
        user = self.register(c, email)
        self.assertIs(self.login(c, email)["user"]["email_verified"], False)
        [token] = self.mail_tokens(email, "verify_email")

        self.assert_error(c.request("POST", "/v1/auth/verify-email", {"token": "garbage"}),
                          400, "invalid_token")
        # A reset token is not a verification token.
        self.assertEqual(c.request("POST", "/v1/auth/password/forgot",
                                   {"email": email}).status, 202)
        [reset_token] = self.mail_tokens(email, "reset_password")
        self.assert_error(c.request("POST", "/v1/auth/verify-email", {"token": reset_token}),
                          400, "invalid_token")
        self.assertIsNone(self.user_row(user["id"])["email_verified_at"])

        doc = self.assert_ok_json(c.request("POST", "/v1/auth/verify-email", {"token": token}))
        self.assertIs(doc.get("email_verified"), True, doc)
        self.assertIsNotNone(self.user_row(user["id"])["email_verified_at"])
        self.assert_error(c.request("POST", "/v1/auth/verify-email", {"token": token}),
                          400, "invalid_token")
        self.assertIs(self.login(c, email)["user"]["email_verified"], True)
        self.assertIn("user.email_verified", self.audit_actions(user["id"]))

    def test_21_verification_tokens_expire_after_24_hours(self):
        c = self.client()
        email = self.unique_email("verify-late")
        user = self.register(c, email)
        [token] = self.mail_tokens(email, "verify_email")
        self.assertEqual(self.email_token_ttls(user["id"], "verify_email"), [86400])
        self.expire_email_tokens(user["id"])
        self.assert_error(c.request("POST", "/v1/auth/verify-email", {"token": token}),
                          400, "invalid_token")
        self.assertIsNone(self.user_row(user["id"])["email_verified_at"])

    def test_22_verify_email_refuses_bad_input(self):
        c = self.client()
        path = "/v1/auth/verify-email"
        self.assert_field_cases(c, "POST", path, [
            ("empty object", {}, {"token": "required"}),
            ("token number", {"token": 5}, {"token": "must_be_string"}),
            ("token null", {"token": None}, {"token": "required"}),
            ("empty token", {"token": ""}, {"token": "required"}),
            ("unknown field", {"token": "abc", "email": "a@example.com"},
             {"email": "unknown_field"}),
            ("token over 200", {"token": "t" * 201}, {"token": "too_long"}),
        ])
        self.assert_body_contract(c, "POST", path)

    # --- 3. login ----------------------------------------------------------

    def test_30_login_issues_an_es256_token_pair(self):
        c = self.client()
        email = self.unique_email("login")
        user = self.register(c, email, name="Login User")
        # Addresses are matched normalised.
        doc = self.login(c, f"  {email.upper()} ")
        self.assertEqual(set(doc), TOKEN_KEYS | {"user"}, doc)
        self.assertEqual(doc["token_type"], "Bearer")
        self.assertEqual(doc["expires_in"], 900)
        self.assertEqual(doc["user"], user)
        refresh = doc["refresh_token"]
        self.assertRegex(refresh, BASE64URL_RE)
        self.assertGreaterEqual(len(refresh), 43, "refresh tokens carry 256 random bits")

        access = doc["access_token"]
        self.assertEqual(len(access.split(".")), 3, access)
        header, claims, _ = jwt_parts(access)
        self.assertEqual(header.get("alg"), "ES256", header)
        self.assertTrue(header.get("kid"), header)
        self.assertEqual(claims["sub"], user["id"])
        self.assertRegex(claims["sid"], UUID_RE)
        self.assertRegex(claims["jti"], UUID_RE)
        self.assertEqual(claims["role"], "client")
        self.assertEqual(claims["aud"], "stoa")
        self.assertTrue(claims["iss"], claims)
        self.assertEqual(claims["exp"] - claims["iat"], 900, claims)
        self.assertLessEqual(claims["nbf"], time.time() + 5)
        self.assertLess(abs(claims["iat"] - time.time()), 60, claims)

        jwks = self.assert_ok_json(c.request("GET", "/.well-known/jwks.json"))
        keys = {k.get("kid"): k for k in jwks.get("keys", [])}
        self.assertIn(header["kid"], keys, f"kid {header['kid']} not published: {jwks}")
        jwk = keys[header["kid"]]
        self.assertEqual((jwk.get("kty"), jwk.get("crv")), ("EC", "P-256"), jwk)
        self.assertNotIn("d", jwk, "the private key is published")
        self.assertTrue(es256_signature_valid(jwk, access), "signature does not verify")
        forged = access[:-4] + ("AAAA" if not access.endswith("AAAA") else "BBBB")
        self.assertFalse(es256_signature_valid(jwk, forged), "the check itself is broken")

        # The session and its refresh token exist, the token only as a hash.
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.refresh_tokens rt JOIN auth.sessions s ON s.id = rt.session_id
            WHERE s.id = :'sid'::uuid AND s.user_id = :'uid'::uuid
              AND rt.token_hash = decode(:'hash', 'hex')""",
                                    sid=claims["sid"], uid=user["id"],
                                    hash=sha256_hex(refresh)), 1)
        self.assertIn("login.succeeded", self.audit_actions(user["id"]))

    def test_31_wrong_password_and_unknown_email_look_alike(self):
        c = self.client()
        email = self.unique_email("timing")
        user = self.register(c, email)
        unknown = self.unique_email("nobody")
        wrong_times, unknown_times, messages = [], [], set()
        for _ in range(3):
            for who, pw, times in ((email, "Wrong-password-42", wrong_times),
                                   (unknown, GOOD_PASSWORD, unknown_times)):
                resp = self.login_response(c, who, pw)
                self.assert_error(resp, 401, "invalid_credentials")
                messages.add(resp.json["error"]["message"])
                times.append(resp.elapsed)
        self.assertEqual(len(messages), 1, f"the two failures read differently: {messages}")
        wrong, nobody = statistics.median(wrong_times), statistics.median(unknown_times)
        self.assertGreaterEqual(
            nobody, 0.5 * wrong,
            f"unknown email answered in {nobody * 1000:.1f} ms, wrong password in "
            f"{wrong * 1000:.1f} ms: a timing oracle for registered addresses")
        self.assertIn("login.failed", self.audit_actions(user["id"]))

    def test_32_five_failures_lock_the_account_for_that_address(self):
        c = self.client()
        email = self.unique_email("throttle")
        self.register(c, email)
        for i in range(5):
            with self.subTest(failure=i + 1):
                # Spellings of one address count as one account.
                who = email.upper() if i % 2 else f" {email} "
                self.assert_error(self.login_response(c, who, f"Wrong-password-{i}"),
                                  401, "invalid_credentials")
        for label, pw in (("right password", GOOD_PASSWORD), ("wrong password", "Wrong-again-1")):
            with self.subTest(label):
                self.assert_locked(c, email, pw)
        # The lock is per account and address: the owner elsewhere gets in.
        self.login(self.client(), email)

    def test_33_suspended_account_cannot_log_in(self):
        c = self.client()
        email, doc = self.new_account(c, "suspended")
        user_id = doc["user"]["id"]
        query_json(self.stack, """
            WITH u AS (UPDATE auth.users SET status = 'suspended' WHERE id = :'id'::uuid
                       RETURNING 1)
            SELECT to_json(count(*)) FROM u""", id=user_id)
        self.assert_error(self.login_response(c, email), 403, "account_suspended")
        # Without the password nothing tells that the account exists.
        self.assert_error(self.login_response(c, email, "Wrong-password-1"),
                          401, "invalid_credentials")
        self.assert_error(self.refresh(c, doc["refresh_token"]), 401, "invalid_token")
        resp = c.request("POST", "/v1/auth/password/forgot", {"email": email})
        self.assertEqual(resp.status, 202, repr(resp))
        self.assertEqual(self.mail_tokens(email, "reset_password"), [])

    def test_34_login_refuses_bad_input(self):
        c = self.client()
        path = "/v1/auth/login"
        email = self.unique_email("login-bad")
        self.assert_field_cases(c, "POST", path, [
            ("empty object", {}, {"email": "required", "password": "required"}),
            ("email number", {"email": 5, "password": GOOD_PASSWORD}, {"email": "must_be_string"}),
            ("password bool", {"email": email, "password": False},
             {"password": "must_be_string"}),
            ("unknown field", {"email": email, "password": GOOD_PASSWORD, "remember": True},
             {"remember": "unknown_field"}),
            ("email over 320", {"email": "a" * 310 + "@example.com", "password": GOOD_PASSWORD},
             {"email": "too_long"}),
            ("password over 4096", {"email": email, "password": "p" * 4097},
             {"password": "too_long"}),
        ])
        self.assert_body_contract(c, "POST", path)

    # --- 4. refresh (the reuse window of 10 s) ----------------------------

    def test_40_refresh_rotates_and_replays_within_the_window(self):
        c = self.client()
        email, first = self.new_account(c, "refresh")
        sid = jwt_claims(first["access_token"])["sid"]

        second = self.assert_ok_json(self.refresh(c, first["refresh_token"]))
        self.assertEqual(set(second), TOKEN_KEYS, second)
        self.assertEqual(second["token_type"], "Bearer")
        self.assertEqual(second["expires_in"], 900)
        self.assertNotEqual(second["refresh_token"], first["refresh_token"])
        self.assertNotEqual(second["access_token"], first["access_token"])
        claims = jwt_claims(second["access_token"])
        self.assertEqual(claims["sid"], sid, "rotation must stay in the session")
        self.assertEqual(claims["sub"], first["user"]["id"])

        # Another tab presents the parent again: the very same pair.
        again = self.assert_ok_json(self.refresh(c, first["refresh_token"]))
        self.assertEqual(again, second)
        # And the successor rotates normally.
        third = self.assert_ok_json(self.refresh(c, second["refresh_token"]))
        self.assertNotIn(third["refresh_token"], (first["refresh_token"], second["refresh_token"]))
        self.assertEqual(jwt_claims(third["access_token"])["sid"], sid)

        self.assert_error(self.refresh(c, "x" * 43), 401, "invalid_token")
        self.assert_error(self.refresh(c, first["access_token"][:200]), 401, "invalid_token")

    def test_41_concurrent_refreshes_get_the_same_successor(self):
        c = self.client()
        _, doc = self.new_account(c, "concurrent")
        clients = [self.client(), self.client()]
        for client in clients:
            # A refresh takes milliseconds; waiting longer hides a stall.
            client.timeout = 5.0
        token = doc["refresh_token"]
        for round_ in range(5):
            barrier = threading.Barrier(len(clients))
            answers = [None] * len(clients)

            def worker(i, parent):
                barrier.wait(10)
                try:
                    answers[i] = self.refresh(clients[i], parent)
                except Exception as e:  # reported below
                    answers[i] = e

            threads = [threading.Thread(target=worker, args=(i, token))
                       for i in range(len(clients))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            outcome = [a if isinstance(a, Exception) else a.status for a in answers]
            for resp in answers:
                self.assertNotIsInstance(resp, Exception,
                                         f"round {round_}: one of two concurrent refreshes got "
                                         f"no answer within 5 s: {outcome}")
                self.assert_ok_json(resp)
            self.assertEqual(answers[0].json, answers[1].json,
                             f"round {round_}: two refreshes of one token got different pairs")
            self.assertNotEqual(answers[0].json["refresh_token"], token)
            token = answers[0].json["refresh_token"]
        # The chain is still alive at its end.
        self.assert_ok_json(self.refresh(c, token))

    def test_42_refresh_refuses_bad_input(self):
        c = self.client()
        path = "/v1/auth/refresh"
        self.assert_field_cases(c, "POST", path, [
            ("empty object", {}, {"refresh_token": "required"}),
            ("number", {"refresh_token": 5}, {"refresh_token": "must_be_string"}),
            ("array", {"refresh_token": ["x"]}, {"refresh_token": "must_be_string"}),
            ("unknown field", {"refresh_token": "x" * 43, "grant_type": "refresh_token"},
             {"grant_type": "unknown_field"}),
            ("over 200", {"refresh_token": "r" * 201}, {"refresh_token": "too_long"}),
        ])
        self.assert_body_contract(c, "POST", path)

    # --- 5. forgotten password --------------------------------------------

    def test_50_password_reset_by_mailed_token(self):
        c = self.client()
        email, old_session = self.new_account(c, "reset")
        user_id = old_session["user"]["id"]
        other_session = self.login(c, email)
        unknown = self.unique_email("reset-nobody")

        for who in (email.upper(), unknown):
            resp = c.request("POST", "/v1/auth/password/forgot", {"email": who})
            self.assertEqual(resp.status, 202, repr(resp))
            self.assert_request_id(resp)
        self.assertEqual(outbox_mails(self.stack, unknown), [])
        [token] = self.mail_tokens(email, "reset_password")
        [verify_token] = self.mail_tokens(email, "verify_email")
        self.assertEqual(self.email_token_ttls(user_id, "reset_password"), [3600])
        path = "/v1/auth/password/reset"

        self.assert_error(c.request("POST", path, {"token": "garbage", "password": NEW_PASSWORD}),
                          400, "invalid_token")
        # A verification token does not reset a password.
        self.assert_error(c.request("POST", path, {"token": verify_token,
                                                   "password": NEW_PASSWORD}),
                          400, "invalid_token")
        # A refused password leaves the token usable.
        local = email.split("@")[0]
        for password, reason in (("short", "too_short"), (COMMON_PASSWORD, "too_common"),
                                 (f"X{local}!9", "contains_email")):
            with self.subTest(weak=reason):
                self.assert_fields(c.request("POST", path, {"token": token, "password": password}),
                                   {"password": reason})
        self.assertEqual(self.login_response(c, email).status, 200,
                         "a refused reset changed the password")

        resp = c.request("POST", path, {"token": token, "password": NEW_PASSWORD})
        self.assertEqual(resp.status, 204, repr(resp))
        self.assertEqual(resp.body, b"")
        self.assert_error(c.request("POST", path, {"token": token, "password": GOOD_PASSWORD}),
                          400, "invalid_token")
        self.assert_error(self.login_response(c, email, GOOD_PASSWORD), 401,
                          "invalid_credentials")
        self.login(c, email, NEW_PASSWORD)

        # Every session of the user ended: their refresh tokens are dead.
        for label, session in (("first", old_session), ("second", other_session)):
            with self.subTest(session=label):
                self.assert_error(self.refresh(c, session["refresh_token"]),
                                  401, "invalid_token")
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.sessions WHERE id IN (:'a'::uuid, :'b'::uuid)
              AND revoked_at IS NULL""",
                                    a=jwt_claims(old_session["access_token"])["sid"],
                                    b=jwt_claims(other_session["access_token"])["sid"]), 0)
        self.assertIn("password.reset", self.audit_actions(user_id))

    def test_51_password_routes_refuse_bad_input(self):
        c = self.client()
        forgot, reset = "/v1/auth/password/forgot", "/v1/auth/password/reset"
        self.assert_field_cases(c, "POST", forgot, [
            ("empty object", {}, {"email": "required"}),
            ("email array", {"email": []}, {"email": "must_be_string"}),
            ("unknown field", {"email": "a@example.com", "redirect": "https://evil.example"},
             {"redirect": "unknown_field"}),
            ("email over 320", {"email": "a" * 310 + "@example.com"}, {"email": "too_long"}),
        ])
        self.assert_body_contract(c, "POST", forgot)
        self.assert_field_cases(c, "POST", reset, [
            ("empty object", {}, {"token": "required", "password": "required"}),
            ("token number", {"token": 1, "password": NEW_PASSWORD}, {"token": "must_be_string"}),
            ("password number", {"token": "abc", "password": 1},
             {"password": "must_be_string"}),
            ("unknown field", {"token": "abc", "password": NEW_PASSWORD, "email": "a@example.com"},
             {"email": "unknown_field"}),
            ("token over 200", {"token": "t" * 201, "password": NEW_PASSWORD},
             {"token": "too_long"}),
            ("password over 4096", {"token": "abc", "password": "p" * 4097},
             {"password": "too_long"}),
        ])
        self.assert_body_contract(c, "POST", reset)



class RefreshReuseTest(AuthStackTestCase):
    """Reuse detection after the window, on a stack whose reuse window is
    1 s so the test need not wait 10."""

    stack_env = dict(AuthStackTestCase.stack_env, STOA_REFRESH_REUSE_INTERVAL="1")

    def spent_parent_after_the_window(self):
        c = self.client()
        email, first = self.new_account(c, "reuse")
        second = self.assert_ok_json(self.refresh(c, first["refresh_token"]))
        time.sleep(2.0)
        return c, first, second

    def test_10_reuse_after_the_window_revokes_the_session(self):
        c, first, second = self.spent_parent_after_the_window()
        user_id = first["user"]["id"]
        sid = jwt_claims(first["access_token"])["sid"]
        self.assert_error(self.refresh(c, first["refresh_token"]), 401, "token_reused")
        # The whole family is dead: the successor no longer works either.
        self.assert_error(self.refresh(c, second["refresh_token"]), 401, "invalid_token")
        self.assert_error(self.refresh(c, first["refresh_token"]), 401, "invalid_token")
        row = query_json(self.stack, """
            SELECT row_to_json(s) FROM (SELECT revoked_at IS NOT NULL AS revoked, revoke_reason
            FROM auth.sessions WHERE id = :'sid'::uuid) s""", sid=sid)
        self.assertEqual(row, {"revoked": True, "revoke_reason": "refresh_token_reused"})
        self.assertIn("refresh.reused", self.audit_actions(user_id))
        # Other sessions of the user are not touched.
        self.assert_ok_json(self.refresh(c, self.login(c, first["user"]["email"])["refresh_token"]))

    def test_11_within_the_window_the_pair_is_replayed(self):
        c = self.client()
        _, first = self.new_account(c, "reuse-window")
        second = self.assert_ok_json(self.refresh(c, first["refresh_token"]))
        self.assertEqual(self.assert_ok_json(self.refresh(c, first["refresh_token"])), second)

    def test_20_reuse_also_ends_the_access_tokens(self):
        c, first, second = self.spent_parent_after_the_window()
        self.assert_ok_json(self.me(c, second["access_token"]))
        self.assert_error(self.refresh(c, first["refresh_token"]), 401, "token_reused")
        self.assert_refused_within(c, second["access_token"])
        self.assert_refused_within(c, first["access_token"])


if __name__ == "__main__":
    unittest.main()
