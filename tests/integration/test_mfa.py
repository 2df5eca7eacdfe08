"""End-to-end tests of the second factor and of API keys (SPEC §4), through
nginx over TLS: TOTP enrolment and confirmation, the login challenge and its
one-time codes, recovery codes, turning MFA off, and API keys traded for
scoped access tokens.

The TOTP codes come from an implementation of RFC 6238 written here (hmac,
hashlib, struct, base64 only), itself checked against the RFC's test
vectors, so the server is never checked against itself.

Every test uses fresh accounts and its own client address: the failed-login
throttle counts per account and address, and no test may trip another's.
Where a test needs a 30-second step to stay put (window edges, replays), it
first waits until enough of the current step is left.

Run from the repository root:
    python3 -m unittest discover -s tests/integration -p 'test_mfa.py' -v
"""

import base64
import hashlib
import hmac
import json
import struct
import time
import unittest
import urllib.parse
import uuid

from authlib import (RFC3339_UTC_RE, SourceClientTestCase, UUID_RE, count_rows, jwt_claims,
                     outbox_mails, query_json)


GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"
TOTP_STEP = 30
RECOVERY_CODE_RE = r"^[a-z2-7]{5}-[a-z2-7]{5}$"
API_KEY_RE = r"^stoa_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$"
TOKEN_KEYS = {"access_token", "token_type", "expires_in", "refresh_token", "user"}
# SPEC §4: a revoked key's tokens are refused within 1 s; a little slack for
# a loaded two-core machine.
REVOCATION_DEADLINE_S = 1.5


# --- RFC 4226 / RFC 6238, independent of the server -----------------------

def b32_secret(text):
    """Bytes of a base32 secret as authenticator apps take it (no padding,
    any case)."""
    text = text.strip().replace(" ", "").upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def hotp(key, counter, digits=6):
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


def totp_at(secret_b32, unix_time, digits=6):
    return hotp(b32_secret(secret_b32), int(unix_time) // TOTP_STEP, digits)


def current_step():
    return int(time.time()) // TOTP_STEP


def code_for_step(secret_b32, step):
    return hotp(b32_secret(secret_b32), step)


def wrong_code(secret_b32):
    """Six digits that are the code of no step the server could accept now."""
    now = current_step()
    live = {code_for_step(secret_b32, s) for s in range(now - 2, now + 3)}
    for candidate in ("000000", "123456", "999999", "314159"):
        if candidate not in live:
            return candidate
    raise AssertionError("unreachable")


def settle(min_left=7.0):
    """Waits until at least min_left seconds of the current 30 s step remain,
    so that codes computed now keep their step for a few requests."""
    left = TOTP_STEP - time.time() % TOTP_STEP
    if left < min_left:
        time.sleep(left + 0.05)


# RFC 6238 appendix B, SHA-1 rows: (time, 8-digit TOTP).
RFC6238_SHA1_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]
RFC6238_SHA1_SECRET = b"12345678901234567890"


