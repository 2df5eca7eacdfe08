"""Redis loses nothing (SPEC §1): Redis killed and started again with an
empty data set must not let back in a session revoked, a user suspended or
a role taken away before the loss, nor lift a failed-login lock.

Also: `stoactl replica status` on a stack without a replica says so.

Run: cd tests/integration && STOA_BIN_DIR=<worktree>/bin python3 -m unittest test_redis_loss -v
"""

import os
import signal
import subprocess
import time
import unittest

import billinglib as bl
from authlib import SourceClientTestCase
from harness import BIN_DIR, read_pid_file, wait_until

GOOD_PASSWORD = bl.GOOD_PASSWORD

# The per-process revocation cache answers from memory for up to 1 s
# (revoke.h): a check made later than that asks Redis again.
REVOKE_CACHE_S = 1.0


class RedisLossTest(SourceClientTestCase):
    stack_env = {"STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000"}

    def register_and_login(self, c, tag):
        email = self.unique_email(tag)
        resp = c.request("POST", "/v1/auth/register",
                         {"email": email, "password": GOOD_PASSWORD, "name": "Redis Loss"})
        self.assert_ok_json(resp, 201)
        return email, self.login(c, email)

    def login(self, c, email):
        resp = c.request("POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD})
        return self.assert_ok_json(resp)["access_token"]

    def stoactl(self, *args):
        return subprocess.run([os.path.join(BIN_DIR, "stoactl"), "--config",
                               self.stack.conf_path(), *args],
                              capture_output=True, text=True, timeout=60,
                              env=bl.stoactl_env(), stdin=subprocess.DEVNULL)

    def reads(self, c, token):
        """One authenticated read on two pools: auth (/v1/me) and admin."""
        return [c.request("GET", "/v1/me", token=token),
                c.request("GET", "/v1/updates", token=token)]

    def redis_cli(self, *args):
        return subprocess.run(["redis-cli", "-s", self.stack.redis_socket(), *args],
                              capture_output=True, text=True, timeout=10)

    def lose_redis(self):
        """kill -9, then a start from nothing (the dev Redis keeps no dump)."""
        pid = read_pid_file(self.stack.path("pids", "redis.pid"))
        self.assertIsNotNone(pid)
        os.kill(pid, signal.SIGKILL)
        gone, _ = wait_until(lambda: not self.stack.redis_running(), 5.0, interval=0.05)
        self.assertTrue(gone, "redis did not die")
        for leftover in ("dump.rdb", "appendonly.aof"):
            try:
                os.unlink(self.stack.path("redis", leftover))
            except FileNotFoundError:
                pass
        self.start_redis()
        self.assertEqual(self.redis_cli("DBSIZE").stdout.strip(), "0")

    def test_revocations_survive_redis_loss(self):
        c = self.client()
        # Live: the control, so that refusals below are not an outage.
        _, live = self.register_and_login(c, "live")
        # Revoked session: logged out.
        _, logged_out = self.register_and_login(c, "logout")
        self.assertEqual(c.request("POST", "/v1/auth/logout", token=logged_out).status, 204)
        # Suspended user.
        suspended_email, suspended = self.register_and_login(c, "suspended")
        done = self.stoactl("user", "suspend", "--email", suspended_email)
        self.assertEqual(done.returncode, 0, done.stderr)
        # Role taken away: a finance user made a client.
        finance_email = self.unique_email("finance")
        made = bl.create_user(self.stack, finance_email, "finance")
        self.assertEqual(made.returncode, 0, made.stderr)
        finance = self.login(c, finance_email)
        self.assert_ok_json(c.request("GET", "/v1/admin/users?limit=1", token=finance))
        done = self.stoactl("user", "set-role", "--email", finance_email, "--role", "client")
        self.assertEqual(done.returncode, 0, done.stderr)
        # Each handler thread keeps a check's answer up to
        # STOA_REVOKE_CACHE_MS (1 s): a thread that found one of these
        # tokens live before its revocation may say so until then.
        revoked_at = time.monotonic()

        def refused_all():
            answers = []
            for token in (logged_out, suspended, finance):
                answers += self.reads(c, token)
            return answers

        def assert_state(when):
            for resp in self.reads(c, live):
                self.assertEqual(resp.status, 200, f"{when}: live user {resp!r}")
            for resp in refused_all():
                self.assert_error(resp, 401, "unauthenticated")
            # The old finance token cannot reach a finance route either.
            self.assert_error(c.request("GET", "/v1/admin/users?limit=1", token=finance),
                              401, "unauthenticated")

        ok, _ = wait_until(lambda: all(r.status == 401 for r in refused_all()), 3.0, interval=0.1)
        self.assertTrue(ok, [repr(r) for r in refused_all()])
        time.sleep(max(0.0, revoked_at + 1.1 - time.monotonic()))
        assert_state("before the loss")
        self.assertEqual(self.redis_cli("EXISTS", "rv:synced").stdout.strip(), "1",
                         "the markers were in sync before the loss")

        # A throttled login (per account and address, in Redis).
        throttled_email, _ = self.register_and_login(c, "throttled")
        for _ in range(6):
            resp = c.request("POST", "/v1/auth/login",
                             {"email": throttled_email, "password": "wrong " + GOOD_PASSWORD})
        self.assert_error(resp, 429, "too_many_attempts")

        # The jobs worker re-syncs at each minute: the checks below must
        # run between the loss and the next one.
        if time.time() % 60 > 50:
            time.sleep(61 - time.time() % 60)
        self.lose_redis()
        # Past the per-process cache: every check below asks the empty Redis.
        time.sleep(REVOKE_CACHE_S + 0.2)
        # A re-sync may have run meanwhile (a retry of one that met Redis
        # down comes within seconds): empty Redis again, so the checks
        # below meet one that knows nothing.
        self.redis_cli("FLUSHALL")
        self.assertEqual(self.redis_cli("DBSIZE").stdout.strip(), "0")
        assert_state("right after the loss")

        # The downgraded user's new session has the new role only.
        fresh = self.login(c, finance_email)
        me = self.assert_ok_json(c.request("GET", "/v1/me", token=fresh))
        self.assertEqual(me["role"], "client")
        self.assert_error(c.request("GET", "/v1/admin/users?limit=1", token=fresh),
                          403, "forbidden")
        # The suspended user cannot log in again.
        resp = c.request("POST", "/v1/auth/login",
                         {"email": suspended_email, "password": GOOD_PASSWORD})
        self.assert_error(resp, 403, "account_suspended")
        # The login lock is judged from Postgres' failure rows until Redis
        # has held a whole window again (throttle.c): it holds too.
        resp = c.request("POST", "/v1/auth/login",
                         {"email": throttled_email, "password": GOOD_PASSWORD})
        self.assert_error(resp, 429, "too_many_attempts")

        # The jobs worker writes every marker back from Postgres (every
        # minute); run it now rather than wait for it.
        self.request_resync()
        ok, _ = wait_until(lambda: self.redis_cli("EXISTS", "rv:synced").stdout.strip() == "1",
                           30.0, interval=0.2)
        self.assertTrue(ok, "the markers were not re-synced")
        time.sleep(REVOKE_CACHE_S + 0.2)
        assert_state("after the re-sync")

    def request_resync(self):
        """Queues the revocation re-sync now, as a pool does when it could
        not write a marker, instead of waiting for the minute's run."""
        done = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.stack.path("pg", "sock"),
             "-p", "5432", "-U", "stoa", "-d", "stoa", "-c",
             "INSERT INTO jobs.outbox (kind, payload, dedupe_key) VALUES "
             "('auth.revocation_sync', '{}', 'test:' || gen_random_uuid()); NOTIFY stoa_jobs"],
            capture_output=True, text=True, timeout=30, cwd="/")
        self.assertEqual(done.returncode, 0, done.stderr)

    def test_replica_status_without_replica(self):
        done = self.stoactl("replica", "status")
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("no replica", done.stderr)
        done = self.stoactl("failover")
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("no replica", done.stderr)


if __name__ == "__main__":
    unittest.main()
