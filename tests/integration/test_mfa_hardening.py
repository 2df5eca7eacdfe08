"""End-to-end tests of the second factor against an attacker (SPEC §4),
through nginx over TLS:

- enrolment and confirmation need the account password (a stolen access
  token alone cannot turn TOTP on and lock the owner out), wrong passwords
  there count towards the failed-login lock, and the owner is mailed when
  TOTP goes on and off;
- an mfa_token dies after 5 wrong codes whatever the client address, even
  under concurrent guesses and with Redis down; wrong codes also count per
  account, so fresh addresses and fresh challenges get 429;
- a sealed TOTP secret longer than the secret buffer is refused cleanly;
- a recovery code is compared whole: trailing junk is not ignored.

Each client speaks from a loopback address of its own (authlib's
SourceClient), as the attacker's many addresses would.

Run from the repository root:
    STOA_BIN_DIR=$PWD/bin python3 -m unittest tests/integration/test_mfa_hardening.py -v
"""

import os
import secrets
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import billinglib  # noqa: E402  (path set above)
import test_mfa as base  # noqa: E402  (a module, so its tests are not rerun here)
from authlib import count_rows, query_json  # noqa: E402

GOOD_PASSWORD = base.GOOD_PASSWORD
WRONG_PASSWORD = "Not-the-password-9!"
# The numbers the pool promises (README, docs/openapi.yaml).
CHALLENGE_MAX_FAILURES = 5
ACCOUNT_MAX_FAILURES = 10
ACCOUNT_WINDOW_S = 900
MAIL_TIMEOUT_S = 20.0


