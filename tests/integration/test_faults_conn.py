"""End-to-end tests of two store faults, through nginx over TLS (SPEC §9):

- a Postgres restart (pg_ctl stop -m fast, then start) leaves every pooled
  connection of every pool process stale; the first requests after Postgres
  is back must succeed on all of them, and readyz must say ready at once;
- a hung Redis (SIGSTOP: it accepts and never answers) must not stall the
  pools: GET /v1/me keeps most of its rate (the circuit breaker skips Redis
  and the profile and revocation checks read Postgres), and a revoked
  session is still refused.

Run from tests/integration:
    STOA_BIN_DIR=<repo>/bin python3 -m unittest test_faults_conn -v
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
import unittest
import uuid

from authlib import SourceClient, SourceClientTestCase, count_rows
from harness import POOLS, read_pid_file, wait_until

GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"
POOL_THREADS = 8
DB_POOL_SIZE = 4  # the default db_pool_size

# nginx's limits out of the way: the pools' own behaviour is under test.
OPEN_LIMITS = {"STOA_RATE_AUTH": "1000000r/s", "STOA_BURST_AUTH": "1000000",
               "STOA_RATE_API": "1000000r/s", "STOA_BURST_API": "1000000",
               "STOA_POOL_THREADS": str(POOL_THREADS)}

# The application name every stoa program gives its Postgres connections.
STOA_BACKENDS = "SELECT 1 FROM pg_stat_activity WHERE application_name = 'stoa'"

# wrk's Lua: one bearer token, answers counted by status over all threads.
ME_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; other = 0 end
wrk.headers["Authorization"] = "Bearer %s"
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local o, x = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); x = x + t:get("other") end
  io.write(string.format("STATUS ok=%%d other=%%d\\n", o, x))
end
"""