class TotpReferenceTest(unittest.TestCase):
    """The reference implementation the stack is checked against."""

    def test_01_rfc6238_sha1_vectors(self):
        secret = base64.b32encode(RFC6238_SHA1_SECRET).decode("ascii").rstrip("=")
        self.assertEqual(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
        for unix_time, expected in RFC6238_SHA1_VECTORS:
            with self.subTest(time=unix_time):
                self.assertEqual(totp_at(secret, unix_time, digits=8), expected)
                # Our codes are the 6-digit truncation of the same value.
                self.assertEqual(totp_at(secret, unix_time), expected[-6:])
        # Lower case and spaces, as people type them, decode the same.
        self.assertEqual(totp_at("gezd gnbv gy3t qojq gezd gnbv gy3t qojq", 59, 8), "94287082")


# --- the stack -----------------------------------------------------------

class MfaStackTestCase(SourceClientTestCase):
    """A stack with nginx's limit on auth routes opened up: these tests log in
    far more often than 2r/s; the pool's own throttle is what they check."""

    stack_env = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000"}

    def new_account(self, client, tag):
        """Registers and logs in (no MFA yet): (email, user id, access token)."""
        email = self.unique_email(tag)
        resp = client.request("POST", "/v1/auth/register",
                              {"email": email, "password": GOOD_PASSWORD, "name": "Mfa User"})
        user = self.assert_ok_json(resp, 201)["user"]
        tokens = self.assert_ok_json(self.login_response(client, email))
        return email, user["id"], tokens["access_token"]

    def login_response(self, client, email, password=GOOD_PASSWORD):
        return client.request("POST", "/v1/auth/login", {"email": email, "password": password})

    def challenge(self, client, email):
        """Logs in to an account with MFA on; returns the mfa_token."""
        details = self.assert_error(self.login_response(client, email), 401, "mfa_required")
        self.assertEqual(set(details), {"mfa_token"}, details)
        self.assertIsInstance(details["mfa_token"], str)
        self.assertGreaterEqual(len(details["mfa_token"]), 32, details)
        return details["mfa_token"]

    def verify(self, client, mfa_token, code=None, recovery_code=None):
        body = {"mfa_token": mfa_token}
        if code is not None:
            body["code"] = code
        if recovery_code is not None:
            body["recovery_code"] = recovery_code
        return client.request("POST", "/v1/auth/mfa/verify", body)

    def assert_tokens(self, resp, user_id):
        doc = self.assert_ok_json(resp)
        self.assertEqual(set(doc), TOKEN_KEYS, doc)
        self.assertEqual(doc["token_type"], "Bearer")
        self.assertEqual(doc["user"]["id"], user_id)
        self.assertEqual(jwt_claims(doc["access_token"])["sub"], user_id)
        return doc

    def enroll(self, client, token):
        return self.assert_ok_json(client.request("POST", "/v1/auth/mfa/totp/enroll",
                                                  {"password": GOOD_PASSWORD}, token=token))

    def confirm(self, client, token, code):
        return client.request("POST", "/v1/auth/mfa/totp/confirm",
                              {"code": code, "password": GOOD_PASSWORD}, token=token)

    def enable_mfa(self, client, tag):
        """A fresh account with TOTP on: (email, user id, access token of the
        session opened before, secret, recovery codes)."""
        email, user_id, token = self.new_account(client, tag)
        secret = self.enroll(client, token)["secret"]
        resp = self.confirm(client, token, code_for_step(secret, current_step()))
        codes = self.assert_ok_json(resp)["recovery_codes"]
        return email, user_id, token, secret, codes

    def me(self, client, token):
        return client.request("GET", "/v1/me", token=token)

    def audit_actions(self, user_id):
        return query_json(self.stack, """
            SELECT coalesce(json_agg(action ORDER BY id), '[]'::json)
            FROM admin.audit_log WHERE target_id = :'id'::uuid""", id=user_id)

    def forget_last_step(self, user_id):
        """Lets every code of the window be new again (as after a minute)."""
        query_json(self.stack, """
            WITH t AS (UPDATE auth.mfa_totp SET last_used_step = 0
                       WHERE user_id = :'id'::uuid RETURNING 1)
            SELECT to_json(count(*)) FROM t""", id=user_id)

    def assert_fields(self, resp, expected):
        details = self.assert_error(resp, 400, "invalid_request")
        self.assertEqual(details.get("fields"), expected, repr(resp))

    def assert_field_named(self, resp, field):
        details = self.assert_error(resp, 400, "invalid_request")
        fields = details.get("fields")
        self.assertIsInstance(fields, dict, repr(resp))
        self.assertEqual(set(fields), {field}, repr(resp))


class MfaTest(MfaStackTestCase):

    # --- 2. enrolment and confirmation -----------------------------------

    def test_20_enroll_and_confirm(self):
        c = self.client()
        email, user_id, token = self.new_account(c, "enroll")
        self.assert_error(c.request("POST", "/v1/auth/mfa/totp/enroll"), 401, "unauthenticated")

        first = self.enroll(c, token)
        self.assertEqual(set(first), {"secret", "otpauth_uri"}, first)
        secret = first["secret"]
        self.assertRegex(secret, r"^[A-Z2-7]{32}$")
        raw = b32_secret(secret)
        self.assertEqual(len(raw), 20, "160-bit secret")

        uri = urllib.parse.urlsplit(first["otpauth_uri"])
        self.assertEqual((uri.scheme, uri.netloc), ("otpauth", "totp"), first["otpauth_uri"])
        label = urllib.parse.unquote(uri.path.lstrip("/"))
        query = dict(urllib.parse.parse_qsl(uri.query, strict_parsing=True))
        self.assertEqual(query.get("secret"), secret)
        self.assertEqual(query.get("algorithm"), "SHA1")
        self.assertEqual(query.get("digits"), "6")
        self.assertEqual(query.get("period"), "30")
        self.assertTrue(query.get("issuer"), first["otpauth_uri"])
        self.assertEqual(label, f"{query['issuer']}:{email}", first["otpauth_uri"])

        # Sealed at rest: neither the raw bytes nor the base32 text is there.
        sealed_sql = """
            SELECT to_json(encode(secret_sealed, 'hex')) FROM auth.mfa_totp
            WHERE user_id = :'id'::uuid"""
        sealed = bytes.fromhex(query_json(self.stack, sealed_sql, id=user_id))
        self.assertGreater(len(sealed), len(raw))
        self.assertNotIn(raw, sealed)
        self.assertNotIn(secret.encode(), sealed)
        self.assertNotIn(secret.lower().encode(), sealed)

        # Enrolling again before confirming replaces the secret: the first
        # one's code no longer confirms.
        second = self.enroll(c, token)
        self.assertNotEqual(second["secret"], secret)
        old_code = code_for_step(secret, current_step())
        if old_code not in {code_for_step(second["secret"], s)
                            for s in range(current_step() - 1, current_step() + 2)}:
            self.assert_fields(self.confirm(c, token, old_code), {"code": "incorrect"})
        secret = second["secret"]
        self.assert_fields(self.confirm(c, token, wrong_code(secret)), {"code": "incorrect"})
        self.assertIs(self.assert_ok_json(self.me(c, token))["mfa_enabled"], False)

        resp = self.confirm(c, token, code_for_step(secret, current_step()))
        doc = self.assert_ok_json(resp)
        self.assertEqual(set(doc), {"recovery_codes"}, doc)
        codes = doc["recovery_codes"]
        self.assertEqual(len(codes), 10, codes)
        self.assertEqual(len(set(codes)), 10, codes)
        for code in codes:
            self.assertRegex(code, RECOVERY_CODE_RE)
        # Stored, unused, and not in clear.
        stored = query_json(self.stack, """
            SELECT coalesce(json_agg(encode(code_hash, 'hex')), '[]'::json)
            FROM auth.mfa_recovery_codes WHERE user_id = :'id'::uuid AND used_at IS NULL""",
                            id=user_id)
        self.assertEqual(len(stored), 10)
        for code in codes:
            for form in (code, code.replace("-", "")):
                self.assertFalse(any(form.encode().hex() in h for h in stored), form)

        confirmed = query_json(self.stack, sealed_sql, id=user_id)
        self.assertNotEqual(bytes.fromhex(confirmed), sealed,
                            "the second enrolment kept the first secret")
        self.assert_error(c.request("POST", "/v1/auth/mfa/totp/enroll",
                                    {"password": GOOD_PASSWORD}, token=token),
                          409, "mfa_already_enabled")
        # The refused enrolment left the confirmed secret alone.
        self.assertEqual(query_json(self.stack, sealed_sql, id=user_id), confirmed)
        self.assert_error(self.confirm(c, token, code_for_step(secret, current_step())),
                          409, "mfa_already_enabled")
        self.assertIs(self.assert_ok_json(self.me(c, token))["mfa_enabled"], True)
        self.assertIn("mfa.enabled", self.audit_actions(user_id))

    # --- 3. login with the second factor ---------------------------------

    def test_30_login_asks_for_the_code_and_the_token_is_single_use(self):
        c = self.client()
        email, user_id, _, secret, _ = self.enable_mfa(c, "login")
        self.forget_last_step(user_id)
        mfa_token = self.challenge(c, email)
        # The password alone opened no session.
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.sessions WHERE user_id = :'id'::uuid""", id=user_id), 1)
        doc = self.assert_tokens(self.verify(c, mfa_token, code=code_for_step(
            secret, current_step())), user_id)
        me = self.assert_ok_json(self.me(c, doc["access_token"]))
        self.assertEqual(me["id"], user_id)
        self.assertIs(me["mfa_enabled"], True)
        self.assert_ok_json(c.request("POST", "/v1/auth/refresh",
                                      {"refresh_token": doc["refresh_token"]}))
        # Spent: even with a code that would otherwise be good.
        self.assert_error(self.verify(c, mfa_token, code=code_for_step(
            secret, current_step() + 1)), 401, "invalid_token")
        self.assertIn("login.succeeded", self.audit_actions(user_id))

    def test_31_a_code_is_accepted_once_within_a_one_step_window(self):
        c = self.client()
        email, user_id, _, secret, _ = self.enable_mfa(c, "window")
        self.forget_last_step(user_id)
        settle()
        now = current_step()
        t1 = self.challenge(c, email)
        # Two steps old: outside the window.
        self.assert_error(self.verify(c, t1, code=code_for_step(secret, now - 2)),
                          401, "invalid_code")
        # The previous step is still good (newer than the last used one).
        self.assert_tokens(self.verify(c, t1, code=code_for_step(secret, now - 1)), user_id)

        # Replay of that step with a new login: refused; the current step,
        # newer, is good.
        t2 = self.challenge(c, email)
        self.assert_error(self.verify(c, t2, code=code_for_step(secret, now - 1)),
                          401, "invalid_code")
        self.assert_tokens(self.verify(c, t2, code=code_for_step(secret, now)), user_id)

        # The same code (same step) again, new login: refused.
        t3 = self.challenge(c, email)
        self.assert_error(self.verify(c, t3, code=code_for_step(secret, now)),
                          401, "invalid_code")
        # One step ahead (clock drift) is good.
        self.assert_tokens(self.verify(c, t3, code=code_for_step(secret, now + 1)), user_id)
        # Two steps ahead: outside the window.
        t4 = self.challenge(c, email)
        self.assert_error(self.verify(c, t4, code=code_for_step(secret, now + 2)),
                          401, "invalid_code")
        self.assertEqual(now, current_step(), "the step moved during the test")
        self.assertIn("mfa.failed", self.audit_actions(user_id))

    def test_32_forged_expired_and_malformed_challenges(self):
        c = self.client()
        email, user_id, _, secret, _ = self.enable_mfa(c, "forged")
        self.forget_last_step(user_id)
        settle()
        code = code_for_step(secret, current_step())
        for forged in ("garbage", base64.urlsafe_b64encode(b"\x00" * 32).decode().rstrip("="),
                       "x" * 200):
            with self.subTest(mfa_token=forged[:20]):
                self.assert_error(self.verify(c, forged, code=code), 401, "invalid_token")

        mfa_token = self.challenge(c, email)
        expired = query_json(self.stack, """
            WITH t AS (UPDATE auth.mfa_challenges SET expires_at = now() - interval '1 second'
                       WHERE user_id = :'id'::uuid AND used_at IS NULL RETURNING 1)
            SELECT to_json(count(*)) FROM t""", id=user_id)
        self.assertEqual(expired, 1)
        self.assert_error(self.verify(c, mfa_token, code=code), 401, "invalid_token")

        # Malformed bodies.
        self.assert_fields(c.request("POST", "/v1/auth/mfa/verify", {"mfa_token": "x"}),
                           {"code": "code_or_recovery_code_required"})
        resp = c.request("POST", "/v1/auth/mfa/verify", {"code": code})
        self.assert_field_named(resp, "mfa_token")
        resp = self.verify(c, "x", code="12345")
        self.assert_field_named(resp, "code")

        # The same code on a live challenge is good: the refusals above were
        # about the challenge, not the code.
        self.assert_tokens(self.verify(c, self.challenge(c, email), code=code), user_id)

    def test_33_failed_codes_trip_the_login_throttle(self):
        c = self.client()
        email, user_id, _, secret, _ = self.enable_mfa(c, "throttle")
        self.forget_last_step(user_id)
        mfa_token = self.challenge(c, email)
        bad = wrong_code(secret)
        for i in range(5):
            with self.subTest(failure=i + 1):
                self.assert_error(self.verify(c, mfa_token, code=bad), 401, "invalid_code")
        resp = self.verify(c, mfa_token, code=code_for_step(secret, current_step()))
        self.assert_error(resp, 429, "too_many_attempts")
        self.assertGreater(int(resp.header("Retry-After", "0")), 0, repr(resp))
        # The password, right as it is, does not get in from this address.
        self.assert_error(self.login_response(c, email), 429, "too_many_attempts")
        # Another address is not locked out.
        other = self.client()
        self.assert_tokens(self.verify(other, self.challenge(other, email),
                                       code=code_for_step(secret, current_step())), user_id)

    def test_34_the_password_does_not_reset_the_count_of_failed_codes(self):
        """Someone who has the password must not get unlimited code guesses
        by logging in again before the fifth failure."""
        c = self.client()
        email, user_id, _, secret, _ = self.enable_mfa(c, "guesses")
        self.forget_last_step(user_id)
        bad = wrong_code(secret)
        first = self.challenge(c, email)
        for _ in range(3):
            self.assert_error(self.verify(c, first, code=bad), 401, "invalid_code")
        second = self.challenge(c, email)
        for _ in range(2):
            self.assert_error(self.verify(c, second, code=bad), 401, "invalid_code")
        resp = self.verify(c, second, code=code_for_step(secret, current_step()))
        self.assert_error(resp, 429, "too_many_attempts")

    # --- 4. recovery codes -----------------------------------------------

    def test_40_recovery_codes_are_single_use(self):
        c = self.client()
        email, user_id, _, _, codes = self.enable_mfa(c, "recovery")
        self.assert_tokens(self.verify(c, self.challenge(c, email), recovery_code=codes[0]),
                           user_id)
        self.assert_error(self.verify(c, self.challenge(c, email), recovery_code=codes[0]),
                          401, "invalid_code")
        mails = outbox_mails(self.stack, email, "recovery_code_used")
        self.assertEqual(len(mails), 1, mails)
        self.assertIn("mfa.recovery_code_used", self.audit_actions(user_id))
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.mfa_recovery_codes
            WHERE user_id = :'id'::uuid AND used_at IS NOT NULL""", id=user_id), 1)

        # Typed as people type them: upper case, without the dash, both.
        for label, typed in (("upper case", codes[1].upper()),
                             ("no dash", codes[2].replace("-", "")),
                             ("upper case, no dash", codes[3].upper().replace("-", ""))):
            with self.subTest(label):
                self.assert_tokens(self.verify(c, self.challenge(c, email),
                                               recovery_code=typed), user_id)
        self.assert_error(self.verify(c, self.challenge(c, email),
                                      recovery_code=codes[1].replace("-", "")),
                          401, "invalid_code")
        # Someone else's code is no good here.
        c2 = self.client()
        codes2 = self.enable_mfa(c2, "recovery-other")[4]
        self.assert_error(self.verify(c, self.challenge(c, email), recovery_code=codes2[0]),
                          401, "invalid_code")
        self.assert_tokens(self.verify(c, self.challenge(c, email), recovery_code=codes[4]),
                           user_id)
        self.assertEqual(len(outbox_mails(self.stack, email, "recovery_code_used")), 5)

    # --- 5. turning MFA off ----------------------------------------------

    def test_50_disable(self):
        c = self.client()
        email, user_id, token, secret, _ = self.enable_mfa(c, "disable")
        path = "/v1/auth/mfa/totp"
        self.assert_fields(c.request("DELETE", path, {}, token=token),
                           {"code": "code_or_password_required"})
        self.assert_fields(c.request("DELETE", path, {"code": wrong_code(secret)}, token=token),
                           {"code": "incorrect"})
        self.assert_fields(c.request("DELETE", path, {"password": "not the password!"},
                                     token=token), {"password": "incorrect"})
        self.assert_error(c.request("DELETE", path, {"password": GOOD_PASSWORD}), 401,
                          "unauthenticated")
        self.assertIs(self.assert_ok_json(self.me(c, token))["mfa_enabled"], True)

        resp = c.request("DELETE", path, {"password": GOOD_PASSWORD}, token=token)
        self.assertEqual(resp.status, 204, repr(resp))
        self.assertEqual(resp.body, b"")
        self.assertEqual(len(outbox_mails(self.stack, email, "mfa_disabled")), 1)
        self.assertIn("mfa.disabled", self.audit_actions(user_id))
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.mfa_recovery_codes WHERE user_id = :'id'::uuid""",
                                    id=user_id), 0)
        self.assertIs(self.assert_ok_json(self.me(c, token))["mfa_enabled"], False)
        self.assert_tokens(self.login_response(c, email), user_id)
        self.assert_error(c.request("DELETE", path, {"password": GOOD_PASSWORD}, token=token),
                          409, "mfa_not_enabled")

    def test_51_disable_with_a_code(self):
        c = self.client()
        email, user_id, token, secret, _ = self.enable_mfa(c, "disable-code")
        self.forget_last_step(user_id)
        resp = c.request("DELETE", "/v1/auth/mfa/totp",
                         {"code": code_for_step(secret, current_step())}, token=token)
        self.assertEqual(resp.status, 204, repr(resp))
        self.assert_tokens(self.login_response(c, email), user_id)
        # On again with a new secret: the old one is gone with the row.
        new_secret = self.enroll(c, token)["secret"]
        self.assertNotEqual(new_secret, secret)

    # --- 6. API keys -----------------------------------------------------

    def create_key(self, client, token, **body):
        body.setdefault("name", "ci")
        return client.request("POST", "/v1/auth/api-keys", body, token=token)

    def exchange(self, client, key, grant_type="api_key"):
        return client.request("POST", "/v1/auth/token",
                              {"grant_type": grant_type, "api_key": key})

    def test_60_api_key_life(self):
        c = self.client()
        email, user_id, token = self.new_account(c, "apikey")
        created = self.assert_ok_json(self.create_key(c, token, name="deploy bot"), 201)
        self.assertRegex(created["id"], UUID_RE)
        self.assertRegex(created["key"], API_KEY_RE)
        prefix, secret = created["key"][5:17], created["key"][18:]
        self.assertEqual(created["prefix"], prefix)

        # Not stored in clear.
        row = json.dumps(query_json(self.stack, """
            SELECT to_json(k) FROM auth.api_keys k WHERE id = :'id'::uuid""",
                                    id=created["id"]))
        self.assertIn(prefix, row)
        self.assertNotIn(secret, row)
        self.assertNotIn(secret.encode().hex(), row)
        self.assertIn("api_key.created", self.audit_actions(user_id))

        listed = c.request("GET", "/v1/auth/api-keys", token=token)
        doc = self.assert_ok_json(listed)
        self.assertNotIn(secret.encode(), listed.body)
        entry = next(k for k in doc["data"] if k["id"] == created["id"])
        self.assertNotIn("key", entry)
        self.assertEqual((entry["name"], entry["prefix"]), ("deploy bot", prefix))
        self.assertIsNone(entry["last_used_at"])

        resp = self.exchange(c, created["key"])
        got = self.assert_ok_json(resp)
        self.assertNotIn("refresh_token", got)
        self.assertEqual(got["token_type"], "Bearer")
        self.assertGreater(got["expires_in"], 0)
        claims = jwt_claims(got["access_token"])
        self.assertEqual(claims["sub"], user_id)
        self.assertEqual(claims["role"], "client")
        # A key made without scopes names the whole explicitly, so its
        # tokens are told apart from a login's.
        self.assertEqual(claims["scope"], "*")
        self.assertEqual(got["scope"], "*")
        self.assertEqual(created["scopes"], ["*"])
        me = self.assert_ok_json(self.me(c, got["access_token"]))
        self.assertEqual(me["email"], email)

        entry = next(k for k in self.assert_ok_json(
            c.request("GET", "/v1/auth/api-keys", token=token))["data"]
                     if k["id"] == created["id"])
        self.assertRegex(entry["last_used_at"] or "", RFC3339_UTC_RE)

        # An exchanged token has no login session to end.
        self.assert_error(c.request("POST", "/v1/auth/logout", token=got["access_token"]),
                          400, "invalid_request")
        self.assert_ok_json(self.me(c, got["access_token"]))

        # Revoked: its tokens stop within the deadline, it trades no more.
        other = self.client()
        _, _, other_token = self.new_account(other, "apikey-other")
        self.assert_error(other.request("DELETE", f"/v1/auth/api-keys/{created['id']}",
                                        token=other_token), 404, "not_found")
        resp = c.request("DELETE", f"/v1/auth/api-keys/{created['id']}", token=token)
        self.assertEqual(resp.status, 204, repr(resp))
        t0 = time.monotonic()
        seen = []
        while True:
            resp = self.me(c, got["access_token"])
            seen.append(resp.status)
            if resp.status != 200 or time.monotonic() - t0 > REVOCATION_DEADLINE_S:
                break
            time.sleep(0.05)
        self.assert_error(resp, 401, "unauthenticated")
        self.assertLessEqual(time.monotonic() - t0, REVOCATION_DEADLINE_S, seen)
        self.assert_error(self.exchange(c, created["key"]), 401, "invalid_credentials")
        self.assertNotIn(created["id"], [k["id"] for k in self.assert_ok_json(
            c.request("GET", "/v1/auth/api-keys", token=token))["data"]])
        self.assert_error(c.request("DELETE", f"/v1/auth/api-keys/{created['id']}",
                                    token=token), 404, "not_found")
        self.assertIn("api_key.revoked", self.audit_actions(user_id))

    def test_61_scoped_key(self):
        c = self.client()
        _, _, token = self.new_account(c, "apikey-scoped")
        created = self.assert_ok_json(self.create_key(c, token, scopes=["billing:read"]), 201)
        got = self.assert_ok_json(self.exchange(c, created["key"]))
        self.assertEqual(jwt_claims(got["access_token"]).get("scope"), "billing:read")
        self.assert_ok_json(c.request("GET", "/v1/billing/entitlements",
                                      token=got["access_token"]))
        refused = [
            ("another pool", lambda t: self.me(c, t)),
            # Reading billing is not writing it.
            ("a write to billing",
             lambda t: c.request("POST", "/v1/billing/portal", {}, token=t)),
            # No minting of keys without an auth scope.
            ("a new key", lambda t: self.create_key(c, t)),
        ]
        for label, call in refused:
            with self.subTest(label):
                self.assert_error(call(got["access_token"]), 403, "insufficient_scope")
        # The key's owner, with a session token, is not limited by it.
        self.assert_ok_json(self.me(c, token))

    def test_62_refused_exchanges(self):
        c = self.client()
        _, _, token = self.new_account(c, "apikey-refused")
        created = self.assert_ok_json(self.create_key(c, token), 201)
        key = created["key"]
        self.assert_ok_json(self.exchange(c, key))
        self.assert_fields(self.exchange(c, key, grant_type="password"),
                           {"grant_type": "unsupported"})
        wrong = key[:18] + ("A" if key[18] != "A" else "B") + key[19:]
        self.assert_error(self.exchange(c, wrong), 401, "invalid_credentials")
        self.assert_error(self.exchange(c, "stoa_000000000000_" + key[18:]), 401,
                          "invalid_credentials")
        self.assert_error(self.exchange(c, "not-a-key"), 401, "invalid_credentials")

        expiring = self.assert_ok_json(self.create_key(c, token, name="short"), 201)
        self.assert_ok_json(self.exchange(c, expiring["key"]))
        query_json(self.stack, """
            WITH t AS (UPDATE auth.api_keys SET expires_at = now() - interval '1 second'
                       WHERE id = :'id'::uuid RETURNING 1)
            SELECT to_json(count(*)) FROM t""", id=expiring["id"])
        self.assert_error(self.exchange(self.client(), expiring["key"]), 401,
                          "invalid_credentials")

    def test_63_exchanges_are_throttled_per_prefix(self):
        c = self.client()
        _, _, token = self.new_account(c, "apikey-throttle")
        key = self.assert_ok_json(self.create_key(c, token), 201)["key"]
        wrong = key[:18] + ("A" if key[18] != "A" else "B") + key[19:]
        for i in range(5):
            with self.subTest(failure=i + 1):
                self.assert_error(self.exchange(c, wrong), 401, "invalid_credentials")
        resp = self.exchange(c, key)
        self.assert_error(resp, 429, "too_many_attempts")
        self.assertGreater(int(resp.header("Retry-After", "0")), 0, repr(resp))
        # From another address the right key still works.
        self.assert_ok_json(self.exchange(self.client(), key))

    def test_64_create_refuses_bad_input(self):
        c = self.client()
        _, _, token = self.new_account(c, "apikey-input")
        cases = [
            ("missing name", {"scopes": ["*"]}, "name"),
            ("empty scopes", {"name": "x", "scopes": []}, "scopes"),
            ("empty name", {"name": ""}, "name"),
            ("name over 100", {"name": "n" * 101}, "name"),
            ("scopes not an array", {"name": "x", "scopes": "billing:read"}, "scopes"),
            ("unknown scope", {"name": "x", "scopes": ["billing:delete"]}, "scopes"),
            ("unknown pool", {"name": "x", "scopes": ["mail:read"]}, "scopes"),
            ("scope not a string", {"name": "x", "scopes": [7]}, "scopes"),
            ("expires_at malformed", {"name": "x", "expires_at": "tomorrow"}, "expires_at"),
            ("expires_at not a time", {"name": "x", "expires_at": 1893456000}, "expires_at"),
            ("expires_at in the past", {"name": "x", "expires_at": "2001-01-01T00:00:00Z"},
             "expires_at"),
            ("unknown field", {"name": "x", "owner": "someone"}, "owner"),
        ]
        before = count_rows(self.stack, "SELECT 1 FROM auth.api_keys")
        for label, body, field in cases:
            with self.subTest(label):
                resp = c.request("POST", "/v1/auth/api-keys", body, token=token)
                self.assert_field_named(resp, field)
        self.assertEqual(count_rows(self.stack, "SELECT 1 FROM auth.api_keys"), before)

        # The limits themselves are fine.
        ok = self.assert_ok_json(self.create_key(
            c, token, name="n" * 100, scopes=["*", "analytics:write", "auth:*"],
            expires_at="2099-12-31T23:59:59Z"), 201)
        self.assertTrue(ok["expires_at"].startswith("2099-12-31T23:59:59"), ok)

        # Unknown ids and missing tokens.
        self.assert_error(c.request("DELETE", f"/v1/auth/api-keys/{uuid.uuid4()}",
                                    token=token), 404, "not_found")
        self.assert_error(c.request("DELETE", "/v1/auth/api-keys/not-a-uuid", token=token),
                          404, "not_found")
        self.assert_error(c.request("POST", "/v1/auth/api-keys", {"name": "x"}), 401,
                          "unauthenticated")
        self.assert_error(c.request("GET", "/v1/auth/api-keys"), 401, "unauthenticated")
        self.assert_error(c.request("DELETE", f"/v1/auth/api-keys/{ok['id']}"), 401,
                          "unauthenticated")


if __name__ == "__main__":
    unittest.main()
