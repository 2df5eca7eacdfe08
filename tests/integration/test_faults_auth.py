"""End-to-end tests of the auth side under faults, through nginx over TLS:
the failed-login throttle while Redis is stopped and after Redis comes back
empty (SPEC §4: 5 failures in 15 min from one address lock the pair out),
the one log line the throttle writes per change of state, and the method in
nginx's access log when an answer goes through an error page.

Run from tests/integration:
    STOA_BIN_DIR=<worktree>/bin python3 -m unittest test_faults_auth -v
"""

import json
import os
import time
import unittest

from harness import wait_until
from test_auth import GOOD_PASSWORD, AuthStackTestCase

# How long nginx may keep an access line in its buffer (flush=1s), plus
# slack on a loaded machine.
ACCESS_LOG_WAIT_S = 5.0
FALLBACK_LINE = "login throttle: Redis unreachable"
BACK_LINE = "login throttle: Redis reachable"


def log_lines(path):
    """The JSON objects of a log file, in order (lines that do not parse,
    such as a half-written last line, are skipped)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


class ThrottleWithoutRedisTest(AuthStackTestCase):
    """The per account+address lock holds while Redis is away and after it
    comes back without its counters."""

    # The first logins after Redis returns are under test (they may meet a
    # connection the restart broke): no readiness probe goes before them.
    redis_start_waits_for_auth = False

    def fail_logins(self, client, email, count):
        for i in range(count):
            with self.subTest(failure=i + 1):
                resp = self.login_response(client, email, f"Wrong-password-{i}")
                self.assertIn(resp.status, (401, 429), repr(resp))
                if resp.status == 401:
                    self.assert_error(resp, 401, "invalid_credentials")

    def auth_log(self):
        return self.stack.path("log", "stoa-auth.log")

    def test_05_the_fallback_is_logged_once_per_change(self):
        # First in the class: every pool process still trusts Redis, so
        # each one that notices the outage writes exactly one line.
        c = self.client()
        email = self.unique_email("logged")
        self.register(c, email)
        before = len(log_lines(self.auth_log()))
        self.stop_redis()
        try:
            self.fail_logins(c, email, 8)
            self.login(self.client(), email)
        finally:
            self.start_redis()
        # Back: the next attempts see Redis again, which lacks the failures.
        # Each Redis connection of a pool waits STOA_KV_RETRY_MS (200 ms)
        # after an error before it tries again; past that, every one
        # reconnects on its next use.
        time.sleep(0.5)
        for _ in range(4):
            self.login(self.client(), email)
        docs = log_lines(self.auth_log())[before:]
        down = [d for d in docs if FALLBACK_LINE in d.get("msg", "")]
        self.assertGreaterEqual(len(down), 1, "no log line says the throttle fell back")
        self.assertLessEqual(len(down), self.pool_processes,
                             f"the fallback was logged per request: {down}")
        for doc in down:
            self.assertEqual(doc.get("level"), "warn", doc)
        back = [d for d in docs if BACK_LINE in d.get("msg", "")]
        self.assertGreaterEqual(len(back), 1, "no log line says Redis is asked again")
        self.assertLessEqual(len(back), self.pool_processes,
                             f"the return was logged per request: {back}")

    def test_10_lock_holds_while_redis_is_stopped(self):
        c = self.client()
        email = self.unique_email("noredis")
        self.register(c, email)
        self.stop_redis()
        try:
            # Seven wrong passwords: the sixth and seventh are refused, not
            # judged (with Redis they would be too).
            self.fail_logins(c, email, 7)
            self.assert_locked(c, email, GOOD_PASSWORD)
            self.assert_locked(c, email, "Wrong-again-1")
            # The lock is per account and address: the owner elsewhere
            # gets in, Redis or not.
            self.login(self.client(), email)
        finally:
            self.start_redis()

    def test_20_lock_survives_a_redis_restart(self):
        c = self.client()
        email = self.unique_email("restart")
        self.register(c, email)
        self.fail_logins(c, email, 5)
        self.assert_locked(c, email, GOOD_PASSWORD)
        # Redis restarts without its data: the lock is gone from Redis,
        # but the failures are still in Postgres.
        self.stop_redis()
        self.start_redis()
        # The first commands after the restart may find the old connection
        # broken; either way the answer must be the lock.
        self.assert_locked(c, email, GOOD_PASSWORD)
        self.assert_locked(c, email, GOOD_PASSWORD)
        self.login(self.client(), email)

    def test_30_failures_while_redis_is_away_count_after_it_returns(self):
        c = self.client()
        email = self.unique_email("outage")
        self.register(c, email)
        self.stop_redis()
        try:
            self.fail_logins(c, email, 5)
        finally:
            self.start_redis()
        # Redis came back empty and never saw those failures.
        self.assert_locked(c, email, GOOD_PASSWORD)

    def test_40_api_key_exchange_is_throttled_without_redis(self):
        c = self.client()
        bad_key = "stoa_0123456789ab_" + "x" * 43
        self.stop_redis()
        try:
            for i in range(5):
                with self.subTest(failure=i + 1):
                    resp = c.request("POST", "/v1/auth/token",
                                     {"grant_type": "api_key", "api_key": bad_key})
                    self.assert_error(resp, 401, "invalid_credentials")
            resp = c.request("POST", "/v1/auth/token",
                             {"grant_type": "api_key", "api_key": bad_key})
            self.assert_error(resp, 429, "too_many_attempts")
        finally:
            self.start_redis()

    def test_50_a_good_login_is_not_refused_after_redis_returns(self):
        # A right password with a few failures behind it, across an
        # outage and a restart, still gets in: the fallback refuses only
        # a pair past the limit.
        c = self.client()
        email = self.unique_email("fine")
        self.register(c, email)
        self.fail_logins(c, email, 2)
        self.stop_redis()
        try:
            self.fail_logins(c, email, 1)
            self.login(c, email)
        finally:
            self.start_redis()
        self.fail_logins(c, email, 3)
        self.login(c, email)


class AccessLogMethodTest(AuthStackTestCase):
    """nginx's JSON access line names the method the client sent, also
    when the answer is one of nginx's own error pages."""

    def access_line(self, request_id):
        path = self.stack.path("log", "nginx-access.log")
        found = []

        def seen():
            found[:] = [d for d in log_lines(path) if d.get("request_id") == request_id]
            return bool(found)

        ok, _ = wait_until(seen, ACCESS_LOG_WAIT_S, interval=0.1)
        self.assertTrue(ok, f"no access line with request id {request_id}")
        self.assertEqual(len(found), 1, f"one access line per request: {found}")
        return found[0]

    def test_10_post_answered_by_the_404_page_logs_post(self):
        resp = self.client().request("POST", "/v1/no-such-route", {"a": 1})
        self.assert_error(resp, 404, "not_found")
        line = self.access_line(self.assert_request_id(resp))
        self.assertEqual(line.get("method"), "POST", line)
        self.assertEqual(line.get("status"), 404, line)
        self.assertEqual(line.get("uri"), "/v1/no-such-route", line)

    def test_20_post_answered_by_the_413_page_logs_post(self):
        body = b'{"email":"' + b"a" * (1024 * 1024 + 16) + b'"}'
        resp = self.client().request("POST", "/v1/auth/login", body,
                                     headers={"Content-Type": "application/json"}, raw=True)
        self.assert_error(resp, 413, "payload_too_large")
        line = self.access_line(self.assert_request_id(resp))
        self.assertEqual(line.get("method"), "POST", line)
        self.assertEqual(line.get("status"), 413, line)

    def test_30_a_plain_get_still_logs_get(self):
        resp = self.client().request("GET", "/healthz")
        self.assertEqual(resp.status, 200, repr(resp))
        line = self.access_line(self.assert_request_id(resp))
        self.assertEqual(line.get("method"), "GET", line)


if __name__ == "__main__":
    unittest.main()