class FaultStackTestCase(SourceClientTestCase):
    stack_env = OPEN_LIMITS

    def new_session(self, c, email=None):
        """Registers (when email is None) and logs in; (email, token)."""
        if email is None:
            email = f"fault.{uuid.uuid4().hex[:12]}@example.com"
            resp = c.request("POST", "/v1/auth/register",
                             {"email": email, "password": GOOD_PASSWORD, "name": "Fault"})
            self.assertEqual(resp.status, 201, repr(resp))
        resp = c.request("POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD})
        self.assertEqual(resp.status, 200, repr(resp))
        return email, resp.json["access_token"]

    def burst(self, requests, threads=2 * POOL_THREADS * 2):
        """Sends requests [(method, path, body, token)] from `threads`
        concurrent clients (each its own TLS connection), round robin;
        returns [(method, path, status, body)] in no particular order."""
        out, lock = [], threading.Lock()
        chunks = [requests[i::threads] for i in range(threads)]
        start = threading.Barrier(threads)

        def work(chunk):
            c = SourceClient(self.stack)
            try:
                c.request("GET", "/healthz")  # the handshake, before the barrier
                start.wait(timeout=30)
                for method, path, body, token in chunk:
                    resp = c.request(method, path, body, token=token)
                    with lock:
                        out.append((method, path, resp.status, resp.body[:300]))
            finally:
                c.close()

        workers = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        self.assertEqual(len(out), len(requests), "a burst client did not finish")
        return out


class PostgresRestartTest(FaultStackTestCase):
    """Every pooled Postgres connection survives a server restart: the first
    request on each after the restart is answered, not 503."""

    def pool_backends(self):
        return count_rows(self.stack, STOA_BACKENDS)

    def readyz_round(self, per_pool=48):
        return [("GET", f"/v1/{pool}/readyz", None, None)
                for _ in range(per_pool) for pool in POOLS]

    def test_10_first_requests_after_a_restart_succeed_everywhere(self):
        c = self.client()
        _, token = self.new_session(c)
        # Every connection of every process connected: concurrent readyz
        # (a Postgres ping each) until the pools' backends are all there.
        want = len(POOLS) * self.pool_processes * DB_POOL_SIZE
        for _ in range(10):
            self.burst(self.readyz_round())
            if self.pool_backends() >= want:
                break
        before = self.pool_backends()
        # Concurrency decides how many a burst opens; whatever was opened
        # is stale after the restart, and every process has one at least.
        self.assertGreaterEqual(before, len(POOLS) * self.pool_processes,
                                "too few pooled connections were opened")
        # The count includes the jobs worker's connections, which come back
        # on their own schedule: the pools alone must reach it, up to their
        # own total.
        want = min(before, want)

        stopped = self.stack.postgres_stop()
        self.assertEqual(stopped.returncode, 0, stopped.stderr)
        try:
            self.assertFalse(self.stack.postgres_running())
        finally:
            started = self.stack.postgres_start()
            self.assertEqual(started.returncode, 0, started.stderr)
        t_back = time.monotonic()

        # readyz at once, on every pool.
        for pool in POOLS:
            resp = self.request("GET", f"/v1/{pool}/readyz")
            self.assertEqual(resp.status, 200, f"{pool} readyz right after the restart: {resp!r}")

        # The first requests on every stale connection: reads on each pool
        # (readyz), a lone read behind the gateway (the sessions list) and a
        # transaction (PATCH /v1/me, from BEGIN to COMMIT), all at once.
        requests = self.readyz_round()
        requests += [("GET", "/v1/auth/sessions", None, token)] * 32
        requests += [("PATCH", "/v1/me", {"name": f"After {i}"}, token) for i in range(32)]
        answers = self.burst(requests)
        # Until every stale connection has served its first request after
        # the restart (a burst need not reach them all), each one fine.
        for _ in range(10):
            if self.pool_backends() >= want:
                break
            answers += self.burst(self.readyz_round())
        failed = [a for a in answers if a[2] != 200]
        self.assertEqual(failed, [], f"{len(failed)} of {len(answers)} failed after the restart")
        after = self.pool_backends()
        took = time.monotonic() - t_back
        print(f"\n[faults] postgres restart: {len(answers)} requests, all 200, within "
              f"{took:.2f}s of its return; pooled backends {before} before, {after} after")
        self.assertGreaterEqual(after, want, "the burst did not touch every pooled connection")


class RedisHangTest(FaultStackTestCase):
    """A Redis that accepts and never answers (SIGSTOP) costs the pools one
    timeout, not one per call."""

    WRK_SECONDS = 3

    def redis_pid(self):
        pid = read_pid_file(self.stack.path("pids", "redis.pid"))
        self.assertTrue(pid, "no redis pid")
        return pid

    def wrk_me(self, token):
        """(requests/s, ok, other) of GET /v1/me for WRK_SECONDS."""
        script = os.path.join(self.stack.run, f"me-{uuid.uuid4().hex[:6]}.lua")
        with open(script, "w") as f:
            f.write(ME_LUA % token)
        out = subprocess.run(
            ["wrk", "-t2", "-c32", f"-d{self.WRK_SECONDS}s", "-s", script,
             f"https://127.0.0.1:{self.stack.https_port}/v1/me"],
            capture_output=True, text=True, timeout=60).stdout
        rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
        counts = re.search(r"STATUS ok=(\d+) other=(\d+)", out)
        self.assertTrue(rate and counts, out)
        return float(rate.group(1)), int(counts.group(1)), int(counts.group(2))

    def test_10_me_keeps_its_rate_and_revocation_holds_while_redis_hangs(self):
        c = self.client()
        email, token = self.new_session(c)
        _, doomed = self.new_session(c, email)
        for t in (token, doomed):
            self.assertEqual(c.request("GET", "/v1/me", token=t).status, 200)
        before, ok_before, other_before = self.wrk_me(token)
        self.assertEqual(other_before, 0, "failures before the fault")

        pid = self.redis_pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            during, ok_during, other_during = self.wrk_me(token)
            # A session ended while Redis hangs is refused (Postgres decides).
            resp = c.request("POST", "/v1/auth/logout", token=doomed)
            self.assertEqual(resp.status, 204, repr(resp))
            refused, _ = wait_until(
                lambda: c.request("GET", "/v1/me", token=doomed).status == 401, 3.0, 0.1)
            self.assertTrue(refused, "a revoked session passed while Redis hung")
            resp = c.request("GET", "/v1/me", token=token)
            self.assertEqual(resp.status, 200, repr(resp))
        finally:
            os.kill(pid, signal.SIGCONT)
        t_cont = time.monotonic()
        ready, _ = wait_until(lambda: all(
            self.request("GET", f"/v1/{pool}/readyz").status == 200 for pool in POOLS),
            15.0, 0.05)
        recovered = time.monotonic() - t_cont
        ratio = during / before if before else 0.0
        print(f"\n[faults] /v1/me {before:.0f} req/s before, {during:.0f} req/s with Redis "
              f"stopped ({ratio:.0%}); {other_during} non-200 of {ok_during + other_during}; "
              f"readyz 200 on every pool {recovered:.2f}s after SIGCONT")
        self.assertTrue(ready, "pools not ready again after Redis resumed")
        self.assertEqual(other_during, 0, "GET /v1/me failed while Redis hung")
        # The bar is half the normal rate; a loaded two-core machine gets a
        # wider margin, still far above the one-timeout-per-call rate
        # (a few requests a second).
        self.assertGreater(during, 0.25 * before, f"{during:.0f} vs {before:.0f} req/s")
        self.assertGreater(during, 500, f"{during:.0f} req/s while Redis hung")
        # Still refused once Redis answers again.
        time.sleep(1.1)
        resp = c.request("GET", "/v1/me", token=doomed)
        self.assertEqual(resp.status, 401, repr(resp))


if __name__ == "__main__":
    unittest.main()