class MfaHardeningTest(base.MfaStackTestCase):

    def challenge_count(self, mfa_token):
        return query_json(self.stack, """
            SELECT to_json(failed_codes) FROM auth.mfa_challenges
            WHERE token_hash = sha256(convert_to(:'t', 'UTF8'))""", t=mfa_token)

    def wait_mail(self, email, subject):
        found = billinglib.wait_for_mail(self.stack, email, subject, MAIL_TIMEOUT_S)
        self.assertTrue(found, f"no mail {subject!r} to {email} in {self.stack.path('mail')}: "
                               f"{billinglib.mails_to(self.stack, email)}")
        return found

    # --- 1. enrolment needs the password; the owner is told ---------------

    def test_10_enroll_and_confirm_need_the_password(self):
        c = self.client()
        email, user_id, token = self.new_account(c, "enrol-pw")
        enroll = "/v1/auth/mfa/totp/enroll"
        confirm = "/v1/auth/mfa/totp/confirm"

        # Missing: 400 naming the field, with or without a body.
        self.assert_fields(c.request("POST", enroll, {}, token=token), {"password": "required"})
        self.assert_fields(c.request("POST", enroll, token=token), {"password": "required"})
        self.assert_fields(c.request("POST", enroll, {"password": 7}, token=token),
                           {"password": "must_be_string"})
        # Wrong: 401 invalid_credentials, and nothing was enrolled.
        self.assert_error(c.request("POST", enroll, {"password": WRONG_PASSWORD}, token=token),
                          401, "invalid_credentials")
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.mfa_totp WHERE user_id = :'id'::uuid""", id=user_id), 0)

        secret = self.assert_ok_json(c.request("POST", enroll, {"password": GOOD_PASSWORD},
                                               token=token))["secret"]
        code = base.code_for_step(secret, base.current_step())
        self.assert_fields(c.request("POST", confirm, {"code": code}, token=token),
                           {"password": "required"})
        self.assert_error(c.request("POST", confirm, {"code": code, "password": WRONG_PASSWORD},
                                    token=token), 401, "invalid_credentials")
        self.assertIs(self.assert_ok_json(self.me(c, token))["mfa_enabled"], False)
        self.assertEqual(self.assert_ok_json(self.me(c, token))["id"], user_id)

        # Right password and code: on, and the owner is mailed.
        codes = self.assert_ok_json(c.request(
            "POST", confirm, {"code": code, "password": GOOD_PASSWORD},
            token=token))["recovery_codes"]
        self.assertEqual(len(codes), 10)
        self.assertIs(self.assert_ok_json(self.me(c, token))["mfa_enabled"], True)
        (subject, text), = self.wait_mail(email, "Two-factor authentication was turned on")
        self.assertIn("Mfa User", text)
        self.assertNotIn(secret, text)
        for rc in codes:
            self.assertNotIn(rc, text)
        self.assertIn("mfa.enabled", self.audit_actions(user_id))

        # Off again: mailed too.
        resp = c.request("DELETE", "/v1/auth/mfa/totp", {"password": GOOD_PASSWORD}, token=token)
        self.assertEqual(resp.status, 204, repr(resp))
        self.wait_mail(email, "Two-factor authentication was turned off")

    def test_11_wrong_passwords_on_enrolment_trip_the_login_lock(self):
        """The enrolment routes are no side door for guessing the password."""
        c = self.client()
        email, _, token = self.new_account(c, "enrol-guess")
        for i in range(5):
            with self.subTest(failure=i + 1):
                path = "/v1/auth/mfa/totp/enroll" if i % 2 else "/v1/auth/mfa/totp/confirm"
                body = {"password": WRONG_PASSWORD}
                if path.endswith("confirm"):
                    body["code"] = "123456"
                self.assert_error(c.request("POST", path, body, token=token),
                                  401, "invalid_credentials")
        resp = c.request("POST", "/v1/auth/mfa/totp/enroll", {"password": GOOD_PASSWORD},
                         token=token)
        self.assert_error(resp, 429, "too_many_attempts")
        self.assertGreater(int(resp.header("Retry-After", "0")), 0, repr(resp))
        # The same lock as a login's: the right password does not log in from here.
        self.assert_error(self.login_response(c, email), 429, "too_many_attempts")
        self.assertIn("mfa.password_failed", self.audit_actions(
            self.assert_ok_json(self.me(c, token))["id"]))

    # --- 2. a challenge dies after 5 wrong codes; accounts count too ------

    def test_20_a_challenge_dies_after_five_wrong_codes_from_any_address(self):
        c = self.client()
        email, user_id, _, secret, codes = self.enable_mfa(c, "token-death")
        self.forget_last_step(user_id)
        mfa_token = self.challenge(c, email)
        bad = base.wrong_code(secret)
        for i in range(CHALLENGE_MAX_FAILURES):
            with self.subTest(failure=i + 1):
                # A new address each time: no per-address lock helps here.
                self.assert_error(self.verify(self.client(), mfa_token, code=bad),
                                  401, "invalid_code")
        # Gone, even for the right code or a recovery code, from yet another address.
        right = base.code_for_step(secret, base.current_step())
        self.assert_error(self.verify(self.client(), mfa_token, code=right),
                          401, "invalid_token")
        self.assert_error(self.verify(self.client(), mfa_token, recovery_code=codes[0]),
                          401, "invalid_token")
        self.assertEqual(self.challenge_count(mfa_token), CHALLENGE_MAX_FAILURES)
        # Wrong recovery codes count the same way.
        second = self.challenge(self.client(), email)
        for i in range(CHALLENGE_MAX_FAILURES):
            self.assert_error(self.verify(self.client(), second,
                                          recovery_code="aaaaa-aaaaa"), 401, "invalid_code")
        self.assert_error(self.verify(self.client(), second, recovery_code=codes[0]),
                          401, "invalid_token")
        # Both challenges' failures were counted against the account too.
        self.assertEqual(query_json(self.stack, """
            SELECT to_json(failed_codes) FROM auth.mfa_totp
            WHERE user_id = :'id'::uuid""", id=user_id), 2 * CHALLENGE_MAX_FAILURES)

    def test_21_wrong_codes_count_per_account(self):
        c = self.client()
        email, user_id, _, secret, codes = self.enable_mfa(c, "account-count")
        self.forget_last_step(user_id)
        waiting = self.challenge(self.client(), email)  # issued before the lock
        bad = base.wrong_code(secret)
        for t in range(ACCOUNT_MAX_FAILURES // CHALLENGE_MAX_FAILURES):
            mfa_token = self.challenge(self.client(), email)
            for i in range(CHALLENGE_MAX_FAILURES):
                with self.subTest(token=t, failure=i + 1):
                    self.assert_error(self.verify(self.client(), mfa_token, code=bad),
                                      401, "invalid_code")
        right = base.code_for_step(secret, base.current_step())
        # A fresh address with the right password gets no new challenge.
        resp = self.login_response(self.client(), email)
        self.assert_error(resp, 429, "too_many_attempts")
        retry = int(resp.header("Retry-After", "0"))
        self.assertGreater(retry, 0, repr(resp))
        self.assertLessEqual(retry, ACCOUNT_WINDOW_S, repr(resp))
        # A challenge issued before does not get in either, right code or not.
        resp = self.verify(self.client(), waiting, code=right)
        self.assert_error(resp, 429, "too_many_attempts")
        self.assertGreater(int(resp.header("Retry-After", "0")), 0, repr(resp))
        self.assert_error(self.verify(self.client(), waiting, recovery_code=codes[0]),
                          429, "too_many_attempts")
        # The window passing lifts it (as if 15 minutes had gone by).
        query_json(self.stack, """
            WITH t AS (UPDATE auth.mfa_totp SET failed_since = failed_since - interval '901 s'
                       WHERE user_id = :'id'::uuid RETURNING 1)
            SELECT to_json(count(*)) FROM t""", id=user_id)
        right = base.code_for_step(secret, base.current_step())
        self.assert_tokens(self.verify(self.client(), self.challenge(self.client(), email),
                                       code=right), user_id)

    def test_22_concurrent_guesses_get_five_tries_in_all(self):
        c = self.client()
        email, user_id, _, secret, _ = self.enable_mfa(c, "race")
        self.forget_last_step(user_id)
        mfa_token = self.challenge(c, email)
        bad = base.wrong_code(secret)
        guessers = 16
        clients = [self.client() for _ in range(guessers)]
        barrier = threading.Barrier(guessers)
        answers = [None] * guessers

        def guess(i):
            barrier.wait()
            resp = self.verify(clients[i], mfa_token, code=bad)
            answers[i] = (resp.status, (resp.json or {}).get("error", {}).get("code"))

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(guessers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertNotIn(None, answers)
        self.assertEqual(answers.count((401, "invalid_code")), CHALLENGE_MAX_FAILURES, answers)
        self.assertEqual(answers.count((401, "invalid_token")),
                         guessers - CHALLENGE_MAX_FAILURES, answers)
        self.assertEqual(self.challenge_count(mfa_token), CHALLENGE_MAX_FAILURES)
        self.assert_error(self.verify(self.client(), mfa_token,
                                      code=base.code_for_step(secret, base.current_step())),
                          401, "invalid_token")

    def test_23_the_challenge_limit_holds_while_redis_is_down(self):
        """The counts live in Postgres: Redis down moves the address
        throttle to Postgres and leaves the limit on guesses whole."""
        c = self.client()
        email, user_id, _, secret, _ = self.enable_mfa(c, "redis-down")
        self.forget_last_step(user_id)
        mfa_token = self.challenge(c, email)
        self.stop_redis()
        try:
            bad = base.wrong_code(secret)
            for i in range(CHALLENGE_MAX_FAILURES):
                with self.subTest(failure=i + 1):
                    self.assert_error(self.verify(c, mfa_token, code=bad), 401, "invalid_code")
            # From this address the account is now locked, as with Redis up;
            # from another the challenge is dead even for the right code.
            self.assert_error(self.verify(self.client(), mfa_token, code=base.code_for_step(
                secret, base.current_step())), 401, "invalid_token")
        finally:
            self.start_redis()

    # --- 3. an over-long sealed secret ------------------------------------

    def test_30_an_over_long_sealed_secret_is_refused_cleanly(self):
        c = self.client()
        email, user_id, token, secret, codes = self.enable_mfa(c, "sealed")
        # Nonce, 100 bytes of "ciphertext" (a 64-byte buffer holds at most a
        # real secret) and a tag: it never opens, but nothing may be
        # decrypted past the buffer before the tag is checked.
        planted = secrets.token_bytes(12 + 100 + 16).hex()
        query_json(self.stack, """
            WITH t AS (UPDATE auth.mfa_totp SET secret_sealed = decode(:'s', 'hex')
                       WHERE user_id = :'id'::uuid RETURNING 1)
            SELECT to_json(count(*)) FROM t""", s=planted, id=user_id)
        pids = self.stack.pool_children("auth")
        mfa_token = self.challenge(c, email)
        for _ in range(3):
            resp = self.verify(c, mfa_token, code=base.code_for_step(secret, base.current_step()))
            self.assert_error(resp, 503, "mfa_unavailable")
        resp = c.request("DELETE", "/v1/auth/mfa/totp",
                         {"code": base.code_for_step(secret, base.current_step())}, token=token)
        self.assert_error(resp, 503, "mfa_unavailable")
        # Not the user's fault: no wrong code was counted against the challenge.
        self.assertEqual(self.challenge_count(mfa_token), 0)
        # No pool process died on it, and recovery codes still get in.
        self.assertEqual(self.stack.pool_children("auth"), pids)
        self.assert_tokens(self.verify(c, mfa_token, recovery_code=codes[0]), user_id)

    # --- 4. recovery codes are compared whole -----------------------------

    def test_40_recovery_code_with_trailing_junk_is_refused(self):
        c = self.client()
        email, user_id, _, _, codes = self.enable_mfa(c, "junk")
        code = codes[0]
        for label, typed in (("trailing letters", code + "zzz"),
                             ("trailing digits", code + "22"),
                             ("trailing junk, no dash", code.replace("-", "") + "a"),
                             ("a prefix", code[:-1]),
                             ("junk inside", code[:5] + "x" + code[5:]),
                             ("foreign characters", code.replace("-", "!"))):
            with self.subTest(label):
                # A fresh address each time: the address throttle is not
                # what refuses these.
                other = self.client()
                self.assert_error(self.verify(other, self.challenge(other, email),
                                              recovery_code=typed), 401, "invalid_code")
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.mfa_recovery_codes
            WHERE user_id = :'id'::uuid AND used_at IS NOT NULL""", id=user_id), 0)
        # The code as given, and as people type it, still works once.
        self.assert_tokens(self.verify(self.client(), self.challenge(self.client(), email),
                                       recovery_code=f" {code.upper().replace('-', ' ')} "),
                           user_id)
        self.assert_error(self.verify(self.client(), self.challenge(self.client(), email),
                                      recovery_code=code), 401, "invalid_code")

    # --- 5. a pending challenge dies with the sessions -----------------------

    def test_50_a_password_change_or_signing_out_elsewhere_ends_pending_challenges(self):
        c = self.client()
        email, user_id, token, secret, _ = self.enable_mfa(c, "pending")
        # Someone with the password has passed its check and waits for a code.
        pending = self.challenge(self.client(), email)
        new_password = "Fresh-Owner-Secret-58"
        self.assertEqual(c.request("POST", "/v1/auth/password/change",
                                   {"current_password": GOOD_PASSWORD,
                                    "new_password": new_password}, token=token).status, 204)
        self.forget_last_step(user_id)
        right = base.code_for_step(secret, base.current_step())
        resp = self.verify(self.client(), pending, code=right)
        self.assertEqual(resp.status, 401, f"a challenge from the old password got in: {resp!r}")
        # Signing out everywhere else ends one started since, too.
        pending = self.login_response(self.client(), email, new_password)
        pending = self.assert_error(pending, 401, "mfa_required")["mfa_token"]
        self.assertEqual(c.request("DELETE", "/v1/auth/sessions", token=token).status, 204)
        self.forget_last_step(user_id)
        resp = self.verify(self.client(), pending, code=base.code_for_step(
            secret, base.current_step()))
        self.assertEqual(resp.status, 401, f"a pending challenge outlived the sessions: {resp!r}")
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.mfa_challenges WHERE user_id = :'id'::uuid""", id=user_id), 0)

if __name__ == "__main__":
    import unittest
    unittest.main()
